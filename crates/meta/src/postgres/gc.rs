//! Garbage collection on PostgreSQL, with several nodes collecting at once.
//!
//! Marking locks the queue entries it looks at (`FOR UPDATE SKIP LOCKED`, so collectors on other
//! nodes take other entries) before reading the facts about them, in a later statement whose
//! snapshot sees everything committed before the locks were granted; an event that queues a blob
//! again waits for the lock. Marking is advisory anyway: `begin_delete` decides.
//!
//! `begin_delete` locks the blob row `FOR UPDATE` — linking, pinning and recording take it
//! `FOR SHARE`, so none of them is in flight — then deletes the blob's links, which waits for any
//! manifest put holding a link `FOR SHARE` to commit or roll back, and only then reads references
//! and pins in a fresh statement. A put that committed first is seen (the blob is spared); one that
//! comes later finds the links gone and fails with `MissingReference`.

use async_trait::async_trait;
use bonded_types::{Digest, RepoName, UploadId};
use sqlx::postgres::PgRow;
use sqlx::{PgConnection, Row};

use super::{lock_live_blob, parse, retry, PostgresBackend};
use crate::gc::{Facts, Verdict};
use crate::{now_ms, Gc, GcPlan, MarkReport, MetaError, Result};

/// Facts about queued blobs, for `digest = ANY($1)`.
const FACTS: &str = "SELECT q.digest, q.gen,
       EXISTS (SELECT 1 FROM blobs b WHERE b.digest = q.digest AND b.deleting_at IS NULL),
       EXISTS (SELECT 1 FROM manifest_refs r WHERE r.child = q.digest AND r.kind = 'blob'),
       (SELECT max(l.created_at) FROM repo_blobs l WHERE l.digest = q.digest),
       EXISTS (SELECT 1 FROM blob_pins p WHERE p.digest = q.digest),
       q.marked_at,
       (SELECT b.size FROM blobs b WHERE b.digest = q.digest)
     FROM gc_queue q";

struct Look {
    digest: String,
    facts: Facts,
    marked_at: Option<i64>,
    size: Option<i64>,
}

fn look(r: &PgRow) -> Look {
    Look {
        digest: r.get(0),
        facts: Facts {
            live: r.get(2),
            referenced: r.get(3),
            newest_link: r.get(4),
            pinned: r.get(5),
        },
        marked_at: r.get(6),
        size: r.get(7),
    }
}

async fn settle(conn: &mut PgConnection, digest: &str, gen: i64, v: &Verdict) -> Result<()> {
    match v {
        Verdict::Drop => {
            sqlx::query("DELETE FROM gc_queue WHERE digest = $1 AND gen = $2")
                .bind(digest)
                .bind(gen)
                .execute(conn)
                .await?;
        }
        Verdict::Defer(until) => {
            sqlx::query("UPDATE gc_queue SET marked_at = NULL, due_at = $2 WHERE digest = $1")
                .bind(digest)
                .bind(until)
                .execute(conn)
                .await?;
        }
        Verdict::Eligible => {}
    }
    Ok(())
}

