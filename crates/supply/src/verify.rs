//! Deciding whether one stored envelope counts: the one verification routine the registry's
//! policy and `bonded verify` share.
//!
//! An envelope counts for `subject` when it parses, carries an in-toto Statement v1 of the
//! expected kind whose subject names `subject`, and bears a signature that verifies under a trusted
//! key that is not revoked and whose validity window contains the time the registry received the
//! envelope (`pushed_at_ms`). The signer's own timestamp is never trusted: a holder of an expired
//! or stolen key could write any date into the statement, but not into the registry's records.

use std::fmt;

use bonded_types::Digest;

use crate::dsse::{signature_bytes, Envelope, IN_TOTO_PAYLOAD_TYPE};
use crate::keys::{Algorithm, PublicKey};
use crate::media::Kind;
use crate::statement::Statement;
use crate::time::rfc3339;

/// A public key the registry trusts for a namespace, as the trust store holds it.
#[derive(Debug, Clone, PartialEq)]
pub struct TrustedKey {
    pub key_id: String,
    pub key_set: String,
    pub public: PublicKey,
    /// Unix ms; unset means "since forever".
    pub not_before_ms: Option<i64>,
    /// Unix ms, exclusive; unset means "no end".
    pub not_after_ms: Option<i64>,
    pub revoked_at_ms: Option<i64>,
}

impl TrustedKey {
    fn window_error(&self, at_ms: i64) -> Option<Rejection> {
        if let Some(r) = self.revoked_at_ms {
            return Some(Rejection::Revoked {
                key_id: self.key_id.clone(),
                at_ms: r,
            });
        }
        if self.not_before_ms.is_some_and(|nb| at_ms < nb) {
            return Some(Rejection::OutsideWindow {
                key_id: self.key_id.clone(),
                pushed_at_ms: at_ms,
                window: self.window(),
            });
        }
        if self.not_after_ms.is_some_and(|na| at_ms >= na) {
            return Some(Rejection::OutsideWindow {
                key_id: self.key_id.clone(),
                pushed_at_ms: at_ms,
                window: self.window(),
            });
        }
        None
    }

    pub fn window(&self) -> String {
        let t = |v: Option<i64>, open: &str| v.map(rfc3339).unwrap_or_else(|| open.to_string());
        format!(
            "{} .. {}",
            t(self.not_before_ms, "-inf"),
            t(self.not_after_ms, "+inf")
        )
    }
}

/// An envelope that counts.
#[derive(Debug, Clone, PartialEq)]
pub struct Verified {
    pub kind: Kind,
    pub key_id: String,
    /// Every key set holding the key (a key may be in several), each valid at `pushed_at_ms`.
    pub key_sets: Vec<String>,
    pub algorithm: Algorithm,
    pub statement: Statement,
    pub pushed_at_ms: i64,
}

/// Why an envelope does not count. Every variant reads as a complete sentence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rejection {
    Malformed(String),
    PayloadType(String),
    WrongPredicate {
        kind: Kind,
        predicate_type: String,
    },
    SubjectMismatch {
        subject: String,
        named: Vec<String>,
    },
    Unsigned,
    UnknownKey(Vec<String>),
    BadSignature(String),
    Revoked {
        key_id: String,
        at_ms: i64,
    },
    OutsideWindow {
        key_id: String,
        pushed_at_ms: i64,
        window: String,
    },
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Rejection::Malformed(m) => write!(f, "malformed attestation: {m}"),
            Rejection::PayloadType(t) => write!(
                f,
                "envelope payloadType is {t:?}, expected {IN_TOTO_PAYLOAD_TYPE:?}"
            ),
            Rejection::WrongPredicate {
                kind,
                predicate_type,
            } => write!(
                f,
                "a {} attestation cannot carry predicate type {predicate_type:?}",
                kind.as_str()
            ),
            Rejection::SubjectMismatch { subject, named } => write!(
                f,
                "the statement is about {}, not {subject}",
                if named.is_empty() {
                    "nothing".to_string()
                } else {
                    named.join(", ")
                }
            ),
            Rejection::Unsigned => write!(f, "the envelope has no signatures"),
            Rejection::UnknownKey(ids) => {
                write!(f, "signed by unknown key(s) {}", ids.join(", "))
            }
            Rejection::BadSignature(id) => {
                write!(f, "the signature by key {id} does not verify")
            }
            Rejection::Revoked { key_id, at_ms } => {
                write!(f, "key {key_id} was revoked at {}", rfc3339(*at_ms))
            }
            Rejection::OutsideWindow {
                key_id,
                pushed_at_ms,
                window,
            } => write!(
                f,
                "key {key_id} was not valid when the registry received the signature ({}; valid {window})",
                rfc3339(*pushed_at_ms)
            ),
        }
    }
}

