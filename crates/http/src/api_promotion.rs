//! The promotion part of the management API (`/api/v1/`): environments, promotion, rollback,
//! history, approvals, deployment records and canary analysis.
//!
//! Routes (JSON; errors are `{"error":{"code","message"}}`; repositories travel in the query or
//! body because their names contain slashes):
//! - `GET  /api/v1/environments?repository=R` — each environment in order with its digest and
//!   last move.
//! - `POST /api/v1/promotions` `{"repository","reference","environment","note"?,"dry_run"?}` —
//!   201 with the move, every gate's verdict and the attestation (200 for a dry run or when the
//!   environment already points there); 403 `POLICY_VIOLATION` naming each failed gate.
//! - `POST /api/v1/rollbacks` `{"repository","environment","to"?,"note"?}` — 201 with the move.
//! - `GET  /api/v1/history?repository=R[&environment=E][&limit=N]` — moves, newest first.
//! - `POST /api/v1/approvals` `{"repository","reference","environment","comment"?}`;
//!   `GET /api/v1/approvals?repository=R&reference=X&environment=E`.
//! - `POST /api/v1/deployments` `{"repository","environment","target","digest","status"}`;
//!   `GET /api/v1/deployments?repository=R[&limit=N]` — reports newest first, what runs where,
//!   and the artifact-mismatch rate (M3).
//! - `POST /api/v1/canary` `{"repository","digest","environment"?,"metrics":[…]}` (samples) or
//!   `{"queries":[…],"window":{"start","end","step_secs"}}` (read from the configured
//!   Prometheus), `"alpha"?,"pass_score"?,"marginal_score"?,"rollback_on_fail"?`;
//!   `GET /api/v1/canary?repository=R&digest=D`.
//! - `GET  /api/v1/promotion/key` — the registry's attestation public key.
//!
//! Access (when access control is on): reading needs pull on the repository; promoting, rolling
//! back and automatic canary rollback need maintainer; approving needs pull (the approver's role
//! is recorded and gates count only approvals by the role they ask for); reporting deployments
//! and canary samples needs developer. Every change is audited.
//!
//! Invariant: no rule lives here; every decision comes from `bonded_service::promotion`.

use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use bonded_service::auth::Role;
use bonded_service::promotion::{
    Approval, CanaryRequest, CanarySamples, Deployment, DeploymentReport, MetricQuery,
    MetricSamples, MetricSource, PointerRecord, PromoteRequest, QueryWindow, Thresholds,
};
use bonded_supply::time::rfc3339;
use bonded_types::{Digest, Reference, RepoName};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::api_supply::{audit, authorize, authorize_on, ApiError, Need};
use crate::metrics::{EnvLabels, EnvOutcomeLabels, VerdictLabels};
use crate::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/v1/environments", get(environments))
        .route("/api/v1/promotions", post(promote))
        .route("/api/v1/rollbacks", post(rollback))
        .route("/api/v1/history", get(history))
        .route("/api/v1/approvals", get(approvals).post(approve))
        .route("/api/v1/deployments", get(deployments).post(deploy))
        .route("/api/v1/canary", get(canaries).post(canary))
        .route("/api/v1/promotion/key", get(key))
}

fn repo(s: &str) -> Result<RepoName, ApiError> {
    s.parse()
        .map_err(|e| ApiError::bad(format!("repository {s:?}: {e}")))
}

fn reference(s: &str) -> Result<Reference, ApiError> {
    s.parse()
        .map_err(|e| ApiError::bad(format!("reference {s:?}: {e}")))
}

fn digest(s: &str) -> Result<Digest, ApiError> {
    s.parse()
        .map_err(|e| ApiError::bad(format!("digest {s:?}: {e}")))
}

fn namespace(r: &RepoName) -> String {
    bonded_service::supply::namespace(r).to_string()
}

