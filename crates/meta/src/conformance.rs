//! The metadata store conformance suite. Every backend must pass all of it: SQLite and PostgreSQL.
//! The race tests run several writers at once; on PostgreSQL they go through two `MetaStore`s on
//! one database, as two nodes would.
//!
//! PostgreSQL tests use `BONDED_TEST_POSTGRES_URL` (default
//! `postgres://postgres@127.0.0.1:5432/test`) to create a fresh database each, and fail if the
//! server is unreachable.

use std::sync::Arc;

use bonded_types::{Digest, MediaType, RepoName, Tag, UploadId};
use tokio::sync::Barrier;

use crate::{MetaError, MetaStore, NewManifest, TagWrite};

mod gc;
mod integrity;
mod promotion;
mod trust;
mod undelete;
mod vulns;
mod waivers;

pub(crate) fn d(c: char) -> Digest {
    format!("sha256:{}", c.to_string().repeat(64))
        .parse()
        .unwrap()
}
/// The `i`th of many distinct digests.
pub(crate) fn dn(i: usize) -> Digest {
    format!("sha256:{:064x}", i + 1).parse().unwrap()
}
pub(crate) fn repo(s: &str) -> RepoName {
    s.parse().unwrap()
}
pub(crate) fn tag(s: &str) -> Tag {
    s.parse().unwrap()
}
pub(crate) fn manifest(digest: Digest, blobs: Vec<Digest>, subject: Option<Digest>) -> NewManifest {
    NewManifest {
        digest,
        media_type: MediaType::from_header(bonded_types::media_types::OCI_MANIFEST).unwrap(),
        artifact_type: Some("application/x.test".parse().unwrap()),
        subject,
        annotations: None,
        content: b"{}".to_vec(),
        blobs,
        manifests: vec![],
    }
}

