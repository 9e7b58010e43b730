//! Signing keys: Ed25519 and ECDSA P-256, in PKCS#8 / SPKI PEM.
//!
//! A key's id is `sha256:<hex>` of its DER-encoded SubjectPublicKeyInfo, so anyone holding the
//! public key computes the same id, and an envelope's `keyid` can be checked against it.
//! Signatures are raw 64 bytes for Ed25519 and ASN.1 DER for ECDSA (what `cryptography`,
//! securesystemslib and sigstore produce and expect).

use std::fmt;
use std::str::FromStr;

use ed25519_dalek::pkcs8::{DecodePrivateKey, DecodePublicKey, EncodePrivateKey, EncodePublicKey};
use p256::ecdsa::signature::{Signer as _, Verifier as _};
use pkcs8::LineEnding;
use rand_core::OsRng;
use sha2::{Digest as _, Sha256};

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum KeyError {
    #[error("not a PEM-encoded {what} key of a supported kind (Ed25519 or ECDSA P-256): {detail}")]
    Decode { what: &'static str, detail: String },
    #[error("encoding the key failed: {0}")]
    Encode(String),
    #[error("key algorithm {0:?} is not supported; use ed25519 or ecdsa-p256")]
    Algorithm(String),
}

/// The signature algorithms bonded supports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Algorithm {
    Ed25519,
    EcdsaP256,
}

impl Algorithm {
    pub fn as_str(self) -> &'static str {
        match self {
            Algorithm::Ed25519 => "ed25519",
            Algorithm::EcdsaP256 => "ecdsa-p256",
        }
    }

    /// securesystemslib's scheme name, for interop tests and docs.
    pub fn sslib_scheme(self) -> &'static str {
        match self {
            Algorithm::Ed25519 => "ed25519",
            Algorithm::EcdsaP256 => "ecdsa-sha2-nistp256",
        }
    }
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Algorithm {
    type Err = KeyError;
    fn from_str(s: &str) -> Result<Self, KeyError> {
        match s.to_ascii_lowercase().as_str() {
            "ed25519" => Ok(Algorithm::Ed25519),
            "ecdsa-p256" | "ecdsa" | "p256" | "p-256" | "ecdsa-sha2-nistp256" => {
                Ok(Algorithm::EcdsaP256)
            }
            other => Err(KeyError::Algorithm(other.to_string())),
        }
    }
}

/// A private key that can sign. Never leaves the client.
pub enum SigningKey {
    Ed25519(ed25519_dalek::SigningKey),
    EcdsaP256(p256::ecdsa::SigningKey),
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never print key material.
        write!(
            f,
            "SigningKey({}, {})",
            self.algorithm(),
            self.public().key_id()
        )
    }
}

/// A public key that verifies.
#[derive(Clone, PartialEq, Eq)]
pub enum PublicKey {
    Ed25519(ed25519_dalek::VerifyingKey),
    EcdsaP256(p256::ecdsa::VerifyingKey),
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({}, {})", self.algorithm(), self.key_id())
    }
}

fn decode_err(what: &'static str, e: impl fmt::Display) -> KeyError {
    KeyError::Decode {
        what,
        detail: e.to_string(),
    }
}

impl SigningKey {
    pub fn generate(alg: Algorithm) -> SigningKey {
        match alg {
            Algorithm::Ed25519 => {
                SigningKey::Ed25519(ed25519_dalek::SigningKey::generate(&mut OsRng))
            }
            Algorithm::EcdsaP256 => {
                SigningKey::EcdsaP256(p256::ecdsa::SigningKey::random(&mut OsRng))
            }
        }
    }

    /// Reads a PKCS#8 PEM private key (`-----BEGIN PRIVATE KEY-----`).
    pub fn from_pem(pem: &str) -> Result<SigningKey, KeyError> {
        if let Ok(k) = ed25519_dalek::SigningKey::from_pkcs8_pem(pem) {
            return Ok(SigningKey::Ed25519(k));
        }
        p256::ecdsa::SigningKey::from_pkcs8_pem(pem)
            .map(SigningKey::EcdsaP256)
            .map_err(|e| decode_err("private", e))
    }

    /// PKCS#8 PEM. The caller writes it to a file only it can read.
    pub fn to_pem(&self) -> Result<String, KeyError> {
        let pem = match self {
            SigningKey::Ed25519(k) => k.to_pkcs8_pem(LineEnding::LF),
            SigningKey::EcdsaP256(k) => k.to_pkcs8_pem(LineEnding::LF),
        }
        .map_err(|e| KeyError::Encode(e.to_string()))?;
        Ok(pem.to_string())
    }

