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
use std::sync::{Arc, Mutex};

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

    /// Runs `write` in the next group and returns what it returned once its commit is durable.
    pub(crate) async fn run<T, F>(&self, write: F) -> Result<T>
    where
        T: Send + 'static,
        F: for<'c> FnOnce(&'c mut SqliteConnection) -> BoxFuture<'c, Result<T>> + Send + 'static,
    {
        // The committer answers every write of a group alike (`Result<()>`); what this one
        // returned waits here until its group has committed.
        let result = Arc::new(Mutex::new(None));
        let slot = result.clone();
        let job: Job = Box::new(move |conn| {
            Box::pin(async move {
                let value = write(conn).await?;
                *slot.lock().unwrap_or_else(|p| p.into_inner()) = Some(value);
                Ok(())
            })
        });
        let (done, answer) = oneshot::channel();
        self.queue
            .send(Pending { job, done })
            .map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())??;
        // Answered Ok: the write ran to its end and its group committed.
        let value = result.lock().unwrap_or_else(|p| p.into_inner()).take();
        value.ok_or_else(|| {
            MetaError::Corrupt("a grouped write committed without its result".into())
        })
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
    // One savepoint marks where the current write began. After a write succeeds, releasing it and
    // setting the next is one round trip to the connection's thread; after one fails, rolling
    // back to it leaves it in place, marking the same state for the next write. The commit
    // releases whatever is still open.
    let mut outcomes: Vec<(oneshot::Sender<Result<()>>, Result<()>)> =
        Vec::with_capacity(group.len());
    let mut pending = group.into_iter().peekable();
    let mut step = Some("SAVEPOINT grouped_write");
    loop {
        if let Some(sql) = step {
            // The savepoint itself failed: the transaction is in an unknown state. Every write
            // of the group fails, those not run yet included; dropping the transaction rolls it
            // back.
            if let Err(Fatal(e)) = exec(&mut tx, sql).await {
                for done in outcomes
                    .into_iter()
                    .map(|(d, _)| d)
                    .chain(pending.map(|p| p.done))
                {
                    let _ = done.send(Err(group_failed(&e)));
                }
                return;
            }
        }
        let Some(p) = pending.next() else { break };
        let result = guarded(p.job, &mut tx).await;
        step = match (&result, pending.peek()) {
            (Err(_), _) => Some("ROLLBACK TO grouped_write"),
            (Ok(()), Some(_)) => Some("RELEASE grouped_write; SAVEPOINT grouped_write"),
            (Ok(()), None) => None,
        };
        outcomes.push((p.done, result));
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

/// Runs `sql`, which may be several statements, in one round trip.
async fn exec(conn: &mut SqliteConnection, sql: &'static str) -> std::result::Result<(), Fatal> {
    sqlx::query(sql)
        .execute(&mut *conn)
        .await
        .map(|_| ())
        .map_err(|e| Fatal(e.into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Writes of one group that fail, one after another and last, leave nothing; those around
    /// them land, all in one commit.
    #[tokio::test]
    async fn failed_writes_in_a_group_leave_nothing_and_the_rest_land() {
        let dir = tempfile::tempdir().unwrap();
        let opts = sqlx::sqlite::SqliteConnectOptions::new()
            .filename(dir.path().join("g.db"))
            .create_if_missing(true);
        let pool = sqlx::sqlite::SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(opts)
            .await
            .unwrap();
        sqlx::query("CREATE TABLE t (x INTEGER NOT NULL)")
            .execute(&pool)
            .await
            .unwrap();
        let group = GroupCommit::start(pool.clone());
        let outcomes = [true, false, false, true, true, false];
        // Each write inserts its number; a failing one fails after inserting.
        let writes = outcomes.iter().enumerate().map(|(i, ok)| {
            let ok = *ok;
            group.run(move |conn| {
                Box::pin(async move {
                    sqlx::query("INSERT INTO t (x) VALUES (?)")
                        .bind(i as i64)
                        .execute(&mut *conn)
                        .await?;
                    if ok {
                        Ok(())
                    } else {
                        Err(MetaError::Conflict(format!("write {i} fails")))
                    }
                })
            })
        });
        // Polled together, all are queued before the committer runs: one group.
        let results = futures::future::join_all(writes).await;
        for (i, (r, ok)) in results.iter().zip(outcomes).enumerate() {
            assert_eq!(r.is_ok(), ok, "write {i}: {r:?}");
        }
        assert_eq!(group.groups(), 1);
        let landed: Vec<i64> = sqlx::query_scalar("SELECT x FROM t ORDER BY x")
            .fetch_all(&pool)
            .await
            .unwrap();
        assert_eq!(landed, [0, 3, 4]);
    }
}
