//! Semantic Versioning 2.0.0 precedence (semver.org §11): numeric major.minor.patch, then a
//! pre-release sorts before its release, identifiers compared one by one (numeric ones
//! numerically and below alphanumeric ones, which compare in ASCII order; more identifiers win
//! when all before are equal). Build metadata is kept for display but never compared, which also
//! covers Go's `+incompatible`. Go's `v` prefix and pseudo-versions (which are pre-releases) need
//! nothing else. [`SemVersion::parse_tolerant`] also accepts `=`/`v` prefixes and missing minor
//! or patch numbers, as npm and Cargo requirements in the wild contain them.

use std::cmp::Ordering;
use std::fmt;
use std::str::FromStr;

use super::{cmp_digits, ord_from_cmp, VersionError};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PreId {
    Num(Box<str>),
    Alpha(Box<str>),
}

impl Ord for PreId {
    fn cmp(&self, other: &Self) -> Ordering {
        match (self, other) {
            (PreId::Num(a), PreId::Num(b)) => cmp_digits(a, b),
            (PreId::Num(_), PreId::Alpha(_)) => Ordering::Less,
            (PreId::Alpha(_), PreId::Num(_)) => Ordering::Greater,
            (PreId::Alpha(a), PreId::Alpha(b)) => a.as_bytes().cmp(b.as_bytes()),
        }
    }
}
impl PartialOrd for PreId {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

#[derive(Debug, Clone)]
pub struct SemVersion {
    pub major: u64,
    pub minor: u64,
    pub patch: u64,
    pub pre: Vec<PreId>,
    pub build: Option<Box<str>>,
}

fn ident_ok(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
}

impl SemVersion {
    /// Strict SemVer 2.0.0 (a leading `v`, as Go writes it, is accepted).
    pub fn parse_strict(input: &str) -> Result<Self, VersionError> {
        Self::parse_inner(input, false)
    }

    /// Accepts `=`/`v` prefixes, surrounding spaces, missing minor/patch (`1.2` = `1.2.0`) and
    /// leading zeros.
    pub fn parse_tolerant(input: &str) -> Result<Self, VersionError> {
        Self::parse_inner(input, true)
    }

    fn parse_inner(input: &str, tolerant: bool) -> Result<Self, VersionError> {
        let err = |reason| VersionError::new("semver", input, reason);
        let mut s = input;
        if tolerant {
            s = s.trim().trim_start_matches('=').trim_start();
        }
        s = s.strip_prefix(['v', 'V']).unwrap_or(s);
        let (s, build) = match s.split_once('+') {
            Some((a, b)) => {
                if !b.split('.').all(ident_ok) {
                    return Err(err("invalid build metadata"));
                }
                (a, Some(b.into()))
            }
            None => (s, None),
        };
        let (core, pre) = match s.split_once('-') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let mut nums = [0u64; 3];
        let parts: Vec<&str> = core.split('.').collect();
        if parts.len() > 3 || (!tolerant && parts.len() != 3) {
            return Err(err("expected MAJOR.MINOR.PATCH"));
        }
        for (slot, p) in nums.iter_mut().zip(&parts) {
            if p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit()) {
                return Err(err("version numbers must be digits"));
            }
            if !tolerant && p.len() > 1 && p.starts_with('0') {
                return Err(err("leading zero in a version number"));
            }
            *slot = p.parse().map_err(|_| err("number too large"))?;
        }
        let mut ids = Vec::new();
        if let Some(p) = pre {
            for id in p.split('.') {
                if !ident_ok(id) {
                    return Err(err("invalid pre-release identifier"));
                }
                if id.bytes().all(|b| b.is_ascii_digit()) {
                    if !tolerant && id.len() > 1 && id.starts_with('0') {
                        return Err(err("leading zero in a numeric pre-release identifier"));
                    }
                    ids.push(PreId::Num(id.into()));
                } else {
                    ids.push(PreId::Alpha(id.into()));
                }
            }
        }
        Ok(SemVersion {
            major: nums[0],
            minor: nums[1],
            patch: nums[2],
            pre: ids,
            build,
        })
    }
}

impl FromStr for SemVersion {
    type Err = VersionError;
    fn from_str(s: &str) -> Result<Self, VersionError> {
        Self::parse_tolerant(s)
    }
}

impl Ord for SemVersion {
    fn cmp(&self, other: &Self) -> Ordering {
        (self.major, self.minor, self.patch)
            .cmp(&(other.major, other.minor, other.patch))
            .then_with(|| match (self.pre.is_empty(), other.pre.is_empty()) {
                (true, true) => Ordering::Equal,
                (true, false) => Ordering::Greater,
                (false, true) => Ordering::Less,
                (false, false) => self.pre.cmp(&other.pre),
            })
    }
}
ord_from_cmp!(SemVersion);

impl fmt::Display for SemVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.patch)?;
        for (i, id) in self.pre.iter().enumerate() {
            f.write_str(if i == 0 { "-" } else { "." })?;
            match id {
                PreId::Num(s) | PreId::Alpha(s) => f.write_str(s)?,
            }
        }
        if let Some(b) = &self.build {
            write!(f, "+{b}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &str) -> SemVersion {
        SemVersion::parse_strict(s).unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    #[test]
    fn semver_org_precedence_examples_are_in_order() {
        let order = [
            "1.0.0-alpha",
            "1.0.0-alpha.1",
            "1.0.0-alpha.beta",
            "1.0.0-beta",
            "1.0.0-beta.2",
            "1.0.0-beta.11",
            "1.0.0-rc.1",
            "1.0.0",
            "2.0.0",
            "2.1.0",
            "2.1.1",
        ];
        for w in order.windows(2) {
            assert!(v(w[0]) < v(w[1]), "{} < {}", w[0], w[1]);
        }
    }

    #[test]
    fn build_metadata_and_go_incompatible_are_ignored() {
        assert_eq!(v("1.0.0+20130313144700"), v("1.0.0"));
        assert_eq!(v("1.0.0-beta+exp.sha.5114f85"), v("1.0.0-beta"));
        assert_eq!(v("v2.0.0+incompatible"), v("2.0.0"));
        assert!(v("v2.1.0+incompatible") > v("v2.0.9"));
    }

    #[test]
    fn go_pseudo_versions_sort_as_prereleases() {
        // A pseudo-version based on no tag sorts below v0.0.0 releases and by timestamp.
        let a = v("v0.0.0-20191109021931-daa7c04131f5");
        let b = v("v0.0.0-20211209124913-491a49abca63");
        assert!(a < b);
        assert!(b < v("v0.0.0"));
        // vX.Y.(Z+1)-0.timestamp-hash is after vX.Y.Z.
        assert!(v("v0.1.1-0.20220101000000-abcdefabcdef") > v("v0.1.0"));
    }

    #[test]
    fn strict_rejects_and_tolerant_accepts_loose_forms() {
        for s in [
            "1.0",
            "01.0.0",
            "1.0.0-01",
            "1.0.0-",
            "1.0.0+",
            "a.b.c",
            "1.0.0-a..b",
        ] {
            assert!(SemVersion::parse_strict(s).is_err(), "{s}");
        }
        assert_eq!(SemVersion::parse_tolerant("=1.2").unwrap(), v("1.2.0"));
        assert_eq!(SemVersion::parse_tolerant(" v1 ").unwrap(), v("1.0.0"));
    }
}
