//! Vulnerability waivers end to end with the real binary: `bonded waiver add|list|revoke` clear
//! a finding for the promotion gate, the `[[policy]]` pull rule and the scan pass rate (M8) until
//! revoked or expired; `bonded vex` exports a CycloneDX 1.5 VEX document that the CycloneDX
//! library's schema validator accepts; only maintainers add waivers, and the audit log says who;
//! bad input is refused clearly. Runs on the backend pair `BONDED_TEST_BACKEND` selects.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use common::{bin, Server};
use serde_json::{json, Value};

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[track_caller]
fn ok(args: &[&str]) -> String {
    let out = Command::new(bin()).args(args).output().expect("run bonded");
    assert!(
        out.status.success(),
        "bonded {args:?} failed:\n{}",
        text(&out)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[track_caller]
fn fails(args: &[&str]) -> String {
    let out = Command::new(bin()).args(args).output().expect("run bonded");
    assert!(
        !out.status.success(),
        "bonded {args:?} succeeded:\n{}",
        text(&out)
    );
    text(&out)
}

fn ensure_tools() {
    static TOOLS: OnceLock<Result<(), String>> = OnceLock::new();
    let r = TOOLS.get_or_init(|| {
        let script =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/install-test-tools.sh");
        let out = Command::new("bash")
            .arg(&script)
            .stdin(Stdio::null())
            .output()
            .map_err(|e| e.to_string())?;
        if out.status.success() {
            Ok(())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).into_owned())
        }
    });
    if let Err(e) = r {
        panic!("test tools unavailable; run scripts/install-test-tools.sh as root: {e}");
    }
}

/// An OSV record affecting `ecosystem/name` below `fixed`.
fn osv(id: &str, alias: &str, eco: &str, name: &str, fixed: &str, sev: &str) -> String {
    let severity = if sev.starts_with("CVSS:3") {
        format!(r#""severity":[{{"type":"CVSS_V3","score":"{sev}"}}],"#)
    } else {
        format!(r#""database_specific":{{"severity":"{sev}"}},"#)
    };
    format!(
        r#"{{"schema_version":"1.6.0","id":"{id}","modified":"2024-06-10T00:00:00Z","published":"2024-01-01T00:00:00Z",
           "aliases":["{alias}"],"summary":"{name} is vulnerable ({id})",{severity}
           "affected":[{{"package":{{"ecosystem":"{eco}","name":"{name}"}},
             "ranges":[{{"type":"ECOSYSTEM","events":[{{"introduced":"0"}},{{"fixed":"{fixed}"}}]}}]}}]}}"#
    )
}

const HIGH: &str = "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:N/A:N";
const GHSA: &str = "GHSA-9wx4-h78v-vm56";
const CVE: &str = "CVE-2024-35195";

/// Blocking HTTP with optional Basic credentials: (status, headers, JSON body).
fn http(
    method: &str,
    url: &str,
    body: Option<Value>,
    user: Option<(&str, &str)>,
) -> (u16, Vec<(String, String)>, Value) {
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
        if let Some((u, p)) = user {
            req = req.basic_auth(u, Some(p));
        }
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        let headers = resp
            .headers()
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("").to_string()))
            .collect();
        (status, headers, resp.json().await.unwrap_or(Value::Null))
    })
}

/// A server with `config`, an OSV database (a high GHSA aliased by a CVE, in `requests`; a low
/// one in `urllib3`), and `repo:v1` with a signed SBOM listing both, scanned.
struct Fixture {
    s: Server,
    tmp: tempfile::TempDir,
    cfg: PathBuf,
    digest: String,
}

impl Fixture {
    fn start(config: &str, repo: &str, env: &[(&str, &str)]) -> Fixture {
        let tmp = tempfile::tempdir().unwrap();
        let cfg = tmp.path().join("bonded.toml");
        std::fs::write(&cfg, config).unwrap();
        let mut all = vec![
            ("BONDED_CONFIG", cfg.to_str().unwrap()),
            ("BONDED_SCAN__ENABLED", "false"),
            ("BONDED_SCAN__PASS_RATE_INTERVAL_SECS", "1"),
        ];
        all.extend_from_slice(env);
        let s = Server::start_with(&all);
        let f = Fixture {
            s,
            tmp,
            cfg,
            digest: String::new(),
        };
        let osv_dir = f.p("osv");
        std::fs::create_dir_all(&osv_dir).unwrap();
        std::fs::write(
            osv_dir.join("a.json"),
            osv(GHSA, CVE, "PyPI", "requests", "2.32.0", HIGH),
        )
        .unwrap();
        std::fs::write(
            osv_dir.join("b.json"),
            osv(
                "GHSA-34jh-p97f-mpxf",
                "CVE-2024-37891",
                "PyPI",
                "urllib3",
                "2.2.2",
                "LOW",
            ),
        )
        .unwrap();
        f.admin(&["vulndb", "import", osv_dir.to_str().unwrap()]);
        let digest = f.push_scanned(repo, "the application");
        Fixture { digest, ..f }
    }

