//! Vulnerability operations around each scan (`vulns.rs` does the scanning itself): telling a
//! [`VulnNotifier`] how long each scan took and when a rescan found new advisories in an
//! artifact an environment points at, attaching the signed vulnerability report referrer, the
//! figures the metrics show, and the state of configured OSV mirrors.
//!
//! The notifier is the seam for later sinks (webhooks): the service decides *what* is an event
//! (new advisory ids since the artifact's previous stored scan, in an artifact one of its
//! repository's environments points at); the sink decides where it goes.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use bonded_meta::{MirrorState, ScanRow, VulnDbState};
use bonded_supply::statement::{Statement, Subject};
use bonded_types::{Digest, RepoName};
use serde_json::json;

use crate::vulns::{severity_rank, ScanResult, VulnFinding};
use crate::{Registry, Result};

/// Referrer `artifactType` of signed vulnerability reports.
pub const VULN_REPORT_ARTIFACT: &str = "application/vnd.bonded.vulnerability-report.v1+json";
/// cosign's vulnerability attestation predicate (`cosign attest --type vuln`).
pub const VULN_PREDICATE: &str = "https://cosign.sigstore.dev/attestation/vuln/v1";

/// How a scan ended, for metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScanOutcome {
    Ok,
    Error,
}

impl ScanOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            ScanOutcome::Ok => "ok",
            ScanOutcome::Error => "error",
        }
    }
}

/// A rescan found advisories the artifact's previous scan did not have, and environments point
/// at the artifact.
#[derive(Debug, Clone, PartialEq)]
pub struct NewFindings {
    pub repo: RepoName,
    pub digest: Digest,
    /// The environments (tags named after the repository's environments) pointing at it.
    pub environments: Vec<String>,
    /// The findings whose advisory id the previous scan did not report, worst first.
    pub findings: Vec<VulnFinding>,
    /// The database generation the rescan ran against.
    pub generation: i64,
}

impl NewFindings {
    /// Distinct advisory ids, in finding order.
    pub fn advisory_ids(&self) -> Vec<&str> {
        let mut out: Vec<&str> = Vec::new();
        for f in &self.findings {
            if !out.contains(&f.advisory_id.as_str()) {
                out.push(&f.advisory_id);
            }
        }
        out
    }

    /// The worst severity among the new findings.
    pub fn max_severity(&self) -> &str {
        self.findings
            .iter()
            .map(|f| f.severity.as_str())
            .max_by_key(|s| severity_rank(s))
            .unwrap_or("unknown")
    }
}

/// Where scan events go. The server's sink logs, counts and audits; [`LogNotifier`] only logs.
#[async_trait::async_trait]
pub trait VulnNotifier: Send + Sync {
    /// One artifact was scanned (or its scan failed) in `elapsed`.
    fn scanned(&self, outcome: ScanOutcome, elapsed: Duration);
    /// A rescan found new advisories in an artifact environments point at.
    async fn new_findings(&self, event: &NewFindings);
}

/// Logs new findings as a `warn!` event with target `bonded::vuln::notify`.
pub struct LogNotifier;

/// The structured log event every sink emits for new findings.
pub fn log_new_findings(event: &NewFindings) {
    tracing::warn!(
        target: "bonded::vuln::notify",
        repo = %event.repo,
        digest = %event.digest,
        environments = %event.environments.join(","),
        advisories = %event.advisory_ids().join(","),
        max_severity = event.max_severity(),
        generation = event.generation,
        "a rescan found {} new vulnerabilities in {}@{} (pointed at by {})",
        event.findings.len(),
        event.repo,
        event.digest,
        event.environments.join(", ")
    );
}

#[async_trait::async_trait]
impl VulnNotifier for LogNotifier {
    fn scanned(&self, _: ScanOutcome, _: Duration) {}
    async fn new_findings(&self, event: &NewFindings) {
        log_new_findings(event);
    }
}

/// What the metrics show about the database and the stored scans.
#[derive(Debug, Clone)]
pub struct VulnSummary {
    pub generation: i64,
    /// When the database was last imported (Unix ms); 0 if never.
    pub updated_at_ms: i64,
    /// Findings by severity over the latest scans of live artifacts (every severity present).
    pub findings: BTreeMap<String, u64>,
}

