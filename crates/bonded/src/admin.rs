//! Server-side maintenance commands (`bonded gc`, `bonded restore`, `bonded retention`,
//! `bonded storage report`, `bonded scrub`): they open the configured
//! stores through the composition root, like `serve`, and are safe to run while servers are
//! serving from the same stores.

use std::process::ExitCode;
use std::time::Duration;

use bonded_service::Deleted;
use bonded_types::{Reference, RepoName};

use crate::app::App;
use crate::config::Config;

/// `bonded gc`: one garbage collection run, or with `dry_run` what it would reclaim.
pub async fn gc(
    config: &Config,
    dry_run: bool,
    grace_secs: Option<u64>,
) -> anyhow::Result<ExitCode> {
    let mut policy = config.gc_policy();
    if let Some(secs) = grace_secs {
        policy.grace = Duration::from_secs(secs);
    }
    let grace = policy.grace;
    if grace.is_zero() {
        anyhow::bail!("--grace-secs must be positive");
    }
    let app = App::build(config).await?;
    if dry_run {
        let plan = app.registry.gc_plan(grace).await?;
        println!(
            "would delete now:       {} blobs, {} bytes",
            plan.sweepable, plan.sweepable_bytes
        );
        println!(
            "unused, in grace period: {} blobs, {} bytes (deleted after {}s more without use)",
            plan.pending,
            plan.pending_bytes,
            grace.as_secs()
        );
        return Ok(ExitCode::SUCCESS);
    }
    let r = app.registry.gc_run(&policy).await?;
    println!(
        "forgot {} deleted manifests past the undelete window",
        r.purged
    );
    println!(
        "examined {} queued blobs: marked {}, kept {} (referenced), deferred {} (recently used)",
        r.mark.examined, r.mark.marked, r.mark.dropped, r.mark.deferred
    );
    println!(
        "deleted {} blobs ({} bytes); spared {} marked blobs used again; finished {} stalled deletions",
        r.swept, r.swept_bytes, r.spared, r.resumed
    );
    println!(
        "marking took {:.2}s, sweeping {:.2}s",
        r.mark_time.as_secs_f64(),
        r.sweep_time.as_secs_f64()
    );
    Ok(ExitCode::SUCCESS)
}

/// `bonded storage report`: usage per namespace, growth over a week and a month, dedupe, and
/// what collection would reclaim.
pub async fn storage_report(config: &Config, json: bool) -> anyhow::Result<ExitCode> {
    let app = App::build(config).await?;
    let week = Duration::from_secs(7 * 86400);
    let month = Duration::from_secs(30 * 86400);
    let r = app
        .registry
        .storage_report(&[week, month], config.gc_policy().grace)
        .await?;
    if json {
        let namespaces: Vec<serde_json::Value> = r
            .namespaces
            .iter()
            .map(|n| {
                serde_json::json!({
                    "namespace": n.namespace,
                    "artifacts": n.artifacts,
                    "logical_bytes": n.logical_bytes,
                    "physical_bytes": n.physical_bytes,
                    "logical_added_7d": n.logical_added[0],
                    "logical_added_30d": n.logical_added[1],
                    "physical_added_7d": n.physical_added[0],
                    "physical_added_30d": n.physical_added[1],
                    "quota_used_bytes": n.charged_bytes,
                    "quota_max_bytes": app.registry.quota_of(&n.namespace).and_then(|q| q.max_bytes),
                    "quota_used_pct": quota_pct(&app, n),
                    "quota_max_artifacts": app.registry.quota_of(&n.namespace).and_then(|q| q.max_artifacts),
                })
            })
            .collect();
        let doc = serde_json::json!({
            "namespaces": namespaces,
            "stored_blobs": r.stored_blobs,
            "stored_bytes": r.stored_bytes,
            "reclaimable_bytes": r.reclaimable.sweepable_bytes + r.reclaimable.pending_bytes,
        });
        println!("{}", serde_json::to_string_pretty(&doc)?);
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "{:<24} {:>9} {:>14} {:>14} {:>7} {:>12} {:>12} {:>12} {:>12} {:>14} {:>14} {:>7}",
        "namespace",
        "artifacts",
        "logical",
        "physical",
        "dedupe",
        "+logical 7d",
        "+physical 7d",
        "+logical 30d",
        "+physical 30d",
        "quota used",
        "quota",
        "used %"
    );
    for n in &r.namespaces {
        let dedupe = if n.physical_bytes == 0 {
            1.0
        } else {
            n.logical_bytes as f64 / n.physical_bytes as f64
        };
        let quota = app.registry.quota_of(&n.namespace);
        let limit = match quota {
            Some(q) => [
                q.max_bytes.map(|b| b.to_string()),
                q.max_artifacts.map(|a| format!("{a} art.")),
            ]
            .into_iter()
            .flatten()
            .collect::<Vec<_>>()
            .join(", "),
            None => "-".into(),
        };
        let pct = quota_pct(&app, n).map_or("-".into(), |p| format!("{p:.1}%"));
        println!(
            "{:<24} {:>9} {:>14} {:>14} {:>6.2}x {:>12} {:>12} {:>12} {:>12} {:>14} {:>14} {:>7}",
            n.namespace,
            n.artifacts,
            n.logical_bytes,
            n.physical_bytes,
            dedupe,
            n.logical_added[0],
            n.physical_added[0],
            n.logical_added[1],
            n.physical_added[1],
            n.charged_bytes,
            limit,
            pct
        );
    }
    let logical: u64 = r.namespaces.iter().map(|n| n.logical_bytes).sum();
    println!(
        "store: {} blobs, {} bytes (logical {} bytes across namespaces: dedupe {:.2}x); \
         reclaimable by collection: {} bytes now, {} more after their grace period",
        r.stored_blobs,
        r.stored_bytes,
        logical,
        if r.stored_bytes == 0 {
            1.0
        } else {
            logical as f64 / r.stored_bytes as f64
        },
        r.reclaimable.sweepable_bytes,
        r.reclaimable.pending_bytes
    );
    Ok(ExitCode::SUCCESS)
}

