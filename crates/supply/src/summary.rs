//! Short, printable summaries of verified statements (for `bonded verify`, `inspect` and the
//! management API).

use serde_json::{json, Value};

use crate::statement::{predicate_types, Statement};

fn at<'a>(v: &'a Value, path: &[&str]) -> &'a Value {
    path.iter()
        .try_fold(v, |v, k| v.get(k))
        .unwrap_or(&Value::Null)
}

pub fn summarize(s: &Statement) -> Value {
    let p = &s.predicate;
    match s.predicate_type.as_str() {
        predicate_types::SIGNATURE => json!({
            "reference": at(p, &["reference"]),
            "signed_at": at(p, &["signedAt"]),
            "signer": at(p, &["signer"]),
        }),
        predicate_types::SLSA_PROVENANCE_V1 => {
            let deps = at(p, &["buildDefinition", "resolvedDependencies"]);
            json!({
                "builder": at(p, &["runDetails", "builder", "id"]),
                "build_type": at(p, &["buildDefinition", "buildType"]),
                "source": at(p, &["buildDefinition", "externalParameters", "source"]),
                "materials": deps.as_array().map(|a| a.len()).unwrap_or(0),
                "started_on": at(p, &["runDetails", "metadata", "startedOn"]),
            })
        }
        predicate_types::CYCLONEDX => json!({
            "format": "CycloneDX",
            "spec_version": at(p, &["specVersion"]),
            "components": at(p, &["components"]).as_array().map(|a| a.len()).unwrap_or(0),
        }),
        predicate_types::SPDX => json!({
            "format": "SPDX",
            "spec_version": at(p, &["spdxVersion"]),
            "packages": at(p, &["packages"]).as_array().map(|a| a.len()).unwrap_or(0),
        }),
        _ => Value::Null,
    }
}
