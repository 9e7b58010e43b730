//! Package URLs (purl-spec): `pkg:type/namespace/name@version?qualifiers#subpath`, and their
//! mapping to the (ecosystem, release, package name) OSV keys records by.
//!
//! Mapping rules per type (normalised the way OSV names packages):
//! - `pypi`: PEP 503 name (`Foo_Bar.baz` → `foo-bar-baz`);
//! - `npm`: `@scope/name` from the namespace;
//! - `maven`: `group:artifact`;
//! - `golang`: the module path `namespace/name`;
//! - `cargo`: crates.io name;
//! - `deb`: namespace `debian`/`ubuntu`; release from `distro=` (`debian-12`, `bookworm`,
//!   `ubuntu-22.04`); the *source* package from `upstream=`/`source=` when present (Debian
//!   records are keyed by source package), with the source version if one is given there;
//! - `apk`: release `vMAJOR.MINOR` from `distro=` (`alpine-3.18`, `3.18.4`), origin package from
//!   `upstream=`/`source=`;
//! - `gem`, `nuget`, `composer`, `hex`, `pub`, `hackage`, `swift`: their OSV ecosystems with the
//!   generic ordering.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use crate::version::Ecosystem;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PurlError {
    #[error("not a purl (must start with `pkg:`): {0:?}")]
    Scheme(String),
    #[error("purl {purl:?}: {reason}")]
    Invalid { purl: String, reason: &'static str },
    #[error("purl type {0:?} has no OSV ecosystem")]
    UnsupportedType(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Purl {
    pub ty: String,
    pub namespace: Option<String>,
    pub name: String,
    pub version: Option<String>,
    pub qualifiers: BTreeMap<String, String>,
    pub subpath: Option<String>,
}

fn percent_decode(s: &str) -> Result<String, &'static str> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = b.get(i + 1..i + 3).ok_or("truncated percent-encoding")?;
            let hex = std::str::from_utf8(hex).map_err(|_| "invalid percent-encoding")?;
            out.push(u8::from_str_radix(hex, 16).map_err(|_| "invalid percent-encoding")?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| "percent-encoding is not UTF-8")
}

impl FromStr for Purl {
    type Err = PurlError;

    fn from_str(input: &str) -> Result<Self, PurlError> {
        let invalid = |reason| PurlError::Invalid {
            purl: input.to_owned(),
            reason,
        };
        let s = input.trim();
        let rest = match s.get(..4) {
            Some(p) if p.eq_ignore_ascii_case("pkg:") => &s[4..],
            _ => return Err(PurlError::Scheme(input.to_owned())),
        };
        let rest = rest.trim_start_matches('/');
        let (rest, subpath) = match rest.rsplit_once('#') {
            Some((r, sp)) => {
                let segs: Result<Vec<String>, _> = sp
                    .split('/')
                    .filter(|x| !x.is_empty() && *x != "." && *x != "..")
                    .map(percent_decode)
                    .collect();
                let segs = segs.map_err(invalid)?;
                (r, (!segs.is_empty()).then(|| segs.join("/")))
            }
            None => (rest, None),
        };
        let (rest, qualifiers) = match rest.rsplit_once('?') {
            Some((r, q)) => {
                let mut map = BTreeMap::new();
                for pair in q.split('&').filter(|p| !p.is_empty()) {
                    let (k, v) = pair
                        .split_once('=')
                        .ok_or_else(|| invalid("qualifier without `=`"))?;
                    let v = percent_decode(v).map_err(invalid)?;
                    if !v.is_empty() {
                        map.insert(k.to_ascii_lowercase(), v);
                    }
                }
                (r, map)
            }
            None => (rest, BTreeMap::new()),
        };
        let rest = rest.trim_end_matches('/');
        // The version separator is an `@` after the last `/`: an unencoded npm scope
        // (`pkg:npm/@angular/core`) is not a version.
        let last_slash = rest.rfind('/').unwrap_or(0);
        let (rest, version) = match rest[last_slash..].rfind('@') {
            Some(at) => {
                let at = last_slash + at;
                let v = percent_decode(&rest[at + 1..]).map_err(invalid)?;
                (&rest[..at], (!v.is_empty()).then_some(v))
            }
            None => (rest, None),
        };
        let (ty, path) = rest
            .split_once('/')
            .ok_or_else(|| invalid("missing name"))?;
        let ty = ty.to_ascii_lowercase();
        if ty.is_empty()
            || !ty
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"+-.".contains(&b))
        {
            return Err(invalid("invalid type"));
        }
        let segs: Vec<&str> = path.split('/').filter(|x| !x.is_empty()).collect();
        let (name, ns) = segs.split_last().ok_or_else(|| invalid("missing name"))?;
        let name = percent_decode(name).map_err(invalid)?;
        if name.is_empty() {
            return Err(invalid("missing name"));
        }
        let namespace = if ns.is_empty() {
            None
        } else {
            let parts: Result<Vec<String>, _> = ns.iter().map(|p| percent_decode(p)).collect();
            Some(parts.map_err(invalid)?.join("/"))
        };
        Ok(Purl {
            ty,
            namespace,
            name,
            version,
            qualifiers,
            subpath,
        })
    }
}

