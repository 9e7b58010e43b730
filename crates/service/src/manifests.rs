//! Manifests: validation on push, lookup by tag or digest, deletion.
//!
//! Accepted: OCI image manifest and index, Docker v2 schema 2 manifest and manifest list (parsed
//! with `oci-spec`). A manifest is stored only if every blob it names is visible in the repository
//! and every manifest an index names is stored there; the check and the write are one transaction.

use bonded_meta::{MetaError, NewManifest, TagWrite};
use bonded_types::{media_types, Algorithm, Digest, MediaType, Reference, RepoName};
use bytes::Bytes;
use oci_spec::image::{Descriptor, ImageIndex, ImageManifest};
use serde_json::Value;

use crate::supply::PolicyEvent;
use crate::{Error, Invalid, Missing, Registry, Result};

/// Layers clients are not expected to upload (Windows foreign layers).
const FOREIGN_LAYERS: &[&str] = &[
    "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
    "application/vnd.oci.image.layer.nondistributable.v1.tar",
    "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
    "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd",
];

/// Outcome of a manifest push.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PutManifest {
    pub digest: Digest,
    pub subject: Option<Digest>,
    /// Supply-chain policies in warn mode that this push did not satisfy.
    pub policy_warnings: Vec<String>,
}

/// A stored manifest, ready to serve.
#[derive(Debug, Clone)]
pub struct ManifestBody {
    pub digest: Digest,
    pub media_type: MediaType,
    pub content: Bytes,
    /// Supply-chain policies in warn mode that this pull did not satisfy.
    pub policy_warnings: Vec<String>,
}

fn invalid(msg: impl Into<String>) -> Error {
    Error::Invalid(Invalid::Manifest(msg.into()))
}

fn descriptor_digest(d: &Descriptor) -> Result<Digest> {
    let s = d.digest().to_string();
    s.parse()
        .map_err(|e| invalid(format!("descriptor digest {s:?}: {e}")))
}

fn media_type(s: &str) -> Result<MediaType> {
    s.parse().map_err(|e| invalid(format!("{e}")))
}

/// What a manifest document says about itself, independent of its kind.
struct Parsed {
    media_type: MediaType,
    artifact_type: Option<MediaType>,
    subject: Option<Digest>,
    annotations: Option<String>,
    blobs: Vec<Digest>,
    manifests: Vec<Digest>,
}

fn annotations_json(a: Option<&std::collections::HashMap<String, String>>) -> Option<String> {
    a.filter(|m| !m.is_empty())
        .and_then(|m| serde_json::to_string(m).ok())
}

fn parse_manifest(content_type: Option<&str>, body: &[u8]) -> Result<Parsed> {
    let value: Value = serde_json::from_slice(body)
        .map_err(|e| invalid(format!("manifest is not valid JSON: {e}")))?;
    let obj = value
        .as_object()
        .ok_or_else(|| invalid("manifest must be a JSON object"))?;
    if obj.get("schemaVersion").and_then(Value::as_u64) != Some(2) {
        return Err(invalid(
            "schemaVersion must be 2 (schema 1 manifests are not supported)",
        ));
    }
    let declared = obj.get("mediaType").and_then(Value::as_str);
    let known = |s: &str| {
        matches!(
            s,
            media_types::OCI_MANIFEST
                | media_types::OCI_INDEX
                | media_types::DOCKER_MANIFEST
                | media_types::DOCKER_MANIFEST_LIST
        )
    };
    let header = content_type
        .and_then(|h| MediaType::from_header(h).ok())
        .filter(|m| known(m.as_str()));
    let kind = match (declared, &header) {
        (Some(d), Some(h)) if d != h.as_str() => {
            return Err(invalid(format!(
                "Content-Type {h} does not match the manifest's mediaType {d}"
            )))
        }
        (Some(d), _) => d.to_string(),
        (None, Some(h)) => h.to_string(),
        // Neither says: an index has "manifests", an image manifest has "config".
        (None, None) if obj.contains_key("manifests") => media_types::OCI_INDEX.to_string(),
        (None, None) if obj.contains_key("config") => media_types::OCI_MANIFEST.to_string(),
        (None, None) => return Err(invalid("cannot tell the manifest's media type")),
    };
    match kind.as_str() {
        media_types::OCI_MANIFEST | media_types::DOCKER_MANIFEST => {
            let m: ImageManifest = serde_json::from_value(value)
                .map_err(|e| invalid(format!("not a valid image manifest: {e}")))?;
            let mut blobs = vec![descriptor_digest(m.config())?];
            for layer in m.layers() {
                let foreign = FOREIGN_LAYERS.contains(&layer.media_type().to_string().as_str());
                if !foreign {
                    blobs.push(descriptor_digest(layer)?);
                }
            }
            // Referrers report artifactType, falling back to the config's media type.
            let artifact_type = match m.artifact_type() {
                Some(a) => Some(media_type(a.as_ref())?),
                None => Some(media_type(m.config().media_type().as_ref())?),
            };
            Ok(Parsed {
                media_type: media_type(&kind)?,
                artifact_type,
                subject: m.subject().as_ref().map(descriptor_digest).transpose()?,
                annotations: annotations_json(m.annotations().as_ref()),
                blobs,
                manifests: vec![],
            })
        }
        media_types::OCI_INDEX | media_types::DOCKER_MANIFEST_LIST => {
            let m: ImageIndex = serde_json::from_value(value)
                .map_err(|e| invalid(format!("not a valid image index: {e}")))?;
            let manifests = m
                .manifests()
                .iter()
                .map(descriptor_digest)
                .collect::<Result<Vec<_>>>()?;
            Ok(Parsed {
                media_type: media_type(&kind)?,
                artifact_type: m
                    .artifact_type()
                    .as_ref()
                    .map(|a| media_type(a.as_ref()))
                    .transpose()?,
                subject: m.subject().as_ref().map(descriptor_digest).transpose()?,
                annotations: annotations_json(m.annotations().as_ref()),
                blobs: vec![],
                manifests,
            })
        }
        other => Err(invalid(format!(
            "manifest media type {other} is not supported"
        ))),
    }
}

