//! Vulnerability waivers: a team accepting a finding deliberately, for a while.
//!
//! A waiver names an advisory (an id or any alias: `CVE-…` waives the `GHSA-…` that aliases
//! it), a scope — a namespace pattern as grants use (`shop/**`, `shop/`, `shop/app`) or one
//! artifact (`shop/app@sha256:…`) — optionally a package, a reason, its author and an expiry (at
//! most a year ahead). It also carries the CycloneDX impact analysis it stands for (state,
//! justification, responses), which the VEX export (`vex.rs`) publishes.
//!
//! Stored findings are never rewritten: waivers are applied when results are read or judged
//! ([`Registry::apply_waivers`]), so an expired or revoked waiver stops applying at once and a
//! new waiver applies to every stored scan without a rescan.

use std::str::FromStr;

use bonded_meta::{NewWaiverRow, WaiverRow};
use bonded_supply::time::{now_ms, parse_rfc3339, rfc3339};
use bonded_types::{Digest, RepoName};
use serde::{Deserialize, Serialize};

use crate::auth::policy::Namespace;
use crate::vulns::VulnFinding;
use crate::{Error, Invalid, Missing, Registry, Result};

/// CycloneDX impact analysis states (`vulnerabilities[].analysis.state`, 1.4–1.6).
pub const STATES: [&str; 6] = [
    "resolved",
    "resolved_with_pedigree",
    "exploitable",
    "in_triage",
    "false_positive",
    "not_affected",
];

/// CycloneDX justifications, for the `not_affected` state.
pub const JUSTIFICATIONS: [&str; 9] = [
    "code_not_present",
    "code_not_reachable",
    "requires_configuration",
    "requires_dependency",
    "requires_environment",
    "protected_by_compiler",
    "protected_at_runtime",
    "protected_at_perimeter",
    "protected_by_mitigating_control",
];

/// CycloneDX responses.
pub const RESPONSES: [&str; 5] = [
    "can_not_fix",
    "will_not_fix",
    "update",
    "rollback",
    "workaround_available",
];

/// The longest a waiver may run.
pub const MAX_EXPIRY_MS: i64 = 366 * 86_400_000;

fn invalid(m: impl Into<String>) -> Error {
    Error::Invalid(Invalid::Waiver(m.into()))
}

/// What a waiver covers.
#[derive(Debug, Clone)]
pub enum WaiverScope {
    /// Every repository a namespace pattern matches.
    Repositories(Namespace),
    /// One artifact.
    Artifact(RepoName, Digest),
}

impl FromStr for WaiverScope {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<WaiverScope, String> {
        if let Some((repo, digest)) = s.split_once('@') {
            let repo: RepoName = repo
                .parse()
                .map_err(|e| format!("scope {s:?}: repository {repo:?}: {e}"))?;
            let digest: Digest = digest
                .parse()
                .map_err(|e| format!("scope {s:?}: digest {digest:?}: {e}"))?;
            return Ok(WaiverScope::Artifact(repo, digest));
        }
        Ok(WaiverScope::Repositories(s.parse().map_err(|e| {
            format!(
                "scope: {e} (give a pattern such as `shop/**`, or one artifact `repo@sha256:…`)"
            )
        })?))
    }
}

impl WaiverScope {
    pub fn matches(&self, repo: &RepoName, digest: &Digest) -> bool {
        match self {
            WaiverScope::Repositories(ns) => ns.matches(repo),
            WaiverScope::Artifact(r, d) => r == repo && d == digest,
        }
    }

    /// Whether any artifact of `repo` can be covered.
    pub fn touches(&self, repo: &RepoName) -> bool {
        match self {
            WaiverScope::Repositories(ns) => ns.matches(repo),
            WaiverScope::Artifact(r, _) => r == repo,
        }
    }

    /// The namespace the audit log files it under: the first path component.
    pub fn namespace(&self) -> String {
        let text = match self {
            WaiverScope::Repositories(ns) => ns.as_str().to_string(),
            WaiverScope::Artifact(r, _) => r.to_string(),
        };
        text.split('/').next().unwrap_or("").to_string()
    }
}

