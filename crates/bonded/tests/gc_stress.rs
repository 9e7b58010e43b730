//! The garbage collector's safety bar: for minutes, many clients push images that share layers,
//! delete manifests and tags, push the same layers again and mount them across repositories,
//! while the collector runs back to back with a one-second grace period (on S3 + PostgreSQL, on two
//! nodes at once). Afterwards every manifest that was acknowledged and not deleted pulls
//! completely, every blob matching its digest — zero losses — and unreferenced blobs were
//! reclaimed.
//!
//! `BONDED_TEST_GC_STRESS_SECS` sets how long the clients run (default 120).

mod common;

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bonded_types::{Algorithm, Digest};

const OCI: &str = "application/vnd.oci.image.manifest.v1+json";
const CLIENTS: usize = 8;
const REPOS: [&str; 4] = ["stress/a", "stress/b", "stress/c", "stress/d"];
/// Few enough that layers are shared, enough that many lose every reference now and then.
const LAYERS: usize = 48;
/// Each client keeps at most this many manifests, deleting more eagerly beyond it.
const KEEP: usize = 6;

/// A small deterministic generator, so a failure can be replayed from its seed.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

fn layer(i: usize) -> Vec<u8> {
    let len = 2048 + i * 331;
    (0..len).map(|j| ((j * 31 + i * 7) % 251) as u8).collect()
}

#[derive(Clone, Debug)]
struct Pushed {
    repo: &'static str,
    tag: Option<String>,
    digest: Digest,
    /// Every blob the manifest names, with its bytes' digest.
    blobs: Vec<Digest>,
    body: Vec<u8>,
}

#[derive(Default)]
struct Tally {
    pushes: u64,
    /// Manifest pushes refused because a layer the client had checked was collected meanwhile
    /// (the client must push it again): allowed, since nothing was acknowledged.
    refused: u64,
    deletes: u64,
    tag_deletes: u64,
    mounts: u64,
    verified_pulls: u64,
    /// Deleted manifests pushed again as they were, without uploading or checking their blobs
    /// (accepted while the blobs are still linked: the sweep must notice the new reference).
    blind_repushes: u64,
}

struct Client {
    http: reqwest::Client,
    bases: Vec<String>,
    layers: Arc<Vec<(Digest, Vec<u8>)>>,
}

impl Client {
    fn base(&self, rng: &mut Rng) -> &str {
        &self.bases[rng.below(self.bases.len())]
    }

    /// Makes sure `digest` is in `repo`: already there, mounted from another repository, or
    /// uploaded (monolithic or chunked).
    async fn ensure_blob(
        &self,
        rng: &mut Rng,
        repo: &str,
        digest: &Digest,
        bytes: &[u8],
        tally: &mut Tally,
    ) {
        let base = self.base(rng).to_string();
        let head = self
            .http
            .head(format!("{base}/v2/{repo}/blobs/{digest}"))
            .send()
            .await
            .unwrap();
        if head.status() == 200 {
            return;
        }
        assert_eq!(head.status(), 404, "HEAD {repo}@{digest}");
        let location = match rng.below(3) {
            0 => {
                let from = REPOS[rng.below(REPOS.len())];
                let r = self
                    .http
                    .post(format!(
                        "{base}/v2/{repo}/blobs/uploads/?mount={digest}&from={from}"
                    ))
                    .send()
                    .await
                    .unwrap();
                if r.status() == 201 {
                    tally.mounts += 1;
                    return;
                }
                assert_eq!(r.status(), 202, "mount fallback");
                r.headers()["location"].to_str().unwrap().to_string()
            }
            1 => {
                let r = self
                    .http
                    .post(format!("{base}/v2/{repo}/blobs/uploads/?digest={digest}"))
                    .body(bytes.to_vec())
                    .send()
                    .await
                    .unwrap();
                assert_eq!(
                    r.status(),
                    201,
                    "monolithic upload: {}",
                    r.text().await.unwrap()
                );
                return;
            }
            _ => {
                let r = self
                    .http
                    .post(format!("{base}/v2/{repo}/blobs/uploads/"))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(r.status(), 202);
                let loc = r.headers()["location"].to_str().unwrap().to_string();
                let (a, _) = bytes.split_at(bytes.len() / 2);
                let r = self
                    .http
                    .patch(format!("{base}{loc}"))
                    .header("content-range", format!("0-{}", a.len() - 1))
                    .body(a.to_vec())
                    .send()
                    .await
                    .unwrap();
                assert_eq!(r.status(), 202, "chunk: {}", r.text().await.unwrap());
                let r = self
                    .http
                    .put(format!("{base}{loc}?digest={digest}"))
                    .body(bytes[a.len()..].to_vec())
                    .send()
                    .await
                    .unwrap();
                assert_eq!(
                    r.status(),
                    201,
                    "chunked upload: {}",
                    r.text().await.unwrap()
                );
                return;
            }
        };
        let sep = if location.contains('?') { '&' } else { '?' };
        let r = self
            .http
            .put(format!("{base}{location}{sep}digest={digest}"))
            .body(bytes.to_vec())
            .send()
            .await
            .unwrap();
        assert_eq!(
            r.status(),
            201,
            "upload after mount fallback: {}",
            r.text().await.unwrap()
        );
    }

