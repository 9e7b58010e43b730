//! Vulnerability scanning end to end with the real binary: an OSV directory imported with
//! `bonded vulndb import`, an artifact pushed with `bonded push` and given a signed CycloneDX
//! SBOM with `bonded sbom attach`, scanned with `bonded vulndb scan`; a later import found by the
//! scan job without re-pushing; withdrawn advisories stop matching; bad input is refused clearly.
//! Runs on the backend pair `BONDED_TEST_BACKEND` selects (fs+SQLite or S3+PostgreSQL).

mod common;

use std::path::Path;
use std::process::Command;

use common::{bin, bonded_ok as ok, Server};
use serde_json::Value;

fn admin_ok(s: &Server, args: &[&str]) -> String {
    let (success, out, err) = s.admin(args, &[]);
    assert!(success, "bonded {args:?} failed:\n{out}\n{err}");
    out
}

fn write(dir: &Path, name: &str, body: &str) {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join(name), body).unwrap();
}

/// An OSV record affecting `ecosystem/name` below `fixed`.
fn osv(
    id: &str,
    modified: &str,
    alias: &str,
    eco: &str,
    name: &str,
    fixed: &str,
    sev: &str,
) -> String {
    let severity = if sev.starts_with("CVSS:3") {
        format!(r#""severity":[{{"type":"CVSS_V3","score":"{sev}"}}],"#)
    } else {
        format!(r#""database_specific":{{"severity":"{sev}"}},"#)
    };
    format!(
        r#"{{"schema_version":"1.6.0","id":"{id}","modified":"{modified}","published":"2024-01-01T00:00:00Z",
           "aliases":["{alias}"],"summary":"{name} is vulnerable ({id})",{severity}
           "affected":[{{"package":{{"ecosystem":"{eco}","name":"{name}"}},
             "ranges":[{{"type":"ECOSYSTEM","events":[{{"introduced":"0"}},{{"fixed":"{fixed}"}}]}}]}}]}}"#
    )
}

/// Blocking HTTP: (status, JSON body).
fn http(method: &str, url: &str, body: Option<Value>) -> (u16, Value) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let c = reqwest::Client::new();
        let mut req = c.request(reqwest::Method::from_bytes(method.as_bytes()).unwrap(), url);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap_or(Value::Null))
    })
}

const HIGH: &str = "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:N/A:N";

fn scan_json(s: &Server, target: &str) -> Value {
    serde_json::from_str(&admin_ok(s, &["vulndb", "scan", target, "--json"])).unwrap()
}

