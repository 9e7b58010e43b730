//! bonded's HTTP edge: the OCI Distribution API under `/v2/`, plus `/healthz`, `/readyz` and
//! `/metrics`.
//!
//! Owns: turning requests into service calls and service decisions into responses — status codes,
//! headers and the OCI error envelope. Every `/v2/` path is parsed once by [`route::parse`] into an
//! [`route::Endpoint`] and dispatched with one exhaustive `match`. Called by the binary's
//! composition root; calls only `bonded-service` (and its types).
//!
//! Invariant: no business rule lives here; no request body is ever buffered whole except a
//! manifest, and that only up to the configured limit.

pub mod api;
pub mod api_promotion;
pub mod api_scan;
pub mod api_supply;
pub mod api_waivers;
mod auth;
mod blobs;
pub mod error;
mod manifests;
pub mod metrics;
pub mod route;

use std::sync::Arc;
use std::time::Instant;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use axum::Router;
use bonded_service::audit::{AuditEntry, Auditor};
use bonded_service::auth::Auth;
use bonded_service::Registry;
use tracing::{info, info_span, Instrument};

use error::{Code, OciError};
use metrics::{EndpointLabels, Metrics, RequestLabels};
use route::Endpoint;

/// Everything a handler needs.
#[derive(Clone)]
pub struct AppState {
    pub registry: Registry,
    pub metrics: Arc<Metrics>,
    /// Access control; `None` when it is off (everyone may do everything).
    pub auth: Option<Auth>,
    /// The audit log; `None` when it is off.
    pub audit: Option<Auditor>,
    /// The token endpoint URL put in challenges; `None` derives it from the request's `Host`.
    pub realm: Option<String>,
    /// Where canary analysis reads metrics (`[canary] prometheus_url`); `None` if not configured.
    pub metric_source: Option<Arc<dyn bonded_service::promotion::MetricSource>>,
}

/// The full router.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/v2", any(dispatch))
        .route("/v2/", any(dispatch))
        .route("/v2/{*rest}", any(dispatch))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics_text))
        .merge(api_supply::router())
        .merge(api_promotion::router())
        .merge(api_scan::router())
        .merge(api_waivers::router())
        .route("/auth/token", get(token))
        .nest("/api/v1", api::router())
        .with_state(state)
}

async fn token(State(state): State<AppState>, request: Request) -> Response {
    let source = api::source(request.extensions());
    let query = parse_query(request.uri());
    auth::token(&state, request.headers(), &query, &source).await
}

async fn readyz(State(state): State<AppState>) -> Response {
    match state.registry.ready().await {
        Ok(()) => (StatusCode::OK, "ready\n").into_response(),
        Err(e) => {
            tracing::warn!(error = %e, "not ready");
            (StatusCode::SERVICE_UNAVAILABLE, "not ready\n").into_response()
        }
    }
}

async fn metrics_text(State(state): State<AppState>) -> Response {
    api_scan::refresh_vuln_gauges(&state).await;
    let mut resp = state.metrics.render().into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/openmetrics-text; version=1.0.0; charset=utf-8"),
    );
    resp
}

/// A parsed request, as handlers see it.
pub(crate) struct Req {
    pub method: Method,
    pub headers: HeaderMap,
    pub query: Vec<(String, String)>,
    /// Who is calling and what it may do.
    pub caller: auth::Caller,
}

