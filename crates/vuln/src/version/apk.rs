//! Alpine (apk-tools) package versions: `digits{.digits}[letter]{_suffix[digits]}[-rN]`.
//! Numbers compare numerically component by component (more components sort higher); then the
//! optional single letter; then suffixes, where `_alpha < _beta < _pre < _rc` sort below the bare
//! version and `_cvs < _svn < _git < _hg < _p` above it; then the `-rN` package revision (absent
//! sorts first). This is apk-tools' token comparison restated over the parsed form.
//! Approximation: apk compares non-first components with a leading zero as decimal fractions;
//! here they compare numerically.

use std::cmp::Ordering;
use std::fmt;
use std::str::FromStr;

use super::{cmp_digits, ord_from_cmp, VersionError};

const SUFFIXES: [&str; 9] = ["alpha", "beta", "pre", "rc", "cvs", "svn", "git", "hg", "p"];
/// Index of the first post-release suffix in [`SUFFIXES`].
const FIRST_POST: usize = 4;

#[derive(Debug, Clone)]
pub struct ApkVersion {
    pub numbers: Vec<Box<str>>,
    pub letter: Option<u8>,
    /// Suffix index into the known suffixes, and its number as written (`None` if absent).
    pub suffixes: Vec<(u8, Option<Box<str>>)>,
    pub revision: Option<Box<str>>,
}

impl FromStr for ApkVersion {
    type Err = VersionError;

    fn from_str(input: &str) -> Result<Self, VersionError> {
        let err = |reason| VersionError::new("apk", input, reason);
        let s = input.trim();
        let (main, revision) = match s.rsplit_once("-r") {
            Some((m, r)) if !r.is_empty() && r.bytes().all(|b| b.is_ascii_digit()) => (m, Some(r)),
            _ => (s, None),
        };
        let b = main.as_bytes();
        let mut i = 0;
        let mut numbers = Vec::new();
        loop {
            let start = i;
            while i < b.len() && b[i].is_ascii_digit() {
                i += 1;
            }
            if start == i {
                return Err(err("expected a number"));
            }
            numbers.push(main[start..i].into());
            if i < b.len() && b[i] == b'.' {
                i += 1;
            } else {
                break;
            }
        }
        let mut letter = None;
        if i < b.len() && b[i].is_ascii_lowercase() {
            letter = Some(b[i]);
            i += 1;
        }
        let mut suffixes = Vec::new();
        while i < b.len() && b[i] == b'_' {
            i += 1;
            let start = i;
            while i < b.len() && b[i].is_ascii_lowercase() {
                i += 1;
            }
            let name = &main[start..i];
            let idx = SUFFIXES
                .iter()
                .position(|s| *s == name)
                .ok_or_else(|| err("unknown suffix"))?;
            let nstart = i;
            while i < b.len() && b[i].is_ascii_digit() {
                i += 1;
            }
            let num = (nstart < i).then(|| main[nstart..i].into());
            suffixes.push((idx as u8, num));
        }
        if i != b.len() {
            return Err(err("unexpected characters"));
        }
        Ok(ApkVersion {
            numbers,
            letter,
            suffixes,
            revision: revision.map(Into::into),
        })
    }
}

fn opt_digits(a: &Option<Box<str>>, b: &Option<Box<str>>) -> Ordering {
    match (a, b) {
        (None, None) => Ordering::Equal,
        (None, Some(_)) => Ordering::Less,
        (Some(_), None) => Ordering::Greater,
        (Some(x), Some(y)) => cmp_digits(x, y),
    }
}

impl Ord for ApkVersion {
    fn cmp(&self, other: &Self) -> Ordering {
        for (a, b) in self.numbers.iter().zip(&other.numbers) {
            let o = cmp_digits(a, b);
            if o != Ordering::Equal {
                return o;
            }
        }
        let o = self.numbers.len().cmp(&other.numbers.len());
        if o != Ordering::Equal {
            return o;
        }
        let o = self.letter.cmp(&other.letter);
        if o != Ordering::Equal {
            return o;
        }
        for (a, b) in self.suffixes.iter().zip(&other.suffixes) {
            let o = a.0.cmp(&b.0).then_with(|| opt_digits(&a.1, &b.1));
            if o != Ordering::Equal {
                return o;
            }
        }
        let n = self.suffixes.len().min(other.suffixes.len());
        let is_pre = |s: &(u8, _)| (s.0 as usize) < FIRST_POST;
        match (self.suffixes.get(n), other.suffixes.get(n)) {
            (Some(s), None) => {
                return if is_pre(s) {
                    Ordering::Less
                } else {
                    Ordering::Greater
                }
            }
            (None, Some(s)) => {
                return if is_pre(s) {
                    Ordering::Greater
                } else {
                    Ordering::Less
                }
            }
            _ => {}
        }
        opt_digits(&self.revision, &other.revision)
    }
}
ord_from_cmp!(ApkVersion);

impl fmt::Display for ApkVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, n) in self.numbers.iter().enumerate() {
            if i > 0 {
                f.write_str(".")?;
            }
            f.write_str(n)?;
        }
        if let Some(l) = self.letter {
            write!(f, "{}", l as char)?;
        }
        for (s, n) in &self.suffixes {
            write!(
                f,
                "_{}{}",
                SUFFIXES[*s as usize],
                n.as_deref().unwrap_or("")
            )?;
        }
        if let Some(r) = &self.revision {
            write!(f, "-r{r}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &str) -> ApkVersion {
        s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    #[test]
    fn suffix_and_revision_order() {
        let order = [
            "1.2_alpha",
            "1.2_alpha1",
            "1.2_beta2",
            "1.2_pre1",
            "1.2_rc1",
            "1.2",
            "1.2-r0",
            "1.2-r1",
            "1.2_cvs",
            "1.2_svn",
            "1.2_git20230101",
            "1.2_hg",
            "1.2_p1",
            "1.2_p2",
            "1.2a",
            "1.2.1",
            "1.10",
        ];
        for w in order.windows(2) {
            assert!(v(w[0]) < v(w[1]), "{} < {}", w[0], w[1]);
        }
    }

    #[test]
    fn real_alpine_versions_order() {
        assert!(v("3.1.4-r0") < v("3.1.4-r1"));
        assert!(v("3.1.3-r0") < v("3.1.4-r0"));
        assert!(v("1.1.1w-r0") > v("1.1.1t-r3"));
        assert!(v("1.36.1-r5") < v("1.36.1-r15"));
    }

    #[test]
    fn invalid_versions_are_rejected() {
        for s in ["", "a1", "1.", "1.2_foo", "1.2-x", "1.2ab"] {
            assert!(s.parse::<ApkVersion>().is_err(), "{s:?}");
        }
    }
}
