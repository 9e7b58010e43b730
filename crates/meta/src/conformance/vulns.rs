//! Conformance of the vulnerability aggregate: imports as one transaction with a generation
//! bump, withdrawn advisories kept but inactive, alias lookup, scan results and the scan backlog.

use super::{d, manifest, pg, repo};
use crate::{AdvisoryRow, MetaStore, ScanRow, VulnSource};

fn adv(id: &str, modified: &str, withdrawn: bool, aliases: &[&str]) -> AdvisoryRow {
    AdvisoryRow {
        id: id.into(),
        modified: modified.into(),
        withdrawn,
        aliases: aliases.iter().map(|a| a.to_string()).collect(),
        record: format!(r#"{{"id":"{id}","modified":"{modified}"}}"#),
    }
}

fn source(at: i64, records: i64) -> VulnSource {
    VulnSource {
        name: "osv".into(),
        path: "/data/osv".into(),
        imported_at_ms: at,
        records,
        errors: 1,
    }
}

fn scan(digest: char, generation: i64, at: i64, findings: &str) -> ScanRow {
    ScanRow {
        repo: repo("prod/app"),
        digest: d(digest),
        generation,
        scanned_at_ms: at,
        sboms: 1,
        components: 3,
        findings: findings.into(),
        counts: r#"{"high":1}"#.into(),
        report: None,
    }
}

async fn vulns_suite(meta: MetaStore) {
    let v = meta.vulns();
    let empty = v.db_state().await.unwrap();
    assert_eq!(
        (empty.generation, empty.updated_at_ms, empty.active),
        (0, 0, 0)
    );
    assert_eq!(v.active_advisories().await.unwrap(), (0, vec![]));

    // First import: two advisories, one already withdrawn.
    let s1 = v
        .apply_import(
            &source(100, 3),
            &[
                adv("GHSA-1", "2024-01-01T00:00:00Z", false, &["CVE-2024-1"]),
                adv("GHSA-2", "2024-01-01T00:00:00Z", false, &[]),
                adv("GHSA-3", "2024-01-01T00:00:00Z", true, &["CVE-2024-3"]),
            ],
        )
        .await
        .unwrap();
    assert_eq!(
        (
            s1.generation,
            s1.changed_at_ms,
            s1.updated_at_ms,
            s1.active,
            s1.withdrawn
        ),
        (1, 100, 100, 2, 1)
    );
    let (generation, records) = v.active_advisories().await.unwrap();
    assert_eq!(generation, 1);
    assert_eq!(records.len(), 2);
    assert!(records[0].contains("GHSA-1") && records[1].contains("GHSA-2"));
    assert_eq!(v.advisory_versions().await.unwrap().len(), 3);
    assert_eq!(v.advisories_named("CVE-2024-1").await.unwrap(), ["GHSA-1"]);
    assert_eq!(v.advisories_named("GHSA-2").await.unwrap(), ["GHSA-2"]);
    assert!(v.advisories_named("CVE-2024-3").await.unwrap().is_empty());
    assert!(v.advisories_named("CVE-2024").await.unwrap().is_empty());

    // An import that changes nothing marks the database fresh without a new generation.
    let s2 = v.apply_import(&source(200, 3), &[]).await.unwrap();
    assert_eq!(
        (s2.generation, s2.changed_at_ms, s2.updated_at_ms),
        (1, 100, 200)
    );

    // Withdrawing and updating replace rows in place.
    let s3 = v
        .apply_import(
            &source(300, 2),
            &[
                adv("GHSA-1", "2024-02-01T00:00:00Z", true, &["CVE-2024-1"]),
                adv("GHSA-2", "2024-02-01T00:00:00Z", false, &["CVE-2024-2"]),
            ],
        )
        .await
        .unwrap();
    assert_eq!((s3.generation, s3.active, s3.withdrawn), (2, 1, 2));
    assert!(v.advisories_named("CVE-2024-1").await.unwrap().is_empty());
    assert_eq!(v.advisories_named("CVE-2024-2").await.unwrap(), ["GHSA-2"]);
    let versions = v.advisory_versions().await.unwrap();
    assert!(versions.contains(&("GHSA-2".into(), "2024-02-01T00:00:00Z".into())));
    let sources = v.sources().await.unwrap();
    assert_eq!(sources, [source(300, 2)]);

    // Scan results: one per artifact, replaced.
    let a = repo("prod/app");
    meta.blobs().record_and_link(&a, &d('1'), 1).await.unwrap();
    for c in ['a', 'b'] {
        meta.manifests()
            .put(&a, &manifest(d(c), vec![d('1')], None), None)
            .await
            .unwrap();
    }
    assert_eq!(v.scan(&a, &d('a')).await.unwrap(), None);
    let found = r#"[{"advisory_id":"GHSA-2","aliases":["CVE-2024-2"]}]"#;
    v.put_scan(&scan('a', 1, 10, "[]")).await.unwrap();
    v.put_scan(&scan('a', 2, 20, found)).await.unwrap();
    v.put_scan(&scan('b', 2, 20, "[]")).await.unwrap();
    let stored = v.scan(&a, &d('a')).await.unwrap().unwrap();
    assert_eq!(stored, scan('a', 2, 20, found));
    let mut with_report = stored.clone();
    with_report.report = Some(d('e'));
    v.put_scan(&with_report).await.unwrap();
    assert_eq!(v.scan(&a, &d('a')).await.unwrap(), Some(with_report));
    let hit = v.scans_with(&["GHSA-2".into()]).await.unwrap();
    assert_eq!(hit.len(), 1);
    assert_eq!(hit[0].digest, d('a'));
    assert!(v.scans_with(&["GHSA-1".into()]).await.unwrap().is_empty());
}

async fn backlog_suite(meta: MetaStore) {
    let v = meta.vulns();
    let a = repo("prod/app");
    meta.blobs().record_and_link(&a, &d('1'), 1).await.unwrap();
    for c in ['a', 'b', 'c'] {
        meta.manifests()
            .put(&a, &manifest(d(c), vec![d('1')], None), None)
            .await
            .unwrap();
    }
    let sbom = |digest: char, subject: char| {
        let mut m = manifest(d(digest), vec![d('1')], Some(d(subject)));
        m.artifact_type = Some("application/vnd.bonded.sbom.v1+json".parse().unwrap());
        m
    };
    // `a` and `b` have SBOMs; `c` has none.
    meta.manifests()
        .put(&a, &sbom('5', 'a'), None)
        .await
        .unwrap();
    meta.manifests()
        .put(&a, &sbom('6', 'b'), None)
        .await
        .unwrap();
    let types = ["application/vnd.bonded.sbom.v1+json"];
    let backlog = v.scan_backlog(0, &types, 10).await.unwrap();
    assert_eq!(backlog, [(a.clone(), d('a')), (a.clone(), d('b'))]);
    assert_eq!(v.scan_backlog(0, &types, 1).await.unwrap().len(), 1);
    // Scanned at this generation after the SBOM arrived: done.
    let later = crate::now_ms() + 1000;
    v.put_scan(&scan('a', 0, later, "[]")).await.unwrap();
    assert_eq!(
        v.scan_backlog(0, &types, 10).await.unwrap(),
        [(a.clone(), d('b'))]
    );
    // A new generation puts everything back.
    assert_eq!(v.scan_backlog(1, &types, 10).await.unwrap().len(), 2);
    // Scanned before its SBOM arrived: still due.
    v.put_scan(&scan('b', 0, 1, "[]")).await.unwrap();
    assert_eq!(
        v.scan_backlog(0, &types, 10).await.unwrap(),
        [(a.clone(), d('b'))]
    );
}

#[tokio::test]
async fn sqlite_vulns_pass_the_suite() {
    let dir = tempfile::tempdir().unwrap();
    vulns_suite(MetaStore::sqlite(&dir.path().join("v.db")).await.unwrap()).await;
    backlog_suite(MetaStore::sqlite(&dir.path().join("b.db")).await.unwrap()).await;
}

#[tokio::test]
async fn postgres_vulns_pass_the_suite() {
    let (a, b) = (pg::TestDb::create().await, pg::TestDb::create().await);
    vulns_suite(a.store().await).await;
    backlog_suite(b.store().await).await;
}
