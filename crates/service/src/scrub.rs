//! Scrubbing: re-hash every blob the metadata store knows, at a bounded rate, and quarantine the
//! ones whose stored bytes no longer match their digest (or are gone). See docs/scrub.md.
//!
//! A quarantined blob is recorded in the metadata store (pulls refuse it, mounts skip it) and its
//! bad bytes are moved to `quarantine/` in the blob store; a push of the digest with correct bytes
//! repairs it (`uploads`). Safe to run while serving and on several nodes at once: every decision
//! re-checks that the blob is still recorded, so a blob garbage collection deletes mid-check is
//! skipped, not quarantined.

use std::time::{Duration, Instant};

use bonded_storage::StorageError;
use bonded_types::{Digest, Hasher};
use futures::StreamExt;
use tracing::{info, warn};

use crate::{now_ms, Registry, Result};

/// Blobs listed per metadata query.
const PAGE: u32 = 256;

/// How a scrub runs.
#[derive(Debug, Clone, Copy, Default)]
pub struct ScrubOptions {
    /// Bytes read per second at most; `None` reads as fast as storage allows.
    pub rate_bytes_per_sec: Option<u64>,
}

/// What is wrong with a blob.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ScrubProblem {
    /// The stored bytes hash to another digest (or have another size).
    Corrupt { detail: String },
    /// Nothing is stored at the blob's address.
    Missing,
}

impl ScrubProblem {
    /// `corrupt` or `missing`, as recorded in the quarantine.
    pub fn reason(&self) -> &'static str {
        match self {
            ScrubProblem::Corrupt { .. } => "corrupt",
            ScrubProblem::Missing => "missing",
        }
    }

    fn detail(&self) -> String {
        match self {
            ScrubProblem::Corrupt { detail } => detail.clone(),
            ScrubProblem::Missing => "no bytes stored at the blob's address".into(),
        }
    }
}

/// A blob scrub quarantined.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScrubFinding {
    pub digest: Digest,
    pub problem: ScrubProblem,
}

/// What one scrub did.
#[derive(Debug, Clone, Default)]
pub struct ScrubReport {
    /// Blobs whose bytes were read and hashed (or found missing).
    pub checked: u64,
    pub ok: u64,
    pub corrupt: u64,
    pub missing: u64,
    /// Bytes read and hashed.
    pub bytes: u64,
    /// Blobs skipped because an earlier scrub quarantined them (and no push repaired them yet).
    pub already_quarantined: u64,
    /// Blobs that could not be read for another reason (left for the next run; logged).
    pub errors: u64,
    /// The blobs quarantined by this run.
    pub findings: Vec<ScrubFinding>,
    pub duration: Duration,
}

/// Paces reads to `rate` bytes per second on average since the limiter started.
#[derive(Debug)]
pub struct RateLimiter {
    rate: Option<u64>,
    started: Instant,
    consumed: u64,
}

impl RateLimiter {
    pub fn new(rate: Option<u64>) -> RateLimiter {
        RateLimiter {
            rate: rate.filter(|r| *r > 0),
            started: Instant::now(),
            consumed: 0,
        }
    }

    /// How long to wait, `elapsed` after starting, once `consumed` bytes were read at `rate`
    /// bytes per second: the time those bytes are due at that rate, less the time already spent.
    pub fn wait_for(rate: u64, consumed: u64, elapsed: Duration) -> Duration {
        let due = Duration::from_secs_f64(consumed as f64 / rate as f64);
        due.saturating_sub(elapsed)
    }

    /// Accounts for `n` bytes just read, sleeping as long as the rate asks.
    pub async fn consume(&mut self, n: u64) {
        self.consumed += n;
        if let Some(rate) = self.rate {
            let wait = Self::wait_for(rate, self.consumed, self.started.elapsed());
            // Short waits are batched into later ones: a sleep per 256 KiB read is plenty.
            if wait >= Duration::from_millis(10) {
                tokio::time::sleep(wait).await;
            }
        }
    }
}

/// What reading one blob found.
enum Checked {
    Ok,
    Bad(ScrubProblem),
    /// A storage error other than "not found": left alone, counted, logged.
    Unreadable(String),
}

