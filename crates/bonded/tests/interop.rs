//! Interop tests: real third-party clients against a real `bonded serve`.
//!
//! - skopeo (Go, containers/image): OCI image push/pull round trip with identical digests,
//!   Docker v2s2 push, multi-arch index push/pull, registry-to-registry copy.
//! - oras-py (the `oras` Python SDK): artifact push/pull with artifactType and annotations,
//!   referrers (`subject`) and the referrers API with `artifactType` filtering.
//!
//! The clients are installed by `scripts/install-test-tools.sh`, which every test runs once per
//! test process (a fast no-op when they are present). Client-side helpers live in
//! `tests/interop/`.

mod common;

use common::interop_dir;

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use serde_json::Value;
use sha2::{Digest, Sha256};

const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
const DOCKER_LAYER_GZ: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";
const ACCEPT_ALL: &str = "application/vnd.oci.image.manifest.v1+json, \
     application/vnd.oci.image.index.v1+json, \
     application/vnd.docker.distribution.manifest.v2+json, \
     application/vnd.docker.distribution.manifest.list.v2+json";

// ---------------------------------------------------------------------------------------------
// Tooling
// ---------------------------------------------------------------------------------------------

fn manifest_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Runs `scripts/install-test-tools.sh` once per test process; panics (in every test) if it
/// fails.
fn ensure_tools() {
    static TOOLS: OnceLock<Result<(), String>> = OnceLock::new();
    let result = TOOLS.get_or_init(|| {
        let script = manifest_dir().join("../../scripts/install-test-tools.sh");
        let out = Command::new("bash")
            .arg(&script)
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("cannot run {}: {e}", script.display()))?;
        if out.status.success() {
            Ok(())
        } else {
            Err(format!(
                "{} failed ({}): {}{}",
                script.display(),
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ))
        }
    });
    if let Err(e) = result {
        panic!("interop tools unavailable (skopeo, python3 + oras SDK); run scripts/install-test-tools.sh as root: {e}");
    }
}

/// Runs a command with a deadline, capturing stdout and stderr. Panics with everything the
/// command printed (stderr tail-truncated) if it fails or times out.
fn run(what: &str, cmd: &mut Command, timeout: Duration) -> Output {
    let out = run_unchecked(what, cmd, timeout);
    if !out.status.success() {
        panic!(
            "{what} failed ({}):\n--- stdout ---\n{}\n--- stderr (tail) ---\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            tail(&out.stderr, 24_000)
        );
    }
    out
}

