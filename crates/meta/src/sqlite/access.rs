//! SQLite implementation of the access-control and audit aggregates. Writes go through the one
//! writer connection, so audit appends are serialized by construction; they join the manifest
//! writes' group commits (`group.rs`).

use async_trait::async_trait;
use sqlx::sqlite::SqliteRow;
use sqlx::{Row, SqliteConnection};

use super::SqliteBackend;
use crate::auth::{
    AccountKind, AccountRecord, Accounts, Audit, AuditEntry, AuditQuery, AuditRecord, Checkpoint,
    GrantRecord, Grants, SigningKeyRecord, SigningKeys,
};
use crate::{MetaError, Result};

fn account(r: &SqliteRow) -> Result<AccountRecord> {
    Ok(AccountRecord {
        name: r.try_get("name")?,
        kind: AccountKind::parse(r.try_get::<&str, _>("kind")?)?,
        secret_hash: r.try_get("secret_hash")?,
        system_admin: r.try_get::<i64, _>("system_admin")? != 0,
        created_at_ms: r.try_get("created_at")?,
        expires_at_ms: r.try_get("expires_at")?,
        revoked_at_ms: r.try_get("revoked_at")?,
    })
}

fn grant(r: &SqliteRow) -> Result<GrantRecord> {
    Ok(GrantRecord {
        namespace: r.try_get("namespace")?,
        subject: r.try_get("subject")?,
        role: r.try_get("role")?,
        created_at_ms: r.try_get("created_at")?,
    })
}

fn audit_record(r: &SqliteRow) -> Result<AuditRecord> {
    Ok(AuditRecord {
        seq: r.try_get("seq")?,
        entry: AuditEntry {
            at_ms: r.try_get("at")?,
            actor: r.try_get("actor")?,
            action: r.try_get("action")?,
            repo: r.try_get("repo")?,
            target: r.try_get("target")?,
            source: r.try_get("source")?,
            outcome: r.try_get("outcome")?,
            detail: r.try_get("detail")?,
        },
        prev_hash: r.try_get("prev_hash")?,
        hash: r.try_get("hash")?,
    })
}

const ACCOUNT_COLS: &str =
    "name, kind, secret_hash, system_admin, created_at, expires_at, revoked_at";

#[async_trait]
impl Accounts for SqliteBackend {
    async fn create(&self, a: &AccountRecord) -> Result<()> {
        let done = sqlx::query(
            "INSERT INTO accounts (name, kind, secret_hash, system_admin, created_at, expires_at, revoked_at)
             VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT(name) DO NOTHING",
        )
        .bind(&a.name)
        .bind(a.kind.as_str())
        .bind(&a.secret_hash)
        .bind(a.system_admin as i64)
        .bind(a.created_at_ms)
        .bind(a.expires_at_ms)
        .bind(a.revoked_at_ms)
        .execute(&self.writer)
        .await?;
        if done.rows_affected() == 0 {
            return Err(MetaError::Conflict(format!("account {} exists", a.name)));
        }
        Ok(())
    }

    async fn get(&self, name: &str) -> Result<Option<AccountRecord>> {
        let sql = format!("SELECT {ACCOUNT_COLS} FROM accounts WHERE name = ?");
        sqlx::query(&sql)
            .bind(name)
            .fetch_optional(&self.reader)
            .await?
            .as_ref()
            .map(account)
            .transpose()
    }

    async fn list(&self) -> Result<Vec<AccountRecord>> {
        let sql = format!("SELECT {ACCOUNT_COLS} FROM accounts ORDER BY name");
        let rows = sqlx::query(&sql).fetch_all(&self.reader).await?;
        rows.iter().map(account).collect()
    }

    async fn revoke(&self, name: &str, at_ms: i64) -> Result<()> {
        let done =
            sqlx::query("UPDATE accounts SET revoked_at = COALESCE(revoked_at, ?) WHERE name = ?")
                .bind(at_ms)
                .bind(name)
                .execute(&self.writer)
                .await?;
        if done.rows_affected() == 0 {
            return Err(MetaError::NotFound);
        }
        Ok(())
    }

    async fn delete(&self, name: &str) -> Result<()> {
        let mut tx = self.begin().await?;
        sqlx::query("DELETE FROM grants WHERE subject = ?")
            .bind(name)
            .execute(&mut *tx)
            .await?;
        let done = sqlx::query("DELETE FROM accounts WHERE name = ?")
            .bind(name)
            .execute(&mut *tx)
            .await?;
        if done.rows_affected() == 0 {
            return Err(MetaError::NotFound);
        }
        tx.commit().await?;
        Ok(())
    }
}

#[async_trait]
impl Grants for SqliteBackend {
    async fn put(&self, g: &GrantRecord) -> Result<()> {
        sqlx::query(
            "INSERT INTO grants (namespace, subject, role, created_at) VALUES (?, ?, ?, ?)
             ON CONFLICT(namespace, subject) DO UPDATE SET role = excluded.role",
        )
        .bind(&g.namespace)
        .bind(&g.subject)
        .bind(&g.role)
        .bind(g.created_at_ms)
        .execute(&self.writer)
        .await?;
        Ok(())
    }

    async fn remove(&self, namespace: &str, subject: &str) -> Result<()> {
        let done = sqlx::query("DELETE FROM grants WHERE namespace = ? AND subject = ?")
            .bind(namespace)
            .bind(subject)
            .execute(&self.writer)
            .await?;
        if done.rows_affected() == 0 {
            return Err(MetaError::NotFound);
        }
        Ok(())
    }

