//! Every metric bonded exports, defined in one place (Prometheus text format at `/metrics`).
//!
//! SLIs seeded here (see SLIS.md): M1 publish success rate (`bonded_publish_total` by outcome),
//! M2 download latency (`bonded_download_duration_seconds` by kind, with bytes alongside),
//! M9 retrieval error rate (`bonded_pull_total` by kind and outcome), M5 signing coverage
//! (`bonded_supply_signed_artifacts / bonded_supply_artifacts` by namespace, with provenance and
//! SBOM coverage alongside; refreshed by the coverage job, see `api_supply`).
//! Garbage collection: runs by outcome, blobs marked, swept (and bytes), spared.
//! M7 storage growth: `bonded_storage_*_bytes` per namespace, and bytes added over 7d/30d.
//! M3 deployment artifact mismatch rate (`bonded_deployments_reported_total` by outcome), M6 time
//! to promote (`bonded_time_to_promote_seconds`), promotion moves and canary verdicts.
//! Quotas: `bonded_quota_*` limit and usage per namespace with a quota (refreshed with storage
//! accounting). Scrub: blobs and bytes checked, corrupt/missing found, quarantined now, last run.
//! M8 vulnerability scan pass rate: `bonded_vuln_artifacts_passing / bonded_vuln_artifacts_scanned`
//! (and `bonded_vuln_scan_pass_ratio`), refreshed by the server from the metadata store.
//! Vulnerabilities: findings by severity over live artifacts' latest scans, database age and
//! generation (refreshed at scrape, cached briefly), scan durations and outcomes, and new
//! findings in environment-pointed artifacts.

