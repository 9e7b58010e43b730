//! Reading a file as a stream of chunks for a response body.
//!
//! `tokio::fs::File` under `ReaderStream` copies every byte twice in user space (page cache into
//! the file's own buffer on the blocking pool, then into the stream's buffer). Here each chunk is
//! read straight into the allocation that becomes the `Bytes` handed to the socket writer, and
//! the next chunk is already being read while the current one is written.
//!
//! Those allocations are reused ([`Pool`]): a fresh 1 MiB buffer is mapped, faulted in and zeroed
//! by the kernel page by page, and unmapped when freed, which `perf` put at about a tenth of the
//! server's CPU under 8 concurrent pulls. A buffer comes back to the pool when the socket writer
//! drops the last `Bytes` over it.

use std::fs::File;
use std::future::Future;
use std::io::{self, Read};
use std::pin::Pin;
use std::sync::Mutex;
use std::task::{ready, Context, Poll};

use bytes::Bytes;
use futures::Stream;
use tokio::task::JoinHandle;

type Chunk = io::Result<(File, Bytes)>;

/// Streams exactly `len` bytes from `file`'s current position, `chunk` bytes at a time. A file
/// that ends early is an `UnexpectedEof` error, never a short body.
pub(crate) fn chunks(file: File, len: u64, chunk: usize) -> FileChunks {
    let mut s = FileChunks {
        file: Some(file),
        pending: None,
        remaining: len,
        chunk: chunk as u64,
    };
    s.start();
    s
}

pub(crate) struct FileChunks {
    /// The file, while no read is in flight.
    file: Option<File>,
    /// The read in flight on the blocking pool; it hands the file back.
    pending: Option<JoinHandle<Chunk>>,
    /// Bytes not yet asked of a read.
    remaining: u64,
    chunk: u64,
}

impl FileChunks {
    fn start(&mut self) {
        if self.remaining == 0 {
            return;
        }
        let Some(file) = self.file.take() else { return };
        let want = self.remaining.min(self.chunk);
        self.remaining -= want;
        self.pending = Some(tokio::task::spawn_blocking(move || {
            // `read_to_end` fills the spare capacity without zeroing it first.
            let mut buf = POOL.take(want as usize);
            (&file).take(want).read_to_end(&mut buf)?;
            if (buf.len() as u64) < want {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "file is shorter than its recorded size",
                ));
            }
            Ok((file, POOL.bytes(buf)))
        }));
    }

    fn fail(&mut self, e: io::Error) -> Poll<Option<io::Result<Bytes>>> {
        self.remaining = 0;
        self.file = None;
        Poll::Ready(Some(Err(e)))
    }
}

/// Chunk buffers given back by the bytes that carried them.
pub(crate) struct Pool {
    free: Mutex<Vec<Vec<u8>>>,
}

/// Reads smaller than this get a buffer of their own: small allocations are cheap, and a small
/// read must not hold a large buffer.
const POOLED_MIN: usize = 64 << 10;
/// Buffers larger than this are not kept.
const POOLED_MAX: usize = 4 << 20;
/// How many buffers are kept idle at most (two per pull in flight: the one being sent and the
/// one being read).
const POOL_KEEP: usize = 16;

static POOL: Pool = Pool::new();

impl Pool {
    const fn new() -> Pool {
        Pool {
            free: Mutex::new(Vec::new()),
        }
    }

    /// An empty buffer with room for `len` bytes.
    fn take(&'static self, len: usize) -> Vec<u8> {
        if (POOLED_MIN..=POOLED_MAX).contains(&len) {
            let mut free = self.free.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(at) = free.iter().position(|b| b.capacity() >= len) {
                return free.swap_remove(at);
            }
        }
        Vec::with_capacity(len)
    }

    /// `buf` as bytes that give it back here when the last of them is dropped.
    fn bytes(&'static self, buf: Vec<u8>) -> Bytes {
        if !(POOLED_MIN..=POOLED_MAX).contains(&buf.capacity()) {
            return Bytes::from(buf);
        }
        Bytes::from_owner(Pooled { buf, pool: self })
    }