fn internal(e: impl std::fmt::Display) -> crate::Error {
    crate::Error::Internal(e.to_string())
}

impl Registry {
    /// Replaces how scan events are delivered (the server wires logs, metrics and audit).
    pub fn with_vuln_notifier(mut self, notifier: Arc<dyn VulnNotifier>) -> Registry {
        self.vuln_notifier = notifier;
        self
    }

    /// Runs after every scan (`vulns::scan_digest`), given the artifact's stored scan from
    /// before it: reports the outcome, attaches a signed report when the findings changed (or
    /// there is none yet), and notifies new findings in environment-pointed artifacts. A failure
    /// to attach or notify is logged; it never fails the scan, whose result is stored.
    pub(crate) async fn after_scan(
        &self,
        previous: Option<ScanRow>,
        elapsed: Duration,
        outcome: Result<ScanResult>,
    ) -> Result<ScanResult> {
        let result = match outcome {
            Ok(r) => r,
            Err(e) => {
                self.vuln_notifier.scanned(ScanOutcome::Error, elapsed);
                return Err(e);
            }
        };
        self.vuln_notifier.scanned(ScanOutcome::Ok, elapsed);
        let (repo, digest): (RepoName, Digest) = (
            result.repository.parse().map_err(internal)?,
            result.digest.parse().map_err(internal)?,
        );
        let before: Option<Vec<VulnFinding>> = previous
            .as_ref()
            .and_then(|p| serde_json::from_str(&p.findings).ok());
        if let Err(e) = self
            .keep_report(
                &repo,
                &digest,
                previous.as_ref(),
                before.as_deref(),
                &result,
            )
            .await
        {
            tracing::warn!(
                repo = %repo, digest = %digest, error = %e,
                "attaching the signed vulnerability report failed; the next scan retries"
            );
        }
        if let Some(before) = &before {
            let known: BTreeSet<&str> = before.iter().map(|f| f.advisory_id.as_str()).collect();
            let new: Vec<VulnFinding> = result
                .findings
                .iter()
                .filter(|f| !known.contains(f.advisory_id.as_str()))
                .cloned()
                .collect();
            if !new.is_empty() {
                let environments = self.environments_at(&repo, &digest).await?;
                if !environments.is_empty() {
                    let event = NewFindings {
                        repo: repo.clone(),
                        digest: digest.clone(),
                        environments,
                        findings: new,
                        generation: result.generation,
                    };
                    self.vuln_notifier.new_findings(&event).await;
                }
            }
        }
        Ok(result)
    }

    /// The environments of `repo` whose tag points at `digest`, in promotion order.
    async fn environments_at(&self, repo: &RepoName, digest: &Digest) -> Result<Vec<String>> {
        let envs = self.rules.environments.of(repo);
        if envs.is_empty() {
            return Ok(vec![]);
        }
        let tags = self.meta.tags().pointing_at(repo, digest).await?;
        Ok(envs
            .iter()
            .filter(|e| tags.contains(e))
            .map(ToString::to_string)
            .collect())
    }

    /// Keeps the stored scan's report referrer: the previous one (stored with the scan already)
    /// when the findings are the same and it still exists, else a newly signed one.
    async fn keep_report(
        &self,
        repo: &RepoName,
        digest: &Digest,
        previous: Option<&ScanRow>,
        before: Option<&[VulnFinding]>,
        result: &ScanResult,
    ) -> Result<()> {
        if let (Some(report), Some(before)) = (previous.and_then(|p| p.report.as_ref()), before) {
            if before == result.findings.as_slice()
                && self.meta.manifests().get(repo, report).await?.is_some()
            {
                return Ok(());
            }
        }
        let report = self.attach_vuln_report(repo, digest, result).await?;
        self.meta
            .vuln_ops()
            .set_scan_report(repo, digest, &report)
            .await?;
        Ok(())
    }

