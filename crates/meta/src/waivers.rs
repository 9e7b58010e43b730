//! The waiver aggregate: vulnerability waivers (a team accepting a finding deliberately, until an
//! expiry) and the one read the scan pass rate (M8) needs over the latest scans.
//!
//! This layer stores and selects rows; what a scope or advisory means, whether a waiver applies
//! to a finding and who may add one are the service's. Waivers are never deleted: revoking sets
//! `revoked_at`/`revoked_by`, expiry is a time, so the record of what was accepted stays.

use async_trait::async_trait;
use bonded_types::{Digest, RepoName};

use crate::Result;

/// A waiver to store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewWaiverRow {
    /// An advisory id or alias (`CVE-…`, `GHSA-…`).
    pub advisory: String,
    /// A namespace pattern (`shop/**`, `shop/`, `shop/app`) or `repo@digest`.
    pub scope: String,
    /// Set when the scope is one artifact.
    pub artifact: Option<(RepoName, Digest)>,
    pub package: Option<String>,
    /// CycloneDX impact analysis state, justification and responses.
    pub state: String,
    pub justification: Option<String>,
    pub responses: Vec<String>,
    pub reason: String,
    pub author: String,
    pub created_at_ms: i64,
    pub expires_at_ms: i64,
}

/// A stored waiver.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WaiverRow {
    pub id: i64,
    pub waiver: NewWaiverRow,
    pub revoked_at_ms: Option<i64>,
    pub revoked_by: Option<String>,
}

/// What the scan pass rate is computed from.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PassRateInputs {
    /// Live artifacts (a manifest not deleted) with a stored scan.
    pub scanned: i64,
    /// Of those, the ones whose scan ran against the given generation.
    pub current: i64,
    /// Of those, the ones with a finding at one of the given severities:
    /// (repository, digest, findings JSON).
    pub candidates: Vec<(RepoName, Digest, String)>,
}

#[async_trait]
pub trait Waivers: Send + Sync {
    /// Stores a waiver; returns its id.
    async fn add_waiver(&self, w: &NewWaiverRow) -> Result<i64>;
    async fn waiver(&self, id: i64) -> Result<Option<WaiverRow>>;
    /// Every waiver, newest first; only those neither revoked nor expired at `now_ms` when
    /// `active_at` is given.
    async fn waivers(&self, active_at: Option<i64>) -> Result<Vec<WaiverRow>>;
    /// Revokes a waiver that is not revoked yet. `NotFound` if there is no such waiver; a
    /// waiver revoked already is left as it was.
    async fn revoke_waiver(&self, id: i64, by: &str, at_ms: i64) -> Result<()>;
    /// Counts over the latest scans of live artifacts, and those at `generation` whose stored
    /// counts have one of `severities` (the only ones a pass-rate threshold can fail).
    async fn pass_rate_inputs(
        &self,
        generation: i64,
        severities: &[&str],
    ) -> Result<PassRateInputs>;
}

