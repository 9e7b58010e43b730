//! OSV mirrors: downloading a configured export archive (`[scan] mirror_url`, or `bonded vulndb
//! import <URL>` once) and importing it with the ordinary incremental import.
//!
//! The archive streams to a file under `<data_dir>/vulndb-mirror/` (never whole in memory), at
//! most `scan.mirror_max_bytes`, within `scan.mirror_timeout_secs`; only http and https are
//! fetched, redirects included, and only URLs from the configuration or the command line. The
//! last fetch of each URL is kept in the metadata store (`vuln_mirrors`) with the archive's
//! `ETag`/`Last-Modified`, sent back on the next fetch so an unchanged archive is not downloaded
//! again. Several nodes refreshing the same mirror is harmless: an import of records already
//! stored changes nothing (and does not bump the generation).

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context};
use bonded_meta::MirrorState;
use bonded_service::Registry;
use reqwest::header;
use tokio::io::AsyncWriteExt;

/// Limits of one fetch.
#[derive(Debug, Clone)]
pub struct MirrorOptions {
    pub max_bytes: u64,
    pub timeout: Duration,
    /// Where archives are downloaded to (removed after the import).
    pub dir: PathBuf,
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Checks a mirror URL: http or https, with a host. Returns it without credentials for logs and
/// the stored source name (the password of a `user:pass@` URL is never printed).
pub fn check_url(url: &str) -> anyhow::Result<String> {
    let parsed = reqwest::Url::parse(url)
        .with_context(|| format!("{:?} is not a URL", crate::config::redact_url(url)))?;
    if !matches!(parsed.scheme(), "http" | "https") || parsed.host_str().is_none() {
        bail!(
            "mirror URL {:?} must be an http:// or https:// URL of an OSV export archive (…/all.zip)",
            crate::config::redact_url(url)
        );
    }
    let mut shown = parsed.clone();
    let _ = shown.set_password(None);
    let _ = shown.set_username("");
    Ok(shown.to_string())
}

/// Removes the downloaded file however the fetch ends.
struct Download(PathBuf);

impl Drop for Download {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Fetches `url` and imports it. With `conditional`, the validators of the last archive imported
/// from it are sent and a `304 Not Modified` skips the download (the database still counts as
/// updated now: it holds what the mirror serves). The outcome, failed or not, is recorded.
pub async fn refresh(
    registry: &Registry,
    url: &str,
    options: &MirrorOptions,
    conditional: bool,
) -> anyhow::Result<MirrorState> {
    let name = check_url(url)?;
    let previous = registry.mirror_state(&name).await?.unwrap_or_default();
    match fetch(registry, url, &name, &previous, options, conditional).await {
        Ok(state) => {
            registry.record_mirror(&state).await?;
            Ok(state)
        }
        Err(e) => {
            let state = MirrorState {
                url: name.clone(),
                fetched_at_ms: now_ms(),
                outcome: "failed".into(),
                message: format!("{e:#}"),
                ..previous
            };
            registry.record_mirror(&state).await?;
            Err(e.context(format!("refreshing the vulnerability mirror {name}")))
        }
    }
}

async fn fetch(
    registry: &Registry,
    url: &str,
    name: &str,
    previous: &MirrorState,
    options: &MirrorOptions,
    conditional: bool,
) -> anyhow::Result<MirrorState> {
    let client = reqwest::Client::builder()
        .timeout(options.timeout)
        .redirect(reqwest::redirect::Policy::custom(|a| {
            if a.previous().len() >= 5 {
                a.error("more than 5 redirects")
            } else if matches!(a.url().scheme(), "http" | "https") {
                a.follow()
            } else {
                a.error("redirected to a URL that is not http or https")
            }
        }))
        .build()?;
    let mut request = client.get(url);
    if conditional && previous.imported_at_ms > 0 {
        if let Some(etag) = &previous.etag {
            request = request.header(header::IF_NONE_MATCH, etag);
        }
        if let Some(lm) = &previous.last_modified {
            request = request.header(header::IF_MODIFIED_SINCE, lm);
        }
    }
    let mut response = request
        .send()
        .await
        .map_err(|e| anyhow::anyhow!("GET failed: {}", e.without_url()))?;
    let status = response.status();
    if status == reqwest::StatusCode::NOT_MODIFIED {
        let state = registry
            .vulndb_unchanged(name)
            .await
            .context("marking the database updated")?;
        return Ok(MirrorState {
            url: name.to_string(),
            fetched_at_ms: now_ms(),
            outcome: "unchanged".into(),
            message: format!(
                "not modified since the last import; database generation {}",
                state.generation
            ),
            ..previous.clone()
        });
    }
    if !status.is_success() {
        bail!("GET answered HTTP {status}");
    }
    if let Some(len) = response.content_length() {
        if len > options.max_bytes {
            bail!(
                "the archive is {len} bytes, more than scan.mirror_max_bytes ({})",
                options.max_bytes
            );
        }
    }
    let header_of = |h: header::HeaderName| {
        response
            .headers()
            .get(h)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    let etag = header_of(header::ETAG);
    let last_modified = header_of(header::LAST_MODIFIED);
    tokio::fs::create_dir_all(&options.dir)
        .await
        .with_context(|| format!("creating {}", options.dir.display()))?;
    let download = Download(options.dir.join(format!(
        "mirror-{}-{}.zip",
        std::process::id(),
        uuid::Uuid::new_v4().simple()
    )));
    let mut file = tokio::fs::File::create(&download.0)
        .await
        .with_context(|| format!("creating {}", download.0.display()))?;
    let mut size: u64 = 0;
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|e| anyhow::anyhow!("download failed: {}", e.without_url()))?
    {
        size += chunk.len() as u64;
        if size > options.max_bytes {
            bail!(
                "the archive is larger than scan.mirror_max_bytes ({}); download stopped",
                options.max_bytes
            );
        }
        file.write_all(&chunk).await?;
    }
    file.flush().await?;
    drop(file);
    let report = import(registry, &download.0, name).await?;
    tracing::info!(
        mirror = %name, size_bytes = size, new = report.new, updated = report.updated,
        withdrawn = report.withdrawn, generation = report.state.generation,
        "refreshed the vulnerability database from its mirror"
    );
    Ok(MirrorState {
        url: name.to_string(),
        fetched_at_ms: now_ms(),
        outcome: "imported".into(),
        message: format!(
            "{size} bytes, {} records: {} new, {} updated, {} withdrawn, {} unchanged, {} unreadable; database generation {}",
            report.read,
            report.new,
            report.updated,
            report.withdrawn,
            report.unchanged,
            report.errors.len(),
            report.state.generation
        ),
        etag,
        last_modified,
        imported_at_ms: now_ms(),
    })
}

async fn import(
    registry: &Registry,
    path: &Path,
    name: &str,
) -> anyhow::Result<bonded_service::vulns::ImportReport> {
    registry
        .vulndb_import_as(path, name)
        .await
        .map_err(|e| anyhow::anyhow!("the downloaded file is not an OSV export: {e}"))
}
