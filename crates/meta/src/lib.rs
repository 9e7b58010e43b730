//! The metadata store port: repositories, blobs and their links, manifests, tags, referrers and
//! upload sessions.
//!
//! Owns: who points at what, decided inside transactions (a manifest and its tag land together or
//! not at all; a manifest is accepted only if what it references exists). Callers hold the concrete
//! [`MetaStore`] and reach operations through one trait per aggregate ([`Repos`], [`Blobs`],
//! [`Uploads`], [`Manifests`], [`Tags`], [`Gc`], [`Usage`] (with quota charges), [`Integrity`]
//! (scrub's walk and quarantine); for the supply chain [`Trust`] and
//! [`Attestations`]; for access control and audit [`Accounts`], [`Grants`], [`SigningKeys`],
//! [`Audit`]; for promotion [`Promotions`]; for vulnerabilities [`Vulns`] and [`Waivers`]). Called by the service layer; it never calls it back, and
//! knows no HTTP or policy: rules such as tag immutability arrive as parameters.
//!
//! Backends: SQLite (`sqlite.rs`, one node) and PostgreSQL (`postgres.rs`, several nodes sharing
//! one database; races between nodes are settled by row locks and atomic upserts, see that
//! module). Both pass the conformance suite in `conformance.rs`.
//!
//! Invariant: every write that spans rows is one transaction; nothing half-written is visible.

pub mod auth;
mod gc;
mod integrity;
mod postgres;
pub mod promotion;
mod sqlite;
mod trust;
mod usage;
pub mod vuln_ops;
pub mod vulns;
pub mod waivers;

use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;
use bonded_types::{Digest, MediaType, RepoName, Tag, UploadId};

pub use auth::{
    chain_hash, AccountKind, AccountRecord, Accounts, Audit, AuditEntry, AuditQuery, AuditRecord,
    Checkpoint, GrantRecord, Grants, SigningKeyRecord, SigningKeys,
};
pub use integrity::{Integrity, QuarantinedBlob};
pub use promotion::{
    Approval, CanaryRecord, Deployment, MoveKind, Moved, PointerMove, PointerRecord, Promotions,
};
pub use trust::{Attestations, NewTrustedKey, StoredReferrer, Trust, TrustedKeyRecord};
pub use vuln_ops::{MirrorState, VulnOps};
pub use vulns::{AdvisoryRow, ScanRow, VulnDbState, VulnSource, Vulns};
pub use waivers::{NewWaiverRow, PassRateInputs, WaiverRow, Waivers};

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

/// One live manifest as retention sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManifestInfo {
    pub digest: Digest,
    pub created_at_ms: i64,
    pub last_pulled_at_ms: Option<i64>,
    pub subject: Option<Digest>,
    pub tags: Vec<Tag>,
    /// Manifests it names (index entries).
    pub children: Vec<Digest>,
}

/// Something deleted that can still be restored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Deleted {
    Manifest {
        digest: Digest,
        deleted_at_ms: i64,
    },
    Tag {
        tag: Tag,
        digest: Digest,
        deleted_at_ms: i64,
    },
}

#[async_trait]
pub trait Repos: Send + Sync {
    /// Repository names in lexical order after `last`, at most `n`.
    async fn list(&self, n: u32, last: Option<&str>) -> Result<Vec<RepoName>>;
    async fn exists(&self, repo: &RepoName) -> Result<bool>;
}

/// A blob as seen through one repository's link.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LinkedBlob {
    pub size: u64,
    /// Garbage collection found it unreferenced and will sweep it unless it is used again
    /// ([`Gc::touch`]).
    pub marked: bool,
    /// Scrub found its stored bytes corrupt or missing ([`Integrity`]); it must not be served.
    pub quarantined: bool,
}

#[async_trait]
pub trait Blobs: Send + Sync {
    /// Records a verified blob and links it into `repo` (creating the repository if needed).
    /// `Conflict` if a sweep is deleting the blob (a caller that pinned it first never sees this).
    async fn record_and_link(&self, repo: &RepoName, digest: &Digest, size: u64) -> Result<()>;
    /// The blob if it is linked into `repo`.
    async fn linked_size(&self, repo: &RepoName, digest: &Digest) -> Result<Option<LinkedBlob>>;
    /// Size of a blob if it exists in any repository and is not being deleted.
    async fn size(&self, digest: &Digest) -> Result<Option<u64>>;
    /// Links an existing blob into `repo`. NotFound if the blob is not recorded or is being
    /// deleted.
    async fn link(&self, repo: &RepoName, digest: &Digest) -> Result<u64>;
    /// Removes the link; NotFound if there was none. Queues the blob for collection.
    async fn unlink(&self, repo: &RepoName, digest: &Digest) -> Result<()>;
    /// Every blob linked into `repo`, with its size, in digest order.
    async fn linked(&self, repo: &RepoName) -> Result<Vec<(Digest, u64)>>;
}

