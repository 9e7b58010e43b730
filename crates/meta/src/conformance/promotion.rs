//! Conformance of the promotion aggregate: pointer moves as compare-and-set, history, the
//! protected set, approvals, deployments, canary verdicts and the registry key.

use std::sync::Arc;

use super::{d, manifest, pg, repo, tag};
use crate::{
    Approval, CanaryRecord, Deployment, MetaError, MetaStore, MoveKind, PointerMove, TagWrite,
};

fn mv(env: &str, to: char, expected: Option<char>, at: i64) -> PointerMove {
    PointerMove {
        repo: repo("prod/app"),
        environment: tag(env),
        digest: d(to),
        expected: expected.map(d),
        kind: MoveKind::Promote,
        actor: "alice".into(),
        from_env: None,
        gates: "[]".into(),
        note: String::new(),
        at_ms: at,
    }
}

async fn seed(meta: &MetaStore) {
    let a = repo("prod/app");
    meta.blobs().record_and_link(&a, &d('1'), 1).await.unwrap();
    for c in ['a', 'b', 'c'] {
        meta.manifests()
            .put(&a, &manifest(d(c), vec![d('1')], None), None)
            .await
            .unwrap();
    }
}

async fn promotion_suite(meta: MetaStore) {
    seed(&meta).await;
    let a = repo("prod/app");
    let p = meta.promotions();
    // First move: the pointer must be unset.
    let first = p.move_pointer(&mv("prod", 'a', None, 10)).await.unwrap();
    assert_eq!(first.record.previous, None);
    assert!(first.pushed_at_ms > 0);
    assert_eq!(
        meta.tags().resolve(&a, &tag("prod")).await.unwrap(),
        Some(d('a'))
    );
    // A stale expectation changes nothing.
    assert!(matches!(
        p.move_pointer(&mv("prod", 'b', None, 11)).await,
        Err(MetaError::Conflict(_))
    ));
    assert!(matches!(
        p.move_pointer(&mv("prod", 'b', Some('c'), 11)).await,
        Err(MetaError::Conflict(_))
    ));
    assert_eq!(
        meta.tags().resolve(&a, &tag("prod")).await.unwrap(),
        Some(d('a'))
    );
    // A manifest that is not there cannot be promoted.
    assert!(matches!(
        p.move_pointer(&mv("prod", 'f', Some('a'), 11)).await,
        Err(MetaError::NotFound)
    ));
    p.move_pointer(&mv("prod", 'b', Some('a'), 12))
        .await
        .unwrap();
    let mut back = mv("prod", 'a', Some('b'), 13);
    back.kind = MoveKind::Rollback;
    let rolled = p.move_pointer(&back).await.unwrap();
    p.set_attestation(rolled.record.id, &d('e')).await.unwrap();
    p.move_pointer(&mv("staging", 'c', None, 14)).await.unwrap();

    let prod = p.history(&a, Some("prod"), 10).await.unwrap();
    let digests: Vec<_> = prod.iter().map(|r| r.digest.clone()).collect();
    assert_eq!(digests, [d('a'), d('b'), d('a')]);
    assert_eq!(prod[0].kind, MoveKind::Rollback);
    assert_eq!(prod[0].previous, Some(d('b')));
    assert_eq!(prod[0].attestation, Some(d('e')));
    assert_eq!(prod[0].at_ms, 13);
    assert_eq!(p.history(&a, None, 10).await.unwrap().len(), 4);
    assert_eq!(p.history(&a, None, 2).await.unwrap().len(), 2);
    assert!(p
        .history(&repo("prod/none"), None, 10)
        .await
        .unwrap()
        .is_empty());

    // Protected: the last N digests of each environment.
    assert_eq!(p.protected(&a, 1).await.unwrap(), [d('a'), d('c')]);
    assert_eq!(p.protected(&a, 2).await.unwrap(), [d('a'), d('b'), d('c')]);

    // Approvals: one per actor.
    let ap = |actor: &str| Approval {
        repo: a.clone(),
        digest: d('b'),
        environment: "prod".into(),
        actor: actor.into(),
        role: "maintainer".into(),
        comment: "lgtm".into(),
        at_ms: 20,
    };
    p.approve(&ap("bob")).await.unwrap();
    p.approve(&ap("carol")).await.unwrap();
    assert!(matches!(
        p.approve(&ap("bob")).await,
        Err(MetaError::Conflict(_))
    ));
    let got = p.approvals(&a, &d('b'), "prod").await.unwrap();
    assert_eq!(got, [ap("bob"), ap("carol")]);
    assert!(p
        .approvals(&a, &d('b'), "staging")
        .await
        .unwrap()
        .is_empty());

    // Deployments and canary verdicts come back newest first.
    let dep = |target: &str, c: char| Deployment {
        id: 0,
        repo: a.clone(),
        environment: "prod".into(),
        target: target.into(),
        digest: d(c),
        status: "succeeded".into(),
        expected: Some(d('a')),
        actor: "deployer".into(),
        at_ms: 30,
    };
    let one = p.record_deployment(&dep("eu-1", 'a')).await.unwrap();
    let two = p.record_deployment(&dep("us-1", 'b')).await.unwrap();
    assert!(two.id > one.id);
    let all = p.deployments(Some(&a), 10).await.unwrap();
    assert_eq!(all, [two.clone(), one.clone()]);
    assert_eq!(p.deployments(None, 1).await.unwrap(), [two]);
    assert!(p
        .deployments(Some(&repo("x/y")), 10)
        .await
        .unwrap()
        .is_empty());

    let canary = CanaryRecord {
        id: 0,
        repo: a.clone(),
        digest: d('b'),
        environment: Some("canary".into()),
        verdict: "fail".into(),
        score: 33.5,
        report: "{}".into(),
        actor: "ci".into(),
        at_ms: 40,
    };
    let c1 = p.record_canary(&canary).await.unwrap();
    let c2 = p
        .record_canary(&CanaryRecord {
            verdict: "pass".into(),
            score: 100.0,
            ..canary.clone()
        })
        .await
        .unwrap();
    assert_eq!(p.canaries(&a, &d('b')).await.unwrap(), [c2, c1]);

    // The registry key: the first candidate wins.
    assert_eq!(
        p.registry_key("promotion", ("k1", "pem1")).await.unwrap(),
        ("k1".to_string(), "pem1".to_string())
    );
    assert_eq!(
        p.registry_key("promotion", ("k2", "pem2")).await.unwrap(),
        ("k1".to_string(), "pem1".to_string())
    );

    // A manifest deleted after promotion can no longer be promoted to.
    meta.manifests()
        .put(
            &a,
            &manifest(d('9'), vec![d('1')], None),
            Some((&tag("x"), TagWrite::Overwrite)),
        )
        .await
        .unwrap();
    meta.manifests().delete(&a, &d('9')).await.unwrap();
    assert!(matches!(
        p.move_pointer(&mv("prod", '9', Some('a'), 50)).await,
        Err(MetaError::NotFound)
    ));
}

