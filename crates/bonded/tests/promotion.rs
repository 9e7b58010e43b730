//! Promotion end to end: three image versions pushed with skopeo and moved through
//! dev → staging → prod by `bonded promote` with each gate failing and then passing, `:prod`
//! pulled with skopeo, one-call rollback, history, the promotion attestation verified with public
//! in-toto tooling, deployment records (M3), canary verdicts (samples, and a real Prometheus
//! scraping bonded), approvals with access control on, and concurrent promotions.
//!
//! Servers run on the backend pair `BONDED_TEST_BACKEND` names.

mod common;

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use common::{bin, interop_dir, verified_dsse, Server, ADMIN_PASSWORD};
use serde_json::{json, Value};
use sha2::{Digest as _, Sha256};

const CONFIG: &str = r#"
[promotion]
keep_history = 2

[[promotion.gates]]
repositories = "shop/**"
environment = "staging"
previous = true
signature = { key_set = "release" }

[[promotion.gates]]
repositories = "shop/**"
environment = "prod"
previous = true
canary = true
metrics = ["error_budget >= 0.5"]

[[promotion.gates]]
repositories = "team/**"
environment = "prod"
approvals = { count = 2, role = "maintainer" }

[[promotion.order]]
repositories = "ml/**"
environments = ["challenger", "champion"]

[[promotion.gates]]
repositories = "ml/**"
environment = "champion"
metrics = ["accuracy >= 0.9", "accuracy >= current - 1%"]
"#;

struct Env {
    server: Server,
    dir: tempfile::TempDir,
}

impl Env {
    fn start(extra: &str, env: &[(&str, &str)]) -> Env {
        Env::start_config(&format!("{CONFIG}\n{extra}"), env)
    }
    fn start_config(config: &str, env: &[(&str, &str)]) -> Env {
        let dir = tempfile::tempdir().unwrap();
        let cfg = dir.path().join("bonded.toml");
        std::fs::write(&cfg, config).unwrap();
        let mut all = vec![("BONDED_CONFIG", cfg.to_str().unwrap())];
        all.extend_from_slice(env);
        let server = Server::start_with(&all);
        Env { server, dir }
    }
    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
    fn r(&self, rest: &str) -> String {
        format!("{}/{rest}", self.server.addr)
    }
    /// Builds a distinct image per `platforms` value and copies it to `target` with skopeo;
    /// returns the pushed manifest's digest.
    fn skopeo_push(&self, platforms: Option<&str>, target: &str) -> String {
        let layout = self.path(&format!("layout-{}", platforms.unwrap_or("single")));
        let mut cmd = Command::new("python3");
        cmd.arg(interop_dir().join("make_oci_layout.py"))
            .arg(&layout);
        if let Some(p) = platforms {
            cmd.args(["--platforms", p]);
        }
        let o = cmd.output().unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let summary: Value = serde_json::from_slice(&o.stdout).unwrap();
        let o = skopeo(&[
            "copy",
            "--all",
            "--dest-tls-verify=false",
            &format!("oci:{}:v1", layout.display()),
            &format!("docker://{}", self.r(target)),
        ]);
        assert!(o.0, "skopeo copy to {target}: {}", o.1);
        summary["top"]["digest"].as_str().unwrap().to_string()
    }
    /// The digest skopeo sees at `repo:tag` (the sha256 of the raw manifest).
    fn skopeo_digest(&self, repo_tag: &str) -> String {
        let o = Command::new("skopeo")
            .args([
                "--insecure-policy",
                "inspect",
                "--raw",
                "--tls-verify=false",
            ])
            .arg(format!("docker://{}", self.r(repo_tag)))
            .output()
            .unwrap();
        assert!(
            o.status.success(),
            "skopeo inspect {repo_tag}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        sha256(&o.stdout)
    }
    fn canary_file(&self, name: &str, body: &Value) -> String {
        let p = self.path(name);
        std::fs::write(&p, body.to_string()).unwrap();
        p.to_str().unwrap().to_string()
    }
}

fn sha256(b: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(b)))
}

