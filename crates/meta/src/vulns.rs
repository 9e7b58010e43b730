//! The vulnerability aggregate: imported OSV advisories (as JSON, with the columns an incremental
//! import and an alias lookup need), the sources they came from, the database generation, and
//! the latest scan result of each artifact.
//!
//! This layer does not parse advisories or match anything: what a record means is
//! `bonded-vuln`'s, when to import or scan is the service's. It guarantees that an import is one
//! transaction — its advisories, its source row and the generation bump appear together — so a
//! scanner that reads the generation and then the advisories never sees half an import.

use async_trait::async_trait;
use bonded_types::{Digest, RepoName};

use crate::Result;

/// An advisory to store (new, updated or withdrawn).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdvisoryRow {
    pub id: String,
    pub modified: String,
    pub withdrawn: bool,
    pub aliases: Vec<String>,
    /// The OSV record, JSON.
    pub record: String,
}

/// One imported source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VulnSource {
    pub name: String,
    pub path: String,
    pub imported_at_ms: i64,
    /// Records read from it in its last import.
    pub records: i64,
    /// Files of it that could not be read.
    pub errors: i64,
}

/// The database as a whole.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VulnDbState {
    /// Bumped by every import that changed an advisory; 0 before the first.
    pub generation: i64,
    /// When the generation last changed.
    pub changed_at_ms: i64,
    /// When the last import finished (changed or not); 0 if never.
    pub updated_at_ms: i64,
    /// Advisories that match (not withdrawn).
    pub active: i64,
    pub withdrawn: i64,
}

/// The latest scan of an artifact.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScanRow {
    pub repo: RepoName,
    pub digest: Digest,
    /// The database generation it ran against.
    pub generation: i64,
    pub scanned_at_ms: i64,
    /// Verified SBOMs read, and the components they listed.
    pub sboms: i64,
    pub components: i64,
    /// JSON array of findings.
    pub findings: String,
    /// JSON object: counts by severity.
    pub counts: String,
    /// The signed report stored as a referrer, once stored.
    pub report: Option<Digest>,
}

#[async_trait]
pub trait Vulns: Send + Sync {
    /// Every stored advisory's id and `modified` (withdrawn ones too), for planning an import.
    async fn advisory_versions(&self) -> Result<Vec<(String, String)>>;
    /// In one transaction: replaces the given advisories, records the source, marks the
    /// database updated at `source.imported_at_ms`, and bumps the generation if `rows` is not
    /// empty. Returns the state after.
    async fn apply_import(&self, source: &VulnSource, rows: &[AdvisoryRow]) -> Result<VulnDbState>;
    async fn db_state(&self) -> Result<VulnDbState>;
    /// Sources by name.
    async fn sources(&self) -> Result<Vec<VulnSource>>;
    /// The records (JSON) of every advisory that is not withdrawn, with the generation they
    /// were read at (both from one snapshot).
    async fn active_advisories(&self) -> Result<(i64, Vec<String>)>;
    /// Ids of active advisories whose id or one of whose aliases is `id_or_alias`.
    async fn advisories_named(&self, id_or_alias: &str) -> Result<Vec<String>>;
    /// Stores the latest scan of an artifact, replacing the previous one.
    async fn put_scan(&self, scan: &ScanRow) -> Result<()>;
    async fn scan(&self, repo: &RepoName, digest: &Digest) -> Result<Option<ScanRow>>;
    /// Latest scans that have a finding of one of `advisory_ids`.
    async fn scans_with(&self, advisory_ids: &[String]) -> Result<Vec<ScanRow>>;
    /// Live manifests that have a referrer with one of `artifact_types` and no scan at
    /// `generation` (never scanned, scanned before the database changed, or scanned before
    /// their newest such referrer arrived), oldest first, at most `limit`.
    async fn scan_backlog(
        &self,
        generation: i64,
        artifact_types: &[&str],
        limit: u32,
    ) -> Result<Vec<(RepoName, Digest)>>;
}

pub(crate) fn aliases_col(aliases: &[String]) -> String {
    // Space-delimited with a leading and trailing space, so ` CVE-1 ` matches exactly.
    if aliases.is_empty() {
        String::new()
    } else {
        format!(" {} ", aliases.join(" "))
    }
}

