//! `/api/v1/users`, `/api/v1/robots`, `/api/v1/grants`, `/api/v1/signing-keys`: accounts, role
//! grants and token signing keys. System admins only, except that namespace admins manage the
//! grants inside their namespace (decided by the service).

use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{Path, Request, State};
use axum::http::request::Parts;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use bonded_service::auth::{AccountInfo, Auth, Principal};
use serde::Deserialize;
use serde_json::{json, Value};

use super::{auth_disabled, caller, source, ApiError};
use crate::AppState;

pub(super) fn router() -> Router<AppState> {
    Router::new()
        .route("/users", get(list_users).post(create_user))
        .route("/users/{name}", delete(delete_account))
        .route("/robots", get(list_robots).post(create_robot))
        .route("/robots/{name}", delete(delete_account))
        .route("/robots/{name}/revoke", post(revoke))
        .route(
            "/grants",
            get(list_grants).post(put_grant).delete(remove_grant),
        )
        .route("/signing-keys/rotate", post(rotate))
}

/// The caller, its address and the access-control service; refuses when auth is off.
async fn admin(state: &AppState, req: &Parts) -> Result<(Principal, String, Auth), ApiError> {
    let src = source(&req.extensions);
    let p = caller(state, &req.headers, &src).await?;
    match (p, &state.auth) {
        (Some(p), Some(auth)) => Ok((p, src, auth.clone())),
        _ => Err(auth_disabled()),
    }
}

async fn body<T: for<'de> Deserialize<'de>>(body: Body) -> Result<T, ApiError> {
    let bytes: Bytes = axum::body::to_bytes(body, 64 << 10)
        .await
        .map_err(|e| ApiError::invalid(format!("reading the request body: {e}")))?;
    serde_json::from_slice(&bytes).map_err(|e| ApiError::invalid(format!("invalid JSON body: {e}")))
}

fn account_json(a: &AccountInfo) -> Value {
    json!({
        "name": a.name,
        "kind": a.kind.as_str(),
        "system_admin": a.system_admin,
        "created_at_ms": a.created_at_ms,
        "expires_at_ms": a.expires_at_ms,
        "revoked": a.revoked_at_ms.is_some(),
    })
}

async fn list(state: &AppState, req: Parts, robots: bool) -> Result<Json<Value>, ApiError> {
    let (p, _, auth) = admin(state, &req).await?;
    let accounts: Vec<Value> = auth
        .accounts(&p)
        .await?
        .iter()
        .filter(|a| (a.kind == bonded_service::auth::AccountKind::Robot) == robots)
        .map(account_json)
        .collect();
    let key = if robots { "robots" } else { "users" };
    Ok(Json(json!({ key: accounts })))
}

async fn list_users(State(state): State<AppState>, req: Request) -> Result<Json<Value>, ApiError> {
    let (req, _) = req.into_parts();
    list(&state, req, false).await
}

async fn list_robots(State(state): State<AppState>, req: Request) -> Result<Json<Value>, ApiError> {
    let (req, _) = req.into_parts();
    list(&state, req, true).await
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewUser {
    name: String,
    password: String,
    #[serde(default)]
    system_admin: bool,
}

async fn create_user(State(state): State<AppState>, req: Request) -> Result<Response, ApiError> {
    let (req, req_body) = req.into_parts();
    let (p, src, auth) = admin(&state, &req).await?;
    let u: NewUser = body(req_body).await?;
    let info = auth
        .create_user(&p, &u.name, &u.password, u.system_admin, &src)
        .await?;
    Ok((StatusCode::CREATED, Json(account_json(&info))).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewRobot {
    name: String,
    /// Lifetime in days; absent or 0 means no expiry.
    #[serde(default)]
    expires_in_days: u64,
}

async fn create_robot(State(state): State<AppState>, req: Request) -> Result<Response, ApiError> {
    let (req, req_body) = req.into_parts();
    let (p, src, auth) = admin(&state, &req).await?;
    let r: NewRobot = body(req_body).await?;
    let ttl = (r.expires_in_days > 0).then(|| Duration::from_secs(r.expires_in_days * 86_400));
    let robot = auth.create_robot(&p, &r.name, ttl, &src).await?;
    let out = json!({
        "name": robot.name,
        "secret": robot.secret,
        "expires_at_ms": robot.expires_at_ms,
        "note": "the secret is shown only now; store it in your CI's secret store",
    });
    Ok((StatusCode::CREATED, Json(out)).into_response())
}

async fn delete_account(
    State(state): State<AppState>,
    Path(name): Path<String>,
    req: Request,
) -> Result<Response, ApiError> {
    let (req, _) = req.into_parts();
    let (p, src, auth) = admin(&state, &req).await?;
    auth.delete_account(&p, &name, &src).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn revoke(
    State(state): State<AppState>,
    Path(name): Path<String>,
    req: Request,
) -> Result<Response, ApiError> {
    let (req, _) = req.into_parts();
    let (p, src, auth) = admin(&state, &req).await?;
    auth.revoke(&p, &name, &src).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn list_grants(State(state): State<AppState>, req: Request) -> Result<Json<Value>, ApiError> {
    let (req, _) = req.into_parts();
    let (p, _, auth) = admin(&state, &req).await?;
    let grants: Vec<Value> = auth
        .grants(&p)
        .await?
        .into_iter()
        .map(|g| json!({ "namespace": g.namespace, "subject": g.subject, "role": g.role }))
        .collect();
    Ok(Json(json!({ "grants": grants })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct GrantBody {
    namespace: String,
    subject: String,
    role: String,
}

async fn put_grant(State(state): State<AppState>, req: Request) -> Result<Response, ApiError> {
    let (req, req_body) = req.into_parts();
    let (p, src, auth) = admin(&state, &req).await?;
    let g: GrantBody = body(req_body).await?;
    auth.put_grant(&p, &g.namespace, &g.subject, &g.role, &src)
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(json!({ "namespace": g.namespace, "subject": g.subject, "role": g.role })),
    )
        .into_response())
}

/// `DELETE /api/v1/grants?namespace=…&subject=…` (namespaces contain slashes).
async fn remove_grant(State(state): State<AppState>, req: Request) -> Result<Response, ApiError> {
    let (req, _) = req.into_parts();
    let (p, src, auth) = admin(&state, &req).await?;
    let q = crate::parse_query(&req.uri);
    let get = |k: &str| {
        q.iter()
            .find(|(key, _)| key == k)
            .map(|(_, v)| v.clone())
            .ok_or_else(|| ApiError::invalid(format!("query parameter {k} is required")))
    };
    auth.remove_grant(&p, &get("namespace")?, &get("subject")?, &src)
        .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn rotate(State(state): State<AppState>, req: Request) -> Result<Json<Value>, ApiError> {
    let (req, _) = req.into_parts();
    let (p, src, auth) = admin(&state, &req).await?;
    let kid = auth.rotate_key(&p, &src).await?;
    Ok(Json(json!({ "kid": kid })))
}
