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
    pub gc: Gc,
    pub retention: Retention,
    pub metrics: Metrics,
    pub log: Log,
    pub auth: Auth,
    pub audit: Audit,
    /// Tags that can never be moved or deleted once pushed.
    pub immutable_tags: Vec<ImmutableTags>,
    /// Supply-chain policies (`[[policy]]`): signatures, provenance and SBOMs required on pull
    /// and push. See docs/supply-chain.md.
    pub policy: Vec<bonded_service::supply::PolicyConfig>,
    /// Environments, their order and promotion gates (`[promotion]`). See docs/promotion.md.
    pub promotion: bonded_service::promotion::PromotionConfig,
    pub canary: Canary,
    /// Namespace quotas (`[[quota]]`), docs/quotas.md.
    pub quota: Vec<Quota>,
    /// Integrity scrubbing of stored blobs, docs/scrub.md.
    pub scrub: Scrub,
    /// The vulnerability scan job (docs/vulnerabilities.md).
    pub scan: Scan,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scan {
    /// Run the scan job inside the server: artifacts whose SBOM arrived since their last scan,
    /// and every artifact after the vulnerability database changed.
    pub enabled: bool,
    /// Pause between passes of the job.
    pub interval_secs: u64,
    /// The scan pass rate (M8) counts an artifact as failing when it has an unwaived finding at
    /// or above this severity: `critical`, `high`, `medium` or `low`.
    pub pass_max_severity: String,
    /// A database imported longer ago than this many days makes every artifact fail the pass
    /// rate (a stale database does not count as passing).
    pub max_db_age_days: u64,
    /// How often the server recomputes the pass-rate gauges.
    pub pass_rate_interval_secs: u64,
    /// OSV export archives (e.g. `https://osv-vulnerabilities.storage.googleapis.com/PyPI/all.zip`)
    /// the server downloads and imports every `mirror_interval_secs`: one URL or a list.
    pub mirror_url: MirrorUrls,
    pub mirror_interval_secs: u64,
    /// Largest archive downloaded (integer, or e.g. `"2GiB"`).
    pub mirror_max_bytes: ByteSize,
    /// Time limit of one download.
    pub mirror_timeout_secs: u64,
}

/// One mirror URL or a list of them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum MirrorUrls {
    One(String),
    Many(Vec<String>),
}

