//! SLSA Provenance v1 predicates (`https://slsa.dev/provenance/v1`): `buildDefinition`
//! (buildType, externalParameters, internalParameters, resolvedDependencies) and `runDetails`
//! (builder, metadata, byproducts). Model artifacts add training provenance: datasets as resolved
//! dependencies, hyperparameters as external parameters, evaluation metrics as a byproduct.

use std::collections::BTreeMap;

use serde_json::{json, Map, Value};

/// The default build type bonded writes when the caller names none.
pub const GENERIC_BUILD_TYPE: &str = "https://bonded.dev/build-types/generic/v1";

/// A ResourceDescriptor: a material, dataset or byproduct.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resource {
    pub name: String,
    pub uri: String,
    /// Algorithm → lowercase hex (e.g. `sha256`, `gitCommit`).
    pub digest: BTreeMap<String, String>,
}

impl Resource {
    fn to_json(&self) -> Value {
        let mut m = Map::new();
        if !self.name.is_empty() {
            m.insert("name".into(), json!(self.name));
        }
        if !self.uri.is_empty() {
            m.insert("uri".into(), json!(self.uri));
        }
        m.insert("digest".into(), json!(self.digest));
        Value::Object(m)
    }
}

/// Everything a provenance statement records.
#[derive(Debug, Clone, Default)]
pub struct BuildFacts {
    pub build_type: String,
    pub builder_id: String,
    /// Source repository URI, e.g. `git+https://github.com/acme/app`.
    pub source_uri: String,
    /// The commit built.
    pub source_commit: String,
    /// Whether the checkout had uncommitted changes.
    pub source_dirty: bool,
    pub build_command: Vec<String>,
    /// Tool → version string (rustc, cargo, python, go, node, ...).
    pub toolchain: BTreeMap<String, String>,
    /// os, arch, hostname, CI variables worth keeping.
    pub environment: BTreeMap<String, String>,
    pub base_image: Option<Resource>,
    pub materials: Vec<Resource>,
    pub datasets: Vec<Resource>,
    pub hyperparameters: Option<Value>,
    pub metrics: Option<(Resource, Value)>,
    pub invocation_id: String,
    pub started_on: String,
    pub finished_on: String,
}

impl BuildFacts {
    pub fn predicate(&self) -> Value {
        let mut external = Map::new();
        if !self.source_uri.is_empty() {
            let mut source = json!({ "uri": self.source_uri });
            if !self.source_commit.is_empty() {
                source["digest"] = json!({ "gitCommit": self.source_commit });
            }
            if self.source_dirty {
                source["dirty"] = json!(true);
            }
            external.insert("source".into(), source);
        }
        if !self.build_command.is_empty() {
            external.insert("command".into(), json!(self.build_command));
        }
        if !self.datasets.is_empty() || self.hyperparameters.is_some() {
            let mut training = Map::new();
            if !self.datasets.is_empty() {
                training.insert(
                    "datasets".into(),
                    json!(self
                        .datasets
                        .iter()
                        .map(Resource::to_json)
                        .collect::<Vec<_>>()),
                );
            }
            if let Some(h) = &self.hyperparameters {
                training.insert("hyperparameters".into(), h.clone());
            }
            external.insert("training".into(), Value::Object(training));
        }
        let mut deps: Vec<Value> = Vec::new();
        if !self.source_uri.is_empty() && !self.source_commit.is_empty() {
            deps.push(
                Resource {
                    name: "source".into(),
                    uri: format!("{}@{}", self.source_uri, self.source_commit),
                    digest: [("gitCommit".to_string(), self.source_commit.clone())].into(),
                }
                .to_json(),
            );
        }
        deps.extend(self.base_image.iter().map(Resource::to_json));
        deps.extend(self.materials.iter().map(Resource::to_json));
        deps.extend(self.datasets.iter().map(Resource::to_json));
        let mut byproducts = Vec::new();
        if let Some((r, metrics)) = &self.metrics {
            let mut b = r.to_json();
            b["mediaType"] = json!("application/json");
            b["annotations"] = metrics.clone();
            byproducts.push(b);
        }
        let mut metadata = Map::new();
        for (k, v) in [
            ("invocationId", &self.invocation_id),
            ("startedOn", &self.started_on),
            ("finishedOn", &self.finished_on),
        ] {
            if !v.is_empty() {
                metadata.insert(k.into(), json!(v));
            }
        }
        json!({
            "buildDefinition": {
                "buildType": if self.build_type.is_empty() { GENERIC_BUILD_TYPE } else { &self.build_type },
                "externalParameters": external,
                "internalParameters": {
                    "toolchain": self.toolchain,
                    "environment": self.environment,
                },
                "resolvedDependencies": deps,
            },
            "runDetails": {
                "builder": { "id": self.builder_id },
                "metadata": metadata,
                "byproducts": byproducts,
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn provenance_records_source_builder_materials_and_training() {
        let facts = BuildFacts {
            builder_id: "https://ci.example/builder".into(),
            source_uri: "git+https://example.com/acme/app".into(),
            source_commit: "abc123".into(),
            build_command: vec!["make".into(), "release".into()],
            toolchain: [("rustc".to_string(), "rustc 1.85.0".to_string())].into(),
            materials: vec![Resource {
                name: "Cargo.lock".into(),
                uri: "file:Cargo.lock".into(),
                digest: [("sha256".to_string(), "00".repeat(32))].into(),
            }],
            datasets: vec![Resource {
                name: "dataset".into(),
                uri: "oci://r/data@sha256:11".into(),
                digest: [("sha256".to_string(), "11".repeat(32))].into(),
            }],
            hyperparameters: Some(json!({"lr": 0.001})),
            metrics: Some((
                Resource {
                    name: "evaluation-metrics".into(),
                    uri: String::new(),
                    digest: [("sha256".to_string(), "22".repeat(32))].into(),
                },
                json!({"accuracy": 0.93}),
            )),
            ..Default::default()
        };
        let p = facts.predicate();
        assert_eq!(
            p["runDetails"]["builder"]["id"],
            "https://ci.example/builder"
        );
        assert_eq!(p["buildDefinition"]["buildType"], GENERIC_BUILD_TYPE);
        assert_eq!(
            p["buildDefinition"]["externalParameters"]["source"]["digest"]["gitCommit"],
            "abc123"
        );
        let deps = p["buildDefinition"]["resolvedDependencies"]
            .as_array()
            .unwrap();
        assert_eq!(deps.len(), 3);
        assert_eq!(deps[0]["uri"], "git+https://example.com/acme/app@abc123");
        assert_eq!(
            p["buildDefinition"]["externalParameters"]["training"]["hyperparameters"]["lr"],
            0.001
        );
        assert_eq!(
            p["runDetails"]["byproducts"][0]["annotations"]["accuracy"],
            0.93
        );
        assert_eq!(
            p["buildDefinition"]["internalParameters"]["toolchain"]["rustc"],
            "rustc 1.85.0"
        );
    }
}
