//! SBOM documents: validation of CycloneDX (1.4–1.6) and SPDX (2.3) JSON before they are attached.
//!
//! Validation checks what the specs make mandatory and what consumers rely on — format markers,
//! versions, the shape of every component/package and of document metadata — not the full JSON
//! schemas. A document failing it is refused with the first problem found.

use serde_json::Value;

use crate::statement::predicate_types;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SbomFormat {
    CycloneDx { spec_version: String },
    Spdx { spec_version: String },
}

impl SbomFormat {
    pub fn predicate_type(&self) -> &'static str {
        match self {
            SbomFormat::CycloneDx { .. } => predicate_types::CYCLONEDX,
            SbomFormat::Spdx { .. } => predicate_types::SPDX,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a valid SBOM: {0}")]
pub struct SbomError(pub String);

fn err<T>(m: impl Into<String>) -> Result<T, SbomError> {
    Err(SbomError(m.into()))
}

fn str_field<'a>(v: &'a Value, k: &str, ctx: &str) -> Result<&'a str, SbomError> {
    match v.get(k) {
        Some(Value::String(s)) if !s.is_empty() => Ok(s),
        Some(_) => err(format!("{ctx}: {k} must be a non-empty string")),
        None => err(format!("{ctx}: {k} is missing")),
    }
}

const CDX_COMPONENT_TYPES: &[&str] = &[
    "application",
    "framework",
    "library",
    "container",
    "platform",
    "operating-system",
    "device",
    "device-driver",
    "firmware",
    "file",
    "machine-learning-model",
    "data",
    "cryptographic-asset",
];

fn cyclonedx_components(list: &Value, ctx: &str) -> Result<(), SbomError> {
    let Some(items) = list.as_array() else {
        return err(format!("{ctx} must be an array"));
    };
    for (i, c) in items.iter().enumerate() {
        let here = format!("{ctx}[{i}]");
        if !c.is_object() {
            return err(format!("{here} must be an object"));
        }
        let t = str_field(c, "type", &here)?;
        if !CDX_COMPONENT_TYPES.contains(&t) {
            return err(format!(
                "{here}: type {t:?} is not a CycloneDX component type"
            ));
        }
        str_field(c, "name", &here)?;
        if let Some(p) = c.get("purl") {
            match p.as_str() {
                Some(s) if s.starts_with("pkg:") => {}
                _ => return err(format!("{here}: purl must be a string starting with pkg:")),
            }
        }
        if let Some(sub) = c.get("components") {
            cyclonedx_components(sub, &format!("{here}.components"))?;
        }
    }
    Ok(())
}

fn validate_cyclonedx(v: &Value) -> Result<SbomFormat, SbomError> {
    let spec = str_field(v, "specVersion", "CycloneDX")?;
    if !matches!(spec, "1.4" | "1.5" | "1.6") {
        return err(format!(
            "CycloneDX specVersion {spec:?} is not supported; use 1.4, 1.5 or 1.6"
        ));
    }
    if let Some(n) = v.get("version") {
        if n.as_u64().is_none_or(|n| n < 1) {
            return err("CycloneDX: version must be an integer >= 1");
        }
    }
    if let Some(s) = v.get("serialNumber") {
        let ok = s.as_str().is_some_and(|s| {
            s.strip_prefix("urn:uuid:").is_some_and(|u| {
                u.len() == 36 && u.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-')
            })
        });
        if !ok {
            return err("CycloneDX: serialNumber must be urn:uuid:<RFC 4122 UUID>");
        }
    }
    if let Some(m) = v.get("metadata") {
        if !m.is_object() {
            return err("CycloneDX: metadata must be an object");
        }
        if let Some(c) = m.get("component") {
            cyclonedx_components(&Value::Array(vec![c.clone()]), "metadata.component")?;
        }
    }
    if let Some(c) = v.get("components") {
        cyclonedx_components(c, "components")?;
    }
    Ok(SbomFormat::CycloneDx {
        spec_version: spec.to_string(),
    })
}

