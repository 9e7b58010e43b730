//! Account, grant and signing-key management (the `/api/v1` operations). System admins manage
//! everything; a namespace's admins manage the grants inside it. Every change is recorded in the
//! audit log.

use std::time::Duration;

use bonded_meta::{AccountKind, AccountRecord, GrantRecord, MetaError};

use super::{
    hash_blocking, info, not_found, require_admin, secret, valid_account_name, AccountInfo, Action,
    Auth, AuthError, Namespace, NewRobot, Principal, Result, Role, ANONYMOUS,
};
use crate::now_ms;

impl Auth {
    pub async fn create_user(
        &self,
        by: &Principal,
        name: &str,
        password: &str,
        system_admin: bool,
        source: &str,
    ) -> Result<AccountInfo> {
        require_admin(by)?;
        valid_account_name(name)?;
        if password.len() < 8 {
            return Err(AuthError::Invalid(
                "a password must be at least 8 characters".into(),
            ));
        }
        let record = AccountRecord {
            name: name.into(),
            kind: AccountKind::User,
            secret_hash: hash_blocking(password.to_string()).await?,
            system_admin,
            created_at_ms: now_ms(),
            expires_at_ms: None,
            revoked_at_ms: None,
        };
        self.meta
            .accounts()
            .create(&record)
            .await
            .map_err(|e| match e {
                MetaError::Conflict(_) => {
                    AuthError::Conflict(format!("account {name} already exists"))
                }
                other => other.into(),
            })?;
        let detail = if system_admin {
            "user, system admin"
        } else {
            "user"
        };
        self.record(by.name(), "account.create", "", name, source, "ok", detail)
            .await;
        Ok(info(record))
    }

    /// Creates a robot account with a generated secret, valid for `ttl` (None: no expiry).
    pub async fn create_robot(
        &self,
        by: &Principal,
        name: &str,
        ttl: Option<Duration>,
        source: &str,
    ) -> Result<NewRobot> {
        require_admin(by)?;
        valid_account_name(name)?;
        let secret = secret::generate();
        let now = now_ms();
        let expires_at_ms = ttl.map(|t| now + t.as_millis() as i64);
        let record = AccountRecord {
            name: name.into(),
            kind: AccountKind::Robot,
            secret_hash: hash_blocking(secret.clone()).await?,
            system_admin: false,
            created_at_ms: now,
            expires_at_ms,
            revoked_at_ms: None,
        };
        self.meta
            .accounts()
            .create(&record)
            .await
            .map_err(|e| match e {
                MetaError::Conflict(_) => {
                    AuthError::Conflict(format!("account {name} already exists"))
                }
                other => other.into(),
            })?;
        self.record(by.name(), "account.create", "", name, source, "ok", "robot")
            .await;
        Ok(NewRobot {
            name: name.into(),
            secret,
            expires_at_ms,
        })
    }

    pub async fn accounts(&self, by: &Principal) -> Result<Vec<AccountInfo>> {
        require_admin(by)?;
        Ok(self
            .meta
            .accounts()
            .list()
            .await?
            .into_iter()
            .map(info)
            .collect())
    }

    pub async fn revoke(&self, by: &Principal, name: &str, source: &str) -> Result<()> {
        require_admin(by)?;
        self.meta
            .accounts()
            .revoke(name, now_ms())
            .await
            .map_err(|e| not_found(e, format!("no account named {name}")))?;
        self.record(by.name(), "account.revoke", "", name, source, "ok", "")
            .await;
        Ok(())
    }

    pub async fn delete_account(&self, by: &Principal, name: &str, source: &str) -> Result<()> {
        require_admin(by)?;
        if by.name() == name {
            return Err(AuthError::Invalid(
                "an admin cannot delete their own account".into(),
            ));
        }
        self.meta
            .accounts()
            .delete(name)
            .await
            .map_err(|e| not_found(e, format!("no account named {name}")))?;
        self.record(by.name(), "account.delete", "", name, source, "ok", "")
            .await;
        Ok(())
    }