impl Req {
    pub fn query(&self, key: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    pub fn header(&self, name: header::HeaderName) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    pub fn content_length(&self) -> Option<u64> {
        self.header(header::CONTENT_LENGTH)
            .and_then(|v| v.parse().ok())
    }
}

/// Query pairs, decoded; a query that does not decode counts as empty.
pub(crate) fn parse_query(uri: &axum::http::Uri) -> Vec<(String, String)> {
    axum::extract::Query::<Vec<(String, String)>>::try_from_uri(uri)
        .map(|axum::extract::Query(v)| v)
        .unwrap_or_default()
}

async fn dispatch(State(state): State<AppState>, request: Request) -> Response {
    let started = Instant::now();
    let (parts, body) = request.into_parts();
    let request_id = uuid::Uuid::new_v4().simple().to_string();
    let parsed = route::parse(parts.uri.path());
    let endpoint_name = parsed.as_ref().map(|e| e.name()).unwrap_or("unknown");
    let span = info_span!(
        "request",
        request_id = %request_id,
        method = %parts.method,
        endpoint = endpoint_name,
        repo = tracing::field::Empty,
        reference = tracing::field::Empty,
    );
    if let Ok(ep) = &parsed {
        if let Some(repo) = ep.repo() {
            span.record("repo", repo.as_str());
        }
        match ep {
            Endpoint::Manifest { reference, .. } => {
                span.record("reference", tracing::field::display(reference));
            }
            Endpoint::Blob { digest, .. } | Endpoint::Referrers { digest, .. } => {
                span.record("reference", tracing::field::display(digest));
            }
            _ => {}
        }
    }
    let method = parts.method.clone();
    let source = api::source(&parts.extensions);
    let mut resp = async {
        let result = match parsed {
            Ok(ep) => {
                let need = auth::need(&ep, &method);
                match auth::authorize(&state, &need, &parts.headers, &source).await {
                    Ok(caller) => {
                        let req = Req {
                            method: parts.method,
                            headers: parts.headers,
                            query: parse_query(&parts.uri),
                            caller,
                        };
                        let actor = req.caller.name().to_string();
                        let event = audit_event(&state, &ep, &method);
                        let result = handle(&state, ep, req, body).await;
                        if let (Some(entry), Some(audit)) = (event, &state.audit) {
                            let entry = outcome(entry, &actor, &source, result.as_ref());
                            audit.record(entry).await;
                        }
                        result
                    }
                    Err(e) => {
                        let event = audit_event(&state, &ep, &method);
                        if let (Some(entry), Some(audit)) = (event, &state.audit) {
                            // A 403 comes only after the credentials were verified, so the
                            // name they carry is who was refused; a 401 names nobody.
                            let actor = match e.status {
                                StatusCode::FORBIDDEN => auth::verified_name(&parts.headers),
                                _ => None,
                            };
                            let actor = actor.as_deref().unwrap_or("unauthenticated");
                            let entry = outcome(entry, actor, &source, Err(&e));
                            audit.record(entry).await;
                        }
                        Err(e)
                    }
                }
            }
            Err(e) => Err(route_error(e, &method)),
        };
        let resp = result.unwrap_or_else(|e| e.into_response());
        info!(
            status = resp.status().as_u16(),
            duration_ms = started.elapsed().as_millis() as u64,
            "request served"
        );
        resp
    }
    .instrument(span)
    .await;
    let status = resp.status().as_u16();
    state
        .metrics
        .requests
        .get_or_create(&RequestLabels {
            endpoint: endpoint_name,
            method: method_label(&method),
            status,
        })
        .inc();
    state
        .metrics
        .request_duration
        .get_or_create(&EndpointLabels {
            endpoint: endpoint_name,
            method: method_label(&method),
        })
        .observe(started.elapsed().as_secs_f64());
    let h = resp.headers_mut();
    h.insert(
        "docker-distribution-api-version",
        HeaderValue::from_static("registry/2.0"),
    );
    if let Ok(v) = HeaderValue::from_str(&request_id) {
        h.insert("x-request-id", v);
    }
    resp
}

/// What a request will be recorded as in the audit log, if anything: every write, and pulls
/// when configured.
fn audit_event(state: &AppState, ep: &Endpoint, method: &Method) -> Option<AuditEntry> {
    let audit = state.audit.as_ref()?;
    let (action, target) = match (ep, method) {
        (Endpoint::Manifest { reference, .. }, &Method::PUT) => ("push", reference.to_string()),
        (Endpoint::Manifest { reference, .. }, &Method::DELETE) => {
            ("delete", reference.to_string())
        }
        (Endpoint::Blob { digest, .. }, &Method::DELETE) => ("blob.delete", digest.to_string()),
        (Endpoint::Manifest { reference, .. }, &Method::GET) if audit.records_pulls() => {
            ("pull", reference.to_string())
        }
        (Endpoint::Blob { digest, .. }, &Method::GET) if audit.records_pulls() => {
            ("pull.blob", digest.to_string())
        }
        _ => return None,
    };
    Some(AuditEntry {
        action: action.into(),
        repo: ep.repo().map(|r| r.to_string()).unwrap_or_default(),
        target,
        ..Default::default()
    })
}

/// The audit entry for a request's result.
fn outcome(
    mut entry: AuditEntry,
    actor: &str,
    source: &str,
    result: Result<&Response, &OciError>,
) -> AuditEntry {
    entry.actor = actor.to_string();
    entry.source = source.to_string();
    match result {
        Ok(resp) => {
            entry.outcome = "ok".into();
            if let Some(d) = resp
                .headers()
                .get("docker-content-digest")
                .and_then(|v| v.to_str().ok())
            {
                if entry.target != d {
                    entry.detail = d.to_string();
                }
            }
        }
        Err(e) => {
            entry.outcome = match e.code {
                Code::Unauthorized | Code::Denied => "denied".into(),
                _ => "failed".into(),
            };
            entry.detail = format!("{} {}", e.status.as_u16(), e.code.as_str());
        }
    }
    entry
}

/// A bounded label for metrics (arbitrary methods would make unbounded label sets).
fn method_label(m: &Method) -> &'static str {
    match *m {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        Method::PUT => "PUT",
        Method::POST => "POST",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::OPTIONS => "OPTIONS",
        _ => "other",
    }
}

