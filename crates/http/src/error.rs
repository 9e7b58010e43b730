//! The OCI error envelope: `{"errors":[{"code","message","detail"}]}` with the spec's codes, and
//! the exhaustive mapping from service decisions and route failures to it.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use bonded_service::{Error, Invalid, Missing};
use serde_json::{json, Value};
use tracing::error;

use crate::route::RouteError;

/// Error codes from the distribution spec (plus `TOOMANYREQUESTS`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Code {
    BlobUnknown,
    BlobUploadInvalid,
    BlobUploadUnknown,
    DigestInvalid,
    ManifestBlobUnknown,
    ManifestInvalid,
    ManifestUnknown,
    NameInvalid,
    NameUnknown,
    SizeInvalid,
    Unauthorized,
    Denied,
    Unsupported,
    TooManyRequests,
    /// Not in the spec's table; Distribution's code for server-side failures.
    Unknown,
}

impl Code {
    pub fn as_str(self) -> &'static str {
        match self {
            Code::BlobUnknown => "BLOB_UNKNOWN",
            Code::BlobUploadInvalid => "BLOB_UPLOAD_INVALID",
            Code::BlobUploadUnknown => "BLOB_UPLOAD_UNKNOWN",
            Code::DigestInvalid => "DIGEST_INVALID",
            Code::ManifestBlobUnknown => "MANIFEST_BLOB_UNKNOWN",
            Code::ManifestInvalid => "MANIFEST_INVALID",
            Code::ManifestUnknown => "MANIFEST_UNKNOWN",
            Code::NameInvalid => "NAME_INVALID",
            Code::NameUnknown => "NAME_UNKNOWN",
            Code::SizeInvalid => "SIZE_INVALID",
            Code::Unauthorized => "UNAUTHORIZED",
            Code::Denied => "DENIED",
            Code::Unsupported => "UNSUPPORTED",
            Code::TooManyRequests => "TOOMANYREQUESTS",
            Code::Unknown => "UNKNOWN",
        }
    }
}

/// An error response in the OCI envelope.
#[derive(Debug)]
pub struct OciError {
    pub status: StatusCode,
    pub code: Code,
    pub message: String,
    pub detail: Option<Value>,
    /// Extra headers (e.g. `Range` for an out-of-order chunk).
    pub headers: Vec<(header::HeaderName, String)>,
}

impl OciError {
    pub fn new(status: StatusCode, code: Code, message: impl Into<String>) -> OciError {
        OciError {
            status,
            code,
            message: message.into(),
            detail: None,
            headers: vec![],
        }
    }

    pub fn with_detail(mut self, detail: Value) -> OciError {
        self.detail = Some(detail);
        self
    }

    pub fn with_header(mut self, name: header::HeaderName, value: String) -> OciError {
        self.headers.push((name, value));
        self
    }
}

impl IntoResponse for OciError {
    fn into_response(self) -> Response {
        let mut entry = json!({ "code": self.code.as_str(), "message": self.message });
        if let Some(d) = self.detail {
            entry["detail"] = d;
        }
        let body = json!({ "errors": [entry] }).to_string();
        let mut resp = (self.status, body).into_response();
        let h = resp.headers_mut();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        for (name, value) in self.headers {
            if let Ok(v) = HeaderValue::from_str(&value) {
                h.insert(name, v);
            }
        }
        resp
    }
}

/// `Range` header value for an upload holding `size` bytes (Distribution writes `0-0` when empty).
pub fn upload_range(size: u64) -> String {
    format!("0-{}", size.saturating_sub(1))
}

