//! `bonded pull`: fetch an artifact's layers into a directory, verifying every digest.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context};
use bonded_types::{Digest, Hasher};
use futures::StreamExt;
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::Value;
use tokio::io::AsyncWriteExt;

use super::client::Client;
use super::push::{TITLE_ANNOTATION, UNPACK_ANNOTATION};
use super::reference::ImageRef;
use super::Conn;

#[derive(clap::Args)]
pub struct PullArgs {
    /// host[:port]/repository:tag or host[:port]/repository@digest
    reference: String,
    /// Directory to write into (created if missing).
    #[arg(long, short, default_value = ".")]
    output: PathBuf,
    /// Hide the progress bar.
    #[arg(long, short)]
    quiet: bool,
    #[command(flatten)]
    conn: Conn,
}

/// A layer's file name: its title if that is one plain path component, else its digest.
fn file_name(title: Option<&str>, digest: &Digest) -> String {
    match title {
        Some(t) if !t.is_empty() && t != "." && t != ".." && !t.contains(['/', '\\', '\0']) => {
            t.to_string()
        }
        _ => digest.hex().to_string(),
    }
}

pub async fn run(args: PullArgs) -> anyhow::Result<ExitCode> {
    let r: ImageRef = args.reference.parse()?;
    let client = Client::new(&r.host, args.conn.plain_http)?;
    let m = client.get_manifest(&r.repo, r.require_reference()?).await?;
    let doc: Value = serde_json::from_slice(&m.bytes).context("manifest is not JSON")?;
    let Some(layers) = doc.get("layers").and_then(Value::as_array) else {
        bail!(
            "{r} is a {} — pull an image manifest (pick one entry of an index by digest)",
            m.media_type
        );
    };
    tokio::fs::create_dir_all(&args.output).await?;
    for layer in layers {
        let digest: Digest = layer
            .get("digest")
            .and_then(Value::as_str)
            .context("layer without digest")?
            .parse()?;
        let size = layer.get("size").and_then(Value::as_u64).unwrap_or(0);
        let ann = layer.get("annotations");
        let title = ann
            .and_then(|a| a.get(TITLE_ANNOTATION))
            .and_then(Value::as_str);
        let unpack = ann
            .and_then(|a| a.get(UNPACK_ANNOTATION))
            .and_then(Value::as_str)
            == Some("true");
        let name = file_name(title, &digest);
        let dest = args.output.join(&name);
        let partial = args.output.join(format!(".{name}.partial"));
        fetch(&client, &r, &digest, size, &partial, args.quiet).await?;
        if unpack {
            let out = args.output.clone();
            let p = partial.clone();
            tokio::task::spawn_blocking(move || -> anyhow::Result<()> {
                // tar's unpack_in refuses entries that would land outside `out`.
                let mut archive = tar::Archive::new(std::fs::File::open(&p)?);
                for entry in archive.entries()? {
                    entry?.unpack_in(&out)?;
                }
                Ok(())
            })
            .await??;
            tokio::fs::remove_file(&partial).await?;
        } else {
            tokio::fs::rename(&partial, &dest).await?;
        }
        if !args.quiet {
            eprintln!("{name}: {digest} verified");
        }
    }
    println!("{}/{}@{}", r.host, r.repo, m.digest);
    Ok(ExitCode::SUCCESS)
}

/// Streams a blob to `dest` while hashing it; refuses (and removes) it on a mismatch.
async fn fetch(
    client: &Client,
    r: &ImageRef,
    digest: &Digest,
    size: u64,
    dest: &Path,
    quiet: bool,
) -> anyhow::Result<()> {
    let resp = client.get_blob(&r.repo, digest).await?;
    let pb = if quiet {
        ProgressBar::hidden()
    } else {
        ProgressBar::new(size)
    };
    pb.set_style(
        ProgressStyle::with_template(
            "{msg:>10} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} {eta}",
        )
        .expect("valid template")
        .progress_chars("=> "),
    );
    pb.set_message("pulling");
    let mut file = tokio::fs::File::create(dest).await?;
    let mut h = Hasher::new(digest.algorithm());
    let mut stream = resp.bytes_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk?;
        h.update(&chunk);
        file.write_all(&chunk).await?;
        pb.inc(chunk.len() as u64);
    }
    file.sync_all().await?;
    pb.finish_and_clear();
    let got = h.finish();
    if &got != digest {
        tokio::fs::remove_file(dest).await?;
        bail!("blob content has digest {got}, not {digest}: refused");
    }
    Ok(())
}
