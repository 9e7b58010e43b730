//! Access control at the `/v2/` edge and the token endpoint (`/auth/token`), per the Docker
//! registry token spec: requests without (valid) credentials get `401 UNAUTHORIZED` with a
//! `WWW-Authenticate: Bearer realm=…,service=…,scope=…` challenge; authenticated callers without
//! the right get `403 DENIED`. HTTP Basic with an account's secret works on `/v2/` directly.
//!
//! The decisions themselves (who may do what, what a token carries) are made by
//! `bonded_service::auth`; this module only reads headers and writes challenges.

use std::sync::Arc;

use axum::http::{header, HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use bonded_service::auth::{Access, Action, AuthError, Claims, Principal};
use bonded_types::RepoName;
use serde_json::json;

use crate::error::{Code, OciError};
use crate::route::Endpoint;
use crate::AppState;

/// Who is calling and what it may do, decided once per request.
#[derive(Clone)]
pub(crate) enum Caller {
    /// Access control is off.
    Open,
    /// Anonymous or HTTP Basic: the caller's grants are known.
    Principal {
        principal: Principal,
        access: Arc<Access>,
    },
    /// A bearer token: what it carries is what it may do.
    Token(Arc<Claims>),
}

impl Caller {
    pub fn name(&self) -> &str {
        match self {
            Caller::Open => "anonymous",
            Caller::Principal { principal, .. } => principal.name(),
            Caller::Token(c) if c.sub.is_empty() => "anonymous",
            Caller::Token(c) => &c.sub,
        }
    }

    pub fn may(&self, action: Action, repo: &RepoName) -> bool {
        match self {
            Caller::Open => true,
            Caller::Principal { access, .. } => access.allows(action, repo),
            Caller::Token(c) => c.allows(action, repo),
        }
    }

    /// What listings may show: `None` for everything.
    pub async fn listing_access(&self, state: &AppState) -> Result<Option<Arc<Access>>, OciError> {
        match (self, &state.auth) {
            (Caller::Open, _) | (_, None) => Ok(None),
            (Caller::Principal { access, .. }, _) => Ok(Some(access.clone())),
            (Caller::Token(claims), Some(auth)) => {
                let fail = |e| auth_error(state, e, None);
                let p = auth.principal_of(claims).await.map_err(fail)?;
                Ok(Some(Arc::new(auth.access(&p).await.map_err(fail)?)))
            }
        }
    }
}

/// What a request needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Need {
    /// `/v2/`: any valid credentials (anonymous callers are challenged, so clients log in).
    Login,
    /// `_catalog`: any caller; the listing is filtered.
    Catalog,
    Repo(Action, RepoName),
}

/// The permission each endpoint and method needs. Methods an endpoint does not support need
/// push, so the 405 comes only after authentication.
pub(crate) fn need(ep: &Endpoint, method: &Method) -> Need {
    let read = matches!(*method, Method::GET | Method::HEAD);
    match ep {
        Endpoint::Base => Need::Login,
        Endpoint::Catalog => Need::Catalog,
        Endpoint::Manifest { repo, .. } | Endpoint::Blob { repo, .. }
            if *method == Method::DELETE =>
        {
            Need::Repo(Action::Delete, repo.clone())
        }
        Endpoint::Tags { repo }
        | Endpoint::Manifest { repo, .. }
        | Endpoint::Blob { repo, .. }
        | Endpoint::Referrers { repo, .. }
            if read =>
        {
            Need::Repo(Action::Pull, repo.clone())
        }
        Endpoint::Tags { repo }
        | Endpoint::Manifest { repo, .. }
        | Endpoint::Blob { repo, .. }
        | Endpoint::Referrers { repo, .. }
        | Endpoint::UploadStart { repo }
        | Endpoint::Upload { repo, .. } => Need::Repo(Action::Push, repo.clone()),
    }
}

/// Credentials as sent.
enum Credentials {
    None,
    Basic(String, String),
    Bearer(String),
    Malformed,
}