async fn suite(meta: MetaStore) {
    let a = repo("team/a");
    let b = repo("team/b");

    // Blobs are visible only where linked.
    meta.blobs().record_and_link(&a, &d('1'), 10).await.unwrap();
    assert_eq!(
        meta.blobs().linked_size(&a, &d('1')).await.unwrap(),
        Some(crate::LinkedBlob {
            size: 10,
            marked: false,
            quarantined: false,
        })
    );
    assert_eq!(meta.blobs().linked_size(&b, &d('1')).await.unwrap(), None);
    assert_eq!(meta.blobs().size(&d('1')).await.unwrap(), Some(10));
    assert_eq!(meta.blobs().link(&b, &d('1')).await.unwrap(), 10);
    assert!(matches!(
        meta.blobs().link(&b, &d('9')).await,
        Err(MetaError::NotFound)
    ));
    meta.blobs().unlink(&b, &d('1')).await.unwrap();
    assert!(matches!(
        meta.blobs().unlink(&b, &d('1')).await,
        Err(MetaError::NotFound)
    ));

    // A manifest whose blob is missing is refused and leaves nothing.
    let err = meta
        .manifests()
        .put(
            &a,
            &manifest(d('f'), vec![d('2')], None),
            Some((&tag("v1"), TagWrite::Overwrite)),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, MetaError::MissingReference(x) if x == d('2')));
    assert_eq!(meta.tags().resolve(&a, &tag("v1")).await.unwrap(), None);

    // Manifest + tag land together.
    meta.manifests()
        .put(
            &a,
            &manifest(d('a'), vec![d('1')], None),
            Some((&tag("v1"), TagWrite::Immutable)),
        )
        .await
        .unwrap();
    assert_eq!(
        meta.tags().resolve(&a, &tag("v1")).await.unwrap(),
        Some(d('a'))
    );
    assert!(meta.manifests().get(&a, &d('a')).await.unwrap().is_some());
    assert!(meta.manifests().get(&b, &d('a')).await.unwrap().is_none());
    let tagged = meta
        .manifests()
        .get_tagged(&a, &tag("v1"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(tagged.digest, d('a'));
    assert!(meta
        .manifests()
        .get_tagged(&a, &tag("nope"))
        .await
        .unwrap()
        .is_none());
    assert!(meta
        .manifests()
        .get_tagged(&b, &tag("v1"))
        .await
        .unwrap()
        .is_none());

    // Immutable tags do not move; mutable ones do.
    meta.manifests()
        .put(&a, &manifest(d('b'), vec![], Some(d('a'))), None)
        .await
        .unwrap();
    let err = meta
        .manifests()
        .put(
            &a,
            &manifest(d('b'), vec![], Some(d('a'))),
            Some((&tag("v1"), TagWrite::Immutable)),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, MetaError::TagImmutable(_)));
    meta.manifests()
        .put(
            &a,
            &manifest(d('a'), vec![d('1')], None),
            Some((&tag("v1"), TagWrite::Immutable)),
        )
        .await
        .expect("same digest on an immutable tag is fine");
    meta.manifests()
        .put(
            &a,
            &manifest(d('b'), vec![], Some(d('a'))),
            Some((&tag("latest"), TagWrite::Overwrite)),
        )
        .await
        .unwrap();
    meta.manifests()
        .put(
            &a,
            &manifest(d('a'), vec![d('1')], None),
            Some((&tag("latest"), TagWrite::Overwrite)),
        )
        .await
        .unwrap();
    assert_eq!(
        meta.tags().resolve(&a, &tag("latest")).await.unwrap(),
        Some(d('a'))
    );

    // Referrers, with and without a filter.
    let refs = meta.manifests().referrers(&a, &d('a'), None).await.unwrap();
    assert_eq!(refs.len(), 1);
    assert_eq!(refs[0].digest, d('b'));
    assert!(meta
        .manifests()
        .referrers(&a, &d('a'), Some("application/x.other"))
        .await
        .unwrap()
        .is_empty());

    // Listing with pagination, in lexical order.
    for t in ["c", "a2", "b"] {
        meta.manifests()
            .put(
                &a,
                &manifest(d('a'), vec![d('1')], None),
                Some((&tag(t), TagWrite::Overwrite)),
            )
            .await
            .unwrap();
    }
    let page = meta.tags().list(&a, 2, None).await.unwrap().unwrap();
    assert_eq!(page, vec![tag("a2"), tag("b")]);
    let page = meta.tags().list(&a, 10, Some("b")).await.unwrap().unwrap();
    assert_eq!(page, vec![tag("c"), tag("latest"), tag("v1")]);
    let nowhere: RepoName = "no/such/repo".parse().unwrap();
    assert_eq!(meta.tags().list(&nowhere, 10, None).await.unwrap(), None);
    assert_eq!(
        meta.repos().list(10, None).await.unwrap(),
        vec![a.clone(), b.clone()]
    );
    assert_eq!(
        meta.repos().list(10, Some("team/a")).await.unwrap(),
        vec![b.clone()]
    );

    // Inventories, for migration.
    assert_eq!(meta.blobs().linked(&a).await.unwrap(), vec![(d('1'), 10)]);
    assert_eq!(meta.blobs().linked(&b).await.unwrap(), vec![]);
    assert_eq!(
        meta.manifests().list(&a).await.unwrap(),
        vec![d('a'), d('b')]
    );

    // Deleting a manifest takes its tags with it.
    let gone = meta.manifests().delete(&a, &d('a')).await.unwrap();
    assert_eq!(gone.tags_removed.len(), 5);
    assert_eq!(
        meta.tags().list(&a, 10, None).await.unwrap().unwrap(),
        Vec::<Tag>::new()
    );
}

