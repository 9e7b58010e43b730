//! The OSV record model (schema 1.6, the fields matching and reporting read) and [`Advisory`],
//! the compact owned form kept in memory by the index.
//!
//! Unknown fields are ignored; `details`, references, credits and ecosystem-specific payloads
//! other than a severity label are dropped when compacting, which is what keeps 200,000
//! advisories small.

use serde::{Deserialize, Serialize};

use crate::cvss::{self, Severity, SeverityInfo, SeveritySource};
use crate::purl::normalize_name;
use crate::version::Ecosystem;

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct OsvRecord {
    #[serde(default)]
    pub schema_version: Option<String>,
    pub id: String,
    #[serde(default)]
    pub modified: String,
    #[serde(default)]
    pub published: Option<String>,
    #[serde(default)]
    pub withdrawn: Option<String>,
    #[serde(default)]
    pub aliases: Vec<String>,
    #[serde(default)]
    pub related: Vec<String>,
    #[serde(default)]
    pub summary: Option<String>,
    #[serde(default)]
    pub details: Option<String>,
    #[serde(default)]
    pub severity: Vec<OsvSeverity>,
    #[serde(default)]
    pub affected: Vec<OsvAffected>,
    #[serde(default)]
    pub database_specific: Option<serde_json::Value>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct OsvSeverity {
    #[serde(rename = "type")]
    pub kind: String,
    pub score: String,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct OsvAffected {
    #[serde(default)]
    pub package: Option<OsvPackageRef>,
    #[serde(default)]
    pub severity: Vec<OsvSeverity>,
    #[serde(default)]
    pub ranges: Vec<OsvRange>,
    #[serde(default)]
    pub versions: Vec<String>,
    #[serde(default)]
    pub ecosystem_specific: Option<serde_json::Value>,
    #[serde(default)]
    pub database_specific: Option<serde_json::Value>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct OsvPackageRef {
    #[serde(default)]
    pub ecosystem: String,
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub purl: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct OsvRange {
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default)]
    pub repo: Option<String>,
    #[serde(default)]
    pub events: Vec<OsvEvent>,
}

/// One event object; exactly one field is set in valid records.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct OsvEvent {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub introduced: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fixed: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_affected: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<String>,
}

/// A range event in compact form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    Introduced(Box<str>),
    Fixed(Box<str>),
    LastAffected(Box<str>),
    Limit(Box<str>),
}

