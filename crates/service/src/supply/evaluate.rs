//! Finding an artifact's attestations, deciding which count, and judging them against policy.

use std::collections::BTreeSet;

use bonded_supply::keys::PublicKey;
use bonded_supply::media::{Kind, DSSE_ENVELOPE};
use bonded_supply::verify::{verify, Rejection, TrustedKey, Verified};
use bonded_types::{Digest, Hasher, Reference, RepoName};
use futures::StreamExt;
use serde_json::Value;

use super::namespace;
use super::policy::{PolicyConfig, PolicyEvent, PolicyMode, PolicyRule, RequireProvenance};
use crate::{Error, Registry, Result};

/// Largest envelope read back for verification (SBOMs can be large; signatures are tiny).
const MAX_ENVELOPE_BYTES: u64 = 32 << 20;

/// One stored attestation and whether it counts.
#[derive(Debug, Clone)]
pub struct Finding {
    pub kind: Kind,
    /// The referrer manifest carrying it.
    pub referrer: Digest,
    /// When this registry stored the referrer (Unix ms).
    pub pushed_at_ms: i64,
    pub outcome: std::result::Result<Verified, Rejection>,
}

/// One requirement of a rule, met or not.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Requirement {
    pub what: String,
    pub met: bool,
    /// Why not, when not met.
    pub detail: String,
}

/// A rule's judgement of one artifact.
#[derive(Debug, Clone)]
pub struct Verdict {
    pub rule: String,
    pub mode: PolicyMode,
    pub events: Vec<PolicyEvent>,
    pub requirements: Vec<Requirement>,
}

impl Verdict {
    pub fn passed(&self) -> bool {
        self.requirements.iter().all(|r| r.met)
    }

    /// `policy "x" requires …: …; …`
    pub fn explain(&self, repo: &RepoName, digest: &Digest, event: PolicyEvent) -> String {
        let unmet: Vec<String> = self
            .requirements
            .iter()
            .filter(|r| !r.met)
            .map(|r| format!("{}: {}", r.what, r.detail))
            .collect();
        format!(
            "policy {:?} refuses {} of {repo}@{digest}: {}",
            self.rule,
            event.as_str(),
            unmet.join("; ")
        )
    }
}

/// Everything known about an artifact's supply chain.
#[derive(Debug, Clone)]
pub struct Overview {
    pub repo: RepoName,
    pub digest: Digest,
    pub media_type: String,
    pub size: u64,
    pub findings: Vec<Finding>,
    pub verdicts: Vec<Verdict>,
}

fn kinds_needed(rules: &[&PolicyRule]) -> Vec<Kind> {
    let mut kinds = BTreeSet::new();
    for r in rules {
        if r.config.require_signature.is_some() {
            kinds.insert(Kind::Signature);
        }
        if r.config.require_provenance.is_some() {
            kinds.insert(Kind::Provenance);
        }
        if r.config.require_sbom {
            kinds.insert(Kind::Sbom);
        }
    }
    kinds.into_iter().collect()
}

/// Why nothing of `kind` counts, from the findings of that kind.
fn why_none(
    findings: &[Finding],
    kind: Kind,
    extra: impl Fn(&Verified) -> Option<String>,
) -> String {
    let reasons: Vec<String> = findings
        .iter()
        .filter(|f| f.kind == kind)
        .map(|f| {
            let why = match &f.outcome {
                Err(r) => r.to_string(),
                Ok(v) => extra(v).unwrap_or_else(|| "does not satisfy the rule".into()),
            };
            format!("{} {}: {why}", kind.as_str(), f.referrer)
        })
        .collect();
    if reasons.is_empty() {
        format!("no {} is attached", kind.as_str())
    } else {
        reasons.join(", ")
    }
}

fn str_at<'a>(v: &'a Value, path: &[&str]) -> Option<&'a str> {
    path.iter().try_fold(v, |v, k| v.get(k))?.as_str()
}

