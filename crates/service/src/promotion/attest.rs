//! The promotion attestation: an in-toto Statement whose predicate is a SLSA Verification
//! Summary (VSA v1) of the gates a move passed, signed in a DSSE envelope with the registry's own
//! key and attached to the artifact as a referrer. Anyone holding the registry's public key
//! (`GET /api/v1/promotion/key`) can verify it with public in-toto tooling.

use bonded_meta::PointerRecord;
use bonded_supply::dsse::{Envelope, IN_TOTO_PAYLOAD_TYPE};
use bonded_supply::keys::{Algorithm, PublicKey, SigningKey};
use bonded_supply::media;
use bonded_supply::statement::{Statement, Subject};
use bonded_types::{media_types, Digest, Reference};
use bytes::Bytes;
use serde_json::json;

use super::GateVerdict;
use crate::{Error, Registry, Result};

/// Referrer `artifactType` of promotion attestations.
pub const PROMOTION_ARTIFACT: &str = "application/vnd.bonded.promotion.v1+json";
/// SLSA Verification Summary Attestation v1.
pub const VSA_PREDICATE: &str = "https://slsa.dev/verification_summary/v1";
const KEY_PURPOSE: &str = "promotion-attestation";

impl Registry {
    /// The registry's attestation key, created on first use and shared by every node.
    pub async fn attestation_key(&self) -> Result<std::sync::Arc<SigningKey>> {
        if let Some(k) = self.attest_key.lock().expect("key lock").as_ref() {
            return Ok(k.clone());
        }
        let fresh = SigningKey::generate(Algorithm::Ed25519);
        let pem = fresh
            .to_pem()
            .map_err(|e| Error::Internal(format!("encoding a new key: {e}")))?;
        let (_, stored) = self
            .meta
            .promotions()
            .registry_key(KEY_PURPOSE, (&fresh.public().key_id(), &pem))
            .await?;
        let key = std::sync::Arc::new(SigningKey::from_pem(&stored).map_err(|e| {
            Error::Internal(format!("the stored attestation key is unreadable: {e}"))
        })?);
        *self.attest_key.lock().expect("key lock") = Some(key.clone());
        Ok(key)
    }

    /// The public half of [`Registry::attestation_key`].
    pub async fn attestation_public_key(&self) -> Result<PublicKey> {
        Ok(self.attestation_key().await?.public())
    }

    /// Signs and stores the attestation of one recorded move; returns the referrer's digest.
    pub(super) async fn attach_promotion_attestation(
        &self,
        record: &PointerRecord,
        gates: &[GateVerdict],
    ) -> Result<Digest> {
        let repo = &record.repo;
        let at = bonded_supply::time::rfc3339(record.at_ms);
        let predicate = json!({
            "verifier": { "id": "https://bonded.dev/registry" },
            "timeVerified": at,
            "resourceUri": format!("oci://{repo}@{}", record.digest),
            "policy": { "uri": format!("bonded:promotion/{repo}/{}", record.environment) },
            "inputAttestations": [],
            "verificationResult": "PASSED",
            "verifiedLevels": [format!("BONDED_ENVIRONMENT_{}", record.environment.to_uppercase())],
            "slsaVersion": "1.0",
            // Extensions: what moved, who moved it, and every gate's verdict.
            "promotion": {
                "action": record.kind.as_str(),
                "environment": record.environment,
                "from": record.from_env,
                "previousDigest": record.previous.as_ref().map(|d| d.to_string()),
                "actor": record.actor,
                "note": record.note,
                "historyId": record.id,
                "gates": gates,
            },
        });
        let statement = Statement::new(
            Subject::of(repo.as_str(), &record.digest),
            VSA_PREDICATE,
            predicate,
        );
        self.attach_signed_statement(repo, &record.digest, PROMOTION_ARTIFACT, &statement, &at)
            .await
    }

    /// Signs `statement` with the registry key into a DSSE envelope and stores it as a referrer
    /// of `subject` with `artifact_type` (blob and manifest through the ordinary upload and
    /// manifest paths); returns the referrer's digest. Promotion attestations and vulnerability
    /// reports (`vuln_ops`) are attached this way.
    pub(crate) async fn attach_signed_statement(
        &self,
        repo: &bonded_types::RepoName,
        subject: &Digest,
        artifact_type: &str,
        statement: &Statement,
        created: &str,
    ) -> Result<Digest> {
        let subject_manifest = self
            .meta
            .manifests()
            .get(repo, subject)
            .await?
            .ok_or(Error::NotFound(crate::Missing::Manifest))?;
        let key = self.attestation_key().await?;
        let envelope = Envelope::sign(IN_TOTO_PAYLOAD_TYPE, &statement.to_json(), &key).to_json();
        let layer = self.store_small_blob(repo, envelope.clone()).await?;
        let empty = self.store_small_blob(repo, b"{}".to_vec()).await?;
        let manifest = media::referrer_manifest(&media::ReferrerParts {
            artifact_type,
            empty_config: &empty,
            envelope: &layer,
            envelope_size: envelope.len() as u64,
            predicate_type: &statement.predicate_type,
            subject_media_type: subject_manifest.media_type.as_str(),
            subject,
            subject_size: subject_manifest.content.len() as u64,
            key_id: &key.public().key_id(),
            created,
        });
        let bytes = serde_json::to_vec(&manifest)
            .map_err(|e| Error::Internal(format!("encoding a manifest: {e}")))?;
        let digest = Digest::of(bonded_types::Algorithm::Sha256, &bytes);
        self.manifest_put(
            repo,
            &Reference::Digest(digest.clone()),
            Some(media_types::OCI_MANIFEST),
            Bytes::from(bytes),
        )
        .await?;
        Ok(digest)
    }

    async fn store_small_blob(
        &self,
        repo: &bonded_types::RepoName,
        bytes: Vec<u8>,
    ) -> Result<Digest> {
        let digest = Digest::of(bonded_types::Algorithm::Sha256, &bytes);
        self.import_blob(repo, &digest, || async move {
            let stream: crate::ByteStream = Box::pin(futures::stream::once(async move {
                Ok::<_, std::io::Error>(Bytes::from(bytes))
            }));
            Ok(stream)
        })
        .await?;
        Ok(digest)
    }
}
