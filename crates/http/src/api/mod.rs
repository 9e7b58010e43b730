//! The management API under `/api/v1/`: JSON over HTTP, shared by every management feature.
//!
//! Conventions (other routers under `/api/v1` follow them):
//! - errors are a status code plus `{"error":{"code":"SNAKE_CASE_CODE","message":"…"}}`
//!   ([`ApiError`]); codes: `UNAUTHENTICATED` 401, `FORBIDDEN` 403, `INVALID_ARGUMENT` 400,
//!   `NOT_FOUND` 404, `CONFLICT` 409, `AUTH_DISABLED` 409, `RATE_LIMITED` 429, `INTERNAL` 500;
//! - callers authenticate with HTTP Basic (account name and password or robot secret) or a bearer
//!   token from `/auth/token`; [`caller`] returns the [`Principal`];
//! - repository names contain slashes, so they travel in query parameters or the path tail.
//!
//! This module owns the envelope, authentication and the access-control routes (`access.rs`:
//! users, robots, grants, signing keys) and the audit routes (`audit.rs`).

mod access;
mod audit;

use std::net::SocketAddr;

use axum::extract::ConnectInfo;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Router;
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use bonded_service::auth::{AuthError, Principal};
use serde_json::json;

use crate::AppState;

/// An error in the management API's envelope.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            code,
            message: message.into(),
        }
    }

    pub fn invalid(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, "INVALID_ARGUMENT", message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = json!({ "error": { "code": self.code, "message": self.message } });
        let mut resp = (
            self.status,
            [(header::CONTENT_TYPE, "application/json")],
            body.to_string(),
        )
            .into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            resp.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                header::HeaderValue::from_static("Basic realm=\"bonded\""),
            );
        }
        resp
    }
}

impl From<AuthError> for ApiError {
    fn from(e: AuthError) -> ApiError {
        use StatusCode as S;
        match e {
            AuthError::Unauthenticated(m) => ApiError::new(S::UNAUTHORIZED, "UNAUTHENTICATED", m),
            AuthError::RateLimited { retry_after_secs } => ApiError::new(
                S::TOO_MANY_REQUESTS,
                "RATE_LIMITED",
                format!("too many failed logins; try again in {retry_after_secs} s"),
            ),
            AuthError::Forbidden(m) => ApiError::new(S::FORBIDDEN, "FORBIDDEN", m),
            AuthError::Invalid(m) => ApiError::invalid(m),
            AuthError::NotFound(m) => ApiError::new(S::NOT_FOUND, "NOT_FOUND", m),
            AuthError::Conflict(m) => ApiError::new(S::CONFLICT, "CONFLICT", m),
            AuthError::Internal(m) => {
                tracing::error!(error = %m, "internal error in the management API");
                ApiError::new(
                    S::INTERNAL_SERVER_ERROR,
                    "INTERNAL",
                    "internal server error",
                )
            }
        }
    }
}

/// The client's address, when the server knows it.
pub(crate) fn source(ext: &axum::http::Extensions) -> String {
    ext.get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip().to_string())
        .unwrap_or_default()
}

/// Who is calling the management API. With access control off there are no accounts to be, so
/// `None`: routes that need an account answer `AUTH_DISABLED`.
pub(crate) async fn caller(
    state: &AppState,
    headers: &HeaderMap,
    source: &str,
) -> Result<Option<Principal>, ApiError> {
    let Some(auth) = &state.auth else {
        return Ok(None);
    };
    let unauthenticated = |m: &str| ApiError::new(StatusCode::UNAUTHORIZED, "UNAUTHENTICATED", m);
    let value = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| {
            unauthenticated("the management API needs credentials (HTTP Basic or a bearer token)")
        })?;
    let (scheme, rest) = value.split_once(' ').unwrap_or((value, ""));
    if scheme.eq_ignore_ascii_case("basic") {
        let decoded = B64
            .decode(rest.trim())
            .ok()
            .and_then(|b| String::from_utf8(b).ok())
            .ok_or_else(|| unauthenticated("malformed Basic credentials"))?;
        let (user, secret) = decoded
            .split_once(':')
            .ok_or_else(|| unauthenticated("malformed Basic credentials"))?;
        Ok(Some(auth.login(user, secret, source).await?))
    } else if scheme.eq_ignore_ascii_case("bearer") {
        let claims = auth
            .verify(rest.trim())
            .await
            .map_err(|e| unauthenticated(&e.to_string()))?;
        Ok(Some(auth.principal_of(&claims).await?))
    } else {
        Err(unauthenticated(
            "the Authorization header is neither Basic nor Bearer credentials",
        ))
    }
}

fn auth_disabled() -> ApiError {
    ApiError::new(
        StatusCode::CONFLICT,
        "AUTH_DISABLED",
        "access control is disabled on this registry (set [auth] enabled = true)",
    )
}

async fn not_found() -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "NOT_FOUND",
        "no such management API endpoint (see README.md, Management API)",
    )
}

/// The `/api/v1` router (mounted by [`crate::router`]).
pub fn router() -> Router<AppState> {
    Router::new()
        .merge(access::router())
        .merge(audit::router())
        .fallback(not_found)
}
