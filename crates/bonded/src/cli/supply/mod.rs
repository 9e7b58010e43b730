//! Supply-chain client commands: keys, sign, attest, SBOMs, verify, trust. Crypto and formats come
//! from `bonded-supply`; the registry is reached over HTTP only (OCI referrers to store and fetch
//! attestations, `/api/v1/` for the trust store). Private keys never leave this process.

mod attest;
mod keys;
mod sbom;
mod trust;
mod verify;

use std::path::Path;
use std::process::ExitCode;

use anyhow::{bail, Context};
use bonded_supply::dsse::{Envelope, IN_TOTO_PAYLOAD_TYPE};
use bonded_supply::keys::SigningKey;
use bonded_supply::media::{self, Kind};
use bonded_supply::statement::Statement;
use bonded_types::{media_types, Digest, Reference};
use clap::Subcommand;
use serde_json::Value;

use super::client::{Client, Manifest};
use super::reference::ImageRef;

#[derive(Subcommand)]
pub enum SupplyCommand {
    /// Keys: `bonded key generate --out release` (signing), `bonded key rotate <registry>` (the
    /// registry's token signing key)
    Key {
        #[command(subcommand)]
        command: keys::KeyCommand,
    },
    /// Sign an artifact's manifest digest (DSSE envelope with an in-toto Statement v1, stored as
    /// an OCI referrer): bonded sign localhost:5000/prod/app:v1 --key release.pem
    Sign(attest::SignArgs),
    /// Attach signed SLSA provenance generated from this checkout and environment.
    Attest(Box<attest::AttestArgs>),
    /// Attach or generate SBOMs.
    Sbom {
        #[command(subcommand)]
        command: sbom::SbomCommand,
    },
    /// Check an artifact's signatures and attestations against the registry's trust store (or
    /// local public keys); exits non-zero unless a valid signature is found.
    Verify(verify::VerifyArgs),
    /// Manage a namespace's trusted public keys on the registry.
    Trust {
        #[command(subcommand)]
        command: trust::TrustCommand,
    },
}

pub async fn run(cmd: SupplyCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        SupplyCommand::Key { command } => keys::run(command).await,
        SupplyCommand::Sign(a) => attest::sign(a).await,
        SupplyCommand::Attest(a) => attest::attest(*a).await,
        SupplyCommand::Sbom { command } => sbom::run(command).await,
        SupplyCommand::Verify(a) => verify::run(a).await,
        SupplyCommand::Trust { command } => trust::run(command).await,
    }
}

pub fn read_signing_key(path: &Path) -> anyhow::Result<SigningKey> {
    let pem = std::fs::read_to_string(path)
        .with_context(|| format!("reading private key {}", path.display()))?;
    SigningKey::from_pem(&pem).with_context(|| format!("{}", path.display()))
}

/// The manifest an attestation is about.
pub struct SubjectInfo {
    pub digest: Digest,
    pub media_type: String,
    pub size: usize,
}

impl From<Manifest> for SubjectInfo {
    fn from(m: Manifest) -> SubjectInfo {
        SubjectInfo {
            digest: m.digest,
            media_type: m.media_type,
            size: m.bytes.len(),
        }
    }
}

/// Resolves the manifest a reference names. Normally through the OCI API (the client hashes
/// what it gets); when a policy refuses that pull — the very thing signing is meant to fix — the
/// registry's management API says which digest the tag names.
pub async fn subject(client: &Client, target: &ImageRef) -> anyhow::Result<SubjectInfo> {
    let reference = target.require_reference()?;
    let err = match client.get_manifest(&target.repo, reference).await {
        Ok(m) => return Ok(m.into()),
        Err(e) => e,
    };
    if !format!("{err:#}").contains("DENIED") {
        return Err(err);
    }
    let path = format!(
        "/api/v1/supply/artifact?repository={}&reference={reference}",
        target.repo
    );
    let v = client.api(reqwest::Method::GET, &path, None).await?;
    let digest: Digest = v
        .get("digest")
        .and_then(Value::as_str)
        .context("management API did not return a digest")?
        .parse()?;
    if let Reference::Digest(want) = reference {
        if &digest != want {
            bail!("registry resolved {want} to {digest}: refusing it");
        }
    }
    eprintln!("note: pulls of {target} are refused by policy; resolved it to {digest} through the management API");
    Ok(SubjectInfo {
        digest,
        media_type: v
            .get("media_type")
            .and_then(Value::as_str)
            .unwrap_or(media_types::OCI_MANIFEST)
            .to_string(),
        size: v.get("size").and_then(Value::as_u64).unwrap_or(0) as usize,
    })
}

