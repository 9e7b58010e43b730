//! A 1 GiB blob pushed in chunks and pulled back keeps the server's memory flat.

mod common;

use bonded_types::{Algorithm, Hasher};
use futures::StreamExt;

const GIB: u64 = 1 << 30;
const CHUNK: usize = 8 << 20;
/// The bar for a 5 GiB blob; it must hold for 1 GiB with room to spare.
const MAX_RSS_KIB: u64 = 100 * 1024;

/// Deterministic, incompressible-looking bytes without holding them all.
fn chunk(i: u64) -> Vec<u8> {
    let mut x = i.wrapping_mul(0x9E3779B97F4A7C15) | 1;
    let mut out = Vec::with_capacity(CHUNK);
    while out.len() < CHUNK {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_gib_push_and_pull_keep_server_rss_under_100_mib() {
    let s = common::Server::start();
    let http = reqwest::Client::new();
    let resp = http
        .post(s.url("/v2/big/blob/blobs/uploads/"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 202);
    let location = resp.headers()["location"].to_str().unwrap().to_string();

    // Two PATCH requests of 512 MiB each, streamed.
    let mut hasher = Hasher::new(Algorithm::Sha256);
    let chunks_per_patch = (GIB / 2) / CHUNK as u64;
    for p in 0..2u64 {
        let start = p * chunks_per_patch;
        let body = futures::stream::iter(start..start + chunks_per_patch)
            .map(|i| Ok::<_, std::io::Error>(chunk(i)));
        let begin = p * (GIB / 2);
        let end = begin + GIB / 2 - 1;
        let resp = http
            .patch(s.url(&location))
            .header("content-range", format!("{begin}-{end}"))
            .header("content-length", (GIB / 2).to_string())
            .body(reqwest::Body::wrap_stream(body))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 202, "{}", resp.text().await.unwrap());
        for i in start..start + chunks_per_patch {
            hasher.update(&chunk(i));
        }
    }
    let digest = hasher.finish();
    let resp = http
        .put(s.url(&format!("{location}?digest={digest}")))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201, "{}", resp.text().await.unwrap());

    let resp = http
        .get(s.url(&format!("/v2/big/blob/blobs/{digest}")))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.content_length(), Some(GIB));
    let mut pulled = Hasher::new(Algorithm::Sha256);
    let mut n = 0u64;
    let mut stream = resp.bytes_stream();
    while let Some(c) = stream.next().await {
        let c = c.unwrap();
        n += c.len() as u64;
        pulled.update(&c);
    }
    assert_eq!(n, GIB);
    assert_eq!(pulled.finish(), digest);

    let rss = s.peak_rss_kib();
    eprintln!(
        "server peak RSS after 1 GiB push + pull: {} MiB",
        rss / 1024
    );
    assert!(
        rss < MAX_RSS_KIB,
        "server peak RSS {rss} KiB exceeds {MAX_RSS_KIB} KiB"
    );
}