    async fn push(&self, rng: &mut Rng, c: usize, n: usize, tally: &mut Tally) -> Option<Pushed> {
        let repo = REPOS[rng.below(REPOS.len())];
        let mut picked = BTreeSet::new();
        while picked.len() < 2 {
            picked.insert(rng.below(LAYERS));
        }
        let config = serde_json::to_vec(&serde_json::json!({"client": c, "n": n})).unwrap();
        let config_digest = Digest::of(Algorithm::Sha256, &config);
        self.ensure_blob(rng, repo, &config_digest, &config, tally)
            .await;
        let mut layers = Vec::new();
        for &i in &picked {
            let (d, bytes) = &self.layers[i];
            self.ensure_blob(rng, repo, d, bytes, tally).await;
            layers.push(serde_json::json!({
                "mediaType": "application/vnd.oci.image.layer.v1.tar",
                "digest": d.to_string(), "size": bytes.len(),
            }));
        }
        let body = serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2, "mediaType": OCI,
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                       "digest": config_digest.to_string(), "size": config.len()},
            "layers": layers,
        }))
        .unwrap();
        let digest = Digest::of(Algorithm::Sha256, &body);
        let tag = format!("c{c}-{n}");
        let base = self.base(rng).to_string();
        let r = self
            .http
            .put(format!("{base}/v2/{repo}/manifests/{tag}"))
            .header("content-type", OCI)
            .body(body.clone())
            .send()
            .await
            .unwrap();
        if r.status() == 400 {
            let text = r.text().await.unwrap();
            assert!(
                text.contains("MANIFEST_BLOB_UNKNOWN"),
                "manifest refused: {text}"
            );
            tally.refused += 1;
            return None;
        }
        assert_eq!(
            r.status(),
            201,
            "manifest push: {}",
            r.text().await.unwrap()
        );
        tally.pushes += 1;
        let mut blobs = vec![config_digest];
        blobs.extend(picked.iter().map(|&i| self.layers[i].0.clone()));
        Some(Pushed {
            repo,
            tag: Some(tag),
            digest,
            blobs,
            body,
        })
    }

    /// Pushes a deleted manifest again under a new tag, blobs unchecked.
    async fn repush_blind(
        &self,
        rng: &mut Rng,
        mut p: Pushed,
        tag: String,
        tally: &mut Tally,
    ) -> Option<Pushed> {
        let base = self.base(rng).to_string();
        let r = self
            .http
            .put(format!("{base}/v2/{}/manifests/{tag}", p.repo))
            .header("content-type", OCI)
            .body(p.body.clone())
            .send()
            .await
            .unwrap();
        if r.status() == 400 {
            let text = r.text().await.unwrap();
            assert!(
                text.contains("MANIFEST_BLOB_UNKNOWN"),
                "manifest refused: {text}"
            );
            return None;
        }
        assert_eq!(
            r.status(),
            201,
            "blind re-push: {}",
            r.text().await.unwrap()
        );
        tally.blind_repushes += 1;
        p.tag = Some(tag);
        Some(p)
    }

    /// Pulls a manifest by digest (and by tag while it has one) and every blob it names,
    /// checking every digest. Panics on any loss.
    async fn verify(&self, base: &str, p: &Pushed) {
        let mut refs = vec![p.digest.to_string()];
        refs.extend(p.tag.clone());
        for reference in refs {
            let r = self
                .http
                .get(format!("{base}/v2/{}/manifests/{reference}", p.repo))
                .header("accept", OCI)
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 200, "LOST manifest {}:{reference}", p.repo);
            let body = r.bytes().await.unwrap();
            assert_eq!(Digest::of(Algorithm::Sha256, &body), p.digest);
        }
        for d in &p.blobs {
            let r = self
                .http
                .get(format!("{base}/v2/{}/blobs/{d}", p.repo))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 200, "LOST blob {d} of {}@{}", p.repo, p.digest);
            let bytes = r.bytes().await.unwrap();
            assert_eq!(
                &Digest::of(Algorithm::Sha256, &bytes),
                d,
                "CORRUPT blob {d}"
            );
        }
    }
}

