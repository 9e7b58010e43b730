//! The blob store port: content-addressed bytes, shared by every repository, plus staging areas
//! for uploads in progress.
//!
//! Owns: where blob bytes live (object keys are built only in [`layout`]) and how an upload becomes
//! a blob (staged, made durable, then published under its digest). Callers hold the concrete
//! [`BlobStore`]; backends implement the private `BlobBackend` trait: the filesystem (`fs`) and
//! S3-compatible object storage (`s3`). Everything a backend needs to continue an upload is in the
//! bucket or in the [`UploadCursor`] the caller keeps, so any node can continue it. Called by the
//! service layer and by tests; never calls it back. It knows nothing about repositories, manifests
//! or tags — who points at which blob is the metadata store's business.
//!
//! Invariant: nothing appears under a content address before the caller has verified the digest,
//! and a published blob is never modified, only deleted (or, when scrub found its bytes corrupt,
//! moved aside to `quarantine/`).

mod file_stream;
mod fs;
pub mod layout;
mod s3;

use std::io;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use bonded_types::{ByteRange, Digest, UploadId};
use bytes::Bytes;
use futures::Stream;

pub use s3::S3Options;

/// A stream of bytes going into or out of the store.
pub type ByteStream = Pin<Box<dyn Stream<Item = io::Result<Bytes>> + Send>>;

/// Called with each slice of bytes once it has been written to staging (e.g. to hash it).
pub type WriteObserver<'a> = &'a mut (dyn FnMut(&[u8]) + Send);

#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("not found")]
    NotFound,
    #[error("upload is at offset {actual}, not {expected}")]
    OffsetMismatch { expected: u64, actual: u64 },
    #[error("the request body ended early: {0}")]
    BodyInterrupted(io::Error),
    #[error("storage I/O error: {0}")]
    Io(#[from] io::Error),
}

pub type Result<T, E = StorageError> = std::result::Result<T, E>;

/// Where an upload stands in the backend: the bytes staged so far and the backend's opaque
/// cursor (empty for the filesystem; multipart ids and parts for object storage). The caller
/// persists it between requests — in the metadata store, so any node can continue an upload —
/// and hands it back on every call. Bytes beyond `size` are not part of the upload.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct UploadCursor {
    pub size: u64,
    pub state: String,
}

/// An append that failed part-way: `cursor` says what is staged now (persist it, the client
/// may resume from there), `error` why it stopped.
#[derive(Debug)]
pub struct AppendError {
    pub cursor: UploadCursor,
    pub error: StorageError,
}

/// Bytes read back from the store.
pub struct BlobRead {
    /// Total size of the blob (not of the range).
    pub size: u64,
    pub stream: ByteStream,
}

/// What a backend must provide. Private: callers use [`BlobStore`].
#[async_trait]
trait BlobBackend: Send + Sync {
    async fn upload_create(&self, id: &UploadId) -> Result<UploadCursor>;
    async fn upload_append(
        &self,
        id: &UploadId,
        cursor: &UploadCursor,
        body: ByteStream,
        observe: WriteObserver<'_>,
    ) -> Result<UploadCursor, AppendError>;
    async fn upload_read(&self, id: &UploadId, cursor: &UploadCursor) -> Result<ByteStream>;
    async fn upload_publish(
        &self,
        id: &UploadId,
        cursor: &UploadCursor,
        digest: &Digest,
    ) -> Result<()>;
    async fn upload_delete(&self, id: &UploadId, cursor: Option<&UploadCursor>) -> Result<()>;
    async fn upload_list(&self) -> Result<Vec<(UploadId, SystemTime)>>;
    async fn blob_size(&self, digest: &Digest) -> Result<Option<u64>>;
    async fn blob_read(&self, digest: &Digest, range: Option<ByteRange>) -> Result<BlobRead>;
    async fn blob_delete(&self, digest: &Digest) -> Result<()>;
    /// How many `blob_delete`s a bulk deletion (a sweep) should have in flight at once.
    fn delete_concurrency(&self) -> usize {
        16
    }
    async fn blob_quarantine(&self, digest: &Digest, at_ms: i64) -> Result<bool>;
    /// A URL anyone may GET the blob from until `expires`, if the backend can sign one.
    async fn presign_get(&self, _digest: &Digest, _expires: Duration) -> Result<Option<String>> {
        Ok(None)
    }
}

