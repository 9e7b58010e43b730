//! Garbage collection on SQLite. Every write transaction runs on the single writer connection, so
//! each is serializable: the re-check in `begin_delete` sees every link, reference and pin
//! committed before it, and none can be committed while it runs.

use async_trait::async_trait;
use bonded_types::{Digest, RepoName, UploadId};
use sqlx::{Row, Sqlite, Transaction};

use super::{deleting, parse, SqliteBackend};
use crate::gc::{Facts, Verdict};
use crate::{now_ms, Gc, GcPlan, MarkReport, MetaError, Result};

/// What is known about one queued blob when it is looked at.
struct Look {
    digest: String,
    gen: i64,
    facts: Facts,
}

/// Selects the facts `Look` needs for queue entries, given a WHERE clause on `q`. Each look-up is
/// answered from a covering index (migration 0011); the planner would otherwise read the blob
/// row itself to test `deleting_at`.
const LOOK: &str = "SELECT q.digest, q.gen,
       EXISTS (SELECT 1 FROM blobs b INDEXED BY blobs_digest_deleting
               WHERE b.digest = q.digest AND b.deleting_at IS NULL),
       EXISTS (SELECT 1 FROM manifest_refs r WHERE r.child = q.digest AND r.kind = 'blob'),
       (SELECT max(l.created_at) FROM repo_blobs l WHERE l.digest = q.digest),
       EXISTS (SELECT 1 FROM blob_pins p WHERE p.digest = q.digest)
     FROM gc_queue q";

fn look(r: &sqlx::sqlite::SqliteRow) -> Look {
    Look {
        digest: r.get(0),
        gen: r.get(1),
        facts: Facts {
            live: r.get(2),
            referenced: r.get(3),
            newest_link: r.get(4),
            pinned: r.get(5),
        },
    }
}

/// Queue entries sorted by verdict, each as a JSON array for `json_each` so a whole batch is
/// settled in one statement per kind: `[digest, gen]` to drop or mark, `[digest, gen, until]` to
/// defer. The generation guards every write: an event that queued the blob again since it was
/// looked at wins, and the entry waits for the next look.
#[derive(Default)]
struct Settle {
    drop: Vec<serde_json::Value>,
    defer: Vec<serde_json::Value>,
    eligible: Vec<serde_json::Value>,
}

impl Settle {
    fn sort(rows: &[sqlx::sqlite::SqliteRow], now_ms: i64, grace_ms: i64) -> Settle {
        let mut s = Settle::default();
        for l in rows.iter().map(look) {
            match l.facts.verdict(now_ms, grace_ms) {
                Verdict::Drop => s.drop.push(serde_json::json!([l.digest, l.gen])),
                Verdict::Defer(t) => s.defer.push(serde_json::json!([l.digest, l.gen, t])),
                Verdict::Eligible => s.eligible.push(serde_json::json!([l.digest, l.gen])),
            }
        }
        s
    }

    /// Drops and defers the entries that are not eligible.
    async fn apply(&self, tx: &mut Transaction<'_, Sqlite>) -> Result<()> {
        if !self.drop.is_empty() {
            sqlx::query(
                "DELETE FROM gc_queue WHERE (digest, gen) IN (
                   SELECT j.value ->> 0, j.value ->> 1 FROM json_each(?) j)",
            )
            .bind(serde_json::Value::from(self.drop.clone()).to_string())
            .execute(&mut **tx)
            .await?;
        }
        if !self.defer.is_empty() {
            sqlx::query(
                "UPDATE gc_queue SET marked_at = NULL, due_at = j.value ->> 2
                 FROM json_each(?) j
                 WHERE gc_queue.digest = j.value ->> 0 AND gc_queue.gen = j.value ->> 1",
            )
            .bind(serde_json::Value::from(self.defer.clone()).to_string())
            .execute(&mut **tx)
            .await?;
        }
        Ok(())
    }

    fn eligible_json(&self) -> String {
        serde_json::Value::from(self.eligible.clone()).to_string()
    }
}

