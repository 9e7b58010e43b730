//! The supply-chain part of the management API (`/api/v1/`): the trust store and what is known
//! about an artifact's signatures, attestations, SBOMs and policy verdicts.
//!
//! Routes (JSON; errors are `{"error":{"code":"SNAKE_CASE","message":"..."}}`):
//! - `GET  /api/v1/trust/{namespace}/keys` — every key of the namespace, revoked ones included.
//! - `POST /api/v1/trust/{namespace}/keys` — `{"key_set","public_key" (SPKI PEM), "not_before"?,
//!   "not_after"? (RFC 3339), "comment"?}` → 201 with the stored key.
//! - `POST /api/v1/trust/{namespace}/keys/{key_id}/revoke` → the key's entries, now revoked.
//! - `GET  /api/v1/supply/artifact?repository=<name>&reference=<tag|digest>` — attestations and
//!   verdicts.
//! - `GET  /api/v1/supply/coverage` — per namespace: artifacts, signed, with provenance, with SBOM
//!   (recomputed, and the coverage gauges refreshed).
//!
//! Access (when access control is on): reading keys and coverage needs any account; the artifact
//! view needs pull on its repository; adding and revoking trusted keys needs a system admin, and
//! is audited (`trust.add`, `trust.revoke`).
//!
//! Invariant: no rule lives here; every decision comes from `bonded_service::supply`.

use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use bonded_service::supply::{AddKey, Overview, TrustedKeyRecord};
use bonded_service::{Error, Invalid, Missing};
use bonded_supply::media::Kind;
use bonded_supply::time::{parse_rfc3339, rfc3339};
use bonded_types::{Reference, RepoName};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::AppState;

/// What a caller must be allowed, when access control is on.
pub(crate) enum Need<'a> {
    /// Any authenticated account.
    Account,
    /// Pull on this repository.
    Pull(&'a RepoName),
    SystemAdmin,
}

/// Who called, as [`authorize`] found: name for the audit log, address, and role on the
/// repository the need named (`admin` when access control is off: everyone may do everything).
pub(crate) struct Caller {
    pub name: String,
    pub source: String,
    pub role: bonded_service::auth::Role,
}

/// [`authorize`], returning the caller's role on `repo` too.
pub(crate) async fn authorize_on(
    state: &AppState,
    headers: &HeaderMap,
    ext: &axum::http::Extensions,
    repo: &RepoName,
    least: bonded_service::auth::Role,
) -> Result<Caller, ApiError> {
    use bonded_service::auth::Role;
    let source = crate::api::source(ext);
    let (Some(auth), Some(p)) = (
        &state.auth,
        crate::api::caller(state, headers, &source)
            .await
            .map_err(ApiError::from_access)?,
    ) else {
        return Ok(Caller {
            name: "anonymous".into(),
            source,
            role: Role::Admin,
        });
    };
    let role = auth
        .access(&p)
        .await
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "INTERNAL", e.to_string()))?
        .role_on(repo);
    match role {
        Some(r) if r >= least => Ok(Caller {
            name: p.name().to_string(),
            source,
            role: r,
        }),
        _ => Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "FORBIDDEN",
            format!(
                "{} may not do this: it needs the {least} role on {repo}",
                p.name()
            ),
        )),
    }
}

/// Checks the caller against `need`; returns its name for the audit log (`anonymous` when access
/// control is off).
pub(crate) async fn authorize(
    state: &AppState,
    headers: &HeaderMap,
    ext: &axum::http::Extensions,
    need: Need<'_>,
) -> Result<(String, String), ApiError> {
    let source = crate::api::source(ext);
    let (Some(auth), Some(p)) = (
        &state.auth,
        crate::api::caller(state, headers, &source)
            .await
            .map_err(ApiError::from_access)?,
    ) else {
        return Ok(("anonymous".into(), source));
    };
    let allowed = match need {
        Need::Account => true,
        Need::SystemAdmin => p.is_system_admin(),
        Need::Pull(repo) => auth
            .access(&p)
            .await
            .map_err(|e| {
                ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "INTERNAL", e.to_string())
            })?
            .allows(bonded_service::auth::Action::Pull, repo),
    };
    if !allowed {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "FORBIDDEN",
            format!("{} may not do this", p.name()),
        ));
    }
    Ok((p.name().to_string(), source))
}