async fn run_client(
    client: Arc<Client>,
    c: usize,
    until: Instant,
    acked: Arc<Mutex<Vec<Pushed>>>,
) -> Tally {
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15 ^ ((c as u64 + 1) * 0x1000_0001));
    let mut tally = Tally::default();
    let mut mine: Vec<Pushed> = Vec::new();
    let mut deleted: Vec<Pushed> = Vec::new();
    let mut n = 0;
    while Instant::now() < until {
        let op = if mine.len() > KEEP { 5 } else { rng.below(10) };
        match op {
            0..=4 => {
                n += 1;
                if let Some(p) = client.push(&mut rng, c, n, &mut tally).await {
                    mine.push(p);
                }
            }
            5..=6 if !mine.is_empty() => {
                let p = mine.swap_remove(rng.below(mine.len()));
                let base = client.base(&mut rng).to_string();
                let r = client
                    .http
                    .delete(format!("{base}/v2/{}/manifests/{}", p.repo, p.digest))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(r.status(), 202, "delete {}@{}", p.repo, p.digest);
                tally.deletes += 1;
                deleted.push(p);
                if deleted.len() > 32 {
                    deleted.remove(0);
                }
            }
            8 if !deleted.is_empty() => {
                let p = deleted.swap_remove(rng.below(deleted.len()));
                n += 1;
                if let Some(p) = client
                    .repush_blind(&mut rng, p, format!("c{c}-{n}"), &mut tally)
                    .await
                {
                    mine.push(p);
                }
            }
            7 if !mine.is_empty() => {
                let i = rng.below(mine.len());
                if let Some(tag) = mine[i].tag.take() {
                    let base = client.base(&mut rng).to_string();
                    let r = client
                        .http
                        .delete(format!("{base}/v2/{}/manifests/{tag}", mine[i].repo))
                        .send()
                        .await
                        .unwrap();
                    assert_eq!(r.status(), 202, "delete tag {tag}");
                    tally.tag_deletes += 1;
                }
            }
            _ if !mine.is_empty() => {
                let p = mine[rng.below(mine.len())].clone();
                let base = client.base(&mut rng).to_string();
                client.verify(&base, &p).await;
                tally.verified_pulls += 1;
            }
            _ => {}
        }
    }
    acked.lock().unwrap().extend(mine);
    tally
}