fn credentials(headers: &HeaderMap) -> Credentials {
    let Some(v) = headers.get(header::AUTHORIZATION) else {
        return Credentials::None;
    };
    let Ok(v) = v.to_str() else {
        return Credentials::Malformed;
    };
    let (scheme, rest) = v.split_once(' ').unwrap_or((v, ""));
    let rest = rest.trim();
    if scheme.eq_ignore_ascii_case("basic") {
        let decoded = B64
            .decode(rest)
            .ok()
            .and_then(|b| String::from_utf8(b).ok());
        match decoded.as_deref().and_then(|s| s.split_once(':')) {
            Some((u, p)) => Credentials::Basic(u.to_string(), p.to_string()),
            None => Credentials::Malformed,
        }
    } else if scheme.eq_ignore_ascii_case("bearer") && !rest.is_empty() {
        Credentials::Bearer(rest.to_string())
    } else {
        Credentials::Malformed
    }
}

/// The account name in credentials that were already verified (Basic user, token `sub`).
/// Only for labelling: never an authentication decision.
pub(crate) fn verified_name(headers: &HeaderMap) -> Option<String> {
    match credentials(headers) {
        Credentials::Basic(user, _) => Some(user),
        Credentials::Bearer(token) => {
            let payload = token.split('.').nth(1)?;
            let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(payload)
                .ok()?;
            let v: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
            v.get("sub")?
                .as_str()
                .filter(|s| !s.is_empty())
                .map(str::to_string)
        }
        Credentials::None | Credentials::Malformed => None,
    }
}

/// The token endpoint's URL: configured, or this server as the client reached it.
fn realm(state: &AppState, headers: &HeaderMap) -> String {
    if let Some(r) = &state.realm {
        return r.clone();
    }
    let host = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("localhost");
    let scheme = match headers
        .get("x-forwarded-proto")
        .and_then(|v| v.to_str().ok())
    {
        Some("https") => "https",
        _ => "http",
    };
    format!("{scheme}://{host}/auth/token")
}

fn scope_of(need: &Need) -> Option<String> {
    match need {
        Need::Login => None,
        Need::Catalog => Some("registry:catalog:*".into()),
        Need::Repo(Action::Pull, r) => Some(format!("repository:{r}:pull")),
        Need::Repo(Action::Push, r) => Some(format!("repository:{r}:pull,push")),
        Need::Repo(Action::Delete, r) => Some(format!("repository:{r}:delete")),
        Need::Repo(Action::Manage, r) => Some(format!("repository:{r}:*")),
    }
}

/// `401 UNAUTHORIZED` with the Bearer challenge telling the client where to get a token.
fn challenge(
    state: &AppState,
    headers: &HeaderMap,
    need: &Need,
    error: Option<&str>,
    message: String,
) -> OciError {
    let service = state.auth.as_ref().map(|a| a.service()).unwrap_or("bonded");
    let mut v = format!(
        "Bearer realm=\"{}\",service=\"{service}\"",
        realm(state, headers)
    );
    if let Some(scope) = scope_of(need) {
        v.push_str(&format!(",scope=\"{scope}\""));
    }
    if let Some(e) = error {
        v.push_str(&format!(",error=\"{e}\""));
    }
    OciError::new(StatusCode::UNAUTHORIZED, Code::Unauthorized, message)
        .with_header(header::WWW_AUTHENTICATE, v)
}

fn denied(caller: &str, need: &Need) -> OciError {
    let what = match need {
        Need::Repo(a, r) => format!("{} on {r}", a.as_str()),
        _ => "this".into(),
    };
    OciError::new(
        StatusCode::FORBIDDEN,
        Code::Denied,
        format!("requested access to the resource is denied: {caller} may not {what}"),
    )
}

pub(crate) fn auth_error(state: &AppState, e: AuthError, headers: Option<&HeaderMap>) -> OciError {
    let empty = HeaderMap::new();
    let headers = headers.unwrap_or(&empty);
    match e {
        AuthError::Unauthenticated(m) => challenge(state, headers, &Need::Login, None, m),
        AuthError::RateLimited { retry_after_secs } => OciError::new(
            StatusCode::TOO_MANY_REQUESTS,
            Code::TooManyRequests,
            format!("too many failed logins; try again in {retry_after_secs} s"),
        )
        .with_header(header::RETRY_AFTER, retry_after_secs.to_string()),
        AuthError::Forbidden(m) => OciError::new(StatusCode::FORBIDDEN, Code::Denied, m),
        AuthError::Invalid(m) => OciError::new(StatusCode::BAD_REQUEST, Code::Unsupported, m),
        AuthError::NotFound(m) => OciError::new(StatusCode::NOT_FOUND, Code::NameUnknown, m),
        AuthError::Conflict(m) => OciError::new(StatusCode::CONFLICT, Code::Denied, m),
        AuthError::Internal(m) => bonded_service::Error::Internal(m).into(),
    }
}

