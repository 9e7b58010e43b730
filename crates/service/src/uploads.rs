//! Blob uploads: monolithic, chunked, resumable, cross-repository mount.
//!
//! Bytes go to the blob store's staging area while a running SHA-256 is kept in memory. The
//! upload's size and the backend's cursor are persisted in the metadata store after every chunk,
//! so any node can continue an upload. If the running hash is lost (restart, another node, an
//! interrupted chunk, a sha512 digest) the staged bytes are hashed again at completion, so
//! correctness never depends on process memory.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use bonded_meta::{MetaError, UploadRecord};
use bonded_storage::UploadCursor;
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

fn cursor(rec: &UploadRecord) -> UploadCursor {
    UploadCursor {
        size: rec.size,
        state: rec.state.clone(),
    }
}

impl Registry {
    /// Opens an upload session for `repo`.
    pub async fn upload_start(&self, repo: &RepoName) -> Result<UploadState> {
        let id = new_upload_id();
        let cursor = self.blobs.upload_create(&id).await?;
        self.meta.uploads().create(&id, repo, &cursor.state).await?;
        self.uploads.start(&id);
        Ok(UploadState { id, size: 0 })
    }

    async fn session(&self, repo: &RepoName, id: &UploadId) -> Result<UploadRecord> {
        match self.meta.uploads().get(id).await? {
            Some(rec) if &rec.repo == repo => Ok(rec),
            _ => Err(Error::NotFound(Missing::Upload)),
        }
    }

