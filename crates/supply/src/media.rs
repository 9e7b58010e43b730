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