fn source_matches(uri: &str, want: &str) -> bool {
    uri == want
        || uri
            .strip_prefix(want)
            .is_some_and(|rest| rest.starts_with('@') || rest.starts_with('#'))
}

/// Whether a verified provenance satisfies `req`; `Err` says why not.
fn provenance_fits(v: &Verified, req: &RequireProvenance) -> std::result::Result<(), String> {
    if let Some(set) = &req.key_set {
        if !v.key_sets.contains(set) {
            return Err(format!(
                "signed by {}, which is not in key set {set:?}",
                v.key_id
            ));
        }
    }
    let p = &v.statement.predicate;
    if let Some(want) = &req.builder {
        let got = str_at(p, &["runDetails", "builder", "id"]).unwrap_or("");
        if got != want {
            return Err(format!("builder is {got:?}, not {want:?}"));
        }
    }
    if let Some(want) = &req.source {
        let def = p.get("buildDefinition").cloned().unwrap_or(Value::Null);
        let mut uris: Vec<&str> = def
            .get("resolvedDependencies")
            .and_then(Value::as_array)
            .map(|deps| deps.iter().filter_map(|d| d.get("uri")?.as_str()).collect())
            .unwrap_or_default();
        uris.extend(str_at(&def, &["externalParameters", "source", "uri"]));
        uris.extend(str_at(&def, &["externalParameters", "source"]));
        if !uris.iter().any(|u| source_matches(u, want)) {
            return Err(format!("no source or material is {want:?}"));
        }
    }
    Ok(())
}

/// What `config` requires of an artifact with these findings, in the order signature,
/// provenance, SBOM (only those it asks for). Shared with promotion gates.
pub(crate) fn requirements(config: &PolicyConfig, findings: &[Finding]) -> Vec<Requirement> {
    let rule = config;
    let mut reqs = Vec::new();
    let ok = |kind: Kind| findings.iter().filter(move |f| f.kind == kind);
    if let Some(sig) = &rule.require_signature {
        let met = ok(Kind::Signature)
            .any(|f| matches!(&f.outcome, Ok(v) if v.key_sets.contains(&sig.key_set)));
        reqs.push(Requirement {
            what: format!("a signature by key set {:?}", sig.key_set),
            met,
            detail: if met {
                String::new()
            } else {
                why_none(findings, Kind::Signature, |v| {
                    Some(format!(
                        "signed by {} (key sets {:?}), not by key set {:?}",
                        v.key_id, v.key_sets, sig.key_set
                    ))
                })
            },
        });
    }
    if let Some(req) = &rule.require_provenance {
        let met = ok(Kind::Provenance)
            .any(|f| matches!(&f.outcome, Ok(v) if provenance_fits(v, req).is_ok()));
        let mut what = "SLSA provenance".to_string();
        if let Some(b) = &req.builder {
            what.push_str(&format!(" from builder {b:?}"));
        }
        if let Some(s) = &req.source {
            what.push_str(&format!(" for source {s:?}"));
        }
        reqs.push(Requirement {
            what,
            met,
            detail: if met {
                String::new()
            } else {
                why_none(findings, Kind::Provenance, |v| {
                    provenance_fits(v, req).err()
                })
            },
        });
    }
    if rule.require_sbom {
        let met = ok(Kind::Sbom).any(|f| f.outcome.is_ok());
        reqs.push(Requirement {
            what: "a signed SBOM".into(),
            met,
            detail: if met {
                String::new()
            } else {
                why_none(findings, Kind::Sbom, |_| None)
            },
        });
    }
    reqs
}

fn judge(rule: &PolicyRule, findings: &[Finding]) -> Verdict {
    Verdict {
        rule: rule.name.clone(),
        mode: rule.config.mode,
        events: rule.config.on.clone(),
        requirements: requirements(&rule.config, findings),
    }
}

