//! Tests of the S3 backend against a real S3 server. They read `BONDED_TEST_S3_*` and
//! `AWS_ACCESS_KEY_ID`/`AWS_SECRET_ACCESS_KEY`, as printed by `scripts/garage.sh`, and fail when
//! those are missing. Each test works under a key prefix of its own and removes it afterwards.

use std::sync::Arc;
use std::time::Duration;

use bonded_types::{ByteRange, UploadId};
use bytes::Bytes;
use futures::{stream, StreamExt, TryStreamExt};
use object_store::aws::{AmazonS3Builder, AmazonS3ConfigKey};
use object_store::multipart::MultipartStore;
use object_store::path::Path;
use object_store::{ClientConfigKey, ObjectStore, RetryConfig};

use super::state::{UploadState, PART_BASE};
use super::{S3Backend, S3Options};
use crate::conformance::{body, collect, digest_of};
use crate::layout::{self, UploadObject};
use crate::{BlobStore, ByteStream, StorageError, UploadCursor};

const MIB: usize = 1 << 20;
const KIB: usize = 1 << 10;

fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!(
            "{name} is not set: the S3 tests need a running S3 server. Start one with \
             `eval \"$(scripts/garage.sh)\"` from the repository root, then run the tests again."
        )
    })
}

/// A unique key prefix in the test bucket.
pub(crate) struct TestBucket {
    prefix: String,
}

impl TestBucket {
    pub(crate) fn new() -> TestBucket {
        TestBucket {
            prefix: format!("bonded-tests/{}", uuid::Uuid::new_v4().simple()),
        }
    }

    fn options(&self) -> S3Options {
        for name in ["AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"] {
            env(name);
        }
        let endpoint = env("BONDED_TEST_S3_ENDPOINT");
        S3Options {
            bucket: env("BONDED_TEST_S3_BUCKET"),
            allow_http: endpoint.starts_with("http://"),
            endpoint: Some(endpoint),
            region: env("BONDED_TEST_S3_REGION"),
            path_style: true,
            prefix: self.prefix.clone(),
        }
    }

    fn backend(&self) -> S3Backend {
        S3Backend::new(self.options()).unwrap()
    }

    fn backend_with(&self, adjust: impl FnOnce(AmazonS3Builder) -> AmazonS3Builder) -> S3Backend {
        S3Backend::with(self.options(), adjust).unwrap()
    }

    /// A new handle on the same prefix, as another node would have.
    pub(crate) fn store(&self) -> BlobStore {
        BlobStore {
            backend: Arc::new(self.backend()),
        }
    }

    /// Every key under the prefix, relative to it.
    async fn keys(&self, under: &str) -> Vec<String> {
        let backend = self.backend();
        let objects: Vec<_> = backend
            .store
            .list(Some(&backend.path(under)))
            .try_collect()
            .await
            .unwrap();
        objects
            .iter()
            .map(|m| backend.key_of(&m.location).unwrap().to_string())
            .collect()
    }

    pub(crate) async fn wipe(&self) {
        let backend = self.backend();
        let prefix = Path::parse(&self.prefix).unwrap();
        let objects: Vec<_> = backend
            .store
            .list(Some(&prefix))
            .try_collect()
            .await
            .unwrap();
        for meta in objects {
            backend.store.delete(&meta.location).await.unwrap();
        }
    }
}

/// Deterministic bytes that differ from part to part.
fn data(len: usize, seed: u64) -> Bytes {
    let mut x = seed | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out.into()
}

/// `data` cut into chunks of the given sizes (the last one takes the rest).
fn chunked(data: &Bytes, sizes: &[usize]) -> ByteStream {
    let mut chunks = Vec::new();
    let mut at = 0;
    for (i, &size) in sizes.iter().enumerate() {
        let end = if i + 1 == sizes.len() {
            data.len()
        } else {
            (at + size).min(data.len())
        };
        chunks.push(Ok(data.slice(at..end)));
        at = end;
    }
    Box::pin(stream::iter(chunks))
}

fn broken(data: Bytes) -> ByteStream {
    Box::pin(stream::iter(vec![
        Ok(data),
        Err(std::io::Error::other("client went away")),
    ]))
}

fn parts(cursor: &UploadCursor) -> usize {
    UploadState::decode(cursor).unwrap().part_count()
}