/// The SQL of [`Waivers`], written once with `$n` parameters and expanded into each backend's
/// module (`$write` for writes, `$read` for reads).
macro_rules! waivers_sql {
    ($backend:ty, $row:ty, $write:ident, $read:ident) => {
        const WAIVER_COLUMNS: &str = "id, advisory, scope, repo, digest, package, state, \
             justification, responses, reason, author, created_at, expires_at, revoked_at, \
             revoked_by";

        fn waiver_row(r: &$row) -> $crate::Result<$crate::waivers::WaiverRow> {
            use sqlx::Row as _;
            use $crate::promotion::col_opt;
            let repo: Option<RepoName> = col_opt(r.try_get(3)?)?;
            let digest: Option<Digest> = col_opt(r.try_get(4)?)?;
            let responses: String = r.try_get(8)?;
            Ok($crate::waivers::WaiverRow {
                id: r.try_get(0)?,
                waiver: $crate::waivers::NewWaiverRow {
                    advisory: r.try_get(1)?,
                    scope: r.try_get(2)?,
                    artifact: repo.zip(digest),
                    package: r.try_get(5)?,
                    state: r.try_get(6)?,
                    justification: r.try_get(7)?,
                    responses: responses
                        .split(',')
                        .filter(|s| !s.is_empty())
                        .map(str::to_string)
                        .collect(),
                    reason: r.try_get(9)?,
                    author: r.try_get(10)?,
                    created_at_ms: r.try_get(11)?,
                    expires_at_ms: r.try_get(12)?,
                },
                revoked_at_ms: r.try_get(13)?,
                revoked_by: r.try_get(14)?,
            })
        }

        #[async_trait::async_trait]
        impl $crate::waivers::Waivers for $backend {
            async fn add_waiver(&self, w: &$crate::waivers::NewWaiverRow) -> $crate::Result<i64> {
                let id: i64 = sqlx::query_scalar(
                    "INSERT INTO vuln_waivers (advisory, scope, repo, digest, package, state,
                       justification, responses, reason, author, created_at, expires_at)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)
                     RETURNING id",
                )
                .bind(&w.advisory)
                .bind(&w.scope)
                .bind(w.artifact.as_ref().map(|(r, _)| r.as_str().to_string()))
                .bind(w.artifact.as_ref().map(|(_, d)| d.to_string()))
                .bind(&w.package)
                .bind(&w.state)
                .bind(&w.justification)
                .bind(w.responses.join(","))
                .bind(&w.reason)
                .bind(&w.author)
                .bind(w.created_at_ms)
                .bind(w.expires_at_ms)
                .fetch_one(&self.$write)
                .await?;
                Ok(id)
            }

            async fn waiver(&self, id: i64) -> $crate::Result<Option<$crate::waivers::WaiverRow>> {
                let sql = format!("SELECT {WAIVER_COLUMNS} FROM vuln_waivers WHERE id = $1");
                let row = sqlx::query(&sql)
                    .bind(id)
                    .fetch_optional(&self.$read)
                    .await?;
                row.as_ref().map(waiver_row).transpose()
            }

            async fn waivers(
                &self,
                active_at: Option<i64>,
            ) -> $crate::Result<Vec<$crate::waivers::WaiverRow>> {
                let rows = match active_at {
                    Some(now) => {
                        let sql = format!(
                            "SELECT {WAIVER_COLUMNS} FROM vuln_waivers
                             WHERE revoked_at IS NULL AND expires_at > $1 ORDER BY id DESC"
                        );
                        sqlx::query(&sql).bind(now).fetch_all(&self.$read).await?
                    }
                    None => {
                        let sql =
                            format!("SELECT {WAIVER_COLUMNS} FROM vuln_waivers ORDER BY id DESC");
                        sqlx::query(&sql).fetch_all(&self.$read).await?
                    }
                };
                rows.iter().map(waiver_row).collect()
            }

            async fn revoke_waiver(&self, id: i64, by: &str, at_ms: i64) -> $crate::Result<()> {
                let mut tx = self.$write.begin().await?;
                let found: Option<i64> =
                    sqlx::query_scalar("SELECT id FROM vuln_waivers WHERE id = $1")
                        .bind(id)
                        .fetch_optional(&mut *tx)
                        .await?;
                if found.is_none() {
                    return Err($crate::MetaError::NotFound);
                }
                sqlx::query(
                    "UPDATE vuln_waivers SET revoked_at = $1, revoked_by = $2
                     WHERE id = $3 AND revoked_at IS NULL",
                )
                .bind(at_ms)
                .bind(by)
                .bind(id)
                .execute(&mut *tx)
                .await?;
                tx.commit().await?;
                Ok(())
            }

            async fn pass_rate_inputs(
                &self,
                generation: i64,
                severities: &[&str],
            ) -> $crate::Result<$crate::waivers::PassRateInputs> {
                // A scan counts while the artifact it describes is live in its repository.
                const LIVE: &str = "EXISTS (SELECT 1 FROM manifests m
                       JOIN repositories r ON r.id = m.repo_id
                     WHERE r.name = v.repo AND m.digest = v.digest AND m.deleted_at IS NULL)";
                let scanned: i64 = sqlx::query_scalar(&format!(
                    "SELECT COUNT(*) FROM vuln_scans v WHERE {LIVE}"
                ))
                .fetch_one(&self.$read)
                .await?;
                let current: i64 = sqlx::query_scalar(&format!(
                    "SELECT COUNT(*) FROM vuln_scans v WHERE v.generation = $1 AND {LIVE}"
                ))
                .bind(generation)
                .fetch_one(&self.$read)
                .await?;
                let mut candidates = Vec::new();
                if !severities.is_empty() {
                    // Counts are a JSON object keyed by severity (`{"high":2}`); a key is
                    // present only when its count is positive.
                    let any: Vec<String> = (0..severities.len())
                        .map(|i| format!("v.counts LIKE ${}", i + 2))
                        .collect();
                    let sql = format!(
                        "SELECT v.repo, v.digest, v.findings FROM vuln_scans v
                         WHERE v.generation = $1 AND ({}) AND {LIVE}
                         ORDER BY v.repo, v.digest",
                        any.join(" OR ")
                    );
                    let mut q = sqlx::query_as::<_, (String, String, String)>(&sql).bind(generation);
                    for s in severities {
                        q = q.bind(format!("%\"{}\"%", s.replace(['%', '_', '"'], "")));
                    }
                    for (repo, digest, findings) in q.fetch_all(&self.$read).await? {
                        candidates.push((
                            $crate::promotion::col::<RepoName>(&repo)?,
                            $crate::promotion::col::<Digest>(&digest)?,
                            findings,
                        ));
                    }
                }
                Ok($crate::waivers::PassRateInputs {
                    scanned,
                    current,
                    candidates,
                })
            }
        }
    };
}
pub(crate) use waivers_sql;