/// How full the namespace's quota is, in percent: the fuller of bytes and artifacts.
fn quota_pct(app: &App, n: &bonded_service::NamespaceUsage) -> Option<f64> {
    let q = app.registry.quota_of(&n.namespace)?;
    let pct = |used: u64, max: u64| {
        if max == 0 {
            100.0
        } else {
            used as f64 * 100.0 / max as f64
        }
    };
    let bytes = q.max_bytes.map(|m| pct(n.charged_bytes, m));
    let artifacts = q.max_artifacts.map(|m| pct(n.artifacts, m));
    match (bytes, artifacts) {
        (Some(b), Some(a)) => Some(b.max(a)),
        (b, a) => b.or(a),
    }
}

/// `bonded scrub`: re-hash every blob at a bounded rate and quarantine corrupt or missing ones.
/// Exits 1 when it found any, so a cron job or CI step notices.
pub async fn scrub(config: &Config, rate: Option<&str>, json: bool) -> anyhow::Result<ExitCode> {
    let rate = match rate {
        Some(r) => bonded_types::parse_size(r).map_err(|e| anyhow::anyhow!("--rate: {e}"))?,
        None => config.scrub_rate()?,
    };
    if rate == 0 {
        anyhow::bail!("--rate must be positive, e.g. 50MiB");
    }
    let app = App::build(config).await?;
    let r = app
        .registry
        .scrub_run(&bonded_service::ScrubOptions {
            rate_bytes_per_sec: Some(rate),
        })
        .await?;
    let quarantined = app.registry.quarantined_blobs().await?;
    if json {
        let findings: Vec<serde_json::Value> = r
            .findings
            .iter()
            .map(|f| {
                serde_json::json!({
                    "digest": f.digest.to_string(),
                    "problem": f.problem.reason(),
                    "detail": match &f.problem {
                        bonded_service::ScrubProblem::Corrupt { detail } => detail.clone(),
                        bonded_service::ScrubProblem::Missing => String::new(),
                    },
                })
            })
            .collect();
        let all: Vec<serde_json::Value> = quarantined
            .iter()
            .map(|q| {
                serde_json::json!({
                    "digest": q.digest.to_string(),
                    "reason": q.reason,
                    "detail": q.detail,
                    "quarantined_at_ms": q.quarantined_at_ms,
                })
            })
            .collect();
        let doc = serde_json::json!({
            "checked": r.checked,
            "ok": r.ok,
            "corrupt": r.corrupt,
            "missing": r.missing,
            "bytes": r.bytes,
            "already_quarantined": r.already_quarantined,
            "errors": r.errors,
            "duration_secs": r.duration.as_secs_f64(),
            "findings": findings,
            "quarantined": all,
        });
        println!("{}", serde_json::to_string_pretty(&doc)?);
    } else {
        for f in &r.findings {
            match &f.problem {
                bonded_service::ScrubProblem::Corrupt { detail } => {
                    println!("corrupt  {}  {detail}; quarantined", f.digest)
                }
                bonded_service::ScrubProblem::Missing => {
                    println!("missing  {}  no bytes stored; quarantined", f.digest)
                }
            }
        }
        println!(
            "checked {} blobs ({} bytes) in {:.1}s: {} ok, {} corrupt, {} missing; {} skipped as \
             already quarantined, {} unreadable (retried next run)",
            r.checked,
            r.bytes,
            r.duration.as_secs_f64(),
            r.ok,
            r.corrupt,
            r.missing,
            r.already_quarantined,
            r.errors
        );
        println!(
            "{} blobs quarantined in total: pulls of them fail until the same digest is pushed \
             again",
            quarantined.len()
        );
    }
    Ok(if r.corrupt + r.missing > 0 {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

/// `bonded retention plan|apply`: what the retention rules delete now, and (apply) delete it.
pub async fn retention(config: &Config, apply: bool) -> anyhow::Result<ExitCode> {
    let retention = config.retention()?;
    if retention.is_empty() {
        println!("no retention rules are configured ([[retention.rules]])");
        return Ok(ExitCode::SUCCESS);
    }
    let app = App::build(config).await?;
    let plan = if apply {
        let plan = app.registry.retention_apply(&retention).await?;
        crate::app::audit_retention(app.audit.as_ref(), &plan).await;
        plan
    } else {
        app.registry.retention_plan(&retention).await?
    };
    for d in &plan.deletions {
        let tags: Vec<String> = d.tags.iter().map(ToString::to_string).collect();
        let tags = if tags.is_empty() {
            String::new()
        } else {
            format!(" (tags {})", tags.join(", "))
        };
        println!("{}@{}{tags}: {}", d.repo, d.digest, d.reason);
    }
    println!(
        "{} {} manifests; {} bytes freed once the undelete window ({}s) and the grace period pass",
        if apply { "deleted" } else { "would delete" },
        plan.deletions.len(),
        plan.bytes_freed,
        config.gc.undelete_window_secs
    );
    Ok(ExitCode::SUCCESS)
}

/// `bonded restore`: brings back a deleted tag (`repo:tag`) or manifest (`repo@digest`), or with
/// `list` shows what in a repository can still be restored.
pub async fn restore(config: &Config, target: &str, list: bool) -> anyhow::Result<ExitCode> {
    let app = App::build(config).await?;
    if list {
        let repo: RepoName = target
            .parse()
            .map_err(|e| anyhow::anyhow!("{target:?} is not a repository name: {e}"))?;
        let window = config.gc.undelete_window_secs as i64 * 1000;
        for item in app.registry.deleted(&repo).await? {
            let (what, at) = match item {
                Deleted::Manifest {
                    digest,
                    deleted_at_ms,
                } => (format!("{repo}@{digest}"), deleted_at_ms),
                Deleted::Tag {
                    tag,
                    digest,
                    deleted_at_ms,
                } => (format!("{repo}:{tag} -> {digest}"), deleted_at_ms),
            };
            let left_h = (at + window - now_ms()).max(0) / 3_600_000;
            println!("{what}  (restorable for about {left_h} more hours)");
        }
        return Ok(ExitCode::SUCCESS);
    }
    let (repo, reference) = parse_target(target)?;
    let restored = app.registry.restore(&repo, &reference).await?;
    let tags: Vec<String> = restored.tags.iter().map(ToString::to_string).collect();
    println!(
        "restored {repo}@{}{}",
        restored.digest,
        if tags.is_empty() {
            String::new()
        } else {
            format!(" with tags {}", tags.join(", "))
        }
    );
    Ok(ExitCode::SUCCESS)
}

/// `repo:tag` or `repo@digest` (no registry host: this command works on the local stores).
pub(crate) fn parse_target(s: &str) -> anyhow::Result<(RepoName, Reference)> {
    let (repo, reference) = if let Some((repo, digest)) = s.split_once('@') {
        (
            repo,
            Reference::Digest(
                digest
                    .parse()
                    .map_err(|e| anyhow::anyhow!("{digest:?}: {e}"))?,
            ),
        )
    } else {
        let slash = s.rfind('/').map_or(0, |i| i + 1);
        match s[slash..].rfind(':') {
            Some(i) => {
                let tag = &s[slash + i + 1..];
                (
                    &s[..slash + i],
                    Reference::Tag(tag.parse().map_err(|e| anyhow::anyhow!("{tag:?}: {e}"))?),
                )
            }
            None => {
                anyhow::bail!("say what to restore: <repo>:<tag> or <repo>@<digest>, not {s:?}")
            }
        }
    };
    let repo = repo
        .parse()
        .map_err(|e| anyhow::anyhow!("{repo:?} is not a repository name: {e}"))?;
    Ok((repo, reference))
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn restore_targets_parse() {
        let (r, t) = parse_target("team/app:v1").unwrap();
        assert_eq!((r.as_str(), t.to_string().as_str()), ("team/app", "v1"));
        let d = format!("sha256:{}", "a".repeat(64));
        let (r, t) = parse_target(&format!("team/app@{d}")).unwrap();
        assert_eq!((r.as_str(), t.to_string()), ("team/app", d));
        assert!(parse_target("team/app").is_err());
        assert!(parse_target("Team/app:v1").is_err());
        assert!(parse_target("team/app@sha256:zz").is_err());
    }
}
