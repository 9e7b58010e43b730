//! The blob store conformance suite. Every backend must pass all of it; today the filesystem one.

use bonded_types::{Algorithm, ByteRange, Digest, UploadId};
use bytes::Bytes;
use futures::{stream, StreamExt};
use sha2::{Digest as _, Sha256};

use crate::{BlobStore, ByteStream, StorageError};

fn body(parts: &[&'static [u8]]) -> ByteStream {
    let parts: Vec<_> = parts.iter().map(|p| Ok(Bytes::from_static(p))).collect();
    Box::pin(stream::iter(parts))
}

fn digest_of(data: &[u8]) -> Digest {
    Digest::from_raw(Algorithm::Sha256, &Sha256::digest(data))
}

async fn collect(s: ByteStream) -> Vec<u8> {
    let mut out = Vec::new();
    let mut s = s;
    while let Some(c) = s.next().await {
        out.extend_from_slice(&c.unwrap());
    }
    out
}

async fn suite(store: BlobStore) {
    let id = UploadId::from_random(7);
    store.upload_create(&id).await.unwrap();
    assert_eq!(store.upload_size(&id).await.unwrap(), Some(0));

    let mut seen = Vec::new();
    let size = store
        .upload_append(&id, 0, body(&[b"hello ", b"wor"]), &mut |b| {
            seen.extend_from_slice(b)
        })
        .await
        .unwrap();
    assert_eq!(size, 9);
    let err = store
        .upload_append(&id, 3, body(&[b"x"]), &mut |_| {})
        .await
        .unwrap_err();
    assert!(matches!(
        err,
        StorageError::OffsetMismatch {
            expected: 3,
            actual: 9
        }
    ));
    let size = store
        .upload_append(&id, 9, body(&[b"ld"]), &mut |b| seen.extend_from_slice(b))
        .await
        .unwrap();
    assert_eq!(size, 11);
    assert_eq!(seen, b"hello world");
    assert_eq!(
        collect(store.upload_read(&id).await.unwrap()).await,
        b"hello world"
    );

    let d = digest_of(b"hello world");
    assert_eq!(
        store.blob_size(&d).await.unwrap(),
        None,
        "nothing visible before publish"
    );
    store.upload_publish(&id, &d).await.unwrap();
    assert_eq!(store.blob_size(&d).await.unwrap(), Some(11));
    assert_eq!(
        store.upload_size(&id).await.unwrap(),
        None,
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
    store.upload_create(&id2).await.unwrap();
    store
        .upload_append(&id2, 0, body(&[b"hello world"]), &mut |_| {})
        .await
        .unwrap();
    store.upload_publish(&id2, &d).await.unwrap();
    assert_eq!(store.blob_size(&d).await.unwrap(), Some(11));
    assert_eq!(store.upload_list().await.unwrap().len(), 0);

    // A body that fails midway keeps what arrived and says so.
    let id3 = UploadId::from_random(9);
    store.upload_create(&id3).await.unwrap();
    let broken: ByteStream = Box::pin(stream::iter(vec![
        Ok(Bytes::from_static(b"abc")),
        Err(std::io::Error::other("client went away")),
    ]));
    let err = store
        .upload_append(&id3, 0, broken, &mut |_| {})
        .await
        .unwrap_err();
    assert!(matches!(err, StorageError::BodyInterrupted(_)));
    assert_eq!(store.upload_size(&id3).await.unwrap(), Some(3));
    assert_eq!(store.upload_list().await.unwrap().len(), 1);
    store.upload_delete(&id3).await.unwrap();
    store.upload_delete(&id3).await.unwrap();
    assert!(matches!(
        store
            .upload_append(&id3, 0, body(&[b"x"]), &mut |_| {})
            .await,
        Err(StorageError::NotFound)
    ));

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
