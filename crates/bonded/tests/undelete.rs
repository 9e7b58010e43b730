//! Undelete end to end: deleted manifests and tags come back with `bonded restore` (with their
//! blobs) until the undelete window passes; then they are purged and their blobs collected.

mod common;

use bonded_types::{Algorithm, Digest};

const OCI: &str = "application/vnd.oci.image.manifest.v1+json";

struct Image {
    digest: Digest,
    layer: Digest,
}

async fn push(http: &reqwest::Client, base: &str, repo: &str, tags: &[&str]) -> Image {
    let config = b"{\"undelete\":true}".to_vec();
    let layer: Vec<u8> = (0..100_000u32).map(|i| (i % 253) as u8).collect();
    let (cd, ld) = (
        Digest::of(Algorithm::Sha256, &config),
        Digest::of(Algorithm::Sha256, &layer),
    );
    for (d, body) in [(&cd, config.clone()), (&ld, layer.clone())] {
        let r = http
            .post(format!("{base}/v2/{repo}/blobs/uploads/?digest={d}"))
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201);
    }
    let body = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2, "mediaType": OCI,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cd.to_string(), "size": config.len()},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": ld.to_string(), "size": layer.len()}],
    }))
    .unwrap();
    let digest = Digest::of(Algorithm::Sha256, &body);
    for t in tags {
        let r = http
            .put(format!("{base}/v2/{repo}/manifests/{t}"))
            .header("content-type", OCI)
            .body(body.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201);
    }
    Image { digest, layer: ld }
}

async fn status(http: &reqwest::Client, url: String) -> u16 {
    http.get(url)
        .header("accept", OCI)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

#[tokio::test]
async fn deleted_manifests_and_tags_are_restored_with_their_blobs_until_purged() {
    let s = common::Server::start();
    let http = reqwest::Client::new();
    let base = s.url("");
    let repo = "team/undelete";
    let img = push(&http, &base, repo, &["v1", "v2"]).await;
    let manifest = |r: &str| format!("{base}/v2/{repo}/manifests/{r}");

    // Delete the manifest: gone from the API, listed as restorable.
    let r = http
        .delete(manifest(&img.digest.to_string()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    assert_eq!(status(&http, manifest("v1")).await, 404);
    assert_eq!(status(&http, manifest(&img.digest.to_string())).await, 404);
    let (ok, out, err) = s.admin(&["restore", "--list", repo], &[]);
    assert!(ok, "{err}");
    assert!(out.contains(&format!("{repo}@{}", img.digest)), "{out}");
    assert!(
        out.contains(&format!("{repo}:v2 -> {}", img.digest)),
        "{out}"
    );

    // A collection (even with a tiny grace period) keeps what a restorable manifest needs.
    let (ok, _, err) = s.admin(&["gc", "--grace-secs", "1"], &[]);
    assert!(ok, "{err}");

    // Restore by digest brings back the manifest, both tags and pullable blobs.
    let (ok, out, err) = s.admin(&["restore", &format!("{repo}@{}", img.digest)], &[]);
    assert!(ok, "{err}");
    assert!(out.contains("with tags v1, v2"), "{out}");
    assert_eq!(status(&http, manifest("v1")).await, 200);
    assert_eq!(status(&http, manifest("v2")).await, 200);
    let blob = http
        .get(format!("{base}/v2/{repo}/blobs/{}", img.layer))
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert_eq!(Digest::of(Algorithm::Sha256, &blob), img.layer);

    // A deleted tag comes back by name; one that exists is not overwritten.
    let r = http.delete(manifest("v1")).send().await.unwrap();
    assert_eq!(r.status(), 202);
    assert_eq!(status(&http, manifest("v1")).await, 404);
    let (ok, out, err) = s.admin(&["restore", &format!("{repo}:v1")], &[]);
    assert!(ok, "{err}");
    assert!(out.contains(&img.digest.to_string()), "{out}");
    assert_eq!(status(&http, manifest("v1")).await, 200);
    let (ok, _, err) = s.admin(&["restore", &format!("{repo}:v1")], &[]);
    assert!(!ok);
    assert!(err.contains("exists"), "{err}");
    let (ok, _, err) = s.admin(&["restore", &format!("{repo}:nope")], &[]);
    assert!(!ok);
    assert!(err.contains("no deleted tag nope"), "{err}");

    // Past the undelete window a collection forgets the deletion, and a later one reclaims
    // the blobs once their grace period passes.
    let r = http
        .delete(manifest(&img.digest.to_string()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let no_window = [("BONDED_GC__UNDELETE_WINDOW_SECS", "0")];
    let (ok, out, err) = s.admin(&["gc", "--grace-secs", "1"], &no_window);
    assert!(ok, "{err}");
    assert!(out.contains("forgot 1 deleted manifests"), "{out}");
    let (ok, _, err) = s.admin(&["restore", &format!("{repo}@{}", img.digest)], &[]);
    assert!(!ok);
    assert!(err.contains("no longer restorable"), "{err}");
    // The config and the layer may be marked, and so swept, by different runs: count across runs.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let mut deleted = 0;
    loop {
        let (ok, out, err) = s.admin(&["gc", "--grace-secs", "1"], &no_window);
        assert!(ok, "{err}");
        deleted += out
            .lines()
            .find_map(|l| l.strip_prefix("deleted "))
            .and_then(|rest| rest.split(' ').next())
            .and_then(|n| n.parse::<u32>().ok())
            .unwrap_or(0);
        if deleted >= 2 {
            assert_eq!(deleted, 2, "only the deleted image's two blobs go: {out}");
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "blobs never collected: {out}"
        );
        std::thread::sleep(std::time::Duration::from_millis(500));
    }
    let r = http
        .head(format!("{base}/v2/{repo}/blobs/{}", img.layer))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
}