fn ids(scan: &Value) -> Vec<String> {
    scan["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["advisory_id"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn scanning_finds_advisories_in_signed_sboms_and_rescans_after_imports() {
    let s = Server::start_with(&[("BONDED_SCAN__ENABLED", "false")]);
    let tmp = tempfile::tempdir().unwrap();
    let p = |n: &str| tmp.path().join(n);

    // The database: two advisories and one unreadable file.
    let osv1 = p("osv1");
    write(
        &osv1,
        "GHSA-9wx4-h78v-vm56.json",
        &osv(
            "GHSA-9wx4-h78v-vm56",
            "2024-06-10T00:00:00Z",
            "CVE-2024-35195",
            "PyPI",
            "requests",
            "2.32.0",
            HIGH,
        ),
    );
    write(
        &osv1,
        "GHSA-35jh-r3h4-6jhm.json",
        &osv(
            "GHSA-35jh-r3h4-6jhm",
            "2024-02-01T00:00:00Z",
            "CVE-2021-23337",
            "npm",
            "lodash",
            "4.17.21",
            "CRITICAL",
        ),
    );
    write(&osv1, "broken.json", "{not json");
    let out = admin_ok(&s, &["vulndb", "import", osv1.to_str().unwrap()]);
    assert!(
        out.contains("skipped") && out.contains("broken.json"),
        "{out}"
    );
    assert!(
        out.contains("2 records read: 2 new, 0 updated, 0 withdrawn, 0 unchanged, 1 unreadable"),
        "{out}"
    );
    assert!(
        out.contains("database generation 1: 2 active advisories"),
        "{out}"
    );
    // Importing the same export again changes nothing.
    let again = admin_ok(&s, &["vulndb", "import", osv1.to_str().unwrap()]);
    assert!(
        again.contains("0 new, 0 updated, 0 withdrawn, 2 unchanged"),
        "{again}"
    );
    assert!(again.contains("database generation 1:"), "{again}");
    let status = admin_ok(&s, &["vulndb", "status"]);
    assert!(
        status.contains("generation 1: 2 active advisories, 0 withdrawn"),
        "{status}"
    );
    assert!(status.contains("2 records, 1 unreadable"), "{status}");

    // An artifact with a signed SBOM listing three components; its namespace trusts the key.
    let content = p("app.txt");
    std::fs::write(&content, "the application").unwrap();
    let target = format!("{}/shop/app:v1", s.addr);
    let pushed = ok(&["push", "-q", content.to_str().unwrap(), &target]);
    let digest = pushed.trim().rsplit_once('@').unwrap().1.to_string();
    let key_id = ok(&["key", "generate", "--out", p("k").to_str().unwrap()]);
    ok(&[
        "trust",
        "add",
        &format!("{}/shop", s.addr),
        "--key-set",
        "ci",
        "--key",
        p("k.pub.pem").to_str().unwrap(),
    ]);
    assert!(!key_id.trim().is_empty());
    let sbom = p("sbom.json");
    std::fs::write(
        &sbom,
        r#"{"bomFormat":"CycloneDX","specVersion":"1.5","version":1,"components":[
        {"type":"library","name":"requests","version":"2.31.0","purl":"pkg:pypi/requests@2.31.0"},
        {"type":"library","name":"lodash","version":"4.17.20","purl":"pkg:npm/lodash@4.17.20"},
        {"type":"library","name":"urllib3","version":"2.0.0","purl":"pkg:pypi/urllib3@2.0.0"}]}"#,
    )
    .unwrap();
    ok(&[
        "sbom",
        "attach",
        &target,
        sbom.to_str().unwrap(),
        "--key",
        p("k.pem").to_str().unwrap(),
    ]);

    // Scanning finds exactly the two advisories, worst first.
    let started = std::time::Instant::now();
    let scan = scan_json(&s, "shop/app:v1");
    eprintln!(
        "scan of shop/app:v1 took {:?} (process included)",
        started.elapsed()
    );
    assert_eq!(scan["digest"], digest.as_str());
    assert_eq!(
        (scan["sboms"].as_i64(), scan["components"].as_i64()),
        (Some(1), Some(3))
    );
    assert_eq!(ids(&scan), ["GHSA-35jh-r3h4-6jhm", "GHSA-9wx4-h78v-vm56"]);
    let f = &scan["findings"][1];
    assert_eq!(f["aliases"], serde_json::json!(["CVE-2024-35195"]));
    assert_eq!(f["package"], "requests");
    assert_eq!(f["installed"], "2.31.0");
    assert_eq!(f["fixed"], "2.32.0");
    assert_eq!(f["severity"], "high");
    assert_eq!(f["score"], 7.5);
    assert_eq!(f["summary"], "requests is vulnerable (GHSA-9wx4-h78v-vm56)");
    assert_eq!(scan["findings"][0]["severity"], "critical");
    assert_eq!(
        scan["counts"],
        serde_json::json!({"critical": 1, "high": 1})
    );
    let table = admin_ok(&s, &["vulndb", "scan", &format!("shop/app@{digest}")]);
    assert!(table.contains("2 findings: 1 critical, 1 high"), "{table}");
    assert!(
        table.lines().any(|l| l.starts_with("GHSA-9wx4-h78v-vm56")
            && l.contains("CVE-2024-35195")
            && l.contains("2.31.0")
            && l.contains("2.32.0")),
        "{table}"
    );
    // The job has nothing due now.
    assert!(admin_ok(&s, &["vulndb", "rescan"]).contains("scanned 0 artifacts"));
    let affected = admin_ok(&s, &["vulndb", "affected", "CVE-2024-35195"]);
    assert!(
        affected.contains(&format!("shop/app@{digest}: requests 2.31.0")),
        "{affected}"
    );

    // A new advisory for urllib3, and lodash's withdrawn: the job rescans without a re-push.
    let osv2 = p("osv2");
    write(
        &osv2,
        "GHSA-34jh-p97f-mpxf.json",
        &osv(
            "GHSA-34jh-p97f-mpxf",
            "2024-06-17T00:00:00Z",
            "CVE-2024-37891",
            "PyPI",
            "urllib3",
            "2.2.2",
            "MODERATE",
        ),
    );
    let withdrawn = osv(
        "GHSA-35jh-r3h4-6jhm",
        "2024-07-01T00:00:00Z",
        "CVE-2021-23337",
        "npm",
        "lodash",
        "4.17.21",
        "CRITICAL",
    )
    .replacen(
        "\"published\"",
        "\"withdrawn\":\"2024-07-01T00:00:00Z\",\"published\"",
        1,
    );
    write(&osv2, "GHSA-35jh-r3h4-6jhm.json", &withdrawn);
    let out = admin_ok(&s, &["vulndb", "import", osv2.to_str().unwrap()]);
    assert!(
        out.contains("2 records read: 1 new, 0 updated, 1 withdrawn"),
        "{out}"
    );
    assert!(
        out.contains("database generation 2: 2 active advisories, 1 withdrawn"),
        "{out}"
    );
    let started = std::time::Instant::now();
    let job = admin_ok(&s, &["vulndb", "rescan"]);
    eprintln!(
        "rescan job: {job} ({:?} with process start)",
        started.elapsed()
    );
    assert!(job.contains("scanned 1 artifacts"), "{job}");
    assert!(admin_ok(&s, &["vulndb", "rescan"]).contains("scanned 0 artifacts"));
    assert!(admin_ok(&s, &["vulndb", "affected", "CVE-2021-23337"])
        .trim()
        .is_empty());
    let affected = admin_ok(&s, &["vulndb", "affected", "GHSA-34jh-p97f-mpxf"]);
    assert!(affected.contains("urllib3 2.0.0"), "{affected}");
    let scan = scan_json(&s, "shop/app:v1");
    assert_eq!(ids(&scan), ["GHSA-9wx4-h78v-vm56", "GHSA-34jh-p97f-mpxf"]);
    assert_eq!(scan["generation"], 2);
    assert_eq!(scan["findings"][1]["severity"], "medium");

    // The management API: stored result, scan now, affected (optionally in an environment).
    let (status, body) = http(
        "GET",
        &s.url("/api/v1/scans?repository=shop/app&reference=v1"),
        None,
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["findings"], scan["findings"]);
    let (status, body) = http(
        "POST",
        &s.url("/api/v1/scans"),
        Some(serde_json::json!({"repository": "shop/app", "reference": digest})),
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(ids(&body), ["GHSA-9wx4-h78v-vm56", "GHSA-34jh-p97f-mpxf"]);
    let (status, body) = http(
        "GET",
        &s.url("/api/v1/vulns/affected?advisory=CVE-2024-37891"),
        None,
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["affected"][0]["digest"], digest.as_str());
    let (_, body) = http(
        "GET",
        &s.url("/api/v1/vulns/affected?advisory=CVE-2024-37891&environment=prod"),
        None,
    );
    assert_eq!(body["affected"], serde_json::json!([]));
    let (status, body) = http(
        "POST",
        &s.url("/api/v1/scans"),
        Some(serde_json::json!({"repository": "shop/app", "reference": "nope"})),
    );
    assert_eq!(status, 404, "{body}");
    // The client commands over that API.
    let table = ok(&["scan", &target]);
    assert!(table.contains("2 findings: 1 high, 1 medium"), "{table}");
    assert!(
        table
            .lines()
            .any(|l| l.starts_with("GHSA-34jh-p97f-mpxf") && l.contains("urllib3")),
        "{table}"
    );
    let out = ok(&["vulns", "affected", &s.addr, "CVE-2024-37891"]);
    assert!(
        out.contains(&format!("shop/app@{digest}: urllib3 2.0.0")),
        "{out}"
    );
    assert!(ok(&[
        "vulns",
        "affected",
        &s.addr,
        "CVE-2024-37891",
        "--env",
        "prod"
    ])
    .trim()
    .is_empty());

    // An artifact without a (trusted) SBOM has nothing to scan; it is not due either.
    std::fs::write(&content, "another").unwrap();
    ok(&[
        "push",
        "-q",
        content.to_str().unwrap(),
        &format!("{}/shop/bare:v1", s.addr),
    ]);
    let (status, body) = http(
        "GET",
        &s.url("/api/v1/scans?repository=shop/bare&reference=v1"),
        None,
    );
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (404, Some("NOT_SCANNED")),
        "{body}"
    );
    let bare = scan_json(&s, "shop/bare:v1");
    assert_eq!(
        (
            bare["sboms"].as_i64(),
            bare["findings"].as_array().unwrap().len()
        ),
        (Some(0), 0)
    );
}

