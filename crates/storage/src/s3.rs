//! S3-compatible backend (AWS S3, Garage, MinIO, …) over `object_store`.
//!
//! An upload keeps everything it needs in the bucket and in its cursor, so any node can continue
//! it. Bytes are cut into the parts of a multipart upload ([`state`] has the sizes); bytes left
//! over at the end of a request, too few for a part, go to a small *tail* object that the next
//! request reads back and prepends. Publishing puts the tail as the last part, completes the
//! multipart upload into a `staged-` object and only then — the digest being verified — copies it
//! to the content address; an upload that never filled a part is copied straight from its tail.
//! Every object name carries a fresh nonce, so nothing a recorded cursor names is overwritten.
//!
//! Nothing here relies on conditional requests (Garage ignores `If-None-Match`/`If-Match`): who
//! may append to an upload is decided by the metadata store, and two publishes of one digest write
//! the same bytes.

mod state;
mod streams;
#[cfg(test)]
pub(crate) mod tests;

use std::collections::BTreeMap;
use std::io;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use bonded_types::{ByteRange, Digest, UploadId};
use futures::stream;
use futures::{StreamExt, TryStreamExt};
use object_store::aws::{AmazonS3, AmazonS3Builder, AmazonS3ConfigKey};
use object_store::multipart::{MultipartStore, PartId};
use object_store::path::Path;
use object_store::signer::Signer;
use object_store::{ClientConfigKey, GetOptions, GetRange, ObjectStore, PutPayload};
use tracing::warn;

use self::state::{part_size, Multipart, Nonce, UploadState, MAX_PARTS, PART_BASE};
use self::streams::{Pending, ResumingRead};
use crate::layout::{self, UploadObject};
use crate::{
    AppendError, BlobBackend, BlobRead, ByteStream, Result, StorageError, UploadCursor,
    WriteObserver,
};

/// Where the blob store lives. Credentials come from the environment and the standard AWS chain
/// (`AWS_ACCESS_KEY_ID`/`AWS_SECRET_ACCESS_KEY`, web identity, container or instance metadata).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct S3Options {
    pub bucket: String,
    /// e.g. `http://127.0.0.1:3900` for Garage; `None` for AWS.
    pub endpoint: Option<String>,
    pub region: String,
    /// `https://host/bucket/key` rather than `https://bucket.host/key` (Garage, MinIO).
    pub path_style: bool,
    /// Permit a plain-HTTP endpoint.
    pub allow_http: bool,
    /// Put every key under this prefix (`a/b` gives `a/b/blobs/…`); empty for none.
    pub prefix: String,
}

/// S3's CopyObject refuses sources over 5 GiB.
const COPY_OBJECT_LIMIT: u64 = 5 << 30;
/// Long enough for a server-side copy of a 5 GiB object; downloads outlasting it are resumed.
const REQUEST_TIMEOUT: &str = "300s";

pub(crate) struct S3Backend {
    store: Arc<AmazonS3>,
    /// Validated by `Path::parse`; empty for none.
    prefix: String,
    /// Larger blobs are published by a copy through this process ([`COPY_OBJECT_LIMIT`]).
    copy_limit: u64,
}

fn backend_error(e: object_store::Error) -> StorageError {
    match e {
        object_store::Error::NotFound { .. } => StorageError::NotFound,
        other => StorageError::Io(io::Error::other(other)),
    }
}

fn internal(msg: String) -> StorageError {
    StorageError::Io(io::Error::other(msg))
}

impl S3Backend {
    pub(crate) fn new(options: S3Options) -> Result<S3Backend> {
        S3Backend::with(options, |builder| builder)
    }

    /// Like `new`, with `adjust` applied to the client configuration last (tests).
    fn with(
        options: S3Options,
        adjust: impl FnOnce(AmazonS3Builder) -> AmazonS3Builder,
    ) -> Result<S3Backend> {
        let prefix = options.prefix.trim_matches('/').to_string();
        if !prefix.is_empty() {
            Path::parse(&prefix)
                .map_err(|e| internal(format!("S3 key prefix {prefix:?} is not usable: {e}")))?;
        }
        let mut builder = AmazonS3Builder::from_env()
            .with_bucket_name(&options.bucket)
            .with_region(&options.region)
            .with_virtual_hosted_style_request(!options.path_style)
            .with_allow_http(options.allow_http)
            .with_config(
                AmazonS3ConfigKey::Client(ClientConfigKey::Timeout),
                REQUEST_TIMEOUT,
            );
        if let Some(endpoint) = &options.endpoint {
            builder = builder.with_endpoint(endpoint);
        }
        let store = adjust(builder).build().map_err(|e| {
            internal(format!(
                "cannot configure S3 bucket {:?}: {e}",
                options.bucket
            ))
        })?;
        Ok(S3Backend {
            store: Arc::new(store),
            prefix,
            copy_limit: COPY_OBJECT_LIMIT,
        })
    }