async fn delete_suite(meta: MetaStore) {
    let a = repo("x");
    meta.blobs().record_and_link(&a, &d('1'), 1).await.unwrap();
    meta.manifests()
        .put(
            &a,
            &manifest(d('a'), vec![d('1')], None),
            Some((&tag("v1"), TagWrite::Overwrite)),
        )
        .await
        .unwrap();
    meta.manifests()
        .put(
            &a,
            &manifest(d('a'), vec![d('1')], None),
            Some((&tag("v2"), TagWrite::Overwrite)),
        )
        .await
        .unwrap();
    let gone = meta.manifests().delete(&a, &d('a')).await.unwrap();
    assert_eq!(gone.tags_removed, vec![tag("v1"), tag("v2")]);
    assert!(meta.manifests().get(&a, &d('a')).await.unwrap().is_none());
    assert_eq!(meta.tags().list(&a, 10, None).await.unwrap(), Some(vec![]));
    assert!(matches!(
        meta.manifests().delete(&a, &d('a')).await,
        Err(MetaError::NotFound)
    ));
    assert!(matches!(
        meta.tags().delete(&a, &tag("v1")).await,
        Err(MetaError::NotFound)
    ));

    let id = UploadId::from_random(5);
    meta.uploads().create(&id, &a, "cursor-0").await.unwrap();
    let rec = meta.uploads().get(&id).await.unwrap().unwrap();
    assert_eq!(
        (rec.repo.clone(), rec.size, rec.state.as_str()),
        (a.clone(), 0, "cursor-0")
    );
    meta.uploads()
        .advance(&id, 0, 10, "cursor-10")
        .await
        .unwrap();
    // A second writer that still thinks the upload is at 0 loses.
    assert!(matches!(
        meta.uploads().advance(&id, 0, 5, "stale").await,
        Err(MetaError::Conflict(_))
    ));
    let rec = meta.uploads().get(&id).await.unwrap().unwrap();
    assert_eq!((rec.size, rec.state.as_str()), (10, "cursor-10"));
    assert_eq!(meta.uploads().idle_since(i64::MAX).await.unwrap().len(), 1);
    assert_eq!(meta.uploads().idle_since(0).await.unwrap().len(), 0);
    meta.uploads().delete(&id).await.unwrap();
    meta.uploads().delete(&id).await.unwrap();
    assert!(meta.uploads().get(&id).await.unwrap().is_none());
    assert!(matches!(
        meta.uploads().advance(&id, 10, 20, "x").await,
        Err(MetaError::NotFound)
    ));
}

async fn listings_sort_bytewise(meta: MetaStore) {
    // Under most collations (say ICU en-US) `_x < a < B` and `_` sorts before `-`; bytewise,
    // uppercase comes first and `_` after `/`.
    let mut repos = vec!["a_b", "a-b", "a.b", "a/b", "ab"];
    let mut tags = vec!["a", "B", "_x", "Z9", "a-b", "a.b", "z_1"];
    for r in &repos {
        meta.blobs()
            .record_and_link(&repo(r), &d('1'), 1)
            .await
            .unwrap();
    }
    let x = repo("ab");
    for t in &tags {
        meta.manifests()
            .put(
                &x,
                &manifest(d('a'), vec![], None),
                Some((&tag(t), TagWrite::Overwrite)),
            )
            .await
            .unwrap();
    }
    repos.sort_unstable();
    tags.sort_unstable();
    let listed = meta.repos().list(100, None).await.unwrap();
    assert_eq!(listed, repos.iter().map(|r| repo(r)).collect::<Vec<_>>());
    let listed = meta.repos().list(100, Some("a/b")).await.unwrap();
    assert_eq!(listed, vec![repo("a_b"), repo("ab")]);
    let listed = meta.tags().list(&x, 100, None).await.unwrap().unwrap();
    assert_eq!(listed, tags.iter().map(|t| tag(t)).collect::<Vec<_>>());
    let listed = meta.tags().list(&x, 2, Some("Z9")).await.unwrap().unwrap();
    assert_eq!(listed, vec![tag("_x"), tag("a")]);
    let pointing = meta.tags().pointing_at(&x, &d('a')).await.unwrap();
    assert_eq!(pointing, tags.iter().map(|t| tag(t)).collect::<Vec<_>>());
    let gone = meta.manifests().delete(&x, &d('a')).await.unwrap();
    assert_eq!(
        gone.tags_removed,
        tags.iter().map(|t| tag(t)).collect::<Vec<_>>()
    );
}

/// Runs `tasks` writers released together, writer `i` on node `i % nodes.len()`.
pub(crate) async fn race<T, F, Fut>(nodes: &[MetaStore], tasks: usize, body: F) -> Vec<T>
where
    T: Send + 'static,
    F: Fn(usize, MetaStore) -> Fut,
    Fut: std::future::Future<Output = T> + Send + 'static,
{
    let start = Arc::new(Barrier::new(tasks));
    let handles: Vec<_> = (0..tasks)
        .map(|i| {
            let work = body(i, nodes[i % nodes.len()].clone());
            let start = start.clone();
            tokio::spawn(async move {
                start.wait().await;
                work.await
            })
        })
        .collect();
    let mut out = Vec::with_capacity(tasks);
    for h in handles {
        out.push(h.await.expect("racing task panicked"));
    }
    out
}

