//! Manifest, tag listing, catalog and referrers handlers.

use std::time::Instant;

use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use bonded_service::Page;
use bonded_types::{media_types, Digest, Reference, RepoName};
use http_body_util::{BodyExt, Limited};
use serde::Serialize;

use crate::error::{Code, OciError};
use crate::metrics::{KindLabels, OutcomeLabels, PullLabels};
use crate::{AppState, Req};

fn set(resp: &mut Response, name: &'static str, value: &str) {
    if let Ok(v) = HeaderValue::from_str(value) {
        resp.headers_mut().insert(name, v);
    }
}

fn page_size(req: &Req) -> Result<Option<u32>, OciError> {
    req.query("n")
        .map(|n| {
            n.parse::<u32>().map_err(|_| {
                OciError::new(
                    StatusCode::BAD_REQUEST,
                    Code::SizeInvalid,
                    format!("n={n:?} is not a non-negative integer"),
                )
            })
        })
        .transpose()
}

fn json_page<T: ToString + Serialize>(
    name: Option<&str>,
    key: &str,
    page: &Page<T>,
    next: impl Fn(&str, usize) -> String,
    n: Option<u32>,
) -> Result<Response, OciError> {
    // Serialized straight from the page: a 10,000-tag listing is one pass, no JSON tree.
    let mut out = Vec::with_capacity(64 + page.items.len() * 16);
    let written = {
        use serde::ser::{SerializeMap, Serializer};
        let mut ser = serde_json::Serializer::new(&mut out);
        ser.serialize_map(None).and_then(|mut map| {
            if let Some(name) = name {
                map.serialize_entry("name", name)?;
            }
            map.serialize_entry(key, &page.items)?;
            map.end()
        })
    };
    written.map_err(|e| {
        OciError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            Code::Unknown,
            format!("cannot write the listing: {e}"),
        )
    })?;
    let mut resp = ([(header::CONTENT_TYPE, "application/json")], out).into_response();
    if page.more {
        if let Some(last) = page.items.last() {
            let n = n.map(|n| n as usize).unwrap_or(page.items.len());
            set(
                &mut resp,
                "link",
                &format!("<{}>; rel=\"next\"", next(&last.to_string(), n)),
            );
        }
    }
    Ok(resp)
}

/// One `Bonded-Policy-Warning` header per supply-chain rule in warn mode that was not satisfied.
fn policy_warnings(resp: &mut Response, warnings: &[String]) {
    for w in warnings {
        // Header values must be visible ASCII; messages are, but be safe.
        let clean: String = w
            .chars()
            .map(|c| {
                if c.is_ascii_graphic() || c == ' ' {
                    c
                } else {
                    '?'
                }
            })
            .collect();
        if let Ok(v) = HeaderValue::from_str(&clean) {
            resp.headers_mut().append("bonded-policy-warning", v);
        }
    }
}

pub(crate) async fn catalog(state: &AppState, req: &Req) -> Result<Response, OciError> {
    let n = page_size(req)?;
    let page = match req.caller.listing_access(state).await? {
        None => state.registry.catalog(n, req.query("last")).await?,
        Some(access) => {
            state
                .registry
                .catalog_visible(n, req.query("last"), &|r| access.sees(r))
                .await?
        }
    };
    json_page(
        None,
        "repositories",
        &page,
        |last, n| format!("/v2/_catalog?n={n}&last={last}"),
        n,
    )
}

pub(crate) async fn tags(
    state: &AppState,
    repo: &RepoName,
    req: &Req,
) -> Result<Response, OciError> {
    let n = page_size(req)?;
    let page = state.registry.tags_list(repo, n, req.query("last")).await?;
    json_page(
        Some(repo.as_str()),
        "tags",
        &page,
        |last, n| format!("/v2/{repo}/tags/list?n={n}&last={last}"),
        n,
    )
}

