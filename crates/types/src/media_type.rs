use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::name::string_newtype_impls;

/// Media types bonded gives meaning to.
pub mod media_types {
    pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
    pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
    pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
    pub const DOCKER_MANIFEST_LIST: &str =
        "application/vnd.docker.distribution.manifest.list.v2+json";
    pub const OCI_EMPTY: &str = "application/vnd.oci.empty.v1+json";
    pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
    pub const OCI_LAYER_TAR: &str = "application/vnd.oci.image.layer.v1.tar";
    pub const OCTET_STREAM: &str = "application/octet-stream";
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("media type {0:?} is not of the form type/subtype (RFC 6838)")]
pub struct MediaTypeError(String);

/// A media type such as `application/vnd.oci.image.manifest.v1+json`, without parameters.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MediaType(String);

impl MediaType {
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Parses a `Content-Type` header value, dropping parameters such as `; charset=utf-8`.
    pub fn from_header(value: &str) -> Result<MediaType, MediaTypeError> {
        value.split(';').next().unwrap_or("").trim().parse()
    }

    pub fn is_manifest(&self) -> bool {
        use media_types::*;
        matches!(self.0.as_str(), OCI_MANIFEST | DOCKER_MANIFEST)
    }

    pub fn is_index(&self) -> bool {
        use media_types::*;
        matches!(self.0.as_str(), OCI_INDEX | DOCKER_MANIFEST_LIST)
    }
}

fn restricted_name(s: &str) -> bool {
    // RFC 6838 restricted-name: 1 to 127 chars, first alphanumeric.
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 127
        && b[0].is_ascii_alphanumeric()
        && b.iter()
            .all(|&c| c.is_ascii_alphanumeric() || b"!#$&-^_.+".contains(&c))
}

impl FromStr for MediaType {
    type Err = MediaTypeError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.split_once('/') {
            Some((t, sub)) if restricted_name(t) && restricted_name(sub) => {
                Ok(MediaType(s.to_string()))
            }
            _ => Err(MediaTypeError(s.to_string())),
        }
    }
}

string_newtype_impls!(MediaType, "MediaType");

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_media_types_and_headers() {
        assert!(media_types::OCI_MANIFEST
            .parse::<MediaType>()
            .unwrap()
            .is_manifest());
        assert!(
            MediaType::from_header("application/vnd.oci.image.index.v1+json; charset=utf-8")
                .unwrap()
                .is_index()
        );
        for bad in ["", "text", "/x", "x/", "a/b/c", "a b/c"] {
            assert!(bad.parse::<MediaType>().is_err(), "{bad}");
        }
    }
}