fn run_unchecked(what: &str, cmd: &mut Command, timeout: Duration) -> Output {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{what}: cannot spawn {cmd:?}: {e}"));
    let mut so = child.stdout.take().expect("stdout");
    let mut se = child.stderr.take().expect("stderr");
    let t_out = std::thread::spawn(move || {
        let mut b = Vec::new();
        let _ = so.read_to_end(&mut b);
        b
    });
    let t_err = std::thread::spawn(move || {
        let mut b = Vec::new();
        let _ = se.read_to_end(&mut b);
        b
    });
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(st) = child.try_wait().expect("try_wait") {
            break st;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            let stderr = t_err.join().unwrap_or_default();
            panic!(
                "{what} timed out after {timeout:?}; stderr (tail):\n{}",
                tail(&stderr, 24_000)
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    Output {
        status,
        stdout: t_out.join().unwrap_or_default(),
        stderr: t_err.join().unwrap_or_default(),
    }
}

fn tail(b: &[u8], n: usize) -> String {
    let s = String::from_utf8_lossy(b);
    if s.len() <= n {
        return s.into_owned();
    }
    let mut start = s.len() - n;
    while !s.is_char_boundary(start) {
        start += 1;
    }
    format!("[...]{}", &s[start..])
}

/// `skopeo --insecure-policy --debug ARGS` (debug output goes to stderr and is shown on failure).
fn skopeo(args: &[&str]) -> Output {
    let mut cmd = Command::new("skopeo");
    cmd.args(["--insecure-policy", "--debug"]).args(args);
    run(
        &format!("skopeo {}", args.join(" ")),
        &mut cmd,
        Duration::from_secs(180),
    )
}

/// Builds a deterministic OCI image layout at `dir`; returns the builder's JSON summary.
fn make_layout(dir: &Path, extra: &[&str]) -> Value {
    let mut cmd = Command::new("python3");
    cmd.arg(interop_dir().join("make_oci_layout.py"))
        .arg(dir)
        .args(extra);
    let out = run("make_oci_layout.py", &mut cmd, Duration::from_secs(120));
    serde_json::from_slice(&out.stdout).expect("layout summary JSON")
}

// ---------------------------------------------------------------------------------------------
// Plain HTTP/1.1, to see exactly what bonded serves
// ---------------------------------------------------------------------------------------------

struct Resp {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Resp {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn media_type(&self) -> Option<&str> {
        self.header("content-type")
            .map(|v| v.split(';').next().unwrap_or("").trim())
    }

    fn describe(&self) -> String {
        format!(
            "{} {:?} {}",
            self.status,
            self.headers,
            tail(&self.body, 2000)
        )
    }
}

fn http(addr: &str, method: &str, path: &str, headers: &[(&str, &str)]) -> Resp {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(60)))
        .expect("timeout");
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).expect("write request");
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).expect("read response");
    let end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("end of response head");
    let head = String::from_utf8_lossy(&raw[..end]).into_owned();
    let mut rest = raw[end + 4..].to_vec();
    let mut lines = head.split("\r\n");
    let status_line = lines.next().expect("status line");
    let status: u16 = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .expect("status code");
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let mut resp = Resp {
        status,
        headers,
        body: Vec::new(),
    };
    if method == "HEAD" {
        return resp;
    }
    if resp
        .header("transfer-encoding")
        .is_some_and(|v| v.eq_ignore_ascii_case("chunked"))
    {
        let mut body = Vec::new();
        loop {
            let nl = rest
                .windows(2)
                .position(|w| w == b"\r\n")
                .expect("chunk size line");
            let size_str = String::from_utf8_lossy(&rest[..nl]).into_owned();
            let size = usize::from_str_radix(size_str.split(';').next().unwrap_or("").trim(), 16)
                .expect("chunk size");
            rest.drain(..nl + 2);
            if size == 0 {
                break;
            }
            body.extend_from_slice(&rest[..size]);
            rest.drain(..size + 2);
        }
        resp.body = body;
    } else if let Some(len) = resp
        .header("content-length")
        .and_then(|v| v.parse::<usize>().ok())
    {
        rest.truncate(len);
        resp.body = rest;
    } else {
        resp.body = rest;
    }
    resp
}

fn get(addr: &str, path: &str, accept: &str) -> Resp {
    http(addr, "GET", path, &[("Accept", accept)])
}

/// Percent-encodes a query value (RFC 3986 unreserved characters pass through).
fn qenc(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn sha256(b: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(b)))
}

// ---------------------------------------------------------------------------------------------
// OCI layout helpers
// ---------------------------------------------------------------------------------------------

fn blob_path(layout: &Path, digest: &str) -> PathBuf {
    let hex = digest.strip_prefix("sha256:").expect("sha256 digest");
    layout.join("blobs").join("sha256").join(hex)
}

fn read_blob(layout: &Path, digest: &str) -> Vec<u8> {
    let p = blob_path(layout, digest);
    std::fs::read(&p).unwrap_or_else(|e| panic!("read {}: {e}", p.display()))
}

/// `index.json` entry tagged `tag`.
fn layout_ref(layout: &Path, tag: &str) -> Value {
    let index: Value =
        serde_json::from_slice(&std::fs::read(layout.join("index.json")).expect("index.json"))
            .expect("index.json is JSON");
    index["manifests"]
        .as_array()
        .expect("index.json manifests")
        .iter()
        .find(|m| m["annotations"]["org.opencontainers.image.ref.name"] == tag)
        .unwrap_or_else(|| panic!("no {tag} in {}/index.json: {index}", layout.display()))
        .clone()
}

