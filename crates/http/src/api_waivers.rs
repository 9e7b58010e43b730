//! Vulnerability waivers and VEX export in the management API (`/api/v1/vulns/`).
//!
//! Routes (JSON; errors are `{"error":{"code","message"}}`):
//! - `POST /api/v1/vulns/waivers` `{"advisory","scope","package"?,"reason","expires","state"?,
//!   "justification"?,"responses"?}` — adds a waiver (201). Needs maintainer on every
//!   repository the scope can match (a grant covering the pattern, or on the artifact's
//!   repository); audited. Bad input is 400 `INVALID_WAIVER` naming the field.
//! - `GET /api/v1/vulns/waivers[?repository=R][&all=true]` — active waivers (with `all`, revoked
//!   and expired ones too), newest first; with `repository`, those that can cover it (needs pull
//!   on it), else the ones whose scope the caller may pull.
//! - `DELETE /api/v1/vulns/waivers/{id}` — revokes (maintainer on its scope; audited); 200 with
//!   the waiver as it is now.
//! - `GET /api/v1/vulns/vex?repository=R&reference=X` — the artifact's CycloneDX VEX document
//!   (`application/vnd.cyclonedx+json`); 404 `NOT_SCANNED` if it has no scan. Needs pull.
//!
//! Invariant: no rule lives here; what a waiver is and whom it waives is
//! `bonded_service::waivers`'s, the document is `bonded_service::vex`'s.

use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get};
use axum::{Json, Router};
use bonded_service::auth::{Access, Role};
use bonded_service::waivers::{AddWaiver, Waiver, WaiverScope};
use bonded_types::{Reference, RepoName};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::api_supply::{audit, authorize, authorize_on, ApiError, Caller, Need};
use crate::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/v1/vulns/waivers", get(list).post(add))
        .route("/api/v1/vulns/waivers/{id}", delete(revoke))
        .route("/api/v1/vulns/vex", get(vex))
}

/// The caller's access (everything when access control is off), name and address.
async fn access(
    state: &AppState,
    headers: &HeaderMap,
    ext: &axum::http::Extensions,
) -> Result<(Access, String, String), ApiError> {
    let source = crate::api::source(ext);
    let (Some(auth), Some(p)) = (
        &state.auth,
        crate::api::caller(state, headers, &source)
            .await
            .map_err(ApiError::from_access)?,
    ) else {
        return Ok((Access::everything(), "anonymous".into(), source));
    };
    let access = auth
        .access(&p)
        .await
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "INTERNAL", e.to_string()))?;
    Ok((access, p.name().to_string(), source))
}

/// The caller, if it holds at least `least` on everything `scope` covers.
async fn authorize_scope(
    state: &AppState,
    headers: &HeaderMap,
    ext: &axum::http::Extensions,
    scope: &WaiverScope,
    least: Role,
) -> Result<Caller, ApiError> {
    match scope {
        WaiverScope::Artifact(repo, _) => authorize_on(state, headers, ext, repo, least).await,
        WaiverScope::Repositories(ns) => {
            let (access, name, source) = access(state, headers, ext).await?;
            match access.role_covering(ns) {
                Some(role) if role >= least => Ok(Caller { name, source, role }),
                _ => Err(ApiError::new(
                    StatusCode::FORBIDDEN,
                    "FORBIDDEN",
                    format!(
                        "{name} may not do this: it needs the {least} role on every repository \
                         {} matches",
                        ns.as_str()
                    ),
                )),
            }
        }
    }
}

fn scope_of(w: &Waiver) -> Result<WaiverScope, ApiError> {
    w.parsed_scope().ok_or_else(|| {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "INTERNAL",
            format!("waiver {} has an unreadable scope", w.id),
        )
    })
}

