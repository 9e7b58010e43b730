//! Promotion between environments, rollback, deployment records and canary verdicts.
//!
//! Owns: each repository's ordered environments (`config.rs`), the gates guarding each
//! environment (`gates.rs`), moving an environment's pointer — the tag of the same name — only by
//! [`Registry::promote`] and [`Registry::rollback`], the signed promotion attestation attached to
//! a promoted artifact (`attest.rs`), reported deployments (M3) and canary analysis
//! (`canary.rs`). Called by the HTTP edge; persistence is the metadata store's `Promotions`.
//!
//! Invariant: a pointer moves only after every enforced gate passed, by compare-and-set on what
//! it pointed at when the gates were evaluated, and with its history row in the same
//! transaction; plain tag pushes and deletes never move or remove it; nothing an environment
//! points at or pointed at within its last `keep_history` moves can be deleted.

mod attest;
pub mod canary;
pub mod config;
mod gates;

use std::sync::Arc;

pub use bonded_meta::{Approval, CanaryRecord, Deployment, MoveKind, PointerRecord};
use bonded_meta::{MetaError, PointerMove};
use bonded_types::{Digest, Reference, RepoName, Tag};

pub use attest::{PROMOTION_ARTIFACT, VSA_PREDICATE};
pub use canary::{CanaryReport, CanaryVerdict, MetricSamples, Thresholds};
pub use config::{Environments, PromotionConfig, VulnGate};
pub use gates::{GateVerdict, METRIC_ANNOTATION_PREFIX};

use crate::{now_ms, Error, Invalid, Missing, Registry, Result};

/// Where to promote what.
#[derive(Debug, Clone)]
pub struct PromoteRequest {
    pub repo: RepoName,
    pub reference: Reference,
    pub to: String,
    pub actor: String,
    pub note: String,
    /// Evaluate the gates only; move nothing.
    pub dry_run: bool,
}

#[derive(Debug, Clone)]
pub struct PromoteOutcome {
    pub digest: Digest,
    pub environment: String,
    /// The recorded move; `None` for a dry run or when the environment already pointed there.
    pub record: Option<PointerRecord>,
    pub gates: Vec<GateVerdict>,
    /// The attached promotion attestation's referrer manifest.
    pub attestation: Option<Digest>,
    /// Seconds from the manifest's push to this promotion (M6).
    pub time_to_promote_secs: Option<f64>,
}

/// One environment of a repository and where it points.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnvironmentState {
    pub name: String,
    pub digest: Option<Digest>,
    /// The last move, if any.
    pub last: Option<PointerRecord>,
}

/// A deployment report from a deploy system.
#[derive(Debug, Clone)]
pub struct DeploymentReport {
    pub repo: RepoName,
    pub environment: String,
    pub target: String,
    pub digest: Digest,
    pub status: String,
    pub actor: String,
}

/// Samples for canary analysis: given, or queried from the metric source.
#[derive(Debug, Clone)]
pub enum CanarySamples {
    Given(Vec<MetricSamples>),
    Query(Vec<MetricQuery>, QueryWindow),
}

/// A metric whose baseline and canary samples come from range queries.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct MetricQuery {
    pub name: String,
    #[serde(default)]
    pub direction: canary::Direction,
    #[serde(default = "default_tolerance")]
    pub tolerance: f64,
    #[serde(default)]
    pub critical: bool,
    #[serde(default = "default_weight")]
    pub weight: f64,
    pub baseline_query: String,
    pub canary_query: String,
}

fn default_tolerance() -> f64 {
    0.05
}
fn default_weight() -> f64 {
    1.0
}

#[derive(Debug, Clone, Copy, serde::Serialize, serde::Deserialize)]
pub struct QueryWindow {
    /// Unix seconds.
    pub start: f64,
    pub end: f64,
    pub step_secs: f64,
}

