//! A small OCI distribution client over HTTP, used by the CLI commands.

use std::path::Path;

use anyhow::{anyhow, bail, Context};
use bonded_types::{Digest, Reference, RepoName};
use futures::StreamExt;
use indicatif::ProgressBar;
use reqwest::{header, Response, StatusCode};
use serde_json::Value;
use tokio_util::io::ReaderStream;

use super::auth::{Auth, Scope};
use super::credentials;

pub const MANIFEST_ACCEPT: &str = "application/vnd.oci.image.manifest.v1+json, \
application/vnd.oci.image.index.v1+json, \
application/vnd.docker.distribution.manifest.v2+json, \
application/vnd.docker.distribution.manifest.list.v2+json";

pub struct Client {
    http: reqwest::Client,
    base: String,
    auth: Auth,
}

/// Loopback registries are spoken to over plain HTTP unless told otherwise; everything else over
/// HTTPS unless `plain_http` is set.
fn scheme(host: &str, plain_http: bool) -> &'static str {
    let h = host.rsplit_once(':').map(|(h, _)| h).unwrap_or(host);
    let loopback = h == "localhost" || h.starts_with("127.") || h == "[::1]";
    if plain_http || loopback {
        "http"
    } else {
        "https"
    }
}

/// Turns an OCI error envelope into a readable message.
async fn fail(resp: Response, what: &str) -> anyhow::Error {
    let status = resp.status();
    let body = resp.text().await.unwrap_or_default();
    let detail = serde_json::from_str::<Value>(&body)
        .ok()
        .and_then(|v| {
            let e = v.get("errors")?.get(0)?.clone();
            Some(format!(
                "{}: {}",
                e.get("code")?.as_str()?,
                e.get("message").and_then(Value::as_str).unwrap_or("")
            ))
        })
        .unwrap_or_else(|| match status {
            // HEAD answers carry no body: name the spec's code.
            StatusCode::UNAUTHORIZED if body.is_empty() => {
                "UNAUTHORIZED: authentication required (run `bonded login`)".into()
            }
            StatusCode::FORBIDDEN if body.is_empty() => {
                "DENIED: requested access to the resource is denied".into()
            }
            _ => body.chars().take(200).collect(),
        });
    anyhow!("{what}: registry answered {status}: {detail}")
}

pub struct Manifest {
    pub media_type: String,
    pub digest: Digest,
    pub bytes: bytes::Bytes,
}

impl Client {
    pub fn new(host: &str, plain_http: bool) -> anyhow::Result<Client> {
        let http = reqwest::Client::builder()
            .user_agent(concat!("bonded/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(Client {
            http,
            base: format!("{}://{host}", scheme(host, plain_http)),
            auth: Auth::new(credentials::lookup(host)?),
        })
    }

    /// The registry's base URL, e.g. `http://localhost:5000`.
    pub fn base(&self) -> &str {
        &self.base
    }

    /// Sends a request with whatever authentication the registry asks for.
    async fn send(&self, rb: reqwest::RequestBuilder, scope: Scope) -> anyhow::Result<Response> {
        let rb = match self.auth.header(&self.http, &self.base, &scope).await? {
            Some(h) => rb.header(header::AUTHORIZATION, h),
            None => rb,
        };
        Ok(rb.send().await?)
    }

    /// The `Authorization` header for the management API (HTTP Basic with the stored
    /// credentials), if there are credentials.
    pub fn basic_header(&self) -> Option<String> {
        self.auth.basic()
    }

    pub fn http(&self) -> &reqwest::Client {
        &self.http
    }

    fn url(&self, path: &str) -> String {
        if path.starts_with("http://") || path.starts_with("https://") {
            path.to_string()
        } else {
            format!("{}{path}", self.base)
        }
    }

    pub async fn blob_exists(&self, repo: &RepoName, digest: &Digest) -> anyhow::Result<bool> {
        let resp = self
            .send(
                self.http
                    .head(self.url(&format!("/v2/{repo}/blobs/{digest}"))),
                Scope::repo(repo),
            )
            .await?;
        match resp.status() {
            s if s.is_success() => Ok(true),
            StatusCode::NOT_FOUND => Ok(false),
            _ => Err(fail(resp, "checking for blob").await),
        }
    }

