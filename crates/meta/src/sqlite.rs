//! SQLite backend. One writer connection (SQLite allows one writer; a single connection avoids
//! lock-upgrade deadlocks between our own transactions), a pool of readers over WAL, one
//! background connection (idle CPU priority) that reads for garbage collection, and one that
//! checkpoints the log; neither writes rows. Because every write goes through the one writer
//! connection, transactions here are serializable; garbage collection (`sqlite/gc.rs`) relies on
//! it. Manifest writes are committed in groups (`sqlite/group.rs`) and manifest reads cached
//! until the next commit (`sqlite/cache.rs`).

mod gc;

mod access;
mod cache;
mod group;
mod tag_names;

use std::collections::HashMap;
use std::path::Path;
use std::str::FromStr;
use std::sync::Mutex;
use std::time::Duration;

mod trust;

/// The promotion aggregate's SQL, shared with the other backend (`crate::promotion`).
mod promotion {
    use super::SqliteBackend;
    use bonded_types::{Digest, RepoName};
    crate::promotion::promotions_sql!(SqliteBackend, sqlx::sqlite::SqliteRow, writer, reader);
}

/// Vulnerability operations' SQL, shared with the other backend (`crate::vuln_ops`).
mod vuln_ops {
    use super::SqliteBackend;
    use bonded_types::{Digest, RepoName};
    crate::vuln_ops::vuln_ops_sql!(SqliteBackend, writer, reader);
}

/// The vulnerability aggregate's SQL, shared with the other backend (`crate::vulns`).
mod vulns {
    use super::SqliteBackend;
    use bonded_types::{Digest, RepoName};
    crate::vulns::vulns_sql!(SqliteBackend, sqlx::sqlite::SqliteRow, writer, reader);
}

/// The waiver aggregate's SQL, shared with the other backend (`crate::waivers`).
mod waivers {
    use super::SqliteBackend;
    use bonded_types::{Digest, RepoName};
    crate::waivers::waivers_sql!(SqliteBackend, sqlx::sqlite::SqliteRow, writer, reader);
}

use async_trait::async_trait;
use bonded_types::{Digest, RepoName, Tag, UploadId};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::{Row, Sqlite, SqliteConnection, Transaction};

use crate::{
    now_ms, Blobs, Deleted, DeletedManifest, LinkedBlob, ManifestInfo, ManifestRecord, Manifests,
    MetaError, NewManifest, Referrer, Repos, Result, TagWrite, Tags, UploadRecord, Uploads,
};

pub(crate) struct SqliteBackend {
    writer: SqlitePool,
    reader: SqlitePool,
    /// One connection for background reads (garbage collection's look-ups): its worker thread is
    /// scheduled as idle, so those queries get only the CPU requests leave unused.
    background: SqlitePool,
    /// The wal-index header, which changes with every commit (see `sqlite/cache.rs`).
    wal: cache::WalStamp,
    /// Manifests read since the last commit, by repository and reference.
    manifests: cache::Cache<ManifestRecord>,
    /// Each repository's tag generation read since the last commit, by repository name.
    tag_current: cache::Cache<tag_names::Version>,
    /// Every tag name of the repositories listed, kept across commits and brought up to date
    /// from the tag log (see `sqlite/tag_names.rs`).
    tag_names: tag_names::TagNames,
    /// Repositories with more tags than this are listed a page at a time (`tag_names::MAX_NAMES`;
    /// lowered by tests).
    tag_names_max: i64,
    /// Statements that read tag names from `tags` rather than the log (tests count them).
    tag_reads: std::sync::atomic::AtomicU64,
    /// Repository ids by name, once committed: rows of `repositories` are never deleted or
    /// renamed, so an id read once stays right, and a manifest write skips looking it up.
    repo_ids: RepoIds,
    /// Manifest writes and audit appends, committed in groups (see `sqlite/group.rs`).
    group: group::GroupCommit,
    /// Dropped with the backend, which stops the checkpointer.
    _checkpointer: tokio::sync::oneshot::Sender<()>,
}

fn parse<T: FromStr>(s: &str) -> Result<T>
where
    T::Err: std::fmt::Display,
{
    s.parse::<T>()
        .map_err(|e| MetaError::Corrupt(format!("{s:?}: {e}")))
}

/// A newline-separated list from `group_concat`, or none.
fn split_list<T: FromStr>(s: Option<String>) -> Result<Vec<T>>
where
    T::Err: std::fmt::Display,
{
    match s.as_deref() {
        None | Some("") => Ok(Vec::new()),
        Some(j) => j.split('\n').map(parse).collect(),
    }
}

/// The rows of `tag_log` as `list` reads them: `1name` (added) or `0name` (removed), one a line.
fn split_changes(s: Option<String>) -> Result<Vec<tag_names::Change>> {
    let Some(s) = s.filter(|s| !s.is_empty()) else {
        return Ok(Vec::new());
    };
    s.split('\n')
        .map(|line| match line.split_at_checked(1) {
            Some(("1", name)) => Ok(tag_names::Change {
                name: parse(name)?,
                added: true,
            }),
            Some(("0", name)) => Ok(tag_names::Change {
                name: parse(name)?,
                added: false,
            }),
            _ => Err(MetaError::Corrupt(format!("tag log row {line:?}"))),
        })
        .collect()
}

fn parse_opt<T: FromStr>(s: Option<String>) -> Result<Option<T>>
where
    T::Err: std::fmt::Display,
{
    s.as_deref().map(parse).transpose()
}

/// Budgets of the read caches (`sqlite/cache.rs`).
const MANIFEST_CACHE_BYTES: usize = 32 << 20;
const TAG_CURRENT_CACHE_BYTES: usize = 1 << 20;
const TAG_NAMES_BYTES: usize = 32 << 20;

/// The collation the background connection's thread is lowered through (see `open`).
const BACKGROUND_COLLATION: &str = "bonded_background";

/// Puts the calling thread in the idle scheduling class (Linux `SCHED_IDLE`), once: it then runs
/// only when no normal thread wants the CPU. Garbage collection's reads go there, and measured on
/// 2 cores that is what keeps pull latency at idle levels while a collection runs (a 50 % CPU load
/// at normal or lowest nice priority tripled pull p99; the same load as SCHED_IDLE did not).
/// Where the class cannot be set, the thread stays as it is and collection still works.
fn background_thread() {
    thread_local! {
        static LOWERED: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
    }
    if LOWERED.with(|l| l.replace(true)) {
        return;
    }
    #[cfg(target_os = "linux")]
    {
        use thread_priority::unix::{
            set_thread_priority_and_policy, thread_native_id, NormalThreadSchedulePolicy,
            ThreadSchedulePolicy,
        };
        if let Err(e) = set_thread_priority_and_policy(
            thread_native_id(),
            thread_priority::ThreadPriority::Min,
            ThreadSchedulePolicy::Normal(NormalThreadSchedulePolicy::Idle),
        ) {
            tracing::warn!(error = ?e, "background metadata reads run at normal priority");
        }
    }
}

/// How often the checkpointer copies committed pages from the write-ahead log into the database.
const CHECKPOINT_EVERY: Duration = Duration::from_millis(200);
/// Log size (pages) at which a commit checkpoints by itself: only when the checkpointer is far
/// behind (SQLite's default is 1000).
const WAL_BACKSTOP_PAGES: u32 = 20_000;

