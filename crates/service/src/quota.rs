//! Quotas per namespace (docs/quotas.md): storage bytes and artifact counts, checked on the push
//! path before anything new is linked or stored.
//!
//! The dedupe rule: a namespace is charged once for each distinct blob linked into any of its
//! repositories, however many repositories or manifests share it; a blob shared across
//! namespaces is charged to each of them, so one team's pushes never use another's quota. A push
//! of a blob the namespace already has costs nothing. Manifests count against `max_artifacts`.
//!
//! The check reads the usage and then links, outside one transaction: concurrent pushes into one
//! namespace may overshoot the quota by at most what they have in flight together.
//!
//! Reading a namespace's usage is a query over its links, so each node keeps the usage it last
//! read for a few seconds ([`ChargeCache`]) and adds what it lets through since. A push that fits
//! under the cached figure passes without a query; one that does not is checked against a fresh
//! read before it is refused, so a refusal is always exact and space freed by a delete or a
//! collection is usable at once. What the cache can miss is other nodes' pushes of the last few
//! seconds, which can then overshoot the quota by as much.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use bonded_meta::Charge;
use bonded_types::{format_size, Digest, RepoName};
use globset::GlobMatcher;

use crate::rules::{glob, RulesError};
use crate::{Error, Registry, Result};

/// One `[[quota]]` entry: limits for every namespace matching `namespace`, a glob over a
/// repository name's first component (`team-a`, `team-*`, `*`). The first matching entry applies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuotaRule {
    pub namespace: String,
    /// Blob bytes (each distinct blob once per namespace).
    pub max_bytes: Option<u64>,
    /// Live manifests.
    pub max_artifacts: Option<u64>,
}

/// The compiled `[[quota]]` entries.
#[derive(Debug, Default)]
pub struct Quotas {
    rules: Vec<(GlobMatcher, QuotaRule)>,
}

impl Quotas {
    pub fn new(rules: &[QuotaRule]) -> Result<Quotas, RulesError> {
        Ok(Quotas {
            rules: rules
                .iter()
                .map(|r| Ok((glob(&r.namespace)?, r.clone())))
                .collect::<Result<_, RulesError>>()?,
        })
    }

    /// The quota of `namespace`, if an entry matches it.
    pub fn of(&self, namespace: &str) -> Option<&QuotaRule> {
        self.rules
            .iter()
            .find(|(m, _)| m.is_match(namespace))
            .map(|(_, r)| r)
    }

    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }
}

/// How long a namespace's usage read from the metadata store is trusted for letting pushes pass.
const CHARGE_TTL: Duration = Duration::from_secs(5);

/// The usage each namespace had when last read, plus what this node let through since.
#[derive(Debug, Default)]
pub(crate) struct ChargeCache {
    entries: Mutex<HashMap<String, (Instant, Charge)>>,
}

impl ChargeCache {
    /// The cached usage of `ns`, if read within `CHARGE_TTL`.
    fn get(&self, ns: &str) -> Option<Charge> {
        let entries = self.entries.lock().expect("charge cache lock");
        entries
            .get(ns)
            .filter(|(at, _)| at.elapsed() < CHARGE_TTL)
            .map(|(_, c)| *c)
    }

    fn put(&self, ns: &str, charge: Charge) {
        let mut entries = self.entries.lock().expect("charge cache lock");
        entries.retain(|_, (at, _)| at.elapsed() < CHARGE_TTL);
        entries.insert(ns.to_string(), (Instant::now(), charge));
    }

    /// Counts a push that was let through against the cached usage.
    fn add(&self, ns: &str, bytes: u64, artifacts: u64) {
        let mut entries = self.entries.lock().expect("charge cache lock");
        if let Some((_, c)) = entries.get_mut(ns) {
            c.bytes = c.bytes.saturating_add(bytes);
            c.artifacts = c.artifacts.saturating_add(artifacts);
        }
    }
}

