//! The metadata store port: repositories, blobs and their links, manifests, tags, referrers and
//! upload sessions.
//!
//! Owns: who points at what, decided inside transactions (a manifest and its tag land together or
//! not at all; a manifest is accepted only if what it references exists). Callers hold the concrete
//! [`MetaStore`] and reach operations through one trait per aggregate ([`Repos`], [`Blobs`],
//! [`Uploads`], [`Manifests`], [`Tags`]; for access control and audit [`Accounts`], [`Grants`],
//! [`SigningKeys`], [`Audit`]). Called by the service layer; it never calls it back, and
//! knows no HTTP or policy: rules such as tag immutability arrive as parameters.
//!
//! Backends: SQLite (`sqlite.rs`, one node) and PostgreSQL (`postgres.rs`, several nodes sharing
//! one database; races between nodes are settled by row locks and atomic upserts, see that
//! module). Both pass the conformance suite in `conformance.rs`.
//!
//! Invariant: every write that spans rows is one transaction; nothing half-written is visible.

pub mod auth;
mod postgres;
mod sqlite;

use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;
use bonded_types::{Digest, MediaType, RepoName, Tag, UploadId};

pub use auth::{
    chain_hash, AccountKind, AccountRecord, Accounts, Audit, AuditEntry, AuditQuery, AuditRecord,
    Checkpoint, GrantRecord, Grants, SigningKeyRecord, SigningKeys,
};

#[derive(Debug, thiserror::Error)]
pub enum MetaError {
    #[error("not found")]
    NotFound,
    #[error("manifest references {0}, which is not in the repository")]
    MissingReference(Digest),
    #[error("tag {0} already points at another manifest and may not move")]
    TagImmutable(Tag),
    #[error("conflict: {0}")]
    Conflict(String),
    #[error("stored value is corrupt: {0}")]
    Corrupt(String),
    #[error("metadata database error: {0}")]
    Db(#[from] sqlx::Error),
    #[error("metadata migration error: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
}

pub type Result<T, E = MetaError> = std::result::Result<T, E>;

/// A manifest to store, with what it references already extracted by the caller.
#[derive(Debug, Clone)]
pub struct NewManifest {
    pub digest: Digest,
    pub media_type: MediaType,
    pub artifact_type: Option<MediaType>,
    pub subject: Option<Digest>,
    /// Annotations as a JSON object, kept for the referrers API.
    pub annotations: Option<String>,
    pub content: Vec<u8>,
    /// Config and layer digests: must be linked in the repository.
    pub blobs: Vec<Digest>,
    /// Index entries: must be manifests in the repository.
    pub manifests: Vec<Digest>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManifestRecord {
    pub digest: Digest,
    pub media_type: MediaType,
    pub content: Vec<u8>,
    pub subject: Option<Digest>,
}

/// One entry of the referrers list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Referrer {
    pub digest: Digest,
    pub media_type: MediaType,
    pub artifact_type: Option<MediaType>,
    pub size: u64,
    pub annotations: Option<String>,
}

/// How a tag write treats an existing tag.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TagWrite {
    /// Move the tag wherever it pointed.
    Overwrite,
    /// Create it, or leave it if it already points at this digest; refuse to move it.
    Immutable,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UploadRecord {
    pub id: UploadId,
    pub repo: RepoName,
    /// Bytes durably staged so far.
    pub size: u64,
    /// The blob backend's opaque cursor for this upload.
    pub state: String,
    pub created_at_ms: i64,
    pub updated_at_ms: i64,
}

/// Result of deleting a manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeletedManifest {
    pub tags_removed: Vec<Tag>,
}

#[async_trait]
pub trait Repos: Send + Sync {
    /// Repository names in lexical order after `last`, at most `n`.
    async fn list(&self, n: u32, last: Option<&str>) -> Result<Vec<RepoName>>;
    async fn exists(&self, repo: &RepoName) -> Result<bool>;
}

#[async_trait]
pub trait Blobs: Send + Sync {
    /// Records a verified blob and links it into `repo` (creating the repository if needed).
    async fn record_and_link(&self, repo: &RepoName, digest: &Digest, size: u64) -> Result<()>;
    /// Size of a blob if it is linked into `repo`.
    async fn linked_size(&self, repo: &RepoName, digest: &Digest) -> Result<Option<u64>>;
    /// Size of a blob if it exists in any repository (for mounts and dedupe).
    async fn size(&self, digest: &Digest) -> Result<Option<u64>>;
    /// Links an existing blob into `repo`. NotFound if the blob is not recorded.
    async fn link(&self, repo: &RepoName, digest: &Digest) -> Result<u64>;
    /// Removes the link; NotFound if there was none.
    async fn unlink(&self, repo: &RepoName, digest: &Digest) -> Result<()>;
    /// Every blob linked into `repo`, with its size, in digest order.
    async fn linked(&self, repo: &RepoName) -> Result<Vec<(Digest, u64)>>;
}

