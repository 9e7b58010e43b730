//! Real clients against an auth-enabled `bonded serve`: skopeo with `--dest-creds`/`--src-creds`,
//! the oras Python SDK logging in, and bonded's own CLI (`login`, the token dance in client
//! commands, `user`/`robot`/`grant` management, `audit` query and `verify`, including rows edited,
//! reordered and removed behind bonded's back with sqlite3/psql).

mod common;

use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;

use common::{interop_dir, succeeded as ok, Server, ADMIN_PASSWORD};
use serde_json::Value;

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

fn run(cmd: &mut Command, stdin: Option<&str>) -> Output {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {cmd:?}: {e}"));
    let mut input = child.stdin.take().unwrap();
    if let Some(s) = stdin {
        input.write_all(s.as_bytes()).unwrap();
    }
    drop(input);
    child.wait_with_output().unwrap()
}

/// `bonded ARGS` with its config dir in `home`.
fn bonded(home: &Path, args: &[&str], stdin: Option<&str>, env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(common::bin());
    cmd.args(args)
        .env("XDG_CONFIG_HOME", home)
        .env_remove("BONDED_USERNAME")
        .env_remove("BONDED_PASSWORD");
    for (k, v) in env {
        cmd.env(k, v);
    }
    run(&mut cmd, stdin)
}

fn skopeo(args: &[&str]) -> Output {
    let mut cmd = Command::new("skopeo");
    cmd.arg("--insecure-policy").args(args);
    run(&mut cmd, None)
}

#[test]
fn skopeo_copies_in_and_out_with_credentials() {
    ensure_tools();
    let server = Server::start_auth(&[]);
    let tmp = tempfile::tempdir().unwrap();
    let layout = tmp.path().join("layout");
    let mut mk = Command::new("python3");
    mk.arg(interop_dir().join("make_oci_layout.py"))
        .arg(&layout);
    ok(&run(&mut mk, None), "make_oci_layout.py");
    let admin = format!("admin:{ADMIN_PASSWORD}");
    let remote = format!("docker://{}/team-a/app:v1", server.addr);
    let src = format!("oci:{}:v1", layout.display());

    // Without credentials, and with wrong ones, the push is refused.
    let out = skopeo(&["copy", "--dest-tls-verify=false", &src, &remote]);
    assert!(!out.status.success(), "skopeo pushed without credentials");
    let out = skopeo(&[
        "copy",
        "--dest-tls-verify=false",
        "--dest-creds",
        "admin:wrong-password",
        &src,
        &remote,
    ]);
    assert!(!out.status.success(), "skopeo pushed with a wrong password");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!err.contains(ADMIN_PASSWORD));

    ok(
        &skopeo(&[
            "copy",
            "--dest-tls-verify=false",
            "--dest-creds",
            &admin,
            &src,
            &remote,
        ]),
        "skopeo copy --dest-creds",
    );
    let back = format!("oci:{}:v1", tmp.path().join("back").display());
    ok(
        &skopeo(&[
            "copy",
            "--src-tls-verify=false",
            "--src-creds",
            &admin,
            &remote,
            &back,
        ]),
        "skopeo copy --src-creds",
    );
    let raw = ok(
        &skopeo(&[
            "inspect",
            "--raw",
            "--tls-verify=false",
            "--creds",
            &admin,
            &remote,
        ]),
        "skopeo inspect",
    );
    let pushed: Value = serde_json::from_str(&raw).unwrap();
    assert_eq!(pushed["schemaVersion"], 2);
    // Registry to registry inside bonded: skopeo may try a cross-repository mount.
    let copy = format!("docker://{}/team-a/copy:v1", server.addr);
    ok(
        &skopeo(&[
            "copy",
            "--src-tls-verify=false",
            "--dest-tls-verify=false",
            "--src-creds",
            &admin,
            "--dest-creds",
            &admin,
            &remote,
            &copy,
        ]),
        "skopeo registry-to-registry copy",
    );
}

#[test]
fn oras_sdk_logs_in_pushes_and_pulls() {
    ensure_tools();
    let server = Server::start_auth(&[]);
    let tmp = tempfile::tempdir().unwrap();
    let mut cmd = Command::new("python3");
    cmd.arg(interop_dir().join("oras_auth.py"))
        .arg(&server.addr)
        .arg("ml/model")
        .arg("admin")
        .arg(ADMIN_PASSWORD)
        .arg(tmp.path());
    let out = ok(&run(&mut cmd, None), "oras_auth.py");
    assert_eq!(out.trim(), "ok");
}