/// The SQL of [`Vulns`], written once with `$n` parameters and expanded into each backend's
/// module (`$write` for transactions and writes, `$read` for reads).
macro_rules! vulns_sql {
    ($backend:ty, $row:ty, $write:ident, $read:ident) => {
        const SCAN_COLUMNS: &str = "repo, digest, generation, scanned_at, sboms, components, \
             findings, counts, report";

        fn scan_row(r: &$row) -> $crate::Result<$crate::vulns::ScanRow> {
            use sqlx::Row as _;
            use $crate::promotion::{col, col_opt};
            Ok($crate::vulns::ScanRow {
                repo: col(&r.try_get::<String, _>(0)?)?,
                digest: col(&r.try_get::<String, _>(1)?)?,
                generation: r.try_get(2)?,
                scanned_at_ms: r.try_get(3)?,
                sboms: r.try_get(4)?,
                components: r.try_get(5)?,
                findings: r.try_get(6)?,
                counts: r.try_get(7)?,
                report: col_opt(r.try_get(8)?)?,
            })
        }

        async fn state_in<'e, E>(e: E) -> $crate::Result<$crate::vulns::VulnDbState>
        where
            E: sqlx::Executor<'e, Database = <$row as sqlx::Row>::Database>,
        {
            let (generation, changed_at_ms, updated_at_ms, active, withdrawn): (
                i64,
                i64,
                i64,
                i64,
                i64,
            ) = sqlx::query_as(
                "SELECT d.generation, d.changed_at, d.updated_at,
                   (SELECT COUNT(*) FROM vuln_advisories WHERE withdrawn = 0),
                   (SELECT COUNT(*) FROM vuln_advisories WHERE withdrawn <> 0)
                 FROM vuln_db d WHERE d.id = 1",
            )
            .fetch_one(e)
            .await?;
            Ok($crate::vulns::VulnDbState {
                generation,
                changed_at_ms,
                updated_at_ms,
                active,
                withdrawn,
            })
        }

        #[async_trait::async_trait]
        impl $crate::vulns::Vulns for $backend {
            async fn advisory_versions(&self) -> $crate::Result<Vec<(String, String)>> {
                Ok(
                    sqlx::query_as("SELECT id, modified FROM vuln_advisories ORDER BY id")
                        .fetch_all(&self.$read)
                        .await?,
                )
            }

            async fn apply_import(
                &self,
                source: &$crate::vulns::VulnSource,
                rows: &[$crate::vulns::AdvisoryRow],
            ) -> $crate::Result<$crate::vulns::VulnDbState> {
                let mut tx = self.$write.begin().await?;
                let at = source.imported_at_ms;
                for r in rows {
                    sqlx::query(
                        "INSERT INTO vuln_advisories
                           (id, modified, withdrawn, aliases, record, imported_at)
                         VALUES ($1, $2, $3, $4, $5, $6)
                         ON CONFLICT (id) DO UPDATE SET modified = excluded.modified,
                           withdrawn = excluded.withdrawn, aliases = excluded.aliases,
                           record = excluded.record, imported_at = excluded.imported_at",
                    )
                    .bind(&r.id)
                    .bind(&r.modified)
                    .bind(i64::from(r.withdrawn))
                    .bind($crate::vulns::aliases_col(&r.aliases))
                    .bind(&r.record)
                    .bind(at)
                    .execute(&mut *tx)
                    .await?;
                }
                sqlx::query(
                    "INSERT INTO vuln_sources (name, path, imported_at, records, errors)
                     VALUES ($1, $2, $3, $4, $5)
                     ON CONFLICT (name) DO UPDATE SET path = excluded.path,
                       imported_at = excluded.imported_at, records = excluded.records,
                       errors = excluded.errors",
                )
                .bind(&source.name)
                .bind(&source.path)
                .bind(at)
                .bind(source.records)
                .bind(source.errors)
                .execute(&mut *tx)
                .await?;
                if rows.is_empty() {
                    sqlx::query("UPDATE vuln_db SET updated_at = $1 WHERE id = 1")
                        .bind(at)
                        .execute(&mut *tx)
                        .await?;
                } else {
                    sqlx::query(
                        "UPDATE vuln_db SET generation = generation + 1, changed_at = $1,
                           updated_at = $1 WHERE id = 1",
                    )
                    .bind(at)
                    .execute(&mut *tx)
                    .await?;
                }
                let state = state_in(&mut *tx).await?;
                tx.commit().await?;
                Ok(state)
            }

            async fn db_state(&self) -> $crate::Result<$crate::vulns::VulnDbState> {
                state_in(&self.$read).await
            }

            async fn sources(&self) -> $crate::Result<Vec<$crate::vulns::VulnSource>> {
                let rows: Vec<(String, String, i64, i64, i64)> = sqlx::query_as(
                    "SELECT name, path, imported_at, records, errors FROM vuln_sources
                     ORDER BY name",
                )
                .fetch_all(&self.$read)
                .await?;
                Ok(rows
                    .into_iter()
                    .map(|(name, path, imported_at_ms, records, errors)| {
                        $crate::vulns::VulnSource {
                            name,
                            path,
                            imported_at_ms,
                            records,
                            errors,
                        }
                    })
                    .collect())
            }

            async fn active_advisories(&self) -> $crate::Result<(i64, Vec<String>)> {
                // Through the writer, in one transaction: the generation and the records are
                // one snapshot.
                let mut tx = self.$write.begin().await?;
                let generation: i64 =
                    sqlx::query_scalar("SELECT generation FROM vuln_db WHERE id = 1")
                        .fetch_one(&mut *tx)
                        .await?;
                let records: Vec<String> = sqlx::query_scalar(
                    "SELECT record FROM vuln_advisories WHERE withdrawn = 0 ORDER BY id",
                )
                .fetch_all(&mut *tx)
                .await?;
                tx.commit().await?;
                Ok((generation, records))
            }

            async fn advisories_named(&self, id_or_alias: &str) -> $crate::Result<Vec<String>> {
                Ok(sqlx::query_scalar(
                    "SELECT id FROM vuln_advisories
                     WHERE withdrawn = 0 AND (id = $1 OR aliases LIKE $2)
                     ORDER BY id",
                )
                .bind(id_or_alias)
                .bind(format!(
                    "% {} %",
                    id_or_alias.replace(['%', '_', ' '], "")
                ))
                .fetch_all(&self.$read)
                .await?)
            }

            async fn put_scan(&self, s: &$crate::vulns::ScanRow) -> $crate::Result<()> {
                sqlx::query(
                    "INSERT INTO vuln_scans (repo, digest, generation, scanned_at, sboms,
                       components, findings, counts, report)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
                     ON CONFLICT (repo, digest) DO UPDATE SET generation = excluded.generation,
                       scanned_at = excluded.scanned_at, sboms = excluded.sboms,
                       components = excluded.components, findings = excluded.findings,
                       counts = excluded.counts, report = excluded.report",
                )
                .bind(s.repo.as_str())
                .bind(s.digest.to_string())
                .bind(s.generation)
                .bind(s.scanned_at_ms)
                .bind(s.sboms)
                .bind(s.components)
                .bind(&s.findings)
                .bind(&s.counts)
                .bind(s.report.as_ref().map(|d| d.to_string()))
                .execute(&self.$write)
                .await?;
                Ok(())
            }

            async fn scan(
                &self,
                repo: &RepoName,
                digest: &Digest,
            ) -> $crate::Result<Option<$crate::vulns::ScanRow>> {
                let sql =
                    format!("SELECT {SCAN_COLUMNS} FROM vuln_scans WHERE repo = $1 AND digest = $2");
                let row = sqlx::query(&sql)
                    .bind(repo.as_str())
                    .bind(digest.to_string())
                    .fetch_optional(&self.$read)
                    .await?;
                row.as_ref().map(scan_row).transpose()
            }

            async fn scans_with(
                &self,
                advisory_ids: &[String],
            ) -> $crate::Result<Vec<$crate::vulns::ScanRow>> {
                let mut out: Vec<$crate::vulns::ScanRow> = Vec::new();
                for id in advisory_ids {
                    // Findings are stored as JSON; the id appears quoted as a value.
                    let sql = format!(
                        "SELECT {SCAN_COLUMNS} FROM vuln_scans WHERE findings LIKE $1
                         ORDER BY repo, digest"
                    );
                    let rows = sqlx::query(&sql)
                        .bind(format!(
                            "%\"advisory_id\":\"{}\"%",
                            id.replace(['%', '_', '"'], "")
                        ))
                        .fetch_all(&self.$read)
                        .await?;
                    for r in &rows {
                        let s = scan_row(r)?;
                        if !out
                            .iter()
                            .any(|o| o.repo == s.repo && o.digest == s.digest)
                        {
                            out.push(s);
                        }
                    }
                }
                Ok(out)
            }

            async fn scan_backlog(
                &self,
                generation: i64,
                artifact_types: &[&str],
                limit: u32,
            ) -> $crate::Result<Vec<(RepoName, Digest)>> {
                let mut out = Vec::new();
                for t in artifact_types {
                    let rows: Vec<(String, String)> = sqlx::query_as(
                        "SELECT r.name, s.digest FROM manifests m
                         JOIN repositories r ON r.id = m.repo_id
                         JOIN manifests s ON s.repo_id = m.repo_id AND s.digest = m.subject
                           AND s.deleted_at IS NULL
                         LEFT JOIN vuln_scans v ON v.repo = r.name AND v.digest = s.digest
                         WHERE m.deleted_at IS NULL AND m.artifact_type = $1
                           AND (v.repo IS NULL OR v.generation <> $2 OR v.scanned_at < m.created_at)
                         GROUP BY r.name, s.digest
                         ORDER BY MIN(s.created_at), r.name, s.digest LIMIT $3",
                    )
                    .bind(*t)
                    .bind(generation)
                    .bind(i64::from(limit))
                    .fetch_all(&self.$read)
                    .await?;
                    for (repo, digest) in rows {
                        let pair = (
                            $crate::promotion::col::<RepoName>(&repo)?,
                            $crate::promotion::col::<Digest>(&digest)?,
                        );
                        if !out.contains(&pair) {
                            out.push(pair);
                        }
                    }
                }
                out.truncate(limit as usize);
                Ok(out)
            }
        }
    };
}
pub(crate) use vulns_sql;