/// Checkpoints the write-ahead log on its own connection until `stop` fires (or its
/// sender is dropped). Left to SQLite, the commit that grows the log past 1000 pages does the
/// checkpoint itself, on the one writer: a push then waits for megabytes of page copies and an
/// fsync of the database file, and everyone queued behind it waits too. A passive checkpoint
/// never blocks readers or the writer, and durability does not depend on it (every commit is on
/// disk in the log).
async fn checkpoints(pool: SqlitePool, mut stop: tokio::sync::oneshot::Receiver<()>) {
    let mut tick = tokio::time::interval(CHECKPOINT_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = &mut stop => return,
            _ = tick.tick() => {}
        }
        if let Err(e) = sqlx::query("PRAGMA wal_checkpoint(PASSIVE)")
            .execute(&pool)
            .await
        {
            tracing::debug!(error = %e, "write-ahead log checkpoint failed; retrying");
        }
    }
}

impl SqliteBackend {
    pub(crate) async fn open(path: &Path) -> Result<SqliteBackend> {
        let opts = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            // FULL: a commit is on disk before we acknowledge it, even across power loss.
            .synchronous(SqliteSynchronous::Full)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(10));
        // Checkpoints are the checkpointer's job (see `checkpoints`); the writer's own automatic
        // checkpoint stays as a backstop for when it falls far behind.
        let writer = SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(
                opts.clone()
                    .pragma("wal_autocheckpoint", WAL_BACKSTOP_PAGES.to_string()),
            )
            .await?;
        sqlx::migrate!("./migrations/sqlite").run(&writer).await?;
        let reader = SqlitePoolOptions::new()
            .max_connections(8)
            .connect_with(opts.clone().read_only(true))
            .await?;
        // sqlx runs each connection's statements on a thread of its own. A collation is code
        // SQLite calls on that thread, so comparing under it once, right after connecting, is
        // how the thread lowers its own scheduling class.
        let background = SqlitePoolOptions::new()
            .max_connections(1)
            .after_connect(|conn, _| {
                Box::pin(async move {
                    sqlx::query(&format!("SELECT 'a' < 'b' COLLATE {BACKGROUND_COLLATION}"))
                        .execute(conn)
                        .await?;
                    Ok(())
                })
            })
            .connect_with(
                opts.clone()
                    .thread_name(|id| format!("sqlite-bg-{id}"))
                    .collation(BACKGROUND_COLLATION, |a, b| {
                        background_thread();
                        a.cmp(b)
                    }),
            )
            .await?;
        // Checkpoints run at normal priority: at idle priority they starved under sustained
        // writes and the log grew to the backstop, which the writer then checkpoints itself.
        let checkpointer = SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(opts)
            .await?;
        let (stop, stopped) = tokio::sync::oneshot::channel();
        tokio::spawn(checkpoints(checkpointer, stopped));
        Ok(SqliteBackend {
            writer: writer.clone(),
            reader,
            background,
            wal: cache::WalStamp::new(path),
            manifests: cache::Cache::new(MANIFEST_CACHE_BYTES),
            tag_current: cache::Cache::new(TAG_CURRENT_CACHE_BYTES),
            tag_names: tag_names::TagNames::new(TAG_NAMES_BYTES),
            tag_names_max: tag_names::MAX_NAMES,
            tag_reads: Default::default(),
            repo_ids: RepoIds::default(),
            group: group::GroupCommit::start(writer.clone()),
            _checkpointer: stop,
        })
    }

    pub(crate) fn reader(&self) -> &SqlitePool {
        &self.reader
    }

    pub(crate) fn writer(&self) -> &SqlitePool {
        &self.writer
    }

    async fn begin(&self) -> Result<Transaction<'static, Sqlite>> {
        Ok(self.writer.begin().await?)
    }
}

/// Committed repository ids by name (see `SqliteBackend::repo_ids`), up to `REPO_IDS_MAX`; past
/// it the map starts over.
#[derive(Default)]
struct RepoIds(Mutex<HashMap<RepoName, i64>>);

const REPO_IDS_MAX: usize = 100_000;

impl RepoIds {
    fn get(&self, repo: &RepoName) -> Option<i64> {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(repo)
            .copied()
    }

    fn insert(&self, repo: RepoName, id: i64) {
        let mut ids = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if ids.len() >= REPO_IDS_MAX {
            ids.clear();
        }
        ids.insert(repo, id);
    }
}

async fn ensure_repo(conn: &mut SqliteConnection, repo: &RepoName) -> Result<i64> {
    // The no-op update makes RETURNING answer for an existing row too: one statement.
    let id: i64 = sqlx::query_scalar(
        "INSERT INTO repositories (name, created_at) VALUES (?, ?)
         ON CONFLICT(name) DO UPDATE SET name = excluded.name RETURNING id",
    )
    .bind(repo.as_str())
    .bind(now_ms())
    .fetch_one(&mut *conn)
    .await?;
    Ok(id)
}

/// A JSON array of digests, for `json_each`.
fn json_digests(digests: &[Digest]) -> String {
    serde_json::Value::from(digests.iter().map(Digest::to_string).collect::<Vec<_>>()).to_string()
}

/// The referenced blobs (JSON array `?2`), then child manifests (`?3`), that repository `?1`
/// lacks, in that order.
macro_rules! missing_refs_sql {
    () => {
        "SELECT value FROM json_each(?2) WHERE NOT EXISTS
           (SELECT 1 FROM repo_blobs WHERE repo_id = ?1 AND digest = value)
         UNION ALL
         SELECT value FROM json_each(?3) WHERE NOT EXISTS
           (SELECT 1 FROM manifests WHERE repo_id = ?1 AND digest = value AND deleted_at IS NULL)"
    };
}