/// Whether `s` is an advisory id as OSV databases write them: `CVE-2024-35195`,
/// `GHSA-9wx4-h78v-vm56`, `PYSEC-2023-74`, `GO-2024-2687`, `RUSTSEC-2024-0001`, `DSA-5000-1`…
pub fn valid_advisory(s: &str) -> std::result::Result<(), String> {
    let bad = |why: &str| {
        Err(format!(
            "advisory {s:?} {why}; give an id such as CVE-2024-35195 or GHSA-9wx4-h78v-vm56"
        ))
    };
    if s.is_empty() || s.len() > 128 {
        return bad("must be 1-128 characters");
    }
    let Some((prefix, rest)) = s.split_once('-') else {
        return bad("is not of the form PREFIX-ID");
    };
    if prefix.is_empty()
        || !prefix.starts_with(|c: char| c.is_ascii_uppercase())
        || !prefix
            .chars()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit())
    {
        return bad("must start with an upper-case prefix (CVE, GHSA, PYSEC, GO, …)");
    }
    if rest.is_empty()
        || !rest
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-._:".contains(c))
    {
        return bad("has characters other than letters, digits and -._:");
    }
    let parts: Vec<&str> = rest.split('-').collect();
    let ok = match prefix {
        "CVE" => {
            parts.len() == 2
                && parts[0].len() == 4
                && parts[0].bytes().all(|b| b.is_ascii_digit())
                && parts[1].len() >= 4
                && parts[1].bytes().all(|b| b.is_ascii_digit())
        }
        "GHSA" => {
            parts.len() == 3
                && parts.iter().all(|p| {
                    p.len() == 4
                        && p.bytes()
                            .all(|b| b.is_ascii_digit() || b.is_ascii_lowercase())
                })
        }
        _ => true,
    };
    if !ok {
        return bad(match prefix {
            "CVE" => "is not a CVE id (CVE-YYYY-NNNN…)",
            _ => "is not a GHSA id (GHSA-xxxx-xxxx-xxxx)",
        });
    }
    Ok(())
}

/// When a waiver given as `30d`, `12h`, `90m`, `45s`, a date (`2027-01-31`, 00:00 UTC) or an
/// RFC 3339 time expires, checked to be in the future and at most a year ahead of `now`.
pub fn parse_expiry(text: &str, now: i64) -> std::result::Result<i64, String> {
    let t = text.trim();
    let hint = "give a duration such as 30d, 12h, 90m or a date such as 2027-01-31";
    if t.is_empty() {
        return Err(format!("expires is required: {hint}"));
    }
    let unit = t
        .chars()
        .last()
        .and_then(|c| match c {
            's' => Some(1_000),
            'm' => Some(60_000),
            'h' => Some(3_600_000),
            'd' => Some(86_400_000),
            'w' => Some(7 * 86_400_000),
            _ => None,
        })
        .filter(|_| t.len() > 1 && t[..t.len() - 1].bytes().all(|b| b.is_ascii_digit()));
    let at = if let Some(unit) = unit {
        let n: i64 = t[..t.len() - 1]
            .parse()
            .map_err(|_| format!("expires {t:?} is too large: {hint}"))?;
        now.saturating_add(n.saturating_mul(unit))
    } else if t.len() == 10 && t.as_bytes()[4] == b'-' && t.as_bytes()[7] == b'-' {
        parse_rfc3339(&format!("{t}T00:00:00Z"))
            .map_err(|_| format!("expires {t:?} is not a date: {hint}"))?
    } else {
        parse_rfc3339(t).map_err(|_| format!("expires {t:?} is not understood: {hint}"))?
    };
    if at <= now {
        return Err(format!(
            "expires {t:?} is not in the future ({}); a waiver must expire later",
            rfc3339(at)
        ));
    }
    if at - now > MAX_EXPIRY_MS {
        return Err(format!(
            "expires {t:?} ({}) is more than a year ahead; waivers must be renewed at least yearly",
            rfc3339(at)
        ));
    }
    Ok(at)
}

/// A waiver to add.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AddWaiver {
    pub advisory: String,
    /// A namespace pattern (`shop/**`) or one artifact (`shop/app@sha256:…`).
    pub scope: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub package: Option<String>,
    pub reason: String,
    /// `30d`, `2027-01-31`, or an RFC 3339 time.
    pub expires: String,
    /// CycloneDX analysis state; default `exploitable` (present, risk accepted).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<String>,
    /// CycloneDX justification; only with `not_affected`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub justification: Option<String>,
    /// CycloneDX responses; default `will_not_fix` for `exploitable`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub responses: Vec<String>,
}