async fn add(
    State(state): State<AppState>,
    headers: HeaderMap,
    ext: axum::http::Extensions,
    body: Result<Json<AddWaiver>, axum::extract::rejection::JsonRejection>,
) -> Result<Response, ApiError> {
    let Json(b) = body.map_err(|e| ApiError::bad(e.body_text()))?;
    // Parsed here only to decide who may add it; the service checks everything else.
    let scope: WaiverScope = b
        .scope
        .trim()
        .parse()
        .map_err(|e: String| ApiError::new(StatusCode::BAD_REQUEST, "INVALID_WAIVER", e))?;
    let who = authorize_scope(&state, &headers, &ext, &scope, Role::Maintainer).await?;
    let w = state.registry.waiver_add(b, &who.name).await?;
    audit(
        &state,
        who.name,
        who.source,
        "waiver.add",
        &scope.namespace(),
        &format!(
            "waiver {}: {} on {} until {}",
            w.id, w.advisory, w.scope, w.expires_at
        ),
    )
    .await;
    Ok((StatusCode::CREATED, Json(json!(w))).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ListQuery {
    repository: Option<String>,
    #[serde(default)]
    all: bool,
}

async fn list(
    State(state): State<AppState>,
    headers: HeaderMap,
    ext: axum::http::Extensions,
    Query(q): Query<ListQuery>,
) -> Result<Json<Value>, ApiError> {
    let repo = q
        .repository
        .as_deref()
        .map(|r| {
            r.parse::<RepoName>()
                .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "INVALID_NAME", e.to_string()))
        })
        .transpose()?;
    match &repo {
        Some(r) => authorize(&state, &headers, &ext, Need::Pull(r)).await?,
        None => authorize(&state, &headers, &ext, Need::Account).await?,
    };
    let waivers = state.registry.waivers(repo.as_ref(), q.all).await?;
    let out: Vec<Waiver> = match &repo {
        Some(_) => waivers,
        None => {
            let (access, _, _) = access(&state, &headers, &ext).await?;
            waivers
                .into_iter()
                .filter(|w| match w.parsed_scope() {
                    Some(WaiverScope::Artifact(r, _)) => access.sees(&r),
                    Some(WaiverScope::Repositories(ns)) => access.role_covering(&ns).is_some(),
                    None => false,
                })
                .collect()
        }
    };
    Ok(Json(json!({ "waivers": out })))
}

async fn revoke(
    State(state): State<AppState>,
    headers: HeaderMap,
    ext: axum::http::Extensions,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let id: i64 = id.parse().map_err(|_| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "INVALID_WAIVER",
            format!("waiver id {id:?} is not a number"),
        )
    })?;
    let w = state.registry.waiver(id).await?;
    let scope = scope_of(&w)?;
    let who = authorize_scope(&state, &headers, &ext, &scope, Role::Maintainer).await?;
    let w = state.registry.waiver_revoke(id, &who.name).await?;
    audit(
        &state,
        who.name,
        who.source,
        "waiver.revoke",
        &scope.namespace(),
        &format!("waiver {}: {} on {}", w.id, w.advisory, w.scope),
    )
    .await;
    Ok(Json(json!(w)))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct VexQuery {
    repository: String,
    reference: String,
}

async fn vex(
    State(state): State<AppState>,
    headers: HeaderMap,
    ext: axum::http::Extensions,
    Query(q): Query<VexQuery>,
) -> Result<Response, ApiError> {
    let r: RepoName = q.repository.parse().map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "INVALID_NAME",
            format!("repository {:?}: {e}", q.repository),
        )
    })?;
    let x: Reference = q
        .reference
        .parse()
        .map_err(|e| ApiError::bad(format!("reference {:?}: {e}", q.reference)))?;
    authorize(&state, &headers, &ext, Need::Pull(&r)).await?;
    match state.registry.vex(&r, &x).await? {
        Some(doc) => Ok((
            [(header::CONTENT_TYPE, "application/vnd.cyclonedx+json")],
            Json(doc),
        )
            .into_response()),
        None => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "NOT_SCANNED",
            format!("{r}:{x} has not been scanned; POST /api/v1/scans scans it now"),
        )),
    }
}