/// A malformed manifest reference names nothing: reading it is a 404 like any unknown manifest,
/// writing it is a bad request.
fn route_error(e: route::RouteError, method: &Method) -> OciError {
    match e {
        route::RouteError::Reference(err) if *method != Method::PUT => OciError::new(
            StatusCode::NOT_FOUND,
            Code::ManifestUnknown,
            format!("manifest unknown: {err}"),
        ),
        other => OciError::from(other),
    }
}

/// The whole API surface: one exhaustive match on endpoint and method.
async fn handle(
    state: &AppState,
    ep: Endpoint,
    req: Req,
    body: Body,
) -> Result<Response, OciError> {
    use Method as M;
    let m = req.method.clone();
    match (ep, m) {
        (Endpoint::Base, M::GET | M::HEAD) => {
            Ok(([(header::CONTENT_TYPE, "application/json")], "{}").into_response())
        }
        (Endpoint::Catalog, M::GET) => manifests::catalog(state, &req).await,
        (Endpoint::Tags { repo }, M::GET) => manifests::tags(state, &repo, &req).await,
        (Endpoint::Manifest { repo, reference }, M::GET | M::HEAD) => {
            manifests::get(state, &repo, &reference, &req).await
        }
        (Endpoint::Manifest { repo, reference }, M::PUT) => {
            manifests::put(state, &repo, &reference, &req, body).await
        }
        (Endpoint::Manifest { repo, reference }, M::DELETE) => {
            manifests::delete(state, &repo, &reference).await
        }
        (Endpoint::Referrers { repo, digest }, M::GET) => {
            manifests::referrers(state, &repo, &digest, &req).await
        }
        (Endpoint::Blob { repo, digest }, M::GET | M::HEAD) => {
            blobs::get(state, &repo, &digest, &req).await
        }
        (Endpoint::Blob { repo, digest }, M::DELETE) => blobs::delete(state, &repo, &digest).await,
        (Endpoint::UploadStart { repo }, M::POST) => blobs::start(state, &repo, &req, body).await,
        (Endpoint::Upload { repo, id }, M::GET) => blobs::status(state, &repo, &id).await,
        (Endpoint::Upload { repo, id }, M::PATCH) => {
            blobs::patch(state, &repo, &id, &req, body).await
        }
        (Endpoint::Upload { repo, id }, M::PUT) => {
            blobs::complete(state, &repo, &id, &req, body).await
        }
        (Endpoint::Upload { repo, id }, M::DELETE) => blobs::cancel(state, &repo, &id).await,
        (ep, m) => Err(OciError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            Code::Unsupported,
            format!("{m} is not supported on the {} endpoint", ep.name()),
        )),
    }
}

#[cfg(test)]
mod tests;
