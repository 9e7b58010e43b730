//! Vulnerability scanning: importing OSV exports into the metadata store, and scanning an
//! artifact's verified SBOMs against them.
//!
//! Matching is `bonded-vuln`'s (pure, tested there); this module decides what is scanned (the
//! components of SBOM referrers that verify against the namespace's trusted keys — an unsigned
//! or untrusted SBOM says nothing), keeps one in-memory [`Index`] per database generation, and
//! stores the latest result per artifact with the generation it ran against, so a change of
//! the database makes every stored result due again ([`Registry::scan_due`]).

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::Arc;

use bonded_meta::{AdvisoryRow, VulnDbState, VulnSource};
use bonded_supply::media::{Kind, SBOM_ARTIFACT};
use bonded_types::{Digest, Reference, RepoName};
use bonded_vuln::import::{self, FileError};
use bonded_vuln::{Index, OsvRecord, Purl};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::supply::namespace;
use crate::{Error, Invalid, Missing, Registry, Result};

/// The in-memory index and the database generation it was built from.
pub(crate) type IndexCache = Arc<tokio::sync::Mutex<Option<(i64, Arc<Index>)>>>;

/// What an import did.
#[derive(Debug, Clone)]
pub struct ImportReport {
    pub source: String,
    pub read: usize,
    pub new: usize,
    pub updated: usize,
    pub unchanged: usize,
    pub withdrawn: usize,
    /// Files that could not be read; the import went on without them.
    pub errors: Vec<FileError>,
    pub state: VulnDbState,
}

/// The database's sources and age.
#[derive(Debug, Clone)]
pub struct DbStatus {
    pub state: VulnDbState,
    pub sources: Vec<VulnSource>,
}

/// One advisory affecting one component of a scanned artifact.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VulnFinding {
    pub advisory_id: String,
    pub aliases: Vec<String>,
    pub ecosystem: String,
    pub package: String,
    pub installed: String,
    pub fixed: Option<String>,
    /// `critical`, `high`, `medium`, `low`, `none`, or `unknown` when the advisory has none.
    pub severity: String,
    /// CVSS score, when the severity came from one.
    pub score: Option<f64>,
    pub summary: Option<String>,
    /// The active waiver that waives it, when read (never stored: see `waivers.rs`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub waiver: Option<crate::waivers::WaiverRef>,
}

/// The latest scan of an artifact.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ScanResult {
    pub repository: String,
    pub digest: String,
    /// The database generation it ran against.
    pub generation: i64,
    pub scanned_at_ms: i64,
    /// Verified SBOMs read and the distinct components (purls) they list.
    pub sboms: i64,
    pub components: i64,
    pub findings: Vec<VulnFinding>,
    pub counts: BTreeMap<String, u64>,
}

/// The severity levels, most severe first.
pub const SEVERITIES: [&str; 6] = ["critical", "high", "medium", "low", "none", "unknown"];

/// Rank of a severity label (higher is worse); `unknown` ranks with `none`.
pub fn severity_rank(s: &str) -> u8 {
    match s {
        "critical" => 4,
        "high" => 3,
        "medium" => 2,
        "low" => 1,
        _ => 0,
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

fn internal(e: impl std::fmt::Display) -> Error {
    Error::Internal(e.to_string())
}

/// Every purl an SBOM lists: CycloneDX `components[].purl` (nested, and the metadata
/// component) or SPDX `packages[].externalRefs[]` of type `purl`.
pub fn sbom_purls(sbom: &Value, out: &mut Vec<String>) {
    fn cyclonedx(list: &Value, out: &mut Vec<String>) {
        for c in list.as_array().into_iter().flatten() {
            if let Some(p) = c.get("purl").and_then(Value::as_str) {
                out.push(p.to_string());
            }
            if let Some(sub) = c.get("components") {
                cyclonedx(sub, out);
            }
        }
    }
    if let Some(c) = sbom.get("components") {
        cyclonedx(c, out);
    }
    for p in sbom
        .get("packages")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        for r in p
            .get("externalRefs")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let kind = r.get("referenceType").and_then(Value::as_str);
            if kind == Some("purl") {
                if let Some(l) = r.get("referenceLocator").and_then(Value::as_str) {
                    out.push(l.to_string());
                }
            }
        }
    }
}

