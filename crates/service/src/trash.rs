//! Undelete: deleted manifests and tags stay restorable (and keep their blobs) until garbage
//! collection purges them after the undelete window.

use bonded_meta::{Deleted, MetaError};
use bonded_types::{Digest, Reference, RepoName, Tag};

use crate::{Error, Registry, Result};

/// What a restore brought back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Restored {
    pub digest: Digest,
    pub tags: Vec<Tag>,
}

impl Registry {
    /// Brings back a deleted tag (and its manifest if that was deleted too), or a deleted
    /// manifest with the tags deleted with it whose names are still free.
    /// A manifest it brings back counts against the namespace's artifact quota again.
    pub async fn restore(&self, repo: &RepoName, reference: &Reference) -> Result<Restored> {
        // The manifest the restore would bring back (a deleted tag's newest deletion).
        let manifest = match reference {
            Reference::Digest(d) => Some(d.clone()),
            Reference::Tag(t) => self.deleted(repo).await?.into_iter().find_map(|d| match d {
                Deleted::Tag { tag, digest, .. } if &tag == t => Some(digest),
                _ => None,
            }),
        };
        if let Some(d) = &manifest {
            // Free when the manifest is live (only a tag comes back).
            self.quota_check_manifest(repo, d).await?;
        }
        match reference {
            Reference::Tag(t) => match self.meta.manifests().restore_tag(repo, t).await {
                Ok(digest) => Ok(Restored {
                    digest,
                    tags: vec![t.clone()],
                }),
                Err(MetaError::NotFound) => Err(Error::Gone(format!(
                    "no deleted tag {t} in {repo} is still restorable"
                ))),
                Err(MetaError::Conflict(m)) => Err(Error::Conflict(m)),
                Err(e) => Err(e.into()),
            },
            Reference::Digest(d) => match self.meta.manifests().restore(repo, d).await {
                Ok(tags) => Ok(Restored {
                    digest: d.clone(),
                    tags,
                }),
                Err(MetaError::NotFound) => Err(Error::Gone(format!(
                    "manifest {d} in {repo} is not deleted, or no longer restorable"
                ))),
                Err(e) => Err(e.into()),
            },
        }
    }

    /// Restorable deletions in `repo`, newest first.
    pub async fn deleted(&self, repo: &RepoName) -> Result<Vec<Deleted>> {
        Ok(self.meta.manifests().deleted(repo).await?)
    }
}
