//! Read caches for the SQLite backend (manifests, and which tag generation of a repository is
//! current), valid only while no transaction has committed.
//!
//! A manifest GET is one indexed look-up, yet measured under load most of its cost was handing the
//! query to sqlx's per-connection thread and back (context switches, not SQL); a page of 10,000
//! tags costs milliseconds of SQL. These caches answer repeated reads without either, and never
//! serve anything a committed write has changed.
//!
//! **Validity.** SQLite in WAL mode publishes every commit by rewriting the header of its
//! wal-index, the `-shm` file beside the database (the format is documented at
//! <https://www.sqlite.org/walformat.html>): a change counter, the last valid frame, salts and
//! checksums. Readers find committed data through that header, so its bytes change exactly when
//! a commit becomes visible, whichever connection or process made it (our writer, or an admin
//! command such as `bonded retention apply` on the same database). The header is stored twice;
//! a writer updates the copies one after the other, so two unequal copies mean a commit is being
//! published right now.
//!
//! - A look-up reads the header (one `pread`) and answers from the cache only if it equals the
//!   header the cached entries were read under. Any commit since empties the cache.
//! - A fill reads the header before and after its database read and keeps the row only if both
//!   equal and the copies agree: the row was then read with no commit in between.
//!
//! So a request that starts after a write was acknowledged (the commit returned, so the header
//! had already changed) cannot get a row from before that write. The price is that every commit,
//! of any table, empties the cache: it pays off for reads that repeat between writes, the common
//! case of a deploy fleet pulling one tag.
//!
//! If the `-shm` file cannot be read (another VFS, another platform) the cache stays off. If the
//! file was deleted (SQLite removes it when the last connection closes) it is reopened.
//!
//! Tag names are kept past commits instead (`tag_names.rs`), each repository's with a version
//! the database bumps in the same transaction as any change to them.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use crate::ManifestRecord;

/// The first copy of the wal-index header: 48 bytes, followed by the second copy.
const HEADER: usize = 48;

/// The wal-index header a read happened under.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) struct Stamp([u8; HEADER]);

/// Reads the wal-index header of one database.
pub(crate) struct WalStamp {
    shm_path: PathBuf,
    shm: Mutex<Option<std::fs::File>>,
}

impl WalStamp {
    /// For the database at `db` (which exists): SQLite keeps the `-shm` file beside the file a
    /// symbolic link points to, so the path is resolved first.
    pub(crate) fn new(db: &Path) -> WalStamp {
        let db = std::fs::canonicalize(db).unwrap_or_else(|_| db.to_path_buf());
        let mut shm_path = db.into_os_string();
        shm_path.push("-shm");
        WalStamp {
            shm_path: shm_path.into(),
            shm: Mutex::new(None),
        }
    }

    /// The current wal-index header, or none when a commit is being published or the header
    /// can't be read (then nothing is cached or served).
    pub(crate) fn now(&self) -> Option<Stamp> {
        #[cfg(unix)]
        {
            use std::os::unix::fs::{FileExt, MetadataExt};
            let mut shm = self.shm.lock().unwrap_or_else(|p| p.into_inner());
            let gone = match shm.as_ref() {
                None => true,
                Some(f) => f.metadata().map(|m| m.nlink() == 0).unwrap_or(true),
            };
            if gone {
                *shm = std::fs::File::open(&self.shm_path).ok();
            }
            let mut both = [0u8; 2 * HEADER];
            shm.as_ref()?.read_exact_at(&mut both, 0).ok()?;
            let (first, second) = both.split_at(HEADER);
            // Byte 12 is isInit: zero until a connection has built the index.
            if first != second || first[12] == 0 {
                return None;
            }
            Some(Stamp(first.try_into().ok()?))
        }
        #[cfg(not(unix))]
        {
            None
        }
    }
}

/// What an entry costs against the budget, roughly in bytes.
pub(crate) trait Weigh {
    fn weight(&self) -> usize;
}

impl Weigh for ManifestRecord {
    fn weight(&self) -> usize {
        self.content.len() + 128
    }
}

/// Entries read under one wal-index header, up to a budget; past it the cache starts over (the
/// hot set of a registry is small).
pub(crate) struct Cache<V> {
    budget: usize,
    state: Mutex<State<V>>,
}

struct State<V> {
    /// The header every entry was read under.
    stamp: Option<Stamp>,
    entries: HashMap<String, V>,
    weight: usize,
}

impl<V: Clone + Weigh> Cache<V> {
    pub(crate) fn new(budget: usize) -> Cache<V> {
        Cache {
            budget,
            state: Mutex::new(State {
                stamp: None,
                entries: HashMap::new(),
                weight: 0,
            }),
        }
    }

    /// The value cached under `key`, if no commit happened since it was read (`now` is the
    /// current header).
    pub(crate) fn get(&self, now: Option<Stamp>, key: &str) -> Option<V> {
        let now = now?;
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if state.stamp != Some(now) {
            state.restart(now);
            return None;
        }
        state.entries.get(key).cloned()
    }

    /// Keeps `value`, read from the database after `before` was taken, if no commit has been
    /// published since.
    pub(crate) fn fill(&self, wal: &WalStamp, before: Option<Stamp>, key: String, value: &V) {
        let Some(before) = before else { return };
        if wal.now() != Some(before) {
            return;
        }
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if state.stamp != Some(before) {
            state.restart(before);
        }
        let weight = value.weight();
        if state.weight + weight > self.budget {
            state.restart(before);
            if weight > self.budget {
                return;
            }
        }
        state.weight += weight;
        if let Some(old) = state.entries.insert(key, value.clone()) {
            state.weight -= old.weight();
        }
    }
}

impl<V> State<V> {
    fn restart(&mut self, stamp: Stamp) {
        self.stamp = Some(stamp);
        self.entries.clear();
        self.weight = 0;
    }
}
