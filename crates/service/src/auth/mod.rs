//! Access control: who the caller is (passwords and robot secrets checked against argon2
//! hashes, bearer tokens against the shared signing keys), what it may do (roles granted per
//! namespace, decided by the pure [`policy`] module), tokens scoped to what it asked for and may
//! do, and the account/grant management behind `/api/v1`.
//!
//! Called by the HTTP edge with parsed names; calls the metadata store's `Accounts`, `Grants`
//! and `SigningKeys`, and records what it does in the audit log. Knows nothing of HTTP headers.
//!
//! Invariant: a secret is never stored, logged or returned except once, at creation; a token is
//! never granted an action its holder may not do.

mod keys;
mod limiter;
mod manage;
pub mod policy;
mod secret;
pub mod token;

use std::sync::Arc;
use std::time::Duration;

pub use bonded_meta::{AccountKind, GrantRecord};
use bonded_meta::{AccountRecord, AuditEntry, MetaError, MetaStore};
use bonded_types::RepoName;

pub use keys::Keys;
pub use policy::{Access, Action, Namespace, Role};
pub use token::{AccessEntry, Claims, TokenError};

use crate::audit::Auditor;
use crate::now_ms;

/// The name anonymous grants are held by; no account may take it.
pub const ANONYMOUS: &str = "anonymous";
const RESERVED: [&str; 3] = [ANONYMOUS, "system", "admin-bootstrap"];

#[derive(Debug, Clone)]
pub struct AuthConfig {
    /// The `service` of tokens (their audience).
    pub service: String,
    pub token_ttl: Duration,
    /// Failed logins allowed per account and per source address in one window.
    pub login_max_failures: u32,
    pub login_window: Duration,
}

/// Who is calling.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Principal {
    Anonymous,
    Account {
        name: String,
        kind: AccountKind,
        system_admin: bool,
    },
}

impl Principal {
    pub fn name(&self) -> &str {
        match self {
            Principal::Anonymous => ANONYMOUS,
            Principal::Account { name, .. } => name,
        }
    }

    pub fn is_system_admin(&self) -> bool {
        matches!(
            self,
            Principal::Account {
                system_admin: true,
                ..
            }
        )
    }
}

/// Access-control decisions. The HTTP edge maps each to its protocol's codes.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// Missing, wrong, expired or revoked credentials: logging in (again) may help.
    #[error("{0}")]
    Unauthenticated(String),
    #[error("too many failed logins; try again in {retry_after_secs} s")]
    RateLimited { retry_after_secs: u64 },
    /// Authenticated, but not allowed.
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error("internal error: {0}")]
    Internal(String),
}

impl From<MetaError> for AuthError {
    fn from(e: MetaError) -> AuthError {
        match e {
            MetaError::NotFound => AuthError::NotFound("not found".into()),
            MetaError::Conflict(m) => AuthError::Conflict(m),
            other => AuthError::Internal(other.to_string()),
        }
    }
}

type Result<T, E = AuthError> = std::result::Result<T, E>;

/// A token as handed to a client.
#[derive(Debug, Clone)]
pub struct IssuedToken {
    pub token: String,
    pub expires_in: u64,
    pub issued_at_secs: i64,
    pub claims: Claims,
}

/// A newly created robot; the secret is shown now and never again.
#[derive(Debug, Clone)]
pub struct NewRobot {
    pub name: String,
    pub secret: String,
    pub expires_at_ms: Option<i64>,
}

/// An account as listed (no secret hash).
#[derive(Debug, Clone)]
pub struct AccountInfo {
    pub name: String,
    pub kind: AccountKind,
    pub system_admin: bool,
    pub created_at_ms: i64,
    pub expires_at_ms: Option<i64>,
    pub revoked_at_ms: Option<i64>,
}

/// The access-control service. Cheap to clone.
#[derive(Clone)]
pub struct Auth {
    meta: MetaStore,
    cfg: Arc<AuthConfig>,
    keys: Keys,
    limiter: Arc<limiter::Limiter>,
    audit: Auditor,
    /// (name, SHA-256 of a secret) → the stored hash it was verified against. Lets HTTP Basic on
    /// every request skip argon2 while the account's stored hash is unchanged; the account row
    /// (revocation, expiry) is still read every time.
    verified: Arc<std::sync::Mutex<VerifiedCache>>,
    /// Bearer tokens whose signature verified, until they expire.
    tokens: Arc<std::sync::Mutex<std::collections::HashMap<String, Arc<Claims>>>>,
}

