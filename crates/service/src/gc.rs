//! Online garbage collection of blobs: mark what lost its last reference, sweep it a grace period
//! later if it is still unused. Runs while the registry serves pushes and pulls; safe to run on
//! every node at once and to stop at any point. The argument is written down in docs/gc.md.

use std::time::{Duration, SystemTime};

use bonded_meta::{GcPlan, MarkReport, MetaError};
use bonded_types::{Digest, UploadId};
use futures::StreamExt;
use tracing::{debug, info, warn};

use crate::{now_ms, Error, Registry, Result};

/// Deleted manifests purged per metadata transaction, so no transaction holds the writer
/// (SQLite) or row locks (PostgreSQL) for long.
const BATCH: u32 = 256;
/// Marked blobs swept per metadata transaction. Their rows sit on pages scattered over the blob
/// table, so each one costs the writer a few page writes; at 32 a push that waits behind a sweep
/// transaction stays within a few milliseconds of idle (bench/gc.py, per-phase figures: push p99
/// while sweeping 1.58x idle at 32, 1.83x at 64, same build otherwise).
const SWEEP_BATCH: u32 = 32;
/// Queue entries looked at per mark pass. The look-ups run outside the writer; the writes that
/// settle a batch hold it, and a push waiting behind them waits that long. At 256 a batch holds
/// SQLite's writer for a few milliseconds (a 1024-entry batch held it long enough to double push
/// p99 in bench/gc.py).
const MARK_BATCH: u32 = 256;
/// The share of wall time collection spends on work requests contend with: after each batch it
/// pauses `1/duty - 1` times as long as that work took, so requests waiting for the metadata
/// store's writer (or for the CPU) go first and their latency stays close to idle. Marking counts
/// only its writes (its look-ups run at idle CPU priority on SQLite); sweeping counts everything,
/// storage deletes included, and runs at a lower duty because its writes touch scattered pages
/// and its deletes take CPU in the kernel.
const MARK_DUTY: f64 = 0.5;
const SWEEP_DUTY: f64 = 1.0 / 3.0;
/// A blob flagged as being deleted for this long belongs to a collector that stopped midway;
/// another may finish the job. Far longer than one storage delete takes, so two collectors never
/// delete the same blob's bytes while an upload re-publishes them (docs/gc.md, "Stalled sweeps").
const STALLED_AFTER: Duration = Duration::from_secs(15 * 60);
/// How long an upload waits for a sweep that is deleting the very blob it is publishing.
const PIN_PATIENCE: Duration = Duration::from_secs(10);

/// How collection treats time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GcPolicy {
    /// How long a marked blob must stay unused before its bytes are deleted.
    pub grace: Duration,
    /// How long deleted manifests and tags stay restorable (and keep their blobs).
    pub undelete_window: Duration,
}

/// What one collection did.
#[derive(Debug, Clone, Copy, Default)]
pub struct GcReport {
    /// Deleted manifests whose undelete window ended: forgotten, their blobs queued.
    pub purged: u64,
    pub mark: MarkReport,
    /// Blobs whose bytes were deleted.
    pub swept: u64,
    pub swept_bytes: u64,
    /// Marked blobs found in use again when it came to sweeping them.
    pub spared: u64,
    /// Deletions a stopped collector had left half-done, finished now.
    pub resumed: u64,
    /// Time spent marking and sweeping.
    pub mark_time: Duration,
    pub sweep_time: Duration,
}

/// Pauses after a batch of collection work that took `took`, keeping collection to `duty` of
/// the wall time (and at least a couple of milliseconds between batches).
async fn yield_to_requests(took: Duration, duty: f64) {
    let pause = took.mul_f64(1.0 / duty - 1.0).max(Duration::from_millis(2));
    tokio::time::sleep(pause).await;
}

fn millis(t: SystemTime) -> i64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

