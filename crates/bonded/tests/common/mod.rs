//! Test harness: runs the real `bonded` binary on a random loopback port.
//!
//! `BONDED_TEST_BACKEND` picks the backend pair every test runs on: `fs-sqlite` (default) or
//! `s3-postgres`, which needs the S3 server from `eval "$(scripts/garage.sh)"` and PostgreSQL
//! at `BONDED_TEST_POSTGRES_URL` (default `postgres://postgres@127.0.0.1:5432/test`). Each data
//! directory gets its own database and key prefix, reused when a test restarts the server on it.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// `crates/bonded/tests/interop`: the client scripts and SDK helpers the interop tests drive.
pub fn interop_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests")
        .join("interop")
}

/// Runs `interop/verify_dsse.py` (securesystemslib and in-toto) on the DSSE envelope in
/// `envelope`, under the PEM public key `public_pem` with id `key_id`, for the subject `digest`.
pub fn verify_dsse(
    envelope: &Path,
    public_pem: &Path,
    key_id: &str,
    digest: &str,
) -> std::process::Output {
    Command::new("python3")
        .arg(interop_dir().join("verify_dsse.py"))
        .args([
            envelope.to_str().unwrap(),
            public_pem.to_str().unwrap(),
            key_id,
            digest,
        ])
        .output()
        .unwrap()
}