/// Every blob in a layout, checked to hash to its own name.
fn layout_blobs(layout: &Path) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for entry in std::fs::read_dir(layout.join("blobs").join("sha256")).expect("blobs dir") {
        let entry = entry.expect("dir entry");
        let name = format!("sha256:{}", entry.file_name().to_string_lossy());
        let data = std::fs::read(entry.path()).expect("read blob");
        assert_eq!(
            sha256(&data),
            name,
            "blob {} in {} does not hash to its name",
            name,
            layout.display()
        );
        out.insert(name);
    }
    out
}

fn str_list(v: &Value) -> Vec<String> {
    v.as_array()
        .expect("array")
        .iter()
        .map(|s| s.as_str().expect("string").to_string())
        .collect()
}

fn summary_blobs(summary: &Value) -> BTreeSet<String> {
    summary["blobs"]
        .as_object()
        .expect("blobs")
        .keys()
        .cloned()
        .collect()
}

/// Asserts bonded serves `digest` in `repo` as exactly `want` (by tag and by digest), and every
/// listed blob with the right bytes.
fn assert_served(
    addr: &str,
    repo: &str,
    tag: &str,
    want: &[u8],
    media_type: &str,
    blobs: &[(String, Vec<u8>)],
) {
    let digest = sha256(want);
    for reference in [tag, digest.as_str()] {
        let path = format!("/v2/{repo}/manifests/{reference}");
        for accept in [media_type, ACCEPT_ALL] {
            let r = get(addr, &path, accept);
            assert_eq!(
                r.status,
                200,
                "GET {path} (Accept: {accept}): {}",
                r.describe()
            );
            assert!(
                r.body == want,
                "GET {path}: bytes differ from the pushed manifest: {}",
                r.describe()
            );
            assert_eq!(
                r.media_type(),
                Some(media_type),
                "GET {path} Content-Type: {}",
                r.describe()
            );
            assert_eq!(
                r.header("docker-content-digest"),
                Some(digest.as_str()),
                "GET {path}: {}",
                r.describe()
            );
        }
        let h = http(addr, "HEAD", &path, &[("Accept", ACCEPT_ALL)]);
        assert_eq!(h.status, 200, "HEAD {path}: {}", h.describe());
        assert_eq!(
            h.header("docker-content-digest"),
            Some(digest.as_str()),
            "HEAD {path}: {}",
            h.describe()
        );
        assert_eq!(
            h.header("content-length"),
            Some(want.len().to_string().as_str()),
            "HEAD {path}: {}",
            h.describe()
        );
    }
    for (d, data) in blobs {
        let path = format!("/v2/{repo}/blobs/{d}");
        let r = get(addr, &path, "*/*");
        assert_eq!(r.status, 200, "GET {path}: {}", r.describe());
        assert_eq!(r.body.len(), data.len(), "GET {path}: length");
        assert!(r.body == *data, "GET {path}: bytes differ");
    }
}

// ---------------------------------------------------------------------------------------------
// skopeo
// ---------------------------------------------------------------------------------------------