    /// Signs the scan result as an in-toto Statement with cosign's vulnerability predicate and
    /// attaches it to the artifact as a referrer; returns the referrer's digest.
    async fn attach_vuln_report(
        &self,
        repo: &RepoName,
        digest: &Digest,
        result: &ScanResult,
    ) -> Result<Digest> {
        let at = bonded_supply::time::rfc3339(result.scanned_at_ms);
        let (_, updated_at_ms) = self.meta.vuln_ops().db_head().await?;
        let predicate = json!({
            "invocation": {
                "parameters": null,
                "uri": "",
                "event_id": "",
                "builder.id": "https://bonded.dev/registry",
            },
            "scanner": {
                "uri": "https://bonded.dev/registry",
                "version": env!("CARGO_PKG_VERSION"),
                "db": {
                    "uri": "bonded:vulndb",
                    "version": result.generation.to_string(),
                },
                "result": {
                    "sboms": result.sboms,
                    "components": result.components,
                    "counts": result.counts,
                    "findings": result.findings,
                    "databaseUpdatedOn": bonded_supply::time::rfc3339(updated_at_ms),
                },
            },
            "metadata": {
                "scanStartedOn": at,
                "scanFinishedOn": at,
            },
        });
        let statement = Statement::new(
            Subject::of(repo.as_str(), digest),
            VULN_PREDICATE,
            predicate,
        );
        self.attach_signed_statement(repo, digest, VULN_REPORT_ARTIFACT, &statement, &at)
            .await
    }

    /// Findings by severity over live artifacts' latest scans, and the database's state.
    pub async fn vuln_summary(&self) -> Result<VulnSummary> {
        let mut findings: BTreeMap<String, u64> = crate::vulns::SEVERITIES
            .iter()
            .map(|s| (s.to_string(), 0))
            .collect();
        for counts in self.meta.vuln_ops().live_scan_counts().await? {
            let counts: BTreeMap<String, u64> = serde_json::from_str(&counts).map_err(internal)?;
            for (severity, n) in counts {
                *findings.entry(severity).or_insert(0) += n;
            }
        }
        let (generation, updated_at_ms) = self.meta.vuln_ops().db_head().await?;
        Ok(VulnSummary {
            generation,
            updated_at_ms,
            findings,
        })
    }

    /// The last fetch of a configured mirror URL, if it was ever fetched.
    pub async fn mirror_state(&self, url: &str) -> Result<Option<MirrorState>> {
        Ok(self.meta.vuln_ops().mirror(url).await?)
    }

    /// Every mirror fetched so far.
    pub async fn mirror_states(&self) -> Result<Vec<MirrorState>> {
        Ok(self.meta.vuln_ops().mirrors().await?)
    }

    /// Marks the database updated now from the source `name`, whose content did not change
    /// since its last import (a mirror answered `304 Not Modified`): its age restarts, the
    /// generation stays.
    pub async fn vulndb_unchanged(&self, name: &str) -> Result<VulnDbState> {
        let source = self
            .meta
            .vulns()
            .sources()
            .await?
            .into_iter()
            .find(|s| s.name == name)
            .ok_or_else(|| {
                crate::Error::Invalid(crate::Invalid::Import(format!(
                    "{name} was never imported; import it first"
                )))
            })?;
        let source = bonded_meta::VulnSource {
            imported_at_ms: crate::now_ms(),
            ..source
        };
        Ok(self.meta.vulns().apply_import(&source, &[]).await?)
    }

    pub async fn record_mirror(&self, state: &MirrorState) -> Result<()> {
        Ok(self.meta.vuln_ops().put_mirror(state).await?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn finding(id: &str, severity: &str) -> VulnFinding {
        VulnFinding {
            advisory_id: id.into(),
            aliases: vec![],
            ecosystem: "PyPI".into(),
            package: "p".into(),
            installed: "1".into(),
            fixed: None,
            severity: severity.into(),
            score: None,
            summary: None,
            waiver: None,
        }
    }

    #[test]
    fn new_findings_name_each_advisory_once_and_their_worst_severity() {
        let e = NewFindings {
            repo: "shop/app".parse().unwrap(),
            digest: Digest::of(bonded_types::Algorithm::Sha256, b"x"),
            environments: vec!["prod".into()],
            findings: vec![
                finding("A", "medium"),
                finding("B", "critical"),
                finding("A", "medium"),
                finding("C", "unknown"),
            ],
            generation: 2,
        };
        assert_eq!(e.advisory_ids(), ["A", "B", "C"]);
        assert_eq!(e.max_severity(), "critical");
    }
}