/// What one marking pass did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MarkReport {
    /// Queue entries looked at.
    pub examined: u64,
    /// Found unreferenced and marked.
    pub marked: u64,
    /// Referenced by a manifest (or already gone): dropped from the queue.
    pub dropped: u64,
    /// Recently linked or pinned: looked at again later.
    pub deferred: u64,
    /// How long the pass held what requests wait for too: SQLite's single writer (its reads run
    /// at idle CPU priority and hold nothing), or on PostgreSQL the whole pass. The collector
    /// paces itself by this.
    pub contended: std::time::Duration,
}

/// What a collection would reclaim now (a dry run).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GcPlan {
    /// Marked at least a grace period ago and still unreferenced: the next sweep deletes these.
    pub sweepable: u64,
    pub sweepable_bytes: u64,
    /// Unreferenced but not yet marked (or marked too recently): deletable a grace period later
    /// unless used again.
    pub pending: u64,
    pub pending_bytes: u64,
}

/// Storage used by one namespace (the first component of repository names). Blobs are
/// attributed to every namespace whose manifests reference them; see docs/gc.md, "Accounting".
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NamespaceUsage {
    pub namespace: String,
    /// Live manifests.
    pub artifacts: u64,
    /// Sum over live manifests of the blobs each references (what pulling everything moves).
    pub logical_bytes: u64,
    /// Distinct blobs the namespace's live manifests reference.
    pub physical_bytes: u64,
    /// Logical bytes of manifests pushed since each of the given instants.
    pub logical_added: Vec<u64>,
    /// Physical bytes of referenced blobs first stored since each of the given instants.
    pub physical_added: Vec<u64>,
    /// What quotas charge: distinct blobs linked into any of the namespace's repositories
    /// (pushed, mounted or referenced), each once (docs/quotas.md).
    pub charged_bytes: u64,
}

/// What a namespace is charged for quotas (docs/quotas.md): each distinct blob linked into any
/// of its repositories once, and its live manifests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Charge {
    pub bytes: u64,
    pub artifacts: u64,
}

/// Storage accounting, computed from metadata (never by listing the blob store).
#[async_trait]
pub trait Usage: Send + Sync {
    /// Every namespace's usage, with growth since each of `since_ms`.
    async fn namespaces(&self, since_ms: &[i64]) -> Result<Vec<NamespaceUsage>>;
    /// Blobs in the store and their bytes (each once).
    async fn stored(&self) -> Result<(u64, u64)>;
    /// What `namespace` (a repository name's first component) is charged now.
    async fn charge(&self, namespace: &str) -> Result<Charge>;
    /// Whether `digest` is linked into a repository of `namespace` (so it is already charged).
    async fn charged_for(&self, namespace: &str, digest: &Digest) -> Result<bool>;
}

