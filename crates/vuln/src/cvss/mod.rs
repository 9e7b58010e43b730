//! CVSS scores and qualitative severity.
//!
//! CVSS v3.0 and v3.1 base scores are computed from the vector per the FIRST specifications
//! (v3.1 uses the spec's floating-point-safe `Roundup`, v3.0 the plain ceiling to one decimal).
//! CVSS v4.0 scores use the specification's MacroVector method (`v4`). An invalid vector yields
//! no score, never a guessed one. Scores are kept in tenths (`u8`, 0..=100) so that equality and
//! display are exact.

pub mod v4;

use std::fmt;

/// The CVSS qualitative severity rating scale (also used for database severities).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Severity {
    None,
    Low,
    Medium,
    High,
    Critical,
}

impl Severity {
    /// Rating for a score in tenths: 0.0 None, 0.1–3.9 Low, 4.0–6.9 Medium, 7.0–8.9 High,
    /// 9.0–10.0 Critical.
    pub fn from_score_tenths(t: u8) -> Severity {
        match t {
            0 => Severity::None,
            1..=39 => Severity::Low,
            40..=69 => Severity::Medium,
            70..=89 => Severity::High,
            _ => Severity::Critical,
        }
    }

    /// Parses a database severity word (GHSA's `LOW`/`MODERATE`/`HIGH`/`CRITICAL`, and the
    /// common `MEDIUM`, `IMPORTANT`, `NEGLIGIBLE`…), case-insensitively.
    pub fn parse_label(s: &str) -> Option<Severity> {
        Some(match s.trim().to_ascii_lowercase().as_str() {
            "none" | "negligible" | "unimportant" | "informational" => Severity::None,
            "low" => Severity::Low,
            "moderate" | "medium" => Severity::Medium,
            "high" | "important" => Severity::High,
            "critical" => Severity::Critical,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Severity::None => "NONE",
            Severity::Low => "LOW",
            Severity::Medium => "MEDIUM",
            Severity::High => "HIGH",
            Severity::Critical => "CRITICAL",
        }
    }
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where a severity came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SeveritySource {
    CvssV3,
    CvssV4,
    /// The record's `database_specific.severity` (GHSA, Debian urgency…).
    Database,
}

/// A finding's severity: level, score in tenths when computed from CVSS, and its source.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SeverityInfo {
    pub level: Severity,
    pub score_tenths: Option<u8>,
    pub source: SeveritySource,
}

impl SeverityInfo {
    pub fn score(&self) -> Option<f64> {
        self.score_tenths.map(|t| f64::from(t) / 10.0)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CvssError {
    #[error("not a CVSS v{expected} vector: {vector:?}")]
    NotVersion {
        expected: &'static str,
        vector: String,
    },
    #[error("CVSS vector {vector:?}: {reason}")]
    Invalid { vector: String, reason: String },
}

/// CVSS v3 base metrics.
#[derive(Debug, Clone, Copy, PartialEq)]
struct BaseV3 {
    minor: u8,
    av: f64,
    ac: f64,
    pr: char,
    ui: f64,
    scope_changed: bool,
    c: f64,
    i: f64,
    a: f64,
}

/// v3.1 Appendix A `Roundup`: the smallest one-decimal number >= input, computed on integers so
/// that 4.000000000000001 rounds to 4.0 rather than 4.1.
fn roundup_v31(x: f64) -> u8 {
    let int_input = (x * 100_000.0).round() as i64;
    if int_input % 10_000 == 0 {
        (int_input / 10_000) as u8
    } else {
        (int_input / 10_000 + 1) as u8
    }
}

fn roundup_v30(x: f64) -> u8 {
    (x * 10.0).ceil() as u8
}

fn parse_v3(vector: &str) -> Result<BaseV3, CvssError> {
    let invalid = |reason: &str| CvssError::Invalid {
        vector: vector.to_owned(),
        reason: reason.to_owned(),
    };
    let mut parts = vector.trim().split('/');
    let minor = match parts.next() {
        Some("CVSS:3.1") => 1,
        Some("CVSS:3.0") => 0,
        _ => {
            return Err(CvssError::NotVersion {
                expected: "3.x",
                vector: vector.to_owned(),
            })
        }
    };
    let mut seen: Vec<&str> = Vec::new();
    let (mut av, mut ac, mut pr, mut ui, mut s, mut c, mut i, mut a) =
        (None, None, None, None, None, None, None, None);
    for part in parts {
        let (k, v) = part
            .split_once(':')
            .ok_or_else(|| invalid("metric without a value"))?;
        if seen.contains(&k) {
            return Err(invalid("metric given twice"));
        }
        seen.push(k);
        let bad = || invalid(&format!("invalid value {v:?} for {k}"));
        match k {
            "AV" => {
                av = Some(match v {
                    "N" => 0.85,
                    "A" => 0.62,
                    "L" => 0.55,
                    "P" => 0.2,
                    _ => return Err(bad()),
                })
            }
            "AC" => {
                ac = Some(match v {
                    "L" => 0.77,
                    "H" => 0.44,
                    _ => return Err(bad()),
                })
            }
            "PR" => {
                pr = Some(match v {
                    "N" => 'N',
                    "L" => 'L',
                    "H" => 'H',
                    _ => return Err(bad()),
                })
            }
            "UI" => {
                ui = Some(match v {
                    "N" => 0.85,
                    "R" => 0.62,
                    _ => return Err(bad()),
                })
            }
            "S" => {
                s = Some(match v {
                    "U" => false,
                    "C" => true,
                    _ => return Err(bad()),
                })
            }
            "C" | "I" | "A" => {
                let w = match v {
                    "H" => 0.56,
                    "L" => 0.22,
                    "N" => 0.0,
                    _ => return Err(bad()),
                };
                match k {
                    "C" => c = Some(w),
                    "I" => i = Some(w),
                    _ => a = Some(w),
                }
            }
            // Temporal and environmental metrics do not change the base score.
            "E" | "RL" | "RC" | "CR" | "IR" | "AR" | "MAV" | "MAC" | "MPR" | "MUI" | "MS"
            | "MC" | "MI" | "MA" => {}
            _ => return Err(invalid(&format!("unknown metric {k}"))),
        }
    }
    let missing = || invalid("a base metric is missing");
    Ok(BaseV3 {
        minor,
        av: av.ok_or_else(missing)?,
        ac: ac.ok_or_else(missing)?,
        pr: pr.ok_or_else(missing)?,
        ui: ui.ok_or_else(missing)?,
        scope_changed: s.ok_or_else(missing)?,
        c: c.ok_or_else(missing)?,
        i: i.ok_or_else(missing)?,
        a: a.ok_or_else(missing)?,
    })
}

/// CVSS v3.0/v3.1 base score, in tenths (e.g. 98 for 9.8).
pub fn base_score_v3(vector: &str) -> Result<u8, CvssError> {
    let m = parse_v3(vector)?;
    let pr = match (m.pr, m.scope_changed) {
        ('N', _) => 0.85,
        ('L', false) => 0.62,
        ('L', true) => 0.68,
        ('H', false) => 0.27,
        _ => 0.5,
    };
    let iss = 1.0 - (1.0 - m.c) * (1.0 - m.i) * (1.0 - m.a);
    let impact = if m.scope_changed {
        7.52 * (iss - 0.029) - 3.25 * (iss - 0.02).powi(15)
    } else {
        6.42 * iss
    };
    let exploitability = 8.22 * m.av * m.ac * pr * m.ui;
    if impact <= 0.0 {
        return Ok(0);
    }
    let raw = if m.scope_changed {
        (1.08 * (impact + exploitability)).min(10.0)
    } else {
        (impact + exploitability).min(10.0)
    };
    Ok(if m.minor == 1 {
        roundup_v31(raw)
    } else {
        roundup_v30(raw)
    })
}

/// Severity from an OSV `severity[]` entry of type `CVSS_V3`; `None` if the vector is invalid.
pub fn severity_from_v3(vector: &str) -> Option<SeverityInfo> {
    let t = base_score_v3(vector).ok()?;
    Some(SeverityInfo {
        level: Severity::from_score_tenths(t),
        score_tenths: Some(t),
        source: SeveritySource::CvssV3,
    })
}

/// Severity from an OSV `severity[]` entry of type `CVSS_V4`; `None` if the vector is invalid.
pub fn severity_from_v4(vector: &str) -> Option<SeverityInfo> {
    let t = v4::score_v4(vector).ok()?;
    Some(SeverityInfo {
        level: Severity::from_score_tenths(t),
        score_tenths: Some(t),
        source: SeveritySource::CvssV4,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn score(v: &str) -> f64 {
        f64::from(base_score_v3(v).unwrap()) / 10.0
    }

    #[test]
    fn published_nvd_scores() {
        // Log4Shell, CVE-2021-44228.
        assert_eq!(score("CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:C/C:H/I:H/A:H"), 10.0);
        // lodash command injection, CVE-2021-23337 (NVD).
        assert_eq!(score("CVSS:3.1/AV:N/AC:L/PR:H/UI:N/S:U/C:H/I:H/A:H"), 7.2);
        // Network, high complexity, full impact: 8.1 (FIRST v3.1 calculator).
        assert_eq!(score("CVSS:3.1/AV:N/AC:H/PR:N/UI:N/S:U/C:H/I:H/A:H"), 8.1);
        // The classic 9.8 network RCE (e.g. CVE-2022-22965 Spring4Shell).
        assert_eq!(score("CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H"), 9.8);
        // Scope-changed reflected XSS, 6.1 (countless NVD entries).
        assert_eq!(score("CVSS:3.1/AV:N/AC:L/PR:N/UI:R/S:C/C:L/I:L/A:N"), 6.1);
        // Heartbleed rescored under v3.0, CVE-2014-0160: 7.5.
        assert_eq!(score("CVSS:3.0/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:N/A:N"), 7.5);
        // A low one: local, high complexity, low confidentiality impact: 2.5.
        assert_eq!(score("CVSS:3.1/AV:L/AC:H/PR:L/UI:N/S:U/C:L/I:N/A:N"), 2.5);
        // Physical access, integrity only: 2.4.
        assert_eq!(score("CVSS:3.1/AV:P/AC:L/PR:N/UI:N/S:U/C:N/I:L/A:N"), 2.4);
        // No impact scores zero.
        assert_eq!(score("CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:N/I:N/A:N"), 0.0);
        // Scope changed with PR:L, 9.9 (e.g. CVE-2019-11253-class escapes).
        assert_eq!(score("CVSS:3.1/AV:N/AC:L/PR:L/UI:N/S:C/C:H/I:H/A:H"), 9.9);
    }

    #[test]
    fn v31_roundup_avoids_floating_point_artifacts() {
        assert_eq!(roundup_v31(4.000_000_000_000_001), 40);
        assert_eq!(roundup_v31(4.02), 41);
        assert_eq!(roundup_v31(4.0), 40);
    }

    #[test]
    fn temporal_metrics_do_not_change_the_base_score() {
        assert_eq!(
            score("CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H/E:P/RL:O/RC:C"),
            9.8
        );
    }

    #[test]
    fn malformed_vectors_are_rejected() {
        for v in [
            "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H",
            "CVSS:3.1/AV:X/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H",
            "CVSS:3.1/AV:N/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H",
            "CVSS:4.0/AV:N/AC:L/AT:N/PR:N/UI:N/VC:H/VI:H/VA:H/SC:N/SI:N/SA:N",
            "AV:N/AC:L/Au:N/C:P/I:P/A:P",
        ] {
            assert!(base_score_v3(v).is_err(), "{v}");
        }
    }

    #[test]
    fn rating_scale_and_database_labels() {
        assert_eq!(Severity::from_score_tenths(0), Severity::None);
        assert_eq!(Severity::from_score_tenths(1), Severity::Low);
        assert_eq!(Severity::from_score_tenths(39), Severity::Low);
        assert_eq!(Severity::from_score_tenths(40), Severity::Medium);
        assert_eq!(Severity::from_score_tenths(69), Severity::Medium);
        assert_eq!(Severity::from_score_tenths(70), Severity::High);
        assert_eq!(Severity::from_score_tenths(89), Severity::High);
        assert_eq!(Severity::from_score_tenths(90), Severity::Critical);
        assert_eq!(Severity::from_score_tenths(100), Severity::Critical);
        assert_eq!(Severity::parse_label("MODERATE"), Some(Severity::Medium));
        assert_eq!(Severity::parse_label("critical"), Some(Severity::Critical));
        assert_eq!(Severity::parse_label("bogus"), None);
    }
}
