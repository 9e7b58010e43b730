//! How attestations are stored in an OCI registry: one referrer manifest per envelope.
//!
//! The referrer is an OCI image manifest with `subject` = the attested manifest, an
//! `artifactType` saying which kind of attestation it is, the empty config, and exactly one layer
//! of media type [`DSSE_ENVELOPE`] holding the envelope. See docs/supply-chain.md.

use crate::statement::predicate_types;

/// The layer holding a DSSE envelope (the media type the in-toto and ORAS communities use).
pub const DSSE_ENVELOPE: &str = "application/vnd.dsse.envelope.v1+json";
/// Referrer `artifactType`s.
pub const SIGNATURE_ARTIFACT: &str = "application/vnd.bonded.signature.v1+json";
pub const PROVENANCE_ARTIFACT: &str = "application/vnd.bonded.provenance.v1+json";
pub const SBOM_ARTIFACT: &str = "application/vnd.bonded.sbom.v1+json";
/// Layer annotation naming the statement's predicate type.
pub const PREDICATE_TYPE_ANNOTATION: &str = "in-toto.io/predicate-type";
/// Manifest annotation naming the signing key's id (informative; trust comes from the envelope).
pub const KEY_ID_ANNOTATION: &str = "dev.bonded.key-id";

/// The kinds of attestation bonded understands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    Signature,
    Provenance,
    Sbom,
}

impl Kind {
    pub const ALL: [Kind; 3] = [Kind::Signature, Kind::Provenance, Kind::Sbom];

    pub fn artifact_type(self) -> &'static str {
        match self {
            Kind::Signature => SIGNATURE_ARTIFACT,
            Kind::Provenance => PROVENANCE_ARTIFACT,
            Kind::Sbom => SBOM_ARTIFACT,
        }
    }

    pub fn from_artifact_type(s: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.artifact_type() == s)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Signature => "signature",
            Kind::Provenance => "provenance",
            Kind::Sbom => "sbom",
        }
    }

    /// Whether a statement of `predicate_type` may be stored as this kind.
    pub fn accepts_predicate(self, predicate_type: &str) -> bool {
        match self {
            Kind::Signature => predicate_type == predicate_types::SIGNATURE,
            Kind::Provenance => predicate_type == predicate_types::SLSA_PROVENANCE_V1,
            Kind::Sbom => matches!(
                predicate_type,
                predicate_types::CYCLONEDX | predicate_types::SPDX
            ),
        }
    }
}

/// What goes into an attestation's referrer manifest.
#[derive(Debug, Clone, Copy)]
pub struct ReferrerParts<'a> {
    pub artifact_type: &'a str,
    /// Digest of the empty config `{}` (2 bytes).
    pub empty_config: &'a bonded_types::Digest,
    pub envelope: &'a bonded_types::Digest,
    pub envelope_size: u64,
    pub predicate_type: &'a str,
    pub subject_media_type: &'a str,
    pub subject: &'a bonded_types::Digest,
    pub subject_size: u64,
    pub key_id: &'a str,
    /// RFC 3339.
    pub created: &'a str,
}

/// The referrer manifest carrying one envelope, laid out as this module's header says. Shared by
/// the CLI (signatures and attestations) and the server (promotion attestations).
pub fn referrer_manifest(p: &ReferrerParts<'_>) -> serde_json::Value {
    use bonded_types::media_types;
    serde_json::json!({
        "schemaVersion": 2,
        "mediaType": media_types::OCI_MANIFEST,
        "artifactType": p.artifact_type,
        "config": { "mediaType": media_types::OCI_EMPTY, "digest": p.empty_config.to_string(), "size": 2 },
        "layers": [{
            "mediaType": DSSE_ENVELOPE,
            "digest": p.envelope.to_string(),
            "size": p.envelope_size,
            "annotations": { PREDICATE_TYPE_ANNOTATION: p.predicate_type },
        }],
        "subject": {
            "mediaType": p.subject_media_type,
            "digest": p.subject.to_string(),
            "size": p.subject_size,
        },
        "annotations": {
            KEY_ID_ANNOTATION: p.key_id,
            "org.opencontainers.image.created": p.created,
        },
    })
}