/// Online garbage collection of blobs; see docs/gc.md for why it never deletes a blob in use.
#[async_trait]
pub trait Gc: Send + Sync {
    /// Looks at up to `limit` queue entries due by `now_ms`, in digest order after `after`:
    /// marks the unreferenced ones, drops the referenced ones, and defers those linked or pinned
    /// within `grace_ms`. Returns the last digest looked at, to pass as `after` for the next
    /// batch. (A pass walks the queue in digest order so that a batch's rows are neighbours in
    /// every index it touches: far less I/O than random rows.)
    async fn mark(
        &self,
        now_ms: i64,
        grace_ms: i64,
        after: Option<&Digest>,
        limit: u32,
    ) -> Result<(MarkReport, Option<Digest>)>;
    /// Blobs marked at or before `marked_before_ms`, in digest order after `after`, at most
    /// `limit`.
    async fn marked(
        &self,
        marked_before_ms: i64,
        after: Option<&Digest>,
        limit: u32,
    ) -> Result<Vec<Digest>>;
    /// Atomically re-checks that `digest` is unreferenced, unpinned and not linked since
    /// `now_ms - grace_ms`; if so removes its links and flags it as being deleted, returning its
    /// size. `None`: spared (it was used again) and taken off the queue or unmarked.
    async fn begin_delete(
        &self,
        digest: &Digest,
        now_ms: i64,
        grace_ms: i64,
    ) -> Result<Option<u64>>;
    /// Removes the row of a blob whose bytes are gone. Only rows flagged by `begin_delete`.
    async fn finish_delete(&self, digest: &Digest) -> Result<()>;
    /// `begin_delete` for several blobs; returns those flagged, with their sizes. A backend may
    /// decide them in one transaction (each decision is still the same atomic re-check).
    async fn begin_delete_many(
        &self,
        digests: &[Digest],
        now_ms: i64,
        grace_ms: i64,
    ) -> Result<Vec<(Digest, u64)>> {
        let mut out = Vec::new();
        for d in digests {
            if let Some(size) = self.begin_delete(d, now_ms, grace_ms).await? {
                out.push((d.clone(), size));
            }
        }
        Ok(out)
    }
    /// `finish_delete` for several blobs.
    async fn finish_delete_many(&self, digests: &[Digest]) -> Result<()> {
        for d in digests {
            self.finish_delete(d).await?;
        }
        Ok(())
    }
    /// Blobs flagged as being deleted since before `before_ms` (a collector that stopped midway).
    async fn stalled_deletes(&self, before_ms: i64) -> Result<Vec<Digest>>;
    /// Pins `digest` for an upload about to publish it. `Conflict` if a sweep is deleting it
    /// right now (retry shortly). Pins go when the upload session is deleted.
    async fn pin(&self, digest: &Digest, upload: &UploadId) -> Result<()>;
    /// Marks a use of a blob linked into `repo` (a client looked at it): refreshes the link and
    /// unmarks it, so it is spared for another grace period.
    async fn touch(&self, repo: &RepoName, digest: &Digest) -> Result<()>;
    /// What would be reclaimed at `now_ms`, without changing anything.
    async fn plan(&self, now_ms: i64, grace_ms: i64) -> Result<GcPlan>;
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
    /// Removes the session and any pins it holds. Missing is not an error.
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
    /// Deletes a manifest and every tag pointing at it. Both stay restorable ([`Self::restore`])
    /// until purged ([`Self::purge_deleted`]); until then the manifest's blobs are kept.
    async fn delete(&self, repo: &RepoName, digest: &Digest) -> Result<DeletedManifest>;
    /// Brings back a deleted manifest and the tags deleted with it (those not taken since).
    /// `NotFound` if it is not deleted-but-restorable.
    async fn restore(&self, repo: &RepoName, digest: &Digest) -> Result<Vec<Tag>>;
    /// Brings back the most recently deleted tag of that name (and its manifest, if that was
    /// deleted too). `NotFound` if there is none to restore; `Conflict` if the tag exists.
    async fn restore_tag(&self, repo: &RepoName, tag: &Tag) -> Result<Digest>;
    /// Every live manifest in `repo` with what retention decides on.
    async fn inventory(&self, repo: &RepoName) -> Result<Vec<ManifestInfo>>;
    /// Records pulls: each manifest's last pull time moves forward to the given time.
    async fn record_pulls(&self, pulls: &[(RepoName, Digest, i64)]) -> Result<()>;
    /// Bytes of the blobs that only these manifests reference (what deleting them all frees,
    /// once collected).
    async fn exclusive_bytes(&self, manifests: &[(RepoName, Digest)]) -> Result<u64>;
    /// Restorable deletions in `repo`, newest first.
    async fn deleted(&self, repo: &RepoName) -> Result<Vec<Deleted>>;
    /// Forgets up to `limit` manifests (and all tags) deleted before `before_ms`: they can no
    /// longer be restored, and their blobs are queued for collection. Returns how many manifests.
    async fn purge_deleted(&self, before_ms: i64, limit: u32) -> Result<u64>;
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
    /// Tags in lexical order after `last`, at most `n`; `None` if there is no such repository
    /// (one statement answers both, so a listing is one round trip).
    async fn list(&self, repo: &RepoName, n: u32, last: Option<&str>) -> Result<Option<Vec<Tag>>>;
    /// Tags pointing at a manifest.
    async fn pointing_at(&self, repo: &RepoName, digest: &Digest) -> Result<Vec<Tag>>;
    async fn delete(&self, repo: &RepoName, tag: &Tag) -> Result<()>;
}

trait Backend:
    Repos
    + Blobs
    + Uploads
    + Manifests
    + Tags
    + Gc
    + Usage
    + Integrity
    + Trust
    + Attestations
    + Accounts
    + Grants
    + SigningKeys
    + Audit
    + Promotions
    + Vulns
    + Waivers
    + VulnOps
{
}
impl<T> Backend for T where
    T: Repos
        + Blobs
        + Uploads
        + Manifests
        + Tags
        + Gc
        + Usage
        + Integrity
        + Trust
        + Attestations
        + Accounts
        + Grants
        + SigningKeys
        + Audit
        + Promotions
        + Vulns
        + Waivers
        + VulnOps
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
    pub fn gc(&self) -> &dyn Gc {
        &*self.backend
    }
    pub fn usage(&self) -> &dyn Usage {
        &*self.backend
    }
    pub fn integrity(&self) -> &dyn Integrity {
        &*self.backend
    }
    pub fn trust(&self) -> &dyn Trust {
        &*self.backend
    }
    pub fn attestations(&self) -> &dyn Attestations {
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
    pub fn promotions(&self) -> &dyn Promotions {
        &*self.backend
    }
    pub fn vulns(&self) -> &dyn Vulns {
        &*self.backend
    }
    pub fn waivers(&self) -> &dyn Waivers {
        &*self.backend
    }

    pub fn vuln_ops(&self) -> &dyn VulnOps {
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