/// Decides who the caller is and whether it may do what the request needs.
pub(crate) async fn authorize(
    state: &AppState,
    need: &Need,
    headers: &HeaderMap,
    source: &str,
) -> Result<Caller, OciError> {
    let Some(auth) = &state.auth else {
        return Ok(Caller::Open);
    };
    let fail = |e| auth_error(state, e, Some(headers));
    match credentials(headers) {
        Credentials::None => {
            let access = auth.access(&Principal::Anonymous).await.map_err(fail)?;
            let ok = match need {
                Need::Login => false,
                Need::Catalog => !access.is_empty(),
                Need::Repo(a, r) => access.allows(*a, r),
            };
            if !ok {
                return Err(challenge(
                    state,
                    headers,
                    need,
                    None,
                    "authentication required".into(),
                ));
            }
            Ok(Caller::Principal {
                principal: Principal::Anonymous,
                access: Arc::new(access),
            })
        }
        Credentials::Malformed => Err(challenge(
            state,
            headers,
            need,
            Some("invalid_request"),
            "the Authorization header is neither Basic nor Bearer credentials".into(),
        )),
        Credentials::Basic(user, secret) => {
            let principal = auth.login(&user, &secret, source).await.map_err(fail)?;
            let access = auth.access(&principal).await.map_err(fail)?;
            if let Need::Repo(a, r) = need {
                if !access.allows(*a, r) {
                    return Err(denied(principal.name(), need));
                }
            }
            Ok(Caller::Principal {
                principal,
                access: Arc::new(access),
            })
        }
        Credentials::Bearer(token) => {
            let claims = auth.verify(&token).await.map_err(|e| {
                challenge(state, headers, need, Some("invalid_token"), e.to_string())
            })?;
            let Need::Repo(a, r) = need else {
                return Ok(Caller::Token(claims));
            };
            if claims.allows(*a, r) {
                return Ok(Caller::Token(claims));
            }
            // The token does not carry this. If its holder may do it, a new token with the right
            // scope will: deny with a challenge for that scope. If not, no token will: deny.
            if claims.sub.is_empty() {
                return Err(challenge(
                    state,
                    headers,
                    need,
                    Some("insufficient_scope"),
                    "authentication required".into(),
                ));
            }
            let principal = auth.principal_of(&claims).await.map_err(fail)?;
            let access = auth.access(&principal).await.map_err(fail)?;
            if access.allows(*a, r) {
                // RFC 6750 §3.1: insufficient scope is a 403, with the challenge naming the
                // scope a new token needs (clients such as oras-py refresh on exactly this).
                let mut e = challenge(
                    state,
                    headers,
                    need,
                    Some("insufficient_scope"),
                    "the token does not grant this; request one with the scope in the challenge"
                        .into(),
                );
                e.status = StatusCode::FORBIDDEN;
                e.code = Code::Denied;
                Err(e)
            } else {
                Err(denied(principal.name(), need))
            }
        }
    }
}