    /// Uploads a file as a blob with a known digest: POST, then one streaming PUT.
    pub async fn upload_file(
        &self,
        repo: &RepoName,
        path: &Path,
        digest: &Digest,
        progress: &ProgressBar,
    ) -> anyhow::Result<()> {
        let resp = self
            .send(
                self.http
                    .post(self.url(&format!("/v2/{repo}/blobs/uploads/"))),
                Scope::repo(repo),
            )
            .await?;
        if resp.status() != StatusCode::ACCEPTED {
            return Err(fail(resp, "starting upload").await);
        }
        let location = resp
            .headers()
            .get(header::LOCATION)
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| anyhow!("registry did not say where to upload (no Location header)"))?;
        let sep = if location.contains('?') { '&' } else { '?' };
        let url = self.url(&format!("{location}{sep}digest={digest}"));
        let file = tokio::fs::File::open(path)
            .await
            .with_context(|| format!("opening {}", path.display()))?;
        let size = file.metadata().await?.len();
        let pb = progress.clone();
        let stream = ReaderStream::with_capacity(file, 256 << 10).inspect(move |c| {
            if let Ok(c) = c {
                pb.inc(c.len() as u64);
            }
        });
        let resp = self
            .send(
                self.http
                    .put(url)
                    .header(header::CONTENT_TYPE, "application/octet-stream")
                    .header(header::CONTENT_LENGTH, size)
                    .body(reqwest::Body::wrap_stream(stream)),
                Scope::repo(repo),
            )
            .await?;
        if resp.status() != StatusCode::CREATED {
            return Err(fail(resp, "uploading blob").await);
        }
        Ok(())
    }

    pub async fn put_manifest(
        &self,
        repo: &RepoName,
        reference: &Reference,
        media_type: &str,
        bytes: Vec<u8>,
    ) -> anyhow::Result<Digest> {
        let resp = self
            .send(
                self.http
                    .put(self.url(&format!("/v2/{repo}/manifests/{reference}")))
                    .header(header::CONTENT_TYPE, media_type)
                    .body(bytes),
                Scope::repo(repo),
            )
            .await?;
        if resp.status() != StatusCode::CREATED {
            return Err(fail(resp, "pushing manifest").await);
        }
        let digest = resp
            .headers()
            .get("docker-content-digest")
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| anyhow!("registry did not return Docker-Content-Digest"))?;
        Ok(digest.parse()?)
    }

    /// Fetches a manifest and verifies its digest (against the reference when it is a digest,
    /// and against the registry's Docker-Content-Digest header).
    pub async fn get_manifest(
        &self,
        repo: &RepoName,
        reference: &Reference,
    ) -> anyhow::Result<Manifest> {
        let resp = self
            .send(
                self.http
                    .get(self.url(&format!("/v2/{repo}/manifests/{reference}")))
                    .header(header::ACCEPT, MANIFEST_ACCEPT),
                Scope::repo(repo),
            )
            .await?;
        if !resp.status().is_success() {
            return Err(fail(resp, &format!("fetching manifest {repo}:{reference}")).await);
        }
        let media_type = resp
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        let claimed: Option<Digest> = resp
            .headers()
            .get("docker-content-digest")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok());
        let bytes = resp.bytes().await?;
        let alg = match reference {
            Reference::Digest(d) => d.algorithm(),
            Reference::Tag(_) => claimed
                .as_ref()
                .map(|d| d.algorithm())
                .unwrap_or(bonded_types::Algorithm::Sha256),
        };
        let digest = Digest::of(alg, &bytes);
        if let Reference::Digest(want) = reference {
            if &digest != want {
                bail!("manifest content has digest {digest}, not {want}: refusing it");
            }
        }
        if let Some(c) = claimed {
            if c != digest {
                bail!("registry said the manifest is {c} but its content is {digest}: refusing it");
            }
        }
        Ok(Manifest {
            media_type,
            digest,
            bytes,
        })
    }

    pub async fn get_blob(&self, repo: &RepoName, digest: &Digest) -> anyhow::Result<Response> {
        let resp = self
            .send(
                self.http
                    .get(self.url(&format!("/v2/{repo}/blobs/{digest}"))),
                Scope::repo(repo),
            )
            .await?;
        if !resp.status().is_success() {
            return Err(fail(resp, &format!("fetching blob {digest}")).await);
        }
        Ok(resp)
    }

    pub async fn delete_manifest(
        &self,
        repo: &RepoName,
        reference: &Reference,
    ) -> anyhow::Result<()> {
        let resp = self
            .send(
                self.http
                    .delete(self.url(&format!("/v2/{repo}/manifests/{reference}"))),
                Scope::repo(repo),
            )
            .await?;
        if resp.status() != StatusCode::ACCEPTED {
            return Err(fail(resp, &format!("deleting {repo}:{reference}")).await);
        }
        Ok(())
    }

    /// Follows `Link` headers through every page of a listing, collecting `key` arrays.
    pub async fn list_all(&self, first: &str, key: &str) -> anyhow::Result<Vec<String>> {
        let mut out = Vec::new();
        let mut next = Some(first.to_string());
        while let Some(path) = next.take() {
            let resp = self
                .send(self.http.get(self.url(&path)), Scope::for_path(&path))
                .await?;
            if !resp.status().is_success() {
                return Err(fail(resp, "listing").await);
            }
            next = resp
                .headers()
                .get(header::LINK)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.split_once('<'))
                .and_then(|(_, rest)| rest.split_once('>'))
                .map(|(url, _)| url.to_string());
            let v: Value = resp.json().await?;
            if let Some(items) = v.get(key).and_then(Value::as_array) {
                out.extend(items.iter().filter_map(|i| i.as_str().map(str::to_string)));
            }
        }
        Ok(out)
    }

    pub async fn referrers(&self, repo: &RepoName, digest: &Digest) -> anyhow::Result<Value> {
        let resp = self
            .send(
                self.http
                    .get(self.url(&format!("/v2/{repo}/referrers/{digest}"))),
                Scope::repo(repo),
            )
            .await?;
        if !resp.status().is_success() {
            return Err(fail(resp, "listing referrers").await);
        }
        Ok(resp.json().await?)
    }

    /// Uploads a small in-memory blob (an envelope, an SBOM) unless the repository has it.
    pub async fn upload_bytes(&self, repo: &RepoName, bytes: &[u8]) -> anyhow::Result<Digest> {
        let digest = Digest::of(bonded_types::Algorithm::Sha256, bytes);
        if self.blob_exists(repo, &digest).await? {
            return Ok(digest);
        }
        let f = tempfile::NamedTempFile::new()?;
        std::fs::write(f.path(), bytes)?;
        self.upload_file(repo, f.path(), &digest, &ProgressBar::hidden())
            .await?;
        Ok(digest)
    }

    /// A management API call (`/api/v1/...`): JSON in, JSON out; its error envelope becomes the
    /// error message.
    pub async fn api(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
    ) -> anyhow::Result<Value> {
        let mut req = self.http.request(method, self.url(path));
        if let Some(b) = body {
            req = req.json(b);
        }
        // The management API takes the stored credentials as HTTP Basic.
        if let Some(h) = self.basic_header() {
            req = req.header(header::AUTHORIZATION, h);
        }
        let resp = req.send().await?;
        let status = resp.status();
        let text = resp.text().await.unwrap_or_default();
        if !status.is_success() {
            let msg = serde_json::from_str::<Value>(&text)
                .ok()
                .and_then(|v| {
                    let e = v.get("error")?;
                    Some(format!(
                        "{}: {}",
                        e.get("code")?.as_str()?,
                        e.get("message")?.as_str()?
                    ))
                })
                .unwrap_or_else(|| text.chars().take(200).collect());
            bail!("{path}: registry answered {status}: {msg}");
        }
        serde_json::from_str(&text).with_context(|| format!("{path}: response is not JSON"))
    }
}
