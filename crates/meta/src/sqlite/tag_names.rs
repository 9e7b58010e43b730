//! Every tag name of a repository, kept in memory in order and brought up to date from the tag log.
//!
//! Reading a page of 1,000 names costs about 0.3 ms of SQL plus the hand-over to sqlx's thread,
//! and a listing of a large repository is many pages. Keeping pages, even with the repository's
//! tag generation (migration 0012), only helped until the next tag was added: then every page was
//! read again. Now each change to a repository's names is logged with its generation (migration
//! 0013, the same triggers, so the same transaction), and a listing:
//!
//! - answers from memory with no SQL if nothing committed since this repository's generation was
//!   last read (`current`, valid until the wal-index header changes, see `cache.rs`);
//! - otherwise reads the generation and the log rows past the one it holds, in one statement,
//!   and applies them to its copy: one row per change, whatever the repository's size;
//! - reads every name only for a repository it does not hold, or when the rows it needs were
//!   pruned (more than 1024 changes behind), which it sees from their count.
//!
//! Repositories of more than `MAX_NAMES` tags are not held; their pages are read one at a time.

use std::collections::HashMap;
use std::sync::Mutex;

use bonded_types::Tag;

use super::cache::Weigh;

/// What the names held for a repository were read under: its id and `tag_gen`, a counter the
/// database bumps in the same transaction as every change to them (migrations 0012 and 0013).
/// Equal versions mean equal names, whatever else committed in between.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) struct Version {
    pub(crate) id: i64,
    pub(crate) gen: i64,
}

/// `Cache<Version>` keeps, until the next commit, which version is current.
impl Weigh for Version {
    fn weight(&self) -> usize {
        64
    }
}

/// Repositories with more tags than this are listed a page at a time from the database.
pub(crate) const MAX_NAMES: i64 = 200_000;

/// One logged change to a repository's names.
pub(crate) struct Change {
    pub(crate) name: Tag,
    pub(crate) added: bool,
}

/// The names of each repository held, with the version they are current at.
pub(crate) struct TagNames {
    budget: usize,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    repos: HashMap<String, Names>,
    weight: usize,
}

struct Names {
    version: Version,
    /// Sorted, by byte order: the order of SQLite's `ORDER BY name` (BINARY collation).
    names: Vec<Tag>,
    weight: usize,
}

fn weight_of(name: &Tag) -> usize {
    name.as_str().len() + 32
}

/// Up to `n` names after `last` ("" for the first page).
pub(crate) fn page_of(names: &[Tag], n: usize, last: &str) -> Vec<Tag> {
    let start = names.partition_point(|t| t.as_str() <= last);
    names[start..].iter().take(n).cloned().collect()
}

