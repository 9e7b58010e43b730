//! Retention: which manifests policies delete, decided by a pure planner over a repository's
//! inventory, then applied as ordinary (restorable) deletions. Garbage collection reclaims the
//! blobs later, after the undelete window.
//!
//! Per repository the first rule whose pattern matches applies. A *top-level* manifest (not a
//! referrer, not named by an index) is **protected** if it is among the `keep_last` most recently
//! pushed, was pushed or pulled within `keep_days`, has a tag matching `keep_tags`, or has an
//! immutable or environment tag, or is among the last `keep_history` digests of an environment
//! (`promotion`). An unprotected one is deleted if the rule ages artifacts out (`keep_last` or
//! `keep_days` set), or if it is untagged and older than `untagged_days`. What goes with a deleted
//! manifest: its referrers (signatures, SBOMs, attestations, recursively) and the index entries no
//! kept index names; what a kept manifest names or is referred to by stays.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use bonded_meta::{ManifestInfo, MetaError};
use bonded_types::{Digest, RepoName, Tag};
use globset::GlobMatcher;
use tracing::info;

use crate::rules::{glob, RulesError};
use crate::{now_ms, Registry, Result};

const DAY_MS: i64 = 24 * 3600 * 1000;

/// One `[[retention.rules]]` entry.
#[derive(Debug, Clone, Default)]
pub struct RetentionRule {
    /// Glob over repository names (`ci/**`).
    pub repositories: String,
    pub keep_last: Option<u32>,
    pub keep_days: Option<u32>,
    /// Globs over tags (`v*`); a manifest with such a tag is kept.
    pub keep_tags: Vec<String>,
    pub untagged_days: Option<u32>,
}

/// Compiled retention rules.
#[derive(Debug, Default)]
pub struct Retention {
    rules: Vec<(GlobMatcher, Vec<GlobMatcher>, RetentionRule)>,
}

impl Retention {
    pub fn new(rules: &[RetentionRule]) -> std::result::Result<Retention, RulesError> {
        let rules = rules
            .iter()
            .map(|r| {
                let tags = r
                    .keep_tags
                    .iter()
                    .map(|t| glob(t))
                    .collect::<Result<_, _>>()?;
                Ok((glob(&r.repositories)?, tags, r.clone()))
            })
            .collect::<std::result::Result<_, RulesError>>()?;
        Ok(Retention { rules })
    }

    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    fn rule_for(&self, repo: &RepoName) -> Option<(&[GlobMatcher], &RetentionRule)> {
        self.rules
            .iter()
            .find(|(r, _, _)| r.is_match(repo.as_str()))
            .map(|(_, t, r)| (t.as_slice(), r))
    }
}

/// A manifest a policy deletes, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedDeletion {
    pub repo: RepoName,
    pub digest: Digest,
    pub tags: Vec<Tag>,
    pub reason: String,
}

/// What retention would delete now.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RetentionPlan {
    pub deletions: Vec<PlannedDeletion>,
    /// Bytes of blobs only the deleted manifests reference: freed once the undelete window and
    /// the collector's grace period have passed.
    pub bytes_freed: u64,
}

