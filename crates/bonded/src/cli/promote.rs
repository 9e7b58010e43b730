//! Promotion commands: `promote`, `rollback`, `history`, `envs`, `approve`, `deploy`,
//! `deployments` and `canary`. Each is one management API call (see
//! `crates/http/src/api_promotion.rs`).

use std::process::ExitCode;

use anyhow::{bail, Context};
use reqwest::Method;
use serde_json::{json, Value};

use super::manage::{api, client, query};
use super::reference::ImageRef;
use super::Conn;

#[derive(clap::Args)]
pub struct PromoteArgs {
    /// The artifact: host/repo@digest or host/repo:tag.
    pub reference: String,
    /// The environment to promote into.
    #[arg(long)]
    pub to: String,
    /// Why, recorded with the move.
    #[arg(long, default_value = "")]
    pub note: String,
    /// Evaluate the gates and print their verdicts; move nothing.
    #[arg(long)]
    pub dry_run: bool,
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub conn: Conn,
}

#[derive(clap::Args)]
pub struct RollbackArgs {
    /// host/repo
    pub repository: String,
    #[arg(long)]
    pub env: String,
    /// A digest from the environment's history; default: the previous one.
    #[arg(long)]
    pub to: Option<String>,
    #[arg(long, default_value = "")]
    pub note: String,
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub conn: Conn,
}

#[derive(clap::Args)]
pub struct HistoryArgs {
    /// host/repo
    pub repository: String,
    #[arg(long)]
    pub env: Option<String>,
    #[arg(long, default_value_t = 100)]
    pub limit: u32,
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub conn: Conn,
}

#[derive(clap::Args)]
pub struct EnvsArgs {
    /// host/repo
    pub repository: String,
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub conn: Conn,
}

#[derive(clap::Args)]
pub struct ApproveArgs {
    /// host/repo@digest or host/repo:tag
    pub reference: String,
    #[arg(long)]
    pub env: String,
    #[arg(long, default_value = "")]
    pub comment: String,
    #[command(flatten)]
    pub conn: Conn,
}

#[derive(clap::Args)]
pub struct DeployArgs {
    /// host/repo@digest that was deployed
    pub reference: String,
    #[arg(long)]
    pub env: String,
    /// Cluster, region or host the deployment went to.
    #[arg(long)]
    pub target: String,
    #[arg(long, default_value = "succeeded")]
    pub status: String,
    #[command(flatten)]
    pub conn: Conn,
}

#[derive(clap::Args)]
pub struct DeploymentsArgs {
    /// host/repo
    pub repository: String,
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub conn: Conn,
}

#[derive(clap::Args)]
pub struct CanaryArgs {
    /// host/repo@digest of the canary
    pub reference: String,
    /// The environment the canary runs in (recorded; needed for --rollback-on-fail).
    #[arg(long)]
    pub env: Option<String>,
    /// A JSON file: `{"metrics":[{"name","direction","tolerance","baseline":[…],"canary":[…]}]}`
    /// or `{"queries":[{"name","baseline_query","canary_query"}],"window":{…}}`, plus optional
    /// `alpha`, `pass_score`, `marginal_score`.
    #[arg(long)]
    pub samples: std::path::PathBuf,
    /// Roll the environment back if the verdict is `fail` and it points at this digest.
    #[arg(long)]
    pub rollback_on_fail: bool,
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub conn: Conn,
}

fn image(s: &str) -> anyhow::Result<ImageRef> {
    s.parse()
}

fn reference_of(r: &ImageRef) -> anyhow::Result<String> {
    match &r.reference {
        Some(x) => Ok(x.to_string()),
        None => bail!(
            "give a tag or digest: {}/{}@sha256:… or :tag",
            r.host,
            r.repo
        ),
    }
}

fn short(d: &Value) -> String {
    d.as_str()
        .map(|s| s.chars().take(19).collect())
        .unwrap_or_else(|| "-".into())
}

fn print_gates(gates: &Value) {
    for g in gates.as_array().into_iter().flatten() {
        let mark = match (g["passed"].as_bool(), g["enforced"].as_bool()) {
            (Some(true), _) => "pass",
            (_, Some(true)) => "FAIL",
            _ => "warn",
        };
        println!(
            "  [{mark}] {:<10} {}",
            g["check"].as_str().unwrap_or("?"),
            g["detail"].as_str().unwrap_or("")
        );
    }
}

