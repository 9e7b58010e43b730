//! Vulnerability operations end to end with the real binary: the server's scan job records
//! metrics, notifies (log, metrics, audit) when a rescan finds new advisories in an artifact an
//! environment points at, and attaches a signed vulnerability report referrer that public in-toto
//! tooling verifies under the registry's key; a configured OSV mirror served over HTTP is
//! refreshed on a schedule (conditional GET) and a bad one is reported without changing anything.
//! Runs on the backend pair `BONDED_TEST_BACKEND` selects (fs+SQLite or S3+PostgreSQL).

mod common;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{bonded_ok as ok, verified_dsse, Server};
use serde_json::{json, Value};

fn admin_ok(s: &Server, args: &[&str], env: &[(&str, &str)]) -> String {
    let (success, out, err) = s.admin(args, env);
    assert!(success, "bonded {args:?} failed:\n{out}\n{err}");
    out
}

/// An OSV record affecting `ecosystem/name` below `fixed`.
fn osv(id: &str, alias: &str, eco: &str, name: &str, fixed: &str, sev: &str) -> String {
    format!(
        r#"{{"schema_version":"1.6.0","id":"{id}","modified":"2024-06-10T00:00:00Z","published":"2024-01-01T00:00:00Z",
           "aliases":["{alias}"],"summary":"{name} is vulnerable ({id})","database_specific":{{"severity":"{sev}"}},
           "affected":[{{"package":{{"ecosystem":"{eco}","name":"{name}"}},
             "ranges":[{{"type":"ECOSYSTEM","events":[{{"introduced":"0"}},{{"fixed":"{fixed}"}}]}}]}}]}}"#
    )
}

fn requests_advisory() -> String {
    osv(
        "GHSA-9wx4-h78v-vm56",
        "CVE-2024-35195",
        "PyPI",
        "requests",
        "2.32.0",
        "HIGH",
    )
}

fn urllib3_advisory() -> String {
    osv(
        "GHSA-34jh-p97f-mpxf",
        "CVE-2024-37891",
        "PyPI",
        "urllib3",
        "2.2.2",
        "MODERATE",
    )
}

fn write_dir(dir: &Path, records: &[(&str, String)]) {
    std::fs::create_dir_all(dir).unwrap();
    for (name, body) in records {
        std::fs::write(dir.join(name), body).unwrap();
    }
}

/// Blocking HTTP: (status, body text).
fn get_text(url: &str) -> (u16, String) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let resp = reqwest::get(url).await.unwrap();
        (resp.status().as_u16(), resp.text().await.unwrap())
    })
}

fn get_json(url: &str) -> (u16, Value) {
    let (status, text) = get_text(url);
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

/// Polls `check` until it returns Some, with a deadline.
fn wait_for<T>(what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(v) = check() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(250));
    }
}

fn affected(s: &Server, advisory: &str) -> String {
    admin_ok(s, &["vulndb", "affected", advisory], &[])
}

/// A metric sample's value from the Prometheus text at /metrics (`name{labels}` exactly).
fn metric(s: &Server, sample: &str) -> Option<f64> {
    let (_, text) = get_text(&s.url("/metrics"));
    text.lines().find_map(|l| {
        l.strip_prefix(sample)?
            .strip_prefix(' ')?
            .trim()
            .parse()
            .ok()
    })
}