async fn metric(http: &reqwest::Client, base: &str, name: &str) -> f64 {
    let text = http
        .get(format!("{base}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .filter(|l| l.starts_with(name))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_pushes_deletes_and_gc_lose_nothing_and_reclaim_garbage() {
    let secs: u64 = std::env::var("BONDED_TEST_GC_STRESS_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(120);
    let env = [
        ("BONDED_GC__GRACE_SECS", "1"),
        ("BONDED_GC__INTERVAL_SECS", "0"),
        // Deleted manifests are forgotten at once, so their blobs become garbage right away.
        ("BONDED_GC__UNDELETE_WINDOW_SECS", "0"),
    ];
    // On S3 + PostgreSQL two nodes collect at once; clients spread over both.
    let (_server, _cluster, bases, blob_dir) = if common::s3_postgres() {
        let cluster = common::Cluster::start_with(2, &env);
        let bases = cluster.nodes.iter().map(|n| n.url("")).collect();
        (None, Some(cluster), bases, None)
    } else {
        let server = common::Server::start_with(&env);
        let bases = vec![server.url("")];
        // The filesystem layout: published blobs under `blobs/blobs/`, staging under `blobs/uploads/`.
        let dir = server.data_dir.join("blobs").join("blobs");
        (Some(server), None, bases, Some(dir))
    };
    let layers: Vec<(Digest, Vec<u8>)> = (0..LAYERS)
        .map(|i| {
            let b = layer(i);
            (Digest::of(Algorithm::Sha256, &b), b)
        })
        .collect();
    let client = Arc::new(Client {
        http: reqwest::Client::new(),
        bases: bases.clone(),
        layers: Arc::new(layers),
    });

    let until = Instant::now() + Duration::from_secs(secs);
    let acked = Arc::new(Mutex::new(Vec::new()));
    let tasks: Vec<_> = (0..CLIENTS)
        .map(|c| tokio::spawn(run_client(client.clone(), c, until, acked.clone())))
        .collect();
    let mut total = Tally::default();
    for t in tasks {
        let t = t
            .await
            .expect("client panicked (see above: a LOST or CORRUPT blob fails here)");
        total.pushes += t.pushes;
        total.refused += t.refused;
        total.deletes += t.deletes;
        total.tag_deletes += t.tag_deletes;
        total.mounts += t.mounts;
        total.verified_pulls += t.verified_pulls;
        total.blind_repushes += t.blind_repushes;
    }
    let acked = acked.lock().unwrap().clone();
    let swept_during = metric(&client.http, &bases[0], "bonded_gc_swept_blobs_total").await;
    eprintln!(
        "{secs}s: {} manifests pushed ({} refused and retried), {} deleted, {} tags deleted, \
         {} mounts, {} blind re-pushes, {} verified pulls during the run; {} blobs swept \
         meanwhile; {} survive",
        total.pushes,
        total.refused,
        total.deletes,
        total.tag_deletes,
        total.mounts,
        total.blind_repushes,
        total.verified_pulls,
        swept_during,
        acked.len()
    );
    assert!(
        total.pushes > 50 && total.deletes > 10,
        "the workload did too little to mean anything"
    );
    assert!(
        swept_during > 0.0,
        "the collector reclaimed nothing while clients ran"
    );

    // Zero losses: every acknowledged, undeleted manifest pulls completely, from every node.
    for base in &bases {
        for p in &acked {
            client.verify(base, p).await;
        }
    }

    // Reclaimed: once the grace period passes without use, every blob no surviving manifest
    // references is gone (from the registry's view; on the filesystem, from the disk too).
    let referenced: BTreeSet<Digest> = acked.iter().flat_map(|p| p.blobs.clone()).collect();
    let garbage: Vec<Digest> = client
        .layers
        .iter()
        .map(|(d, _)| d.clone())
        .filter(|d| !referenced.contains(d))
        .collect();
    // Wait without looking at the blobs (a HEAD counts as a use and would spare a marked blob):
    // until the collectors have swept nothing new for a few grace periods.
    let deadline = Instant::now() + Duration::from_secs(90);
    let (mut last, mut quiet_since) = (-1.0, Instant::now());
    while quiet_since.elapsed() < Duration::from_secs(5) {
        assert!(Instant::now() < deadline, "the collectors never settled");
        let mut swept = 0.0;
        for base in &bases {
            swept += metric(&client.http, base, "bonded_gc_swept_blobs_total").await;
        }
        if swept != last {
            (last, quiet_since) = (swept, Instant::now());
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let mut left = Vec::new();
    for d in &garbage {
        for repo in REPOS {
            let r = client
                .http
                .head(format!("{}/v2/{repo}/blobs/{d}", bases[0]))
                .send()
                .await
                .unwrap();
            if r.status() != 404 {
                left.push(format!("{repo}@{d}"));
            }
        }
    }
    assert!(
        left.is_empty(),
        "unreferenced blobs not reclaimed: {left:?}"
    );
    if let Some(dir) = &blob_dir {
        // On disk: the referenced blobs and nothing else (config blobs of deleted manifests
        // included).
        let files = walkdir::WalkDir::new(dir)
            .into_iter()
            .filter_map(|e| e.ok())
            .filter(|e| e.file_type().is_file())
            .count();
        assert_eq!(
            files,
            referenced.len(),
            "blob files on disk vs referenced blobs"
        );
    }
    // And reclaiming them touched nothing that is referenced.
    for p in &acked {
        client.verify(&bases[bases.len() - 1], p).await;
    }
}
