//! The promotion aggregate: where each environment of a repository points, every move of those
//! pointers, approvals, reported deployments, canary verdicts, and the registry's own signing key.
//!
//! An environment's pointer is the tag of the same name; [`Promotions::move_pointer`] moves it and
//! records the move in one transaction, as a compare-and-set on what it pointed at, so two
//! concurrent promotions of one environment cannot both win. Which gates a promotion needs, and
//! whether they passed, is decided by the service; this layer stores the verdicts as JSON.

use async_trait::async_trait;
use bonded_types::{Digest, RepoName, Tag};

use crate::Result;

/// Promotion or rollback.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MoveKind {
    Promote,
    Rollback,
}

impl MoveKind {
    pub fn as_str(self) -> &'static str {
        match self {
            MoveKind::Promote => "promote",
            MoveKind::Rollback => "rollback",
        }
    }

    pub(crate) fn parse(s: &str) -> MoveKind {
        if s == "rollback" {
            MoveKind::Rollback
        } else {
            MoveKind::Promote
        }
    }
}

/// A move of an environment pointer to record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PointerMove {
    pub repo: RepoName,
    pub environment: Tag,
    pub digest: Digest,
    /// What the pointer must hold now (`None`: unset); otherwise the move fails with `Conflict`.
    pub expected: Option<Digest>,
    pub kind: MoveKind,
    pub actor: String,
    /// The environment the artifact came from, when promoted along the order.
    pub from_env: Option<String>,
    /// Gate verdicts as a JSON array.
    pub gates: String,
    pub note: String,
    pub at_ms: i64,
}

/// One recorded move.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PointerRecord {
    pub id: i64,
    pub repo: RepoName,
    pub environment: String,
    pub digest: Digest,
    pub previous: Option<Digest>,
    pub kind: MoveKind,
    pub actor: String,
    pub from_env: Option<String>,
    pub gates: String,
    pub note: String,
    pub attestation: Option<Digest>,
    pub at_ms: i64,
}

