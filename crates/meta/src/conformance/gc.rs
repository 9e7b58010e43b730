//! Garbage-collection conformance: what is marked, what is swept, what is spared, and races
//! between a sweep's decision and the operations that use a blob (on PostgreSQL across two nodes).
//!
//! Time is passed in explicitly: `later` is far enough in the future that every link made by the
//! test counts as older than the grace period.

use super::{d, dn, manifest, pg, race, repo, sqlite_node, tag};
use crate::{GcPlan, LinkedBlob, MetaError, MetaStore, TagWrite};
use bonded_types::{Digest, UploadId};

const GRACE: i64 = 60_000;

fn later() -> i64 {
    crate::now_ms() + 10 * GRACE
}

fn upload(i: u128) -> UploadId {
    UploadId::from_random(i)
}

/// Marks and sweeps everything eligible at `now`, returning the swept digests in order.
async fn collect(meta: &MetaStore, now: i64) -> Vec<Digest> {
    meta.gc().mark(now, GRACE, None, 1000).await.unwrap();
    let mut swept = Vec::new();
    for digest in meta.gc().marked(now, None, 1000).await.unwrap() {
        if meta
            .gc()
            .begin_delete(&digest, now + GRACE, GRACE)
            .await
            .unwrap()
            .is_some()
        {
            meta.gc().finish_delete(&digest).await.unwrap();
            swept.push(digest);
        }
    }
    swept.sort();
    swept
}

