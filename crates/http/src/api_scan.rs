//! The vulnerability part of the management API (`/api/v1/`): scan an artifact now, read its
//! stored scan, and find the artifacts an advisory affects.
//!
//! Routes (JSON; errors are `{"error":{"code","message"}}`):
//! - `POST /api/v1/scans` `{"repository","reference"}` — scans now; 200 with the result
//!   (`findings`, `counts`, `generation`, …). Needs developer on the repository; audited.
//! - `GET  /api/v1/scans?repository=R&reference=X` — the stored result; 404 `NOT_SCANNED`.
//!   Needs pull.
//! - `GET  /api/v1/vulns/affected?advisory=CVE-…[&environment=prod]` — artifacts whose latest
//!   scan has a finding of that id or alias (only digests the environment's tag points at, when
//!   given), limited to repositories the caller may pull.
//!
//! Also [`refresh_vuln_gauges`], which `/metrics` calls before rendering.
//!
//! Invariant: no rule lives here; every decision comes from `bonded_service::vulns`.

use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::get;
use axum::{Json, Router};
use bonded_service::auth::Role;
use bonded_types::{Reference, RepoName};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::api_supply::{audit, authorize, authorize_on, ApiError, Need};
use crate::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/v1/scans", get(stored).post(scan))
        .route("/api/v1/vulns/affected", get(affected))
}

fn parse_target(repository: &str, reference: &str) -> Result<(RepoName, Reference), ApiError> {
    let r = repository
        .parse()
        .map_err(|e| ApiError::bad(format!("repository {repository:?}: {e}")))?;
    let x = reference
        .parse()
        .map_err(|e| ApiError::bad(format!("reference {reference:?}: {e}")))?;
    Ok((r, x))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Target {
    repository: String,
    reference: String,
}

async fn scan(
    State(state): State<AppState>,
    headers: HeaderMap,
    ext: axum::http::Extensions,
    body: Result<Json<Target>, axum::extract::rejection::JsonRejection>,
) -> Result<Json<Value>, ApiError> {
    let Json(b) = body.map_err(|e| ApiError::bad(e.body_text()))?;
    let (r, x) = parse_target(&b.repository, &b.reference)?;
    let who = authorize_on(&state, &headers, &ext, &r, Role::Developer).await?;
    let result = state.registry.scan(&r, &x).await?;
    audit(
        &state,
        who.name,
        who.source,
        "scan",
        bonded_service::supply::namespace(&r),
        &format!("{r}@{}", result.digest),
    )
    .await;
    Ok(Json(json!(result)))
}

async fn stored(
    State(state): State<AppState>,
    headers: HeaderMap,
    ext: axum::http::Extensions,
    Query(q): Query<Target>,
) -> Result<Json<Value>, ApiError> {
    let (r, x) = parse_target(&q.repository, &q.reference)?;
    authorize(&state, &headers, &ext, Need::Pull(&r)).await?;
    match state.registry.stored_scan(&r, &x).await? {
        Some(result) => Ok(Json(json!(result))),
        None => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "NOT_SCANNED",
            format!("{r}:{x} has not been scanned; POST /api/v1/scans scans it now"),
        )),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AffectedQuery {
    advisory: String,
    environment: Option<String>,
}

async fn affected(
    State(state): State<AppState>,
    headers: HeaderMap,
    ext: axum::http::Extensions,
    Query(q): Query<AffectedQuery>,
) -> Result<Json<Value>, ApiError> {
    authorize(&state, &headers, &ext, Need::Account).await?;
    let mut out = Vec::new();
    for result in state
        .registry
        .affected_by(&q.advisory, q.environment.as_deref())
        .await?
    {
        let Ok(r) = result.repository.parse::<RepoName>() else {
            continue;
        };
        if authorize(&state, &headers, &ext, Need::Pull(&r))
            .await
            .is_ok()
        {
            out.push(json!(result));
        }
    }
    Ok(Json(json!({
        "advisory": q.advisory,
        "environment": q.environment,
        "affected": out,
    })))
}

/// Recomputes the vulnerability gauges (findings by severity over live artifacts, database age
/// and generation) from the metadata store, at most every `VulnMetrics::REFRESH`. A failure is
/// logged and the previous values stay.
pub async fn refresh_vuln_gauges(state: &AppState) {
    let m = &state.metrics.vuln;
    if !m.due() {
        return;
    }
    let summary = match state.registry.vuln_summary().await {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(error = %e, "computing the vulnerability metrics failed");
            return;
        }
    };
    for (severity, n) in &summary.findings {
        m.findings
            .get_or_create(&crate::metrics::SeverityLabels {
                severity: severity.clone(),
            })
            .set(*n as i64);
    }
    m.db_generation.set(summary.generation);
    // -1 until a database was imported: no age to speak of.
    let age = if summary.updated_at_ms == 0 {
        -1
    } else {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as i64)
            .unwrap_or(0);
        (now - summary.updated_at_ms).max(0) / 1000
    };
    m.db_age_seconds.set(age);
}