/// OCI image (config + 4 gzip'd layers, one of 4 MiB) from an OCI layout to bonded and back:
/// manifest and every blob digest identical; bonded serves the exact bytes.
#[test]
fn skopeo_oci_image_round_trip() {
    ensure_tools();
    let s = common::Server::start();
    let tmp = tempfile::tempdir().expect("tempdir");
    let src = tmp.path().join("src");
    let summary = make_layout(&src, &[]);
    let image = &summary["images"][0];
    let digest = image["digest"].as_str().expect("digest").to_string();
    let src_manifest = read_blob(&src, &digest);
    let layers = str_list(&image["layers"]);
    let config = image["config"].as_str().expect("config").to_string();
    assert!(layers.len() >= 3);

    let remote = format!("docker://{}/interop/img:v1", s.addr);
    skopeo(&[
        "copy",
        "--dest-tls-verify=false",
        &format!("oci:{}:v1", src.display()),
        &remote,
    ]);

    // What skopeo reads back is exactly what it pushed.
    let raw = skopeo(&["inspect", "--raw", "--tls-verify=false", &remote]).stdout;
    assert!(
        raw == src_manifest,
        "inspect --raw differs from the pushed manifest:\n{}",
        String::from_utf8_lossy(&raw)
    );
    assert_eq!(sha256(&raw), digest);

    // ... and what bonded serves over plain HTTP.
    let blobs: Vec<(String, Vec<u8>)> = layers
        .iter()
        .chain([&config])
        .map(|d| (d.clone(), read_blob(&src, d)))
        .collect();
    assert_served(
        &s.addr,
        "interop/img",
        "v1",
        &src_manifest,
        OCI_MANIFEST,
        &blobs,
    );

    // skopeo inspect (reads the config blob too) and list-tags.
    let info: Value =
        serde_json::from_slice(&skopeo(&["inspect", "--tls-verify=false", &remote]).stdout)
            .expect("inspect JSON");
    assert_eq!(info["Digest"], digest.as_str(), "{info}");
    assert_eq!(str_list(&info["Layers"]), layers, "{info}");
    assert_eq!(info["Labels"]["org.example.interop"], "bonded", "{info}");
    let tags: Value = serde_json::from_slice(
        &skopeo(&[
            "list-tags",
            "--tls-verify=false",
            &format!("docker://{}/interop/img", s.addr),
        ])
        .stdout,
    )
    .expect("list-tags JSON");
    assert_eq!(str_list(&tags["Tags"]), vec!["v1".to_string()], "{tags}");

    // Pull back into a second OCI layout.
    let dst = tmp.path().join("dst");
    skopeo(&[
        "copy",
        "--src-tls-verify=false",
        &remote,
        &format!("oci:{}:v1", dst.display()),
    ]);
    let top = layout_ref(&dst, "v1");
    assert_eq!(
        top["digest"],
        digest.as_str(),
        "pulled manifest digest: {top}"
    );
    assert!(
        read_blob(&dst, &digest) == src_manifest,
        "pulled manifest bytes differ"
    );
    assert_eq!(
        layout_blobs(&dst),
        summary_blobs(&summary),
        "pulled blob set differs"
    );
    assert_eq!(layout_blobs(&src), summary_blobs(&summary));

    // Registry-to-registry copy into another repository (skopeo may try cross-repo mounts).
    let copy = format!("docker://{}/interop/img-copy:v1", s.addr);
    skopeo(&[
        "copy",
        "--src-tls-verify=false",
        "--dest-tls-verify=false",
        &remote,
        &copy,
    ]);
    let raw = skopeo(&["inspect", "--raw", "--tls-verify=false", &copy]).stdout;
    assert!(raw == src_manifest, "copied manifest differs");
    assert_served(
        &s.addr,
        "interop/img-copy",
        "v1",
        &src_manifest,
        OCI_MANIFEST,
        &blobs,
    );
}