/// Where canary samples come from when they are not given: a Prometheus-compatible server. A
/// trait so tests and other systems can stand in.
#[async_trait::async_trait]
pub trait MetricSource: Send + Sync {
    /// Every sample value of every series the range query returns.
    async fn range(
        &self,
        query: &str,
        window: QueryWindow,
    ) -> std::result::Result<Vec<f64>, String>;
}

#[derive(Debug, Clone)]
pub struct CanaryRequest {
    pub repo: RepoName,
    pub digest: Digest,
    /// The environment the canary runs in, recorded with the verdict.
    pub environment: Option<String>,
    pub samples: CanarySamples,
    pub thresholds: Thresholds,
    /// On `fail`, roll back `rollback_env` if it points at the digest.
    pub rollback_env: Option<String>,
    pub actor: String,
}

#[derive(Debug, Clone)]
pub struct CanaryOutcome {
    pub record: CanaryRecord,
    pub report: CanaryReport,
    pub rolled_back: Option<PointerRecord>,
}

fn conflict_or(e: MetaError, missing: Missing) -> Error {
    match e {
        MetaError::NotFound => Error::NotFound(missing),
        MetaError::Conflict(m) => Error::Conflict(format!(
            "{m}: it moved while this request was being decided; look at the history and retry"
        )),
        other => other.into(),
    }
}

fn invalid(msg: impl Into<String>) -> Error {
    Error::Invalid(Invalid::Name(msg.into()))
}

impl Registry {
    pub fn environments(&self) -> &Environments {
        &self.rules.environments
    }

    /// `env` as one of `repo`'s environments, or why not.
    fn environment(&self, repo: &RepoName, env: &str) -> Result<(Tag, Option<Tag>)> {
        let envs = self.rules.environments.of(repo);
        let pos = envs.iter().position(|e| e.as_str() == env).ok_or_else(|| {
            let names: Vec<&str> = envs.iter().map(|e| e.as_str()).collect();
            invalid(if names.is_empty() {
                format!("{repo} has no environments (environments are off in [promotion])")
            } else {
                format!(
                    "{env:?} is not an environment of {repo}; its environments are {}",
                    names.join(" → ")
                )
            })
        })?;
        let previous = pos.checked_sub(1).map(|p| envs[p].clone());
        Ok((envs[pos].clone(), previous))
    }

    async fn resolve(&self, repo: &RepoName, reference: &Reference) -> Result<Digest> {
        let digest = match reference {
            Reference::Digest(d) => d.clone(),
            Reference::Tag(t) => self
                .meta
                .tags()
                .resolve(repo, t)
                .await?
                .ok_or(Error::NotFound(Missing::Manifest))?,
        };
        let m = self
            .meta
            .manifests()
            .get(repo, &digest)
            .await?
            .ok_or(Error::NotFound(Missing::Manifest))?;
        if m.subject.is_some() {
            return Err(invalid(format!(
                "{digest} is a referrer (a signature or attestation); promote the artifact it is about"
            )));
        }
        Ok(digest)
    }

    /// Every environment of `repo`, in order, with where it points.
    pub async fn environment_states(&self, repo: &RepoName) -> Result<Vec<EnvironmentState>> {
        let mut out = Vec::new();
        for env in self.rules.environments.of(repo) {
            let digest = self.meta.tags().resolve(repo, env).await?;
            let last = self
                .meta
                .promotions()
                .history(repo, Some(env.as_str()), 1)
                .await?
                .into_iter()
                .next();
            out.push(EnvironmentState {
                name: env.to_string(),
                digest,
                last,
            });
        }
        Ok(out)
    }