pub(crate) async fn audit(
    state: &AppState,
    actor: String,
    source: String,
    action: &str,
    ns: &str,
    target: &str,
) {
    if let Some(a) = &state.audit {
        a.record(bonded_meta_entry(actor, source, action, ns, target))
            .await;
    }
}

fn bonded_meta_entry(
    actor: String,
    source: String,
    action: &str,
    ns: &str,
    target: &str,
) -> bonded_service::audit::AuditEntry {
    bonded_service::audit::AuditEntry {
        at_ms: 0,
        actor,
        action: action.into(),
        repo: ns.into(),
        target: target.into(),
        source,
        outcome: "ok".into(),
        detail: String::new(),
    }
}

pub fn router() -> Router<AppState> {
    Router::new()
        .route(
            "/api/v1/trust/{namespace}/keys",
            get(list_keys).post(add_key),
        )
        .route(
            "/api/v1/trust/{namespace}/keys/{key_id}/revoke",
            post(revoke_key),
        )
        .route("/api/v1/supply/artifact", get(artifact))
        .route("/api/v1/supply/coverage", get(coverage))
}

/// Recomputes coverage and sets the coverage gauges; returns it as JSON. Used by the API and the
/// periodic refresh in the composition root.
pub async fn refresh_coverage(
    registry: &bonded_service::Registry,
    metrics: &crate::metrics::Metrics,
) -> Result<Value, Error> {
    use crate::metrics::NamespaceLabels;
    let coverage = registry.supply_coverage().await?;
    let mut out = serde_json::Map::new();
    for (ns, c) in &coverage {
        let l = NamespaceLabels {
            namespace: ns.clone(),
        };
        metrics
            .supply_artifacts
            .get_or_create(&l)
            .set(c.artifacts as i64);
        metrics.supply_signed.get_or_create(&l).set(c.signed as i64);
        metrics
            .supply_provenance
            .get_or_create(&l)
            .set(c.with_provenance as i64);
        metrics
            .supply_sbom
            .get_or_create(&l)
            .set(c.with_sbom as i64);
        let share = |n: u64| {
            if c.artifacts == 0 {
                0.0
            } else {
                n as f64 / c.artifacts as f64
            }
        };
        out.insert(
            ns.clone(),
            json!({
                "artifacts": c.artifacts,
                "signed": c.signed,
                "with_provenance": c.with_provenance,
                "with_sbom": c.with_sbom,
                "signing_coverage": share(c.signed),
                "provenance_coverage": share(c.with_provenance),
                "sbom_coverage": share(c.with_sbom),
            }),
        );
    }
    Ok(json!({ "namespaces": out }))
}

async fn coverage(
    State(state): State<AppState>,
    headers: HeaderMap,
    ext: axum::http::Extensions,
) -> Result<Json<Value>, ApiError> {
    authorize(&state, &headers, &ext, Need::Account).await?;
    Ok(Json(
        refresh_coverage(&state.registry, &state.metrics).await?,
    ))
}

/// A management API error: status and the documented envelope.
pub(crate) struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
}

impl ApiError {
    pub(crate) fn new(
        status: StatusCode,
        code: &'static str,
        message: impl Into<String>,
    ) -> ApiError {
        ApiError {
            status,
            code,
            message: message.into(),
        }
    }

    /// The shared management API's errors (authentication) in this module's envelope.
    pub(crate) fn from_access(e: crate::api::ApiError) -> ApiError {
        ApiError::new(e.status, e.code, e.message)
    }

    pub(crate) fn bad(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, "INVALID_REQUEST", message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = json!({ "error": { "code": self.code, "message": self.message } });
        (self.status, Json(body)).into_response()
    }
}