/// (account name, SHA-256 of the secret) → the stored hash it matched.
type VerifiedCache = std::collections::HashMap<(String, [u8; 32]), String>;
const VERIFIED_CACHE_MAX: usize = 10_000;

fn valid_account_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b))
        && name.as_bytes()[0].is_ascii_alphanumeric();
    if !ok {
        return Err(AuthError::Invalid(format!(
            "account name {name:?} must be 1-64 characters of a-z, 0-9, '.', '_' or '-', \
             starting with a letter or digit"
        )));
    }
    if RESERVED.contains(&name) {
        return Err(AuthError::Invalid(format!(
            "account name {name:?} is reserved"
        )));
    }
    Ok(())
}

fn require_admin(by: &Principal) -> Result<()> {
    if by.is_system_admin() {
        Ok(())
    } else {
        Err(AuthError::Forbidden(format!(
            "{} is not a system admin; only system admins manage accounts, grants and keys",
            by.name()
        )))
    }
}

impl Auth {
    pub fn new(meta: MetaStore, cfg: AuthConfig, keys: Keys, audit: Auditor) -> Auth {
        let limiter = limiter::Limiter::new(cfg.login_max_failures, cfg.login_window);
        Auth {
            meta,
            cfg: Arc::new(cfg),
            keys,
            limiter: Arc::new(limiter),
            audit,
            verified: Arc::default(),
            tokens: Arc::default(),
        }
    }

    pub fn service(&self) -> &str {
        &self.cfg.service
    }

    pub fn audit(&self) -> &Auditor {
        &self.audit
    }

    /// On a registry without accounts, creates the system admin `admin`. Returns the password
    /// when it was generated (the caller shows it once); `None` if accounts already existed or
    /// the given password was used.
    pub async fn bootstrap_admin(&self, password: Option<String>) -> Result<Option<String>> {
        if !self.meta.accounts().list().await?.is_empty() {
            return Ok(None);
        }
        let (password, generated) = match password {
            Some(p) if p.len() >= 8 => (p, false),
            Some(_) => {
                return Err(AuthError::Invalid(
                    "the admin password must be at least 8 characters".into(),
                ))
            }
            None => (secret::generate(), true),
        };
        let hash = hash_blocking(password.clone()).await?;
        let created = self
            .meta
            .accounts()
            .create(&AccountRecord {
                name: "admin".into(),
                kind: AccountKind::User,
                secret_hash: hash,
                system_admin: true,
                created_at_ms: now_ms(),
                expires_at_ms: None,
                revoked_at_ms: None,
            })
            .await;
        match created {
            // Another node bootstrapped first.
            Err(MetaError::Conflict(_)) => return Ok(None),
            other => other?,
        }
        self.record(
            "system",
            "account.create",
            "",
            "admin",
            "",
            "ok",
            "bootstrap system admin",
        )
        .await;
        Ok(generated.then_some(password))
    }

    /// Checks a name and secret (HTTP Basic, token requests). Failures are counted per account
    /// and per source; past the budget every attempt is refused without checking.
    pub async fn login(&self, name: &str, secret: &str, source: &str) -> Result<Principal> {
        let acct_key = format!("acct:{name}");
        let src_key = format!("src:{source}");
        let keys = [acct_key.as_str(), src_key.as_str()];
        if let Some(retry_after_secs) = self.limiter.blocked(&keys) {
            return Err(AuthError::RateLimited { retry_after_secs });
        }
        let account = self.meta.accounts().get(name).await?;
        let hash = account
            .as_ref()
            .map(|a| a.secret_hash.clone())
            .unwrap_or_else(|| secret::decoy_hash().to_string());
        let cache_key = (name.to_string(), sha256(secret));
        let cached = account.is_some()
            && self
                .verified
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .get(&cache_key)
                .is_some_and(|h| *h == hash);
        let matches = cached || verify_blocking(secret.to_string(), hash.clone()).await?;
        if matches && !cached && account.is_some() {
            let mut v = self.verified.lock().unwrap_or_else(|e| e.into_inner());
            if v.len() >= VERIFIED_CACHE_MAX {
                v.clear();
            }
            v.insert(cache_key, hash);
        }
        let now = now_ms();
        let refusal = match &account {
            _ if !matches => Some("wrong name or secret"),
            None => Some("wrong name or secret"),
            Some(a) if a.revoked_at_ms.is_some() => Some("account was revoked"),
            Some(a) if a.expires_at_ms.is_some_and(|e| e <= now) => Some("account has expired"),
            Some(_) => None,
        };
        match (refusal, account) {
            (None, Some(a)) => Ok(Principal::Account {
                name: a.name,
                kind: a.kind,
                system_admin: a.system_admin,
            }),
            (why, _) => {
                let why = why.unwrap_or("wrong name or secret");
                self.limiter.failed(&keys);
                self.record(name, "login", "", "", source, "failed", why)
                    .await;
                // The client learns only that it failed; the audit log says why.
                Err(AuthError::Unauthenticated(
                    "authentication failed: wrong name or secret, or the account is revoked or expired"
                        .into(),
                ))
            }
        }
    }

