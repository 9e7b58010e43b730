//! Version orderings of the ecosystems OSV covers, one module per ordering.
//!
//! Owns: the [`Ecosystem`] vocabulary (OSV's ecosystem names), a parsed, totally ordered form per
//! ordering ([`Version`]) and the single entry point [`compare`]. Pure; called by the matcher and,
//! later, by anything that must sort versions the way a package manager does.

pub mod apk;
pub mod dpkg;
pub mod maven;
pub mod pep440;
pub mod semver;

use std::cmp::Ordering;
use std::fmt;

/// An OSV ecosystem, without its release suffix (`Debian:12` is `Debian` + release `12`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Ecosystem {
    PyPI,
    Npm,
    CratesIo,
    Go,
    Maven,
    Debian,
    Ubuntu,
    Alpine,
    /// Any other OSV ecosystem (RubyGems, NuGet, Packagist…): compared with [`generic_cmp`].
    Other(Box<str>),
}

impl Ecosystem {
    /// Splits an OSV ecosystem string (`Debian:12`, `Alpine:v3.18`, `Ubuntu:22.04:LTS`) into the
    /// ecosystem and its release, if any.
    pub fn parse_osv(s: &str) -> (Ecosystem, Option<&str>) {
        let (base, release) = match s.split_once(':') {
            Some((b, r)) if !r.is_empty() => (b, Some(r)),
            Some((b, _)) => (b, None),
            None => (s, None),
        };
        let eco = match base {
            "PyPI" => Ecosystem::PyPI,
            "npm" => Ecosystem::Npm,
            "crates.io" => Ecosystem::CratesIo,
            "Go" => Ecosystem::Go,
            "Maven" => Ecosystem::Maven,
            "Debian" => Ecosystem::Debian,
            "Ubuntu" => Ecosystem::Ubuntu,
            "Alpine" => Ecosystem::Alpine,
            other => Ecosystem::Other(other.into()),
        };
        (eco, release)
    }

    /// OSV's name for the ecosystem (without release).
    pub fn as_str(&self) -> &str {
        match self {
            Ecosystem::PyPI => "PyPI",
            Ecosystem::Npm => "npm",
            Ecosystem::CratesIo => "crates.io",
            Ecosystem::Go => "Go",
            Ecosystem::Maven => "Maven",
            Ecosystem::Debian => "Debian",
            Ecosystem::Ubuntu => "Ubuntu",
            Ecosystem::Alpine => "Alpine",
            Ecosystem::Other(s) => s,
        }
    }
}

impl fmt::Display for Ecosystem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A version string the ecosystem's ordering cannot parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {ordering} version {version:?}: {reason}")]
pub struct VersionError {
    pub ordering: &'static str,
    pub version: String,
    pub reason: &'static str,
}

impl VersionError {
    pub(crate) fn new(ordering: &'static str, version: &str, reason: &'static str) -> Self {
        VersionError {
            ordering,
            version: version.to_owned(),
            reason,
        }
    }
}

/// A version parsed with its ecosystem's ordering. Versions of different orderings do not compare.
#[derive(Debug, Clone)]
pub enum Version {
    Pep440(pep440::Pep440Version),
    Semver(semver::SemVersion),
    Maven(maven::MavenVersion),
    Dpkg(dpkg::DpkgVersion),
    Apk(apk::ApkVersion),
    Generic(GenericVersion),
}

impl Version {
    pub fn parse(eco: &Ecosystem, s: &str) -> Result<Version, VersionError> {
        Ok(match eco {
            Ecosystem::PyPI => Version::Pep440(s.parse()?),
            Ecosystem::Npm | Ecosystem::CratesIo | Ecosystem::Go => {
                Version::Semver(semver::SemVersion::parse_tolerant(s)?)
            }
            Ecosystem::Maven => Version::Maven(s.parse()?),
            Ecosystem::Debian | Ecosystem::Ubuntu => Version::Dpkg(s.parse()?),
            Ecosystem::Alpine => Version::Apk(s.parse()?),
            Ecosystem::Other(_) => Version::Generic(s.parse()?),
        })
    }

    /// Compares two versions of the same ordering; `None` when the orderings differ.
    pub fn try_cmp(&self, other: &Version) -> Option<Ordering> {
        Some(match (self, other) {
            (Version::Pep440(a), Version::Pep440(b)) => a.cmp(b),
            (Version::Semver(a), Version::Semver(b)) => a.cmp(b),
            (Version::Maven(a), Version::Maven(b)) => a.cmp(b),
            (Version::Dpkg(a), Version::Dpkg(b)) => a.cmp(b),
            (Version::Apk(a), Version::Apk(b)) => a.cmp(b),
            (Version::Generic(a), Version::Generic(b)) => a.cmp(b),
            _ => return None,
        })
    }
}

/// Compares two version strings with the ordering of `eco`.
pub fn compare(eco: &Ecosystem, a: &str, b: &str) -> Result<Ordering, VersionError> {
    let a = Version::parse(eco, a)?;
    let b = Version::parse(eco, b)?;
    Ok(a.try_cmp(&b).unwrap_or(Ordering::Equal))
}

