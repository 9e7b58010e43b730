//! Secrets: generated with the system RNG, stored only as argon2id PHC strings.

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine as _;
use ring::rand::{SecureRandom, SystemRandom};

/// A random secret of 32 bytes, URL-safe base64 (43 characters).
pub fn generate() -> String {
    let mut bytes = [0u8; 32];
    // The system RNG failing is not recoverable; an all-zero secret would be far worse.
    SystemRandom::new()
        .fill(&mut bytes)
        .expect("system random number generator");
    B64.encode(bytes)
}

/// A random identifier of `n` bytes, hex.
pub fn random_hex(n: usize) -> String {
    let mut bytes = vec![0u8; n];
    SystemRandom::new()
        .fill(&mut bytes)
        .expect("system random number generator");
    hex::encode(bytes)
}

pub fn hash(secret: &str) -> Result<String, String> {
    let mut salt = [0u8; 16];
    SystemRandom::new()
        .fill(&mut salt)
        .map_err(|_| "system RNG failed".to_string())?;
    let salt = SaltString::encode_b64(&salt).map_err(|e| e.to_string())?;
    Argon2::default()
        .hash_password(secret.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| format!("hashing a secret: {e}"))
}

/// Constant-time comparison inside argon2; a malformed stored hash verifies nothing.
pub fn verify(secret: &str, phc: &str) -> bool {
    match PasswordHash::new(phc) {
        Ok(h) => Argon2::default()
            .verify_password(secret.as_bytes(), &h)
            .is_ok(),
        Err(_) => false,
    }
}

/// A hash of a secret nobody knows, to spend the same time on unknown accounts as on known ones.
pub fn decoy_hash() -> &'static str {
    static DECOY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DECOY.get_or_init(|| hash(&generate()).unwrap_or_default())
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_hash_verifies_its_secret_only() {
        let s = super::generate();
        assert_eq!(s.len(), 43);
        let h = super::hash(&s).unwrap();
        assert!(h.starts_with("$argon2id$"));
        assert!(!h.contains(&s));
        assert!(super::verify(&s, &h));
        assert!(!super::verify("wrong", &h));
        assert!(!super::verify(&s, "garbage"));
    }
}
