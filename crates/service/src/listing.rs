//! Tags, catalog and referrers listings.

use bonded_types::{media_types, Digest, RepoName, Tag};
use serde_json::{json, Map, Value};

use crate::{Error, Missing, Registry, Result};

/// Largest page we return, whatever `n` asks for.
pub const MAX_PAGE: u32 = 10_000;

/// One page of a listing, and whether more follow.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub more: bool,
}

fn page<T>(mut items: Vec<T>, n: u32) -> Page<T> {
    let more = items.len() > n as usize;
    items.truncate(n as usize);
    Page { items, more }
}

impl Registry {
    pub async fn tags_list(
        &self,
        repo: &RepoName,
        n: Option<u32>,
        last: Option<&str>,
    ) -> Result<Page<Tag>> {
        let n = n.unwrap_or(MAX_PAGE).min(MAX_PAGE);
        match self.meta.tags().list(repo, n + 1, last).await? {
            Some(tags) => Ok(page(tags, n)),
            None => Err(Error::NotFound(Missing::Repository)),
        }
    }

    pub async fn catalog(&self, n: Option<u32>, last: Option<&str>) -> Result<Page<RepoName>> {
        let n = n.unwrap_or(MAX_PAGE).min(MAX_PAGE);
        Ok(page(self.meta.repos().list(n + 1, last).await?, n))
    }

    /// Like [`Registry::catalog`], but only repositories `visible` says the caller may see: pages
    /// are filled from further down the list as needed.
    pub async fn catalog_visible(
        &self,
        n: Option<u32>,
        last: Option<&str>,
        visible: &(dyn Fn(&RepoName) -> bool + Sync),
    ) -> Result<Page<RepoName>> {
        let n = n.unwrap_or(MAX_PAGE).min(MAX_PAGE);
        let mut items = Vec::new();
        let mut cursor = last.map(str::to_string);
        loop {
            let batch = self.meta.repos().list(MAX_PAGE, cursor.as_deref()).await?;
            let done = batch.len() < MAX_PAGE as usize;
            cursor = batch.last().map(|r| r.to_string());
            items.extend(batch.into_iter().filter(|r| visible(r)));
            if done || items.len() > n as usize {
                return Ok(page(items, n));
            }
        }
    }

    /// The referrers of `subject` as an OCI image index, optionally filtered by artifact type.
    pub async fn referrers(
        &self,
        repo: &RepoName,
        subject: &Digest,
        artifact_type: Option<&str>,
    ) -> Result<Vec<u8>> {
        let refs = self
            .meta
            .manifests()
            .referrers(repo, subject, artifact_type)
            .await?;
        let manifests: Vec<Value> = refs
            .into_iter()
            .map(|r| {
                let mut d = Map::new();
                d.insert("mediaType".into(), json!(r.media_type.as_str()));
                d.insert("digest".into(), json!(r.digest.to_string()));
                d.insert("size".into(), json!(r.size));
                if let Some(a) = r.artifact_type {
                    d.insert("artifactType".into(), json!(a.as_str()));
                }
                if let Some(ann) = r
                    .annotations
                    .and_then(|a| serde_json::from_str::<Value>(&a).ok())
                {
                    d.insert("annotations".into(), ann);
                }
                Value::Object(d)
            })
            .collect();
        let index = json!({
            "schemaVersion": 2,
            "mediaType": media_types::OCI_INDEX,
            "manifests": manifests,
        });
        serde_json::to_vec(&index).map_err(|e| Error::Internal(e.to_string()))
    }
}