pub(crate) fn record_json(r: &PointerRecord) -> Value {
    json!({
        "id": r.id,
        "repository": r.repo.as_str(),
        "environment": r.environment,
        "digest": r.digest.to_string(),
        "previous": r.previous.as_ref().map(|d| d.to_string()),
        "action": r.kind.as_str(),
        "actor": r.actor,
        "from": r.from_env,
        "gates": serde_json::from_str::<Value>(&r.gates).unwrap_or(Value::Array(vec![])),
        "note": r.note,
        "attestation": r.attestation.as_ref().map(|d| d.to_string()),
        "at": rfc3339(r.at_ms),
    })
}

fn approval_json(a: &Approval) -> Value {
    json!({
        "repository": a.repo.as_str(),
        "digest": a.digest.to_string(),
        "environment": a.environment,
        "actor": a.actor,
        "role": a.role,
        "comment": a.comment,
        "at": rfc3339(a.at_ms),
    })
}

fn deployment_json(d: &Deployment) -> Value {
    json!({
        "id": d.id,
        "repository": d.repo.as_str(),
        "environment": d.environment,
        "target": d.target,
        "digest": d.digest.to_string(),
        "status": d.status,
        "expected": d.expected.as_ref().map(|e| e.to_string()),
        "mismatch": d.expected.as_ref() != Some(&d.digest),
        "actor": d.actor,
        "at": rfc3339(d.at_ms),
    })
}

#[derive(Deserialize)]
struct RepoQuery {
    repository: String,
    environment: Option<String>,
    limit: Option<u32>,
    reference: Option<String>,
    digest: Option<String>,
}

