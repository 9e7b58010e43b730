//! Evaluating the gates that guard entry into an environment.

use bonded_supply::media::Kind;
use bonded_types::{Digest, RepoName, Tag};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::config::{Gate, MetricRule};
use crate::auth::Role;
use crate::supply::{namespace, PolicyMode};
use crate::{now_ms, Registry, Result};

/// Manifest annotation prefix of recorded evaluation metrics (`dev.bonded.metric.accuracy`).
pub const METRIC_ANNOTATION_PREFIX: &str = "dev.bonded.metric.";

/// One check of one gate, passed or not.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GateVerdict {
    /// Which configured gate.
    pub gate: String,
    /// `signature`, `provenance`, `sbom`, `previous`, `approvals`, `metric`, `canary`,
    /// `vulnerabilities`.
    pub check: String,
    pub passed: bool,
    /// Whether a failure refuses the promotion (`enforce`) or is only recorded (`warn`).
    pub enforced: bool,
    pub detail: String,
}

/// What the gates need to know about the promotion.
pub(super) struct Candidate<'a> {
    pub repo: &'a RepoName,
    pub digest: &'a Digest,
    pub to: &'a Tag,
    /// The environment before `to` in the order, if any.
    pub previous_env: Option<&'a Tag>,
    /// Where `to` points now.
    pub current: Option<&'a Digest>,
}

fn metric_values(content: &[u8]) -> std::collections::BTreeMap<String, String> {
    serde_json::from_slice::<Value>(content)
        .ok()
        .and_then(|m| m.get("annotations").cloned())
        .and_then(|a| match a {
            Value::Object(map) => Some(map),
            _ => None,
        })
        .map(|map| {
            map.into_iter()
                .filter_map(|(k, v)| {
                    let name = k.strip_prefix(METRIC_ANNOTATION_PREFIX)?.to_string();
                    Some((name, v.as_str()?.to_string()))
                })
                .collect()
        })
        .unwrap_or_default()
}

fn number(v: Option<&String>) -> Option<f64> {
    v.and_then(|s| s.trim().parse::<f64>().ok())
        .filter(|f| f.is_finite())
}

fn judge_metric(
    rule: &MetricRule,
    mine: &std::collections::BTreeMap<String, String>,
    current: Option<&std::collections::BTreeMap<String, String>>,
) -> (bool, String) {
    let Some(value) = number(mine.get(&rule.metric)) else {
        return (
            false,
            format!(
                "{}: the artifact records no numeric {METRIC_ANNOTATION_PREFIX}{} annotation",
                rule.text, rule.metric
            ),
        );
    };
    let current_value = current.and_then(|c| number(c.get(&rule.metric)));
    match rule.threshold(current_value) {
        Some(t) => {
            let ok = rule.cmp.holds(value, t);
            (
                ok,
                format!(
                    "{}: {} = {value} {} {t}{}",
                    rule.text,
                    rule.metric,
                    if ok { rule.cmp.as_str() } else { "fails" },
                    if matches!(rule.bound, super::config::Bound::Current { .. }) {
                        " (from the current digest)"
                    } else {
                        ""
                    }
                ),
            )
        }
        // Nothing to compare with: the first artifact of an environment, or one that recorded
        // no value. Passing is what lets an environment get its first artifact.
        None => (
            true,
            format!(
                "{}: {} = {value}; the environment's current digest records no {} to compare with",
                rule.text, rule.metric, rule.metric
            ),
        ),
    }
}

