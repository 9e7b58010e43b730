//! The advisory index and OSV range evaluation.
//!
//! [`Index`] keys advisories by (ecosystem, normalised package name) and answers "which
//! advisories affect this component at this version". Range evaluation follows the OSV
//! schema's pseudo-code: events sorted by the ecosystem's ordering (`introduced: "0"` first), a
//! version is affected after an `introduced` until a `fixed` (exclusive) or after a
//! `last_affected` (inclusive); `limit` events cap the range (the version must be below one of
//! them); a package entry affects a version if any SEMVER/ECOSYSTEM range does or the version is
//! listed in `versions`. GIT ranges are never evaluated against version strings.
//!
//! Release rule: a record for a bare ecosystem (`Debian`) matches components of every release;
//! a record for `Debian:12` matches components whose release is `12`, and also components whose
//! release is unknown (a purl without `distro=`), since under-reporting is the worse failure.
//! Withdrawn records are never indexed. A version the ordering cannot parse (in the component or
//! in a range) disables that range; only the explicit `versions` list is consulted then.

use std::collections::HashMap;

use crate::cvss::SeverityInfo;
use crate::osv::{normalize_release, Advisory, Affected, Event, Range, RangeKind};
use crate::purl::{normalize_name, OsvPackage, Purl, PurlError};
use crate::version::{Ecosystem, Version};

/// One advisory affecting one component.
#[derive(Debug, Clone, PartialEq)]
pub struct Finding {
    pub advisory_id: String,
    /// Other ids of the same vulnerability (CVE ids, GHSA ids…).
    pub aliases: Vec<String>,
    pub ecosystem: Ecosystem,
    pub package: String,
    pub installed_version: String,
    /// The `fixed` event closing the range the installed version fell in, when there is one.
    pub fixed_version: Option<String>,
    pub severity: Option<SeverityInfo>,
    pub summary: Option<String>,
}

/// (advisory index, affected-entry index) pairs of one package.
type Postings = Vec<(u32, u32)>;

/// Advisories indexed by package.
#[derive(Debug, Default)]
pub struct Index {
    advisories: Vec<Advisory>,
    /// ecosystem → normalised name → (advisory index, affected index).
    by_package: HashMap<Ecosystem, HashMap<Box<str>, Postings>>,
}

/// Why a package entry affects a version.
enum Hit {
    Range { fixed: Option<Box<str>> },
    Listed,
}

impl Index {
    /// Builds the index; withdrawn advisories are left out.
    pub fn build(advisories: impl IntoIterator<Item = Advisory>) -> Index {
        let mut index = Index::default();
        for adv in advisories {
            if adv.withdrawn {
                continue;
            }
            let ai = index.advisories.len() as u32;
            for (fi, af) in adv.affected.iter().enumerate() {
                index
                    .by_package
                    .entry(af.ecosystem.clone())
                    .or_default()
                    .entry(af.name.clone())
                    .or_default()
                    .push((ai, fi as u32));
            }
            index.advisories.push(adv);
        }
        for names in index.by_package.values_mut() {
            names.shrink_to_fit();
            for v in names.values_mut() {
                v.shrink_to_fit();
            }
        }
        index.advisories.shrink_to_fit();
        index
    }

    pub fn len(&self) -> usize {
        self.advisories.len()
    }

    pub fn is_empty(&self) -> bool {
        self.advisories.is_empty()
    }

    pub fn advisories(&self) -> &[Advisory] {
        &self.advisories
    }

    /// Matches a component given as a purl. A purl without a version matches nothing.
    pub fn match_purl(&self, purl: &Purl) -> Result<Vec<Finding>, PurlError> {
        Ok(self.match_package(&purl.to_osv()?))
    }

    pub fn match_package(&self, pkg: &OsvPackage) -> Vec<Finding> {
        match &pkg.version {
            Some(v) => self.match_component(&pkg.ecosystem, pkg.release.as_deref(), &pkg.name, v),
            None => Vec::new(),
        }
    }

