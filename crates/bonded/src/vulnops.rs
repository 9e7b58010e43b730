//! The server's side of vulnerability operations: the notifier sink that logs, counts and audits
//! scan events, and the mirror refresh loop.

use std::sync::Arc;
use std::time::Duration;

use bonded_http::metrics::{Metrics, NewFindingLabels};
use bonded_service::audit::{AuditEntry, Auditor};
use bonded_service::vuln_ops::{log_new_findings, NewFindings, ScanOutcome, VulnNotifier};
use bonded_service::Registry;
use tracing::warn;

use crate::mirror::MirrorOptions;

/// Logs new findings (`bonded::vuln::notify`), counts them in `bonded_vuln_new_findings_total`
/// by environment and severity, and appends them to the audit log (actor `scanner`, action
/// `vuln-new-findings`). Scan outcomes and durations go to the metrics. Webhooks would be one
/// more sink here.
pub struct ServerNotifier {
    pub metrics: Arc<Metrics>,
    pub audit: Option<Auditor>,
}

#[async_trait::async_trait]
impl VulnNotifier for ServerNotifier {
    fn scanned(&self, outcome: ScanOutcome, elapsed: Duration) {
        self.metrics
            .vuln
            .scanned(outcome.as_str(), elapsed.as_secs_f64());
    }

    async fn new_findings(&self, event: &NewFindings) {
        log_new_findings(event);
        for environment in &event.environments {
            for f in &event.findings {
                self.metrics
                    .vuln
                    .new_findings
                    .get_or_create(&NewFindingLabels {
                        environment: environment.clone(),
                        severity: f.severity.clone(),
                    })
                    .inc();
            }
        }
        if let Some(audit) = &self.audit {
            let advisories: Vec<String> = event
                .findings
                .iter()
                .map(|f| {
                    format!(
                        "{} ({} {}, {})",
                        f.advisory_id, f.package, f.installed, f.severity
                    )
                })
                .collect();
            audit
                .record(AuditEntry {
                    at_ms: 0,
                    actor: "scanner".into(),
                    action: "vuln-new-findings".into(),
                    repo: event.repo.to_string(),
                    target: event.digest.to_string(),
                    source: String::new(),
                    outcome: "ok".into(),
                    detail: format!(
                        "environments: {}; database generation {}; new: {}",
                        event.environments.join(", "),
                        event.generation,
                        advisories.join(", ")
                    ),
                })
                .await;
        }
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Fetches each mirror when its last fetch is `every_secs` old (a failed one is retried after at
/// most an hour), checking every minute at most.
pub async fn mirror_loop(
    registry: Registry,
    urls: Vec<String>,
    every_secs: u64,
    opts: MirrorOptions,
) {
    let check = Duration::from_secs(every_secs.min(60));
    let mut tick = tokio::time::interval(check);
    loop {
        tick.tick().await;
        for url in &urls {
            let Ok(name) = crate::mirror::check_url(url) else {
                continue;
            };
            let last = match registry.mirror_state(&name).await {
                Ok(s) => s,
                Err(e) => {
                    warn!(mirror = %name, error = %e, "reading the mirror's state failed; will retry");
                    continue;
                }
            };
            let due = match &last {
                None => true,
                Some(s) => {
                    let wait = if s.outcome == "failed" {
                        every_secs.min(3600)
                    } else {
                        every_secs
                    };
                    now_ms() - s.fetched_at_ms >= (wait as i64) * 1000
                }
            };
            if !due {
                continue;
            }
            if let Err(e) = crate::mirror::refresh(&registry, url, &opts, true).await {
                warn!(mirror = %name, error = format!("{e:#}"), "refreshing the vulnerability mirror failed; will retry");
            }
        }
    }
}
