//! `bonded key generate`: a key pair as PEM files, the private one readable only by its owner.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context};
use bonded_supply::keys::{Algorithm, PublicKey, SigningKey};
use clap::Subcommand;

#[derive(Subcommand)]
pub enum KeyCommand {
    /// Writes <out>.pem (private, mode 0600) and <out>.pub.pem; prints the key id.
    Generate {
        /// ed25519 or ecdsa-p256
        #[arg(long, default_value = "ed25519")]
        algorithm: String,
        /// Path prefix of the two files.
        #[arg(long)]
        out: PathBuf,
        /// Replace existing files.
        #[arg(long)]
        force: bool,
    },
    /// Prints the id and algorithm of a PEM key (public or private).
    Id { path: PathBuf },
    /// The registry's token signing key (access control).
    #[command(flatten)]
    Token(crate::cli::manage::KeyCommand),
}

fn with_suffix(p: &std::path::Path, suffix: &str) -> PathBuf {
    let mut s = p.as_os_str().to_owned();
    s.push(suffix);
    PathBuf::from(s)
}

fn write_private(path: &std::path::Path, pem: &str, force: bool) -> anyhow::Result<()> {
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true);
    if force {
        opts.create(true).truncate(true);
    } else {
        opts.create_new(true);
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        // Created 0600: the key is never readable by others, not even briefly.
        opts.mode(0o600);
    }
    let mut f = opts
        .open(path)
        .with_context(|| format!("creating {} (use --force to replace it)", path.display()))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        f.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    }
    f.write_all(pem.as_bytes())?;
    f.sync_all()?;
    Ok(())
}

pub async fn run(cmd: KeyCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        KeyCommand::Token(c) => crate::cli::manage::key(c).await,
        KeyCommand::Generate {
            algorithm,
            out,
            force,
        } => {
            let alg: Algorithm = algorithm.parse()?;
            let key = SigningKey::generate(alg);
            let private = with_suffix(&out, ".pem");
            let public = with_suffix(&out, ".pub.pem");
            if !force && public.exists() {
                bail!("{} exists (use --force to replace it)", public.display());
            }
            write_private(&private, &key.to_pem()?, force)?;
            std::fs::write(&public, key.public().to_pem())
                .with_context(|| format!("writing {}", public.display()))?;
            eprintln!(
                "wrote {} (private, keep it secret) and {}",
                private.display(),
                public.display()
            );
            println!("{}", key.public().key_id());
            Ok(ExitCode::SUCCESS)
        }
        KeyCommand::Id { path } => {
            let pem = std::fs::read_to_string(&path)
                .with_context(|| format!("reading {}", path.display()))?;
            let public = match PublicKey::from_pem(&pem) {
                Ok(k) => k,
                Err(_) => SigningKey::from_pem(&pem)
                    .with_context(|| format!("{}", path.display()))?
                    .public(),
            };
            println!("{} {}", public.key_id(), public.algorithm());
            Ok(ExitCode::SUCCESS)
        }
    }
}