/// Parses an envelope and its statement, checking kind and subject but no signature.
pub fn open(
    envelope: &[u8],
    kind: Kind,
    subject: &Digest,
) -> Result<(Envelope, Statement), Rejection> {
    let env = Envelope::parse(envelope).map_err(|e| Rejection::Malformed(e.to_string()))?;
    if env.payload_type != IN_TOTO_PAYLOAD_TYPE {
        return Err(Rejection::PayloadType(env.payload_type));
    }
    let payload = env
        .payload_bytes()
        .map_err(|e| Rejection::Malformed(e.to_string()))?;
    let st = Statement::parse(&payload).map_err(|e| Rejection::Malformed(e.to_string()))?;
    if !kind.accepts_predicate(&st.predicate_type) {
        return Err(Rejection::WrongPredicate {
            kind,
            predicate_type: st.predicate_type,
        });
    }
    if !st.names(subject) {
        return Err(Rejection::SubjectMismatch {
            subject: subject.to_string(),
            named: st
                .subject
                .iter()
                .flat_map(|s| s.digest.iter().map(|(a, h)| format!("{a}:{h}")))
                .collect(),
        });
    }
    Ok((env, st))
}

/// Whether `envelope` counts as a `kind` attestation of `subject` under `keys`.
pub fn verify(
    envelope: &[u8],
    kind: Kind,
    subject: &Digest,
    keys: &[TrustedKey],
    pushed_at_ms: i64,
) -> Result<Verified, Rejection> {
    let (env, statement) = open(envelope, kind, subject)?;
    if env.signatures.is_empty() {
        return Err(Rejection::Unsigned);
    }
    let signed = env
        .signed_bytes()
        .map_err(|e| Rejection::Malformed(e.to_string()))?;
    // The most informative failure wins if nothing verifies: a bad signature or a revoked key
    // says more than "unknown key".
    let mut failure: Option<Rejection> = None;
    let mut unknown = Vec::new();
    for sig in &env.signatures {
        let candidates: Vec<&TrustedKey> = keys.iter().filter(|k| k.key_id == sig.keyid).collect();
        if candidates.is_empty() {
            unknown.push(if sig.keyid.is_empty() {
                "(no keyid)".to_string()
            } else {
                sig.keyid.clone()
            });
            continue;
        }
        let bytes = match signature_bytes(sig) {
            Ok(b) => b,
            Err(e) => {
                failure = Some(Rejection::Malformed(e.to_string()));
                continue;
            }
        };
        let mut valid: Vec<&TrustedKey> = Vec::new();
        for key in candidates {
            // The key id is the signer's claim; the public key decides.
            if !key.public.verify(&signed, &bytes) {
                failure = Some(Rejection::BadSignature(key.key_id.clone()));
                continue;
            }
            if let Some(why) = key.window_error(pushed_at_ms) {
                failure = Some(why);
                continue;
            }
            valid.push(key);
        }
        if let Some(first) = valid.first() {
            return Ok(Verified {
                kind,
                key_id: first.key_id.clone(),
                key_sets: valid.iter().map(|k| k.key_set.clone()).collect(),
                algorithm: first.public.algorithm(),
                statement,
                pushed_at_ms,
            });
        }
    }
    Err(failure.unwrap_or(Rejection::UnknownKey(unknown)))
}