impl PostgresBackend {
    async fn mark_once(
        &self,
        now_ms: i64,
        grace_ms: i64,
        after: Option<&Digest>,
        limit: u32,
    ) -> Result<(MarkReport, Option<Digest>)> {
        let started = std::time::Instant::now();
        let mut tx = self.pool.begin().await?;
        let locked: Vec<String> = sqlx::query_scalar(
            "SELECT digest FROM gc_queue WHERE marked_at IS NULL AND due_at <= $1 AND digest > $3
             ORDER BY digest LIMIT $2 FOR UPDATE SKIP LOCKED",
        )
        .bind(now_ms)
        .bind(i64::from(limit))
        .bind(after.map(Digest::to_string).unwrap_or_default())
        .fetch_all(&mut *tx)
        .await?;
        let last = locked.last().map(|s| parse(s)).transpose()?;
        let rows = sqlx::query(&format!("{FACTS} WHERE q.digest = ANY($1)"))
            .bind(&locked)
            .fetch_all(&mut *tx)
            .await?;
        let mut report = MarkReport::default();
        let (mut drop, mut mark, mut defer_d, mut defer_t) = (vec![], vec![], vec![], vec![]);
        for l in rows.iter().map(look) {
            report.examined += 1;
            match l.facts.verdict(now_ms, grace_ms) {
                Verdict::Drop => drop.push(l.digest),
                Verdict::Defer(t) => {
                    defer_d.push(l.digest);
                    defer_t.push(t);
                }
                Verdict::Eligible => mark.push(l.digest),
            }
        }
        report.dropped = drop.len() as u64;
        report.marked = mark.len() as u64;
        report.deferred = defer_d.len() as u64;
        sqlx::query("DELETE FROM gc_queue WHERE digest = ANY($1)")
            .bind(&drop)
            .execute(&mut *tx)
            .await?;
        sqlx::query("UPDATE gc_queue SET marked_at = $2 WHERE digest = ANY($1)")
            .bind(&mark)
            .bind(now_ms)
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "UPDATE gc_queue q SET due_at = v.until FROM unnest($1::text[], $2::bigint[])
             AS v(digest, until) WHERE q.digest = v.digest",
        )
        .bind(&defer_d)
        .bind(&defer_t)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        report.contended = started.elapsed();
        Ok((report, last))
    }

    /// One attempt at `begin_delete`. `Ok(Err(verdict))`: spared, settle the queue entry.
    async fn begin_delete_once(
        &self,
        digest: &Digest,
        now_ms: i64,
        grace_ms: i64,
    ) -> Result<std::result::Result<u64, Option<(i64, Verdict)>>> {
        let mut tx = self.pool.begin().await?;
        let blob: Option<(i64, Option<i64>)> =
            sqlx::query_as("SELECT size, deleting_at FROM blobs WHERE digest = $1 FOR UPDATE")
                .bind(digest.to_string())
                .fetch_optional(&mut *tx)
                .await?;
        let entry: Option<(Option<i64>, i64)> =
            sqlx::query_as("SELECT marked_at, gen FROM gc_queue WHERE digest = $1 FOR UPDATE")
                .bind(digest.to_string())
                .fetch_optional(&mut *tx)
                .await?;
        let Some((Some(_), gen)) = entry else {
            // Unmarked by a use since it was listed, or handled by another collector.
            return Ok(Err(None));
        };
        let size = match blob {
            Some((size, None)) => size,
            _ => return Ok(Err(Some((gen, Verdict::Drop)))),
        };
        let links: Vec<i64> =
            sqlx::query_scalar("DELETE FROM repo_blobs WHERE digest = $1 RETURNING created_at")
                .bind(digest.to_string())
                .fetch_all(&mut *tx)
                .await?;
        let (referenced, pinned): (bool, bool) = sqlx::query_as(
            "SELECT EXISTS (SELECT 1 FROM manifest_refs WHERE child = $1 AND kind = 'blob'),
                    EXISTS (SELECT 1 FROM blob_pins WHERE digest = $1)",
        )
        .bind(digest.to_string())
        .fetch_one(&mut *tx)
        .await?;
        let v = Facts {
            live: true,
            referenced,
            newest_link: links.iter().copied().max(),
            pinned,
        }
        .verdict(now_ms, grace_ms);
        if !matches!(v, Verdict::Eligible) {
            // Dropping the transaction rolls back the link deletion.
            return Ok(Err(Some((gen, v))));
        }
        sqlx::query("UPDATE blobs SET deleting_at = $2 WHERE digest = $1")
            .bind(digest.to_string())
            .bind(now_ms)
            .execute(&mut *tx)
            .await?;
        sqlx::query("DELETE FROM gc_queue WHERE digest = $1")
            .bind(digest.to_string())
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(Ok(size as u64))
    }
}