/// Plans one repository. `immutable` says whether a tag may never be deleted; `pinned` lists
/// manifests that are always kept (what environments point at or recently pointed at).
fn plan_repo(
    repo: &RepoName,
    rule: &RetentionRule,
    keep_tags: &[GlobMatcher],
    inventory: &[ManifestInfo],
    now_ms: i64,
    immutable: &dyn Fn(&Tag) -> bool,
    pinned: &BTreeSet<Digest>,
) -> Vec<PlannedDeletion> {
    let by_digest: HashMap<&Digest, &ManifestInfo> =
        inventory.iter().map(|m| (&m.digest, m)).collect();
    let mut referrers: HashMap<&Digest, Vec<&Digest>> = HashMap::new();
    let mut named_by_index: BTreeSet<&Digest> = BTreeSet::new();
    for m in inventory {
        if let Some(s) = m.subject.as_ref().filter(|s| by_digest.contains_key(s)) {
            referrers.entry(s).or_default().push(&m.digest);
        }
        named_by_index.extend(m.children.iter());
    }
    let mut top: Vec<&ManifestInfo> = inventory
        .iter()
        .filter(|m| {
            !m.subject
                .as_ref()
                .is_some_and(|s| by_digest.contains_key(s))
                && !named_by_index.contains(&m.digest)
        })
        .collect();
    // Newest first.
    top.sort_by(|a, b| {
        b.created_at_ms
            .cmp(&a.created_at_ms)
            .then(a.digest.cmp(&b.digest))
    });
    let ages_out = rule.keep_last.is_some() || rule.keep_days.is_some();

    let mut doomed: BTreeMap<&Digest, String> = BTreeMap::new();
    for (rank, m) in top.iter().enumerate() {
        let last_used = m.last_pulled_at_ms.unwrap_or(0).max(m.created_at_ms);
        let protected = pinned.contains(&m.digest)
            || rule.keep_last.is_some_and(|n| rank < n as usize)
            || rule
                .keep_days
                .is_some_and(|d| now_ms - last_used < i64::from(d) * DAY_MS)
            || m.tags
                .iter()
                .any(|t| immutable(t) || keep_tags.iter().any(|g| g.is_match(t.as_str())));
        if protected {
            continue;
        }
        let reason = if ages_out {
            let mut why = Vec::new();
            if let Some(n) = rule.keep_last {
                why.push(format!("not among the {n} newest"));
            }
            if let Some(d) = rule.keep_days {
                why.push(format!("not pushed or pulled in {d} days"));
            }
            Some(why.join(", "))
        } else {
            rule.untagged_days
                .filter(|d| m.tags.is_empty() && now_ms - last_used >= i64::from(*d) * DAY_MS)
                .map(|d| format!("untagged for over {d} days"))
        };
        if let Some(reason) = reason {
            doomed.insert(&m.digest, reason);
        }
    }

    // Index entries go with their index unless a kept index names them too.
    let kept_children: BTreeSet<&Digest> = inventory
        .iter()
        .filter(|m| !doomed.contains_key(&m.digest))
        .flat_map(|m| m.children.iter())
        .collect();
    let mut frontier: Vec<&Digest> = doomed.keys().copied().collect();
    while let Some(d) = frontier.pop() {
        let parent_reason = format!("goes with {d}");
        let m = by_digest[d];
        let mut follow: Vec<&Digest> = m
            .children
            .iter()
            .filter(|c| by_digest.contains_key(c) && !kept_children.contains(c))
            .collect();
        follow.extend(referrers.get(d).into_iter().flatten());
        for c in follow {
            if !doomed.contains_key(c) {
                doomed.insert(c, parent_reason.clone());
                frontier.push(c);
            }
        }
    }
    doomed
        .into_iter()
        .map(|(d, reason)| PlannedDeletion {
            repo: repo.clone(),
            digest: d.clone(),
            tags: by_digest[d].tags.clone(),
            reason,
        })
        .collect()
}

impl Registry {
    /// What the rules would delete now, changing nothing.
    pub async fn retention_plan(&self, retention: &Retention) -> Result<RetentionPlan> {
        let mut plan = RetentionPlan::default();
        if retention.is_empty() {
            return Ok(plan);
        }
        self.flush_pulls().await?;
        let now = now_ms();
        let mut last: Option<String> = None;
        loop {
            let repos = self.meta.repos().list(1000, last.as_deref()).await?;
            for repo in &repos {
                let Some((keep_tags, rule)) = retention.rule_for(repo) else {
                    continue;
                };
                let inventory = self.meta.manifests().inventory(repo).await?;
                let immutable = |t: &Tag| {
                    self.rules.tag_is_immutable(repo, t)
                        || self.rules.environments.is_environment(repo, t)
                };
                let pinned: BTreeSet<Digest> =
                    self.protected_digests(repo).await?.into_iter().collect();
                plan.deletions.extend(plan_repo(
                    repo, rule, keep_tags, &inventory, now, &immutable, &pinned,
                ));
            }
            match repos.last() {
                Some(r) if repos.len() == 1000 => last = Some(r.to_string()),
                _ => break,
            }
        }
        let doomed: Vec<(RepoName, Digest)> = plan
            .deletions
            .iter()
            .map(|d| (d.repo.clone(), d.digest.clone()))
            .collect();
        plan.bytes_freed = self.meta.manifests().exclusive_bytes(&doomed).await?;
        Ok(plan)
    }