/// Pushes `repo:v1` with a signed CycloneDX SBOM listing `purls`, under a key the namespace
/// trusts (created on first use in `dir`); returns the artifact's digest.
fn push_with_sbom(s: &Server, dir: &Path, repo: &str, purls: &[&str]) -> String {
    let content = dir.join(format!("{}.txt", repo.replace('/', "_")));
    std::fs::write(&content, format!("the application {repo}")).unwrap();
    let target = format!("{}/{repo}:v1", s.addr);
    let pushed = ok(&["push", "-q", content.to_str().unwrap(), &target]);
    let digest = pushed.trim().rsplit_once('@').unwrap().1.to_string();
    let key = dir.join("k");
    if !dir.join("k.pem").exists() {
        ok(&["key", "generate", "--out", key.to_str().unwrap()]);
        let ns = repo.split('/').next().unwrap();
        ok(&[
            "trust",
            "add",
            &format!("{}/{ns}", s.addr),
            "--key-set",
            "ci",
            "--key",
            dir.join("k.pub.pem").to_str().unwrap(),
        ]);
    }
    let components: Vec<String> = purls
        .iter()
        .map(|p| format!(r#"{{"type":"library","name":"x","version":"1","purl":"{p}"}}"#))
        .collect();
    let sbom = dir.join("sbom.json");
    std::fs::write(
        &sbom,
        format!(
            r#"{{"bomFormat":"CycloneDX","specVersion":"1.5","version":1,"components":[{}]}}"#,
            components.join(",")
        ),
    )
    .unwrap();
    ok(&[
        "sbom",
        "attach",
        &target,
        sbom.to_str().unwrap(),
        "--key",
        dir.join("k.pem").to_str().unwrap(),
    ]);
    digest
}

const REPORT_TYPE: &str = "application/vnd.bonded.vulnerability-report.v1+json";

/// The vulnerability report referrers of `repo@digest`, as the referrers API lists them.
fn reports(s: &Server, repo: &str, digest: &str) -> Vec<Value> {
    let (status, body) = get_json(&s.url(&format!(
        "/v2/{repo}/referrers/{digest}?artifactType={}",
        REPORT_TYPE.replace('+', "%2B")
    )));
    assert_eq!(status, 200, "{body}");
    body["manifests"].as_array().unwrap().clone()
}

/// Verifies the report referrer `report` of `repo@digest` with securesystemslib and in-toto
/// under the registry's published key; returns the signed statement.
fn verify_report(s: &Server, dir: &Path, repo: &str, digest: &str, report: &str) -> Value {
    let (status, key) = get_json(&s.url("/api/v1/promotion/key"));
    assert_eq!(status, 200, "{key}");
    let pem = dir.join("registry.pub.pem");
    std::fs::write(&pem, key["public_key"].as_str().unwrap()).unwrap();
    let (_, manifest) = get_json(&s.url(&format!("/v2/{repo}/manifests/{report}")));
    assert_eq!(manifest["subject"]["digest"], json!(digest));
    assert_eq!(manifest["artifactType"], json!(REPORT_TYPE));
    let layer = manifest["layers"][0]["digest"].as_str().unwrap();
    let (status, envelope) = get_text(&s.url(&format!("/v2/{repo}/blobs/{layer}")));
    assert_eq!(status, 200);
    let file = dir.join("report.dsse.json");
    std::fs::write(&file, &envelope).unwrap();
    let summary = verified_dsse(
        &file,
        &pem,
        key["key_id"].as_str().unwrap(),
        digest,
        "the vulnerability report",
    );
    assert_eq!(
        summary["predicateType"],
        json!("https://cosign.sigstore.dev/attestation/vuln/v1")
    );
    let envelope: Value = serde_json::from_str(&envelope).unwrap();
    let payload = base64_decode(envelope["payload"].as_str().unwrap());
    serde_json::from_slice(&payload).unwrap()
}

fn base64_decode(s: &str) -> Vec<u8> {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.decode(s).unwrap()
}

fn report_ids(statement: &Value) -> Vec<String> {
    statement["predicate"]["scanner"]["result"]["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["advisory_id"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn rescans_notify_new_findings_in_environments_count_them_and_attach_signed_reports() {
    let s = Server::start_with(&[("BONDED_SCAN__INTERVAL_SECS", "1")]);
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    write_dir(
        &dir.join("osv1"),
        &[("GHSA-9wx4-h78v-vm56.json", requests_advisory())],
    );
    admin_ok(
        &s,
        &["vulndb", "import", dir.join("osv1").to_str().unwrap()],
        &[],
    );
    let purls = ["pkg:pypi/requests@2.31.0", "pkg:pypi/urllib3@2.0.0"];
    let app = push_with_sbom(&s, dir, "shop/app", &purls);
    let other = push_with_sbom(&s, dir, "shop/other", &purls);
    // Only shop/app is in an environment.
    ok(&[
        "promote",
        &format!("{}/shop/app@{app}", s.addr),
        "--to",
        "dev",
    ]);

    // The job scans both; each gets one signed report listing the finding.
    wait_for("the first scans", || {
        let out = affected(&s, "CVE-2024-35195");
        (out.contains(&app) && out.contains(&other)).then_some(())
    });
    let first = wait_for("the first report", || {
        let r = reports(&s, "shop/app", &app);
        (!r.is_empty()).then_some(r)
    });
    assert_eq!(first.len(), 1, "{first:?}");
    let report = first[0]["digest"].as_str().unwrap().to_string();
    let statement = verify_report(&s, dir, "shop/app", &app, &report);
    assert_eq!(report_ids(&statement), ["GHSA-9wx4-h78v-vm56"]);
    assert_eq!(
        statement["predicate"]["scanner"]["result"]["counts"],
        json!({"high": 1})
    );
    assert_eq!(statement["predicate"]["scanner"]["db"]["version"], "1");

    // Metrics: findings by severity over live artifacts, the database, scans and durations.
    wait_for("the findings gauge", || {
        (metric(&s, r#"bonded_vuln_findings{severity="high"}"#) == Some(2.0)).then_some(())
    });
    assert_eq!(
        metric(&s, r#"bonded_vuln_findings{severity="critical"}"#),
        Some(0.0)
    );
    assert_eq!(metric(&s, "bonded_vulndb_generation"), Some(1.0));
    let age = metric(&s, "bonded_vulndb_age_seconds").unwrap();
    assert!((0.0..120.0).contains(&age), "{age}");
    assert_eq!(
        metric(&s, r#"bonded_vuln_scans_total{outcome="ok"}"#),
        Some(2.0)
    );
    assert_eq!(
        metric(&s, "bonded_vuln_scan_duration_seconds_count"),
        Some(2.0)
    );
    // Nothing new yet.
    let (_, audit) = get_json(&s.url("/api/v1/audit?action=vuln-new-findings"));
    assert_eq!(audit["entries"], json!([]), "{audit}");

    // A new advisory for urllib3: the job rescans both; only the artifact in `dev` is notified.
    write_dir(
        &dir.join("osv2"),
        &[("GHSA-34jh-p97f-mpxf.json", urllib3_advisory())],
    );
    admin_ok(
        &s,
        &["vulndb", "import", dir.join("osv2").to_str().unwrap()],
        &[],
    );
    wait_for("the rescans", || {
        let out = affected(&s, "CVE-2024-37891");
        (out.contains(&app) && out.contains(&other)).then_some(())
    });
    let entries = wait_for("the notification's audit entry", || {
        let (_, audit) = get_json(&s.url("/api/v1/audit?action=vuln-new-findings"));
        let e = audit["entries"].as_array().cloned().unwrap_or_default();
        (!e.is_empty()).then_some(e)
    });
    assert_eq!(entries.len(), 1, "{entries:?}");
    assert_eq!(entries[0]["actor"], "scanner");
    assert_eq!(entries[0]["repository"], "shop/app");
    assert_eq!(entries[0]["target"], json!(app));
    let detail = entries[0]["detail"].as_str().unwrap();
    assert!(
        detail.contains("environments: dev")
            && detail.contains("GHSA-34jh-p97f-mpxf (urllib3 2.0.0, medium)")
            && !detail.contains("GHSA-9wx4"),
        "{detail}"
    );
    assert_eq!(
        metric(
            &s,
            r#"bonded_vuln_new_findings_total{environment="dev",severity="medium"}"#
        ),
        Some(1.0)
    );
    wait_for("the findings gauge after the rescan", || {
        (metric(&s, r#"bonded_vuln_findings{severity="medium"}"#) == Some(2.0)).then_some(())
    });
    assert_eq!(metric(&s, "bonded_vulndb_generation"), Some(2.0));

    // The findings changed, so there is a second report; it lists both advisories.
    let second = wait_for("the second report", || {
        let r = reports(&s, "shop/app", &app);
        (r.len() == 2).then_some(r)
    });
    let newest = second
        .iter()
        .map(|m| m["digest"].as_str().unwrap().to_string())
        .find(|d| *d != report)
        .unwrap();
    let statement = verify_report(&s, dir, "shop/app", &app, &newest);
    assert_eq!(
        report_ids(&statement),
        ["GHSA-9wx4-h78v-vm56", "GHSA-34jh-p97f-mpxf"]
    );
    let (_, stored) = get_json(&s.url("/api/v1/scans?repository=shop/app&reference=v1"));
    assert_eq!(stored["generation"], 2, "{stored}");

    // An import that changes nothing these artifacts have: they are rescanned (new
    // generation), no new report is attached and nobody is notified.
    write_dir(
        &dir.join("osv3"),
        &[(
            "GHSA-aaaa-bbbb-cccc.json",
            osv(
                "GHSA-aaaa-bbbb-cccc",
                "CVE-2000-0001",
                "npm",
                "left-pad",
                "9.0.0",
                "LOW",
            ),
        )],
    );
    admin_ok(
        &s,
        &["vulndb", "import", dir.join("osv3").to_str().unwrap()],
        &[],
    );
    wait_for("the rescan at generation 3", || {
        let (_, stored) = get_json(&s.url("/api/v1/scans?repository=shop/app&reference=v1"));
        let (_, other) = get_json(&s.url("/api/v1/scans?repository=shop/other&reference=v1"));
        (stored["generation"] == 3 && other["generation"] == 3).then_some(())
    });
    assert_eq!(reports(&s, "shop/app", &app).len(), 2);
    assert_eq!(reports(&s, "shop/other", &other).len(), 2);
    let (_, audit) = get_json(&s.url("/api/v1/audit?action=vuln-new-findings"));
    assert_eq!(audit["entries"].as_array().unwrap().len(), 1, "{audit}");
    assert_eq!(
        metric(&s, r#"bonded_vuln_scans_total{outcome="ok"}"#),
        Some(6.0)
    );
}

/// `python3 -m http.server` on a loopback port serving `dir`; killed on drop.
struct FileServer {
    child: Child,
    port: u16,
}

impl FileServer {
    fn start(dir: &Path) -> FileServer {
        let mut child = Command::new("python3")
            .args([
                "-u",
                "-m",
                "http.server",
                "0",
                "--bind",
                "127.0.0.1",
                "--directory",
            ])
            .arg(dir)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("python3 -m http.server");
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let port = loop {
            let line = lines
                .next()
                .expect("http.server exited before listening")
                .unwrap();
            if let Some(rest) = line.split(" port ").nth(1) {
                break rest.split_whitespace().next().unwrap().parse().unwrap();
            }
        };
        std::thread::spawn(move || for _ in lines.by_ref() {});
        FileServer { child, port }
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }
}

impl Drop for FileServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Writes an OSV `all.zip` of `records` (built with Python's zipfile, as OSV's exports are
/// plain zip archives of one JSON file per advisory), dated `mtime_offset_secs` from now.
fn write_zip(path: &Path, records: &[(&str, String)], mtime_offset_secs: i64) {
    let dir = path.with_extension("d");
    let _ = std::fs::remove_dir_all(&dir);
    write_dir(&dir, records);
    let o = Command::new("python3")
        .arg("-c")
        .arg(
            "import os, sys, time, zipfile\n\
             src, out, offset = sys.argv[1], sys.argv[2], int(sys.argv[3])\n\
             tmp = out + '.tmp'\n\
             with zipfile.ZipFile(tmp, 'w', zipfile.ZIP_DEFLATED) as z:\n\
             \x20   for n in sorted(os.listdir(src)):\n\
             \x20       z.write(os.path.join(src, n), n)\n\
             t = time.time() + offset\n\
             os.utime(tmp, (t, t))\n\
             os.replace(tmp, out)\n",
        )
        .arg(&dir)
        .arg(path)
        .arg(mtime_offset_secs.to_string())
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
}

fn generation(s: &Server) -> String {
    let status = admin_ok(s, &["vulndb", "status"], &[]);
    status.split(':').next().unwrap().to_string()
}

#[test]
fn a_configured_mirror_is_refreshed_on_schedule_and_bad_ones_change_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let served = dir.join("served");
    std::fs::create_dir_all(served.join("PyPI")).unwrap();
    let zip = served.join("PyPI").join("all.zip");
    write_zip(
        &zip,
        &[("GHSA-9wx4-h78v-vm56.json", requests_advisory())],
        -60,
    );
    std::fs::write(served.join("garbage.zip"), "this is not a zip archive").unwrap();
    let files = FileServer::start(&served);
    let mirror = files.url("/PyPI/all.zip");
    let s = Server::start_with(&[
        ("BONDED_SCAN__INTERVAL_SECS", "1"),
        ("BONDED_SCAN__MIRROR_URL", &mirror),
        ("BONDED_SCAN__MIRROR_INTERVAL_SECS", "1"),
    ]);
    let mirror_env = [("BONDED_SCAN__MIRROR_URL", mirror.as_str())];

    // The server fetches and imports it on its own; the scan job finds the advisory.
    let app = push_with_sbom(
        &s,
        dir,
        "shop/app",
        &["pkg:pypi/requests@2.31.0", "pkg:pypi/urllib3@2.0.0"],
    );
    wait_for("the mirror's advisory in the artifact", || {
        affected(&s, "CVE-2024-35195").contains(&app).then_some(())
    });
    // Its next fetches are conditional: the unchanged archive is not imported again.
    let status = wait_for("a conditional fetch", || {
        let out = admin_ok(&s, &["vulndb", "status"], &mirror_env);
        out.lines()
            .any(|l| l.starts_with(&format!("mirror {mirror}: ")) && l.contains(": unchanged ("))
            .then_some(out)
    });
    assert!(
        status.starts_with("generation 1: 1 active advisories"),
        "{status}"
    );
    assert!(
        status.contains(&format!("source {mirror}: 1 records, 0 unreadable")),
        "{status}"
    );

    // A newer archive with a new advisory: found in the existing artifact, nothing re-pushed.
    write_zip(
        &zip,
        &[
            ("GHSA-9wx4-h78v-vm56.json", requests_advisory()),
            ("GHSA-34jh-p97f-mpxf.json", urllib3_advisory()),
        ],
        60,
    );
    let out = wait_for("the newly served advisory in the artifact", || {
        let out = affected(&s, "CVE-2024-37891");
        out.contains(&app).then_some(out)
    });
    assert!(out.contains("urllib3 2.0.0 (GHSA-34jh-p97f-mpxf)"), "{out}");
    let status = admin_ok(&s, &["vulndb", "status"], &mirror_env);
    assert!(
        status.starts_with("generation 2: 2 active advisories"),
        "{status}"
    );

    // A one-off import of the same URL downloads it in full and changes nothing.
    let out = admin_ok(&s, &["vulndb", "import", &mirror], &[]);
    assert!(
        out.contains(&format!("imported {mirror}:"))
            && out.contains("2 records: 0 new, 0 updated, 0 withdrawn, 2 unchanged")
            && out.contains("database generation 2"),
        "{out}"
    );

    // A 404 and a response that is not an archive are reported clearly and change nothing.
    let before = generation(&s);
    let missing = files.url("/PyPI/missing.zip");
    let (success, _, err) = s.admin(&["vulndb", "import", &missing], &[]);
    assert!(!success);
    assert!(
        err.contains(&format!("refreshing the vulnerability mirror {missing}"))
            && err.contains("HTTP 404"),
        "{err}"
    );
    let garbage = files.url("/garbage.zip");
    let (success, _, err) = s.admin(&["vulndb", "import", &garbage], &[]);
    assert!(!success);
    assert!(
        err.contains("the downloaded file is not an OSV export"),
        "{err}"
    );
    assert_eq!(generation(&s), before);
    let status = admin_ok(&s, &["vulndb", "status"], &[]);
    assert!(
        status
            .lines()
            .any(|l| l.starts_with(&format!("mirror {missing}: "))
                && l.contains(": failed (")
                && l.contains("404")),
        "{status}"
    );
    assert!(
        status
            .lines()
            .any(|l| l.starts_with(&format!("mirror {garbage}: ")) && l.contains(": failed (")),
        "{status}"
    );
    // Nothing was left in the download directory.
    let leftovers: Vec<_> = std::fs::read_dir(s.data_dir.join("vulndb-mirror"))
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    assert!(leftovers.is_empty(), "{leftovers:?}");

    // Only http(s) URLs are accepted as mirrors.
    let (success, _, err) = s.admin(
        &["vulndb", "status"],
        &[("BONDED_SCAN__MIRROR_URL", "file:///etc/passwd")],
    );
    assert!(!success);
    assert!(err.contains("must be an http:// or https:// URL"), "{err}");
}
