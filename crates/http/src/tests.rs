//! In-process router tests: HTTP behaviour, headers and error bodies, against real stores in a
//! temporary directory.

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use axum::Router;
use bonded_service::{BlobStore, ImmutableTagRule, Limits, MetaStore, Registry, Rules};
use bonded_types::{Algorithm, Digest};
use http_body_util::BodyExt;
use serde_json::{json, Value};
use tower::ServiceExt;

use crate::metrics::Metrics;
use crate::{router, AppState};

struct T {
    app: Router,
    metrics: Arc<Metrics>,
    _dir: tempfile::TempDir,
}

async fn setup_with(limits: Limits) -> T {
    let dir = tempfile::tempdir().unwrap();
    let blobs = BlobStore::filesystem(dir.path().join("blobs"))
        .await
        .unwrap();
    let meta = MetaStore::sqlite(&dir.path().join("m.db")).await.unwrap();
    let rules = Rules::new(&[ImmutableTagRule {
        repositories: "prod/**".into(),
        tags: "v*".into(),
    }])
    .unwrap();
    let metrics = Arc::new(Metrics::default());
    let app = router(AppState {
        registry: Registry::new(blobs, meta, rules, limits),
        metrics: metrics.clone(),
        auth: None,
        audit: None,
        realm: None,
        metric_source: None,
    });
    T {
        app,
        metrics,
        _dir: dir,
    }
}

async fn setup() -> T {
    setup_with(Limits {
        max_manifest_bytes: 4 << 20,
        chunk_min_bytes: 1024,
        redirect_downloads: None,
    })
    .await
}

struct Resp {
    status: StatusCode,
    headers: axum::http::HeaderMap,
    body: Vec<u8>,
}

impl Resp {
    fn header(&self, k: &str) -> &str {
        self.headers
            .get(k)
            .map(|v| v.to_str().unwrap())
            .unwrap_or("")
    }
    fn code(&self) -> String {
        let v: Value = serde_json::from_slice(&self.body).unwrap_or(Value::Null);
        v["errors"][0]["code"].as_str().unwrap_or("").to_string()
    }
}

impl T {
    async fn call(&self, method: &str, uri: &str, headers: &[(&str, &str)], body: Vec<u8>) -> Resp {
        let mut req = Request::builder().method(method).uri(uri);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let resp = self
            .app
            .clone()
            .oneshot(req.body(Body::from(body)).unwrap())
            .await
            .unwrap();
        let status = resp.status();
        let headers = resp.headers().clone();
        let body = resp
            .into_body()
            .collect()
            .await
            .unwrap()
            .to_bytes()
            .to_vec();
        Resp {
            status,
            headers,
            body,
        }
    }

    async fn push_blob(&self, repo: &str, data: &[u8]) -> Digest {
        let d = Digest::of(Algorithm::Sha256, data);
        let r = self
            .call(
                "POST",
                &format!("/v2/{repo}/blobs/uploads/?digest={d}"),
                &[],
                data.to_vec(),
            )
            .await;
        assert_eq!(
            r.status,
            StatusCode::CREATED,
            "{}",
            String::from_utf8_lossy(&r.body)
        );
        d
    }

    async fn push_image(&self, repo: &str, tag: &str, layer: &[u8]) -> (Digest, Vec<u8>) {
        let cfg = self.push_blob(repo, b"{}").await;
        let l = self.push_blob(repo, layer).await;
        let m = manifest(&cfg, &[(&l, layer.len())], None);
        let r = self
            .call(
                "PUT",
                &format!("/v2/{repo}/manifests/{tag}"),
                &[("content-type", OCI)],
                m.clone(),
            )
            .await;
        assert_eq!(
            r.status,
            StatusCode::CREATED,
            "{}",
            String::from_utf8_lossy(&r.body)
        );
        (r.header("docker-content-digest").parse().unwrap(), m)
    }
}

const OCI: &str = "application/vnd.oci.image.manifest.v1+json";