impl MirrorUrls {
    pub fn urls(&self) -> Vec<String> {
        match self {
            MirrorUrls::One(u) if u.is_empty() => vec![],
            MirrorUrls::One(u) => vec![u.clone()],
            MirrorUrls::Many(v) => v.clone(),
        }
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Canary {
    /// A Prometheus-compatible server canary analysis may query (`/api/v1/query_range`), e.g.
    /// `http://127.0.0.1:9090`. Unset: canary samples must be submitted with the request.
    pub prometheus_url: Option<String>,
}

/// A byte size: an integer number of bytes, or a string such as `"10GiB"` or `"500MB"`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum ByteSize {
    Bytes(u64),
    Text(String),
}

impl ByteSize {
    pub fn bytes(&self) -> Result<u64, String> {
        match self {
            ByteSize::Bytes(n) => Ok(*n),
            ByteSize::Text(t) => bonded_types::parse_size(t),
        }
    }
}

/// Limits for every namespace (first component of repository names) matching `namespace`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Quota {
    /// Glob over namespaces: `team-a`, `team-*`, `*`. The first matching entry applies, to each
    /// matching namespace separately.
    pub namespace: String,
    /// Blob bytes; each distinct blob counts once per namespace that links it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_bytes: Option<ByteSize>,
    /// Live manifests.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_artifacts: Option<u64>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scrub {
    /// Run scrub inside the server every `interval_secs` (`bonded scrub` works regardless).
    pub enabled: bool,
    pub interval_secs: u64,
    /// Read at most this many bytes per second (integer, or e.g. `"50MiB"`).
    pub rate_bytes_per_sec: ByteSize,
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
    /// `filesystem` or `s3`.
    pub backend: String,
    /// Blob directory for `filesystem`; defaults to `<data_dir>/blobs`.
    pub path: Option<PathBuf>,
    /// Bucket for `s3`.
    pub bucket: Option<String>,
    /// S3 endpoint such as `http://127.0.0.1:3900`; unset means AWS.
    pub endpoint: Option<String>,
    pub region: String,
    /// Path-style requests (`endpoint/bucket/key`), which MinIO, Garage and Ceph RGW expect.
    pub path_style: bool,
    /// Key prefix inside the bucket, so several registries can share one.
    pub prefix: String,
    /// Answer blob GETs with a redirect to a presigned URL (s3 only).
    pub redirect: bool,
    /// Lifetime of presigned URLs.
    pub redirect_expiry_secs: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Metadata {
    /// `sqlite://<path>` or `postgres://user@host:port/db`; defaults to
    /// `sqlite://<data_dir>/bonded.db`. A password in the URL is redacted by `config show`; prefer
    /// `PGPASSWORD` or a `.pgpass` file.
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

/// Online garbage collection of unused blobs (docs/gc.md).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Gc {
    /// Run the collector inside the server.
    pub enabled: bool,
    /// Pause between runs; 0 runs back to back.
    pub interval_secs: u64,
    /// How long a blob must stay unused (unreferenced, not linked, checked or pushed again)
    /// after it is marked before its bytes are deleted. Longer than any client takes between
    /// uploading or checking a layer and pushing the manifest that names it.
    pub grace_secs: u64,
    /// How long deleted manifests and tags stay restorable with `bonded restore` (their blobs
    /// are kept meanwhile). 0 forgets them at the next collection.
    pub undelete_window_secs: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Metrics {
    /// How often storage accounting (`bonded_storage_*`, M7) is recomputed; 0 never.
    pub storage_interval_secs: u64,
}

/// Retention policies (see README, "Retention").
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Retention {
    /// How often the server applies the rules (0: never; `bonded retention apply` still works).
    pub interval_secs: u64,
    pub rules: Vec<RetentionRule>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetentionRule {
    /// Glob over repository names, e.g. `ci/**`. The first matching rule applies.
    pub repositories: String,
    /// Keep the N most recently pushed artifacts.
    #[serde(default)]
    pub keep_last: Option<u32>,
    /// Keep what was pushed or pulled within D days.
    #[serde(default)]
    pub keep_days: Option<u32>,
    /// Keep artifacts with a tag matching one of these globs.
    #[serde(default)]
    pub keep_tags: Vec<String>,
    /// Delete untagged artifacts older than D days.
    #[serde(default)]
    pub untagged_days: Option<u32>,
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
pub struct Auth {
    /// Access control on `/v2/` and `/api/v1/`. On by default; turn off only for a registry
    /// nobody untrusted can reach.
    pub enabled: bool,
    /// The token service name (`service` in challenges, `aud` in tokens).
    pub service: String,
    /// The token endpoint URL put in challenges; empty derives it from the request's `Host`.
    pub realm: String,
    /// Lifetime of bearer tokens.
    pub token_ttl_secs: u64,
    /// Failed logins allowed per account and per source address in one window.
    pub login_max_failures: u32,
    pub login_window_secs: u64,
    /// A file holding the first admin's password (else `BONDED_ADMIN_PASSWORD`, else generated
    /// and printed once).
    pub admin_password_file: Option<PathBuf>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Audit {
    /// The tamper-evident audit log of pushes, deletes, logins and permission changes.
    pub enabled: bool,
    /// Also record every manifest and blob GET (many entries).
    pub pulls: bool,
    /// Sign the chain head every this many entries.
    pub checkpoint_every: u64,
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
                bucket: None,
                endpoint: None,
                region: "us-east-1".into(),
                path_style: false,
                prefix: String::new(),
                redirect: false,
                redirect_expiry_secs: 300,
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
            gc: Gc {
                enabled: true,
                interval_secs: 600,
                grace_secs: 3600,
                undelete_window_secs: 14 * 24 * 3600,
            },
            retention: Retention {
                interval_secs: 3600,
                rules: vec![],
            },
            metrics: Metrics {
                storage_interval_secs: 600,
            },
            log: Log {
                format: "text".into(),
                level: "info".into(),
            },
            auth: Auth {
                enabled: true,
                service: "bonded".into(),
                realm: String::new(),
                token_ttl_secs: 300,
                login_max_failures: 10,
                login_window_secs: 300,
                admin_password_file: None,
            },
            audit: Audit {
                enabled: true,
                pulls: false,
                checkpoint_every: 100,
            },
            immutable_tags: vec![],
            policy: vec![],
            promotion: Default::default(),
            canary: Canary::default(),
            quota: vec![],
            scrub: Scrub {
                enabled: false,
                interval_secs: 7 * 86400,
                rate_bytes_per_sec: ByteSize::Text("50MiB".into()),
            },
            scan: Scan {
                enabled: true,
                interval_secs: 300,
                pass_max_severity: "high".into(),
                max_db_age_days: 5,
                pass_rate_interval_secs: 60,
                mirror_url: MirrorUrls::Many(vec![]),
                mirror_interval_secs: 86_400,
                mirror_max_bytes: ByteSize::Text("2GiB".into()),
                mirror_timeout_secs: 1800,
            },
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
        .merge(
            Env::prefixed("BONDED_")
                .filter(|key| !is_not_config(key.as_str()))
                .split("__"),
        )
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
        match self.storage.backend.as_str() {
            "filesystem" => {
                if self.storage.redirect {
                    bail!("storage.redirect needs storage.backend = \"s3\"");
                }
            }
            "s3" => {
                if self.storage.bucket.as_deref().unwrap_or("").is_empty() {
                    bail!("storage.backend = \"s3\" needs storage.bucket");
                }
            }
            other => {
                bail!("storage.backend = {other:?} is not supported; use \"filesystem\" or \"s3\"")
            }
        }
        self.metadata_backend()?;
        if self.limits.max_manifest_bytes < 1024 {
            bail!("limits.max_manifest_bytes must be at least 1024");
        }
        if !matches!(self.log.format.as_str(), "text" | "json") {
            bail!(
                "log.format must be \"text\" or \"json\", not {:?}",
                self.log.format
            );
        }
        if self.auth.token_ttl_secs < 30 || self.auth.token_ttl_secs > 86_400 {
            bail!("auth.token_ttl_secs must be between 30 and 86400");
        }
        if self.auth.login_max_failures == 0 || self.auth.login_window_secs == 0 {
            bail!("auth.login_max_failures and auth.login_window_secs must be positive");
        }
        let realm = &self.auth.realm;
        if !(realm.is_empty() || realm.starts_with("http://") || realm.starts_with("https://")) {
            bail!("auth.realm must be an http:// or https:// URL, or empty");
        }
        if self.audit.checkpoint_every == 0 {
            bail!("audit.checkpoint_every must be positive");
        }
        if !["critical", "high", "medium", "low"].contains(&self.scan.pass_max_severity.as_str()) {
            bail!(
                "scan.pass_max_severity {:?} is not one of critical, high, medium, low",
                self.scan.pass_max_severity
            );
        }
        if self.scan.pass_rate_interval_secs == 0 {
            bail!("scan.pass_rate_interval_secs must be positive");
        }
        if self.scan.enabled && self.scan.interval_secs == 0 {
            bail!("scan.interval_secs must be positive (or set scan.enabled = false)");
        }
        self.mirror_options()?;
        for url in self.scan.mirror_url.urls() {
            crate::mirror::check_url(&url).context("in scan.mirror_url")?;
        }
        if self.uploads.sweep_interval_secs == 0 {
            bail!("uploads.sweep_interval_secs must be positive");
        }
        self.retention()?;
        if self.gc.grace_secs == 0 {
            bail!(
                "gc.grace_secs must be positive: a blob needs a grace period between its upload \
                 and the manifest push that references it (an hour is a safe choice)"
            );
        }
        bonded_service::supply::Policies::new(&self.policy)
            .map_err(|e| anyhow::anyhow!("invalid [[policy]]: {e}"))?;
        bonded_service::promotion::Environments::new(&self.promotion)
            .map_err(|e| anyhow::anyhow!("invalid [promotion]: {e}"))?;
        if let Some(url) = &self.canary.prometheus_url {
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                bail!("canary.prometheus_url must be an http:// or https:// URL, not {url:?}");
            }
        }
        self.quotas()?;
        self.scrub_rate()?;
        if self.scrub.enabled && self.scrub.interval_secs == 0 {
            bail!(
                "scrub.interval_secs must be positive when scrub.enabled = true (a day is 86400)"
            );
        }
        Ok(())
    }

    /// How mirror archives are downloaded (`[scan] mirror_*`).
    pub fn mirror_options(&self) -> anyhow::Result<crate::mirror::MirrorOptions> {
        let max_bytes = self
            .scan
            .mirror_max_bytes
            .bytes()
            .map_err(|e| anyhow::anyhow!("scan.mirror_max_bytes: {e}"))?;
        if max_bytes == 0 || self.scan.mirror_timeout_secs == 0 {
            bail!("scan.mirror_max_bytes and scan.mirror_timeout_secs must be positive");
        }
        if self.scan.mirror_interval_secs == 0 {
            bail!("scan.mirror_interval_secs must be positive (a day is 86400)");
        }
        Ok(crate::mirror::MirrorOptions {
            max_bytes,
            timeout: std::time::Duration::from_secs(self.scan.mirror_timeout_secs),
            dir: self.data_dir.join("vulndb-mirror"),
        })
    }

    /// The `[[quota]]` entries, checked and compiled.
    pub fn quotas(&self) -> anyhow::Result<bonded_service::Quotas> {
        let mut rules = Vec::new();
        for (i, q) in self.quota.iter().enumerate() {
            let which = format!("[[quota]] #{} (namespace = {:?})", i + 1, q.namespace);
            if q.namespace.is_empty() || q.namespace.contains('/') {
                bail!(
                    "{which}: namespace is the first component of repository names, a glob \
                     without '/': write \"team-a\" (covers team-a/...), \"team-*\" or \"*\""
                );
            }
            let max_bytes = match &q.max_bytes {
                None => None,
                Some(b) => Some(
                    b.bytes()
                        .map_err(|e| anyhow::anyhow!("{which}: max_bytes: {e}"))?,
                ),
            };
            if max_bytes.is_none() && q.max_artifacts.is_none() {
                bail!(
                    "{which} limits nothing: give max_bytes (e.g. \"10GiB\") and/or max_artifacts"
                );
            }
            rules.push(bonded_service::QuotaRule {
                namespace: q.namespace.clone(),
                max_bytes,
                max_artifacts: q.max_artifacts,
            });
        }
        bonded_service::Quotas::new(&rules).map_err(|e| anyhow::anyhow!("invalid [[quota]]: {e}"))
    }

    /// `scrub.rate_bytes_per_sec` in bytes.
    pub fn scrub_rate(&self) -> anyhow::Result<u64> {
        let rate = self
            .scrub
            .rate_bytes_per_sec
            .bytes()
            .map_err(|e| anyhow::anyhow!("scrub.rate_bytes_per_sec: {e}"))?;
        if rate == 0 {
            bail!("scrub.rate_bytes_per_sec must be positive, e.g. \"50MiB\"");
        }
        Ok(rate)
    }

    /// The retention rules, compiled. Fails on a bad pattern or a rule that deletes nothing.
    pub fn retention(&self) -> anyhow::Result<bonded_service::Retention> {
        let rules: Vec<bonded_service::RetentionRule> = self
            .retention
            .rules
            .iter()
            .map(|r| bonded_service::RetentionRule {
                repositories: r.repositories.clone(),
                keep_last: r.keep_last,
                keep_days: r.keep_days,
                keep_tags: r.keep_tags.clone(),
                untagged_days: r.untagged_days,
            })
            .collect();
        for r in &rules {
            if r.keep_last.is_none() && r.keep_days.is_none() && r.untagged_days.is_none() {
                bail!(
                    "retention rule for {:?} deletes nothing: give keep_last, keep_days or \
                     untagged_days",
                    r.repositories
                );
            }
        }
        bonded_service::Retention::new(&rules).context("in retention.rules")
    }

    pub fn gc_policy(&self) -> bonded_service::GcPolicy {
        bonded_service::GcPolicy {
            grace: std::time::Duration::from_secs(self.gc.grace_secs),
            undelete_window: std::time::Duration::from_secs(self.gc.undelete_window_secs),
        }
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

    pub fn metadata_backend(&self) -> anyhow::Result<MetadataBackend> {
        match &self.metadata.url {
            None => Ok(MetadataBackend::Sqlite(self.data_dir.join("bonded.db"))),
            Some(url) if url.starts_with("postgres://") || url.starts_with("postgresql://") => {
                Ok(MetadataBackend::Postgres(url.clone()))
            }
            Some(url) => match url.strip_prefix("sqlite://") {
                Some(p) if !p.is_empty() => Ok(MetadataBackend::Sqlite(PathBuf::from(p))),
                _ => bail!(
                    "metadata.url = {:?} is not supported; use sqlite://<path> or postgres://…",
                    redact_url(url)
                ),
            },
        }
    }
}

/// Where metadata lives, as configured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MetadataBackend {
    Sqlite(PathBuf),
    Postgres(String),
}

/// `postgres://user:secret@host/db` → `postgres://user:<redacted>@host/db`.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let Some((userinfo, host)) = rest.split_once('@') else {
        return url.to_string();
    };
    match userinfo.split_once(':') {
        Some((user, _)) => format!("{scheme}://{user}:<redacted>@{host}"),
        None => url.to_string(),
    }
}

/// `BONDED_*` variables that are not server configuration: the config file path, the CLI's
/// `BONDED_PLAIN_HTTP`, `BONDED_USERNAME`/`BONDED_PASSWORD`, the first admin's
/// `BONDED_ADMIN_PASSWORD`, and the test suite's `BONDED_TEST_*`. Every other `BONDED_*` variable
/// must be a configuration key, so a typo is an error rather than silently ignored.
fn is_not_config(key: &str) -> bool {
    let k = key.to_ascii_lowercase();
    matches!(
        k.as_str(),
        "config" | "plain_http" | "admin_password" | "username" | "password"
    ) || k.starts_with("test_")
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
            } else if let Some(s) = other.as_str() {
                serde_json::Value::String(redact_url(s)).to_string()
            } else {
                other.to_string()
            };
            out.push_str(&format!("{prefix} = {shown}    # from {source}\n"));
        }
    }
}