    /// The grants that apply to `p` (its own and the anonymous ones).
    pub async fn access(&self, p: &Principal) -> Result<Access> {
        if p.is_system_admin() {
            return Ok(Access::everything());
        }
        let subjects: Vec<&str> = match p {
            Principal::Anonymous => vec![ANONYMOUS],
            Principal::Account { name, .. } => vec![name.as_str(), ANONYMOUS],
        };
        let mut grants = Vec::new();
        for g in self.meta.grants().of(&subjects).await? {
            match (g.namespace.parse::<Namespace>(), g.role.parse::<Role>()) {
                (Ok(ns), Ok(role)) => grants.push((ns, role)),
                _ => {
                    tracing::warn!(namespace = %g.namespace, role = %g.role, "ignoring an unreadable grant")
                }
            }
        }
        Ok(Access {
            system_admin: false,
            grants,
        })
    }

    /// Issues a token for the scopes asked (`repository:<name>:<actions>`,
    /// `registry:catalog:*`), each cut down to what `p` may do. Unknown or malformed scopes are
    /// left out, never refused: the registry answers the request the token is used for.
    pub async fn issue(
        &self,
        p: &Principal,
        scopes: &[String],
        source: &str,
    ) -> Result<IssuedToken> {
        let access = self.access(p).await?;
        let mut entries: Vec<AccessEntry> = Vec::new();
        for scope in scopes.iter().flat_map(|s| s.split(' ')) {
            if let Some(rest) = scope.strip_prefix("repository:") {
                let Some((name, actions)) = rest.rsplit_once(':') else {
                    continue;
                };
                let Ok(repo) = name.parse::<RepoName>() else {
                    continue;
                };
                let wanted: Vec<Action> = actions
                    .split(',')
                    .filter_map(Action::parse_scope)
                    .flatten()
                    .collect();
                let granted = access.permitted(&repo, &wanted);
                let names: Vec<String> = granted
                    .iter()
                    .filter(|a| **a != Action::Manage)
                    .map(|a| a.as_str().to_string())
                    .collect();
                if let Some(e) = entries
                    .iter_mut()
                    .find(|e| e.kind == "repository" && e.name == repo.as_str())
                {
                    for n in names {
                        if !e.actions.contains(&n) {
                            e.actions.push(n);
                        }
                    }
                } else {
                    entries.push(AccessEntry {
                        kind: "repository".into(),
                        name: repo.as_str().to_string(),
                        actions: names,
                    });
                }
            } else if scope == "registry:catalog:*" && !entries.iter().any(|e| e.kind == "registry")
            {
                entries.push(AccessEntry {
                    kind: "registry".into(),
                    name: "catalog".into(),
                    actions: vec!["*".into()],
                });
            }
        }
        let now = now_ms() / 1000;
        let ttl = self.cfg.token_ttl.as_secs();
        let claims = Claims {
            iss: self.cfg.service.clone(),
            sub: match p {
                Principal::Anonymous => String::new(),
                Principal::Account { name, .. } => name.clone(),
            },
            aud: self.cfg.service.clone(),
            exp: now + ttl as i64,
            nbf: now,
            iat: now,
            jti: secret::random_hex(16),
            access: entries,
        };
        let token = self
            .keys
            .sign_token(&claims)
            .await
            .map_err(AuthError::Internal)?;
        let granted: Vec<String> = claims
            .access
            .iter()
            .map(|e| format!("{}:{}:{}", e.kind, e.name, e.actions.join(",")))
            .collect();
        self.record(p.name(), "token", "", "", source, "ok", &granted.join(" "))
            .await;
        Ok(IssuedToken {
            token,
            expires_in: ttl,
            issued_at_secs: now,
            claims,
        })
    }

