//! in-toto Statement v1 (the attestation framework's envelope-independent layer) and the
//! predicate types bonded writes or reads.

use std::collections::BTreeMap;

use bonded_types::Digest;
use serde::{Deserialize, Serialize};
use serde_json::Value;

pub const STATEMENT_V1: &str = "https://in-toto.io/Statement/v1";

/// Predicate types.
pub mod predicate_types {
    /// bonded's plain signature: "this key vouches for this digest". Predicate: [`super::SignaturePredicate`].
    pub const SIGNATURE: &str = "https://bonded.dev/signature/v1";
    /// SLSA Provenance v1.
    pub const SLSA_PROVENANCE_V1: &str = "https://slsa.dev/provenance/v1";
    /// The in-toto attestation framework's SBOM predicate types.
    pub const CYCLONEDX: &str = "https://cyclonedx.org/bom";
    pub const SPDX: &str = "https://spdx.dev/Document";
}

/// A ResourceDescriptor as used in `subject`: a name and a digest set.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Subject {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    pub digest: BTreeMap<String, String>,
}

impl Subject {
    pub fn of(name: &str, digest: &Digest) -> Subject {
        let mut d = BTreeMap::new();
        d.insert(
            digest.algorithm().as_str().to_string(),
            digest.hex().to_string(),
        );
        Subject {
            name: name.to_string(),
            digest: d,
        }
    }

    /// True when this subject names `digest` (same algorithm, same hex, case-insensitive).
    pub fn names(&self, digest: &Digest) -> bool {
        self.digest
            .get(digest.algorithm().as_str())
            .is_some_and(|h| h.eq_ignore_ascii_case(digest.hex()))
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Statement {
    #[serde(rename = "_type")]
    pub type_: String,
    pub subject: Vec<Subject>,
    pub predicate_type: String,
    #[serde(default)]
    pub predicate: Value,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not an in-toto Statement v1: {0}")]
pub struct StatementError(pub String);

impl Statement {
    pub fn new(subject: Subject, predicate_type: &str, predicate: Value) -> Statement {
        Statement {
            type_: STATEMENT_V1.to_string(),
            subject: vec![subject],
            predicate_type: predicate_type.to_string(),
            predicate,
        }
    }

    pub fn parse(bytes: &[u8]) -> Result<Statement, StatementError> {
        let s: Statement =
            serde_json::from_slice(bytes).map_err(|e| StatementError(e.to_string()))?;
        if s.type_ != STATEMENT_V1 {
            return Err(StatementError(format!(
                "_type is {:?}, expected {STATEMENT_V1:?}",
                s.type_
            )));
        }
        if s.subject.is_empty() {
            return Err(StatementError("subject is empty".into()));
        }
        if s.subject.iter().any(|x| x.digest.is_empty()) {
            return Err(StatementError("a subject has an empty digest set".into()));
        }
        if s.predicate_type.is_empty() {
            return Err(StatementError("predicateType is empty".into()));
        }
        Ok(s)
    }

    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }

    pub fn names(&self, digest: &Digest) -> bool {
        self.subject.iter().any(|s| s.names(digest))
    }
}

/// The predicate of a bonded signature: what the signer says it signed, and when (by its clock;
/// trust decisions use the registry's push time instead, see `verify`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SignaturePredicate {
    /// `host/repository[:tag]` as the signer named it.
    pub reference: String,
    /// RFC 3339.
    pub signed_at: String,
    /// Free-form signer identity (e.g. user@host), informative only.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub signer: String,
}