    /// Promotes an artifact into an environment after its gates pass.
    pub async fn promote(&self, req: &PromoteRequest) -> Result<PromoteOutcome> {
        let (to, previous_env) = self.environment(&req.repo, &req.to)?;
        let digest = self.resolve(&req.repo, &req.reference).await?;
        let current = self.meta.tags().resolve(&req.repo, &to).await?;
        let gates = self.rules.environments.gates(&req.repo, &to);
        let candidate = gates::Candidate {
            repo: &req.repo,
            digest: &digest,
            to: &to,
            previous_env: previous_env.as_ref(),
            current: current.as_ref(),
        };
        let verdicts = self.evaluate_gates(&candidate, &gates).await?;
        let refused: Vec<&GateVerdict> = verdicts
            .iter()
            .filter(|v| v.enforced && !v.passed)
            .collect();
        let mut outcome = PromoteOutcome {
            digest: digest.clone(),
            environment: to.to_string(),
            record: None,
            gates: verdicts.clone(),
            attestation: None,
            time_to_promote_secs: None,
        };
        if req.dry_run {
            return Ok(outcome);
        }
        if !refused.is_empty() {
            let why: Vec<String> = refused
                .iter()
                .map(|v| format!("{} [{}]: {}", v.check, v.gate, v.detail))
                .collect();
            return Err(Error::PolicyViolation(format!(
                "promotion of {}@{digest} to {to} refused: {}",
                req.repo,
                why.join("; ")
            )));
        }
        if current.as_ref() == Some(&digest) {
            return Ok(outcome);
        }
        let from_env = match &previous_env {
            Some(p) if self.meta.tags().resolve(&req.repo, p).await?.as_ref() == Some(&digest) => {
                Some(p.to_string())
            }
            _ => None,
        };
        let moved = self
            .meta
            .promotions()
            .move_pointer(&PointerMove {
                repo: req.repo.clone(),
                environment: to.clone(),
                digest: digest.clone(),
                expected: current,
                kind: MoveKind::Promote,
                actor: req.actor.clone(),
                from_env,
                gates: serde_json::to_string(&verdicts).unwrap_or_else(|_| "[]".into()),
                note: req.note.clone(),
                at_ms: now_ms(),
            })
            .await
            .map_err(|e| conflict_or(e, Missing::Manifest))?;
        let mut record = moved.record;
        outcome.time_to_promote_secs =
            Some((record.at_ms - moved.pushed_at_ms).max(0) as f64 / 1000.0);
        match self.attach_promotion_attestation(&record, &verdicts).await {
            Ok(att) => {
                self.meta
                    .promotions()
                    .set_attestation(record.id, &att)
                    .await?;
                record.attestation = Some(att.clone());
                outcome.attestation = Some(att);
            }
            // The move stands (it is recorded); the attestation can be re-derived from history.
            Err(e) => tracing::error!(
                repo = %req.repo, digest = %digest, environment = %to,
                "promotion recorded but its attestation could not be stored: {e}"
            ),
        }
        tracing::info!(repo = %req.repo, digest = %digest, environment = %to, actor = %req.actor, "promoted");
        outcome.record = Some(record);
        Ok(outcome)
    }

