//! Namespace quotas end to end (docs/quotas.md): pushes within the quota succeed, a push that
//! would exceed it is refused with `403 DENIED` saying quota and usage and leaves nothing behind,
//! a blob the namespace already has costs nothing, manifests count against the artifact quota,
//! and deletes (then garbage collection) free quota. Runs on both backend pairs.

mod common;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use bonded_types::{Algorithm, Digest};

const OCI: &str = "application/vnd.oci.image.manifest.v1+json";

/// A server with `quotas` (TOML `[[quota]]` entries) in a config file; returns it with the
/// environment admin commands need to see the same configuration.
fn start(quotas: &str, env: &[(&str, &str)]) -> (common::Server, tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("bonded.toml");
    std::fs::write(&config, quotas).unwrap();
    let mut all = vec![("BONDED_CONFIG", config.to_str().unwrap())];
    all.extend_from_slice(env);
    let s = common::Server::start_with(&all);
    (s, dir, config)
}

async fn put_blob(
    http: &reqwest::Client,
    base: &str,
    repo: &str,
    bytes: &[u8],
) -> reqwest::Response {
    let d = Digest::of(Algorithm::Sha256, bytes);
    http.post(format!("{base}/v2/{repo}/blobs/uploads/?digest={d}"))
        .body(bytes.to_vec())
        .send()
        .await
        .unwrap()
}

async fn denied_message(r: reqwest::Response) -> String {
    assert_eq!(r.status(), 403);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["errors"][0]["code"], "DENIED", "{body}");
    body["errors"][0]["message"].as_str().unwrap().to_string()
}