/// A stored waiver as shown to clients.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Waiver {
    pub id: i64,
    pub advisory: String,
    pub scope: String,
    pub package: Option<String>,
    pub state: String,
    pub justification: Option<String>,
    pub responses: Vec<String>,
    pub reason: String,
    pub author: String,
    pub created_at: String,
    pub expires_at: String,
    pub expires_at_ms: i64,
    pub revoked_at: Option<String>,
    pub revoked_by: Option<String>,
    /// `active`, `expired` or `revoked`.
    pub status: String,
}

/// The waiver that waives a finding, as scan results show it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WaiverRef {
    pub id: i64,
    pub author: String,
    pub reason: String,
    pub expires_at: String,
}

impl Waiver {
    fn from_row(r: WaiverRow, now: i64) -> Waiver {
        let status = if r.revoked_at_ms.is_some() {
            "revoked"
        } else if r.waiver.expires_at_ms <= now {
            "expired"
        } else {
            "active"
        };
        let w = r.waiver;
        Waiver {
            id: r.id,
            advisory: w.advisory,
            scope: w.scope,
            package: w.package,
            state: w.state,
            justification: w.justification,
            responses: w.responses,
            reason: w.reason,
            author: w.author,
            created_at: rfc3339(w.created_at_ms),
            expires_at: rfc3339(w.expires_at_ms),
            expires_at_ms: w.expires_at_ms,
            revoked_at: r.revoked_at_ms.map(rfc3339),
            revoked_by: r.revoked_by,
            status: status.into(),
        }
    }

    pub fn is_active(&self) -> bool {
        self.status == "active"
    }

    pub fn parsed_scope(&self) -> Option<WaiverScope> {
        self.scope.parse().ok()
    }

    /// Whether this waiver waives `finding` in `repo@digest` (whether it is active aside).
    pub fn waives(&self, repo: &RepoName, digest: &Digest, finding: &VulnFinding) -> bool {
        let advisory = finding.advisory_id == self.advisory
            || finding.aliases.iter().any(|a| a == &self.advisory);
        advisory
            && self.package.as_ref().is_none_or(|p| p == &finding.package)
            && self.parsed_scope().is_some_and(|s| s.matches(repo, digest))
    }

    pub fn reference(&self) -> WaiverRef {
        WaiverRef {
            id: self.id,
            author: self.author.clone(),
            reason: self.reason.clone(),
            expires_at: self.expires_at.clone(),
        }
    }
}

/// Marks each finding of `repo@digest` waived by the first of `active` that waives it.
pub fn mark_waived(
    repo: &RepoName,
    digest: &Digest,
    findings: &mut [VulnFinding],
    active: &[Waiver],
) {
    for f in findings.iter_mut() {
        f.waiver = active
            .iter()
            .find(|w| w.waives(repo, digest, f))
            .map(Waiver::reference);
    }
}

