//! Group commit for the SQLite writer.
//!
//! Every commit waits for an fsync of the write-ahead log before it is acknowledged. With one
//! writer, concurrent publishes would each pay a whole fsync in turn. Instead, a write submitted
//! here joins a queue; one task takes everything queued, runs each write in its own savepoint of
//! one transaction, commits once, and only then answers each caller. Writes that arrive while an
//! fsync is in flight form the next group, so under load a group grows by itself and an idle
//! writer adds no waiting.
//!
//! - A write that fails is rolled back to its savepoint: the others in its group are unaffected
//!   and see none of it.
//! - Nothing is acknowledged before the commit that contains it is durable; if that commit fails,
//!   every write in the group gets the error.
//! - Writes in a group run one after another on the one writer connection, so they are as
//!   serializable as writes outside a group.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use futures::future::BoxFuture;
use futures::FutureExt;
use sqlx::sqlite::SqlitePool;
use sqlx::SqliteConnection;
use tokio::sync::{mpsc, oneshot};

use crate::{MetaError, Result};

/// A write to run inside the group's transaction.
pub(crate) type Job =
    Box<dyn for<'c> FnOnce(&'c mut SqliteConnection) -> BoxFuture<'c, Result<()>> + Send>;

/// Writes in one group at most: bounds how long the first of them waits for the last.
const MAX_GROUP: usize = 64;

struct Pending {
    job: Job,
    done: oneshot::Sender<Result<()>>,
}

pub(crate) struct GroupCommit {
    queue: mpsc::UnboundedSender<Pending>,
    /// Transactions committed (or attempted) so far; the tests check that writes share them.
    #[cfg(test)]
    groups: Arc<AtomicU64>,
}

/// Boxes a write for [`GroupCommit::run`] (the closure's signature, spelled out once).
pub(crate) fn job<F>(f: F) -> Job
where
    F: for<'c> FnOnce(&'c mut SqliteConnection) -> BoxFuture<'c, Result<()>> + Send + 'static,
{
    Box::new(f)
}

impl GroupCommit {
    /// Starts the committer on `writer`; it stops when the `GroupCommit` is dropped.
    pub(crate) fn start(writer: SqlitePool) -> GroupCommit {
        let (queue, rx) = mpsc::unbounded_channel();
        let groups = Arc::new(AtomicU64::new(0));
        tokio::spawn(committer(writer, rx, groups.clone()));
        GroupCommit {
            queue,
            #[cfg(test)]
            groups,
        }
    }

    /// How many groups were committed: with the number of writes, how well writes share fsyncs.
    #[cfg(test)]
    pub(crate) fn groups(&self) -> u64 {
        self.groups.load(Ordering::Relaxed)
    }

    /// Runs `job` in the next group and returns once its commit is durable.
    pub(crate) async fn run(&self, job: Job) -> Result<()> {
        let (done, answer) = oneshot::channel();
        self.queue
            .send(Pending { job, done })
            .map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())?
    }
}

fn stopped() -> MetaError {
    MetaError::Db(sqlx::Error::PoolClosed)
}

/// The same failure for every write of a group (the database's error is not clonable).
fn group_failed(e: &MetaError) -> MetaError {
    MetaError::Db(sqlx::Error::Io(std::io::Error::other(format!(
        "the transaction this write was part of failed: {e}"
    ))))
}

async fn committer(
    writer: SqlitePool,
    mut rx: mpsc::UnboundedReceiver<Pending>,
    groups: Arc<AtomicU64>,
) {
    while let Some(first) = rx.recv().await {
        let mut group = vec![first];
        while group.len() < MAX_GROUP {
            match rx.try_recv() {
                Ok(p) => group.push(p),
                Err(_) => break,
            }
        }
        tracing::trace!(writes = group.len(), "committing a group of writes");
        commit_group(&writer, group).await;
        groups.fetch_add(1, Ordering::Relaxed);
    }
}

async fn commit_group(writer: &SqlitePool, group: Vec<Pending>) {
    let mut tx = match writer.begin().await {
        Ok(tx) => tx,
        Err(e) => {
            let e = MetaError::from(e);
            for p in group {
                let _ = p.done.send(Err(group_failed(&e)));
            }
            return;
        }
    };
    // Alone, a write needs no savepoint: its failure rolls back the transaction.
    if group.len() == 1 {
        let p = group.into_iter().next().expect("one write");
        let outcome = match guarded(p.job, &mut tx).await {
            Ok(()) => tx.commit().await.map_err(MetaError::from),
            Err(e) => Err(e),
        };
        let _ = p.done.send(outcome);
        return;
    }
    let mut outcomes: Vec<(oneshot::Sender<Result<()>>, Result<()>)> =
        Vec::with_capacity(group.len());
    let mut pending = group.into_iter();
    while let Some(p) = pending.next() {
        match in_savepoint(&mut tx, p.job).await {
            Ok(result) => outcomes.push((p.done, result)),
            // The savepoint itself failed: the transaction is in an unknown state. Every write
            // of the group fails, those not run yet included; dropping the transaction rolls it
            // back.
            Err(Fatal(e)) => {
                let rest = pending.map(|p| p.done);
                for done in outcomes
                    .into_iter()
                    .map(|(d, _)| d)
                    .chain([p.done])
                    .chain(rest)
                {
                    let _ = done.send(Err(group_failed(&e)));
                }
                return;
            }
        }
    }
    let committed = tx.commit().await.map_err(MetaError::from);
    for (done, result) in outcomes {
        let answer = match (&committed, result) {
            (Ok(()), r) => r,
            (Err(e), Ok(())) => Err(group_failed(e)),
            (Err(_), Err(own)) => Err(own),
        };
        let _ = done.send(answer);
    }
}

/// A failure that leaves the group's transaction unusable.
struct Fatal(MetaError);

/// Runs `job` between `SAVEPOINT` and `RELEASE`, rolling back to the savepoint if it fails.
/// The inner result is the job's own; the outer error means the group must be abandoned.
async fn in_savepoint(
    conn: &mut SqliteConnection,
    job: Job,
) -> std::result::Result<Result<()>, Fatal> {
    exec(conn, "SAVEPOINT grouped_write").await?;
    let result = guarded(job, conn).await;
    if result.is_err() {
        exec(conn, "ROLLBACK TO grouped_write").await?;
    }
    exec(conn, "RELEASE grouped_write").await?;
    Ok(result)
}

/// Runs `job`, turning a panic into its error so that one bad write cannot stop the committer
/// (and with it every later write).
async fn guarded(job: Job, conn: &mut SqliteConnection) -> Result<()> {
    std::panic::AssertUnwindSafe(job(conn))
        .catch_unwind()
        .await
        .unwrap_or_else(|_| {
            Err(MetaError::Db(sqlx::Error::Io(std::io::Error::other(
                "the write panicked; it was rolled back",
            ))))
        })
}

async fn exec(conn: &mut SqliteConnection, sql: &'static str) -> std::result::Result<(), Fatal> {
    sqlx::query(sql)
        .execute(conn)
        .await
        .map(|_| ())
        .map_err(|e| Fatal(e.into()))
}
