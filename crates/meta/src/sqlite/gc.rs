//! Garbage collection on SQLite. Every write transaction runs on the single writer connection, so
//! each is serializable: the re-check in `begin_delete` sees every link, reference and pin
//! committed before it, and none can be committed while it runs.

use async_trait::async_trait;
use bonded_types::{Digest, RepoName, UploadId};
use sqlx::{Row, Sqlite, Transaction};

use super::{deleting, parse, SqliteBackend};
use crate::{now_ms, Gc, GcPlan, MarkReport, MetaError, Result};

/// What is known about one queued blob when it is looked at.
struct Look {
    digest: String,
    gen: i64,
    /// The blob row exists and is not being deleted.
    live: bool,
    referenced: bool,
    newest_link: Option<i64>,
    pinned: bool,
}

/// Selects the facts `Look` needs for queue entries, given a WHERE clause on `q`.
const LOOK: &str = "SELECT q.digest, q.gen,
       EXISTS (SELECT 1 FROM blobs b WHERE b.digest = q.digest AND b.deleting_at IS NULL),
       EXISTS (SELECT 1 FROM manifest_refs r WHERE r.child = q.digest AND r.kind = 'blob'),
       (SELECT max(l.created_at) FROM repo_blobs l WHERE l.digest = q.digest),
       EXISTS (SELECT 1 FROM blob_pins p WHERE p.digest = q.digest)
     FROM gc_queue q";

fn look(r: &sqlx::sqlite::SqliteRow) -> Look {
    Look {
        digest: r.get(0),
        gen: r.get(1),
        live: r.get(2),
        referenced: r.get(3),
        newest_link: r.get(4),
        pinned: r.get(5),
    }
}

