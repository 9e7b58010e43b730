//! `bonded`: the registry server (`bonded serve`) and its client CLI, in one binary.
//!
//! Entry point only: parses arguments, loads configuration, and hands off to [`app::App`] (the
//! composition root) or to a client command in [`cli`]. Client commands talk to a registry only
//! over HTTP, never to its stores.

mod admin;
mod app;
mod cli;
mod config;
mod migrate;
mod mirror;
mod prometheus;
mod vulndb;
mod vulnops;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "bonded",
    version,
    about = "An OCI artifact registry and its client"
)]
struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(clap::Args)]
struct ServerFlags {
    /// TOML configuration file.
    #[arg(long, env = "BONDED_CONFIG")]
    config: Option<PathBuf>,
    /// Address to listen on (overrides server.listen).
    #[arg(long)]
    listen: Option<String>,
    /// Data directory (overrides data_dir).
    #[arg(long)]
    data_dir: Option<PathBuf>,
}

impl ServerFlags {
    fn load(&self) -> anyhow::Result<config::Loaded> {
        let overrides = config::Overrides {
            data_dir: self.data_dir.clone(),
            server: self
                .listen
                .clone()
                .map(|listen| config::ServerOverride { listen }),
        };
        config::load(self.config.as_deref(), overrides)
    }
}