/// Signs `statement`, uploads the envelope and pushes a referrer of `subject` carrying it.
/// Returns the referrer's digest.
pub async fn attach(
    client: &Client,
    target: &ImageRef,
    subject: &SubjectInfo,
    kind: Kind,
    statement: &Statement,
    key: &SigningKey,
) -> anyhow::Result<Digest> {
    if !kind.accepts_predicate(&statement.predicate_type) {
        bail!(
            "a {} cannot carry predicate {}",
            kind.as_str(),
            statement.predicate_type
        );
    }
    let repo = &target.repo;
    let envelope = Envelope::sign(IN_TOTO_PAYLOAD_TYPE, &statement.to_json(), key).to_json();
    let layer = client.upload_bytes(repo, &envelope).await?;
    let empty = client.upload_bytes(repo, b"{}").await?;
    let created = bonded_supply::time::rfc3339(bonded_supply::time::now_ms());
    let manifest = media::referrer_manifest(&media::ReferrerParts {
        artifact_type: kind.artifact_type(),
        empty_config: &empty,
        envelope: &layer,
        envelope_size: envelope.len() as u64,
        predicate_type: &statement.predicate_type,
        subject_media_type: &subject.media_type,
        subject: &subject.digest,
        subject_size: subject.size as u64,
        key_id: &key.public().key_id(),
        created: &created,
    });
    let bytes = serde_json::to_vec(&manifest)?;
    let digest = Digest::of(bonded_types::Algorithm::Sha256, &bytes);
    client
        .put_manifest(
            repo,
            &Reference::Digest(digest),
            media_types::OCI_MANIFEST,
            bytes,
        )
        .await
}

/// One attestation as fetched from the registry.
pub struct Fetched {
    pub kind: Kind,
    pub referrer: Digest,
    pub envelope: Result<Vec<u8>, String>,
}

/// Every bonded attestation referring to `digest`, envelopes fetched and their digests checked.
pub async fn fetch_attestations(
    client: &Client,
    target: &ImageRef,
    digest: &Digest,
) -> anyhow::Result<Vec<Fetched>> {
    let index = client.referrers(&target.repo, digest).await?;
    let mut out = Vec::new();
    let entries = index
        .get("manifests")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    for e in entries {
        let Some(kind) = e
            .get("artifactType")
            .and_then(Value::as_str)
            .and_then(Kind::from_artifact_type)
        else {
            continue;
        };
        let Some(referrer) = e
            .get("digest")
            .and_then(Value::as_str)
            .and_then(|d| d.parse::<Digest>().ok())
        else {
            continue;
        };
        let envelope = fetch_envelope(client, target, &referrer).await;
        out.push(Fetched {
            kind,
            referrer,
            envelope: envelope.map_err(|e| format!("{e:#}")),
        });
    }
    Ok(out)
}

async fn fetch_envelope(
    client: &Client,
    target: &ImageRef,
    referrer: &Digest,
) -> anyhow::Result<Vec<u8>> {
    let m = client
        .get_manifest(&target.repo, &Reference::Digest(referrer.clone()))
        .await?;
    let doc: Value = serde_json::from_slice(&m.bytes).context("referrer manifest is not JSON")?;
    let layers: Vec<&Value> = doc
        .get("layers")
        .and_then(Value::as_array)
        .map(|l| {
            l.iter()
                .filter(|l| {
                    l.get("mediaType").and_then(Value::as_str) == Some(media::DSSE_ENVELOPE)
                })
                .collect()
        })
        .unwrap_or_default();
    let [layer] = layers.as_slice() else {
        bail!(
            "referrer must have exactly one {} layer",
            media::DSSE_ENVELOPE
        );
    };
    let digest: Digest = layer
        .get("digest")
        .and_then(Value::as_str)
        .context("envelope layer has no digest")?
        .parse()?;
    let bytes = client
        .get_blob(&target.repo, &digest)
        .await?
        .bytes()
        .await?;
    if Digest::of(digest.algorithm(), &bytes) != digest {
        bail!("envelope blob does not hash to {digest}");
    }
    Ok(bytes.to_vec())
}

/// `host/namespace` → (host, namespace).
pub fn registry_namespace(s: &str) -> anyhow::Result<(String, String)> {
    match s.split_once('/') {
        Some((h, ns)) if !h.is_empty() && !ns.is_empty() && !ns.contains('/') => {
            Ok((h.to_string(), ns.to_string()))
        }
        _ => bail!("{s:?} must be host[:port]/namespace, e.g. localhost:5000/prod"),
    }
}

pub fn print_json(v: &Value) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(v)?);
    Ok(())
}
