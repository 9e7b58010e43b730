//! One typed configuration, layered: built-in defaults < TOML file < `BONDED_SECTION__KEY`
//! environment < command-line flags. Unknown keys are rejected; values are checked at startup.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use figment::providers::{Env, Format, Serialized, Toml};
use figment::Figment;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Where bonded keeps its data when storage and metadata paths are not set.
    pub data_dir: PathBuf,
    pub server: Server,
    pub storage: Storage,
    pub metadata: Metadata,
    pub limits: Limits,
    pub uploads: Uploads,
    pub log: Log,
    /// Tags that can never be moved or deleted once pushed.
    pub immutable_tags: Vec<ImmutableTags>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Server {
    /// Address to listen on. Loopback unless you mean it.
    pub listen: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Storage {
    /// `filesystem` (more backends arrive with scale-out).
    pub backend: String,
    /// Blob directory; defaults to `<data_dir>/blobs`.
    pub path: Option<PathBuf>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Metadata {
    /// `sqlite://<path>`; defaults to `sqlite://<data_dir>/bonded.db`.
    pub url: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Limits {
    pub max_manifest_bytes: usize,
    /// Advertised as `OCI-Chunk-Min-Length`; 0 advertises nothing.
    pub chunk_min_bytes: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Uploads {
    /// Upload sessions untouched for longer than this are discarded.
    pub expire_after_secs: u64,
    /// How often to look for expired uploads.
    pub sweep_interval_secs: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Log {
    /// `text` or `json`.
    pub format: String,
    /// A tracing filter such as `info` or `bonded=debug,info`; `RUST_LOG` overrides it.
    pub level: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImmutableTags {
    /// Glob over repository names, e.g. `prod/**`.
    pub repositories: String,
    /// Glob over tags, e.g. `v*`.
    pub tags: String,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            data_dir: PathBuf::from("./data"),
            server: Server {
                listen: "127.0.0.1:5000".into(),
            },
            storage: Storage {
                backend: "filesystem".into(),
                path: None,
            },
            metadata: Metadata { url: None },
            limits: Limits {
                max_manifest_bytes: 4 << 20,
                chunk_min_bytes: 0,
            },
            uploads: Uploads {
                expire_after_secs: 24 * 3600,
                sweep_interval_secs: 3600,
            },
            log: Log {
                format: "text".into(),
                level: "info".into(),
            },
            immutable_tags: vec![],
        }
    }
}

/// Values given on the command line; they win over everything else.
#[derive(Debug, Default, Serialize)]
pub struct Overrides {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data_dir: Option<PathBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub server: Option<ServerOverride>,
}

#[derive(Debug, Serialize)]
pub struct ServerOverride {
    pub listen: String,
}

/// The layered sources, kept so `config show` can say where each value came from.
pub struct Loaded {
    pub config: Config,
    pub figment: Figment,
}

pub fn load(file: Option<&Path>, overrides: Overrides) -> anyhow::Result<Loaded> {
    let mut figment = Figment::from(Serialized::defaults(Config::default()));
    if let Some(file) = file {
        if !file.exists() {
            bail!(
                "config file {} does not exist (pass --config with a path that exists)",
                file.display()
            );
        }
        figment = figment.merge(Toml::file(file));
    }
    figment = figment
        .merge(Env::prefixed("BONDED_").ignore(&["config"]).split("__"))
        .merge(Serialized::globals(overrides));
    let config: Config = figment.extract().map_err(|e| {
        anyhow::anyhow!(
            "invalid configuration: {e}\n(keys are documented in README.md under Configuration)"
        )
    })?;
    config.validate()?;
    Ok(Loaded { config, figment })
}

impl Config {
    fn validate(&self) -> anyhow::Result<()> {
        self.listen_addr()?;
        if self.storage.backend != "filesystem" {
            bail!(
                "storage.backend = {:?} is not supported; use \"filesystem\"",
                self.storage.backend
            );
        }
        self.sqlite_path()?;
        if self.limits.max_manifest_bytes < 1024 {
            bail!("limits.max_manifest_bytes must be at least 1024");
        }
        if !matches!(self.log.format.as_str(), "text" | "json") {
            bail!(
                "log.format must be \"text\" or \"json\", not {:?}",
                self.log.format
            );
        }
        if self.uploads.sweep_interval_secs == 0 {
            bail!("uploads.sweep_interval_secs must be positive");
        }
        Ok(())
    }

    pub fn listen_addr(&self) -> anyhow::Result<SocketAddr> {
        self.server.listen.parse().with_context(|| {
            format!(
                "server.listen = {:?} is not an address such as 127.0.0.1:5000",
                self.server.listen
            )
        })
    }

    pub fn blob_path(&self) -> PathBuf {
        self.storage
            .path
            .clone()
            .unwrap_or_else(|| self.data_dir.join("blobs"))
    }

    pub fn sqlite_path(&self) -> anyhow::Result<PathBuf> {
        match &self.metadata.url {
            None => Ok(self.data_dir.join("bonded.db")),
            Some(url) => match url.strip_prefix("sqlite://") {
                Some(p) if !p.is_empty() => Ok(PathBuf::from(p)),
                _ => bail!("metadata.url = {url:?} is not supported; use sqlite://<path>"),
            },
        }
    }
}

/// Keys whose values are never printed.
fn is_secret(key: &str) -> bool {
    let k = key.to_ascii_lowercase();
    ["password", "secret", "token", "key_id", "access_key"]
        .iter()
        .any(|s| k.contains(s))
}

/// The effective configuration as TOML-ish lines, each with its source; secrets redacted.
pub fn show(loaded: &Loaded) -> anyhow::Result<String> {
    let value = serde_json::to_value(&loaded.config)?;
    let mut out = String::new();
    walk(&loaded.figment, "", &value, &mut out);
    Ok(out)
}

fn walk(figment: &Figment, prefix: &str, v: &serde_json::Value, out: &mut String) {
    match v {
        serde_json::Value::Object(map) => {
            for (k, child) in map {
                let key = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                walk(figment, &key, child, out);
            }
        }
        other => {
            let source = match figment.find_metadata(prefix) {
                Some(m) if m.name.contains("Overrides") => "command line".to_string(),
                Some(m) if m.name.contains("Config") => "default".to_string(),
                Some(m) => match &m.source {
                    Some(src) => format!("{} ({src})", m.name),
                    None => m.name.to_string(),
                },
                None => "default".to_string(),
            };
            let shown = if is_secret(prefix) && !other.is_null() {
                "\"<redacted>\"".to_string()
            } else {
                other.to_string()
            };
            out.push_str(&format!("{prefix} = {shown}    # from {source}\n"));
        }
    }
}
