//! `bonded diff A B`: what changed between two artifacts — manifest (media type, artifact type,
//! config, layers, annotations), provenance (builder, build type, source materials and their
//! commits), SBOM components (added, removed, version changes) read from the attestations
//! attached to each, and vulnerabilities (new and fixed) from each artifact's stored scan. Informational: it reads attestations without judging them; `bonded verify`
//! says whether they count.

use std::collections::{BTreeMap, BTreeSet};
use std::process::ExitCode;

use anyhow::{bail, Context};
use bonded_supply::dsse::Envelope;
use bonded_supply::media::Kind;
use bonded_supply::statement::Statement;
use bonded_types::{Digest, Reference};
use serde_json::{json, Value};

use super::client::Client;
use super::reference::ImageRef;
use super::supply::fetch_attestations;
use super::Conn;

#[derive(clap::Args)]
pub struct DiffArgs {
    /// The older artifact: host/repo@digest or host/repo:tag.
    pub a: String,
    /// The newer artifact (may live in another repository of the same registry).
    pub b: String,
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub conn: Conn,
}

/// What is known about one side.
struct Side {
    digest: Digest,
    manifest: Value,
    /// material URI → digest set (e.g. `gitCommit`), from every provenance statement.
    materials: BTreeMap<String, String>,
    builders: BTreeSet<String>,
    build_types: BTreeSet<String>,
    /// component key (purl without version, or name) → version.
    components: BTreeMap<String, String>,
    sbom_count: usize,
}

fn str_at<'a>(v: &'a Value, path: &[&str]) -> Option<&'a str> {
    path.iter().try_fold(v, |v, k| v.get(k))?.as_str()
}

fn digest_set(v: &Value) -> String {
    v.as_object()
        .map(|m| {
            m.iter()
                .map(|(k, v)| format!("{k}:{}", v.as_str().unwrap_or("?")))
                .collect::<Vec<_>>()
                .join(",")
        })
        .unwrap_or_default()
}

/// A material's URI without a trailing `@<revision>` (so one source at two commits is one key
/// that changed), and that revision.
fn material_key(uri: &str) -> (String, Option<String>) {
    match uri.rsplit_once('@') {
        Some((base, rev)) if base.contains("://") && !rev.is_empty() && !rev.contains('/') => {
            (base.to_string(), Some(rev.to_string()))
        }
        _ => (uri.to_string(), None),
    }
}

/// (key, version) of each component of a CycloneDX or SPDX document.
pub(crate) fn sbom_components(doc: &Value) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let purl_key = |p: &str| -> (String, Option<String>) {
        // pkg:type/ns/name@version?q#s → (pkg:type/ns/name, version)
        let main = p.split(['?', '#']).next().unwrap_or(p);
        match main.rsplit_once('@') {
            Some((k, v)) if !k.ends_with('/') && k.contains('/') => {
                (k.to_string(), Some(v.to_string()))
            }
            _ => (main.to_string(), None),
        }
    };
    if let Some(comps) = doc.get("components").and_then(Value::as_array) {
        for c in comps {
            let version = c.get("version").and_then(Value::as_str).map(str::to_string);
            let (key, pv) = match c.get("purl").and_then(Value::as_str) {
                Some(p) => purl_key(p),
                None => (
                    c.get("name")
                        .and_then(Value::as_str)
                        .unwrap_or("?")
                        .to_string(),
                    None,
                ),
            };
            out.push((key, version.or(pv).unwrap_or_default()));
        }
    }
    if let Some(pkgs) = doc.get("packages").and_then(Value::as_array) {
        for p in pkgs {
            let purl = p
                .get("externalRefs")
                .and_then(Value::as_array)
                .and_then(|refs| {
                    refs.iter()
                        .find(|r| r.get("referenceType").and_then(Value::as_str) == Some("purl"))
                })
                .and_then(|r| r.get("referenceLocator").and_then(Value::as_str));
            let version = p
                .get("versionInfo")
                .and_then(Value::as_str)
                .map(str::to_string);
            let (key, pv) = match purl {
                Some(u) => purl_key(u),
                None => (
                    p.get("name")
                        .and_then(Value::as_str)
                        .unwrap_or("?")
                        .to_string(),
                    None,
                ),
            };
            out.push((key, version.or(pv).unwrap_or_default()));
        }
    }
    out
}

