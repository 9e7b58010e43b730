//! `bonded trust add|list|revoke`: the registry's per-namespace trust store, over `/api/v1/`.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Subcommand;
use reqwest::Method;
use serde_json::{json, Value};

use super::{print_json, registry_namespace};
use crate::cli::client::Client;
use crate::cli::Conn;

#[derive(Subcommand)]
pub enum TrustCommand {
    /// Trust a public key for a namespace: bonded trust add localhost:5000/prod --key-set release --key release.pub.pem
    Add {
        /// host[:port]/namespace
        namespace: String,
        #[arg(long)]
        key_set: String,
        /// Public key PEM file.
        #[arg(long)]
        key: PathBuf,
        /// RFC 3339; signatures the registry received earlier do not count.
        #[arg(long)]
        not_before: Option<String>,
        /// RFC 3339; signatures the registry received from then on do not count.
        #[arg(long)]
        not_after: Option<String>,
        #[arg(long, default_value = "")]
        comment: String,
        #[command(flatten)]
        conn: Conn,
    },
    /// List a namespace's keys (JSON).
    List {
        namespace: String,
        #[command(flatten)]
        conn: Conn,
    },
    /// Revoke a key: signatures by it stop counting, whenever they were made.
    Revoke {
        namespace: String,
        key_id: String,
        #[command(flatten)]
        conn: Conn,
    },
}

pub async fn run(cmd: TrustCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        TrustCommand::Add {
            namespace,
            key_set,
            key,
            not_before,
            not_after,
            comment,
            conn,
        } => {
            let (host, ns) = registry_namespace(&namespace)?;
            let pem = std::fs::read_to_string(&key)
                .with_context(|| format!("reading {}", key.display()))?;
            let mut body = json!({ "key_set": key_set, "public_key": pem, "comment": comment });
            if let Some(t) = not_before {
                body["not_before"] = Value::String(t);
            }
            if let Some(t) = not_after {
                body["not_after"] = Value::String(t);
            }
            let client = Client::new(&host, conn.plain_http)?;
            let v = client
                .api(
                    Method::POST,
                    &format!("/api/v1/trust/{ns}/keys"),
                    Some(&body),
                )
                .await?;
            print_json(&v)?;
            Ok(ExitCode::SUCCESS)
        }
        TrustCommand::List { namespace, conn } => {
            let (host, ns) = registry_namespace(&namespace)?;
            let client = Client::new(&host, conn.plain_http)?;
            let v = client
                .api(Method::GET, &format!("/api/v1/trust/{ns}/keys"), None)
                .await?;
            print_json(&v)?;
            Ok(ExitCode::SUCCESS)
        }
        TrustCommand::Revoke {
            namespace,
            key_id,
            conn,
        } => {
            let (host, ns) = registry_namespace(&namespace)?;
            let client = Client::new(&host, conn.plain_http)?;
            let v = client
                .api(
                    Method::POST,
                    &format!("/api/v1/trust/{ns}/keys/{key_id}/revoke"),
                    None,
                )
                .await?;
            print_json(&v)?;
            Ok(ExitCode::SUCCESS)
        }
    }
}