    fn path(&self, key: &str) -> Path {
        // Keys come only from `layout`, built from validated types.
        let full = if self.prefix.is_empty() {
            key.to_string()
        } else {
            format!("{}/{key}", self.prefix)
        };
        Path::parse(full).expect("layout keys are valid object paths")
    }

    fn upload_path(&self, id: &UploadId, object: UploadObject) -> Path {
        self.path(&layout::upload_object_key(id, object))
    }

    /// The key of `path` relative to the prefix.
    fn key_of<'a>(&self, path: &'a Path) -> Option<&'a str> {
        let full: &str = path.as_ref();
        if self.prefix.is_empty() {
            return Some(full);
        }
        full.strip_prefix(self.prefix.as_str())?.strip_prefix('/')
    }

    async fn size_of(&self, path: &Path) -> Result<Option<u64>> {
        match self.store.head(path).await {
            Ok(meta) => Ok(Some(meta.size)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(backend_error(e)),
        }
    }

    async fn delete_quietly(&self, id: &UploadId, path: &Path) {
        // S3 deletes are idempotent: a missing object is a success.
        if let Err(e) = self.store.delete(path).await {
            warn!(upload = %id, key = %path, error = %e, "could not delete a staging object");
        }
    }

    /// Streams the immutable object at `path` (all of it, or `range`), checking it has `expect`
    /// bytes when given. A response that breaks off is re-requested from where it stopped.
    async fn read(
        &self,
        path: Path,
        range: Option<ByteRange>,
        expect: Option<u64>,
    ) -> Result<BlobRead> {
        let opts = GetOptions {
            range: range.map(|r| GetRange::Bounded(r.start..r.end.saturating_add(1))),
            ..GetOptions::default()
        };
        let got = self
            .store
            .get_opts(&path, opts)
            .await
            .map_err(backend_error)?;
        let size = got.meta.size;
        if expect.is_some_and(|e| e != size) {
            return Err(internal(format!(
                "{path} holds {size} bytes, not {expect:?}"
            )));
        }
        let span = got.range.clone();
        let stream = ResumingRead {
            store: Arc::clone(&self.store),
            path,
            span,
            body: Some(got.into_stream()),
            failures: 0,
        };
        Ok(BlobRead {
            size,
            stream: stream.into_stream(),
        })
    }

    /// Makes sure the multipart upload of `state` is completed into its `staged-` object, with
    /// the tail as its last part, and returns that object's path. Safe to repeat: an upload that
    /// was already completed (by an earlier read or publish) is found by its staged object.
    async fn seal(
        &self,
        id: &UploadId,
        size: u64,
        state: &UploadState,
        mp: &Multipart,
    ) -> Result<Path> {
        let staged = self.upload_path(id, UploadObject::Staged(mp.nonce.0));
        match self.size_of(&staged).await? {
            Some(s) if s == size => return Ok(staged),
            Some(s) => {
                return Err(internal(format!(
                    "{staged} holds {s} bytes, the upload {size}"
                )));
            }
            None => {}
        }
        let mut parts: Vec<PartId> = mp
            .parts
            .iter()
            .map(|p| PartId {
                content_id: p.clone(),
            })
            .collect();
        if let Some(tail) = state.tail {
            let path = self.upload_path(id, UploadObject::Tail(tail.0));
            let bytes = self
                .store
                .get(&path)
                .await
                .map_err(backend_error)?
                .bytes()
                .await;
            let bytes = bytes.map_err(backend_error)?;
            let part = self
                .store
                .put_part(&staged, &mp.id, parts.len(), bytes.into())
                .await;
            parts.push(part.map_err(backend_error)?);
        }
        // With no parts at all (an empty upload) object_store sends one empty part.
        match self.store.complete_multipart(&staged, &mp.id, parts).await {
            Ok(_) => Ok(staged),
            // A retried or repeated completion finds the upload gone and the object there.
            Err(e) => match self.size_of(&staged).await? {
                Some(s) if s == size => Ok(staged),
                _ => Err(backend_error(e)),
            },
        }
    }

    /// Server-side copy; above S3's CopyObject limit, a copy through this process into a
    /// multipart upload of `to`, which appears only when complete.
    async fn copy(&self, from: &Path, to: &Path, size: u64) -> Result<()> {
        if size <= self.copy_limit {
            return self.store.copy(from, to).await.map_err(backend_error);
        }
        let part = PART_BASE.max(size.div_ceil(MAX_PARTS as u64));
        let id = self
            .store
            .create_multipart(to)
            .await
            .map_err(backend_error)?;
        let copied = async {
            let mut parts = Vec::new();
            let mut at = 0;
            while at < size {
                let end = size.min(at + part);
                let bytes = self.store.get_range(from, at..end).await?;
                parts.push(
                    self.store
                        .put_part(to, &id, parts.len(), bytes.into())
                        .await?,
                );
                at = end;
            }
            self.store.complete_multipart(to, &id, parts).await
        }
        .await;
        if copied.is_err() {
            if let Err(e) = self.store.abort_multipart(to, &id).await {
                warn!(key = %to, error = %e, "could not abort a failed copy");
            }
        }
        copied.map(|_| ()).map_err(backend_error)
    }

    /// Starts the multipart upload parts go to and records its id in the bucket, so that it can
    /// be aborted even if the cursor is lost.
    async fn start_multipart(&self, id: &UploadId) -> Result<Multipart> {
        let nonce = Nonce::random();
        let staged = self.upload_path(id, UploadObject::Staged(nonce.0));
        let mp_id = self
            .store
            .create_multipart(&staged)
            .await
            .map_err(backend_error)?;
        let record = self.upload_path(id, UploadObject::Multipart(nonce.0));
        if let Err(e) = self.store.put(&record, mp_id.clone().into()).await {
            if let Err(e) = self.store.abort_multipart(&staged, &mp_id).await {
                warn!(upload = %id, error = %e, "could not abort an unrecorded multipart upload");
            }
            return Err(backend_error(e));
        }
        Ok(Multipart {
            nonce,
            id: mp_id,
            parts: Vec::new(),
        })
    }

    /// Aborts every multipart upload of `id` (recorded in the bucket or in `cursor`), then
    /// deletes every object under the upload, the multipart records last.
    async fn remove_upload(&self, id: &UploadId, cursor: Option<&UploadCursor>) -> Result<()> {
        let prefix = self.path(&layout::upload_key(id));
        let objects: Vec<_> = self
            .store
            .list(Some(&prefix))
            .try_collect()
            .await
            .map_err(backend_error)?;
        let mut multiparts = BTreeMap::new();
        if let Some(mp) = cursor.and_then(|c| UploadState::decode(c).ok()?.multipart) {
            multiparts.insert(mp.nonce.0, mp.id);
        }
        let mut records = Vec::new();
        let mut others = Vec::new();
        for meta in objects {
            let kind = self
                .key_of(&meta.location)
                .and_then(layout::parse_upload_object_key);
            if let Some((_, Some(UploadObject::Multipart(nonce)))) = kind {
                let body = self
                    .store
                    .get(&meta.location)
                    .await
                    .map_err(backend_error)?;
                let mp_id = body.bytes().await.map_err(backend_error)?;
                let mp_id = String::from_utf8(mp_id.to_vec())
                    .map_err(|_| internal(format!("{} is not a multipart id", meta.location)))?;
                multiparts.insert(nonce, mp_id);
                records.push(meta.location);
            } else {
                others.push(meta.location);
            }
        }
        for (nonce, mp_id) in &multiparts {
            let staged = self.upload_path(id, UploadObject::Staged(*nonce));
            match self.store.abort_multipart(&staged, mp_id).await {
                // Already completed or aborted.
                Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => return Err(backend_error(e)),
            }
        }
        for path in others.iter().chain(&records) {
            self.store.delete(path).await.map_err(backend_error)?;
        }
        Ok(())
    }
}

