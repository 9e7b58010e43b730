//! Access-control and audit aggregates: accounts, grants, token signing keys and the audit chain.
//!
//! Records here are plain rows: what a role allows, how a secret is hashed and what a namespace
//! pattern matches are decided by the service layer. The one rule kept here is the audit chain's
//! encoding ([`chain_hash`]), because the backends compute it inside the append transaction.

use async_trait::async_trait;
use sha2::{Digest as _, Sha256};

use crate::Result;

/// A person or a robot (CI pipeline, deploy system).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AccountKind {
    User,
    Robot,
}

impl AccountKind {
    pub fn as_str(self) -> &'static str {
        match self {
            AccountKind::User => "user",
            AccountKind::Robot => "robot",
        }
    }

    pub(crate) fn parse(s: &str) -> Result<AccountKind> {
        match s {
            "user" => Ok(AccountKind::User),
            "robot" => Ok(AccountKind::Robot),
            other => Err(crate::MetaError::Corrupt(format!("account kind {other:?}"))),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountRecord {
    pub name: String,
    pub kind: AccountKind,
    /// An argon2 PHC string; never the secret itself.
    pub secret_hash: String,
    pub system_admin: bool,
    pub created_at_ms: i64,
    pub expires_at_ms: Option<i64>,
    pub revoked_at_ms: Option<i64>,
}

/// `subject` holds role `role` on every repository `namespace` matches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GrantRecord {
    pub namespace: String,
    pub subject: String,
    pub role: String,
    pub created_at_ms: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SigningKeyRecord {
    pub kid: String,
    pub algorithm: String,
    pub private_key: Vec<u8>,
    pub public_key: Vec<u8>,
    pub created_at_ms: i64,
    pub retired_at_ms: Option<i64>,
}

#[async_trait]
pub trait Accounts: Send + Sync {
    /// `Conflict` if the name is taken (also by a revoked account).
    async fn create(&self, account: &AccountRecord) -> Result<()>;
    async fn get(&self, name: &str) -> Result<Option<AccountRecord>>;
    /// Every account, by name.
    async fn list(&self) -> Result<Vec<AccountRecord>>;
    /// Marks the account revoked (idempotent); `NotFound` if there is none.
    async fn revoke(&self, name: &str, at_ms: i64) -> Result<()>;
    /// Deletes the account and its grants in one transaction; `NotFound` if there is none.
    async fn delete(&self, name: &str) -> Result<()>;
}

#[async_trait]
pub trait Grants: Send + Sync {
    /// Creates the grant or changes its role.
    async fn put(&self, grant: &GrantRecord) -> Result<()>;
    /// `NotFound` if there was no such grant.
    async fn remove(&self, namespace: &str, subject: &str) -> Result<()>;
    /// Every grant, by namespace then subject.
    async fn list(&self) -> Result<Vec<GrantRecord>>;
    /// Grants held by any of `subjects`.
    async fn of(&self, subjects: &[&str]) -> Result<Vec<GrantRecord>>;
}

#[async_trait]
pub trait SigningKeys: Send + Sync {
    /// Every key, newest first.
    async fn list(&self) -> Result<Vec<SigningKeyRecord>>;
    /// In one transaction: retires every unretired key at `at_ms` and adds `new` as the active one.
    async fn rotate(&self, new: &SigningKeyRecord, at_ms: i64) -> Result<()>;
}

/// What happened, as recorded in the audit log.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AuditEntry {
    pub at_ms: i64,
    /// Account name, `anonymous`, or `system` for the server's own work.
    pub actor: String,
    /// e.g. `push`, `tag`, `delete`, `login`, `token`, `grant.put`.
    pub action: String,
    pub repo: String,
    /// A digest and/or tag, an account name, a namespace: what the action was about.
    pub target: String,
    /// The client's address.
    pub source: String,
    /// `ok`, `denied`, `failed`.
    pub outcome: String,
    pub detail: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditRecord {
    pub seq: i64,
    pub entry: AuditEntry,
    pub prev_hash: String,
    pub hash: String,
}

/// Filters for reading the log; every set field must match. Results are in `seq` order.
#[derive(Debug, Clone, Default)]
pub struct AuditQuery {
    pub repo: Option<String>,
    pub actor: Option<String>,
    pub action: Option<String>,
    pub since_ms: Option<i64>,
    pub until_ms: Option<i64>,
    /// Only entries after this sequence number (paging, streaming).
    pub after_seq: i64,
    pub limit: u32,
}

/// A signed statement that the chain up to `seq` ends in `hash`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    pub seq: i64,
    pub hash: String,
    pub kid: String,
    pub signature: String,
    pub at_ms: i64,
}

#[async_trait]
pub trait Audit: Send + Sync {
    /// Appends one entry at the end of the chain. Appends serialize on the chain head, also
    /// across nodes sharing a database.
    async fn append(&self, entry: &AuditEntry) -> Result<AuditRecord>;
    async fn query(&self, q: &AuditQuery) -> Result<Vec<AuditRecord>>;
    /// The last sequence number and hash (`0` and `""` for an empty log).
    async fn head(&self) -> Result<(i64, String)>;
    async fn add_checkpoint(&self, c: &Checkpoint) -> Result<()>;
    /// Every checkpoint, oldest first.
    async fn checkpoints(&self) -> Result<Vec<Checkpoint>>;
}

/// The hash of entry `seq` given the previous entry's hash: SHA-256 over the previous hash, the
/// sequence number and every field, each length-prefixed so no two entries encode alike.
pub fn chain_hash(prev_hash: &str, seq: i64, e: &AuditEntry) -> String {
    let mut h = Sha256::new();
    let seq = seq.to_string();
    let at = e.at_ms.to_string();
    for field in [
        prev_hash, &seq, &at, &e.actor, &e.action, &e.repo, &e.target, &e.source, &e.outcome,
        &e.detail,
    ] {
        h.update((field.len() as u64).to_be_bytes());
        h.update(field.as_bytes());
    }
    hex::encode(h.finalize())
}

/// One audit append on an open transaction (`$conn`), for both backends: reads the chain head
/// with `$head` (a `SELECT seq, hash FROM audit_head`; PostgreSQL's locks the row), links `$e`
/// (an owned [`AuditEntry`]) to it and moves the head. Expands to statements for the caller's
/// `async fn` (errors return from it with `?`) and evaluates to the [`AuditRecord`].
macro_rules! append_audit_sql {
    ($conn:expr, $head:literal, $e:expr) => {{
        let e: $crate::auth::AuditEntry = $e;
        let (seq, prev): (i64, String) = sqlx::query_as($head).fetch_one(&mut *$conn).await?;
        let seq = seq + 1;
        let hash = $crate::auth::chain_hash(&prev, seq, &e);
        sqlx::query(
            "INSERT INTO audit_log (seq, at, actor, action, repo, target, source, outcome,
                 detail, prev_hash, hash) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
        )
        .bind(seq)
        .bind(e.at_ms)
        .bind(&e.actor)
        .bind(&e.action)
        .bind(&e.repo)
        .bind(&e.target)
        .bind(&e.source)
        .bind(&e.outcome)
        .bind(&e.detail)
        .bind(&prev)
        .bind(&hash)
        .execute(&mut *$conn)
        .await?;
        sqlx::query("UPDATE audit_head SET seq = $1, hash = $2 WHERE id = 1")
            .bind(seq)
            .bind(&hash)
            .execute(&mut *$conn)
            .await?;
        $crate::auth::AuditRecord {
            seq,
            entry: e,
            prev_hash: prev,
            hash,
        }
    }};
}
pub(crate) use append_audit_sql;
