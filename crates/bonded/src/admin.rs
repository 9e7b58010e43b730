//! Server-side maintenance commands (`bonded gc`): they open the configured stores through the
//! composition root, like `serve`, and are safe to run while servers are serving from the same
//! stores.

use std::process::ExitCode;
use std::time::Duration;

use crate::app::App;
use crate::config::Config;

/// `bonded gc`: one garbage collection run, or with `dry_run` what it would reclaim.
pub async fn gc(
    config: &Config,
    dry_run: bool,
    grace_secs: Option<u64>,
) -> anyhow::Result<ExitCode> {
    let grace = Duration::from_secs(grace_secs.unwrap_or(config.gc.grace_secs));
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
    let r = app.registry.gc_run(grace).await?;
    println!(
        "examined {} queued blobs: marked {}, kept {} (referenced), deferred {} (recently used)",
        r.mark.examined, r.mark.marked, r.mark.dropped, r.mark.deferred
    );
    println!(
        "deleted {} blobs ({} bytes); spared {} marked blobs used again; finished {} stalled deletions",
        r.swept, r.swept_bytes, r.spared, r.resumed
    );
    Ok(ExitCode::SUCCESS)
}