fn validate_spdx(v: &Value) -> Result<SbomFormat, SbomError> {
    let spec = str_field(v, "spdxVersion", "SPDX")?;
    if spec != "SPDX-2.3" {
        return err(format!(
            "SPDX spdxVersion {spec:?} is not supported; use SPDX-2.3"
        ));
    }
    if str_field(v, "dataLicense", "SPDX")? != "CC0-1.0" {
        return err("SPDX: dataLicense must be CC0-1.0");
    }
    if str_field(v, "SPDXID", "SPDX")? != "SPDXRef-DOCUMENT" {
        return err("SPDX: SPDXID must be SPDXRef-DOCUMENT");
    }
    str_field(v, "name", "SPDX")?;
    str_field(v, "documentNamespace", "SPDX")?;
    let ci = v
        .get("creationInfo")
        .ok_or_else(|| SbomError("SPDX: creationInfo is missing".into()))?;
    str_field(ci, "created", "SPDX creationInfo")?;
    if !ci
        .get("creators")
        .and_then(Value::as_array)
        .is_some_and(|c| !c.is_empty() && c.iter().all(Value::is_string))
    {
        return err("SPDX creationInfo: creators must be a non-empty array of strings");
    }
    if let Some(pkgs) = v.get("packages") {
        let Some(pkgs) = pkgs.as_array() else {
            return err("SPDX: packages must be an array");
        };
        for (i, p) in pkgs.iter().enumerate() {
            let here = format!("packages[{i}]");
            let id = str_field(p, "SPDXID", &here)?;
            if !id.starts_with("SPDXRef-") {
                return err(format!("{here}: SPDXID must start with SPDXRef-"));
            }
            str_field(p, "name", &here)?;
            str_field(p, "downloadLocation", &here)?;
        }
    }
    Ok(SbomFormat::Spdx {
        spec_version: spec.to_string(),
    })
}

/// Parses and validates an SBOM document, returning its format and the parsed JSON.
pub fn validate(bytes: &[u8]) -> Result<(SbomFormat, Value), SbomError> {
    let v: Value =
        serde_json::from_slice(bytes).map_err(|e| SbomError(format!("not JSON: {e}")))?;
    if !v.is_object() {
        return err("the document must be a JSON object");
    }
    let format = if v.get("bomFormat").is_some() {
        if v.get("bomFormat").and_then(Value::as_str) != Some("CycloneDX") {
            return err("bomFormat must be \"CycloneDX\"");
        }
        validate_cyclonedx(&v)?
    } else if v.get("spdxVersion").is_some() {
        validate_spdx(&v)?
    } else {
        return err("neither CycloneDX (bomFormat) nor SPDX (spdxVersion) JSON");
    };
    Ok((format, v))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn accepts_cyclonedx_and_spdx_and_says_what_is_wrong_otherwise() {
        let cdx = json!({"bomFormat": "CycloneDX", "specVersion": "1.5", "version": 1,
            "serialNumber": "urn:uuid:3e671687-395b-41f5-a30f-a58921a69b79",
            "components": [{"type": "library", "name": "requests", "version": "2.32.3",
                            "purl": "pkg:pypi/requests@2.32.3"}]});
        let (f, _) = validate(cdx.to_string().as_bytes()).unwrap();
        assert_eq!(f.predicate_type(), predicate_types::CYCLONEDX);
        let spdx = json!({"spdxVersion": "SPDX-2.3", "dataLicense": "CC0-1.0",
            "SPDXID": "SPDXRef-DOCUMENT", "name": "x", "documentNamespace": "https://x/1",
            "creationInfo": {"created": "2026-01-01T00:00:00Z", "creators": ["Tool: t"]},
            "packages": [{"SPDXID": "SPDXRef-p", "name": "p", "downloadLocation": "NOASSERTION"}]});
        assert!(matches!(
            validate(spdx.to_string().as_bytes()).unwrap().0,
            SbomFormat::Spdx { .. }
        ));
        let cases = [
            (
                json!({"bomFormat": "CycloneDX", "specVersion": "1.2"}),
                "1.2",
            ),
            (json!({"bomFormat": "SWID"}), "bomFormat"),
            (
                json!({"bomFormat": "CycloneDX", "specVersion": "1.6",
                    "components": [{"type": "lib", "name": "x"}]}),
                "components[0]",
            ),
            (
                json!({"bomFormat": "CycloneDX", "specVersion": "1.6",
                    "components": [{"type": "library"}]}),
                "name is missing",
            ),
            (
                json!({"bomFormat": "CycloneDX", "specVersion": "1.6",
                    "components": [{"type": "library", "name": "x", "purl": "x"}]}),
                "purl",
            ),
            (json!({"spdxVersion": "SPDX-2.2"}), "SPDX-2.3"),
            (json!({"hello": 1}), "neither"),
            (json!([1]), "object"),
        ];
        for (doc, want) in cases {
            let e = validate(doc.to_string().as_bytes())
                .unwrap_err()
                .to_string();
            assert!(e.contains(want), "{doc}: {e}");
        }
        assert!(validate(b"{nope").is_err());
    }
}