fn skopeo(args: &[&str]) -> (bool, String) {
    let o = Command::new("skopeo")
        .arg("--insecure-policy")
        .args(args)
        .output()
        .expect("run skopeo (scripts/install-test-tools.sh installs it)");
    (
        o.status.success(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

fn bonded(args: &[&str]) -> (bool, String) {
    let out = Command::new(bin()).args(args).output().expect("run bonded");
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

fn ok(args: &[&str]) -> String {
    let (success, out) = bonded(args);
    assert!(success, "bonded {args:?} failed:\n{out}");
    out
}

fn fails(args: &[&str]) -> String {
    let (success, out) = bonded(args);
    assert!(!success, "bonded {args:?} should have failed:\n{out}");
    out
}

/// Blocking HTTP: (status, body).
fn http(method: &str, url: &str, basic: Option<(&str, &str)>, body: Option<Value>) -> (u16, Value) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let c = reqwest::Client::new();
        let mut req = c.request(reqwest::Method::from_bytes(method.as_bytes()).unwrap(), url);
        if let Some((u, p)) = basic {
            req = req.basic_auth(u, Some(p));
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    })
}

/// Deterministic noise in [0, 1).
fn noise(seed: u64, n: usize) -> Vec<f64> {
    let mut s = seed;
    (0..n)
        .map(|_| {
            s = s
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            (s >> 11) as f64 / (1u64 << 53) as f64
        })
        .collect()
}

/// Error-rate samples: baseline around 1 %, canary around `canary_level`.
fn error_rates(canary_level: f64, seed: u64) -> Value {
    let base: Vec<f64> = noise(seed, 50).iter().map(|x| 0.01 + 0.002 * x).collect();
    let can: Vec<f64> = noise(seed + 1, 50)
        .iter()
        .map(|x| canary_level + 0.002 * x)
        .collect();
    json!({ "metrics": [{ "name": "error_rate", "direction": "increase", "baseline": base, "canary": can }] })
}

fn generate_key(env: &Env) -> (String, String) {
    let prefix = env.path("release");
    let out = ok(&[
        "key",
        "generate",
        "--algorithm",
        "ed25519",
        "--out",
        prefix.to_str().unwrap(),
    ]);
    let _ = out;
    (
        env.path("release.pem").to_str().unwrap().to_string(),
        env.path("release.pub.pem").to_str().unwrap().to_string(),
    )
}

#[test]
fn images_move_through_gated_environments_pull_with_skopeo_and_roll_back() {
    let env = Env::start("", &[]);
    // Three versions of shop/web, with a recorded evaluation metric on none of them (skopeo
    // pushes plain images); the prod gate's metric is checked and named.
    let v1 = env.skopeo_push(None, "shop/web:v1");
    let v2 = env.skopeo_push(Some("amd64"), "shop/web:v2");
    let v3 = env.skopeo_push(Some("amd64,arm64"), "shop/web:v3");
    assert!(v1 != v2 && v2 != v3);
    let at = |d: &str| env.r(&format!("shop/web@{d}"));

    // The environment tag is not a plain tag: a push to :prod is refused with DENIED.
    let layout = env.path("layout-single");
    let (pushed, err) = skopeo(&[
        "copy",
        "--dest-tls-verify=false",
        &format!("oci:{}:v1", layout.display()),
        &format!("docker://{}", env.r("shop/web:prod")),
    ]);
    assert!(!pushed);
    assert!(err.contains("environment"), "skopeo said: {err}");

    // Staging needs the previous environment and a release signature: both named on refusal.
    let refused = fails(&["promote", &at(&v1), "--to", "staging"]);
    assert!(refused.contains("POLICY_VIOLATION"), "{refused}");
    assert!(refused.contains("never in dev"), "{refused}");
    assert!(refused.contains("key set \"release\""), "{refused}");
    // A dry run shows each gate without moving anything.
    let dry = fails(&["promote", &at(&v1), "--to", "staging", "--dry-run"]);
    assert!(
        dry.contains("would be refused") && dry.contains("[FAIL] previous"),
        "{dry}"
    );

    let out = ok(&["promote", &at(&v1), "--to", "dev", "--note", "first build"]);
    assert!(out.contains("promoted"), "{out}");
    let refused = fails(&["promote", &at(&v1), "--to", "staging"]);
    assert!(!refused.contains("never in dev"), "{refused}");
    assert!(refused.contains("signature"), "{refused}");

    // Sign with a trusted key: staging accepts it.
    let (private, public) = generate_key(&env);
    ok(&[
        "trust",
        "add",
        &env.r("shop"),
        "--key-set",
        "release",
        "--key",
        &public,
    ]);
    let sign = |d: &str| ok(&["sign", &at(d), "--key", &private]);
    sign(&v1);
    let out = ok(&["promote", &at(&v1), "--to", "staging"]);
    assert!(out.contains("[pass] signature"), "{out}");
    assert!(out.contains("attestation sha256:"), "{out}");

    // Prod: the canary gate and the metric gate fail until a verdict and a metric exist. The
    // metric is absent on skopeo-pushed images, so prod's metric gate fails for v1: the refusal
    // names it. (The `ml/**` test below covers metrics that pass.)
    let refused = fails(&["promote", &at(&v1), "--to", "prod"]);
    assert!(refused.contains("no canary verdict"), "{refused}");
    assert!(refused.contains("error_budget"), "{refused}");
}

#[test]
fn prod_is_pulled_by_skopeo_rolled_back_in_one_call_and_protected_from_deletion() {
    // Same gates without prod's metric rule, so artifacts can reach prod.
    let env = Env::start_config(
        &CONFIG.replace("metrics = [\"error_budget >= 0.5\"]\n", ""),
        &[],
    );
    let v1 = env.skopeo_push(None, "shop/web:v1");
    let v2 = env.skopeo_push(Some("amd64"), "shop/web:v2");
    let v3 = env.skopeo_push(Some("amd64,arm64"), "shop/web:v3");
    let at = |d: &str| env.r(&format!("shop/web@{d}"));
    let (private, public) = generate_key(&env);
    ok(&[
        "trust",
        "add",
        &env.r("shop"),
        "--key-set",
        "release",
        "--key",
        &public,
    ]);

    let to_prod = |d: &str, canary_level: f64, seed: u64| -> (bool, String) {
        ok(&["promote", &at(d), "--to", "dev"]);
        ok(&["sign", &at(d), "--key", &private]);
        ok(&["promote", &at(d), "--to", "staging"]);
        let samples = env.canary_file(
            &format!("canary-{seed}.json"),
            &error_rates(canary_level, seed),
        );
        let (_, verdict) = bonded(&["canary", &at(d), "--env", "staging", "--samples", &samples]);
        let (promoted, out) = bonded(&["promote", &at(d), "--to", "prod"]);
        (promoted, format!("{verdict}\n{out}"))
    };
    // v1 and v2: noise-only canaries pass, and they reach prod.
    let (promoted, out) = to_prod(&v1, 0.01, 10);
    assert!(promoted, "{out}");
    assert!(out.contains("verdict pass"), "{out}");
    assert_eq!(env.skopeo_digest("shop/web:prod"), v1);
    let (promoted, out) = to_prod(&v2, 0.01, 20);
    assert!(promoted, "{out}");
    assert_eq!(env.skopeo_digest("shop/web:prod"), v2);
    // A full skopeo pull of :prod gets v2's image.
    let pulled = env.path("pulled");
    let (copied, err) = skopeo(&[
        "copy",
        "--all",
        "--src-tls-verify=false",
        &format!("docker://{}", env.r("shop/web:prod")),
        &format!("oci:{}:prod", pulled.display()),
    ]);
    assert!(copied, "{err}");
    let index: Value =
        serde_json::from_slice(&std::fs::read(pulled.join("index.json")).unwrap()).unwrap();
    assert_eq!(index["manifests"][0]["digest"], json!(v2));

    // v3: a clear regression fails the canary, and prod refuses it naming the gate.
    let (promoted, out) = to_prod(&v3, 0.05, 30);
    assert!(!promoted, "{out}");
    assert!(out.contains("verdict fail"), "{out}");
    assert!(out.contains("canary") && out.contains("fail"), "{out}");
    assert_eq!(env.skopeo_digest("shop/web:prod"), v2);

    // One-call rollback to the previous digest; skopeo sees it.
    let out = ok(&[
        "rollback",
        &env.r("shop/web"),
        "--env",
        "prod",
        "--note",
        "bad release",
    ]);
    assert!(out.contains(&v1), "{out}");
    assert_eq!(env.skopeo_digest("shop/web:prod"), v1);
    // There is nothing earlier than v1 that was not rolled away from.
    let again = fails(&["rollback", &env.r("shop/web"), "--env", "prod"]);
    assert!(again.contains("no earlier digest"), "{again}");
    // --to must come from the environment's history.
    let never = fails(&["rollback", &env.r("shop/web"), "--env", "prod", "--to", &v3]);
    assert!(never.contains("never in prod"), "{never}");
    ok(&["rollback", &env.r("shop/web"), "--env", "prod", "--to", &v2]);
    assert_eq!(env.skopeo_digest("shop/web:prod"), v2);

    // History: every move, newest first, with actor, action and gate verdicts.
    let (_, h) = http(
        "GET",
        &env.server
            .url("/api/v1/history?repository=shop/web&environment=prod"),
        None,
        None,
    );
    let moves: Vec<(String, String)> = h["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["action"].as_str().unwrap().to_string(),
                m["digest"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(
        moves,
        [
            ("rollback".to_string(), v2.clone()),
            ("rollback".to_string(), v1.clone()),
            ("promote".to_string(), v2.clone()),
            ("promote".to_string(), v1.clone()),
        ]
    );
    let promote_v2 = &h["history"][2];
    assert_eq!(promote_v2["previous"], json!(v1));
    assert_eq!(promote_v2["from"], json!("staging"));
    let checks: Vec<&str> = promote_v2["gates"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["check"].as_str().unwrap())
        .collect();
    assert_eq!(checks, ["previous", "canary"]);
    assert_eq!(h["history"][1]["note"], json!("bad release"));
    let text = ok(&["history", &env.r("shop/web"), "--env", "prod"]);
    assert_eq!(text.matches("rollback").count(), 2, "{text}");

    // Environment digests are protected: neither the tag nor the manifests can be deleted.
    let del = fails(&["delete", &env.r("shop/web:prod")]);
    assert!(del.contains("environment"), "{del}");
    for d in [&v1, &v2] {
        let del = fails(&["delete", &at(d)]);
        assert!(del.contains("rollback can reach it"), "{del}");
    }
    // v3 was never in prod (keep_history = 2 keeps the last two of staging: v2, v3... and dev).
    // An artifact in no environment's recent history deletes normally.
    let v4 = env.skopeo_push(Some("arm64"), "shop/web:v4");
    ok(&["delete", &at(&v4)]);

    // The promotion attestation verifies with public in-toto tooling under the registry's key.
    let (status, key) = http("GET", &env.server.url("/api/v1/promotion/key"), None, None);
    assert_eq!(status, 200, "{key}");
    let pem = env.path("registry.pub.pem");
    std::fs::write(&pem, key["public_key"].as_str().unwrap()).unwrap();
    let attestation = h["history"][2]["attestation"].as_str().unwrap().to_string();
    let (_, manifest) = http(
        "GET",
        &env.server
            .url(&format!("/v2/shop/web/manifests/{attestation}")),
        None,
        None,
    );
    assert_eq!(manifest["subject"]["digest"], json!(v2));
    assert_eq!(
        manifest["artifactType"],
        json!("application/vnd.bonded.promotion.v1+json")
    );
    let layer = manifest["layers"][0]["digest"].as_str().unwrap();
    let envelope = {
        let rt = tokio::runtime::Runtime::new().unwrap();
        rt.block_on(async {
            reqwest::get(env.server.url(&format!("/v2/shop/web/blobs/{layer}")))
                .await
                .unwrap()
                .bytes()
                .await
                .unwrap()
        })
    };
    let env_file = env.path("promotion.dsse.json");
    std::fs::write(&env_file, &envelope).unwrap();
    let summary = verified_dsse(
        &env_file,
        &pem,
        key["key_id"].as_str().unwrap(),
        &v2,
        "the promotion attestation",
    );
    assert_eq!(
        summary["predicateType"],
        json!("https://slsa.dev/verification_summary/v1")
    );
    // The referrers API lists it as a referrer of v2.
    let (_, refs) = http(
        "GET",
        &env.server.url(&format!(
            "/v2/shop/web/referrers/{v2}?artifactType=application/vnd.bonded.promotion.v1%2Bjson"
        )),
        None,
        None,
    );
    assert!(refs["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .any(|m| m["digest"] == json!(attestation)));

    // Deployment records: one matching prod, one running something else (M3).
    let out = ok(&["deploy", &at(&v2), "--env", "prod", "--target", "eu-1"]);
    assert!(out.contains("matches"), "{out}");
    let out = ok(&["deploy", &at(&v1), "--env", "prod", "--target", "us-1"]);
    assert!(out.contains("MISMATCH"), "{out}");
    let out = ok(&["deployments", &env.r("shop/web")]);
    assert!(out.contains("eu-1") && out.contains("us-1"), "{out}");
    assert!(out.contains("artifact mismatch rate: 50.00 %"), "{out}");
    let (_, text) = http("GET", &env.server.url("/metrics"), None, None);
    let text = text.as_str().unwrap().to_string();
    assert!(
        text.contains(
            "bonded_deployments_reported_total{namespace=\"shop\",environment=\"prod\",outcome=\"mismatch\"} 1"
        ),
        "{text}"
    );
    assert!(text.contains(
        "bonded_time_to_promote_seconds_count{namespace=\"shop\",environment=\"prod\"} 2"
    ));
}

#[test]
fn a_failing_canary_rolls_back_automatically_and_model_metrics_gate_champion() {
    let env = Env::start("", &[]);
    // Model aliases: ml/** has challenger → champion; metrics come from annotations.
    let push = |name: &str, acc: &str| -> String {
        let f = env.path(name);
        std::fs::write(&f, name).unwrap();
        let out = ok(&[
            "push",
            "-q",
            f.to_str().unwrap(),
            &env.r(&format!("ml/recsys:{name}")),
            "--annotation",
            &format!("dev.bonded.metric.accuracy={acc}"),
        ]);
        out.trim().rsplit_once('@').unwrap().1.to_string()
    };
    let m1 = push("m1", "0.93");
    let m2 = push("m2", "0.88");
    let m3 = push("m3", "0.925");
    let m4 = push("m4", "0.95");
    let at = |d: &str| env.r(&format!("ml/recsys@{d}"));
    let envs = ok(&["envs", &env.r("ml/recsys")]);
    assert!(
        envs.contains("challenger") && envs.contains("champion"),
        "{envs}"
    );
    assert!(fails(&["promote", &at(&m1), "--to", "prod"]).contains("challenger → champion"));

    ok(&["promote", &at(&m1), "--to", "champion"]);
    // Below the absolute floor.
    let r = fails(&["promote", &at(&m2), "--to", "champion"]);
    assert!(r.contains("accuracy = 0.88 fails 0.9"), "{r}");
    // 0.925 vs 0.93 − 1 % = 0.9207: passes. 0.95 too.
    ok(&["promote", &at(&m3), "--to", "champion"]);
    ok(&["promote", &at(&m4), "--to", "champion"]);

    // A failing canary with --rollback-on-fail moves champion back to m3 at once.
    let samples = env.canary_file("bad.json", &error_rates(0.05, 40));
    let (passed, out) = bonded(&[
        "canary",
        &at(&m4),
        "--env",
        "champion",
        "--samples",
        &samples,
        "--rollback-on-fail",
    ]);
    assert!(!passed, "a failing verdict exits non-zero: {out}");
    assert!(
        out.contains("verdict fail") && out.contains("rolled champion back"),
        "{out}"
    );
    let (_, states) = http(
        "GET",
        &env.server.url("/api/v1/environments?repository=ml/recsys"),
        None,
        None,
    );
    assert_eq!(states["environments"][1]["digest"], json!(m3));
    assert_eq!(
        states["environments"][1]["last"]["actor"],
        json!("canary:anonymous")
    );
    // The verdicts are recorded against the digest.
    let (_, v) = http(
        "GET",
        &env.server
            .url(&format!("/api/v1/canary?repository=ml/recsys&digest={m4}")),
        None,
        None,
    );
    assert_eq!(v["verdicts"][0]["verdict"], json!("fail"));
    assert_eq!(
        v["verdicts"][0]["report"]["metrics"][0]["classification"],
        json!("high")
    );

    // Malformed canary input gets a clear error.
    let bad = env.canary_file(
        "few.json",
        &json!({"metrics":[{"name":"x","baseline":[1],"canary":[1,2,3]}]}),
    );
    let out = fails(&["canary", &at(&m3), "--samples", &bad]);
    assert!(out.contains("samples"), "{out}");
}

#[test]
fn concurrent_promotions_of_one_environment_end_consistent() {
    let env = Env::start("", &[]);
    let mut digests = Vec::new();
    for i in 0..6 {
        let f = env.path(&format!("a{i}"));
        std::fs::write(&f, format!("artifact {i}")).unwrap();
        let out = ok(&[
            "push",
            "-q",
            f.to_str().unwrap(),
            &env.r(&format!("race/app:v{i}")),
        ]);
        digests.push(out.trim().rsplit_once('@').unwrap().1.to_string());
    }
    let threads: Vec<_> = digests
        .iter()
        .map(|d| {
            let target = env.r(&format!("race/app@{d}"));
            std::thread::spawn(move || bonded(&["promote", &target, "--to", "dev"]))
        })
        .collect();
    let results: Vec<(bool, String)> = threads.into_iter().map(|t| t.join().unwrap()).collect();
    for (okay, out) in &results {
        assert!(
            *okay || out.contains("CONFLICT"),
            "neither promoted nor a conflict: {out}"
        );
    }
    let won = results.iter().filter(|r| r.0).count();
    assert!(won >= 1);
    let (_, h) = http(
        "GET",
        &env.server
            .url("/api/v1/history?repository=race/app&environment=dev"),
        None,
        None,
    );
    let history = h["history"].as_array().unwrap();
    assert_eq!(
        history.len(),
        won,
        "one history row per successful promotion"
    );
    // The chain is unbroken: each move's previous is the move before it, and the pointer is the
    // newest move's digest.
    for pair in history.windows(2) {
        assert_eq!(pair[0]["previous"], pair[1]["digest"]);
    }
    assert_eq!(history.last().unwrap()["previous"], Value::Null);
    let (_, states) = http(
        "GET",
        &env.server.url("/api/v1/environments?repository=race/app"),
        None,
        None,
    );
    assert_eq!(states["environments"][0]["digest"], history[0]["digest"]);
}

#[test]
fn approvals_count_only_maintainers_and_each_approver_once() {
    let env = Env::start("", &common::auth_env());
    let url = |p: &str| env.server.url(p);
    let admin = Some(("admin", ADMIN_PASSWORD));
    for (user, role) in [
        ("ann", "maintainer"),
        ("bob", "maintainer"),
        ("dev", "developer"),
    ] {
        let (s, b) = http(
            "POST",
            &url("/api/v1/users"),
            admin,
            Some(json!({"name": user, "password": "password-123456"})),
        );
        assert_eq!(s, 201, "{b}");
        let (s, b) = http(
            "POST",
            &url("/api/v1/grants"),
            admin,
            Some(json!({"namespace": "team/", "subject": user, "role": role})),
        );
        assert_eq!(s, 201, "{b}");
    }
    // An artifact in team/app, pushed over the OCI API as the admin.
    let blob = b"{}";
    let bd = sha256(blob);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let digest = rt.block_on(async {
        let c = reqwest::Client::new();
        let r = c
            .post(url(&format!("/v2/team/app/blobs/uploads/?digest={bd}")))
            .basic_auth("admin", Some(ADMIN_PASSWORD))
            .body(blob.to_vec())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 201);
        let m = json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "artifactType": "application/x.test",
            "config": {"mediaType": "application/vnd.oci.empty.v1+json", "digest": bd, "size": 2},
            "layers": [{"mediaType": "application/vnd.oci.empty.v1+json", "digest": bd, "size": 2}],
        })
        .to_string();
        let r = c
            .put(url("/v2/team/app/manifests/v1"))
            .basic_auth("admin", Some(ADMIN_PASSWORD))
            .header("content-type", "application/vnd.oci.image.manifest.v1+json")
            .body(m.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 201);
        sha256(m.as_bytes())
    });
    let promote = |who: (&str, &str)| {
        http(
            "POST",
            &url("/api/v1/promotions"),
            Some(who),
            Some(json!({"repository": "team/app", "reference": digest, "environment": "prod"})),
        )
    };
    let approve = |who: &str| {
        http(
            "POST",
            &url("/api/v1/approvals"),
            Some((who, "password-123456")),
            Some(
                json!({"repository": "team/app", "reference": digest, "environment": "prod", "comment": "ok"}),
            ),
        )
    };
    // A developer may not promote at all.
    let (s, b) = promote(("dev", "password-123456"));
    assert_eq!(s, 403, "{b}");
    assert!(
        b["error"]["message"]
            .as_str()
            .unwrap()
            .contains("maintainer"),
        "{b}"
    );
    // No approvals yet.
    let (s, b) = promote(("ann", "password-123456"));
    assert_eq!(
        (s, b["error"]["code"].as_str()),
        (403, Some("POLICY_VIOLATION")),
        "{b}"
    );
    assert!(
        b["error"]["message"]
            .as_str()
            .unwrap()
            .contains("0 of 2 approvals"),
        "{b}"
    );
    // A developer's approval is recorded but does not count; an approver counts once.
    assert_eq!(approve("dev").0, 201);
    assert_eq!(approve("ann").0, 201);
    let (s, b) = approve("ann");
    assert_eq!(s, 409, "{b}");
    let (s, b) = promote(("ann", "password-123456"));
    assert_eq!(s, 403);
    assert!(
        b["error"]["message"]
            .as_str()
            .unwrap()
            .contains("1 of 2 approvals"),
        "{b}"
    );
    assert_eq!(approve("bob").0, 201);
    let (s, b) = promote(("ann", "password-123456"));
    assert_eq!(s, 201, "{b}");
    assert_eq!(b["record"]["actor"], json!("ann"));
    // The promotion and the approvals are in the audit log.
    let (_, audit) = http("GET", &url("/api/v1/audit?action=promote"), admin, None);
    let text = audit.to_string();
    assert!(text.contains("team/app") && text.contains("ann"), "{text}");
    // Unauthenticated callers see nothing.
    let (s, _) = http(
        "GET",
        &url("/api/v1/history?repository=team/app"),
        None,
        None,
    );
    assert_eq!(s, 401);
}

struct Kill(std::process::Child);
impl Drop for Kill {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn canary_reads_a_real_prometheus_scraping_bonded() {
    // bonded must know Prometheus' URL before starting, so pick its port first.
    let dir = tempfile::tempdir().unwrap();
    let prom_port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let prom_url = format!("http://127.0.0.1:{prom_port}");
    let env = Env::start(&format!("[canary]\nprometheus_url = \"{prom_url}\"\n"), &[]);
    // Prometheus on the chosen port, scraping this bonded.
    let cfg = dir.path().join("prometheus.yml");
    std::fs::write(
        &cfg,
        format!(
            "global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: bonded\n    static_configs:\n      - targets: ['{}']\n",
            env.server.addr
        ),
    )
    .unwrap();
    let _prom = Kill(
        Command::new("prometheus")
            .arg(format!("--config.file={}", cfg.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("tsdb").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{prom_port}"))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("run prometheus (scripts/install-test-tools.sh installs it)"),
    );
    let f = env.path("app");
    std::fs::write(&f, "x").unwrap();
    let out = ok(&["push", "-q", f.to_str().unwrap(), &env.r("svc/api:v1")]);
    let digest = out.trim().rsplit_once('@').unwrap().1.to_string();

    // Wait until Prometheus holds at least 5 scrapes of bonded.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        // Prometheus may not be listening yet: a refused connection is "not yet".
        let url =
            format!("{prom_url}/api/v1/query?query=count_over_time(up{{job=\"bonded\"}}[1m])");
        let v: Value = tokio::runtime::Runtime::new().unwrap().block_on(async {
            match reqwest::get(&url).await {
                Ok(r) => r.json().await.unwrap_or(Value::Null),
                Err(_) => Value::Null,
            }
        });
        let n = v["data"]["result"][0]["value"][1]
            .as_str()
            .and_then(|x| x.parse::<f64>().ok())
            .unwrap_or(0.0);
        if n >= 5.0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "Prometheus did not scrape bonded in time: {v}"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    let window = json!({"start": now - 60.0, "end": now, "step_secs": 1.0});
    // The same series as baseline and canary: nothing differs → pass.
    let same = json!({
        "queries": [{"name": "scrape_duration", "baseline_query": "scrape_duration_seconds{job=\"bonded\"}",
                     "canary_query": "scrape_duration_seconds{job=\"bonded\"}"}],
        "window": window,
    });
    let out = ok(&[
        "canary",
        &env.r(&format!("svc/api@{digest}")),
        "--samples",
        &env.canary_file("same.json", &same),
    ]);
    assert!(out.contains("verdict pass"), "{out}");
    // The canary series is the baseline series tripled plus a constant: a clear regression.
    let worse = json!({
        "queries": [{"name": "scrape_duration", "baseline_query": "scrape_duration_seconds{job=\"bonded\"}",
                     "canary_query": "scrape_duration_seconds{job=\"bonded\"} * 3 + 1"}],
        "window": window,
    });
    let (passed, out) = bonded(&[
        "canary",
        &env.r(&format!("svc/api@{digest}")),
        "--samples",
        &env.canary_file("worse.json", &worse),
    ]);
    assert!(!passed && out.contains("verdict fail"), "{out}");
    // A query Prometheus rejects is reported, not recorded.
    let broken = json!({
        "queries": [{"name": "x", "baseline_query": "sum(", "canary_query": "up"}],
        "window": window,
    });
    let out = fails(&[
        "canary",
        &env.r(&format!("svc/api@{digest}")),
        "--samples",
        &env.canary_file("broken.json", &broken),
    ]);
    assert!(out.contains("metric query"), "{out}");
}

#[test]
fn diff_shows_what_changed_in_layers_annotations_provenance_and_sbom() {
    let env = Env::start("", &[]);
    let (private, public) = generate_key(&env);
    ok(&[
        "trust",
        "add",
        &env.r("svc"),
        "--key-set",
        "ci",
        "--key",
        &public,
    ]);
    let push = |name: &str, content: &str, note: &str| -> String {
        let f = env.path(name);
        std::fs::write(&f, content).unwrap();
        let out = ok(&[
            "push",
            "-q",
            f.to_str().unwrap(),
            &env.r(&format!("svc/api:{name}")),
            "--annotation",
            &format!("org.example.note={note}"),
        ]);
        out.trim().rsplit_once('@').unwrap().1.to_string()
    };
    let a = push("a", "release one", "first");
    let b = push("b", "release two", "second");
    let attach = |d: &str, commit: &str, components: &str| {
        let target = env.r(&format!("svc/api@{d}"));
        ok(&[
            "attest",
            &target,
            "--provenance",
            "--key",
            &private,
            "--builder-id",
            "https://ci.example/builder",
            "--source-uri",
            "git+https://example.com/acme/api",
            "--commit",
            commit,
        ]);
        let sbom = env.path(&format!("sbom-{commit}.json"));
        std::fs::write(
            &sbom,
            format!(r#"{{"bomFormat":"CycloneDX","specVersion":"1.5","version":1,"components":[{components}]}}"#),
        )
        .unwrap();
        ok(&[
            "sbom",
            "attach",
            &target,
            sbom.to_str().unwrap(),
            "--key",
            &private,
        ]);
    };
    let commit_a = "1111111111111111111111111111111111111111";
    let commit_b = "2222222222222222222222222222222222222222";
    attach(
        &a,
        commit_a,
        r#"{"type":"library","name":"requests","version":"2.31.0","purl":"pkg:pypi/requests@2.31.0"},
           {"type":"library","name":"six","version":"1.16.0","purl":"pkg:pypi/six@1.16.0"}"#,
    );
    attach(
        &b,
        commit_b,
        r#"{"type":"library","name":"requests","version":"2.32.3","purl":"pkg:pypi/requests@2.32.3"},
           {"type":"library","name":"idna","version":"3.7","purl":"pkg:pypi/idna@3.7"}"#,
    );
    // Not scanned yet: said so.
    let out = ok(&["diff", &env.r("svc/api:a"), &env.r("svc/api:b")]);
    assert!(
        out.contains("vulnerabilities: neither artifact is scanned"),
        "{out}"
    );
    // One advisory fixed by b's requests upgrade, one new with b's idna.
    let osv = env.path("osv");
    std::fs::create_dir_all(&osv).unwrap();
    let record = |id: &str, name: &str, introduced: &str, fixed: &str| {
        format!(
            r#"{{"schema_version":"1.6.0","id":"{id}","modified":"2024-06-01T00:00:00Z",
               "summary":"{name} advisory","database_specific":{{"severity":"HIGH"}},
               "affected":[{{"package":{{"ecosystem":"PyPI","name":"{name}"}},
                 "ranges":[{{"type":"ECOSYSTEM","events":[{{"introduced":"{introduced}"}},{{"fixed":"{fixed}"}}]}}]}}]}}"#
        )
    };
    std::fs::write(
        osv.join("a.json"),
        record("GHSA-test-reqs", "requests", "0", "2.32.0"),
    )
    .unwrap();
    std::fs::write(
        osv.join("b.json"),
        record("GHSA-test-idna", "idna", "3.0", "3.8"),
    )
    .unwrap();
    let (imported, o, e) = env
        .server
        .admin(&["vulndb", "import", osv.to_str().unwrap()], &[]);
    assert!(imported, "{o}{e}");
    for d in [&a, &b] {
        let (scanned, o, e) = env
            .server
            .admin(&["vulndb", "scan", &format!("svc/api@{d}")], &[]);
        assert!(scanned, "{o}{e}");
    }
    let out = ok(&["diff", &env.r(&format!("svc/api@{a}")), &env.r("svc/api:b")]);
    assert!(
        out.contains("fixed GHSA-test-reqs in requests (high 2.31.0)"),
        "{out}"
    );
    assert!(
        out.contains("new   GHSA-test-idna in idna (high 3.7)"),
        "{out}"
    );
    assert!(
        out.contains(&format!("b: {}/svc/api@{b}", env.server.addr)),
        "{out}"
    );
    assert!(out.contains("~ org.example.note first → second"), "{out}");
    assert!(
        out.contains("layers:\n  - sha256:") && out.contains("\n  + sha256:"),
        "{out}"
    );
    assert!(
        out.contains(&format!(
            "~ git+https://example.com/acme/api gitCommit:{commit_a} → gitCommit:{commit_b}"
        )),
        "the source commit change is shown: {out}"
    );
    assert!(out.contains("~ pkg:pypi/requests 2.31.0 → 2.32.3"), "{out}");
    assert!(out.contains("- pkg:pypi/six 1.16.0"), "{out}");
    assert!(out.contains("+ pkg:pypi/idna 3.7"), "{out}");
    let json: Value = serde_json::from_str(&ok(&[
        "diff",
        &env.r("svc/api:a"),
        &env.r("svc/api:b"),
        "--json",
    ]))
    .unwrap();
    assert_eq!(
        json["sbom"]["components"]["changed"][0]["key"],
        json!("pkg:pypi/requests")
    );
    // The same artifact twice is identical.
    assert!(ok(&["diff", &env.r("svc/api:a"), &env.r("svc/api:a")]).contains("identical"));
}
