//! PostgreSQL implementation of the access-control and audit aggregates. An audit append locks
//! the chain head row (`FOR UPDATE`), so appends from several nodes serialize and never fork.

use async_trait::async_trait;
use sqlx::postgres::PgRow;
use sqlx::Row;

use super::PostgresBackend;
use crate::auth::{
    AccountKind, AccountRecord, Accounts, Audit, AuditEntry, AuditQuery, AuditRecord, Checkpoint,
    GrantRecord, Grants, SigningKeyRecord, SigningKeys,
};
use crate::{MetaError, Result};

fn account(r: &PgRow) -> Result<AccountRecord> {
    Ok(AccountRecord {
        name: r.try_get("name")?,
        kind: AccountKind::parse(r.try_get::<&str, _>("kind")?)?,
        secret_hash: r.try_get("secret_hash")?,
        system_admin: r.try_get::<bool, _>("system_admin")?,
        created_at_ms: r.try_get("created_at")?,
        expires_at_ms: r.try_get("expires_at")?,
        revoked_at_ms: r.try_get("revoked_at")?,
    })
}

fn grant(r: &PgRow) -> Result<GrantRecord> {
    Ok(GrantRecord {
        namespace: r.try_get("namespace")?,
        subject: r.try_get("subject")?,
        role: r.try_get("role")?,
        created_at_ms: r.try_get("created_at")?,
    })
}

fn audit_record(r: &PgRow) -> Result<AuditRecord> {
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
impl Accounts for PostgresBackend {
    async fn create(&self, a: &AccountRecord) -> Result<()> {
        let done = sqlx::query(
            "INSERT INTO accounts (name, kind, secret_hash, system_admin, created_at, expires_at, revoked_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT(name) DO NOTHING",
        )
        .bind(&a.name)
        .bind(a.kind.as_str())
        .bind(&a.secret_hash)
        .bind(a.system_admin)
        .bind(a.created_at_ms)
        .bind(a.expires_at_ms)
        .bind(a.revoked_at_ms)
        .execute(&self.pool)
        .await?;
        if done.rows_affected() == 0 {
            return Err(MetaError::Conflict(format!("account {} exists", a.name)));
        }
        Ok(())
    }

    async fn get(&self, name: &str) -> Result<Option<AccountRecord>> {
        let sql = format!("SELECT {ACCOUNT_COLS} FROM accounts WHERE name = $1");
        sqlx::query(&sql)
            .bind(name)
            .fetch_optional(&self.pool)
            .await?
            .as_ref()
            .map(account)
            .transpose()
    }

    async fn list(&self) -> Result<Vec<AccountRecord>> {
        let sql = format!("SELECT {ACCOUNT_COLS} FROM accounts ORDER BY name");
        let rows = sqlx::query(&sql).fetch_all(&self.pool).await?;
        rows.iter().map(account).collect()
    }

    async fn revoke(&self, name: &str, at_ms: i64) -> Result<()> {
        let done = sqlx::query(
            "UPDATE accounts SET revoked_at = COALESCE(revoked_at, $1) WHERE name = $2",
        )
        .bind(at_ms)
        .bind(name)
        .execute(&self.pool)
        .await?;
        if done.rows_affected() == 0 {
            return Err(MetaError::NotFound);
        }
        Ok(())
    }

    async fn delete(&self, name: &str) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("DELETE FROM grants WHERE subject = $1")
            .bind(name)
            .execute(&mut *tx)
            .await?;
        let done = sqlx::query("DELETE FROM accounts WHERE name = $1")
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
impl Grants for PostgresBackend {
    async fn put(&self, g: &GrantRecord) -> Result<()> {
        sqlx::query(
            "INSERT INTO grants (namespace, subject, role, created_at) VALUES ($1, $2, $3, $4)
             ON CONFLICT(namespace, subject) DO UPDATE SET role = excluded.role",
        )
        .bind(&g.namespace)
        .bind(&g.subject)
        .bind(&g.role)
        .bind(g.created_at_ms)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn remove(&self, namespace: &str, subject: &str) -> Result<()> {
        let done = sqlx::query("DELETE FROM grants WHERE namespace = $1 AND subject = $2")
            .bind(namespace)
            .bind(subject)
            .execute(&self.pool)
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
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(grant).collect()
    }

    async fn of(&self, subjects: &[&str]) -> Result<Vec<GrantRecord>> {
        let mut out = Vec::new();
        for s in subjects {
            let rows = sqlx::query(
                "SELECT namespace, subject, role, created_at FROM grants WHERE subject = $1
                 ORDER BY namespace",
            )
            .bind(*s)
            .fetch_all(&self.pool)
            .await?;
            for r in &rows {
                out.push(grant(r)?);
            }
        }
        Ok(out)
    }
}

#[async_trait]
impl SigningKeys for PostgresBackend {
    async fn list(&self) -> Result<Vec<SigningKeyRecord>> {
        let rows = sqlx::query(
            "SELECT kid, algorithm, private_key, public_key, created_at, retired_at
             FROM signing_keys ORDER BY created_at DESC, kid DESC",
        )
        .fetch_all(&self.pool)
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
        let mut tx = self.pool.begin().await?;
        sqlx::query("UPDATE signing_keys SET retired_at = $1 WHERE retired_at IS NULL")
            .bind(at_ms)
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "INSERT INTO signing_keys (kid, algorithm, private_key, public_key, created_at)
             VALUES ($1, $2, $3, $4, $5)",
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
impl Audit for PostgresBackend {
    async fn append(&self, e: &AuditEntry) -> Result<AuditRecord> {
        let mut tx = self.pool.begin().await?;
        let record = crate::auth::append_audit_sql!(
            tx,
            "SELECT seq, hash FROM audit_head WHERE id = 1 FOR UPDATE",
            e.clone()
        );
        tx.commit().await?;
        Ok(record)
    }

    async fn query(&self, q: &AuditQuery) -> Result<Vec<AuditRecord>> {
        let rows = sqlx::query(
            "SELECT seq, at, actor, action, repo, target, source, outcome, detail, prev_hash, hash
             FROM audit_log
             WHERE seq > $1
               AND ($2 IS NULL OR repo = $2) AND ($3 IS NULL OR actor = $3)
               AND ($4 IS NULL OR action = $4) AND ($5 IS NULL OR at >= $5)
               AND ($6 IS NULL OR at < $6)
             ORDER BY seq LIMIT $7",
        )
        .bind(q.after_seq)
        .bind(&q.repo)
        .bind(&q.actor)
        .bind(&q.action)
        .bind(q.since_ms)
        .bind(q.until_ms)
        .bind(q.limit as i64)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(audit_record).collect()
    }

    async fn head(&self) -> Result<(i64, String)> {
        Ok(
            sqlx::query_as("SELECT seq, hash FROM audit_head WHERE id = 1")
                .fetch_one(&self.pool)
                .await?,
        )
    }

    async fn add_checkpoint(&self, c: &Checkpoint) -> Result<()> {
        sqlx::query(
            "INSERT INTO audit_checkpoints (seq, hash, kid, signature, at) VALUES ($1, $2, $3, $4, $5)
             ON CONFLICT(seq) DO NOTHING",
        )
        .bind(c.seq)
        .bind(&c.hash)
        .bind(&c.kid)
        .bind(&c.signature)
        .bind(c.at_ms)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn checkpoints(&self) -> Result<Vec<Checkpoint>> {
        let rows =
            sqlx::query("SELECT seq, hash, kid, signature, at FROM audit_checkpoints ORDER BY seq")
                .fetch_all(&self.pool)
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