    /// Bytes received so far.
    pub async fn upload_status(&self, repo: &RepoName, id: &UploadId) -> Result<UploadState> {
        let rec = self.session(repo, id).await?;
        Ok(UploadState {
            id: id.clone(),
            size: rec.size,
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
        let slot = self.uploads.slot(id);
        let mut running = slot.lock().await;
        let rec = self.session(repo, id).await?;
        if let Some(r) = range {
            if r.start != rec.size {
                return Err(Error::Invalid(Invalid::ChunkOutOfOrder {
                    offset: rec.size,
                }));
            }
            if declared_len.is_some_and(|l| l != r.len()) {
                return Err(Error::Invalid(Invalid::Size(format!(
                    "Content-Range covers {} bytes but Content-Length is {}",
                    r.len(),
                    declared_len.unwrap_or_default()
                ))));
            }
        }
        let new = self.append(id, &rec, body, &mut running).await?;
        if let Some(r) = range {
            if new.size != r.end + 1 {
                return Err(Error::Invalid(Invalid::Size(format!(
                    "Content-Range ends at byte {} but the body ended at byte {}",
                    r.end,
                    new.size.saturating_sub(1)
                ))));
            }
        }
        Ok(UploadState {
            id: id.clone(),
            size: new.size,
        })
    }

    /// Appends to staging and records the new cursor, keeping the running hash only while it has
    /// seen every byte. On failure the cursor of whatever was staged is still recorded, so the
    /// client can resume from the size the status endpoint reports.
    async fn append(
        &self,
        id: &UploadId,
        rec: &UploadRecord,
        body: ByteStream,
        running: &mut Option<Running>,
    ) -> Result<UploadCursor> {
        let from = cursor(rec);
        let mut hash = running.take().filter(|r| r.offset == from.size);
        let result = self
            .blobs
            .upload_append(id, &from, body, &mut |bytes| {
                if let Some(h) = hash.as_mut() {
                    h.hasher.update(bytes);
                    h.offset += bytes.len() as u64;
                }
            })
            .await;
        let (staged, failure) = match result {
            Ok(c) => (c, None),
            Err(e) => (e.cursor, Some(e.error)),
        };
        if staged != from {
            self.meta
                .uploads()
                .advance(id, from.size, staged.size, &staged.state)
                .await
                .map_err(|e| match e {
                    MetaError::Conflict(m) => Error::Invalid(Invalid::Upload(format!(
                        "the upload was modified concurrently: {m}"
                    ))),
                    MetaError::NotFound => Error::NotFound(Missing::Upload),
                    other => other.into(),
                })?;
        }
        match failure {
            None => {
                *running = hash.filter(|h| h.offset == staged.size);
                Ok(staged)
            }
            Some(e) => Err(e.into()),
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
        let slot = self.uploads.slot(id);
        let mut running = slot.lock().await;
        let rec = self.session(repo, id).await?;
        let staged = match last_chunk {
            Some((range, body)) => {
                if let Some(r) = range {
                    if r.start != rec.size {
                        return Err(Error::Invalid(Invalid::ChunkOutOfOrder {
                            offset: rec.size,
                        }));
                    }
                }
                self.append(id, &rec, body, &mut running).await?
            }
            None => cursor(&rec),
        };
        let actual = match running.take() {
            Some(r) if r.offset == staged.size && r.hasher.algorithm() == digest.algorithm() => {
                r.hasher.finish()
            }
            _ => {
                digest_stream(
                    digest.algorithm(),
                    self.blobs.upload_read(id, &staged).await?,
                )
                .await?
            }
        };
        if &actual != digest {
            self.discard(id).await;
            return Err(Error::Invalid(Invalid::Digest(format!(
                "content has digest {actual}, not {digest} as claimed; the upload was discarded"
            ))));
        }
        // Over quota: refused like a wrong digest, the staged bytes discarded; nothing was
        // linked (docs/quotas.md).
        if let Err(e) = self.quota_check_blob(repo, digest, staged.size).await {
            self.discard(id).await;
            return Err(e);
        }
        // The pin keeps garbage collection off this digest until the session (and with it the
        // pin) is deleted below, after the blob is recorded (docs/gc.md).
        self.pin_for_publish(digest, id).await?;
        // A quarantined digest is repaired by these verified bytes: whatever is left at its
        // address goes aside first, as publishing keeps an existing blob (docs/scrub.md).
        let repair = self.meta.integrity().quarantined(digest).await?.is_some();
        if repair {
            self.blobs.blob_quarantine(digest, crate::now_ms()).await?;
        }
        self.blobs.upload_publish(id, &staged, digest).await?;
        self.meta
            .blobs()
            .record_and_link(repo, digest, staged.size)
            .await?;
        if repair && self.meta.integrity().release(digest).await? {
            info!(%digest, repo = %repo, "a push repaired a quarantined blob");
        }
        self.meta.uploads().delete(id).await?;
        self.uploads.forget(id);
        Ok(staged.size)
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
        // A quarantined blob is not mounted: the client uploads it instead, which repairs it.
        let linked = self
            .meta
            .blobs()
            .linked_size(from, digest)
            .await?
            .filter(|b| !b.quarantined);
        let stored = match linked {
            Some(_) => self.blobs.blob_size(digest).await?.is_some(),
            None => false,
        };
        if let (true, Some(blob)) = (stored, linked) {
            self.quota_check_blob(repo, digest, blob.size).await?;
            // Linking checks again, atomically, that no sweep is deleting it.
            match self.meta.blobs().link(repo, digest).await {
                Ok(size) => return Ok(MountOutcome::Mounted { size }),
                Err(MetaError::NotFound) => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(MountOutcome::Started(self.upload_start(repo).await?))
    }

    pub async fn upload_cancel(&self, repo: &RepoName, id: &UploadId) -> Result<()> {
        let slot = self.uploads.slot(id);
        let _held = slot.lock().await;
        self.session(repo, id).await?;
        self.discard(id).await;
        Ok(())
    }

    /// Best-effort removal of an upload's staging area and session.
    async fn discard(&self, id: &UploadId) {
        let rec = match self.meta.uploads().get(id).await {
            Ok(rec) => rec,
            Err(e) => {
                warn!(upload = %id, error = %e, "could not read upload session");
                None
            }
        };
        let cursor = rec.as_ref().map(cursor);
        if let Err(e) = self.blobs.upload_delete(id, cursor.as_ref()).await {
            warn!(upload = %id, error = %e, "could not remove staged upload");
        }
        if let Err(e) = self.meta.uploads().delete(id).await {
            warn!(upload = %id, error = %e, "could not remove upload session");
        }
        self.uploads.forget(id);
    }

    /// Removes upload sessions idle for longer than `max_age` and staging areas no session owns.
    /// Returns how many were removed.
    pub async fn expire_uploads(&self, max_age: Duration) -> Result<usize> {
        let cutoff = SystemTime::now() - max_age;
        let cutoff_ms = cutoff
            .duration_since(SystemTime::UNIX_EPOCH)
            .map(|d| d.as_millis() as i64)
            .unwrap_or(0);
        let mut removed = 0;
        for rec in self.meta.uploads().idle_since(cutoff_ms).await? {
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