impl Registry {
    /// Validates and stores a manifest under `reference` (a tag, or the digest it must have).
    pub async fn manifest_put(
        &self,
        repo: &RepoName,
        reference: &Reference,
        content_type: Option<&str>,
        body: Bytes,
    ) -> Result<PutManifest> {
        if body.len() > self.limits.max_manifest_bytes {
            return Err(Error::TooLarge(format!(
                "manifest is {} bytes; the limit is {}",
                body.len(),
                self.limits.max_manifest_bytes
            )));
        }
        let digest = match reference {
            Reference::Digest(claimed) => {
                let actual = Digest::of(claimed.algorithm(), &body);
                if &actual != claimed {
                    return Err(Error::Invalid(Invalid::Digest(format!(
                        "manifest content has digest {actual}, not {claimed}"
                    ))));
                }
                actual
            }
            Reference::Tag(_) => Digest::of(Algorithm::Sha256, &body),
        };
        if let Reference::Tag(t) = reference {
            self.refuse_environment_tag(repo, t)?;
        }
        let parsed = parse_manifest(content_type, &body)?;
        // Tagging is what policy guards; pushes by digest (and referrers) are how an artifact
        // gets signed and attested before that.
        let policy_warnings = match reference {
            Reference::Tag(_) if parsed.subject.is_none() => {
                self.enforce_policy(repo, &digest, PolicyEvent::Push)
                    .await?
            }
            _ => Vec::new(),
        };
        let tag = match reference {
            Reference::Tag(t) => {
                let mode = if self.rules.tag_is_immutable(repo, t) {
                    TagWrite::Immutable
                } else {
                    TagWrite::Overwrite
                };
                Some((t, mode))
            }
            Reference::Digest(_) => None,
        };
        let record = NewManifest {
            digest: digest.clone(),
            media_type: parsed.media_type,
            artifact_type: parsed.artifact_type,
            subject: parsed.subject.clone(),
            annotations: parsed.annotations,
            content: body.to_vec(),
            blobs: parsed.blobs,
            manifests: parsed.manifests,
        };
        self.quota_check_manifest(repo, &digest).await?;
        self.meta.manifests().put(repo, &record, tag).await?;
        Ok(PutManifest {
            digest,
            subject: parsed.subject,
            policy_warnings,
        })
    }

    /// Environment pointers move only by promotion and rollback.
    fn refuse_environment_tag(&self, repo: &RepoName, tag: &bonded_types::Tag) -> Result<()> {
        if self.rules.environments.is_environment(repo, tag) {
            return Err(Error::Denied(format!(
                "tag {tag} of {repo} is an environment: it moves only by promotion or rollback \
                 (`bonded promote {repo}@<digest> --to {tag}`, `bonded rollback {repo} --env {tag}`)"
            )));
        }
        Ok(())
    }

