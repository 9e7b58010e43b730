//! PostgreSQL implementation of the supply-chain aggregates.

use async_trait::async_trait;
use bonded_types::{Digest, RepoName};
use sqlx::postgres::PgRow;
use sqlx::Row;

use super::{parse, PostgresBackend};
use crate::trust::{Attestations, NewTrustedKey, StoredReferrer, Trust, TrustedKeyRecord};
use crate::{now_ms, MetaError, Result};

fn key_row(r: &PgRow) -> TrustedKeyRecord {
    TrustedKeyRecord {
        key: NewTrustedKey {
            namespace: r.get(0),
            key_set: r.get(1),
            key_id: r.get(2),
            algorithm: r.get(3),
            public_key: r.get(4),
            not_before_ms: r.get(5),
            not_after_ms: r.get(6),
            comment: r.get(8),
        },
        revoked_at_ms: r.get(7),
        created_at_ms: r.get(9),
    }
}

#[async_trait]
impl Trust for PostgresBackend {
    async fn add_key(&self, k: &NewTrustedKey) -> Result<()> {
        let done = sqlx::query(
            "INSERT INTO trusted_keys (namespace, key_set, key_id, algorithm, public_key,
               not_before, not_after, comment, created_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT DO NOTHING",
        )
        .bind(&k.namespace)
        .bind(&k.key_set)
        .bind(&k.key_id)
        .bind(&k.algorithm)
        .bind(&k.public_key)
        .bind(k.not_before_ms)
        .bind(k.not_after_ms)
        .bind(&k.comment)
        .bind(now_ms())
        .execute(&self.pool)
        .await?;
        if done.rows_affected() == 0 {
            return Err(MetaError::Conflict(format!(
                "key {} is already in key set {} of namespace {}",
                k.key_id, k.key_set, k.namespace
            )));
        }
        Ok(())
    }

    async fn keys(&self, namespace: &str) -> Result<Vec<TrustedKeyRecord>> {
        let rows = sqlx::query(
            "SELECT namespace, key_set, key_id, algorithm, public_key, not_before, not_after,
                    revoked_at, comment, created_at
             FROM trusted_keys WHERE namespace = $1 ORDER BY key_set, key_id",
        )
        .bind(namespace)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.iter().map(key_row).collect())
    }

    async fn revoke(&self, namespace: &str, key_id: &str, at_ms: i64) -> Result<u64> {
        let done = sqlx::query(
            "UPDATE trusted_keys SET revoked_at = COALESCE(revoked_at, $1)
             WHERE namespace = $2 AND key_id = $3",
        )
        .bind(at_ms)
        .bind(namespace)
        .bind(key_id)
        .execute(&self.pool)
        .await?;
        match done.rows_affected() {
            0 => Err(MetaError::NotFound),
            n => Ok(n),
        }
    }

    async fn namespaces(&self) -> Result<Vec<String>> {
        Ok(
            sqlx::query_scalar("SELECT DISTINCT namespace FROM trusted_keys ORDER BY namespace")
                .fetch_all(&self.pool)
                .await?,
        )
    }
}

#[async_trait]
impl Attestations for PostgresBackend {
    async fn referrer_manifests(
        &self,
        repo: &RepoName,
        subject: &Digest,
        artifact_types: &[&str],
    ) -> Result<Vec<StoredReferrer>> {
        if artifact_types.is_empty() {
            return Ok(vec![]);
        }
        let types: Vec<String> = artifact_types.iter().map(|t| t.to_string()).collect();
        let rows = sqlx::query(
            "SELECT m.digest, m.artifact_type, m.content, m.created_at FROM manifests m
             JOIN repositories r ON r.id = m.repo_id
             WHERE r.name = $1 AND m.subject = $2 AND m.artifact_type = ANY($3)
               AND m.deleted_at IS NULL
             ORDER BY m.created_at, m.digest COLLATE \"C\"",
        )
        .bind(repo.as_str())
        .bind(subject.to_string())
        .bind(&types)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(StoredReferrer {
                    digest: parse(r.get::<&str, _>(0))?,
                    artifact_type: r.get(1),
                    content: r.get(2),
                    pushed_at_ms: r.get(3),
                })
            })
            .collect()
    }

    async fn subjects(&self, repo: &RepoName) -> Result<Vec<Digest>> {
        let rows: Vec<String> = sqlx::query_scalar(
            "SELECT m.digest FROM manifests m JOIN repositories r ON r.id = m.repo_id
             WHERE r.name = $1 AND m.subject IS NULL AND m.deleted_at IS NULL ORDER BY m.digest COLLATE \"C\"",
        )
        .bind(repo.as_str())
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(|s| parse(s)).collect()
    }
}
