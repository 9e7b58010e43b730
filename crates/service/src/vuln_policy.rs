//! The vulnerability requirement (`vulnerabilities = { max_severity, max_db_age_days }`), judged
//! one way wherever it is asked: promotion gates (`promotion/gates.rs`), `[[policy]]` pull rules
//! (`supply/evaluate.rs`) and the scan pass rate (M8) on `/metrics`.
//!
//! An artifact passes only if the vulnerability database was imported within `max_db_age_days`,
//! the artifact's latest stored scan ran against the current database generation, and none of
//! its findings at or above `max_severity` is left unwaived. Stored results are read, never
//! produced here: a pull or promotion never waits on a scan.

use bonded_meta::VulnDbState;
use bonded_supply::time::now_ms;
use bonded_types::{Digest, RepoName};

use crate::promotion::VulnGate;
use crate::vulns::{severity_rank, VulnFinding, SEVERITIES};
use crate::waivers::{mark_waived, Waiver};
use crate::{Error, Registry, Result};

/// How many artifacts pass the vulnerability requirement (SLI M8).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PassRate {
    /// Live artifacts with a stored scan.
    pub scanned: u64,
    /// Of those, the ones passing.
    pub passing: u64,
}

impl PassRate {
    /// passing / scanned; 1 when nothing is scanned.
    pub fn ratio(&self) -> f64 {
        if self.scanned == 0 {
            1.0
        } else {
            self.passing as f64 / self.scanned as f64
        }
    }
}

/// Whether the database is fresh enough to count: `Err(why not)`.
fn fresh(state: &VulnDbState, max_db_age_days: u64, now: i64) -> std::result::Result<(), String> {
    if state.updated_at_ms == 0 {
        return Err("no vulnerability database has been imported".into());
    }
    let age_days = (now - state.updated_at_ms).max(0) / 86_400_000;
    if age_days as u64 > max_db_age_days {
        return Err(format!(
            "the vulnerability database was last updated {age_days} days ago \
             (at most {max_db_age_days} allowed): import a fresh export"
        ));
    }
    Ok(())
}

fn describe(f: &VulnFinding) -> String {
    format!(
        "{} ({} {}, {}{})",
        f.advisory_id,
        f.package,
        f.installed,
        f.severity,
        f.fixed
            .as_ref()
            .map_or(String::new(), |x| format!(", fixed in {x}"))
    )
}

/// Judges findings already marked with their waivers against `max_severity`: (passed, why).
pub fn judge_findings(
    findings: &[VulnFinding],
    max_severity: &str,
    generation: i64,
) -> (bool, String) {
    let limit = severity_rank(max_severity);
    let (waived, bad): (Vec<&VulnFinding>, Vec<&VulnFinding>) = findings
        .iter()
        .filter(|f| severity_rank(&f.severity) >= limit)
        .partition(|f| f.waiver.is_some());
    let waived_text = if waived.is_empty() {
        String::new()
    } else {
        let list: Vec<String> = waived
            .iter()
            .map(|f| {
                let w = f.waiver.as_ref().expect("partitioned on waiver");
                format!(
                    "{} by waiver {} ({}, until {})",
                    f.advisory_id, w.id, w.author, w.expires_at
                )
            })
            .collect();
        format!("; {} waived: {}", waived.len(), list.join(", "))
    };
    if bad.is_empty() {
        (
            true,
            format!(
                "{} findings, none at or above {max_severity} left unwaived (database \
                 generation {generation}){waived_text}",
                findings.len()
            ),
        )
    } else {
        let list: Vec<String> = bad.iter().map(|f| describe(f)).collect();
        (
            false,
            format!(
                "{} findings at or above {max_severity}: {}{waived_text}",
                bad.len(),
                list.join(", ")
            ),
        )
    }
}

fn internal(e: impl std::fmt::Display) -> Error {
    Error::Internal(e.to_string())
}

impl Registry {
    /// Judges `repo@digest` against a vulnerability requirement: (passed, why). The one
    /// evaluation behind the promotion gate and the pull policy rule.
    pub(crate) async fn vuln_check(
        &self,
        repo: &RepoName,
        digest: &Digest,
        req: &VulnGate,
    ) -> Result<(bool, String)> {
        let state = self.meta.vulns().db_state().await?;
        if let Err(why) = fresh(&state, req.max_db_age_days, now_ms()) {
            return Ok((false, why));
        }
        let Some(row) = self.meta.vulns().scan(repo, digest).await? else {
            return Ok((false, format!("{digest} has not been scanned")));
        };
        if row.generation != state.generation {
            return Ok((
                false,
                format!(
                    "the latest scan ran against database generation {}, the current one is {}: \
                     rescan it",
                    row.generation, state.generation
                ),
            ));
        }
        let mut findings: Vec<VulnFinding> =
            serde_json::from_str(&row.findings).map_err(internal)?;
        self.apply_waivers(repo, digest, &mut findings).await?;
        Ok(judge_findings(
            &findings,
            &req.max_severity,
            state.generation,
        ))
    }

