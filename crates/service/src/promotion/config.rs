//! `[promotion]` configuration, compiled once: each repository's ordered environments, and the
//! gates guarding entry into each environment. Matching is pure and in memory.

use globset::GlobMatcher;
use serde::{Deserialize, Serialize};

use bonded_types::{RepoName, Tag};

use crate::auth::Role;
use crate::rules::glob;
use crate::supply::{PolicyMode, RequireProvenance, RequireSignature};

fn default_environments() -> Vec<String> {
    vec!["dev".into(), "staging".into(), "prod".into()]
}

fn default_keep() -> u32 {
    5
}

fn all_repositories() -> String {
    "**".into()
}

/// `[promotion]` in the configuration file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PromotionConfig {
    /// The environments of every repository no `[[promotion.order]]` names, in promotion order.
    /// Their names are reserved tags: they move only by promotion and rollback. Empty turns
    /// environments off.
    #[serde(default = "default_environments")]
    pub environments: Vec<String>,
    /// Retention, GC and deletes never take the last this-many digests of each environment's
    /// history, so a rollback target always exists.
    #[serde(default = "default_keep")]
    pub keep_history: u32,
    /// Other environment orders for repositories matching a glob (first match wins), e.g. model
    /// aliases `["challenger", "champion"]` for `ml/**`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub order: Vec<EnvironmentOrder>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub gates: Vec<GateConfig>,
}

impl Default for PromotionConfig {
    fn default() -> Self {
        PromotionConfig {
            environments: default_environments(),
            keep_history: default_keep(),
            order: Vec::new(),
            gates: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnvironmentOrder {
    pub repositories: String,
    pub environments: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApprovalGate {
    /// Distinct approvers needed.
    pub count: u32,
    /// The least role an approver must have held on the repository when approving.
    #[serde(default = "maintainer")]
    pub role: String,
}

fn maintainer() -> String {
    "maintainer".into()
}

/// `[[promotion.gates]]`: what promotion into `environment` of matching repositories requires.
/// Several gates may apply to one promotion; all of them are checked.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GateConfig {
    #[serde(default = "all_repositories")]
    pub repositories: String,
    pub environment: String,
    /// `enforce` refuses a promotion that fails; `warn` records the failure and promotes.
    #[serde(default)]
    pub mode: PolicyMode,
    /// A signature by a key of this key set of the namespace's trust store.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signature: Option<RequireSignature>,
    /// SLSA provenance (from a builder, for a source, signed by a key set).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provenance: Option<RequireProvenance>,
    /// A signed SBOM.
    #[serde(default)]
    pub sbom: bool,
    /// The artifact must be (or have been) in the previous environment of the order.
    #[serde(default)]
    pub previous: bool,
    /// ... for at least this long (implies `previous`).
    #[serde(default)]
    pub min_soak_secs: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approvals: Option<ApprovalGate>,
    /// Thresholds on evaluation metrics recorded as manifest annotations
    /// `dev.bonded.metric.<name>`: `"accuracy >= 0.91"`, or relative to the digest the
    /// environment points at now: `"accuracy >= current - 0.5%"`, `"latency_ms <= current + 10"`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub metrics: Vec<String>,
    /// The newest canary verdict recorded for the artifact must be `pass`.
    #[serde(default)]
    pub canary: bool,
    /// No finding at or above a severity in the artifact's latest scan, which must have run
    /// against the current, fresh vulnerability database.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vulnerabilities: Option<VulnGate>,
}

/// `vulnerabilities = { max_severity = "high", max_db_age_days = 5 }`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VulnGate {
    /// `critical`, `high`, `medium` or `low`: a finding at or above it fails the gate.
    pub max_severity: String,
    /// A scan against a database last updated longer ago than this does not pass.
    #[serde(default = "five_days")]
    pub max_db_age_days: u64,
}

fn five_days() -> u64 {
    5
}

/// A comparison of a metric threshold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cmp {
    Ge,
    Gt,
    Le,
    Lt,
    Eq,
}

impl Cmp {
    pub fn holds(self, a: f64, b: f64) -> bool {
        match self {
            Cmp::Ge => a >= b,
            Cmp::Gt => a > b,
            Cmp::Le => a <= b,
            Cmp::Lt => a < b,
            Cmp::Eq => (a - b).abs() <= f64::EPSILON * a.abs().max(b.abs()).max(1.0),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Cmp::Ge => ">=",
            Cmp::Gt => ">",
            Cmp::Le => "<=",
            Cmp::Lt => "<",
            Cmp::Eq => "==",
        }
    }
}

/// What a metric is compared with.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Bound {
    Value(f64),
    /// The current digest's value, plus `delta` (absolute, or a fraction of it when `relative`).
    Current {
        delta: f64,
        relative: bool,
    },
}

#[derive(Debug, Clone, PartialEq)]
pub struct MetricRule {
    pub text: String,
    pub metric: String,
    pub cmp: Cmp,
    pub bound: Bound,
}