    fn give_back(&self, mut buf: Vec<u8>) {
        let mut free = self.free.lock().unwrap_or_else(|p| p.into_inner());
        if free.len() < POOL_KEEP {
            buf.clear();
            free.push(buf);
        }
    }
}

/// A pooled buffer owned by `Bytes`.
struct Pooled {
    buf: Vec<u8>,
    pool: &'static Pool,
}

impl AsRef<[u8]> for Pooled {
    fn as_ref(&self) -> &[u8] {
        &self.buf
    }
}

impl Drop for Pooled {
    fn drop(&mut self) {
        self.pool.give_back(std::mem::take(&mut self.buf));
    }
}

impl Stream for FileChunks {
    type Item = io::Result<Bytes>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        let Some(pending) = this.pending.as_mut() else {
            return Poll::Ready(None);
        };
        let done = ready!(Pin::new(pending).poll(cx));
        this.pending = None;
        match done {
            Err(join) => this.fail(io::Error::other(join)),
            Ok(Err(e)) => this.fail(e),
            Ok(Ok((file, bytes))) => {
                this.file = Some(file);
                // Read ahead: the next chunk comes off the page cache while this one is sent.
                this.start();
                Poll::Ready(Some(Ok(bytes)))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::TryStreamExt;
    use std::io::{Seek, SeekFrom, Write};

    async fn collect(s: FileChunks) -> io::Result<Vec<Bytes>> {
        s.try_collect().await
    }

    fn file_of(len: usize) -> (tempfile::NamedTempFile, Vec<u8>) {
        let data: Vec<u8> = (0..len).map(|i| (i * 7 % 251) as u8).collect();
        let mut f = tempfile::NamedTempFile::new().unwrap();
        f.write_all(&data).unwrap();
        (f, data)
    }

    #[tokio::test]
    async fn yields_exactly_the_range_in_chunks() {
        let (f, data) = file_of(10_000);
        let mut file = File::open(f.path()).unwrap();
        file.seek(SeekFrom::Start(100)).unwrap();
        let parts = collect(chunks(file, 9_000, 4096)).await.unwrap();
        assert_eq!(
            parts.iter().map(|b| b.len()).collect::<Vec<_>>(),
            [4096, 4096, 808]
        );
        assert_eq!(parts.concat(), data[100..9_100]);
    }

    #[test]
    fn chunk_buffers_come_back_when_their_bytes_are_dropped() {
        static OWN: Pool = Pool::new();
        let mut buf = OWN.take(1 << 20);
        buf.extend_from_slice(b"chunk");
        let at = buf.as_ptr();
        let bytes = OWN.bytes(buf);
        let half = bytes.slice(1..);
        drop(bytes);
        // Still in use by `half`: a new buffer.
        let other = OWN.take(1 << 20);
        assert_ne!(other.as_ptr(), at);
        assert_eq!(&half[..], b"hunk");
        drop(half);
        // Given back, empty, and handed out again.
        let again = OWN.take(1 << 20);
        assert_eq!((again.as_ptr(), again.len()), (at, 0));
        // Small reads are not pooled.
        let small = OWN.bytes(OWN.take(100));
        drop(small);
        assert!(OWN.free.lock().unwrap().is_empty());
    }

    #[tokio::test]
    async fn empty_range_is_an_empty_stream() {
        let (f, _) = file_of(10);
        let parts = collect(chunks(File::open(f.path()).unwrap(), 0, 4096))
            .await
            .unwrap();
        assert!(parts.is_empty());
    }

    #[tokio::test]
    async fn a_file_shorter_than_asked_is_an_error_not_a_short_body() {
        let (f, _) = file_of(5_000);
        let err = collect(chunks(File::open(f.path()).unwrap(), 6_000, 4096))
            .await
            .unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof);
    }
}