/// A repository's namespace: the first component of its name.
pub(crate) fn namespace_of(repo: &RepoName) -> &str {
    let name = repo.as_str();
    name.split_once('/').map_or(name, |(ns, _)| ns)
}

impl Registry {
    /// Refuses linking `digest` (`size` bytes) into `repo` if that would take the namespace over
    /// its byte quota. Free (no query) without a byte quota; free (one query) when the namespace
    /// already has the blob.
    pub(crate) async fn quota_check_blob(
        &self,
        repo: &RepoName,
        digest: &Digest,
        size: u64,
    ) -> Result<()> {
        let ns = namespace_of(repo);
        let Some(max) = self.rules.quotas.of(ns).and_then(|q| q.max_bytes) else {
            return Ok(());
        };
        if self.meta.usage().charged_for(ns, digest).await? {
            return Ok(());
        }
        let fits = |c: Charge| c.bytes.saturating_add(size) <= max;
        let used = match self.charges.get(ns).filter(|c| fits(*c)) {
            Some(_) => None,
            None => {
                let fresh = self.meta.usage().charge(ns).await?;
                self.charges.put(ns, fresh);
                Some(fresh.bytes).filter(|_| !fits(fresh))
            }
        };
        if let Some(used) = used {
            return Err(Error::Denied(format!(
                "namespace {ns:?} is over its storage quota: {} used + {} pushed > {} quota \
                 ({used} + {size} > {max} bytes); delete artifacts (space is freed once garbage \
                 collection reclaims their blobs) or ask an administrator to raise the quota",
                format_size(used),
                format_size(size),
                format_size(max),
            )));
        }
        self.charges.add(ns, size, 0);
        Ok(())
    }

    /// Refuses storing a new manifest in `repo` if the namespace is at its artifact quota.
    /// Re-pushing a manifest the repository has costs nothing.
    pub(crate) async fn quota_check_manifest(
        &self,
        repo: &RepoName,
        digest: &Digest,
    ) -> Result<()> {
        let ns = namespace_of(repo);
        let Some(max) = self.rules.quotas.of(ns).and_then(|q| q.max_artifacts) else {
            return Ok(());
        };
        if self.meta.manifests().get(repo, digest).await?.is_some() {
            return Ok(());
        }
        let fits = |c: Charge| c.artifacts < max;
        let used = match self.charges.get(ns).filter(|c| fits(*c)) {
            Some(_) => None,
            None => {
                let fresh = self.meta.usage().charge(ns).await?;
                self.charges.put(ns, fresh);
                Some(fresh.artifacts).filter(|_| !fits(fresh))
            }
        };
        if let Some(used) = used {
            return Err(Error::Denied(format!(
                "namespace {ns:?} is over its artifact quota: {used} artifacts + 1 pushed > {max} \
                 quota; delete artifacts or ask an administrator to raise the quota"
            )));
        }
        self.charges.add(ns, 0, 1);
        Ok(())
    }

    /// The quota that applies to `namespace`, if any.
    pub fn quota_of(&self, namespace: &str) -> Option<&QuotaRule> {
        self.rules.quotas.of(namespace)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_matching_quota_applies_per_namespace() {
        let q = Quotas::new(&[
            QuotaRule {
                namespace: "team-a".into(),
                max_bytes: Some(10),
                max_artifacts: None,
            },
            QuotaRule {
                namespace: "team-*".into(),
                max_bytes: Some(20),
                max_artifacts: Some(3),
            },
        ])
        .unwrap();
        assert_eq!(q.of("team-a").unwrap().max_bytes, Some(10));
        assert_eq!(q.of("team-b").unwrap().max_bytes, Some(20));
        assert!(q.of("ml").is_none());
        assert!(q.of("team-a-x").unwrap().max_artifacts == Some(3));
        assert_eq!(namespace_of(&"team-a/x/y".parse().unwrap()), "team-a");
        assert_eq!(namespace_of(&"solo".parse().unwrap()), "solo");
    }
}