impl From<Error> for ApiError {
    fn from(e: Error) -> ApiError {
        use StatusCode as S;
        match e {
            Error::NotFound(m) => {
                let what = match m {
                    Missing::Repository => "repository not found",
                    Missing::Blob => "blob not found",
                    Missing::QuarantinedBlob => {
                        "blob failed its integrity check and is quarantined"
                    }
                    Missing::Manifest => "manifest not found",
                    Missing::Upload => "upload not found",
                    Missing::TrustedKey => "no such key in this namespace's trust store",
                    Missing::Waiver => "no such waiver",
                };
                ApiError::new(S::NOT_FOUND, "NOT_FOUND", what)
            }
            Error::Invalid(Invalid::Name(m)) => ApiError::new(S::BAD_REQUEST, "INVALID_NAME", m),
            Error::Invalid(Invalid::Key(m)) => ApiError::new(S::BAD_REQUEST, "INVALID_KEY", m),
            Error::Invalid(Invalid::Import(m)) => {
                ApiError::new(S::BAD_REQUEST, "INVALID_IMPORT", m)
            }
            Error::Invalid(Invalid::Waiver(m)) => {
                ApiError::new(S::BAD_REQUEST, "INVALID_WAIVER", m)
            }
            Error::Invalid(Invalid::Digest(m)) => {
                ApiError::new(S::BAD_REQUEST, "INVALID_DIGEST", m)
            }
            Error::Invalid(Invalid::Manifest(m) | Invalid::Size(m) | Invalid::Upload(m)) => {
                ApiError::bad(m)
            }
            Error::Invalid(Invalid::ManifestBlobUnknown(d)) => {
                ApiError::bad(format!("{d} is not in this repository"))
            }
            Error::Invalid(Invalid::ChunkOutOfOrder { offset }) => {
                ApiError::bad(format!("chunk must start at byte {offset}"))
            }
            Error::Invalid(Invalid::Range { size }) => {
                ApiError::bad(format!("range not satisfiable for {size} bytes"))
            }
            Error::Denied(m) => ApiError::new(S::FORBIDDEN, "DENIED", m),
            Error::PolicyViolation(m) => ApiError::new(S::FORBIDDEN, "POLICY_VIOLATION", m),
            Error::Conflict(m) => ApiError::new(S::CONFLICT, "CONFLICT", m),
            Error::TooLarge(m) => ApiError::new(S::PAYLOAD_TOO_LARGE, "TOO_LARGE", m),
            Error::Unsupported(m) => ApiError::new(S::METHOD_NOT_ALLOWED, "UNSUPPORTED", m),
            Error::Gone(m) => ApiError::new(S::GONE, "GONE", m),
            Error::Busy(m) => ApiError::new(S::TOO_MANY_REQUESTS, "BUSY", m),
            Error::Internal(m) => {
                tracing::error!(error = %m, "internal error");
                ApiError::new(
                    S::INTERNAL_SERVER_ERROR,
                    "INTERNAL",
                    "internal server error",
                )
            }
        }
    }
}

fn time(ms: Option<i64>) -> Value {
    ms.map(|t| json!(rfc3339(t))).unwrap_or(Value::Null)
}

pub fn key_json(k: &TrustedKeyRecord) -> Value {
    json!({
        "namespace": k.key.namespace,
        "key_set": k.key.key_set,
        "key_id": k.key.key_id,
        "algorithm": k.key.algorithm,
        "public_key": k.key.public_key,
        "not_before": time(k.key.not_before_ms),
        "not_after": time(k.key.not_after_ms),
        "revoked_at": time(k.revoked_at_ms),
        "comment": k.key.comment,
        "created_at": rfc3339(k.created_at_ms),
    })
}