/// `skopeo copy --format v2s2`: the OCI image converted to a Docker v2 schema 2 manifest on push
/// (same config and layer blobs); pulled back with the `dir:` transport, which keeps the
/// manifest bytes.
#[test]
fn skopeo_docker_v2s2_push_and_pull() {
    ensure_tools();
    let s = common::Server::start();
    let tmp = tempfile::tempdir().expect("tempdir");
    let src = tmp.path().join("src");
    let summary = make_layout(&src, &[]);
    let image = &summary["images"][0];
    let layers = str_list(&image["layers"]);
    let config = image["config"].as_str().expect("config").to_string();

    let remote = format!("docker://{}/interop/img-v2s2:v1", s.addr);
    skopeo(&[
        "copy",
        "--format",
        "v2s2",
        "--dest-tls-verify=false",
        &format!("oci:{}:v1", src.display()),
        &remote,
    ]);
    let raw = skopeo(&["inspect", "--raw", "--tls-verify=false", &remote]).stdout;
    let m: Value = serde_json::from_slice(&raw).expect("manifest JSON");
    assert_eq!(m["mediaType"], DOCKER_MANIFEST, "{m}");
    assert_eq!(m["config"]["mediaType"], DOCKER_CONFIG, "{m}");
    assert_eq!(
        m["config"]["digest"],
        config.as_str(),
        "config blob changed: {m}"
    );
    let got_layers: Vec<String> = m["layers"]
        .as_array()
        .expect("layers")
        .iter()
        .map(|l| l["digest"].as_str().expect("digest").to_string())
        .collect();
    assert_eq!(got_layers, layers, "layer blobs changed: {m}");
    for l in m["layers"].as_array().expect("layers") {
        assert_eq!(l["mediaType"], DOCKER_LAYER_GZ, "{m}");
    }

    let blobs: Vec<(String, Vec<u8>)> = layers
        .iter()
        .chain([&config])
        .map(|d| (d.clone(), read_blob(&src, d)))
        .collect();
    assert_served(
        &s.addr,
        "interop/img-v2s2",
        "v1",
        &raw,
        DOCKER_MANIFEST,
        &blobs,
    );

    let info: Value =
        serde_json::from_slice(&skopeo(&["inspect", "--tls-verify=false", &remote]).stdout)
            .expect("inspect JSON");
    assert_eq!(info["Digest"], sha256(&raw).as_str(), "{info}");
    assert_eq!(str_list(&info["Layers"]), layers, "{info}");

    let dst = tmp.path().join("dir");
    skopeo(&[
        "copy",
        "--src-tls-verify=false",
        &remote,
        &format!("dir:{}", dst.display()),
    ]);
    let pulled = std::fs::read(dst.join("manifest.json")).expect("dir: manifest.json");
    assert!(pulled == raw, "dir: manifest differs from what was pushed");
    for (d, data) in &blobs {
        let p = dst.join(d.strip_prefix("sha256:").expect("sha256"));
        let got = std::fs::read(&p).unwrap_or_else(|e| panic!("pulled blob {}: {e}", p.display()));
        assert!(got == *data, "pulled blob {d} differs");
    }
}

/// `skopeo copy --all` of a two-platform OCI image index, in and out: index digest, both image
/// manifests and every blob identical.
#[test]
fn skopeo_multi_arch_index_round_trip() {
    ensure_tools();
    let s = common::Server::start();
    let tmp = tempfile::tempdir().expect("tempdir");
    let src = tmp.path().join("src");
    let summary = make_layout(&src, &["--platforms", "amd64,arm64"]);
    let index_digest = summary["top"]["digest"]
        .as_str()
        .expect("index digest")
        .to_string();
    let src_index = read_blob(&src, &index_digest);

    let remote = format!("docker://{}/interop/multi:v1", s.addr);
    skopeo(&[
        "copy",
        "--all",
        "--dest-tls-verify=false",
        &format!("oci:{}:v1", src.display()),
        &remote,
    ]);
    let raw = skopeo(&["inspect", "--raw", "--tls-verify=false", &remote]).stdout;
    assert!(
        raw == src_index,
        "inspect --raw differs from the pushed index:\n{}",
        String::from_utf8_lossy(&raw)
    );
    assert_served(&s.addr, "interop/multi", "v1", &src_index, OCI_INDEX, &[]);
    for image in summary["images"].as_array().expect("images") {
        let d = image["digest"].as_str().expect("digest");
        let want = read_blob(&src, d);
        let r = get(
            &s.addr,
            &format!("/v2/interop/multi/manifests/{d}"),
            ACCEPT_ALL,
        );
        assert_eq!(r.status, 200, "GET child {d}: {}", r.describe());
        assert!(r.body == want, "child manifest {d} differs");
        assert_eq!(r.media_type(), Some(OCI_MANIFEST));
    }
    // With --override-arch arm64 skopeo resolves the index to the arm64 image (its config and
    // layers; "Digest" stays the index's).
    let info: Value = serde_json::from_slice(
        &skopeo(&[
            "--override-arch",
            "arm64",
            "inspect",
            "--tls-verify=false",
            &remote,
        ])
        .stdout,
    )
    .expect("inspect JSON");
    assert_eq!(info["Digest"], index_digest.as_str(), "{info}");
    assert_eq!(info["Architecture"], "arm64", "{info}");
    assert_eq!(
        str_list(&info["Layers"]),
        str_list(&summary["images"][1]["layers"]),
        "{info}"
    );

    let dst = tmp.path().join("dst");
    skopeo(&[
        "copy",
        "--all",
        "--src-tls-verify=false",
        &remote,
        &format!("oci:{}:v1", dst.display()),
    ]);
    assert_eq!(layout_ref(&dst, "v1")["digest"], index_digest.as_str());
    assert_eq!(
        layout_blobs(&dst),
        summary_blobs(&summary),
        "pulled blob set differs"
    );
}

