//! Client commands. They talk to a registry only over HTTP (see [`client`]).

mod auth;
mod client;
mod credentials;
mod diff;
mod manage;
mod promote;
mod pull;
mod push;
mod reference;
mod scan;
mod supply;
mod waiver;

use std::process::ExitCode;

use anyhow::Context;
use bonded_types::Reference;
use clap::Subcommand;
use serde_json::Value;

use client::Client;
use reference::ImageRef;

#[derive(clap::Args, Clone)]
pub struct Conn {
    /// Use plain HTTP even for a non-loopback registry (loopback always uses HTTP).
    #[arg(long, global = true, env = "BONDED_PLAIN_HTTP")]
    pub(crate) plain_http: bool,
}

#[derive(Subcommand)]
pub enum ClientCommand {
    /// Push a file or a directory as an artifact: bonded push ./model.safetensors localhost:5000/ml/recsys:v3
    Push(push::PushArgs),
    /// Pull an artifact by tag or digest into a directory, verifying every digest.
    Pull(pull::PullArgs),
    /// List the repositories of a registry: bonded ls localhost:5000
    Ls {
        /// Registry host[:port]
        registry: String,
        #[command(flatten)]
        conn: Conn,
    },
    /// List the tags of a repository: bonded tags localhost:5000/ml/recsys
    Tags {
        repository: String,
        #[command(flatten)]
        conn: Conn,
    },
    /// Show a manifest, its digest and its referrers.
    Inspect {
        reference: String,
        #[command(flatten)]
        conn: Conn,
    },
    /// Point a new tag at an existing manifest: bonded tag localhost:5000/app:v1 v1-stable
    Tag {
        source: String,
        tag: String,
        #[command(flatten)]
        conn: Conn,
    },
    /// Delete a tag (repo:tag) or a manifest and its tags (repo@digest).
    Delete {
        reference: String,
        #[command(flatten)]
        conn: Conn,
    },
    #[command(flatten)]
    Supply(supply::SupplyCommand),
    /// Store credentials for a registry (the password or robot secret is read from stdin):
    /// echo "$SECRET" | bonded login localhost:5000 -u ci-bot
    Login {
        registry: String,
        #[arg(short, long)]
        username: String,
        /// Accepted for familiarity: the secret is always read from stdin.
        #[arg(long)]
        password_stdin: bool,
        #[command(flatten)]
        conn: Conn,
    },
    /// Forget the stored credentials for a registry.
    Logout { registry: String },
    /// Manage user accounts (system admins).
    #[command(subcommand)]
    User(manage::UserCommand),
    /// Manage robot accounts for CI and deployments (system admins).
    #[command(subcommand)]
    Robot(manage::RobotCommand),
    /// Grant and revoke roles on namespaces (system admins; namespace admins inside theirs).
    #[command(subcommand)]
    Grant(manage::GrantCommand),
    /// Query and verify the tamper-evident audit log (system admins).
    #[command(subcommand)]
    Audit(manage::AuditCommand),
    /// Promote an artifact into an environment through its gates:
    /// bonded promote localhost:5000/app@sha256:… --to staging
    Promote(promote::PromoteArgs),
    /// Move an environment back to its previous digest (or --to one from its history):
    /// bonded rollback localhost:5000/app --env prod
    Rollback(promote::RollbackArgs),
    /// Every move of a repository's environments, with actors and gate verdicts.
    History(promote::HistoryArgs),
    /// A repository's environments in order and where each points.
    Envs(promote::EnvsArgs),
    /// Approve an artifact for an environment (counted by approval gates).
    Approve(promote::ApproveArgs),
    /// Report a deployment: bonded deploy localhost:5000/app@sha256:… --env prod --target eu-1
    Deploy(promote::DeployArgs),
    /// What runs where, and the artifact mismatch rate.
    Deployments(promote::DeploymentsArgs),
    /// Judge a canary against its baseline (Mann–Whitney U per metric) and record the verdict.
    Canary(promote::CanaryArgs),
    /// What changed between two artifacts: manifest, layers, annotations, provenance materials
    /// and SBOM components.
    Diff(diff::DiffArgs),
    /// Scan an artifact's verified SBOMs for vulnerabilities now and print the findings:
    /// bonded scan localhost:5000/shop/app:v1
    Scan(scan::ScanArgs),
    /// Vulnerability queries.
    #[command(subcommand)]
    Vulns(scan::VulnsCommand),
    /// Vulnerability waivers: accept a finding deliberately, with a reason and an expiry.
    #[command(subcommand)]
    Waiver(waiver::WaiverCommand),
    /// An artifact's CycloneDX VEX document (its findings, with waivers as analyses):
    /// bonded vex localhost:5000/shop/app:v1 -o app.vex.json
    Vex(waiver::VexArgs),
}

