//! The composition root: the one place stores, services and background work are built and wired.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum::serve::ListenerExt;
use bonded_http::metrics::Metrics;
use bonded_http::AppState;
use bonded_service::{BlobStore, ImmutableTagRule, Limits, MetaStore, Registry, Rules, S3Options};
use tokio::net::TcpListener;
use tracing::{info, warn};

use crate::config::{redact_url, Config, MetadataBackend};

pub struct App {
    pub registry: Registry,
    pub metrics: Arc<Metrics>,
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
            .with_policies(policies);
        let limits = Limits {
            max_manifest_bytes: config.limits.max_manifest_bytes,
            chunk_min_bytes: config.limits.chunk_min_bytes,
            redirect_downloads: st
                .redirect
                .then(|| Duration::from_secs(config.storage.redirect_expiry_secs)),
        };
        Ok(App {
            registry: Registry::new(blobs, meta, rules, limits),
            metrics: Arc::new(Metrics::default()),
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
        if !bound.ip().is_loopback() {
            warn!(%bound, "listening on a non-loopback address: anyone who can reach it can push and delete");
        }
        self.spawn_upload_sweeper();
        self.spawn_coverage_refresh();
        let router = bonded_http::router(AppState {
            registry: self.registry.clone(),
            metrics: self.metrics.clone(),
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
        axum::serve(listener, router)
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
            let mut tick = tokio::time::interval(Duration::from_secs(600));
            loop {
                tick.tick().await;
                if let Err(e) = bonded_http::api_supply::refresh_coverage(&registry, &metrics).await
                {
                    warn!(error = %e, "refreshing supply-chain coverage failed; will retry");
                }
            }
        });
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
