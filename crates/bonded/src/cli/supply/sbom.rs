//! `bonded sbom attach`: validate a CycloneDX or SPDX JSON document and attach it, signed, as an
//! in-toto statement (predicate type `https://cyclonedx.org/bom` or `https://spdx.dev/Document`).
//! `bonded sbom generate`: CycloneDX with purls from an artifact's layers, a directory or an
//! archive (inventories recognised: see `bonded_supply::sbom_gen`).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context};
use bonded_supply::media::Kind;
use bonded_supply::sbom::validate;
use bonded_supply::sbom_gen::{maybe_binary, scan_archive, wanted, Scanner, MAX_INVENTORY_BYTES};
use bonded_supply::statement::{predicate_types, Statement, Subject};
use bonded_supply::time::{now_ms, rfc3339};
use bonded_types::{Digest, Reference};
use clap::Subcommand;
use serde_json::Value;

use super::{attach, read_signing_key, subject};
use crate::cli::client::Client;
use crate::cli::reference::ImageRef;
use crate::cli::Conn;

#[derive(Subcommand)]
pub enum SbomCommand {
    /// Validate and attach an SBOM: bonded sbom attach localhost:5000/prod/app:v1 sbom.json --key k.pem
    Attach {
        reference: String,
        /// CycloneDX 1.4–1.6 or SPDX 2.3 JSON.
        file: PathBuf,
        /// Private key PEM; the SBOM is signed like any attestation.
        #[arg(long)]
        key: PathBuf,
        #[command(flatten)]
        conn: Conn,
    },
    /// Generate a CycloneDX SBOM (with purls) from an artifact's layers, or from a local
    /// directory or (gzipped) tar archive with --path. Prints it, or writes --output; with --key
    /// it is also attached to the artifact.
    Generate {
        /// host[:port]/repository:tag or @digest (omit with --path)
        reference: Option<String>,
        /// A directory or tar/tar.gz archive to scan instead of an artifact.
        #[arg(long, conflicts_with = "reference")]
        path: Option<PathBuf>,
        #[arg(long, short)]
        output: Option<PathBuf>,
        /// Sign and attach the SBOM to the artifact with this private key.
        #[arg(long, requires = "reference")]
        key: Option<PathBuf>,
        #[command(flatten)]
        conn: Conn,
    },
}

/// Scans a local directory (inventories only) or archive.
fn scan_path(path: &Path, scanner: &mut Scanner) -> anyhow::Result<()> {
    if path.is_dir() {
        for entry in walkdir::WalkDir::new(path).follow_links(false) {
            let entry = entry?;
            if !entry.file_type().is_file() {
                continue;
            }
            let rel = entry.path().strip_prefix(path).unwrap_or(entry.path());
            let rel = rel.to_string_lossy();
            let meta = entry.metadata()?;
            #[cfg(unix)]
            let mode = std::os::unix::fs::PermissionsExt::mode(&meta.permissions());
            #[cfg(not(unix))]
            let mode = 0o755;
            if wanted(&rel) && meta.len() <= MAX_INVENTORY_BYTES {
                scanner.file(&rel, &std::fs::read(entry.path())?);
            } else if maybe_binary(mode, meta.len()) {
                scanner.binary(&rel, &std::fs::read(entry.path())?);
            }
        }
        Ok(())
    } else {
        let f = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
        scan_archive(std::io::BufReader::new(f), scanner).with_context(|| {
            format!(
                "{} is neither a directory nor a tar archive",
                path.display()
            )
        })
    }
}

