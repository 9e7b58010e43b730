//! PostgreSQL backend, for several bonded nodes sharing one database.
//!
//! Transactions run at READ COMMITTED. Races between nodes are made well-defined by atomic upserts
//! and row locks, not by the isolation level:
//! - a manifest put locks the links and child manifests it checks (`FOR SHARE`), so an unlink or
//!   delete either commits first (the put then fails with `MissingReference`) or waits for it;
//! - it then locks its own manifest row, so a concurrent manifest delete runs wholly before (the put
//!   recreates the row) or wholly after (the delete takes the new tag with it);
//! - a tag is written by one `INSERT … ON CONFLICT DO UPDATE`, which PostgreSQL guarantees ends in
//!   exactly one insert or update of the locked row; an immutable tag updates only if it already
//!   points at the same digest, so of two racing creates the second sees the first and is refused;
//! - `Uploads::advance` is one conditional `UPDATE`: the loser re-checks `size` after the winner
//!   commits and matches nothing.
//!
//! - garbage collection (`postgres/gc.rs`) locks a blob row `FOR UPDATE` and deletes its links
//!   before re-checking for references; linking, pinning and recording take the same row
//!   `FOR SHARE`, so each of them runs wholly before or after a sweep's decision.
//!
//! Locks are taken in one order (links, child manifests, the manifest, the tag) and lists of rows
//! in digest order, so our own transactions should not deadlock; should PostgreSQL still report a
//! deadlock or serialization failure, the transaction is retried a few times.

mod access;
mod trust;

/// The promotion aggregate's SQL, shared with the other backend (`crate::promotion`).
mod promotion {
    use super::PostgresBackend;
    use bonded_types::{Digest, RepoName};
    crate::promotion::promotions_sql!(PostgresBackend, sqlx::postgres::PgRow, pool, pool);
}

/// Vulnerability operations' SQL, shared with the other backend (`crate::vuln_ops`).
mod vuln_ops {
    use super::PostgresBackend;
    use bonded_types::{Digest, RepoName};
    crate::vuln_ops::vuln_ops_sql!(PostgresBackend, pool, pool);
}

/// The vulnerability aggregate's SQL, shared with the other backend (`crate::vulns`).
mod vulns {
    use super::PostgresBackend;
    use bonded_types::{Digest, RepoName};
    crate::vulns::vulns_sql!(PostgresBackend, sqlx::postgres::PgRow, pool, pool);
}

/// The waiver aggregate's SQL, shared with the other backend (`crate::waivers`).
mod waivers {
    use super::PostgresBackend;
    use bonded_types::{Digest, RepoName};
    crate::waivers::waivers_sql!(PostgresBackend, sqlx::postgres::PgRow, pool, pool);
}

use std::collections::HashSet;
use std::future::Future;
use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use bonded_types::{Digest, RepoName, Tag, UploadId};
use sqlx::postgres::{PgConnection, PgPool, PgPoolOptions, PgRow};
use sqlx::Row;

use crate::{
    now_ms, Blobs, Deleted, DeletedManifest, LinkedBlob, ManifestInfo, ManifestRecord, Manifests,
    MetaError, NewManifest, Referrer, Repos, Result, TagWrite, Tags, UploadRecord, Uploads,
};

mod gc;

/// Connections per node; several nodes share the server's `max_connections` (100 by default).
const POOL_SIZE: u32 = 16;
/// Attempts of one transaction that PostgreSQL aborted as a deadlock or serialization failure.
const ATTEMPTS: u32 = 5;
/// How often to re-create a manifest row that a concurrent delete removed under us.
const RECREATE_ATTEMPTS: u32 = 3;

pub(crate) struct PostgresBackend {
    pool: PgPool,
}

fn parse<T: FromStr>(s: &str) -> Result<T>
where
    T::Err: std::fmt::Display,
{
    s.parse::<T>()
        .map_err(|e| MetaError::Corrupt(format!("{s:?}: {e}")))
}

fn parse_opt<T: FromStr>(s: Option<String>) -> Result<Option<T>>
where
    T::Err: std::fmt::Display,
{
    s.as_deref().map(parse).transpose()
}

/// Deadlocks and serialization failures: PostgreSQL rolled the transaction back and asks for a
/// retry. Nothing else is retried (a failed COMMIT may have committed).
fn retryable(e: &MetaError) -> bool {
    match e {
        MetaError::Db(sqlx::Error::Database(db)) => {
            matches!(db.code().as_deref(), Some("40001" | "40P01"))
        }
        _ => false,
    }
}