fn manifest(
    cfg: &Digest,
    layers: &[(&Digest, usize)],
    subject: Option<(&Digest, usize)>,
) -> Vec<u8> {
    let mut m = json!({
        "schemaVersion": 2,
        "mediaType": OCI,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cfg.to_string(), "size": 2},
        "layers": layers.iter().map(|(d, s)| json!({"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": d.to_string(), "size": s})).collect::<Vec<_>>(),
    });
    if let Some((d, s)) = subject {
        m["subject"] = json!({"mediaType": OCI, "digest": d.to_string(), "size": s});
        m["artifactType"] = json!("application/vnd.example.sig");
    }
    serde_json::to_vec(&m).unwrap()
}

#[tokio::test]
async fn base_endpoint_answers_with_api_version() {
    let t = setup().await;
    let r = t.call("GET", "/v2/", &[], vec![]).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.header("docker-distribution-api-version"), "registry/2.0");
    assert!(!r.header("x-request-id").is_empty());
}

#[tokio::test]
async fn blob_get_serves_whole_and_ranges() {
    let t = setup().await;
    let d = t.push_blob("a/b", b"0123456789").await;
    let r = t
        .call("HEAD", &format!("/v2/a/b/blobs/{d}"), &[], vec![])
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.header("content-length"), "10");
    assert_eq!(r.header("docker-content-digest"), d.to_string());
    assert!(r.body.is_empty());
    let r = t
        .call(
            "GET",
            &format!("/v2/a/b/blobs/{d}"),
            &[("range", "bytes=2-4")],
            vec![],
        )
        .await;
    assert_eq!(r.status, StatusCode::PARTIAL_CONTENT);
    assert_eq!(r.body, b"234");
    assert_eq!(r.header("content-range"), "bytes 2-4/10");
    let r = t
        .call(
            "GET",
            &format!("/v2/a/b/blobs/{d}"),
            &[("range", "bytes=20-")],
            vec![],
        )
        .await;
    assert_eq!(r.status, StatusCode::RANGE_NOT_SATISFIABLE);
    assert_eq!(r.header("content-range"), "bytes */10");
    // Not visible in another repository until mounted.
    let r = t
        .call("GET", &format!("/v2/other/blobs/{d}"), &[], vec![])
        .await;
    assert_eq!(
        (r.status, r.code().as_str()),
        (StatusCode::NOT_FOUND, "BLOB_UNKNOWN")
    );
}

#[tokio::test]
async fn chunked_upload_enforces_order_and_resumes() {
    let t = setup().await;
    let r = t.call("POST", "/v2/c/blobs/uploads/", &[], vec![]).await;
    assert_eq!(r.status, StatusCode::ACCEPTED);
    assert_eq!(r.header("oci-chunk-min-length"), "1024");
    let loc = r.header("location").to_string();
    let r = t
        .call(
            "PATCH",
            &loc,
            &[("content-range", "0-4"), ("content-length", "5")],
            b"hello".to_vec(),
        )
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED);
    assert_eq!(r.header("range"), "0-4");
    // A chunk that does not start at byte 5 is refused with where to resume.
    let r = t
        .call("PATCH", &loc, &[("content-range", "3-5")], b"xyz".to_vec())
        .await;
    assert_eq!(
        (r.status, r.code().as_str()),
        (StatusCode::RANGE_NOT_SATISFIABLE, "BLOB_UPLOAD_INVALID")
    );
    assert_eq!(r.header("range"), "0-4");
    let r = t
        .call(
            "PATCH",
            &loc,
            &[("content-range", "bogus")],
            b"xyz".to_vec(),
        )
        .await;
    assert_eq!(r.status, StatusCode::RANGE_NOT_SATISFIABLE);
    let r = t.call("GET", &loc, &[], vec![]).await;
    assert_eq!(
        (r.status, r.header("range")),
        (StatusCode::NO_CONTENT, "0-4")
    );
    let d = Digest::of(Algorithm::Sha256, b"hello world");
    let r = t
        .call(
            "PUT",
            &format!("{loc}?digest={d}"),
            &[("content-length", "6")],
            b" world".to_vec(),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED);
    assert_eq!(r.header("location"), format!("/v2/c/blobs/{d}"));
    let r = t
        .call("GET", &format!("/v2/c/blobs/{d}"), &[], vec![])
        .await;
    assert_eq!(r.body, b"hello world");
    // The session is gone once completed.
    let r = t.call("GET", &loc, &[], vec![]).await;
    assert_eq!(
        (r.status, r.code().as_str()),
        (StatusCode::NOT_FOUND, "BLOB_UPLOAD_UNKNOWN")
    );
}