    fn p(&self, name: &str) -> PathBuf {
        self.tmp.path().join(name)
    }

    fn r(&self, rest: &str) -> String {
        format!("{}/{rest}", self.s.addr)
    }

    #[track_caller]
    fn admin(&self, args: &[&str]) -> String {
        let (success, out, err) = self
            .s
            .admin(args, &[("BONDED_CONFIG", self.cfg.to_str().unwrap())]);
        assert!(success, "bonded {args:?} failed:\n{out}\n{err}");
        out
    }

    /// Pushes `repo:v1`, attaches a signed SBOM (requests 2.31.0, urllib3 2.0.0) trusted in its
    /// namespace, scans it; returns the digest.
    fn push_scanned(&self, repo: &str, content: &str) -> String {
        let file = self.p("app.txt");
        std::fs::write(&file, content).unwrap();
        let target = self.r(&format!("{repo}:v1"));
        let pushed = ok(&["push", "-q", file.to_str().unwrap(), &target]);
        let digest = pushed.trim().rsplit_once('@').unwrap().1.to_string();
        let key = self.p("k");
        if !self.p("k.pem").exists() {
            ok(&["key", "generate", "--out", key.to_str().unwrap()]);
        }
        let ns = repo.split('/').next().unwrap();
        // Trusting the same key twice in one namespace is refused; that is fine here.
        let _ = Command::new(bin())
            .args([
                "trust",
                "add",
                &self.r(ns),
                "--key-set",
                "ci",
                "--key",
                self.p("k.pub.pem").to_str().unwrap(),
            ])
            .output();
        let sbom = self.p("sbom.json");
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
            self.p("k.pem").to_str().unwrap(),
        ]);
        self.admin(&["vulndb", "scan", &format!("{repo}@{digest}")]);
        digest
    }

    /// `bonded promote --dry-run`: (would pass, output).
    fn gate(&self, at: &str) -> (bool, String) {
        let out = Command::new(bin())
            .args(["promote", at, "--to", "dev", "--dry-run"])
            .output()
            .unwrap();
        (out.status.success(), text(&out))
    }

    /// Polls `/metrics` until `bonded_<name>` reads `want`, with a deadline.
    fn wait_metric(&self, name: &str, want: &str) {
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut last = String::new();
        while Instant::now() < deadline {
            let body = get_text(&self.s.url("/metrics"));
            if let Some(line) = body
                .lines()
                .find(|l| l.starts_with(&format!("bonded_{name} ")))
            {
                last = line.to_string();
                if line.split_whitespace().nth(1) == Some(want) {
                    return;
                }
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        panic!("bonded_{name} did not become {want}; last: {last:?}");
    }
}

/// The body of a GET, on a private runtime.
fn get_text(url: &str) -> String {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async { reqwest::get(url).await.unwrap().text().await.unwrap() })
}

const GATE: &str = r#"
[[promotion.gates]]
repositories = "shop/**"
environment = "dev"
vulnerabilities = { max_severity = "high" }
"#;