impl Event {
    pub fn version(&self) -> &str {
        match self {
            Event::Introduced(v) | Event::Fixed(v) | Event::LastAffected(v) | Event::Limit(v) => v,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RangeKind {
    Semver,
    Ecosystem,
    /// Commit ranges: never evaluated against version strings.
    Git,
}

#[derive(Debug, Clone)]
pub struct Range {
    pub kind: RangeKind,
    pub events: Box<[Event]>,
}

/// One `affected[]` entry in compact form.
#[derive(Debug, Clone)]
pub struct Affected {
    pub ecosystem: Ecosystem,
    /// The ecosystem's release (`12` in `Debian:12`), with Ubuntu's `:LTS` suffix removed.
    pub release: Option<Box<str>>,
    /// Normalised with [`normalize_name`], as the index keys it.
    pub name: Box<str>,
    pub ranges: Box<[Range]>,
    pub versions: Box<[Box<str>]>,
}

/// What matching and reporting keep of a record.
#[derive(Debug, Clone)]
pub struct Advisory {
    pub id: Box<str>,
    pub modified: Box<str>,
    pub withdrawn: bool,
    pub aliases: Box<[Box<str>]>,
    pub summary: Option<Box<str>>,
    pub severity: Option<SeverityInfo>,
    pub affected: Box<[Affected]>,
}

fn severity_label(v: Option<&serde_json::Value>) -> Option<Severity> {
    v?.get("severity")?.as_str().and_then(Severity::parse_label)
}

/// Normalises a record's release the way components' releases are normalised.
pub(crate) fn normalize_release(eco: &Ecosystem, release: &str) -> Box<str> {
    match eco {
        Ecosystem::Ubuntu => release.strip_suffix(":LTS").unwrap_or(release).into(),
        _ => release.into(),
    }
}

impl OsvRecord {
    /// The record's severity: the highest CVSS v3 score among valid `CVSS_V3` vectors (record
    /// level and per package), else the highest CVSS v4 score, else the database severity label.
    /// v3 is preferred when both exist because it is what most records, policies and users
    /// compare against; v4-only records are scored with v4.
    pub fn severity_info(&self) -> Option<SeverityInfo> {
        let vectors = || {
            self.severity
                .iter()
                .chain(self.affected.iter().flat_map(|a| a.severity.iter()))
        };
        let best_v3 = vectors()
            .filter(|s| s.kind == "CVSS_V3")
            .filter_map(|s| cvss::severity_from_v3(&s.score))
            .max_by_key(|s| s.score_tenths);
        let best = best_v3.or_else(|| {
            vectors()
                .filter(|s| s.kind == "CVSS_V4")
                .filter_map(|s| cvss::severity_from_v4(&s.score))
                .max_by_key(|s| s.score_tenths)
        });
        if best.is_some() {
            return best;
        }
        let label = severity_label(self.database_specific.as_ref()).or_else(|| {
            self.affected
                .iter()
                .filter_map(|a| {
                    severity_label(a.database_specific.as_ref())
                        .or_else(|| severity_label(a.ecosystem_specific.as_ref()))
                })
                .max()
        })?;
        Some(SeverityInfo {
            level: label,
            score_tenths: None,
            source: SeveritySource::Database,
        })
    }

    /// The compact form. Affected entries without a package are dropped (nothing can match them).
    pub fn to_advisory(&self) -> Advisory {
        let affected = self
            .affected
            .iter()
            .filter_map(|a| {
                let pkg = a.package.as_ref()?;
                let (ecosystem, release) = Ecosystem::parse_osv(&pkg.ecosystem);
                let release = release.map(|r| normalize_release(&ecosystem, r));
                let name = normalize_name(&ecosystem, &pkg.name).into_boxed_str();
                let ranges = a
                    .ranges
                    .iter()
                    .map(|r| Range {
                        kind: match r.kind.as_str() {
                            "SEMVER" => RangeKind::Semver,
                            "ECOSYSTEM" => RangeKind::Ecosystem,
                            _ => RangeKind::Git,
                        },
                        events: r
                            .events
                            .iter()
                            .filter_map(|e| {
                                Some(if let Some(v) = &e.introduced {
                                    Event::Introduced(v.as_str().into())
                                } else if let Some(v) = &e.fixed {
                                    Event::Fixed(v.as_str().into())
                                } else if let Some(v) = &e.last_affected {
                                    Event::LastAffected(v.as_str().into())
                                } else {
                                    Event::Limit(e.limit.as_deref()?.into())
                                })
                            })
                            .collect(),
                    })
                    .collect();
                Some(Affected {
                    ecosystem,
                    release,
                    name,
                    ranges,
                    versions: a.versions.iter().map(|v| v.as_str().into()).collect(),
                })
            })
            .collect();
        Advisory {
            id: self.id.as_str().into(),
            modified: self.modified.as_str().into(),
            withdrawn: self.withdrawn.is_some(),
            aliases: self.aliases.iter().map(|a| a.as_str().into()).collect(),
            summary: self.summary.as_deref().map(Into::into),
            severity: self.severity_info(),
            affected,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GHSA: &str = r#"{
      "schema_version": "1.6.0",
      "id": "GHSA-35jh-r3h4-6jhm",
      "modified": "2024-01-01T00:00:00Z",
      "aliases": ["CVE-2021-23337"],
      "summary": "Command Injection in lodash",
      "details": "long text",
      "severity": [{"type": "CVSS_V3", "score": "CVSS:3.1/AV:N/AC:L/PR:H/UI:N/S:U/C:H/I:H/A:H"}],
      "affected": [{
        "package": {"ecosystem": "npm", "name": "lodash", "purl": "pkg:npm/lodash"},
        "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "0"}, {"fixed": "4.17.21"}]}]
      }],
      "references": [{"type": "WEB", "url": "https://example.org"}],
      "database_specific": {"severity": "HIGH", "cwe_ids": ["CWE-77"]}
    }"#;

    #[test]
    fn parses_a_ghsa_record_and_compacts_it() {
        let r: OsvRecord = serde_json::from_str(GHSA).unwrap();
        let a = r.to_advisory();
        assert_eq!(&*a.id, "GHSA-35jh-r3h4-6jhm");
        assert_eq!(&*a.aliases[0], "CVE-2021-23337");
        assert!(!a.withdrawn);
        let s = a.severity.unwrap();
        assert_eq!(
            (s.level, s.score_tenths, s.source),
            (Severity::High, Some(72), SeveritySource::CvssV3)
        );
        let af = &a.affected[0];
        assert_eq!(
            (af.ecosystem.clone(), &*af.name),
            (Ecosystem::Npm, "lodash")
        );
        assert_eq!(
            &*af.ranges[0].events,
            &[
                Event::Introduced("0".into()),
                Event::Fixed("4.17.21".into())
            ]
        );
    }

    #[test]
    fn v4_only_records_are_scored_with_v4() {
        let r: OsvRecord = serde_json::from_str(
            r#"{"id": "X-1", "modified": "2024-01-01T00:00:00Z",
                "severity": [{"type": "CVSS_V4", "score": "CVSS:4.0/AV:N/AC:L/AT:N/PR:N/UI:N/VC:H/VI:H/VA:H/SC:N/SI:N/SA:N"}],
                "database_specific": {"severity": "MODERATE"}}"#,
        )
        .unwrap();
        let s = r.severity_info().unwrap();
        assert_eq!(
            (s.level, s.score_tenths, s.source),
            (Severity::Critical, Some(93), SeveritySource::CvssV4)
        );
    }

    #[test]
    fn invalid_vectors_fall_back_to_the_database_label_never_a_guess() {
        let r: OsvRecord = serde_json::from_str(
            r#"{"id": "X-2", "modified": "2024-01-01T00:00:00Z",
                "severity": [{"type": "CVSS_V4", "score": "CVSS:4.0/AV:N/AC:L"},
                             {"type": "CVSS_V3", "score": "CVSS:3.1/AV:N"}],
                "database_specific": {"severity": "MODERATE"}}"#,
        )
        .unwrap();
        let s = r.severity_info().unwrap();
        assert_eq!(
            (s.level, s.score_tenths, s.source),
            (Severity::Medium, None, SeveritySource::Database)
        );
        let none: OsvRecord =
            serde_json::from_str(r#"{"id": "X-3", "modified": "2024-01-01T00:00:00Z"}"#).unwrap();
        assert_eq!(none.severity_info(), None);
    }

    #[test]
    fn ubuntu_lts_suffix_is_dropped_from_the_release() {
        let r: OsvRecord = serde_json::from_str(
            r#"{"id": "UBUNTU-CVE-1", "modified": "2024-01-01T00:00:00Z",
                "affected": [{"package": {"ecosystem": "Ubuntu:22.04:LTS", "name": "openssl"}}]}"#,
        )
        .unwrap();
        assert_eq!(
            r.to_advisory().affected[0].release.as_deref(),
            Some("22.04")
        );
    }
}
