//! `bonded verify`: fetch an artifact's attestations, check digests, statements and signatures,
//! print who signed what, when and with which key, and exit non-zero unless a signature counts.
//!
//! Keys come from the registry's trust store (with validity windows and revocations, judged at
//! the time the registry says it received each referrer) or, with `--key`, from local public key
//! files (no windows: a local check of "was this signed by that key").

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use bonded_service::supply::namespace;
use bonded_supply::keys::PublicKey;
use bonded_supply::media::Kind;
use bonded_supply::summary::summarize;
use bonded_supply::time::{now_ms, parse_rfc3339, rfc3339};
use bonded_supply::verify::{verify, TrustedKey};
use reqwest::Method;
use serde_json::Value;

use super::{fetch_attestations, subject};
use crate::cli::client::Client;
use crate::cli::reference::ImageRef;
use crate::cli::Conn;

#[derive(clap::Args)]
pub struct VerifyArgs {
    /// host[:port]/repository:tag or @digest
    reference: String,
    /// Public key PEM to check against instead of the registry's trust store (repeatable).
    #[arg(long = "key")]
    keys: Vec<PathBuf>,
    /// Only signatures by keys of this key set count (trust store mode).
    #[arg(long)]
    key_set: Option<String>,
    #[command(flatten)]
    conn: Conn,
}

fn opt_time(v: &Value, k: &str) -> anyhow::Result<Option<i64>> {
    match v.get(k).and_then(Value::as_str) {
        Some(s) => Ok(Some(parse_rfc3339(s).map_err(anyhow::Error::msg)?)),
        None => Ok(None),
    }
}

async fn trust_store(client: &Client, ns: &str) -> anyhow::Result<Vec<TrustedKey>> {
    let v = client
        .api(Method::GET, &format!("/api/v1/trust/{ns}/keys"), None)
        .await?;
    let mut keys = Vec::new();
    for k in v
        .get("keys")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let pem = k.get("public_key").and_then(Value::as_str).unwrap_or("");
        let public = PublicKey::from_pem(pem).context("trust store returned a bad key")?;
        let key_id = public.key_id();
        if k.get("key_id").and_then(Value::as_str) != Some(key_id.as_str()) {
            anyhow::bail!("trust store key {key_id} is listed under another id");
        }
        keys.push(TrustedKey {
            key_id,
            key_set: k
                .get("key_set")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string(),
            public,
            not_before_ms: opt_time(k, "not_before")?,
            not_after_ms: opt_time(k, "not_after")?,
            revoked_at_ms: opt_time(k, "revoked_at")?,
        });
    }
    Ok(keys)
}

/// When the registry received each referrer, from the management API.
async fn push_times(
    client: &Client,
    target: &ImageRef,
    digest: &bonded_types::Digest,
) -> anyhow::Result<HashMap<String, i64>> {
    let path = format!(
        "/api/v1/supply/artifact?repository={}&reference={digest}",
        target.repo
    );
    let v = client.api(Method::GET, &path, None).await?;
    let mut out = HashMap::new();
    for a in v
        .get("attestations")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        if let (Some(r), Some(t)) = (
            a.get("referrer").and_then(Value::as_str),
            a.get("pushed_at").and_then(Value::as_str),
        ) {
            out.insert(r.to_string(), parse_rfc3339(t).map_err(anyhow::Error::msg)?);
        }
    }
    Ok(out)
}

pub async fn run(args: VerifyArgs) -> anyhow::Result<ExitCode> {
    let target: ImageRef = args.reference.parse()?;
    let client = Client::new(&target.host, args.conn.plain_http)?;
    let m = subject(&client, &target).await?;
    let local = !args.keys.is_empty();
    let keys: Vec<TrustedKey> = if local {
        args.keys
            .iter()
            .map(|p| {
                let pem = std::fs::read_to_string(p)
                    .with_context(|| format!("reading {}", p.display()))?;
                let public =
                    PublicKey::from_pem(&pem).with_context(|| format!("{}", p.display()))?;
                Ok(TrustedKey {
                    key_id: public.key_id(),
                    key_set: "local".into(),
                    public,
                    not_before_ms: None,
                    not_after_ms: None,
                    revoked_at_ms: None,
                })
            })
            .collect::<anyhow::Result<_>>()?
    } else {
        trust_store(&client, namespace(&target.repo)).await?
    };
    let times = if local {
        HashMap::new()
    } else {
        push_times(&client, &target, &m.digest).await?
    };
    println!("{}/{}@{}", target.host, target.repo, m.digest);
    let mut signatures = 0;
    for f in fetch_attestations(&client, &target, &m.digest).await? {
        let pushed_at = times
            .get(&f.referrer.to_string())
            .copied()
            .unwrap_or_else(now_ms);
        let outcome = f.envelope.map_err(|e| e.to_string()).and_then(|bytes| {
            verify(&bytes, f.kind, &m.digest, &keys, pushed_at).map_err(|r| r.to_string())
        });
        match outcome {
            Ok(v) => {
                let in_set = args.key_set.as_ref().is_none_or(|s| v.key_sets.contains(s));
                if f.kind == Kind::Signature && in_set {
                    signatures += 1;
                }
                println!(
                    "  OK    {} {}: key {} ({}, key sets {}), received {}",
                    f.kind.as_str(),
                    f.referrer,
                    v.key_id,
                    v.algorithm,
                    v.key_sets.join(","),
                    rfc3339(v.pushed_at_ms)
                );
                println!("        {}", summarize(&v.statement));
            }
            Err(why) => println!("  FAIL  {} {}: {why}", f.kind.as_str(), f.referrer),
        }
    }
    if signatures > 0 {
        println!("verified: {signatures} valid signature(s)");
        Ok(ExitCode::SUCCESS)
    } else {
        println!(
            "NOT verified: no valid signature{}",
            args.key_set
                .as_ref()
                .map(|s| format!(" by key set {s:?}"))
                .unwrap_or_default()
        );
        Ok(ExitCode::FAILURE)
    }
}