#[test]
fn a_waiver_clears_a_finding_for_the_gate_until_revoked_or_expired() {
    let f = Fixture::start(GATE, "shop/app", &[]);
    let at = f.r(&format!("shop/app@{}", f.digest));
    let host = f.s.addr.clone();

    // Unwaived: the gate refuses naming the finding; the pass rate counts it as failing.
    let (passed, out) = f.gate(&at);
    assert!(!passed, "{out}");
    assert!(
        out.contains(&format!(
            "1 findings at or above high: {GHSA} (requests 2.31.0, high"
        )),
        "{out}"
    );
    f.wait_metric("vuln_artifacts_scanned", "1");
    f.wait_metric("vuln_artifacts_passing", "0");
    f.wait_metric("vuln_scan_pass_ratio", "0.0");
    assert!(ok(&["waiver", "list", &host]).contains("no waivers"));

    // Waived by its CVE alias, for the whole namespace.
    let added = ok(&[
        "waiver",
        "add",
        &host,
        "--advisory",
        CVE,
        "--scope",
        "shop/**",
        "--reason",
        "we never send proxied requests",
        "--expires",
        "30d",
    ]);
    assert!(
        added.contains(&format!("[active]: {CVE} on shop/** until")),
        "{added}"
    );
    assert!(
        added.contains("by anonymous: we never send proxied requests"),
        "{added}"
    );
    assert!(
        added.contains("analysis: exploitable, response will_not_fix"),
        "{added}"
    );
    let id = added
        .split_whitespace()
        .nth(1)
        .unwrap()
        .parse::<i64>()
        .unwrap();
    let (passed, out) = f.gate(&at);
    assert!(passed, "{out}");
    assert!(out.contains("none at or above high left unwaived"), "{out}");
    assert!(
        out.contains(&format!(
            "1 waived: {GHSA} by waiver {id} (anonymous, until"
        )),
        "{out}"
    );
    f.wait_metric("vuln_artifacts_passing", "1");
    f.wait_metric("vuln_scan_pass_ratio", "1.0");

    // Scan output shows which findings are waived, by which waiver; stored findings unchanged.
    let scanned = ok(&["scan", &at]);
    assert!(
        scanned.contains(&format!("{GHSA} waived by waiver {id} (anonymous, until")),
        "{scanned}"
    );
    assert!(scanned.contains(&format!("waiver {id}")), "{scanned}");
    let admin_scan = f.admin(&[
        "vulndb",
        "scan",
        &format!("shop/app@{}", f.digest),
        "--json",
    ]);
    let v: Value = serde_json::from_str(&admin_scan).unwrap();
    let findings = v["findings"].as_array().unwrap();
    assert_eq!(findings.len(), 2, "{admin_scan}");
    assert_eq!(findings[0]["waiver"]["id"], id, "{admin_scan}");
    assert!(findings[1].get("waiver").is_none(), "{admin_scan}");

    // Listing, filtered by repository.
    let listed: Value = serde_json::from_str(&ok(&[
        "waiver",
        "list",
        &host,
        "--repository",
        "shop/app",
        "--json",
    ]))
    .unwrap();
    assert_eq!(listed["waivers"][0]["id"], id);
    assert_eq!(listed["waivers"][0]["status"], "active");
    let other: Value = serde_json::from_str(&ok(&[
        "waiver",
        "list",
        &host,
        "--repository",
        "dev/app",
        "--json",
    ]))
    .unwrap();
    assert_eq!(other["waivers"], json!([]));

    // Revoked: refused again at once; the waiver stays listed with --all.
    let revoked = ok(&["waiver", "revoke", &host, &id.to_string()]);
    assert!(
        revoked.contains("[revoked]") && revoked.contains("by anonymous"),
        "{revoked}"
    );
    let (passed, out) = f.gate(&at);
    assert!(!passed && out.contains(GHSA), "{out}");
    assert!(ok(&["waiver", "list", &host]).contains("no waivers"));
    assert!(ok(&["waiver", "list", &host, "--all"]).contains("[revoked]"));
    f.wait_metric("vuln_artifacts_passing", "0");

    // A waiver of this one artifact, expiring in 5 s: applies, then stops applying by itself.
    let pinned = ok(&[
        "waiver",
        "add",
        &host,
        "--advisory",
        GHSA,
        "--artifact",
        &format!("shop/app@{}", f.digest),
        "--package",
        "requests",
        "--reason",
        "fix ships next sprint",
        "--expires",
        "5s",
    ]);
    assert!(pinned.contains("[active]"), "{pinned}");
    let (passed, out) = f.gate(&at);
    assert!(passed, "{out}");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (passed, out) = f.gate(&at);
        if !passed {
            assert!(out.contains(GHSA), "{out}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the waiver did not expire: {out}"
        );
        std::thread::sleep(Duration::from_millis(250));
    }
    assert!(ok(&["waiver", "list", &host, "--all"]).contains("[expired]"));

    // A stale database counts as failing for the pass rate even with a waiver.
    ok(&[
        "waiver",
        "add",
        &host,
        "--advisory",
        CVE,
        "--scope",
        "shop/",
        "--reason",
        "accepted",
        "--expires",
        "2d",
    ]);
    f.wait_metric("vuln_artifacts_passing", "1");
    common::sql(&f.s.data_dir, "UPDATE vuln_db SET updated_at = 1000");
    f.wait_metric("vuln_artifacts_passing", "0");
    f.wait_metric("vuln_artifacts_scanned", "1");
}