/// Matches `purls` against `index`: findings sorted by severity (worst first), then advisory
/// and package, one per (advisory, package, version).
pub fn match_purls(index: &Index, purls: &[String]) -> Vec<VulnFinding> {
    let mut out: Vec<VulnFinding> = Vec::new();
    for p in purls {
        let Ok(purl) = p.parse::<Purl>() else {
            continue;
        };
        let Ok(found) = index.match_purl(&purl) else {
            continue;
        };
        for f in found {
            let v = VulnFinding {
                advisory_id: f.advisory_id,
                aliases: f.aliases,
                ecosystem: f.ecosystem.to_string(),
                package: f.package,
                installed: f.installed_version,
                fixed: f.fixed_version,
                severity: f
                    .severity
                    .map_or("unknown".to_string(), |s| s.level.as_str().to_lowercase()),
                score: f.severity.and_then(|s| s.score()),
                summary: f.summary,
                waiver: None,
            };
            if !out.iter().any(|o| {
                o.advisory_id == v.advisory_id
                    && o.package == v.package
                    && o.installed == v.installed
            }) {
                out.push(v);
            }
        }
    }
    out.sort_by(|a, b| {
        severity_rank(&b.severity)
            .cmp(&severity_rank(&a.severity))
            .then_with(|| a.advisory_id.cmp(&b.advisory_id))
            .then_with(|| a.package.cmp(&b.package))
    });
    out
}

fn counts(findings: &[VulnFinding]) -> BTreeMap<String, u64> {
    let mut c = BTreeMap::new();
    for f in findings {
        *c.entry(f.severity.clone()).or_insert(0) += 1;
    }
    c
}

impl Registry {
    /// Imports an OSV export (a directory of `*.json` records or an `all.zip`) incrementally:
    /// new and updated records replace stored ones, withdrawn ones stop matching, unchanged
    /// ones are not rewritten. Unreadable files are reported, not fatal.
    pub async fn vulndb_import(&self, path: &Path) -> Result<ImportReport> {
        let name = path
            .canonicalize()
            .unwrap_or_else(|_| path.to_path_buf())
            .display()
            .to_string();
        self.vulndb_import_as(path, &name).await
    }

