//! Stored registry credentials for the CLI: `bonded login` writes them to
//! `$XDG_CONFIG_HOME/bonded/credentials.json` (else `~/.config/bonded/…`), mode 0600; other
//! commands read them. `BONDED_USERNAME` + `BONDED_PASSWORD` override the file (for CI).

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::{anyhow, Context};
use serde::{Deserialize, Serialize};

#[derive(Clone, Serialize, Deserialize)]
pub struct Creds {
    pub username: String,
    pub secret: String,
}

impl std::fmt::Debug for Creds {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Creds {{ username: {:?}, secret: <redacted> }}",
            self.username
        )
    }
}

#[derive(Default, Serialize, Deserialize)]
struct File {
    registries: BTreeMap<String, Creds>,
}

pub fn path() -> anyhow::Result<PathBuf> {
    let base = match std::env::var_os("XDG_CONFIG_HOME").filter(|v| !v.is_empty()) {
        Some(d) => PathBuf::from(d),
        None => PathBuf::from(
            std::env::var_os("HOME")
                .ok_or_else(|| anyhow!("neither XDG_CONFIG_HOME nor HOME is set"))?,
        )
        .join(".config"),
    };
    Ok(base.join("bonded").join("credentials.json"))
}

fn read() -> anyhow::Result<File> {
    let p = path()?;
    match std::fs::read(&p) {
        Ok(b) => serde_json::from_slice(&b).with_context(|| format!("reading {}", p.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(File::default()),
        Err(e) => Err(e).with_context(|| format!("reading {}", p.display())),
    }
}

fn write(f: &File) -> anyhow::Result<()> {
    use std::io::Write;
    #[cfg(unix)]
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
    let p = path()?;
    let dir = p.parent().ok_or_else(|| anyhow!("bad credentials path"))?;
    let mut db = std::fs::DirBuilder::new();
    db.recursive(true);
    #[cfg(unix)]
    db.mode(0o700);
    db.create(dir)
        .with_context(|| format!("creating {}", dir.display()))?;
    let tmp = dir.join(".credentials.json.tmp");
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    opts.mode(0o600);
    let mut file = opts
        .open(&tmp)
        .with_context(|| format!("writing {}", tmp.display()))?;
    file.write_all(&serde_json::to_vec_pretty(f)?)?;
    file.sync_all()?;
    std::fs::rename(&tmp, &p).with_context(|| format!("writing {}", p.display()))?;
    Ok(())
}

/// Credentials for `host` (`host:port`), from the environment or the file.
pub fn lookup(host: &str) -> anyhow::Result<Option<Creds>> {
    if let (Ok(username), Ok(secret)) = (
        std::env::var("BONDED_USERNAME"),
        std::env::var("BONDED_PASSWORD"),
    ) {
        return Ok(Some(Creds { username, secret }));
    }
    Ok(read()?.registries.get(host).cloned())
}

pub fn store(host: &str, creds: Creds) -> anyhow::Result<PathBuf> {
    let mut f = read()?;
    f.registries.insert(host.to_string(), creds);
    write(&f)?;
    path()
}

/// True if there was something to remove.
pub fn remove(host: &str) -> anyhow::Result<bool> {
    let mut f = read()?;
    let had = f.registries.remove(host).is_some();
    if had {
        write(&f)?;
    }
    Ok(had)
}
