//! The blob store port: content-addressed bytes, shared by every repository, plus staging areas
//! for uploads in progress.
//!
//! Owns: where blob bytes live (object keys are built only in [`layout`]) and how an upload becomes
//! a blob (staged, fsynced, then published under its digest). Callers hold the concrete
//! [`BlobStore`]; backends implement the private `BlobBackend` trait. Called by the service layer
//! and by tests; never calls it back. It knows nothing about repositories, manifests or tags — who
//! points at which blob is the metadata store's business.
//!
//! Invariant: nothing appears under a content address before the caller has verified the digest,
//! and a published blob is never modified, only deleted.

mod fs;
pub mod layout;

use std::io;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::time::SystemTime;

use async_trait::async_trait;
use bonded_types::{ByteRange, Digest, UploadId};
use bytes::Bytes;
use futures::Stream;

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

/// Bytes read back from the store.
pub struct BlobRead {
    /// Total size of the blob (not of the range).
    pub size: u64,
    pub stream: ByteStream,
}

/// What a backend must provide. Private: callers use [`BlobStore`].
#[async_trait]
trait BlobBackend: Send + Sync {
    async fn upload_create(&self, id: &UploadId) -> Result<()>;
    async fn upload_size(&self, id: &UploadId) -> Result<Option<u64>>;
    async fn upload_append(
        &self,
        id: &UploadId,
        offset: u64,
        body: ByteStream,
        observe: WriteObserver<'_>,
    ) -> Result<u64>;
    async fn upload_read(&self, id: &UploadId) -> Result<ByteStream>;
    async fn upload_publish(&self, id: &UploadId, digest: &Digest) -> Result<()>;
    async fn upload_delete(&self, id: &UploadId) -> Result<()>;
    async fn upload_list(&self) -> Result<Vec<(UploadId, SystemTime)>>;
    async fn blob_size(&self, digest: &Digest) -> Result<Option<u64>>;
    async fn blob_read(&self, digest: &Digest, range: Option<ByteRange>) -> Result<BlobRead>;
    async fn blob_delete(&self, digest: &Digest) -> Result<()>;
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

    /// Starts an empty staging area for an upload.
    pub async fn upload_create(&self, id: &UploadId) -> Result<()> {
        self.backend.upload_create(id).await
    }

    /// Bytes staged so far, or `None` if there is no such upload.
    pub async fn upload_size(&self, id: &UploadId) -> Result<Option<u64>> {
        self.backend.upload_size(id).await
    }

    /// Appends `body` to the staging area, which must currently hold exactly `offset` bytes.
    /// `observe` sees every slice after it is written. Returns the new size. If the body fails
    /// midway the bytes written so far stay staged, and the error says so.
    pub async fn upload_append(
        &self,
        id: &UploadId,
        offset: u64,
        body: ByteStream,
        observe: WriteObserver<'_>,
    ) -> Result<u64> {
        self.backend.upload_append(id, offset, body, observe).await
    }

    /// Reads the staged bytes back (to hash them when no running hash survived).
    pub async fn upload_read(&self, id: &UploadId) -> Result<ByteStream> {
        self.backend.upload_read(id).await
    }

    /// Makes the staged bytes durable and publishes them under `digest`, which the caller has
    /// verified. Idempotent: if the blob already exists the staged copy is dropped.
    pub async fn upload_publish(&self, id: &UploadId, digest: &Digest) -> Result<()> {
        self.backend.upload_publish(id, digest).await
    }

    /// Drops a staging area. Missing is not an error.
    pub async fn upload_delete(&self, id: &UploadId) -> Result<()> {
        self.backend.upload_delete(id).await
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
}

#[cfg(test)]
mod conformance;
