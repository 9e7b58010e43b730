//! `kill -9` in the middle of pushes: everything acknowledged before survives intact, nothing
//! partial becomes visible, and the stores hold no torn blob.

mod common;

use std::path::Path;
use std::time::Duration;

use bonded_types::{Algorithm, Digest};
use futures::StreamExt;

fn payload(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E3779B97F4A7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

async fn push_image(
    http: &reqwest::Client,
    s: &common::Server,
    repo: &str,
    tag: &str,
    seed: u64,
) -> Digest {
    let cfg = b"{}".to_vec();
    let layer = payload(seed, 300_000 + seed as usize * 1000);
    let mut layers = Vec::new();
    for blob in [&cfg, &layer] {
        let d = Digest::of(Algorithm::Sha256, blob);
        let r = http
            .post(s.url(&format!("/v2/{repo}/blobs/uploads/?digest={d}")))
            .body(blob.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201);
        layers.push((d, blob.len()));
    }
    let m = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": layers[0].0.to_string(), "size": layers[0].1},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": layers[1].0.to_string(), "size": layers[1].1}],
    });
    let r = http
        .put(s.url(&format!("/v2/{repo}/manifests/{tag}")))
        .header("content-type", "application/vnd.oci.image.manifest.v1+json")
        .body(serde_json::to_vec(&m).unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    r.headers()["docker-content-digest"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap()
}

/// Pulls a manifest and every blob it names, checking each digest.
async fn verify_image(
    http: &reqwest::Client,
    s: &common::Server,
    repo: &str,
    tag: &str,
    want: &Digest,
) {
    let r = http
        .get(s.url(&format!("/v2/{repo}/manifests/{tag}")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{repo}:{tag} lost after crash");
    let bytes = r.bytes().await.unwrap();
    assert_eq!(&Digest::of(Algorithm::Sha256, &bytes), want);
    let m: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
    let mut digests = vec![m["config"]["digest"].as_str().unwrap().to_string()];
    digests.extend(
        m["layers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| l["digest"].as_str().unwrap().to_string()),
    );
    for d in digests {
        let r = http
            .get(s.url(&format!("/v2/{repo}/blobs/{d}")))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "blob {d} of {repo}:{tag} lost");
        let got = Digest::of(Algorithm::Sha256, &r.bytes().await.unwrap());
        assert_eq!(got.to_string(), d);
    }
}

/// Every file under blobs/ must hash to the digest its path names. (On S3 an object appears at
/// its content address only by a server-side copy of verified bytes, and S3 writes are atomic.)
fn assert_no_torn_blobs(data: &Path) {
    if common::s3_postgres() {
        return;
    }
    let root = data.join("blobs").join("blobs");
    for entry in walkdir::WalkDir::new(&root)
        .into_iter()
        .filter_map(Result::ok)
    {
        if !entry.file_type().is_file() {
            continue;
        }
        let alg = entry
            .path()
            .parent()
            .unwrap()
            .parent()
            .unwrap()
            .file_name()
            .unwrap()
            .to_str()
            .unwrap();
        let name = entry.file_name().to_str().unwrap();
        let want: Digest = format!("{alg}:{name}").parse().unwrap();
        let bytes = std::fs::read(entry.path()).unwrap();
        assert_eq!(
            Digest::of(want.algorithm(), &bytes),
            want,
            "torn blob at {}",
            entry.path().display()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_mid_push_loses_nothing_acknowledged_and_shows_nothing_partial() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let http = reqwest::Client::new();
    let mut acknowledged: Vec<(String, String, Digest)> = Vec::new();

    for round in 0..4u64 {
        let mut s = common::Server::start_in(&data, &[]);
        for i in 0..3u64 {
            let seed = round * 10 + i;
            let repo = format!("crash/r{}", seed % 3);
            let tag = format!("t{seed}");
            let d = push_image(&http, &s, &repo, &tag, seed).await;
            acknowledged.push((repo, tag, d));
        }
        // A large chunked upload in flight, killed at a different moment each round.
        let big = payload(1000 + round, 64 << 20);
        let big_digest = Digest::of(Algorithm::Sha256, &big);
        let loc = http
            .post(s.url("/v2/crash/big/blobs/uploads/"))
            .send()
            .await
            .unwrap()
            .headers()["location"]
            .to_str()
            .unwrap()
            .to_string();
        let url = s.url(&format!("{loc}?digest={big_digest}"));
        let body =
            futures::stream::iter(big.chunks(1 << 20).map(|c| c.to_vec()).collect::<Vec<_>>())
                .then(|c| async move {
                    tokio::time::sleep(Duration::from_millis(2)).await;
                    Ok::<_, std::io::Error>(c)
                });
        let inflight = tokio::spawn({
            let http = http.clone();
            async move {
                http.put(url)
                    .body(reqwest::Body::wrap_stream(body))
                    .send()
                    .await
            }
        });
        // Also a manifest push racing the kill.
        let racing = tokio::spawn({
            let http = http.clone();
            let url = s.url("/v2/crash/race/manifests/latest");
            async move {
                http.put(url)
                    .header("content-type", "application/vnd.oci.image.manifest.v1+json")
                    .body(r#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.empty.v1+json","digest":"sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a","size":2},"layers":[]}"#)
                    .send()
                    .await
            }
        });
        tokio::time::sleep(Duration::from_millis(20 + round * 40)).await;
        s.kill();
        let big_acked = matches!(inflight.await.unwrap(), Ok(r) if r.status() == 201);
        let race_acked = matches!(racing.await.unwrap(), Ok(r) if r.status() == 201);

        let s = common::Server::start_in(&data, &[]);
        for (repo, tag, d) in &acknowledged {
            verify_image(&http, &s, repo, tag, d).await;
        }
        let head = http
            .head(s.url(&format!("/v2/crash/big/blobs/{big_digest}")))
            .send()
            .await
            .unwrap();
        if big_acked {
            assert_eq!(head.status(), 200, "acknowledged blob lost");
        } else {
            assert_eq!(
                head.status(),
                404,
                "unacknowledged partial blob became visible"
            );
        }
        if race_acked {
            let r = http
                .get(s.url("/v2/crash/race/manifests/latest"))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 200);
        }
        drop(s);
        assert_no_torn_blobs(&data);
    }
}

#[tokio::test]
async fn abandoned_uploads_expire() {
    // With a zero expiry, the sweep at startup (and every second) removes stale sessions.
    let s = common::Server::start_with(&[
        ("BONDED_UPLOADS__EXPIRE_AFTER_SECS", "0"),
        ("BONDED_UPLOADS__SWEEP_INTERVAL_SECS", "1"),
    ]);
    let http = reqwest::Client::new();
    let r = http
        .post(s.url("/v2/exp/blobs/uploads/"))
        .send()
        .await
        .unwrap();
    let loc = r.headers()["location"].to_str().unwrap().to_string();
    http.patch(s.url(&loc))
        .body(vec![1u8; 1000])
        .send()
        .await
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let r = http.get(s.url(&loc)).send().await.unwrap();
        if r.status() == 404 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "upload never expired");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // On the filesystem, check the staging area directly (the S3 backend's own suite checks that
    // deleting an upload aborts its multipart and removes its objects).
    if !common::s3_postgres() {
        let staged = std::fs::read_dir(s.data_dir.join("blobs/uploads"))
            .unwrap()
            .count();
        assert_eq!(staged, 0, "staged bytes were left behind");
    }
}
