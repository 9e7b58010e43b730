//! Server-side vulnerability commands (`bonded vulndb import|status|scan|rescan`): they open the
//! configured stores through the composition root, like `bonded gc`, and are safe to run while
//! servers serve from the same stores.

use std::path::Path;
use std::process::ExitCode;

use bonded_service::vulns::{ScanResult, SEVERITIES};

use crate::app::App;
use crate::config::Config;

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

fn age(at_ms: i64) -> String {
    if at_ms == 0 {
        return "never".into();
    }
    let secs = (now_ms() - at_ms).max(0) / 1000;
    match secs {
        s if s < 120 => format!("{s}s ago"),
        s if s < 7200 => format!("{}m ago", s / 60),
        s if s < 172_800 => format!("{}h ago", s / 3600),
        s => format!("{}d ago", s / 86_400),
    }
}

/// `bonded vulndb import <dir|all.zip|URL>`.
pub async fn import(config: &Config, path: &Path) -> anyhow::Result<ExitCode> {
    let app = App::build(config).await?;
    if let Some(url) = path
        .to_str()
        .filter(|p| p.starts_with("http://") || p.starts_with("https://"))
    {
        // Downloaded in full, whatever the last fetch of it was.
        let state =
            crate::mirror::refresh(&app.registry, url, &config.mirror_options()?, false).await?;
        println!("imported {}: {}", state.url, state.message);
        return Ok(ExitCode::SUCCESS);
    }
    let r = app
        .registry
        .vulndb_import(path)
        .await
        .map_err(|e| anyhow::anyhow!("cannot import {}: {e}", path.display()))?;
    for e in &r.errors {
        println!("skipped {}: {}", e.file, e.message);
    }
    println!(
        "imported {}: {} records read: {} new, {} updated, {} withdrawn, {} unchanged, {} unreadable",
        r.source,
        r.read,
        r.new,
        r.updated,
        r.withdrawn,
        r.unchanged,
        r.errors.len()
    );
    println!(
        "database generation {}: {} active advisories, {} withdrawn",
        r.state.generation, r.state.active, r.state.withdrawn
    );
    Ok(ExitCode::SUCCESS)
}

/// `bonded vulndb status`.
pub async fn status(config: &Config) -> anyhow::Result<ExitCode> {
    let app = App::build(config).await?;
    let s = app.registry.vulndb_status().await?;
    println!(
        "generation {}: {} active advisories, {} withdrawn; updated {}, changed {}",
        s.state.generation,
        s.state.active,
        s.state.withdrawn,
        age(s.state.updated_at_ms),
        age(s.state.changed_at_ms)
    );
    for src in &s.sources {
        println!(
            "source {}: {} records, {} unreadable, imported {}",
            src.path,
            src.records,
            src.errors,
            age(src.imported_at_ms)
        );
    }
    let configured = config.scan.mirror_url.urls();
    let states = app.registry.mirror_states().await?;
    for url in &configured {
        let name = crate::mirror::check_url(url)?;
        if !states.iter().any(|m| m.url == name) {
            println!("mirror {name}: configured, never fetched");
        }
    }
    for m in &states {
        println!(
            "mirror {}: last fetch {}: {} ({}); last imported {}",
            m.url,
            age(m.fetched_at_ms),
            m.outcome,
            m.message,
            age(m.imported_at_ms)
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// Prints a scan result as a table (or JSON).
pub fn print_scan(r: &ScanResult, json: bool) -> anyhow::Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(r)?);
        return Ok(());
    }
    println!(
        "{}@{}: {} verified SBOMs, {} components, database generation {}",
        r.repository, r.digest, r.sboms, r.components, r.generation
    );
    let counts: Vec<String> = SEVERITIES
        .iter()
        .filter_map(|s| r.counts.get(*s).map(|n| format!("{n} {s}")))
        .collect();
    if r.findings.is_empty() {
        println!("no findings");
        return Ok(());
    }
    println!("{} findings: {}", r.findings.len(), counts.join(", "));
    println!(
        "{:<22} {:<28} {:<24} {:<12} {:<12} {:<9} {:<10} SUMMARY",
        "ID", "ALIASES", "PACKAGE", "INSTALLED", "FIXED", "SEVERITY", "WAIVED"
    );
    for f in &r.findings {
        println!(
            "{:<22} {:<28} {:<24} {:<12} {:<12} {:<9} {:<10} {}",
            f.advisory_id,
            f.aliases.join(","),
            f.package,
            f.installed,
            f.fixed.as_deref().unwrap_or("-"),
            f.severity,
            f.waiver
                .as_ref()
                .map_or("-".to_string(), |w| format!("waiver {}", w.id)),
            f.summary.as_deref().unwrap_or("")
        );
    }
    let waived: Vec<String> = r
        .findings
        .iter()
        .filter_map(|f| {
            f.waiver.as_ref().map(|w| {
                format!(
                    "{} waived by waiver {} ({}, until {}): {}",
                    f.advisory_id, w.id, w.author, w.expires_at, w.reason
                )
            })
        })
        .collect();
    for w in waived {
        println!("{w}");
    }
    Ok(())
}

/// `bonded vulndb scan <repo:tag|repo@digest>`: scans one artifact now.
pub async fn scan(config: &Config, target: &str, json: bool) -> anyhow::Result<ExitCode> {
    let (repo, reference) = crate::admin::parse_target(target)?;
    let app = App::build(config).await?;
    let r = app
        .registry
        .scan(&repo, &reference)
        .await
        .map_err(|e| anyhow::anyhow!("cannot scan {target}: {e}"))?;
    print_scan(&r, json)?;
    Ok(ExitCode::SUCCESS)
}

/// Artifacts per pass of the scan job. Each pass asks the backlog query once, and that query
/// weighs every SBOM referrer whatever the limit (bench/vulnscan.sh: seconds at 10,000), so
/// passes are large.
pub const SCAN_BATCH: u32 = 1000;

/// `bonded vulndb rescan`: one run of the scan job until nothing is due.
pub async fn rescan(config: &Config) -> anyhow::Result<ExitCode> {
    let app = App::build(config).await?;
    let started = std::time::Instant::now();
    let mut total = 0;
    loop {
        let n = app.registry.scan_due(SCAN_BATCH).await?;
        total += n;
        if n == 0 {
            break;
        }
    }
    println!(
        "scanned {total} artifacts in {:.2}s",
        started.elapsed().as_secs_f64()
    );
    Ok(ExitCode::SUCCESS)
}

/// `bonded vulndb affected <advisory>`: stored scans with a finding of an id or alias.
pub async fn affected(config: &Config, advisory: &str) -> anyhow::Result<ExitCode> {
    let app = App::build(config).await?;
    for r in app.registry.affected_by(advisory, None).await? {
        let pkgs: Vec<String> = r
            .findings
            .iter()
            .map(|f| format!("{} {} ({})", f.package, f.installed, f.advisory_id))
            .collect();
        println!("{}@{}: {}", r.repository, r.digest, pkgs.join(", "));
    }
    Ok(ExitCode::SUCCESS)
}