    pub async fn put_grant(
        &self,
        by: &Principal,
        namespace: &str,
        subject: &str,
        role: &str,
        source: &str,
    ) -> Result<()> {
        let ns: Namespace = namespace.parse().map_err(AuthError::Invalid)?;
        self.require_manager(by, &ns).await?;
        let role: Role = role.parse().map_err(AuthError::Invalid)?;
        if subject != ANONYMOUS && self.meta.accounts().get(subject).await?.is_none() {
            return Err(AuthError::NotFound(format!(
                "no account named {subject} (use `{ANONYMOUS}` for anonymous access)"
            )));
        }
        if subject == ANONYMOUS && role != Role::Reader {
            return Err(AuthError::Invalid(
                "anonymous access can only be the reader role (pull)".into(),
            ));
        }
        self.meta
            .grants()
            .put(&GrantRecord {
                namespace: namespace.into(),
                subject: subject.into(),
                role: role.as_str().into(),
                created_at_ms: now_ms(),
            })
            .await?;
        self.record(
            by.name(),
            "grant.put",
            "",
            &format!("{namespace} {subject}"),
            source,
            "ok",
            role.as_str(),
        )
        .await;
        Ok(())
    }

    pub async fn remove_grant(
        &self,
        by: &Principal,
        namespace: &str,
        subject: &str,
        source: &str,
    ) -> Result<()> {
        let ns: Namespace = namespace.parse().map_err(AuthError::Invalid)?;
        self.require_manager(by, &ns).await?;
        self.meta
            .grants()
            .remove(namespace, subject)
            .await
            .map_err(|e| not_found(e, format!("{subject} holds no grant on {namespace}")))?;
        self.record(
            by.name(),
            "grant.remove",
            "",
            &format!("{namespace} {subject}"),
            source,
            "ok",
            "",
        )
        .await;
        Ok(())
    }

    /// Every grant for a system admin; for a namespace admin, the grants inside the namespaces
    /// it manages.
    pub async fn grants(&self, by: &Principal) -> Result<Vec<GrantRecord>> {
        let all = self.meta.grants().list().await?;
        if by.is_system_admin() {
            return Ok(all);
        }
        let managed = self.managed(by).await?;
        if managed.is_empty() {
            return Err(not_manager(by));
        }
        Ok(all
            .into_iter()
            .filter(|g| {
                g.namespace
                    .parse::<Namespace>()
                    .is_ok_and(|n| managed.iter().any(|m| m.covers(&n)))
            })
            .collect())
    }

    /// Namespaces `by` holds the admin role on.
    async fn managed(&self, by: &Principal) -> Result<Vec<Namespace>> {
        let access = self.access(by).await?;
        Ok(access
            .grants
            .into_iter()
            .filter(|(_, role)| role.allows(Action::Manage))
            .map(|(ns, _)| ns)
            .collect())
    }

    /// System admins manage every grant; a namespace admin those inside its namespace.
    async fn require_manager(&self, by: &Principal, ns: &Namespace) -> Result<()> {
        if by.is_system_admin() || self.managed(by).await?.iter().any(|m| m.covers(ns)) {
            Ok(())
        } else {
            Err(not_manager(by))
        }
    }

    /// Rotates the token signing key; tokens signed by the old one stay valid until they expire.
    pub async fn rotate_key(&self, by: &Principal, source: &str) -> Result<String> {
        require_admin(by)?;
        let kid = self.keys.rotate().await.map_err(AuthError::Internal)?;
        self.record(by.name(), "key.rotate", "", &kid, source, "ok", "")
            .await;
        Ok(kid)
    }
}

fn not_manager(by: &Principal) -> AuthError {
    AuthError::Forbidden(format!(
        "{} may not manage grants here: only system admins, and admins of a namespace for \
         grants inside it",
        by.name()
    ))
}