#[tokio::test]
async fn wrong_digest_is_rejected_and_leaves_nothing() {
    let t = setup().await;
    let wrong = Digest::of(Algorithm::Sha256, b"something else");
    let r = t
        .call(
            "POST",
            &format!("/v2/d/blobs/uploads/?digest={wrong}"),
            &[],
            b"data".to_vec(),
        )
        .await;
    assert_eq!(
        (r.status, r.code().as_str()),
        (StatusCode::BAD_REQUEST, "DIGEST_INVALID")
    );
    let r = t
        .call("HEAD", &format!("/v2/d/blobs/{wrong}"), &[], vec![])
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    let r = t
        .call(
            "POST",
            "/v2/d/blobs/uploads/?digest=sha256:nothex",
            &[],
            b"data".to_vec(),
        )
        .await;
    assert_eq!(
        (r.status, r.code().as_str()),
        (StatusCode::BAD_REQUEST, "DIGEST_INVALID")
    );
}

#[tokio::test]
async fn sha512_blobs_round_trip() {
    let t = setup().await;
    let d = Digest::of(Algorithm::Sha512, b"long hash");
    let r = t
        .call(
            "POST",
            &format!("/v2/e/blobs/uploads/?digest={d}"),
            &[],
            b"long hash".to_vec(),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED);
    let r = t
        .call("GET", &format!("/v2/e/blobs/{d}"), &[], vec![])
        .await;
    assert_eq!(r.body, b"long hash");
}

#[tokio::test]
async fn bad_manifests_get_spec_codes_and_leave_no_tag() {
    let t = setup().await;
    let cfg = t.push_blob("f", b"{}").await;
    let missing = Digest::of(Algorithm::Sha256, b"never pushed");
    let m = manifest(&cfg, &[(&missing, 12)], None);
    let r = t
        .call("PUT", "/v2/f/manifests/v1", &[("content-type", OCI)], m)
        .await;
    assert_eq!(
        (r.status, r.code().as_str()),
        (StatusCode::BAD_REQUEST, "MANIFEST_BLOB_UNKNOWN")
    );
    let r = t
        .call(
            "PUT",
            "/v2/f/manifests/v1",
            &[("content-type", OCI)],
            b"{not json".to_vec(),
        )
        .await;
    assert_eq!(
        (r.status, r.code().as_str()),
        (StatusCode::BAD_REQUEST, "MANIFEST_INVALID")
    );
    let idx = "application/vnd.oci.image.index.v1+json";
    let r = t
        .call(
            "PUT",
            "/v2/f/manifests/v1",
            &[("content-type", idx)],
            manifest(&cfg, &[], None),
        )
        .await;
    assert_eq!(
        (r.status, r.code().as_str()),
        (StatusCode::BAD_REQUEST, "MANIFEST_INVALID")
    );
    let r = t.call("GET", "/v2/f/tags/list", &[], vec![]).await;
    let v: Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(v["tags"], json!([]));
    // Pushing by digest checks the digest.
    let good = manifest(&cfg, &[], None);
    let r = t
        .call(
            "PUT",
            &format!("/v2/f/manifests/{missing}"),
            &[("content-type", OCI)],
            good,
        )
        .await;
    assert_eq!(
        (r.status, r.code().as_str()),
        (StatusCode::BAD_REQUEST, "DIGEST_INVALID")
    );
}