impl Registry {
    /// One collection: purge deletions older than the undelete window, finish stalled
    /// deletions, mark newly unreferenced blobs, sweep those marked at least a grace period ago
    /// that are still unused.
    pub async fn gc_run(&self, policy: &GcPolicy) -> Result<GcReport> {
        let mut report = GcReport::default();
        let grace_ms = policy.grace.as_millis() as i64;

        let purge_before = now_ms() - policy.undelete_window.as_millis() as i64;
        loop {
            let n = self
                .meta
                .manifests()
                .purge_deleted(purge_before, BATCH)
                .await?;
            report.purged += n;
            if n < u64::from(BATCH) {
                break;
            }
        }

        let now = SystemTime::now();
        for digest in self
            .meta
            .gc()
            .stalled_deletes(millis(now - STALLED_AFTER))
            .await?
        {
            self.blobs.blob_delete(&digest).await?;
            self.meta.gc().finish_delete(&digest).await?;
            warn!(%digest, "finished a blob deletion a stopped collector left half-done");
            report.resumed += 1;
        }

        let started = std::time::Instant::now();
        let mut after = None;
        loop {
            let (m, last) = self
                .meta
                .gc()
                .mark(now_ms(), grace_ms, after.as_ref(), MARK_BATCH)
                .await?;
            after = last;
            report.mark.examined += m.examined;
            report.mark.marked += m.marked;
            report.mark.dropped += m.dropped;
            report.mark.deferred += m.deferred;
            if m.examined < u64::from(MARK_BATCH) {
                break;
            }
            // Paced by the time the batch held what requests wait for (SQLite's reads run at
            // idle priority and are not counted).
            yield_to_requests(m.contended, MARK_DUTY).await;
        }

        report.mark_time = started.elapsed();
        if report.mark.examined > 0 {
            debug!(
                examined = report.mark.examined,
                marked = report.mark.marked,
                mark_ms = report.mark_time.as_millis() as u64,
                "garbage collection marked"
            );
        }

        // Only what was marked a grace period before this sweep started. Decisions are taken a
        // batch per transaction; the bytes of the flagged blobs are deleted concurrently.
        let started = std::time::Instant::now();
        let cutoff = now_ms() - grace_ms;
        let mut after = None;
        loop {
            let took = std::time::Instant::now();
            let batch = self
                .meta
                .gc()
                .marked(cutoff, after.as_ref(), SWEEP_BATCH)
                .await?;
            after = batch.last().cloned();
            let now = now_ms();
            let flagged = self
                .meta
                .gc()
                .begin_delete_many(&batch, now, grace_ms)
                .await?;
            report.spared += (batch.len() - flagged.len()) as u64;
            let deleted: Vec<Result<(Digest, u64)>> = futures::stream::iter(flagged)
                .map(|(digest, size)| async move {
                    self.blobs.blob_delete(&digest).await?;
                    Ok((digest, size))
                })
                .buffer_unordered(self.blobs.delete_concurrency())
                .collect()
                .await;
            let mut gone = Vec::with_capacity(deleted.len());
            for d in deleted {
                // A failed storage delete leaves the row flagged; a later run finishes it.
                let (digest, size) = d?;
                report.swept += 1;
                report.swept_bytes += size;
                gone.push(digest);
            }
            self.meta.gc().finish_delete_many(&gone).await?;
            if batch.len() < SWEEP_BATCH as usize {
                break;
            }
            yield_to_requests(took.elapsed(), SWEEP_DUTY).await;
        }
        report.sweep_time = started.elapsed();
        if report.swept > 0 || report.resumed > 0 || report.purged > 0 {
            info!(
                swept = report.swept,
                swept_bytes = report.swept_bytes,
                spared = report.spared,
                purged_manifests = report.purged,
                examined = report.mark.examined,
                mark_ms = report.mark_time.as_millis() as u64,
                sweep_ms = report.sweep_time.as_millis() as u64,
                marked = report.mark.marked,
                "garbage collection reclaimed blobs"
            );
        }
        Ok(report)
    }

    /// What a collection would reclaim now, changing nothing.
    pub async fn gc_plan(&self, grace: Duration) -> Result<GcPlan> {
        Ok(self
            .meta
            .gc()
            .plan(now_ms(), grace.as_millis() as i64)
            .await?)
    }

    /// Holds a pin on `digest` for `upload` before its bytes are published, waiting out a sweep
    /// that is deleting that very blob right now.
    pub(crate) async fn pin_for_publish(&self, digest: &Digest, upload: &UploadId) -> Result<()> {
        let deadline = tokio::time::Instant::now() + PIN_PATIENCE;
        loop {
            match self.meta.gc().pin(digest, upload).await {
                Ok(()) => return Ok(()),
                Err(MetaError::Conflict(_)) if tokio::time::Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Err(MetaError::Conflict(m)) => return Err(Error::Busy(m)),
                Err(e) => return Err(e.into()),
            }
        }
    }
}

/// The storage report: per-namespace usage and growth (M7), the store's totals, and what
/// collection would reclaim.
#[derive(Debug, Clone, Default)]
pub struct StorageReport {
    pub namespaces: Vec<bonded_meta::NamespaceUsage>,
    /// Windows the `*_added` figures cover, in the order given.
    pub windows: Vec<Duration>,
    pub stored_blobs: u64,
    pub stored_bytes: u64,
    pub reclaimable: GcPlan,
}

impl Registry {
    /// Storage used per namespace with growth over `windows` (e.g. a week and a month).
    pub async fn storage_report(
        &self,
        windows: &[Duration],
        grace: Duration,
    ) -> Result<StorageReport> {
        let now = SystemTime::now();
        let since: Vec<i64> = windows.iter().map(|w| millis(now - *w)).collect();
        let namespaces = self.meta.usage().namespaces(&since).await?;
        let (stored_blobs, stored_bytes) = self.meta.usage().stored().await?;
        let reclaimable = self.gc_plan(grace).await?;
        Ok(StorageReport {
            namespaces,
            windows: windows.to_vec(),
            stored_blobs,
            stored_bytes,
            reclaimable,
        })
    }
}
