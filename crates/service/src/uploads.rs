//! Blob uploads: monolithic, chunked, resumable, cross-repository mount.
//!
//! Bytes go to the blob store's staging area while a running SHA-256 is kept in memory. If that
//! running hash is lost (restart, another node, an interrupted chunk, a sha512 digest) the staged
//! bytes are hashed again at completion, so correctness never depends on process memory.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use bonded_types::{Algorithm, ByteRange, Digest, RepoName, UploadId};
use tracing::{info, warn};

use bonded_types::Hasher;

use crate::hashing::digest_stream;
use crate::{ByteStream, Error, Invalid, Missing, Registry, Result};

/// Where an upload stands, as the status endpoint reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UploadState {
    pub id: UploadId,
    /// Bytes received so far.
    pub size: u64,
}

/// Result of a mount request.
#[derive(Debug)]
pub enum MountOutcome {
    /// The blob is now linked into the target repository.
    Mounted { size: u64 },
    /// The blob was not visible; a normal upload session was started instead.
    Started(UploadState),
}

/// A running hash and how many bytes it has seen.
struct Running {
    hasher: Hasher,
    offset: u64,
}

/// One upload's lock, guarding its running hash (if it survived).
type Slot = Arc<tokio::sync::Mutex<Option<Running>>>;

/// Per-upload locks and running hashes, in this process only.
#[derive(Clone, Default)]
pub(crate) struct Tracker {
    inner: Arc<Mutex<HashMap<UploadId, Slot>>>,
}

impl Tracker {
    fn slot(&self, id: &UploadId) -> Slot {
        let mut map = self.inner.lock().expect("tracker lock poisoned");
        map.entry(id.clone()).or_default().clone()
    }

    fn start(&self, id: &UploadId) {
        let running = Running {
            hasher: Hasher::new(Algorithm::Sha256),
            offset: 0,
        };
        let mut map = self.inner.lock().expect("tracker lock poisoned");
        map.insert(id.clone(), Arc::new(tokio::sync::Mutex::new(Some(running))));
    }

    fn forget(&self, id: &UploadId) {
        self.inner.lock().expect("tracker lock poisoned").remove(id);
    }
}

fn new_upload_id() -> UploadId {
    UploadId::from_random(uuid::Uuid::new_v4().as_u128())
}

impl Registry {
    /// Opens an upload session for `repo`.
    pub async fn upload_start(&self, repo: &RepoName) -> Result<UploadState> {
        let id = new_upload_id();
        self.blobs.upload_create(&id).await?;
        self.meta.uploads().create(&id, repo).await?;
        self.uploads.start(&id);
        Ok(UploadState { id, size: 0 })
    }

    async fn session(&self, repo: &RepoName, id: &UploadId) -> Result<()> {
        match self.meta.uploads().get(id).await? {
            Some(rec) if &rec.repo == repo => Ok(()),
            _ => Err(Error::NotFound(Missing::Upload)),
        }
    }

    /// Bytes received so far.
    pub async fn upload_status(&self, repo: &RepoName, id: &UploadId) -> Result<UploadState> {
        self.session(repo, id).await?;
        let size = self
            .blobs
            .upload_size(id)
            .await?
            .ok_or(Error::NotFound(Missing::Upload))?;
        Ok(UploadState {
            id: id.clone(),
            size,
        })
    }

    /// Appends a chunk. `range` (from `Content-Range`) must start where the upload ends;
    /// `declared_len` (from `Content-Length`) must match the range when both are given.
    pub async fn upload_patch(
        &self,
        repo: &RepoName,
        id: &UploadId,
        range: Option<ByteRange>,
        declared_len: Option<u64>,
        body: ByteStream,
    ) -> Result<UploadState> {
        self.session(repo, id).await?;
        let slot = self.uploads.slot(id);
        let mut running = slot.lock().await;
        let size = self
            .blobs
            .upload_size(id)
            .await?
            .ok_or(Error::NotFound(Missing::Upload))?;
        if let Some(r) = range {
            if r.start != size {
                return Err(Error::Invalid(Invalid::ChunkOutOfOrder { offset: size }));
            }
            if declared_len.is_some_and(|l| l != r.len()) {
                return Err(Error::Invalid(Invalid::Size(format!(
                    "Content-Range covers {} bytes but Content-Length is {}",
                    r.len(),
                    declared_len.unwrap_or_default()
                ))));
            }
        }
        let new_size = self.append(id, size, body, &mut running).await?;
        if let Some(r) = range {
            if new_size != r.end + 1 {
                return Err(Error::Invalid(Invalid::Size(format!(
                    "Content-Range ends at byte {} but the body ended at byte {}",
                    r.end,
                    new_size.saturating_sub(1)
                ))));
            }
        }
        Ok(UploadState {
            id: id.clone(),
            size: new_size,
        })
    }

