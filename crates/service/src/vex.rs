//! CycloneDX 1.5 VEX export of an artifact's latest scan, with its waivers as impact analyses.
//!
//! The document describes the artifact as `metadata.component` (its digest as a hash and an
//! OCI purl), each affected package as a component, and one `vulnerabilities[]` entry per
//! finding: the advisory with its aliases as references, the rating, the fix as the
//! recommendation, and `affects` pointing at the package's `bom-ref`. A finding an active
//! waiver waives gets `analysis` from it (state, justification, responses, the reason as
//! detail, when it was issued) and the waiver's id, author, scope and expiry as `bonded:waiver:*`
//! properties. A finding nobody has waived has no `analysis`: bonded has not analysed it, and
//! says so by saying nothing (`in_triage` would claim someone is looking).

use std::collections::BTreeMap;

use bonded_supply::time::{now_ms, rfc3339};
use bonded_types::{Digest, Reference, RepoName};
use serde_json::{json, Value};

use crate::vulns::VulnFinding;
use crate::waivers::{mark_waived, Waiver};
use crate::{Error, Registry, Result};

/// The CycloneDX version written.
pub const SPEC_VERSION: &str = "1.5";

/// The name of the database an advisory id comes from, for `source.name`.
fn source_name(id: &str) -> &'static str {
    match id.split('-').next().unwrap_or("") {
        "CVE" => "NVD",
        "GHSA" => "GitHub",
        _ => "OSV",
    }
}

fn source(id: &str) -> Value {
    let url = match source_name(id) {
        "NVD" => format!("https://nvd.nist.gov/vuln/detail/{id}"),
        "GitHub" => format!("https://github.com/advisories/{id}"),
        _ => format!("https://osv.dev/vulnerability/{id}"),
    };
    json!({"name": source_name(id), "url": url})
}

/// A component's `bom-ref`: unique per (ecosystem, package, version) in the document.
fn package_ref(f: &VulnFinding) -> String {
    format!("{}:{}@{}", f.ecosystem, f.package, f.installed)
}

/// `pkg:oci/<last path component>@<digest>` (the purl spec's OCI type; the registry host is the
/// reader's to add as `repository_url`).
fn oci_purl(repo: &RepoName, digest: &Digest) -> String {
    let name = repo.as_str().rsplit('/').next().unwrap_or(repo.as_str());
    format!("pkg:oci/{name}@{}", digest.to_string().replace(':', "%3A"))
}

fn hash_alg(digest: &Digest) -> &'static str {
    match digest.algorithm() {
        bonded_types::Algorithm::Sha256 => "SHA-256",
        bonded_types::Algorithm::Sha512 => "SHA-512",
    }
}

/// The scanned artifact a document describes.
pub struct Scanned<'a> {
    pub repo: &'a RepoName,
    pub digest: &'a Digest,
    pub scanned_at_ms: i64,
    pub generation: i64,
}

/// The VEX document of `subject` for `findings` (waivers marked) and the waivers by id.
pub fn document(
    subject: &Scanned<'_>,
    findings: &[VulnFinding],
    waivers: &BTreeMap<i64, Waiver>,
    serial: uuid::Uuid,
    now: i64,
) -> Value {
    let Scanned {
        repo,
        digest,
        scanned_at_ms,
        generation,
    } = *subject;
    let artifact_ref = format!("{repo}@{digest}");
    let mut components: BTreeMap<String, Value> = BTreeMap::new();
    let mut vulnerabilities = Vec::new();
    for f in findings {
        let pref = package_ref(f);
        components.entry(pref.clone()).or_insert_with(|| {
            json!({
                "type": "library",
                "bom-ref": pref,
                "name": f.package,
                "version": f.installed,
                "properties": [{"name": "bonded:ecosystem", "value": f.ecosystem}],
            })
        });
        let mut rating =
            json!({"source": {"name": source_name(&f.advisory_id)}, "severity": f.severity});
        if let Some(score) = f.score {
            rating["score"] = json!(score);
        }
        let mut v = json!({
            "id": f.advisory_id,
            "source": source(&f.advisory_id),
            "ratings": [rating],
            "affects": [{"ref": pref}],
        });
        if !f.aliases.is_empty() {
            v["references"] = Value::Array(
                f.aliases
                    .iter()
                    .map(|a| json!({"id": a, "source": source(a)}))
                    .collect(),
            );
        }
        if let Some(s) = &f.summary {
            v["description"] = json!(s);
        }
        if let Some(x) = &f.fixed {
            v["recommendation"] = json!(format!("upgrade {} to {x} or later", f.package));
        }
        if let Some(w) = f.waiver.as_ref().and_then(|r| waivers.get(&r.id)) {
            let mut analysis = json!({
                "state": w.state,
                "detail": w.reason,
                "firstIssued": w.created_at,
                "lastUpdated": w.created_at,
            });
            if let Some(j) = &w.justification {
                analysis["justification"] = json!(j);
            }
            if !w.responses.is_empty() {
                analysis["response"] = json!(w.responses);
            }
            v["analysis"] = analysis;
            v["properties"] = json!([
                {"name": "bonded:waiver:id", "value": w.id.to_string()},
                {"name": "bonded:waiver:author", "value": w.author},
                {"name": "bonded:waiver:scope", "value": w.scope},
                {"name": "bonded:waiver:expires", "value": w.expires_at},
            ]);
        }
        vulnerabilities.push(v);
    }
    json!({
        "bomFormat": "CycloneDX",
        "specVersion": SPEC_VERSION,
        "serialNumber": format!("urn:uuid:{serial}"),
        "version": 1,
        "metadata": {
            "timestamp": rfc3339(now),
            "tools": {"components": [{
                "type": "application",
                "name": "bonded",
                "version": env!("CARGO_PKG_VERSION"),
            }]},
            "component": {
                "type": "container",
                "bom-ref": artifact_ref,
                "name": repo.as_str(),
                "version": digest.to_string(),
                "hashes": [{"alg": hash_alg(digest), "content": digest.hex()}],
                "purl": oci_purl(repo, digest),
            },
            "properties": [
                {"name": "bonded:scan:scanned_at", "value": rfc3339(scanned_at_ms)},
                {"name": "bonded:scan:database_generation", "value": generation.to_string()},
            ],
        },
        "components": components.into_values().collect::<Vec<_>>(),
        "vulnerabilities": vulnerabilities,
    })
}

impl Registry {
    /// The CycloneDX VEX document of an artifact's latest scan with its active waivers; `None`
    /// when it has not been scanned.
    pub async fn vex(&self, repo: &RepoName, reference: &Reference) -> Result<Option<Value>> {
        let digest = self.resolve_digest(repo, reference).await?;
        let Some(row) = self.meta.vulns().scan(repo, &digest).await? else {
            return Ok(None);
        };
        let mut findings: Vec<VulnFinding> = serde_json::from_str(&row.findings)
            .map_err(|e| Error::Internal(format!("stored findings: {e}")))?;
        let active = self.active_waivers().await?;
        mark_waived(repo, &digest, &mut findings, &active);
        let by_id: BTreeMap<i64, Waiver> = active.into_iter().map(|w| (w.id, w)).collect();
        Ok(Some(document(
            &Scanned {
                repo,
                digest: &digest,
                scanned_at_ms: row.scanned_at_ms,
                generation: row.generation,
            },
            &findings,
            &by_id,
            uuid::Uuid::new_v4(),
            now_ms(),
        )))
    }
}