pub async fn run(cmd: ClientCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        ClientCommand::Login {
            registry,
            username,
            password_stdin: _,
            conn,
        } => manage::login(&registry, &username, &conn).await,
        ClientCommand::Logout { registry } => manage::logout(&registry),
        ClientCommand::User(c) => manage::user(c).await,
        ClientCommand::Robot(c) => manage::robot(c).await,
        ClientCommand::Grant(c) => manage::grant(c).await,
        ClientCommand::Audit(c) => manage::audit(c).await,
        ClientCommand::Promote(a) => promote::promote(a).await,
        ClientCommand::Rollback(a) => promote::rollback(a).await,
        ClientCommand::History(a) => promote::history(a).await,
        ClientCommand::Envs(a) => promote::envs(a).await,
        ClientCommand::Approve(a) => promote::approve(a).await,
        ClientCommand::Deploy(a) => promote::deploy(a).await,
        ClientCommand::Deployments(a) => promote::deployments(a).await,
        ClientCommand::Scan(a) => scan::scan(a).await,
        ClientCommand::Vulns(c) => scan::vulns(c).await,
        ClientCommand::Waiver(c) => waiver::waiver(c).await,
        ClientCommand::Vex(a) => waiver::vex(a).await,
        ClientCommand::Canary(a) => promote::canary(a).await,
        ClientCommand::Diff(a) => diff::run(a).await,
        ClientCommand::Push(args) => push::run(args).await,
        ClientCommand::Supply(cmd) => supply::run(cmd).await,
        ClientCommand::Pull(args) => pull::run(args).await,
        ClientCommand::Ls { registry, conn } => {
            let client = Client::new(registry.trim_end_matches('/'), conn.plain_http)?;
            for repo in client
                .list_all("/v2/_catalog?n=1000", "repositories")
                .await?
            {
                println!("{repo}");
            }
            Ok(ExitCode::SUCCESS)
        }
        ClientCommand::Tags { repository, conn } => {
            let r: ImageRef = repository.parse()?;
            let client = Client::new(&r.host, conn.plain_http)?;
            for tag in client
                .list_all(&format!("/v2/{}/tags/list?n=1000", r.repo), "tags")
                .await?
            {
                println!("{tag}");
            }
            Ok(ExitCode::SUCCESS)
        }
        ClientCommand::Inspect { reference, conn } => {
            let r: ImageRef = reference.parse()?;
            let client = Client::new(&r.host, conn.plain_http)?;
            let m = client.get_manifest(&r.repo, r.require_reference()?).await?;
            let doc: Value = serde_json::from_slice(&m.bytes).context("manifest is not JSON")?;
            let referrers = client.referrers(&r.repo, &m.digest).await?;
            // Signatures, attestations, SBOMs and policy verdicts as this registry judges them
            // (null for a registry without bonded's management API).
            let supply = client
                .api(
                    reqwest::Method::GET,
                    &format!(
                        "/api/v1/supply/artifact?repository={}&reference={}",
                        r.repo, m.digest
                    ),
                    None,
                )
                .await
                .ok();
            let out = serde_json::json!({
                "reference": r.to_string(),
                "digest": m.digest.to_string(),
                "mediaType": m.media_type,
                "size": m.bytes.len(),
                "manifest": doc,
                "referrers": referrers.get("manifests").cloned().unwrap_or(Value::Array(vec![])),
                "supply": supply,
            });
            println!("{}", serde_json::to_string_pretty(&out)?);
            Ok(ExitCode::SUCCESS)
        }
        ClientCommand::Tag { source, tag, conn } => {
            let r: ImageRef = source.parse()?;
            let tag: Reference = Reference::Tag(tag.parse()?);
            let client = Client::new(&r.host, conn.plain_http)?;
            let m = client.get_manifest(&r.repo, r.require_reference()?).await?;
            let digest = client
                .put_manifest(&r.repo, &tag, &m.media_type, m.bytes.to_vec())
                .await?;
            println!("{}/{}:{} -> {digest}", r.host, r.repo, tag);
            Ok(ExitCode::SUCCESS)
        }
        ClientCommand::Delete { reference, conn } => {
            let r: ImageRef = reference.parse()?;
            let client = Client::new(&r.host, conn.plain_http)?;
            client
                .delete_manifest(&r.repo, r.require_reference()?)
                .await?;
            println!("deleted {r}");
            Ok(ExitCode::SUCCESS)
        }
    }
}