/// Compares two ASCII digit strings as unbounded non-negative integers (leading zeros ignored),
/// so no ordering overflows on long numeric runs such as dates or pseudo-version timestamps.
pub(crate) fn cmp_digits(a: &str, b: &str) -> Ordering {
    let a = a.trim_start_matches('0');
    let b = b.trim_start_matches('0');
    a.len().cmp(&b.len()).then_with(|| a.cmp(b))
}

/// Fallback ordering for ecosystems without a dedicated one: alternating digit and non-digit runs,
/// digits compared numerically, the rest byte-wise; a digit run sorts after a non-digit run and
/// a version that is a prefix of another sorts first.
#[derive(Debug, Clone)]
pub struct GenericVersion(Box<str>);

fn generic_runs(s: &str) -> impl Iterator<Item = &str> {
    let mut rest = s;
    std::iter::from_fn(move || {
        let first = rest.chars().next()?;
        let digit = first.is_ascii_digit();
        let end = rest
            .find(|c: char| c.is_ascii_digit() != digit)
            .unwrap_or(rest.len());
        let (run, tail) = rest.split_at(end);
        rest = tail;
        Some(run)
    })
}

/// See [`GenericVersion`].
pub fn generic_cmp(a: &str, b: &str) -> Ordering {
    let mut ra = generic_runs(a);
    let mut rb = generic_runs(b);
    loop {
        match (ra.next(), rb.next()) {
            (None, None) => return Ordering::Equal,
            (None, Some(_)) => return Ordering::Less,
            (Some(_), None) => return Ordering::Greater,
            (Some(x), Some(y)) => {
                let xd = x.as_bytes()[0].is_ascii_digit();
                let yd = y.as_bytes()[0].is_ascii_digit();
                let o = match (xd, yd) {
                    (true, true) => cmp_digits(x, y),
                    (false, false) => x.cmp(y),
                    (true, false) => Ordering::Greater,
                    (false, true) => Ordering::Less,
                };
                if o != Ordering::Equal {
                    return o;
                }
            }
        }
    }
}

impl std::str::FromStr for GenericVersion {
    type Err = VersionError;
    fn from_str(s: &str) -> Result<Self, VersionError> {
        let t = s.trim();
        if t.is_empty() {
            return Err(VersionError::new("generic", s, "empty version"));
        }
        Ok(GenericVersion(t.into()))
    }
}

impl PartialEq for GenericVersion {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}
impl Eq for GenericVersion {}
impl PartialOrd for GenericVersion {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for GenericVersion {
    fn cmp(&self, other: &Self) -> Ordering {
        generic_cmp(&self.0, &other.0)
    }
}
impl fmt::Display for GenericVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Implements `PartialEq`/`Eq`/`PartialOrd` from an `Ord` impl, so equality always agrees with
/// the ordering (`1.0 == 1.0.0` in PEP 440, build metadata ignored in semver…).
macro_rules! ord_from_cmp {
    ($t:ty) => {
        impl PartialEq for $t {
            fn eq(&self, other: &Self) -> bool {
                self.cmp(other) == std::cmp::Ordering::Equal
            }
        }
        impl Eq for $t {}
        impl PartialOrd for $t {
            fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
                Some(self.cmp(other))
            }
        }
    };
}
pub(crate) use ord_from_cmp;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn osv_ecosystem_strings_split_into_ecosystem_and_release() {
        assert_eq!(
            Ecosystem::parse_osv("Debian:12"),
            (Ecosystem::Debian, Some("12"))
        );
        assert_eq!(
            Ecosystem::parse_osv("Alpine:v3.18"),
            (Ecosystem::Alpine, Some("v3.18"))
        );
        assert_eq!(
            Ecosystem::parse_osv("Ubuntu:22.04:LTS"),
            (Ecosystem::Ubuntu, Some("22.04:LTS"))
        );
        assert_eq!(
            Ecosystem::parse_osv("crates.io"),
            (Ecosystem::CratesIo, None)
        );
        assert_eq!(
            Ecosystem::parse_osv("RubyGems"),
            (Ecosystem::Other("RubyGems".into()), None)
        );
    }

    #[test]
    fn compare_dispatches_on_ecosystem() {
        use Ordering::*;
        assert_eq!(compare(&Ecosystem::PyPI, "1.0RC1", "1.0rc1"), Ok(Equal));
        assert_eq!(compare(&Ecosystem::Npm, "1.0.0-alpha", "1.0.0"), Ok(Less));
        assert_eq!(compare(&Ecosystem::Debian, "1:0.9", "2.0"), Ok(Greater));
        assert_eq!(compare(&Ecosystem::Alpine, "1.2_rc1", "1.2"), Ok(Less));
        assert_eq!(compare(&Ecosystem::Maven, "1-sp", "1"), Ok(Greater));
        assert!(compare(&Ecosystem::PyPI, "not a version", "1.0").is_err());
    }

    #[test]
    fn generic_ordering_compares_digit_runs_numerically() {
        use Ordering::*;
        assert_eq!(generic_cmp("1.10", "1.9"), Greater);
        assert_eq!(generic_cmp("1.0", "1.0.1"), Less);
        assert_eq!(generic_cmp("2.0a", "2.0b"), Less);
        assert_eq!(generic_cmp("1.007", "1.7"), Equal);
    }
}