    /// The scan pass rate (M8) over the latest scans of live artifacts: an artifact passes as
    /// [`Registry::vuln_check`] would pass it. With a stale (or no) database nothing passes.
    /// One query counts; only scans with findings at or above the threshold are read, to
    /// apply waivers to them.
    pub async fn vuln_pass_rate(&self, req: &VulnGate) -> Result<PassRate> {
        let state = self.meta.vulns().db_state().await?;
        let limit = severity_rank(&req.max_severity);
        let failing_levels: Vec<&str> = SEVERITIES
            .iter()
            .copied()
            .filter(|s| severity_rank(s) >= limit && limit > 0)
            .collect();
        let inputs = self
            .meta
            .waivers()
            .pass_rate_inputs(state.generation, &failing_levels)
            .await?;
        let scanned = inputs.scanned.max(0) as u64;
        if fresh(&state, req.max_db_age_days, now_ms()).is_err() {
            return Ok(PassRate {
                scanned,
                passing: 0,
            });
        }
        let active: Vec<Waiver> = if inputs.candidates.is_empty() {
            Vec::new()
        } else {
            self.active_waivers().await?
        };
        let mut failing = 0u64;
        for (repo, digest, findings) in &inputs.candidates {
            let mut findings: Vec<VulnFinding> =
                serde_json::from_str(findings).map_err(internal)?;
            mark_waived(repo, digest, &mut findings, &active);
            if !judge_findings(&findings, &req.max_severity, state.generation).0 {
                failing += 1;
            }
        }
        Ok(PassRate {
            scanned,
            passing: (inputs.current.max(0) as u64).saturating_sub(failing),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::waivers::WaiverRef;

    fn finding(id: &str, severity: &str, waived: bool) -> VulnFinding {
        VulnFinding {
            advisory_id: id.into(),
            aliases: vec![],
            ecosystem: "PyPI".into(),
            package: "requests".into(),
            installed: "2.31.0".into(),
            fixed: Some("2.32.0".into()),
            severity: severity.into(),
            score: None,
            summary: None,
            waiver: waived.then(|| WaiverRef {
                id: 3,
                author: "alice".into(),
                reason: "accepted".into(),
                expires_at: "2027-01-01T00:00:00Z".into(),
            }),
        }
    }

    #[test]
    fn only_unwaived_findings_at_or_above_the_threshold_fail() {
        let (ok, why) = judge_findings(
            &[
                finding("GHSA-1", "high", false),
                finding("GHSA-2", "low", false),
            ],
            "high",
            4,
        );
        assert!(!ok);
        assert_eq!(
            why,
            "1 findings at or above high: GHSA-1 (requests 2.31.0, high, fixed in 2.32.0)"
        );
        let (ok, why) = judge_findings(
            &[
                finding("GHSA-1", "critical", true),
                finding("GHSA-2", "medium", false),
            ],
            "high",
            4,
        );
        assert!(ok, "{why}");
        assert!(why.contains("1 waived: GHSA-1 by waiver 3 (alice, until 2027-01-01T00:00:00Z)"));
        let (ok, why) = judge_findings(
            &[
                finding("GHSA-1", "critical", true),
                finding("GHSA-2", "high", false),
            ],
            "high",
            4,
        );
        assert!(!ok);
        assert!(
            why.starts_with("1 findings at or above high: GHSA-2"),
            "{why}"
        );
        assert!(why.contains("1 waived: GHSA-1"), "{why}");
    }

    #[test]
    fn a_stale_or_missing_database_does_not_count() {
        let state = |updated_at_ms| VulnDbState {
            generation: 1,
            changed_at_ms: 0,
            updated_at_ms,
            active: 1,
            withdrawn: 0,
        };
        let now = 10 * 86_400_000;
        assert!(fresh(&state(0), 5, now)
            .unwrap_err()
            .contains("no vulnerability database"));
        assert!(fresh(&state(now - 6 * 86_400_000), 5, now)
            .unwrap_err()
            .contains("6 days ago"));
        assert!(fresh(&state(now - 5 * 86_400_000), 5, now).is_ok());
    }
}
