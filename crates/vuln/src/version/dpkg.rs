//! Debian package versions (deb-version(7), Debian Policy §5.6.12): `[epoch:]upstream[-revision]`.
//! Epochs compare numerically; upstream and revision with dpkg's `verrevcmp`: alternating
//! non-digit and digit runs; in non-digit runs `~` sorts before everything (even the end of the
//! string), letters before non-letters; digit runs compare numerically. Used for Debian and
//! Ubuntu.

use std::cmp::Ordering;
use std::fmt;
use std::str::FromStr;

use super::{cmp_digits, ord_from_cmp, VersionError};

#[derive(Debug, Clone)]
pub struct DpkgVersion {
    /// `None` when the version was written without an epoch (compares as `0`).
    pub epoch: Option<u64>,
    pub upstream: Box<str>,
    pub revision: Option<Box<str>>,
}

fn order(c: Option<u8>) -> i32 {
    match c {
        None => 0,
        Some(b'~') => -1,
        Some(c) if c.is_ascii_digit() => 0,
        Some(c) if c.is_ascii_alphabetic() => c as i32,
        Some(c) => c as i32 + 256,
    }
}

/// dpkg's `verrevcmp`.
pub fn verrevcmp(a: &str, b: &str) -> Ordering {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    let (mut i, mut j) = (0, 0);
    let digit = |s: &[u8], k: usize| s.get(k).is_some_and(|c| c.is_ascii_digit());
    while i < a.len() || j < b.len() {
        while (i < a.len() && !digit(a, i)) || (j < b.len() && !digit(b, j)) {
            let ac = order(a.get(i).copied());
            let bc = order(b.get(j).copied());
            if ac != bc {
                return ac.cmp(&bc);
            }
            i += 1;
            j += 1;
        }
        let si = i;
        while digit(a, i) {
            i += 1;
        }
        let sj = j;
        while digit(b, j) {
            j += 1;
        }
        let da = std::str::from_utf8(&a[si.min(a.len())..i.min(a.len())]).unwrap_or("");
        let db = std::str::from_utf8(&b[sj.min(b.len())..j.min(b.len())]).unwrap_or("");
        let o = cmp_digits(da, db);
        if o != Ordering::Equal {
            return o;
        }
    }
    Ordering::Equal
}

impl FromStr for DpkgVersion {
    type Err = VersionError;

    fn from_str(input: &str) -> Result<Self, VersionError> {
        let err = |reason| VersionError::new("dpkg", input, reason);
        let s = input.trim();
        let (epoch, rest) = match s.split_once(':') {
            Some((e, rest)) => {
                if e.is_empty() || !e.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(err("epoch must be a number"));
                }
                (Some(e.parse().map_err(|_| err("epoch too large"))?), rest)
            }
            None => (None, s),
        };
        let (upstream, revision) = match rest.rsplit_once('-') {
            Some((u, r)) => (u, Some(r)),
            None => (rest, None),
        };
        if upstream.is_empty() {
            return Err(err("empty upstream version"));
        }
        if !upstream.as_bytes()[0].is_ascii_digit() {
            return Err(err("upstream version must start with a digit"));
        }
        let ok = |c: u8| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'+' | b'-' | b'~' | b':');
        if !upstream.bytes().all(ok) {
            return Err(err("invalid character in upstream version"));
        }
        if let Some(r) = revision {
            if r.is_empty()
                || !r
                    .bytes()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'+' | b'~'))
            {
                return Err(err("invalid revision"));
            }
        }
        Ok(DpkgVersion {
            epoch,
            upstream: upstream.into(),
            revision: revision.map(Into::into),
        })
    }
}

impl Ord for DpkgVersion {
    fn cmp(&self, other: &Self) -> Ordering {
        self.epoch
            .unwrap_or(0)
            .cmp(&other.epoch.unwrap_or(0))
            .then_with(|| verrevcmp(&self.upstream, &other.upstream))
            .then_with(|| {
                verrevcmp(
                    self.revision.as_deref().unwrap_or(""),
                    other.revision.as_deref().unwrap_or(""),
                )
            })
    }
}
ord_from_cmp!(DpkgVersion);

impl fmt::Display for DpkgVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(e) = self.epoch {
            write!(f, "{e}:")?;
        }
        f.write_str(&self.upstream)?;
        if let Some(r) = &self.revision {
            write!(f, "-{r}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &str) -> DpkgVersion {
        s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    #[test]
    fn policy_examples_are_in_order() {
        // deb-version(7): "~~ < ~~a < ~ < (empty) < a".
        for w in ["1.0~~", "1.0~~a", "1.0~", "1.0", "1.0a"].windows(2) {
            assert!(v(w[0]) < v(w[1]), "{} < {}", w[0], w[1]);
        }
        assert!(v("1.0~rc1") < v("1.0"));
        assert!(v("1:0.9") > v("2.0"));
        assert!(v("1.0-1") < v("1.0-2"));
        assert!(v("1.0-9") < v("1.0-10"));
        assert!(v("1.0a") < v("1.0+"), "letters sort before non-letters");
        assert!(v("2.30-1") > v("2.4-1"));
    }

    #[test]
    fn real_openssl_versions_order() {
        for w in [
            "3.0.9-1",
            "3.0.11-1~deb12u1",
            "3.0.11-1~deb12u2",
            "3.0.11-1",
            "3.0.13-1~deb12u1",
            "3.0.15-1~deb12u1",
        ]
        .windows(2)
        {
            assert!(v(w[0]) < v(w[1]), "{} < {}", w[0], w[1]);
        }
        assert!(v("1.1.1n-0+deb11u5") < v("1.1.1w-0+deb11u1"));
    }

    #[test]
    fn equalities() {
        assert_eq!(v("0:1.0"), v("1.0"));
        assert_eq!(v("1.0-0"), v("1.0"));
        assert_eq!(v("1.01"), v("1.1"));
    }

    #[test]
    fn invalid_versions_are_rejected() {
        for s in ["", "a1.0", "x:1.0", "1.0-", "1.0 1", ":1.0"] {
            assert!(s.parse::<DpkgVersion>().is_err(), "{s:?}");
        }
    }
}
