//! The one place object keys are built. Keys are relative, `/`-separated, and made only from
//! validated types ([`Digest`], [`UploadId`]), so no user input reaches a path unchecked.

use bonded_types::{Digest, UploadId};

pub const BLOBS: &str = "blobs";
pub const UPLOADS: &str = "uploads";

/// `blobs/sha256/ab/ab12…`: a two-character fan-out keeps directories small.
pub fn blob_key(digest: &Digest) -> String {
    let hex = digest.hex();
    format!("{BLOBS}/{}/{}/{hex}", digest.algorithm(), &hex[..2])
}

/// `uploads/<id>`
pub fn upload_key(id: &UploadId) -> String {
    format!("{UPLOADS}/{id}")
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
            upload_key(&UploadId::from_random(1)),
            format!("uploads/{:032x}", 1)
        );
    }
}
