//! The composition root: the one place stores, services and background work are built and wired
//! (upload sweeper, collector, pull flusher, storage accounting with quota gauges, retention,
//! scrub, coverage refresh, vulnerability scans, their pass rate and mirror refresh).

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum::serve::ListenerExt;
use bonded_http::metrics::Metrics;
use bonded_http::AppState;
use bonded_service::audit::Auditor;
use bonded_service::auth::{Auth, AuthConfig, Keys};
use bonded_service::{BlobStore, ImmutableTagRule, Limits, MetaStore, Registry, Rules, S3Options};
use tokio::net::TcpListener;
use tracing::{info, warn};

use crate::config::{redact_url, Config, MetadataBackend};

pub struct App {
    pub registry: Registry,
    pub metrics: Arc<Metrics>,
    pub auth: Option<Auth>,
    pub audit: Option<Auditor>,
    config: Config,
}

impl App {
    pub async fn build(config: &Config) -> anyhow::Result<App> {
        let st = &config.storage;
        let blobs = match st.backend.as_str() {
            "s3" => BlobStore::s3(S3Options {
                bucket: st.bucket.clone().unwrap_or_default(),
                endpoint: st.endpoint.clone(),
                region: st.region.clone(),
                path_style: st.path_style,
                allow_http: st
                    .endpoint
                    .as_deref()
                    .is_some_and(|e| e.starts_with("http://")),
                prefix: st.prefix.clone(),
            })
            .context("configuring S3 storage")?,
            _ => {
                let blob_path = config.blob_path();
                BlobStore::filesystem(&blob_path)
                    .await
                    .with_context(|| format!("opening blob storage at {}", blob_path.display()))?
            }
        };
        let meta = match config.metadata_backend()? {
            MetadataBackend::Sqlite(db) => {
                if let Some(parent) = db.parent() {
                    std::fs::create_dir_all(parent)
                        .with_context(|| format!("creating {}", parent.display()))?;
                }
                MetaStore::sqlite(&db)
                    .await
                    .with_context(|| format!("opening metadata database {}", db.display()))?
            }
            MetadataBackend::Postgres(url) => MetaStore::postgres(&url)
                .await
                .with_context(|| format!("connecting to {}", redact_url(&url)))?,
        };
        let rules: Vec<ImmutableTagRule> = config
            .immutable_tags
            .iter()
            .map(|r| ImmutableTagRule {
                repositories: r.repositories.clone(),
                tags: r.tags.clone(),
            })
            .collect();
        let policies =
            bonded_service::supply::Policies::new(&config.policy).context("in [[policy]]")?;
        let rules = Rules::new(&rules)
            .context("in immutable_tags")?
            .with_policies(policies)
            .with_environments(
                bonded_service::promotion::Environments::new(&config.promotion)
                    .map_err(|e| anyhow::anyhow!("in [promotion]: {e}"))?,
            )
            .with_quotas(config.quotas()?);
        let limits = Limits {
            max_manifest_bytes: config.limits.max_manifest_bytes,
            chunk_min_bytes: config.limits.chunk_min_bytes,
            redirect_downloads: st
                .redirect
                .then(|| Duration::from_secs(config.storage.redirect_expiry_secs)),
        };
        let ttl = Duration::from_secs(config.auth.token_ttl_secs);
        let (auth, audit) = if config.auth.enabled || config.audit.enabled {
            let keys = Keys::open(meta.clone(), ttl)
                .await
                .map_err(|e| anyhow::anyhow!("token signing keys: {e}"))?;
            let auditor = Auditor::new(
                meta.clone(),
                keys.clone(),
                config.audit.pulls,
                config.audit.checkpoint_every,
            );
            let auth = config.auth.enabled.then(|| {
                Auth::new(
                    meta.clone(),
                    AuthConfig {
                        service: config.auth.service.clone(),
                        token_ttl: ttl,
                        login_max_failures: config.auth.login_max_failures,
                        login_window: Duration::from_secs(config.auth.login_window_secs),
                    },
                    keys,
                    auditor.clone(),
                )
            });
            (auth, config.audit.enabled.then_some(auditor))
        } else {
            (None, None)
        };
        let metrics = Arc::new(Metrics::default());
        let notifier = Arc::new(crate::vulnops::ServerNotifier {
            metrics: metrics.clone(),
            audit: audit.clone(),
        });
        Ok(App {
            registry: Registry::new(blobs, meta, rules, limits).with_vuln_notifier(notifier),
            metrics,
            auth,
            audit,
            config: config.clone(),
        })
    }

