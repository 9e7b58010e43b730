//! `/api/v1/audit`: query the audit log (JSON, or JSON lines for a SIEM with `format=jsonl`),
//! and `/api/v1/audit/verify`: re-derive the hash chain and check its signed checkpoints.
//! System admins only when access control is on.

use axum::extract::{Request, State};
use axum::http::header;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use bonded_service::audit::{AuditQuery, AuditRecord};
use serde_json::{json, Value};

use super::{caller, source, ApiError};
use crate::AppState;

pub(super) fn router() -> Router<AppState> {
    Router::new()
        .route("/audit", get(query))
        .route("/audit/verify", get(verify))
        .route("/audit/checkpoint", post(checkpoint))
}

/// Only system admins read the log (anyone, when access control is off).
async fn reader(state: &AppState, req: &Parts) -> Result<(), ApiError> {
    let src = source(&req.extensions);
    match caller(state, &req.headers, &src).await? {
        Some(p) if !p.is_system_admin() => Err(ApiError::new(
            axum::http::StatusCode::FORBIDDEN,
            "FORBIDDEN",
            format!(
                "{} is not a system admin; only system admins read the audit log",
                p.name()
            ),
        )),
        _ => Ok(()),
    }
}

fn record_json(r: &AuditRecord) -> Value {
    let e = &r.entry;
    json!({
        "seq": r.seq,
        "at_ms": e.at_ms,
        "actor": e.actor,
        "action": e.action,
        "repository": e.repo,
        "target": e.target,
        "source": e.source,
        "outcome": e.outcome,
        "detail": e.detail,
        "hash": r.hash,
    })
}

fn int(q: &[(String, String)], k: &str) -> Result<Option<i64>, ApiError> {
    q.iter()
        .find(|(key, _)| key == k)
        .map(|(_, v)| {
            v.parse::<i64>().map_err(|_| {
                ApiError::invalid(format!(
                    "{k} must be an integer (Unix milliseconds for times)"
                ))
            })
        })
        .transpose()
}

/// `GET /api/v1/audit?repository=&actor=&action=&since=&until=&after=&limit=&format=json|jsonl`
async fn query(State(state): State<AppState>, req: Request) -> Result<Response, ApiError> {
    let (req, _) = req.into_parts();
    reader(&state, &req).await?;
    let q = crate::parse_query(&req.uri);
    let text = |k: &str| q.iter().find(|(key, _)| key == k).map(|(_, v)| v.clone());
    for (k, _) in &q {
        if !matches!(
            k.as_str(),
            "repository" | "actor" | "action" | "since" | "until" | "after" | "limit" | "format"
        ) {
            return Err(ApiError::invalid(format!(
                "unknown query parameter {k}; use repository, actor, action, since, until, after, limit, format"
            )));
        }
    }
    let limit = int(&q, "limit")?.unwrap_or(1000);
    if !(1..=10_000).contains(&limit) {
        return Err(ApiError::invalid("limit must be between 1 and 10000"));
    }
    let query = AuditQuery {
        repo: text("repository"),
        actor: text("actor"),
        action: text("action"),
        since_ms: int(&q, "since")?,
        until_ms: int(&q, "until")?,
        after_seq: int(&q, "after")?.unwrap_or(0),
        limit: limit as u32,
    };
    let records = state
        .audit
        .as_ref()
        .ok_or_else(|| ApiError::invalid("the audit log is disabled on this registry"))?
        .query(&query)
        .await
        .map_err(internal)?;
    match text("format").as_deref() {
        None | Some("json") => {
            let next = records.last().map(|r| r.seq);
            let entries: Vec<Value> = records.iter().map(record_json).collect();
            Ok(Json(json!({ "entries": entries, "next_after": next })).into_response())
        }
        Some("jsonl") => {
            let mut out = String::new();
            for r in &records {
                out.push_str(&record_json(r).to_string());
                out.push('\n');
            }
            Ok(([(header::CONTENT_TYPE, "application/x-ndjson")], out).into_response())
        }
        Some(other) => Err(ApiError::invalid(format!(
            "format {other:?} is not json or jsonl"
        ))),
    }
}

fn internal(e: String) -> ApiError {
    tracing::error!(error = %e, "audit log error");
    ApiError::new(
        axum::http::StatusCode::INTERNAL_SERVER_ERROR,
        "INTERNAL",
        "internal server error",
    )
}

async fn verify(State(state): State<AppState>, req: Request) -> Result<Json<Value>, ApiError> {
    let (req, _) = req.into_parts();
    reader(&state, &req).await?;
    let audit = state
        .audit
        .as_ref()
        .ok_or_else(|| ApiError::invalid("the audit log is disabled on this registry"))?;
    let report = audit.verify().await.map_err(internal)?;
    Ok(Json(json!({
        "intact": report.problems.is_empty(),
        "entries": report.entries,
        "checkpoints": report.checkpoints,
        "problems": report.problems,
    })))
}

async fn checkpoint(State(state): State<AppState>, req: Request) -> Result<Json<Value>, ApiError> {
    let (req, _) = req.into_parts();
    reader(&state, &req).await?;
    let audit = state
        .audit
        .as_ref()
        .ok_or_else(|| ApiError::invalid("the audit log is disabled on this registry"))?;
    let seq = audit.checkpoint().await.map_err(internal)?;
    Ok(Json(json!({ "seq": seq })))
}
