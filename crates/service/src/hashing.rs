//! Hashing a stream of staged bytes.

use bonded_types::{Algorithm, Digest, Hasher};
use futures::StreamExt;

use crate::{ByteStream, Error, Result};

pub(crate) async fn digest_stream(alg: Algorithm, mut s: ByteStream) -> Result<Digest> {
    let mut h = Hasher::new(alg);
    while let Some(chunk) = s.next().await {
        let chunk = chunk.map_err(|e| Error::Internal(format!("reading staged upload: {e}")))?;
        h.update(&chunk);
    }
    Ok(h.finish())
}
