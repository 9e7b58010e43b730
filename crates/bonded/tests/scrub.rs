//! Scrub end to end (docs/scrub.md): bytes changed or removed behind bonded's back are found by
//! `bonded scrub`, quarantined (moved aside, recorded), never served, and repaired by a push of
//! the correct bytes. Runs on both backend pairs: on S3 the objects are changed with the AWS CLI.

mod common;

use std::time::{Duration, Instant};

use bonded_types::{Algorithm, Digest};

const OCI: &str = "application/vnd.oci.image.manifest.v1+json";

fn key(d: &Digest) -> String {
    let hex = d.hex();
    format!("blobs/sha256/{}/{hex}", &hex[..2])
}

async fn put_blob(http: &reqwest::Client, base: &str, repo: &str, bytes: &[u8]) -> Digest {
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

async fn push_image(http: &reqwest::Client, base: &str, repo: &str, blobs: &[&[u8]]) {
    let digests: Vec<Digest> = {
        let mut v = Vec::new();
        for b in blobs {
            v.push(put_blob(http, base, repo, b).await);
        }
        v
    };
    let layers: Vec<serde_json::Value> = blobs[1..]
        .iter()
        .zip(&digests[1..])
        .map(|(b, d)| {
            serde_json::json!({"mediaType": "application/vnd.oci.image.layer.v1.tar",
                               "digest": d.to_string(), "size": b.len()})
        })
        .collect();
    let body = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2, "mediaType": OCI,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": digests[0].to_string(), "size": blobs[0].len()},
        "layers": layers,
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
}

fn scrub(s: &common::Server) -> (bool, serde_json::Value) {
    let (ok, out, err) = s.admin(&["scrub", "--rate", "1GiB", "--json"], &[]);
    let doc = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}\n{err}"));
    (ok, doc)
}