    /// Plans, then deletes what the plan says (restorable within the undelete window). Returns
    /// the plan as applied; a manifest deleted meanwhile by someone else is skipped.
    pub async fn retention_apply(&self, retention: &Retention) -> Result<RetentionPlan> {
        let mut plan = self.retention_plan(retention).await?;
        let mut applied = Vec::with_capacity(plan.deletions.len());
        for d in plan.deletions.drain(..) {
            match self.meta.manifests().delete(&d.repo, &d.digest).await {
                Ok(_) => {
                    info!(repo = %d.repo, digest = %d.digest, reason = %d.reason, "retention deleted a manifest");
                    applied.push(d);
                }
                Err(MetaError::NotFound) => {}
                Err(e) => return Err(e.into()),
            }
        }
        plan.deletions = applied;
        Ok(plan)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dg(i: u32) -> Digest {
        format!("sha256:{i:064x}").parse().unwrap()
    }

    fn m(i: u32, age_days: i64, tags: &[&str]) -> ManifestInfo {
        ManifestInfo {
            digest: dg(i),
            created_at_ms: NOW - age_days * DAY_MS - i64::from(i),
            last_pulled_at_ms: None,
            subject: None,
            tags: tags.iter().map(|t| t.parse().unwrap()).collect(),
            children: vec![],
        }
    }

    const NOW: i64 = 1_000 * DAY_MS;

    fn plan(rule: RetentionRule, inv: &[ManifestInfo]) -> Vec<u32> {
        let r = Retention::new(std::slice::from_ref(&rule)).unwrap();
        let repo: RepoName = "ci/app".parse().unwrap();
        let (tags, rule) = r.rule_for(&repo).unwrap();
        let immutable = |t: &Tag| t.as_str() == "locked";
        // Manifest 98 is an environment's digest (or was recently).
        let pinned: BTreeSet<Digest> = [dg(98)].into_iter().collect();
        let mut out: Vec<u32> = plan_repo(&repo, rule, tags, inv, NOW, &immutable, &pinned)
            .iter()
            .map(|d| (1..100).find(|i| dg(*i) == d.digest).unwrap())
            .collect();
        out.sort();
        out
    }

    fn rule() -> RetentionRule {
        RetentionRule {
            repositories: "ci/**".into(),
            ..Default::default()
        }
    }

    #[test]
    fn environment_digests_are_never_planned_for_deletion() {
        let inv = [m(98, 500, &[]), m(2, 500, &[]), m(3, 0, &["x"])];
        let r = RetentionRule {
            keep_last: Some(1),
            ..rule()
        };
        assert_eq!(plan(r, &inv), [2]);
    }

    #[test]
    fn keep_last_keeps_the_newest_and_protected_tags() {
        let inv = [
            m(1, 1, &["a"]),
            m(2, 2, &[]),
            m(3, 3, &["v1.0"]),
            m(4, 4, &["locked"]),
            m(5, 5, &["b"]),
        ];
        let r = RetentionRule {
            keep_last: Some(2),
            keep_tags: vec!["v*".into()],
            ..rule()
        };
        assert_eq!(plan(r, &inv), vec![5]);
    }

    #[test]
    fn keep_days_counts_pulls_as_use() {
        let mut inv = vec![m(1, 1, &[]), m(2, 40, &["x"]), m(3, 40, &["y"])];
        inv[2].last_pulled_at_ms = Some(NOW - 2 * DAY_MS);
        let r = RetentionRule {
            keep_days: Some(30),
            ..rule()
        };
        assert_eq!(plan(r, &inv), vec![2]);
    }

    #[test]
    fn untagged_rule_deletes_only_old_untagged() {
        let inv = [m(1, 10, &[]), m(2, 1, &[]), m(3, 10, &["t"])];
        let r = RetentionRule {
            untagged_days: Some(7),
            ..rule()
        };
        assert_eq!(plan(r, &inv), vec![1]);
    }

    #[test]
    fn referrers_and_unshared_index_entries_go_with_their_manifest() {
        let mut index = m(1, 10, &[]);
        index.children = vec![dg(2), dg(3)];
        let mut kept_index = m(4, 0, &["keep"]);
        kept_index.children = vec![dg(3)];
        let mut sig = m(5, 0, &[]);
        sig.subject = Some(dg(1));
        let mut sig_of_sig = m(6, 0, &[]);
        sig_of_sig.subject = Some(dg(5));
        let mut kept_sig = m(7, 0, &[]);
        kept_sig.subject = Some(dg(4));
        let inv = [
            index,
            m(2, 10, &[]),
            m(3, 10, &[]),
            kept_index,
            sig,
            sig_of_sig,
            kept_sig,
        ];
        let r = RetentionRule {
            untagged_days: Some(7),
            ..rule()
        };
        // 1 is old and untagged; 2 goes with it; 3 is also named by the kept index 4; 5 and 6
        // are 1's referrers; 7 refers to a kept manifest. Children and referrers are never
        // judged on their own (2, 3 are old and untagged too).
        assert_eq!(plan(r, &inv), vec![1, 2, 5, 6]);
    }

    #[test]
    fn rules_apply_by_repository_pattern() {
        let r = Retention::new(&[rule()]).unwrap();
        assert!(r.rule_for(&"ci/app".parse().unwrap()).is_some());
        assert!(r.rule_for(&"prod/app".parse().unwrap()).is_none());
        assert!(Retention::new(&[RetentionRule {
            repositories: "[".into(),
            ..rule()
        }])
        .is_err());
    }
}
