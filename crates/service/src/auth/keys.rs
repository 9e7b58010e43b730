//! The token signing keys, shared by every node through the metadata store. The newest unretired
//! key signs; a retired key still verifies until the tokens it signed have expired, so rotating
//! logs nobody out. Each node caches the keys and reloads them when it meets an unknown key id
//! and at least every [`RELOAD_EVERY`], so a rotation on one node reaches the others.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use bonded_meta::{MetaStore, SigningKeyRecord};
use ring::signature::Ed25519KeyPair;
use sha2::{Digest as _, Sha256};

use super::token;
use crate::now_ms;

const RELOAD_EVERY: Duration = Duration::from_secs(60);
/// Unknown key ids trigger a reload at most this often (a flood of forged kids must not become a
/// flood of queries).
const MISS_RELOAD_EVERY: Duration = Duration::from_secs(2);

struct State {
    signer: Option<(String, Arc<Ed25519KeyPair>)>,
    /// kid → (public key, retired at ms)
    public: HashMap<String, (Vec<u8>, Option<i64>)>,
    loaded: Instant,
}

#[derive(Clone)]
pub struct Keys {
    meta: MetaStore,
    /// How long a retired key keeps verifying: token lifetime plus one reload period (another
    /// node may still sign with it until it reloads).
    grace: Duration,
    state: Arc<RwLock<State>>,
}

impl Keys {
    /// Loads the keys, creating the first one if there is none.
    pub async fn open(meta: MetaStore, token_ttl: Duration) -> Result<Keys, String> {
        let keys = Keys {
            meta,
            grace: token_ttl + RELOAD_EVERY,
            state: Arc::new(RwLock::new(State {
                signer: None,
                public: HashMap::new(),
                loaded: Instant::now(),
            })),
        };
        keys.reload().await?;
        if keys.read().signer.is_none() {
            keys.rotate().await?;
        }
        Ok(keys)
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, State> {
        self.state.read().unwrap_or_else(|e| e.into_inner())
    }

    async fn reload(&self) -> Result<(), String> {
        let records = self
            .meta
            .signing_keys()
            .list()
            .await
            .map_err(|e| format!("loading signing keys: {e}"))?;
        let mut signer = None;
        let mut public = HashMap::new();
        for r in records {
            if signer.is_none() && r.retired_at_ms.is_none() {
                let pair = Ed25519KeyPair::from_pkcs8(&r.private_key)
                    .map_err(|_| format!("signing key {} is corrupt", r.kid))?;
                signer = Some((r.kid.clone(), Arc::new(pair)));
            }
            public.insert(r.kid, (r.public_key, r.retired_at_ms));
        }
        *self.state.write().unwrap_or_else(|e| e.into_inner()) = State {
            signer,
            public,
            loaded: Instant::now(),
        };
        Ok(())
    }

    /// Makes a new key the signing key and retires the others (which keep verifying for a while).
    /// Returns the new key id.
    pub async fn rotate(&self) -> Result<String, String> {
        let (private_key, public_key) = token::generate()?;
        let kid = hex::encode(&Sha256::digest(&public_key)[..8]);
        let now = now_ms();
        let record = SigningKeyRecord {
            kid: kid.clone(),
            algorithm: "EdDSA".into(),
            private_key,
            public_key,
            created_at_ms: now,
            retired_at_ms: None,
        };
        self.meta
            .signing_keys()
            .rotate(&record, now)
            .await
            .map_err(|e| format!("storing a new signing key: {e}"))?;
        self.reload().await?;
        Ok(kid)
    }

    async fn fresh(&self) {
        let stale = self.read().loaded.elapsed() > RELOAD_EVERY;
        if stale {
            if let Err(e) = self.reload().await {
                tracing::warn!(error = %e, "reloading signing keys failed; using cached keys");
            }
        }
    }

    /// Signs `msg` with the current key: (kid, signature).
    pub async fn sign(&self, msg: &[u8]) -> Result<(String, Vec<u8>), String> {
        self.fresh().await;
        let st = self.read();
        let (kid, pair) = st.signer.as_ref().ok_or("no active signing key")?;
        Ok((kid.clone(), pair.sign(msg).as_ref().to_vec()))
    }

    pub async fn sign_token(&self, claims: &token::Claims) -> Result<String, String> {
        self.fresh().await;
        let st = self.read();
        let (kid, pair) = st.signer.as_ref().ok_or("no active signing key")?;
        Ok(token::sign(pair, kid, claims))
    }

    /// The public key for `kid` if it may still verify (`for_tokens`: retired keys stop verifying
    /// tokens after the grace period; audit checkpoints verify with any key ever used).
    pub async fn public(&self, kid: &str, for_tokens: bool) -> Option<Vec<u8>> {
        let lookup = |st: &State| -> Option<Vec<u8>> {
            let (key, retired) = st.public.get(kid)?;
            match retired {
                Some(at) if for_tokens && now_ms() > at + self.grace.as_millis() as i64 => None,
                _ => Some(key.clone()),
            }
        };
        let (found, may_reload) = {
            let st = self.read();
            (lookup(&st), st.loaded.elapsed() > MISS_RELOAD_EVERY)
        };
        if found.is_some() || !may_reload {
            return found;
        }
        if let Err(e) = self.reload().await {
            tracing::warn!(error = %e, "reloading signing keys failed");
        }
        lookup(&self.read())
    }
}