impl Registry {
    /// [`judge`], plus the rule's vulnerability requirement, which reads the stored scan.
    async fn judge_fully(
        &self,
        rule: &PolicyRule,
        findings: &[Finding],
        repo: &RepoName,
        digest: &Digest,
    ) -> Result<Verdict> {
        let mut verdict = judge(rule, findings);
        if let Some(v) = &rule.config.vulnerabilities {
            let (met, detail) = self.vuln_check(repo, digest, v).await?;
            verdict.requirements.push(Requirement {
                what: format!("no unwaived vulnerabilities at or above {}", v.max_severity),
                met,
                detail: if met { String::new() } else { detail },
            });
        }
        Ok(verdict)
    }

    /// The namespace's trusted keys, parsed. A row whose key no longer parses is skipped loudly:
    /// it can only make fewer things pass.
    pub(crate) async fn trusted_keys(&self, ns: &str) -> Result<Vec<TrustedKey>> {
        let rows = self.meta.trust().keys(ns).await?;
        let mut keys = Vec::with_capacity(rows.len());
        for r in rows {
            match PublicKey::from_pem(&r.key.public_key) {
                Ok(public) if public.key_id() == r.key.key_id => keys.push(TrustedKey {
                    key_id: r.key.key_id,
                    key_set: r.key.key_set,
                    public,
                    not_before_ms: r.key.not_before_ms,
                    not_after_ms: r.key.not_after_ms,
                    revoked_at_ms: r.revoked_at_ms,
                }),
                _ => tracing::error!(
                    namespace = ns,
                    key_id = %r.key.key_id,
                    "trusted key row does not hold the key it names; ignoring it"
                ),
            }
        }
        Ok(keys)
    }

    /// Reads a stored envelope, checking its bytes against the digest its referrer names.
    async fn read_envelope(&self, digest: &Digest) -> std::result::Result<Vec<u8>, Rejection> {
        let read = self.blobs.blob_read(digest, None).await.map_err(|e| {
            Rejection::Malformed(format!("envelope blob {digest} cannot be read: {e}"))
        })?;
        if read.size > MAX_ENVELOPE_BYTES {
            return Err(Rejection::Malformed(format!(
                "envelope is {} bytes; at most {MAX_ENVELOPE_BYTES} are read",
                read.size
            )));
        }
        let mut buf = Vec::with_capacity(read.size as usize);
        let mut stream = read.stream;
        let mut hasher = Hasher::new(digest.algorithm());
        while let Some(chunk) = stream.next().await {
            let chunk = chunk
                .map_err(|e| Rejection::Malformed(format!("reading envelope {digest}: {e}")))?;
            hasher.update(&chunk);
            buf.extend_from_slice(&chunk);
            if buf.len() as u64 > MAX_ENVELOPE_BYTES {
                return Err(Rejection::Malformed("envelope grew past its size".into()));
            }
        }
        if &hasher.finish() != digest {
            return Err(Rejection::Malformed(format!(
                "envelope bytes do not hash to {digest}"
            )));
        }
        Ok(buf)
    }

    /// The envelope layer's digest of a referrer manifest.
    fn envelope_layer(content: &[u8]) -> std::result::Result<Digest, Rejection> {
        let m: Value = serde_json::from_slice(content)
            .map_err(|e| Rejection::Malformed(format!("referrer manifest: {e}")))?;
        let layers: Vec<&Value> = m
            .get("layers")
            .and_then(Value::as_array)
            .map(|l| {
                l.iter()
                    .filter(|l| l.get("mediaType").and_then(Value::as_str) == Some(DSSE_ENVELOPE))
                    .collect()
            })
            .unwrap_or_default();
        match layers.as_slice() {
            [one] => one
                .get("digest")
                .and_then(Value::as_str)
                .and_then(|d| d.parse().ok())
                .ok_or_else(|| Rejection::Malformed("envelope layer has no valid digest".into())),
            [] => Err(Rejection::Malformed(format!(
                "referrer has no {DSSE_ENVELOPE} layer"
            ))),
            _ => Err(Rejection::Malformed(format!(
                "referrer has several {DSSE_ENVELOPE} layers; exactly one is allowed"
            ))),
        }
    }

