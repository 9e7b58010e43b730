//! Supply-chain policy rules from configuration, compiled once.
//!
//! A rule covers repositories matching a glob, on some events, in a mode, and requires any of: a
//! signature from a key set, SLSA provenance from a builder for a source, an SBOM, no unwaived
//! vulnerabilities at or above a severity (judged as the promotion gate judges it,
//! `vuln_policy.rs`). Matching a
//! repository against the rules is pure and in memory, so requests no rule covers cost nothing.

use globset::GlobMatcher;
use serde::{Deserialize, Serialize};

use bonded_types::RepoName;

use crate::rules::{glob, RulesError};

/// When a rule is checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PolicyEvent {
    /// `GET`/`HEAD` of a manifest by tag.
    PullByTag,
    /// `GET`/`HEAD` of a manifest by digest (referrers themselves are never checked).
    PullByDigest,
    /// `PUT` of a manifest under a tag. Pushes by digest are always accepted: that is how an
    /// artifact gets signed and attested before it is tagged.
    Push,
}

impl PolicyEvent {
    pub fn as_str(self) -> &'static str {
        match self {
            PolicyEvent::PullByTag => "pull-by-tag",
            PolicyEvent::PullByDigest => "pull-by-digest",
            PolicyEvent::Push => "push",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PolicyMode {
    /// Refuse with `DENIED`.
    #[default]
    Enforce,
    /// Allow, but log and answer with a `Bonded-Policy-Warning` header.
    Warn,
    /// Not checked.
    Off,
}

impl PolicyMode {
    pub fn as_str(self) -> &'static str {
        match self {
            PolicyMode::Enforce => "enforce",
            PolicyMode::Warn => "warn",
            PolicyMode::Off => "off",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RequireSignature {
    /// Name of a key set in the repository's namespace trust store.
    pub key_set: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RequireProvenance {
    /// Exact `runDetails.builder.id`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub builder: Option<String>,
    /// Source repository URI: a `resolvedDependencies[].uri` or `externalParameters.source.uri`
    /// equal to it, or to it followed by `@…`/`#…`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// Key set the provenance must be signed by; unset means any key of the namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_set: Option<String>,
}

/// `[[policy]]` in the configuration file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyConfig {
    /// Named in refusals; defaults to `policy #<n> (<repositories>)`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Glob over repository names: `*` within one component, `**` across several.
    pub repositories: String,
    #[serde(default = "default_events")]
    pub on: Vec<PolicyEvent>,
    #[serde(default)]
    pub mode: PolicyMode,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub require_signature: Option<RequireSignature>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub require_provenance: Option<RequireProvenance>,
    /// A signed CycloneDX or SPDX SBOM by any key of the namespace.
    #[serde(default)]
    pub require_sbom: bool,
    /// `{ max_severity = "high", max_db_age_days = 5 }`: the latest scan ran against the current
    /// database, imported within the age, and has no unwaived finding at or above the severity.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vulnerabilities: Option<crate::promotion::VulnGate>,
}

fn default_events() -> Vec<PolicyEvent> {
    vec![PolicyEvent::PullByTag]
}

/// A compiled rule.
#[derive(Debug, Clone)]
pub struct PolicyRule {
    pub name: String,
    pub config: PolicyConfig,
    matcher: GlobMatcher,
}

impl PolicyRule {
    pub fn applies(&self, repo: &RepoName, event: PolicyEvent) -> bool {
        self.config.mode != PolicyMode::Off
            && self.config.on.contains(&event)
            && self.matcher.is_match(repo.as_str())
    }

    /// Whether this rule covers `repo` at all (for showing verdicts).
    pub fn covers(&self, repo: &RepoName) -> bool {
        self.matcher.is_match(repo.as_str())
    }
}

#[derive(Debug, Clone, Default)]
pub struct Policies {
    rules: Vec<PolicyRule>,
}

#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    #[error(transparent)]
    Pattern(#[from] RulesError),
    #[error("{0}")]
    Invalid(String),
}

pub(crate) fn valid_key_set(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b))
}

impl Policies {
    pub fn new(configs: &[PolicyConfig]) -> Result<Policies, PolicyError> {
        let mut rules = Vec::with_capacity(configs.len());
        for (i, c) in configs.iter().enumerate() {
            let name = c
                .name
                .clone()
                .unwrap_or_else(|| format!("policy #{} ({})", i + 1, c.repositories));
            if c.require_signature.is_none()
                && c.require_provenance.is_none()
                && !c.require_sbom
                && c.vulnerabilities.is_none()
            {
                return Err(PolicyError::Invalid(format!(
                    "{name} requires nothing: set require_signature, require_provenance, \
                     require_sbom or vulnerabilities"
                )));
            }
            if let Some(v) = &c.vulnerabilities {
                if !["critical", "high", "medium", "low"].contains(&v.max_severity.as_str()) {
                    return Err(PolicyError::Invalid(format!(
                        "{name}: vulnerabilities.max_severity {:?} is not one of critical, high, \
                         medium, low",
                        v.max_severity
                    )));
                }
            }
            if c.on.is_empty() {
                return Err(PolicyError::Invalid(format!(
                    "{name} has an empty `on`: list pull-by-tag, pull-by-digest and/or push"
                )));
            }
            let sets = c
                .require_signature
                .iter()
                .map(|s| s.key_set.as_str())
                .chain(
                    c.require_provenance
                        .iter()
                        .filter_map(|p| p.key_set.as_deref()),
                );
            for set in sets {
                if !valid_key_set(set) {
                    return Err(PolicyError::Invalid(format!(
                        "{name}: key set {set:?} must be 1-64 of [a-z0-9._-]"
                    )));
                }
            }
            rules.push(PolicyRule {
                name,
                config: c.clone(),
                matcher: glob(&c.repositories)?,
            });
        }
        Ok(Policies { rules })
    }

    /// Rules to check for this request; empty (and allocation-free) when none applies.
    pub fn applicable(&self, repo: &RepoName, event: PolicyEvent) -> Vec<&PolicyRule> {
        if self.rules.is_empty() {
            return Vec::new();
        }
        self.rules
            .iter()
            .filter(|r| r.applies(repo, event))
            .collect()
    }

    pub fn covering(&self, repo: &RepoName) -> Vec<&PolicyRule> {
        self.rules.iter().filter(|r| r.covers(repo)).collect()
    }

    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(toml_like: serde_json::Value) -> Result<Policies, PolicyError> {
        let c: PolicyConfig = serde_json::from_value(toml_like).unwrap();
        Policies::new(&[c])
    }

    #[test]
    fn rules_apply_by_glob_event_and_mode() {
        let p = rule(serde_json::json!({
            "repositories": "prod/**",
            "on": ["pull-by-tag", "push"],
            "require_signature": {"key_set": "release"},
        }))
        .unwrap();
        let r = |s: &str| s.parse::<RepoName>().unwrap();
        assert_eq!(
            p.applicable(&r("prod/app"), PolicyEvent::PullByTag).len(),
            1
        );
        assert_eq!(p.applicable(&r("prod/a/b"), PolicyEvent::Push).len(), 1);
        assert!(p
            .applicable(&r("prod/app"), PolicyEvent::PullByDigest)
            .is_empty());
        assert!(p
            .applicable(&r("dev/app"), PolicyEvent::PullByTag)
            .is_empty());
        assert!(p
            .applicable(&r("production/app"), PolicyEvent::PullByTag)
            .is_empty());
        assert_eq!(p.rules[0].name, "policy #1 (prod/**)");

        let off = rule(serde_json::json!({
            "repositories": "prod/**", "mode": "off", "require_sbom": true,
        }))
        .unwrap();
        assert!(off
            .applicable(&r("prod/app"), PolicyEvent::PullByTag)
            .is_empty());
        assert_eq!(off.covering(&r("prod/app")).len(), 1);
    }

    #[test]
    fn rules_that_require_nothing_or_name_bad_key_sets_are_refused() {
        assert!(rule(serde_json::json!({"repositories": "prod/**"})).is_err());
        assert!(rule(serde_json::json!({
            "repositories": "prod/**", "require_signature": {"key_set": "Bad Set"},
        }))
        .is_err());
        assert!(rule(serde_json::json!({
            "repositories": "prod/**", "on": [], "require_sbom": true,
        }))
        .is_err());
        assert!(rule(serde_json::json!({
            "repositories": "prod/**",
            "vulnerabilities": {"max_severity": "severe"},
        }))
        .unwrap_err()
        .to_string()
        .contains("not one of critical, high, medium, low"));
        let v = rule(serde_json::json!({
            "repositories": "prod/**",
            "vulnerabilities": {"max_severity": "high"},
        }))
        .unwrap();
        assert_eq!(
            v.rules[0]
                .config
                .vulnerabilities
                .as_ref()
                .unwrap()
                .max_db_age_days,
            5
        );
        assert!(serde_json::from_value::<PolicyConfig>(serde_json::json!({
            "repositories": "prod/**", "on": ["pull"], "require_sbom": true,
        }))
        .is_err());
    }
}
