//! Go binaries' embedded build information (Go 1.18+ inline format): the toolchain version and
//! the module list (`mod`, `dep`, `=>` replacement lines) that `go version -m` prints.
//!
//! Layout: a 32-byte header starting with `\xff Go buildinf:`, pointer size and flags (bit 2:
//! strings inline), then two uvarint-length-prefixed strings: the Go version and the module info,
//! the latter framed by 16-byte sentinels. Older, pointer-based binaries are not read.

const MAGIC: &[u8] = b"\xff Go buildinf:";

/// What a Go binary says it was built from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GoBuildInfo {
    pub go_version: String,
    /// (module path, version), main module first when it has a version; replacements applied.
    pub modules: Vec<(String, String)>,
}

fn uvarint(data: &[u8], mut p: usize) -> Option<(usize, usize)> {
    let mut x: usize = 0;
    let mut shift = 0;
    loop {
        let b = *data.get(p)?;
        p += 1;
        x |= ((b & 0x7f) as usize).checked_shl(shift)?;
        if b < 0x80 {
            return Some((x, p));
        }
        shift += 7;
        if shift > 63 {
            return None;
        }
    }
}

fn string_at(data: &[u8], p: usize) -> Option<(&[u8], usize)> {
    let (n, p) = uvarint(data, p)?;
    let s = data.get(p..p.checked_add(n)?)?;
    Some((s, p + n))
}

/// Finds and parses the build info in a binary's bytes.
pub fn parse(data: &[u8]) -> Option<GoBuildInfo> {
    // The header is 16-byte aligned.
    let mut start = 0;
    let at = loop {
        let i = start + find(&data[start..], MAGIC)?;
        if i % 16 == 0 {
            break i;
        }
        start = i + 1;
    };
    let flags = *data.get(at + 15)?;
    if flags & 2 == 0 {
        return None;
    }
    let (version, p) = string_at(data, at + 32)?;
    let (modinfo, _) = string_at(data, p)?;
    let modinfo = if modinfo.len() >= 33 {
        &modinfo[16..modinfo.len() - 16]
    } else {
        modinfo
    };
    let text = String::from_utf8_lossy(modinfo);
    let mut modules: Vec<(String, String)> = Vec::new();
    for line in text.lines() {
        let f: Vec<&str> = line.split('\t').collect();
        match f.as_slice() {
            ["mod", path, version, ..] | ["dep", path, version, ..] => {
                modules.push((path.to_string(), version.to_string()));
            }
            ["=>", path, version, ..] => {
                if let Some(last) = modules.last_mut() {
                    *last = (path.to_string(), version.to_string());
                }
            }
            _ => {}
        }
    }
    Some(GoBuildInfo {
        go_version: String::from_utf8_lossy(version).to_string(),
        modules,
    })
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn varint(n: usize) -> Vec<u8> {
        let mut out = Vec::new();
        let mut n = n;
        while n >= 0x80 {
            out.push((n as u8) | 0x80);
            n >>= 7;
        }
        out.push(n as u8);
        out
    }

    #[test]
    fn reads_version_modules_and_replacements() {
        let info = "path\texample.com/app\nmod\texample.com/app\tv1.2.3\th1:x=\ndep\tgolang.org/x/text\tv0.3.7\th1:y=\ndep\texample.com/old\tv1.0.0\n=>\texample.com/new\tv1.1.0\th1:z=\nbuild\tGOOS=linux\n";
        let mut modinfo = vec![0u8; 16];
        modinfo.extend_from_slice(info.as_bytes());
        modinfo.extend_from_slice(&[0u8; 16]);
        let mut bin = vec![0u8; 48]; // some bytes before the aligned header
        bin.extend_from_slice(MAGIC);
        bin.extend_from_slice(&[8, 2]);
        bin.resize(48 + 32, 0);
        bin.extend(varint(8));
        bin.extend_from_slice(b"go1.22.1");
        bin.extend(varint(modinfo.len()));
        bin.extend_from_slice(&modinfo);
        let got = parse(&bin).unwrap();
        assert_eq!(got.go_version, "go1.22.1");
        assert_eq!(
            got.modules,
            [
                ("example.com/app".to_string(), "v1.2.3".to_string()),
                ("golang.org/x/text".to_string(), "v0.3.7".to_string()),
                ("example.com/new".to_string(), "v1.1.0".to_string()),
            ]
        );
        assert_eq!(parse(b"no build info here"), None);
    }
}