    /// Checks a bearer token's signature, expiry and audience. A token whose signature was
    /// checked once is remembered until it expires, so a client reusing its token (every pull of
    /// a deploy) costs a map lookup rather than an Ed25519 verification.
    pub async fn verify(&self, token: &str) -> Result<Arc<Claims>, TokenError> {
        let now = now_ms() / 1000;
        let cached = self
            .tokens
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(token)
            .cloned();
        if let Some(claims) = cached {
            if claims.exp <= now {
                return Err(TokenError::Expired);
            }
            return Ok(claims);
        }
        let kid = token::kid(token)?;
        let key = self
            .keys
            .public(&kid, true)
            .await
            .ok_or(TokenError::UnknownKey)?;
        let claims = Arc::new(token::verify(token, &key, &self.cfg.service, now)?);
        let mut cache = self.tokens.lock().unwrap_or_else(|e| e.into_inner());
        if cache.len() >= VERIFIED_CACHE_MAX {
            cache.retain(|_, c| c.exp > now);
            if cache.len() >= VERIFIED_CACHE_MAX {
                cache.clear();
            }
        }
        cache.insert(token.to_string(), claims.clone());
        Ok(claims)
    }

    /// The principal a verified token speaks for, looked up again (for decisions the token
    /// alone cannot make, such as listing the catalog).
    pub async fn principal_of(&self, claims: &Claims) -> Result<Principal> {
        if claims.sub.is_empty() {
            return Ok(Principal::Anonymous);
        }
        match self.meta.accounts().get(&claims.sub).await? {
            Some(a)
                if a.revoked_at_ms.is_none() && a.expires_at_ms.is_none_or(|e| e > now_ms()) =>
            {
                Ok(Principal::Account {
                    name: a.name,
                    kind: a.kind,
                    system_admin: a.system_admin,
                })
            }
            _ => Err(AuthError::Unauthenticated(
                "the token's account no longer exists or was revoked".into(),
            )),
        }
    }

    #[allow(clippy::too_many_arguments)]
    async fn record(
        &self,
        actor: &str,
        action: &str,
        repo: &str,
        target: &str,
        source: &str,
        outcome: &str,
        detail: &str,
    ) {
        self.audit
            .record(AuditEntry {
                at_ms: 0,
                actor: actor.into(),
                action: action.into(),
                repo: repo.into(),
                target: target.into(),
                source: source.into(),
                outcome: outcome.into(),
                detail: detail.into(),
            })
            .await;
    }
}

fn not_found(e: MetaError, msg: String) -> AuthError {
    match e {
        MetaError::NotFound => AuthError::NotFound(msg),
        other => other.into(),
    }
}

fn info(a: AccountRecord) -> AccountInfo {
    AccountInfo {
        name: a.name,
        kind: a.kind,
        system_admin: a.system_admin,
        created_at_ms: a.created_at_ms,
        expires_at_ms: a.expires_at_ms,
        revoked_at_ms: a.revoked_at_ms,
    }
}

fn sha256(s: &str) -> [u8; 32] {
    use sha2::Digest as _;
    sha2::Sha256::digest(s.as_bytes()).into()
}

/// argon2 is deliberately slow; keep it off the async workers.
async fn hash_blocking(secret: String) -> Result<String> {
    tokio::task::spawn_blocking(move || secret::hash(&secret))
        .await
        .map_err(|e| AuthError::Internal(e.to_string()))?
        .map_err(AuthError::Internal)
}

async fn verify_blocking(secret: String, hash: String) -> Result<bool> {
    tokio::task::spawn_blocking(move || secret::verify(&secret, &hash))
        .await
        .map_err(|e| AuthError::Internal(e.to_string()))
}