    /// Serves until the process is stopped. Prints the bound address on stdout (tests and
    /// scripts read it when they ask for port 0).
    pub async fn serve(self) -> anyhow::Result<()> {
        let addr = self.config.listen_addr()?;
        let listener = TcpListener::bind(addr)
            .await
            .with_context(|| format!("binding {addr} (is another registry running there?)"))?;
        let bound = listener.local_addr()?;
        if !bound.ip().is_loopback() && self.auth.is_none() {
            warn!(%bound, "access control is off on a non-loopback address: anyone who can reach it can push and delete");
        }
        self.bootstrap_admin(bound).await?;
        self.spawn_upload_sweeper();
        if self.config.gc.enabled {
            self.spawn_collector();
        }
        self.spawn_pull_flusher();
        self.spawn_storage_accounting();
        if self.config.scrub.enabled {
            self.spawn_scrub()?;
        }
        self.spawn_retention()?;
        self.spawn_coverage_refresh();
        self.spawn_scanner();
        self.spawn_pass_rate();
        self.spawn_mirror_refresh()?;
        let router = bonded_http::router(AppState {
            registry: self.registry.clone(),
            metrics: self.metrics.clone(),
            auth: self.auth.clone(),
            audit: self.audit.clone(),
            realm: (!self.config.auth.realm.is_empty()).then(|| self.config.auth.realm.clone()),
            metric_source: self.config.canary.prometheus_url.as_ref().map(|url| {
                Arc::new(crate::prometheus::Prometheus::new(url))
                    as Arc<dyn bonded_service::promotion::MetricSource>
            }),
        });
        println!("bonded listening on http://{bound}");
        info!(%bound, data_dir = %self.config.data_dir.display(), "bonded started");
        // Small responses (config blobs, manifests) must not wait for Nagle's algorithm: without
        // TCP_NODELAY a streamed body written after its headers stalls ~40 ms on delayed ACKs.
        let listener = listener.tap_io(|tcp| {
            if let Err(e) = tcp.set_nodelay(true) {
                warn!(error = %e, "could not set TCP_NODELAY");
            }
        });
        let service = router.into_make_service_with_connect_info::<std::net::SocketAddr>();
        axum::serve(listener, service)
            .with_graceful_shutdown(shutdown_signal())
            .await
            .context("serving HTTP")?;
        Ok(())
    }

    /// Periodically recomputes supply-chain coverage (signed / provenance / SBOM per namespace)
    /// for the metrics. It walks every artifact, so it runs rarely; `GET /api/v1/supply/coverage`
    /// refreshes it on demand.
    fn spawn_coverage_refresh(&self) {
        let registry = self.registry.clone();
        let metrics = self.metrics.clone();
        tokio::spawn(async move {
            // Not at startup: it walks every artifact.
            let every = Duration::from_secs(600);
            let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
            loop {
                tick.tick().await;
                if let Err(e) = bonded_http::api_supply::refresh_coverage(&registry, &metrics).await
                {
                    warn!(error = %e, "refreshing supply-chain coverage failed; will retry");
                }
            }
        });
    }

