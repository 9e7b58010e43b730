//! Registry bearer tokens: JWTs signed with Ed25519 (`alg: EdDSA`) carrying the Docker registry
//! token spec's `access` claim. Encoding and checking only; which keys exist is `keys.rs`'s job.

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine as _;
use bonded_types::RepoName;
use ring::signature::{self, Ed25519KeyPair, KeyPair as _};
use serde::{Deserialize, Serialize};

use super::policy::Action;

/// One entry of the `access` claim.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessEntry {
    #[serde(rename = "type")]
    pub kind: String,
    pub name: String,
    pub actions: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    pub iss: String,
    /// Account name; empty for an anonymous token.
    pub sub: String,
    pub aud: String,
    pub exp: i64,
    pub nbf: i64,
    pub iat: i64,
    pub jti: String,
    pub access: Vec<AccessEntry>,
}

impl Claims {
    /// Whether the token grants `action` on `repo`. Names are compared as parsed names.
    pub fn allows(&self, action: Action, repo: &RepoName) -> bool {
        self.access.iter().any(|e| {
            e.kind == "repository"
                && e.name == repo.as_str()
                && e.actions
                    .iter()
                    .any(|a| Action::parse_scope(a).is_some_and(|acts| acts.contains(&action)))
        })
    }

    /// Whether the token carries `registry:catalog:*`.
    pub fn catalog(&self) -> bool {
        self.access
            .iter()
            .any(|e| e.kind == "registry" && e.name == "catalog")
    }
}

#[derive(Serialize, Deserialize)]
struct Header {
    alg: String,
    typ: String,
    kid: String,
}

/// Why a token was not accepted. Shown to clients; never contains the token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("token is malformed")]
    Malformed,
    #[error("token was signed by an unknown or retired key")]
    UnknownKey,
    #[error("token signature is invalid")]
    BadSignature,
    #[error("token has expired")]
    Expired,
    #[error("token is not valid yet")]
    NotYetValid,
    #[error("token was issued for another service")]
    WrongAudience,
}

pub(crate) fn sign(key: &Ed25519KeyPair, kid: &str, claims: &Claims) -> String {
    let header = Header {
        alg: "EdDSA".into(),
        typ: "JWT".into(),
        kid: kid.into(),
    };
    let h = B64.encode(serde_json::to_vec(&header).unwrap_or_default());
    let c = B64.encode(serde_json::to_vec(claims).unwrap_or_default());
    let input = format!("{h}.{c}");
    let sig = key.sign(input.as_bytes());
    format!("{input}.{}", B64.encode(sig.as_ref()))
}

/// The key id a token names, before its signature is checked.
pub(crate) fn kid(token: &str) -> Result<String, TokenError> {
    let h = token.split('.').next().ok_or(TokenError::Malformed)?;
    let bytes = B64.decode(h).map_err(|_| TokenError::Malformed)?;
    let header: Header = serde_json::from_slice(&bytes).map_err(|_| TokenError::Malformed)?;
    if header.alg != "EdDSA" {
        return Err(TokenError::Malformed);
    }
    Ok(header.kid)
}

/// Checks the signature with `public_key`, then expiry and audience.
pub(crate) fn verify(
    token: &str,
    public_key: &[u8],
    audience: &str,
    now_secs: i64,
) -> Result<Claims, TokenError> {
    let mut parts = token.split('.');
    let (Some(h), Some(c), Some(s), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(TokenError::Malformed);
    };
    let sig = B64.decode(s).map_err(|_| TokenError::Malformed)?;
    let input = &token[..h.len() + 1 + c.len()];
    signature::UnparsedPublicKey::new(&signature::ED25519, public_key)
        .verify(input.as_bytes(), &sig)
        .map_err(|_| TokenError::BadSignature)?;
    let claims: Claims = serde_json::from_slice(&B64.decode(c).map_err(|_| TokenError::Malformed)?)
        .map_err(|_| TokenError::Malformed)?;
    // A minute of leeway for clocks between nodes.
    if claims.exp <= now_secs {
        return Err(TokenError::Expired);
    }
    if claims.nbf > now_secs + 60 {
        return Err(TokenError::NotYetValid);
    }
    if claims.aud != audience {
        return Err(TokenError::WrongAudience);
    }
    Ok(claims)
}

/// A fresh Ed25519 key: (PKCS#8 private key, raw public key).
pub(crate) fn generate() -> Result<(Vec<u8>, Vec<u8>), String> {
    let rng = ring::rand::SystemRandom::new();
    let pkcs8 = Ed25519KeyPair::generate_pkcs8(&rng).map_err(|_| "generating a key failed")?;
    let pair = Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).map_err(|_| "bad generated key")?;
    Ok((pkcs8.as_ref().to_vec(), pair.public_key().as_ref().to_vec()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims(exp: i64) -> Claims {
        Claims {
            iss: "bonded".into(),
            sub: "alice".into(),
            aud: "svc".into(),
            exp,
            nbf: 0,
            iat: 0,
            jti: "j".into(),
            access: vec![AccessEntry {
                kind: "repository".into(),
                name: "team-a/app".into(),
                actions: vec!["pull".into()],
            }],
        }
    }

    fn key() -> (Ed25519KeyPair, Vec<u8>) {
        let (private, public) = generate().unwrap();
        (Ed25519KeyPair::from_pkcs8(&private).unwrap(), public)
    }

    #[test]
    fn a_signed_token_verifies_and_carries_its_access() {
        let (k, public) = key();
        let t = sign(&k, "k1", &claims(100));
        assert_eq!(kid(&t).unwrap(), "k1");
        let c = verify(&t, &public, "svc", 50).unwrap();
        assert!(c.allows(Action::Pull, &"team-a/app".parse().unwrap()));
        assert!(!c.allows(Action::Push, &"team-a/app".parse().unwrap()));
        assert!(!c.allows(Action::Pull, &"team-a/other".parse().unwrap()));
    }

    #[test]
    fn tampered_expired_foreign_and_misaddressed_tokens_are_refused() {
        let (k, public) = key();
        let (_, other_public) = key();
        let t = sign(&k, "k1", &claims(100));
        assert_eq!(verify(&t, &public, "svc", 100), Err(TokenError::Expired));
        assert_eq!(
            verify(&t, &other_public, "svc", 50),
            Err(TokenError::BadSignature)
        );
        assert_eq!(
            verify(&t, &public, "other", 50),
            Err(TokenError::WrongAudience)
        );
        // Swap in claims granting push, keep the signature.
        let mut c = claims(100);
        c.access[0].actions = vec!["pull".into(), "push".into()];
        let forged = B64.encode(serde_json::to_vec(&c).unwrap());
        let parts: Vec<&str> = t.split('.').collect();
        let tampered = format!("{}.{forged}.{}", parts[0], parts[2]);
        assert_eq!(
            verify(&tampered, &public, "svc", 50),
            Err(TokenError::BadSignature)
        );
        assert_eq!(
            verify("a.b", &public, "svc", 50),
            Err(TokenError::Malformed)
        );
        assert_eq!(
            verify("not a token", &public, "svc", 50),
            Err(TokenError::Malformed)
        );
    }
}