    pub fn algorithm(&self) -> Algorithm {
        match self {
            SigningKey::Ed25519(_) => Algorithm::Ed25519,
            SigningKey::EcdsaP256(_) => Algorithm::EcdsaP256,
        }
    }

    pub fn public(&self) -> PublicKey {
        match self {
            SigningKey::Ed25519(k) => PublicKey::Ed25519(k.verifying_key()),
            SigningKey::EcdsaP256(k) => PublicKey::EcdsaP256(*k.verifying_key()),
        }
    }

    pub fn sign(&self, message: &[u8]) -> Vec<u8> {
        match self {
            SigningKey::Ed25519(k) => {
                use ed25519_dalek::Signer;
                k.sign(message).to_bytes().to_vec()
            }
            SigningKey::EcdsaP256(k) => {
                let sig: p256::ecdsa::Signature = k.sign(message);
                sig.to_der().as_bytes().to_vec()
            }
        }
    }
}

impl PublicKey {
    /// Reads an SPKI PEM public key (`-----BEGIN PUBLIC KEY-----`).
    pub fn from_pem(pem: &str) -> Result<PublicKey, KeyError> {
        if let Ok(k) = ed25519_dalek::VerifyingKey::from_public_key_pem(pem) {
            return Ok(PublicKey::Ed25519(k));
        }
        p256::ecdsa::VerifyingKey::from_public_key_pem(pem)
            .map(PublicKey::EcdsaP256)
            .map_err(|e| decode_err("public", e))
    }

    pub fn to_pem(&self) -> String {
        let pem = match self {
            PublicKey::Ed25519(k) => k.to_public_key_pem(LineEnding::LF),
            PublicKey::EcdsaP256(k) => k.to_public_key_pem(LineEnding::LF),
        };
        // Encoding a valid in-memory public key cannot fail.
        pem.unwrap_or_default()
    }

    fn spki_der(&self) -> Vec<u8> {
        let der = match self {
            PublicKey::Ed25519(k) => k.to_public_key_der(),
            PublicKey::EcdsaP256(k) => k.to_public_key_der(),
        };
        der.map(|d| d.as_bytes().to_vec()).unwrap_or_default()
    }

    pub fn algorithm(&self) -> Algorithm {
        match self {
            PublicKey::Ed25519(_) => Algorithm::Ed25519,
            PublicKey::EcdsaP256(_) => Algorithm::EcdsaP256,
        }
    }

    /// `sha256:<hex of the DER SubjectPublicKeyInfo>`.
    pub fn key_id(&self) -> String {
        format!("sha256:{}", hex::encode(Sha256::digest(self.spki_der())))
    }

    /// True when `signature` is this key's signature over `message`.
    pub fn verify(&self, message: &[u8], signature: &[u8]) -> bool {
        match self {
            PublicKey::Ed25519(k) => ed25519_dalek::Signature::from_slice(signature)
                .map(|s| k.verify_strict(message, &s).is_ok())
                .unwrap_or(false),
            PublicKey::EcdsaP256(k) => p256::ecdsa::Signature::from_der(signature)
                .map(|s| k.verify(message, &s).is_ok())
                .unwrap_or(false),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_round_trip_through_pem_and_sign_and_verify() {
        for alg in [Algorithm::Ed25519, Algorithm::EcdsaP256] {
            let k = SigningKey::generate(alg);
            let pem = k.to_pem().unwrap();
            assert!(pem.starts_with("-----BEGIN PRIVATE KEY-----"), "{pem}");
            let k2 = SigningKey::from_pem(&pem).unwrap();
            assert_eq!(k2.algorithm(), alg);
            let public = PublicKey::from_pem(&k.public().to_pem()).unwrap();
            assert_eq!(public, k.public());
            assert_eq!(public.key_id(), k2.public().key_id());
            assert!(public.key_id().starts_with("sha256:"));
            let sig = k2.sign(b"hello");
            assert!(public.verify(b"hello", &sig));
            assert!(!public.verify(b"hellp", &sig));
            assert!(!public.verify(b"hello", &sig[1..]));
            let other = SigningKey::generate(alg).public();
            assert!(!other.verify(b"hello", &sig));
            assert_ne!(other.key_id(), public.key_id());
        }
    }

    #[test]
    fn garbage_is_not_a_key() {
        assert!(matches!(
            PublicKey::from_pem("-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n"),
            Err(KeyError::Decode { .. })
        ));
        assert!(SigningKey::from_pem("nope").is_err());
        // A public key is not a private key.
        let k = SigningKey::generate(Algorithm::Ed25519);
        assert!(SigningKey::from_pem(&k.public().to_pem()).is_err());
        assert!("rsa".parse::<Algorithm>().is_err());
        assert_eq!("ECDSA-P256".parse::<Algorithm>(), Ok(Algorithm::EcdsaP256));
    }
}
