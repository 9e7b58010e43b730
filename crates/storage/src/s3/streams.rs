//! Byte plumbing for the S3 backend: the buffer an append cuts parts from, and a GET stream
//! that survives broken-off responses.

use std::collections::VecDeque;
use std::io;
use std::ops::Range;
use std::sync::Arc;

use bytes::Bytes;
use futures::stream::{self, BoxStream};
use futures::StreamExt;
use object_store::aws::AmazonS3;
use object_store::path::Path;
use object_store::{GetOptions, GetRange, ObjectStore};

use crate::ByteStream;

/// Attempts at a read that makes no progress before its error is passed on.
const READ_ATTEMPTS: u32 = 3;

/// Bytes received but not yet in a part, oldest first; the first `seen` of them were already
/// staged (the previous tail) and shown to the observer.
#[derive(Default)]
pub(super) struct Pending {
    chunks: VecDeque<Bytes>,
    pub(super) len: u64,
    pub(super) seen: u64,
}

impl Pending {
    pub(super) fn push(&mut self, bytes: Bytes) {
        self.len += bytes.len() as u64;
        self.chunks.push_back(bytes);
    }

    /// Removes and returns the first `n` bytes.
    pub(super) fn take(&mut self, n: u64) -> Vec<Bytes> {
        let mut out = Vec::new();
        let mut want = n;
        while want > 0 {
            let mut chunk = self.chunks.pop_front().expect("take stays within len");
            if chunk.len() as u64 > want {
                self.chunks.push_front(chunk.split_off(want as usize));
            }
            want -= chunk.len() as u64;
            out.push(chunk);
        }
        self.len -= n;
        out
    }

    /// Shows the observer the bytes of `chunks` (just taken and now staged) it has not seen.
    pub(super) fn observe(&mut self, chunks: &[Bytes], observe: &mut (dyn FnMut(&[u8]) + Send)) {
        for chunk in chunks {
            let skip = self.seen.min(chunk.len() as u64);
            self.seen -= skip;
            if (skip as usize) < chunk.len() {
                observe(&chunk[skip as usize..]);
            }
        }
    }
}

/// A GET that re-requests the rest of the object when its response breaks off — the request
/// timeout ends any response a slow client keeps open for long. Only for immutable objects.
pub(super) struct ResumingRead {
    pub(super) store: Arc<AmazonS3>,
    pub(super) path: Path,
    /// The bytes still to read.
    pub(super) span: Range<u64>,
    pub(super) body: Option<BoxStream<'static, object_store::Result<Bytes>>>,
    /// Consecutive failures without a byte read.
    pub(super) failures: u32,
}

impl ResumingRead {
    pub(super) fn into_stream(self) -> ByteStream {
        Box::pin(stream::try_unfold(self, |mut r| async move {
            loop {
                if r.span.is_empty() {
                    return Ok(None);
                }
                let failure = match r.body.as_mut() {
                    Some(body) => match body.next().await {
                        Some(Ok(bytes)) => {
                            r.span.start += bytes.len() as u64;
                            r.failures = 0;
                            return Ok(Some((bytes, r)));
                        }
                        Some(Err(e)) => io::Error::other(e),
                        None => io::Error::new(
                            io::ErrorKind::UnexpectedEof,
                            format!("{} ended {} bytes early", r.path, r.span.end - r.span.start),
                        ),
                    },
                    None => {
                        let opts = GetOptions {
                            range: Some(GetRange::Bounded(r.span.clone())),
                            ..GetOptions::default()
                        };
                        match r.store.get_opts(&r.path, opts).await {
                            Ok(got) => {
                                r.body = Some(got.into_stream());
                                continue;
                            }
                            Err(e) => io::Error::other(e),
                        }
                    }
                };
                r.body = None;
                r.failures += 1;
                if r.failures >= READ_ATTEMPTS {
                    return Err(failure);
                }
            }
        }))
    }
}