async fn racing_tag_moves_end_at_one_pushed_digest(nodes: &[MetaStore]) {
    let r = repo("race/tags");
    let latest = tag("latest");
    let results = race(nodes, 16, |i, meta| {
        let (r, latest) = (r.clone(), latest.clone());
        async move {
            let mut out = Vec::new();
            for _ in 0..4 {
                let m = manifest(dn(i), vec![], None);
                let put = meta
                    .manifests()
                    .put(&r, &m, Some((&latest, TagWrite::Overwrite)));
                out.push(put.await);
            }
            out
        }
    })
    .await;
    for r in results.into_iter().flatten() {
        r.expect("a racing tag move must succeed");
    }
    let pushed: Vec<Digest> = (0..16).map(dn).collect();
    let winner = nodes[0]
        .tags()
        .resolve(&r, &latest)
        .await
        .unwrap()
        .expect("tag exists");
    assert!(
        pushed.contains(&winner),
        "tag points at {winner}, never pushed"
    );
    for meta in nodes {
        assert_eq!(
            meta.tags().resolve(&r, &latest).await.unwrap(),
            Some(winner.clone())
        );
        assert_eq!(
            meta.tags().list(&r, 100, None).await.unwrap().unwrap(),
            vec![latest.clone()]
        );
        assert_eq!(
            meta.tags().pointing_at(&r, &winner).await.unwrap(),
            vec![latest.clone()]
        );
        for d in &pushed {
            assert!(
                meta.manifests().get(&r, d).await.unwrap().is_some(),
                "{d} lost"
            );
        }
    }
}

async fn racing_immutable_creates_let_exactly_one_win(nodes: &[MetaStore]) {
    let r = repo("race/immutable");
    for round in 0..4 {
        let t = tag(&format!("v{round}"));
        let results = race(nodes, 8, |i, meta| {
            let (r, t) = (r.clone(), t.clone());
            async move {
                let m = manifest(dn(round * 8 + i), vec![], None);
                let put = meta
                    .manifests()
                    .put(&r, &m, Some((&t, TagWrite::Immutable)));
                let res = put.await;
                (m.digest, res)
            }
        })
        .await;
        let mut winners = Vec::new();
        for (digest, res) in results {
            match res {
                Ok(()) => winners.push(digest),
                Err(MetaError::TagImmutable(refused)) => assert_eq!(refused, t),
                Err(e) => panic!("racing immutable create failed with {e}"),
            }
        }
        assert_eq!(winners.len(), 1, "round {round}: winners {winners:?}");
        for meta in nodes {
            assert_eq!(
                meta.tags().resolve(&r, &t).await.unwrap(),
                Some(winners[0].clone())
            );
        }
    }
}

async fn racing_advances_from_one_size_let_exactly_one_win(nodes: &[MetaStore]) {
    let r = repo("race/uploads");
    let id = UploadId::from_random(uuid::Uuid::new_v4().as_u128());
    nodes[0]
        .uploads()
        .create(&id, &r, "cursor-0")
        .await
        .unwrap();
    let mut at = 0;
    for round in 0..3u64 {
        let results = race(nodes, 8, |i, meta| {
            let id = id.clone();
            async move {
                let to = at + 10 + i as u64;
                let state = format!("cursor-{to}");
                (to, meta.uploads().advance(&id, at, to, &state).await)
            }
        })
        .await;
        let mut winners = Vec::new();
        for (to, res) in results {
            match res {
                Ok(()) => winners.push(to),
                Err(MetaError::Conflict(_)) => {}
                Err(e) => panic!("racing advance failed with {e}"),
            }
        }
        assert_eq!(winners.len(), 1, "round {round}: winners {winners:?}");
        at = winners[0];
        for meta in nodes {
            let rec = meta.uploads().get(&id).await.unwrap().unwrap();
            assert_eq!((rec.size, rec.state), (at, format!("cursor-{at}")));
        }
    }
}

