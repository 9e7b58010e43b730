//! Vulnerability operations: what the scan job, the metrics and the mirror refresh need beyond
//! the [`crate::Vulns`] aggregate — severity counts over the latest scans of live artifacts, the
//! signed report referrer of a stored scan, and the state of each configured OSV mirror (when it
//! was last fetched, how that ended, and the validators for a conditional GET).
//!
//! Like `vulns.rs`, the SQL is written once with `$n` parameters and expanded into both backends.

use async_trait::async_trait;
use bonded_types::{Digest, RepoName};

use crate::Result;

/// The last fetch of one configured mirror URL.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct MirrorState {
    pub url: String,
    /// When the last fetch finished (Unix ms).
    pub fetched_at_ms: i64,
    /// `imported`, `unchanged` (the server answered 304) or `failed`.
    pub outcome: String,
    /// A one-line summary: the import's counts, or what went wrong.
    pub message: String,
    /// Validators of the last archive imported, sent back on the next fetch.
    pub etag: Option<String>,
    pub last_modified: Option<String>,
    /// When an archive was last imported from it (0 if never).
    pub imported_at_ms: i64,
}

#[async_trait]
pub trait VulnOps: Send + Sync {
    /// The database generation and when it was last updated (Unix ms): one row, unlike
    /// [`crate::Vulns::db_state`], which counts every advisory. Called once per scan.
    async fn db_head(&self) -> Result<(i64, i64)>;
    /// The `counts` (JSON object, by severity) of the latest scan of every live manifest.
    async fn live_scan_counts(&self) -> Result<Vec<String>>;
    /// Records the signed report referrer of the stored scan of (repo, digest).
    async fn set_scan_report(
        &self,
        repo: &RepoName,
        digest: &Digest,
        report: &Digest,
    ) -> Result<()>;
    async fn mirror(&self, url: &str) -> Result<Option<MirrorState>>;
    /// Every mirror fetched so far, by URL.
    async fn mirrors(&self) -> Result<Vec<MirrorState>>;
    /// Inserts or replaces the state of `state.url`.
    async fn put_mirror(&self, state: &MirrorState) -> Result<()>;
}

/// The SQL of [`VulnOps`] (see `vulns_sql!`).
macro_rules! vuln_ops_sql {
    ($backend:ty, $write:ident, $read:ident) => {
        type MirrorTuple = (
            String,
            i64,
            String,
            String,
            Option<String>,
            Option<String>,
            i64,
        );

        fn mirror_of(t: MirrorTuple) -> $crate::vuln_ops::MirrorState {
            let (url, fetched_at_ms, outcome, message, etag, last_modified, imported_at_ms) = t;
            $crate::vuln_ops::MirrorState {
                url,
                fetched_at_ms,
                outcome,
                message,
                etag,
                last_modified,
                imported_at_ms,
            }
        }

        const MIRROR_COLUMNS: &str =
            "url, fetched_at, outcome, message, etag, last_modified, imported_at";

        #[async_trait::async_trait]
        impl $crate::vuln_ops::VulnOps for $backend {
            async fn db_head(&self) -> $crate::Result<(i64, i64)> {
                Ok(
                    sqlx::query_as("SELECT generation, updated_at FROM vuln_db WHERE id = 1")
                        .fetch_one(&self.$read)
                        .await?,
                )
            }

            async fn live_scan_counts(&self) -> $crate::Result<Vec<String>> {
                Ok(sqlx::query_scalar(
                    "SELECT v.counts FROM vuln_scans v
                     JOIN repositories r ON r.name = v.repo
                     JOIN manifests m ON m.repo_id = r.id AND m.digest = v.digest
                     WHERE m.deleted_at IS NULL",
                )
                .fetch_all(&self.$read)
                .await?)
            }

            async fn set_scan_report(
                &self,
                repo: &RepoName,
                digest: &Digest,
                report: &Digest,
            ) -> $crate::Result<()> {
                sqlx::query("UPDATE vuln_scans SET report = $1 WHERE repo = $2 AND digest = $3")
                    .bind(report.to_string())
                    .bind(repo.as_str())
                    .bind(digest.to_string())
                    .execute(&self.$write)
                    .await?;
                Ok(())
            }

            async fn mirror(
                &self,
                url: &str,
            ) -> $crate::Result<Option<$crate::vuln_ops::MirrorState>> {
                let sql = format!("SELECT {MIRROR_COLUMNS} FROM vuln_mirrors WHERE url = $1");
                let row: Option<MirrorTuple> = sqlx::query_as(&sql)
                    .bind(url)
                    .fetch_optional(&self.$read)
                    .await?;
                Ok(row.map(mirror_of))
            }

            async fn mirrors(&self) -> $crate::Result<Vec<$crate::vuln_ops::MirrorState>> {
                let sql = format!("SELECT {MIRROR_COLUMNS} FROM vuln_mirrors ORDER BY url");
                let rows: Vec<MirrorTuple> = sqlx::query_as(&sql).fetch_all(&self.$read).await?;
                Ok(rows.into_iter().map(mirror_of).collect())
            }

            async fn put_mirror(&self, s: &$crate::vuln_ops::MirrorState) -> $crate::Result<()> {
                sqlx::query(
                    "INSERT INTO vuln_mirrors
                       (url, fetched_at, outcome, message, etag, last_modified, imported_at)
                     VALUES ($1, $2, $3, $4, $5, $6, $7)
                     ON CONFLICT (url) DO UPDATE SET fetched_at = excluded.fetched_at,
                       outcome = excluded.outcome, message = excluded.message,
                       etag = excluded.etag, last_modified = excluded.last_modified,
                       imported_at = excluded.imported_at",
                )
                .bind(&s.url)
                .bind(s.fetched_at_ms)
                .bind(&s.outcome)
                .bind(&s.message)
                .bind(&s.etag)
                .bind(&s.last_modified)
                .bind(s.imported_at_ms)
                .execute(&self.$write)
                .await?;
                Ok(())
            }
        }
    };
}
pub(crate) use vuln_ops_sql;