    /// All advisories affecting `name` at `version` in `ecosystem` (and `release`, if known).
    /// One finding per advisory id.
    pub fn match_component(
        &self,
        ecosystem: &Ecosystem,
        release: Option<&str>,
        name: &str,
        version: &str,
    ) -> Vec<Finding> {
        let Some(names) = self.by_package.get(ecosystem) else {
            return Vec::new();
        };
        let normalized = normalize_name(ecosystem, name);
        let Some(entries) = names.get(normalized.as_str()) else {
            return Vec::new();
        };
        let release = release.map(|r| normalize_release(ecosystem, r));
        let parsed = Version::parse(ecosystem, version).ok();
        let mut findings: Vec<Finding> = Vec::new();
        for &(ai, fi) in entries {
            let adv = &self.advisories[ai as usize];
            let af = &adv.affected[fi as usize];
            if let (Some(r), Some(c)) = (&af.release, &release) {
                if r != c {
                    continue;
                }
            }
            if findings.iter().any(|f| f.advisory_id == *adv.id) {
                continue;
            }
            let Some(hit) = affects(af, version, parsed.as_ref()) else {
                continue;
            };
            findings.push(Finding {
                advisory_id: adv.id.to_string(),
                aliases: adv.aliases.iter().map(|a| a.to_string()).collect(),
                ecosystem: ecosystem.clone(),
                package: normalized.clone(),
                installed_version: version.to_owned(),
                fixed_version: match hit {
                    Hit::Range { fixed } => fixed.map(String::from),
                    Hit::Listed => None,
                },
                severity: adv.severity,
                summary: adv.summary.as_deref().map(String::from),
            });
        }
        findings
    }
}

fn affects(af: &Affected, raw: &str, v: Option<&Version>) -> Option<Hit> {
    if let Some(v) = v {
        for range in af.ranges.iter().filter(|r| r.kind != RangeKind::Git) {
            if let RangeOutcome::Affected { fixed } = evaluate_range(&af.ecosystem, range, v) {
                return Some(Hit::Range { fixed });
            }
        }
    }
    let listed = af.versions.iter().any(|lv| {
        &**lv == raw
            || v.is_some_and(|v| {
                Version::parse(&af.ecosystem, lv)
                    .ok()
                    .and_then(|p| p.try_cmp(v))
                    .is_some_and(|o| o.is_eq())
            })
    });
    listed.then_some(Hit::Listed)
}

/// The result of evaluating one range against one version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RangeOutcome {
    /// An event version does not parse with the ecosystem's ordering.
    Unevaluable,
    NotAffected,
    /// Affected; `fixed` is the `fixed` event closing the interval the version is in.
    Affected {
        fixed: Option<Box<str>>,
    },
}

/// Evaluates one SEMVER/ECOSYSTEM range against a parsed version.
pub fn evaluate_range(eco: &Ecosystem, range: &Range, v: &Version) -> RangeOutcome {
    match evaluate_inner(eco, range, v) {
        None => RangeOutcome::Unevaluable,
        Some(None) => RangeOutcome::NotAffected,
        Some(Some(fixed)) => RangeOutcome::Affected { fixed },
    }
}

type Evaluated = Option<Option<Option<Box<str>>>>;

