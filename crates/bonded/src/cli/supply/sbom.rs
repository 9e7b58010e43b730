//! `bonded sbom attach`: validate a CycloneDX or SPDX JSON document and attach it, signed, as an
//! in-toto statement (predicate type `https://cyclonedx.org/bom` or `https://spdx.dev/Document`).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use bonded_supply::media::Kind;
use bonded_supply::sbom::validate;
use bonded_supply::statement::{Statement, Subject};
use clap::Subcommand;

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
}

pub async fn run(cmd: SbomCommand) -> anyhow::Result<ExitCode> {
    match cmd {
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
