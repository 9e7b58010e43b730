//! Conformance of the supply-chain aggregates: the trust store and stored attestations.

use super::{d, manifest, pg, repo};
use crate::{MetaError, MetaStore, NewTrustedKey, TagWrite};

fn key(ns: &str, set: &str, id: &str) -> NewTrustedKey {
    NewTrustedKey {
        namespace: ns.into(),
        key_set: set.into(),
        key_id: id.into(),
        algorithm: "ed25519".into(),
        public_key: format!("PEM of {id}"),
        not_before_ms: Some(10),
        not_after_ms: None,
        comment: "ci".into(),
    }
}

async fn trust_suite(meta: MetaStore) {
    let t = meta.trust();
    assert!(t.keys("prod").await.unwrap().is_empty());
    t.add_key(&key("prod", "release", "sha256:bb"))
        .await
        .unwrap();
    t.add_key(&key("prod", "release", "sha256:aa"))
        .await
        .unwrap();
    t.add_key(&key("prod", "dev", "sha256:bb")).await.unwrap();
    t.add_key(&key("staging", "release", "sha256:cc"))
        .await
        .unwrap();
    // The same key twice in one set is refused, and changes nothing.
    let mut again = key("prod", "release", "sha256:aa");
    again.public_key = "other".into();
    assert!(matches!(
        t.add_key(&again).await,
        Err(MetaError::Conflict(_))
    ));

    let keys = t.keys("prod").await.unwrap();
    let ids: Vec<(&str, &str)> = keys
        .iter()
        .map(|k| (k.key.key_set.as_str(), k.key.key_id.as_str()))
        .collect();
    assert_eq!(
        ids,
        [
            ("dev", "sha256:bb"),
            ("release", "sha256:aa"),
            ("release", "sha256:bb")
        ]
    );
    assert_eq!(keys[1].key, key("prod", "release", "sha256:aa"));
    assert_eq!(keys[1].revoked_at_ms, None);
    assert!(keys[1].created_at_ms > 0);

    // Revocation hits the key in every set of its namespace, and only there.
    assert_eq!(t.revoke("prod", "sha256:bb", 500).await.unwrap(), 2);
    // The first revocation time stands.
    assert_eq!(t.revoke("prod", "sha256:bb", 900).await.unwrap(), 2);
    let keys = t.keys("prod").await.unwrap();
    let revoked: Vec<Option<i64>> = keys.iter().map(|k| k.revoked_at_ms).collect();
    assert_eq!(revoked, [Some(500), None, Some(500)]);
    assert!(matches!(
        t.revoke("prod", "sha256:cc", 1).await,
        Err(MetaError::NotFound)
    ));
    assert_eq!(t.keys("staging").await.unwrap()[0].revoked_at_ms, None);
    assert_eq!(t.namespaces().await.unwrap(), ["prod", "staging"]);
}

async fn attestations_suite(meta: MetaStore) {
    let a = repo("prod/app");
    meta.blobs().record_and_link(&a, &d('1'), 1).await.unwrap();
    let subject = manifest(d('a'), vec![d('1')], None);
    meta.manifests()
        .put(&a, &subject, Some((&super::tag("v1"), TagWrite::Overwrite)))
        .await
        .unwrap();
    let mut sig = manifest(d('b'), vec![d('1')], Some(d('a')));
    sig.artifact_type = Some("application/x.sig".parse().unwrap());
    sig.content = b"sig".to_vec();
    let mut sbom = manifest(d('c'), vec![d('1')], Some(d('a')));
    sbom.artifact_type = Some("application/x.sbom".parse().unwrap());
    let mut elsewhere = manifest(d('e'), vec![d('1')], Some(d('f')));
    elsewhere.artifact_type = Some("application/x.sig".parse().unwrap());
    for m in [&sig, &sbom, &elsewhere] {
        meta.manifests().put(&a, m, None).await.unwrap();
    }
    let at = meta.attestations();
    let found = at
        .referrer_manifests(&a, &d('a'), &["application/x.sig"])
        .await
        .unwrap();
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].digest, d('b'));
    assert_eq!(found[0].content, b"sig");
    assert_eq!(found[0].artifact_type.as_deref(), Some("application/x.sig"));
    assert!(found[0].pushed_at_ms > 0);
    let both = at
        .referrer_manifests(&a, &d('a'), &["application/x.sig", "application/x.sbom"])
        .await
        .unwrap();
    assert_eq!(both.len(), 2);
    assert!(at
        .referrer_manifests(&a, &d('a'), &[])
        .await
        .unwrap()
        .is_empty());
    assert!(at
        .referrer_manifests(&repo("prod/other"), &d('a'), &["application/x.sig"])
        .await
        .unwrap()
        .is_empty());
    // Subjects are the manifests that are not referrers.
    assert_eq!(at.subjects(&a).await.unwrap(), vec![d('a')]);
    assert!(at.subjects(&repo("prod/none")).await.unwrap().is_empty());
    // Re-pushing a referrer keeps the time the registry first saw it.
    let first = found[0].pushed_at_ms;
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    meta.manifests().put(&a, &sig, None).await.unwrap();
    let again = at
        .referrer_manifests(&a, &d('a'), &["application/x.sig"])
        .await
        .unwrap();
    assert_eq!(again[0].pushed_at_ms, first);
}

#[tokio::test]
async fn sqlite_trust_store_and_attestations_pass_the_suite() {
    let dir = tempfile::tempdir().unwrap();
    trust_suite(MetaStore::sqlite(&dir.path().join("t.db")).await.unwrap()).await;
    attestations_suite(MetaStore::sqlite(&dir.path().join("a.db")).await.unwrap()).await;
}

#[tokio::test]
async fn postgres_trust_store_and_attestations_pass_the_suite() {
    let (a, b) = (pg::TestDb::create().await, pg::TestDb::create().await);
    trust_suite(a.store().await).await;
    attestations_suite(b.store().await).await;
}