// ---------------------------------------------------------------------------------------------
// oras-py
// ---------------------------------------------------------------------------------------------

/// oras-py SDK: artifact with artifactType + annotations pushed and pulled through the SDK, two
/// referrers attached (one via the SDK's `subject`, one hand-built), discovered through the
/// referrers API with and without `artifactType` filtering. Details in
/// `tests/interop/oras_interop.py`; re-checked here over plain HTTP.
#[test]
fn oras_sdk_artifact_and_referrers() {
    ensure_tools();
    let s = common::Server::start();
    let mut cmd = Command::new("python3");
    cmd.arg(interop_dir().join("oras_interop.py"))
        .arg(&s.addr)
        .arg("interop/model");
    let out = run_unchecked("oras_interop.py", &mut cmd, Duration::from_secs(300));
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        out.status.success() && stdout.lines().any(|l| l == "INTEROP_OK"),
        "oras_interop.py failed ({}):\n--- stdout ---\n{stdout}\n--- stderr ---\n{}",
        out.status,
        tail(out.stderr.as_slice(), 24_000)
    );
    eprintln!("oras_interop.py:\n{stdout}{stderr}");
    let kv: BTreeMap<&str, &str> = stdout.lines().filter_map(|l| l.split_once('=')).collect();
    let field = |k: &str| -> String {
        kv.get(k)
            .unwrap_or_else(|| panic!("oras_interop.py printed no {k}:\n{stdout}"))
            .to_string()
    };
    let subject = field("SUBJECT_DIGEST");
    let sig = field("SIG_DIGEST");
    let sbom = field("SBOM_DIGEST");
    for d in [&subject, &sig, &sbom] {
        assert!(
            d.starts_with("sha256:") && d.len() == 71,
            "bad digest {d:?}"
        );
    }

    // The subject, by digest, hashes to its digest.
    let r = get(
        &s.addr,
        &format!("/v2/interop/model/manifests/{subject}"),
        OCI_MANIFEST,
    );
    assert_eq!(r.status, 200, "{}", r.describe());
    assert_eq!(sha256(&r.body), subject);
    let m: Value = serde_json::from_slice(&r.body).expect("manifest JSON");
    assert_eq!(
        m["artifactType"], "application/vnd.bonded.interop.model.v1",
        "{m}"
    );

    // Referrers, unfiltered and filtered.
    let r = get(
        &s.addr,
        &format!("/v2/interop/model/referrers/{subject}"),
        OCI_INDEX,
    );
    assert_eq!(r.status, 200, "{}", r.describe());
    assert_eq!(r.media_type(), Some(OCI_INDEX), "{}", r.describe());
    let idx: Value = serde_json::from_slice(&r.body).expect("referrers JSON");
    let found: BTreeSet<String> = idx["manifests"]
        .as_array()
        .expect("manifests")
        .iter()
        .map(|d| d["digest"].as_str().expect("digest").to_string())
        .collect();
    assert_eq!(found, BTreeSet::from([sig.clone(), sbom.clone()]), "{idx}");

    let atype = "application/vnd.bonded.interop.signature.v1";
    let r = get(
        &s.addr,
        &format!(
            "/v2/interop/model/referrers/{subject}?artifactType={}",
            qenc(atype)
        ),
        OCI_INDEX,
    );
    assert_eq!(r.status, 200, "{}", r.describe());
    assert_eq!(
        r.header("oci-filters-applied"),
        Some("artifactType"),
        "{}",
        r.describe()
    );
    let idx: Value = serde_json::from_slice(&r.body).expect("referrers JSON");
    let manifests = idx["manifests"].as_array().expect("manifests");
    assert_eq!(manifests.len(), 1, "{idx}");
    assert_eq!(manifests[0]["digest"], sig.as_str(), "{idx}");
    assert_eq!(manifests[0]["artifactType"], atype, "{idx}");
}