/// The VEX document: the artifact as metadata.component, one vulnerability per finding, the
/// waived one with its analysis; valid against the CycloneDX 1.5 JSON schema.
#[test]
fn vex_export_describes_findings_and_waivers_and_validates() {
    ensure_tools();
    let f = Fixture::start("", "shop/app", &[]);
    let host = f.s.addr.clone();
    ok(&[
        "waiver",
        "add",
        &host,
        "--advisory",
        GHSA,
        "--scope",
        "shop/app",
        "--reason",
        "the vulnerable code path is never called",
        "--expires",
        "2027-01-31",
        "--state",
        "not_affected",
        "--justification",
        "code_not_reachable",
    ]);
    let out = f.p("app.vex.json");
    let said = ok(&["vex", &f.r("shop/app:v1"), "-o", out.to_str().unwrap()]);
    assert!(
        said.contains("2 vulnerabilities, 1 with an analysis from a waiver"),
        "{said}"
    );
    let doc: Value = serde_json::from_str(&std::fs::read_to_string(&out).unwrap()).unwrap();
    assert_eq!(doc["bomFormat"], "CycloneDX");
    assert_eq!(doc["specVersion"], "1.5");
    let c = &doc["metadata"]["component"];
    assert_eq!(c["bom-ref"], format!("shop/app@{}", f.digest));
    assert_eq!(c["hashes"][0]["alg"], "SHA-256");
    assert_eq!(
        c["hashes"][0]["content"],
        f.digest.strip_prefix("sha256:").unwrap()
    );
    let vulns = doc["vulnerabilities"].as_array().unwrap();
    assert_eq!(vulns.len(), 2);
    let v = &vulns[0];
    assert_eq!(v["id"], GHSA);
    assert_eq!(v["source"]["name"], "GitHub");
    assert_eq!(v["references"][0]["id"], CVE);
    assert_eq!(v["ratings"][0]["severity"], "high");
    assert_eq!(v["ratings"][0]["score"], 7.5);
    assert_eq!(v["affects"][0]["ref"], "PyPI:requests@2.31.0");
    assert!(doc["components"]
        .as_array()
        .unwrap()
        .iter()
        .any(|c| c["bom-ref"] == "PyPI:requests@2.31.0" && c["version"] == "2.31.0"));
    assert_eq!(v["analysis"]["state"], "not_affected");
    assert_eq!(v["analysis"]["justification"], "code_not_reachable");
    assert_eq!(
        v["analysis"]["detail"],
        "the vulnerable code path is never called"
    );
    let props = v["properties"].as_array().unwrap();
    let prop = |n: &str| {
        props
            .iter()
            .find(|p| p["name"] == n)
            .map(|p| p["value"].clone())
    };
    assert_eq!(prop("bonded:waiver:author"), Some(json!("anonymous")));
    assert_eq!(
        prop("bonded:waiver:expires"),
        Some(json!("2027-01-31T00:00:00Z"))
    );
    let low = &vulns[1];
    assert_eq!(low["id"], "GHSA-34jh-p97f-mpxf");
    assert_eq!(low["ratings"][0]["severity"], "low");
    assert!(low.get("analysis").is_none(), "{low}");

    // The CycloneDX library's strict JSON schema validation (1.5) accepts it.
    let check = Command::new("python3")
        .arg("-c")
        .arg(
            "import sys\n\
             from cyclonedx.validation.json import JsonStrictValidator\n\
             from cyclonedx.schema import SchemaVersion\n\
             e = JsonStrictValidator(SchemaVersion.V1_5).validate_str(open(sys.argv[1]).read())\n\
             print(e.data.message if e else 'valid')\n\
             sys.exit(1 if e else 0)\n",
        )
        .arg(&out)
        .output()
        .unwrap();
    assert!(
        check.status.success(),
        "not valid CycloneDX 1.5: {}",
        text(&check)
    );
    // …and would refuse a document with a state outside the enum, so the check can fail.
    let mut broken = doc.clone();
    broken["vulnerabilities"][0]["analysis"]["state"] = json!("accepted");
    let bad = f.p("broken.json");
    std::fs::write(&bad, broken.to_string()).unwrap();
    let check = Command::new("python3")
        .arg("-c")
        .arg(
            "import sys\n\
             from cyclonedx.validation.json import JsonStrictValidator\n\
             from cyclonedx.schema import SchemaVersion\n\
             e = JsonStrictValidator(SchemaVersion.V1_5).validate_str(open(sys.argv[1]).read())\n\
             sys.exit(1 if e else 0)\n",
        )
        .arg(&bad)
        .output()
        .unwrap();
    assert!(
        !check.status.success(),
        "the validator accepted a bad state"
    );

    // Over HTTP: the CycloneDX media type; an unscanned artifact is 404 NOT_SCANNED.
    let (status, headers, _) = http(
        "GET",
        &f.s.url("/api/v1/vulns/vex?repository=shop/app&reference=v1"),
        None,
        None,
    );
    assert_eq!(status, 200);
    assert!(headers
        .iter()
        .any(|(k, v)| k == "content-type" && v == "application/vnd.cyclonedx+json"));
    let file = f.p("other.txt");
    std::fs::write(&file, "unscanned").unwrap();
    ok(&["push", "-q", file.to_str().unwrap(), &f.r("shop/other:v1")]);
    let (status, _, body) = http(
        "GET",
        &f.s.url("/api/v1/vulns/vex?repository=shop/other&reference=v1"),
        None,
        None,
    );
    assert_eq!(status, 404);
    assert_eq!(body["error"]["code"], "NOT_SCANNED");
    assert!(fails(&["vex", &f.r("shop/other:v1")]).contains("NOT_SCANNED"));
}

