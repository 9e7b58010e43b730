/// An inclusive byte range `start..=end`, as HTTP and the OCI spec write them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ByteRange {
    pub start: u64,
    pub end: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RangeError {
    #[error("range {0:?} is not of the form <start>-<end> with start <= end")]
    Malformed(String),
    #[error("range {0:?} is not satisfiable for a blob of {1} bytes")]
    Unsatisfiable(String, u64),
}

impl ByteRange {
    pub fn len(&self) -> u64 {
        self.end - self.start + 1
    }

    pub fn is_empty(&self) -> bool {
        false
    }

    /// Parses a `Content-Range` value of a chunked upload: `<start>-<end>` (the spec's form), also
    /// accepting the RFC 9110 form `bytes <start>-<end>/<size|*>`.
    pub fn parse_content_range(value: &str) -> Result<ByteRange, RangeError> {
        let v = value.trim();
        let v = v.strip_prefix("bytes ").unwrap_or(v);
        let v = v.split('/').next().unwrap_or("");
        Self::parse_pair(v).ok_or_else(|| RangeError::Malformed(value.to_string()))
    }

    fn parse_pair(v: &str) -> Option<ByteRange> {
        let (a, b) = v.split_once('-')?;
        let digits = |s: &str| !s.is_empty() && s.bytes().all(|c| c.is_ascii_digit());
        if !digits(a) || !digits(b) {
            return None;
        }
        let (start, end) = (a.parse().ok()?, b.parse().ok()?);
        (start <= end).then_some(ByteRange { start, end })
    }

    /// Parses a request `Range` header (`bytes=a-b`, `bytes=a-`, `bytes=-n`) against a blob of
    /// `size` bytes. Multiple ranges are not supported and are refused as unsatisfiable.
    pub fn parse_request_range(value: &str, size: u64) -> Result<ByteRange, RangeError> {
        let bad = || RangeError::Malformed(value.to_string());
        let spec = value.trim().strip_prefix("bytes=").ok_or_else(bad)?;
        if spec.contains(',') {
            return Err(RangeError::Unsatisfiable(value.to_string(), size));
        }
        let (a, b) = spec.split_once('-').ok_or_else(bad)?;
        let num = |s: &str| -> Result<u64, RangeError> {
            if s.is_empty() || !s.bytes().all(|c| c.is_ascii_digit()) {
                return Err(bad());
            }
            s.parse().map_err(|_| bad())
        };
        let unsat = || RangeError::Unsatisfiable(value.to_string(), size);
        let range = if a.is_empty() {
            let n = num(b)?;
            if n == 0 || size == 0 {
                return Err(unsat());
            }
            ByteRange {
                start: size.saturating_sub(n),
                end: size - 1,
            }
        } else {
            let start = num(a)?;
            let end = if b.is_empty() {
                size.saturating_sub(1)
            } else {
                num(b)?.min(size.saturating_sub(1))
            };
            if !b.is_empty() && num(b)? < start {
                return Err(bad());
            }
            if start >= size {
                return Err(unsat());
            }
            ByteRange { start, end }
        };
        Ok(range)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_range_forms() {
        assert_eq!(
            ByteRange::parse_content_range("0-99").unwrap(),
            ByteRange { start: 0, end: 99 }
        );
        assert_eq!(
            ByteRange::parse_content_range("bytes 100-199/*").unwrap(),
            ByteRange {
                start: 100,
                end: 199
            }
        );
        for bad in ["", "-", "5-1", "a-b", "1-", "-1", "1 - 2"] {
            assert!(ByteRange::parse_content_range(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn request_ranges_clamp_and_refuse() {
        let r = |v| ByteRange::parse_request_range(v, 100);
        assert_eq!(r("bytes=0-9").unwrap(), ByteRange { start: 0, end: 9 });
        assert_eq!(r("bytes=90-").unwrap(), ByteRange { start: 90, end: 99 });
        assert_eq!(r("bytes=-10").unwrap(), ByteRange { start: 90, end: 99 });
        assert_eq!(r("bytes=50-500").unwrap(), ByteRange { start: 50, end: 99 });
        assert!(matches!(
            r("bytes=100-"),
            Err(RangeError::Unsatisfiable(..))
        ));
        assert!(matches!(
            r("bytes=0-1,3-4"),
            Err(RangeError::Unsatisfiable(..))
        ));
        assert!(matches!(r("items=0-1"), Err(RangeError::Malformed(..))));
        assert!(matches!(r("bytes=9-1"), Err(RangeError::Malformed(..))));
    }
}