async fn read_range(
    store: &BlobStore,
    digest: &bonded_types::Digest,
    start: usize,
    end: usize,
) -> Vec<u8> {
    let range = ByteRange {
        start: start as u64,
        end: end as u64,
    };
    let read = store.blob_read(digest, Some(range)).await.unwrap();
    collect(read.stream).await
}

#[tokio::test]
async fn multipart_upload_continued_on_other_nodes_publishes_the_exact_bytes() {
    let bucket = TestBucket::new();
    let blob = data(20 * MIB, 1);
    let node_a = bucket.store();
    let id = UploadId::from_random(1);
    let mut seen = Vec::new();
    let mut cursor = node_a.upload_create(&id).await.unwrap();
    // (node, chunk sizes, bytes in this append, parts afterwards)
    let plan: [(bool, &[usize], usize, usize); 4] = [
        (false, &[KIB, 3 * MIB], 3 * MIB + KIB, 0),
        (true, &[7 * MIB, KIB, 5 * MIB], 12 * MIB + KIB + 1, 1),
        (
            false,
            &[2 * MIB + 333, 64 * KIB],
            2 * MIB + 64 * KIB + 333,
            2,
        ),
        (
            true,
            &[MIB - 7, 7 * MIB],
            20 * MIB - (17 * MIB + 66 * KIB + 334),
            2,
        ),
    ];
    let mut at = 0;
    for (fresh_node, sizes, len, expect_parts) in plan {
        let store = if fresh_node {
            bucket.store()
        } else {
            node_a.clone()
        };
        let piece = blob.slice(at..at + len);
        cursor = store
            .upload_append(&id, &cursor, chunked(&piece, sizes), &mut |b| {
                seen.extend_from_slice(b)
            })
            .await
            .unwrap();
        at += len;
        assert_eq!(cursor.size, at as u64);
        assert_eq!(parts(&cursor), expect_parts);
        assert_eq!(seen.len(), at, "the observer saw exactly the staged bytes");
        let tails = bucket.keys(&layout::upload_key(&id)).await;
        let tails = tails.iter().filter(|k| k.contains("/tail-")).count();
        assert!(tails <= 2, "old tails are deleted, {tails} left");
    }
    assert_eq!(at, blob.len());
    assert!(seen == blob, "the observer saw the bytes in order");

    let digest = digest_of(&blob);
    assert_eq!(node_a.blob_size(&digest).await.unwrap(), None);
    bucket
        .store()
        .upload_publish(&id, &cursor, &digest)
        .await
        .unwrap();
    assert_eq!(
        node_a.blob_size(&digest).await.unwrap(),
        Some(blob.len() as u64)
    );
    let read = node_a.blob_read(&digest, None).await.unwrap();
    assert_eq!(read.size, blob.len() as u64);
    assert!(collect(read.stream).await == blob);
    assert!(node_a.upload_list().await.unwrap().is_empty());
    assert_eq!(bucket.keys(layout::UPLOADS).await, Vec::<String>::new());
    bucket.wipe().await;
}

#[tokio::test]
async fn empty_blobs_publish_with_or_without_an_append() {
    let bucket = TestBucket::new();
    let store = bucket.store();
    let digest = digest_of(b"");

    let id = UploadId::from_random(1);
    let created = store.upload_create(&id).await.unwrap();
    let cursor = store
        .upload_append(&id, &created, body(&[]), &mut |_| {})
        .await
        .unwrap();
    assert_eq!(cursor, created, "an empty append changes nothing");
    assert!(collect(store.upload_read(&id, &cursor).await.unwrap())
        .await
        .is_empty());
    store.upload_publish(&id, &cursor, &digest).await.unwrap();
    assert_eq!(store.blob_size(&digest).await.unwrap(), Some(0));
    let read = store.blob_read(&digest, None).await.unwrap();
    assert_eq!(read.size, 0);
    assert!(collect(read.stream).await.is_empty());

    store.blob_delete(&digest).await.unwrap();
    let id = UploadId::from_random(2);
    let cursor = store.upload_create(&id).await.unwrap();
    store.upload_publish(&id, &cursor, &digest).await.unwrap();
    assert_eq!(store.blob_size(&digest).await.unwrap(), Some(0));
    assert!(store.upload_list().await.unwrap().is_empty());
    bucket.wipe().await;
}