    /// Appends to staging, keeping the running hash only while it has seen every byte.
    async fn append(
        &self,
        id: &UploadId,
        offset: u64,
        body: ByteStream,
        running: &mut Option<Running>,
    ) -> Result<u64> {
        let mut hash = running.take().filter(|r| r.offset == offset);
        let result = self
            .blobs
            .upload_append(id, offset, body, &mut |bytes| {
                if let Some(h) = hash.as_mut() {
                    h.hasher.update(bytes);
                    h.offset += bytes.len() as u64;
                }
            })
            .await;
        match result {
            Ok(size) => {
                *running = hash.filter(|h| h.offset == size);
                Ok(size)
            }
            // The staged size is what the client resumes from; the hash is recomputed later.
            Err(e) => Err(e.into()),
        }
    }

    /// Finishes an upload: appends the optional last chunk, checks the digest, publishes the
    /// blob and links it into `repo`. On a digest mismatch the upload is discarded.
    pub async fn upload_complete(
        &self,
        repo: &RepoName,
        id: &UploadId,
        digest: &Digest,
        last_chunk: Option<(Option<ByteRange>, ByteStream)>,
    ) -> Result<u64> {
        self.session(repo, id).await?;
        let slot = self.uploads.slot(id);
        let mut running = slot.lock().await;
        let mut size = self
            .blobs
            .upload_size(id)
            .await?
            .ok_or(Error::NotFound(Missing::Upload))?;
        if let Some((range, body)) = last_chunk {
            if let Some(r) = range {
                if r.start != size {
                    return Err(Error::Invalid(Invalid::ChunkOutOfOrder { offset: size }));
                }
            }
            size = self.append(id, size, body, &mut running).await?;
        }
        let actual = match running.take() {
            Some(r) if r.offset == size && r.hasher.algorithm() == digest.algorithm() => {
                r.hasher.finish()
            }
            _ => digest_stream(digest.algorithm(), self.blobs.upload_read(id).await?).await?,
        };
        if &actual != digest {
            self.discard(id).await;
            return Err(Error::Invalid(Invalid::Digest(format!(
                "content has digest {actual}, not {digest} as claimed; the upload was discarded"
            ))));
        }
        self.blobs.upload_publish(id, digest).await?;
        self.meta
            .blobs()
            .record_and_link(repo, digest, size)
            .await?;
        self.meta.uploads().delete(id).await?;
        self.uploads.forget(id);
        Ok(size)
    }

    /// A whole blob in one request (`POST ?digest=` or `POST` then `PUT` with a body).
    pub async fn upload_monolithic(
        &self,
        repo: &RepoName,
        digest: &Digest,
        body: ByteStream,
    ) -> Result<u64> {
        let state = self.upload_start(repo).await?;
        let result = self
            .upload_complete(repo, &state.id, digest, Some((None, body)))
            .await;
        if result.is_err() {
            self.discard(&state.id).await;
        }
        result
    }

    /// Links a blob visible in `from` into `repo`, or starts an upload if it is not visible there.
    pub async fn upload_mount(
        &self,
        repo: &RepoName,
        from: &RepoName,
        digest: &Digest,
    ) -> Result<MountOutcome> {
        let visible = self.meta.blobs().linked_size(from, digest).await?.is_some()
            && self.blobs.blob_size(digest).await?.is_some();
        if visible {
            let size = self.meta.blobs().link(repo, digest).await?;
            return Ok(MountOutcome::Mounted { size });
        }
        Ok(MountOutcome::Started(self.upload_start(repo).await?))
    }

    pub async fn upload_cancel(&self, repo: &RepoName, id: &UploadId) -> Result<()> {
        self.session(repo, id).await?;
        let slot = self.uploads.slot(id);
        let _held = slot.lock().await;
        self.discard(id).await;
        Ok(())
    }

    /// Best-effort removal of an upload's staging area and session.
    async fn discard(&self, id: &UploadId) {
        if let Err(e) = self.blobs.upload_delete(id).await {
            warn!(upload = %id, error = %e, "could not remove staged upload");
        }
        if let Err(e) = self.meta.uploads().delete(id).await {
            warn!(upload = %id, error = %e, "could not remove upload session");
        }
        self.uploads.forget(id);
    }

    /// Removes upload sessions older than `max_age` and staging areas no session owns.
    /// Returns how many were removed.
    pub async fn expire_uploads(&self, max_age: Duration) -> Result<usize> {
        let cutoff = SystemTime::now() - max_age;
        let cutoff_ms = cutoff
            .duration_since(SystemTime::UNIX_EPOCH)
            .map(|d| d.as_millis() as i64)
            .unwrap_or(0);
        let mut removed = 0;
        for rec in self.meta.uploads().older_than(cutoff_ms).await? {
            self.discard(&rec.id).await;
            removed += 1;
        }
        // Staging areas whose session row is gone (a crash between the two deletes).
        for (id, modified) in self.blobs.upload_list().await? {
            if modified < cutoff && self.meta.uploads().get(&id).await?.is_none() {
                self.discard(&id).await;
                removed += 1;
            }
        }
        if removed > 0 {
            info!(removed, "expired abandoned uploads");
        }
        Ok(removed)
    }
}
