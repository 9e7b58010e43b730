//! The supply chain, as the registry enforces it: the per-namespace trust store, verification of
//! stored attestations (DSSE envelopes carried by referrer manifests) and policy.
//!
//! Owns: which public keys a namespace trusts and when ([`Registry::trust_add`] and friends),
//! whether an artifact's signatures, provenance and SBOMs count ([`Registry::supply_overview`]),
//! and refusing pulls and pushes that a policy forbids (called from `manifests.rs`). The crypto
//! and formats are `bonded-supply`'s; the stores are reached through their ports.
//!
//! Invariant: an attestation counts only after its envelope bytes hashed to the digest its
//! referrer names, its statement names the subject, and its signature verified under a key that
//! was valid when the registry stored the referrer and is not revoked. Requests no policy covers
//! run no supply-chain query at all.

mod coverage;
mod evaluate;
pub mod policy;

use bonded_meta::NewTrustedKey;
use bonded_supply::keys::PublicKey;
use bonded_types::RepoName;

pub use bonded_meta::TrustedKeyRecord;
pub use coverage::Coverage;
pub(crate) use evaluate::requirements;
pub use evaluate::{Finding, Overview, Requirement, Verdict};
pub use policy::{
    Policies, PolicyConfig, PolicyError, PolicyEvent, PolicyMode, RequireProvenance,
    RequireSignature,
};

use crate::{Error, Invalid, Missing, Registry, Result};

/// The trust-store namespace of a repository: its first path component.
pub fn namespace(repo: &RepoName) -> &str {
    repo.components().next().unwrap_or(repo.as_str())
}

fn check_namespace(ns: &str) -> Result<()> {
    match ns.parse::<RepoName>() {
        Ok(r) if !ns.contains('/') && r.as_str() == ns => Ok(()),
        _ => Err(Error::Invalid(Invalid::Name(format!(
            "{ns:?} is not a namespace (the first component of a repository name, e.g. \"prod\")"
        )))),
    }
}

/// A key to trust.
#[derive(Debug, Clone)]
pub struct AddKey {
    pub key_set: String,
    /// SPKI PEM (`-----BEGIN PUBLIC KEY-----`).
    pub public_key: String,
    pub not_before_ms: Option<i64>,
    pub not_after_ms: Option<i64>,
    pub comment: String,
}

impl Registry {
    /// Adds a public key to a key set of a namespace.
    pub async fn trust_add(&self, ns: &str, add: AddKey) -> Result<TrustedKeyRecord> {
        check_namespace(ns)?;
        if !policy::valid_key_set(&add.key_set) {
            return Err(Error::Invalid(Invalid::Key(format!(
                "key set {:?} must be 1-64 of [a-z0-9._-]",
                add.key_set
            ))));
        }
        let public = PublicKey::from_pem(&add.public_key)
            .map_err(|e| Error::Invalid(Invalid::Key(e.to_string())))?;
        if let (Some(a), Some(b)) = (add.not_before_ms, add.not_after_ms) {
            if a >= b {
                return Err(Error::Invalid(Invalid::Key(
                    "not_before must be earlier than not_after".into(),
                )));
            }
        }
        if add.comment.len() > 1024 {
            return Err(Error::Invalid(Invalid::Key(
                "comment is longer than 1024 bytes".into(),
            )));
        }
        let key = NewTrustedKey {
            namespace: ns.to_string(),
            key_set: add.key_set,
            key_id: public.key_id(),
            algorithm: public.algorithm().as_str().to_string(),
            // Stored re-encoded: one canonical PEM per key.
            public_key: public.to_pem(),
            not_before_ms: add.not_before_ms,
            not_after_ms: add.not_after_ms,
            comment: add.comment,
        };
        self.meta.trust().add_key(&key).await.map_err(|e| match e {
            bonded_meta::MetaError::Conflict(m) => Error::Conflict(m),
            other => other.into(),
        })?;
        self.meta
            .trust()
            .keys(ns)
            .await?
            .into_iter()
            .find(|k| k.key.key_set == key.key_set && k.key.key_id == key.key_id)
            .ok_or_else(|| {
                Error::Internal("a trusted key vanished right after it was added".into())
            })
    }

    pub async fn trust_list(&self, ns: &str) -> Result<Vec<TrustedKeyRecord>> {
        check_namespace(ns)?;
        Ok(self.meta.trust().keys(ns).await?)
    }

    /// Revokes a key in every key set of the namespace; returns its entries as they are now.
    pub async fn trust_revoke(&self, ns: &str, key_id: &str) -> Result<Vec<TrustedKeyRecord>> {
        check_namespace(ns)?;
        let now = bonded_supply::time::now_ms();
        self.meta
            .trust()
            .revoke(ns, key_id, now)
            .await
            .map_err(|e| match e {
                bonded_meta::MetaError::NotFound => Error::NotFound(Missing::TrustedKey),
                other => other.into(),
            })?;
        Ok(self
            .meta
            .trust()
            .keys(ns)
            .await?
            .into_iter()
            .filter(|k| k.key.key_id == key_id)
            .collect())
    }

    /// Every namespace's keys, for `bonded migrate`.
    pub async fn trust_export(&self) -> Result<Vec<TrustedKeyRecord>> {
        let mut out = Vec::new();
        for ns in self.meta.trust().namespaces().await? {
            out.extend(self.meta.trust().keys(&ns).await?);
        }
        Ok(out)
    }

    /// Brings a key (with its window and revocation) into this registry unless its key set
    /// already holds it; a revocation is applied either way. Returns whether it was added.
    pub async fn trust_import(&self, k: &TrustedKeyRecord) -> Result<bool> {
        let added = match self.meta.trust().add_key(&k.key).await {
            Ok(()) => true,
            Err(bonded_meta::MetaError::Conflict(_)) => false,
            Err(e) => return Err(e.into()),
        };
        if let Some(at) = k.revoked_at_ms {
            self.meta
                .trust()
                .revoke(&k.key.namespace, &k.key.key_id, at)
                .await?;
        }
        Ok(added)
    }
}
