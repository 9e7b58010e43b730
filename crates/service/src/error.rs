use bonded_meta::MetaError;
use bonded_storage::StorageError;
use bonded_types::Digest;

/// What is missing, for `Error::NotFound`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Missing {
    Repository,
    Blob,
    Manifest,
    Upload,
    /// A key in a namespace's trust store.
    TrustedKey,
    /// A blob whose stored bytes failed scrub's integrity check: quarantined until pushed again.
    QuarantinedBlob,
    /// A vulnerability waiver.
    Waiver,
}

/// Why a request is invalid, for `Error::Invalid`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Invalid {
    /// A digest was malformed, or content did not match it.
    Digest(String),
    /// A manifest could not be parsed or broke a rule.
    Manifest(String),
    /// A manifest references a blob or manifest the repository does not have.
    ManifestBlobUnknown(Digest),
    /// A repository name, tag or reference was malformed.
    Name(String),
    /// A declared length did not match the content.
    Size(String),
    /// A chunk did not start where the upload ends; `offset` is where it does.
    ChunkOutOfOrder { offset: u64 },
    /// A request range could not be satisfied.
    Range { size: u64 },
    /// Any other malformed upload request.
    Upload(String),
    /// A public key, key set or validity window that cannot be trusted as given.
    Key(String),
    /// A vulnerability database export that cannot be read as given.
    Import(String),
    /// A vulnerability waiver that cannot be accepted as given.
    Waiver(String),
}

/// The service's decisions. The HTTP edge maps each variant to a protocol error.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0:?} not found")]
    NotFound(Missing),
    #[error("invalid request: {0:?}")]
    Invalid(Invalid),
    #[error("{0}")]
    Denied(String),
    /// A supply-chain policy refuses the request; the message names the rule.
    #[error("{0}")]
    PolicyViolation(String),
    /// The request conflicts with what is stored (e.g. a key already in its key set, or
    /// restoring a tag that exists).
    #[error("conflict: {0}")]
    Conflict(String),
    #[error("content too large: {0}")]
    TooLarge(String),
    #[error("unsupported: {0}")]
    Unsupported(String),
    /// Existed once but can no longer be had (e.g. a deletion past its undelete window).
    #[error("{0}")]
    Gone(String),
    /// Try again shortly (e.g. garbage collection is deleting the blob being published).
    #[error("busy: {0}")]
    Busy(String),
    #[error("internal error: {0}")]
    Internal(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl From<StorageError> for Error {
    fn from(e: StorageError) -> Self {
        match e {
            StorageError::NotFound => Error::NotFound(Missing::Blob),
            StorageError::OffsetMismatch { actual, .. } => {
                Error::Invalid(Invalid::ChunkOutOfOrder { offset: actual })
            }
            StorageError::BodyInterrupted(e) => {
                Error::Invalid(Invalid::Upload(format!("request body ended early: {e}")))
            }
            StorageError::Io(e) => Error::Internal(format!("blob storage: {e}")),
        }
    }
}

impl From<MetaError> for Error {
    fn from(e: MetaError) -> Self {
        match e {
            MetaError::NotFound => Error::NotFound(Missing::Manifest),
            MetaError::MissingReference(d) => Error::Invalid(Invalid::ManifestBlobUnknown(d)),
            MetaError::TagImmutable(t) => Error::Denied(format!(
                "tag {t} is immutable and already points at another manifest"
            )),
            MetaError::Conflict(m) => Error::Invalid(Invalid::Upload(format!("conflict: {m}"))),
            MetaError::Corrupt(m) => Error::Internal(format!("metadata corrupt: {m}")),
            MetaError::Db(e) => Error::Internal(format!("metadata database: {e}")),
            MetaError::Migrate(e) => Error::Internal(format!("metadata migration: {e}")),
        }
    }
}