pub(crate) async fn get(
    state: &AppState,
    repo: &RepoName,
    reference: &Reference,
    req: &Req,
) -> Result<Response, OciError> {
    let started = Instant::now();
    let result = state.registry.manifest_get(repo, reference).await;
    let metrics = &state.metrics;
    let outcome = if result.is_ok() { "success" } else { "failure" };
    metrics
        .pull
        .get_or_create(&PullLabels {
            kind: "manifest",
            outcome,
        })
        .inc();
    let m = result?;
    metrics
        .download_duration
        .get_or_create(&KindLabels { kind: "manifest" })
        .observe(started.elapsed().as_secs_f64());
    let len = m.content.len();
    let mut resp = if req.method == Method::HEAD {
        StatusCode::OK.into_response()
    } else {
        (StatusCode::OK, m.content).into_response()
    };
    set(&mut resp, "content-type", m.media_type.as_str());
    set(&mut resp, "content-length", &len.to_string());
    set(&mut resp, "docker-content-digest", &m.digest.to_string());
    set(&mut resp, "etag", &format!("\"{}\"", m.digest));
    policy_warnings(&mut resp, &m.policy_warnings);
    Ok(resp)
}

pub(crate) async fn put(
    state: &AppState,
    repo: &RepoName,
    reference: &Reference,
    req: &Req,
    body: axum::body::Body,
) -> Result<Response, OciError> {
    let result = put_inner(state, repo, reference, req, body).await;
    let outcome = if result.is_ok() { "success" } else { "failure" };
    state
        .metrics
        .publish
        .get_or_create(&OutcomeLabels { outcome })
        .inc();
    result
}

async fn put_inner(
    state: &AppState,
    repo: &RepoName,
    reference: &Reference,
    req: &Req,
    body: axum::body::Body,
) -> Result<Response, OciError> {
    let max = state.registry.limits().max_manifest_bytes;
    let too_large = || {
        OciError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            Code::SizeInvalid,
            format!("manifest is larger than the {max}-byte limit"),
        )
    };
    if req.content_length().is_some_and(|l| l > max as u64) {
        drain(body).await;
        return Err(too_large());
    }
    let content_type = req.header(header::CONTENT_TYPE).map(str::to_string);
    let mut body = body;
    let mut buf = bytes::BytesMut::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| {
            OciError::new(
                StatusCode::BAD_REQUEST,
                Code::ManifestInvalid,
                format!("could not read the manifest body: {e}"),
            )
        })?;
        if let Ok(data) = frame.into_data() {
            if buf.len() + data.len() > max {
                drain(body).await;
                return Err(too_large());
            }
            buf.extend_from_slice(&data);
        }
    }
    let body = buf.freeze();
    let put = state
        .registry
        .manifest_put(repo, reference, content_type.as_deref(), body)
        .await?;
    let mut resp = StatusCode::CREATED.into_response();
    set(
        &mut resp,
        "location",
        &format!("/v2/{repo}/manifests/{}", put.digest),
    );
    set(&mut resp, "docker-content-digest", &put.digest.to_string());
    set(&mut resp, "content-length", "0");
    if let Some(subject) = &put.subject {
        set(&mut resp, "oci-subject", &subject.to_string());
    }
    policy_warnings(&mut resp, &put.policy_warnings);
    Ok(resp)
}

/// Most a refused request body is read (and discarded) so the client sees the error instead of a
/// reset connection; past it the connection is simply closed.
const DRAIN_LIMIT: usize = 64 << 20;

async fn drain(body: axum::body::Body) {
    let mut body = Limited::new(body, DRAIN_LIMIT);
    while let Some(Ok(_)) = body.frame().await {}
}

pub(crate) async fn delete(
    state: &AppState,
    repo: &RepoName,
    reference: &Reference,
) -> Result<Response, OciError> {
    state.registry.manifest_delete(repo, reference).await?;
    Ok(StatusCode::ACCEPTED.into_response())
}

pub(crate) async fn referrers(
    state: &AppState,
    repo: &RepoName,
    digest: &Digest,
    req: &Req,
) -> Result<Response, OciError> {
    let artifact_type = req.query("artifactType");
    let body = state
        .registry
        .referrers(repo, digest, artifact_type)
        .await?;
    let mut resp = (StatusCode::OK, body).into_response();
    set(&mut resp, "content-type", media_types::OCI_INDEX);
    if artifact_type.is_some() {
        set(&mut resp, "oci-filters-applied", "artifactType");
    }
    Ok(resp)
}
