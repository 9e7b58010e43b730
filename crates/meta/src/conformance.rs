//! The metadata store conformance suite. Every backend must pass all of it; today SQLite.

use bonded_types::{Digest, MediaType, RepoName, Tag, UploadId};

use crate::{MetaError, MetaStore, NewManifest, TagWrite};

fn d(c: char) -> Digest {
    format!("sha256:{}", c.to_string().repeat(64))
        .parse()
        .unwrap()
}
fn repo(s: &str) -> RepoName {
    s.parse().unwrap()
}
fn tag(s: &str) -> Tag {
    s.parse().unwrap()
}
fn manifest(digest: Digest, blobs: Vec<Digest>, subject: Option<Digest>) -> NewManifest {
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
        Some(10)
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
    let page = meta.tags().list(&a, 2, None).await.unwrap();
    assert_eq!(page, vec![tag("a2"), tag("b")]);
    let page = meta.tags().list(&a, 10, Some("b")).await.unwrap();
    assert_eq!(page, vec![tag("c"), tag("latest"), tag("v1")]);
    assert_eq!(
        meta.repos().list(10, None).await.unwrap(),
        vec![a.clone(), b.clone()]
    );
    assert_eq!(
        meta.repos().list(10, Some("team/a")).await.unwrap(),
        vec![b.clone()]
    );

    // Deleting a manifest takes its tags with it.
    let gone = meta.manifests().delete(&a, &d('a')).await.unwrap();
    assert_eq!(gone.tags_removed.len(), 5);
    assert_eq!(
        meta.tags().list(&a, 10, None).await.unwrap(),
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
    assert!(meta.tags().list(&a, 10, None).await.unwrap().is_empty());
    assert!(matches!(
        meta.manifests().delete(&a, &d('a')).await,
        Err(MetaError::NotFound)
    ));
    assert!(matches!(
        meta.tags().delete(&a, &tag("v1")).await,
        Err(MetaError::NotFound)
    ));

    let id = UploadId::from_random(5);
    meta.uploads().create(&id, &a).await.unwrap();
    assert_eq!(meta.uploads().get(&id).await.unwrap().unwrap().repo, a);
    assert_eq!(meta.uploads().older_than(i64::MAX).await.unwrap().len(), 1);
    assert_eq!(meta.uploads().older_than(0).await.unwrap().len(), 0);
    meta.uploads().delete(&id).await.unwrap();
    assert!(meta.uploads().get(&id).await.unwrap().is_none());
}

#[tokio::test]
async fn sqlite_backend_passes_the_suite() {
    let dir = tempfile::tempdir().unwrap();
    suite(MetaStore::sqlite(&dir.path().join("a.db")).await.unwrap()).await;
    delete_suite(MetaStore::sqlite(&dir.path().join("b.db")).await.unwrap()).await;
}
