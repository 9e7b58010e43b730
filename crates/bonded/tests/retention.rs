//! Retention end to end: `bonded retention plan` lists exactly what the rules delete (with the
//! bytes freed) and `apply` deletes it — referrers with their subjects, protected tags kept,
//! other repositories untouched — restorable within the undelete window.

mod common;

use bonded_types::{Algorithm, Digest};

const OCI: &str = "application/vnd.oci.image.manifest.v1+json";

async fn upload(http: &reqwest::Client, base: &str, repo: &str, bytes: &[u8]) -> Digest {
    let d = Digest::of(Algorithm::Sha256, bytes);
    let r = http
        .post(format!("{base}/v2/{repo}/blobs/uploads/?digest={d}"))
        .body(bytes.to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    d
}

/// Pushes an image with its own layer of `n` KiB; returns its digest.
async fn push(
    http: &reqwest::Client,
    base: &str,
    repo: &str,
    tag: &str,
    n: usize,
    subject: Option<&Digest>,
) -> Digest {
    let config = format!("{{\"n\":{n},\"repo\":\"{repo}\"}}").into_bytes();
    let layer = vec![n as u8; n * 1024];
    let cd = upload(http, base, repo, &config).await;
    let ld = upload(http, base, repo, &layer).await;
    let mut m = serde_json::json!({
        "schemaVersion": 2, "mediaType": OCI,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cd.to_string(), "size": config.len()},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": ld.to_string(), "size": layer.len()}],
    });
    if let Some(s) = subject {
        m["subject"] = serde_json::json!({"mediaType": OCI, "digest": s.to_string(), "size": 1});
        m["artifactType"] = serde_json::json!("application/vnd.example.signature");
    }
    let body = serde_json::to_vec(&m).unwrap();
    let digest = Digest::of(Algorithm::Sha256, &body);
    let reference = if tag.is_empty() {
        digest.to_string()
    } else {
        tag.to_string()
    };
    let r = http
        .put(format!("{base}/v2/{repo}/manifests/{reference}"))
        .header("content-type", OCI)
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());
    digest
}

#[tokio::test]
async fn retention_plans_exactly_what_it_applies_and_keeps_what_it_must() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("bonded.toml");
    std::fs::write(
        &config,
        r#"
[retention]
interval_secs = 0

[[retention.rules]]
repositories = "ci/**"
keep_last = 2
keep_tags = ["v*"]

[[immutable_tags]]
repositories = "ci/**"
tags = "locked-*"
"#,
    )
    .unwrap();
    let cfg = [("BONDED_CONFIG", config.to_str().unwrap())];
    let s = common::Server::start_with(&cfg);
    let http = reqwest::Client::new();
    let base = s.url("");

    // Oldest first: old1 (signed), release v1.0, locked, old2, new1, new2; a prod repo.
    let old1 = push(&http, &base, "ci/app", "old1", 1, None).await;
    let sig = push(&http, &base, "ci/app", "", 2, Some(&old1)).await;
    let release = push(&http, &base, "ci/app", "v1.0", 3, None).await;
    let locked = push(&http, &base, "ci/app", "locked-1", 4, None).await;
    let old2 = push(&http, &base, "ci/app", "old2", 5, None).await;
    let new1 = push(&http, &base, "ci/app", "new1", 6, None).await;
    let new2 = push(&http, &base, "ci/app", "new2", 7, None).await;
    let prod = push(&http, &base, "prod/app", "old", 8, None).await;

    let (ok, out, err) = s.admin(&["retention", "plan"], &cfg);
    assert!(ok, "{err}");
    let planned: Vec<&str> = out.lines().filter(|l| l.contains('@')).collect();
    assert_eq!(planned.len(), 3, "{out}");
    for d in [&old1, &sig, &old2] {
        assert!(
            out.contains(&format!("ci/app@{d}")),
            "{d} missing from plan:\n{out}"
        );
    }
    assert!(out.contains(&format!("goes with {old1}")), "{out}");
    // Each image has its own config and layer: (1 + 2 + 5) KiB of layers plus three configs.
    let configs: usize = [1, 2, 5]
        .iter()
        .map(|n| format!("{{\"n\":{n},\"repo\":\"ci/app\"}}").len())
        .sum();
    let freed = 8 * 1024 + configs;
    assert!(
        out.contains(&format!("would delete 3 manifests; {freed} bytes freed")),
        "{out}"
    );
    // A plan changes nothing.
    let r = http
        .get(format!("{base}/v2/ci/app/manifests/old1"))
        .header("accept", OCI)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);

    let (ok, out, err) = s.admin(&["retention", "apply"], &cfg);
    assert!(ok, "{err}");
    assert!(out.contains("deleted 3 manifests"), "{out}");
    for (repo, d, want) in [
        ("ci/app", &old1, 404),
        ("ci/app", &sig, 404),
        ("ci/app", &old2, 404),
        ("ci/app", &release, 200),
        ("ci/app", &locked, 200),
        ("ci/app", &new1, 200),
        ("ci/app", &new2, 200),
        ("prod/app", &prod, 200),
    ] {
        let r = http
            .get(format!("{base}/v2/{repo}/manifests/{d}"))
            .header("accept", OCI)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), want, "{repo}@{d}");
    }
    // The referrers list of the deleted image is empty now.
    let r: serde_json::Value = http
        .get(format!("{base}/v2/ci/app/referrers/{old1}"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(r["manifests"].as_array().unwrap().len(), 0);
    // Nothing more to do; and what went can be restored.
    let (ok, out, _) = s.admin(&["retention", "plan"], &cfg);
    assert!(ok && out.contains("would delete 0 manifests"), "{out}");
    let (ok, out, err) = s.admin(&["restore", "ci/app:old2"], &cfg);
    assert!(ok, "{err}");
    assert!(out.contains(&old2.to_string()), "{out}");
}