    /// Moves `env` back: to `to` if given (a digest from its history), else to the most recent
    /// earlier digest that was not itself rolled back from.
    pub async fn rollback(
        &self,
        repo: &RepoName,
        env: &str,
        to: Option<&Digest>,
        actor: &str,
        note: &str,
    ) -> Result<PointerRecord> {
        let (env, _) = self.environment(repo, env)?;
        let current = self.meta.tags().resolve(repo, &env).await?;
        let history = self
            .meta
            .promotions()
            .history(repo, Some(env.as_str()), 10_000)
            .await?;
        let rolled_away: Vec<&Digest> = history
            .iter()
            .filter(|h| h.kind == MoveKind::Rollback)
            .filter_map(|h| h.previous.as_ref())
            .collect();
        let target = match to {
            Some(d) => {
                if !history.iter().any(|h| &h.digest == d) {
                    return Err(invalid(format!(
                        "{d} was never in {env} of {repo}; a rollback goes to a digest from its history"
                    )));
                }
                if current.as_ref() == Some(d) {
                    return Err(Error::Conflict(format!(
                        "{env} of {repo} already points at {d}"
                    )));
                }
                d.clone()
            }
            None => history
                .iter()
                .map(|h| &h.digest)
                .find(|d| Some(*d) != current.as_ref() && !rolled_away.contains(d))
                .cloned()
                .ok_or_else(|| {
                    Error::Conflict(format!(
                        "{env} of {repo} has no earlier digest to roll back to"
                    ))
                })?,
        };
        let moved = self
            .meta
            .promotions()
            .move_pointer(&PointerMove {
                repo: repo.clone(),
                environment: env.clone(),
                digest: target.clone(),
                expected: current,
                kind: MoveKind::Rollback,
                actor: actor.to_string(),
                from_env: None,
                gates: "[]".into(),
                note: note.to_string(),
                at_ms: now_ms(),
            })
            .await
            .map_err(|e| match e {
                MetaError::NotFound => Error::Gone(format!(
                    "{repo}@{target} is no longer stored; roll back to another digest with --to"
                )),
                other => conflict_or(other, Missing::Manifest),
            })?;
        let mut record = moved.record;
        match self.attach_promotion_attestation(&record, &[]).await {
            Ok(att) => {
                self.meta
                    .promotions()
                    .set_attestation(record.id, &att)
                    .await?;
                record.attestation = Some(att);
            }
            Err(e) => {
                tracing::error!(repo = %repo, environment = %env, "rollback recorded but its attestation could not be stored: {e}")
            }
        }
        tracing::warn!(repo = %repo, digest = %target, environment = %env, actor, "rolled back");
        Ok(record)
    }

    /// Moves of `repo` (one environment or all), newest first.
    pub async fn promotion_history(
        &self,
        repo: &RepoName,
        env: Option<&str>,
        limit: u32,
    ) -> Result<Vec<PointerRecord>> {
        if let Some(e) = env {
            self.environment(repo, e)?;
        }
        Ok(self
            .meta
            .promotions()
            .history(repo, env, limit.clamp(1, 10_000))
            .await?)
    }

    /// Records an approval of `repo@reference` for `env` by `actor` holding `role` on it.
    pub async fn approve(
        &self,
        repo: &RepoName,
        reference: &Reference,
        env: &str,
        actor: &str,
        role: &str,
        comment: &str,
    ) -> Result<Approval> {
        let (env, _) = self.environment(repo, env)?;
        let digest = self.resolve(repo, reference).await?;
        if comment.len() > 4096 {
            return Err(invalid("an approval comment is at most 4096 bytes"));
        }
        let a = Approval {
            repo: repo.clone(),
            digest,
            environment: env.to_string(),
            actor: actor.to_string(),
            role: role.to_string(),
            comment: comment.to_string(),
            at_ms: now_ms(),
        };
        self.meta
            .promotions()
            .approve(&a)
            .await
            .map_err(|e| conflict_or(e, Missing::Manifest))?;
        Ok(a)
    }

    pub async fn approvals(
        &self,
        repo: &RepoName,
        reference: &Reference,
        env: &str,
    ) -> Result<Vec<Approval>> {
        let (env, _) = self.environment(repo, env)?;
        let digest = self.resolve(repo, reference).await?;
        Ok(self
            .meta
            .promotions()
            .approvals(repo, &digest, env.as_str())
            .await?)
    }

    /// Records a deployment; the stored row says what the environment pointed at (a different
    /// digest is an artifact mismatch, M3).
    pub async fn record_deployment(&self, r: &DeploymentReport) -> Result<Deployment> {
        let (env, _) = self.environment(&r.repo, &r.environment)?;
        let field = |name: &str, v: &str| -> Result<()> {
            if v.is_empty() || v.len() > 256 || v.chars().any(char::is_control) {
                return Err(invalid(format!(
                    "{name} must be 1-256 printable characters"
                )));
            }
            Ok(())
        };
        field("target", &r.target)?;
        field("status", &r.status)?;
        let expected = self.meta.tags().resolve(&r.repo, &env).await?;
        Ok(self
            .meta
            .promotions()
            .record_deployment(&Deployment {
                id: 0,
                repo: r.repo.clone(),
                environment: env.to_string(),
                target: r.target.clone(),
                digest: r.digest.clone(),
                status: r.status.clone(),
                expected,
                actor: r.actor.clone(),
                at_ms: now_ms(),
            })
            .await?)
    }