fn audit_verify(home: &Path, addr: &str) -> (bool, String) {
    let out = bonded(home, &["audit", "verify", addr], None, &[]);
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

#[test]
fn cli_logs_in_manages_accounts_and_detects_audit_tampering() {
    let server = Server::start_auth(&[]);
    let addr = server.addr.clone();
    let home = tempfile::tempdir().unwrap();
    let h = home.path();

    // A wrong password is refused and nothing is stored.
    let out = bonded(
        h,
        &["login", &addr, "-u", "admin", "--password-stdin"],
        Some("nope\n"),
        &[],
    );
    assert!(
        !out.status.success(),
        "login with a wrong password succeeded"
    );
    assert!(!h.join("bonded/credentials.json").exists());
    let out = bonded(
        h,
        &["login", &addr, "-u", "admin", "--password-stdin"],
        Some(&format!("{ADMIN_PASSWORD}\n")),
        &[],
    );
    assert!(ok(&out, "bonded login").contains("Login succeeded"));
    let cred_file = h.join("bonded/credentials.json");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&cred_file).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "credentials file mode");
    }

    // Accounts and grants through the CLI.
    ok(
        &bonded(
            h,
            &["user", "create", &addr, "alice"],
            Some("alice-password\n"),
            &[],
        ),
        "user create",
    );
    assert!(ok(&bonded(h, &["user", "list", &addr], None, &[]), "user list").contains("alice"));
    let secret = ok(
        &bonded(
            h,
            &["robot", "create", &addr, "ci", "--expires-in-days", "1"],
            None,
            &[],
        ),
        "robot create",
    )
    .trim()
    .to_string();
    assert!(secret.len() >= 32, "robot secret: {secret:?}");
    ok(
        &bonded(
            h,
            &["grant", "add", &addr, "team-a/", "ci", "developer"],
            None,
            &[],
        ),
        "grant add",
    );
    let grants = ok(
        &bonded(h, &["grant", "list", &addr], None, &[]),
        "grant list",
    );
    assert!(grants.contains("team-a/\tci\tdeveloper"), "{grants}");

    // The robot pushes and pulls in its namespace (bearer token dance), and nowhere else.
    let ci_env = [
        ("BONDED_USERNAME", "ci"),
        ("BONDED_PASSWORD", secret.as_str()),
    ];
    let file = h.join("model.bin");
    std::fs::write(&file, b"weights\n".repeat(1000)).unwrap();
    let f = file.to_str().unwrap();
    ok(
        &bonded(
            h,
            &["push", f, &format!("{addr}/team-a/app:v1")],
            None,
            &ci_env,
        ),
        "robot push",
    );
    let out_dir = h.join("out");
    ok(
        &bonded(
            h,
            &[
                "pull",
                &format!("{addr}/team-a/app:v1"),
                "-o",
                out_dir.to_str().unwrap(),
            ],
            None,
            &ci_env,
        ),
        "robot pull",
    );
    assert_eq!(
        std::fs::read(out_dir.join("model.bin")).unwrap(),
        b"weights\n".repeat(1000)
    );
    let out = bonded(
        h,
        &["push", f, &format!("{addr}/team-b/app:v1")],
        None,
        &ci_env,
    );
    assert!(!out.status.success(), "robot pushed outside its namespace");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("DENIED"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The admin (stored credentials) lists repositories and tags.
    assert!(ok(&bonded(h, &["ls", &addr], None, &[]), "ls").contains("team-a/app"));
    assert!(ok(
        &bonded(h, &["tags", &format!("{addr}/team-a/app")], None, &[]),
        "tags"
    )
    .contains("v1"));

    // Revocation takes effect at once.
    ok(
        &bonded(h, &["robot", "revoke", &addr, "ci"], None, &[]),
        "robot revoke",
    );
    let out = bonded(
        h,
        &["push", f, &format!("{addr}/team-a/app:v2")],
        None,
        &ci_env,
    );
    assert!(!out.status.success(), "a revoked robot pushed");
    let robots = ok(
        &bonded(h, &["robot", "list", &addr], None, &[]),
        "robot list",
    );
    assert!(robots.contains("ci\trevoked"), "{robots}");

    // The audit log has the push, the login failures, the grant; pulls are not recorded.
    let jsonl = ok(
        &bonded(
            h,
            &[
                "audit",
                "query",
                &addr,
                "--repository",
                "team-a/app",
                "--jsonl",
            ],
            None,
            &[],
        ),
        "audit query",
    );
    let entries: Vec<Value> = jsonl
        .lines()
        .map(|l| serde_json::from_str(l).expect("one JSON object per line"))
        .collect();
    assert!(
        entries.iter().any(|e| e["actor"] == "ci"
            && e["action"] == "push"
            && e["target"] == "v1"
            && e["outcome"] == "ok"
            && e["detail"].as_str().unwrap_or("").starts_with("sha256:")),
        "{jsonl}"
    );
    assert!(
        !entries.iter().any(|e| e["action"] == "pull"),
        "pulls are recorded only when configured: {jsonl}"
    );
    let all = ok(
        &bonded(h, &["audit", "query", &addr, "--jsonl"], None, &[]),
        "audit all",
    );
    for (action, outcome) in [
        ("login", "failed"),
        ("account.create", "ok"),
        ("grant.put", "ok"),
        ("account.revoke", "ok"),
        ("token", "ok"),
    ] {
        assert!(
            all.lines().any(|l| {
                let e: Value = serde_json::from_str(l).unwrap();
                e["action"] == action && e["outcome"] == outcome
            }),
            "no {action}/{outcome} entry in\n{all}"
        );
    }
    assert!(
        !all.contains(&secret) && !all.contains(ADMIN_PASSWORD),
        "secrets in the audit log"
    );
    let by_actor = ok(
        &bonded(
            h,
            &[
                "audit", "query", &addr, "--actor", "ci", "--action", "push", "--since", "1h",
            ],
            None,
            &[],
        ),
        "audit query by actor",
    );
    assert!(
        by_actor.lines().count() >= 1 && by_actor.lines().all(|l| l.contains(" ci ")),
        "{by_actor}"
    );

    // Intact, then tampered three ways behind bonded's back; each is detected.
    let (intact, report) = audit_verify(h, &addr);
    assert!(intact, "{report}");
    let data = &server.data_dir;
    common::sql(data, "UPDATE audit_log SET actor = 'mallory' WHERE seq = 3");
    let (intact, report) = audit_verify(h, &addr);
    assert!(
        !intact && report.contains("entry 3 was altered"),
        "edit: {report}"
    );
    // Putting it back makes the chain whole again: verification is about content, not noise.
    let original: String = {
        let e: Value = serde_json::from_str(all.lines().nth(2).unwrap()).unwrap();
        e["actor"].as_str().unwrap().to_string()
    };
    common::sql(
        data,
        &format!("UPDATE audit_log SET actor = '{original}' WHERE seq = 3"),
    );
    let (intact, report) = audit_verify(h, &addr);
    assert!(intact, "restored: {report}");
    common::sql(
        data,
        "UPDATE audit_log SET seq = -1 WHERE seq = 4; UPDATE audit_log SET seq = 4 WHERE seq = 5; \
         UPDATE audit_log SET seq = 5 WHERE seq = -1",
    );
    let (intact, report) = audit_verify(h, &addr);
    assert!(!intact && report.contains("entry 4"), "reorder: {report}");
    common::sql(
        data,
        "UPDATE audit_log SET seq = -1 WHERE seq = 4; UPDATE audit_log SET seq = 4 WHERE seq = 5; \
         UPDATE audit_log SET seq = 5 WHERE seq = -1",
    );
    assert!(audit_verify(h, &addr).0, "swapped back");
    common::sql(data, "DELETE FROM audit_log WHERE seq = 6");
    let (intact, report) = audit_verify(h, &addr);
    assert!(!intact && report.contains("missing"), "removal: {report}");

    // Logout forgets the credentials; the management API then refuses.
    ok(&bonded(h, &["logout", &addr], None, &[]), "logout");
    let out = bonded(h, &["user", "list", &addr], None, &[]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("UNAUTHENTICATED"));
}