#[async_trait]
impl Gc for PostgresBackend {
    async fn mark(
        &self,
        now_ms: i64,
        grace_ms: i64,
        after: Option<&Digest>,
        limit: u32,
    ) -> Result<(MarkReport, Option<Digest>)> {
        retry("mark blobs", || {
            self.mark_once(now_ms, grace_ms, after, limit)
        })
        .await
    }

    async fn marked(
        &self,
        marked_before_ms: i64,
        after: Option<&Digest>,
        limit: u32,
    ) -> Result<Vec<Digest>> {
        let rows: Vec<String> = sqlx::query_scalar(
            "SELECT digest FROM gc_queue
             WHERE marked_at IS NOT NULL AND marked_at <= $1 AND digest > $3
             ORDER BY digest LIMIT $2",
        )
        .bind(marked_before_ms)
        .bind(i64::from(limit))
        .bind(after.map(Digest::to_string).unwrap_or_default())
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(|s| parse(s)).collect()
    }

    async fn begin_delete(
        &self,
        digest: &Digest,
        now_ms: i64,
        grace_ms: i64,
    ) -> Result<Option<u64>> {
        let outcome = retry("begin blob deletion", || {
            self.begin_delete_once(digest, now_ms, grace_ms)
        })
        .await?;
        match outcome {
            Ok(size) => Ok(Some(size)),
            Err(None) => Ok(None),
            Err(Some((gen, v))) => {
                let mut conn = self.pool.acquire().await?;
                settle(&mut conn, &digest.to_string(), gen, &v).await?;
                Ok(None)
            }
        }
    }

    async fn finish_delete(&self, digest: &Digest) -> Result<()> {
        sqlx::query("DELETE FROM blobs WHERE digest = $1 AND deleting_at IS NOT NULL")
            .bind(digest.to_string())
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn stalled_deletes(&self, before_ms: i64) -> Result<Vec<Digest>> {
        let rows: Vec<String> = sqlx::query_scalar(
            "SELECT digest FROM blobs WHERE deleting_at IS NOT NULL AND deleting_at < $1",
        )
        .bind(before_ms)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(|s| parse(s)).collect()
    }

    async fn pin(&self, digest: &Digest, upload: &UploadId) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        // No row: nothing for a sweep to delete. A row being deleted: wait for the sweep.
        let deleting: Option<Option<i64>> =
            sqlx::query_scalar("SELECT deleting_at FROM blobs WHERE digest = $1 FOR SHARE")
                .bind(digest.to_string())
                .fetch_optional(&mut *tx)
                .await?;
        if deleting.is_some_and(|d| d.is_some()) {
            return Err(MetaError::Conflict(format!(
                "blob {digest} is being garbage-collected"
            )));
        }
        sqlx::query(
            "INSERT INTO blob_pins (digest, upload_id, pinned_at) VALUES ($1, $2, $3)
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
        let mut tx = self.pool.begin().await?;
        let now = now_ms();
        if lock_live_blob(&mut tx, digest).await?.is_none() {
            return Ok(());
        }
        let done = sqlx::query(
            "UPDATE repo_blobs SET created_at = $1 WHERE digest = $2
             AND repo_id = (SELECT id FROM repositories WHERE name = $3)",
        )
        .bind(now)
        .bind(digest.to_string())
        .bind(repo.as_str())
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() > 0 {
            sqlx::query("UPDATE gc_queue SET marked_at = NULL, due_at = $1 WHERE digest = $2")
                .bind(now)
                .bind(digest.to_string())
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn plan(&self, now_ms: i64, grace_ms: i64) -> Result<GcPlan> {
        let rows = sqlx::query(FACTS).fetch_all(&self.pool).await?;
        let mut plan = GcPlan::default();
        for l in rows.iter().map(look) {
            let size = l.size.unwrap_or(0) as u64;
            if !l.facts.live || l.facts.referenced || l.facts.pinned {
                continue;
            }
            let idle = l.facts.verdict(now_ms, grace_ms) == Verdict::Eligible;
            if idle && l.marked_at.is_some_and(|m| m <= now_ms - grace_ms) {
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