/// (advisory id, package) → "severity installed" of an artifact's stored scan; `None` if it has
/// not been scanned (or the scan cannot be read).
async fn scan_findings(
    client: &Client,
    r: &ImageRef,
    digest: &Digest,
) -> Option<BTreeMap<String, String>> {
    let q = super::manage::query(&[
        ("repository", r.repo.to_string()),
        ("reference", digest.to_string()),
    ]);
    let v = super::manage::api(client, reqwest::Method::GET, &format!("/scans?{q}"), None)
        .await
        .ok()?;
    let result: bonded_service::vulns::ScanResult = serde_json::from_value(v).ok()?;
    Some(
        result
            .findings
            .into_iter()
            .map(|f| {
                (
                    format!("{} in {}", f.advisory_id, f.package),
                    format!("{} {}", f.severity, f.installed),
                )
            })
            .collect(),
    )
}

async fn side(client: &Client, r: &ImageRef) -> anyhow::Result<Side> {
    let reference = r
        .reference
        .clone()
        .unwrap_or_else(|| Reference::Tag("latest".parse().expect("valid tag")));
    let m = client.get_manifest(&r.repo, &reference).await?;
    let manifest: Value = serde_json::from_slice(&m.bytes).context("manifest is not JSON")?;
    let mut s = Side {
        digest: m.digest.clone(),
        manifest,
        materials: BTreeMap::new(),
        builders: BTreeSet::new(),
        build_types: BTreeSet::new(),
        components: BTreeMap::new(),
        sbom_count: 0,
    };
    for att in fetch_attestations(client, r, &m.digest).await? {
        let Ok(bytes) = att.envelope else { continue };
        let Some(statement) = Envelope::parse(&bytes)
            .ok()
            .and_then(|e| e.payload_bytes().ok())
            .and_then(|p| Statement::parse(&p).ok())
        else {
            continue;
        };
        let p = &statement.predicate;
        match att.kind {
            Kind::Provenance => {
                if let Some(b) = str_at(p, &["runDetails", "builder", "id"]) {
                    s.builders.insert(b.to_string());
                }
                if let Some(t) = str_at(p, &["buildDefinition", "buildType"]) {
                    s.build_types.insert(t.to_string());
                }
                let deps = p
                    .pointer("/buildDefinition/resolvedDependencies")
                    .and_then(Value::as_array)
                    .cloned()
                    .unwrap_or_default();
                for d in deps {
                    if let Some(uri) = d.get("uri").and_then(Value::as_str) {
                        let (key, rev) = material_key(uri);
                        let digest = d
                            .get("digest")
                            .map(digest_set)
                            .filter(|d| !d.is_empty())
                            .or(rev)
                            .unwrap_or_default();
                        s.materials.insert(key, digest);
                    }
                }
            }
            Kind::Sbom => {
                s.sbom_count += 1;
                for (k, v) in sbom_components(p) {
                    s.components.insert(k, v);
                }
            }
            Kind::Signature => {}
        }
    }
    Ok(s)
}