/// `GET /auth/token?service=…&scope=…`: a token for the scopes asked, cut down to what the
/// caller (HTTP Basic, or anonymous without credentials) may do.
pub(crate) async fn token(
    state: &AppState,
    headers: &HeaderMap,
    query: &[(String, String)],
    source: &str,
) -> Response {
    let Some(auth) = &state.auth else {
        return OciError::new(
            StatusCode::NOT_FOUND,
            Code::Unsupported,
            "access control is disabled on this registry; no token is needed",
        )
        .into_response();
    };
    let service = query.iter().find(|(k, _)| k == "service").map(|(_, v)| v);
    if let Some(s) = service {
        if s != auth.service() {
            return OciError::new(
                StatusCode::BAD_REQUEST,
                Code::Unsupported,
                format!("this token service is {:?}, not {s:?}", auth.service()),
            )
            .into_response();
        }
    }
    let scopes: Vec<String> = query
        .iter()
        .filter(|(k, _)| k == "scope")
        .map(|(_, v)| v.clone())
        .collect();
    let principal = match credentials(headers) {
        Credentials::None => Principal::Anonymous,
        Credentials::Basic(user, secret) => match auth.login(&user, &secret, source).await {
            Ok(p) => p,
            Err(e) => return token_error(e),
        },
        Credentials::Bearer(_) | Credentials::Malformed => {
            return token_error(AuthError::Unauthenticated(
                "the token endpoint takes HTTP Basic credentials or none".into(),
            ))
        }
    };
    match auth.issue(&principal, &scopes, source).await {
        Ok(t) => {
            let issued_at = std::time::UNIX_EPOCH
                + std::time::Duration::from_secs(t.issued_at_secs.max(0) as u64);
            let body = json!({
                "token": t.token,
                "access_token": t.token,
                "expires_in": t.expires_in,
                "issued_at": httpdate_rfc3339(issued_at),
            });
            (
                [(header::CONTENT_TYPE, "application/json")],
                body.to_string(),
            )
                .into_response()
        }
        Err(e) => token_error(e),
    }
}

fn token_error(e: AuthError) -> Response {
    match e {
        AuthError::Unauthenticated(m) => {
            OciError::new(StatusCode::UNAUTHORIZED, Code::Unauthorized, m)
                .with_header(header::WWW_AUTHENTICATE, "Basic realm=\"bonded\"".into())
                .into_response()
        }
        AuthError::RateLimited { retry_after_secs } => OciError::new(
            StatusCode::TOO_MANY_REQUESTS,
            Code::TooManyRequests,
            format!("too many failed logins; try again in {retry_after_secs} s"),
        )
        .with_header(header::RETRY_AFTER, retry_after_secs.to_string())
        .into_response(),
        AuthError::Forbidden(m) => {
            OciError::new(StatusCode::FORBIDDEN, Code::Denied, m).into_response()
        }
        AuthError::Invalid(m) | AuthError::NotFound(m) | AuthError::Conflict(m) => {
            OciError::new(StatusCode::BAD_REQUEST, Code::Unsupported, m).into_response()
        }
        AuthError::Internal(m) => {
            OciError::from(bonded_service::Error::Internal(m)).into_response()
        }
    }
}

/// RFC 3339 in UTC, without a date library.
fn httpdate_rfc3339(t: std::time::SystemTime) -> String {
    let secs = t
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0) as i64;
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    // Civil-from-days (Howard Hinnant).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_endpoint_and_method_needs_the_right_action() {
        let r: RepoName = "team-a/app".parse().unwrap();
        let d = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
        let m = |s: &str| Endpoint::Manifest {
            repo: r.clone(),
            reference: s.parse().unwrap(),
        };
        let blob = Endpoint::Blob {
            repo: r.clone(),
            digest: d.parse().unwrap(),
        };
        let cases = [
            (Endpoint::Base, Method::GET, Need::Login),
            (Endpoint::Catalog, Method::GET, Need::Catalog),
            (m("v1"), Method::GET, Need::Repo(Action::Pull, r.clone())),
            (m("v1"), Method::HEAD, Need::Repo(Action::Pull, r.clone())),
            (m("v1"), Method::PUT, Need::Repo(Action::Push, r.clone())),
            (
                m("v1"),
                Method::DELETE,
                Need::Repo(Action::Delete, r.clone()),
            ),
            (
                blob.clone(),
                Method::GET,
                Need::Repo(Action::Pull, r.clone()),
            ),
            (blob, Method::DELETE, Need::Repo(Action::Delete, r.clone())),
            (
                Endpoint::UploadStart { repo: r.clone() },
                Method::POST,
                Need::Repo(Action::Push, r.clone()),
            ),
            (
                Endpoint::Tags { repo: r.clone() },
                Method::GET,
                Need::Repo(Action::Pull, r.clone()),
            ),
        ];
        for (ep, method, want) in cases {
            assert_eq!(need(&ep, &method), want, "{} {method}", ep.name());
        }
    }

    #[test]
    fn rfc3339_dates_are_right() {
        let t = std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_700_000_000);
        assert_eq!(httpdate_rfc3339(t), "2023-11-14T22:13:20Z");
    }
}
