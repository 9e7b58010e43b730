//! What an S3 upload carries from one request to the next, serialised as JSON into
//! [`UploadCursor::state`], and the part sizes it is cut into.

use std::io;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::{Result, StorageError, UploadCursor};

/// S3's limit on parts per multipart upload. The last one is kept for the tail.
pub(super) const MAX_PARTS: usize = 10_000;
/// Real S3 rejects parts under 5 MiB (except the last); Garage does not check, so we must.
pub(super) const PART_BASE: u64 = 8 << 20;
const PARTS_PER_STEP: usize = 2_000;

/// Size of part `idx` (0-based): 8 MiB for the first 2,000 parts, doubling every 2,000 after
/// (up to 128 MiB), so a blob of up to ~484 GiB fits in S3's 10,000 parts while an ordinary
/// upload buffers no more than 8 MiB.
pub(super) fn part_size(idx: usize) -> u64 {
    PART_BASE << (idx / PARTS_PER_STEP).min(4)
}

/// Bytes held by the first `count` parts.
pub(super) fn parts_len(count: usize) -> u64 {
    (0..count).map(part_size).sum()
}

/// A random name component, so that objects are written once and never overwritten.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Nonce(pub u128);

impl Nonce {
    pub(super) fn random() -> Nonce {
        Nonce(uuid::Uuid::new_v4().as_u128())
    }
}

impl Serialize for Nonce {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_str(&format!("{:032x}", self.0))
    }
}

impl<'de> Deserialize<'de> for Nonce {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Nonce, D::Error> {
        let s = String::deserialize(d)?;
        if s.len() != 32 || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(serde::de::Error::custom("a nonce is 32 hex digits"));
        }
        u128::from_str_radix(&s, 16)
            .map(Nonce)
            .map_err(serde::de::Error::custom)
    }
}

/// An open multipart upload and the parts it holds so far, in order; every part `i` holds
/// exactly [`part_size`]`(i)` bytes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct Multipart {
    /// Names the `multipart-` record and the `staged-` object it completes into.
    pub nonce: Nonce,
    pub id: String,
    /// The ETag of each part.
    pub parts: Vec<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct UploadState {
    /// The object holding the bytes after the last part; `None` when there are none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tail: Option<Nonce>,
    /// The tail of the cursor this one was made from. The next append deletes it: by then the
    /// caller has recorded this cursor, so nothing names it any more.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prev_tail: Option<Nonce>,
    /// Created with the first full part; small uploads never have one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub multipart: Option<Multipart>,
}

impl UploadState {
    /// Reads and checks the state of `cursor` (an empty state is a fresh upload).
    pub(super) fn decode(cursor: &UploadCursor) -> Result<UploadState> {
        let state: UploadState = if cursor.state.is_empty() {
            UploadState::default()
        } else {
            serde_json::from_str(&cursor.state).map_err(|e| corrupt(format!("{e}")))?
        };
        let parts = state.part_count();
        if parts >= MAX_PARTS {
            return Err(corrupt(format!("{parts} parts")));
        }
        let in_parts = parts_len(parts);
        let Some(tail) = cursor.size.checked_sub(in_parts) else {
            return Err(corrupt(format!(
                "{} bytes but {in_parts} in parts",
                cursor.size
            )));
        };
        if tail >= part_size(parts) || (tail > 0) != state.tail.is_some() {
            return Err(corrupt(format!(
                "a tail of {tail} bytes after {parts} parts"
            )));
        }
        Ok(state)
    }

    pub(super) fn encode(&self, size: u64) -> UploadCursor {
        let state = serde_json::to_string(self).expect("upload state serialises");
        UploadCursor { size, state }
    }

    pub(super) fn part_count(&self) -> usize {
        self.multipart.as_ref().map_or(0, |m| m.parts.len())
    }

    /// Bytes in the tail object, given the upload's size.
    pub(super) fn tail_len(&self, size: u64) -> u64 {
        size - parts_len(self.part_count())
    }
}

fn corrupt(what: String) -> StorageError {
    StorageError::Io(io::Error::new(
        io::ErrorKind::InvalidData,
        format!("the upload cursor does not describe an S3 upload: {what}"),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn part_sizes_stay_above_the_s3_minimum_and_fit_large_blobs() {
        assert_eq!(part_size(0), 8 << 20);
        assert_eq!(part_size(1_999), 8 << 20);
        assert_eq!(part_size(2_000), 16 << 20);
        assert_eq!(part_size(9_999), 128 << 20);
        assert!(parts_len(MAX_PARTS - 1) > 480 << 30);
        assert_eq!(parts_len(3), 24 << 20);
    }

    #[test]
    fn state_round_trips_and_inconsistent_cursors_are_refused() {
        let state = UploadState {
            tail: Some(Nonce(7)),
            prev_tail: None,
            multipart: Some(Multipart {
                nonce: Nonce(u128::MAX),
                id: "abc".into(),
                parts: vec!["\"e1\"".into()],
            }),
        };
        let cursor = state.encode(PART_BASE + 3);
        assert_eq!(UploadState::decode(&cursor).unwrap(), state);
        assert_eq!(state.tail_len(cursor.size), 3);
        assert_eq!(
            UploadState::decode(&UploadCursor::default()).unwrap(),
            UploadState::default()
        );
        for size in [PART_BASE - 1, PART_BASE, 2 * PART_BASE] {
            assert!(
                UploadState::decode(&state.encode(size)).is_err(),
                "size {size}"
            );
        }
        let bad = UploadCursor {
            size: 0,
            state: r#"{"tail":"../x"}"#.into(),
        };
        assert!(UploadState::decode(&bad).is_err());
    }
}