/// Where an append stands: what is staged for certain, to report if the next step fails.
struct Staged {
    state: UploadState,
    size: u64,
}

impl Staged {
    fn fail(&self, error: StorageError) -> AppendError {
        AppendError {
            cursor: self.state.encode(self.size),
            error,
        }
    }
}

#[async_trait]
impl BlobBackend for S3Backend {
    async fn upload_create(&self, _id: &UploadId) -> Result<UploadCursor> {
        // Nothing to write until bytes arrive.
        Ok(UploadState::default().encode(0))
    }

    async fn upload_append(
        &self,
        id: &UploadId,
        cursor: &UploadCursor,
        mut body: ByteStream,
        observe: WriteObserver<'_>,
    ) -> Result<UploadCursor, AppendError> {
        let fail = |error| AppendError {
            cursor: cursor.clone(),
            error,
        };
        let from = UploadState::decode(cursor).map_err(fail)?;
        if let Some(prev) = from.prev_tail {
            self.delete_quietly(id, &self.upload_path(id, UploadObject::Tail(prev.0)))
                .await;
        }
        let mut pending = Pending::default();
        if let Some(tail) = from.tail {
            let path = self.upload_path(id, UploadObject::Tail(tail.0));
            let read = async { self.store.get(&path).await?.bytes().await };
            let bytes = read.await.map_err(|e| fail(backend_error(e)))?;
            if bytes.len() as u64 != from.tail_len(cursor.size) {
                let e = internal(format!(
                    "{path} holds {} bytes, not {}",
                    bytes.len(),
                    from.tail_len(cursor.size)
                ));
                return Err(fail(e));
            }
            pending.seen = bytes.len() as u64;
            pending.push(bytes);
        }
        let mut staged = Staged {
            state: from.clone(),
            size: cursor.size,
        };
        let mut in_parts = state::parts_len(from.part_count());
        let mut received = false;
        let mut interrupted = None;
        while let Some(chunk) = body.next().await {
            let bytes = match chunk {
                Ok(bytes) => bytes,
                Err(e) => {
                    interrupted = Some(StorageError::BodyInterrupted(e));
                    break;
                }
            };
            received |= !bytes.is_empty();
            pending.push(bytes);
            loop {
                let idx = staged.state.part_count();
                let want = part_size(idx);
                if pending.len < want {
                    break;
                }
                if idx + 1 >= MAX_PARTS {
                    let e = internal(format!("an upload holds at most {idx} full parts"));
                    return Err(staged.fail(e));
                }
                if staged.state.multipart.is_none() {
                    let mp = self.start_multipart(id).await.map_err(|e| staged.fail(e))?;
                    staged.state.multipart = Some(mp);
                }
                let mp = staged.state.multipart.as_mut().expect("just started");
                let staged_path = self.upload_path(id, UploadObject::Staged(mp.nonce.0));
                let chunks = pending.take(want);
                let payload = PutPayload::from_iter(chunks.iter().cloned());
                let part = match self
                    .store
                    .put_part(&staged_path, &mp.id, idx, payload)
                    .await
                {
                    Ok(part) => part,
                    Err(e) => return Err(staged.fail(backend_error(e))),
                };
                mp.parts.push(part.content_id);
                in_parts += want;
                staged.state.tail = None;
                staged.state.prev_tail = from.tail;
                staged.size = in_parts;
                pending.observe(&chunks, observe);
            }
        }
        if !received {
            return match interrupted {
                Some(error) => Err(AppendError {
                    cursor: cursor.clone(),
                    error,
                }),
                None => Ok(cursor.clone()),
            };
        }
        // What does not fill a part goes to a new tail object (even when the body broke off:
        // the client may resume after it).
        if pending.len > 0 {
            let tail = Nonce::random();
            let tail_len = pending.len;
            let chunks = pending.take(tail_len);
            let path = self.upload_path(id, UploadObject::Tail(tail.0));
            let payload = PutPayload::from_iter(chunks.iter().cloned());
            if let Err(e) = self.store.put(&path, payload).await {
                return Err(staged.fail(backend_error(e)));
            }
            staged.state.tail = Some(tail);
            staged.state.prev_tail = from.tail;
            staged.size = in_parts + tail_len;
            pending.observe(&chunks, observe);
        }
        let cursor = staged.state.encode(staged.size);
        match interrupted {
            Some(error) => Err(AppendError { cursor, error }),
            None => Ok(cursor),
        }
    }

