//! PEP 440 versions, ordered exactly as `packaging.version.Version` (packaging 22+): parsing
//! follows its `VERSION_PATTERN` (case-insensitive, `v` prefix, implicit numbers, `-N` post
//! releases, alternative spellings `alpha`/`c`/`pre`/`preview`/`rev`/`r`), comparison its
//! `_cmpkey` (trailing release zeros dropped, a lone `.devN` sorts before pre-releases, local
//! segments compared numerically or lexically, numbers after strings).

use std::cmp::Ordering;
use std::fmt;
use std::str::FromStr;

use super::{ord_from_cmp, VersionError};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum PreKind {
    Alpha,
    Beta,
    Rc,
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum LocalSegment {
    // Declared first: in packaging a string segment sorts before any numeric one.
    Str(Box<str>),
    Num(u64),
}

#[derive(Debug, Clone)]
pub struct Pep440Version {
    pub epoch: u64,
    pub release: Vec<u64>,
    pub pre: Option<(PreKind, u64)>,
    pub post: Option<u64>,
    pub dev: Option<u64>,
    pub local: Vec<LocalSegment>,
}

struct Cursor<'a> {
    s: &'a [u8],
    i: usize,
}

impl Cursor<'_> {
    fn peek(&self) -> Option<u8> {
        self.s.get(self.i).copied()
    }
    fn eat_sep(&mut self) -> bool {
        if matches!(self.peek(), Some(b'-' | b'_' | b'.')) {
            self.i += 1;
            true
        } else {
            false
        }
    }
    fn eat_word(&mut self, words: &[&str]) -> Option<usize> {
        for (k, w) in words.iter().enumerate() {
            let end = self.i + w.len();
            if end <= self.s.len() && self.s[self.i..end].eq_ignore_ascii_case(w.as_bytes()) {
                self.i = end;
                return Some(k);
            }
        }
        None
    }
    fn number(&mut self) -> Result<Option<u64>, ()> {
        let start = self.i;
        while matches!(self.peek(), Some(b'0'..=b'9')) {
            self.i += 1;
        }
        if start == self.i {
            return Ok(None);
        }
        let digits = std::str::from_utf8(&self.s[start..self.i]).map_err(|_| ())?;
        digits.parse().map(Some).map_err(|_| ())
    }
}

impl FromStr for Pep440Version {
    type Err = VersionError;

    fn from_str(input: &str) -> Result<Self, VersionError> {
        let err = |reason| VersionError::new("PEP 440", input, reason);
        let s = input.trim();
        let mut c = Cursor {
            s: s.as_bytes(),
            i: 0,
        };
        if matches!(c.peek(), Some(b'v' | b'V')) {
            c.i += 1;
        }
        let overflow = |_| err("number too large");
        let first = c
            .number()
            .map_err(overflow)?
            .ok_or_else(|| err("expected a release number"))?;
        let mut epoch = 0;
        let mut release = vec![first];
        if c.peek() == Some(b'!') {
            c.i += 1;
            epoch = first;
            release[0] = c
                .number()
                .map_err(overflow)?
                .ok_or_else(|| err("expected a release after the epoch"))?;
        }
        while c.peek() == Some(b'.') {
            let save = c.i;
            c.i += 1;
            match c.number().map_err(overflow)? {
                Some(n) => release.push(n),
                None => {
                    c.i = save;
                    break;
                }
            }
        }
        // Pre-release: [-_.]? (alpha|a|beta|b|preview|pre|c|rc) [-_.]? N?
        let save = c.i;
        c.eat_sep();
        let pre_words = ["alpha", "a", "beta", "b", "preview", "pre", "c", "rc"];
        let pre = match c.eat_word(&pre_words) {
            Some(k) => {
                let kind = match k {
                    0 | 1 => PreKind::Alpha,
                    2 | 3 => PreKind::Beta,
                    _ => PreKind::Rc,
                };
                c.eat_sep();
                Some((kind, c.number().map_err(overflow)?.unwrap_or(0)))
            }
            None => {
                c.i = save;
                None
            }
        };
        // Post-release: -N | [-_.]? (post|rev|r) [-_.]? N?
        let save = c.i;
        let mut post = None;
        if c.peek() == Some(b'-') {
            c.i += 1;
            if let Some(n) = c.number().map_err(overflow)? {
                post = Some(n);
            } else {
                c.i = save;
            }
        }
        if post.is_none() {
            c.eat_sep();
            if c.eat_word(&["post", "rev", "r"]).is_some() {
                c.eat_sep();
                post = Some(c.number().map_err(overflow)?.unwrap_or(0));
            } else {
                c.i = save;
            }
        }
        // Development release: [-_.]? dev [-_.]? N?
        let save = c.i;
        c.eat_sep();
        let dev = if c.eat_word(&["dev"]).is_some() {
            c.eat_sep();
            Some(c.number().map_err(overflow)?.unwrap_or(0))
        } else {
            c.i = save;
            None
        };
        // Local version: + [a-z0-9]+ ([-_.][a-z0-9]+)*
        let mut local = Vec::new();
        if c.peek() == Some(b'+') {
            let rest = &s[c.i + 1..];
            for part in rest.split(['-', '_', '.']) {
                if part.is_empty() || !part.bytes().all(|b| b.is_ascii_alphanumeric()) {
                    return Err(err("invalid local version label"));
                }
                local.push(if part.bytes().all(|b| b.is_ascii_digit()) {
                    LocalSegment::Num(part.parse().map_err(|_| err("number too large"))?)
                } else {
                    LocalSegment::Str(part.to_ascii_lowercase().into())
                });
            }
            c.i = s.len();
        }
        if c.i != s.len() {
            return Err(err("unexpected trailing characters"));
        }
        Ok(Pep440Version {
            epoch,
            release,
            pre,
            post,
            dev,
            local,
        })
    }
}