/// Asserts that a finished process succeeded (`what` names it in the failure, with its output)
/// and returns its standard output.
#[track_caller]
pub fn succeeded(out: &std::process::Output, what: &str) -> String {
    assert!(
        out.status.success(),
        "{what} failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Runs `bonded <args>`, which must succeed; returns its standard output.
#[track_caller]
pub fn bonded_ok(args: &[&str]) -> String {
    let out = Command::new(bin()).args(args).output().expect("run bonded");
    succeeded(&out, &format!("bonded {args:?}"))
}

/// [`verify_dsse`], which must accept the envelope (`what` names it in the failure); returns
/// the script's JSON summary (scheme, predicate type, ...).
pub fn verified_dsse(
    envelope: &Path,
    public_pem: &Path,
    key_id: &str,
    digest: &str,
    what: &str,
) -> serde_json::Value {
    let o = verify_dsse(envelope, public_pem, key_id, digest);
    let stdout = succeeded(&o, &format!("in-toto verification of {what}"));
    serde_json::from_str(&stdout).unwrap()
}

/// A running `bonded serve` process. Killed on drop.
pub struct Server {
    pub child: Child,
    /// `127.0.0.1:PORT`
    pub addr: String,
    pub data_dir: PathBuf,
    /// The backend configuration it was started with, for admin commands on the same stores.
    backend: Vec<(String, String)>,
    _tmp: Option<tempfile::TempDir>,
}

pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_bonded")
}

impl Server {
    /// Starts a server on a fresh temporary data directory.
    pub fn start() -> Server {
        Self::start_with(&[])
    }

    /// Starts a server on a fresh temporary data directory with extra environment variables
    /// (e.g. `("BONDED_LIMITS__CHUNK_MIN_BYTES", "1024")`).
    pub fn start_with(env: &[(&str, &str)]) -> Server {
        let tmp = tempfile::tempdir().expect("tempdir");
        let data = tmp.path().join("data");
        let mut s = Self::start_in(&data, env);
        s._tmp = Some(tmp);
        s
    }

    /// Starts a server on an existing data directory (for restart tests).
    pub fn start_in(data_dir: &Path, env: &[(&str, &str)]) -> Server {
        Self::spawn(data_dir, data_dir, s3_postgres(), env)
    }

    /// Starts a server on filesystem + SQLite in `data_dir`, whatever `BONDED_TEST_BACKEND` says.
    pub fn start_fs_in(data_dir: &Path) -> Server {
        Self::spawn(data_dir, data_dir, false, &[])
    }

    /// Starts a server from a configuration file.
    pub fn start_config(config: &Path, data_dir: &Path) -> Server {
        let cfg = config.to_str().expect("utf-8 path");
        Self::spawn(data_dir, data_dir, false, &[("BONDED_CONFIG", cfg)])
    }

    /// Starts a server whose shared backends are named after `shared` (a cluster's directory)
    /// while its local data directory is `data_dir`.
    fn spawn(data_dir: &Path, shared: &Path, s3pg: bool, env: &[(&str, &str)]) -> Server {
        let mut cmd = Command::new(bin());
        let backend = if s3pg { backend_env(shared) } else { vec![] };
        for (k, v) in &backend {
            cmd.env(k, v);
        }
        cmd.args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(data_dir)
            .env("RUST_LOG", "warn")
            // Tests not about access control run an open registry; `auth_env` turns it on.
            .env("BONDED_AUTH__ENABLED", "false")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("spawn bonded");
        let stdout = child.stdout.take().expect("stdout");
        let mut lines = BufReader::new(stdout).lines();
        let deadline = Instant::now() + Duration::from_secs(30);
        let addr = loop {
            assert!(
                Instant::now() < deadline,
                "bonded did not report its address in time"
            );
            let line = lines
                .next()
                .expect("bonded exited before listening")
                .expect("read stdout");
            if let Some(rest) = line.split("listening on http://").nth(1) {
                break rest.trim().to_string();
            }
        };
        // Keep draining stdout so the child never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines.by_ref() {});
        Server {
            child,
            addr,
            data_dir: data_dir.to_path_buf(),
            backend,
            _tmp: None,
        }
    }

    /// Runs a server-side admin command (`bonded <args> --data-dir <dir>`) on this server's
    /// stores, with extra environment; returns (success, stdout, stderr).
    pub fn admin(&self, args: &[&str], env: &[(&str, &str)]) -> (bool, String, String) {
        let mut cmd = Command::new(bin());
        cmd.args(args).arg("--data-dir").arg(&self.data_dir);
        for (k, v) in &self.backend {
            cmd.env(k, v);
        }
        for (k, v) in env {
            cmd.env(k, v);
        }
        let out = cmd.env("RUST_LOG", "warn").output().expect("run bonded");
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    /// Starts a server with access control on and the admin password [`ADMIN_PASSWORD`].
    pub fn start_auth(env: &[(&str, &str)]) -> Server {
        let mut all = auth_env().to_vec();
        all.extend_from_slice(env);
        Self::start_with(&all)
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// `kill -9`.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Peak resident set size of the server process in KiB (VmHWM).
    pub fn peak_rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .expect("read /proc status");
        status
            .lines()
            .find(|l| l.starts_with("VmHWM:"))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .expect("VmHWM in /proc status")
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
        // The owner of the data directory also owns the database made for it.
        if self._tmp.is_some() && s3_postgres() {
            drop_database(&self.data_dir);
        }
    }
}

/// The first admin's password on servers started with [`auth_env`].
pub const ADMIN_PASSWORD: &str = "admin-password-for-tests";

/// Environment that turns access control on, with a known admin password.
pub fn auth_env() -> [(&'static str, &'static str); 2] {
    [
        ("BONDED_AUTH__ENABLED", "true"),
        ("BONDED_ADMIN_PASSWORD", ADMIN_PASSWORD),
    ]
}

/// True when the suite is asked to run with access control on (`BONDED_TEST_AUTH=on`): the OCI
/// conformance tests then authenticate as the admin.
pub fn auth_on() -> bool {
    matches!(std::env::var("BONDED_TEST_AUTH").as_deref(), Ok("on"))
}

/// Several `bonded serve` processes sharing one PostgreSQL database and one S3 prefix, the way
/// stateless nodes run behind a load balancer. Always on S3 + PostgreSQL.
pub struct Cluster {
    pub nodes: Vec<Server>,
    dir: tempfile::TempDir,
}

impl Cluster {
    pub fn start(n: usize) -> Cluster {
        Self::start_with(n, &[])
    }

    /// A cluster whose nodes all get extra environment (configuration).
    pub fn start_with(n: usize, env: &[(&str, &str)]) -> Cluster {
        let dir = tempfile::tempdir().expect("tempdir");
        let nodes = (0..n).map(|i| Self::node(dir.path(), i, env)).collect();
        Cluster { nodes, dir }
    }

    fn node(shared: &Path, i: usize, env: &[(&str, &str)]) -> Server {
        Server::spawn(&shared.join(format!("node{i}")), shared, true, env)
    }

    /// Starts node `i` again after it was killed.
    pub fn restart(&mut self, i: usize) {
        self.nodes[i].kill();
        self.nodes[i] = Self::node(self.dir.path(), i, &[]);
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for n in &mut self.nodes {
            n.kill();
        }
        drop_database(self.dir.path());
    }
}

/// A TOML configuration for S3 + PostgreSQL backends named after `shared` (its database is
/// created now and dropped by [`drop_database`]).
pub fn s3_postgres_toml(shared: &Path) -> String {
    let mut storage = String::from("[storage]\n");
    let mut metadata = String::from("[metadata]\n");
    for (k, v) in backend_env(shared) {
        let (section, key) = k
            .trim_start_matches("BONDED_")
            .split_once("__")
            .expect("SECTION__KEY");
        let value = if v == "true" { v } else { format!("{v:?}") };
        let line = format!("{} = {value}\n", key.to_lowercase());
        match section {
            "STORAGE" => storage.push_str(&line),
            _ => metadata.push_str(&line),
        }
    }
    format!("{storage}\n{metadata}")
}

pub fn drop_database(shared: &Path) {
    let _ = Command::new("psql")
        .arg(postgres_url())
        .args([
            "-q",
            "-c",
            &format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", db_name(shared)),
        ])
        .output();
}

/// Runs SQL against the metadata database of the server whose data directory is `data_dir`,
/// behind bonded's back (to test tamper detection): `sqlite3` or `psql`, as the backend is.
pub fn sql(data_dir: &Path, statement: &str) {
    let out = if s3_postgres() {
        let base = postgres_url();
        let (prefix, _) = base.rsplit_once('/').expect("database URL ends in /<db>");
        Command::new("psql")
            .arg(format!("{prefix}/{}", db_name(data_dir)))
            .args(["-v", "ON_ERROR_STOP=1", "-q", "-c", statement])
            .output()
            .expect("run psql")
    } else {
        Command::new("sqlite3")
            .arg(data_dir.join("bonded.db"))
            .arg(statement)
            .output()
            .expect("run sqlite3 (install it with scripts/install-test-tools.sh)")
    };
    assert!(
        out.status.success(),
        "{statement}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// True when the suite runs on S3 + PostgreSQL.
pub fn s3_postgres() -> bool {
    match std::env::var("BONDED_TEST_BACKEND").as_deref() {
        Ok("s3-postgres") => true,
        Ok("fs-sqlite") | Err(_) => false,
        Ok(other) => panic!("BONDED_TEST_BACKEND={other:?}: use fs-sqlite or s3-postgres"),
    }
}

fn postgres_url() -> String {
    std::env::var("BONDED_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into())
}

/// A stable name per data directory, so a restarted server finds its metadata again.
fn db_name(data_dir: &Path) -> String {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    data_dir.hash(&mut h);
    format!("bonded_e2e_{:016x}", h.finish())
}

fn required(var: &str) -> String {
    std::env::var(var).unwrap_or_else(|_| {
        panic!("BONDED_TEST_BACKEND=s3-postgres needs {var}: run `eval \"$(scripts/garage.sh)\"` first")
    })
}

/// Environment that points a server at the selected backend pair.
fn backend_env(data_dir: &Path) -> Vec<(String, String)> {
    let db = db_name(data_dir);
    let base = postgres_url();
    let out = Command::new("psql")
        .arg(&base)
        .args(["-q", "-c", &format!("CREATE DATABASE {db}")])
        .output()
        .expect("run psql (PostgreSQL client) to create a test database");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() || err.contains("already exists"),
        "creating {db}: {err}"
    );
    let (prefix, _) = base.rsplit_once('/').expect("database URL ends in /<db>");
    vec![
        ("BONDED_METADATA__URL".into(), format!("{prefix}/{db}")),
        ("BONDED_STORAGE__BACKEND".into(), "s3".into()),
        (
            "BONDED_STORAGE__BUCKET".into(),
            required("BONDED_TEST_S3_BUCKET"),
        ),
        (
            "BONDED_STORAGE__ENDPOINT".into(),
            required("BONDED_TEST_S3_ENDPOINT"),
        ),
        (
            "BONDED_STORAGE__REGION".into(),
            required("BONDED_TEST_S3_REGION"),
        ),
        ("BONDED_STORAGE__PATH_STYLE".into(), "true".into()),
        ("BONDED_STORAGE__PREFIX".into(), format!("e2e/{db}")),
    ]
}

/// Writes `bytes` at `key` (a blob-store key such as `blobs/sha256/ab/ab…`) behind bonded's back,
/// on whichever backend the server whose data directory is `data_dir` uses: the file under
/// `<data_dir>/blobs/`, or the object under its S3 prefix (with the `aws` CLI).
pub fn storage_put(data_dir: &Path, key: &str, bytes: &[u8]) {
    if s3_postgres() {
        let tmp = tempfile::NamedTempFile::new().expect("tempfile");
        std::fs::write(tmp.path(), bytes).expect("write tempfile");
        aws_s3(&[
            "cp",
            tmp.path().to_str().expect("utf-8"),
            &s3_url(data_dir, key),
        ]);
    } else {
        std::fs::write(data_dir.join("blobs").join(key), bytes).expect("overwrite blob file");
    }
}

/// Deletes the object or file at `key` behind bonded's back (see [`storage_put`]).
pub fn storage_delete(data_dir: &Path, key: &str) {
    if s3_postgres() {
        aws_s3(&["rm", &s3_url(data_dir, key)]);
    } else {
        std::fs::remove_file(data_dir.join("blobs").join(key)).expect("remove blob file");
    }
}

/// Reads the object or file at `key`, if there is one (see [`storage_put`]).
pub fn storage_get(data_dir: &Path, key: &str) -> Option<Vec<u8>> {
    if s3_postgres() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let file = tmp.path().join("object");
        let out = Command::new("aws")
            .args(["s3", "cp", &s3_url(data_dir, key)])
            .arg(&file)
            .args(["--endpoint-url", &required("BONDED_TEST_S3_ENDPOINT")])
            .args(["--region", &required("BONDED_TEST_S3_REGION")])
            .output()
            .expect("run aws (the AWS CLI)");
        out.status
            .success()
            .then(|| std::fs::read(&file).expect("read object"))
    } else {
        std::fs::read(data_dir.join("blobs").join(key)).ok()
    }
}

/// Keys under `prefix` (e.g. `quarantine/`) in the blob store (see [`storage_put`]).
pub fn storage_list(data_dir: &Path, prefix: &str) -> Vec<String> {
    if s3_postgres() {
        let base = format!("e2e/{}/", db_name(data_dir));
        let out = aws_s3(&["ls", "--recursive", &s3_url(data_dir, prefix)]);
        out.lines()
            .filter_map(|l| l.split_whitespace().last())
            .filter_map(|k| k.strip_prefix(&base).map(str::to_string))
            .collect()
    } else {
        let root = data_dir.join("blobs");
        let mut out = Vec::new();
        let mut dirs = vec![root.join(prefix)];
        while let Some(dir) = dirs.pop() {
            let Ok(entries) = std::fs::read_dir(&dir) else {
                continue;
            };
            for e in entries.flatten() {
                let p = e.path();
                if p.is_dir() {
                    dirs.push(p);
                } else if let Ok(rel) = p.strip_prefix(&root) {
                    out.push(rel.to_string_lossy().into_owned());
                }
            }
        }
        out
    }
}

fn s3_url(data_dir: &Path, key: &str) -> String {
    format!(
        "s3://{}/e2e/{}/{key}",
        required("BONDED_TEST_S3_BUCKET"),
        db_name(data_dir)
    )
}

fn aws_s3(args: &[&str]) -> String {
    let out = Command::new("aws")
        .arg("s3")
        .args(args)
        .args(["--endpoint-url", &required("BONDED_TEST_S3_ENDPOINT")])
        .args(["--region", &required("BONDED_TEST_S3_REGION")])
        .output()
        .expect("run aws (the AWS CLI)");
    assert!(
        out.status.success(),
        "aws s3 {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}
