//! Conformance of the waiver aggregate: ids, listing active waivers by expiry and revocation,
//! revoking once, and the pass-rate inputs over live artifacts' latest scans.

use super::{d, manifest, pg, repo};
use crate::{MetaError, MetaStore, NewWaiverRow, ScanRow};

fn waiver(advisory: &str, scope: &str, expires_at_ms: i64) -> NewWaiverRow {
    NewWaiverRow {
        advisory: advisory.into(),
        scope: scope.into(),
        artifact: None,
        package: None,
        state: "exploitable".into(),
        justification: None,
        responses: vec!["will_not_fix".into()],
        reason: "accepted".into(),
        author: "alice".into(),
        created_at_ms: 100,
        expires_at_ms,
    }
}

fn scan(repo_name: &str, digest: char, generation: i64, counts: &str) -> ScanRow {
    ScanRow {
        repo: repo(repo_name),
        digest: d(digest),
        generation,
        scanned_at_ms: 1,
        sboms: 1,
        components: 1,
        findings: format!("[\"{digest}\"]"),
        counts: counts.into(),
        report: None,
    }
}

async fn waivers_suite(meta: MetaStore) {
    let w = meta.waivers();
    let first = w
        .add_waiver(&waiver("CVE-2024-1", "shop/**", 1000))
        .await
        .unwrap();
    let mut pinned = waiver("GHSA-aaaa-bbbb-cccc", "shop/app@x", 5000);
    pinned.artifact = Some((repo("shop/app"), d('a')));
    pinned.package = Some("requests".into());
    pinned.responses = vec!["will_not_fix".into(), "update".into()];
    let second = w.add_waiver(&pinned).await.unwrap();
    assert!(second > first);
    let got = w.waiver(second).await.unwrap().unwrap();
    assert_eq!(got.waiver, pinned);
    assert_eq!((got.revoked_at_ms, got.revoked_by), (None, None));
    assert!(w.waiver(second + 100).await.unwrap().is_none());

    // Newest first; the first expires at 1000.
    let all: Vec<i64> = w
        .waivers(None)
        .await
        .unwrap()
        .iter()
        .map(|r| r.id)
        .collect();
    assert_eq!(all, [second, first]);
    let active: Vec<i64> = w
        .waivers(Some(999))
        .await
        .unwrap()
        .iter()
        .map(|r| r.id)
        .collect();
    assert_eq!(active, [second, first]);
    let active: Vec<i64> = w
        .waivers(Some(1000))
        .await
        .unwrap()
        .iter()
        .map(|r| r.id)
        .collect();
    assert_eq!(active, [second]);

    // Revoked once; a second revocation keeps the first one's record.
    w.revoke_waiver(second, "bob", 200).await.unwrap();
    w.revoke_waiver(second, "carol", 300).await.unwrap();
    let got = w.waiver(second).await.unwrap().unwrap();
    assert_eq!(
        (got.revoked_at_ms, got.revoked_by.as_deref()),
        (Some(200), Some("bob"))
    );
    assert!(w
        .waivers(Some(10))
        .await
        .unwrap()
        .iter()
        .all(|r| r.id != second));
    assert!(matches!(
        w.revoke_waiver(second + 100, "bob", 1).await,
        Err(MetaError::NotFound)
    ));
}

async fn pass_rate_suite(meta: MetaStore) {
    let a = repo("shop/app");
    meta.blobs().record_and_link(&a, &d('1'), 1).await.unwrap();
    for c in ['a', 'b', 'c', 'e'] {
        meta.manifests()
            .put(&a, &manifest(d(c), vec![d('1')], None), None)
            .await
            .unwrap();
    }
    let v = meta.vulns();
    v.put_scan(&scan("shop/app", 'a', 2, r#"{"high":1,"low":2}"#))
        .await
        .unwrap();
    v.put_scan(&scan("shop/app", 'b', 2, r#"{"low":1}"#))
        .await
        .unwrap();
    v.put_scan(&scan("shop/app", 'c', 1, r#"{"critical":1}"#))
        .await
        .unwrap();
    // A scan of a deleted artifact, and of one in another repository, do not count.
    v.put_scan(&scan("shop/app", 'e', 2, r#"{"critical":1}"#))
        .await
        .unwrap();
    meta.manifests().delete(&a, &d('e')).await.unwrap();
    v.put_scan(&scan("other/app", 'a', 2, r#"{"critical":1}"#))
        .await
        .unwrap();

    let w = meta.waivers();
    let p = w.pass_rate_inputs(2, &["critical", "high"]).await.unwrap();
    assert_eq!((p.scanned, p.current), (3, 2));
    assert_eq!(p.candidates, [(a.clone(), d('a'), "[\"a\"]".to_string())]);
    let p = w.pass_rate_inputs(1, &["critical"]).await.unwrap();
    assert_eq!((p.scanned, p.current), (3, 1));
    assert_eq!(p.candidates.len(), 1);
    assert_eq!(p.candidates[0].1, d('c'));
    assert!(w
        .pass_rate_inputs(2, &[])
        .await
        .unwrap()
        .candidates
        .is_empty());
}

#[tokio::test]
async fn sqlite_waivers_pass_the_suite() {
    let dir = tempfile::tempdir().unwrap();
    waivers_suite(MetaStore::sqlite(&dir.path().join("w.db")).await.unwrap()).await;
    pass_rate_suite(MetaStore::sqlite(&dir.path().join("p.db")).await.unwrap()).await;
}

#[tokio::test]
async fn postgres_waivers_pass_the_suite() {
    let (a, b) = (pg::TestDb::create().await, pg::TestDb::create().await);
    waivers_suite(a.store().await).await;
    pass_rate_suite(b.store().await).await;
}
