//! `bonded migrate`: a registry on filesystem + SQLite moves to S3 (Garage) + PostgreSQL with
//! every blob, manifest, tag and referrer intact, and a second run resumes (copies nothing).

mod common;

use std::process::Command;

use bonded_types::{Algorithm, Digest};
use common::Server;

const OCI: &str = "application/vnd.oci.image.manifest.v1+json";

async fn push_blob(http: &reqwest::Client, s: &Server, repo: &str, data: &[u8]) -> Digest {
    let d = Digest::of(Algorithm::Sha256, data);
    let r = http
        .post(s.url(&format!("/v2/{repo}/blobs/uploads/?digest={d}")))
        .body(data.to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    d
}

async fn put_manifest(
    http: &reqwest::Client,
    s: &Server,
    repo: &str,
    reference: &str,
    m: serde_json::Value,
) -> String {
    let r = http
        .put(s.url(&format!("/v2/{repo}/manifests/{reference}")))
        .header("content-type", OCI)
        .body(serde_json::to_vec(&m).unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());
    r.headers()["docker-content-digest"]
        .to_str()
        .unwrap()
        .to_string()
}

fn migrate(src: &std::path::Path, target: &std::path::Path) -> String {
    let out = Command::new(common::bin())
        .args(["migrate", "-q", "--data-dir"])
        .arg(src)
        .arg("--to")
        .arg(target)
        .output()
        .unwrap();
    common::succeeded(&out, "bonded migrate")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrate_copies_everything_verified_and_resumes() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    let http = reqwest::Client::new();
    let big: Vec<u8> = (0..12_000_000u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 9) as u8)
        .collect();

    let s = Server::start_fs_in(&src);
    let cfg = push_blob(&http, &s, "team/app", b"{}").await;
    let layer = push_blob(&http, &s, "team/app", &big).await;
    let image = serde_json::json!({"schemaVersion": 2, "mediaType": OCI,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cfg.to_string(), "size": 2},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": layer.to_string(), "size": big.len()}]});
    let image_digest = put_manifest(&http, &s, "team/app", "v1", image.clone()).await;
    put_manifest(&http, &s, "team/app", "latest", image.clone()).await;
    let sig = serde_json::json!({"schemaVersion": 2, "mediaType": OCI, "artifactType": "application/vnd.example.sig",
        "config": {"mediaType": "application/vnd.oci.empty.v1+json", "digest": cfg.to_string(), "size": 2},
        "layers": [], "subject": {"mediaType": OCI, "digest": image_digest, "size": serde_json::to_vec(&image).unwrap().len()}});
    let sig_bytes = serde_json::to_vec(&sig).unwrap();
    put_manifest(
        &http,
        &s,
        "team/app",
        &Digest::of(Algorithm::Sha256, &sig_bytes).to_string(),
        sig,
    )
    .await;
    // A second repository sharing the big layer (migrated as a link, not a second copy).
    let r = http
        .post(s.url(&format!(
            "/v2/team/other/blobs/uploads/?mount={layer}&from=team/app"
        )))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    push_blob(&http, &s, "team/other", b"{}").await;
    put_manifest(&http, &s, "team/other", "v9", image.clone()).await;
    drop(s);

    let target = tmp.path().join("target.toml");
    std::fs::write(
        &target,
        common::s3_postgres_toml(&tmp.path().join("target")),
    )
    .unwrap();
    let first = migrate(&src, &target);
    assert!(
        first.contains("migrated 2 repositories: 2 blobs copied"),
        "{first}"
    );
    assert!(first.contains("2 linked"), "{first}");
    let second = migrate(&src, &target);
    assert!(
        second.contains("0 blobs copied") && second.contains("0 manifests, 0 tags"),
        "{second}"
    );

    let t = Server::start_config(&target, &tmp.path().join("node"));
    for (repo, tag) in [
        ("team/app", "v1"),
        ("team/app", "latest"),
        ("team/other", "v9"),
    ] {
        let r = http
            .get(t.url(&format!("/v2/{repo}/manifests/{tag}")))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{repo}:{tag}");
        assert_eq!(
            r.headers()["docker-content-digest"].to_str().unwrap(),
            image_digest
        );
        let r = http
            .get(t.url(&format!("/v2/{repo}/blobs/{layer}")))
            .send()
            .await
            .unwrap();
        assert_eq!(
            Digest::of(Algorithm::Sha256, &r.bytes().await.unwrap()),
            layer
        );
    }
    let refs: serde_json::Value = http
        .get(t.url(&format!("/v2/team/app/referrers/{image_digest}")))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        refs["manifests"][0]["artifactType"],
        "application/vnd.example.sig"
    );
    drop(t);
    common::drop_database(&tmp.path().join("target"));
}