fn print_move(m: &Value) {
    println!(
        "{}  {:<8} {:<10} {}  {}{}",
        m["at"].as_str().unwrap_or("?"),
        m["action"].as_str().unwrap_or("?"),
        m["environment"].as_str().unwrap_or("?"),
        m["digest"].as_str().unwrap_or("?"),
        m["actor"].as_str().unwrap_or("?"),
        match m["note"].as_str() {
            Some(n) if !n.is_empty() => format!("  ({n})"),
            _ => String::new(),
        }
    );
}

pub async fn promote(a: PromoteArgs) -> anyhow::Result<ExitCode> {
    let r = image(&a.reference)?;
    let c = client(&r.host, &a.conn)?;
    let body = json!({
        "repository": r.repo.as_str(),
        "reference": reference_of(&r)?,
        "environment": a.to,
        "note": a.note,
        "dry_run": a.dry_run,
    });
    let v = api(&c, Method::POST, "/promotions", Some(body)).await?;
    if a.json {
        super::supply::print_json(&v)?;
        return Ok(ExitCode::SUCCESS);
    }
    let d = v["digest"].as_str().unwrap_or("?");
    if a.dry_run {
        let ok = v["gates"]
            .as_array()
            .into_iter()
            .flatten()
            .all(|g| g["passed"] == json!(true) || g["enforced"] == json!(false));
        println!(
            "{}/{}@{d} → {}: {}",
            r.host,
            r.repo,
            a.to,
            if ok {
                "would be promoted"
            } else {
                "would be refused"
            }
        );
        print_gates(&v["gates"]);
        return Ok(if ok {
            ExitCode::SUCCESS
        } else {
            ExitCode::from(1)
        });
    }
    if v["promoted"] == json!(true) {
        println!("promoted {}/{}@{d} to {}", r.host, r.repo, a.to);
        if let Some(att) = v["attestation"].as_str() {
            println!("attestation {att}");
        }
    } else {
        println!("{} already points at {d}", a.to);
    }
    print_gates(&v["gates"]);
    Ok(ExitCode::SUCCESS)
}