    pub(crate) async fn findings(
        &self,
        repo: &RepoName,
        subject: &Digest,
        kinds: &[Kind],
        keys: &[TrustedKey],
    ) -> Result<Vec<Finding>> {
        let types: Vec<&str> = kinds.iter().map(|k| k.artifact_type()).collect();
        let stored = self
            .meta
            .attestations()
            .referrer_manifests(repo, subject, &types)
            .await?;
        let mut out = Vec::with_capacity(stored.len());
        for s in stored {
            let Some(kind) = s
                .artifact_type
                .as_deref()
                .and_then(Kind::from_artifact_type)
            else {
                continue;
            };
            let outcome = match Self::envelope_layer(&s.content) {
                Ok(layer) => match self.read_envelope(&layer).await {
                    Ok(bytes) => verify(&bytes, kind, subject, keys, s.pushed_at_ms),
                    Err(r) => Err(r),
                },
                Err(r) => Err(r),
            };
            out.push(Finding {
                kind,
                referrer: s.digest,
                pushed_at_ms: s.pushed_at_ms,
                outcome,
            });
        }
        Ok(out)
    }

    /// Checks the policies that apply to `event` on `repo@digest`. Returns warnings from rules in
    /// warn mode; fails with `PolicyViolation` for the first enforced rule not satisfied. Costs
    /// nothing when no rule applies.
    pub(crate) async fn enforce_policy(
        &self,
        repo: &RepoName,
        digest: &Digest,
        event: PolicyEvent,
    ) -> Result<Vec<String>> {
        let rules = self.rules.policies.applicable(repo, event);
        if rules.is_empty() {
            return Ok(Vec::new());
        }
        let keys = self.trusted_keys(namespace(repo)).await?;
        let findings = self
            .findings(repo, digest, &kinds_needed(&rules), &keys)
            .await?;
        let mut warnings = Vec::new();
        for rule in rules {
            let verdict = self.judge_fully(rule, &findings, repo, digest).await?;
            if verdict.passed() {
                continue;
            }
            let msg = verdict.explain(repo, digest, event);
            match rule.config.mode {
                PolicyMode::Enforce => {
                    tracing::info!(repo = %repo, digest = %digest, rule = %rule.name, "policy refused request: {msg}");
                    return Err(Error::PolicyViolation(msg));
                }
                PolicyMode::Warn => {
                    tracing::warn!(repo = %repo, digest = %digest, rule = %rule.name, "policy warning: {msg}");
                    warnings.push(msg);
                }
                PolicyMode::Off => {}
            }
        }
        Ok(warnings)
    }

    /// Every attestation of an artifact, whether each counts, and every covering rule's verdict.
    pub async fn supply_overview(
        &self,
        repo: &RepoName,
        reference: &Reference,
    ) -> Result<Overview> {
        let digest = match reference {
            Reference::Digest(d) => d.clone(),
            Reference::Tag(t) => self
                .meta
                .tags()
                .resolve(repo, t)
                .await?
                .ok_or(Error::NotFound(crate::Missing::Manifest))?,
        };
        let manifest = self
            .meta
            .manifests()
            .get(repo, &digest)
            .await?
            .ok_or(Error::NotFound(crate::Missing::Manifest))?;
        let keys = self.trusted_keys(namespace(repo)).await?;
        let findings = self.findings(repo, &digest, &Kind::ALL, &keys).await?;
        let mut verdicts = Vec::new();
        for r in self.rules.policies.covering(repo) {
            verdicts.push(self.judge_fully(r, &findings, repo, &digest).await?);
        }
        Ok(Overview {
            repo: repo.clone(),
            digest,
            media_type: manifest.media_type.as_str().to_string(),
            size: manifest.content.len() as u64,
            findings,
            verdicts,
        })
    }
}