#[tokio::test]
async fn a_body_failing_midway_keeps_what_arrived_and_the_upload_resumes() {
    let bucket = TestBucket::new();
    let store = bucket.store();
    let blob = data(14 * MIB, 2);

    // Resumed from the cursor the failure reported.
    let id = UploadId::from_random(1);
    let c = store.upload_create(&id).await.unwrap();
    let mut seen = Vec::new();
    let c = store
        .upload_append(&id, &c, chunked(&blob.slice(..3 * MIB), &[MIB]), &mut |b| {
            seen.extend_from_slice(b)
        })
        .await
        .unwrap();
    let err = store
        .upload_append(&id, &c, broken(blob.slice(3 * MIB..12 * MIB)), &mut |b| {
            seen.extend_from_slice(b)
        })
        .await
        .unwrap_err();
    assert!(matches!(err.error, StorageError::BodyInterrupted(_)));
    assert_eq!(
        err.cursor.size,
        12 * MIB as u64,
        "everything that arrived is staged"
    );
    assert_eq!(parts(&err.cursor), 1);
    assert!(seen == blob[..12 * MIB], "the observer saw what was staged");
    let resumed = bucket
        .store()
        .upload_append(
            &id,
            &err.cursor,
            chunked(&blob.slice(12 * MIB..), &[MIB]),
            &mut |_| {},
        )
        .await
        .unwrap();
    assert_eq!(resumed.size, blob.len() as u64);
    let digest = digest_of(&blob);
    store.upload_publish(&id, &resumed, &digest).await.unwrap();
    assert!(collect(store.blob_read(&digest, None).await.unwrap().stream).await == blob);

    // Resumed from the cursor before the failure: the part the failed append wrote is
    // replaced, and what it staged beyond that is dropped.
    let other = data(21 * MIB, 3);
    let id = UploadId::from_random(2);
    let c = store.upload_create(&id).await.unwrap();
    let c = store
        .upload_append(
            &id,
            &c,
            chunked(&other.slice(..9 * MIB), &[MIB]),
            &mut |_| {},
        )
        .await
        .unwrap();
    assert_eq!(parts(&c), 1);
    let err = store
        .upload_append(&id, &c, broken(data(20 * MIB, 4)), &mut |_| {})
        .await
        .unwrap_err();
    assert_eq!(parts(&err.cursor), 3);
    let resumed = store
        .upload_append(
            &id,
            &c,
            chunked(&other.slice(9 * MIB..), &[5 * MIB]),
            &mut |_| {},
        )
        .await
        .unwrap();
    assert_eq!((resumed.size, parts(&resumed)), (other.len() as u64, 2));
    assert!(collect(store.upload_read(&id, &resumed).await.unwrap()).await == other);
    let digest = digest_of(&other);
    store.upload_publish(&id, &resumed, &digest).await.unwrap();
    assert!(collect(store.blob_read(&digest, None).await.unwrap().stream).await == other);
    assert!(store.upload_list().await.unwrap().is_empty());
    bucket.wipe().await;
}

#[tokio::test]
async fn publish_after_reading_back_is_idempotent() {
    let bucket = TestBucket::new();
    let store = bucket.store();
    for (seed, len) in [(5, 2 * MIB + 5), (6, 9 * MIB + 5)] {
        let blob = data(len, seed);
        let id = UploadId::from_random(seed as u128);
        let c = store.upload_create(&id).await.unwrap();
        let c = store
            .upload_append(&id, &c, chunked(&blob, &[MIB]), &mut |_| {})
            .await
            .unwrap();
        // Read twice (the second finds the multipart upload already completed), then publish
        // twice from another node, as after a crash before the session was updated.
        for _ in 0..2 {
            assert!(collect(store.upload_read(&id, &c).await.unwrap()).await == blob);
        }
        let digest = digest_of(&blob);
        for _ in 0..2 {
            bucket
                .store()
                .upload_publish(&id, &c, &digest)
                .await
                .unwrap();
            assert_eq!(store.blob_size(&digest).await.unwrap(), Some(len as u64));
        }
        assert!(collect(store.blob_read(&digest, None).await.unwrap().stream).await == blob);

        // Another upload of the same bytes finds the blob there and only cleans up.
        let again = UploadId::from_random(100 + seed as u128);
        let c = store.upload_create(&again).await.unwrap();
        let c = store
            .upload_append(&again, &c, chunked(&blob, &[MIB]), &mut |_| {})
            .await
            .unwrap();
        store.upload_publish(&again, &c, &digest).await.unwrap();
        assert!(collect(store.blob_read(&digest, None).await.unwrap().stream).await == blob);
        assert_eq!(bucket.keys(layout::UPLOADS).await, Vec::<String>::new());
    }
    bucket.wipe().await;
}