#[tokio::test]
async fn scrub_quarantines_corrupt_and_missing_blobs_and_a_push_repairs_them() {
    let s = common::Server::start_with(&[("BONDED_METRICS__STORAGE_INTERVAL_SECS", "1")]);
    let http = reqwest::Client::new();
    let base = s.url("");
    let config = b"{\"scrub\":true}".to_vec();
    let good = vec![1u8; 50_000];
    let rotten = vec![2u8; 70_000];
    let lost = vec![3u8; 30_000];
    push_image(&http, &base, "team/app", &[&config, &good, &rotten, &lost]).await;
    let (cd, gd, rd, ld) = (
        Digest::of(Algorithm::Sha256, &config),
        Digest::of(Algorithm::Sha256, &good),
        Digest::of(Algorithm::Sha256, &rotten),
        Digest::of(Algorithm::Sha256, &lost),
    );

    // A clean registry: everything checks out.
    let (ok, doc) = scrub(&s);
    assert!(ok, "{doc}");
    assert_eq!(doc["checked"], 4, "{doc}");
    assert_eq!(doc["ok"], 4, "{doc}");
    assert_eq!(
        doc["bytes"],
        (config.len() + good.len() + rotten.len() + lost.len()) as u64
    );

    // Behind bonded's back: one blob's bytes change (same size), another's vanish.
    let mut bad = rotten.clone();
    bad[12_345] ^= 0xff;
    common::storage_put(&s.data_dir, &key(&rd), &bad);
    common::storage_delete(&s.data_dir, &key(&ld));

    let (ok, doc) = scrub(&s);
    assert!(!ok, "scrub must fail when it finds damage: {doc}");
    assert_eq!(
        (doc["corrupt"].clone(), doc["missing"].clone()),
        (1.into(), 1.into()),
        "{doc}"
    );
    let findings = doc["findings"].as_array().unwrap();
    let finding = |d: &Digest| {
        findings
            .iter()
            .find(|f| f["digest"] == d.to_string())
            .unwrap_or_else(|| panic!("{d} not reported: {doc}"))
            .clone()
    };
    assert_eq!(finding(&rd)["problem"], "corrupt");
    assert!(finding(&rd)["detail"]
        .as_str()
        .unwrap()
        .contains("hash to sha256:"));
    assert_eq!(finding(&ld)["problem"], "missing");

    // The corrupt bytes were moved aside, not deleted.
    let evidence = common::storage_list(&s.data_dir, &format!("quarantine/sha256/{}", rd.hex()));
    assert_eq!(evidence.len(), 1, "{evidence:?}");
    assert_eq!(
        common::storage_get(&s.data_dir, &evidence[0]),
        Some(bad.clone())
    );

    // Pulls never serve the corrupt bytes; they say why. Other blobs still pull.
    for d in [&rd, &ld] {
        let r = http
            .get(format!("{base}/v2/team/app/blobs/{d}"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 404);
        let body: serde_json::Value = r.json().await.unwrap();
        assert_eq!(body["errors"][0]["code"], "BLOB_UNKNOWN");
        let msg = body["errors"][0]["message"].as_str().unwrap();
        assert!(
            msg.contains("integrity check") && msg.contains("quarantined"),
            "{msg}"
        );
        let head = http
            .head(format!("{base}/v2/team/app/blobs/{d}"))
            .send()
            .await
            .unwrap();
        assert_eq!(head.status(), 404);
    }
    for (d, bytes) in [(&cd, &config), (&gd, &good)] {
        let r = http
            .get(format!("{base}/v2/team/app/blobs/{d}"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(&r.bytes().await.unwrap()[..], &bytes[..]);
    }
    // Mounting a quarantined blob starts an upload instead.
    let r = http
        .post(format!(
            "{base}/v2/other/app/blobs/uploads/?mount={rd}&from=team/app"
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);

    // The gauge counts them.
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
        if text.contains("bonded_scrub_quarantined_blobs 2") {
            break;
        }
        assert!(Instant::now() < deadline, "no quarantine gauge:\n{text}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // A second scrub skips what is already quarantined and finds nothing new.
    let (ok, doc) = scrub(&s);
    assert!(ok, "{doc}");
    assert_eq!(doc["already_quarantined"], 2, "{doc}");
    assert_eq!(doc["quarantined"].as_array().unwrap().len(), 2, "{doc}");

    // Pushing the correct bytes repairs both.
    put_blob(&http, &base, "team/app", &rotten).await;
    put_blob(&http, &base, "team/app", &lost).await;
    for (d, bytes) in [(&rd, &rotten), (&ld, &lost)] {
        let r = http
            .get(format!("{base}/v2/team/app/blobs/{d}"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let got = r.bytes().await.unwrap();
        assert_eq!(Digest::of(Algorithm::Sha256, &got), *d);
        assert_eq!(&got[..], &bytes[..]);
    }
    let (ok, doc) = scrub(&s);
    assert!(ok, "{doc}");
    assert_eq!(
        (doc["checked"].clone(), doc["ok"].clone()),
        (4.into(), 4.into()),
        "{doc}"
    );
    assert_eq!(doc["quarantined"].as_array().unwrap().len(), 0, "{doc}");
    // The evidence stays until an operator removes it.
    assert_eq!(
        common::storage_list(&s.data_dir, &format!("quarantine/sha256/{}", rd.hex())).len(),
        1
    );
}

#[tokio::test]
async fn the_scrub_job_in_the_server_records_metrics() {
    let s = common::Server::start_with(&[
        ("BONDED_SCRUB__ENABLED", "true"),
        ("BONDED_SCRUB__INTERVAL_SECS", "1"),
    ]);
    let http = reqwest::Client::new();
    let base = s.url("");
    let blob = vec![7u8; 4096];
    put_blob(&http, &base, "team/app", &blob).await;
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
        let counted = text
            .lines()
            .find_map(|l| l.strip_prefix("bonded_scrub_bytes_checked_total "))
            .and_then(|v| v.trim().parse::<u64>().ok())
            .unwrap_or(0);
        if counted >= 4096
            && text.contains("bonded_scrub_blobs_checked_total")
            && !text.contains("bonded_scrub_last_run_timestamp_seconds 0")
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "scrub metrics never moved:\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[test]
fn scrub_refuses_a_rate_it_cannot_read() {
    let dir = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(common::bin())
        .args(["scrub", "--rate", "fast", "--data-dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--rate") && err.contains("is not a size"),
        "{err}"
    );
}