    async fn list(&self) -> Result<Vec<GrantRecord>> {
        let rows = sqlx::query(
            "SELECT namespace, subject, role, created_at FROM grants ORDER BY namespace, subject",
        )
        .fetch_all(&self.reader)
        .await?;
        rows.iter().map(grant).collect()
    }

    async fn of(&self, subjects: &[&str]) -> Result<Vec<GrantRecord>> {
        let mut out = Vec::new();
        for s in subjects {
            let rows = sqlx::query(
                "SELECT namespace, subject, role, created_at FROM grants WHERE subject = ?
                 ORDER BY namespace",
            )
            .bind(*s)
            .fetch_all(&self.reader)
            .await?;
            for r in &rows {
                out.push(grant(r)?);
            }
        }
        Ok(out)
    }
}

#[async_trait]
impl SigningKeys for SqliteBackend {
    async fn list(&self) -> Result<Vec<SigningKeyRecord>> {
        let rows = sqlx::query(
            "SELECT kid, algorithm, private_key, public_key, created_at, retired_at
             FROM signing_keys ORDER BY created_at DESC, kid DESC",
        )
        .fetch_all(&self.reader)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(SigningKeyRecord {
                    kid: r.try_get("kid")?,
                    algorithm: r.try_get("algorithm")?,
                    private_key: r.try_get("private_key")?,
                    public_key: r.try_get("public_key")?,
                    created_at_ms: r.try_get("created_at")?,
                    retired_at_ms: r.try_get("retired_at")?,
                })
            })
            .collect()
    }

    async fn rotate(&self, k: &SigningKeyRecord, at_ms: i64) -> Result<()> {
        let mut tx = self.begin().await?;
        sqlx::query("UPDATE signing_keys SET retired_at = ? WHERE retired_at IS NULL")
            .bind(at_ms)
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "INSERT INTO signing_keys (kid, algorithm, private_key, public_key, created_at)
             VALUES (?, ?, ?, ?, ?)",
        )
        .bind(&k.kid)
        .bind(&k.algorithm)
        .bind(&k.private_key)
        .bind(&k.public_key)
        .bind(k.created_at_ms)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }
}

#[async_trait]
impl Audit for SqliteBackend {
    /// Appends in the next group commit (`sqlite/group.rs`), in its own savepoint: a push's
    /// entry then shares the fsync of the manifest writes around it instead of taking one of its
    /// own. Each entry reads the chain head inside the shared transaction, after the entries
    /// before it in the group, so the chain stays in order.
    async fn append(&self, e: &AuditEntry) -> Result<AuditRecord> {
        let entry = e.clone();
        self.group
            .run(move |conn| Box::pin(append_entry(conn, entry)))
            .await
    }

    async fn query(&self, q: &AuditQuery) -> Result<Vec<AuditRecord>> {
        let rows = sqlx::query(
            "SELECT seq, at, actor, action, repo, target, source, outcome, detail, prev_hash, hash
             FROM audit_log
             WHERE seq > ?1
               AND (?2 IS NULL OR repo = ?2) AND (?3 IS NULL OR actor = ?3)
               AND (?4 IS NULL OR action = ?4) AND (?5 IS NULL OR at >= ?5)
               AND (?6 IS NULL OR at < ?6)
             ORDER BY seq LIMIT ?7",
        )
        .bind(q.after_seq)
        .bind(&q.repo)
        .bind(&q.actor)
        .bind(&q.action)
        .bind(q.since_ms)
        .bind(q.until_ms)
        .bind(q.limit as i64)
        .fetch_all(&self.reader)
        .await?;
        rows.iter().map(audit_record).collect()
    }

    async fn head(&self) -> Result<(i64, String)> {
        Ok(
            sqlx::query_as("SELECT seq, hash FROM audit_head WHERE id = 1")
                .fetch_one(&self.reader)
                .await?,
        )
    }

    async fn add_checkpoint(&self, c: &Checkpoint) -> Result<()> {
        sqlx::query(
            "INSERT INTO audit_checkpoints (seq, hash, kid, signature, at) VALUES (?, ?, ?, ?, ?)
             ON CONFLICT(seq) DO NOTHING",
        )
        .bind(c.seq)
        .bind(&c.hash)
        .bind(&c.kid)
        .bind(&c.signature)
        .bind(c.at_ms)
        .execute(&self.writer)
        .await?;
        Ok(())
    }

    async fn checkpoints(&self) -> Result<Vec<Checkpoint>> {
        let rows =
            sqlx::query("SELECT seq, hash, kid, signature, at FROM audit_checkpoints ORDER BY seq")
                .fetch_all(&self.reader)
                .await?;
        rows.iter()
            .map(|r| {
                Ok(Checkpoint {
                    seq: r.try_get("seq")?,
                    hash: r.try_get("hash")?,
                    kid: r.try_get("kid")?,
                    signature: r.try_get("signature")?,
                    at_ms: r.try_get("at")?,
                })
            })
            .collect()
    }
}

/// Links `e` to the chain head and moves the head to it, on a connection inside a transaction.
async fn append_entry(conn: &mut SqliteConnection, e: AuditEntry) -> Result<AuditRecord> {
    Ok(crate::auth::append_audit_sql!(
        conn,
        "SELECT seq, hash FROM audit_head WHERE id = 1",
        e
    ))
}