/// Runs one transaction body, retrying it if PostgreSQL aborted it for a retryable reason.
async fn retry<T, F, Fut>(what: &str, mut attempt: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T>>,
{
    let mut n = 1;
    loop {
        match attempt().await {
            Err(e) if n < ATTEMPTS && retryable(&e) => {
                tracing::debug!(attempt = n, error = %e, "retrying metadata transaction: {what}");
                // Back off a little, more each time, so the winner can commit.
                tokio::time::sleep(Duration::from_millis(5 << n)).await;
                n += 1;
            }
            other => return other,
        }
    }
}

impl PostgresBackend {
    pub(crate) fn pool(&self) -> &PgPool {
        &self.pool
    }

    pub(crate) async fn connect(url: &str) -> Result<PostgresBackend> {
        let pool = PgPoolOptions::new()
            .max_connections(POOL_SIZE)
            .acquire_timeout(Duration::from_secs(10))
            .connect(url)
            .await?;
        // The migrator holds a PostgreSQL advisory lock, so nodes starting together apply each
        // migration once.
        sqlx::migrate!("./migrations/postgres").run(&pool).await?;
        Ok(PostgresBackend { pool })
    }
}

async fn repo_id(conn: &mut PgConnection, repo: &RepoName) -> Result<Option<i64>> {
    Ok(
        sqlx::query_scalar("SELECT id FROM repositories WHERE name = $1")
            .bind(repo.as_str())
            .fetch_optional(conn)
            .await?,
    )
}

async fn ensure_repo(conn: &mut PgConnection, repo: &RepoName) -> Result<i64> {
    // Look first: an INSERT that conflicts still consumes a sequence value.
    if let Some(id) = repo_id(conn, repo).await? {
        return Ok(id);
    }
    let inserted: Option<i64> = sqlx::query_scalar(
        "INSERT INTO repositories (name, created_at) VALUES ($1, $2)
         ON CONFLICT (name) DO NOTHING RETURNING id",
    )
    .bind(repo.as_str())
    .bind(now_ms())
    .fetch_optional(&mut *conn)
    .await?;
    if let Some(id) = inserted {
        return Ok(id);
    }
    // Another node created it meanwhile; the INSERT waited for its commit, so this statement's
    // snapshot sees it (repositories are never deleted).
    repo_id(conn, repo)
        .await?
        .ok_or_else(|| MetaError::Conflict(format!("repository {repo} vanished while created")))
}

/// Links a blob into a repository, or refreshes the link's time: the blob was just used, so
/// collection spares it for a grace period.
async fn link_in(conn: &mut PgConnection, repo_id: i64, digest: &Digest, now: i64) -> Result<()> {
    sqlx::query(
        "INSERT INTO repo_blobs (repo_id, digest, created_at) VALUES ($1, $2, $3)
         ON CONFLICT (repo_id, digest) DO UPDATE SET created_at = excluded.created_at",
    )
    .bind(repo_id)
    .bind(digest.to_string())
    .bind(now)
    .execute(conn)
    .await?;
    Ok(())
}

/// Share-locks a blob row (so no sweep can decide on it until we commit) and returns its size if
/// it exists and is not being deleted.
async fn lock_live_blob(conn: &mut PgConnection, digest: &Digest) -> Result<Option<i64>> {
    let row: Option<(i64, Option<i64>)> =
        sqlx::query_as("SELECT size, deleting_at FROM blobs WHERE digest = $1 FOR SHARE")
            .bind(digest.to_string())
            .fetch_optional(conn)
            .await?;
    Ok(row.and_then(|(size, deleting)| deleting.is_none().then_some(size)))
}

/// Queues a blob that was just linked: if it was marked for collection, it is not any more.
async fn queue_use(conn: &mut PgConnection, digest: &Digest, now: i64) -> Result<()> {
    sqlx::query(
        "INSERT INTO gc_queue (digest, due_at) VALUES ($1, $2)
         ON CONFLICT (digest) DO UPDATE SET
           due_at = LEAST(gc_queue.due_at, excluded.due_at), marked_at = NULL,
           gen = gc_queue.gen + 1",
    )
    .bind(digest.to_string())
    .bind(now)
    .execute(conn)
    .await?;
    Ok(())
}

/// Queues blobs that may just have lost their last reference (in digest order, so concurrent
/// callers lock queue rows in one order).
async fn queue_deref(conn: &mut PgConnection, digests: &[String], now: i64) -> Result<()> {
    if digests.is_empty() {
        return Ok(());
    }
    let mut sorted = digests.to_vec();
    sorted.sort_unstable();
    sorted.dedup();
    sqlx::query(
        "INSERT INTO gc_queue (digest, due_at) SELECT d, $2 FROM unnest($1::text[]) AS d
         ON CONFLICT (digest) DO UPDATE SET
           due_at = LEAST(gc_queue.due_at, excluded.due_at), gen = gc_queue.gen + 1",
    )
    .bind(&sorted)
    .bind(now)
    .execute(conn)
    .await?;
    Ok(())
}

#[async_trait]
impl Repos for PostgresBackend {
    async fn list(&self, n: u32, last: Option<&str>) -> Result<Vec<RepoName>> {
        let rows: Vec<String> = sqlx::query_scalar(
            "SELECT name FROM repositories WHERE name > $1 ORDER BY name LIMIT $2",
        )
        .bind(last.unwrap_or(""))
        .bind(i64::from(n))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(|s| parse(s)).collect()
    }

    async fn exists(&self, repo: &RepoName) -> Result<bool> {
        let row: Option<i64> = sqlx::query_scalar("SELECT id FROM repositories WHERE name = $1")
            .bind(repo.as_str())
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.is_some())
    }
}