/// Many concurrent promotions of one environment from the same observed state: exactly one wins,
/// and the pointer and history agree.
async fn concurrent_moves(stores: Vec<MetaStore>) {
    seed(&stores[0]).await;
    let a = repo("prod/app");
    stores[0]
        .promotions()
        .move_pointer(&mv("prod", 'a', None, 1))
        .await
        .unwrap();
    let barrier = Arc::new(tokio::sync::Barrier::new(8));
    let mut tasks = Vec::new();
    for i in 0..8 {
        let meta = stores[i % stores.len()].clone();
        let barrier = barrier.clone();
        tasks.push(tokio::spawn(async move {
            barrier.wait().await;
            let to = if i % 2 == 0 { 'b' } else { 'c' };
            meta.promotions()
                .move_pointer(&mv("prod", to, Some('a'), 2 + i as i64))
                .await
        }));
    }
    let mut won = Vec::new();
    for t in tasks {
        match t.await.unwrap() {
            Ok(m) => won.push(m.record.digest),
            Err(MetaError::Conflict(_)) => {}
            Err(e) => panic!("unexpected error: {e}"),
        }
    }
    assert_eq!(won.len(), 1, "exactly one concurrent promotion wins");
    let now = stores[0].tags().resolve(&a, &tag("prod")).await.unwrap();
    assert_eq!(now.as_ref(), Some(&won[0]));
    let history = stores[0]
        .promotions()
        .history(&a, Some("prod"), 10)
        .await
        .unwrap();
    assert_eq!(history.len(), 2);
    assert_eq!(history[0].digest, won[0]);
}

#[tokio::test]
async fn sqlite_promotions_pass_the_suite() {
    let dir = tempfile::tempdir().unwrap();
    promotion_suite(MetaStore::sqlite(&dir.path().join("p.db")).await.unwrap()).await;
    let racy = MetaStore::sqlite(&dir.path().join("r.db")).await.unwrap();
    concurrent_moves(vec![racy]).await;
}

#[tokio::test]
async fn postgres_promotions_pass_the_suite() {
    let (a, b) = (pg::TestDb::create().await, pg::TestDb::create().await);
    promotion_suite(a.store().await).await;
    concurrent_moves(vec![b.store().await, b.store().await]).await;
}