async fn drop_entry(tx: &mut Transaction<'_, Sqlite>, digest: &str, gen: i64) -> Result<()> {
    sqlx::query("DELETE FROM gc_queue WHERE digest = ? AND gen = ?")
        .bind(digest)
        .bind(gen)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

async fn defer(tx: &mut Transaction<'_, Sqlite>, digest: &str, until: i64) -> Result<()> {
    sqlx::query("UPDATE gc_queue SET marked_at = NULL, due_at = ? WHERE digest = ?")
        .bind(until)
        .bind(digest)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// `begin_delete`'s decision for one blob inside the caller's write transaction.
async fn decide_delete(
    tx: &mut Transaction<'_, Sqlite>,
    digest: &Digest,
    now_ms: i64,
    grace_ms: i64,
) -> Result<Option<u64>> {
    let row = sqlx::query(&format!(
        "{LOOK} WHERE q.digest = ? AND q.marked_at IS NOT NULL"
    ))
    .bind(digest.to_string())
    .fetch_optional(&mut **tx)
    .await?;
    let Some(l) = row.as_ref().map(look) else {
        // Unmarked by a use since it was listed, or handled by another sweep.
        return Ok(None);
    };
    if !l.live || l.referenced {
        drop_entry(tx, &l.digest, l.gen).await?;
        return Ok(None);
    }
    if let Some(t) = l.newest_link.filter(|t| *t > now_ms - grace_ms) {
        defer(tx, &l.digest, t + grace_ms).await?;
        return Ok(None);
    }
    if l.pinned {
        defer(tx, &l.digest, now_ms + grace_ms).await?;
        return Ok(None);
    }
    let size: i64 = sqlx::query_scalar(
        "UPDATE blobs SET deleting_at = ? WHERE digest = ? AND deleting_at IS NULL
         RETURNING size",
    )
    .bind(now_ms)
    .bind(&l.digest)
    .fetch_one(&mut **tx)
    .await?;
    sqlx::query("DELETE FROM repo_blobs WHERE digest = ?")
        .bind(&l.digest)
        .execute(&mut **tx)
        .await?;
    sqlx::query("DELETE FROM gc_queue WHERE digest = ?")
        .bind(&l.digest)
        .execute(&mut **tx)
        .await?;
    Ok(Some(size as u64))
}

#[async_trait]
impl Gc for SqliteBackend {
    async fn mark(&self, now_ms: i64, grace_ms: i64, limit: u32) -> Result<MarkReport> {
        let mut tx = self.begin().await?;
        let rows = sqlx::query(&format!(
            "{LOOK} WHERE q.marked_at IS NULL AND q.due_at <= ? ORDER BY q.due_at LIMIT ?"
        ))
        .bind(now_ms)
        .bind(i64::from(limit))
        .fetch_all(&mut *tx)
        .await?;
        let mut report = MarkReport::default();
        for l in rows.iter().map(look) {
            report.examined += 1;
            if !l.live || l.referenced {
                drop_entry(&mut tx, &l.digest, l.gen).await?;
                report.dropped += 1;
            } else if let Some(t) = l.newest_link.filter(|t| *t > now_ms - grace_ms) {
                defer(&mut tx, &l.digest, t + grace_ms).await?;
                report.deferred += 1;
            } else if l.pinned {
                defer(&mut tx, &l.digest, now_ms + grace_ms).await?;
                report.deferred += 1;
            } else {
                sqlx::query("UPDATE gc_queue SET marked_at = ? WHERE digest = ?")
                    .bind(now_ms)
                    .bind(&l.digest)
                    .execute(&mut *tx)
                    .await?;
                report.marked += 1;
            }
        }
        tx.commit().await?;
        Ok(report)
    }

    async fn marked(&self, marked_before_ms: i64, limit: u32) -> Result<Vec<Digest>> {
        let rows: Vec<String> = sqlx::query_scalar(
            "SELECT digest FROM gc_queue WHERE marked_at IS NOT NULL AND marked_at <= ?
             ORDER BY marked_at LIMIT ?",
        )
        .bind(marked_before_ms)
        .bind(i64::from(limit))
        .fetch_all(&self.reader)
        .await?;
        rows.iter().map(|s| parse(s)).collect()
    }

    async fn begin_delete(
        &self,
        digest: &Digest,
        now_ms: i64,
        grace_ms: i64,
    ) -> Result<Option<u64>> {
        let mut tx = self.begin().await?;
        let decided = decide_delete(&mut tx, digest, now_ms, grace_ms).await?;
        tx.commit().await?;
        Ok(decided)
    }

    async fn begin_delete_many(
        &self,
        digests: &[Digest],
        now_ms: i64,
        grace_ms: i64,
    ) -> Result<Vec<(Digest, u64)>> {
        // One transaction, one fsync: every decision inside is the same serializable re-check.
        let mut tx = self.begin().await?;
        let mut out = Vec::new();
        for d in digests {
            if let Some(size) = decide_delete(&mut tx, d, now_ms, grace_ms).await? {
                out.push((d.clone(), size));
            }
        }
        tx.commit().await?;
        Ok(out)
    }

    async fn finish_delete_many(&self, digests: &[Digest]) -> Result<()> {
        let mut tx = self.begin().await?;
        for d in digests {
            sqlx::query("DELETE FROM blobs WHERE digest = ? AND deleting_at IS NOT NULL")
                .bind(d.to_string())
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn finish_delete(&self, digest: &Digest) -> Result<()> {
        sqlx::query("DELETE FROM blobs WHERE digest = ? AND deleting_at IS NOT NULL")
            .bind(digest.to_string())
            .execute(&self.writer)
            .await?;
        Ok(())
    }

    async fn stalled_deletes(&self, before_ms: i64) -> Result<Vec<Digest>> {
        let rows: Vec<String> = sqlx::query_scalar(
            "SELECT digest FROM blobs WHERE deleting_at IS NOT NULL AND deleting_at < ?",
        )
        .bind(before_ms)
        .fetch_all(&self.reader)
        .await?;
        rows.iter().map(|s| parse(s)).collect()
    }

    async fn pin(&self, digest: &Digest, upload: &UploadId) -> Result<()> {
        let mut tx = self.begin().await?;
        if deleting(&mut tx, digest).await? == Some(true) {
            return Err(MetaError::Conflict(format!(
                "blob {digest} is being garbage-collected"
            )));
        }
        sqlx::query(
            "INSERT INTO blob_pins (digest, upload_id, pinned_at) VALUES (?, ?, ?)
             ON CONFLICT DO NOTHING",
        )
        .bind(digest.to_string())
        .bind(upload.as_str())
        .bind(now_ms())
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn touch(&self, repo: &RepoName, digest: &Digest) -> Result<()> {
        let mut tx = self.begin().await?;
        let now = now_ms();
        let done = sqlx::query(
            "UPDATE repo_blobs SET created_at = ? WHERE digest = ?
             AND repo_id = (SELECT id FROM repositories WHERE name = ?)",
        )
        .bind(now)
        .bind(digest.to_string())
        .bind(repo.as_str())
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() > 0 {
            sqlx::query("UPDATE gc_queue SET marked_at = NULL, due_at = ? WHERE digest = ?")
                .bind(now)
                .bind(digest.to_string())
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn plan(&self, now_ms: i64, grace_ms: i64) -> Result<GcPlan> {
        let rows = sqlx::query(&format!(
            "SELECT l.*, q.marked_at, b.size FROM ({LOOK}) l
             JOIN gc_queue q ON q.digest = l.digest
             JOIN blobs b ON b.digest = l.digest"
        ))
        .fetch_all(&self.reader)
        .await?;
        let mut plan = GcPlan::default();
        for r in &rows {
            let l = look(r);
            let marked_at: Option<i64> = r.get(6);
            let size = r.get::<i64, _>(7) as u64;
            if !l.live || l.referenced || l.pinned {
                continue;
            }
            let idle = l.newest_link.is_none_or(|t| t <= now_ms - grace_ms);
            if idle && marked_at.is_some_and(|m| m <= now_ms - grace_ms) {
                plan.sweepable += 1;
                plan.sweepable_bytes += size;
            } else {
                plan.pending += 1;
                plan.pending_bytes += size;
            }
        }
        Ok(plan)
    }
}