const POLICY: &str = r#"
[[policy]]
name = "shop-vulns"
repositories = "shop/**"
on = ["pull-by-tag", "pull-by-digest"]
vulnerabilities = { max_severity = "high", max_db_age_days = 5 }

[[policy]]
name = "beta-vulns"
repositories = "beta/**"
mode = "warn"
vulnerabilities = { max_severity = "high" }
"#;

fn skopeo_inspect(reference: &str) -> (bool, String) {
    let out = Command::new("skopeo")
        .args([
            "--insecure-policy",
            "inspect",
            "--raw",
            "--tls-verify=false",
        ])
        .arg(format!("docker://{reference}"))
        .output()
        .unwrap();
    (out.status.success(), text(&out))
}

#[test]
fn pull_policy_refuses_vulnerable_artifacts_until_waived_and_warn_mode_lets_them_through() {
    ensure_tools();
    let f = Fixture::start(POLICY, "shop/app", &[]);
    let host = f.s.addr.clone();

    // Enforced: skopeo and the CLI are refused; the registry says DENIED naming the finding.
    let (pulled, out) = skopeo_inspect(&f.r("shop/app:v1"));
    assert!(!pulled, "{out}");
    assert!(out.contains("shop-vulns"), "skopeo said: {out}");
    let (status, _, body) = http("GET", &f.s.url("/v2/shop/app/manifests/v1"), None, None);
    assert_eq!(status, 403);
    assert_eq!(body["errors"][0]["code"], "DENIED");
    let msg = body["errors"][0]["message"].as_str().unwrap();
    assert!(
        msg.contains("policy \"shop-vulns\" refuses pull-by-tag"),
        "{msg}"
    );
    assert!(
        msg.contains(&format!(
            "1 findings at or above high: {GHSA} (requests 2.31.0, high"
        )),
        "{msg}"
    );
    let dir = f.p("pulled");
    let said = fails(&[
        "pull",
        "-q",
        &f.r("shop/app:v1"),
        "-o",
        dir.to_str().unwrap(),
    ]);
    assert!(said.contains("shop-vulns"), "{said}");
    let (status, _, _) = http(
        "GET",
        &f.s.url(&format!("/v2/shop/app/manifests/{}", f.digest)),
        None,
        None,
    );
    assert_eq!(status, 403, "pull by digest is covered too");

    // Waived: both let through.
    ok(&[
        "waiver",
        "add",
        &host,
        "--advisory",
        GHSA,
        "--scope",
        "shop/**",
        "--reason",
        "accepted for the release",
        "--expires",
        "7d",
    ]);
    let (pulled, out) = skopeo_inspect(&f.r("shop/app:v1"));
    assert!(pulled, "{out}");
    ok(&[
        "pull",
        "-q",
        &f.r("shop/app:v1"),
        "-o",
        dir.to_str().unwrap(),
    ]);

    // A stale database refuses again, saying so.
    common::sql(&f.s.data_dir, "UPDATE vuln_db SET updated_at = 1000");
    let (status, _, body) = http("GET", &f.s.url("/v2/shop/app/manifests/v1"), None, None);
    assert_eq!(status, 403);
    let msg = body["errors"][0]["message"].as_str().unwrap();
    assert!(msg.contains("import a fresh export"), "{msg}");

    // Warn mode: a vulnerable artifact is served, with the reason in a header.
    f.admin(&["vulndb", "import", f.p("osv").to_str().unwrap()]);
    f.push_scanned("beta/app", "beta application");
    let (pulled, out) = skopeo_inspect(&f.r("beta/app:v1"));
    assert!(pulled, "{out}");
    let (status, headers, _) = http("GET", &f.s.url("/v2/beta/app/manifests/v1"), None, None);
    assert_eq!(status, 200);
    let warning = headers
        .iter()
        .find(|(k, _)| k == "bonded-policy-warning")
        .map(|(_, v)| v.clone())
        .expect("a Bonded-Policy-Warning header");
    assert!(
        warning.contains("beta-vulns") && warning.contains(GHSA),
        "{warning}"
    );
}

