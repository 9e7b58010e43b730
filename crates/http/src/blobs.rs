//! Blob and upload handlers.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use axum::body::Body;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use bonded_service::auth::Action;
use bonded_service::{ByteStream, MountOutcome, UploadState};
use bonded_types::{ByteRange, Digest, RepoName, UploadId};
use bytes::Bytes;
use futures::{Stream, StreamExt};

use crate::error::{upload_range, Code, OciError};
use crate::metrics::{KindLabels, Metrics, PullLabels};
use crate::{AppState, Req};

fn blob_location(repo: &RepoName, digest: &Digest) -> String {
    format!("/v2/{repo}/blobs/{digest}")
}

fn upload_location(repo: &RepoName, id: &UploadId) -> String {
    format!("/v2/{repo}/blobs/uploads/{id}")
}

fn headers(resp: &mut Response, pairs: &[(&'static str, String)]) {
    let h = resp.headers_mut();
    for (k, v) in pairs {
        if let Ok(v) = HeaderValue::from_str(v) {
            h.insert(*k, v);
        }
    }
}

/// 202 with the headers a client needs to continue an upload.
fn upload_accepted(
    state: &AppState,
    repo: &RepoName,
    up: &UploadState,
    status: StatusCode,
) -> Response {
    let mut resp = status.into_response();
    let mut pairs = vec![
        ("location", upload_location(repo, &up.id)),
        ("range", upload_range(up.size)),
        ("docker-upload-uuid", up.id.to_string()),
        ("content-length", "0".to_string()),
    ];
    let min = state.registry.limits().chunk_min_bytes;
    if min > 0 {
        pairs.push(("oci-chunk-min-length", min.to_string()));
    }
    headers(&mut resp, &pairs);
    resp
}

fn blob_created(repo: &RepoName, digest: &Digest) -> Response {
    let mut resp = StatusCode::CREATED.into_response();
    headers(
        &mut resp,
        &[
            ("location", blob_location(repo, digest)),
            ("docker-content-digest", digest.to_string()),
            ("content-length", "0".to_string()),
        ],
    );
    resp
}

/// The request body as a stream, counting bytes received.
fn body_stream(state: &AppState, body: Body) -> ByteStream {
    let metrics = state.metrics.clone();
    Box::pin(body.into_data_stream().map(move |r| {
        r.inspect(|b| {
            metrics.bytes_received.inc_by(b.len() as u64);
        })
        .map_err(io::Error::other)
    }))
}

fn query_digest(req: &Req, key: &str) -> Result<Option<Digest>, OciError> {
    req.query(key)
        .map(|v| {
            v.parse::<Digest>().map_err(|e| {
                OciError::new(StatusCode::BAD_REQUEST, Code::DigestInvalid, e.to_string())
            })
        })
        .transpose()
}

fn content_range(req: &Req) -> Result<Option<ByteRange>, OciError> {
    req.header(header::CONTENT_RANGE)
        .map(|v| {
            ByteRange::parse_content_range(v).map_err(|e| {
                OciError::new(
                    StatusCode::RANGE_NOT_SATISFIABLE,
                    Code::BlobUploadInvalid,
                    e.to_string(),
                )
            })
        })
        .transpose()
}

pub(crate) async fn get(
    state: &AppState,
    repo: &RepoName,
    digest: &Digest,
    req: &Req,
) -> Result<Response, OciError> {
    let started = Instant::now();
    let metrics = &state.metrics;
    let outcome = |ok: bool| PullLabels {
        kind: "blob",
        outcome: if ok { "success" } else { "failure" },
    };
    if req.method == axum::http::Method::HEAD {
        let size = state.registry.blob_stat(repo, digest).await?;
        let mut resp = StatusCode::OK.into_response();
        headers(
            &mut resp,
            &[
                ("content-length", size.to_string()),
                ("content-type", "application/octet-stream".into()),
                ("docker-content-digest", digest.to_string()),
                ("accept-ranges", "bytes".into()),
            ],
        );
        return Ok(resp);
    }
    if req.header(header::RANGE).is_none() {
        if let Some(url) = state.registry.blob_redirect(repo, digest).await? {
            metrics.pull.get_or_create(&outcome(true)).inc();
            let mut resp = StatusCode::TEMPORARY_REDIRECT.into_response();
            headers(
                &mut resp,
                &[
                    ("location", url),
                    ("docker-content-digest", digest.to_string()),
                ],
            );
            return Ok(resp);
        }
    }
    let blob = match state
        .registry
        .blob_get(repo, digest, req.header(header::RANGE))
        .await
    {
        Ok(b) => b,
        Err(e) => {
            metrics.pull.get_or_create(&outcome(false)).inc();
            return Err(e.into());
        }
    };
    let (status, len, range_header) = match blob.range {
        Some(r) => (
            StatusCode::PARTIAL_CONTENT,
            r.len(),
            Some(format!("bytes {}-{}/{}", r.start, r.end, blob.size)),
        ),
        None => (StatusCode::OK, blob.size, None),
    };
    let stream = Metered {
        inner: blob.stream,
        metrics: metrics.clone(),
        started,
        failed: false,
        recorded: false,
    };
    let mut resp = (status, Body::from_stream(stream)).into_response();
    let mut pairs = vec![
        ("content-length", len.to_string()),
        ("content-type", "application/octet-stream".to_string()),
        ("docker-content-digest", digest.to_string()),
        ("accept-ranges", "bytes".to_string()),
        ("etag", format!("\"{digest}\"")),
    ];
    if let Some(r) = range_header {
        pairs.push(("content-range", r));
    }
    headers(&mut resp, &pairs);
    Ok(resp)
}

/// Counts bytes sent and records the download's duration and outcome when the stream ends or is
/// dropped (a client that goes away mid-download counts as a failure).
struct Metered {
    inner: ByteStream,
    metrics: Arc<Metrics>,
    started: Instant,
    failed: bool,
    recorded: bool,
}

impl Metered {
    fn finish(&mut self, ok: bool) {
        if std::mem::replace(&mut self.recorded, true) {
            return;
        }
        let outcome = if ok { "success" } else { "failure" };
        self.metrics
            .pull
            .get_or_create(&PullLabels {
                kind: "blob",
                outcome,
            })
            .inc();
        self.metrics
            .download_duration
            .get_or_create(&KindLabels { kind: "blob" })
            .observe(self.started.elapsed().as_secs_f64());
    }
}

impl Stream for Metered {
    type Item = io::Result<Bytes>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let polled = self.inner.as_mut().poll_next(cx);
        match &polled {
            Poll::Ready(Some(Ok(b))) => {
                self.metrics.bytes_sent.inc_by(b.len() as u64);
            }
            Poll::Ready(Some(Err(_))) => self.failed = true,
            Poll::Ready(None) => {
                let ok = !self.failed;
                self.finish(ok);
            }
            Poll::Pending => {}
        }
        polled
    }
}

impl Drop for Metered {
    fn drop(&mut self) {
        self.finish(false);
    }
}

pub(crate) async fn delete(
    state: &AppState,
    repo: &RepoName,
    digest: &Digest,
) -> Result<Response, OciError> {
    state.registry.blob_delete(repo, digest).await?;
    Ok(StatusCode::ACCEPTED.into_response())
}

pub(crate) async fn start(
    state: &AppState,
    repo: &RepoName,
    req: &Req,
    body: Body,
) -> Result<Response, OciError> {
    if let Some(digest) = query_digest(req, "mount")? {
        let from = match req.query("from") {
            Some(f) => Some(f.parse::<RepoName>().map_err(|e| {
                OciError::new(StatusCode::BAD_REQUEST, Code::NameInvalid, e.to_string())
            })?),
            None => None,
        };
        // Mounting from a repository the caller may not pull would leak its blobs: fall back to
        // a normal upload, as for a blob the source does not have.
        let from = from.filter(|f| req.caller.may(Action::Pull, f));
        let outcome = match from {
            Some(from) => state.registry.upload_mount(repo, &from, &digest).await?,
            None => MountOutcome::Started(state.registry.upload_start(repo).await?),
        };
        return Ok(match outcome {
            MountOutcome::Mounted { .. } => blob_created(repo, &digest),
            MountOutcome::Started(up) => upload_accepted(state, repo, &up, StatusCode::ACCEPTED),
        });
    }
    if let Some(digest) = query_digest(req, "digest")? {
        let stream = body_stream(state, body);
        state
            .registry
            .upload_monolithic(repo, &digest, stream)
            .await?;
        return Ok(blob_created(repo, &digest));
    }
    let up = state.registry.upload_start(repo).await?;
    Ok(upload_accepted(state, repo, &up, StatusCode::ACCEPTED))
}

pub(crate) async fn status(
    state: &AppState,
    repo: &RepoName,
    id: &UploadId,
) -> Result<Response, OciError> {
    let up = state.registry.upload_status(repo, id).await?;
    Ok(upload_accepted(state, repo, &up, StatusCode::NO_CONTENT))
}

pub(crate) async fn patch(
    state: &AppState,
    repo: &RepoName,
    id: &UploadId,
    req: &Req,
    body: Body,
) -> Result<Response, OciError> {
    let range = content_range(req)?;
    let len = req.content_length();
    let stream = body_stream(state, body);
    let up = state
        .registry
        .upload_patch(repo, id, range, len, stream)
        .await
        .map_err(|e| {
            let err = OciError::from(e);
            if err.status == StatusCode::RANGE_NOT_SATISFIABLE {
                err.with_header(header::LOCATION, upload_location(repo, id))
            } else {
                err
            }
        })?;
    Ok(upload_accepted(state, repo, &up, StatusCode::ACCEPTED))
}

pub(crate) async fn complete(
    state: &AppState,
    repo: &RepoName,
    id: &UploadId,
    req: &Req,
    body: Body,
) -> Result<Response, OciError> {
    let digest = query_digest(req, "digest")?.ok_or_else(|| {
        OciError::new(
            StatusCode::BAD_REQUEST,
            Code::DigestInvalid,
            "completing an upload needs ?digest=<algorithm>:<hex>",
        )
    })?;
    let range = content_range(req)?;
    let last = match req.content_length() {
        Some(0) => None,
        _ => Some((range, body_stream(state, body))),
    };
    state
        .registry
        .upload_complete(repo, id, &digest, last)
        .await?;
    Ok(blob_created(repo, &digest))
}

pub(crate) async fn cancel(
    state: &AppState,
    repo: &RepoName,
    id: &UploadId,
) -> Result<Response, OciError> {
    state.registry.upload_cancel(repo, id).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}