#[async_trait]
impl Gc for SqliteBackend {
    async fn mark(
        &self,
        now_ms: i64,
        grace_ms: i64,
        after: Option<&Digest>,
        limit: u32,
    ) -> Result<(MarkReport, Option<Digest>)> {
        // The facts are read on the background connection (idle CPU priority, see
        // `SqliteBackend::open`), so the writer is held only for the writes.
        // That is safe because marking is advisory (`begin_delete` re-checks everything in the
        // writer) and every write below is guarded by the entry's generation. The queue is
        // clustered on digest (WITHOUT ROWID, migration 0011) and walked along it, so a batch's
        // entries, blobs, links and references sit on neighbouring pages.
        let rows = sqlx::query(&format!(
            "{LOOK} NOT INDEXED WHERE q.digest > ? AND q.marked_at IS NULL AND q.due_at <= ?
             ORDER BY q.digest LIMIT ?"
        ))
        .bind(after.map(Digest::to_string).unwrap_or_default())
        .bind(now_ms)
        .bind(i64::from(limit))
        .fetch_all(&self.background)
        .await?;
        let last = rows.last().map(|r| parse(&look(r).digest)).transpose()?;
        let settle = Settle::sort(&rows, now_ms, grace_ms);
        let report = MarkReport {
            examined: rows.len() as u64,
            marked: settle.eligible.len() as u64,
            dropped: settle.drop.len() as u64,
            deferred: settle.defer.len() as u64,
            contended: std::time::Duration::ZERO,
        };
        if rows.is_empty() {
            return Ok((report, last));
        }
        let started = std::time::Instant::now();
        let mut tx = self.begin().await?;
        settle.apply(&mut tx).await?;
        if !settle.eligible.is_empty() {
            sqlx::query(
                "UPDATE gc_queue SET marked_at = ?
                 FROM json_each(?) j
                 WHERE gc_queue.digest = j.value ->> 0 AND gc_queue.gen = j.value ->> 1
                   AND gc_queue.marked_at IS NULL",
            )
            .bind(now_ms)
            .bind(settle.eligible_json())
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        let report = MarkReport {
            contended: started.elapsed(),
            ..report
        };
        Ok((report, last))
    }

    async fn marked(
        &self,
        marked_before_ms: i64,
        after: Option<&Digest>,
        limit: u32,
    ) -> Result<Vec<Digest>> {
        let rows: Vec<String> = sqlx::query_scalar(
            "SELECT digest FROM gc_queue NOT INDEXED
             WHERE digest > ? AND marked_at IS NOT NULL AND marked_at <= ?
             ORDER BY digest LIMIT ?",
        )
        .bind(after.map(Digest::to_string).unwrap_or_default())
        .bind(marked_before_ms)
        .bind(i64::from(limit))
        .fetch_all(&self.background)
        .await?;
        rows.iter().map(|s| parse(s)).collect()
    }

    async fn begin_delete(
        &self,
        digest: &Digest,
        now_ms: i64,
        grace_ms: i64,
    ) -> Result<Option<u64>> {
        let flagged = self
            .begin_delete_many(std::slice::from_ref(digest), now_ms, grace_ms)
            .await?;
        Ok(flagged.first().map(|(_, size)| *size))
    }

    async fn begin_delete_many(
        &self,
        digests: &[Digest],
        now_ms: i64,
        grace_ms: i64,
    ) -> Result<Vec<(Digest, u64)>> {
        if digests.is_empty() {
            return Ok(vec![]);
        }
        let wanted: Vec<String> = digests.iter().map(Digest::to_string).collect();
        // One write transaction: the facts are read and acted on with no other write in between
        // (the single writer serializes them), so each decision is the serializable re-check
        // docs/gc.md relies on. Entries unmarked by a use since they were listed are left alone.
        let mut tx = self.begin().await?;
        let rows = sqlx::query(&format!(
            "{LOOK} WHERE q.digest IN (SELECT value FROM json_each(?)) AND q.marked_at IS NOT NULL"
        ))
        .bind(serde_json::Value::from(wanted).to_string())
        .fetch_all(&mut *tx)
        .await?;
        let settle = Settle::sort(&rows, now_ms, grace_ms);
        settle.apply(&mut tx).await?;
        let mut out = Vec::new();
        if !settle.eligible.is_empty() {
            let eligible = settle.eligible_json();
            let flagged: Vec<(String, i64)> = sqlx::query_as(
                "UPDATE blobs SET deleting_at = ?
                 WHERE digest IN (SELECT value ->> 0 FROM json_each(?)) AND deleting_at IS NULL
                 RETURNING digest, size",
            )
            .bind(now_ms)
            .bind(&eligible)
            .fetch_all(&mut *tx)
            .await?;
            sqlx::query(
                "DELETE FROM repo_blobs WHERE digest IN (SELECT value ->> 0 FROM json_each(?))",
            )
            .bind(&eligible)
            .execute(&mut *tx)
            .await?;
            sqlx::query(
                "DELETE FROM gc_queue WHERE digest IN (SELECT value ->> 0 FROM json_each(?))",
            )
            .bind(&eligible)
            .execute(&mut *tx)
            .await?;
            for (digest, size) in flagged {
                out.push((parse(&digest)?, size as u64));
            }
        }
        tx.commit().await?;
        Ok(out)
    }

    async fn finish_delete_many(&self, digests: &[Digest]) -> Result<()> {
        if digests.is_empty() {
            return Ok(());
        }
        let gone: Vec<String> = digests.iter().map(Digest::to_string).collect();
        sqlx::query(
            "DELETE FROM blobs WHERE digest IN (SELECT value FROM json_each(?))
             AND deleting_at IS NOT NULL",
        )
        .bind(serde_json::Value::from(gone).to_string())
        .execute(&self.writer)
        .await?;
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
            sqlx::query(
                "UPDATE gc_queue SET marked_at = NULL, due_at = ?, gen = gen + 1 WHERE digest = ?",
            )
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
            if !l.facts.live || l.facts.referenced || l.facts.pinned {
                continue;
            }
            let idle = l.facts.verdict(now_ms, grace_ms) == Verdict::Eligible;
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