/// packaging's `_cmpkey` component for pre-releases: a bare `.devN` release sorts before every
/// pre-release of the same release; a final release after all of them.
#[derive(PartialEq, Eq, PartialOrd, Ord)]
enum PreKey {
    DevOnly,
    Pre(PreKind, u64),
    None,
}

impl Pep440Version {
    fn trimmed_release(&self) -> &[u64] {
        let n = self
            .release
            .iter()
            .rposition(|&x| x != 0)
            .map_or(0, |i| i + 1);
        &self.release[..n]
    }

    fn pre_key(&self) -> PreKey {
        match (self.pre, self.post, self.dev) {
            (None, None, Some(_)) => PreKey::DevOnly,
            (None, _, _) => PreKey::None,
            (Some((k, n)), _, _) => PreKey::Pre(k, n),
        }
    }

    pub fn is_prerelease(&self) -> bool {
        self.pre.is_some() || self.dev.is_some()
    }
}

impl Ord for Pep440Version {
    fn cmp(&self, other: &Self) -> Ordering {
        // dev: absent sorts after any devN.
        let dev_key = |v: &Self| v.dev.map_or((1, 0), |d| (0, d));
        // local: absent sorts before any label.
        let local_key = |v: &Self| (!v.local.is_empty(), v.local.clone());
        self.epoch
            .cmp(&other.epoch)
            .then_with(|| self.trimmed_release().cmp(other.trimmed_release()))
            .then_with(|| self.pre_key().cmp(&other.pre_key()))
            .then_with(|| self.post.cmp(&other.post))
            .then_with(|| dev_key(self).cmp(&dev_key(other)))
            .then_with(|| {
                if self.local.is_empty() && other.local.is_empty() {
                    Ordering::Equal
                } else {
                    local_key(self).cmp(&local_key(other))
                }
            })
    }
}
ord_from_cmp!(Pep440Version);

impl fmt::Display for Pep440Version {
    /// The normalised form, as `str(packaging.version.Version(...))`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.epoch != 0 {
            write!(f, "{}!", self.epoch)?;
        }
        for (i, n) in self.release.iter().enumerate() {
            if i > 0 {
                f.write_str(".")?;
            }
            write!(f, "{n}")?;
        }
        if let Some((k, n)) = self.pre {
            let l = match k {
                PreKind::Alpha => "a",
                PreKind::Beta => "b",
                PreKind::Rc => "rc",
            };
            write!(f, "{l}{n}")?;
        }
        if let Some(n) = self.post {
            write!(f, ".post{n}")?;
        }
        if let Some(n) = self.dev {
            write!(f, ".dev{n}")?;
        }
        for (i, seg) in self.local.iter().enumerate() {
            f.write_str(if i == 0 { "+" } else { "." })?;
            match seg {
                LocalSegment::Str(s) => f.write_str(s)?,
                LocalSegment::Num(n) => write!(f, "{n}")?,
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &str) -> Pep440Version {
        s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    #[test]
    fn pep440_summary_of_permitted_suffixes_is_in_order() {
        // The ordering example from PEP 440 "Summary of permitted suffixes and relative ordering".
        let order = [
            "1.dev0",
            "1.0.dev456",
            "1.0a1",
            "1.0a2.dev456",
            "1.0a12.dev456",
            "1.0a12",
            "1.0b1.dev456",
            "1.0b2",
            "1.0b2.post345.dev456",
            "1.0b2.post345",
            "1.0rc1.dev456",
            "1.0rc1",
            "1.0",
            "1.0+abc.5",
            "1.0+abc.7",
            "1.0+5",
            "1.0.post456.dev34",
            "1.0.post456",
            "1.0.15",
            "1.1.dev1",
        ];
        for w in order.windows(2) {
            assert!(v(w[0]) < v(w[1]), "{} < {}", w[0], w[1]);
        }
    }

    #[test]
    fn alternative_spellings_normalise_like_packaging() {
        for (input, normal) in [
            ("1.0RC1", "1.0rc1"),
            ("1.0c1", "1.0rc1"),
            ("1.0-1", "1.0.post1"),
            ("1.0-r1", "1.0.post1"),
            ("1.0.post", "1.0.post0"),
            ("1.0.dev", "1.0.dev0"),
            ("v1.0", "1.0"),
            ("1.0alpha2", "1.0a2"),
            ("1.0-preview-3", "1.0rc3"),
            ("1.0_post_2", "1.0.post2"),
            ("1.0a.", "1.0a0"),
            ("1!2.0+Ubuntu-1", "1!2.0+ubuntu.1"),
            (" 1.0 ", "1.0"),
        ] {
            assert_eq!(v(input).to_string(), normal, "{input}");
            assert_eq!(v(input), v(normal));
        }
    }

    #[test]
    fn trailing_zeros_and_epochs() {
        assert_eq!(v("1.0"), v("1.0.0.0"));
        assert!(v("1!0.1") > v("2.0"));
        assert!(v("1.0+local") > v("1.0"));
    }

    #[test]
    fn invalid_versions_are_rejected() {
        for s in ["", "abc", "1.0-1-1", "1.0+", "1.0+a..b", "1..0", "1.0 x"] {
            assert!(
                s.parse::<Pep440Version>().is_err(),
                "{s:?} should be invalid"
            );
        }
    }
}
