//! Many clients racing on the same blob and the same tag end in one consistent state.

mod common;

use bonded_types::{Algorithm, Digest};

const OCI: &str = "application/vnd.oci.image.manifest.v1+json";

fn manifest(config: &Digest, layer: &Digest, layer_len: usize, n: usize) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": OCI,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config.to_string(), "size": 2},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": layer.to_string(), "size": layer_len}],
        "annotations": {"n": n.to_string()},
    }))
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn racing_pushes_of_one_blob_and_moves_of_one_tag_end_consistent() {
    let s = common::Server::start();
    let http = reqwest::Client::new();
    let layer: Vec<u8> = (0..2_000_000u32).map(|i| (i % 251) as u8).collect();
    let layer_digest = Digest::of(Algorithm::Sha256, &layer);
    let config_digest = Digest::of(Algorithm::Sha256, b"{}");

    // 16 clients push the same layer at once, half monolithic and half chunked.
    let mut tasks = Vec::new();
    for i in 0..16 {
        let http = http.clone();
        let base = s.url("");
        let layer = layer.clone();
        let d = layer_digest.clone();
        tasks.push(tokio::spawn(async move {
            if i % 2 == 0 {
                let r = http
                    .post(format!("{base}/v2/race/app/blobs/uploads/?digest={d}"))
                    .body(layer)
                    .send()
                    .await
                    .unwrap();
                r.status().as_u16()
            } else {
                let r = http
                    .post(format!("{base}/v2/race/app/blobs/uploads/"))
                    .send()
                    .await
                    .unwrap();
                let loc = r.headers()["location"].to_str().unwrap().to_string();
                let (a, b) = layer.split_at(layer.len() / 2);
                let r = http
                    .patch(format!("{base}{loc}"))
                    .header("content-range", format!("0-{}", a.len() - 1))
                    .body(a.to_vec())
                    .send()
                    .await
                    .unwrap();
                assert_eq!(r.status(), 202);
                let r = http
                    .put(format!("{base}{loc}?digest={d}"))
                    .body(b.to_vec())
                    .send()
                    .await
                    .unwrap();
                r.status().as_u16()
            }
        }));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap(), 201);
    }
    let r = http
        .post(s.url(&format!(
            "/v2/race/app/blobs/uploads/?digest={config_digest}"
        )))
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let r = http
        .get(s.url(&format!("/v2/race/app/blobs/{layer_digest}")))
        .send()
        .await
        .unwrap();
    assert_eq!(
        Digest::of(Algorithm::Sha256, &r.bytes().await.unwrap()),
        layer_digest
    );

    // 16 clients move the same tag to 16 different manifests at once.
    let mut tasks = Vec::new();
    let mut digests = Vec::new();
    for n in 0..16 {
        let body = manifest(&config_digest, &layer_digest, layer.len(), n);
        digests.push(Digest::of(Algorithm::Sha256, &body).to_string());
        let http = http.clone();
        let url = s.url("/v2/race/app/manifests/latest");
        tasks.push(tokio::spawn(async move {
            let r = http
                .put(url)
                .header("content-type", OCI)
                .body(body)
                .send()
                .await
                .unwrap();
            (
                r.status().as_u16(),
                r.headers()["docker-content-digest"]
                    .to_str()
                    .unwrap()
                    .to_string(),
            )
        }));
    }
    for (i, t) in tasks.into_iter().enumerate() {
        let (status, digest) = t.await.unwrap();
        assert_eq!(status, 201);
        assert_eq!(digest, digests[i]);
    }
    let r = http
        .get(s.url("/v2/race/app/manifests/latest"))
        .send()
        .await
        .unwrap();
    let winner = r.headers()["docker-content-digest"]
        .to_str()
        .unwrap()
        .to_string();
    let body = r.bytes().await.unwrap();
    assert!(
        digests.contains(&winner),
        "tag points at something nobody pushed"
    );
    assert_eq!(Digest::of(Algorithm::Sha256, &body).to_string(), winner);
    // Every pushed manifest is stored and retrievable by digest; exactly one tag exists.
    for d in &digests {
        let r = http
            .head(s.url(&format!("/v2/race/app/manifests/{d}")))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{d}");
    }
    let tags: serde_json::Value = http
        .get(s.url("/v2/race/app/tags/list"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(tags["tags"], serde_json::json!(["latest"]));
}
