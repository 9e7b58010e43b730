//! `bonded push`: a file or directory becomes an OCI artifact (OCI 1.1 artifact guidance: empty
//! config, `artifactType` on the manifest, one layer per file).

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context};
use bonded_types::{media_types, Algorithm, Digest, Hasher, Reference};
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::json;

use super::client::Client;
use super::reference::ImageRef;
use super::Conn;

/// Annotation telling `bonded pull` to unpack a layer that is a tar of a directory.
pub const UNPACK_ANNOTATION: &str = "dev.bonded.content.unpack";
pub const TITLE_ANNOTATION: &str = "org.opencontainers.image.title";
const DEFAULT_ARTIFACT_TYPE: &str = "application/vnd.bonded.artifact.v1";

#[derive(clap::Args)]
pub struct PushArgs {
    /// File or directory to push.
    path: PathBuf,
    /// Where to: host[:port]/repository:tag
    reference: String,
    /// The artifact's type, e.g. application/vnd.example.model.v1
    #[arg(long, default_value = DEFAULT_ARTIFACT_TYPE)]
    artifact_type: String,
    /// Media type of the content layer (default: application/octet-stream for a file, an OCI tar
    /// layer for a directory).
    #[arg(long)]
    media_type: Option<String>,
    /// Manifest annotation, repeatable: --annotation key=value
    #[arg(long = "annotation", value_name = "KEY=VALUE")]
    annotations: Vec<String>,
    /// Hide the progress bar.
    #[arg(long, short)]
    quiet: bool,
    #[command(flatten)]
    conn: Conn,
}

fn bar(len: u64, msg: &str, quiet: bool) -> ProgressBar {
    if quiet {
        return ProgressBar::hidden();
    }
    let pb = ProgressBar::new(len);
    pb.set_style(
        ProgressStyle::with_template(
            "{msg:>10} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} {eta}",
        )
        .expect("valid template")
        .progress_chars("=> "),
    );
    pb.set_message(msg.to_string());
    pb
}

/// Hashes a file in 1 MiB reads (memory stays flat whatever its size).
fn hash_file(path: &Path, pb: &ProgressBar) -> anyhow::Result<(Digest, u64)> {
    let mut f = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut h = Hasher::new(Algorithm::Sha256);
    let mut buf = vec![0u8; 1 << 20];
    let mut size = 0u64;
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
        size += n as u64;
        pb.inc(n as u64);
    }
    Ok((h.finish(), size))
}

pub async fn run(args: PushArgs) -> anyhow::Result<ExitCode> {
    let target: ImageRef = args.reference.parse()?;
    let reference = target.require_reference()?.clone();
    if matches!(reference, Reference::Digest(_)) {
        bail!("push to a tag (repository:tag); the digest is computed from the content");
    }
    args.artifact_type
        .parse::<bonded_types::MediaType>()
        .context("--artifact-type")?;
    let mut annotations = BTreeMap::new();
    for a in &args.annotations {
        let (k, v) = a
            .split_once('=')
            .with_context(|| format!("--annotation {a:?} must be key=value"))?;
        annotations.insert(k.to_string(), v.to_string());
    }
    let meta = std::fs::metadata(&args.path)
        .with_context(|| format!("reading {}", args.path.display()))?;
    let name = args
        .path
        .file_name()
        .and_then(|n| n.to_str())
        .context("the path has no file name")?
        .to_string();

    // A directory is packed into a temporary tar file first: memory stays flat.
    let tmp;
    let (content, media_type, mut layer_annotations) = if meta.is_dir() {
        tmp = tempfile::NamedTempFile::new()?;
        let file = tmp.reopen()?;
        let dir = args.path.clone();
        let dir_name = name.clone();
        tokio::task::spawn_blocking(move || -> anyhow::Result<()> {
            let mut b = tar::Builder::new(file);
            b.follow_symlinks(false);
            b.append_dir_all(&dir_name, &dir)?;
            b.into_inner()?.sync_all()?;
            Ok(())
        })
        .await??;
        let mut ann = BTreeMap::new();
        ann.insert(UNPACK_ANNOTATION.to_string(), "true".to_string());
        (
            tmp.path().to_path_buf(),
            args.media_type
                .clone()
                .unwrap_or(media_types::OCI_LAYER_TAR.into()),
            ann,
        )
    } else {
        (
            args.path.clone(),
            args.media_type
                .clone()
                .unwrap_or(media_types::OCTET_STREAM.into()),
            BTreeMap::new(),
        )
    };
    layer_annotations.insert(TITLE_ANNOTATION.to_string(), name.clone());
    media_type
        .parse::<bonded_types::MediaType>()
        .context("--media-type")?;

    let size_hint = std::fs::metadata(&content)?.len();
    let pb = bar(size_hint, "hashing", args.quiet);
    let path = content.clone();
    let pb2 = pb.clone();
    let (digest, size) = tokio::task::spawn_blocking(move || hash_file(&path, &pb2)).await??;
    pb.finish_and_clear();

    let client = Client::new(&target.host, args.conn.plain_http)?;
    let repo = &target.repo;
    if client.blob_exists(repo, &digest).await? {
        if !args.quiet {
            eprintln!("{name}: already in {repo} ({digest})");
        }
    } else {
        let pb = bar(size, "uploading", args.quiet);
        client.upload_file(repo, &content, &digest, &pb).await?;
        pb.finish_and_clear();
    }
    // The empty config of OCI 1.1 artifacts.
    let empty = Digest::of(Algorithm::Sha256, b"{}");
    if !client.blob_exists(repo, &empty).await? {
        let f = tempfile::NamedTempFile::new()?;
        std::fs::write(f.path(), b"{}")?;
        client
            .upload_file(repo, f.path(), &empty, &ProgressBar::hidden())
            .await?;
    }
    let mut manifest = json!({
        "schemaVersion": 2,
        "mediaType": media_types::OCI_MANIFEST,
        "artifactType": args.artifact_type,
        "config": { "mediaType": media_types::OCI_EMPTY, "digest": empty.to_string(), "size": 2 },
        "layers": [{
            "mediaType": media_type,
            "digest": digest.to_string(),
            "size": size,
            "annotations": layer_annotations,
        }],
    });
    if !annotations.is_empty() {
        manifest["annotations"] = json!(annotations);
    }
    let bytes = serde_json::to_vec(&manifest)?;
    let manifest_digest = client
        .put_manifest(repo, &reference, media_types::OCI_MANIFEST, bytes)
        .await?;
    println!("{target}@{manifest_digest}");
    Ok(ExitCode::SUCCESS)
}
