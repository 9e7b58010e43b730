//! Supply-chain coverage per namespace (SLI M5 signing coverage, and the same for provenance and
//! SBOMs): the share of artifacts with at least one attestation that counts under the namespace's
//! trust store. Walks every repository; meant for a periodic refresh, not for request paths.

use std::collections::BTreeMap;

use bonded_supply::media::Kind;

use super::namespace;
use crate::{Registry, Result};

/// Counts for one namespace. "Artifacts" are manifests that are not themselves referrers.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Coverage {
    pub artifacts: u64,
    pub signed: u64,
    pub with_provenance: u64,
    pub with_sbom: u64,
}

const PAGE: u32 = 1000;

impl Registry {
    /// Coverage of every namespace, by namespace name.
    pub async fn supply_coverage(&self) -> Result<BTreeMap<String, Coverage>> {
        let mut out: BTreeMap<String, Coverage> = BTreeMap::new();
        let mut keys = BTreeMap::new();
        let mut last: Option<String> = None;
        loop {
            let repos = self.meta.repos().list(PAGE, last.as_deref()).await?;
            let Some(end) = repos.last() else { break };
            last = Some(end.as_str().to_string());
            for repo in &repos {
                let ns = namespace(repo).to_string();
                if !keys.contains_key(&ns) {
                    keys.insert(ns.clone(), self.trusted_keys(&ns).await?);
                }
                let trusted = &keys[&ns];
                for digest in self.meta.attestations().subjects(repo).await? {
                    let findings = self.findings(repo, &digest, &Kind::ALL, trusted).await?;
                    let has = |k: Kind| findings.iter().any(|f| f.kind == k && f.outcome.is_ok());
                    let c = out.entry(ns.clone()).or_default();
                    c.artifacts += 1;
                    c.signed += has(Kind::Signature) as u64;
                    c.with_provenance += has(Kind::Provenance) as u64;
                    c.with_sbom += has(Kind::Sbom) as u64;
                }
            }
            if repos.len() < PAGE as usize {
                break;
            }
        }
        Ok(out)
    }
}
