//! The blob store conformance suite. Every backend must pass all of it: the filesystem one and the
//! S3 one (against a real server: `eval "$(scripts/garage.sh)"` first).

use bonded_types::{Algorithm, ByteRange, Digest, UploadId};
use bytes::Bytes;
use futures::{stream, StreamExt};
use sha2::{Digest as _, Sha256};

use crate::{BlobStore, ByteStream, StorageError};

pub(crate) fn body(parts: &[&'static [u8]]) -> ByteStream {
    let parts: Vec<_> = parts.iter().map(|p| Ok(Bytes::from_static(p))).collect();
    Box::pin(stream::iter(parts))
}

pub(crate) fn digest_of(data: &[u8]) -> Digest {
    Digest::from_raw(Algorithm::Sha256, &Sha256::digest(data))
}

pub(crate) async fn collect(s: ByteStream) -> Vec<u8> {
    let mut out = Vec::new();
    let mut s = s;
    while let Some(c) = s.next().await {
        out.extend_from_slice(&c.unwrap());
    }
    out
}

async fn suite(store: BlobStore) {
    let id = UploadId::from_random(7);
    let c0 = store.upload_create(&id).await.unwrap();
    assert_eq!(c0.size, 0);

    let mut seen = Vec::new();
    let c1 = store
        .upload_append(&id, &c0, body(&[b"hello ", b"wor"]), &mut |b| {
            seen.extend_from_slice(b)
        })
        .await
        .unwrap();
    assert_eq!(c1.size, 9);
    let c2 = store
        .upload_append(&id, &c1, body(&[b"ld"]), &mut |b| seen.extend_from_slice(b))
        .await
        .unwrap();
    assert_eq!(c2.size, 11);
    assert_eq!(seen, b"hello world");
    assert_eq!(
        collect(store.upload_read(&id, &c2).await.unwrap()).await,
        b"hello world"
    );

    let d = digest_of(b"hello world");
    assert_eq!(
        store.blob_size(&d).await.unwrap(),
        None,
        "nothing visible before publish"
    );
    store.upload_publish(&id, &c2, &d).await.unwrap();
    assert_eq!(store.blob_size(&d).await.unwrap(), Some(11));
    assert!(
        store.upload_list().await.unwrap().is_empty(),
        "staging is gone"
    );

    let full = store.blob_read(&d, None).await.unwrap();
    assert_eq!(full.size, 11);
    assert_eq!(collect(full.stream).await, b"hello world");
    let part = store
        .blob_read(&d, Some(ByteRange { start: 6, end: 10 }))
        .await
        .unwrap();
    assert_eq!(collect(part.stream).await, b"world");

    // Publishing the same content twice is harmless.
    let id2 = UploadId::from_random(8);
    let c = store.upload_create(&id2).await.unwrap();
    let c = store
        .upload_append(&id2, &c, body(&[b"hello world"]), &mut |_| {})
        .await
        .unwrap();
    store.upload_publish(&id2, &c, &d).await.unwrap();
    assert_eq!(store.blob_size(&d).await.unwrap(), Some(11));
    assert_eq!(store.upload_list().await.unwrap().len(), 0);

    // A body that fails midway reports what was staged; resuming from an older cursor drops
    // whatever came after it.
    let id3 = UploadId::from_random(9);
    let c = store.upload_create(&id3).await.unwrap();
    let c = store
        .upload_append(&id3, &c, body(&[b"abc"]), &mut |_| {})
        .await
        .unwrap();
    let broken: ByteStream = Box::pin(stream::iter(vec![
        Ok(Bytes::from_static(b"def")),
        Err(std::io::Error::other("client went away")),
    ]));
    let err = store
        .upload_append(&id3, &c, broken, &mut |_| {})
        .await
        .unwrap_err();
    assert!(matches!(err.error, StorageError::BodyInterrupted(_)));
    assert_eq!(err.cursor.size, 6);
    let resumed = store
        .upload_append(&id3, &c, body(&[b"XYZ"]), &mut |_| {})
        .await
        .unwrap();
    assert_eq!(resumed.size, 6);
    assert_eq!(
        collect(store.upload_read(&id3, &resumed).await.unwrap()).await,
        b"abcXYZ"
    );
    assert_eq!(store.upload_list().await.unwrap().len(), 1);
    store.upload_delete(&id3, Some(&resumed)).await.unwrap();
    store.upload_delete(&id3, None).await.unwrap();
    assert!(store.upload_list().await.unwrap().is_empty());

    // Quarantine moves the bytes out of the content address; the digest can be published anew.
    assert!(store.blob_quarantine(&d, 1).await.unwrap());
    assert_eq!(store.blob_size(&d).await.unwrap(), None);
    assert!(!store.blob_quarantine(&d, 2).await.unwrap());
    let id4 = UploadId::from_random(10);
    let c = store.upload_create(&id4).await.unwrap();
    let c = store
        .upload_append(&id4, &c, body(&[b"hello world"]), &mut |_| {})
        .await
        .unwrap();
    store.upload_publish(&id4, &c, &d).await.unwrap();
    assert_eq!(
        collect(store.blob_read(&d, None).await.unwrap().stream).await,
        b"hello world"
    );

    store.blob_delete(&d).await.unwrap();
    store.blob_delete(&d).await.unwrap();
    assert_eq!(store.blob_size(&d).await.unwrap(), None);
    assert!(matches!(
        store.blob_read(&d, None).await,
        Err(StorageError::NotFound)
    ));
}

#[tokio::test]
async fn filesystem_backend_passes_the_suite() {
    let dir = tempfile::tempdir().unwrap();
    suite(BlobStore::filesystem(dir.path()).await.unwrap()).await;
}

#[tokio::test]
async fn s3_backend_passes_the_suite() {
    let bucket = crate::s3::tests::TestBucket::new();
    suite(bucket.store()).await;
    bucket.wipe().await;
}