fn layers(m: &Value) -> Vec<(String, u64)> {
    let key = if m.get("manifests").is_some() {
        "manifests"
    } else {
        "layers"
    };
    m.get(key)
        .and_then(Value::as_array)
        .map(|l| {
            l.iter()
                .map(|x| {
                    (
                        x.get("digest")
                            .and_then(Value::as_str)
                            .unwrap_or("?")
                            .to_string(),
                        x.get("size").and_then(Value::as_u64).unwrap_or(0),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

fn annotations(m: &Value) -> BTreeMap<String, String> {
    m.get("annotations")
        .and_then(Value::as_object)
        .map(|a| {
            a.iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or("").to_string()))
                .collect()
        })
        .unwrap_or_default()
}

/// Keyed changes between two maps: (added, removed, changed (key, old, new)).
type MapDiff = (
    Vec<(String, String)>,
    Vec<(String, String)>,
    Vec<(String, String, String)>,
);

fn diff_maps(a: &BTreeMap<String, String>, b: &BTreeMap<String, String>) -> MapDiff {
    let added = b
        .iter()
        .filter(|(k, _)| !a.contains_key(*k))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let removed = a
        .iter()
        .filter(|(k, _)| !b.contains_key(*k))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let changed = a
        .iter()
        .filter_map(|(k, old)| {
            b.get(k)
                .filter(|new| *new != old)
                .map(|new| (k.clone(), old.clone(), new.clone()))
        })
        .collect();
    (added, removed, changed)
}

fn map_json(d: &MapDiff) -> Value {
    json!({
        "added": d.0.iter().map(|(k, v)| json!({"key": k, "value": v})).collect::<Vec<_>>(),
        "removed": d.1.iter().map(|(k, v)| json!({"key": k, "value": v})).collect::<Vec<_>>(),
        "changed": d.2.iter().map(|(k, o, n)| json!({"key": k, "from": o, "to": n})).collect::<Vec<_>>(),
    })
}

fn print_map(title: &str, d: &MapDiff) {
    if d.0.is_empty() && d.1.is_empty() && d.2.is_empty() {
        println!("{title}: unchanged");
        return;
    }
    println!("{title}:");
    for (k, v) in &d.1 {
        println!("  - {k} {v}");
    }
    for (k, v) in &d.0 {
        println!("  + {k} {v}");
    }
    for (k, o, n) in &d.2 {
        println!("  ~ {k} {o} → {n}");
    }
}

pub async fn run(args: DiffArgs) -> anyhow::Result<ExitCode> {
    let a: ImageRef = args.a.parse()?;
    let b: ImageRef = args.b.parse()?;
    if a.host != b.host {
        bail!(
            "both artifacts must be on one registry ({} vs {})",
            a.host,
            b.host
        );
    }
    let client = Client::new(&a.host, args.conn.plain_http)?;
    let (sa, sb) = (side(&client, &a).await?, side(&client, &b).await?);

    let field = |m: &Value, k: &str| m.get(k).and_then(Value::as_str).unwrap_or("").to_string();
    let scalar = |m: &Value| -> BTreeMap<String, String> {
        [
            ("mediaType", field(m, "mediaType")),
            ("artifactType", field(m, "artifactType")),
            (
                "config",
                m.pointer("/config/digest")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_string(),
            ),
        ]
        .into_iter()
        .filter(|(_, v)| !v.is_empty())
        .map(|(k, v)| (k.to_string(), v))
        .collect()
    };
    let manifest = diff_maps(&scalar(&sa.manifest), &scalar(&sb.manifest));
    let la: BTreeMap<String, String> = layers(&sa.manifest)
        .into_iter()
        .map(|(d, s)| (d, format!("{s} B")))
        .collect();
    let lb: BTreeMap<String, String> = layers(&sb.manifest)
        .into_iter()
        .map(|(d, s)| (d, format!("{s} B")))
        .collect();
    let layer_diff = diff_maps(&la, &lb);
    let annotation_diff = diff_maps(&annotations(&sa.manifest), &annotations(&sb.manifest));
    let set_map = |s: &BTreeSet<String>| -> BTreeMap<String, String> {
        s.iter().map(|x| (x.clone(), String::new())).collect()
    };
    let builders = diff_maps(&set_map(&sa.builders), &set_map(&sb.builders));
    let build_types = diff_maps(&set_map(&sa.build_types), &set_map(&sb.build_types));
    let materials = diff_maps(&sa.materials, &sb.materials);
    let components = diff_maps(&sa.components, &sb.components);
    let (va, vb) = (
        scan_findings(&client, &a, &sa.digest).await,
        scan_findings(&client, &b, &sb.digest).await,
    );
    // New: in B, not in A; fixed: in A, not in B (a finding whose installed version changed is
    // still there).
    let vulns = match (&va, &vb) {
        (Some(x), Some(y)) => {
            let (new, fixed, _) = diff_maps(x, y);
            Some((new, fixed))
        }
        _ => None,
    };

    if args.json {
        super::supply::print_json(&json!({
            "a": sa.digest.to_string(),
            "b": sb.digest.to_string(),
            "manifest": map_json(&manifest),
            "layers": map_json(&layer_diff),
            "annotations": map_json(&annotation_diff),
            "provenance": {
                "builders": map_json(&builders),
                "build_types": map_json(&build_types),
                "materials": map_json(&materials),
            },
            "sbom": {
                "a_documents": sa.sbom_count,
                "b_documents": sb.sbom_count,
                "components": map_json(&components),
            },
            "vulnerabilities": vulns.as_ref().map(|(new, fixed)| json!({
                "new": new.iter().map(|(k, v)| json!({"finding": k, "detail": v})).collect::<Vec<_>>(),
                "fixed": fixed.iter().map(|(k, v)| json!({"finding": k, "detail": v})).collect::<Vec<_>>(),
            })),
        }))?;
        return Ok(ExitCode::SUCCESS);
    }
    println!("a: {}/{}@{}", a.host, a.repo, sa.digest);
    println!("b: {}/{}@{}", b.host, b.repo, sb.digest);
    if sa.digest == sb.digest {
        println!("identical");
        return Ok(ExitCode::SUCCESS);
    }
    print_map("manifest", &manifest);
    print_map("layers", &layer_diff);
    print_map("annotations", &annotation_diff);
    if sa.builders.is_empty()
        && sb.builders.is_empty()
        && sa.materials.is_empty()
        && sb.materials.is_empty()
    {
        println!("provenance: none attached");
    } else {
        print_map("provenance builders", &builders);
        print_map("provenance build types", &build_types);
        print_map("provenance materials (source commits)", &materials);
    }
    if sa.sbom_count + sb.sbom_count == 0 {
        println!("sbom: none attached");
    } else {
        println!(
            "sbom: {} → {} components",
            sa.components.len(),
            sb.components.len()
        );
        print_map("sbom components", &components);
    }
    match &vulns {
        None => println!(
            "vulnerabilities: {} (run bonded scan)",
            match (&va, &vb) {
                (None, None) => "neither artifact is scanned",
                (None, _) => "a is not scanned",
                _ => "b is not scanned",
            }
        ),
        Some((new, fixed)) if new.is_empty() && fixed.is_empty() => {
            println!("vulnerabilities: unchanged")
        }
        Some((new, fixed)) => {
            println!("vulnerabilities:");
            for (k, v) in fixed {
                println!("  fixed {k} ({v})");
            }
            for (k, v) in new {
                println!("  new   {k} ({v})");
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn components_are_keyed_without_their_version() {
        let cdx = json!({"bomFormat": "CycloneDX", "components": [
            {"name": "requests", "version": "2.31.0", "purl": "pkg:pypi/requests@2.31.0"},
            {"name": "openssl", "purl": "pkg:deb/debian/openssl@3.0.11-1?arch=amd64"},
            {"name": "local-thing", "version": "1"},
        ]});
        assert_eq!(
            sbom_components(&cdx),
            [
                ("pkg:pypi/requests".to_string(), "2.31.0".to_string()),
                ("pkg:deb/debian/openssl".to_string(), "3.0.11-1".to_string()),
                ("local-thing".to_string(), "1".to_string()),
            ]
        );
        let spdx = json!({"spdxVersion": "SPDX-2.3", "packages": [
            {"name": "lodash", "versionInfo": "4.17.21", "externalRefs": [
                {"referenceType": "purl", "referenceLocator": "pkg:npm/lodash@4.17.21"}]},
        ]});
        assert_eq!(
            sbom_components(&spdx),
            [("pkg:npm/lodash".to_string(), "4.17.21".to_string())]
        );
    }

    #[test]
    fn materials_are_keyed_by_source_without_revision() {
        assert_eq!(
            material_key("git+https://example.com/acme/api@1234"),
            (
                "git+https://example.com/acme/api".to_string(),
                Some("1234".to_string())
            )
        );
        assert_eq!(
            material_key("oci://registry/ml/data@sha256:ab"),
            (
                "oci://registry/ml/data".to_string(),
                Some("sha256:ab".to_string())
            )
        );
        assert_eq!(
            material_key("https://x.example/a"),
            ("https://x.example/a".to_string(), None)
        );
    }

    #[test]
    fn maps_diff_into_added_removed_and_changed() {
        let a: BTreeMap<String, String> = [("x", "1"), ("y", "2")]
            .map(|(k, v)| (k.into(), v.into()))
            .into();
        let b: BTreeMap<String, String> = [("y", "3"), ("z", "4")]
            .map(|(k, v)| (k.into(), v.into()))
            .into();
        let (added, removed, changed) = diff_maps(&a, &b);
        assert_eq!(added, [("z".to_string(), "4".to_string())]);
        assert_eq!(removed, [("x".to_string(), "1".to_string())]);
        assert_eq!(
            changed,
            [("y".to_string(), "2".to_string(), "3".to_string())]
        );
    }
}