impl MetricRule {
    /// `name op number` or `name op current [(+|-) number[%]]`.
    pub fn parse(text: &str) -> Result<MetricRule, String> {
        let bad = |why: &str| {
            format!(
                "metric gate {text:?}: {why} (write e.g. \"accuracy >= 0.91\" or \"accuracy >= current - 0.5%\")"
            )
        };
        let ops = [
            (">=", Cmp::Ge),
            ("<=", Cmp::Le),
            ("==", Cmp::Eq),
            (">", Cmp::Gt),
            ("<", Cmp::Lt),
        ];
        let (at, op, cmp) = ops
            .iter()
            .filter_map(|(op, c)| text.find(op).map(|i| (i, *op, *c)))
            .min_by_key(|(i, op, _)| (*i, usize::MAX - op.len()))
            .ok_or_else(|| bad("no comparison operator"))?;
        let metric = text[..at].trim();
        let rhs = text[at + op.len()..].trim();
        if metric.is_empty()
            || !metric
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
        {
            return Err(bad("the metric name must be [A-Za-z0-9._-]+"));
        }
        let number = |s: &str| -> Result<f64, String> {
            s.trim()
                .parse::<f64>()
                .ok()
                .filter(|v| v.is_finite())
                .ok_or_else(|| bad(&format!("{s:?} is not a number")))
        };
        let bound = if let Some(rest) = rhs.strip_prefix("current") {
            let rest = rest.trim();
            if rest.is_empty() {
                Bound::Current {
                    delta: 0.0,
                    relative: false,
                }
            } else {
                let (sign, amount) = match rest.split_at(1) {
                    ("+", a) => (1.0, a),
                    ("-", a) => (-1.0, a),
                    _ => return Err(bad("after `current` comes `+ x` or `- x`")),
                };
                let amount = amount.trim();
                match amount.strip_suffix('%') {
                    Some(p) => Bound::Current {
                        delta: sign * number(p)? / 100.0,
                        relative: true,
                    },
                    None => Bound::Current {
                        delta: sign * number(amount)?,
                        relative: false,
                    },
                }
            }
        } else {
            Bound::Value(number(rhs)?)
        };
        Ok(MetricRule {
            text: text.to_string(),
            metric: metric.to_string(),
            cmp,
            bound,
        })
    }

    /// The threshold given the current digest's value, if the rule needs one.
    pub fn threshold(&self, current: Option<f64>) -> Option<f64> {
        match self.bound {
            Bound::Value(v) => Some(v),
            Bound::Current { delta, relative } => current.map(|c| {
                if relative {
                    c + c.abs() * delta
                } else {
                    c + delta
                }
            }),
        }
    }
}

#[derive(Debug, Clone)]
pub(crate) struct Gate {
    pub name: String,
    pub config: GateConfig,
    pub approval_role: Option<Role>,
    pub metrics: Vec<MetricRule>,
    matcher: GlobMatcher,
}

/// The compiled `[promotion]` section.
#[derive(Debug, Clone)]
pub struct Environments {
    default: Vec<Tag>,
    order: Vec<(GlobMatcher, Vec<Tag>)>,
    pub(crate) gates: Vec<Gate>,
    pub keep_history: u32,
}

impl Default for Environments {
    fn default() -> Self {
        Environments::new(&PromotionConfig::default()).expect("the default order is valid")
    }
}

fn env_list(names: &[String], what: &str) -> Result<Vec<Tag>, String> {
    let mut out: Vec<Tag> = Vec::with_capacity(names.len());
    for n in names {
        let t: Tag = n
            .parse()
            .map_err(|e| format!("{what}: environment {n:?} is not a valid tag name ({e})"))?;
        if out.contains(&t) {
            return Err(format!("{what}: environment {n:?} is listed twice"));
        }
        out.push(t);
    }
    Ok(out)
}

impl Environments {
    pub fn new(config: &PromotionConfig) -> Result<Environments, String> {
        let default = env_list(&config.environments, "promotion.environments")?;
        let mut order = Vec::new();
        for (i, o) in config.order.iter().enumerate() {
            let what = format!("promotion.order[{i}]");
            let m = glob(&o.repositories).map_err(|e| format!("{what}: {e}"))?;
            order.push((m, env_list(&o.environments, &what)?));
        }
        let mut gates = Vec::new();
        for (i, g) in config.gates.iter().enumerate() {
            let what = format!("promotion.gates[{i}]");
            let matcher = glob(&g.repositories).map_err(|e| format!("{what}: {e}"))?;
            g.environment
                .parse::<Tag>()
                .map_err(|e| format!("{what}: environment {:?}: {e}", g.environment))?;
            let approval_role = match &g.approvals {
                Some(a) if a.count == 0 => {
                    return Err(format!("{what}: approvals.count must be at least 1"))
                }
                Some(a) => Some(a.role.parse::<Role>().map_err(|e| format!("{what}: {e}"))?),
                None => None,
            };
            if let Some(v) = &g.vulnerabilities {
                if !["critical", "high", "medium", "low"].contains(&v.max_severity.as_str()) {
                    return Err(format!(
                        "{what}: vulnerabilities.max_severity {:?} is not one of critical, high, medium, low",
                        v.max_severity
                    ));
                }
            }
            let metrics = g
                .metrics
                .iter()
                .map(|m| MetricRule::parse(m).map_err(|e| format!("{what}: {e}")))
                .collect::<Result<_, _>>()?;
            gates.push(Gate {
                name: format!("gate #{i} ({} → {})", g.repositories, g.environment),
                config: g.clone(),
                approval_role,
                metrics,
                matcher,
            });
        }
        Ok(Environments {
            default,
            order,
            gates,
            keep_history: config.keep_history.max(1),
        })
    }