pub async fn rollback(a: RollbackArgs) -> anyhow::Result<ExitCode> {
    let r = image(&a.repository)?;
    let c = client(&r.host, &a.conn)?;
    let body = json!({
        "repository": r.repo.as_str(),
        "environment": a.env,
        "to": a.to,
        "note": a.note,
    });
    let v = api(&c, Method::POST, "/rollbacks", Some(body)).await?;
    if a.json {
        super::supply::print_json(&v)?;
    } else {
        println!(
            "rolled {} of {}/{} back from {} to {}",
            a.env,
            r.host,
            r.repo,
            short(&v["previous"]),
            v["digest"].as_str().unwrap_or("?")
        );
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn history(a: HistoryArgs) -> anyhow::Result<ExitCode> {
    let r = image(&a.repository)?;
    let c = client(&r.host, &a.conn)?;
    let mut pairs = vec![
        ("repository", r.repo.to_string()),
        ("limit", a.limit.to_string()),
    ];
    if let Some(e) = &a.env {
        pairs.push(("environment", e.clone()));
    }
    let v = api(
        &c,
        Method::GET,
        &format!("/history?{}", query(&pairs)),
        None,
    )
    .await?;
    if a.json {
        super::supply::print_json(&v)?;
        return Ok(ExitCode::SUCCESS);
    }
    for m in v["history"].as_array().into_iter().flatten() {
        print_move(m);
        print_gates(&m["gates"]);
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn envs(a: EnvsArgs) -> anyhow::Result<ExitCode> {
    let r = image(&a.repository)?;
    let c = client(&r.host, &a.conn)?;
    let q = query(&[("repository", r.repo.to_string())]);
    let v = api(&c, Method::GET, &format!("/environments?{q}"), None).await?;
    if a.json {
        super::supply::print_json(&v)?;
        return Ok(ExitCode::SUCCESS);
    }
    for e in v["environments"].as_array().into_iter().flatten() {
        println!(
            "{:<12} {}  {}",
            e["name"].as_str().unwrap_or("?"),
            e["digest"].as_str().unwrap_or("(not set)"),
            e["last"]["at"].as_str().unwrap_or("")
        );
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn approve(a: ApproveArgs) -> anyhow::Result<ExitCode> {
    let r = image(&a.reference)?;
    let c = client(&r.host, &a.conn)?;
    let body = json!({
        "repository": r.repo.as_str(),
        "reference": reference_of(&r)?,
        "environment": a.env,
        "comment": a.comment,
    });
    let v = api(&c, Method::POST, "/approvals", Some(body)).await?;
    println!(
        "{} ({}) approved {}@{} for {}",
        v["actor"].as_str().unwrap_or("?"),
        v["role"].as_str().unwrap_or("?"),
        r.repo,
        v["digest"].as_str().unwrap_or("?"),
        a.env
    );
    Ok(ExitCode::SUCCESS)
}

pub async fn deploy(a: DeployArgs) -> anyhow::Result<ExitCode> {
    let r = image(&a.reference)?;
    let c = client(&r.host, &a.conn)?;
    let digest = match &r.reference {
        Some(bonded_types::Reference::Digest(d)) => d.to_string(),
        _ => bail!(
            "report a deployment by digest: {}/{}@sha256:…",
            r.host,
            r.repo
        ),
    };
    let body = json!({
        "repository": r.repo.as_str(),
        "environment": a.env,
        "target": a.target,
        "digest": digest,
        "status": a.status,
    });
    let v = api(&c, Method::POST, "/deployments", Some(body)).await?;
    if v["mismatch"] == json!(true) {
        println!(
            "recorded; MISMATCH: {} points at {}, not {digest}",
            a.env,
            v["expected"].as_str().unwrap_or("nothing")
        );
    } else {
        println!("recorded: {digest} on {} matches {}", a.target, a.env);
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn deployments(a: DeploymentsArgs) -> anyhow::Result<ExitCode> {
    let r = image(&a.repository)?;
    let c = client(&r.host, &a.conn)?;
    let q = query(&[("repository", r.repo.to_string())]);
    let v = api(&c, Method::GET, &format!("/deployments?{q}"), None).await?;
    if a.json {
        super::supply::print_json(&v)?;
        return Ok(ExitCode::SUCCESS);
    }
    for d in v["running"].as_array().into_iter().flatten() {
        println!(
            "{:<10} {:<16} {}  {}{}",
            d["environment"].as_str().unwrap_or("?"),
            d["target"].as_str().unwrap_or("?"),
            d["digest"].as_str().unwrap_or("?"),
            d["status"].as_str().unwrap_or("?"),
            if d["mismatch"] == json!(true) {
                "  MISMATCH"
            } else {
                ""
            }
        );
    }
    println!(
        "artifact mismatch rate: {:.2} %",
        100.0 * v["mismatch_rate"].as_f64().unwrap_or(0.0)
    );
    Ok(ExitCode::SUCCESS)
}

pub async fn canary(a: CanaryArgs) -> anyhow::Result<ExitCode> {
    let r = image(&a.reference)?;
    let c = client(&r.host, &a.conn)?;
    let digest = match &r.reference {
        Some(bonded_types::Reference::Digest(d)) => d.to_string(),
        _ => bail!("name the canary by digest: {}/{}@sha256:…", r.host, r.repo),
    };
    let text = std::fs::read_to_string(&a.samples)
        .with_context(|| format!("reading {}", a.samples.display()))?;
    let mut body: Value = serde_json::from_str(&text)
        .with_context(|| format!("{} is not JSON", a.samples.display()))?;
    let Some(obj) = body.as_object_mut() else {
        bail!("{} must hold a JSON object", a.samples.display());
    };
    obj.insert("repository".into(), json!(r.repo.as_str()));
    obj.insert("digest".into(), json!(digest));
    if let Some(e) = &a.env {
        obj.insert("environment".into(), json!(e));
    }
    obj.insert("rollback_on_fail".into(), json!(a.rollback_on_fail));
    let v = api(&c, Method::POST, "/canary", Some(body)).await?;
    if a.json {
        super::supply::print_json(&v)?;
    } else {
        println!(
            "verdict {} (score {:.1}): {}",
            v["verdict"].as_str().unwrap_or("?"),
            v["score"].as_f64().unwrap_or(0.0),
            v["report"]["summary"].as_str().unwrap_or("")
        );
        for m in v["report"]["metrics"].as_array().into_iter().flatten() {
            println!(
                "  {:<20} {:<5} p={:.4} baseline median {} canary median {}",
                m["name"].as_str().unwrap_or("?"),
                m["classification"].as_str().unwrap_or("?"),
                m["p_value"].as_f64().unwrap_or(f64::NAN),
                m["baseline_median"],
                m["canary_median"]
            );
        }
        if let Some(rb) = v["rolled_back"].as_object() {
            println!(
                "rolled {} back to {}",
                rb["environment"].as_str().unwrap_or("?"),
                rb["digest"].as_str().unwrap_or("?")
            );
        }
    }
    Ok(if v["verdict"] == json!("fail") {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}