impl TagNames {
    pub(crate) fn new(budget: usize) -> TagNames {
        TagNames {
            budget,
            state: Mutex::new(State::default()),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The version of the names held for `repo`, if any.
    pub(crate) fn version(&self, repo: &str) -> Option<Version> {
        self.state().repos.get(repo).map(|n| n.version)
    }

    /// A page of `repo`'s names, if those held are at `version`.
    pub(crate) fn page(
        &self,
        repo: &str,
        version: Version,
        n: usize,
        last: &str,
    ) -> Option<Vec<Tag>> {
        let state = self.state();
        let held = state.repos.get(repo).filter(|h| h.version == version)?;
        Some(page_of(&held.names, n, last))
    }

    /// Brings the names held for `repo` from `from` to `to` by applying `changes` (in generation
    /// order). False if they are at neither (dropped, or moved on meanwhile): the caller reads
    /// them whole.
    pub(crate) fn advance(
        &self,
        repo: &str,
        from: Version,
        to: Version,
        changes: Vec<Change>,
    ) -> bool {
        let mut state = self.state();
        let Some(held) = state.repos.get_mut(repo) else {
            return false;
        };
        if held.version == to {
            return true;
        }
        if held.version != from {
            return false;
        }
        let before = held.weight;
        for change in changes {
            match (held.names.binary_search(&change.name), change.added) {
                (Err(at), true) => {
                    held.weight += weight_of(&change.name);
                    held.names.insert(at, change.name);
                }
                (Ok(at), false) => {
                    held.weight -= weight_of(&held.names.remove(at));
                }
                // Already so: a log row repeats what the names held already say.
                _ => {}
            }
        }
        held.version = to;
        let after = held.weight;
        state.weight = state.weight + after - before;
        if state.weight > self.budget {
            state.repos.clear();
            state.weight = 0;
        }
        true
    }

    /// Holds `names` (sorted) as `repo`'s at `version`, read in one statement with it.
    pub(crate) fn put(&self, repo: &str, version: Version, names: Vec<Tag>) {
        let weight = names.iter().map(weight_of).sum::<usize>() + repo.len() + 64;
        if weight > self.budget {
            return;
        }
        let mut state = self.state();
        if let Some(old) = state.repos.remove(repo) {
            state.weight -= old.weight;
        }
        if state.weight + weight > self.budget {
            state.repos.clear();
            state.weight = 0;
        }
        state.weight += weight;
        state.repos.insert(
            repo.to_string(),
            Names {
                version,
                names,
                weight,
            },
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tags(names: &[&str]) -> Vec<Tag> {
        names.iter().map(|n| n.parse().unwrap()).collect()
    }

    fn strs(names: &[Tag]) -> Vec<&str> {
        names.iter().map(|t| t.as_str()).collect()
    }

    #[test]
    fn pages_start_after_last_in_byte_order() {
        let names = tags(&["V1", "a", "b", "c"]);
        assert_eq!(strs(&page_of(&names, 2, "")), ["V1", "a"]);
        assert_eq!(strs(&page_of(&names, 2, "a")), ["b", "c"]);
        // `last` need not be a name held.
        assert_eq!(strs(&page_of(&names, 10, "aa")), ["b", "c"]);
        assert!(page_of(&names, 10, "c").is_empty());
    }

    #[test]
    fn changes_apply_in_order_only_from_the_version_held() {
        let v = |gen| Version { id: 1, gen };
        let held = TagNames::new(1 << 20);
        held.put("r", v(2), tags(&["a", "c"]));
        let change = |name: &str, added| Change {
            name: name.parse().unwrap(),
            added,
        };
        // From another version: refused, nothing changes.
        assert!(!held.advance("r", v(1), v(3), vec![change("b", true)]));
        assert_eq!(held.page("r", v(2), 10, "").map(|p| p.len()), Some(2));
        // Removed then added again: present; added then removed: absent.
        assert!(held.advance(
            "r",
            v(2),
            v(6),
            vec![
                change("a", false),
                change("a", true),
                change("b", true),
                change("b", false),
            ]
        ));
        assert_eq!(strs(&held.page("r", v(6), 10, "").unwrap()), ["a", "c"]);
        assert!(held.page("r", v(2), 10, "").is_none());
        assert!(held.advance("r", v(6), v(7), vec![change("0", true)]));
        assert_eq!(
            strs(&held.page("r", v(7), 10, "").unwrap()),
            ["0", "a", "c"]
        );
    }

    #[test]
    fn past_the_budget_it_starts_over() {
        let v = Version { id: 1, gen: 1 };
        let held = TagNames::new(300);
        held.put("r1", v, tags(&["a", "b"]));
        held.put("r2", v, tags(&["a", "b"]));
        held.put("r3", v, tags(&["a", "b"]));
        assert!(held.version("r3").is_some());
        assert!(
            held.version("r1").is_none(),
            "the first was dropped to fit the third"
        );
        // Larger than the whole budget: not held at all.
        let many: Vec<Tag> = (0..20)
            .map(|i| format!("t{i:02}").parse().unwrap())
            .collect();
        held.put("big", v, many);
        assert!(held.version("big").is_none());
    }
}
