//! The whole OCI URL surface in one pure function: `/v2/...` paths parsed into [`Endpoint`].
//!
//! Repository names contain slashes, so the path is read from its end: the last segments say
//! which endpoint it is, everything before them is the name. The path is taken exactly as sent
//! (still percent-encoded), so `%2f` or `..` can never smuggle a separator into a name.

use bonded_types::{Digest, DigestError, NameError, Reference, RepoName, UploadId, UploadIdError};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    /// `/v2/`
    Base,
    /// `/v2/_catalog`
    Catalog,
    /// `/v2/<name>/tags/list`
    Tags { repo: RepoName },
    /// `/v2/<name>/manifests/<reference>`
    Manifest {
        repo: RepoName,
        reference: Reference,
    },
    /// `/v2/<name>/blobs/<digest>`
    Blob { repo: RepoName, digest: Digest },
    /// `/v2/<name>/blobs/uploads/`
    UploadStart { repo: RepoName },
    /// `/v2/<name>/blobs/uploads/<id>`
    Upload { repo: RepoName, id: UploadId },
    /// `/v2/<name>/referrers/<digest>`
    Referrers { repo: RepoName, digest: Digest },
}

impl Endpoint {
    /// Stable name for logs and metrics.
    pub fn name(&self) -> &'static str {
        match self {
            Endpoint::Base => "base",
            Endpoint::Catalog => "catalog",
            Endpoint::Tags { .. } => "tags_list",
            Endpoint::Manifest { .. } => "manifest",
            Endpoint::Blob { .. } => "blob",
            Endpoint::UploadStart { .. } => "upload_start",
            Endpoint::Upload { .. } => "upload",
            Endpoint::Referrers { .. } => "referrers",
        }
    }

    pub fn repo(&self) -> Option<&RepoName> {
        match self {
            Endpoint::Base | Endpoint::Catalog => None,
            Endpoint::Tags { repo }
            | Endpoint::Manifest { repo, .. }
            | Endpoint::Blob { repo, .. }
            | Endpoint::UploadStart { repo }
            | Endpoint::Upload { repo, .. }
            | Endpoint::Referrers { repo, .. } => Some(repo),
        }
    }
}

/// Why a path did not parse.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RouteError {
    /// No endpoint has this shape.
    NoSuchEndpoint,
    Name(NameError),
    /// A bad digest in a blob or referrers path.
    Digest(DigestError),
    /// A bad tag or digest in a manifest path.
    Reference(NameError),
    Upload(UploadIdError),
}

