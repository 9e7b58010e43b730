//! `bonded migrate --to <config>`: copies a registry from the configured backends to another
//! pair (e.g. filesystem + SQLite → S3 + PostgreSQL). Goes through the service layer of both
//! sides, so every blob is re-hashed and every manifest re-validated on the way in. Re-running it
//! resumes: whatever the target already has is skipped.

use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;
use bonded_service::{BlobImport, Registry};
use futures::StreamExt;
use indicatif::{ProgressBar, ProgressStyle};

use crate::app::App;
use crate::config::{self, Config};

#[derive(Debug, Default)]
struct Tally {
    repos: usize,
    blobs_copied: usize,
    blobs_linked: usize,
    blobs_present: usize,
    bytes_copied: u64,
    manifests: usize,
    tags: usize,
    trusted_keys: usize,
}

pub async fn run(source: &Config, target_file: &Path, quiet: bool) -> anyhow::Result<ExitCode> {
    let target = config::load(Some(target_file), config::Overrides::default())
        .with_context(|| format!("loading the target configuration {}", target_file.display()))?
        .config;
    let from = App::build(source)
        .await
        .context("opening the source registry")?
        .registry;
    let to = App::build(&target)
        .await
        .context("opening the target registry")?
        .registry;

    let mut repos = Vec::new();
    let mut last: Option<String> = None;
    loop {
        let page = from.catalog(Some(1000), last.as_deref()).await?;
        last = page.items.last().map(|r| r.to_string());
        repos.extend(page.items);
        if !page.more {
            break;
        }
    }
    let mut inventories = Vec::new();
    for repo in &repos {
        inventories.push((repo.clone(), from.inventory(repo).await?));
    }
    let total: u64 = inventories
        .iter()
        .flat_map(|(_, inv)| inv.blobs.iter().map(|(_, size)| *size))
        .sum();
    let pb = if quiet {
        ProgressBar::hidden()
    } else {
        ProgressBar::new(total)
    };
    pb.set_style(
        ProgressStyle::with_template(
            "{msg:>12} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} {eta}",
        )
        .expect("valid template")
        .progress_chars("=> "),
    );
    pb.set_message("migrating");

    let mut tally = Tally::default();
    // The trust store first: tag imports run the target's push policies, which consult it.
    for key in from.trust_export().await? {
        if to.trust_import(&key).await.with_context(|| {
            format!(
                "copying trusted key {} of {}",
                key.key.key_id, key.key.namespace
            )
        })? {
            tally.trusted_keys += 1;
        }
    }
    for (repo, inv) in &inventories {
        tally.repos += 1;
        for (digest, size) in &inv.blobs {
            let progress = pb.clone();
            let outcome = to
                .import_blob(repo, digest, || open(&from, repo, digest, progress))
                .await
                .with_context(|| format!("copying blob {digest} of {repo}"))?;
            match outcome {
                BlobImport::Copied => {
                    tally.blobs_copied += 1;
                    tally.bytes_copied += size;
                }
                BlobImport::Linked => {
                    tally.blobs_linked += 1;
                    pb.inc(*size);
                }
                BlobImport::Present => {
                    tally.blobs_present += 1;
                    pb.inc(*size);
                }
            }
        }
        for digest in &inv.manifests {
            let (media_type, content) = from.export_manifest(repo, digest).await?;
            if to
                .import_manifest(repo, digest, media_type.as_str(), content)
                .await
                .with_context(|| format!("copying manifest {digest} of {repo}"))?
            {
                tally.manifests += 1;
            }
        }
        for (tag, digest) in &inv.tags {
            if to
                .import_tag(repo, tag, digest)
                .await
                .with_context(|| format!("setting tag {repo}:{tag}"))?
            {
                tally.tags += 1;
            }
        }
    }
    pb.finish_and_clear();
    println!(
        "migrated {} repositories: {} blobs copied ({} bytes, every digest verified), {} linked, {} already present; {} manifests, {} tags, {} trusted keys written",
        tally.repos,
        tally.blobs_copied,
        tally.bytes_copied,
        tally.blobs_linked,
        tally.blobs_present,
        tally.manifests,
        tally.tags,
        tally.trusted_keys
    );
    Ok(ExitCode::SUCCESS)
}

async fn open(
    from: &Registry,
    repo: &bonded_types::RepoName,
    digest: &bonded_types::Digest,
    progress: ProgressBar,
) -> bonded_service::Result<bonded_service::ByteStream> {
    let body = from.blob_get(repo, digest, None).await?;
    Ok(Box::pin(body.stream.inspect(move |chunk| {
        if let Ok(c) = chunk {
            progress.inc(c.len() as u64);
        }
    })))
}
