//! SBOM generation: CycloneDX 1.5 JSON from the files of a root filesystem, image layers,
//! archives or directories. Recognised inventories (paths matched by suffix, so a layer's or
//! archive's leading directory does not matter):
//! - Debian/Ubuntu dpkg: `var/lib/dpkg/status` and distroless `var/lib/dpkg/status.d/*`
//!   (installed packages; `pkg:deb/<os-release ID>/<name>@<version>?arch=`);
//! - Alpine apk: `lib/apk/db/installed` (`pkg:apk/alpine/<name>@<version>?arch=`);
//! - Python: `*.dist-info/METADATA`, `*.egg-info/PKG-INFO` (`pkg:pypi/<PEP 503 name>@<version>`);
//! - npm: `package-lock.json` (lockfile v1-v3) and `node_modules/**/package.json`
//!   (`pkg:npm/<name>@<version>`);
//! - Rust: `Cargo.lock` packages from crates.io (`pkg:cargo/<name>@<version>`);
//! - Go: executables' embedded build info (Go 1.18+): the modules (`pkg:golang/<module>@<version>`)
//!   and the toolchain (`pkg:golang/stdlib@<go version>`), see [`crate::gobuild`].
//!
//! Layers are scanned in order and a later dpkg/apk database replaces an earlier one (as the
//! union filesystem would); whiteouts of other files are not applied.

use std::collections::BTreeMap;
use std::io::Read;

use serde_json::{json, Value};

/// Largest inventory file read (a dpkg status of a full desktop is a few MiB).
pub const MAX_INVENTORY_BYTES: u64 = 64 << 20;
/// Largest executable searched for Go build info.
pub const MAX_BINARY_BYTES: u64 = 256 << 20;

/// Whether a file with these mode bits and size may be a Go binary worth reading.
pub fn maybe_binary(mode: u32, size: u64) -> bool {
    mode & 0o111 != 0 && (4096..=MAX_BINARY_BYTES).contains(&size)
}

#[derive(Debug, thiserror::Error)]
#[error("reading archive: {0}")]
pub struct ArchiveError(#[from] std::io::Error);

/// Scans a tar archive, gzip-compressed or not (detected from its first bytes), reading only the
/// inventories [`wanted`] names.
pub fn scan_archive(mut reader: impl Read, scanner: &mut Scanner) -> Result<(), ArchiveError> {
    let mut magic = [0u8; 2];
    let n = read_full(&mut reader, &mut magic)?;
    let head = std::io::Cursor::new(magic[..n].to_vec());
    let chained = head.chain(reader);
    if n == 2 && magic == [0x1f, 0x8b] {
        scan_tar(flate2::read::MultiGzDecoder::new(chained), scanner)
    } else {
        scan_tar(chained, scanner)
    }
}

fn read_full(r: &mut impl Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..])? {
            0 => break,
            k => n += k,
        }
    }
    Ok(n)
}

fn scan_tar(reader: impl Read, scanner: &mut Scanner) -> Result<(), ArchiveError> {
    let mut archive = tar::Archive::new(reader);
    for entry in archive.entries()? {
        let mut entry = entry?;
        if !entry.header().entry_type().is_file() {
            continue;
        }
        let path = entry.path()?.to_string_lossy().to_string();
        let mode = entry.header().mode().unwrap_or(0);
        if wanted(&path) && entry.size() <= MAX_INVENTORY_BYTES {
            let mut content = Vec::with_capacity(entry.size() as usize);
            entry.read_to_end(&mut content)?;
            scanner.file(&path, &content);
        } else if maybe_binary(mode, entry.size()) {
            let mut content = Vec::with_capacity(entry.size() as usize);
            entry.read_to_end(&mut content)?;
            scanner.binary(&path, &content);
        }
    }
    Ok(())
}

/// One package found.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Component {
    pub purl: String,
    pub name: String,
    pub version: String,
    /// Ecosystem: deb, apk, pypi, npm, cargo.
    pub ecosystem: &'static str,
    /// Where it was found.
    pub found_in: String,
}

/// Accumulates components from files, then renders CycloneDX.
#[derive(Debug, Default)]
pub struct Scanner {
    /// OS package databases, by database path: a later layer's copy replaces an earlier one.
    os: BTreeMap<String, Vec<(String, String, String)>>,
    os_kind: BTreeMap<String, &'static str>,
    distro: Option<String>,
    other: BTreeMap<String, Component>,
}

fn ends(path: &str, suffix: &str) -> bool {
    path == suffix || path.ends_with(&format!("/{suffix}"))
}