/// Parses a request path such as `/v2/ml/recsys/manifests/v3`.
pub fn parse(path: &str) -> Result<Endpoint, RouteError> {
    let rest = path.strip_prefix("/v2").ok_or(RouteError::NoSuchEndpoint)?;
    if rest.is_empty() || rest == "/" {
        return Ok(Endpoint::Base);
    }
    let rest = rest.strip_prefix('/').ok_or(RouteError::NoSuchEndpoint)?;
    if rest == "_catalog" {
        return Ok(Endpoint::Catalog);
    }
    let segs: Vec<&str> = rest.split('/').collect();
    let n = segs.len();
    let repo = |upto: usize| -> Result<RepoName, RouteError> {
        if upto == 0 {
            return Err(RouteError::NoSuchEndpoint);
        }
        segs[..upto].join("/").parse().map_err(RouteError::Name)
    };
    let digest = |s: &str| s.parse::<Digest>().map_err(RouteError::Digest);
    if n >= 3 && segs[n - 2] == "tags" && segs[n - 1] == "list" {
        return Ok(Endpoint::Tags { repo: repo(n - 2)? });
    }
    if n >= 4 && segs[n - 3] == "blobs" && segs[n - 2] == "uploads" {
        let repo = repo(n - 3)?;
        if segs[n - 1].is_empty() {
            return Ok(Endpoint::UploadStart { repo });
        }
        let id = segs[n - 1].parse().map_err(RouteError::Upload)?;
        return Ok(Endpoint::Upload { repo, id });
    }
    if n >= 2 {
        let last = segs[n - 1];
        match segs[n - 2] {
            "manifests" => {
                let repo = repo(n - 2)?;
                let reference = last.parse().map_err(RouteError::Reference)?;
                return Ok(Endpoint::Manifest { repo, reference });
            }
            "blobs" if last == "uploads" => {
                return Ok(Endpoint::UploadStart { repo: repo(n - 2)? })
            }
            "blobs" => {
                let repo = repo(n - 2)?;
                return Ok(Endpoint::Blob {
                    repo,
                    digest: digest(last)?,
                });
            }
            "referrers" => {
                let repo = repo(n - 2)?;
                return Ok(Endpoint::Referrers {
                    repo,
                    digest: digest(last)?,
                });
            }
            _ => {}
        }
    }
    Err(RouteError::NoSuchEndpoint)
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: &str = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    fn r(s: &str) -> RepoName {
        s.parse().unwrap()
    }

    #[test]
    fn parses_every_endpoint() {
        let id = UploadId::from_random(1);
        let cases: Vec<(String, Endpoint)> = vec![
            ("/v2/".into(), Endpoint::Base),
            ("/v2".into(), Endpoint::Base),
            ("/v2/_catalog".into(), Endpoint::Catalog),
            ("/v2/a/tags/list".into(), Endpoint::Tags { repo: r("a") }),
            (
                "/v2/a/b/c/tags/list".into(),
                Endpoint::Tags { repo: r("a/b/c") },
            ),
            (
                "/v2/ml/recsys/manifests/v3".into(),
                Endpoint::Manifest {
                    repo: r("ml/recsys"),
                    reference: "v3".parse().unwrap(),
                },
            ),
            (
                format!("/v2/a/manifests/{D}"),
                Endpoint::Manifest {
                    repo: r("a"),
                    reference: D.parse().unwrap(),
                },
            ),
            // A repository may itself contain a segment named like an endpoint.
            (
                "/v2/x/manifests/y/manifests/latest".into(),
                Endpoint::Manifest {
                    repo: r("x/manifests/y"),
                    reference: "latest".parse().unwrap(),
                },
            ),
            (
                format!("/v2/a/b/blobs/{D}"),
                Endpoint::Blob {
                    repo: r("a/b"),
                    digest: D.parse().unwrap(),
                },
            ),
            (
                "/v2/a/blobs/uploads/".into(),
                Endpoint::UploadStart { repo: r("a") },
            ),
            (
                "/v2/a/blobs/uploads".into(),
                Endpoint::UploadStart { repo: r("a") },
            ),
            (
                format!("/v2/a/blobs/uploads/{id}"),
                Endpoint::Upload {
                    repo: r("a"),
                    id: id.clone(),
                },
            ),
            (
                format!("/v2/a/referrers/{D}"),
                Endpoint::Referrers {
                    repo: r("a"),
                    digest: D.parse().unwrap(),
                },
            ),
        ];
        for (path, want) in cases {
            assert_eq!(parse(&path), Ok(want), "{path}");
        }
    }

    #[test]
    fn refuses_bad_shapes_and_values() {
        let no = |p: &str| assert_eq!(parse(p), Err(RouteError::NoSuchEndpoint), "{p}");
        no("/v1/");
        no("/v2x");
        no("/v2/a");
        no("/v2/a/tags");
        no("/v2/manifests/latest");
        no("/v2/a/unknown/x");
        let name = |p: &str| assert!(matches!(parse(p), Err(RouteError::Name(_))), "{p}");
        name("/v2/A/manifests/latest");
        name("/v2/a/../b/manifests/latest");
        name("/v2/a%2fb/manifests/latest");
        name("/v2/a//b/tags/list");
        name(&format!("/v2/{}/tags/list", "a".repeat(256)));
        assert!(matches!(
            parse("/v2/a/blobs/sha256:zz"),
            Err(RouteError::Digest(_))
        ));
        assert!(matches!(
            parse("/v2/a/referrers/nope"),
            Err(RouteError::Digest(_))
        ));
        assert!(matches!(
            parse("/v2/a/manifests/-bad"),
            Err(RouteError::Reference(_))
        ));
        assert!(matches!(
            parse("/v2/a/manifests/sha256:abc"),
            Err(RouteError::Reference(_))
        ));
        assert!(matches!(
            parse("/v2/a/blobs/uploads/..%2f..%2fetc"),
            Err(RouteError::Upload(_))
        ));
    }
}