    /// Runs the vulnerability scan job every `scan.interval_secs`: each pass scans, a batch
    /// (`vulndb::SCAN_BATCH`) at a time, every artifact with an SBOM and no scan at the current
    /// database generation (so an import makes everything due again). Resumable and safe on several nodes: a scan only
    /// replaces the previous result.
    fn spawn_scanner(&self) {
        if !self.config.scan.enabled {
            return;
        }
        let registry = self.registry.clone();
        let every = Duration::from_secs(self.config.scan.interval_secs);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            loop {
                tick.tick().await;
                let started = std::time::Instant::now();
                let mut scanned = 0;
                loop {
                    match registry.scan_due(crate::vulndb::SCAN_BATCH).await {
                        Ok(0) => break,
                        Ok(n) => scanned += n,
                        Err(e) => {
                            warn!(error = %e, "vulnerability scan pass failed; will retry");
                            break;
                        }
                    }
                }
                if scanned > 0 {
                    info!(
                        scanned,
                        duration_ms = started.elapsed().as_millis() as u64,
                        "scanned artifacts for vulnerabilities"
                    );
                }
            }
        });
    }

    /// Recomputes the vulnerability scan pass rate (M8) every `scan.pass_rate_interval_secs`:
    /// one counting query, plus the findings of the scans that may fail (to apply waivers).
    fn spawn_pass_rate(&self) {
        let registry = self.registry.clone();
        let metrics = self.metrics.clone();
        let requirement = bonded_service::promotion::VulnGate {
            max_severity: self.config.scan.pass_max_severity.clone(),
            max_db_age_days: self.config.scan.max_db_age_days,
        };
        let every = Duration::from_secs(self.config.scan.pass_rate_interval_secs);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            loop {
                tick.tick().await;
                match registry.vuln_pass_rate(&requirement).await {
                    Ok(r) => metrics.vuln_pass.set(r.scanned, r.passing, r.ratio()),
                    Err(e) => warn!(error = %e, "computing the scan pass rate failed; will retry"),
                }
            }
        });
    }

    /// Refreshes each `scan.mirror_url` every `scan.mirror_interval_secs` (see `mirror.rs`); the
    /// scan job picks up the generation change. When each URL was last fetched is read from the
    /// metadata store, so a restart does not download again, and on several nodes each fetches
    /// (harmless: importing records already stored changes nothing).
    fn spawn_mirror_refresh(&self) -> anyhow::Result<()> {
        let urls = self.config.scan.mirror_url.urls();
        if urls.is_empty() {
            return Ok(());
        }
        let options = self.config.mirror_options()?;
        let registry = self.registry.clone();
        let every = self.config.scan.mirror_interval_secs;
        tokio::spawn(crate::vulnops::mirror_loop(registry, urls, every, options));
        Ok(())
    }

    /// On a registry without accounts, creates the system admin `admin` with the password from
    /// `auth.admin_password_file` or `BONDED_ADMIN_PASSWORD`, else a generated one printed once.
    async fn bootstrap_admin(&self, bound: std::net::SocketAddr) -> anyhow::Result<()> {
        let Some(auth) = &self.auth else {
            return Ok(());
        };
        let given = match &self.config.auth.admin_password_file {
            Some(path) => Some(
                std::fs::read_to_string(path)
                    .with_context(|| {
                        format!("reading auth.admin_password_file {}", path.display())
                    })?
                    .trim_end_matches(['\n', '\r'])
                    .to_string(),
            ),
            None => std::env::var("BONDED_ADMIN_PASSWORD").ok(),
        };
        let generated = auth
            .bootstrap_admin(given)
            .await
            .map_err(|e| anyhow::anyhow!("creating the first admin account: {e}"))?;
        if let Some(password) = generated {
            // Shown once, on stdout only (never logged); it cannot be recovered later.
            println!(
                "created the system admin account \"admin\" with password: {password}\n\
                 log in with: echo '<password>' | bonded login {bound} -u admin --password-stdin\n\
                 (this password is shown only now; set BONDED_ADMIN_PASSWORD or \
                 auth.admin_password_file to choose it instead)"
            );
        }
        Ok(())
    }

    /// Periodically discards abandoned upload sessions and their staged bytes.
    fn spawn_upload_sweeper(&self) {
        let registry = self.registry.clone();
        let every = Duration::from_secs(self.config.uploads.sweep_interval_secs);
        let max_age = Duration::from_secs(self.config.uploads.expire_after_secs);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            loop {
                tick.tick().await;
                if let Err(e) = registry.expire_uploads(max_age).await {
                    warn!(error = %e, "expiring uploads failed; will retry");
                }
            }
        });
    }
}