impl Registry {
    /// Reads and hashes every recorded blob at most at `options.rate_bytes_per_sec`, and
    /// quarantines those whose bytes are corrupt or missing.
    pub async fn scrub_run(&self, options: &ScrubOptions) -> Result<ScrubReport> {
        let started = Instant::now();
        let mut report = ScrubReport::default();
        let mut limiter = RateLimiter::new(options.rate_bytes_per_sec);
        let mut after: Option<Digest> = None;
        loop {
            let page = self
                .meta
                .integrity()
                .blobs_after(after.as_ref(), PAGE)
                .await?;
            for (digest, size) in &page {
                if self.meta.integrity().quarantined(digest).await?.is_some() {
                    report.already_quarantined += 1;
                    continue;
                }
                let (checked, read) = self.scrub_one(digest, *size, &mut limiter).await;
                report.bytes += read;
                let problem = match checked {
                    Checked::Ok => {
                        report.checked += 1;
                        report.ok += 1;
                        continue;
                    }
                    Checked::Unreadable(e) => {
                        warn!(%digest, error = %e, "scrub could not read a blob; will retry next run");
                        report.errors += 1;
                        continue;
                    }
                    Checked::Bad(p) => p,
                };
                // Deleted by garbage collection while we looked: nothing to quarantine.
                if self.meta.blobs().size(digest).await?.is_none() {
                    continue;
                }
                report.checked += 1;
                self.quarantine(digest, &problem).await?;
                match problem {
                    ScrubProblem::Corrupt { .. } => report.corrupt += 1,
                    ScrubProblem::Missing => report.missing += 1,
                }
                report.findings.push(ScrubFinding {
                    digest: digest.clone(),
                    problem,
                });
            }
            if page.len() < PAGE as usize {
                break;
            }
            after = page.last().map(|(d, _)| d.clone());
        }
        report.duration = started.elapsed();
        info!(
            checked = report.checked,
            ok = report.ok,
            corrupt = report.corrupt,
            missing = report.missing,
            size_bytes = report.bytes,
            duration_ms = report.duration.as_millis() as u64,
            "scrub finished"
        );
        Ok(report)
    }

    /// Streams one blob through its hash; returns the verdict and the bytes read.
    async fn scrub_one(
        &self,
        digest: &Digest,
        size: u64,
        limiter: &mut RateLimiter,
    ) -> (Checked, u64) {
        let read = match self.blobs.blob_read(digest, None).await {
            Ok(r) => r,
            Err(StorageError::NotFound) => return (Checked::Bad(ScrubProblem::Missing), 0),
            Err(e) => return (Checked::Unreadable(e.to_string()), 0),
        };
        let mut stream = read.stream;
        let mut hasher = Hasher::new(digest.algorithm());
        let mut n = 0u64;
        while let Some(chunk) = stream.next().await {
            let chunk = match chunk {
                Ok(c) => c,
                Err(e) => return (Checked::Unreadable(e.to_string()), n),
            };
            hasher.update(&chunk);
            n += chunk.len() as u64;
            limiter.consume(chunk.len() as u64).await;
        }
        let actual = hasher.finish();
        if &actual == digest && n == size {
            (Checked::Ok, n)
        } else {
            let detail =
                format!("stored bytes hash to {actual} ({n} bytes; {size} bytes recorded)");
            (Checked::Bad(ScrubProblem::Corrupt { detail }), n)
        }
    }

    /// Records the quarantine first (from then on pulls refuse the blob), then moves any bad
    /// bytes aside so a push of correct bytes can publish them.
    async fn quarantine(&self, digest: &Digest, problem: &ScrubProblem) -> Result<()> {
        let at = now_ms();
        self.meta
            .integrity()
            .quarantine(digest, problem.reason(), &problem.detail(), at)
            .await?;
        if let ScrubProblem::Corrupt { .. } = problem {
            self.blobs.blob_quarantine(digest, at).await?;
        }
        warn!(%digest, reason = problem.reason(), detail = %problem.detail(),
            "scrub quarantined a blob: pulls of it fail until it is pushed again");
        Ok(())
    }

    /// Blobs scrub has quarantined (and no push repaired yet), oldest first.
    pub async fn quarantined_blobs(&self) -> Result<Vec<bonded_meta::QuarantinedBlob>> {
        Ok(self.meta.integrity().list_quarantined().await?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_limiter_waits_until_bytes_are_due_at_the_rate() {
        let s = Duration::from_secs;
        // 10 MiB at 1 MiB/s are due after 10 s; after 4 s, wait 6 more.
        assert_eq!(RateLimiter::wait_for(1 << 20, 10 << 20, s(4)), s(6));
        // Behind schedule: no wait.
        assert_eq!(
            RateLimiter::wait_for(1 << 20, 10 << 20, s(11)),
            Duration::ZERO
        );
        // Exactly on schedule.
        assert_eq!(RateLimiter::wait_for(100, 100, s(1)), Duration::ZERO);
        // Sub-second precision.
        assert_eq!(
            RateLimiter::wait_for(1000, 1500, Duration::from_millis(500)),
            s(1)
        );
    }

    #[tokio::test]
    async fn an_unlimited_limiter_never_sleeps() {
        let mut l = RateLimiter::new(None);
        let t = Instant::now();
        l.consume(u64::MAX / 2).await;
        assert!(t.elapsed() < Duration::from_secs(1));
        let mut zero = RateLimiter::new(Some(0));
        zero.consume(1 << 40).await;
        assert!(t.elapsed() < Duration::from_secs(1));
    }
}
