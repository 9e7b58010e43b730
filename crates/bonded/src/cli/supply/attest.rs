//! `bonded sign` and `bonded attest --provenance`: a signed in-toto statement about a manifest
//! digest, pushed as a referrer of it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

use anyhow::{bail, Context};
use bonded_supply::media::Kind;
use bonded_supply::provenance::{BuildFacts, Resource};
use bonded_supply::statement::{predicate_types, SignaturePredicate, Statement, Subject};
use bonded_supply::time::{now_ms, rfc3339};
use bonded_types::{Algorithm, Digest};
use serde_json::Value;

use super::{attach, read_signing_key, subject};
use crate::cli::client::Client;
use crate::cli::reference::ImageRef;
use crate::cli::Conn;

#[derive(clap::Args)]
pub struct SignArgs {
    /// host[:port]/repository:tag or @digest
    reference: String,
    /// Private key PEM (from `bonded key generate`).
    #[arg(long)]
    key: PathBuf,
    /// Who is signing, recorded in the statement (informative; trust comes from the key).
    #[arg(long, default_value = "")]
    signer: String,
    #[command(flatten)]
    conn: Conn,
}

pub async fn sign(args: SignArgs) -> anyhow::Result<ExitCode> {
    let target: ImageRef = args.reference.parse()?;
    let key = read_signing_key(&args.key)?;
    let client = Client::new(&target.host, args.conn.plain_http)?;
    let m = subject(&client, &target).await?;
    let predicate = SignaturePredicate {
        reference: target.to_string(),
        signed_at: rfc3339(now_ms()),
        signer: args.signer,
    };
    let st = Statement::new(
        Subject::of(target.repo.as_str(), &m.digest),
        predicate_types::SIGNATURE,
        serde_json::to_value(&predicate)?,
    );
    let referrer = attach(&client, &target, &m, Kind::Signature, &st, &key).await?;
    eprintln!(
        "signed {}@{} with key {} ({})",
        target.repo,
        m.digest,
        key.public().key_id(),
        key.algorithm()
    );
    println!("{}/{}@{referrer}", target.host, target.repo);
    Ok(ExitCode::SUCCESS)
}

#[derive(clap::Args)]
pub struct AttestArgs {
    /// host[:port]/repository:tag or @digest
    reference: String,
    /// Attach SLSA Provenance v1 (the only attestation kind `attest` makes; SBOMs use `bonded sbom`).
    #[arg(long, required = true)]
    provenance: bool,
    #[arg(long)]
    key: PathBuf,
    /// Builder identity (default: $BONDED_BUILDER_ID, else a GitHub Actions or local id).
    #[arg(long)]
    builder_id: Option<String>,
    #[arg(long)]
    build_type: Option<String>,
    /// Source repository URI (default: git+<origin remote> of --source-dir).
    #[arg(long)]
    source_uri: Option<String>,
    /// Commit built (default: HEAD of --source-dir).
    #[arg(long)]
    commit: Option<String>,
    /// Checkout to read source facts from.
    #[arg(long, default_value = ".")]
    source_dir: PathBuf,
    /// The build command, recorded as given.
    #[arg(long)]
    build_command: Option<String>,
    /// Input file, hashed and recorded as a resolved dependency (repeatable).
    #[arg(long = "material")]
    materials: Vec<PathBuf>,
    /// Base image, as name@sha256:… (recorded with its digest).
    #[arg(long)]
    base_image: Option<String>,
    /// Training dataset artifact, as name@sha256:… (repeatable).
    #[arg(long = "dataset")]
    datasets: Vec<String>,
    /// JSON file of hyperparameters.
    #[arg(long)]
    hyperparameters: Option<PathBuf>,
    /// JSON file of evaluation metrics.
    #[arg(long)]
    metrics: Option<PathBuf>,
    #[command(flatten)]
    conn: Conn,
}

/// Runs a command and returns its trimmed stdout, or None if it is absent or fails.
fn output(dir: Option<&Path>, cmd: &str, args: &[&str]) -> Option<String> {
    let mut c = Command::new(cmd);
    c.args(args);
    if let Some(d) = dir {
        c.current_dir(d);
    }
    let out = c.output().ok()?;
    if !out.status.success() {
        return None;
    }
    let s = String::from_utf8_lossy(&out.stdout).trim().to_string();
    (!s.is_empty()).then_some(s)
}

fn file_resource(path: &Path) -> anyhow::Result<Resource> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let d = Digest::of(Algorithm::Sha256, &bytes);
    Ok(Resource {
        name: path
            .file_name()
            .map(|n| n.to_string_lossy().to_string())
            .unwrap_or_default(),
        uri: format!("file:{}", path.display()),
        digest: [("sha256".to_string(), d.hex().to_string())].into(),
    })
}

/// `name@sha256:…` → a resource with that digest.
fn pinned(s: &str, what: &str) -> anyhow::Result<Resource> {
    let (name, digest) = s
        .rsplit_once('@')
        .with_context(|| format!("{what} {s:?} must be pinned: name@sha256:…"))?;
    let d: Digest = digest.parse().with_context(|| format!("{what} {s:?}"))?;
    Ok(Resource {
        name: what.to_string(),
        uri: format!("oci://{name}"),
        digest: [(d.algorithm().as_str().to_string(), d.hex().to_string())].into(),
    })
}