#[tokio::test]
async fn oversized_manifest_is_refused_with_413() {
    let t = setup_with(Limits {
        max_manifest_bytes: 2048,
        chunk_min_bytes: 0,
        redirect_downloads: None,
    })
    .await;
    let big = vec![b' '; 4096];
    let r = t
        .call("PUT", "/v2/g/manifests/v1", &[("content-type", OCI)], big)
        .await;
    assert_eq!(
        (r.status, r.code().as_str()),
        (StatusCode::PAYLOAD_TOO_LARGE, "SIZE_INVALID")
    );
}

#[tokio::test]
async fn invalid_names_and_unknown_uploads() {
    let t = setup().await;
    for path in [
        "/v2/Upper/tags/list",
        "/v2/a/../b/tags/list",
        "/v2/a%2fb/tags/list",
        "/v2/a//b/tags/list",
    ] {
        let r = t.call("GET", path, &[], vec![]).await;
        assert_eq!(
            (r.status, r.code().as_str()),
            (StatusCode::BAD_REQUEST, "NAME_INVALID"),
            "{path}"
        );
    }
    let long = format!("/v2/{}/tags/list", "a".repeat(300));
    assert_eq!(
        t.call("GET", &long, &[], vec![]).await.code(),
        "NAME_INVALID"
    );
    let r = t
        .call(
            "GET",
            "/v2/h/blobs/uploads/0123456789abcdef0123456789abcdef",
            &[],
            vec![],
        )
        .await;
    assert_eq!(
        (r.status, r.code().as_str()),
        (StatusCode::NOT_FOUND, "BLOB_UPLOAD_UNKNOWN")
    );
    let r = t.call("GET", "/v2/nope/tags/list", &[], vec![]).await;
    assert_eq!(
        (r.status, r.code().as_str()),
        (StatusCode::NOT_FOUND, "NAME_UNKNOWN")
    );
    let r = t.call("POST", "/v2/h/tags/list", &[], vec![]).await;
    assert_eq!(
        (r.status, r.code().as_str()),
        (StatusCode::METHOD_NOT_ALLOWED, "UNSUPPORTED")
    );
}

#[tokio::test]
async fn immutable_tags_cannot_move_or_be_deleted() {
    let t = setup().await;
    let (d1, _) = t.push_image("prod/app", "v1", b"layer one").await;
    let cfg = Digest::of(Algorithm::Sha256, b"{}");
    let l2 = t.push_blob("prod/app", b"layer two").await;
    let m2 = manifest(&cfg, &[(&l2, 9)], None);
    let r = t
        .call(
            "PUT",
            "/v2/prod/app/manifests/v1",
            &[("content-type", OCI)],
            m2.clone(),
        )
        .await;
    assert_eq!(
        (r.status, r.code().as_str()),
        (StatusCode::FORBIDDEN, "DENIED")
    );
    let r = t
        .call("DELETE", "/v2/prod/app/manifests/v1", &[], vec![])
        .await;
    assert_eq!(
        (r.status, r.code().as_str()),
        (StatusCode::FORBIDDEN, "DENIED")
    );
    let r = t
        .call(
            "DELETE",
            &format!("/v2/prod/app/manifests/{d1}"),
            &[],
            vec![],
        )
        .await;
    assert_eq!(
        (r.status, r.code().as_str()),
        (StatusCode::FORBIDDEN, "DENIED")
    );
    let r = t
        .call("GET", "/v2/prod/app/manifests/v1", &[], vec![])
        .await;
    assert_eq!(r.header("docker-content-digest"), d1.to_string());
    // Mutable tags in the same repository still move.
    let r = t
        .call(
            "PUT",
            "/v2/prod/app/manifests/latest",
            &[("content-type", OCI)],
            m2,
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED);
}