#[test]
fn bad_scan_and_import_input_gets_clear_errors() {
    let s = Server::start_with(&[("BONDED_SCAN__ENABLED", "false")]);
    let (success, _, err) = s.admin(&["vulndb", "import", "/nonexistent/osv"], &[]);
    assert!(!success);
    assert!(
        err.contains(
            "/nonexistent/osv is neither a directory of OSV JSON records nor a .zip export"
        ),
        "{err}"
    );
    let (success, _, err) = s.admin(&["vulndb", "import", "/nonexistent/all.zip"], &[]);
    assert!(!success);
    assert!(err.contains("all.zip"), "{err}");
    let (success, _, err) = s.admin(&["vulndb", "scan", "shop/none:v9"], &[]);
    assert!(!success);
    assert!(
        err.contains("cannot scan shop/none:v9") && err.contains("not found"),
        "{err}"
    );
    let (success, _, err) = s.admin(&["vulndb", "scan", "Not A Repo"], &[]);
    assert!(!success, "{err}");
    let status = admin_ok(&s, &["vulndb", "status"]);
    assert!(
        status.contains("generation 0: 0 active advisories, 0 withdrawn; updated never"),
        "{status}"
    );
}

#[test]
fn vulnerability_gate_refuses_until_scanned_fresh_and_clean() {
    let tmp = tempfile::tempdir().unwrap();
    let p = |n: &str| tmp.path().join(n);
    let cfg = p("bonded.toml");
    std::fs::write(
        &cfg,
        r#"
[[promotion.gates]]
repositories = "shop/**"
environment = "dev"
vulnerabilities = { max_severity = "high" }
"#,
    )
    .unwrap();
    // The server's own job is off so each scan below happens when the test says.
    let s = Server::start_with(&[
        ("BONDED_CONFIG", cfg.to_str().unwrap()),
        ("BONDED_SCAN__ENABLED", "false"),
    ]);
    let admin = |args: &[&str]| {
        let (success, out, err) = s.admin(args, &[("BONDED_CONFIG", cfg.to_str().unwrap())]);
        assert!(success, "bonded {args:?} failed:\n{out}\n{err}");
        out
    };
    let promote = |target: &str| {
        let out = Command::new(bin())
            .args(["promote", target, "--to", "dev"])
            .output()
            .unwrap();
        (
            out.status.success(),
            format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
        )
    };

    let content = p("app.txt");
    std::fs::write(&content, "gated application").unwrap();
    let pushed = ok(&[
        "push",
        "-q",
        content.to_str().unwrap(),
        &format!("{}/shop/gated:v1", s.addr),
    ]);
    let digest = pushed.trim().rsplit_once('@').unwrap().1.to_string();
    let at = format!("{}/shop/gated@{digest}", s.addr);

    // No database yet.
    let (promoted, out) = promote(&at);
    assert!(
        !promoted && out.contains("no vulnerability database has been imported"),
        "{out}"
    );

    let osv1 = p("osv1");
    write(
        &osv1,
        "GHSA-9wx4-h78v-vm56.json",
        &osv(
            "GHSA-9wx4-h78v-vm56",
            "2024-06-10T00:00:00Z",
            "CVE-2024-35195",
            "PyPI",
            "requests",
            "2.32.0",
            HIGH,
        ),
    );
    admin(&["vulndb", "import", osv1.to_str().unwrap()]);
    ok(&["key", "generate", "--out", p("k").to_str().unwrap()]);
    ok(&[
        "trust",
        "add",
        &format!("{}/shop", s.addr),
        "--key-set",
        "ci",
        "--key",
        p("k.pub.pem").to_str().unwrap(),
    ]);
    let sbom = p("sbom.json");
    std::fs::write(&sbom, r#"{"bomFormat":"CycloneDX","specVersion":"1.5","version":1,"components":[
        {"type":"library","name":"requests","version":"2.31.0","purl":"pkg:pypi/requests@2.31.0"}]}"#).unwrap();
    ok(&[
        "sbom",
        "attach",
        &at,
        sbom.to_str().unwrap(),
        "--key",
        p("k.pem").to_str().unwrap(),
    ]);

    // Not scanned: refused, saying so.
    let (promoted, out) = promote(&at);
    assert!(!promoted && out.contains("has not been scanned"), "{out}");
    // Scanned with a high finding: refused naming it.
    admin(&["vulndb", "scan", &format!("shop/gated@{digest}")]);
    let (promoted, out) = promote(&at);
    assert!(!promoted, "{out}");
    assert!(
        out.contains("1 findings at or above high: GHSA-9wx4-h78v-vm56 (requests 2.31.0, high, fixed in 2.32.0)"),
        "{out}"
    );

    // The advisory is withdrawn: the old scan no longer counts until rescanned.
    let osv2 = p("osv2");
    let withdrawn = osv(
        "GHSA-9wx4-h78v-vm56",
        "2024-07-01T00:00:00Z",
        "CVE-2024-35195",
        "PyPI",
        "requests",
        "2.32.0",
        HIGH,
    )
    .replacen(
        "\"published\"",
        "\"withdrawn\":\"2024-07-01T00:00:00Z\",\"published\"",
        1,
    );
    write(&osv2, "GHSA-9wx4-h78v-vm56.json", &withdrawn);
    admin(&["vulndb", "import", osv2.to_str().unwrap()]);
    let (promoted, out) = promote(&at);
    assert!(
        !promoted && out.contains("generation 1, the current one is 2"),
        "{out}"
    );
    assert!(admin(&["vulndb", "rescan"]).contains("scanned 1 artifacts"));

    // A stale database does not pass either.
    common::sql(&s.data_dir, "UPDATE vuln_db SET updated_at = 1000");
    let (promoted, out) = promote(&at);
    assert!(!promoted && out.contains("import a fresh export"), "{out}");
    common::sql(
        &s.data_dir,
        &format!(
            "UPDATE vuln_db SET updated_at = {}",
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_millis()
        ),
    );
    let (promoted, out) = promote(&at);
    assert!(promoted, "{out}");
    assert!(
        out.contains("vulnerabilities") && out.contains("none at or above high"),
        "{out}"
    );
}