/// Handle to the configured blob backend. Cheap to clone.
#[derive(Clone)]
pub struct BlobStore {
    backend: Arc<dyn BlobBackend>,
}

impl BlobStore {
    /// A store on the local filesystem under `root` (created if missing).
    pub async fn filesystem(root: impl Into<PathBuf>) -> Result<BlobStore> {
        let backend = fs::FsBackend::open(root.into()).await?;
        Ok(BlobStore {
            backend: Arc::new(backend),
        })
    }

    /// A store in an S3-compatible bucket. Cheap: nothing is contacted until first use.
    pub fn s3(options: S3Options) -> Result<BlobStore> {
        Ok(BlobStore {
            backend: Arc::new(s3::S3Backend::new(options)?),
        })
    }

    /// Starts an empty staging area for an upload and returns its first cursor.
    pub async fn upload_create(&self, id: &UploadId) -> Result<UploadCursor> {
        self.backend.upload_create(id).await
    }

    /// Appends `body` after the bytes `cursor` covers and returns the new cursor. `observe` sees
    /// every slice once it is staged. If the body fails midway, the error carries the cursor of
    /// what was staged before it failed.
    pub async fn upload_append(
        &self,
        id: &UploadId,
        cursor: &UploadCursor,
        body: ByteStream,
        observe: WriteObserver<'_>,
    ) -> Result<UploadCursor, AppendError> {
        self.backend.upload_append(id, cursor, body, observe).await
    }

    /// Reads the staged bytes back (to hash them when no running hash survived). Only on the
    /// way to publishing: on object storage the upload takes no more bytes afterwards (reading
    /// completes its multipart upload).
    pub async fn upload_read(&self, id: &UploadId, cursor: &UploadCursor) -> Result<ByteStream> {
        self.backend.upload_read(id, cursor).await
    }

    /// Makes the staged bytes durable and publishes them under `digest`, which the caller has
    /// verified. Idempotent: if the blob already exists the staged copy is dropped.
    pub async fn upload_publish(
        &self,
        id: &UploadId,
        cursor: &UploadCursor,
        digest: &Digest,
    ) -> Result<()> {
        self.backend.upload_publish(id, cursor, digest).await
    }

    /// Drops a staging area (with its cursor when known). Missing is not an error.
    pub async fn upload_delete(&self, id: &UploadId, cursor: Option<&UploadCursor>) -> Result<()> {
        self.backend.upload_delete(id, cursor).await
    }

    /// Every staging area with its last modification time (for expiring abandoned uploads).
    pub async fn upload_list(&self) -> Result<Vec<(UploadId, SystemTime)>> {
        self.backend.upload_list().await
    }

    pub async fn blob_size(&self, digest: &Digest) -> Result<Option<u64>> {
        self.backend.blob_size(digest).await
    }

    /// Streams a blob, or the given range of it.
    pub async fn blob_read(&self, digest: &Digest, range: Option<ByteRange>) -> Result<BlobRead> {
        self.backend.blob_read(digest, range).await
    }

    /// Removes a blob. Missing is not an error.
    pub async fn blob_delete(&self, digest: &Digest) -> Result<()> {
        self.backend.blob_delete(digest).await
    }

    /// How many deletions a bulk deletion should keep in flight: many for an object store, where
    /// each is a round trip; one on a filesystem, where a burst of parallel unlinks lengthens
    /// every concurrent fsync (they share the journal) and so the pushes that wait for one.
    pub fn delete_concurrency(&self) -> usize {
        self.backend.delete_concurrency()
    }

    /// Moves a blob's bytes out of its content address to `layout::quarantine_key(digest, at_ms)`
    /// (scrub found them corrupt). `false` if there was nothing to move. Afterwards the digest
    /// can be published again with correct bytes.
    pub async fn blob_quarantine(&self, digest: &Digest, at_ms: i64) -> Result<bool> {
        self.backend.blob_quarantine(digest, at_ms).await
    }

    /// A pre-signed URL to GET the blob directly from object storage for `expires` (for
    /// redirects), or `None` if the backend has none (the filesystem). Not checked for existence.
    /// The URL is a credential while it lasts: never log it.
    pub async fn presign_get(&self, digest: &Digest, expires: Duration) -> Result<Option<String>> {
        self.backend.presign_get(digest, expires).await
    }
}

#[cfg(test)]
mod conformance;