fn evaluate_inner(eco: &Ecosystem, range: &Range, v: &Version) -> Evaluated {
    let mut events: Vec<(Option<Version>, &Event)> = Vec::with_capacity(range.events.len());
    let mut limits: Vec<Version> = Vec::new();
    for e in range.events.iter() {
        match e {
            Event::Introduced(s) if &**s == "0" => events.push((None, e)),
            Event::Limit(s) if &**s == "*" => {}
            Event::Limit(s) => limits.push(Version::parse(eco, s).ok()?),
            _ => events.push((Some(Version::parse(eco, e.version()).ok()?), e)),
        }
    }
    if !limits.is_empty()
        && !limits
            .iter()
            .any(|l| v.try_cmp(l).is_some_and(|o| o.is_lt()))
    {
        return Some(None);
    }
    // Stable sort: `introduced: "0"` first, then by version; ties keep record order.
    events.sort_by(|(a, _), (b, _)| match (a, b) {
        (None, None) => std::cmp::Ordering::Equal,
        (None, Some(_)) => std::cmp::Ordering::Less,
        (Some(_), None) => std::cmp::Ordering::Greater,
        (Some(a), Some(b)) => a.try_cmp(b).unwrap_or(std::cmp::Ordering::Equal),
    });
    let cmp = |p: &Option<Version>| match p {
        None => std::cmp::Ordering::Greater,
        Some(p) => v.try_cmp(p).unwrap_or(std::cmp::Ordering::Less),
    };
    let mut vulnerable = false;
    for (p, e) in &events {
        match e {
            Event::Introduced(_) if cmp(p).is_ge() => vulnerable = true,
            Event::Fixed(_) if cmp(p).is_ge() => vulnerable = false,
            Event::LastAffected(_) if cmp(p).is_gt() => vulnerable = false,
            _ => {}
        }
    }
    if !vulnerable {
        return Some(None);
    }
    let fixed = events.iter().find_map(|(p, e)| match e {
        Event::Fixed(s) if cmp(p).is_lt() => Some(s.clone()),
        _ => None,
    });
    Some(Some(fixed))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::osv::OsvRecord;

    fn index(json: &str) -> Index {
        let r: OsvRecord = serde_json::from_str(json).unwrap();
        Index::build([r.to_advisory()])
    }

    fn hits(
        idx: &Index,
        eco: Ecosystem,
        release: Option<&str>,
        name: &str,
        v: &str,
    ) -> Vec<(String, Option<String>)> {
        idx.match_component(&eco, release, name, v)
            .into_iter()
            .map(|f| (f.advisory_id, f.fixed_version))
            .collect()
    }

    const MULTI: &str = r#"{"id": "T-1", "modified": "2024-01-01T00:00:00Z", "affected": [{
        "package": {"ecosystem": "PyPI", "name": "Demo_Pkg"},
        "ranges": [
          {"type": "ECOSYSTEM", "events": [{"introduced": "0"}, {"fixed": "1.0"}, {"introduced": "2.0"}, {"fixed": "2.1"}]},
          {"type": "ECOSYSTEM", "events": [{"introduced": "3.0"}, {"last_affected": "3.2"}]},
          {"type": "ECOSYSTEM", "events": [{"introduced": "4.0"}, {"limit": "4.5"}]},
          {"type": "GIT", "repo": "https://example.org/x", "events": [{"introduced": "abc"}, {"fixed": "def"}]}
        ],
        "versions": ["5.0.0", "notpep440"]}]}"#;

    #[test]
    fn range_events_introduced_fixed_last_affected_limit() {
        let idx = index(MULTI);
        let py = |v: &str| hits(&idx, Ecosystem::PyPI, None, "demo-pkg", v);
        let t1 = |f: Option<&str>| vec![("T-1".to_owned(), f.map(str::to_owned))];
        assert_eq!(py("0.9"), t1(Some("1.0")));
        assert_eq!(py("1.0rc1"), t1(Some("1.0")));
        assert_eq!(py("1.0"), vec![]);
        assert_eq!(py("1.5"), vec![]);
        assert_eq!(py("2.0"), t1(Some("2.1")));
        assert_eq!(py("2.1"), vec![]);
        assert_eq!(py("3.2"), t1(None));
        assert_eq!(py("3.2.post1"), vec![]);
        assert_eq!(py("4.4"), t1(None));
        assert_eq!(py("4.5"), vec![]);
        assert_eq!(
            py("5.0"),
            t1(None),
            "listed versions compare with the ecosystem ordering"
        );
        assert_eq!(
            py("notpep440"),
            t1(None),
            "unparsable versions match the list literally"
        );
        assert_eq!(py("abc"), vec![], "git commits are not versions");
    }

    #[test]
    fn withdrawn_records_never_match() {
        let idx = index(
            r#"{"id": "W-1", "modified": "2024-01-01T00:00:00Z", "withdrawn": "2024-02-01T00:00:00Z",
                "affected": [{"package": {"ecosystem": "npm", "name": "x"},
                "ranges": [{"type": "SEMVER", "events": [{"introduced": "0"}]}]}]}"#,
        );
        assert!(idx.is_empty());
        assert_eq!(hits(&idx, Ecosystem::Npm, None, "x", "1.0.0"), vec![]);
    }

    #[test]
    fn release_rule() {
        let idx = index(
            r#"{"id": "D-1", "modified": "2024-01-01T00:00:00Z", "affected": [
                {"package": {"ecosystem": "Debian:12", "name": "openssl"},
                 "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "0"}, {"fixed": "3.0.11-1~deb12u2"}]}]},
                {"package": {"ecosystem": "Debian", "name": "zlib"},
                 "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "0"}, {"fixed": "1:1.2.13"}]}]}]}"#,
        );
        assert_eq!(
            hits(
                &idx,
                Ecosystem::Debian,
                Some("12"),
                "openssl",
                "3.0.11-1~deb12u1"
            )
            .len(),
            1
        );
        assert_eq!(
            hits(
                &idx,
                Ecosystem::Debian,
                Some("11"),
                "openssl",
                "3.0.11-1~deb12u1"
            )
            .len(),
            0
        );
        assert_eq!(
            hits(&idx, Ecosystem::Debian, None, "openssl", "3.0.11-1~deb12u1").len(),
            1
        );
        assert_eq!(
            hits(
                &idx,
                Ecosystem::Debian,
                Some("11"),
                "zlib",
                "1:1.2.11.dfsg-2"
            )
            .len(),
            1
        );
        assert_eq!(
            hits(
                &idx,
                Ecosystem::Debian,
                Some("11"),
                "zlib",
                "1:1.2.13.dfsg-1"
            )
            .len(),
            0
        );
    }

    #[test]
    fn unparsable_range_versions_disable_only_that_range() {
        let idx = index(
            r#"{"id": "G-1", "modified": "2024-01-01T00:00:00Z", "affected": [{
                "package": {"ecosystem": "Go", "name": "example.com/m"},
                "ranges": [{"type": "SEMVER", "events": [{"introduced": "0"}, {"fixed": "not-a-version"}]},
                           {"type": "SEMVER", "events": [{"introduced": "1.2.0"}, {"fixed": "1.2.5"}]}]}]}"#,
        );
        assert_eq!(
            hits(&idx, Ecosystem::Go, None, "example.com/m", "v1.2.3").len(),
            1
        );
        assert_eq!(
            hits(&idx, Ecosystem::Go, None, "example.com/m", "v1.0.0").len(),
            0
        );
        assert_eq!(
            hits(&idx, Ecosystem::Go, None, "example.com/m", "garbage").len(),
            0
        );
    }

    #[test]
    fn events_are_sorted_by_the_ecosystem_ordering_before_evaluation() {
        // Events deliberately out of order; Maven ordering puts 2.0-beta9 before 2.0.
        let idx = index(
            r#"{"id": "M-1", "modified": "2024-01-01T00:00:00Z", "affected": [{
                "package": {"ecosystem": "Maven", "name": "g:a"},
                "ranges": [{"type": "ECOSYSTEM", "events": [
                    {"fixed": "2.3.1"}, {"introduced": "2.4"}, {"fixed": "2.12.2"}, {"introduced": "2.0-beta9"}]}]}]}"#,
        );
        let m = |v: &str| hits(&idx, Ecosystem::Maven, None, "g:a", v);
        assert_eq!(m("2.0-beta8"), vec![]);
        assert_eq!(m("2.0"), vec![("M-1".to_owned(), Some("2.3.1".to_owned()))]);
        assert_eq!(m("2.3.1"), vec![]);
        assert_eq!(m("2.3.2"), vec![]);
        assert_eq!(
            m("2.4.1"),
            vec![("M-1".to_owned(), Some("2.12.2".to_owned()))]
        );
        assert_eq!(m("2.12.2"), vec![]);
    }

    #[test]
    fn ubuntu_lts_records_match_components_of_that_release() {
        let idx = index(
            r#"{"id": "UBUNTU-TEST-1", "modified": "2024-01-01T00:00:00Z", "affected": [{
                "package": {"ecosystem": "Ubuntu:22.04:LTS", "name": "openssl"},
                "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "0"}, {"fixed": "3.0.2-0ubuntu1.12"}]}]}]}"#,
        );
        let u = |release: &str, v: &str| {
            hits(&idx, Ecosystem::Ubuntu, Some(release), "openssl", v).len()
        };
        assert_eq!(u("22.04", "3.0.2-0ubuntu1.10"), 1);
        assert_eq!(u("22.04", "3.0.2-0ubuntu1.12"), 0);
        assert_eq!(u("20.04", "3.0.2-0ubuntu1.10"), 0);
    }
}
