//! The supply-chain aggregates: the trust store ([`Trust`]) and the attestations stored as
//! referrers ([`Attestations`]). Keys arrive already parsed and checked by the service; this layer
//! stores strings and decides nothing about what a signature is worth.

use async_trait::async_trait;
use bonded_types::{Digest, RepoName};

use crate::Result;

/// A key to add to a namespace's key set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewTrustedKey {
    pub namespace: String,
    pub key_set: String,
    pub key_id: String,
    pub algorithm: String,
    /// SPKI PEM.
    pub public_key: String,
    pub not_before_ms: Option<i64>,
    pub not_after_ms: Option<i64>,
    pub comment: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrustedKeyRecord {
    pub key: NewTrustedKey,
    pub revoked_at_ms: Option<i64>,
    pub created_at_ms: i64,
}

/// A referrer manifest with its content and the time this registry first stored it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredReferrer {
    pub digest: Digest,
    pub artifact_type: Option<String>,
    pub content: Vec<u8>,
    pub pushed_at_ms: i64,
}

#[async_trait]
pub trait Trust: Send + Sync {
    /// Adds a key to a key set. `AlreadyExists`-style `Conflict` if that set already holds it.
    async fn add_key(&self, key: &NewTrustedKey) -> Result<()>;
    /// Every key of a namespace (revoked ones included), by key set then key id.
    async fn keys(&self, namespace: &str) -> Result<Vec<TrustedKeyRecord>>;
    /// Revokes a key in every set of the namespace; returns how many entries it was in
    /// (`NotFound` if none). A key already revoked keeps its first revocation time.
    async fn revoke(&self, namespace: &str, key_id: &str, at_ms: i64) -> Result<u64>;
    /// Namespaces holding at least one key, in order.
    async fn namespaces(&self) -> Result<Vec<String>>;
}

#[async_trait]
pub trait Attestations: Send + Sync {
    /// Manifests in `repo` whose subject is `subject` and whose artifact type is one of
    /// `artifact_types`, oldest first, with content and push time. One query.
    async fn referrer_manifests(
        &self,
        repo: &RepoName,
        subject: &Digest,
        artifact_types: &[&str],
    ) -> Result<Vec<StoredReferrer>>;
    /// Manifests of `repo` that are not referrers (the artifacts attestations are about).
    async fn subjects(&self, repo: &RepoName) -> Result<Vec<Digest>>;
}