impl From<Error> for OciError {
    fn from(e: Error) -> OciError {
        use StatusCode as S;
        match e {
            Error::NotFound(Missing::Blob) => {
                OciError::new(S::NOT_FOUND, Code::BlobUnknown, "blob unknown to registry")
            }
            // 404 like an unknown blob, so clients that check before pushing upload it again,
            // which repairs it (docs/scrub.md); the message says why.
            Error::NotFound(Missing::QuarantinedBlob) => OciError::new(
                S::NOT_FOUND,
                Code::BlobUnknown,
                "blob failed its integrity check and is quarantined; push it again to repair it",
            ),
            Error::NotFound(Missing::Manifest) => OciError::new(
                S::NOT_FOUND,
                Code::ManifestUnknown,
                "manifest unknown to registry",
            ),
            Error::NotFound(Missing::Repository) => OciError::new(
                S::NOT_FOUND,
                Code::NameUnknown,
                "repository name not known to registry",
            ),
            Error::NotFound(Missing::Upload) => OciError::new(
                S::NOT_FOUND,
                Code::BlobUploadUnknown,
                "blob upload unknown to registry",
            ),
            // Not reachable through /v2/ (trust is managed under /api/v1/), mapped for
            // exhaustiveness.
            Error::NotFound(Missing::TrustedKey) => {
                OciError::new(S::NOT_FOUND, Code::NameUnknown, "trusted key not found")
            }
            Error::NotFound(Missing::Waiver) => {
                OciError::new(S::NOT_FOUND, Code::NameUnknown, "waiver not found")
            }
            Error::Invalid(Invalid::Digest(m)) => {
                OciError::new(S::BAD_REQUEST, Code::DigestInvalid, m)
            }
            Error::Invalid(Invalid::Manifest(m)) => {
                OciError::new(S::BAD_REQUEST, Code::ManifestInvalid, m)
            }
            Error::Invalid(Invalid::ManifestBlobUnknown(d)) => OciError::new(
                S::BAD_REQUEST,
                Code::ManifestBlobUnknown,
                format!("manifest references {d}, which is not in this repository; push it first"),
            )
            .with_detail(json!({ "digest": d.to_string() })),
            Error::Invalid(Invalid::Name(m)) => OciError::new(S::BAD_REQUEST, Code::NameInvalid, m),
            Error::Invalid(Invalid::Size(m)) => OciError::new(S::BAD_REQUEST, Code::SizeInvalid, m),
            Error::Invalid(Invalid::ChunkOutOfOrder { offset }) => OciError::new(
                S::RANGE_NOT_SATISFIABLE,
                Code::BlobUploadInvalid,
                format!("chunk must start at byte {offset}, where the upload ends"),
            )
            .with_header(header::RANGE, upload_range(offset)),
            Error::Invalid(Invalid::Range { size }) => OciError::new(
                S::RANGE_NOT_SATISFIABLE,
                Code::BlobUnknown,
                format!("requested range is not satisfiable for a blob of {size} bytes"),
            )
            .with_header(header::CONTENT_RANGE, format!("bytes */{size}")),
            Error::Invalid(Invalid::Upload(m)) => {
                OciError::new(S::BAD_REQUEST, Code::BlobUploadInvalid, m)
            }
            Error::Invalid(Invalid::Key(m))
            | Error::Invalid(Invalid::Import(m))
            | Error::Invalid(Invalid::Waiver(m)) => {
                OciError::new(S::BAD_REQUEST, Code::Unsupported, m)
            }
            Error::Denied(m) | Error::PolicyViolation(m) => {
                OciError::new(S::FORBIDDEN, Code::Denied, m)
            }
            Error::Conflict(m) => OciError::new(S::CONFLICT, Code::Denied, m),
            Error::TooLarge(m) => OciError::new(S::PAYLOAD_TOO_LARGE, Code::SizeInvalid, m),
            Error::Unsupported(m) => OciError::new(S::METHOD_NOT_ALLOWED, Code::Unsupported, m),
            Error::Gone(m) => OciError::new(S::NOT_FOUND, Code::ManifestUnknown, m),
            Error::Busy(m) => OciError::new(S::TOO_MANY_REQUESTS, Code::TooManyRequests, m)
                .with_header(header::RETRY_AFTER, "1".into()),
            Error::Internal(m) => {
                // Logged once here; clients get generic text.
                error!(error = %m, "internal error");
                OciError::new(
                    S::INTERNAL_SERVER_ERROR,
                    Code::Unknown,
                    "internal server error",
                )
            }
        }
    }
}

impl From<RouteError> for OciError {
    fn from(e: RouteError) -> OciError {
        use StatusCode as S;
        match e {
            RouteError::NoSuchEndpoint => OciError::new(
                S::NOT_FOUND,
                Code::Unsupported,
                "no such endpoint in the OCI distribution API",
            ),
            RouteError::Name(e) => OciError::new(S::BAD_REQUEST, Code::NameInvalid, e.to_string()),
            RouteError::Digest(e) => {
                OciError::new(S::BAD_REQUEST, Code::DigestInvalid, e.to_string())
            }
            RouteError::Reference(e) => {
                OciError::new(S::BAD_REQUEST, Code::ManifestInvalid, e.to_string())
            }
            RouteError::Upload(e) => {
                OciError::new(S::NOT_FOUND, Code::BlobUploadUnknown, e.to_string())
            }
        }
    }
}