impl App {
    /// Writes noted manifest pulls to the metadata store every minute (retention's "pulled
    /// within D days" reads them).
    fn spawn_pull_flusher(&self) {
        let registry = self.registry.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(60));
            loop {
                tick.tick().await;
                if let Err(e) = registry.flush_pulls().await {
                    warn!(error = %e, "recording pull times failed; will retry");
                }
            }
        });
    }

    /// Recomputes storage accounting (M7) every `metrics.storage_interval_secs`.
    fn spawn_storage_accounting(&self) {
        let every = self.config.metrics.storage_interval_secs;
        if every == 0 {
            return;
        }
        let registry = self.registry.clone();
        let metrics = self.metrics.clone();
        let grace = self.config.gc_policy().grace;
        tokio::spawn(async move {
            // The first run a period after startup: it reads every manifest's references.
            let every = Duration::from_secs(every);
            let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
            let windows = [
                (Duration::from_secs(7 * 86400), "7d"),
                (Duration::from_secs(30 * 86400), "30d"),
            ];
            loop {
                tick.tick().await;
                let spans: Vec<Duration> = windows.iter().map(|w| w.0).collect();
                let report = match registry.storage_report(&spans, grace).await {
                    Ok(r) => r,
                    Err(e) => {
                        warn!(error = %e, "storage accounting failed; will retry");
                        continue;
                    }
                };
                match registry.quarantined_blobs().await {
                    Ok(q) => {
                        metrics.scrub.quarantined.set(q.len() as i64);
                    }
                    Err(e) => warn!(error = %e, "counting quarantined blobs failed; will retry"),
                }
                for n in &report.namespaces {
                    let Some(q) = registry.quota_of(&n.namespace) else {
                        continue;
                    };
                    let ns = bonded_http::metrics::NamespaceLabels {
                        namespace: n.namespace.clone(),
                    };
                    let m = &metrics.quota;
                    if let Some(max) = q.max_bytes {
                        m.limit_bytes.get_or_create(&ns).set(max as i64);
                        m.used_bytes.get_or_create(&ns).set(n.charged_bytes as i64);
                    }
                    if let Some(max) = q.max_artifacts {
                        m.limit_artifacts.get_or_create(&ns).set(max as i64);
                        m.used_artifacts.get_or_create(&ns).set(n.artifacts as i64);
                    }
                }
                let s = &metrics.storage;
                s.stored_bytes.set(report.stored_bytes as i64);
                s.stored_blobs.set(report.stored_blobs as i64);
                for n in &report.namespaces {
                    let ns = bonded_http::metrics::NamespaceLabels {
                        namespace: n.namespace.clone(),
                    };
                    s.logical_bytes
                        .get_or_create(&ns)
                        .set(n.logical_bytes as i64);
                    s.physical_bytes
                        .get_or_create(&ns)
                        .set(n.physical_bytes as i64);
                    s.artifacts.get_or_create(&ns).set(n.artifacts as i64);
                    for (i, (_, window)) in windows.iter().enumerate() {
                        for (kind, v) in [
                            ("logical", n.logical_added[i]),
                            ("physical", n.physical_added[i]),
                        ] {
                            s.added_bytes
                                .get_or_create(&bonded_http::metrics::GrowthLabels {
                                    namespace: n.namespace.clone(),
                                    kind,
                                    window,
                                })
                                .set(v as i64);
                        }
                    }
                }
            }
        });
    }

    /// Scrubs every `scrub.interval_secs` (the first run one interval after startup) at
    /// `scrub.rate_bytes_per_sec`, recording the outcome in the metrics.
    fn spawn_scrub(&self) -> anyhow::Result<()> {
        let registry = self.registry.clone();
        let metrics = self.metrics.clone();
        let options = bonded_service::ScrubOptions {
            rate_bytes_per_sec: Some(self.config.scrub_rate()?),
        };
        let every = Duration::from_secs(self.config.scrub.interval_secs);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
            loop {
                tick.tick().await;
                match registry.scrub_run(&options).await {
                    Ok(r) => {
                        let m = &metrics.scrub;
                        m.blobs_checked.inc_by(r.checked);
                        m.bytes_checked.inc_by(r.bytes);
                        for (reason, n) in [("corrupt", r.corrupt), ("missing", r.missing)] {
                            m.corrupt
                                .get_or_create(&bonded_http::metrics::ReasonLabels { reason })
                                .inc_by(n);
                        }
                        m.last_run_timestamp_seconds
                            .set(crate::app::unix_secs() as i64);
                    }
                    Err(e) => warn!(error = %e, "scrub failed; will retry at the next interval"),
                }
                if let Ok(q) = registry.quarantined_blobs().await {
                    metrics.scrub.quarantined.set(q.len() as i64);
                }
            }
        });
        Ok(())
    }

    /// Applies retention rules every `retention.interval_secs` (if there are rules).
    fn spawn_retention(&self) -> anyhow::Result<()> {
        let retention = self.config.retention()?;
        let every = self.config.retention.interval_secs;
        if retention.is_empty() || every == 0 {
            return Ok(());
        }
        let registry = self.registry.clone();
        let audit = self.audit.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(every));
            loop {
                tick.tick().await;
                match registry.retention_apply(&retention).await {
                    Ok(p) if !p.deletions.is_empty() => {
                        info!(
                            deleted = p.deletions.len(),
                            bytes_freed = p.bytes_freed,
                            "retention deleted manifests (restorable within the undelete window)"
                        );
                        audit_retention(audit.as_ref(), &p).await;
                    }
                    Ok(_) => {}
                    Err(e) => warn!(error = %e, "applying retention failed; will retry"),
                }
            }
        });
        Ok(())
    }

    /// Runs garbage collection forever, `gc.interval_secs` apart. Every node may run it: runs on
    /// several nodes, or overlapping runs, are safe (docs/gc.md).
    fn spawn_collector(&self) {
        let registry = self.registry.clone();
        let metrics = self.metrics.clone();
        let policy = self.config.gc_policy();
        // Back to back still yields a little, so an idle registry does not spin.
        let pause =
            Duration::from_secs(self.config.gc.interval_secs).max(Duration::from_millis(100));
        tokio::spawn(async move {
            loop {
                let started = std::time::Instant::now();
                let outcome = match registry.gc_run(&policy).await {
                    Ok(r) => {
                        metrics.gc.marked.inc_by(r.mark.marked);
                        metrics.gc.swept.inc_by(r.swept);
                        metrics.gc.swept_bytes.inc_by(r.swept_bytes);
                        metrics.gc.spared.inc_by(r.spared);
                        "success"
                    }
                    Err(e) => {
                        warn!(error = %e, "garbage collection failed; will retry");
                        "failure"
                    }
                };
                metrics
                    .gc
                    .runs
                    .get_or_create(&bonded_http::metrics::OutcomeLabels { outcome })
                    .inc();
                metrics
                    .gc
                    .last_duration_seconds
                    .set(started.elapsed().as_secs_f64());
                tokio::time::sleep(pause).await;
            }
        });
    }
}

/// Records each deletion a retention run made in the audit log (actor `retention`).
pub async fn audit_retention(
    audit: Option<&bonded_service::audit::Auditor>,
    plan: &bonded_service::RetentionPlan,
) {
    let Some(audit) = audit else { return };
    for d in &plan.deletions {
        let tags: Vec<String> = d.tags.iter().map(ToString::to_string).collect();
        audit
            .record(bonded_service::audit::AuditEntry {
                at_ms: 0,
                actor: "retention".into(),
                action: "delete".into(),
                repo: d.repo.to_string(),
                target: d.digest.to_string(),
                source: String::new(),
                outcome: "ok".into(),
                detail: format!("{}; tags: {}", d.reason, tags.join(", ")),
            })
            .await;
    }
}

pub(crate) fn unix_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        if let Ok(mut s) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        {
            s.recv().await;
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
    info!("shutting down");
}
