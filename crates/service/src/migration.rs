//! What a registry holds, repository by repository, and how to bring it into another one.
//! Used by `bonded migrate`; every import is verified (blobs re-hashed, manifests re-validated)
//! and skipped when the target already has it, so a migration can be re-run to resume.

use bonded_types::{Digest, Reference, RepoName, Tag};

use crate::{ByteStream, Error, Missing, Registry, Result};

/// Everything one repository holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RepoInventory {
    pub blobs: Vec<(Digest, u64)>,
    /// Oldest first, so an index comes after the manifests it names.
    pub manifests: Vec<Digest>,
    pub tags: Vec<(Tag, Digest)>,
}

/// What importing a blob did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlobImport {
    /// The repository already had it.
    Present,
    /// The registry had the bytes (another repository); only a link was added.
    Linked,
    /// The bytes were copied and verified.
    Copied,
}

impl Registry {
    pub async fn inventory(&self, repo: &RepoName) -> Result<RepoInventory> {
        let blobs = self.meta.blobs().linked(repo).await?;
        let manifests = self.meta.manifests().list(repo).await?;
        let mut tags = Vec::new();
        let mut last: Option<String> = None;
        loop {
            let page = self.tags_list(repo, Some(1000), last.as_deref()).await?;
            for t in page.items {
                if let Some(d) = self.meta.tags().resolve(repo, &t).await? {
                    tags.push((t.clone(), d));
                }
                last = Some(t.to_string());
            }
            if !page.more {
                break;
            }
        }
        Ok(RepoInventory {
            blobs,
            manifests,
            tags,
        })
    }

    /// Brings a blob into `repo`: nothing if present, a link if the bytes are already stored,
    /// otherwise the bytes from `open()`, verified against `digest`.
    pub async fn import_blob<F, Fut>(
        &self,
        repo: &RepoName,
        digest: &Digest,
        open: F,
    ) -> Result<BlobImport>
    where
        F: FnOnce() -> Fut,
        Fut: std::future::Future<Output = Result<ByteStream>>,
    {
        if self.blob_stat(repo, digest).await.is_ok() {
            return Ok(BlobImport::Present);
        }
        let stored = self.meta.blobs().size(digest).await?.is_some()
            && self.blobs.blob_size(digest).await?.is_some();
        if stored {
            self.meta.blobs().link(repo, digest).await?;
            return Ok(BlobImport::Linked);
        }
        self.upload_monolithic(repo, digest, open().await?).await?;
        Ok(BlobImport::Copied)
    }

    /// A stored manifest as it is, for copying: supply-chain policy does not gate migration.
    pub async fn export_manifest(
        &self,
        repo: &RepoName,
        digest: &Digest,
    ) -> Result<(bonded_types::MediaType, bytes::Bytes)> {
        let m = self
            .meta
            .manifests()
            .get(repo, digest)
            .await?
            .ok_or(Error::NotFound(Missing::Manifest))?;
        Ok((m.media_type, m.content.into()))
    }

    /// Stores a manifest under its digest (and nothing else) unless it is already there.
    /// Returns whether it was imported.
    pub async fn import_manifest(
        &self,
        repo: &RepoName,
        digest: &Digest,
        media_type: &str,
        content: bytes::Bytes,
    ) -> Result<bool> {
        if self.meta.manifests().get(repo, digest).await?.is_some() {
            return Ok(false);
        }
        self.manifest_put(
            repo,
            &Reference::Digest(digest.clone()),
            Some(media_type),
            content,
        )
        .await?;
        Ok(true)
    }

    /// Points `tag` at an already stored manifest unless it already does. Returns whether it moved.
    pub async fn import_tag(&self, repo: &RepoName, tag: &Tag, digest: &Digest) -> Result<bool> {
        if self.meta.tags().resolve(repo, tag).await?.as_ref() == Some(digest) {
            return Ok(false);
        }
        let m = self
            .meta
            .manifests()
            .get(repo, digest)
            .await?
            .ok_or(Error::NotFound(Missing::Manifest))?;
        self.manifest_put(
            repo,
            &Reference::Tag(tag.clone()),
            Some(m.media_type.as_str()),
            m.content.into(),
        )
        .await?;
        Ok(true)
    }
}