    /// [`Registry::vulndb_import`], recording the source under `name` (a mirror's URL).
    pub async fn vulndb_import_as(&self, path: &Path, name: &str) -> Result<ImportReport> {
        let name = name.to_string();
        let owned = path.to_path_buf();
        let is_zip = path
            .extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("zip"));
        if !is_zip && !path.is_dir() {
            return Err(Error::Invalid(Invalid::Import(format!(
                "{} is neither a directory of OSV JSON records nor a .zip export",
                path.display()
            ))));
        }
        let loaded = tokio::task::spawn_blocking(move || {
            if is_zip {
                import::load_zip(&owned)
            } else {
                import::load_dir(&owned)
            }
        })
        .await
        .map_err(internal)?
        .map_err(|e| Error::Invalid(Invalid::Import(e.to_string())))?;
        let existing: HashMap<String, String> = self
            .meta
            .vulns()
            .advisory_versions()
            .await?
            .into_iter()
            .collect();
        let plan = import::plan_merge(&existing, &loaded.records);
        let by_id: HashMap<&str, &OsvRecord> =
            loaded.records.iter().map(|r| (r.id.as_str(), r)).collect();
        let mut rows = Vec::new();
        for id in plan.new.iter().chain(&plan.updated).chain(&plan.withdrawn) {
            let r = by_id[id.as_str()];
            rows.push(AdvisoryRow {
                id: r.id.clone(),
                modified: r.modified.clone(),
                withdrawn: r.withdrawn.is_some(),
                aliases: r.aliases.clone(),
                record: serde_json::to_string(r).map_err(internal)?,
            });
        }
        let source = VulnSource {
            name: name.clone(),
            path: name.clone(),
            imported_at_ms: now_ms(),
            records: loaded.records.len() as i64,
            errors: loaded.errors.len() as i64,
        };
        let state = self.meta.vulns().apply_import(&source, &rows).await?;
        tracing::info!(
            source = %name, new = plan.new.len(), updated = plan.updated.len(),
            withdrawn = plan.withdrawn.len(), errors = loaded.errors.len(),
            generation = state.generation, "imported vulnerability advisories"
        );
        Ok(ImportReport {
            source: name,
            read: loaded.records.len(),
            new: plan.new.len(),
            updated: plan.updated.len(),
            unchanged: plan.unchanged.len(),
            withdrawn: plan.withdrawn.len(),
            errors: loaded.errors,
            state,
        })
    }

    pub async fn vulndb_status(&self) -> Result<DbStatus> {
        Ok(DbStatus {
            state: self.meta.vulns().db_state().await?,
            sources: self.meta.vulns().sources().await?,
        })
    }

    /// The index of the current database generation, rebuilt when the generation changed.
    async fn vuln_index(&self) -> Result<(i64, Arc<Index>)> {
        // One row: `db_state` counts every advisory, too slow to ask once per scan.
        let (current, _) = self.meta.vuln_ops().db_head().await?;
        let mut cache = self.vuln_index.lock().await;
        if let Some((generation, index)) = cache.as_ref() {
            if *generation == current {
                return Ok((*generation, index.clone()));
            }
        }
        let (generation, records) = self.meta.vulns().active_advisories().await?;
        let index = tokio::task::spawn_blocking(move || {
            Index::build(records.iter().filter_map(|r| {
                serde_json::from_str::<OsvRecord>(r)
                    .ok()
                    .map(|r| r.to_advisory())
            }))
        })
        .await
        .map_err(internal)?;
        let index = Arc::new(index);
        tracing::info!(
            generation,
            advisories = index.len(),
            "built vulnerability index"
        );
        *cache = Some((generation, index.clone()));
        Ok((generation, index))
    }

    pub(crate) async fn resolve_digest(
        &self,
        repo: &RepoName,
        reference: &Reference,
    ) -> Result<Digest> {
        let digest = match reference {
            Reference::Digest(d) => d.clone(),
            Reference::Tag(t) => self
                .meta
                .tags()
                .resolve(repo, t)
                .await?
                .ok_or(Error::NotFound(Missing::Manifest))?,
        };
        if self.meta.manifests().get(repo, &digest).await?.is_none() {
            return Err(Error::NotFound(Missing::Manifest));
        }
        Ok(digest)
    }

    /// Scans an artifact now and stores the result.
    pub async fn scan(&self, repo: &RepoName, reference: &Reference) -> Result<ScanResult> {
        let digest = self.resolve_digest(repo, reference).await?;
        self.scan_digest(repo, &digest).await
    }

    async fn scan_digest(&self, repo: &RepoName, digest: &Digest) -> Result<ScanResult> {
        // Reports, metrics and notifications compare with the stored scan (`vuln_ops`).
        let previous = self.meta.vulns().scan(repo, digest).await?;
        let started = std::time::Instant::now();
        let report = previous.as_ref().and_then(|p| p.report.clone());
        let outcome = self.scan_and_store(repo, digest, report).await;
        self.after_scan(previous, started.elapsed(), outcome).await
    }

    /// Scans and stores the result, keeping `report` (the previous report referrer) until
    /// `after_scan` decides whether it still stands.
    async fn scan_and_store(
        &self,
        repo: &RepoName,
        digest: &Digest,
        report: Option<Digest>,
    ) -> Result<ScanResult> {
        let (generation, index) = self.vuln_index().await?;
        let keys = self.trusted_keys(namespace(repo)).await?;
        let verified: Vec<_> = self
            .findings(repo, digest, &[Kind::Sbom], &keys)
            .await?
            .into_iter()
            .filter_map(|f| f.outcome.ok())
            .collect();
        let mut purls = Vec::new();
        for v in &verified {
            sbom_purls(&v.statement.predicate, &mut purls);
        }
        purls.sort();
        purls.dedup();
        let findings = {
            let purls = purls.clone();
            tokio::task::spawn_blocking(move || match_purls(&index, &purls))
                .await
                .map_err(internal)?
        };
        let mut result = ScanResult {
            repository: repo.to_string(),
            digest: digest.to_string(),
            generation,
            scanned_at_ms: now_ms(),
            sboms: verified.len() as i64,
            components: purls.len() as i64,
            counts: counts(&findings),
            findings,
        };
        self.meta
            .vulns()
            .put_scan(&bonded_meta::ScanRow {
                repo: repo.clone(),
                digest: digest.clone(),
                generation,
                scanned_at_ms: result.scanned_at_ms,
                sboms: result.sboms,
                components: result.components,
                findings: serde_json::to_string(&result.findings).map_err(internal)?,
                counts: serde_json::to_string(&result.counts).map_err(internal)?,
                report,
            })
            .await?;
        // Stored as found; shown with the waivers active now.
        self.apply_waivers(repo, digest, &mut result.findings)
            .await?;
        Ok(result)
    }

    /// The stored scan of an artifact, if any.
    pub async fn stored_scan(
        &self,
        repo: &RepoName,
        reference: &Reference,
    ) -> Result<Option<ScanResult>> {
        let digest = self.resolve_digest(repo, reference).await?;
        let Some(row) = self.meta.vulns().scan(repo, &digest).await? else {
            return Ok(None);
        };
        let mut findings: Vec<VulnFinding> =
            serde_json::from_str(&row.findings).map_err(internal)?;
        self.apply_waivers(repo, &digest, &mut findings).await?;
        Ok(Some(ScanResult {
            repository: repo.to_string(),
            digest: digest.to_string(),
            generation: row.generation,
            scanned_at_ms: row.scanned_at_ms,
            sboms: row.sboms,
            components: row.components,
            findings,
            counts: serde_json::from_str(&row.counts).map_err(internal)?,
        }))
    }

    /// One pass of the scan job: scans up to `limit` artifacts that have an SBOM and no scan
    /// at the current database generation (new SBOMs, and everything after the database
    /// changed). Returns how many it scanned; safe to run concurrently or twice (a scan
    /// replaces the previous result).
    pub async fn scan_due(&self, limit: u32) -> Result<usize> {
        let (generation, _) = self.vuln_index().await?;
        let due = self
            .meta
            .vulns()
            .scan_backlog(generation, &[SBOM_ARTIFACT], limit)
            .await?;
        for (repo, digest) in &due {
            self.scan_digest(repo, digest).await?;
        }
        Ok(due.len())
    }

    /// Stored scans with a finding of `advisory` (an id or an alias of one); with
    /// `environment`, only the digests that environment's tag points at.
    pub async fn affected_by(
        &self,
        advisory: &str,
        environment: Option<&str>,
    ) -> Result<Vec<ScanResult>> {
        let env = environment
            .map(|e| {
                e.parse::<bonded_types::Tag>().map_err(|err| {
                    Error::Invalid(Invalid::Name(format!("environment {e:?}: {err}")))
                })
            })
            .transpose()?;
        let ids = self.meta.vulns().advisories_named(advisory).await?;
        let mut out = Vec::new();
        for row in self.meta.vulns().scans_with(&ids).await? {
            if let Some(env) = &env {
                if self.meta.tags().resolve(&row.repo, env).await?.as_ref() != Some(&row.digest) {
                    continue;
                }
            }
            out.push(ScanResult {
                repository: row.repo.to_string(),
                digest: row.digest.to_string(),
                generation: row.generation,
                scanned_at_ms: row.scanned_at_ms,
                sboms: row.sboms,
                components: row.components,
                findings: serde_json::from_str::<Vec<VulnFinding>>(&row.findings)
                    .map_err(internal)?
                    .into_iter()
                    .filter(|f| ids.contains(&f.advisory_id))
                    .collect(),
                counts: serde_json::from_str(&row.counts).map_err(internal)?,
            });
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn purls_come_from_cyclonedx_and_spdx() {
        let cdx = serde_json::json!({"components": [
            {"purl": "pkg:pypi/a@1", "components": [{"purl": "pkg:pypi/b@2"}]},
            {"name": "no-purl"}]});
        let spdx = serde_json::json!({"packages": [{"externalRefs": [
            {"referenceType": "purl", "referenceLocator": "pkg:npm/c@3"},
            {"referenceType": "cpe23Type", "referenceLocator": "cpe:2.3:a"}]}]});
        let mut out = Vec::new();
        sbom_purls(&cdx, &mut out);
        sbom_purls(&spdx, &mut out);
        assert_eq!(out, ["pkg:pypi/a@1", "pkg:pypi/b@2", "pkg:npm/c@3"]);
    }

    #[test]
    fn severity_ranks_order_labels() {
        assert!(severity_rank("critical") > severity_rank("high"));
        assert!(severity_rank("low") > severity_rank("unknown"));
    }
}
