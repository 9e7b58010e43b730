//! Undelete conformance: deleted manifests and tags stay restorable until purged.

use super::{d, manifest, pg, repo, tag};
use crate::{Deleted, MetaError, MetaStore, TagWrite};

async fn undelete_suite(meta: MetaStore) {
    let r = repo("undelete/app");
    let (m1, m2, x) = (d('a'), d('b'), d('1'));
    meta.blobs().record_and_link(&r, &x, 5).await.unwrap();
    let put = |m, t: &'static str| {
        let meta = meta.clone();
        let r = r.clone();
        let x = x.clone();
        async move {
            meta.manifests()
                .put(
                    &r,
                    &manifest(m, vec![x], None),
                    Some((&tag(t), TagWrite::Overwrite)),
                )
                .await
                .unwrap()
        }
    };
    put(m1.clone(), "v1").await;
    put(m1.clone(), "v2").await;

    // Deleted: invisible to reads and listings, listed as restorable.
    let gone = meta.manifests().delete(&r, &m1).await.unwrap();
    assert_eq!(gone.tags_removed, vec![tag("v1"), tag("v2")]);
    assert_eq!(meta.manifests().get(&r, &m1).await.unwrap(), None);
    assert_eq!(meta.tags().resolve(&r, &tag("v1")).await.unwrap(), None);
    assert!(meta.manifests().list(&r).await.unwrap().is_empty());
    assert!(matches!(
        meta.manifests().delete(&r, &m1).await,
        Err(MetaError::NotFound)
    ));
    let listed = meta.manifests().deleted(&r).await.unwrap();
    assert_eq!(listed.len(), 3, "{listed:?}");
    assert!(listed
        .iter()
        .any(|e| matches!(e, Deleted::Manifest { digest, .. } if *digest == m1)));
    assert!(listed
        .iter()
        .any(|e| matches!(e, Deleted::Tag { tag: t, .. } if *t == tag("v2"))));
    // An index cannot name a deleted manifest.
    let mut index = manifest(d('c'), vec![], None);
    index.manifests = vec![m1.clone()];
    assert!(matches!(
        meta.manifests().put(&r, &index, None).await,
        Err(MetaError::MissingReference(_))
    ));

    // Restored with its tags.
    assert_eq!(
        meta.manifests().restore(&r, &m1).await.unwrap(),
        vec![tag("v1"), tag("v2")]
    );
    assert_eq!(
        meta.tags().resolve(&r, &tag("v2")).await.unwrap(),
        Some(m1.clone())
    );
    assert!(meta.manifests().get(&r, &m1).await.unwrap().is_some());
    assert!(meta.manifests().deleted(&r).await.unwrap().is_empty());
    assert!(matches!(
        meta.manifests().restore(&r, &m1).await,
        Err(MetaError::NotFound)
    ));

    // A deleted tag alone comes back; not over a live tag of the same name.
    meta.tags().delete(&r, &tag("v1")).await.unwrap();
    assert_eq!(
        meta.manifests().restore_tag(&r, &tag("v1")).await.unwrap(),
        m1
    );
    assert!(matches!(
        meta.manifests().restore_tag(&r, &tag("v1")).await,
        Err(MetaError::Conflict(_))
    ));
    assert!(matches!(
        meta.manifests().restore_tag(&r, &tag("never")).await,
        Err(MetaError::NotFound)
    ));

    // A name taken since the deletion is left alone when the manifest is restored.
    meta.manifests().delete(&r, &m1).await.unwrap();
    put(m2.clone(), "v2").await;
    assert_eq!(
        meta.manifests().restore(&r, &m1).await.unwrap(),
        vec![tag("v1")]
    );
    assert_eq!(
        meta.tags().resolve(&r, &tag("v2")).await.unwrap(),
        Some(m2.clone())
    );

    // Restoring a tag also restores its deleted manifest.
    meta.manifests().delete(&r, &m2).await.unwrap();
    assert_eq!(
        meta.manifests().restore_tag(&r, &tag("v2")).await.unwrap(),
        m2
    );
    assert!(meta.manifests().get(&r, &m2).await.unwrap().is_some());

    // Pushing a deleted manifest again revives it.
    meta.manifests().delete(&r, &m2).await.unwrap();
    meta.manifests()
        .put(&r, &manifest(m2.clone(), vec![x.clone()], None), None)
        .await
        .unwrap();
    assert!(meta.manifests().get(&r, &m2).await.unwrap().is_some());

    // Purged: gone for good.
    meta.manifests().delete(&r, &m1).await.unwrap();
    assert_eq!(
        meta.manifests().purge_deleted(0, 100).await.unwrap(),
        0,
        "nothing was deleted before the epoch"
    );
    assert_eq!(
        meta.manifests()
            .purge_deleted(crate::now_ms() + 1, 100)
            .await
            .unwrap(),
        1
    );
    assert!(matches!(
        meta.manifests().restore(&r, &m1).await,
        Err(MetaError::NotFound)
    ));
    assert!(matches!(
        meta.manifests().restore_tag(&r, &tag("v1")).await,
        Err(MetaError::NotFound)
    ));
    assert!(meta.manifests().deleted(&r).await.unwrap().is_empty());
    // Pushing it again after the purge is a fresh push.
    put(m1.clone(), "v1").await;
    assert_eq!(meta.tags().resolve(&r, &tag("v1")).await.unwrap(), Some(m1));
}

#[tokio::test]
async fn sqlite_backend_passes_the_undelete_suite() {
    let dir = tempfile::tempdir().unwrap();
    undelete_suite(MetaStore::sqlite(&dir.path().join("u.db")).await.unwrap()).await;
}

#[tokio::test]
async fn postgres_backend_passes_the_undelete_suite() {
    let db = pg::TestDb::create().await;
    undelete_suite(db.store().await).await;
}
