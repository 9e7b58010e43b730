//! What scrubbing needs from the metadata store, for both backends: a walk over every recorded
//! blob, and the quarantine of blobs whose stored bytes failed their integrity check
//! (docs/scrub.md).

use async_trait::async_trait;
use bonded_types::Digest;

use crate::postgres::PostgresBackend;
use crate::sqlite::SqliteBackend;
use crate::{MetaError, Result};

/// A blob scrub found corrupt or missing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuarantinedBlob {
    pub digest: Digest,
    /// `corrupt` or `missing`.
    pub reason: String,
    /// What was found (e.g. the digest the bytes hash to).
    pub detail: String,
    pub quarantined_at_ms: i64,
}

#[async_trait]
pub trait Integrity: Send + Sync {
    /// Recorded blobs not being deleted, in digest order after `after`, at most `limit`, with
    /// their sizes.
    async fn blobs_after(&self, after: Option<&Digest>, limit: u32) -> Result<Vec<(Digest, u64)>>;
    /// Records `digest` as quarantined (`reason` is `corrupt` or `missing`); a later record
    /// replaces an earlier one.
    async fn quarantine(
        &self,
        digest: &Digest,
        reason: &str,
        detail: &str,
        at_ms: i64,
    ) -> Result<()>;
    async fn quarantined(&self, digest: &Digest) -> Result<Option<QuarantinedBlob>>;
    /// Every quarantined blob, oldest first.
    async fn list_quarantined(&self) -> Result<Vec<QuarantinedBlob>>;
    /// Lifts the quarantine (the blob was pushed again with correct bytes). Whether there was one.
    async fn release(&self, digest: &Digest) -> Result<bool>;
}

type Row = (String, String, String, i64);

fn to_record((digest, reason, detail, at): Row) -> Result<QuarantinedBlob> {
    Ok(QuarantinedBlob {
        digest: digest
            .parse()
            .map_err(|e| MetaError::Corrupt(format!("quarantined digest {digest:?}: {e}")))?,
        reason,
        detail,
        quarantined_at_ms: at,
    })
}

fn to_blobs(rows: Vec<(String, i64)>) -> Result<Vec<(Digest, u64)>> {
    rows.into_iter()
        .map(|(d, size)| {
            let digest = d
                .parse()
                .map_err(|e| MetaError::Corrupt(format!("blob digest {d:?}: {e}")))?;
            Ok((digest, size as u64))
        })
        .collect()
}

const COLUMNS: &str = "digest, reason, detail, quarantined_at";

#[async_trait]
impl Integrity for SqliteBackend {
    async fn blobs_after(&self, after: Option<&Digest>, limit: u32) -> Result<Vec<(Digest, u64)>> {
        let rows: Vec<(String, i64)> = sqlx::query_as(
            "SELECT digest, size FROM blobs WHERE deleting_at IS NULL AND digest > ?
             ORDER BY digest LIMIT ?",
        )
        .bind(after.map(|d| d.to_string()).unwrap_or_default())
        .bind(i64::from(limit))
        .fetch_all(self.reader())
        .await?;
        to_blobs(rows)
    }

    async fn quarantine(
        &self,
        digest: &Digest,
        reason: &str,
        detail: &str,
        at_ms: i64,
    ) -> Result<()> {
        sqlx::query(
            "INSERT INTO quarantined_blobs (digest, reason, detail, quarantined_at)
             VALUES (?, ?, ?, ?)
             ON CONFLICT (digest) DO UPDATE SET reason = excluded.reason,
               detail = excluded.detail, quarantined_at = excluded.quarantined_at",
        )
        .bind(digest.to_string())
        .bind(reason)
        .bind(detail)
        .bind(at_ms)
        .execute(self.writer())
        .await?;
        Ok(())
    }

    async fn quarantined(&self, digest: &Digest) -> Result<Option<QuarantinedBlob>> {
        let row: Option<Row> = sqlx::query_as(&format!(
            "SELECT {COLUMNS} FROM quarantined_blobs WHERE digest = ?"
        ))
        .bind(digest.to_string())
        .fetch_optional(self.reader())
        .await?;
        row.map(to_record).transpose()
    }

    async fn list_quarantined(&self) -> Result<Vec<QuarantinedBlob>> {
        let rows: Vec<Row> = sqlx::query_as(&format!(
            "SELECT {COLUMNS} FROM quarantined_blobs ORDER BY quarantined_at, digest"
        ))
        .fetch_all(self.reader())
        .await?;
        rows.into_iter().map(to_record).collect()
    }

    async fn release(&self, digest: &Digest) -> Result<bool> {
        let done = sqlx::query("DELETE FROM quarantined_blobs WHERE digest = ?")
            .bind(digest.to_string())
            .execute(self.writer())
            .await?;
        Ok(done.rows_affected() > 0)
    }
}

#[async_trait]
impl Integrity for PostgresBackend {
    async fn blobs_after(&self, after: Option<&Digest>, limit: u32) -> Result<Vec<(Digest, u64)>> {
        let rows: Vec<(String, i64)> = sqlx::query_as(
            "SELECT digest, size FROM blobs WHERE deleting_at IS NULL
               AND digest COLLATE \"C\" > $1 ORDER BY digest COLLATE \"C\" LIMIT $2",
        )
        .bind(after.map(|d| d.to_string()).unwrap_or_default())
        .bind(i64::from(limit))
        .fetch_all(self.pool())
        .await?;
        to_blobs(rows)
    }

    async fn quarantine(
        &self,
        digest: &Digest,
        reason: &str,
        detail: &str,
        at_ms: i64,
    ) -> Result<()> {
        sqlx::query(
            "INSERT INTO quarantined_blobs (digest, reason, detail, quarantined_at)
             VALUES ($1, $2, $3, $4)
             ON CONFLICT (digest) DO UPDATE SET reason = excluded.reason,
               detail = excluded.detail, quarantined_at = excluded.quarantined_at",
        )
        .bind(digest.to_string())
        .bind(reason)
        .bind(detail)
        .bind(at_ms)
        .execute(self.pool())
        .await?;
        Ok(())
    }

    async fn quarantined(&self, digest: &Digest) -> Result<Option<QuarantinedBlob>> {
        let row: Option<Row> = sqlx::query_as(&format!(
            "SELECT {COLUMNS} FROM quarantined_blobs WHERE digest = $1"
        ))
        .bind(digest.to_string())
        .fetch_optional(self.pool())
        .await?;
        row.map(to_record).transpose()
    }

    async fn list_quarantined(&self) -> Result<Vec<QuarantinedBlob>> {
        let rows: Vec<Row> = sqlx::query_as(&format!(
            "SELECT {COLUMNS} FROM quarantined_blobs ORDER BY quarantined_at, digest COLLATE \"C\""
        ))
        .fetch_all(self.pool())
        .await?;
        rows.into_iter().map(to_record).collect()
    }

    async fn release(&self, digest: &Digest) -> Result<bool> {
        let done = sqlx::query("DELETE FROM quarantined_blobs WHERE digest = $1")
            .bind(digest.to_string())
            .execute(self.pool())
            .await?;
        Ok(done.rows_affected() > 0)
    }
}