    async fn upload_read(&self, id: &UploadId, cursor: &UploadCursor) -> Result<ByteStream> {
        let state = UploadState::decode(cursor)?;
        let path = match (&state.multipart, state.tail) {
            (Some(mp), _) => self.seal(id, cursor.size, &state, mp).await?,
            (None, Some(tail)) => self.upload_path(id, UploadObject::Tail(tail.0)),
            (None, None) => return Ok(Box::pin(stream::empty())),
        };
        Ok(self.read(path, None, Some(cursor.size)).await?.stream)
    }

    async fn upload_publish(
        &self,
        id: &UploadId,
        cursor: &UploadCursor,
        digest: &Digest,
    ) -> Result<()> {
        let state = UploadState::decode(cursor)?;
        let target = self.path(&layout::blob_key(digest));
        // Same digest, same bytes: an existing blob wins and the staged copy goes.
        if self.size_of(&target).await?.is_none() {
            match (&state.multipart, state.tail) {
                (Some(mp), _) => {
                    let staged = self.seal(id, cursor.size, &state, mp).await?;
                    self.copy(&staged, &target, cursor.size).await?;
                }
                (None, Some(tail)) => {
                    let tail = self.upload_path(id, UploadObject::Tail(tail.0));
                    self.copy(&tail, &target, cursor.size).await?;
                }
                (None, None) => {
                    self.store
                        .put(&target, PutPayload::new())
                        .await
                        .map_err(backend_error)?;
                }
            }
        }
        // The blob is safe; leftovers are found again by `upload_list` once the session is gone.
        if let Err(e) = self.remove_upload(id, Some(cursor)).await {
            warn!(upload = %id, error = %e, "could not clean up a published upload");
        }
        Ok(())
    }