async fn racing_put_and_delete_of_one_manifest_stay_consistent(nodes: &[MetaStore]) {
    let r = repo("race/delete");
    for round in 0..24 {
        let (m, t) = (manifest(dn(round), vec![], None), tag(&format!("t{round}")));
        nodes[0].manifests().put(&r, &m, None).await.unwrap();
        let results = race(nodes, 2, |i, meta| {
            let (r, m, t) = (r.clone(), m.clone(), t.clone());
            async move {
                if i == 0 {
                    let put = meta
                        .manifests()
                        .put(&r, &m, Some((&t, TagWrite::Overwrite)));
                    put.await.map(|()| None)
                } else {
                    meta.manifests().delete(&r, &m.digest).await.map(Some)
                }
            }
        })
        .await;
        let mut results = results.into_iter();
        results
            .next()
            .unwrap()
            .expect("the put must succeed, before or after the delete");
        let deleted = results
            .next()
            .unwrap()
            .expect("the delete found the manifest")
            .unwrap();
        let exists = nodes[0]
            .manifests()
            .get(&r, &m.digest)
            .await
            .unwrap()
            .is_some();
        let tagged = nodes[0].tags().resolve(&r, &t).await.unwrap();
        if exists {
            // Delete, then put: the put recreated the manifest and tagged it.
            assert_eq!(tagged, Some(m.digest.clone()), "round {round}");
            assert!(deleted.tags_removed.is_empty(), "round {round}");
        } else {
            // Put, then delete: the delete took the new tag with it.
            assert_eq!(tagged, None, "round {round}");
            assert_eq!(deleted.tags_removed, vec![t.clone()], "round {round}");
        }
    }
}

#[tokio::test]
async fn sqlite_backend_passes_the_suite() {
    let dir = tempfile::tempdir().unwrap();
    suite(MetaStore::sqlite(&dir.path().join("a.db")).await.unwrap()).await;
    delete_suite(MetaStore::sqlite(&dir.path().join("b.db")).await.unwrap()).await;
    listings_sort_bytewise(MetaStore::sqlite(&dir.path().join("c.db")).await.unwrap()).await;
}

#[tokio::test]
async fn postgres_backend_passes_the_suite() {
    let (a, b, c) = (
        pg::TestDb::create().await,
        pg::TestDb::create().await,
        pg::TestDb::create().await,
    );
    suite(a.store().await).await;
    delete_suite(b.store().await).await;
    listings_sort_bytewise(c.store().await).await;
}

