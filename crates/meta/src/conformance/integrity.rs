//! Quota charges and scrub's quarantine: what `Usage::charge`/`charged_for` count (each linked
//! blob once per namespace, live manifests) and how quarantine records behave.

use super::{d, manifest, pg, repo};
use crate::{Charge, MetaStore};

async fn quota_suite(meta: MetaStore) {
    let (a1, a2, b, other) = (
        repo("team-a/x"),
        repo("team-a/y/z"),
        repo("team-b/x"),
        // Shares a prefix but is another namespace.
        repo("team-ab/x"),
    );
    meta.blobs()
        .record_and_link(&a1, &d('1'), 100)
        .await
        .unwrap();
    // The same blob in another repository of the namespace counts once.
    meta.blobs().link(&a2, &d('1')).await.unwrap();
    meta.blobs()
        .record_and_link(&a2, &d('2'), 20)
        .await
        .unwrap();
    // Shared with another namespace: charged to each.
    meta.blobs().link(&b, &d('1')).await.unwrap();
    meta.blobs()
        .record_and_link(&other, &d('3'), 7)
        .await
        .unwrap();
    meta.manifests()
        .put(&a1, &manifest(d('a'), vec![d('1')], None), None)
        .await
        .unwrap();
    meta.manifests()
        .put(&a2, &manifest(d('b'), vec![d('1'), d('2')], None), None)
        .await
        .unwrap();

    let usage = meta.usage();
    assert_eq!(
        usage.charge("team-a").await.unwrap(),
        Charge {
            bytes: 120,
            artifacts: 2
        }
    );
    assert_eq!(
        usage.charge("team-b").await.unwrap(),
        Charge {
            bytes: 100,
            artifacts: 0
        }
    );
    assert_eq!(usage.charge("team-ab").await.unwrap().bytes, 7);
    assert_eq!(usage.charge("nobody").await.unwrap(), Charge::default());
    assert!(usage.charged_for("team-a", &d('2')).await.unwrap());
    assert!(usage.charged_for("team-b", &d('1')).await.unwrap());
    assert!(!usage.charged_for("team-b", &d('2')).await.unwrap());
    assert!(!usage.charged_for("team-a", &d('3')).await.unwrap());

    // The report's charged bytes agree.
    let report = usage.namespaces(&[]).await.unwrap();
    let charged = |ns: &str| {
        report
            .iter()
            .find(|n| n.namespace == ns)
            .map(|n| n.charged_bytes)
    };
    assert_eq!(charged("team-a"), Some(120));
    assert_eq!(charged("team-b"), Some(100));

    // Unlinking frees; deleting a manifest frees its artifact at once.
    meta.blobs().unlink(&b, &d('1')).await.unwrap();
    assert_eq!(usage.charge("team-b").await.unwrap().bytes, 0);
    meta.manifests().delete(&a1, &d('a')).await.unwrap();
    assert_eq!(usage.charge("team-a").await.unwrap().artifacts, 1);
}

async fn quarantine_suite(meta: MetaStore) {
    let r = repo("scrub/app");
    for (c, size) in [('3', 3), ('1', 1), ('2', 2)] {
        meta.blobs().record_and_link(&r, &d(c), size).await.unwrap();
    }
    // The walk goes in digest order, a page at a time.
    let first = meta.integrity().blobs_after(None, 2).await.unwrap();
    assert_eq!(first, vec![(d('1'), 1), (d('2'), 2)]);
    let rest = meta
        .integrity()
        .blobs_after(Some(&d('2')), 2)
        .await
        .unwrap();
    assert_eq!(rest, vec![(d('3'), 3)]);

    let q = meta.integrity();
    assert_eq!(q.quarantined(&d('2')).await.unwrap(), None);
    q.quarantine(&d('2'), "missing", "gone", 5).await.unwrap();
    q.quarantine(&d('2'), "corrupt", "hashes to x", 6)
        .await
        .unwrap();
    let got = q.quarantined(&d('2')).await.unwrap().unwrap();
    assert_eq!(
        (
            got.reason.as_str(),
            got.detail.as_str(),
            got.quarantined_at_ms
        ),
        ("corrupt", "hashes to x", 6)
    );
    assert!(
        meta.blobs()
            .linked_size(&r, &d('2'))
            .await
            .unwrap()
            .unwrap()
            .quarantined
    );
    assert!(
        !meta
            .blobs()
            .linked_size(&r, &d('1'))
            .await
            .unwrap()
            .unwrap()
            .quarantined
    );
    q.quarantine(&d('9'), "missing", "no row needed", 7)
        .await
        .unwrap();
    let all: Vec<_> = q
        .list_quarantined()
        .await
        .unwrap()
        .into_iter()
        .map(|b| b.digest)
        .collect();
    assert_eq!(all, vec![d('2'), d('9')]);
    assert!(q.release(&d('2')).await.unwrap());
    assert!(!q.release(&d('2')).await.unwrap());
    assert_eq!(q.quarantined(&d('2')).await.unwrap(), None);
}

#[tokio::test]
async fn sqlite_backend_passes_the_quota_and_quarantine_suites() {
    let dir = tempfile::tempdir().unwrap();
    quota_suite(MetaStore::sqlite(&dir.path().join("q.db")).await.unwrap()).await;
    quarantine_suite(MetaStore::sqlite(&dir.path().join("s.db")).await.unwrap()).await;
}

#[tokio::test]
async fn postgres_backend_passes_the_quota_and_quarantine_suites() {
    let (a, b) = (pg::TestDb::create().await, pg::TestDb::create().await);
    quota_suite(a.store().await).await;
    quarantine_suite(b.store().await).await;
}