use prometheus_client::encoding::{text::encode, EncodeLabelSet};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    pub endpoint: &'static str,
    pub method: &'static str,
    pub status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct EndpointLabels {
    pub endpoint: &'static str,
    pub method: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabels {
    pub outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PullLabels {
    pub kind: &'static str,
    pub outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct NamespaceLabels {
    pub namespace: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabels {
    pub kind: &'static str,
}

pub struct Metrics {
    registry: Registry,
    pub requests: Family<RequestLabels, Counter>,
    pub request_duration: Family<EndpointLabels, Histogram>,
    pub bytes_received: Counter,
    pub bytes_sent: Counter,
    pub publish: Family<OutcomeLabels, Counter>,
    pub pull: Family<PullLabels, Counter>,
    pub download_duration: Family<KindLabels, Histogram>,
    pub supply_artifacts: Family<NamespaceLabels, Gauge>,
    pub supply_signed: Family<NamespaceLabels, Gauge>,
    pub supply_provenance: Family<NamespaceLabels, Gauge>,
    pub supply_sbom: Family<NamespaceLabels, Gauge>,
    pub gc: GcMetrics,
    pub storage: StorageMetrics,
    pub promotion: PromotionMetrics,
    pub quota: QuotaMetrics,
    pub scrub: ScrubMetrics,
    pub vuln_pass: VulnPassMetrics,
    pub vuln: VulnMetrics,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct EnvOutcomeLabels {
    pub namespace: String,
    pub environment: String,
    /// promotions: `promoted`, `refused`, `rolled_back`; deployments: `match`, `mismatch`.
    pub outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct EnvLabels {
    pub namespace: String,
    pub environment: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct VerdictLabels {
    pub namespace: String,
    pub verdict: &'static str,
}

/// Promotion, deployments (M3 artifact mismatch rate) and time to promote (M6).
pub struct PromotionMetrics {
    pub moves: Family<EnvOutcomeLabels, Counter>,
    pub deployments: Family<EnvOutcomeLabels, Counter>,
    pub time_to_promote: Family<EnvLabels, Histogram>,
    pub canary_verdicts: Family<VerdictLabels, Counter>,
}

impl Default for PromotionMetrics {
    fn default() -> Self {
        PromotionMetrics {
            moves: Family::default(),
            deployments: Family::default(),
            // 1 minute to ~ 1 year.
            time_to_promote: Family::new_with_constructor(|| {
                Histogram::new(exponential_buckets(60.0, 4.0, 10))
            }),
            canary_verdicts: Family::default(),
        }
    }
}

impl PromotionMetrics {
    /// Counts one environment pointer move or refused promotion.
    pub fn moved(&self, namespace: &str, environment: &str, outcome: &'static str) {
        self.moves
            .get_or_create(&EnvOutcomeLabels {
                namespace: namespace.to_string(),
                environment: environment.to_string(),
                outcome,
            })
            .inc();
    }

    fn register(&self, registry: &mut Registry) {
        registry.register(
            "promotion_moves",
            "Environment pointer moves and refused promotions, by outcome",
            self.moves.clone(),
        );
        registry.register(
            "deployments_reported",
            "Reported deployments; outcome `mismatch` when the digest is not the one the environment points at (M3 artifact mismatch rate)",
            self.deployments.clone(),
        );
        registry.register(
            "time_to_promote_seconds",
            "Time from an artifact's push to its promotion into each environment (M6)",
            self.time_to_promote.clone(),
        );
        registry.register(
            "canary_verdicts",
            "Canary analysis verdicts",
            self.canary_verdicts.clone(),
        );
    }
}

/// Quota limits and what they are measured against, per namespace with a `[[quota]]`.
#[derive(Default)]
pub struct QuotaMetrics {
    pub limit_bytes: Family<NamespaceLabels, Gauge>,
    pub used_bytes: Family<NamespaceLabels, Gauge>,
    pub limit_artifacts: Family<NamespaceLabels, Gauge>,
    pub used_artifacts: Family<NamespaceLabels, Gauge>,
}

impl QuotaMetrics {
    fn register(&self, registry: &mut Registry) {
        registry.register(
            "quota_limit_bytes",
            "Storage quota of the namespace in bytes",
            self.limit_bytes.clone(),
        );
        registry.register(
            "quota_used_bytes",
            "Bytes charged to the namespace: each distinct linked blob once (docs/quotas.md)",
            self.used_bytes.clone(),
        );
        registry.register(
            "quota_limit_artifacts",
            "Artifact (manifest) quota of the namespace",
            self.limit_artifacts.clone(),
        );
        registry.register(
            "quota_used_artifacts",
            "Live manifests in the namespace",
            self.used_artifacts.clone(),
        );
    }
}

/// Integrity scrubbing, recorded by the server's scrub job (`bonded scrub` prints its own
/// report); the quarantined gauge is refreshed from the metadata store, so it includes both.
#[derive(Default)]
pub struct ScrubMetrics {
    pub blobs_checked: Counter,
    pub bytes_checked: Counter,
    pub corrupt: Family<ReasonLabels, Counter>,
    pub quarantined: Gauge,
    pub last_run_timestamp_seconds: Gauge,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SeverityLabels {
    pub severity: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct NewFindingLabels {
    pub environment: String,
    pub severity: String,
}

/// Vulnerability scanning. The gauges are computed from the metadata store when `/metrics` is
/// scraped (at most every [`VulnMetrics::REFRESH`]); the scan counters and histogram are
/// recorded by the server's scan job (scans run by `bonded vulndb` count in that process only).
pub struct VulnMetrics {
    pub findings: Family<SeverityLabels, Gauge>,
    pub db_age_seconds: Gauge,
    pub db_generation: Gauge,
    pub scan_duration: Histogram,
    pub scans: Family<OutcomeLabels, Counter>,
    pub new_findings: Family<NewFindingLabels, Counter>,
    /// When the gauges were last computed.
    pub refreshed: std::sync::Mutex<Option<std::time::Instant>>,
}

impl Default for VulnMetrics {
    fn default() -> Self {
        VulnMetrics {
            findings: Family::default(),
            db_age_seconds: Gauge::default(),
            db_generation: Gauge::default(),
            // 1 ms .. ~65 s
            scan_duration: Histogram::new(exponential_buckets(0.001, 2.0, 17)),
            scans: Family::default(),
            new_findings: Family::default(),
            refreshed: std::sync::Mutex::new(None),
        }
    }
}

impl VulnMetrics {
    /// How long computed gauges are served before the next scrape recomputes them.
    pub const REFRESH: std::time::Duration = std::time::Duration::from_secs(10);

    /// True (and the refresh time taken) when the gauges are due for recomputation.
    pub fn due(&self) -> bool {
        let mut at = self.refreshed.lock().expect("metrics refresh lock");
        let now = std::time::Instant::now();
        if at.is_some_and(|t| now.duration_since(t) < Self::REFRESH) {
            return false;
        }
        *at = Some(now);
        true
    }

    /// Counts one scan and its duration.
    pub fn scanned(&self, outcome: &'static str, seconds: f64) {
        self.scans.get_or_create(&OutcomeLabels { outcome }).inc();
        if outcome == "ok" {
            self.scan_duration.observe(seconds);
        }
    }

    fn register(&self, registry: &mut Registry) {
        registry.register(
            "vuln_findings",
            "Findings by severity over the latest scans of live artifacts",
            self.findings.clone(),
        );
        registry.register(
            "vulndb_age_seconds",
            "Time since the vulnerability database was last imported (updated), in seconds",
            self.db_age_seconds.clone(),
        );
        registry.register(
            "vulndb_generation",
            "Vulnerability database generation (bumped by every import that changed an advisory)",
            self.db_generation.clone(),
        );
        registry.register(
            "vuln_scan_duration_seconds",
            "Time to scan one artifact's verified SBOMs and store the result",
            self.scan_duration.clone(),
        );
        registry.register(
            "vuln_scans",
            "Artifact scans by outcome (ok, error)",
            self.scans.clone(),
        );
        registry.register(
            "vuln_new_findings",
            "Findings a rescan found that the previous scan did not have, in artifacts an environment points at, by environment and severity",
            self.new_findings.clone(),
        );
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabels {
    /// `corrupt` or `missing`.
    pub reason: &'static str,
}

impl ScrubMetrics {
    fn register(&self, registry: &mut Registry) {
        registry.register(
            "scrub_blobs_checked",
            "Blobs re-hashed (or found missing) by scrub",
            self.blobs_checked.clone(),
        );
        registry.register(
            "scrub_bytes_checked",
            "Bytes re-hashed by scrub",
            self.bytes_checked.clone(),
        );
        registry.register(
            "scrub_corrupt",
            "Blobs scrub found corrupt or missing and quarantined, by reason",
            self.corrupt.clone(),
        );
        registry.register(
            "scrub_quarantined_blobs",
            "Blobs quarantined now (failed their integrity check, not pushed again yet)",
            self.quarantined.clone(),
        );
        registry.register(
            "scrub_last_run_timestamp_seconds",
            "When the server's last scrub finished (Unix seconds)",
            self.last_run_timestamp_seconds.clone(),
        );
    }
}

/// The vulnerability scan pass rate (M8) over the latest scans of live artifacts, judged with
/// `[scan] pass_max_severity` and `max_db_age_days` (waived findings do not count; with a stale
/// database nothing passes). Refreshed periodically by the server.
#[derive(Default)]
pub struct VulnPassMetrics {
    pub scanned: Gauge,
    pub passing: Gauge,
    pub ratio: Gauge<f64, std::sync::atomic::AtomicU64>,
}

impl VulnPassMetrics {
    /// Records one computation.
    pub fn set(&self, scanned: u64, passing: u64, ratio: f64) {
        self.scanned.set(scanned as i64);
        self.passing.set(passing as i64);
        self.ratio.set(ratio);
    }

    fn register(&self, registry: &mut Registry) {
        registry.register(
            "vuln_artifacts_scanned",
            "Live artifacts with a stored vulnerability scan",
            self.scanned.clone(),
        );
        registry.register(
            "vuln_artifacts_passing",
            "Scanned live artifacts passing the vulnerability policy: scanned at the current database generation, database fresh, no unwaived finding at or above scan.pass_max_severity (M8)",
            self.passing.clone(),
        );
        registry.register(
            "vuln_scan_pass_ratio",
            "vuln_artifacts_passing / vuln_artifacts_scanned, 1 when nothing is scanned (M8 vulnerability scan pass rate)",
            self.ratio.clone(),
        );
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct GrowthLabels {
    pub namespace: String,
    /// `logical` or `physical`.
    pub kind: &'static str,
    /// `7d` or `30d`.
    pub window: &'static str,
}

/// Storage accounting (M7), refreshed periodically by the server.
#[derive(Default)]
pub struct StorageMetrics {
    pub logical_bytes: Family<NamespaceLabels, Gauge>,
    pub physical_bytes: Family<NamespaceLabels, Gauge>,
    pub artifacts: Family<NamespaceLabels, Gauge>,
    pub added_bytes: Family<GrowthLabels, Gauge>,
    pub stored_bytes: Gauge,
    pub stored_blobs: Gauge,
}

impl StorageMetrics {
    fn register(&self, registry: &mut Registry) {
        registry.register(
            "storage_logical_bytes",
            "Bytes the namespace's artifacts reference, counted per artifact (M7)",
            self.logical_bytes.clone(),
        );
        registry.register(
            "storage_physical_bytes",
            "Distinct blob bytes the namespace's artifacts reference (M7)",
            self.physical_bytes.clone(),
        );
        registry.register(
            "storage_artifacts",
            "Manifests in the namespace",
            self.artifacts.clone(),
        );
        registry.register(
            "storage_added_bytes",
            "Bytes added in the namespace over a window, logical or physical (M7 storage growth)",
            self.added_bytes.clone(),
        );
        registry.register(
            "storage_stored_bytes",
            "Bytes in the blob store (each blob once)",
            self.stored_bytes.clone(),
        );
        registry.register(
            "storage_stored_blobs",
            "Blobs in the blob store",
            self.stored_blobs.clone(),
        );
    }
}

/// Garbage collection, recorded by whoever runs it (the server's collector loop).
#[derive(Default)]
pub struct GcMetrics {
    pub runs: Family<OutcomeLabels, Counter>,
    pub marked: Counter,
    pub swept: Counter,
    pub swept_bytes: Counter,
    pub spared: Counter,
    pub last_duration_seconds: Gauge<f64, std::sync::atomic::AtomicU64>,
}

impl GcMetrics {
    fn register(&self, registry: &mut Registry) {
        registry.register(
            "gc_runs",
            "Garbage collection runs by outcome",
            self.runs.clone(),
        );
        registry.register(
            "gc_marked_blobs",
            "Blobs found unreferenced and marked for deletion",
            self.marked.clone(),
        );
        registry.register(
            "gc_swept_blobs",
            "Blobs deleted by garbage collection",
            self.swept.clone(),
        );
        registry.register(
            "gc_swept_bytes",
            "Bytes reclaimed by garbage collection",
            self.swept_bytes.clone(),
        );
        registry.register(
            "gc_spared_blobs",
            "Marked blobs used again before their grace period ended, and kept",
            self.spared.clone(),
        );
        registry.register(
            "gc_last_run_duration_seconds",
            "Duration of the last garbage collection run",
            self.last_duration_seconds.clone(),
        );
    }
}

fn latency_histogram() -> Histogram {
    // 0.5 ms .. ~65 s
    Histogram::new(exponential_buckets(0.0005, 2.0, 18))
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("bonded");
        let requests = Family::<RequestLabels, Counter>::default();
        let request_duration = Family::<EndpointLabels, Histogram>::new_with_constructor(
            latency_histogram as fn() -> Histogram,
        );
        let bytes_received = Counter::default();
        let bytes_sent = Counter::default();
        let publish = Family::<OutcomeLabels, Counter>::default();
        let pull = Family::<PullLabels, Counter>::default();
        let download_duration = Family::<KindLabels, Histogram>::new_with_constructor(
            latency_histogram as fn() -> Histogram,
        );
        registry.register(
            "http_requests",
            "HTTP requests by endpoint, method and status",
            requests.clone(),
        );
        registry.register(
            "http_request_duration_seconds",
            "Time to produce response headers, by endpoint and method",
            request_duration.clone(),
        );
        registry.register(
            "blob_bytes_received",
            "Blob bytes received in uploads",
            bytes_received.clone(),
        );
        registry.register(
            "blob_bytes_sent",
            "Blob bytes sent in downloads",
            bytes_sent.clone(),
        );
        registry.register(
            "publish",
            "Manifest pushes by outcome (M1 publish success rate)",
            publish.clone(),
        );
        registry.register(
            "pull",
            "Blob and manifest GETs by kind and outcome (M9 retrieval error rate)",
            pull.clone(),
        );
        registry.register(
            "download_duration_seconds",
            "Time to serve a blob or manifest GET to the last byte (M2 download latency)",
            download_duration.clone(),
        );
        let gc = GcMetrics::default();
        gc.register(&mut registry);
        let storage = StorageMetrics::default();
        storage.register(&mut registry);
        let promotion = PromotionMetrics::default();
        promotion.register(&mut registry);
        let quota = QuotaMetrics::default();
        quota.register(&mut registry);
        let scrub = ScrubMetrics::default();
        scrub.register(&mut registry);
        let vuln_pass = VulnPassMetrics::default();
        vuln_pass.register(&mut registry);
        let vuln = VulnMetrics::default();
        vuln.register(&mut registry);
        let supply_artifacts = Family::<NamespaceLabels, Gauge>::default();
        let supply_signed = Family::<NamespaceLabels, Gauge>::default();
        let supply_provenance = Family::<NamespaceLabels, Gauge>::default();
        let supply_sbom = Family::<NamespaceLabels, Gauge>::default();
        registry.register(
            "supply_artifacts",
            "Artifacts (manifests that are not referrers) per namespace",
            supply_artifacts.clone(),
        );
        registry.register(
            "supply_signed_artifacts",
            "Artifacts with a signature that counts under the namespace's trust store (M5 signing coverage)",
            supply_signed.clone(),
        );
        registry.register(
            "supply_provenance_artifacts",
            "Artifacts with SLSA provenance that counts under the namespace's trust store",
            supply_provenance.clone(),
        );
        registry.register(
            "supply_sbom_artifacts",
            "Artifacts with a signed SBOM that counts under the namespace's trust store",
            supply_sbom.clone(),
        );
        Metrics {
            gc,
            storage,
            promotion,
            quota,
            scrub,
            vuln_pass,
            vuln,
            registry,
            supply_artifacts,
            supply_signed,
            supply_provenance,
            supply_sbom,
            requests,
            request_duration,
            bytes_received,
            bytes_sent,
            publish,
            pull,
            download_duration,
        }
    }
}

impl Metrics {
    pub fn render(&self) -> String {
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = encode(&mut out, &self.registry);
        out
    }
}