#[tokio::test]
async fn range_reads_cross_part_boundaries() {
    let bucket = TestBucket::new();
    let store = bucket.store();
    let blob = data(2 * PART_BASE as usize + 3 * MIB, 7);
    let id = UploadId::from_random(1);
    let c = store.upload_create(&id).await.unwrap();
    let c = store
        .upload_append(&id, &c, chunked(&blob, &[3 * MIB]), &mut |_| {})
        .await
        .unwrap();
    assert_eq!(parts(&c), 2);
    let digest = digest_of(&blob);
    store.upload_publish(&id, &c, &digest).await.unwrap();

    let part = PART_BASE as usize;
    let last = blob.len() - 1;
    for (start, end) in [
        (0, 0),
        (part - 10, part + 10),
        (part - 1, 2 * part),
        (MIB, 2 * part + MIB),
        (last, last),
        (0, last),
    ] {
        let got = read_range(&store, &digest, start, end).await;
        assert!(got == blob[start..=end], "range {start}-{end}");
    }
    let read = store
        .blob_read(&digest, Some(ByteRange { start: 1, end: 2 }))
        .await
        .unwrap();
    assert_eq!(
        read.size,
        blob.len() as u64,
        "the size is the blob's, not the range's"
    );
    bucket.wipe().await;
}

#[tokio::test]
async fn blobs_beyond_the_copy_limit_are_copied_part_by_part() {
    let bucket = TestBucket::new();
    let mut backend = bucket.backend();
    backend.copy_limit = MIB as u64;
    let store = BlobStore {
        backend: Arc::new(backend),
    };
    let blob = data(PART_BASE as usize + 5 * MIB + 1, 8);
    let id = UploadId::from_random(1);
    let c = store.upload_create(&id).await.unwrap();
    let c = store
        .upload_append(&id, &c, chunked(&blob, &[MIB]), &mut |_| {})
        .await
        .unwrap();
    let digest = digest_of(&blob);
    store.upload_publish(&id, &c, &digest).await.unwrap();
    assert!(collect(store.blob_read(&digest, None).await.unwrap().stream).await == blob);
    bucket.wipe().await;
}

#[tokio::test]
async fn an_abandoned_upload_is_listed_and_removed_without_its_cursor() {
    let bucket = TestBucket::new();
    let store = bucket.store();
    let id = UploadId::from_random(1);
    let c = store.upload_create(&id).await.unwrap();
    let blob = data(PART_BASE as usize + 1, 9);
    let c = store
        .upload_append(&id, &c, chunked(&blob, &[MIB]), &mut |_| {})
        .await
        .unwrap();
    assert_eq!(parts(&c), 1);
    let listed = store.upload_list().await.unwrap();
    assert_eq!(
        listed.iter().map(|(i, _)| i.clone()).collect::<Vec<_>>(),
        vec![id.clone()]
    );
    let age = listed[0].1.elapsed().unwrap_or_default();
    assert!(age < Duration::from_secs(600), "last modified {age:?} ago");

    store.upload_delete(&id, None).await.unwrap();
    assert!(store.upload_list().await.unwrap().is_empty());
    assert_eq!(bucket.keys(layout::UPLOADS).await, Vec::<String>::new());
    // The multipart upload was aborted too: it takes no more parts.
    let backend = bucket.backend();
    let mp = UploadState::decode(&c).unwrap().multipart.unwrap();
    let staged = backend.upload_path(&id, UploadObject::Staged(mp.nonce.0));
    let put = backend
        .store
        .put_part(&staged, &mp.id, 1, Bytes::from_static(b"x").into())
        .await;
    assert!(
        matches!(put, Err(object_store::Error::NotFound { .. })),
        "{put:?}"
    );
    assert!(store.upload_read(&id, &c).await.is_err());
    store.upload_delete(&id, Some(&c)).await.unwrap();
    bucket.wipe().await;
}