/// Stores a manifest and points its tag in repository `id`, inside the caller's transaction (see
/// [`Manifests::put`]). Three statements whatever the manifest's size: each is a round trip to
/// the connection's thread, and the writer is held for all of them.
async fn put_manifest(
    conn: &mut SqliteConnection,
    id: i64,
    m: &NewManifest,
    tag: Option<(&Tag, TagWrite)>,
) -> Result<()> {
    let (blobs, children) = (json_digests(&m.blobs), json_digests(&m.manifests));
    let digest = m.digest.to_string();
    // Stored only if the repository has every referenced blob and child manifest: the check and
    // the write are one statement (a round trip to the connection's thread each). An upsert
    // counts as a row changed, so none means something is missing.
    let stored = sqlx::query(concat!(
        "INSERT INTO manifests
           (repo_id, digest, media_type, artifact_type, subject, annotations, size, content, created_at)
         SELECT ?1, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11
         WHERE NOT EXISTS (",
        missing_refs_sql!(),
        ") ON CONFLICT (repo_id, digest) DO UPDATE SET deleted_at = NULL"
    ))
    .bind(id)
    .bind(&blobs)
    .bind(&children)
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
    if stored.rows_affected() == 0 {
        // Name the first referenced blob, then child manifest, the repository lacks.
        let missing: Option<String> = sqlx::query_scalar(concat!(missing_refs_sql!(), " LIMIT 1"))
            .bind(id)
            .bind(&blobs)
            .bind(&children)
            .fetch_optional(&mut *conn)
            .await?;
        return Err(match missing {
            Some(d) => MetaError::MissingReference(parse(&d)?),
            None => MetaError::Corrupt(format!("manifest {digest} was not stored")),
        });
    }
    // (`WHERE true` tells the parser the ON CONFLICT belongs to the INSERT.)
    sqlx::query(
        "INSERT INTO manifest_refs (repo_id, manifest, child, kind)
         SELECT ?1, ?2, value, 'blob' FROM json_each(?3)
         UNION ALL
         SELECT ?1, ?2, value, 'manifest' FROM json_each(?4) WHERE true
         ON CONFLICT DO NOTHING",
    )
    .bind(id)
    .bind(&digest)
    .bind(&blobs)
    .bind(&children)
    .execute(&mut *conn)
    .await?;
    if let Some((tag, mode)) = tag {
        // An immutable tag moves nowhere else: the update applies only if it may.
        let moved = sqlx::query(
            "INSERT INTO tags (repo_id, name, digest, updated_at) VALUES (?, ?, ?, ?)
             ON CONFLICT(repo_id, name) DO UPDATE SET
               digest = excluded.digest, updated_at = excluded.updated_at
             WHERE ? OR tags.digest = excluded.digest",
        )
        .bind(id)
        .bind(tag.as_str())
        .bind(&digest)
        .bind(now_ms())
        .bind(mode == TagWrite::Overwrite)
        .execute(&mut *conn)
        .await?;
        if moved.rows_affected() == 0 {
            return Err(MetaError::TagImmutable(tag.clone()));
        }
    }
    Ok(())
}

/// Queues a blob that was just linked: if it was marked for collection, it is not any more.
async fn queue_use(tx: &mut Transaction<'_, Sqlite>, digest: &Digest, now: i64) -> Result<()> {
    sqlx::query(
        "INSERT INTO gc_queue (digest, due_at) VALUES (?, ?)
         ON CONFLICT(digest) DO UPDATE SET
           due_at = min(gc_queue.due_at, excluded.due_at), marked_at = NULL, gen = gc_queue.gen + 1",
    )
    .bind(digest.to_string())
    .bind(now)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Queues a blob that may just have lost its last reference.
async fn queue_deref(tx: &mut Transaction<'_, Sqlite>, digest: &str, now: i64) -> Result<()> {
    sqlx::query(
        "INSERT INTO gc_queue (digest, due_at) VALUES (?, ?)
         ON CONFLICT(digest) DO UPDATE SET
           due_at = min(gc_queue.due_at, excluded.due_at), gen = gc_queue.gen + 1",
    )
    .bind(digest)
    .bind(now)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Whether a sweep is deleting the blob (`None`: no such blob).
async fn deleting(tx: &mut Transaction<'_, Sqlite>, digest: &Digest) -> Result<Option<bool>> {
    let row: Option<Option<i64>> =
        sqlx::query_scalar("SELECT deleting_at FROM blobs WHERE digest = ?")
            .bind(digest.to_string())
            .fetch_optional(&mut **tx)
            .await?;
    Ok(row.map(|d| d.is_some()))
}

/// Moves a tag to `deleted_tags`. False if there was no such tag.
async fn trash_tag(
    tx: &mut Transaction<'_, Sqlite>,
    repo_id: i64,
    name: &str,
    now: i64,
) -> Result<bool> {
    let digest: Option<String> =
        sqlx::query_scalar("DELETE FROM tags WHERE repo_id = ? AND name = ? RETURNING digest")
            .bind(repo_id)
            .bind(name)
            .fetch_optional(&mut **tx)
            .await?;
    let Some(digest) = digest else {
        return Ok(false);
    };
    sqlx::query("INSERT INTO deleted_tags (repo_id, name, digest, deleted_at) VALUES (?, ?, ?, ?)")
        .bind(repo_id)
        .bind(name)
        .bind(digest)
        .bind(now)
        .execute(&mut **tx)
        .await?;
    Ok(true)
}

/// Points a tag at `digest` again and forgets its deletions.
async fn untrash_tag(
    tx: &mut Transaction<'_, Sqlite>,
    repo_id: i64,
    name: &str,
    digest: &str,
) -> Result<()> {
    sqlx::query("INSERT INTO tags (repo_id, name, digest, updated_at) VALUES (?, ?, ?, ?)")
        .bind(repo_id)
        .bind(name)
        .bind(digest)
        .bind(now_ms())
        .execute(&mut **tx)
        .await?;
    sqlx::query("DELETE FROM deleted_tags WHERE repo_id = ? AND name = ?")
        .bind(repo_id)
        .bind(name)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

async fn repo_id(tx: &mut Transaction<'_, Sqlite>, repo: &RepoName) -> Result<Option<i64>> {
    Ok(
        sqlx::query_scalar("SELECT id FROM repositories WHERE name = ?")
            .bind(repo.as_str())
            .fetch_optional(&mut **tx)
            .await?,
    )
}

#[async_trait]
impl Repos for SqliteBackend {
    async fn list(&self, n: u32, last: Option<&str>) -> Result<Vec<RepoName>> {
        let rows: Vec<String> = sqlx::query_scalar(
            "SELECT name FROM repositories WHERE name > ? ORDER BY name LIMIT ?",
        )
        .bind(last.unwrap_or(""))
        .bind(n as i64)
        .fetch_all(&self.reader)
        .await?;
        rows.iter().map(|s| parse(s)).collect()
    }

    async fn exists(&self, repo: &RepoName) -> Result<bool> {
        let row: Option<i64> = sqlx::query_scalar("SELECT id FROM repositories WHERE name = ?")
            .bind(repo.as_str())
            .fetch_optional(&self.reader)
            .await?;
        Ok(row.is_some())
    }
}

#[async_trait]
impl Blobs for SqliteBackend {
    async fn record_and_link(&self, repo: &RepoName, digest: &Digest, size: u64) -> Result<()> {
        let mut tx = self.begin().await?;
        let now = now_ms();
        sqlx::query("INSERT INTO blobs (digest, size, created_at) VALUES (?, ?, ?) ON CONFLICT(digest) DO NOTHING")
            .bind(digest.to_string())
            .bind(size as i64)
            .bind(now)
            .execute(&mut *tx)
            .await?;
        if deleting(&mut tx, digest).await? == Some(true) {
            return Err(MetaError::Conflict(format!(
                "blob {digest} is being garbage-collected"
            )));
        }
        queue_use(&mut tx, digest, now).await?;
        let id = ensure_repo(&mut tx, repo).await?;
        sqlx::query(
            "INSERT INTO repo_blobs (repo_id, digest, created_at) VALUES (?, ?, ?)
             ON CONFLICT DO UPDATE SET created_at = excluded.created_at",
        )
        .bind(id)
        .bind(digest.to_string())
        .bind(now)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn linked_size(&self, repo: &RepoName, digest: &Digest) -> Result<Option<LinkedBlob>> {
        let row: Option<(i64, bool, bool)> = sqlx::query_as(
            "SELECT b.size, q.marked_at IS NOT NULL, qb.digest IS NOT NULL FROM repo_blobs rb
             JOIN repositories r ON r.id = rb.repo_id
             JOIN blobs b ON b.digest = rb.digest
             LEFT JOIN gc_queue q ON q.digest = rb.digest
             LEFT JOIN quarantined_blobs qb ON qb.digest = rb.digest
             WHERE r.name = ? AND rb.digest = ?",
        )
        .bind(repo.as_str())
        .bind(digest.to_string())
        .fetch_optional(&self.reader)
        .await?;
        Ok(row.map(|(size, marked, quarantined)| LinkedBlob {
            size: size as u64,
            marked,
            quarantined,
        }))
    }

    async fn size(&self, digest: &Digest) -> Result<Option<u64>> {
        let size: Option<i64> =
            sqlx::query_scalar("SELECT size FROM blobs WHERE digest = ? AND deleting_at IS NULL")
                .bind(digest.to_string())
                .fetch_optional(&self.reader)
                .await?;
        Ok(size.map(|s| s as u64))
    }

    async fn link(&self, repo: &RepoName, digest: &Digest) -> Result<u64> {
        let mut tx = self.begin().await?;
        let size: Option<i64> =
            sqlx::query_scalar("SELECT size FROM blobs WHERE digest = ? AND deleting_at IS NULL")
                .bind(digest.to_string())
                .fetch_optional(&mut *tx)
                .await?;
        let size = size.ok_or(MetaError::NotFound)?;
        let now = now_ms();
        queue_use(&mut tx, digest, now).await?;
        let id = ensure_repo(&mut tx, repo).await?;
        // A fresh link time: the blob was just used, so collection spares it for a grace period.
        sqlx::query(
            "INSERT INTO repo_blobs (repo_id, digest, created_at) VALUES (?, ?, ?)
             ON CONFLICT DO UPDATE SET created_at = excluded.created_at",
        )
        .bind(id)
        .bind(digest.to_string())
        .bind(now)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(size as u64)
    }

    async fn unlink(&self, repo: &RepoName, digest: &Digest) -> Result<()> {
        let mut tx = self.begin().await?;
        let done = sqlx::query(
            "DELETE FROM repo_blobs WHERE digest = ?
             AND repo_id = (SELECT id FROM repositories WHERE name = ?)",
        )
        .bind(digest.to_string())
        .bind(repo.as_str())
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() == 0 {
            return Err(MetaError::NotFound);
        }
        queue_deref(&mut tx, &digest.to_string(), now_ms()).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn linked(&self, repo: &RepoName) -> Result<Vec<(Digest, u64)>> {
        let rows = sqlx::query(
            "SELECT rb.digest, b.size FROM repo_blobs rb
             JOIN repositories r ON r.id = rb.repo_id
             JOIN blobs b ON b.digest = rb.digest
             WHERE r.name = ? ORDER BY rb.digest",
        )
        .bind(repo.as_str())
        .fetch_all(&self.reader)
        .await?;
        rows.iter()
            .map(|r| Ok((parse(r.get::<&str, _>(0))?, r.get::<i64, _>(1) as u64)))
            .collect()
    }
}

fn upload_row(r: &sqlx::sqlite::SqliteRow) -> Result<UploadRecord> {
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
impl Uploads for SqliteBackend {
    async fn create(&self, id: &UploadId, repo: &RepoName, state: &str) -> Result<()> {
        let now = now_ms();
        sqlx::query(
            "INSERT INTO uploads (id, repo, size, state, created_at, updated_at) VALUES (?, ?, 0, ?, ?, ?)",
        )
        .bind(id.as_str())
        .bind(repo.as_str())
        .bind(state)
        .bind(now)
        .bind(now)
        .execute(&self.writer)
        .await?;
        Ok(())
    }

    async fn get(&self, id: &UploadId) -> Result<Option<UploadRecord>> {
        // Read through the writer: a session is usually read right after it was written.
        let row = sqlx::query(&format!(
            "SELECT {UPLOAD_COLUMNS} FROM uploads WHERE id = ?"
        ))
        .bind(id.as_str())
        .fetch_optional(&self.writer)
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
        let done = sqlx::query(
            "UPDATE uploads SET size = ?, state = ?, updated_at = ? WHERE id = ? AND size = ?",
        )
        .bind(to_size as i64)
        .bind(state)
        .bind(now_ms())
        .bind(id.as_str())
        .bind(from_size as i64)
        .execute(&self.writer)
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
        let mut tx = self.begin().await?;
        sqlx::query("DELETE FROM blob_pins WHERE upload_id = ?")
            .bind(id.as_str())
            .execute(&mut *tx)
            .await?;
        sqlx::query("DELETE FROM uploads WHERE id = ?")
            .bind(id.as_str())
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn idle_since(&self, cutoff_ms: i64) -> Result<Vec<UploadRecord>> {
        let rows = sqlx::query(&format!(
            "SELECT {UPLOAD_COLUMNS} FROM uploads WHERE updated_at < ?"
        ))
        .bind(cutoff_ms)
        .fetch_all(&self.reader)
        .await?;
        rows.iter().map(upload_row).collect()
    }
}

#[async_trait]
impl Manifests for SqliteBackend {
    async fn put(
        &self,
        repo: &RepoName,
        m: &NewManifest,
        tag: Option<(&Tag, TagWrite)>,
    ) -> Result<()> {
        let (repo, m) = (repo.clone(), m.clone());
        let tag = tag.map(|(t, mode)| (t.clone(), mode));
        let known = self.repo_ids.get(&repo);
        let name = repo.clone();
        let id = self
            .group
            .run(move |conn| {
                Box::pin(async move {
                    let id = match known {
                        Some(id) => id,
                        None => ensure_repo(conn, &name).await?,
                    };
                    put_manifest(conn, id, &m, tag.as_ref().map(|(t, mode)| (t, *mode))).await?;
                    Ok(id)
                })
            })
            .await?;
        // Committed, so the repository's row is too.
        if known.is_none() {
            self.repo_ids.insert(repo, id);
        }
        Ok(())
    }

    async fn get(&self, repo: &RepoName, digest: &Digest) -> Result<Option<ManifestRecord>> {
        let reference = digest.to_string();
        let key = format!("{repo}\n{reference}");
        let stamp = self.wal.now();
        if let Some(hit) = self.manifests.get(stamp, &key) {
            return Ok(Some(hit));
        }
        let row = sqlx::query(
            "SELECT m.media_type, m.content, m.subject FROM manifests m
             JOIN repositories r ON r.id = m.repo_id
             WHERE r.name = ? AND m.digest = ? AND m.deleted_at IS NULL",
        )
        .bind(repo.as_str())
        .bind(&reference)
        .fetch_optional(&self.reader)
        .await?;
        let Some(r) = row else { return Ok(None) };
        let found = ManifestRecord {
            digest: digest.clone(),
            media_type: parse(r.get::<&str, _>(0))?,
            content: r.get(1),
            subject: parse_opt(r.get(2))?,
        };
        self.manifests.fill(&self.wal, stamp, key, &found);
        Ok(Some(found))
    }

    async fn get_tagged(&self, repo: &RepoName, tag: &Tag) -> Result<Option<ManifestRecord>> {
        let key = format!("{repo}\n{tag}");
        let stamp = self.wal.now();
        if let Some(hit) = self.manifests.get(stamp, &key) {
            return Ok(Some(hit));
        }
        let row = sqlx::query(
            "SELECT m.digest, m.media_type, m.content, m.subject FROM tags t
             JOIN repositories r ON r.id = t.repo_id
             JOIN manifests m ON m.repo_id = t.repo_id AND m.digest = t.digest
             WHERE r.name = ? AND t.name = ? AND m.deleted_at IS NULL",
        )
        .bind(repo.as_str())
        .bind(tag.as_str())
        .fetch_optional(&self.reader)
        .await?;
        let Some(r) = row else { return Ok(None) };
        let found = ManifestRecord {
            digest: parse(r.get::<&str, _>(0))?,
            media_type: parse(r.get::<&str, _>(1))?,
            content: r.get(2),
            subject: parse_opt(r.get(3))?,
        };
        self.manifests.fill(&self.wal, stamp, key, &found);
        Ok(Some(found))
    }

    async fn delete(&self, repo: &RepoName, digest: &Digest) -> Result<DeletedManifest> {
        let mut tx = self.begin().await?;
        let id = repo_id(&mut tx, repo).await?.ok_or(MetaError::NotFound)?;
        let now = now_ms();
        let done = sqlx::query(
            "UPDATE manifests SET deleted_at = ?
             WHERE repo_id = ? AND digest = ? AND deleted_at IS NULL",
        )
        .bind(now)
        .bind(id)
        .bind(digest.to_string())
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() == 0 {
            return Err(MetaError::NotFound);
        }
        let tags: Vec<String> = sqlx::query_scalar(
            "SELECT name FROM tags WHERE repo_id = ? AND digest = ? ORDER BY name",
        )
        .bind(id)
        .bind(digest.to_string())
        .fetch_all(&mut *tx)
        .await?;
        for t in &tags {
            trash_tag(&mut tx, id, t, now).await?;
        }
        tx.commit().await?;
        Ok(DeletedManifest {
            tags_removed: tags.iter().map(|t| parse(t)).collect::<Result<_>>()?,
        })
    }

    async fn inventory(&self, repo: &RepoName) -> Result<Vec<ManifestInfo>> {
        let rows = sqlx::query(
            "SELECT m.digest, m.created_at, m.last_pulled_at, m.subject,
               (SELECT group_concat(t.name, char(10)) FROM tags t
                 WHERE t.repo_id = m.repo_id AND t.digest = m.digest),
               (SELECT group_concat(r.child, char(10)) FROM manifest_refs r
                 WHERE r.repo_id = m.repo_id AND r.manifest = m.digest AND r.kind = 'manifest')
             FROM manifests m JOIN repositories rp ON rp.id = m.repo_id
             WHERE rp.name = ? AND m.deleted_at IS NULL
             ORDER BY m.created_at, m.digest",
        )
        .bind(repo.as_str())
        .fetch_all(&self.reader)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(ManifestInfo {
                    digest: parse(r.get::<&str, _>(0))?,
                    created_at_ms: r.get(1),
                    last_pulled_at_ms: r.get(2),
                    subject: parse_opt(r.get(3))?,
                    tags: split_list(r.get(4))?,
                    children: split_list(r.get(5))?,
                })
            })
            .collect()
    }

    async fn record_pulls(&self, pulls: &[(RepoName, Digest, i64)]) -> Result<()> {
        let mut tx = self.begin().await?;
        for (repo, digest, at) in pulls {
            sqlx::query(
                "UPDATE manifests SET last_pulled_at = max(coalesce(last_pulled_at, 0), ?)
                 WHERE digest = ? AND repo_id = (SELECT id FROM repositories WHERE name = ?)",
            )
            .bind(at)
            .bind(digest.to_string())
            .bind(repo.as_str())
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn exclusive_bytes(&self, manifests: &[(RepoName, Digest)]) -> Result<u64> {
        let mut doomed = std::collections::HashSet::new();
        let mut blobs = std::collections::BTreeSet::new();
        for (repo, digest) in manifests {
            let id: Option<i64> = sqlx::query_scalar("SELECT id FROM repositories WHERE name = ?")
                .bind(repo.as_str())
                .fetch_optional(&self.reader)
                .await?;
            let Some(id) = id else { continue };
            doomed.insert((id, digest.to_string()));
            let children: Vec<String> = sqlx::query_scalar(
                "SELECT child FROM manifest_refs WHERE repo_id = ? AND manifest = ? AND kind = 'blob'",
            )
            .bind(id)
            .bind(digest.to_string())
            .fetch_all(&self.reader)
            .await?;
            blobs.extend(children);
        }
        let mut bytes = 0u64;
        for blob in blobs {
            let refs: Vec<(i64, String)> = sqlx::query_as(
                "SELECT repo_id, manifest FROM manifest_refs WHERE child = ? AND kind = 'blob'",
            )
            .bind(&blob)
            .fetch_all(&self.reader)
            .await?;
            if refs.iter().all(|r| doomed.contains(r)) {
                let size: Option<i64> =
                    sqlx::query_scalar("SELECT size FROM blobs WHERE digest = ?")
                        .bind(&blob)
                        .fetch_optional(&self.reader)
                        .await?;
                bytes += size.unwrap_or(0) as u64;
            }
        }
        Ok(bytes)
    }

    async fn restore(&self, repo: &RepoName, digest: &Digest) -> Result<Vec<Tag>> {
        let mut tx = self.begin().await?;
        let id = repo_id(&mut tx, repo).await?.ok_or(MetaError::NotFound)?;
        let revived = sqlx::query(
            "UPDATE manifests SET deleted_at = NULL
             WHERE repo_id = ? AND digest = ? AND deleted_at IS NOT NULL",
        )
        .bind(id)
        .bind(digest.to_string())
        .execute(&mut *tx)
        .await?;
        if revived.rows_affected() == 0 {
            return Err(MetaError::NotFound);
        }
        let deleted_at: Option<i64> = sqlx::query_scalar(
            "SELECT max(deleted_at) FROM deleted_tags WHERE repo_id = ? AND digest = ?",
        )
        .bind(id)
        .bind(digest.to_string())
        .fetch_one(&mut *tx)
        .await?;
        // The tags deleted with it (the newest deletion of them), where the name is still free.
        let mut restored = Vec::new();
        if let Some(at) = deleted_at {
            let names: Vec<String> = sqlx::query_scalar(
                "SELECT d.name FROM deleted_tags d
                 WHERE d.repo_id = ? AND d.digest = ? AND d.deleted_at = ?
                   AND NOT EXISTS (SELECT 1 FROM tags t WHERE t.repo_id = d.repo_id AND t.name = d.name)
                 ORDER BY d.name",
            )
            .bind(id)
            .bind(digest.to_string())
            .bind(at)
            .fetch_all(&mut *tx)
            .await?;
            for name in names {
                untrash_tag(&mut tx, id, &name, &digest.to_string()).await?;
                restored.push(parse(&name)?);
            }
        }
        tx.commit().await?;
        Ok(restored)
    }

    async fn restore_tag(&self, repo: &RepoName, tag: &Tag) -> Result<Digest> {
        let mut tx = self.begin().await?;
        let id = repo_id(&mut tx, repo).await?.ok_or(MetaError::NotFound)?;
        let current: Option<String> =
            sqlx::query_scalar("SELECT digest FROM tags WHERE repo_id = ? AND name = ?")
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
             WHERE d.repo_id = ? AND d.name = ? ORDER BY d.deleted_at DESC LIMIT 1",
        )
        .bind(id)
        .bind(tag.as_str())
        .fetch_optional(&mut *tx)
        .await?
        .ok_or(MetaError::NotFound)?;
        sqlx::query("UPDATE manifests SET deleted_at = NULL WHERE repo_id = ? AND digest = ?")
            .bind(id)
            .bind(&digest)
            .execute(&mut *tx)
            .await?;
        untrash_tag(&mut tx, id, tag.as_str(), &digest).await?;
        tx.commit().await?;
        parse(&digest)
    }

    async fn deleted(&self, repo: &RepoName) -> Result<Vec<Deleted>> {
        let rows = sqlx::query(
            "SELECT NULL, m.digest, m.deleted_at FROM manifests m
             JOIN repositories r ON r.id = m.repo_id
             WHERE r.name = ? AND m.deleted_at IS NOT NULL
             UNION ALL
             SELECT d.name, d.digest, d.deleted_at FROM deleted_tags d
             JOIN repositories r ON r.id = d.repo_id
             JOIN manifests m ON m.repo_id = d.repo_id AND m.digest = d.digest
             WHERE r.name = ?
             ORDER BY 3 DESC, 1, 2",
        )
        .bind(repo.as_str())
        .bind(repo.as_str())
        .fetch_all(&self.reader)
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
        let mut tx = self.begin().await?;
        let doomed = sqlx::query(
            "SELECT repo_id, digest FROM manifests WHERE deleted_at IS NOT NULL AND deleted_at < ?
             LIMIT ?",
        )
        .bind(before_ms)
        .bind(i64::from(limit))
        .fetch_all(&mut *tx)
        .await?;
        let now = now_ms();
        for row in &doomed {
            let (id, digest): (i64, String) = (row.get(0), row.get(1));
            let children: Vec<String> = sqlx::query_scalar(
                "SELECT child FROM manifest_refs WHERE repo_id = ? AND manifest = ? AND kind = 'blob'",
            )
            .bind(id)
            .bind(&digest)
            .fetch_all(&mut *tx)
            .await?;
            for child in &children {
                queue_deref(&mut tx, child, now).await?;
            }
            // No tag points at a deleted manifest (deleting moves them to deleted_tags); be sure.
            sqlx::query("DELETE FROM tags WHERE repo_id = ? AND digest = ?")
                .bind(id)
                .bind(&digest)
                .execute(&mut *tx)
                .await?;
            sqlx::query("DELETE FROM manifests WHERE repo_id = ? AND digest = ?")
                .bind(id)
                .bind(&digest)
                .execute(&mut *tx)
                .await?;
        }
        sqlx::query("DELETE FROM deleted_tags WHERE deleted_at < ?")
            .bind(before_ms)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(doomed.len() as u64)
    }

    async fn list(&self, repo: &RepoName) -> Result<Vec<Digest>> {
        let rows: Vec<String> = sqlx::query_scalar(
            "SELECT m.digest FROM manifests m JOIN repositories r ON r.id = m.repo_id
             WHERE r.name = ? AND m.deleted_at IS NULL ORDER BY m.created_at, m.digest",
        )
        .bind(repo.as_str())
        .fetch_all(&self.reader)
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
             WHERE r.name = ? AND m.subject = ? AND (? IS NULL OR m.artifact_type = ?)
               AND m.deleted_at IS NULL
             ORDER BY m.created_at, m.digest",
        )
        .bind(repo.as_str())
        .bind(subject.to_string())
        .bind(artifact_type)
        .bind(artifact_type)
        .fetch_all(&self.reader)
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
impl Tags for SqliteBackend {
    async fn resolve(&self, repo: &RepoName, tag: &Tag) -> Result<Option<Digest>> {
        let d: Option<String> = sqlx::query_scalar(
            "SELECT t.digest FROM tags t JOIN repositories r ON r.id = t.repo_id
             WHERE r.name = ? AND t.name = ?",
        )
        .bind(repo.as_str())
        .bind(tag.as_str())
        .fetch_optional(&self.reader)
        .await?;
        parse_opt(d)
    }

    async fn list(&self, repo: &RepoName, n: u32, last: Option<&str>) -> Result<Option<Vec<Tag>>> {
        let (name, n, last) = (repo.as_str(), n as usize, last.unwrap_or(""));
        let stamp = self.wal.now();
        // Nothing committed since this repository's generation was read: the names held are
        // current.
        if let Some(version) = self.tag_current.get(stamp, name) {
            if let Some(page) = self.tag_names.page(name, version, n, last) {
                return Ok(Some(page));
            }
        }
        // Something did: read the generation, and the changes since the one held.
        if let Some(held) = self.tag_names.version(name) {
            let row: Option<(i64, i64, i64, Option<String>)> = sqlx::query_as(
                "SELECT r.id, r.tag_gen,
                   (SELECT count(*) FROM tag_log l WHERE l.repo_id = r.id AND l.gen > ?1),
                   (SELECT group_concat(l.added || l.name, char(10) ORDER BY l.gen)
                      FROM tag_log l WHERE l.repo_id = r.id AND l.gen > ?1)
                 FROM repositories r WHERE r.name = ?2",
            )
            .bind(held.gen)
            .bind(name)
            .fetch_optional(&self.reader)
            .await?;
            let Some((id, gen, logged, changes)) = row else {
                return Ok(None);
            };
            let version = tag_names::Version { id, gen };
            // One log row per generation: all of them are there unless some were pruned.
            if id == held.id && gen >= held.gen && logged == gen - held.gen {
                let changes = split_changes(changes)?;
                if self.tag_names.advance(name, held, version, changes) {
                    self.tag_current
                        .fill(&self.wal, stamp, name.to_string(), &version);
                    if let Some(page) = self.tag_names.page(name, version, n, last) {
                        return Ok(Some(page));
                    }
                }
            }
        }
        // Not held, too far behind, or dropped meanwhile: read them all, or for a repository too
        // large to hold, just the page. One row either way: sqlx hands SQLite rows over a channel
        // one at a time, which dominated listing large repositories. Tags cannot contain a
        // newline. No row: no such repository.
        self.tag_reads
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let row: Option<(i64, i64, bool, Option<String>)> = sqlx::query_as(
            "SELECT r.id, r.tag_gen, r.tag_count <= ?1,
               CASE WHEN r.tag_count <= ?1 THEN
                 (SELECT group_concat(name, char(10) ORDER BY name) FROM tags WHERE repo_id = r.id)
               ELSE
                 (SELECT group_concat(name, char(10) ORDER BY name) FROM (
                   SELECT t.name FROM tags t WHERE t.repo_id = r.id AND t.name > ?2
                   ORDER BY t.name LIMIT ?3))
               END
             FROM repositories r WHERE r.name = ?4",
        )
        .bind(self.tag_names_max)
        .bind(last)
        .bind(n as i64)
        .bind(name)
        .fetch_optional(&self.reader)
        .await?;
        let Some((id, gen, whole, joined)) = row else {
            return Ok(None);
        };
        let names: Vec<Tag> = split_list(joined)?;
        if !whole {
            return Ok(Some(names));
        }
        let version = tag_names::Version { id, gen };
        let page = tag_names::page_of(&names, n, last);
        self.tag_names.put(name, version, names);
        self.tag_current
            .fill(&self.wal, stamp, name.to_string(), &version);
        Ok(Some(page))
    }

    async fn pointing_at(&self, repo: &RepoName, digest: &Digest) -> Result<Vec<Tag>> {
        let rows: Vec<String> = sqlx::query_scalar(
            "SELECT t.name FROM tags t JOIN repositories r ON r.id = t.repo_id
             WHERE r.name = ? AND t.digest = ? ORDER BY t.name",
        )
        .bind(repo.as_str())
        .bind(digest.to_string())
        .fetch_all(&self.reader)
        .await?;
        rows.iter().map(|s| parse(s)).collect()
    }

    async fn delete(&self, repo: &RepoName, tag: &Tag) -> Result<()> {
        let mut tx = self.begin().await?;
        let id = repo_id(&mut tx, repo).await?.ok_or(MetaError::NotFound)?;
        if !trash_tag(&mut tx, id, tag.as_str(), now_ms()).await? {
            return Err(MetaError::NotFound);
        }
        tx.commit().await?;
        Ok(())
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::SqliteBackend;
    use crate::conformance::{d, manifest, repo, tag};
    use crate::{Blobs, Manifests, TagWrite, Tags};

    /// Concurrent manifest writes share commits; one that fails inside a group leaves nothing
    /// behind (not even the repository it would have created) and its neighbours land.
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn grouped_manifest_writes_fail_alone() {
        let dir = tempfile::tempdir().unwrap();
        let db = std::sync::Arc::new(
            SqliteBackend::open(&dir.path().join("bonded.db"))
                .await
                .unwrap(),
        );
        const N: usize = 48;
        for i in (0..N).step_by(2) {
            db.record_and_link(&repo(&format!("team/r{i}")), &d('1'), 1)
                .await
                .unwrap();
        }
        let start = std::sync::Arc::new(tokio::sync::Barrier::new(N));
        let tasks: Vec<_> = (0..N)
            .map(|i| {
                let (db, start) = (db.clone(), start.clone());
                tokio::spawn(async move {
                    start.wait().await;
                    // Odd writers name a blob their (new) repository does not have.
                    let blob = if i % 2 == 0 { d('1') } else { d('2') };
                    Manifests::put(
                        &*db,
                        &repo(&format!("team/r{i}")),
                        &manifest(d('a'), vec![blob], None),
                        Some((&tag("v1"), TagWrite::Overwrite)),
                    )
                    .await
                })
            })
            .collect();
        for (i, t) in tasks.into_iter().enumerate() {
            let r = repo(&format!("team/r{i}"));
            match t.await.unwrap() {
                Ok(()) => {
                    assert_eq!(i % 2, 0, "{r} must have been refused");
                    let m = db.get_tagged(&r, &tag("v1")).await.unwrap().unwrap();
                    assert_eq!(m.digest, d('a'));
                }
                Err(crate::MetaError::MissingReference(b)) => {
                    assert_eq!((i % 2, b), (1, d('2')), "{r} must have landed");
                    assert!(
                        !crate::Repos::exists(&*db, &r).await.unwrap(),
                        "{r} rolled back"
                    );
                }
                Err(e) => panic!("{r}: {e}"),
            }
        }
        let groups = db.group.groups();
        assert!(
            groups < N as u64,
            "{N} concurrent writes took {groups} commits"
        );
    }

    /// A manifest write remembers its repository's id only once committed: an id from a write
    /// that rolled back may be another repository's by the next one.
    #[tokio::test]
    async fn manifest_writes_remember_only_committed_repository_ids() {
        let dir = tempfile::tempdir().unwrap();
        let db = SqliteBackend::open(&dir.path().join("bonded.db"))
            .await
            .unwrap();
        let (a, b) = (repo("team/a"), repo("team/b"));
        let (m, v1) = (manifest(d('a'), vec![d('1')], None), tag("v1"));
        let put = |r| Manifests::put(&db, r, &m, Some((&v1, TagWrite::Overwrite)));
        // team/a lacks the blob: refused, rolled back with its new repository row.
        assert!(matches!(
            put(&a).await,
            Err(crate::MetaError::MissingReference(_))
        ));
        // team/b now takes the id team/a's row had.
        db.record_and_link(&b, &d('2'), 1).await.unwrap();
        db.record_and_link(&a, &d('1'), 1).await.unwrap();
        put(&a).await.unwrap();
        put(&a).await.unwrap();
        assert!(db.get_tagged(&a, &tag("v1")).await.unwrap().is_some());
        assert!(db.get_tagged(&b, &tag("v1")).await.unwrap().is_none());
        assert!(db.repo_ids.get(&a).is_some());
    }

    /// Concurrent audit appends share commits with each other and keep one unbroken chain.
    #[tokio::test]
    async fn grouped_audit_appends_keep_the_chain() {
        use crate::auth::{chain_hash, AuditEntry};
        use crate::Audit;
        let dir = tempfile::tempdir().unwrap();
        let db = std::sync::Arc::new(SqliteBackend::open(&dir.path().join("b.db")).await.unwrap());
        const N: usize = 48;
        let before = db.group.groups();
        let tasks: Vec<_> = (0..N)
            .map(|i| {
                let db = db.clone();
                tokio::spawn(async move {
                    let e = AuditEntry {
                        at_ms: i as i64,
                        actor: format!("user{i}"),
                        action: "push".into(),
                        ..AuditEntry::default()
                    };
                    Audit::append(&*db, &e).await.unwrap()
                })
            })
            .collect();
        let mut records = Vec::new();
        for t in tasks {
            records.push(t.await.unwrap());
        }
        records.sort_by_key(|r| r.seq);
        let mut prev = records[0].prev_hash.clone();
        for (k, r) in records.iter().enumerate() {
            assert_eq!(r.seq, k as i64 + 1, "sequence numbers without gaps");
            assert_eq!(r.prev_hash, prev, "entry {} links to the one before", r.seq);
            assert_eq!(r.hash, chain_hash(&prev, r.seq, &r.entry));
            prev = r.hash.clone();
        }
        assert_eq!(Audit::head(&*db).await.unwrap(), (N as i64, prev));
        let groups = db.group.groups() - before;
        assert!(
            (1..N as u64).contains(&groups),
            "{N} concurrent appends took {groups} group commits"
        );
    }

    /// Stores manifest `digest` (naming blob 1) in `r` and points `t` at it.
    async fn point(
        db: &SqliteBackend,
        r: &bonded_types::RepoName,
        digest: bonded_types::Digest,
        t: &bonded_types::Tag,
    ) {
        Manifests::put(
            db,
            r,
            &manifest(digest, vec![d('1')], None),
            Some((t, TagWrite::Overwrite)),
        )
        .await
        .unwrap();
    }

    /// A server's backend and a second one on the same file, standing for another process (an
    /// admin command such as `bonded retention apply`).
    async fn two_processes() -> (tempfile::TempDir, SqliteBackend, SqliteBackend) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bonded.db");
        let server = SqliteBackend::open(&path).await.unwrap();
        let admin = SqliteBackend::open(&path).await.unwrap();
        (dir, server, admin)
    }

    /// A second backend on the same file stands for another process (an admin command): its
    /// commits must empty the first one's manifest cache, which it never calls.
    #[tokio::test]
    async fn cached_manifests_never_outlive_a_commit_from_anywhere() {
        let (_dir, server, admin) = two_processes().await;
        let (r, t) = (repo("team/app"), tag("v1"));
        let cached = |db: &SqliteBackend, reference: &str| {
            db.manifests
                .get(db.wal.now(), &format!("{r}\n{reference}"))
                .map(|m| m.digest)
        };
        server.record_and_link(&r, &d('1'), 1).await.unwrap();
        for m in ['a', 'b'] {
            Manifests::put(&server, &r, &manifest(d(m), vec![d('1')], None), None)
                .await
                .unwrap();
        }
        point(&server, &r, d('a'), &t).await;

        // Served once from the database, then from the cache.
        let first = server.get_tagged(&r, &t).await.unwrap().unwrap();
        assert_eq!(first.digest, d('a'));
        assert_eq!(cached(&server, "v1"), Some(d('a')), "the read was cached");
        assert!(server.get(&r, &d('b')).await.unwrap().is_some());
        assert_eq!(cached(&server, &d('b').to_string()), Some(d('b')));

        // The other connection moves the tag and deletes a manifest.
        point(&admin, &r, d('b'), &t).await;
        assert_eq!(
            cached(&server, "v1"),
            None,
            "a foreign commit empties the cache"
        );
        assert_eq!(
            server.get_tagged(&r, &t).await.unwrap().unwrap().digest,
            d('b')
        );
        assert_eq!(cached(&server, "v1"), Some(d('b')));
        Manifests::delete(&admin, &r, &d('b')).await.unwrap();
        assert!(server.get_tagged(&r, &t).await.unwrap().is_none());
        assert!(server.get(&r, &d('b')).await.unwrap().is_none());
        assert_eq!(server.resolve(&r, &t).await.unwrap(), None);

        // Tag pages too.
        let names = |page: Option<Vec<bonded_types::Tag>>| {
            page.unwrap()
                .iter()
                .map(|t| t.to_string())
                .collect::<Vec<_>>()
        };
        point(&server, &r, d('a'), &t).await;
        assert_eq!(
            names(Tags::list(&server, &r, 10, None).await.unwrap()),
            ["v1"]
        );
        assert!(
            server
                .tag_current
                .get(server.wal.now(), r.as_str())
                .is_some(),
            "the generation read is current until the next commit"
        );
        point(&admin, &r, d('a'), &tag("v2")).await;
        assert_eq!(
            names(Tags::list(&server, &r, 10, None).await.unwrap()),
            ["v1", "v2"]
        );

        // And so does one of its own, whatever table it writes.
        assert!(server.get(&r, &d('a')).await.unwrap().is_some());
        assert_eq!(cached(&server, &d('a').to_string()), Some(d('a')));
        server.record_and_link(&r, &d('2'), 2).await.unwrap();
        assert_eq!(cached(&server, &d('a').to_string()), None);
    }

    /// The tag names a listing holds outlive commits: writes elsewhere and tag moves leave them
    /// as they are, and changes to the names, made by any process, are applied from the tag log
    /// instead of reading every name again, unless a log row they need was pruned.
    #[tokio::test]
    async fn tag_names_follow_the_log_from_any_process() {
        use std::sync::atomic::Ordering::Relaxed;
        let (_dir, server, admin) = two_processes().await;
        let (r, other) = (repo("team/app"), repo("team/other"));
        let version = || async {
            let (id, gen): (i64, i64) =
                sqlx::query_as("SELECT id, tag_gen FROM repositories WHERE name = ?")
                    .bind(r.as_str())
                    .fetch_one(&server.reader)
                    .await
                    .unwrap();
            crate::sqlite::tag_names::Version { id, gen }
        };
        let page = |n: u32, last: Option<&'static str>| {
            let (server, r) = (&server, &r);
            async move {
                Tags::list(server, r, n, last)
                    .await
                    .unwrap()
                    .unwrap()
                    .iter()
                    .map(|t| t.to_string())
                    .collect::<Vec<_>>()
            }
        };
        let reads = || server.tag_reads.load(Relaxed);
        server.record_and_link(&r, &d('1'), 1).await.unwrap();
        server.record_and_link(&other, &d('1'), 1).await.unwrap();
        point(&server, &r, d('a'), &tag("v1")).await;
        assert_eq!(page(10, None).await, ["v1"]);
        assert_eq!(reads(), 1);
        let kept = version().await;
        assert_eq!(server.tag_names.version(r.as_str()), Some(kept));

        // Another repository's tag, and a tag moved to another manifest: same names, same
        // generation, nothing read again.
        point(&admin, &other, d('a'), &tag("v1")).await;
        point(&admin, &r, d('b'), &tag("v1")).await;
        assert_eq!(version().await, kept);
        assert_eq!(page(10, None).await, ["v1"]);
        assert_eq!(reads(), 1);

        // Tags added, deleted and added back by the other process: each listing follows, from
        // the log.
        point(&admin, &r, d('a'), &tag("v2")).await;
        point(&admin, &r, d('a'), &tag("v0")).await;
        Tags::delete(&admin, &r, &tag("v1")).await.unwrap();
        assert_eq!(page(10, None).await, ["v0", "v2"]);
        point(&admin, &r, d('a'), &tag("v1")).await;
        assert_eq!(page(10, None).await, ["v0", "v1", "v2"]);
        assert_eq!(page(1, Some("v0")).await, ["v1"]);
        assert_eq!(page(10, Some("v1")).await, ["v2"]);
        assert_eq!(reads(), 1, "the changes came from the log");
        let caught_up = version().await;
        assert_eq!(server.tag_names.version(r.as_str()), Some(caught_up));

        // Two more changes, the first one's row pruned: the log is short of what it needs, so
        // every name is read again.
        point(&admin, &r, d('a'), &tag("v3")).await;
        point(&admin, &r, d('a'), &tag("v4")).await;
        sqlx::query("DELETE FROM tag_log WHERE repo_id = ? AND gen = ?")
            .bind(caught_up.id)
            .bind(caught_up.gen + 1)
            .execute(&admin.writer)
            .await
            .unwrap();
        assert_eq!(page(10, None).await, ["v0", "v1", "v2", "v3", "v4"]);
        assert_eq!(reads(), 2);
        assert_eq!(page(10, None).await, ["v0", "v1", "v2", "v3", "v4"]);
        assert_eq!(reads(), 2);
    }

    /// The triggers keep each repository's last 1024 log rows, one per generation, and its tag
    /// count; a repository with more tags than a listing holds is read a page at a time.
    #[tokio::test]
    async fn the_tag_log_keeps_its_last_rows_and_large_repositories_are_paged() {
        use std::sync::atomic::Ordering::Relaxed;
        let dir = tempfile::tempdir().unwrap();
        let mut server = SqliteBackend::open(&dir.path().join("bonded.db"))
            .await
            .unwrap();
        let r = repo("team/app");
        server.record_and_link(&r, &d('1'), 1).await.unwrap();
        point(&server, &r, d('a'), &tag("first")).await;
        // 1,100 tags in one statement, then 101 deleted in another.
        sqlx::query(
            "WITH RECURSIVE k(x) AS (SELECT 0 UNION ALL SELECT x + 1 FROM k WHERE x < 1099)
             INSERT INTO tags (repo_id, name, digest, updated_at)
             SELECT t.repo_id, printf('t%04d', x), t.digest, 0 FROM k, tags t WHERE t.name = 'first'",
        )
        .execute(&server.writer)
        .await
        .unwrap();
        sqlx::query("DELETE FROM tags WHERE name >= 't1000' OR name = 'first'")
            .execute(&server.writer)
            .await
            .unwrap();
        let (gen, count, logged, oldest, names): (i64, i64, i64, i64, i64) = sqlx::query_as(
            "SELECT r.tag_gen, r.tag_count, count(*), min(l.gen),
                    (SELECT count(*) FROM tags t WHERE t.repo_id = r.id)
             FROM repositories r JOIN tag_log l ON l.repo_id = r.id WHERE r.name = ?",
        )
        .bind(r.as_str())
        .fetch_one(&server.reader)
        .await
        .unwrap();
        assert_eq!(gen, 1 + 1100 + 101);
        assert_eq!((count, names), (1000, 1000));
        assert_eq!((logged, oldest), (1024, gen - 1023));

        // Above the limit: each listing reads its page, none is held.
        server.tag_names_max = 999;
        let first = Tags::list(&server, &r, 600, None).await.unwrap().unwrap();
        assert_eq!(first.len(), 600);
        assert_eq!(first[599].as_str(), "t0599");
        let rest = Tags::list(&server, &r, 600, Some("t0599"))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(rest.len(), 400);
        assert_eq!(rest[0].as_str(), "t0600");
        assert!(server.tag_names.version(r.as_str()).is_none());
        assert_eq!(server.tag_reads.load(Relaxed), 2);
        // At the limit: held.
        server.tag_names_max = 1000;
        assert_eq!(
            Tags::list(&server, &r, 600, None).await.unwrap().unwrap(),
            first
        );
        assert!(server.tag_names.version(r.as_str()).is_some());
    }

    /// Scheduling policy of each thread of this process whose name starts with `prefix`, from
    /// /proc (field 41 of `stat`; 5 is SCHED_IDLE, 0 SCHED_OTHER).
    fn policies(prefix: &str) -> Vec<u32> {
        let mut out = Vec::new();
        for task in std::fs::read_dir("/proc/self/task").unwrap() {
            let dir = task.unwrap().path();
            let comm = std::fs::read_to_string(dir.join("comm")).unwrap_or_default();
            if !comm.starts_with(prefix) {
                continue;
            }
            let stat = std::fs::read_to_string(dir.join("stat")).unwrap();
            let after_name = &stat[stat.rfind(')').unwrap() + 2..];
            out.push(after_name.split(' ').nth(38).unwrap().parse().unwrap());
        }
        out
    }

    #[tokio::test]
    async fn background_reads_run_on_an_idle_priority_thread() {
        let dir = tempfile::tempdir().unwrap();
        let db = SqliteBackend::open(&dir.path().join("bonded.db"))
            .await
            .unwrap();
        let n: i64 = sqlx::query_scalar("SELECT count(*) FROM gc_queue")
            .fetch_one(&db.background)
            .await
            .unwrap();
        assert_eq!(n, 0);
        assert_eq!(
            policies("sqlite-bg-"),
            vec![5],
            "the background thread is SCHED_IDLE"
        );
        let others = policies("sqlx-sqlite-wor");
        assert!(
            !others.is_empty(),
            "writer and readers run on their own threads"
        );
        assert!(
            others.iter().all(|p| *p == 0),
            "writer and readers keep the normal class: {others:?}"
        );
    }
}