/// Scans every layer of an artifact (the first image of an index).
async fn scan_artifact(
    client: &Client,
    target: &ImageRef,
    digest: &Digest,
    scanner: &mut Scanner,
) -> anyhow::Result<()> {
    let mut m = client
        .get_manifest(&target.repo, &Reference::Digest(digest.clone()))
        .await?;
    let mut doc: Value = serde_json::from_slice(&m.bytes)?;
    if let Some(first) = doc
        .get("manifests")
        .and_then(Value::as_array)
        .and_then(|a| a.first())
    {
        let child: Digest = first["digest"]
            .as_str()
            .context("index entry without digest")?
            .parse()?;
        eprintln!("note: {target} is an index; scanning its first image {child}");
        m = client
            .get_manifest(&target.repo, &Reference::Digest(child))
            .await?;
        doc = serde_json::from_slice(&m.bytes)?;
    }
    for layer in doc["layers"].as_array().into_iter().flatten() {
        let d: Digest = layer["digest"]
            .as_str()
            .context("layer without digest")?
            .parse()?;
        let mt = layer["mediaType"].as_str().unwrap_or("");
        if mt.contains("zstd") {
            eprintln!("note: skipping zstd layer {d} (not supported yet)");
            continue;
        }
        // Stream to a temporary file, hashing as it arrives; memory stays flat.
        let mut resp = client.get_blob(&target.repo, &d).await?;
        let tmp = tempfile::NamedTempFile::new()?;
        let mut file = tmp.reopen()?;
        let mut hasher = bonded_types::Hasher::new(d.algorithm());
        while let Some(chunk) = resp.chunk().await? {
            hasher.update(&chunk);
            std::io::Write::write_all(&mut file, &chunk)?;
        }
        if hasher.finish() != d {
            bail!("layer {d} does not hash to its digest");
        }
        let title = layer["annotations"]["org.opencontainers.image.title"]
            .as_str()
            .unwrap_or("");
        let path = tmp.path().to_path_buf();
        let mut part = Scanner::new();
        let scanned = scan_archive(
            std::io::BufReader::new(std::fs::File::open(&path)?),
            &mut part,
        );
        if scanned.is_err() && wanted(title) {
            // A single file pushed as a layer (e.g. a Cargo.lock).
            scanner.file(title, &std::fs::read(&path)?);
        } else if scanned.is_ok() {
            scan_archive(
                std::io::BufReader::new(std::fs::File::open(&path)?),
                scanner,
            )?;
        }
    }
    Ok(())
}

pub async fn run(cmd: SbomCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        SbomCommand::Generate {
            reference,
            path,
            output,
            key,
            conn,
        } => {
            let mut scanner = Scanner::new();
            let serial = uuid::Uuid::new_v4().to_string();
            let now = rfc3339(now_ms());
            let doc = match (reference, path) {
                (None, Some(path)) => {
                    scan_path(&path, &mut scanner)?;
                    scanner.cyclonedx(&path.display().to_string(), None, &serial, &now)
                }
                (Some(reference), None) => {
                    let target: ImageRef = reference.parse()?;
                    let client = Client::new(&target.host, conn.plain_http)?;
                    let info = subject(&client, &target).await?;
                    scan_artifact(&client, &target, &info.digest, &mut scanner).await?;
                    let doc = scanner.cyclonedx(
                        &format!("{}/{}", target.host, target.repo),
                        Some(&info.digest.to_string()),
                        &serial,
                        &now,
                    );
                    if let Some(key) = key {
                        let key = read_signing_key(&key)?;
                        let st = Statement::new(
                            Subject::of(target.repo.as_str(), &info.digest),
                            predicate_types::CYCLONEDX,
                            doc.clone(),
                        );
                        let referrer =
                            attach(&client, &target, &info, Kind::Sbom, &st, &key).await?;
                        eprintln!("attached generated SBOM as {referrer}");
                    }
                    doc
                }
                _ => bail!("give an artifact reference or --path, not both"),
            };
            eprintln!(
                "{} components",
                doc["components"].as_array().map_or(0, |c| c.len())
            );
            let text = serde_json::to_string_pretty(&doc)?;
            match output {
                Some(o) => {
                    std::fs::write(&o, text).with_context(|| format!("writing {}", o.display()))?
                }
                None => println!("{text}"),
            }
            Ok(ExitCode::SUCCESS)
        }
        SbomCommand::Attach {
            reference,
            file,
            key,
            conn,
        } => {
            let target: ImageRef = reference.parse()?;
            let bytes =
                std::fs::read(&file).with_context(|| format!("reading {}", file.display()))?;
            let (format, doc) = validate(&bytes).with_context(|| format!("{}", file.display()))?;
            let key = read_signing_key(&key)?;
            let client = Client::new(&target.host, conn.plain_http)?;
            let m = subject(&client, &target).await?;
            let st = Statement::new(
                Subject::of(target.repo.as_str(), &m.digest),
                format.predicate_type(),
                doc,
            );
            let referrer = attach(&client, &target, &m, Kind::Sbom, &st, &key).await?;
            eprintln!("attached {format:?} SBOM to {}@{}", target.repo, m.digest);
            println!("{}/{}@{referrer}", target.host, target.repo);
            Ok(ExitCode::SUCCESS)
        }
    }
}