async fn environments(
    State(state): State<AppState>,
    headers: HeaderMap,
    ext: axum::http::Extensions,
    Query(q): Query<RepoQuery>,
) -> Result<Json<Value>, ApiError> {
    let r = repo(&q.repository)?;
    authorize(&state, &headers, &ext, Need::Pull(&r)).await?;
    let states = state.registry.environment_states(&r).await?;
    Ok(Json(json!({
        "repository": r.as_str(),
        "environments": states.iter().map(|s| json!({
            "name": s.name,
            "digest": s.digest.as_ref().map(|d| d.to_string()),
            "last": s.last.as_ref().map(record_json),
        })).collect::<Vec<_>>(),
    })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PromoteBody {
    repository: String,
    reference: String,
    environment: String,
    #[serde(default)]
    note: String,
    #[serde(default)]
    dry_run: bool,
}

async fn promote(
    State(state): State<AppState>,
    headers: HeaderMap,
    ext: axum::http::Extensions,
    body: Result<Json<PromoteBody>, axum::extract::rejection::JsonRejection>,
) -> Result<Response, ApiError> {
    let Json(b) = body.map_err(|e| ApiError::bad(e.body_text()))?;
    let r = repo(&b.repository)?;
    let least = if b.dry_run {
        Role::Reader
    } else {
        Role::Maintainer
    };
    let who = authorize_on(&state, &headers, &ext, &r, least).await?;
    let req = PromoteRequest {
        repo: r.clone(),
        reference: reference(&b.reference)?,
        to: b.environment.clone(),
        actor: who.name.clone(),
        note: b.note,
        dry_run: b.dry_run,
    };
    let out = match state.registry.promote(&req).await {
        Ok(o) => o,
        Err(e) => {
            if matches!(e, bonded_service::Error::PolicyViolation(_)) {
                state
                    .metrics
                    .promotion
                    .moved(&namespace(&r), &b.environment, "refused");
                audit_outcome(
                    &state,
                    &who,
                    "promote",
                    &r,
                    &format!("{}→{}", b.reference, b.environment),
                    "denied",
                    &e.to_string(),
                )
                .await;
            }
            return Err(e.into());
        }
    };
    if let Some(rec) = &out.record {
        state
            .metrics
            .promotion
            .moved(&namespace(&r), &b.environment, "promoted");
        if let Some(secs) = out.time_to_promote_secs {
            state
                .metrics
                .promotion
                .time_to_promote
                .get_or_create(&EnvLabels {
                    namespace: namespace(&r),
                    environment: b.environment.clone(),
                })
                .observe(secs);
        }
        audit(
            &state,
            who.name.clone(),
            who.source.clone(),
            "promote",
            r.as_str(),
            &format!("{}@{} → {}", r, rec.digest, rec.environment),
        )
        .await;
    }
    let status = if out.record.is_some() {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    let body = json!({
        "repository": r.as_str(),
        "digest": out.digest.to_string(),
        "environment": out.environment,
        "promoted": out.record.is_some(),
        "dry_run": b.dry_run,
        "record": out.record.as_ref().map(record_json),
        "gates": out.gates,
        "attestation": out.attestation.as_ref().map(|d| d.to_string()),
        "time_to_promote_secs": out.time_to_promote_secs,
    });
    Ok((status, Json(body)).into_response())
}

async fn audit_outcome(
    state: &AppState,
    who: &crate::api_supply::Caller,
    action: &str,
    r: &RepoName,
    target: &str,
    outcome: &str,
    detail: &str,
) {
    if let Some(a) = &state.audit {
        a.record(bonded_service::audit::AuditEntry {
            at_ms: 0,
            actor: who.name.clone(),
            action: action.into(),
            repo: r.to_string(),
            target: target.into(),
            source: who.source.clone(),
            outcome: outcome.into(),
            detail: detail.into(),
        })
        .await;
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RollbackBody {
    repository: String,
    environment: String,
    to: Option<String>,
    #[serde(default)]
    note: String,
}

async fn rollback(
    State(state): State<AppState>,
    headers: HeaderMap,
    ext: axum::http::Extensions,
    body: Result<Json<RollbackBody>, axum::extract::rejection::JsonRejection>,
) -> Result<Response, ApiError> {
    let Json(b) = body.map_err(|e| ApiError::bad(e.body_text()))?;
    let r = repo(&b.repository)?;
    let who = authorize_on(&state, &headers, &ext, &r, Role::Maintainer).await?;
    let to = b.to.as_deref().map(digest).transpose()?;
    let rec = state
        .registry
        .rollback(&r, &b.environment, to.as_ref(), &who.name, &b.note)
        .await?;
    state
        .metrics
        .promotion
        .moved(&namespace(&r), &b.environment, "rolled_back");
    audit(
        &state,
        who.name,
        who.source,
        "rollback",
        r.as_str(),
        &format!("{}@{} → {}", r, rec.digest, rec.environment),
    )
    .await;
    Ok((StatusCode::CREATED, Json(record_json(&rec))).into_response())
}

async fn history(
    State(state): State<AppState>,
    headers: HeaderMap,
    ext: axum::http::Extensions,
    Query(q): Query<RepoQuery>,
) -> Result<Json<Value>, ApiError> {
    let r = repo(&q.repository)?;
    authorize(&state, &headers, &ext, Need::Pull(&r)).await?;
    let moves = state
        .registry
        .promotion_history(&r, q.environment.as_deref(), q.limit.unwrap_or(100))
        .await?;
    Ok(Json(json!({
        "repository": r.as_str(),
        "history": moves.iter().map(record_json).collect::<Vec<_>>(),
    })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ApproveBody {
    repository: String,
    reference: String,
    environment: String,
    #[serde(default)]
    comment: String,
}

async fn approve(
    State(state): State<AppState>,
    headers: HeaderMap,
    ext: axum::http::Extensions,
    body: Result<Json<ApproveBody>, axum::extract::rejection::JsonRejection>,
) -> Result<Response, ApiError> {
    let Json(b) = body.map_err(|e| ApiError::bad(e.body_text()))?;
    let r = repo(&b.repository)?;
    let who = authorize_on(&state, &headers, &ext, &r, Role::Reader).await?;
    let a = state
        .registry
        .approve(
            &r,
            &reference(&b.reference)?,
            &b.environment,
            &who.name,
            who.role.as_str(),
            &b.comment,
        )
        .await?;
    audit(
        &state,
        who.name,
        who.source,
        "approve",
        r.as_str(),
        &format!("{}@{} for {}", r, a.digest, a.environment),
    )
    .await;
    Ok((StatusCode::CREATED, Json(approval_json(&a))).into_response())
}

async fn approvals(
    State(state): State<AppState>,
    headers: HeaderMap,
    ext: axum::http::Extensions,
    Query(q): Query<RepoQuery>,
) -> Result<Json<Value>, ApiError> {
    let r = repo(&q.repository)?;
    authorize(&state, &headers, &ext, Need::Pull(&r)).await?;
    let (Some(rf), Some(env)) = (q.reference.as_deref(), q.environment.as_deref()) else {
        return Err(ApiError::bad("give reference and environment"));
    };
    let list = state.registry.approvals(&r, &reference(rf)?, env).await?;
    Ok(Json(
        json!({ "approvals": list.iter().map(approval_json).collect::<Vec<_>>() }),
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DeployBody {
    repository: String,
    environment: String,
    target: String,
    digest: String,
    status: String,
}

async fn deploy(
    State(state): State<AppState>,
    headers: HeaderMap,
    ext: axum::http::Extensions,
    body: Result<Json<DeployBody>, axum::extract::rejection::JsonRejection>,
) -> Result<Response, ApiError> {
    let Json(b) = body.map_err(|e| ApiError::bad(e.body_text()))?;
    let r = repo(&b.repository)?;
    let who = authorize_on(&state, &headers, &ext, &r, Role::Developer).await?;
    let d = state
        .registry
        .record_deployment(&DeploymentReport {
            repo: r.clone(),
            environment: b.environment,
            target: b.target,
            digest: digest(&b.digest)?,
            status: b.status,
            actor: who.name.clone(),
        })
        .await?;
    let mismatch = d.expected.as_ref() != Some(&d.digest);
    state
        .metrics
        .promotion
        .deployments
        .get_or_create(&EnvOutcomeLabels {
            namespace: namespace(&r),
            environment: d.environment.clone(),
            outcome: if mismatch { "mismatch" } else { "match" },
        })
        .inc();
    if mismatch {
        tracing::warn!(repo = %r, environment = %d.environment, target = %d.target, digest = %d.digest,
            "deployment runs a digest its environment does not point at");
    }
    audit(
        &state,
        who.name,
        who.source,
        "deploy",
        r.as_str(),
        &format!("{}@{} on {}", r, d.digest, d.target),
    )
    .await;
    Ok((StatusCode::CREATED, Json(deployment_json(&d))).into_response())
}

async fn deployments(
    State(state): State<AppState>,
    headers: HeaderMap,
    ext: axum::http::Extensions,
    Query(q): Query<RepoQuery>,
) -> Result<Json<Value>, ApiError> {
    let r = repo(&q.repository)?;
    authorize(&state, &headers, &ext, Need::Pull(&r)).await?;
    let list = state
        .registry
        .deployments(Some(&r), q.limit.unwrap_or(1000))
        .await?;
    // What runs where: the newest report per (environment, target).
    let mut seen = std::collections::BTreeSet::new();
    let running: Vec<Value> = list
        .iter()
        .filter(|d| seen.insert((d.environment.clone(), d.target.clone())))
        .map(deployment_json)
        .collect();
    let mismatches = list
        .iter()
        .filter(|d| d.expected.as_ref() != Some(&d.digest))
        .count();
    Ok(Json(json!({
        "repository": r.as_str(),
        "running": running,
        "deployments": list.iter().map(deployment_json).collect::<Vec<_>>(),
        "mismatch_rate": if list.is_empty() { 0.0 } else { mismatches as f64 / list.len() as f64 },
    })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CanaryBody {
    repository: String,
    digest: String,
    environment: Option<String>,
    metrics: Option<Vec<MetricSamples>>,
    queries: Option<Vec<MetricQuery>>,
    window: Option<QueryWindow>,
    alpha: Option<f64>,
    pass_score: Option<f64>,
    marginal_score: Option<f64>,
    #[serde(default)]
    rollback_on_fail: bool,
}

async fn canary(
    State(state): State<AppState>,
    headers: HeaderMap,
    ext: axum::http::Extensions,
    body: Result<Json<CanaryBody>, axum::extract::rejection::JsonRejection>,
) -> Result<Response, ApiError> {
    let Json(b) = body.map_err(|e| ApiError::bad(e.body_text()))?;
    let r = repo(&b.repository)?;
    let least = if b.rollback_on_fail {
        Role::Maintainer
    } else {
        Role::Developer
    };
    let who = authorize_on(&state, &headers, &ext, &r, least).await?;
    let samples = match (b.metrics, b.queries, b.window) {
        (Some(m), None, None) => CanarySamples::Given(m),
        (None, Some(q), Some(w)) => CanarySamples::Query(q, w),
        _ => {
            return Err(ApiError::bad(
                "give either `metrics` (samples) or `queries` with a `window`",
            ))
        }
    };
    let d = Thresholds::default();
    if b.rollback_on_fail && b.environment.is_none() {
        return Err(ApiError::bad("rollback_on_fail needs the environment"));
    }
    let req = CanaryRequest {
        repo: r.clone(),
        digest: digest(&b.digest)?,
        environment: b.environment.clone(),
        samples,
        thresholds: Thresholds {
            alpha: b.alpha.unwrap_or(d.alpha),
            pass_score: b.pass_score.unwrap_or(d.pass_score),
            marginal_score: b.marginal_score.unwrap_or(d.marginal_score),
        },
        rollback_env: b.rollback_on_fail.then(|| b.environment.clone()).flatten(),
        actor: who.name.clone(),
    };
    let source: Option<Arc<dyn MetricSource>> = state.metric_source.clone();
    let out = state.registry.canary(&req, source.as_ref()).await?;
    state
        .metrics
        .promotion
        .canary_verdicts
        .get_or_create(&VerdictLabels {
            namespace: namespace(&r),
            verdict: out.report.verdict.as_str(),
        })
        .inc();
    audit(
        &state,
        who.name.clone(),
        who.source.clone(),
        "canary",
        r.as_str(),
        &format!("{}@{}: {}", r, req.digest, out.report.verdict.as_str()),
    )
    .await;
    if let Some(rb) = &out.rolled_back {
        state
            .metrics
            .promotion
            .moved(&namespace(&r), &rb.environment, "rolled_back");
        audit(
            &state,
            who.name,
            who.source,
            "rollback",
            r.as_str(),
            &format!("{}@{} → {} (canary failed)", r, rb.digest, rb.environment),
        )
        .await;
    }
    Ok((
        StatusCode::CREATED,
        Json(json!({
            "id": out.record.id,
            "verdict": out.report.verdict.as_str(),
            "score": out.report.score,
            "report": out.report,
            "rolled_back": out.rolled_back.as_ref().map(record_json),
        })),
    )
        .into_response())
}

async fn canaries(
    State(state): State<AppState>,
    headers: HeaderMap,
    ext: axum::http::Extensions,
    Query(q): Query<RepoQuery>,
) -> Result<Json<Value>, ApiError> {
    let r = repo(&q.repository)?;
    authorize(&state, &headers, &ext, Need::Pull(&r)).await?;
    let Some(d) = q.digest.as_deref() else {
        return Err(ApiError::bad("give the digest"));
    };
    let list = state.registry.canary_verdicts(&r, &digest(d)?).await?;
    Ok(Json(json!({
        "verdicts": list.iter().map(|c| json!({
            "id": c.id,
            "environment": c.environment,
            "verdict": c.verdict,
            "score": c.score,
            "report": serde_json::from_str::<Value>(&c.report).unwrap_or(Value::Null),
            "actor": c.actor,
            "at": rfc3339(c.at_ms),
        })).collect::<Vec<_>>(),
    })))
}

async fn key(
    State(state): State<AppState>,
    headers: HeaderMap,
    ext: axum::http::Extensions,
) -> Result<Json<Value>, ApiError> {
    authorize(&state, &headers, &ext, Need::Account).await?;
    let public = state.registry.attestation_public_key().await?;
    Ok(Json(json!({
        "key_id": public.key_id(),
        "algorithm": public.algorithm().as_str(),
        "public_key": public.to_pem(),
    })))
}
