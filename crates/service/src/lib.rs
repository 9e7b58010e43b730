//! The registry's rules, independent of any protocol.
//!
//! Owns: how an upload becomes a verified blob, what makes a manifest acceptable, tag immutability,
//! listing and referrers, when an unused blob may be deleted (garbage collection, undelete,
//! retention), namespace quotas (`quota`), integrity scrubbing and quarantine (`scrub`),
//! supply-chain trust and policy ([`supply`]), vulnerability scanning ([`vulns`]), waivers
//! ([`waivers`]), the vulnerability requirement ([`vuln_policy`]) and VEX export ([`vex`]). Called by
//! the HTTP edge (and tests) with parsed types from `bonded-types`; calls the [`BlobStore`] and
//! [`MetaStore`] ports. Never
//! imports axum or any HTTP type: errors are decisions ([`Error`]) that the edge maps to a
//! protocol.
//!
//! Invariant: a blob becomes visible in a repository only after its bytes were hashed and matched
//! the digest the client claimed; a manifest only after everything it references is visible.

pub mod audit;
pub mod auth;
mod blobs;
mod error;
mod gc;
mod hashing;
mod listing;
mod manifests;
mod migration;
pub mod promotion;
mod quota;
mod retention;
mod rules;
mod scrub;
pub mod supply;
mod trash;
mod uploads;
pub mod vex;
pub mod vuln_ops;
pub mod vuln_policy;
pub mod vulns;
pub mod waivers;

use std::sync::Arc;

pub use blobs::BlobBody;
pub use bonded_meta::MetaStore;
pub use bonded_meta::{Deleted, GcPlan, MarkReport, NamespaceUsage, QuarantinedBlob};
pub use bonded_storage::{BlobStore, ByteStream, S3Options};
pub use error::{Error, Invalid, Missing, Result};
pub use gc::{GcPolicy, GcReport, StorageReport};
pub use listing::Page;
pub use manifests::{ManifestBody, PutManifest};
pub use migration::{BlobImport, RepoInventory};
pub use quota::{QuotaRule, Quotas};
pub use retention::{PlannedDeletion, Retention, RetentionPlan, RetentionRule};
pub use rules::{ImmutableTagRule, Rules, RulesError};
pub use scrub::{ScrubFinding, ScrubOptions, ScrubProblem, ScrubReport};
pub use trash::Restored;
pub use uploads::{MountOutcome, UploadState};

/// Milliseconds since the Unix epoch.
pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Limits the service enforces.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Largest manifest accepted (the spec's suggested floor is 4 MiB).
    pub max_manifest_bytes: usize,
    /// Smallest chunk size we ask clients to send (`OCI-Chunk-Min-Length`).
    pub chunk_min_bytes: u64,
    /// When set, whole-blob downloads are redirected to presigned URLs valid this long (object
    /// storage only).
    pub redirect_downloads: Option<std::time::Duration>,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_manifest_bytes: 4 << 20,
            chunk_min_bytes: 0,
            redirect_downloads: None,
        }
    }
}

/// The registry service. Cheap to clone; every clone shares state.
#[derive(Clone)]
pub struct Registry {
    blobs: BlobStore,
    meta: MetaStore,
    rules: Arc<Rules>,
    limits: Limits,
    uploads: uploads::Tracker,
    /// Manifest pulls not yet written to the metadata store (for retention's "pulled within").
    pulls: Arc<std::sync::Mutex<PullLog>>,
    /// The registry's promotion-attestation key, once loaded (see `promotion::attest`).
    attest_key: Arc<std::sync::Mutex<Option<Arc<bonded_supply::keys::SigningKey>>>>,
    /// The vulnerability index of the database generation it was built from (`vulns`).
    vuln_index: vulns::IndexCache,
    /// Namespaces' quota usage as last read, so pushes far from a quota cost no query (`quota`).
    charges: Arc<quota::ChargeCache>,
    /// Where scan outcomes and new findings are reported (`vuln_ops`).
    vuln_notifier: Arc<dyn vuln_ops::VulnNotifier>,
}

type PullLog = std::collections::HashMap<(bonded_types::RepoName, bonded_types::Digest), i64>;

impl Registry {
    pub fn new(blobs: BlobStore, meta: MetaStore, rules: Rules, limits: Limits) -> Registry {
        Registry {
            blobs,
            meta,
            rules: Arc::new(rules),
            limits,
            uploads: uploads::Tracker::default(),
            pulls: Arc::default(),
            attest_key: Arc::default(),
            vuln_index: Arc::default(),
            charges: Arc::default(),
            vuln_notifier: Arc::new(vuln_ops::LogNotifier),
        }
    }

    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Notes a manifest pull; written out by [`Registry::flush_pulls`].
    pub(crate) fn note_pull(&self, repo: &bonded_types::RepoName, digest: &bonded_types::Digest) {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as i64)
            .unwrap_or(0);
        let mut log = self.pulls.lock().expect("pull log lock poisoned");
        log.insert((repo.clone(), digest.clone()), now);
    }

    /// Writes the pulls noted since the last flush (one transaction). The server calls it
    /// every minute, and retention before planning.
    pub async fn flush_pulls(&self) -> Result<()> {
        let pulls: Vec<_> = {
            let mut log = self.pulls.lock().expect("pull log lock poisoned");
            std::mem::take(&mut *log)
                .into_iter()
                .map(|((r, d), t)| (r, d, t))
                .collect()
        };
        if !pulls.is_empty() {
            self.meta.manifests().record_pulls(&pulls).await?;
        }
        Ok(())
    }

    /// Checks that both stores answer (for readiness probes).
    /// One cheap call per store: probes arrive every few seconds, so this must not grow with the
    /// registry (listing uploads did, on S3 a full prefix listing per probe).
    pub async fn ready(&self) -> Result<()> {
        self.meta.repos().list(1, None).await?;
        let probe = bonded_types::Digest::of(bonded_types::Algorithm::Sha256, b"");
        self.blobs.blob_size(&probe).await?;
        Ok(())
    }
}