async fn gc_suite(meta: MetaStore) {
    let a = repo("gc/a");
    let b = repo("gc/b");
    let (kept, orphan, young) = (d('1'), d('2'), d('3'));
    meta.blobs().record_and_link(&a, &kept, 10).await.unwrap();
    meta.blobs().record_and_link(&a, &orphan, 20).await.unwrap();
    meta.manifests()
        .put(&a, &manifest(d('a'), vec![kept.clone()], None), None)
        .await
        .unwrap();

    // Nothing is old enough yet: a fresh link defers collection by a grace period. The
    // referenced blob leaves the queue.
    let now = crate::now_ms();
    let (r, _) = meta.gc().mark(now, GRACE, None, 1000).await.unwrap();
    assert_eq!((r.marked, r.dropped, r.deferred), (0, 1, 1), "{r:?}");
    assert!(meta.gc().marked(now, None, 10).await.unwrap().is_empty());

    // Later, the unreferenced blob is marked.
    let t = later();
    let (r, _) = meta.gc().mark(t, GRACE, None, 1000).await.unwrap();
    assert_eq!((r.examined, r.marked), (1, 1), "{r:?}");
    assert_eq!(
        meta.gc().marked(t, None, 10).await.unwrap(),
        vec![orphan.clone()]
    );
    assert_eq!(
        meta.gc().plan(t, GRACE).await.unwrap(),
        GcPlan {
            sweepable: 0,
            sweepable_bytes: 0,
            pending: 1,
            pending_bytes: 20
        }
    );
    assert_eq!(
        meta.gc()
            .plan(t + GRACE, GRACE)
            .await
            .unwrap()
            .sweepable_bytes,
        20
    );
    assert!(
        meta.blobs()
            .linked_size(&a, &orphan)
            .await
            .unwrap()
            .unwrap()
            .marked
    );

    // Sweeping: the blob becomes invisible everywhere and cannot be linked, pinned or recorded.
    assert_eq!(
        meta.gc()
            .begin_delete(&orphan, t + GRACE, GRACE)
            .await
            .unwrap(),
        Some(20)
    );
    assert_eq!(meta.blobs().linked_size(&a, &orphan).await.unwrap(), None);
    assert_eq!(meta.blobs().size(&orphan).await.unwrap(), None);
    assert!(matches!(
        meta.blobs().link(&b, &orphan).await,
        Err(MetaError::NotFound)
    ));
    assert!(matches!(
        meta.gc().pin(&orphan, &upload(1)).await,
        Err(MetaError::Conflict(_))
    ));
    assert!(matches!(
        meta.blobs().record_and_link(&a, &orphan, 20).await,
        Err(MetaError::Conflict(_))
    ));
    assert!(meta
        .gc()
        .stalled_deletes(crate::now_ms() + 20 * GRACE)
        .await
        .unwrap()
        .contains(&orphan));
    meta.gc().finish_delete(&orphan).await.unwrap();
    assert!(meta
        .gc()
        .stalled_deletes(crate::now_ms() + 20 * GRACE)
        .await
        .unwrap()
        .is_empty());
    // Gone for good, so it can be pushed again from scratch.
    meta.gc().pin(&orphan, &upload(1)).await.unwrap();
    meta.blobs().record_and_link(&a, &orphan, 20).await.unwrap();
    meta.uploads().delete(&upload(1)).await.unwrap();

    // A deleted manifest still holds its blobs while it can be restored...
    meta.manifests().delete(&a, &d('a')).await.unwrap();
    meta.gc().mark(later(), GRACE, None, 1000).await.unwrap();
    assert!(!meta
        .gc()
        .marked(later(), None, 100)
        .await
        .unwrap()
        .contains(&kept));
    // ...and purging it queues what it referenced.
    assert_eq!(
        meta.manifests()
            .purge_deleted(crate::now_ms() + 1, 100)
            .await
            .unwrap(),
        1
    );
    let swept = collect(&meta, later()).await;
    assert_eq!(swept, {
        let mut v = vec![kept.clone(), orphan.clone()];
        v.sort();
        v
    });

    // A marked blob that is used again is spared: by a mount (link), a touch, a manifest or a
    // pin; a fresh upload of an unmarked blob is deferred.
    for (i, c) in ['4', '5', '6', '7'].into_iter().enumerate() {
        meta.blobs().record_and_link(&a, &d(c), 1).await.unwrap();
        let _ = i;
    }
    meta.blobs().record_and_link(&a, &young, 1).await.unwrap();
    let t = later();
    meta.gc().mark(t, GRACE, None, 1000).await.unwrap();
    meta.blobs().link(&b, &d('4')).await.unwrap();
    meta.gc().touch(&a, &d('5')).await.unwrap();
    assert_eq!(
        meta.blobs().linked_size(&a, &d('5')).await.unwrap(),
        Some(LinkedBlob {
            size: 1,
            marked: false,
            quarantined: false,
        })
    );
    meta.manifests()
        .put(
            &a,
            &manifest(d('b'), vec![d('6')], None),
            Some((&tag("v"), TagWrite::Overwrite)),
        )
        .await
        .unwrap();
    meta.gc().pin(&d('7'), &upload(2)).await.unwrap();
    // Real time for the sweep: the link refreshed above is within the grace period.
    let now = crate::now_ms();
    for c in ['4', '5', '6', '7'] {
        assert_eq!(
            meta.gc().begin_delete(&d(c), now, GRACE).await.unwrap(),
            None,
            "blob {c} was used again and must be spared"
        );
    }
    assert_eq!(
        meta.blobs()
            .linked_size(&b, &d('4'))
            .await
            .unwrap()
            .map(|l| l.size),
        Some(1)
    );
    // The pin holds until its upload session goes.
    let t = later();
    meta.gc().mark(t, GRACE, None, 1000).await.unwrap();
    assert!(!meta
        .gc()
        .marked(t, None, 100)
        .await
        .unwrap()
        .contains(&d('7')));
    meta.uploads().delete(&upload(2)).await.unwrap();
    let t = later() + 2 * GRACE;
    let swept = collect(&meta, t).await;
    assert!(swept.contains(&d('7')), "{swept:?}");
    assert!(swept.contains(&young), "{swept:?}");
    assert!(!swept.contains(&d('6')), "referenced blob swept: {swept:?}");
    // Spared once is not spared forever: unused for a grace period, it goes.
    assert!(swept.contains(&d('4')), "{swept:?}");
    assert!(swept.contains(&d('5')), "{swept:?}");
    assert_eq!(meta.blobs().size(&d('6')).await.unwrap(), Some(1));
    assert_eq!(meta.blobs().linked_size(&b, &d('4')).await.unwrap(), None);
}

/// A sweep racing a manifest put that references the blob: never both succeed.
async fn racing_put_and_sweep_never_both_win(nodes: &[MetaStore]) {
    let r = repo("gc/race");
    let n = 40;
    for i in 0..n {
        nodes[0]
            .blobs()
            .record_and_link(&r, &dn(i), 1)
            .await
            .unwrap();
    }
    let t = later();
    nodes[0].gc().mark(t, GRACE, None, 1000).await.unwrap();
    let target = r.clone();
    let outcomes = race(nodes, 2 * n, move |i, meta| {
        let r = target.clone();
        async move {
            let blob = dn(i / 2);
            if i % 2 == 0 {
                let m = manifest(dn(1000 + i), vec![blob], None);
                (i, meta.manifests().put(&r, &m, None).await.is_ok())
            } else {
                let swept = meta
                    .gc()
                    .begin_delete(&blob, t + GRACE, GRACE)
                    .await
                    .unwrap();
                if swept.is_some() {
                    meta.gc().finish_delete(&blob).await.unwrap();
                }
                (i, swept.is_some())
            }
        }
    })
    .await;
    let mut put_won = 0;
    for pair in outcomes.chunks(2) {
        let (put, sweep) = (pair[0].1, pair[1].1);
        assert!(
            !(put && sweep),
            "blob {} was swept under an accepted manifest",
            pair[0].0 / 2
        );
        assert!(
            put || sweep,
            "neither the put nor the sweep won for blob {}",
            pair[0].0 / 2
        );
        put_won += usize::from(put);
    }
    // Every accepted manifest's blobs still exist.
    for i in 0..n {
        let kept = nodes[0].blobs().size(&dn(i)).await.unwrap().is_some();
        let referenced = nodes[0]
            .manifests()
            .get(&r, &dn(1000 + 2 * i))
            .await
            .unwrap()
            .is_some();
        assert_eq!(kept, referenced, "blob {i}");
    }
    eprintln!("{put_won} of {n} puts won");
}

