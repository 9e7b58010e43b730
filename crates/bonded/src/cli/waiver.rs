//! Waivers and VEX from a client: `bonded waiver add|list|revoke` and `bonded vex`. Each is one
//! management API call (see `crates/http/src/api_waivers.rs`).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context};
use bonded_service::waivers::Waiver;
use reqwest::Method;
use serde_json::{json, Value};

use super::manage::{api, client, query};
use super::reference::ImageRef;
use super::Conn;

#[derive(clap::Subcommand)]
pub enum WaiverCommand {
    /// Accept a finding deliberately, until an expiry:
    /// bonded waiver add localhost:5000 --advisory CVE-2024-35195 --scope 'shop/**'
    /// --reason "not reachable: we never send proxied requests" --expires 30d
    Add {
        /// The registry: host[:port]
        registry: String,
        /// The advisory id or alias (CVE-…, GHSA-…); waives findings with it as id or alias.
        #[arg(long)]
        advisory: String,
        /// The repositories it covers: a pattern such as `shop/**`, `shop/` or `shop/app`.
        #[arg(
            long,
            conflicts_with = "artifact",
            required_unless_present = "artifact"
        )]
        scope: Option<String>,
        /// Or one artifact: repo@sha256:…
        #[arg(long)]
        artifact: Option<String>,
        /// Only findings in this package.
        #[arg(long)]
        package: Option<String>,
        /// Why the finding is accepted (required; published as the VEX analysis detail).
        #[arg(long)]
        reason: String,
        /// When it stops applying: 30d, 12h, a date (2027-01-31) or an RFC 3339 time; at most
        /// a year ahead.
        #[arg(long)]
        expires: String,
        /// CycloneDX analysis state (default exploitable: present, risk accepted).
        #[arg(long)]
        state: Option<String>,
        /// CycloneDX justification, with --state not_affected (e.g. code_not_reachable).
        #[arg(long)]
        justification: Option<String>,
        /// CycloneDX responses, comma-separated (default will_not_fix for exploitable).
        #[arg(long, value_delimiter = ',')]
        response: Vec<String>,
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        conn: Conn,
    },
    /// Active waivers (--all: revoked and expired too), newest first.
    List {
        registry: String,
        /// Only those that can cover this repository.
        #[arg(long)]
        repository: Option<String>,
        #[arg(long)]
        all: bool,
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        conn: Conn,
    },
    /// Revoke a waiver: its findings count again at once.
    Revoke {
        registry: String,
        id: i64,
        #[command(flatten)]
        conn: Conn,
    },
}

#[derive(clap::Args)]
pub struct VexArgs {
    /// The artifact: host/repo:tag or host/repo@digest.
    pub reference: String,
    /// Write the document here instead of stdout.
    #[arg(short, long)]
    pub output: Option<PathBuf>,
    #[command(flatten)]
    pub conn: Conn,
}

fn print_waiver(w: &Waiver) {
    let package = w
        .package
        .as_ref()
        .map_or(String::new(), |p| format!(" package {p}"));
    println!(
        "waiver {} [{}]: {} on {}{package} until {}, by {}: {}",
        w.id, w.status, w.advisory, w.scope, w.expires_at, w.author, w.reason
    );
    let mut analysis = format!("  analysis: {}", w.state);
    if let Some(j) = &w.justification {
        analysis.push_str(&format!(" ({j})"));
    }
    if !w.responses.is_empty() {
        analysis.push_str(&format!(", response {}", w.responses.join(",")));
    }
    if let (Some(at), Some(by)) = (&w.revoked_at, &w.revoked_by) {
        analysis.push_str(&format!("; revoked {at} by {by}"));
    }
    println!("{analysis}");
}

pub async fn waiver(cmd: WaiverCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        WaiverCommand::Add {
            registry,
            advisory,
            scope,
            artifact,
            package,
            reason,
            expires,
            state,
            justification,
            response,
            json,
            conn,
        } => {
            let c = client(&registry, &conn)?;
            let scope = match (scope, artifact) {
                (Some(s), None) => s,
                (None, Some(a)) if a.contains('@') => a,
                (None, Some(a)) => bail!("--artifact {a:?} must be repo@sha256:…"),
                _ => bail!("give --scope or --artifact"),
            };
            let mut body = json!({
                "advisory": advisory, "scope": scope, "reason": reason, "expires": expires,
            });
            if let Some(p) = package {
                body["package"] = json!(p);
            }
            if let Some(s) = state {
                body["state"] = json!(s);
            }
            if let Some(j) = justification {
                body["justification"] = json!(j);
            }
            if !response.is_empty() {
                body["responses"] = json!(response);
            }
            let v = api(&c, Method::POST, "/vulns/waivers", Some(body)).await?;
            if json {
                super::supply::print_json(&v)?;
            } else {
                print_waiver(&serde_json::from_value(v)?);
            }
            Ok(ExitCode::SUCCESS)
        }
        WaiverCommand::List {
            registry,
            repository,
            all,
            json,
            conn,
        } => {
            let c = client(&registry, &conn)?;
            let mut pairs = Vec::new();
            if let Some(r) = repository {
                pairs.push(("repository", r));
            }
            if all {
                pairs.push(("all", "true".to_string()));
            }
            let v = api(
                &c,
                Method::GET,
                &format!("/vulns/waivers?{}", query(&pairs)),
                None,
            )
            .await?;
            if json {
                super::supply::print_json(&v)?;
                return Ok(ExitCode::SUCCESS);
            }
            let list: Vec<Waiver> = serde_json::from_value(v["waivers"].clone())?;
            if list.is_empty() {
                println!("no waivers");
            }
            for w in &list {
                print_waiver(w);
            }
            Ok(ExitCode::SUCCESS)
        }
        WaiverCommand::Revoke { registry, id, conn } => {
            let c = client(&registry, &conn)?;
            let v = api(&c, Method::DELETE, &format!("/vulns/waivers/{id}"), None).await?;
            print_waiver(&serde_json::from_value(v)?);
            Ok(ExitCode::SUCCESS)
        }
    }
}

pub async fn vex(a: VexArgs) -> anyhow::Result<ExitCode> {
    let r: ImageRef = a.reference.parse()?;
    let Some(reference) = &r.reference else {
        bail!(
            "give a tag or digest: {}/{}:tag or @sha256:…",
            r.host,
            r.repo
        );
    };
    let c = client(&r.host, &a.conn)?;
    let pairs = [
        ("repository", r.repo.to_string()),
        ("reference", reference.to_string()),
    ];
    let doc: Value = api(
        &c,
        Method::GET,
        &format!("/vulns/vex?{}", query(&pairs)),
        None,
    )
    .await?;
    let text = serde_json::to_string_pretty(&doc)?;
    match &a.output {
        Some(path) => {
            std::fs::write(path, format!("{text}\n"))
                .with_context(|| format!("writing {}", path.display()))?;
            let n = doc["vulnerabilities"].as_array().map_or(0, Vec::len);
            let analysed = doc["vulnerabilities"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|v| v.get("analysis").is_some())
                .count();
            println!(
                "wrote {}: {n} vulnerabilities, {analysed} with an analysis from a waiver",
                path.display()
            );
        }
        None => println!("{text}"),
    }
    Ok(ExitCode::SUCCESS)
}
