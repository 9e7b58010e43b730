//! Image references as users type them: `localhost:5000/ml/recsys:v3`,
//! `registry.example.com/team/app@sha256:…`.

use std::fmt;
use std::str::FromStr;

use anyhow::{anyhow, bail};
use bonded_types::{Reference, RepoName};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageRef {
    /// `host[:port]`
    pub host: String,
    pub repo: RepoName,
    /// `None` when neither tag nor digest was given.
    pub reference: Option<Reference>,
}

impl FromStr for ImageRef {
    type Err = anyhow::Error;

    fn from_str(s: &str) -> anyhow::Result<ImageRef> {
        let (host, rest) = s.split_once('/').ok_or_else(|| {
            anyhow!("{s:?} has no registry host; write it as host[:port]/repository[:tag|@digest]")
        })?;
        if host.is_empty() || rest.is_empty() {
            bail!("{s:?} is not of the form host[:port]/repository[:tag|@digest]");
        }
        let (repo, reference) = if let Some((repo, digest)) = rest.split_once('@') {
            (repo, Some(digest.parse::<Reference>()?))
        } else {
            // A tag follows the last ':' after the last '/'.
            let last_slash = rest.rfind('/').map(|i| i + 1).unwrap_or(0);
            match rest[last_slash..].rfind(':') {
                Some(i) => {
                    let at = last_slash + i;
                    (&rest[..at], Some(rest[at + 1..].parse::<Reference>()?))
                }
                None => (rest, None),
            }
        };
        let repo: RepoName = repo.parse()?;
        Ok(ImageRef {
            host: host.to_string(),
            repo,
            reference,
        })
    }
}

impl ImageRef {
    pub fn require_reference(&self) -> anyhow::Result<&Reference> {
        self.reference.as_ref().ok_or_else(|| {
            anyhow!("{self} needs a tag or digest (repository:tag or repository@digest)")
        })
    }
}

impl fmt::Display for ImageRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.host, self.repo)?;
        match &self.reference {
            Some(Reference::Tag(t)) => write!(f, ":{t}"),
            Some(Reference::Digest(d)) => write!(f, "@{d}"),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_user_references() {
        let r: ImageRef = "localhost:5000/ml/recsys:v3".parse().unwrap();
        assert_eq!(r.host, "localhost:5000");
        assert_eq!(r.repo.as_str(), "ml/recsys");
        assert_eq!(r.reference, Some("v3".parse().unwrap()));
        let d = format!("sha256:{}", "a".repeat(64));
        let r: ImageRef = format!("h/x/y@{d}").parse().unwrap();
        assert_eq!(r.reference, Some(d.parse().unwrap()));
        let r: ImageRef = "127.0.0.1:5000/app".parse().unwrap();
        assert_eq!(r.reference, None);
        assert!("app:v1".parse::<ImageRef>().is_err());
        assert!("h/App:v1".parse::<ImageRef>().is_err());
        assert!("h/app:-bad".parse::<ImageRef>().is_err());
    }
}