/// Whether `path` (inside a filesystem or archive) holds an inventory worth reading.
pub fn wanted(path: &str) -> bool {
    let p = path.trim_start_matches("./");
    ends(p, "var/lib/dpkg/status")
        || p.contains("var/lib/dpkg/status.d/")
        || ends(p, "lib/apk/db/installed")
        || ends(p, "etc/os-release")
        || ends(p, "usr/lib/os-release")
        || (p.ends_with("/METADATA") && p.contains(".dist-info/"))
        || (p.ends_with("/PKG-INFO") && p.contains(".egg-info/"))
        || p.ends_with(".egg-info") // a single-file egg-info (Debian's python3 packages)
        || ends(p, "package-lock.json")
        || (p.ends_with("/package.json") && p.contains("node_modules/"))
        || ends(p, "Cargo.lock")
}

/// PEP 503 normalised project name.
fn pep503(name: &str) -> String {
    let mut out = String::new();
    let mut sep = false;
    for c in name.chars() {
        if matches!(c, '-' | '_' | '.') {
            sep = true;
        } else {
            if sep && !out.is_empty() {
                out.push('-');
            }
            sep = false;
            out.extend(c.to_lowercase());
        }
    }
    out
}

/// purl percent-encoding for a version or name segment.
fn enc(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// RFC 822-style stanzas (dpkg status), `Key: value` with continuation lines.
fn stanzas(text: &str) -> Vec<BTreeMap<String, String>> {
    let mut out = Vec::new();
    let mut cur = BTreeMap::new();
    for line in text.lines() {
        if line.trim().is_empty() {
            if !cur.is_empty() {
                out.push(std::mem::take(&mut cur));
            }
            continue;
        }
        if line.starts_with(' ') || line.starts_with('\t') {
            continue; // continuation (descriptions, conffiles): not needed
        }
        if let Some((k, v)) = line.split_once(':') {
            cur.insert(k.trim().to_string(), v.trim().to_string());
        }
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

fn email_headers(text: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for line in text.lines() {
        if line.is_empty() {
            break; // the body (long description) follows
        }
        if let Some((k, v)) = line.split_once(':') {
            out.entry(k.trim().to_string())
                .or_insert_with(|| v.trim().to_string());
        }
    }
    out
}

impl Scanner {
    pub fn new() -> Scanner {
        Scanner::default()
    }

    fn add(&mut self, c: Component) {
        self.other.entry(c.purl.clone()).or_insert(c);
    }

    /// Reads one file. Unparsable inventories are skipped: generation reports what it can read.
    pub fn file(&mut self, path: &str, content: &[u8]) {
        let path = path.trim_start_matches("./").to_string();
        let text = String::from_utf8_lossy(content);
        if ends(&path, "etc/os-release") || ends(&path, "usr/lib/os-release") {
            for line in text.lines() {
                if let Some(id) = line.strip_prefix("ID=") {
                    self.distro = Some(id.trim_matches('"').to_string());
                }
            }
        } else if ends(&path, "var/lib/dpkg/status") || path.contains("var/lib/dpkg/status.d/") {
            let pkgs = stanzas(&text)
                .into_iter()
                .filter(|s| {
                    // status.d files have no Status field; they are installed by definition.
                    s.get("Status").is_none_or(|st| st.ends_with(" installed"))
                })
                .filter_map(|s| {
                    Some((
                        s.get("Package")?.clone(),
                        s.get("Version")?.clone(),
                        s.get("Architecture").cloned().unwrap_or_default(),
                    ))
                })
                .collect();
            self.os.insert(path.clone(), pkgs);
            self.os_kind.insert(path, "deb");
        } else if ends(&path, "lib/apk/db/installed") {
            let mut pkgs = Vec::new();
            for block in text.split("\n\n") {
                let mut name = None;
                let mut version = None;
                let mut arch = String::new();
                for line in block.lines() {
                    if let Some(v) = line.strip_prefix("P:") {
                        name = Some(v.to_string());
                    } else if let Some(v) = line.strip_prefix("V:") {
                        version = Some(v.to_string());
                    } else if let Some(v) = line.strip_prefix("A:") {
                        arch = v.to_string();
                    }
                }
                if let (Some(n), Some(v)) = (name, version) {
                    pkgs.push((n, v, arch));
                }
            }
            self.os.insert(path.clone(), pkgs);
            self.os_kind.insert(path, "apk");
        } else if path.ends_with("/METADATA")
            || path.ends_with("/PKG-INFO")
            || path.ends_with(".egg-info")
        {
            let h = email_headers(&text);
            if let (Some(n), Some(v)) = (h.get("Name"), h.get("Version")) {
                // The name as the project spells it; the purl normalised (PEP 503), as the purl
                // spec and cyclonedx-bom do.
                self.add(Component {
                    purl: format!("pkg:pypi/{}@{}", enc(&pep503(n)), enc(v)),
                    name: n.clone(),
                    version: v.clone(),
                    ecosystem: "pypi",
                    found_in: path,
                });
            }
        } else if ends(&path, "package-lock.json") {
            if let Ok(v) = serde_json::from_slice::<Value>(content) {
                self.npm_lock(&v, &path);
            }
        } else if path.ends_with("/package.json") {
            if let Ok(v) = serde_json::from_slice::<Value>(content) {
                if let (Some(n), Some(ver)) = (v["name"].as_str(), v["version"].as_str()) {
                    self.npm(n, ver, &path);
                }
            }
        } else if ends(&path, "Cargo.lock") {
            if let Ok(lock) = text.parse::<toml::Table>() {
                for p in lock
                    .get("package")
                    .and_then(|p| p.as_array())
                    .into_iter()
                    .flatten()
                {
                    let registry = p
                        .get("source")
                        .and_then(|s| s.as_str())
                        .is_some_and(|s| s.contains("crates.io-index"));
                    if let (true, Some(n), Some(v)) = (
                        registry,
                        p.get("name").and_then(|n| n.as_str()),
                        p.get("version").and_then(|v| v.as_str()),
                    ) {
                        self.add(Component {
                            purl: format!("pkg:cargo/{}@{}", enc(n), enc(v)),
                            name: n.to_string(),
                            version: v.to_string(),
                            ecosystem: "cargo",
                            found_in: path.clone(),
                        });
                    }
                }
            }
        }
    }

    /// Reads a possible Go executable's build info; anything else is ignored.
    pub fn binary(&mut self, path: &str, content: &[u8]) {
        if !content.starts_with(b"\x7fELF")
            && !content.starts_with(b"MZ")
            && !content.starts_with(&[0xcf, 0xfa, 0xed, 0xfe])
        {
            return;
        }
        let Some(info) = crate::gobuild::parse(content) else {
            return;
        };
        let path = path.trim_start_matches("./").to_string();
        let stdlib = info.go_version.trim_start_matches("go").to_string();
        let mut found = vec![("stdlib".to_string(), stdlib)];
        found.extend(info.modules.iter().cloned());
        for (module, version) in found {
            if version.is_empty() || version == "(devel)" {
                continue;
            }
            let segments: Vec<String> = module.split('/').map(enc).collect();
            self.add(Component {
                purl: format!("pkg:golang/{}@{}", segments.join("/"), enc(&version)),
                name: module,
                version,
                ecosystem: "golang",
                found_in: path.clone(),
            });
        }
    }

    fn npm(&mut self, name: &str, version: &str, path: &str) {
        let purl_name = match name.strip_prefix('@').and_then(|n| n.split_once('/')) {
            Some((scope, n)) => format!("%40{}/{}", enc(scope), enc(n)),
            None => enc(name),
        };
        self.add(Component {
            purl: format!("pkg:npm/{purl_name}@{}", enc(version)),
            name: name.to_string(),
            version: version.to_string(),
            ecosystem: "npm",
            found_in: path.to_string(),
        });
    }

    fn npm_lock(&mut self, v: &Value, path: &str) {
        if let Some(pkgs) = v.get("packages").and_then(Value::as_object) {
            for (key, p) in pkgs {
                // "" is the root project; links have no version of their own.
                let Some(idx) = key.rfind("node_modules/") else {
                    continue;
                };
                let name = p["name"]
                    .as_str()
                    .unwrap_or(&key[idx + "node_modules/".len()..]);
                if let Some(ver) = p["version"].as_str() {
                    self.npm(name, ver, path);
                }
            }
        } else if let Some(deps) = v.get("dependencies").and_then(Value::as_object) {
            // lockfile v1: nested dependencies.
            let mut stack: Vec<(&String, &Value)> = deps.iter().collect();
            while let Some((name, d)) = stack.pop() {
                if let Some(ver) = d["version"].as_str() {
                    self.npm(name, ver, path);
                }
                if let Some(sub) = d.get("dependencies").and_then(Value::as_object) {
                    stack.extend(sub.iter());
                }
            }
        }
    }

    /// Every component found, sorted by purl.
    pub fn components(&self) -> Vec<Component> {
        let distro = self.distro.clone().unwrap_or_else(|| "debian".into());
        let mut all: BTreeMap<String, Component> = self.other.clone();
        for (db, pkgs) in &self.os {
            let kind = self.os_kind.get(db).copied().unwrap_or("deb");
            let ns = if kind == "apk" {
                "alpine".to_string()
            } else {
                distro.clone()
            };
            for (n, v, arch) in pkgs {
                let mut purl = format!("pkg:{kind}/{}/{}@{}", enc(&ns), enc(n), enc(v));
                if !arch.is_empty() {
                    purl.push_str(&format!("?arch={}", enc(arch)));
                }
                all.entry(purl.clone()).or_insert(Component {
                    purl,
                    name: n.clone(),
                    version: v.clone(),
                    ecosystem: kind,
                    found_in: db.clone(),
                });
            }
        }
        all.into_values().collect()
    }

    /// A CycloneDX 1.5 document about `subject` (name, and digest when known).
    pub fn cyclonedx(
        &self,
        subject_name: &str,
        subject_digest: Option<&str>,
        serial: &str,
        timestamp: &str,
    ) -> Value {
        let components: Vec<Value> = self
            .components()
            .into_iter()
            .map(|c| {
                json!({
                    "type": "library",
                    "bom-ref": c.purl,
                    "name": c.name,
                    "version": c.version,
                    "purl": c.purl,
                    "properties": [{"name": "bonded:found-in", "value": c.found_in}],
                })
            })
            .collect();
        let mut subject =
            json!({ "type": "container", "name": subject_name, "bom-ref": subject_name });
        if let Some(d) = subject_digest {
            if let Some((alg, hex)) = d.split_once(':') {
                let alg = match alg {
                    "sha256" => "SHA-256",
                    "sha512" => "SHA-512",
                    other => other,
                };
                subject["hashes"] = json!([{ "alg": alg, "content": hex }]);
            }
        }
        json!({
            "bomFormat": "CycloneDX",
            "specVersion": "1.5",
            "serialNumber": format!("urn:uuid:{serial}"),
            "version": 1,
            "metadata": {
                "timestamp": timestamp,
                "tools": { "components": [{ "type": "application", "name": "bonded", "version": env!("CARGO_PKG_VERSION") }] },
                "component": subject,
            },
            "components": components,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_each_inventory_kind_into_purls() {
        let mut s = Scanner::new();
        s.file("rootfs/etc/os-release", b"NAME=\"Debian\"\nID=debian\n");
        s.file(
            "rootfs/var/lib/dpkg/status",
            b"Package: libc6\nStatus: install ok installed\nArchitecture: amd64\nVersion: 2.36-9+deb12u4\nDescription: x\n more\n\nPackage: gone\nStatus: deinstall ok config-files\nVersion: 1\n",
        );
        s.file(
            "lib/apk/db/installed",
            b"C:x\nP:musl\nV:1.2.4-r2\nA:x86_64\n\nP:busybox\nV:1.36.1-r5\n",
        );
        s.file(
            "site-packages/Typing_Extensions-4.12.2.dist-info/METADATA",
            b"Metadata-Version: 2.1\nName: Typing_Extensions\nVersion: 4.12.2\n\nName: not-this\n",
        );
        s.file("app/package-lock.json", br#"{"lockfileVersion":3,"packages":{"":{"name":"app"},"node_modules/@babel/core":{"version":"7.24.0"},"node_modules/a/node_modules/b":{"version":"1.0.0"}}}"#);
        s.file("Cargo.lock", b"version = 3\n[[package]]\nname = \"serde\"\nversion = \"1.0.200\"\nsource = \"registry+https://github.com/rust-lang/crates.io-index\"\n\n[[package]]\nname = \"local\"\nversion = \"0.1.0\"\n");
        let purls: Vec<String> = s.components().into_iter().map(|c| c.purl).collect();
        assert_eq!(
            purls,
            [
                "pkg:apk/alpine/busybox@1.36.1-r5",
                "pkg:apk/alpine/musl@1.2.4-r2?arch=x86_64",
                "pkg:cargo/serde@1.0.200",
                "pkg:deb/debian/libc6@2.36-9%2Bdeb12u4?arch=amd64",
                "pkg:npm/%40babel/core@7.24.0",
                "pkg:npm/b@1.0.0",
                "pkg:pypi/typing-extensions@4.12.2",
            ]
        );
        let doc = s.cyclonedx(
            "r/app",
            Some("sha256:ab"),
            "3e671687-395b-41f5-a30f-a58921a69b79",
            "2026-01-01T00:00:00Z",
        );
        assert!(crate::sbom::validate(doc.to_string().as_bytes()).is_ok());
        // A later dpkg database replaces the earlier one.
        s.file(
            "rootfs/var/lib/dpkg/status",
            b"Package: libc6\nStatus: install ok installed\nVersion: 2.37\n",
        );
        assert!(s
            .components()
            .iter()
            .any(|c| c.purl == "pkg:deb/debian/libc6@2.37"));
        assert!(!s.components().iter().any(|c| c.version == "2.36-9+deb12u4"));
        assert!(wanted("x/y.dist-info/METADATA") && !wanted("x/y.dist-info/RECORD"));
    }
}