impl Registry {
    /// Evaluates every gate guarding `c.to`; verdicts in configuration order.
    pub(super) async fn evaluate_gates(
        &self,
        c: &Candidate<'_>,
        gates: &[&Gate],
    ) -> Result<Vec<GateVerdict>> {
        let mut out = Vec::new();
        if gates.is_empty() {
            return Ok(out);
        }
        let needs_supply = gates.iter().any(|g| {
            g.config.signature.is_some() || g.config.provenance.is_some() || g.config.sbom
        });
        let findings = if needs_supply {
            let keys = self.trusted_keys(namespace(c.repo)).await?;
            self.findings(c.repo, c.digest, &Kind::ALL, &keys).await?
        } else {
            Vec::new()
        };
        for gate in gates {
            let enforced = gate.config.mode == PolicyMode::Enforce;
            let mut push = |check: &str, passed: bool, detail: String| {
                out.push(GateVerdict {
                    gate: gate.name.clone(),
                    check: check.into(),
                    passed,
                    enforced,
                    detail,
                })
            };
            let supply = crate::supply::PolicyConfig {
                name: None,
                repositories: gate.config.repositories.clone(),
                on: vec![],
                mode: gate.config.mode,
                require_signature: gate.config.signature.clone(),
                require_provenance: gate.config.provenance.clone(),
                require_sbom: gate.config.sbom,
                // Judged below as its own gate check, by the same function.
                vulnerabilities: None,
            };
            for (check, r) in ["signature", "provenance", "sbom"]
                .into_iter()
                .filter(|k| match *k {
                    "signature" => supply.require_signature.is_some(),
                    "provenance" => supply.require_provenance.is_some(),
                    _ => supply.require_sbom,
                })
                .zip(crate::supply::requirements(&supply, &findings))
            {
                let detail = if r.met {
                    format!("{}: present and verified", r.what)
                } else {
                    format!("{}: {}", r.what, r.detail)
                };
                push(check, r.met, detail);
            }
            if gate.config.previous || gate.config.min_soak_secs > 0 {
                let (ok, detail) = self.soaked(c, gate.config.min_soak_secs).await?;
                push("previous", ok, detail);
            }
            if let (Some(a), Some(role)) = (&gate.config.approvals, gate.approval_role) {
                let approvals = self
                    .meta
                    .promotions()
                    .approvals(c.repo, c.digest, c.to.as_str())
                    .await?;
                let counted: Vec<&str> = approvals
                    .iter()
                    .filter(|ap| ap.role.parse::<Role>().is_ok_and(|r| r >= role))
                    .map(|ap| ap.actor.as_str())
                    .collect();
                let ok = counted.len() as u32 >= a.count;
                push(
                    "approvals",
                    ok,
                    format!(
                        "{} of {} approvals by a {role} or above{}",
                        counted.len(),
                        a.count,
                        if counted.is_empty() {
                            String::new()
                        } else {
                            format!(" ({})", counted.join(", "))
                        }
                    ),
                );
            }
            if !gate.metrics.is_empty() {
                let mine = self
                    .meta
                    .manifests()
                    .get(c.repo, c.digest)
                    .await?
                    .map(|m| metric_values(&m.content))
                    .unwrap_or_default();
                let current = match c.current {
                    Some(d) => self
                        .meta
                        .manifests()
                        .get(c.repo, d)
                        .await?
                        .map(|m| metric_values(&m.content)),
                    None => None,
                };
                for rule in &gate.metrics {
                    let (ok, detail) = judge_metric(rule, &mine, current.as_ref());
                    push("metric", ok, detail);
                }
            }
            if gate.config.canary {
                let newest = self
                    .meta
                    .promotions()
                    .canaries(c.repo, c.digest)
                    .await?
                    .into_iter()
                    .next();
                let (ok, detail) = match newest {
                    Some(v) if v.verdict == "pass" => {
                        (true, format!("canary verdict pass (score {:.1})", v.score))
                    }
                    Some(v) => (
                        false,
                        format!(
                            "the newest canary verdict is {} (score {:.1})",
                            v.verdict, v.score
                        ),
                    ),
                    None => (false, "no canary verdict is recorded".to_string()),
                };
                push("canary", ok, detail);
            }
            if let Some(v) = &gate.config.vulnerabilities {
                let (ok, detail) = self.vuln_check(c.repo, c.digest, v).await?;
                push("vulnerabilities", ok, detail);
            }
        }
        Ok(out)
    }

    /// Whether the candidate was in the previous environment, for at least `min_soak_secs`.
    async fn soaked(&self, c: &Candidate<'_>, min_soak_secs: u64) -> Result<(bool, String)> {
        let Some(prev) = c.previous_env else {
            return Ok((
                true,
                format!("{} is the first environment of the order", c.to),
            ));
        };
        let history = self
            .meta
            .promotions()
            .history(c.repo, Some(prev.as_str()), 10_000)
            .await?;
        // Newest first: the newest move into `prev` with this digest, and the move after it.
        let Some(pos) = history.iter().position(|h| &h.digest == c.digest) else {
            return Ok((false, format!("{} was never in {prev}", c.digest)));
        };
        let entered = history[pos].at_ms;
        let left = if pos == 0 {
            now_ms()
        } else {
            history[pos - 1].at_ms
        };
        let soaked_secs = (left - entered).max(0) as u64 / 1000;
        if soaked_secs >= min_soak_secs {
            Ok((
                true,
                format!("in {prev} for {soaked_secs} s (at least {min_soak_secs} s needed)"),
            ))
        } else {
            Ok((
                false,
                format!("in {prev} for only {soaked_secs} s; {min_soak_secs} s needed"),
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_are_read_from_annotations() {
        let m = br#"{"annotations":{"dev.bonded.metric.accuracy":"0.93","other":"x","dev.bonded.metric.loss":"n/a"}}"#;
        let got = metric_values(m);
        assert_eq!(got.len(), 2);
        let rule = MetricRule::parse("accuracy >= 0.91").unwrap();
        assert!(judge_metric(&rule, &got, None).0);
        let rule = MetricRule::parse("accuracy >= 0.95").unwrap();
        let (ok, why) = judge_metric(&rule, &got, None);
        assert!(!ok && why.contains("0.93"), "{why}");
        let rule = MetricRule::parse("loss <= 1").unwrap();
        assert!(!judge_metric(&rule, &got, None).0, "a non-number fails");
        // Relative to the current digest: 0.93 vs 0.94 − 0.5 % = 0.9353 fails.
        let current = metric_values(br#"{"annotations":{"dev.bonded.metric.accuracy":"0.94"}}"#);
        let rule = MetricRule::parse("accuracy >= current - 0.5%").unwrap();
        assert!(!judge_metric(&rule, &got, Some(&current)).0);
        let rule = MetricRule::parse("accuracy >= current - 2%").unwrap();
        assert!(judge_metric(&rule, &got, Some(&current)).0);
        // No current value: passes, saying why.
        let (ok, why) = judge_metric(&rule, &got, None);
        assert!(ok && why.contains("compare"), "{why}");
    }
}