fn encode(s: &str, keep_slash: bool) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) || (keep_slash && b == b'/') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

impl fmt::Display for Purl {
    /// Canonical form: percent-encoded components, qualifiers sorted by key.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "pkg:{}/", self.ty)?;
        if let Some(ns) = &self.namespace {
            for seg in ns.split('/') {
                write!(f, "{}/", encode(seg, false))?;
            }
        }
        f.write_str(&encode(&self.name, false))?;
        if let Some(v) = &self.version {
            write!(f, "@{}", encode(v, false).replace("%3A", ":"))?;
        }
        for (i, (k, v)) in self.qualifiers.iter().enumerate() {
            write!(
                f,
                "{}{k}={}",
                if i == 0 { "?" } else { "&" },
                encode(v, false).replace("%3A", ":")
            )?;
        }
        if let Some(sp) = &self.subpath {
            write!(f, "#{}", encode(sp, true))?;
        }
        Ok(())
    }
}

/// The OSV identity of a component: what the index is keyed by, plus the version to evaluate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OsvPackage {
    pub ecosystem: Ecosystem,
    /// Distribution release (`12` for Debian 12, `v3.18` for Alpine 3.18), when known.
    pub release: Option<String>,
    pub name: String,
    pub version: Option<String>,
}

/// PEP 503 normalisation: lowercase, runs of `-`, `_`, `.` become one `-`.
pub fn pep503_normalize(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    let mut in_sep = false;
    for c in name.chars() {
        if matches!(c, '-' | '_' | '.') {
            in_sep = true;
        } else {
            if in_sep {
                out.push('-');
            }
            in_sep = false;
            out.extend(c.to_lowercase());
        }
    }
    if in_sep {
        out.push('-');
    }
    out
}

/// Normalises a package name the way the index keys it (records and components go through
/// this same function). PyPI: PEP 503. crates.io: lowercase with `_` as `-` (crates.io treats
/// them as the same crate). Others are case-sensitive and kept as they are.
pub fn normalize_name(eco: &Ecosystem, name: &str) -> String {
    match eco {
        Ecosystem::PyPI => pep503_normalize(name),
        Ecosystem::CratesIo => name.to_ascii_lowercase().replace('_', "-"),
        _ => name.to_owned(),
    }
}

fn debian_release(distro: &str) -> Option<String> {
    let d = distro.to_ascii_lowercase();
    let d = d.strip_prefix("debian-").unwrap_or(&d);
    let by_name = match d {
        "stretch" => "9",
        "buster" => "10",
        "bullseye" => "11",
        "bookworm" => "12",
        "trixie" => "13",
        "forky" => "14",
        _ => "",
    };
    if !by_name.is_empty() {
        return Some(by_name.to_owned());
    }
    // "12", "12.4" → "12": Debian records are keyed by major release.
    let major = d.split('.').next()?;
    (!major.is_empty() && major.bytes().all(|b| b.is_ascii_digit())).then(|| major.to_owned())
}

fn ubuntu_release(distro: &str) -> Option<String> {
    let d = distro.to_ascii_lowercase();
    let d = d.strip_prefix("ubuntu-").unwrap_or(&d);
    let mut parts = d.split('.');
    let (y, m) = (parts.next()?, parts.next()?);
    (y.bytes().all(|b| b.is_ascii_digit()) && m.bytes().all(|b| b.is_ascii_digit()))
        .then(|| format!("{y}.{m}"))
}

fn alpine_release(distro: &str) -> Option<String> {
    let d = distro.to_ascii_lowercase();
    let d = d.strip_prefix("alpine-").unwrap_or(&d);
    let d = d.strip_prefix('v').unwrap_or(d);
    let mut parts = d.split('.');
    let (maj, min) = (parts.next()?, parts.next()?);
    (maj.bytes().all(|b| b.is_ascii_digit())
        && !min.is_empty()
        && min.bytes().all(|b| b.is_ascii_digit()))
    .then(|| format!("v{maj}.{min}"))
}