/// What a successful move returns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Moved {
    pub record: PointerRecord,
    /// When the manifest was first stored in the repository (for time-to-promote).
    pub pushed_at_ms: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Approval {
    pub repo: RepoName,
    pub digest: Digest,
    pub environment: String,
    pub actor: String,
    pub role: String,
    pub comment: String,
    pub at_ms: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Deployment {
    pub id: i64,
    pub repo: RepoName,
    pub environment: String,
    pub target: String,
    pub digest: Digest,
    pub status: String,
    /// What the environment pointed at when the report arrived.
    pub expected: Option<Digest>,
    pub actor: String,
    pub at_ms: i64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct CanaryRecord {
    pub id: i64,
    pub repo: RepoName,
    pub digest: Digest,
    pub environment: Option<String>,
    /// `pass`, `marginal` or `fail`.
    pub verdict: String,
    pub score: f64,
    /// The full per-metric report, JSON.
    pub report: String,
    pub actor: String,
    pub at_ms: i64,
}

#[async_trait]
pub trait Promotions: Send + Sync {
    /// In one transaction: checks the manifest is live in the repository (`NotFound` if not),
    /// moves the environment's tag from `expected` to `digest` (`Conflict` if it holds anything
    /// else), and records the move.
    async fn move_pointer(&self, m: &PointerMove) -> Result<Moved>;
    /// Records the attestation stored for a move.
    async fn set_attestation(&self, id: i64, attestation: &Digest) -> Result<()>;
    /// Moves of `repo` (of one environment, or all), newest first, at most `limit`.
    async fn history(
        &self,
        repo: &RepoName,
        environment: Option<&str>,
        limit: u32,
    ) -> Result<Vec<PointerRecord>>;
    /// Digests no deletion may take: the last `keep` digests each environment of `repo` pointed
    /// at (which includes where it points now).
    async fn protected(&self, repo: &RepoName, keep: u32) -> Result<Vec<Digest>>;
    /// Records an approval; `Conflict` if this actor already approved it.
    async fn approve(&self, a: &Approval) -> Result<()>;
    async fn approvals(
        &self,
        repo: &RepoName,
        digest: &Digest,
        environment: &str,
    ) -> Result<Vec<Approval>>;
    /// Records a reported deployment (its `id` is ignored); returns the stored row.
    async fn record_deployment(&self, d: &Deployment) -> Result<Deployment>;
    /// Reported deployments, newest first, of one repository or all, at most `limit`.
    async fn deployments(&self, repo: Option<&RepoName>, limit: u32) -> Result<Vec<Deployment>>;
    /// Records a canary verdict (its `id` is ignored); returns the stored row.
    async fn record_canary(&self, c: &CanaryRecord) -> Result<CanaryRecord>;
    /// Canary verdicts for an artifact, newest first.
    async fn canaries(&self, repo: &RepoName, digest: &Digest) -> Result<Vec<CanaryRecord>>;
    /// The registry's key for `purpose` as (key id, private PEM): the stored one, or `candidate`
    /// if none was stored yet (the first caller wins; every node ends up with the same key).
    async fn registry_key(
        &self,
        purpose: &str,
        candidate: (&str, &str),
    ) -> Result<(String, String)>;
}

pub(crate) fn col<T: std::str::FromStr>(s: &str) -> Result<T>
where
    T::Err: std::fmt::Display,
{
    s.parse::<T>()
        .map_err(|e| crate::MetaError::Corrupt(format!("{s:?}: {e}")))
}

pub(crate) fn col_opt<T: std::str::FromStr>(s: Option<String>) -> Result<Option<T>>
where
    T::Err: std::fmt::Display,
{
    s.as_deref().map(col).transpose()
}

/// The SQL of [`Promotions`], written once with `$n` parameters (which SQLite accepts too) and
/// expanded into each backend's module with its pools: `$write` for transactions and writes,
/// `$read` for reads.
macro_rules! promotions_sql {
    ($backend:ty, $row:ty, $write:ident, $read:ident) => {
        const HISTORY_COLUMNS: &str = "id, repo, environment, digest, previous, action, actor, \
             from_env, gates, note, attestation, at";

        fn history_row(r: &$row) -> $crate::Result<$crate::promotion::PointerRecord> {
            use sqlx::Row as _;
            use $crate::promotion::{col, col_opt, MoveKind, PointerRecord};
            Ok(PointerRecord {
                id: r.try_get(0)?,
                repo: col(&r.try_get::<String, _>(1)?)?,
                environment: r.try_get(2)?,
                digest: col(&r.try_get::<String, _>(3)?)?,
                previous: col_opt(r.try_get(4)?)?,
                kind: MoveKind::parse(&r.try_get::<String, _>(5)?),
                actor: r.try_get(6)?,
                from_env: r.try_get(7)?,
                gates: r.try_get(8)?,
                note: r.try_get(9)?,
                attestation: col_opt(r.try_get(10)?)?,
                at_ms: r.try_get(11)?,
            })
        }

        fn deployment_row(r: &$row) -> $crate::Result<$crate::promotion::Deployment> {
            use sqlx::Row as _;
            use $crate::promotion::{col, col_opt, Deployment};
            Ok(Deployment {
                id: r.try_get(0)?,
                repo: col(&r.try_get::<String, _>(1)?)?,
                environment: r.try_get(2)?,
                target: r.try_get(3)?,
                digest: col(&r.try_get::<String, _>(4)?)?,
                status: r.try_get(5)?,
                expected: col_opt(r.try_get(6)?)?,
                actor: r.try_get(7)?,
                at_ms: r.try_get(8)?,
            })
        }

        fn canary_row(r: &$row) -> $crate::Result<$crate::promotion::CanaryRecord> {
            use sqlx::Row as _;
            use $crate::promotion::{col, CanaryRecord};
            Ok(CanaryRecord {
                id: r.try_get(0)?,
                repo: col(&r.try_get::<String, _>(1)?)?,
                digest: col(&r.try_get::<String, _>(2)?)?,
                environment: r.try_get(3)?,
                verdict: r.try_get(4)?,
                score: r.try_get(5)?,
                report: r.try_get(6)?,
                actor: r.try_get(7)?,
                at_ms: r.try_get(8)?,
            })
        }

        #[async_trait::async_trait]
        impl $crate::promotion::Promotions for $backend {
            async fn move_pointer(
                &self,
                m: &$crate::promotion::PointerMove,
            ) -> $crate::Result<$crate::promotion::Moved> {
                use $crate::MetaError;
                let mut tx = self.$write.begin().await?;
                let found: Option<(i64, i64)> = sqlx::query_as(
                    "SELECT m.repo_id, m.created_at FROM manifests m
                     JOIN repositories r ON r.id = m.repo_id
                     WHERE r.name = $1 AND m.digest = $2 AND m.deleted_at IS NULL",
                )
                .bind(m.repo.as_str())
                .bind(m.digest.to_string())
                .fetch_optional(&mut *tx)
                .await?;
                let Some((repo_id, pushed_at_ms)) = found else {
                    return Err(MetaError::NotFound);
                };
                let moved = match &m.expected {
                    Some(expected) => sqlx::query(
                        "UPDATE tags SET digest = $3, updated_at = $4
                         WHERE repo_id = $1 AND name = $2 AND digest = $5",
                    )
                    .bind(repo_id)
                    .bind(m.environment.as_str())
                    .bind(m.digest.to_string())
                    .bind(m.at_ms)
                    .bind(expected.to_string())
                    .execute(&mut *tx)
                    .await?
                    .rows_affected(),
                    None => sqlx::query(
                        "INSERT INTO tags (repo_id, name, digest, updated_at) VALUES ($1, $2, $3, $4)
                         ON CONFLICT (repo_id, name) DO NOTHING",
                    )
                    .bind(repo_id)
                    .bind(m.environment.as_str())
                    .bind(m.digest.to_string())
                    .bind(m.at_ms)
                    .execute(&mut *tx)
                    .await?
                    .rows_affected(),
                };
                if moved != 1 {
                    return Err(MetaError::Conflict(format!(
                        "environment {} of {} no longer points at {}",
                        m.environment,
                        m.repo,
                        m.expected
                            .as_ref()
                            .map_or("nothing".to_string(), |d| d.to_string())
                    )));
                }
                let id: i64 = sqlx::query_scalar(
                    "INSERT INTO env_history
                       (repo, environment, digest, previous, action, actor, from_env, gates, note, at)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) RETURNING id",
                )
                .bind(m.repo.as_str())
                .bind(m.environment.as_str())
                .bind(m.digest.to_string())
                .bind(m.expected.as_ref().map(|d| d.to_string()))
                .bind(m.kind.as_str())
                .bind(&m.actor)
                .bind(&m.from_env)
                .bind(&m.gates)
                .bind(&m.note)
                .bind(m.at_ms)
                .fetch_one(&mut *tx)
                .await?;
                tx.commit().await?;
                Ok($crate::promotion::Moved {
                    record: $crate::promotion::PointerRecord {
                        id,
                        repo: m.repo.clone(),
                        environment: m.environment.to_string(),
                        digest: m.digest.clone(),
                        previous: m.expected.clone(),
                        kind: m.kind,
                        actor: m.actor.clone(),
                        from_env: m.from_env.clone(),
                        gates: m.gates.clone(),
                        note: m.note.clone(),
                        attestation: None,
                        at_ms: m.at_ms,
                    },
                    pushed_at_ms,
                })
            }

            async fn set_attestation(&self, id: i64, attestation: &Digest) -> $crate::Result<()> {
                sqlx::query("UPDATE env_history SET attestation = $1 WHERE id = $2")
                    .bind(attestation.to_string())
                    .bind(id)
                    .execute(&self.$write)
                    .await?;
                Ok(())
            }

            async fn history(
                &self,
                repo: &RepoName,
                environment: Option<&str>,
                limit: u32,
            ) -> $crate::Result<Vec<$crate::promotion::PointerRecord>> {
                let sql = format!(
                    "SELECT {HISTORY_COLUMNS} FROM env_history
                     WHERE repo = $1 AND environment = COALESCE($2, environment)
                     ORDER BY id DESC LIMIT $3"
                );
                let rows = sqlx::query(&sql)
                    .bind(repo.as_str())
                    .bind(environment)
                    .bind(i64::from(limit))
                    .fetch_all(&self.$read)
                    .await?;
                rows.iter().map(history_row).collect()
            }

            async fn protected(&self, repo: &RepoName, keep: u32) -> $crate::Result<Vec<Digest>> {
                let rows: Vec<String> = sqlx::query_scalar(
                    "SELECT DISTINCT h.digest FROM (
                       SELECT digest, ROW_NUMBER() OVER (PARTITION BY environment ORDER BY id DESC) AS rn
                       FROM env_history WHERE repo = $1) AS h
                     WHERE h.rn <= $2 ORDER BY h.digest",
                )
                .bind(repo.as_str())
                .bind(i64::from(keep.max(1)))
                .fetch_all(&self.$read)
                .await?;
                rows.iter().map(|s| $crate::promotion::col(s)).collect()
            }

            async fn approve(&self, a: &$crate::promotion::Approval) -> $crate::Result<()> {
                let done = sqlx::query(
                    "INSERT INTO approvals (repo, digest, environment, actor, role, comment, at)
                     VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT DO NOTHING",
                )
                .bind(a.repo.as_str())
                .bind(a.digest.to_string())
                .bind(&a.environment)
                .bind(&a.actor)
                .bind(&a.role)
                .bind(&a.comment)
                .bind(a.at_ms)
                .execute(&self.$write)
                .await?;
                if done.rows_affected() == 0 {
                    return Err($crate::MetaError::Conflict(format!(
                        "{} already approved {}@{} for {}",
                        a.actor, a.repo, a.digest, a.environment
                    )));
                }
                Ok(())
            }

            async fn approvals(
                &self,
                repo: &RepoName,
                digest: &Digest,
                environment: &str,
            ) -> $crate::Result<Vec<$crate::promotion::Approval>> {
                let rows: Vec<(String, String, String, i64)> = sqlx::query_as(
                    "SELECT actor, role, comment, at FROM approvals
                     WHERE repo = $1 AND digest = $2 AND environment = $3 ORDER BY at, actor",
                )
                .bind(repo.as_str())
                .bind(digest.to_string())
                .bind(environment)
                .fetch_all(&self.$read)
                .await?;
                Ok(rows
                    .into_iter()
                    .map(|(actor, role, comment, at_ms)| $crate::promotion::Approval {
                        repo: repo.clone(),
                        digest: digest.clone(),
                        environment: environment.to_string(),
                        actor,
                        role,
                        comment,
                        at_ms,
                    })
                    .collect())
            }

            async fn record_deployment(
                &self,
                d: &$crate::promotion::Deployment,
            ) -> $crate::Result<$crate::promotion::Deployment> {
                let id: i64 = sqlx::query_scalar(
                    "INSERT INTO deployments
                       (repo, environment, target, digest, status, expected, actor, at)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING id",
                )
                .bind(d.repo.as_str())
                .bind(&d.environment)
                .bind(&d.target)
                .bind(d.digest.to_string())
                .bind(&d.status)
                .bind(d.expected.as_ref().map(|e| e.to_string()))
                .bind(&d.actor)
                .bind(d.at_ms)
                .fetch_one(&self.$write)
                .await?;
                Ok($crate::promotion::Deployment { id, ..d.clone() })
            }

            async fn deployments(
                &self,
                repo: Option<&RepoName>,
                limit: u32,
            ) -> $crate::Result<Vec<$crate::promotion::Deployment>> {
                let rows = sqlx::query(
                    "SELECT id, repo, environment, target, digest, status, expected, actor, at
                     FROM deployments WHERE repo = COALESCE($1, repo) ORDER BY id DESC LIMIT $2",
                )
                .bind(repo.map(|r| r.as_str()))
                .bind(i64::from(limit))
                .fetch_all(&self.$read)
                .await?;
                rows.iter().map(deployment_row).collect()
            }

            async fn record_canary(
                &self,
                c: &$crate::promotion::CanaryRecord,
            ) -> $crate::Result<$crate::promotion::CanaryRecord> {
                let id: i64 = sqlx::query_scalar(
                    "INSERT INTO canary_verdicts
                       (repo, digest, environment, verdict, score, report, actor, at)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING id",
                )
                .bind(c.repo.as_str())
                .bind(c.digest.to_string())
                .bind(&c.environment)
                .bind(&c.verdict)
                .bind(c.score)
                .bind(&c.report)
                .bind(&c.actor)
                .bind(c.at_ms)
                .fetch_one(&self.$write)
                .await?;
                Ok($crate::promotion::CanaryRecord { id, ..c.clone() })
            }

            async fn canaries(
                &self,
                repo: &RepoName,
                digest: &Digest,
            ) -> $crate::Result<Vec<$crate::promotion::CanaryRecord>> {
                let rows = sqlx::query(
                    "SELECT id, repo, digest, environment, verdict, score, report, actor, at
                     FROM canary_verdicts WHERE repo = $1 AND digest = $2 ORDER BY id DESC",
                )
                .bind(repo.as_str())
                .bind(digest.to_string())
                .fetch_all(&self.$read)
                .await?;
                rows.iter().map(canary_row).collect()
            }

            async fn registry_key(
                &self,
                purpose: &str,
                candidate: (&str, &str),
            ) -> $crate::Result<(String, String)> {
                sqlx::query(
                    "INSERT INTO registry_keys (purpose, key_id, private_pem, created_at)
                     VALUES ($1, $2, $3, $4) ON CONFLICT (purpose) DO NOTHING",
                )
                .bind(purpose)
                .bind(candidate.0)
                .bind(candidate.1)
                .bind($crate::now_ms())
                .execute(&self.$write)
                .await?;
                Ok(sqlx::query_as(
                    "SELECT key_id, private_pem FROM registry_keys WHERE purpose = $1",
                )
                .bind(purpose)
                .fetch_one(&self.$write)
                .await?)
            }
        }
    };
}
pub(crate) use promotions_sql;