/// `bonded ARGS` with its credentials in `home`.
fn as_user(home: &Path, args: &[&str], stdin: Option<&str>) -> Output {
    use std::io::Write;
    let mut child = Command::new(bin())
        .args(args)
        .env("XDG_CONFIG_HOME", home)
        .env_remove("BONDED_USERNAME")
        .env_remove("BONDED_PASSWORD")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    if let Some(s) = stdin {
        input.write_all(s.as_bytes()).unwrap();
    }
    drop(input);
    child.wait_with_output().unwrap()
}

#[test]
fn only_maintainers_add_and_revoke_waivers_and_the_audit_log_says_who() {
    let s = Server::start_auth(&[("BONDED_AUDIT__ENABLED", "true")]);
    let admin = Some(("admin", common::ADMIN_PASSWORD));
    for (name, role) in [("dora", "developer"), ("max", "maintainer")] {
        let pw = format!("{name}-password-1");
        let (st, _, b) = http(
            "POST",
            &s.url("/api/v1/users"),
            Some(json!({"name": name, "password": pw})),
            admin,
        );
        assert!(st < 300, "{b}");
        let (st, _, b) = http(
            "POST",
            &s.url("/api/v1/grants"),
            Some(json!({"namespace": "shop/", "subject": name, "role": role})),
            admin,
        );
        assert!(st < 300, "{b}");
    }
    let homes = tempfile::tempdir().unwrap();
    let login = |name: &str| {
        let home = homes.path().join(name);
        std::fs::create_dir_all(&home).unwrap();
        let out = as_user(
            &home,
            &["login", &s.addr, "-u", name, "--password-stdin"],
            Some(&format!("{name}-password-1\n")),
        );
        assert!(out.status.success(), "{}", text(&out));
        home
    };
    let (dora, max) = (login("dora"), login("max"));
    let add = |home: &Path, scope: &str| {
        as_user(
            home,
            &[
                "waiver",
                "add",
                &s.addr,
                "--advisory",
                CVE,
                "--scope",
                scope,
                "--reason",
                "accepted",
                "--expires",
                "30d",
            ],
            None,
        )
    };

    // A developer may not; a maintainer may, on its namespace only.
    let out = add(&dora, "shop/**");
    assert!(!out.status.success());
    assert!(
        text(&out).contains("FORBIDDEN") && text(&out).contains("maintainer"),
        "{}",
        text(&out)
    );
    let out = add(&max, "other/**");
    assert!(!out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("FORBIDDEN"), "{}", text(&out));
    let out = add(&max, "shop/**");
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("by max: accepted"), "{}", text(&out));
    let id = text(&out).split_whitespace().nth(1).unwrap().to_string();

    // Both may list (pull); only the maintainer may revoke.
    let out = as_user(
        &dora,
        &["waiver", "list", &s.addr, "--repository", "shop/app"],
        None,
    );
    assert!(
        text(&out).contains(&format!("waiver {id} [active]")),
        "{}",
        text(&out)
    );
    let out = as_user(&dora, &["waiver", "revoke", &s.addr, &id], None);
    assert!(
        !out.status.success() && text(&out).contains("FORBIDDEN"),
        "{}",
        text(&out)
    );
    let (st, _, _) = http("GET", &s.url("/api/v1/vulns/waivers"), None, None);
    assert_eq!(st, 401);
    let out = as_user(&max, &["waiver", "revoke", &s.addr, &id], None);
    assert!(
        text(&out).contains("[revoked]") && text(&out).contains("by max"),
        "{}",
        text(&out)
    );

    // The audit log records both, by whom.
    for action in ["waiver.add", "waiver.revoke"] {
        let (st, _, log) = http(
            "GET",
            &s.url(&format!("/api/v1/audit?action={action}")),
            None,
            admin,
        );
        assert_eq!(st, 200, "{log}");
        let text = log.to_string();
        assert!(text.contains("\"actor\":\"max\""), "{text}");
        assert!(
            text.contains(&format!("waiver {id}: {CVE} on shop/**")),
            "{text}"
        );
    }
}

