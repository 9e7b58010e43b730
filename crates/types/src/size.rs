//! Byte sizes as people write them: `10GiB`, `500MB`, `4096`. Binary units (KiB, MiB, GiB, TiB)
//! are powers of 1024, decimal ones (KB, MB, GB, TB) powers of 1000; a bare number is bytes.

/// Parses `"10GiB"`, `"1.5 MiB"`, `"500MB"` or `"4096"` into bytes. Case-insensitive units.
pub fn parse_size(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    let unit = unit.trim().to_ascii_lowercase();
    let scale: u64 = match unit.as_str() {
        "" | "b" => 1,
        "k" | "kib" => 1 << 10,
        "m" | "mib" => 1 << 20,
        "g" | "gib" => 1 << 30,
        "t" | "tib" => 1 << 40,
        "kb" => 1_000,
        "mb" => 1_000_000,
        "gb" => 1_000_000_000,
        "tb" => 1_000_000_000_000,
        _ => {
            return Err(format!(
                "{text:?} is not a size: use a number of bytes or a unit such as \"512MiB\", \
                 \"10GiB\" or \"500MB\""
            ))
        }
    };
    let bad =
        || format!("{text:?} is not a size: write bytes as a number, e.g. \"10GiB\" or \"4096\"");
    if number.is_empty() {
        return Err(bad());
    }
    if let Ok(n) = number.parse::<u64>() {
        return n
            .checked_mul(scale)
            .ok_or_else(|| format!("{text:?} is too large"));
    }
    let f: f64 = number.parse().map_err(|_| bad())?;
    let bytes = f * scale as f64;
    if !bytes.is_finite() || bytes < 0.0 || bytes >= u64::MAX as f64 {
        return Err(format!("{text:?} is too large"));
    }
    Ok(bytes.round() as u64)
}

/// `10 GiB`, `512 MiB`, `1.5 KiB`, `100 B`: whole numbers when exact, else one decimal.
pub fn format_size(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut unit = 0;
    let mut scale = 1u64;
    while unit + 1 < UNITS.len() && bytes >= scale << 10 {
        scale <<= 10;
        unit += 1;
    }
    if bytes.is_multiple_of(scale) {
        format!("{} {}", bytes / scale, UNITS[unit])
    } else {
        format!("{:.1} {}", bytes as f64 / scale as f64, UNITS[unit])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_with_binary_and_decimal_units() {
        assert_eq!(parse_size("4096"), Ok(4096));
        assert_eq!(parse_size("10GiB"), Ok(10 << 30));
        assert_eq!(parse_size("10 gib"), Ok(10 << 30));
        assert_eq!(parse_size("512M"), Ok(512 << 20));
        assert_eq!(parse_size("500MB"), Ok(500_000_000));
        assert_eq!(parse_size("1.5KiB"), Ok(1536));
        assert_eq!(parse_size("0"), Ok(0));
        assert!(parse_size("ten GiB").is_err());
        assert!(parse_size("10 parsecs").is_err());
        assert!(parse_size("").is_err());
        assert!(parse_size("99999999999TiB").is_err());
    }

    #[test]
    fn sizes_format_whole_units_exactly() {
        assert_eq!(format_size(10 << 30), "10 GiB");
        assert_eq!(format_size(512 << 20), "512 MiB");
        assert_eq!(format_size(1536), "1.5 KiB");
        assert_eq!(format_size(100), "100 B");
        assert_eq!(format_size(0), "0 B");
    }
}
