//! Vulnerability commands: `scan` and `vulns affected`. Each is one management API call (see
//! `crates/http/src/api_scan.rs`).

use std::process::ExitCode;

use anyhow::bail;
use bonded_service::vulns::ScanResult;
use reqwest::Method;
use serde_json::json;

use super::manage::{api, client, query};
use super::reference::ImageRef;
use super::Conn;

#[derive(clap::Args)]
pub struct ScanArgs {
    /// The artifact: host/repo:tag or host/repo@digest.
    pub reference: String,
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub conn: Conn,
}

#[derive(clap::Subcommand)]
pub enum VulnsCommand {
    /// Artifacts whose latest scan has a finding of an advisory (id or alias):
    /// bonded vulns affected localhost:5000 CVE-2024-35195 [--env prod]
    Affected {
        /// The registry: host[:port]
        registry: String,
        advisory: String,
        /// Only the digests this environment points at.
        #[arg(long)]
        env: Option<String>,
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        conn: Conn,
    },
}

pub async fn scan(a: ScanArgs) -> anyhow::Result<ExitCode> {
    let r: ImageRef = a.reference.parse()?;
    let Some(reference) = &r.reference else {
        bail!(
            "give a tag or digest: {}/{}:tag or @sha256:…",
            r.host,
            r.repo
        );
    };
    let c = client(&r.host, &a.conn)?;
    let body = json!({"repository": r.repo.as_str(), "reference": reference.to_string()});
    let v = api(&c, Method::POST, "/scans", Some(body)).await?;
    let result: ScanResult = serde_json::from_value(v)?;
    crate::vulndb::print_scan(&result, a.json)?;
    Ok(ExitCode::SUCCESS)
}

pub async fn vulns(cmd: VulnsCommand) -> anyhow::Result<ExitCode> {
    let VulnsCommand::Affected {
        registry,
        advisory,
        env,
        json,
        conn,
    } = cmd;
    let c = client(&registry, &conn)?;
    let mut pairs = vec![("advisory", advisory)];
    if let Some(e) = env {
        pairs.push(("environment", e));
    }
    let v = api(
        &c,
        Method::GET,
        &format!("/vulns/affected?{}", query(&pairs)),
        None,
    )
    .await?;
    if json {
        super::supply::print_json(&v)?;
        return Ok(ExitCode::SUCCESS);
    }
    let results: Vec<ScanResult> = serde_json::from_value(v["affected"].clone())?;
    for r in results {
        let pkgs: Vec<String> = r
            .findings
            .iter()
            .map(|f| format!("{} {} ({})", f.package, f.installed, f.advisory_id))
            .collect();
        println!("{}@{}: {}", r.repository, r.digest, pkgs.join(", "));
    }
    Ok(ExitCode::SUCCESS)
}
