//! How the CLI authenticates: it asks `/v2/` once what the registry wants. An open registry gets
//! nothing; a `Basic` challenge gets the stored credentials; a `Bearer` challenge (Docker
//! registry token spec) gets a token from the realm for each repository, asking for every action
//! (the registry grants only what the account may do), cached until shortly before it expires.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail};
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use bonded_types::RepoName;
use reqwest::{header, StatusCode};
use serde_json::Value;
use tokio::sync::Mutex;

use super::credentials::Creds;

/// What a request needs a token for.
pub enum Scope {
    Repo(String),
    Catalog,
    /// Just proving who we are (`bonded login`).
    Login,
}

impl Scope {
    pub fn repo(r: &RepoName) -> Scope {
        Scope::Repo(r.to_string())
    }

    /// The scope of a `/v2/…` listing path.
    pub fn for_path(path: &str) -> Scope {
        let rest = path.split_once("/v2/").map(|(_, r)| r).unwrap_or(path);
        match rest.split_once("/tags/list") {
            Some((repo, _)) => Scope::Repo(repo.to_string()),
            None => Scope::Catalog,
        }
    }

    fn as_token_scope(&self) -> Option<String> {
        match self {
            Scope::Repo(r) => Some(format!("repository:{r}:pull,push,delete")),
            Scope::Catalog => Some("registry:catalog:*".into()),
            Scope::Login => None,
        }
    }
}

#[derive(Clone)]
enum Challenge {
    Open,
    Basic,
    Bearer { realm: String, service: String },
}

pub struct Auth {
    creds: Option<Creds>,
    challenge: Mutex<Option<Challenge>>,
    tokens: Mutex<HashMap<String, (String, Instant)>>,
}

/// Parses `Bearer realm="…",service="…",scope="…"`.
fn parse_challenge(v: &str) -> Challenge {
    let (scheme, rest) = v.split_once(' ').unwrap_or((v, ""));
    if scheme.eq_ignore_ascii_case("basic") {
        return Challenge::Basic;
    }
    let mut params = HashMap::new();
    for part in rest.split(',') {
        if let Some((k, v)) = part.trim().split_once('=') {
            params.insert(
                k.trim().to_ascii_lowercase(),
                v.trim().trim_matches('"').to_string(),
            );
        }
    }
    match params.remove("realm") {
        Some(realm) => Challenge::Bearer {
            realm,
            service: params.remove("service").unwrap_or_default(),
        },
        None => Challenge::Basic,
    }
}

impl Auth {
    pub fn new(creds: Option<Creds>) -> Auth {
        Auth {
            creds,
            challenge: Mutex::new(None),
            tokens: Mutex::new(HashMap::new()),
        }
    }

    pub fn basic(&self) -> Option<String> {
        self.creds.as_ref().map(|c| {
            format!(
                "Basic {}",
                B64.encode(format!("{}:{}", c.username, c.secret))
            )
        })
    }

    async fn challenge(&self, http: &reqwest::Client, base: &str) -> anyhow::Result<Challenge> {
        let mut ch = self.challenge.lock().await;
        if let Some(c) = ch.as_ref() {
            return Ok(c.clone());
        }
        let resp = http.get(format!("{base}/v2/")).send().await?;
        let c = if resp.status() == StatusCode::UNAUTHORIZED {
            resp.headers()
                .get(header::WWW_AUTHENTICATE)
                .and_then(|v| v.to_str().ok())
                .map(parse_challenge)
                .unwrap_or(Challenge::Basic)
        } else {
            Challenge::Open
        };
        *ch = Some(c.clone());
        Ok(c)
    }

    /// The `Authorization` header for a request in `scope`, if one is needed.
    pub async fn header(
        &self,
        http: &reqwest::Client,
        base: &str,
        scope: &Scope,
    ) -> anyhow::Result<Option<String>> {
        match self.challenge(http, base).await? {
            Challenge::Open => Ok(None),
            Challenge::Basic => Ok(self.basic()),
            Challenge::Bearer { realm, service } => {
                let key = scope.as_token_scope().unwrap_or_default();
                let mut tokens = self.tokens.lock().await;
                if let Some((t, until)) = tokens.get(&key) {
                    if Instant::now() < *until {
                        return Ok(Some(format!("Bearer {t}")));
                    }
                }
                let (token, ttl) = self.fetch_token(http, &realm, &service, scope).await?;
                // Refresh a little early, so a token never expires mid-request.
                let until = Instant::now() + ttl.saturating_sub(Duration::from_secs(30));
                tokens.insert(key, (token.clone(), until));
                Ok(Some(format!("Bearer {token}")))
            }
        }
    }

    async fn fetch_token(
        &self,
        http: &reqwest::Client,
        realm: &str,
        service: &str,
        scope: &Scope,
    ) -> anyhow::Result<(String, Duration)> {
        let mut query = vec![("service", service.to_string())];
        if let Some(s) = scope.as_token_scope() {
            query.push(("scope", s));
        }
        let mut rb = http.get(realm).query(&query);
        if let Some(h) = self.basic() {
            rb = rb.header(header::AUTHORIZATION, h);
        }
        let resp = rb.send().await?;
        let status = resp.status();
        let body: Value = resp.json().await.unwrap_or(Value::Null);
        if !status.is_success() {
            let msg = body
                .pointer("/errors/0/message")
                .and_then(Value::as_str)
                .unwrap_or("no details");
            if status == StatusCode::UNAUTHORIZED {
                bail!("the registry refused the credentials ({msg}); run `bonded login` again");
            }
            bail!("getting a token from {realm}: {status}: {msg}");
        }
        let token = body
            .get("token")
            .or_else(|| body.get("access_token"))
            .and_then(Value::as_str)
            .ok_or_else(|| anyhow!("the token endpoint {realm} returned no token"))?;
        let ttl = body.get("expires_in").and_then(Value::as_u64).unwrap_or(60);
        Ok((token.to_string(), Duration::from_secs(ttl)))
    }

    /// Checks the credentials against the registry. `Ok(false)`: the registry has access
    /// control off.
    pub async fn check(&self, http: &reqwest::Client, base: &str) -> anyhow::Result<bool> {
        match self.challenge(http, base).await? {
            Challenge::Open => Ok(false),
            Challenge::Bearer { realm, service } => {
                self.fetch_token(http, &realm, &service, &Scope::Login)
                    .await?;
                Ok(true)
            }
            Challenge::Basic => {
                let mut rb = http.get(format!("{base}/v2/"));
                if let Some(h) = self.basic() {
                    rb = rb.header(header::AUTHORIZATION, h);
                }
                let resp = rb.send().await?;
                if !resp.status().is_success() {
                    bail!("the registry refused the credentials ({})", resp.status());
                }
                Ok(true)
            }
        }
    }
}
