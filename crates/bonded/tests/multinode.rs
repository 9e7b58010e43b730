//! Three stateless nodes over one PostgreSQL database and one S3 bucket (Garage): uploads move
//! between nodes, every node sees every push, racing tag moves converge, and a node killed
//! mid-push leaves the others serving. Needs `eval "$(scripts/garage.sh)"` (scripts/test.sh
//! does it).

mod common;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use bonded_types::{Algorithm, Digest};
use common::Cluster;

const OCI: &str = "application/vnd.oci.image.manifest.v1+json";

fn data(len: usize, seed: u32) -> Vec<u8> {
    (0..len as u32)
        .map(|i| ((i ^ seed).wrapping_mul(2654435761) >> 11) as u8)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chunked_upload_started_on_one_node_continues_and_finishes_on_others() {
    let c = Cluster::start(3);
    let http = reqwest::Client::new();
    let blob = data(13 << 20, 7);
    let digest = Digest::of(Algorithm::Sha256, &blob);
    let r = http
        .post(c.nodes[0].url("/v2/mn/chunks/blobs/uploads/"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let loc = r.headers()["location"].to_str().unwrap().to_string();
    // Uneven chunks: one under the 5 MiB part minimum, one over it, then the rest on node 3.
    let cuts = [0, 3 << 20, 9 << 20];
    for (i, w) in cuts.windows(2).enumerate() {
        let r = http
            .patch(c.nodes[i].url(&loc))
            .header("content-range", format!("{}-{}", w[0], w[1] - 1))
            .body(blob[w[0]..w[1]].to_vec())
            .send()
            .await
            .unwrap();
        assert_eq!(
            r.status(),
            202,
            "chunk {i} on node {i}: {}",
            r.text().await.unwrap()
        );
        assert_eq!(r.headers()["range"], format!("0-{}", w[1] - 1).as_str());
    }
    let r = http.get(c.nodes[2].url(&loc)).send().await.unwrap();
    assert_eq!(
        r.headers()["range"],
        format!("0-{}", (9 << 20) - 1).as_str()
    );
    let r = http
        .put(c.nodes[2].url(&format!("{loc}?digest={digest}")))
        .body(blob[9 << 20..].to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());
    for n in &c.nodes {
        let r = http
            .get(n.url(&format!("/v2/mn/chunks/blobs/{digest}")))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(
            Digest::of(Algorithm::Sha256, &r.bytes().await.unwrap()),
            digest
        );
        let r = http
            .get(n.url(&format!("/v2/mn/chunks/blobs/{digest}")))
            .header("range", "bytes=5242878-5242881")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 206);
        assert_eq!(r.bytes().await.unwrap().as_ref(), &blob[5242878..=5242881]);
    }
}

fn skopeo(args: &[&str]) {
    let out = Command::new("skopeo")
        .args(args)
        .output()
        .expect("run skopeo (scripts/install-test-tools.sh installs it)");
    common::succeeded(&out, &format!("skopeo {args:?}"));
}

fn manifest_digest(layout: &Path) -> String {
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(layout.join("index.json")).unwrap()).unwrap();
    index["manifests"][0]["digest"]
        .as_str()
        .unwrap()
        .to_string()
}

#[test]
fn skopeo_push_to_one_node_pulls_identically_from_the_others() {
    let status = Command::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../scripts/install-test-tools.sh"
    ))
    .status()
    .unwrap();
    assert!(status.success(), "scripts/install-test-tools.sh failed");
    let c = Cluster::start(3);
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    let out = Command::new("python3")
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/interop/make_oci_layout.py"
        ))
        .arg(&src)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    skopeo(&[
        "copy",
        "--dest-tls-verify=false",
        &format!("oci:{}:v1", src.display()),
        &format!("docker://{}/mn/img:v1", c.nodes[0].addr),
    ]);
    for (i, n) in c.nodes.iter().enumerate().skip(1) {
        let dst = tmp.path().join(format!("dst{i}"));
        skopeo(&[
            "copy",
            "--src-tls-verify=false",
            &format!("docker://{}/mn/img:v1", n.addr),
            &format!("oci:{}:v1", dst.display()),
        ]);
        assert_eq!(
            manifest_digest(&dst),
            manifest_digest(&src),
            "node {i} served a different image"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn racing_tag_moves_through_different_nodes_converge() {
    let c = Cluster::start(3);
    let http = reqwest::Client::new();
    let cfg = Digest::of(Algorithm::Sha256, b"{}");
    let r = http
        .post(c.nodes[0].url(&format!("/v2/mn/tags/blobs/uploads/?digest={cfg}")))
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let mut tasks = Vec::new();
    let mut pushed = Vec::new();
    for k in 0..16 {
        let m = serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2, "mediaType": OCI,
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cfg.to_string(), "size": 2},
            "layers": [], "annotations": {"k": k.to_string()},
        }))
        .unwrap();
        pushed.push(Digest::of(Algorithm::Sha256, &m).to_string());
        let url = c.nodes[k % 3].url("/v2/mn/tags/manifests/current");
        let http = http.clone();
        tasks.push(tokio::spawn(async move {
            http.put(url)
                .header("content-type", OCI)
                .body(m)
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap(), 201);
    }
    let mut seen = Vec::new();
    for n in &c.nodes {
        let r = http
            .head(n.url("/v2/mn/tags/manifests/current"))
            .send()
            .await
            .unwrap();
        seen.push(
            r.headers()["docker-content-digest"]
                .to_str()
                .unwrap()
                .to_string(),
        );
    }
    assert!(
        seen.iter().all(|d| d == &seen[0]),
        "nodes disagree: {seen:?}"
    );
    assert!(pushed.contains(&seen[0]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_killed_mid_push_leaves_the_others_serving_and_the_retry_succeeds() {
    let mut c = Cluster::start(3);
    let http = reqwest::Client::new();
    let blob = data(24 << 20, 3);
    let digest = Digest::of(Algorithm::Sha256, &blob);
    let url = c.nodes[0].url(&format!("/v2/mn/kill/blobs/uploads/?digest={digest}"));
    let chunks: Vec<Vec<u8>> = blob.chunks(1 << 20).map(|c| c.to_vec()).collect();
    let slow = futures::StreamExt::then(futures::stream::iter(chunks), |c| async move {
        tokio::time::sleep(Duration::from_millis(20)).await;
        Ok::<_, std::io::Error>(c)
    });
    let inflight = tokio::spawn({
        let http = http.clone();
        async move {
            http.post(url)
                .body(reqwest::Body::wrap_stream(slow))
                .send()
                .await
        }
    });
    tokio::time::sleep(Duration::from_millis(150)).await;
    c.nodes[0].kill();
    let first = inflight.await.unwrap();
    assert!(
        !matches!(&first, Ok(r) if r.status() == 201),
        "the push finished before the kill"
    );
    // Not visible anywhere, then the client retries on node 2 and everyone sees it.
    for n in &c.nodes[1..] {
        let r = http
            .head(n.url(&format!("/v2/mn/kill/blobs/{digest}")))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 404);
    }
    let r = http
        .post(c.nodes[1].url(&format!("/v2/mn/kill/blobs/uploads/?digest={digest}")))
        .body(blob.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    c.restart(0);
    for n in &c.nodes {
        let r = http
            .get(n.url(&format!("/v2/mn/kill/blobs/{digest}")))
            .send()
            .await
            .unwrap();
        assert_eq!(
            Digest::of(Algorithm::Sha256, &r.bytes().await.unwrap()),
            digest
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blob_gets_redirect_to_presigned_urls_when_configured() {
    let c = Cluster::start_with(1, &[("BONDED_STORAGE__REDIRECT", "true")]);
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let blob = data(3 << 20, 11);
    let digest = Digest::of(Algorithm::Sha256, &blob);
    let r = http
        .post(c.nodes[0].url(&format!("/v2/mn/redirect/blobs/uploads/?digest={digest}")))
        .body(blob.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let r = http
        .get(c.nodes[0].url(&format!("/v2/mn/redirect/blobs/{digest}")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 307);
    let location = r.headers()["location"].to_str().unwrap().to_string();
    assert!(
        location.contains("X-Amz-Signature"),
        "not a presigned URL: {location}"
    );
    let bytes = reqwest::get(&location)
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert_eq!(Digest::of(Algorithm::Sha256, &bytes), digest);
    // Range requests and blobs of other repositories are not redirected.
    let r = http
        .get(c.nodes[0].url(&format!("/v2/mn/redirect/blobs/{digest}")))
        .header("range", "bytes=0-9")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 206);
    let r = http
        .get(c.nodes[0].url(&format!("/v2/mn/elsewhere/blobs/{digest}")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
}