    /// What an environment points at, or pointed at recently, is kept so rollback can reach it.
    pub(crate) async fn refuse_protected(&self, repo: &RepoName, digest: &Digest) -> Result<()> {
        if self.protected_digests(repo).await?.contains(digest) {
            return Err(Error::Denied(format!(
                "manifest {digest} of {repo} is, or recently was, an environment's digest; it is \
                 kept so that rollback can reach it (see `bonded history {repo}`)"
            )));
        }
        Ok(())
    }

    async fn manifest_missing(&self, repo: &RepoName) -> Error {
        match self.meta.repos().exists(repo).await {
            Ok(false) => Error::NotFound(Missing::Repository),
            Ok(true) => Error::NotFound(Missing::Manifest),
            Err(e) => e.into(),
        }
    }

    pub async fn manifest_get(
        &self,
        repo: &RepoName,
        reference: &Reference,
    ) -> Result<ManifestBody> {
        let found = match reference {
            Reference::Digest(d) => self.meta.manifests().get(repo, d).await?,
            Reference::Tag(t) => self.meta.manifests().get_tagged(repo, t).await?,
        };
        let Some(m) = found else {
            return Err(self.manifest_missing(repo).await);
        };
        self.note_pull(repo, &m.digest);
        let event = match reference {
            Reference::Tag(_) => PolicyEvent::PullByTag,
            Reference::Digest(_) => PolicyEvent::PullByDigest,
        };
        // Referrers (signatures, attestations) are never gated: verifying needs them.
        let policy_warnings = if m.subject.is_none() {
            self.enforce_policy(repo, &m.digest, event).await?
        } else {
            Vec::new()
        };
        Ok(ManifestBody {
            digest: m.digest,
            media_type: m.media_type,
            content: Bytes::from(m.content),
            policy_warnings,
        })
    }

    /// Deletes a tag (by tag) or a manifest and its tags (by digest). Immutable tags refuse both.
    pub async fn manifest_delete(&self, repo: &RepoName, reference: &Reference) -> Result<()> {
        let not_found = |e: MetaError| match e {
            MetaError::NotFound => Error::NotFound(Missing::Manifest),
            other => other.into(),
        };
        match reference {
            Reference::Tag(t) => {
                if self.rules.tag_is_immutable(repo, t) {
                    return Err(Error::Denied(format!("tag {t} in {repo} is immutable")));
                }
                self.refuse_environment_tag(repo, t)?;
                self.meta.tags().delete(repo, t).await.map_err(not_found)
            }
            Reference::Digest(d) => {
                let tags = self.meta.tags().pointing_at(repo, d).await?;
                if let Some(t) = tags.iter().find(|t| self.rules.tag_is_immutable(repo, t)) {
                    return Err(Error::Denied(format!(
                        "manifest {d} is the target of immutable tag {t} in {repo}"
                    )));
                }
                self.refuse_protected(repo, d).await?;
                self.meta
                    .manifests()
                    .delete(repo, d)
                    .await
                    .map_err(not_found)?;
                Ok(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CFG: &str = "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a";

    #[test]
    fn recognises_kinds_and_refuses_mismatches() {
        let m = format!(
            r#"{{"schemaVersion":2,"mediaType":"{}","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{CFG}","size":2}},"layers":[]}}"#,
            media_types::OCI_MANIFEST
        );
        let p = parse_manifest(Some(media_types::OCI_MANIFEST), m.as_bytes()).unwrap();
        assert_eq!(p.blobs.len(), 1);
        assert_eq!(
            p.artifact_type.unwrap().as_str(),
            "application/vnd.oci.image.config.v1+json"
        );
        assert!(parse_manifest(Some(media_types::OCI_INDEX), m.as_bytes()).is_err());
        assert!(parse_manifest(None, b"not json").is_err());
        assert!(parse_manifest(None, br#"{"schemaVersion":1}"#).is_err());
        assert!(
            parse_manifest(None, br#"{"schemaVersion":2,"mediaType":"application/x"}"#).is_err()
        );
        let idx = r#"{"schemaVersion":2,"manifests":[]}"#;
        assert!(parse_manifest(None, idx.as_bytes())
            .unwrap()
            .media_type
            .is_index());
    }
}