fn json_file(p: &Path) -> anyhow::Result<(Vec<u8>, Value)> {
    let bytes = std::fs::read(p).with_context(|| format!("reading {}", p.display()))?;
    let v =
        serde_json::from_slice(&bytes).with_context(|| format!("{} is not JSON", p.display()))?;
    Ok((bytes, v))
}

fn default_builder() -> String {
    if let Ok(b) = std::env::var("BONDED_BUILDER_ID") {
        return b;
    }
    match (
        std::env::var("GITHUB_SERVER_URL"),
        std::env::var("GITHUB_REPOSITORY"),
        std::env::var("GITHUB_WORKFLOW_REF"),
    ) {
        (Ok(server), Ok(_), Ok(workflow)) => format!("{server}/{workflow}"),
        _ => format!(
            "local://{}",
            output(None, "hostname", &[]).unwrap_or_else(|| "unknown-host".into())
        ),
    }
}

/// Gathers build facts from the checkout, the environment and the flags.
fn facts(a: &AttestArgs, started: &str) -> anyhow::Result<BuildFacts> {
    let dir = Some(a.source_dir.as_path());
    let source_uri = match &a.source_uri {
        Some(s) => s.clone(),
        None => output(dir, "git", &["remote", "get-url", "origin"])
            .map(|u| format!("git+{u}"))
            .unwrap_or_default(),
    };
    let commit = match &a.commit {
        Some(c) => c.clone(),
        None => output(dir, "git", &["rev-parse", "HEAD"]).unwrap_or_default(),
    };
    if source_uri.is_empty() && commit.is_empty() {
        bail!(
            "no source facts: {} is not a git checkout with an origin; pass --source-uri and --commit",
            a.source_dir.display()
        );
    }
    let dirty = a.commit.is_none()
        && output(dir, "git", &["status", "--porcelain"]).is_some_and(|s| !s.is_empty());
    let mut toolchain = BTreeMap::new();
    for (name, cmd, args) in [
        ("rustc", "rustc", &["--version"][..]),
        ("cargo", "cargo", &["--version"][..]),
        ("python", "python3", &["--version"][..]),
        ("go", "go", &["version"][..]),
        ("node", "node", &["--version"][..]),
        ("git", "git", &["--version"][..]),
    ] {
        if let Some(v) = output(None, cmd, args) {
            toolchain.insert(name.to_string(), v);
        }
    }
    let mut environment = BTreeMap::new();
    environment.insert("os".to_string(), std::env::consts::OS.to_string());
    environment.insert("arch".to_string(), std::env::consts::ARCH.to_string());
    for var in ["CI", "GITHUB_RUN_ID", "GITHUB_WORKFLOW_REF", "GITHUB_SHA"] {
        if let Ok(v) = std::env::var(var) {
            environment.insert(var.to_string(), v);
        }
    }
    let metrics = match &a.metrics {
        Some(p) => {
            let (bytes, v) = json_file(p)?;
            let d = Digest::of(Algorithm::Sha256, &bytes);
            Some((
                Resource {
                    name: "evaluation-metrics".into(),
                    uri: format!("file:{}", p.display()),
                    digest: [("sha256".to_string(), d.hex().to_string())].into(),
                },
                v,
            ))
        }
        None => None,
    };
    Ok(BuildFacts {
        build_type: a.build_type.clone().unwrap_or_default(),
        builder_id: a.builder_id.clone().unwrap_or_else(default_builder),
        source_uri,
        source_commit: commit,
        source_dirty: dirty,
        build_command: a
            .build_command
            .as_deref()
            .map(|c| c.split_whitespace().map(str::to_string).collect())
            .unwrap_or_default(),
        toolchain,
        environment,
        base_image: a
            .base_image
            .as_deref()
            .map(|b| pinned(b, "base-image"))
            .transpose()?,
        materials: a
            .materials
            .iter()
            .map(|p| file_resource(p))
            .collect::<anyhow::Result<_>>()?,
        datasets: a
            .datasets
            .iter()
            .map(|d| pinned(d, "dataset"))
            .collect::<anyhow::Result<_>>()?,
        hyperparameters: a
            .hyperparameters
            .as_deref()
            .map(json_file)
            .transpose()?
            .map(|(_, v)| v),
        metrics,
        invocation_id: uuid::Uuid::new_v4().to_string(),
        started_on: started.to_string(),
        finished_on: rfc3339(now_ms()),
    })
}

pub async fn attest(args: AttestArgs) -> anyhow::Result<ExitCode> {
    let started = rfc3339(now_ms());
    let target: ImageRef = args.reference.parse()?;
    let key = read_signing_key(&args.key)?;
    let facts = facts(&args, &started)?;
    let client = Client::new(&target.host, args.conn.plain_http)?;
    let m = subject(&client, &target).await?;
    let st = Statement::new(
        Subject::of(target.repo.as_str(), &m.digest),
        predicate_types::SLSA_PROVENANCE_V1,
        facts.predicate(),
    );
    let referrer = attach(&client, &target, &m, Kind::Provenance, &st, &key).await?;
    eprintln!(
        "attested provenance for {}@{} (builder {}, source {}@{})",
        target.repo, m.digest, facts.builder_id, facts.source_uri, facts.source_commit
    );
    println!("{}/{}@{referrer}", target.host, target.repo);
    Ok(ExitCode::SUCCESS)
}