    async fn upload_delete(&self, id: &UploadId, cursor: Option<&UploadCursor>) -> Result<()> {
        self.remove_upload(id, cursor).await
    }

    async fn upload_list(&self) -> Result<Vec<(UploadId, SystemTime)>> {
        let prefix = self.path(layout::UPLOADS);
        let mut newest: BTreeMap<UploadId, SystemTime> = BTreeMap::new();
        let mut objects = self.store.list(Some(&prefix));
        while let Some(meta) = objects.try_next().await.map_err(backend_error)? {
            let Some((id, _)) = self
                .key_of(&meta.location)
                .and_then(layout::parse_upload_object_key)
            else {
                continue;
            };
            let modified = SystemTime::from(meta.last_modified);
            let entry = newest.entry(id).or_insert(modified);
            *entry = (*entry).max(modified);
        }
        Ok(newest.into_iter().collect())
    }

    async fn blob_size(&self, digest: &Digest) -> Result<Option<u64>> {
        self.size_of(&self.path(&layout::blob_key(digest))).await
    }

    async fn blob_read(&self, digest: &Digest, range: Option<ByteRange>) -> Result<BlobRead> {
        self.read(self.path(&layout::blob_key(digest)), range, None)
            .await
    }

    async fn blob_delete(&self, digest: &Digest) -> Result<()> {
        match self
            .store
            .delete(&self.path(&layout::blob_key(digest)))
            .await
        {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(backend_error(e)),
        }
    }

    async fn blob_quarantine(&self, digest: &Digest, at_ms: i64) -> Result<bool> {
        let from = self.path(&layout::blob_key(digest));
        let Some(size) = self.size_of(&from).await? else {
            return Ok(false);
        };
        let to = self.path(&layout::quarantine_key(digest, at_ms));
        // Copy first: if the delete fails the blob is still quarantined in metadata, and the
        // evidence is already safe.
        self.copy(&from, &to, size).await?;
        match self.store.delete(&from).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(true),
            Err(e) => Err(backend_error(e)),
        }
    }

    async fn presign_get(&self, digest: &Digest, expires: Duration) -> Result<Option<String>> {
        let path = self.path(&layout::blob_key(digest));
        let url = self
            .store
            .signed_url(reqwest::Method::GET, &path, expires)
            .await;
        Ok(Some(url.map_err(backend_error)?.to_string()))
    }
}
