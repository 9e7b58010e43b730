//! SQLite implementation of the supply-chain aggregates.

use async_trait::async_trait;
use bonded_types::{Digest, RepoName};
use sqlx::sqlite::SqliteRow;
use sqlx::Row;

use super::{parse, SqliteBackend};
use crate::trust::{Attestations, NewTrustedKey, StoredReferrer, Trust, TrustedKeyRecord};
use crate::{now_ms, MetaError, Result};

fn key_row(r: &SqliteRow) -> TrustedKeyRecord {
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
impl Trust for SqliteBackend {
    async fn add_key(&self, k: &NewTrustedKey) -> Result<()> {
        let done = sqlx::query(
            "INSERT INTO trusted_keys (namespace, key_set, key_id, algorithm, public_key,
               not_before, not_after, comment, created_at)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
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
        .execute(&self.writer)
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
             FROM trusted_keys WHERE namespace = ? ORDER BY key_set, key_id",
        )
        .bind(namespace)
        .fetch_all(&self.reader)
        .await?;
        Ok(rows.iter().map(key_row).collect())
    }

    async fn revoke(&self, namespace: &str, key_id: &str, at_ms: i64) -> Result<u64> {
        let done = sqlx::query(
            "UPDATE trusted_keys SET revoked_at = COALESCE(revoked_at, ?)
             WHERE namespace = ? AND key_id = ?",
        )
        .bind(at_ms)
        .bind(namespace)
        .bind(key_id)
        .execute(&self.writer)
        .await?;
        match done.rows_affected() {
            0 => Err(MetaError::NotFound),
            n => Ok(n),
        }
    }

    async fn namespaces(&self) -> Result<Vec<String>> {
        Ok(
            sqlx::query_scalar("SELECT DISTINCT namespace FROM trusted_keys ORDER BY namespace")
                .fetch_all(&self.reader)
                .await?,
        )
    }
}

#[async_trait]
impl Attestations for SqliteBackend {
    async fn referrer_manifests(
        &self,
        repo: &RepoName,
        subject: &Digest,
        artifact_types: &[&str],
    ) -> Result<Vec<StoredReferrer>> {
        if artifact_types.is_empty() {
            return Ok(vec![]);
        }
        let placeholders = vec!["?"; artifact_types.len()].join(", ");
        let sql = format!(
            "SELECT m.digest, m.artifact_type, m.content, m.created_at FROM manifests m
             JOIN repositories r ON r.id = m.repo_id
             WHERE r.name = ? AND m.subject = ? AND m.artifact_type IN ({placeholders})
               AND m.deleted_at IS NULL
             ORDER BY m.created_at, m.digest"
        );
        let mut q = sqlx::query(&sql)
            .bind(repo.as_str())
            .bind(subject.to_string());
        for t in artifact_types {
            q = q.bind(*t);
        }
        let rows = q.fetch_all(&self.reader).await?;
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
             WHERE r.name = ? AND m.subject IS NULL AND m.deleted_at IS NULL ORDER BY m.digest",
        )
        .bind(repo.as_str())
        .fetch_all(&self.reader)
        .await?;
        rows.iter().map(|s| parse(s)).collect()
    }
}