pub(crate) async fn sqlite_node() -> (tempfile::TempDir, Vec<MetaStore>) {
    let dir = tempfile::tempdir().unwrap();
    let meta = MetaStore::sqlite(&dir.path().join("race.db"))
        .await
        .unwrap();
    (dir, vec![meta])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_racing_tag_moves_end_at_one_pushed_digest() {
    let (_dir, nodes) = sqlite_node().await;
    racing_tag_moves_end_at_one_pushed_digest(&nodes).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_racing_immutable_creates_let_exactly_one_win() {
    let (_dir, nodes) = sqlite_node().await;
    racing_immutable_creates_let_exactly_one_win(&nodes).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_racing_advances_from_one_size_let_exactly_one_win() {
    let (_dir, nodes) = sqlite_node().await;
    racing_advances_from_one_size_let_exactly_one_win(&nodes).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_racing_put_and_delete_of_one_manifest_stay_consistent() {
    let (_dir, nodes) = sqlite_node().await;
    racing_put_and_delete_of_one_manifest_stay_consistent(&nodes).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_racing_tag_moves_on_two_nodes_end_at_one_pushed_digest() {
    let db = pg::TestDb::create().await;
    racing_tag_moves_end_at_one_pushed_digest(&db.nodes(2).await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_racing_immutable_creates_on_two_nodes_let_exactly_one_win() {
    let db = pg::TestDb::create().await;
    racing_immutable_creates_let_exactly_one_win(&db.nodes(2).await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_racing_advances_on_two_nodes_let_exactly_one_win() {
    let db = pg::TestDb::create().await;
    racing_advances_from_one_size_let_exactly_one_win(&db.nodes(2).await).await;
}

/// A throwaway PostgreSQL database per test, dropped (best effort) when the test ends.
pub(crate) mod pg {
    use std::time::Duration;

    use sqlx::{Connection, PgConnection};

    use crate::MetaStore;

    const DEFAULT_URL: &str = "postgres://postgres@127.0.0.1:5432/test";

    fn admin_url() -> String {
        std::env::var("BONDED_TEST_POSTGRES_URL").unwrap_or_else(|_| DEFAULT_URL.to_string())
    }

    /// `url` with its database replaced by `db`, query string kept.
    fn with_database(url: &str, db: &str) -> String {
        let (base, query) = match url.split_once('?') {
            Some((b, q)) => (b, format!("?{q}")),
            None => (url, String::new()),
        };
        let host_start = base.find("://").map_or(0, |i| i + 3);
        let host_end = base[host_start..]
            .find('/')
            .map_or(base.len(), |i| host_start + i);
        format!("{}/{db}{query}", &base[..host_end])
    }

    async fn admin() -> PgConnection {
        let url = admin_url();
        let connect = tokio::time::timeout(Duration::from_secs(10), PgConnection::connect(&url));
        match connect.await {
            Ok(Ok(conn)) => conn,
            Ok(Err(e)) => panic!(
                "PostgreSQL tests need a server: connecting to {url} failed: {e}. Start \
                 PostgreSQL or set BONDED_TEST_POSTGRES_URL to a role that may create databases."
            ),
            Err(_) => panic!(
                "PostgreSQL tests need a server: connecting to {url} timed out. Start \
                 PostgreSQL or set BONDED_TEST_POSTGRES_URL."
            ),
        }
    }

    pub(crate) struct TestDb {
        name: String,
        pub(crate) url: String,
    }

    impl TestDb {
        pub(crate) async fn create() -> TestDb {
            let name = format!("bonded_t_{}", uuid::Uuid::new_v4().simple());
            let mut conn = admin().await;
            // A non-bytewise default collation where the server has ICU, so tests notice a query
            // that forgets COLLATE "C".
            let icu = format!(
                "CREATE DATABASE {name} TEMPLATE template0 LOCALE_PROVIDER icu ICU_LOCALE 'en-US'"
            );
            if sqlx::query(&icu).execute(&mut conn).await.is_err() {
                sqlx::query(&format!("CREATE DATABASE {name}"))
                    .execute(&mut conn)
                    .await
                    .unwrap_or_else(|e| panic!("creating test database {name}: {e}"));
            }
            let url = with_database(&admin_url(), &name);
            TestDb { name, url }
        }

        pub(crate) async fn store(&self) -> MetaStore {
            MetaStore::postgres(&self.url)
                .await
                .unwrap_or_else(|e| panic!("opening {}: {e}", self.url))
        }

        /// `n` handles on the same database, with separate pools: `n` nodes.
        pub(crate) async fn nodes(&self, n: usize) -> Vec<MetaStore> {
            let mut nodes = Vec::with_capacity(n);
            for _ in 0..n {
                nodes.push(self.store().await);
            }
            nodes
        }
    }

    impl Drop for TestDb {
        fn drop(&mut self) {
            // Drop runs inside the test's runtime, which cannot be blocked on; use a thread with
            // its own. FORCE disconnects the pools the test leaves open.
            let name = self.name.clone();
            let dropped = std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .ok()?;
                rt.block_on(async {
                    let mut conn = PgConnection::connect(&admin_url()).await.ok()?;
                    let sql = format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)");
                    sqlx::query(&sql).execute(&mut conn).await.ok()
                })
            })
            .join();
            if !matches!(dropped, Ok(Some(_))) {
                eprintln!("could not drop test database {}", self.name);
            }
        }
    }

    #[test]
    fn database_is_replaced_in_the_url() {
        let cases = [
            ("postgres://u@h:5432/test", "postgres://u@h:5432/x"),
            (
                "postgres://u@h/test?sslmode=disable",
                "postgres://u@h/x?sslmode=disable",
            ),
            ("postgres://u@h", "postgres://u@h/x"),
        ];
        for (url, want) in cases {
            assert_eq!(with_database(url, "x"), want);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_racing_put_and_delete_on_two_nodes_stay_consistent() {
    let db = pg::TestDb::create().await;
    racing_put_and_delete_of_one_manifest_stay_consistent(&db.nodes(2).await).await;
}