async fn list_keys(
    State(state): State<AppState>,
    Path(namespace): Path<String>,
    headers: HeaderMap,
    ext: axum::http::Extensions,
) -> Result<Json<Value>, ApiError> {
    authorize(&state, &headers, &ext, Need::Account).await?;
    let keys = state.registry.trust_list(&namespace).await?;
    Ok(Json(
        json!({ "namespace": namespace, "keys": keys.iter().map(key_json).collect::<Vec<_>>() }),
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AddKeyBody {
    key_set: String,
    public_key: String,
    #[serde(default)]
    not_before: Option<String>,
    #[serde(default)]
    not_after: Option<String>,
    #[serde(default)]
    comment: String,
}

fn parse_time(field: &str, v: Option<&str>) -> Result<Option<i64>, ApiError> {
    v.map(|s| parse_rfc3339(s).map_err(|e| ApiError::bad(format!("{field}: {e}"))))
        .transpose()
}

async fn add_key(
    State(state): State<AppState>,
    Path(namespace): Path<String>,
    headers: HeaderMap,
    ext: axum::http::Extensions,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    let (actor, source) = authorize(&state, &headers, &ext, Need::SystemAdmin).await?;
    let b: AddKeyBody =
        serde_json::from_slice(&body).map_err(|e| ApiError::bad(format!("request body: {e}")))?;
    let add = AddKey {
        key_set: b.key_set,
        public_key: b.public_key,
        not_before_ms: parse_time("not_before", b.not_before.as_deref())?,
        not_after_ms: parse_time("not_after", b.not_after.as_deref())?,
        comment: b.comment,
    };
    let key = state.registry.trust_add(&namespace, add).await?;
    let target = format!("{} ({})", key.key.key_id, key.key.key_set);
    audit(&state, actor, source, "trust.add", &namespace, &target).await;
    Ok((StatusCode::CREATED, Json(key_json(&key))).into_response())
}

async fn revoke_key(
    State(state): State<AppState>,
    Path((namespace, key_id)): Path<(String, String)>,
    headers: HeaderMap,
    ext: axum::http::Extensions,
) -> Result<Json<Value>, ApiError> {
    let (actor, source) = authorize(&state, &headers, &ext, Need::SystemAdmin).await?;
    let keys = state.registry.trust_revoke(&namespace, &key_id).await?;
    audit(&state, actor, source, "trust.revoke", &namespace, &key_id).await;
    Ok(Json(
        json!({ "namespace": namespace, "keys": keys.iter().map(key_json).collect::<Vec<_>>() }),
    ))
}

#[derive(Deserialize)]
struct ArtifactQuery {
    repository: String,
    reference: String,
}

async fn artifact(
    State(state): State<AppState>,
    Query(q): Query<ArtifactQuery>,
    headers: HeaderMap,
    ext: axum::http::Extensions,
) -> Result<Json<Value>, ApiError> {
    let repo: RepoName = q
        .repository
        .parse()
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "INVALID_NAME", format!("{e}")))?;
    authorize(&state, &headers, &ext, Need::Pull(&repo)).await?;
    let reference: Reference = q
        .reference
        .parse()
        .map_err(|e| ApiError::bad(format!("reference: {e}")))?;
    let overview = state.registry.supply_overview(&repo, &reference).await?;
    Ok(Json(overview_json(&overview)))
}

/// The artifact overview as JSON (also what `bonded inspect` and `bonded verify` print from).
pub fn overview_json(o: &Overview) -> Value {
    let attestations: Vec<Value> = o
        .findings
        .iter()
        .map(|f| {
            let mut a = json!({
                "kind": f.kind.as_str(),
                "referrer": f.referrer.to_string(),
                "pushed_at": rfc3339(f.pushed_at_ms),
                "valid": f.outcome.is_ok(),
            });
            match &f.outcome {
                Ok(v) => {
                    a["key_id"] = json!(v.key_id);
                    a["key_sets"] = json!(v.key_sets);
                    a["algorithm"] = json!(v.algorithm.as_str());
                    a["predicate_type"] = json!(v.statement.predicate_type);
                    a["summary"] = bonded_supply::summary::summarize(&v.statement);
                }
                Err(r) => a["error"] = json!(r.to_string()),
            }
            a
        })
        .collect();
    let count = |k: Kind| {
        o.findings
            .iter()
            .filter(|f| f.kind == k && f.outcome.is_ok())
            .count()
    };
    let verdicts: Vec<Value> = o
        .verdicts
        .iter()
        .map(|v| {
            json!({
                "rule": v.rule,
                "mode": v.mode.as_str(),
                "on": v.events.iter().map(|e| e.as_str()).collect::<Vec<_>>(),
                "passed": v.passed(),
                "requirements": v.requirements.iter().map(|r| json!({
                    "what": r.what, "met": r.met, "detail": r.detail,
                })).collect::<Vec<_>>(),
            })
        })
        .collect();
    json!({
        "repository": o.repo.as_str(),
        "digest": o.digest.to_string(),
        "media_type": o.media_type,
        "size": o.size,
        "signed": count(Kind::Signature) > 0,
        "valid_signatures": count(Kind::Signature),
        "valid_provenance": count(Kind::Provenance),
        "valid_sboms": count(Kind::Sbom),
        "attestations": attestations,
        "policy": verdicts,
    })
}