#[async_trait]
pub trait Uploads: Send + Sync {
    /// Records a new, empty upload session with the backend's initial cursor.
    async fn create(&self, id: &UploadId, repo: &RepoName, state: &str) -> Result<()>;
    async fn get(&self, id: &UploadId) -> Result<Option<UploadRecord>>;
    /// Moves an upload from `from_size` to `to_size` with a new cursor. Optimistic: fails with
    /// `Conflict` if the session is no longer at `from_size` (another request, maybe on another
    /// node, moved it first) and `NotFound` if it is gone.
    async fn advance(&self, id: &UploadId, from_size: u64, to_size: u64, state: &str)
        -> Result<()>;
    /// Missing is not an error.
    async fn delete(&self, id: &UploadId) -> Result<()>;
    /// Sessions not touched since `cutoff_ms`.
    async fn idle_since(&self, cutoff_ms: i64) -> Result<Vec<UploadRecord>>;
}

#[async_trait]
pub trait Manifests: Send + Sync {
    /// Stores a manifest (idempotent for the same digest) and optionally points a tag at it, in
    /// one transaction. Fails with `MissingReference` if a referenced blob or manifest is absent.
    async fn put(
        &self,
        repo: &RepoName,
        m: &NewManifest,
        tag: Option<(&Tag, TagWrite)>,
    ) -> Result<()>;
    async fn get(&self, repo: &RepoName, digest: &Digest) -> Result<Option<ManifestRecord>>;
    /// The manifest a tag points at, in one lookup (the hot path of pulls by tag).
    async fn get_tagged(&self, repo: &RepoName, tag: &Tag) -> Result<Option<ManifestRecord>>;
    /// Deletes a manifest and every tag pointing at it.
    async fn delete(&self, repo: &RepoName, digest: &Digest) -> Result<DeletedManifest>;
    /// Every manifest in `repo`, oldest first (so an index follows the manifests it names).
    async fn list(&self, repo: &RepoName) -> Result<Vec<Digest>>;
    /// Manifests whose subject is `subject`, optionally of one artifact type.
    async fn referrers(
        &self,
        repo: &RepoName,
        subject: &Digest,
        artifact_type: Option<&str>,
    ) -> Result<Vec<Referrer>>;
}

#[async_trait]
pub trait Tags: Send + Sync {
    async fn resolve(&self, repo: &RepoName, tag: &Tag) -> Result<Option<Digest>>;
    /// Tags in lexical order after `last`, at most `n`.
    async fn list(&self, repo: &RepoName, n: u32, last: Option<&str>) -> Result<Vec<Tag>>;
    /// Tags pointing at a manifest.
    async fn pointing_at(&self, repo: &RepoName, digest: &Digest) -> Result<Vec<Tag>>;
    async fn delete(&self, repo: &RepoName, tag: &Tag) -> Result<()>;
}

trait Backend:
    Repos + Blobs + Uploads + Manifests + Tags + Accounts + Grants + SigningKeys + Audit
{
}
impl<T> Backend for T where
    T: Repos + Blobs + Uploads + Manifests + Tags + Accounts + Grants + SigningKeys + Audit
{
}

/// Handle to the configured metadata backend. Cheap to clone.
#[derive(Clone)]
pub struct MetaStore {
    backend: Arc<dyn Backend>,
}

impl MetaStore {
    /// Opens (creating if needed) an SQLite database file and applies migrations.
    pub async fn sqlite(path: &Path) -> Result<MetaStore> {
        let backend = sqlite::SqliteBackend::open(path).await?;
        Ok(MetaStore {
            backend: Arc::new(backend),
        })
    }

    /// Connects to a PostgreSQL database (`postgres://user@host/db`) and applies migrations.
    /// Several nodes may share the database.
    pub async fn postgres(url: &str) -> Result<MetaStore> {
        let backend = postgres::PostgresBackend::connect(url).await?;
        Ok(MetaStore {
            backend: Arc::new(backend),
        })
    }

    pub fn repos(&self) -> &dyn Repos {
        &*self.backend
    }
    pub fn blobs(&self) -> &dyn Blobs {
        &*self.backend
    }
    pub fn uploads(&self) -> &dyn Uploads {
        &*self.backend
    }
    pub fn manifests(&self) -> &dyn Manifests {
        &*self.backend
    }
    pub fn tags(&self) -> &dyn Tags {
        &*self.backend
    }
    pub fn accounts(&self) -> &dyn Accounts {
        &*self.backend
    }
    pub fn grants(&self) -> &dyn Grants {
        &*self.backend
    }
    pub fn signing_keys(&self) -> &dyn SigningKeys {
        &*self.backend
    }
    pub fn audit(&self) -> &dyn Audit {
        &*self.backend
    }
}

pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

#[cfg(test)]
mod conformance;
#[cfg(test)]
mod conformance_auth;