#[derive(Subcommand)]
enum Command {
    /// Run the registry.
    Serve(ServerFlags),
    /// Inspect the server configuration.
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
    /// Copy this registry's content to other backends (e.g. fs + SQLite → S3 + PostgreSQL),
    /// verifying every digest. Safe to re-run: it resumes where it stopped.
    Migrate {
        #[command(flatten)]
        source: ServerFlags,
        /// Configuration file of the target registry.
        #[arg(long)]
        to: PathBuf,
        /// Hide the progress bar.
        #[arg(long, short)]
        quiet: bool,
    },
    /// Collect garbage: delete blobs no manifest references once they have been unused for a
    /// grace period. Safe while servers run on the same stores.
    Gc {
        #[command(flatten)]
        server: ServerFlags,
        /// Only report what would be deleted.
        #[arg(long)]
        dry_run: bool,
        /// Override gc.grace_secs for this run.
        #[arg(long)]
        grace_secs: Option<u64>,
    },
    /// Bring back a deleted tag (<repo>:<tag>) or manifest (<repo>@<digest>) within the undelete
    /// window, with the blobs it needs. `--list <repo>` shows what can be restored.
    Restore {
        #[command(flatten)]
        server: ServerFlags,
        /// <repo>:<tag>, <repo>@<digest>, or with --list a repository.
        target: String,
        #[arg(long)]
        list: bool,
    },
    /// Retention rules: `plan` lists what they delete now and the bytes freed; `apply` deletes
    /// it (restorable within the undelete window).
    Retention {
        #[command(subcommand)]
        command: RetentionCommand,
    },
    /// Re-hash every stored blob at a bounded rate; quarantine those whose bytes no longer match
    /// their digest or are missing (pulls of them fail until they are pushed again). Exits 1 if
    /// it found any. Safe while servers run on the same stores.
    Scrub {
        #[command(flatten)]
        server: ServerFlags,
        /// Bytes per second at most, e.g. `50MiB` or `1048576` (default: scrub.rate_bytes_per_sec).
        #[arg(long)]
        rate: Option<String>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Storage accounting.
    Storage {
        #[command(subcommand)]
        command: StorageCommand,
    },
    /// The vulnerability database and scans: import OSV exports, show its status, scan an
    /// artifact, run the scan job, find affected artifacts.
    Vulndb {
        #[command(subcommand)]
        command: VulndbCommand,
    },
    #[command(flatten)]
    Client(cli::ClientCommand),
}

#[derive(Subcommand)]
enum VulndbCommand {
    /// Import an OSV export (a directory of JSON records, an all.zip, or the http(s) URL of
    /// an all.zip, downloaded now) incrementally.
    Import {
        #[command(flatten)]
        server: ServerFlags,
        path: PathBuf,
    },
    /// Database generation, advisory counts, sources and age.
    Status(ServerFlags),
    /// Scan one artifact (<repo>:<tag> or <repo>@<digest>) now and store the result.
    Scan {
        #[command(flatten)]
        server: ServerFlags,
        target: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Run the scan job until nothing is due: artifacts with an SBOM and no scan against the
    /// current database generation.
    Rescan(ServerFlags),
    /// Artifacts whose latest scan has a finding of an advisory (id or alias, e.g. a CVE).
    Affected {
        #[command(flatten)]
        server: ServerFlags,
        advisory: String,
    },
}

#[derive(Subcommand)]
enum StorageCommand {
    /// Logical and physical bytes, dedupe ratio and growth per namespace (week, month), quota
    /// usage, and what garbage collection would reclaim.
    Report {
        #[command(flatten)]
        server: ServerFlags,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
enum RetentionCommand {
    /// Dry run: what would be deleted, why, and the bytes freed.
    Plan(ServerFlags),
    /// Delete what the plan lists.
    Apply(ServerFlags),
}

#[derive(Subcommand)]
enum ConfigCommand {
    /// Print the effective configuration, each value with its source; secrets redacted.
    Show(ServerFlags),
}

fn init_tracing(cfg: &config::Config) {
    use tracing_subscriber::EnvFilter;
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(&cfg.log.level));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    if cfg.log.format == "json" {
        builder.json().init();
    } else {
        builder.init();
    }
}

fn main() -> ExitCode {
    let args = Args::parse();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(run(args));
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> anyhow::Result<ExitCode> {
    match args.command {
        Command::Serve(flags) => {
            let loaded = flags.load()?;
            init_tracing(&loaded.config);
            let app = app::App::build(&loaded.config).await?;
            app.serve().await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Config {
            command: ConfigCommand::Show(flags),
        } => {
            let loaded = flags.load()?;
            print!("{}", config::show(&loaded)?);
            Ok(ExitCode::SUCCESS)
        }
        Command::Migrate { source, to, quiet } => {
            let loaded = source.load()?;
            migrate::run(&loaded.config, &to, quiet).await
        }
        Command::Gc {
            server,
            dry_run,
            grace_secs,
        } => {
            let loaded = server.load()?;
            init_tracing(&loaded.config);
            admin::gc(&loaded.config, dry_run, grace_secs).await
        }
        Command::Restore {
            server,
            target,
            list,
        } => {
            let loaded = server.load()?;
            init_tracing(&loaded.config);
            admin::restore(&loaded.config, &target, list).await
        }
        Command::Retention { command } => {
            let (flags, apply) = match &command {
                RetentionCommand::Plan(f) => (f, false),
                RetentionCommand::Apply(f) => (f, true),
            };
            let loaded = flags.load()?;
            init_tracing(&loaded.config);
            admin::retention(&loaded.config, apply).await
        }
        Command::Scrub { server, rate, json } => {
            let loaded = server.load()?;
            init_tracing(&loaded.config);
            admin::scrub(&loaded.config, rate.as_deref(), json).await
        }
        Command::Storage {
            command: StorageCommand::Report { server, json },
        } => {
            let loaded = server.load()?;
            init_tracing(&loaded.config);
            admin::storage_report(&loaded.config, json).await
        }
        Command::Vulndb { command } => {
            let flags = match &command {
                VulndbCommand::Import { server, .. }
                | VulndbCommand::Scan { server, .. }
                | VulndbCommand::Affected { server, .. } => server,
                VulndbCommand::Status(server) | VulndbCommand::Rescan(server) => server,
            };
            let loaded = flags.load()?;
            init_tracing(&loaded.config);
            match &command {
                VulndbCommand::Import { path, .. } => vulndb::import(&loaded.config, path).await,
                VulndbCommand::Status(_) => vulndb::status(&loaded.config).await,
                VulndbCommand::Scan { target, json, .. } => {
                    vulndb::scan(&loaded.config, target, *json).await
                }
                VulndbCommand::Rescan(_) => vulndb::rescan(&loaded.config).await,
                VulndbCommand::Affected { advisory, .. } => {
                    vulndb::affected(&loaded.config, advisory).await
                }
            }
        }
        Command::Client(cmd) => cli::run(cmd).await,
    }
}