impl Registry {
    /// Checks and stores a waiver by `author`.
    pub async fn waiver_add(&self, add: AddWaiver, author: &str) -> Result<Waiver> {
        let now = now_ms();
        let advisory = add.advisory.trim().to_string();
        valid_advisory(&advisory).map_err(invalid)?;
        let scope: WaiverScope = add.scope.trim().parse().map_err(invalid)?;
        let reason = add.reason.trim().to_string();
        if reason.is_empty() {
            return Err(invalid(
                "reason is required: say why this finding is accepted",
            ));
        }
        if reason.len() > 4096 {
            return Err(invalid("reason is longer than 4096 bytes"));
        }
        let package = add
            .package
            .map(|p| p.trim().to_string())
            .filter(|p| !p.is_empty());
        if package.as_ref().is_some_and(|p| p.len() > 256) {
            return Err(invalid("package is longer than 256 bytes"));
        }
        let expires_at_ms = parse_expiry(&add.expires, now).map_err(invalid)?;
        let state = add.state.unwrap_or_else(|| "exploitable".into());
        if !STATES.contains(&state.as_str()) {
            return Err(invalid(format!(
                "state {state:?} is not a CycloneDX analysis state: one of {}",
                STATES.join(", ")
            )));
        }
        if let Some(j) = &add.justification {
            if !JUSTIFICATIONS.contains(&j.as_str()) {
                return Err(invalid(format!(
                    "justification {j:?} is not a CycloneDX justification: one of {}",
                    JUSTIFICATIONS.join(", ")
                )));
            }
            if state != "not_affected" {
                return Err(invalid(format!(
                    "a justification goes with state not_affected, not {state}"
                )));
            }
        }
        for r in &add.responses {
            if !RESPONSES.contains(&r.as_str()) {
                return Err(invalid(format!(
                    "response {r:?} is not a CycloneDX response: one of {}",
                    RESPONSES.join(", ")
                )));
            }
        }
        let mut responses = add.responses;
        responses.dedup();
        if responses.is_empty() && state == "exploitable" {
            responses.push("will_not_fix".into());
        }
        let row = NewWaiverRow {
            advisory,
            scope: add.scope.trim().to_string(),
            artifact: match &scope {
                WaiverScope::Artifact(r, d) => Some((r.clone(), d.clone())),
                WaiverScope::Repositories(_) => None,
            },
            package,
            state,
            justification: add.justification,
            responses,
            reason,
            author: author.to_string(),
            created_at_ms: now,
            expires_at_ms,
        };
        let id = self.meta.waivers().add_waiver(&row).await?;
        tracing::info!(
            waiver = id, advisory = %row.advisory, scope = %row.scope, author,
            expires_at = %rfc3339(expires_at_ms), "vulnerability waiver added"
        );
        self.waiver(id).await
    }

    pub async fn waiver(&self, id: i64) -> Result<Waiver> {
        let row = self
            .meta
            .waivers()
            .waiver(id)
            .await?
            .ok_or(Error::NotFound(Missing::Waiver))?;
        Ok(Waiver::from_row(row, now_ms()))
    }

    /// Waivers, newest first: only active ones unless `all`; only those that can cover an
    /// artifact of `repository` when given.
    pub async fn waivers(&self, repository: Option<&RepoName>, all: bool) -> Result<Vec<Waiver>> {
        let now = now_ms();
        let rows = self.meta.waivers().waivers((!all).then_some(now)).await?;
        Ok(rows
            .into_iter()
            .map(|r| Waiver::from_row(r, now))
            .filter(|w| {
                repository.is_none_or(|repo| w.parsed_scope().is_some_and(|s| s.touches(repo)))
            })
            .collect())
    }

    /// Revokes a waiver (by `by`); a waiver revoked already stays as it was.
    pub async fn waiver_revoke(&self, id: i64, by: &str) -> Result<Waiver> {
        self.meta
            .waivers()
            .revoke_waiver(id, by, now_ms())
            .await
            .map_err(|e| match e {
                bonded_meta::MetaError::NotFound => Error::NotFound(Missing::Waiver),
                other => other.into(),
            })?;
        tracing::info!(waiver = id, by, "vulnerability waiver revoked");
        self.waiver(id).await
    }

    /// The waivers that apply now (neither revoked nor expired).
    pub(crate) async fn active_waivers(&self) -> Result<Vec<Waiver>> {
        let now = now_ms();
        Ok(self
            .meta
            .waivers()
            .waivers(Some(now))
            .await?
            .into_iter()
            .map(|r| Waiver::from_row(r, now))
            .collect())
    }

