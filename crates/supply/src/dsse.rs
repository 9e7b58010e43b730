//! DSSE envelopes (Dead Simple Signing Envelope, v1.0.x): the signature is over
//! `PAE(payloadType, payload)`, never over the JSON, so nothing needs canonicalising.
//!
//! `PAE(type, body) = "DSSEv1" SP LEN(type) SP type SP LEN(body) SP body`, where `LEN` is the
//! byte length as ASCII decimal without leading zeros. `payload` and `sig` are standard base64.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use serde::{Deserialize, Serialize};

use crate::keys::SigningKey;

/// The payload type of an in-toto statement.
pub const IN_TOTO_PAYLOAD_TYPE: &str = "application/vnd.in-toto+json";

/// Pre-Authentication Encoding.
pub fn pae(payload_type: &str, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(payload_type.len() + payload.len() + 32);
    out.extend_from_slice(b"DSSEv1 ");
    out.extend_from_slice(payload_type.len().to_string().as_bytes());
    out.push(b' ');
    out.extend_from_slice(payload_type.as_bytes());
    out.push(b' ');
    out.extend_from_slice(payload.len().to_string().as_bytes());
    out.push(b' ');
    out.extend_from_slice(payload);
    out
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Signature {
    /// Optional in DSSE; bonded always writes it and needs it to pick the key.
    #[serde(default)]
    pub keyid: String,
    /// Base64 signature over the PAE.
    pub sig: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Envelope {
    /// Base64 of the payload bytes.
    pub payload: String,
    pub payload_type: String,
    pub signatures: Vec<Signature>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed DSSE envelope: {0}")]
pub struct EnvelopeError(pub String);

impl Envelope {
    /// Signs `payload` with one key.
    pub fn sign(payload_type: &str, payload: &[u8], key: &SigningKey) -> Envelope {
        let sig = key.sign(&pae(payload_type, payload));
        Envelope {
            payload: STANDARD.encode(payload),
            payload_type: payload_type.to_string(),
            signatures: vec![Signature {
                keyid: key.public().key_id(),
                sig: STANDARD.encode(sig),
            }],
        }
    }

    pub fn parse(bytes: &[u8]) -> Result<Envelope, EnvelopeError> {
        let env: Envelope =
            serde_json::from_slice(bytes).map_err(|e| EnvelopeError(e.to_string()))?;
        if env.payload_type.is_empty() {
            return Err(EnvelopeError("payloadType is empty".into()));
        }
        Ok(env)
    }

    pub fn to_json(&self) -> Vec<u8> {
        // Serialising plain strings cannot fail.
        serde_json::to_vec(self).unwrap_or_default()
    }

    pub fn payload_bytes(&self) -> Result<Vec<u8>, EnvelopeError> {
        STANDARD
            .decode(&self.payload)
            .map_err(|e| EnvelopeError(format!("payload is not base64: {e}")))
    }

    /// The bytes a signature covers.
    pub fn signed_bytes(&self) -> Result<Vec<u8>, EnvelopeError> {
        Ok(pae(&self.payload_type, &self.payload_bytes()?))
    }
}

/// Decodes a signature's `sig`.
pub fn signature_bytes(sig: &Signature) -> Result<Vec<u8>, EnvelopeError> {
    STANDARD
        .decode(&sig.sig)
        .map_err(|e| EnvelopeError(format!("signature of {:?} is not base64: {e}", sig.keyid)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::Algorithm;

    #[test]
    fn pae_matches_the_spec_example() {
        // From the DSSE protocol document.
        assert_eq!(
            pae("http://example.com/HelloWorld", b"hello world"),
            b"DSSEv1 29 http://example.com/HelloWorld 11 hello world".to_vec()
        );
        assert_eq!(pae("", b""), b"DSSEv1 0  0 ".to_vec());
    }

    #[test]
    fn signed_envelopes_round_trip() {
        let k = SigningKey::generate(Algorithm::EcdsaP256);
        let env = Envelope::sign(IN_TOTO_PAYLOAD_TYPE, b"{}", &k);
        let back = Envelope::parse(&env.to_json()).unwrap();
        assert_eq!(back, env);
        let sig = signature_bytes(&back.signatures[0]).unwrap();
        assert!(k.public().verify(&back.signed_bytes().unwrap(), &sig));
        assert!(Envelope::parse(b"{\"payload\":1}").is_err());
        assert!(Envelope::parse(b"[]").is_err());
    }
}