#[tokio::test]
async fn tags_paginate_with_link_headers() {
    let t = setup().await;
    for tag in ["c", "a", "b", "d"] {
        t.push_image("p", tag, b"same layer").await;
    }
    let r = t.call("GET", "/v2/p/tags/list?n=2", &[], vec![]).await;
    let v: Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(v, json!({"name": "p", "tags": ["a", "b"]}));
    assert_eq!(
        r.header("link"),
        "</v2/p/tags/list?n=2&last=b>; rel=\"next\""
    );
    let r = t
        .call("GET", "/v2/p/tags/list?n=2&last=b", &[], vec![])
        .await;
    let v: Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(v["tags"], json!(["c", "d"]));
    assert_eq!(r.header("link"), "");
    let r = t.call("GET", "/v2/p/tags/list?n=x", &[], vec![]).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn referrers_are_listed_and_filtered() {
    let t = setup().await;
    let (subject, m) = t.push_image("r", "v1", b"content").await;
    let cfg = Digest::of(Algorithm::Sha256, b"{}");
    let sig = manifest(&cfg, &[], Some((&subject, m.len())));
    let r = t
        .call(
            "PUT",
            &format!("/v2/r/manifests/{}", Digest::of(Algorithm::Sha256, &sig)),
            &[("content-type", OCI)],
            sig,
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED);
    assert_eq!(r.header("oci-subject"), subject.to_string());
    let r = t
        .call("GET", &format!("/v2/r/referrers/{subject}"), &[], vec![])
        .await;
    assert_eq!(
        r.header("content-type"),
        "application/vnd.oci.image.index.v1+json"
    );
    let v: Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(v["manifests"].as_array().unwrap().len(), 1);
    assert_eq!(
        v["manifests"][0]["artifactType"],
        "application/vnd.example.sig"
    );
    let r = t
        .call(
            "GET",
            &format!("/v2/r/referrers/{subject}?artifactType=application/x.none"),
            &[],
            vec![],
        )
        .await;
    assert_eq!(r.header("oci-filters-applied"), "artifactType");
    let v: Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(v["manifests"], json!([]));
}

#[tokio::test]
async fn mount_links_visible_blobs_and_falls_back_otherwise() {
    let t = setup().await;
    let d = t.push_blob("src", b"shared layer").await;
    let r = t
        .call(
            "POST",
            &format!("/v2/dst/blobs/uploads/?mount={d}&from=src"),
            &[],
            vec![],
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED);
    assert_eq!(
        t.call("HEAD", &format!("/v2/dst/blobs/{d}"), &[], vec![])
            .await
            .status,
        StatusCode::OK
    );
    let r = t
        .call(
            "POST",
            &format!("/v2/dst2/blobs/uploads/?mount={d}&from=empty"),
            &[],
            vec![],
        )
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED);
    assert!(r.header("location").starts_with("/v2/dst2/blobs/uploads/"));
}

#[tokio::test]
async fn publish_and_pull_outcomes_are_counted() {
    let t = setup().await;
    t.push_image("m", "v1", b"x").await;
    t.call(
        "PUT",
        "/v2/m/manifests/v2",
        &[("content-type", OCI)],
        b"{".to_vec(),
    )
    .await;
    t.call("GET", "/v2/m/manifests/v1", &[], vec![]).await;
    t.call("GET", "/v2/m/manifests/missing", &[], vec![]).await;
    let text = t.metrics.render();
    assert!(
        text.contains("bonded_publish_total{outcome=\"success\"} 1"),
        "{text}"
    );
    assert!(
        text.contains("bonded_publish_total{outcome=\"failure\"} 1"),
        "{text}"
    );
    assert!(
        text.contains("bonded_pull_total{kind=\"manifest\",outcome=\"success\"} 1"),
        "{text}"
    );
    assert!(
        text.contains("bonded_pull_total{kind=\"manifest\",outcome=\"failure\"} 1"),
        "{text}"
    );
}

#[tokio::test]
async fn health_and_readiness_answer_when_both_stores_do() {
    let t = setup().await;
    assert_eq!(
        t.call("GET", "/healthz", &[], vec![]).await.status,
        StatusCode::OK
    );
    let r = t.call("GET", "/readyz", &[], vec![]).await;
    assert_eq!(
        (r.status, r.body.as_slice()),
        (StatusCode::OK, &b"ready\n"[..])
    );
}
