//! Repository rules that come from configuration: tag immutability, the supply-chain
//! policies compiled in `supply::policy`, and namespace quotas (`quota`).

use bonded_types::{RepoName, Tag};
use globset::{Glob, GlobBuilder, GlobMatcher};

/// "Tags matching `tags` in repositories matching `repositories` cannot be moved or deleted."
/// Patterns are globs: `*` stays within one path component, `**` spans several.
#[derive(Debug, Clone)]
pub struct ImmutableTagRule {
    pub repositories: String,
    pub tags: String,
}

#[derive(Debug, thiserror::Error)]
#[error("invalid pattern {pattern:?}: {source}")]
pub struct RulesError {
    pattern: String,
    source: globset::Error,
}

#[derive(Debug, Default)]
pub struct Rules {
    immutable: Vec<(GlobMatcher, GlobMatcher)>,
    /// Supply-chain policy (signatures, provenance, SBOMs); see `supply::policy`.
    pub(crate) policies: crate::supply::Policies,
    /// Environments and promotion gates; see `promotion::config`.
    pub(crate) environments: crate::promotion::Environments,
    /// Namespace quotas; see `quota`.
    pub(crate) quotas: crate::quota::Quotas,
}

pub(crate) fn glob(pattern: &str) -> Result<GlobMatcher, RulesError> {
    GlobBuilder::new(pattern)
        .literal_separator(true)
        .build()
        .or_else(|_| Glob::new(pattern))
        .map(|g| g.compile_matcher())
        .map_err(|source| RulesError {
            pattern: pattern.to_string(),
            source,
        })
}

impl Rules {
    pub fn new(immutable: &[ImmutableTagRule]) -> Result<Rules, RulesError> {
        let immutable = immutable
            .iter()
            .map(|r| Ok((glob(&r.repositories)?, glob(&r.tags)?)))
            .collect::<Result<_, RulesError>>()?;
        Ok(Rules {
            immutable,
            policies: Default::default(),
            environments: Default::default(),
            quotas: Default::default(),
        })
    }

    /// Adds supply-chain policy rules.
    pub fn with_policies(mut self, policies: crate::supply::Policies) -> Rules {
        self.policies = policies;
        self
    }

    /// Sets the environments and promotion gates.
    pub fn with_environments(mut self, environments: crate::promotion::Environments) -> Rules {
        self.environments = environments;
        self
    }

    /// Adds namespace quotas.
    pub fn with_quotas(mut self, quotas: crate::quota::Quotas) -> Rules {
        self.quotas = quotas;
        self
    }

    pub fn tag_is_immutable(&self, repo: &RepoName, tag: &Tag) -> bool {
        self.immutable
            .iter()
            .any(|(r, t)| r.is_match(repo.as_str()) && t.is_match(tag.as_str()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn immutable_rules_match_by_glob() {
        let rules = Rules::new(&[ImmutableTagRule {
            repositories: "prod/**".into(),
            tags: "v*".into(),
        }])
        .unwrap();
        let check =
            |r: &str, t: &str| rules.tag_is_immutable(&r.parse().unwrap(), &t.parse().unwrap());
        assert!(check("prod/app", "v1"));
        assert!(check("prod/team/app", "v1.2"));
        assert!(!check("prod/app", "latest"));
        assert!(!check("dev/app", "v1"));
        assert!(!check("production/app", "v1"));
    }
}
