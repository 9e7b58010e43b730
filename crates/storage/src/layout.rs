//! The one place object keys are built. Keys are relative, `/`-separated, and made only from
//! validated types ([`Digest`], [`UploadId`]), so no user input reaches a path unchecked.

use bonded_types::{Digest, UploadId};

pub const BLOBS: &str = "blobs";
pub const UPLOADS: &str = "uploads";
pub const QUARANTINE: &str = "quarantine";

/// `blobs/sha256/ab/ab12…`: a two-character fan-out keeps directories small.
pub fn blob_key(digest: &Digest) -> String {
    let hex = digest.hex();
    format!("{BLOBS}/{}/{}/{hex}", digest.algorithm(), &hex[..2])
}

/// `quarantine/sha256/ab12…/<unix ms>`: where scrub moves bytes that no longer hash to their
/// digest. Never under `blobs/`, so nothing serves or collects them; one per quarantine, so
/// earlier evidence is never overwritten.
pub fn quarantine_key(digest: &Digest, at_ms: i64) -> String {
    format!(
        "{QUARANTINE}/{}/{}/{at_ms}",
        digest.algorithm(),
        digest.hex()
    )
}

/// `uploads/<id>`: the staging file (filesystem), or the folder of an upload's staging objects
/// (object storage).
pub fn upload_key(id: &UploadId) -> String {
    format!("{UPLOADS}/{id}")
}

/// What an object-storage upload keeps under `uploads/<id>/`. Each name carries a random nonce
/// so an object, once written, is never overwritten: a cursor naming it stays valid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UploadObject {
    /// `tail-<nonce>`: bytes received after the last full part.
    Tail(u128),
    /// `multipart-<nonce>`: holds the id of an open multipart upload, so it can be aborted even
    /// when the cursor is lost.
    Multipart(u128),
    /// `staged-<nonce>`: the completed multipart upload recorded by `Multipart(nonce)`.
    Staged(u128),
}

/// `uploads/<id>/<kind>-<nonce>`
pub fn upload_object_key(id: &UploadId, object: UploadObject) -> String {
    let (kind, nonce) = match object {
        UploadObject::Tail(n) => ("tail", n),
        UploadObject::Multipart(n) => ("multipart", n),
        UploadObject::Staged(n) => ("staged", n),
    };
    format!("{UPLOADS}/{id}/{kind}-{nonce:032x}")
}

/// The inverse of [`upload_object_key`]: which upload a key belongs to, and what it is if it is
/// one of ours (`None` for anything else under the upload's folder).
pub fn parse_upload_object_key(key: &str) -> Option<(UploadId, Option<UploadObject>)> {
    let (id, name) = key
        .strip_prefix(UPLOADS)?
        .strip_prefix('/')?
        .split_once('/')?;
    let id = id.parse().ok()?;
    let object = name.split_once('-').and_then(|(kind, nonce)| {
        if nonce.len() != 32 || !nonce.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        let n = u128::from_str_radix(nonce, 16).ok()?;
        match kind {
            "tail" => Some(UploadObject::Tail(n)),
            "multipart" => Some(UploadObject::Multipart(n)),
            "staged" => Some(UploadObject::Staged(n)),
            _ => None,
        }
    });
    Some((id, object))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_content_addressed() {
        let d: Digest = format!("sha256:ab{}", "0".repeat(62)).parse().unwrap();
        assert_eq!(
            blob_key(&d),
            format!("blobs/sha256/ab/ab{}", "0".repeat(62))
        );
        assert_eq!(
            quarantine_key(&d, 42),
            format!("quarantine/sha256/ab{}/42", "0".repeat(62))
        );
        assert_eq!(
            upload_key(&UploadId::from_random(1)),
            format!("uploads/{:032x}", 1)
        );
    }

    #[test]
    fn upload_object_keys_round_trip() {
        let id = UploadId::from_random(5);
        for object in [
            UploadObject::Tail(0),
            UploadObject::Multipart(u128::MAX),
            UploadObject::Staged(0xabc),
        ] {
            let key = upload_object_key(&id, object);
            assert!(key.starts_with(&format!("{}/", upload_key(&id))));
            assert_eq!(
                parse_upload_object_key(&key),
                Some((id.clone(), Some(object)))
            );
        }
        let stray = format!("{}/notes.txt", upload_key(&id));
        assert_eq!(parse_upload_object_key(&stray), Some((id, None)));
        assert_eq!(parse_upload_object_key("blobs/sha256/ab/x"), None);
        assert_eq!(parse_upload_object_key("uploads/not-an-id/tail-0"), None);
    }
}