    /// Deployments, newest first.
    pub async fn deployments(
        &self,
        repo: Option<&RepoName>,
        limit: u32,
    ) -> Result<Vec<Deployment>> {
        Ok(self
            .meta
            .promotions()
            .deployments(repo, limit.clamp(1, 10_000))
            .await?)
    }

    /// Runs canary analysis, records the verdict against the digest, and rolls back on `fail`
    /// when asked.
    pub async fn canary(
        &self,
        req: &CanaryRequest,
        source: Option<&Arc<dyn MetricSource>>,
    ) -> Result<CanaryOutcome> {
        if let Some(e) = &req.environment {
            self.environment(&req.repo, e)?;
        }
        let rollback_env = match &req.rollback_env {
            Some(e) => Some(self.environment(&req.repo, e)?.0),
            None => None,
        };
        self.resolve(&req.repo, &Reference::Digest(req.digest.clone()))
            .await?;
        let samples = match &req.samples {
            CanarySamples::Given(s) => s.clone(),
            CanarySamples::Query(queries, window) => {
                let source = source.ok_or_else(|| {
                    Error::Unsupported(
                        "no metric source is configured ([canary] prometheus_url); submit samples instead".into(),
                    )
                })?;
                let mut out = Vec::with_capacity(queries.len());
                for q in queries {
                    let fetch = |query: &str| {
                        let query = query.to_string();
                        async move {
                            source.range(&query, *window).await.map_err(|e| {
                                Error::Busy(format!("metric query {query:?} failed: {e}"))
                            })
                        }
                    };
                    out.push(MetricSamples {
                        name: q.name.clone(),
                        direction: q.direction,
                        tolerance: q.tolerance,
                        critical: q.critical,
                        weight: q.weight,
                        baseline: fetch(&q.baseline_query).await?,
                        canary: fetch(&q.canary_query).await?,
                    });
                }
                out
            }
        };
        let report = canary::analyse(&samples, req.thresholds).map_err(invalid)?;
        let record = self
            .meta
            .promotions()
            .record_canary(&CanaryRecord {
                id: 0,
                repo: req.repo.clone(),
                digest: req.digest.clone(),
                environment: req.environment.clone(),
                verdict: report.verdict.as_str().to_string(),
                score: report.score,
                report: serde_json::to_string(&report).unwrap_or_default(),
                actor: req.actor.clone(),
                at_ms: now_ms(),
            })
            .await?;
        let mut rolled_back = None;
        if let (CanaryVerdict::Fail, Some(env)) = (report.verdict, rollback_env) {
            let points = self.meta.tags().resolve(&req.repo, &env).await?;
            if points.as_ref() == Some(&req.digest) {
                rolled_back = Some(
                    self.rollback(
                        &req.repo,
                        env.as_str(),
                        None,
                        &format!("canary:{}", req.actor),
                        &format!("automatic rollback: {}", report.summary),
                    )
                    .await?,
                );
            }
        }
        Ok(CanaryOutcome {
            record,
            report,
            rolled_back,
        })
    }

    /// Canary verdicts recorded for an artifact, newest first.
    pub async fn canary_verdicts(
        &self,
        repo: &RepoName,
        digest: &Digest,
    ) -> Result<Vec<CanaryRecord>> {
        Ok(self.meta.promotions().canaries(repo, digest).await?)
    }

    /// Digests of `repo` no deletion may take (environment pointers and recent history).
    pub(crate) async fn protected_digests(&self, repo: &RepoName) -> Result<Vec<Digest>> {
        Ok(self
            .meta
            .promotions()
            .protected(repo, self.rules.environments.keep_history)
            .await?)
    }
}