impl PostgresBackend {
    async fn record_and_link_once(
        &self,
        repo: &RepoName,
        digest: &Digest,
        size: u64,
    ) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        let now = now_ms();
        sqlx::query(
            "INSERT INTO blobs (digest, size, created_at) VALUES ($1, $2, $3)
             ON CONFLICT (digest) DO NOTHING",
        )
        .bind(digest.to_string())
        .bind(size as i64)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        if lock_live_blob(&mut tx, digest).await?.is_none() {
            return Err(MetaError::Conflict(format!(
                "blob {digest} is being garbage-collected"
            )));
        }
        queue_use(&mut tx, digest, now).await?;
        let id = ensure_repo(&mut tx, repo).await?;
        link_in(&mut tx, id, digest, now).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn link_once(&self, repo: &RepoName, digest: &Digest) -> Result<u64> {
        let mut tx = self.pool.begin().await?;
        let size = lock_live_blob(&mut tx, digest)
            .await?
            .ok_or(MetaError::NotFound)?;
        let now = now_ms();
        queue_use(&mut tx, digest, now).await?;
        let id = ensure_repo(&mut tx, repo).await?;
        link_in(&mut tx, id, digest, now).await?;
        tx.commit().await?;
        Ok(size as u64)
    }
}

#[async_trait]
impl Blobs for PostgresBackend {
    async fn record_and_link(&self, repo: &RepoName, digest: &Digest, size: u64) -> Result<()> {
        retry("record and link blob", || {
            self.record_and_link_once(repo, digest, size)
        })
        .await
    }

    async fn linked_size(&self, repo: &RepoName, digest: &Digest) -> Result<Option<LinkedBlob>> {
        let row: Option<(i64, bool, bool)> = sqlx::query_as(
            "SELECT b.size, q.marked_at IS NOT NULL, qb.digest IS NOT NULL FROM repo_blobs rb
             JOIN repositories r ON r.id = rb.repo_id
             JOIN blobs b ON b.digest = rb.digest
             LEFT JOIN gc_queue q ON q.digest = rb.digest
             LEFT JOIN quarantined_blobs qb ON qb.digest = rb.digest
             WHERE r.name = $1 AND rb.digest = $2",
        )
        .bind(repo.as_str())
        .bind(digest.to_string())
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.map(|(size, marked, quarantined)| LinkedBlob {
            size: size as u64,
            marked,
            quarantined,
        }))
    }

    async fn size(&self, digest: &Digest) -> Result<Option<u64>> {
        let size: Option<i64> =
            sqlx::query_scalar("SELECT size FROM blobs WHERE digest = $1 AND deleting_at IS NULL")
                .bind(digest.to_string())
                .fetch_optional(&self.pool)
                .await?;
        Ok(size.map(|s| s as u64))
    }

    async fn link(&self, repo: &RepoName, digest: &Digest) -> Result<u64> {
        retry("link blob", || self.link_once(repo, digest)).await
    }

    async fn unlink(&self, repo: &RepoName, digest: &Digest) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        let done = sqlx::query(
            "DELETE FROM repo_blobs WHERE digest = $1
             AND repo_id = (SELECT id FROM repositories WHERE name = $2)",
        )
        .bind(digest.to_string())
        .bind(repo.as_str())
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() == 0 {
            return Err(MetaError::NotFound);
        }
        queue_deref(&mut tx, &[digest.to_string()], now_ms()).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn linked(&self, repo: &RepoName) -> Result<Vec<(Digest, u64)>> {
        let rows = sqlx::query(
            "SELECT rb.digest, b.size FROM repo_blobs rb
             JOIN repositories r ON r.id = rb.repo_id
             JOIN blobs b ON b.digest = rb.digest
             WHERE r.name = $1 ORDER BY rb.digest",
        )
        .bind(repo.as_str())
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| Ok((parse(r.get::<&str, _>(0))?, r.get::<i64, _>(1) as u64)))
            .collect()
    }
}

fn upload_row(r: &PgRow) -> Result<UploadRecord> {
    Ok(UploadRecord {
        id: parse(r.get::<&str, _>(0))?,
        repo: parse(r.get::<&str, _>(1))?,
        size: r.get::<i64, _>(2) as u64,
        state: r.get(3),
        created_at_ms: r.get(4),
        updated_at_ms: r.get(5),
    })
}

const UPLOAD_COLUMNS: &str = "id, repo, size, state, created_at, updated_at";