#[test]
fn bad_waiver_input_gets_clear_errors() {
    let s = Server::start_with(&[("BONDED_SCAN__ENABLED", "false")]);
    let url = s.url("/api/v1/vulns/waivers");
    let base = json!({
        "advisory": CVE, "scope": "shop/**", "reason": "accepted", "expires": "30d",
    });
    let with = |k: &str, v: Value| {
        let mut b = base.clone();
        b[k] = v;
        b
    };
    for (body, want) in [
        (
            with("advisory", json!("requests")),
            "is not of the form PREFIX-ID",
        ),
        (with("advisory", json!("CVE-2024")), "is not a CVE id"),
        (with("reason", json!("  ")), "reason is required"),
        (with("expires", json!("2020-01-01")), "is not in the future"),
        (with("expires", json!("400d")), "more than a year ahead"),
        (with("expires", json!("soon")), "is not understood"),
        (with("scope", json!("Shop/**")), "scope"),
        (with("scope", json!("shop/app@sha256:abc")), "digest"),
        (
            with("state", json!("accepted")),
            "not a CycloneDX analysis state",
        ),
        (
            with("justification", json!("code_not_reachable")),
            "goes with state not_affected",
        ),
        (
            with("responses", json!(["ignore"])),
            "not a CycloneDX response",
        ),
    ] {
        let (status, _, e) = http("POST", &url, Some(body.clone()), None);
        assert_eq!(status, 400, "{body}: {e}");
        assert_eq!(e["error"]["code"], "INVALID_WAIVER", "{body}: {e}");
        let msg = e["error"]["message"].as_str().unwrap();
        assert!(msg.contains(want), "{body}: {msg}");
    }
    // Missing fields and unknown ones are refused by the body's shape.
    let (status, _, e) = http("POST", &url, Some(json!({"advisory": CVE})), None);
    assert_eq!(
        (status, e["error"]["code"].as_str()),
        (400, Some("INVALID_REQUEST"))
    );
    let (status, _, e) = http("POST", &url, Some(with("colour", json!("red"))), None);
    assert_eq!(status, 400, "{e}");
    // Revoking nothing.
    let (status, _, e) = http("DELETE", &format!("{url}/999"), None, None);
    assert_eq!(
        (status, e["error"]["code"].as_str()),
        (404, Some("NOT_FOUND"))
    );
    let (status, _, e) = http("DELETE", &format!("{url}/abc"), None, None);
    assert_eq!(
        (status, e["error"]["code"].as_str()),
        (400, Some("INVALID_WAIVER"))
    );
    // The CLI shows the message.
    let said = fails(&[
        "waiver",
        "add",
        &s.addr,
        "--advisory",
        CVE,
        "--scope",
        "shop/**",
        "--reason",
        "x",
        "--expires",
        "2020-01-01",
    ]);
    assert!(said.contains("is not in the future"), "{said}");
    let said = fails(&[
        "waiver",
        "add",
        &s.addr,
        "--advisory",
        CVE,
        "--artifact",
        "shop/app",
        "--reason",
        "x",
        "--expires",
        "1d",
    ]);
    assert!(said.contains("must be repo@sha256"), "{said}");
}
