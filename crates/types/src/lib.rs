//! bonded's vocabulary, parsed once at the edge and passed as types afterwards.
//!
//! Owns: [`Digest`], [`RepoName`], [`Tag`], [`Reference`], [`MediaType`], [`UploadId`], byte
//! ranges and human byte sizes. Every other crate (server and CLI alike) may depend on it; it depends on nothing that does
//! I/O — no tokio, axum or sqlx (hashing is pure computation) — so a value that type-checks here is valid everywhere.

mod digest;
mod hasher;
mod media_type;
mod name;
mod range;
mod size;
mod upload;

pub use digest::{Algorithm, Digest, DigestError};
pub use hasher::Hasher;
pub use media_type::{media_types, MediaType, MediaTypeError};
pub use name::{NameError, Reference, RepoName, Tag, MAX_NAME_LEN, MAX_TAG_LEN};
pub use range::{ByteRange, RangeError};
pub use size::{format_size, parse_size};
pub use upload::{UploadId, UploadIdError};