/// A sweep racing a pin (an upload about to publish the same digest): never both succeed.
async fn racing_pin_and_sweep_never_both_win(nodes: &[MetaStore]) {
    let r = repo("gc/pin");
    let n = 40;
    for i in 0..n {
        nodes[0]
            .blobs()
            .record_and_link(&r, &dn(i), 1)
            .await
            .unwrap();
    }
    let t = later();
    nodes[0].gc().mark(t, GRACE, None, 1000).await.unwrap();
    let outcomes = race(nodes, 2 * n, move |i, meta| async move {
        let blob = dn(i / 2);
        if i % 2 == 0 {
            meta.gc()
                .pin(&blob, &UploadId::from_random(i as u128 + 1))
                .await
                .is_ok()
        } else {
            meta.gc()
                .begin_delete(&blob, t + GRACE, GRACE)
                .await
                .unwrap()
                .is_some()
        }
    })
    .await;
    for (i, pair) in outcomes.chunks(2).enumerate() {
        assert!(!(pair[0] && pair[1]), "blob {i} was swept while pinned");
        assert!(
            pair[0] || pair[1],
            "neither the pin nor the sweep won for blob {i}"
        );
    }
}

/// A pass in small batches walks every due entry once, in digest order, each batch starting
/// after the last digest of the one before; the marked entries page the same way.
async fn batches_walk_the_queue_in_digest_order(meta: MetaStore) {
    let a = repo("gc/walk");
    let blobs: Vec<Digest> = ('1'..='7').map(d).collect();
    for b in blobs.iter().rev() {
        meta.blobs().record_and_link(&a, b, 1).await.unwrap();
    }
    let t = later();
    let (mut seen, mut after) = (Vec::new(), None::<Digest>);
    loop {
        let (r, last) = meta.gc().mark(t, GRACE, after.as_ref(), 3).await.unwrap();
        if r.examined == 0 {
            assert_eq!(last, None);
            break;
        }
        assert!(last > after, "{last:?} after {after:?}");
        seen.push(r.marked);
        after = last;
    }
    assert_eq!(seen, vec![3, 3, 1]);
    assert_eq!(after.as_ref(), blobs.last());
    let first = meta.gc().marked(t, None, 4).await.unwrap();
    assert_eq!(first, blobs[..4]);
    let rest = meta.gc().marked(t, first.last(), 4).await.unwrap();
    assert_eq!(rest, blobs[4..]);
}

#[tokio::test]
async fn sqlite_batches_walk_the_queue_in_digest_order() {
    let dir = tempfile::tempdir().unwrap();
    batches_walk_the_queue_in_digest_order(
        MetaStore::sqlite(&dir.path().join("w.db")).await.unwrap(),
    )
    .await;
}

#[tokio::test]
async fn postgres_batches_walk_the_queue_in_digest_order() {
    let db = pg::TestDb::create().await;
    batches_walk_the_queue_in_digest_order(db.store().await).await;
}

#[tokio::test]
async fn sqlite_backend_passes_the_gc_suite() {
    let dir = tempfile::tempdir().unwrap();
    gc_suite(MetaStore::sqlite(&dir.path().join("gc.db")).await.unwrap()).await;
}

#[tokio::test]
async fn postgres_backend_passes_the_gc_suite() {
    let db = pg::TestDb::create().await;
    gc_suite(db.store().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_racing_put_and_sweep_never_both_win() {
    let (_dir, nodes) = sqlite_node().await;
    racing_put_and_sweep_never_both_win(&nodes).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_racing_put_and_sweep_on_two_nodes_never_both_win() {
    let db = pg::TestDb::create().await;
    racing_put_and_sweep_never_both_win(&db.nodes(2).await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_racing_pin_and_sweep_never_both_win() {
    let (_dir, nodes) = sqlite_node().await;
    racing_pin_and_sweep_never_both_win(&nodes).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_racing_pin_and_sweep_on_two_nodes_never_both_win() {
    let db = pg::TestDb::create().await;
    racing_pin_and_sweep_never_both_win(&db.nodes(2).await).await;
}
