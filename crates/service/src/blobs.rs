//! Reading and unlinking blobs.

use bonded_types::{ByteRange, Digest, RangeError, RepoName};

use crate::{ByteStream, Error, Invalid, Missing, Registry, Result};

/// A blob (or a range of it) ready to stream.
pub struct BlobBody {
    /// Size of the whole blob.
    pub size: u64,
    /// The range being served, if the request asked for one.
    pub range: Option<ByteRange>,
    pub stream: ByteStream,
}

impl Registry {
    /// Size of a blob visible in `repo`.
    /// A blob that garbage collection marked is touched, so a client that checks a blob exists
    /// and then pushes a manifest naming it has a grace period to do so.
    pub async fn blob_stat(&self, repo: &RepoName, digest: &Digest) -> Result<u64> {
        let blob = self
            .meta
            .blobs()
            .linked_size(repo, digest)
            .await?
            .ok_or(Error::NotFound(Missing::Blob))?;
        if blob.quarantined {
            // Never serve bytes scrub found corrupt; a push of the digest repairs it.
            return Err(Error::NotFound(Missing::QuarantinedBlob));
        }
        if blob.marked {
            self.meta.gc().touch(repo, digest).await?;
        }
        Ok(blob.size)
    }

    /// Streams a blob visible in `repo`, honouring an HTTP `Range` header value.
    pub async fn blob_get(
        &self,
        repo: &RepoName,
        digest: &Digest,
        range_header: Option<&str>,
    ) -> Result<BlobBody> {
        let size = self.blob_stat(repo, digest).await?;
        let range = match range_header {
            None => None,
            Some(h) => match ByteRange::parse_request_range(h, size) {
                Ok(r) => Some(r),
                Err(RangeError::Unsatisfiable(..)) => {
                    return Err(Error::Invalid(Invalid::Range { size }))
                }
                // A malformed Range header is ignored, as RFC 9110 asks.
                Err(RangeError::Malformed(_)) => None,
            },
        };
        let read = self
            .blobs
            .blob_read(digest, range)
            .await
            .map_err(|e| match e {
                // Linked in metadata but gone from storage: that is data loss, not a 404.
                bonded_storage::StorageError::NotFound => Error::Internal(format!(
                    "blob {digest} is recorded but missing from storage"
                )),
                other => other.into(),
            })?;
        Ok(BlobBody {
            size: read.size,
            range,
            stream: read.stream,
        })
    }

    /// A presigned URL to fetch a blob visible in `repo` directly from object storage, when
    /// redirects are configured and the backend supports them.
    pub async fn blob_redirect(&self, repo: &RepoName, digest: &Digest) -> Result<Option<String>> {
        let Some(expiry) = self.limits.redirect_downloads else {
            return Ok(None);
        };
        self.blob_stat(repo, digest).await?;
        Ok(self.blobs.presign_get(digest, expiry).await?)
    }

    /// Unlinks a blob from `repo`. The bytes stay until garbage collection finds them unused.
    pub async fn blob_delete(&self, repo: &RepoName, digest: &Digest) -> Result<()> {
        self.meta
            .blobs()
            .unlink(repo, digest)
            .await
            .map_err(|e| match e {
                bonded_meta::MetaError::NotFound => Error::NotFound(Missing::Blob),
                other => other.into(),
            })
    }
}