/// Polls `bonded vulndb affected <advisory>` until it lists `want`, with a deadline.
fn wait_affected(s: &Server, advisory: &str, want: &str) -> String {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let out = admin_ok(s, &["vulndb", "affected", advisory]);
        if out.contains(want) {
            return out;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the server's scan job never reported {want} for {advisory}: {out:?}"
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
}

#[test]
fn the_servers_scan_job_scans_new_sboms_and_rescans_after_an_import() {
    let s = Server::start_with(&[("BONDED_SCAN__INTERVAL_SECS", "1")]);
    let tmp = tempfile::tempdir().unwrap();
    let p = |n: &str| tmp.path().join(n);
    let osv1 = p("osv1");
    write(
        &osv1,
        "GHSA-9wx4-h78v-vm56.json",
        &osv(
            "GHSA-9wx4-h78v-vm56",
            "2024-06-10T00:00:00Z",
            "CVE-2024-35195",
            "PyPI",
            "requests",
            "2.32.0",
            HIGH,
        ),
    );
    admin_ok(&s, &["vulndb", "import", osv1.to_str().unwrap()]);

    let content = p("app.txt");
    std::fs::write(&content, "served application").unwrap();
    let target = format!("{}/shop/served:v1", s.addr);
    let pushed = ok(&["push", "-q", content.to_str().unwrap(), &target]);
    let digest = pushed.trim().rsplit_once('@').unwrap().1.to_string();
    ok(&["key", "generate", "--out", p("k").to_str().unwrap()]);
    ok(&[
        "trust",
        "add",
        &format!("{}/shop", s.addr),
        "--key-set",
        "ci",
        "--key",
        p("k.pub.pem").to_str().unwrap(),
    ]);
    let sbom = p("sbom.json");
    std::fs::write(
        &sbom,
        r#"{"bomFormat":"CycloneDX","specVersion":"1.5","version":1,"components":[
        {"type":"library","name":"requests","version":"2.31.0","purl":"pkg:pypi/requests@2.31.0"},
        {"type":"library","name":"urllib3","version":"2.0.0","purl":"pkg:pypi/urllib3@2.0.0"}]}"#,
    )
    .unwrap();
    ok(&[
        "sbom",
        "attach",
        &target,
        sbom.to_str().unwrap(),
        "--key",
        p("k.pem").to_str().unwrap(),
    ]);

    // The job finds the new SBOM without being asked.
    let want = format!("shop/served@{digest}");
    wait_affected(&s, "CVE-2024-35195", &want);
    // An advisory imported later is found in the same artifact, without a re-push or a scan.
    let osv2 = p("osv2");
    write(
        &osv2,
        "GHSA-34jh-p97f-mpxf.json",
        &osv(
            "GHSA-34jh-p97f-mpxf",
            "2024-06-17T00:00:00Z",
            "CVE-2024-37891",
            "PyPI",
            "urllib3",
            "2.2.2",
            "MODERATE",
        ),
    );
    admin_ok(&s, &["vulndb", "import", osv2.to_str().unwrap()]);
    let out = wait_affected(&s, "CVE-2024-37891", &want);
    assert!(out.contains("urllib3 2.0.0 (GHSA-34jh-p97f-mpxf)"), "{out}");
}