#[tokio::test]
async fn presigned_urls_serve_the_blob() {
    let bucket = TestBucket::new();
    let store = bucket.store();
    let id = UploadId::from_random(1);
    let c = store.upload_create(&id).await.unwrap();
    let c = store
        .upload_append(&id, &c, body(&[b"signed bytes"]), &mut |_| {})
        .await
        .unwrap();
    let digest = digest_of(b"signed bytes");
    store.upload_publish(&id, &c, &digest).await.unwrap();

    let url = store
        .presign_get(&digest, Duration::from_secs(60))
        .await
        .unwrap()
        .unwrap();
    let response = reqwest::get(&url).await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(&response.bytes().await.unwrap()[..], b"signed bytes");
    let fs_dir = tempfile::tempdir().unwrap();
    let fs = BlobStore::filesystem(fs_dir.path()).await.unwrap();
    assert_eq!(
        fs.presign_get(&digest, Duration::from_secs(60))
            .await
            .unwrap(),
        None
    );
    bucket.wipe().await;
}

/// Two nodes appending from the same cursor (a client retrying on another node while the first
/// still runs) overwrite each other's part; the metadata store keeps one cursor, and that one
/// must then fail to publish rather than publish the other's bytes. This rests on the server
/// checking part ETags at completion (S3 and Garage do).
#[tokio::test]
async fn a_part_overwritten_by_a_racing_append_fails_publish_instead_of_corrupting() {
    let bucket = TestBucket::new();
    let (node_a, node_b) = (bucket.store(), bucket.store());
    let id = UploadId::from_random(1);
    let start = data(9 * MIB, 10);
    let c = node_a.upload_create(&id).await.unwrap();
    let c = node_a
        .upload_append(&id, &c, chunked(&start, &[MIB]), &mut |_| {})
        .await
        .unwrap();
    let ours = data(8 * MIB, 11);
    let kept = node_a
        .upload_append(&id, &c, chunked(&ours, &[MIB]), &mut |_| {})
        .await
        .unwrap();
    let theirs = data(8 * MIB, 12);
    node_b
        .upload_append(&id, &c, chunked(&theirs, &[MIB]), &mut |_| {})
        .await
        .unwrap();
    assert_eq!(parts(&kept), 2);

    let digest = digest_of(&[&start[..], &ours[..]].concat());
    assert!(node_a.upload_publish(&id, &kept, &digest).await.is_err());
    assert_eq!(node_a.blob_size(&digest).await.unwrap(), None);
    assert!(node_a.upload_read(&id, &kept).await.is_err());
    node_a.upload_delete(&id, Some(&kept)).await.unwrap();
    bucket.wipe().await;
}

#[tokio::test]
async fn a_read_outlasting_the_request_timeout_resumes_where_it_stopped() {
    let bucket = TestBucket::new();
    let store = bucket.store();
    let blob = data(12 * MIB, 13);
    let id = UploadId::from_random(1);
    let c = store.upload_create(&id).await.unwrap();
    let c = store
        .upload_append(&id, &c, chunked(&blob, &[MIB]), &mut |_| {})
        .await
        .unwrap();
    let digest = digest_of(&blob);
    store.upload_publish(&id, &c, &digest).await.unwrap();

    // Every response dies after a second and object_store does not retry it: a reader slower
    // than that gets its bytes only if the backend asks again from where the stream stopped.
    let impatient = BlobStore {
        backend: Arc::new(bucket.backend_with(|b| {
            b.with_config(AmazonS3ConfigKey::Client(ClientConfigKey::Timeout), "1s")
                .with_retry(RetryConfig {
                    max_retries: 0,
                    ..RetryConfig::default()
                })
        })),
    };
    for range in [
        None,
        Some(ByteRange {
            start: 5,
            end: 11 * MIB as u64,
        }),
    ] {
        let mut read = impatient.blob_read(&digest, range).await.unwrap().stream;
        let mut got = read.next().await.unwrap().unwrap().to_vec();
        tokio::time::sleep(Duration::from_millis(1500)).await;
        got.extend(collect(read).await);
        let want = match range {
            None => &blob[..],
            Some(r) => &blob[r.start as usize..=r.end as usize],
        };
        assert!(
            got == want,
            "{} bytes read, {} expected",
            got.len(),
            want.len()
        );
    }
    bucket.wipe().await;
}
