//! Storage accounting end to end: `bonded storage report` and the M7 metrics count logical and
//! physical bytes per namespace, with blobs shared across namespaces attributed to each.

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

/// Pushes an image with its own config and the shared layer; returns the config's size.
async fn push(http: &reqwest::Client, base: &str, repo: &str, layer: &[u8]) -> usize {
    let config = format!("{{\"repo\":\"{repo}\"}}").into_bytes();
    let cd = upload(http, base, repo, &config).await;
    let ld = upload(http, base, repo, layer).await;
    let body = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2, "mediaType": OCI,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cd.to_string(), "size": config.len()},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": ld.to_string(), "size": layer.len()}],
    }))
    .unwrap();
    let r = http
        .put(format!("{base}/v2/{repo}/manifests/v1"))
        .header("content-type", OCI)
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    config.len()
}

#[tokio::test]
async fn storage_report_counts_logical_and_physical_bytes_per_namespace() {
    let s = common::Server::start_with(&[("BONDED_METRICS__STORAGE_INTERVAL_SECS", "1")]);
    let http = reqwest::Client::new();
    let base = s.url("");
    let layer = vec![7u8; 10_000];
    let a1 = push(&http, &base, "team-a/x", &layer).await;
    let a2 = push(&http, &base, "team-a/y", &layer).await;
    let b1 = push(&http, &base, "team-b/z", &layer).await;

    let (ok, out, err) = s.admin(&["storage", "report", "--json"], &[]);
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
    let a = ns("team-a");
    assert_eq!(a["artifacts"], 2);
    assert_eq!(a["logical_bytes"], (a1 + a2 + 2 * layer.len()) as u64);
    assert_eq!(a["physical_bytes"], (a1 + a2 + layer.len()) as u64);
    assert_eq!(a["logical_added_7d"], a["logical_bytes"]);
    assert_eq!(a["physical_added_30d"], a["physical_bytes"]);
    let b = ns("team-b");
    assert_eq!(b["logical_bytes"], (b1 + layer.len()) as u64);
    assert_eq!(b["physical_bytes"], (b1 + layer.len()) as u64);
    // The store holds the shared layer once.
    assert_eq!(doc["stored_blobs"], 4);
    assert_eq!(doc["stored_bytes"], (a1 + a2 + b1 + layer.len()) as u64);

    // The human table says the same.
    let (ok, out, err) = s.admin(&["storage", "report"], &[]);
    assert!(ok, "{err}");
    let row = out
        .lines()
        .find(|l| l.starts_with("team-a"))
        .unwrap_or_else(|| panic!("{out}"));
    let cols: Vec<&str> = row.split_whitespace().collect();
    assert_eq!(cols[1], "2", "{row}");
    assert_eq!(cols[3], (a1 + a2 + layer.len()).to_string(), "{row}");

    // And the M7 metrics.
    let want = format!(
        "bonded_storage_physical_bytes{{namespace=\"team-a\"}} {}",
        a1 + a2 + layer.len()
    );
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let text = http
            .get(s.url("/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        if text.contains(&want)
            && text.contains(&format!(
                "bonded_storage_added_bytes{{namespace=\"team-b\",kind=\"logical\",window=\"7d\"}} {}",
                b1 + layer.len()
            ))
        {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "metrics never showed {want}:\n{text}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    }
}