#[async_trait]
impl Uploads for PostgresBackend {
    async fn create(&self, id: &UploadId, repo: &RepoName, state: &str) -> Result<()> {
        let now = now_ms();
        sqlx::query(
            "INSERT INTO uploads (id, repo, size, state, created_at, updated_at)
             VALUES ($1, $2, 0, $3, $4, $5)",
        )
        .bind(id.as_str())
        .bind(repo.as_str())
        .bind(state)
        .bind(now)
        .bind(now)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn get(&self, id: &UploadId) -> Result<Option<UploadRecord>> {
        let row = sqlx::query(&format!(
            "SELECT {UPLOAD_COLUMNS} FROM uploads WHERE id = $1"
        ))
        .bind(id.as_str())
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(upload_row).transpose()
    }

    async fn advance(
        &self,
        id: &UploadId,
        from_size: u64,
        to_size: u64,
        state: &str,
    ) -> Result<()> {
        // A concurrent UPDATE of the same row waits for ours, then re-evaluates `size = $5` on
        // the row we wrote and matches nothing: exactly one advance from a given size wins.
        let done = sqlx::query(
            "UPDATE uploads SET size = $1, state = $2, updated_at = $3 WHERE id = $4 AND size = $5",
        )
        .bind(to_size as i64)
        .bind(state)
        .bind(now_ms())
        .bind(id.as_str())
        .bind(from_size as i64)
        .execute(&self.pool)
        .await?;
        if done.rows_affected() == 1 {
            return Ok(());
        }
        match Uploads::get(self, id).await? {
            None => Err(MetaError::NotFound),
            Some(rec) => Err(MetaError::Conflict(format!(
                "upload {id} is at {} bytes, not {from_size}",
                rec.size
            ))),
        }
    }

    async fn delete(&self, id: &UploadId) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("DELETE FROM blob_pins WHERE upload_id = $1")
            .bind(id.as_str())
            .execute(&mut *tx)
            .await?;
        sqlx::query("DELETE FROM uploads WHERE id = $1")
            .bind(id.as_str())
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn idle_since(&self, cutoff_ms: i64) -> Result<Vec<UploadRecord>> {
        let rows = sqlx::query(&format!(
            "SELECT {UPLOAD_COLUMNS} FROM uploads WHERE updated_at < $1"
        ))
        .bind(cutoff_ms)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(upload_row).collect()
    }
}

/// Locks the rows of `table` (`repo_blobs` or `manifests`) for `wanted` in `repo_id` against
/// deletion until commit, and fails with the first of `wanted` that has no row.
async fn lock_present(
    conn: &mut PgConnection,
    table: &str,
    repo_id: i64,
    wanted: &[Digest],
) -> Result<()> {
    if wanted.is_empty() {
        return Ok(());
    }
    let keys: Vec<String> = wanted.iter().map(ToString::to_string).collect();
    // FOR SHARE: a concurrent DELETE of one of these rows either committed before this statement
    // (the row is not returned) or waits until we commit. Digest order keeps lock order fixed.
    // Deleted (restorable) manifests do not count.
    let live = if table == "manifests" {
        "AND deleted_at IS NULL"
    } else {
        ""
    };
    let found: HashSet<String> = sqlx::query_scalar::<_, String>(&format!(
        "SELECT digest FROM {table} WHERE repo_id = $1 AND digest = ANY($2) {live}
         ORDER BY digest COLLATE \"C\" FOR SHARE"
    ))
    .bind(repo_id)
    .bind(&keys)
    .fetch_all(conn)
    .await?
    .into_iter()
    .collect();
    match wanted.iter().zip(&keys).find(|(_, k)| !found.contains(*k)) {
        Some((missing, _)) => Err(MetaError::MissingReference(missing.clone())),
        None => Ok(()),
    }
}

/// Inserts the manifest row if absent and locks it until commit.
async fn insert_manifest(conn: &mut PgConnection, repo_id: i64, m: &NewManifest) -> Result<()> {
    let digest = m.digest.to_string();
    for _ in 0..RECREATE_ATTEMPTS {
        sqlx::query(
            "INSERT INTO manifests
               (repo_id, digest, media_type, artifact_type, subject, annotations, size, content,
                created_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
             ON CONFLICT (repo_id, digest) DO UPDATE SET deleted_at = NULL",
        )
        .bind(repo_id)
        .bind(&digest)
        .bind(m.media_type.as_str())
        .bind(m.artifact_type.as_ref().map(|a| a.as_str()))
        .bind(m.subject.as_ref().map(|s| s.to_string()))
        .bind(m.annotations.as_deref())
        .bind(m.content.len() as i64)
        .bind(&m.content)
        .bind(now_ms())
        .execute(&mut *conn)
        .await?;
        // The row may have existed and been deleted by a transaction that committed since the
        // INSERT looked; then the lock finds nothing and we insert it again.
        let held: Option<i32> = sqlx::query_scalar(
            "SELECT 1 FROM manifests WHERE repo_id = $1 AND digest = $2 FOR SHARE",
        )
        .bind(repo_id)
        .bind(&digest)
        .fetch_optional(&mut *conn)
        .await?;
        if held.is_some() {
            return Ok(());
        }
    }
    Err(MetaError::Conflict(format!(
        "manifest {digest} keeps being deleted while it is pushed"
    )))
}

async fn write_tag(
    conn: &mut PgConnection,
    repo_id: i64,
    tag: &Tag,
    digest: &str,
    mode: TagWrite,
) -> Result<()> {
    // ON CONFLICT DO UPDATE ends in exactly one insert or update, waiting for a concurrent
    // writer of the same tag to commit first. With a WHERE, the conflicting row is locked but
    // left alone when the condition is false: an immutable tag is refused iff it points elsewhere.
    let sql = match mode {
        TagWrite::Overwrite => {
            "INSERT INTO tags (repo_id, name, digest, updated_at) VALUES ($1, $2, $3, $4)
             ON CONFLICT (repo_id, name)
             DO UPDATE SET digest = EXCLUDED.digest, updated_at = EXCLUDED.updated_at"
        }
        TagWrite::Immutable => {
            "INSERT INTO tags (repo_id, name, digest, updated_at) VALUES ($1, $2, $3, $4)
             ON CONFLICT (repo_id, name)
             DO UPDATE SET updated_at = EXCLUDED.updated_at WHERE tags.digest = EXCLUDED.digest"
        }
    };
    let done = sqlx::query(sql)
        .bind(repo_id)
        .bind(tag.as_str())
        .bind(digest)
        .bind(now_ms())
        .execute(conn)
        .await?;
    if done.rows_affected() == 0 {
        return Err(MetaError::TagImmutable(tag.clone()));
    }
    Ok(())
}

impl PostgresBackend {
    async fn put_once(
        &self,
        repo: &RepoName,
        m: &NewManifest,
        tag: Option<(&Tag, TagWrite)>,
    ) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        let id = ensure_repo(&mut tx, repo).await?;
        lock_present(&mut tx, "repo_blobs", id, &m.blobs).await?;
        lock_present(&mut tx, "manifests", id, &m.manifests).await?;
        insert_manifest(&mut tx, id, m).await?;
        let digest = m.digest.to_string();
        let refs = m
            .blobs
            .iter()
            .map(|d| (d, "blob"))
            .chain(m.manifests.iter().map(|d| (d, "manifest")));
        for (child, kind) in refs {
            sqlx::query(
                "INSERT INTO manifest_refs (repo_id, manifest, child, kind) VALUES ($1, $2, $3, $4)
                 ON CONFLICT DO NOTHING",
            )
            .bind(id)
            .bind(&digest)
            .bind(child.to_string())
            .bind(kind)
            .execute(&mut *tx)
            .await?;
        }
        if let Some((tag, mode)) = tag {
            write_tag(&mut tx, id, tag, &digest, mode).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn delete_once(&self, repo: &RepoName, digest: &Digest) -> Result<DeletedManifest> {
        let mut tx = self.pool.begin().await?;
        let id = repo_id(&mut tx, repo).await?.ok_or(MetaError::NotFound)?;
        // Lock the manifest before reading its tags: a put that is tagging it holds a lock on
        // it, so we wait for it and then see (and remove) its tag.
        let found: Option<i32> = sqlx::query_scalar(
            "SELECT 1 FROM manifests WHERE repo_id = $1 AND digest = $2 AND deleted_at IS NULL
             FOR UPDATE",
        )
        .bind(id)
        .bind(digest.to_string())
        .fetch_optional(&mut *tx)
        .await?;
        if found.is_none() {
            return Err(MetaError::NotFound);
        }
        let now = now_ms();
        let mut tags: Vec<String> = sqlx::query_scalar(
            "WITH gone AS (DELETE FROM tags WHERE repo_id = $1 AND digest = $2 RETURNING name)
             INSERT INTO deleted_tags (repo_id, name, digest, deleted_at)
             SELECT $1, name, $2, $3 FROM gone RETURNING name",
        )
        .bind(id)
        .bind(digest.to_string())
        .bind(now)
        .fetch_all(&mut *tx)
        .await?;
        sqlx::query("UPDATE manifests SET deleted_at = $3 WHERE repo_id = $1 AND digest = $2")
            .bind(id)
            .bind(digest.to_string())
            .bind(now)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        // Bytewise, as the SQLite backend orders them.
        tags.sort_unstable();
        Ok(DeletedManifest {
            tags_removed: tags.iter().map(|t| parse(t)).collect::<Result<_>>()?,
        })
    }

    async fn restore_once(&self, repo: &RepoName, digest: &Digest) -> Result<Vec<Tag>> {
        let mut tx = self.pool.begin().await?;
        let id = repo_id(&mut tx, repo).await?.ok_or(MetaError::NotFound)?;
        let revived = sqlx::query(
            "UPDATE manifests SET deleted_at = NULL
             WHERE repo_id = $1 AND digest = $2 AND deleted_at IS NOT NULL",
        )
        .bind(id)
        .bind(digest.to_string())
        .execute(&mut *tx)
        .await?;
        if revived.rows_affected() == 0 {
            return Err(MetaError::NotFound);
        }
        // The tags deleted with it (its newest deletion), where the name is still free.
        let mut names: Vec<String> = sqlx::query_scalar(
            "INSERT INTO tags (repo_id, name, digest, updated_at)
             SELECT d.repo_id, d.name, d.digest, $3 FROM deleted_tags d
             WHERE d.repo_id = $1 AND d.digest = $2 AND d.deleted_at =
               (SELECT max(deleted_at) FROM deleted_tags WHERE repo_id = $1 AND digest = $2)
             ON CONFLICT (repo_id, name) DO NOTHING RETURNING name",
        )
        .bind(id)
        .bind(digest.to_string())
        .bind(now_ms())
        .fetch_all(&mut *tx)
        .await?;
        sqlx::query("DELETE FROM deleted_tags WHERE repo_id = $1 AND name = ANY($2)")
            .bind(id)
            .bind(&names)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        names.sort_unstable();
        names.iter().map(|n| parse(n)).collect()
    }

    async fn restore_tag_once(&self, repo: &RepoName, tag: &Tag) -> Result<Digest> {
        let mut tx = self.pool.begin().await?;
        let id = repo_id(&mut tx, repo).await?.ok_or(MetaError::NotFound)?;
        let current: Option<String> =
            sqlx::query_scalar("SELECT digest FROM tags WHERE repo_id = $1 AND name = $2")
                .bind(id)
                .bind(tag.as_str())
                .fetch_optional(&mut *tx)
                .await?;
        if let Some(c) = current {
            return Err(MetaError::Conflict(format!(
                "tag {tag} exists (it points at {c})"
            )));
        }
        let digest: String = sqlx::query_scalar(
            "SELECT d.digest FROM deleted_tags d
             JOIN manifests m ON m.repo_id = d.repo_id AND m.digest = d.digest
             WHERE d.repo_id = $1 AND d.name = $2 ORDER BY d.deleted_at DESC LIMIT 1
             FOR UPDATE OF m",
        )
        .bind(id)
        .bind(tag.as_str())
        .fetch_optional(&mut *tx)
        .await?
        .ok_or(MetaError::NotFound)?;
        let inserted = sqlx::query(
            "INSERT INTO tags (repo_id, name, digest, updated_at) VALUES ($1, $2, $3, $4)
             ON CONFLICT (repo_id, name) DO NOTHING",
        )
        .bind(id)
        .bind(tag.as_str())
        .bind(&digest)
        .bind(now_ms())
        .execute(&mut *tx)
        .await?;
        if inserted.rows_affected() == 0 {
            return Err(MetaError::Conflict(format!("tag {tag} exists")));
        }
        sqlx::query("UPDATE manifests SET deleted_at = NULL WHERE repo_id = $1 AND digest = $2")
            .bind(id)
            .bind(&digest)
            .execute(&mut *tx)
            .await?;
        sqlx::query("DELETE FROM deleted_tags WHERE repo_id = $1 AND name = $2")
            .bind(id)
            .bind(tag.as_str())
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        parse(&digest)
    }

    async fn purge_once(&self, before_ms: i64, limit: u32) -> Result<u64> {
        let mut tx = self.pool.begin().await?;
        let doomed: Vec<(i64, String)> = sqlx::query_as(
            "SELECT repo_id, digest FROM manifests
             WHERE deleted_at IS NOT NULL AND deleted_at < $1
             ORDER BY repo_id, digest LIMIT $2 FOR UPDATE SKIP LOCKED",
        )
        .bind(before_ms)
        .bind(i64::from(limit))
        .fetch_all(&mut *tx)
        .await?;
        let mut children = Vec::new();
        for (id, digest) in &doomed {
            let c: Vec<String> = sqlx::query_scalar(
                "SELECT child FROM manifest_refs
                 WHERE repo_id = $1 AND manifest = $2 AND kind = 'blob'",
            )
            .bind(id)
            .bind(digest)
            .fetch_all(&mut *tx)
            .await?;
            children.extend(c);
        }
        queue_deref(&mut tx, &children, now_ms()).await?;
        for (id, digest) in &doomed {
            // No tag points at a deleted manifest (deleting moves them aside); be sure.
            sqlx::query("DELETE FROM tags WHERE repo_id = $1 AND digest = $2")
                .bind(id)
                .bind(digest)
                .execute(&mut *tx)
                .await?;
            sqlx::query("DELETE FROM manifests WHERE repo_id = $1 AND digest = $2")
                .bind(id)
                .bind(digest)
                .execute(&mut *tx)
                .await?;
        }
        sqlx::query("DELETE FROM deleted_tags WHERE deleted_at < $1")
            .bind(before_ms)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(doomed.len() as u64)
    }
}

#[async_trait]
impl Manifests for PostgresBackend {
    async fn put(
        &self,
        repo: &RepoName,
        m: &NewManifest,
        tag: Option<(&Tag, TagWrite)>,
    ) -> Result<()> {
        retry("put manifest", || self.put_once(repo, m, tag)).await
    }

    async fn get(&self, repo: &RepoName, digest: &Digest) -> Result<Option<ManifestRecord>> {
        let row = sqlx::query(
            "SELECT m.media_type, m.content, m.subject FROM manifests m
             JOIN repositories r ON r.id = m.repo_id
             WHERE r.name = $1 AND m.digest = $2 AND m.deleted_at IS NULL",
        )
        .bind(repo.as_str())
        .bind(digest.to_string())
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| {
            Ok(ManifestRecord {
                digest: digest.clone(),
                media_type: parse(r.get::<&str, _>(0))?,
                content: r.get(1),
                subject: parse_opt(r.get(2))?,
            })
        })
        .transpose()
    }

    async fn get_tagged(&self, repo: &RepoName, tag: &Tag) -> Result<Option<ManifestRecord>> {
        let row = sqlx::query(
            "SELECT m.digest, m.media_type, m.content, m.subject FROM tags t
             JOIN repositories r ON r.id = t.repo_id
             JOIN manifests m ON m.repo_id = t.repo_id AND m.digest = t.digest
             WHERE r.name = $1 AND t.name = $2 AND m.deleted_at IS NULL",
        )
        .bind(repo.as_str())
        .bind(tag.as_str())
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| {
            Ok(ManifestRecord {
                digest: parse(r.get::<&str, _>(0))?,
                media_type: parse(r.get::<&str, _>(1))?,
                content: r.get(2),
                subject: parse_opt(r.get(3))?,
            })
        })
        .transpose()
    }

    async fn delete(&self, repo: &RepoName, digest: &Digest) -> Result<DeletedManifest> {
        retry("delete manifest", || self.delete_once(repo, digest)).await
    }

    async fn inventory(&self, repo: &RepoName) -> Result<Vec<ManifestInfo>> {
        let rows = sqlx::query(
            "SELECT m.digest, m.created_at, m.last_pulled_at, m.subject,
               ARRAY(SELECT t.name::text FROM tags t
                 WHERE t.repo_id = m.repo_id AND t.digest = m.digest ORDER BY t.name),
               ARRAY(SELECT r.child FROM manifest_refs r
                 WHERE r.repo_id = m.repo_id AND r.manifest = m.digest AND r.kind = 'manifest')
             FROM manifests m JOIN repositories rp ON rp.id = m.repo_id
             WHERE rp.name = $1 AND m.deleted_at IS NULL
             ORDER BY m.created_at, m.digest COLLATE \"C\"",
        )
        .bind(repo.as_str())
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                let tags: Vec<String> = r.get(4);
                let children: Vec<String> = r.get(5);
                Ok(ManifestInfo {
                    digest: parse(r.get::<&str, _>(0))?,
                    created_at_ms: r.get(1),
                    last_pulled_at_ms: r.get(2),
                    subject: parse_opt(r.get(3))?,
                    tags: tags.iter().map(|t| parse(t)).collect::<Result<_>>()?,
                    children: children.iter().map(|c| parse(c)).collect::<Result<_>>()?,
                })
            })
            .collect()
    }

    async fn record_pulls(&self, pulls: &[(RepoName, Digest, i64)]) -> Result<()> {
        if pulls.is_empty() {
            return Ok(());
        }
        let repos: Vec<&str> = pulls.iter().map(|p| p.0.as_str()).collect();
        let digests: Vec<String> = pulls.iter().map(|p| p.1.to_string()).collect();
        let times: Vec<i64> = pulls.iter().map(|p| p.2).collect();
        sqlx::query(
            "UPDATE manifests m SET last_pulled_at = GREATEST(coalesce(m.last_pulled_at, 0), v.at)
             FROM unnest($1::text[], $2::text[], $3::bigint[]) AS v(repo, digest, at)
             JOIN repositories r ON r.name = v.repo
             WHERE m.repo_id = r.id AND m.digest = v.digest",
        )
        .bind(&repos)
        .bind(&digests)
        .bind(&times)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn exclusive_bytes(&self, manifests: &[(RepoName, Digest)]) -> Result<u64> {
        let repos: Vec<&str> = manifests.iter().map(|p| p.0.as_str()).collect();
        let digests: Vec<String> = manifests.iter().map(|p| p.1.to_string()).collect();
        // Blobs referenced by the doomed manifests and by no manifest outside them.
        let bytes: Option<i64> = sqlx::query_scalar(
            "WITH doomed AS (
               SELECT r.id AS repo_id, v.digest FROM unnest($1::text[], $2::text[]) AS v(repo, digest)
               JOIN repositories r ON r.name = v.repo),
             blobs_of AS (
               SELECT DISTINCT mr.child FROM manifest_refs mr
               JOIN doomed d ON d.repo_id = mr.repo_id AND d.digest = mr.manifest
               WHERE mr.kind = 'blob')
             SELECT sum(b.size)::bigint FROM blobs_of x JOIN blobs b ON b.digest = x.child
             WHERE NOT EXISTS (
               SELECT 1 FROM manifest_refs o WHERE o.child = x.child AND o.kind = 'blob'
               AND NOT EXISTS (SELECT 1 FROM doomed d
                               WHERE d.repo_id = o.repo_id AND d.digest = o.manifest))",
        )
        .bind(&repos)
        .bind(&digests)
        .fetch_one(&self.pool)
        .await?;
        Ok(bytes.unwrap_or(0) as u64)
    }

    async fn restore(&self, repo: &RepoName, digest: &Digest) -> Result<Vec<Tag>> {
        retry("restore manifest", || self.restore_once(repo, digest)).await
    }

    async fn restore_tag(&self, repo: &RepoName, tag: &Tag) -> Result<Digest> {
        retry("restore tag", || self.restore_tag_once(repo, tag)).await
    }

    async fn deleted(&self, repo: &RepoName) -> Result<Vec<Deleted>> {
        let rows = sqlx::query(
            "SELECT NULL::text, m.digest, m.deleted_at FROM manifests m
             JOIN repositories r ON r.id = m.repo_id
             WHERE r.name = $1 AND m.deleted_at IS NOT NULL
             UNION ALL
             SELECT d.name, d.digest, d.deleted_at FROM deleted_tags d
             JOIN repositories r ON r.id = d.repo_id
             JOIN manifests m ON m.repo_id = d.repo_id AND m.digest = d.digest
             WHERE r.name = $1
             ORDER BY 3 DESC, 1 NULLS FIRST, 2",
        )
        .bind(repo.as_str())
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                let name: Option<String> = r.get(0);
                let digest = parse(r.get::<&str, _>(1))?;
                let deleted_at_ms: i64 = r.get(2);
                Ok(match name {
                    None => Deleted::Manifest {
                        digest,
                        deleted_at_ms,
                    },
                    Some(n) => Deleted::Tag {
                        tag: parse(&n)?,
                        digest,
                        deleted_at_ms,
                    },
                })
            })
            .collect()
    }

    async fn purge_deleted(&self, before_ms: i64, limit: u32) -> Result<u64> {
        retry("purge deleted manifests", || {
            self.purge_once(before_ms, limit)
        })
        .await
    }

    async fn list(&self, repo: &RepoName) -> Result<Vec<Digest>> {
        let rows: Vec<String> = sqlx::query_scalar(
            "SELECT m.digest FROM manifests m JOIN repositories r ON r.id = m.repo_id
             WHERE r.name = $1 AND m.deleted_at IS NULL ORDER BY m.created_at, m.digest",
        )
        .bind(repo.as_str())
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(|s| parse(s)).collect()
    }

    async fn referrers(
        &self,
        repo: &RepoName,
        subject: &Digest,
        artifact_type: Option<&str>,
    ) -> Result<Vec<Referrer>> {
        let rows = sqlx::query(
            "SELECT m.digest, m.media_type, m.artifact_type, m.size, m.annotations FROM manifests m
             JOIN repositories r ON r.id = m.repo_id
             WHERE r.name = $1 AND m.subject = $2 AND ($3::text IS NULL OR m.artifact_type = $3)
               AND m.deleted_at IS NULL
             ORDER BY m.created_at, m.digest COLLATE \"C\"",
        )
        .bind(repo.as_str())
        .bind(subject.to_string())
        .bind(artifact_type)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(Referrer {
                    digest: parse(r.get::<&str, _>(0))?,
                    media_type: parse(r.get::<&str, _>(1))?,
                    artifact_type: parse_opt(r.get(2))?,
                    size: r.get::<i64, _>(3) as u64,
                    annotations: r.get(4),
                })
            })
            .collect()
    }
}