impl Purl {
    /// The OSV ecosystem, release, normalised package name and version of this component.
    pub fn to_osv(&self) -> Result<OsvPackage, PurlError> {
        let ns = self.namespace.as_deref();
        let mut release = None;
        let mut version = self.version.clone();
        let (ecosystem, name) = match self.ty.as_str() {
            "pypi" => (Ecosystem::PyPI, self.name.clone()),
            "npm" => match ns {
                Some(scope) => {
                    let scope = scope.trim_start_matches('@');
                    (Ecosystem::Npm, format!("@{scope}/{}", self.name))
                }
                None => (Ecosystem::Npm, self.name.clone()),
            },
            "maven" => match ns {
                Some(group) => (Ecosystem::Maven, format!("{group}:{}", self.name)),
                None => {
                    return Err(PurlError::Invalid {
                        purl: self.to_string(),
                        reason: "a maven purl needs a group namespace",
                    })
                }
            },
            "golang" => match ns {
                Some(path) => (Ecosystem::Go, format!("{path}/{}", self.name)),
                None => (Ecosystem::Go, self.name.clone()),
            },
            "cargo" => (Ecosystem::CratesIo, self.name.clone()),
            "deb" | "apk" => {
                let distro = self.qualifiers.get("distro").map(String::as_str);
                let eco = match (self.ty.as_str(), ns.map(str::to_ascii_lowercase).as_deref()) {
                    ("deb", Some("ubuntu")) => Ecosystem::Ubuntu,
                    ("deb", _) => Ecosystem::Debian,
                    _ => Ecosystem::Alpine,
                };
                release = distro.and_then(|d| match eco {
                    Ecosystem::Debian => debian_release(d),
                    Ecosystem::Ubuntu => ubuntu_release(d),
                    _ => alpine_release(d),
                });
                let source = self
                    .qualifiers
                    .get("upstream")
                    .or_else(|| self.qualifiers.get("source"));
                let name = match source {
                    Some(src) => match src.split_once('@') {
                        Some((n, v)) => {
                            if !v.is_empty() {
                                version = Some(v.to_owned());
                            }
                            n.to_owned()
                        }
                        None => src.clone(),
                    },
                    None => self.name.clone(),
                };
                (eco, name)
            }
            "gem" => (Ecosystem::Other("RubyGems".into()), self.name.clone()),
            "nuget" => (Ecosystem::Other("NuGet".into()), self.name.clone()),
            "composer" => match ns {
                Some(vendor) => (
                    Ecosystem::Other("Packagist".into()),
                    format!("{vendor}/{}", self.name),
                ),
                None => (Ecosystem::Other("Packagist".into()), self.name.clone()),
            },
            "hex" => (Ecosystem::Other("Hex".into()), self.name.clone()),
            "pub" => (Ecosystem::Other("Pub".into()), self.name.clone()),
            "hackage" => (Ecosystem::Other("Hackage".into()), self.name.clone()),
            "swift" => match ns {
                Some(path) => (
                    Ecosystem::Other("SwiftURL".into()),
                    format!("{path}/{}", self.name),
                ),
                None => (Ecosystem::Other("SwiftURL".into()), self.name.clone()),
            },
            other => return Err(PurlError::UnsupportedType(other.to_owned())),
        };
        let name = normalize_name(&ecosystem, &name);
        Ok(OsvPackage {
            ecosystem,
            release,
            name,
            version,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn osv(p: &str) -> OsvPackage {
        p.parse::<Purl>().unwrap().to_osv().unwrap()
    }

    #[test]
    fn parses_all_components_with_percent_decoding() {
        let p: Purl = "pkg:npm/%40angular/core@16.2.0?foo=a%20b#src/lib"
            .parse()
            .unwrap();
        assert_eq!(p.ty, "npm");
        assert_eq!(p.namespace.as_deref(), Some("@angular"));
        assert_eq!(p.name, "core");
        assert_eq!(p.version.as_deref(), Some("16.2.0"));
        assert_eq!(p.qualifiers.get("foo").map(String::as_str), Some("a b"));
        assert_eq!(p.subpath.as_deref(), Some("src/lib"));
    }

    #[test]
    fn spec_examples_parse() {
        let p: Purl = "pkg:deb/debian/curl@7.50.3-1?arch=i386&distro=jessie"
            .parse()
            .unwrap();
        assert_eq!(
            (p.namespace.as_deref(), p.name.as_str()),
            (Some("debian"), "curl")
        );
        let p: Purl = "pkg:maven/org.apache.xmlgraphics/batik-anim@1.9.1?packaging=sources"
            .parse()
            .unwrap();
        assert_eq!(p.namespace.as_deref(), Some("org.apache.xmlgraphics"));
        let p: Purl = "pkg:golang/google.golang.org/genproto#googleapis/api/annotations"
            .parse()
            .unwrap();
        assert_eq!(p.namespace.as_deref(), Some("google.golang.org"));
        assert_eq!(p.subpath.as_deref(), Some("googleapis/api/annotations"));
        assert_eq!(p.version, None);
        let p: Purl = "pkg:deb/debian/attr@1:2.4.47-2?arch=source"
            .parse()
            .unwrap();
        assert_eq!(p.version.as_deref(), Some("1:2.4.47-2"));
    }

    #[test]
    fn rejects_what_is_not_a_purl() {
        assert!(matches!(
            "npm/foo@1".parse::<Purl>(),
            Err(PurlError::Scheme(_))
        ));
        assert!("pkg:npm".parse::<Purl>().is_err());
        assert!("pkg:npm/%zz@1".parse::<Purl>().is_err());
    }

    #[test]
    fn maps_to_osv_names_per_ecosystem() {
        let p = osv("pkg:pypi/Foo_Bar.baz@1.0");
        assert_eq!(
            (p.ecosystem, p.name.as_str()),
            (Ecosystem::PyPI, "foo-bar-baz")
        );
        assert_eq!(osv("pkg:npm/%40angular/core@1").name, "@angular/core");
        assert_eq!(osv("pkg:npm/@angular/core").name, "@angular/core");
        assert_eq!(
            osv("pkg:maven/org.apache.logging.log4j/log4j-core@2.14.1").name,
            "org.apache.logging.log4j:log4j-core"
        );
        let p = osv("pkg:golang/github.com/foo/bar@v1.2.3");
        assert_eq!(
            (p.ecosystem, p.name.as_str()),
            (Ecosystem::Go, "github.com/foo/bar")
        );
        assert_eq!(osv("pkg:cargo/Tokio_Util@0.7.0").name, "tokio-util");
    }

    #[test]
    fn debian_maps_release_and_source_package() {
        let p = osv("pkg:deb/debian/openssl@3.0.11-1~deb12u2?arch=amd64&distro=debian-12");
        assert_eq!(p.ecosystem, Ecosystem::Debian);
        assert_eq!(p.release.as_deref(), Some("12"));
        assert_eq!(p.name, "openssl");
        let p = osv(
            "pkg:deb/debian/libssl3@3.0.11-1~deb12u2?arch=amd64&distro=bookworm&upstream=openssl",
        );
        assert_eq!(
            (p.name.as_str(), p.release.as_deref()),
            ("openssl", Some("12"))
        );
        let p =
            osv("pkg:deb/debian/libpython3.11@3.11.2-6?upstream=python3.11%403.11.2-6%2Bdeb12u1");
        assert_eq!(p.name, "python3.11");
        assert_eq!(p.version.as_deref(), Some("3.11.2-6+deb12u1"));
        let p = osv("pkg:deb/ubuntu/openssl@3.0.2-0ubuntu1.10?distro=ubuntu-22.04");
        assert_eq!(
            (p.ecosystem, p.release.as_deref()),
            (Ecosystem::Ubuntu, Some("22.04"))
        );
    }

    #[test]
    fn alpine_maps_release_and_origin() {
        let p = osv("pkg:apk/alpine/openssl@3.1.4-r0?distro=alpine-3.18");
        assert_eq!(
            (p.ecosystem, p.release.as_deref()),
            (Ecosystem::Alpine, Some("v3.18"))
        );
        let p =
            osv("pkg:apk/alpine/libcrypto3@3.1.4-r0?arch=x86_64&upstream=openssl&distro=3.18.4");
        assert_eq!(
            (p.name.as_str(), p.release.as_deref()),
            ("openssl", Some("v3.18"))
        );
    }

    #[test]
    fn display_round_trips() {
        for s in [
            "pkg:npm/%40angular/core@16.2.0",
            "pkg:deb/debian/openssl@1:3.0.11-1~deb12u2?arch=amd64&distro=debian-12",
            "pkg:golang/google.golang.org/genproto#googleapis/api/annotations",
        ] {
            let p: Purl = s.parse().unwrap();
            assert_eq!(p.to_string().parse::<Purl>().unwrap(), p);
        }
    }

    #[test]
    fn pep503_examples() {
        assert_eq!(pep503_normalize("Friendly-Bard"), "friendly-bard");
        assert_eq!(pep503_normalize("FRIENDLY-BARD"), "friendly-bard");
        assert_eq!(pep503_normalize("friendly.bard"), "friendly-bard");
        assert_eq!(pep503_normalize("friendly_bard"), "friendly-bard");
        assert_eq!(pep503_normalize("friendly--bard"), "friendly-bard");
        assert_eq!(pep503_normalize("FrIeNdLy-._.-bArD"), "friendly-bard");
    }
}