    /// The environments of `repo`, in promotion order.
    pub fn of(&self, repo: &RepoName) -> &[Tag] {
        self.order
            .iter()
            .find(|(m, _)| m.is_match(repo.as_str()))
            .map_or(&self.default, |(_, envs)| envs)
    }

    pub fn is_environment(&self, repo: &RepoName, tag: &Tag) -> bool {
        self.of(repo).contains(tag)
    }

    /// Gates guarding entry into `env` of `repo`, in configuration order (mode `off` excluded).
    pub(crate) fn gates(&self, repo: &RepoName, env: &Tag) -> Vec<&Gate> {
        self.gates
            .iter()
            .filter(|g| {
                g.config.mode != PolicyMode::Off
                    && g.config.environment == env.as_str()
                    && g.matcher.is_match(repo.as_str())
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metric_rules_parse_absolute_and_relative_bounds() {
        let r = MetricRule::parse("accuracy >= 0.91").unwrap();
        assert_eq!((r.metric.as_str(), r.cmp), ("accuracy", Cmp::Ge));
        assert_eq!(r.threshold(None), Some(0.91));
        let r = MetricRule::parse("accuracy>=current - 0.5%").unwrap();
        assert_eq!(r.cmp, Cmp::Ge);
        let t = r.threshold(Some(0.9)).unwrap();
        assert!((t - 0.8955).abs() < 1e-12, "{t}");
        assert_eq!(r.threshold(None), None);
        let r = MetricRule::parse("latency_ms <= current + 10").unwrap();
        assert_eq!(r.threshold(Some(100.0)), Some(110.0));
        assert_eq!(MetricRule::parse("loss < 2").unwrap().cmp, Cmp::Lt);
        assert_eq!(MetricRule::parse("f1 == current").unwrap().cmp, Cmp::Eq);
        for bad in [
            "accuracy",
            ">= 1",
            "acc uracy >= 1",
            "accuracy >= high",
            "accuracy >= current * 2",
            "accuracy >= current - x%",
        ] {
            assert!(MetricRule::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn repositories_get_their_order_and_gates() {
        let cfg: PromotionConfig = toml::from_str(
            r#"
            keep_history = 3
            [[order]]
            repositories = "ml/**"
            environments = ["challenger", "champion"]
            [[gates]]
            environment = "prod"
            sbom = true
            [[gates]]
            repositories = "team/*"
            environment = "prod"
            mode = "off"
            approvals = { count = 2 }
            "#,
        )
        .unwrap();
        let envs = Environments::new(&cfg).unwrap();
        let app: RepoName = "team/app".parse().unwrap();
        let model: RepoName = "ml/recsys".parse().unwrap();
        let names =
            |r: &RepoName| -> Vec<String> { envs.of(r).iter().map(|t| t.to_string()).collect() };
        assert_eq!(names(&app), ["dev", "staging", "prod"]);
        assert_eq!(names(&model), ["challenger", "champion"]);
        assert!(envs.is_environment(&app, &"prod".parse().unwrap()));
        assert!(!envs.is_environment(&model, &"prod".parse().unwrap()));
        let prod: Tag = "prod".parse().unwrap();
        assert_eq!(
            envs.gates(&app, &prod).len(),
            1,
            "the `off` gate is skipped"
        );
        assert!(envs.gates(&app, &"staging".parse().unwrap()).is_empty());
        assert_eq!(envs.keep_history, 3);
    }

    #[test]
    fn bad_configuration_is_refused_with_the_reason() {
        let bad = |toml_text: &str| {
            let cfg: PromotionConfig = toml::from_str(toml_text).unwrap();
            Environments::new(&cfg).unwrap_err()
        };
        assert!(bad(r#"environments = ["dev", "dev"]"#).contains("twice"));
        assert!(bad(r#"environments = ["Prod/x"]"#).contains("not a valid tag"));
        assert!(
            bad("[[gates]]\nenvironment = \"prod\"\napprovals = { count = 0 }")
                .contains("at least 1")
        );
        assert!(bad(
            "[[gates]]\nenvironment = \"prod\"\napprovals = { count = 1, role = \"boss\" }"
        )
        .contains("boss"));
        assert!(bad("[[gates]]\nenvironment = \"prod\"\nmetrics = [\"acc\"]").contains("operator"));
    }
}