#[async_trait]
impl Tags for PostgresBackend {
    async fn resolve(&self, repo: &RepoName, tag: &Tag) -> Result<Option<Digest>> {
        let d: Option<String> = sqlx::query_scalar(
            "SELECT t.digest FROM tags t JOIN repositories r ON r.id = t.repo_id
             WHERE r.name = $1 AND t.name = $2",
        )
        .bind(repo.as_str())
        .bind(tag.as_str())
        .fetch_optional(&self.pool)
        .await?;
        parse_opt(d)
    }

    async fn list(&self, repo: &RepoName, n: u32, last: Option<&str>) -> Result<Option<Vec<Tag>>> {
        // No row: no such repository.
        let row: Option<(i64, Vec<String>)> = sqlx::query_as(
            "SELECT r.id, ARRAY(SELECT t.name FROM tags t WHERE t.repo_id = r.id AND t.name > $2
                                ORDER BY t.name LIMIT $3)
             FROM repositories r WHERE r.name = $1",
        )
        .bind(repo.as_str())
        .bind(last.unwrap_or(""))
        .bind(i64::from(n))
        .fetch_optional(&self.pool)
        .await?;
        row.map(|(_, names)| names.iter().map(|s| parse(s)).collect())
            .transpose()
    }

    async fn pointing_at(&self, repo: &RepoName, digest: &Digest) -> Result<Vec<Tag>> {
        let rows: Vec<String> = sqlx::query_scalar(
            "SELECT t.name FROM tags t JOIN repositories r ON r.id = t.repo_id
             WHERE r.name = $1 AND t.digest = $2 ORDER BY t.name",
        )
        .bind(repo.as_str())
        .bind(digest.to_string())
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(|s| parse(s)).collect()
    }

    async fn delete(&self, repo: &RepoName, tag: &Tag) -> Result<()> {
        // Moved aside, restorable within the undelete window.
        let done = sqlx::query(
            "WITH gone AS (
               DELETE FROM tags WHERE name = $1
               AND repo_id = (SELECT id FROM repositories WHERE name = $2)
               RETURNING repo_id, name, digest)
             INSERT INTO deleted_tags (repo_id, name, digest, deleted_at)
             SELECT repo_id, name, digest, $3 FROM gone",
        )
        .bind(tag.as_str())
        .bind(repo.as_str())
        .bind(now_ms())
        .execute(&self.pool)
        .await?;
        if done.rows_affected() == 0 {
            return Err(MetaError::NotFound);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use sqlx::{Connection, PgConnection};
    use tokio::task::JoinHandle;

    use crate::conformance::{d, manifest, pg::TestDb, repo, tag};
    use crate::{MetaError, TagWrite};

    /// Polls until another session of this database waits for a lock; false if `task` finishes
    /// first or after 10 s.
    async fn waits_for_a_lock<T>(probe: &mut PgConnection, task: &JoinHandle<T>) -> bool {
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline && !task.is_finished() {
            let waiting: i64 = sqlx::query_scalar(
                "SELECT count(*) FROM pg_stat_activity
                 WHERE wait_event_type = 'Lock' AND datname = current_database()",
            )
            .fetch_one(&mut *probe)
            .await
            .unwrap();
            if waiting > 0 {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        false
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn manifest_put_waits_for_a_concurrent_unlink_and_then_fails() {
        let db = TestDb::create().await;
        let meta = db.store().await;
        let r = repo("x");
        meta.blobs().record_and_link(&r, &d('1'), 1).await.unwrap();

        // Another node unlinks the blob and has not committed yet.
        let mut other = PgConnection::connect(&db.url).await.unwrap();
        sqlx::query("BEGIN").execute(&mut other).await.unwrap();
        let gone = sqlx::query("DELETE FROM repo_blobs WHERE digest = $1")
            .bind(d('1').to_string())
            .execute(&mut other)
            .await
            .unwrap();
        assert_eq!(gone.rows_affected(), 1);

        let put = tokio::spawn({
            let (meta, r) = (meta.clone(), r.clone());
            async move {
                let m = manifest(d('a'), vec![d('1')], None);
                let v1 = tag("v1");
                meta.manifests()
                    .put(&r, &m, Some((&v1, TagWrite::Overwrite)))
                    .await
            }
        });
        let mut probe = PgConnection::connect(&db.url).await.unwrap();
        let blocked = waits_for_a_lock(&mut probe, &put).await;
        assert!(
            blocked && !put.is_finished(),
            "the put must wait for the uncommitted unlink, not read past it"
        );
        sqlx::query("COMMIT").execute(&mut other).await.unwrap();

        let res = put.await.unwrap();
        assert!(
            matches!(&res, Err(MetaError::MissingReference(x)) if *x == d('1')),
            "{res:?}"
        );
        assert_eq!(meta.tags().resolve(&r, &tag("v1")).await.unwrap(), None);
        assert!(meta.manifests().get(&r, &d('a')).await.unwrap().is_none());
    }
}