#[test]
fn pulls_are_audited_when_configured() {
    let server = Server::start_auth(&[("BONDED_AUDIT__PULLS", "true")]);
    let home = tempfile::tempdir().unwrap();
    let h = home.path();
    let env = [
        ("BONDED_USERNAME", "admin"),
        ("BONDED_PASSWORD", ADMIN_PASSWORD),
    ];
    let file = h.join("a.txt");
    std::fs::write(&file, b"hello").unwrap();
    let target = format!("{}/team/x:v1", server.addr);
    ok(
        &bonded(h, &["push", file.to_str().unwrap(), &target], None, &env),
        "push",
    );
    let out = h.join("out");
    ok(
        &bonded(
            h,
            &["pull", &target, "-o", out.to_str().unwrap()],
            None,
            &env,
        ),
        "pull",
    );
    let log = ok(
        &bonded(
            h,
            &[
                "audit",
                "query",
                &server.addr,
                "--action",
                "pull",
                "--jsonl",
            ],
            None,
            &env,
        ),
        "audit query",
    );
    let e: Value = serde_json::from_str(log.lines().next().expect("a pull entry")).unwrap();
    assert_eq!(
        (e["actor"].as_str(), e["repository"].as_str()),
        (Some("admin"), Some("team/x"))
    );
}