async fn put_manifest(
    http: &reqwest::Client,
    base: &str,
    repo: &str,
    tag: &str,
    config: &[u8],
    layer: &[u8],
) -> reqwest::Response {
    let body = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2, "mediaType": OCI,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": Digest::of(Algorithm::Sha256, config).to_string(), "size": config.len()},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar",
                    "digest": Digest::of(Algorithm::Sha256, layer).to_string(), "size": layer.len()}],
    }))
    .unwrap();
    http.put(format!("{base}/v2/{repo}/manifests/{tag}"))
        .header("content-type", OCI)
        .body(body)
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn pushes_over_the_byte_quota_are_denied_and_leave_nothing_while_dedupe_is_free() {
    let (s, _dir, config) = start(
        "[[quota]]\nnamespace = \"team-a\"\nmax_bytes = \"16KiB\"\n",
        &[("BONDED_METRICS__STORAGE_INTERVAL_SECS", "1")],
    );
    let cfg = [("BONDED_CONFIG", config.to_str().unwrap())];
    let http = reqwest::Client::new();
    let base = s.url("");

    // Under the quota.
    let a = vec![1u8; 10_000];
    assert_eq!(put_blob(&http, &base, "team-a/x", &a).await.status(), 201);

    // Over it: refused with quota and usage, nothing visible.
    let b = vec![2u8; 8_000];
    let bd = Digest::of(Algorithm::Sha256, &b);
    let msg = denied_message(put_blob(&http, &base, "team-a/x", &b).await).await;
    assert!(
        msg.contains("namespace \"team-a\" is over its storage quota: 9.8 KiB used + 7.8 KiB pushed > 16 KiB quota"),
        "{msg}"
    );
    assert!(msg.contains("(10000 + 8000 > 16384 bytes)"), "{msg}");
    let head = http
        .head(format!("{base}/v2/team-a/x/blobs/{bd}"))
        .send()
        .await
        .unwrap();
    assert_eq!(head.status(), 404);

    // The same through a chunked upload: refused at completion, the session discarded.
    let r = http
        .post(format!("{base}/v2/team-a/x/blobs/uploads/"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let location = r.headers()["location"].to_str().unwrap().to_string();
    let upload = if location.starts_with("http") {
        location
    } else {
        format!("{base}{location}")
    };
    let r = http
        .patch(&upload)
        .header("content-type", "application/octet-stream")
        .header("content-range", format!("0-{}", b.len() - 1))
        .body(b.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let sep = if upload.contains('?') { '&' } else { '?' };
    let r = http
        .put(format!("{upload}{sep}digest={bd}"))
        .send()
        .await
        .unwrap();
    assert!(denied_message(r).await.contains("storage quota"));
    assert_eq!(http.get(&upload).send().await.unwrap().status(), 404);
    let head = http
        .head(format!("{base}/v2/team-a/x/blobs/{bd}"))
        .send()
        .await
        .unwrap();
    assert_eq!(head.status(), 404);

    // A mount from another namespace is charged too.
    assert_eq!(put_blob(&http, &base, "team-b/y", &b).await.status(), 201);
    let r = http
        .post(format!(
            "{base}/v2/team-a/x/blobs/uploads/?mount={bd}&from=team-b/y"
        ))
        .send()
        .await
        .unwrap();
    assert!(denied_message(r).await.contains("storage quota"));

    // Up to exactly the quota is fine.
    let c = vec![3u8; 16_384 - 10_000];
    assert_eq!(put_blob(&http, &base, "team-a/x", &c).await.status(), 201);
    // At the limit: a blob the namespace already has costs nothing, in any of its repositories.
    assert_eq!(put_blob(&http, &base, "team-a/x", &a).await.status(), 201);
    assert_eq!(
        put_blob(&http, &base, "team-a/other", &a).await.status(),
        201
    );
    let r = http
        .post(format!(
            "{base}/v2/team-a/third/blobs/uploads/?mount={}&from=team-a/x",
            Digest::of(Algorithm::Sha256, &c)
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    // One byte more is not.
    let msg = denied_message(put_blob(&http, &base, "team-a/x", b"!").await).await;
    assert!(
        msg.contains("16 KiB used + 1 B pushed > 16 KiB quota"),
        "{msg}"
    );
    // Other namespaces are not limited by team-a's quota.
    assert_eq!(
        put_blob(&http, &base, "team-c/z", &vec![4u8; 40_000])
            .await
            .status(),
        201
    );

    // The report shows usage, quota and how full it is.
    let (ok, out, err) = s.admin(&["storage", "report", "--json"], &cfg);
    assert!(ok, "{err}");
    let doc: serde_json::Value = serde_json::from_str(&out).unwrap();
    let ns = |name: &str| {
        doc["namespaces"]
            .as_array()
            .unwrap()
            .iter()
            .find(|n| n["namespace"] == name)
            .unwrap_or_else(|| panic!("no {name} in {out}"))
            .clone()
    };
    let a_ns = ns("team-a");
    assert_eq!(a_ns["quota_used_bytes"], 16_384, "{out}");
    assert_eq!(a_ns["quota_max_bytes"], 16_384, "{out}");
    assert_eq!(a_ns["quota_used_pct"], 100.0, "{out}");
    assert_eq!(ns("team-c")["quota_max_bytes"], serde_json::Value::Null);
    let (ok, out, err) = s.admin(&["storage", "report"], &cfg);
    assert!(ok, "{err}");
    let line = out.lines().find(|l| l.starts_with("team-a")).unwrap();
    assert!(line.contains("16384") && line.contains("100.0%"), "{out}");

    // Unlinking a blob frees its bytes at once.
    let r = http
        .delete(format!(
            "{base}/v2/team-a/x/blobs/{}",
            Digest::of(Algorithm::Sha256, &c)
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let r = http
        .delete(format!(
            "{base}/v2/team-a/third/blobs/{}",
            Digest::of(Algorithm::Sha256, &c)
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    assert_eq!(put_blob(&http, &base, "team-a/x", b"!").await.status(), 201);

    // The gauges follow.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let text = http
            .get(s.url("/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        if text.contains("bonded_quota_limit_bytes{namespace=\"team-a\"} 16384")
            && text.contains("bonded_quota_used_bytes{namespace=\"team-a\"} 10001")
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "quota gauges never appeared:\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn the_artifact_quota_counts_new_manifests_and_a_delete_frees_one() {
    let (s, _dir, config) = start(
        "[[quota]]\nnamespace = \"team-*\"\nmax_artifacts = 2\n",
        &[],
    );
    let http = reqwest::Client::new();
    let base = s.url("");
    let layer = vec![9u8; 1000];
    assert_eq!(
        put_blob(&http, &base, "team-b/app", &layer).await.status(),
        201
    );
    let configs: Vec<Vec<u8>> = (0..3)
        .map(|i| format!("{{\"n\":{i}}}").into_bytes())
        .collect();
    for c in &configs {
        assert_eq!(put_blob(&http, &base, "team-b/app", c).await.status(), 201);
    }
    for (i, c) in configs.iter().take(2).enumerate() {
        let r = put_manifest(&http, &base, "team-b/app", &format!("v{i}"), c, &layer).await;
        assert_eq!(r.status(), 201);
    }
    let msg =
        denied_message(put_manifest(&http, &base, "team-b/app", "v2", &configs[2], &layer).await)
            .await;
    assert!(
        msg.contains(
            "namespace \"team-b\" is over its artifact quota: 2 artifacts + 1 pushed > 2 quota"
        ),
        "{msg}"
    );
    let r = http
        .get(format!("{base}/v2/team-b/app/manifests/v2"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    // Re-pushing a manifest the repository has (here under another tag) adds no artifact.
    let r = put_manifest(&http, &base, "team-b/app", "again", &configs[0], &layer).await;
    assert_eq!(r.status(), 201);
    // Another namespace matching the same pattern has its own count.
    assert_eq!(
        put_blob(&http, &base, "team-c/app", &layer).await.status(),
        201
    );
    assert_eq!(
        put_blob(&http, &base, "team-c/app", &configs[2])
            .await
            .status(),
        201
    );
    let r = put_manifest(&http, &base, "team-c/app", "v0", &configs[2], &layer).await;
    assert_eq!(r.status(), 201);

    // Deleting a manifest frees its artifact at once.
    let d0 = r_digest(&http, &base, "team-b/app", "v0").await;
    let r = http
        .delete(format!("{base}/v2/team-b/app/manifests/{d0}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let r = put_manifest(&http, &base, "team-b/app", "v2", &configs[2], &layer).await;
    assert_eq!(r.status(), 201);

    // Restoring the deleted manifest would take the namespace over its quota again: refused,
    // by digest and by its deleted tag, and nothing comes back.
    let env = [("BONDED_CONFIG", config.to_str().unwrap())];
    for what in [format!("team-b/app@{d0}"), "team-b/app:v0".to_string()] {
        let (ok, out, err) = s.admin(&["restore", &what], &env);
        assert!(!ok, "restore of {what} over the quota succeeded: {out}");
        assert!(
            err.contains("namespace \"team-b\" is over its artifact quota"),
            "{what}: {err}"
        );
    }
    let r = http
        .get(format!("{base}/v2/team-b/app/manifests/{d0}"))
        .header("accept", OCI)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    // Once another artifact is deleted there is room, and the restore brings it back.
    let d2 = r_digest(&http, &base, "team-b/app", "v2").await;
    let r = http
        .delete(format!("{base}/v2/team-b/app/manifests/{d2}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let (ok, out, err) = s.admin(&["restore", &format!("team-b/app@{d0}")], &env);
    assert!(ok, "{out}{err}");
    assert_eq!(r_digest(&http, &base, "team-b/app", "v0").await, d0);
}

async fn r_digest(http: &reqwest::Client, base: &str, repo: &str, tag: &str) -> String {
    let r = http
        .head(format!("{base}/v2/{repo}/manifests/{tag}"))
        .header("accept", OCI)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    r.headers()["docker-content-digest"]
        .to_str()
        .unwrap()
        .to_string()
}

#[tokio::test]
async fn deleting_an_image_and_collecting_its_blobs_frees_byte_quota() {
    let (s, _dir, config) = start(
        "[[quota]]\nnamespace = \"team-a\"\nmax_bytes = 16384\n",
        &[],
    );
    let http = reqwest::Client::new();
    let base = s.url("");
    let config_blob = b"{\"image\":1}".to_vec();
    let layer = vec![5u8; 12_000];
    assert_eq!(
        put_blob(&http, &base, "team-a/app", &config_blob)
            .await
            .status(),
        201
    );
    assert_eq!(
        put_blob(&http, &base, "team-a/app", &layer).await.status(),
        201
    );
    let r = put_manifest(&http, &base, "team-a/app", "v1", &config_blob, &layer).await;
    assert_eq!(r.status(), 201);
    let next = vec![6u8; 8_000];
    let msg = denied_message(put_blob(&http, &base, "team-a/app", &next).await).await;
    assert!(msg.contains("storage quota"), "{msg}");

    let digest = r_digest(&http, &base, "team-a/app", "v1").await;
    let r = http
        .delete(format!("{base}/v2/team-a/app/manifests/{digest}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    // The blobs stay charged while restorable; once collected they are not.
    let env = [
        ("BONDED_CONFIG", config.to_str().unwrap()),
        ("BONDED_GC__UNDELETE_WINDOW_SECS", "0"),
    ];
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (ok, out, err) = s.admin(&["gc", "--grace-secs", "1"], &env);
        assert!(ok, "{err}");
        if out.contains("deleted 2 blobs") {
            break;
        }
        assert!(Instant::now() < deadline, "blobs never collected: {out}");
        std::thread::sleep(Duration::from_millis(500));
    }
    assert_eq!(
        put_blob(&http, &base, "team-a/app", &next).await.status(),
        201
    );
}

#[test]
fn bad_quota_entries_are_refused_at_startup_with_a_fix() {
    let dir = tempfile::tempdir().unwrap();
    for (toml, expect) in [
        (
            "[[quota]]\nnamespace = \"team-a/**\"\nmax_bytes = 1\n",
            "a glob without '/'",
        ),
        (
            "[[quota]]\nnamespace = \"team-a\"\nmax_bytes = \"10 gigs\"\n",
            "is not a size",
        ),
        ("[[quota]]\nnamespace = \"team-a\"\n", "limits nothing"),
        (
            "[[quota]]\nnamespace = \"team-a\"\nmax_bites = 1\n",
            "unknown field",
        ),
    ] {
        let config = dir.path().join("bad.toml");
        std::fs::write(&config, toml).unwrap();
        let out = std::process::Command::new(common::bin())
            .args(["config", "show", "--config"])
            .arg(&config)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{toml} was accepted");
        assert!(err.contains(expect), "{toml}: {err}");
    }
}