    /// Marks the findings of `repo@digest` that an active waiver waives.
    pub async fn apply_waivers(
        &self,
        repo: &RepoName,
        digest: &Digest,
        findings: &mut [VulnFinding],
    ) -> Result<()> {
        if findings.is_empty() {
            return Ok(());
        }
        let active = self.active_waivers().await?;
        mark_waived(repo, digest, findings, &active);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn advisory_ids_are_checked() {
        for ok in [
            "CVE-2024-35195",
            "GHSA-9wx4-h78v-vm56",
            "PYSEC-2023-74",
            "GO-2024-2687",
            "RUSTSEC-2024-0001",
            "DSA-5000-1",
        ] {
            assert!(valid_advisory(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "cve-2024-1234",
            "CVE-2024",
            "CVE-24-12345",
            "GHSA-9wx4-h78v",
            "GHSA-9WX4-H78V-VM56",
            "requests",
            "CVE-2024-1234; drop",
        ] {
            assert!(valid_advisory(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn expiries_are_durations_dates_or_times_within_a_year() {
        let now = parse_rfc3339("2026-06-01T00:00:00Z").unwrap();
        assert_eq!(parse_expiry("30d", now).unwrap(), now + 30 * 86_400_000);
        assert_eq!(parse_expiry("2s", now).unwrap(), now + 2000);
        assert_eq!(
            parse_expiry("2027-01-31", now).unwrap(),
            parse_rfc3339("2027-01-31T00:00:00Z").unwrap()
        );
        assert!(parse_expiry("2026-07-01T12:00:00Z", now).is_ok());
        assert!(parse_expiry("2026-05-01", now)
            .unwrap_err()
            .contains("not in the future"));
        assert!(parse_expiry("400d", now)
            .unwrap_err()
            .contains("more than a year"));
        assert!(parse_expiry("0d", now).is_err());
        assert!(parse_expiry("soon", now).is_err());
        assert!(parse_expiry("", now).is_err());
    }

    fn finding(id: &str, alias: &str, package: &str) -> VulnFinding {
        VulnFinding {
            advisory_id: id.into(),
            aliases: vec![alias.into()],
            ecosystem: "PyPI".into(),
            package: package.into(),
            installed: "1.0".into(),
            fixed: None,
            severity: "high".into(),
            score: None,
            summary: None,
            waiver: None,
        }
    }

    fn waiver(id: i64, advisory: &str, scope: &str, package: Option<&str>) -> Waiver {
        Waiver {
            id,
            advisory: advisory.into(),
            scope: scope.into(),
            package: package.map(str::to_string),
            state: "exploitable".into(),
            justification: None,
            responses: vec![],
            reason: "r".into(),
            author: "a".into(),
            created_at: String::new(),
            expires_at: String::new(),
            expires_at_ms: 0,
            revoked_at: None,
            revoked_by: None,
            status: "active".into(),
        }
    }

    #[test]
    fn waivers_match_by_id_or_alias_scope_and_package() {
        let repo: RepoName = "shop/app".parse().unwrap();
        let d: Digest = format!("sha256:{}", "a".repeat(64)).parse().unwrap();
        let other: Digest = format!("sha256:{}", "b".repeat(64)).parse().unwrap();
        let f = finding("GHSA-aaaa-bbbb-cccc", "CVE-2024-1234", "requests");
        assert!(waiver(1, "CVE-2024-1234", "shop/**", None).waives(&repo, &d, &f));
        assert!(waiver(1, "GHSA-aaaa-bbbb-cccc", "shop/", None).waives(&repo, &d, &f));
        assert!(waiver(1, "CVE-2024-1234", "shop/app", Some("requests")).waives(&repo, &d, &f));
        assert!(!waiver(1, "CVE-2024-1234", "shop/app", Some("urllib3")).waives(&repo, &d, &f));
        assert!(!waiver(1, "CVE-2024-9999", "shop/**", None).waives(&repo, &d, &f));
        assert!(!waiver(1, "CVE-2024-1234", "other/**", None).waives(&repo, &d, &f));
        let pinned = format!("shop/app@{d}");
        assert!(waiver(1, "CVE-2024-1234", &pinned, None).waives(&repo, &d, &f));
        assert!(!waiver(1, "CVE-2024-1234", &pinned, None).waives(&repo, &other, &f));

        let mut fs = vec![f.clone(), finding("GHSA-dddd-eeee-ffff", "CVE-2024-5", "x")];
        mark_waived(
            &repo,
            &d,
            &mut fs,
            &[waiver(7, "CVE-2024-1234", "shop/**", None)],
        );
        assert_eq!(fs[0].waiver.as_ref().map(|w| w.id), Some(7));
        assert!(fs[1].waiver.is_none());
    }

    #[test]
    fn scopes_parse_patterns_and_artifacts() {
        assert!(matches!(
            "shop/**".parse::<WaiverScope>(),
            Ok(WaiverScope::Repositories(_))
        ));
        let d = format!("shop/app@sha256:{}", "a".repeat(64));
        assert!(matches!(
            d.parse::<WaiverScope>(),
            Ok(WaiverScope::Artifact(..))
        ));
        assert!("shop/app@sha256:short".parse::<WaiverScope>().is_err());
        assert!("Shop/**".parse::<WaiverScope>().is_err());
        assert!("".parse::<WaiverScope>().is_err());
    }
}
