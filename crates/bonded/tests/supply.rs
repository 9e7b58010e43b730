//! Supply chain end to end: keys, `bonded sign`/`verify`/`attest`/`sbom attach`, the trust store
//! (`bonded trust`), and policy enforced by the registry on real pulls and pushes (skopeo, raw
//! HTTP). A signature is also verified by public tooling (securesystemslib + in-toto from PyPI).
//!
//! Servers run on the backend pair `BONDED_TEST_BACKEND` names, with a config file holding the
//! `[[policy]]` rules.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use bonded_supply::dsse::{Envelope, IN_TOTO_PAYLOAD_TYPE};
use bonded_supply::keys::{Algorithm as KeyAlg, SigningKey};
use bonded_supply::media::{Kind, DSSE_ENVELOPE};
use bonded_supply::statement::{predicate_types, Statement, Subject};
use common::{bin, interop_dir, verified_dsse, verify_dsse, Server};
use serde_json::{json, Value};
use sha2::{Digest as _, Sha256};

const POLICY: &str = r#"
[[policy]]
name = "prod-signed"
repositories = "prod/**"
on = ["pull-by-tag"]
require_signature = { key_set = "release" }

[[policy]]
name = "beta-signed"
repositories = "beta/**"
on = ["pull-by-tag"]
mode = "warn"
require_signature = { key_set = "release" }

[[policy]]
name = "ml-provenance"
repositories = "ml/**"
on = ["push"]
require_provenance = { builder = "https://ci.example/builder", source = "git+https://example.com/acme/model" }
require_sbom = true
"#;

struct Env {
    server: Server,
    dir: tempfile::TempDir,
}

impl Env {
    fn start() -> Env {
        let dir = tempfile::tempdir().unwrap();
        let cfg = dir.path().join("bonded.toml");
        std::fs::write(&cfg, POLICY).unwrap();
        // The backend pair follows BONDED_TEST_BACKEND; the file adds the policy rules.
        let server = Server::start_with(&[("BONDED_CONFIG", cfg.to_str().unwrap())]);
        Env { server, dir }
    }
    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
    fn r(&self, rest: &str) -> String {
        format!("{}/{rest}", self.server.addr)
    }
    /// `bonded key generate`; returns (private path, public path, key id).
    fn key(&self, name: &str, alg: &str) -> (PathBuf, PathBuf, String) {
        let prefix = self.path(name);
        let id = ok(&[
            "key",
            "generate",
            "--algorithm",
            alg,
            "--out",
            prefix.to_str().unwrap(),
        ]);
        (
            self.path(&format!("{name}.pem")),
            self.path(&format!("{name}.pub.pem")),
            id.trim().to_string(),
        )
    }
    /// `bonded push` of a small file; returns the manifest digest.
    fn push(&self, target: &str, content: &str) -> String {
        let f = self.path("content.txt");
        std::fs::write(&f, content).unwrap();
        let out = ok(&["push", "-q", f.to_str().unwrap(), &self.r(target)]);
        out.trim().rsplit_once('@').unwrap().1.to_string()
    }
}

fn bonded(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(bin()).args(args).output().expect("run bonded");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn ok(args: &[&str]) -> String {
    let (success, out, err) = bonded(args);
    assert!(success, "bonded {args:?} failed:\n{out}\n{err}");
    out
}

fn fails(args: &[&str]) -> String {
    let (success, out, err) = bonded(args);
    assert!(
        !success,
        "bonded {args:?} should have failed:\n{out}\n{err}"
    );
    format!("{out}{err}")
}

fn sha256(b: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(b)))
}

/// Blocking HTTP for assertions on exact statuses, headers and bodies.
fn http(
    method: &str,
    url: &str,
    content_type: &str,
    body: Vec<u8>,
) -> (u16, Vec<(String, String)>, Vec<u8>) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let c = reqwest::Client::new();
        let m = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let mut req = c
            .request(m, url)
            .header("accept", "application/vnd.oci.image.manifest.v1+json");
        if !content_type.is_empty() {
            req = req.header("content-type", content_type);
        }
        let resp = req.body(body).send().await.unwrap();
        let status = resp.status().as_u16();
        let headers = resp
            .headers()
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("").to_string()))
            .collect();
        (status, headers, resp.bytes().await.unwrap().to_vec())
    })
}

/// `GET /v2/<repo>/manifests/<reference>`: (status, OCI error code and message if any, headers).
fn pull(env: &Env, repo: &str, reference: &str) -> (u16, String, Vec<(String, String)>) {
    let (status, headers, body) = http(
        "GET",
        &env.server.url(&format!("/v2/{repo}/manifests/{reference}")),
        "",
        vec![],
    );
    let err = serde_json::from_slice::<Value>(&body)
        .ok()
        .and_then(|v| {
            let e = v.get("errors")?.get(0)?.clone();
            Some(format!(
                "{}: {}",
                e["code"].as_str()?,
                e["message"].as_str().unwrap_or("")
            ))
        })
        .unwrap_or_default();
    (status, err, headers)
}

fn upload(env: &Env, repo: &str, bytes: &[u8]) -> String {
    let d = sha256(bytes);
    let (status, _, body) = http(
        "POST",
        &env.server
            .url(&format!("/v2/{repo}/blobs/uploads/?digest={d}")),
        "application/octet-stream",
        bytes.to_vec(),
    );
    assert_eq!(status, 201, "{}", String::from_utf8_lossy(&body));
    d
}

/// Pushes a referrer of `subject` carrying `envelope` as a `kind` attestation, by hand.
fn push_referrer(env: &Env, repo: &str, subject: &str, kind: Kind, envelope: &[u8]) -> String {
    let layer = upload(env, repo, envelope);
    let empty = upload(env, repo, b"{}");
    let (_, _, subject_body) = http(
        "GET",
        &env.server.url(&format!("/v2/{repo}/manifests/{subject}")),
        "",
        vec![],
    );
    let m = json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "artifactType": kind.artifact_type(),
        "config": {"mediaType": "application/vnd.oci.empty.v1+json", "digest": empty, "size": 2},
        "layers": [{"mediaType": DSSE_ENVELOPE, "digest": layer, "size": envelope.len()}],
        "subject": {"mediaType": "application/vnd.oci.image.manifest.v1+json",
                    "digest": subject, "size": subject_body.len()},
    });
    let bytes = serde_json::to_vec(&m).unwrap();
    let d = sha256(&bytes);
    let (status, _, body) = http(
        "PUT",
        &env.server.url(&format!("/v2/{repo}/manifests/{d}")),
        "application/vnd.oci.image.manifest.v1+json",
        bytes,
    );
    assert_eq!(status, 201, "{}", String::from_utf8_lossy(&body));
    d
}

fn statement_env(key: &SigningKey, about: &str, predicate_type: &str) -> Vec<u8> {
    let digest: bonded_types::Digest = about.parse().unwrap();
    let st = Statement::new(
        Subject::of("prod/app", &digest),
        predicate_type,
        json!({"reference": "x", "signedAt": "2026-01-01T00:00:00Z"}),
    );
    Envelope::sign(IN_TOTO_PAYLOAD_TYPE, &st.to_json(), key).to_json()
}

fn skopeo_pull(env: &Env, repo_tag: &str, out: &Path) -> (bool, String) {
    let o = Command::new("skopeo")
        .args(["--insecure-policy", "copy", "--src-tls-verify=false"])
        .arg(format!("docker://{}", env.r(repo_tag)))
        .arg(format!("oci:{}:v1", out.display()))
        .output()
        .expect("run skopeo (scripts/install-test-tools.sh installs it)");
    (
        o.status.success(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

fn python_tools() {
    let o = Command::new("python3")
        .args(["-c", "import securesystemslib, in_toto, cryptography"])
        .output()
        .expect("python3");
    assert!(
        o.status.success(),
        "python3 needs securesystemslib and in-toto: run scripts/install-test-tools.sh as root"
    );
}

/// The envelope of the first referrer of `kind`, fetched through the OCI API.
fn fetch_envelope(env: &Env, repo: &str, digest: &str, kind: Kind) -> Vec<u8> {
    let (_, _, body) = http(
        "GET",
        &env.server.url(&format!("/v2/{repo}/referrers/{digest}")),
        "",
        vec![],
    );
    let idx: Value = serde_json::from_slice(&body).unwrap();
    let r = idx["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["artifactType"] == kind.artifact_type())
        .expect("a referrer of that kind")["digest"]
        .as_str()
        .unwrap()
        .to_string();
    let (_, _, m) = http(
        "GET",
        &env.server.url(&format!("/v2/{repo}/manifests/{r}")),
        "",
        vec![],
    );
    let m: Value = serde_json::from_slice(&m).unwrap();
    let layer = m["layers"][0]["digest"].as_str().unwrap();
    http(
        "GET",
        &env.server.url(&format!("/v2/{repo}/blobs/{layer}")),
        "",
        vec![],
    )
    .2
}

/// The headline scenario: a skopeo pull of a prod tag is refused while unsigned, allowed once
/// signed by a trusted key, and refused again after the key is revoked. The signature is also
/// verified by securesystemslib/in-toto, and `bonded verify` agrees at every step.
#[test]
fn skopeo_pull_of_prod_tag_is_refused_unsigned_allowed_signed_and_refused_after_revocation() {
    python_tools();
    let env = Env::start();
    let layout = env.path("layout");
    let o = Command::new("python3")
        .arg(interop_dir().join("make_oci_layout.py"))
        .arg(&layout)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    for target in ["prod/app:v1", "dev/app:v1"] {
        let o = Command::new("skopeo")
            .args(["--insecure-policy", "copy", "--dest-tls-verify=false"])
            .arg(format!("oci:{}:v1", layout.display()))
            .arg(format!("docker://{}", env.r(target)))
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    }

    // Unsigned: refused with DENIED naming the rule; a repository no rule covers is untouched.
    let (okay, err) = skopeo_pull(&env, "prod/app:v1", &env.path("out1"));
    assert!(!okay);
    assert!(err.contains("prod-signed"), "skopeo said: {err}");
    let (status, msg, _) = pull(&env, "prod/app", "v1");
    assert_eq!(status, 403);
    assert!(msg.starts_with("DENIED: policy \"prod-signed\""), "{msg}");
    assert!(msg.contains("no signature is attached"), "{msg}");
    assert!(skopeo_pull(&env, "dev/app:v1", &env.path("out2")).0);

    // Signed with a key not (yet) trusted: still refused, and the message says why.
    let (private, public, key_id) = env.key("release", "ecdsa-p256");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&private).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "private key file must be 0600");
    }
    ok(&[
        "sign",
        &env.r("prod/app:v1"),
        "--key",
        private.to_str().unwrap(),
    ]);
    let (status, msg, _) = pull(&env, "prod/app", "v1");
    assert_eq!(status, 403);
    assert!(
        msg.contains("unknown key") && msg.contains(&key_id),
        "{msg}"
    );
    fails(&["verify", &env.r("prod/app:v1")]);

    // Trusted: allowed, by skopeo and by bonded verify (trust store and local key).
    let added = ok(&[
        "trust",
        "add",
        &env.r("prod"),
        "--key-set",
        "release",
        "--key",
        public.to_str().unwrap(),
    ]);
    assert!(added.contains(&key_id), "{added}");
    assert!(skopeo_pull(&env, "prod/app:v1", &env.path("out3")).0);
    let out = ok(&["verify", &env.r("prod/app:v1"), "--key-set", "release"]);
    assert!(out.contains("OK    signature"), "{out}");
    assert!(out.contains(&key_id) && out.contains("ecdsa-p256"), "{out}");
    ok(&[
        "verify",
        &env.r("prod/app:v1"),
        "--key",
        public.to_str().unwrap(),
    ]);

    // Public tooling verifies the same envelope.
    let (_, _, manifest) = http(
        "GET",
        &env.server.url("/v2/prod/app/manifests/v1"),
        "",
        vec![],
    );
    let digest = sha256(&manifest);
    let envelope = fetch_envelope(&env, "prod/app", &digest, Kind::Signature);
    let env_file = env.path("envelope.json");
    std::fs::write(&env_file, &envelope).unwrap();
    let summary = verified_dsse(&env_file, &public, &key_id, &digest, "bonded's signature");
    assert_eq!(summary["scheme"], "ecdsa-sha2-nistp256");
    assert_eq!(summary["predicateType"], predicate_types::SIGNATURE);
    // ... and refuses it under another key.
    let (_, other_public, _) = env.key("other", "ecdsa-p256");
    let o = verify_dsse(&env_file, &other_public, &key_id, &digest);
    assert!(!o.status.success());

    // Revoked: the same signature stops counting.
    ok(&["trust", "revoke", &env.r("prod"), &key_id]);
    let (okay, err) = skopeo_pull(&env, "prod/app:v1", &env.path("out4"));
    assert!(!okay);
    assert!(err.contains("revoked"), "skopeo said: {err}");
    let out = fails(&["verify", &env.r("prod/app:v1")]);
    assert!(
        out.contains("revoked") && out.contains("NOT verified"),
        "{out}"
    );
    // By digest no rule applies (on = pull-by-tag only), so deploys pinned by digest are explicit.
    assert_eq!(pull(&env, "prod/app", &digest).0, 200);
}

/// Every way an attestation can be bad is rejected with its own message, and none of them lets
/// the unsigned artifact through; then one good signature does.
#[test]
fn bad_attestations_never_make_an_unsigned_artifact_pass() {
    let env = Env::start();
    let digest = env.push("prod/app:v1", "payload");
    let other = env.push("prod/other:v1", "other payload");
    let trusted = SigningKey::generate(KeyAlg::Ed25519);
    let stranger = SigningKey::generate(KeyAlg::Ed25519);
    let expired = SigningKey::generate(KeyAlg::EcdsaP256);
    let pem = |k: &SigningKey, name: &str| {
        let p = env.path(name);
        std::fs::write(&p, k.public().to_pem()).unwrap();
        p
    };
    let t = pem(&trusted, "trusted.pub.pem");
    ok(&[
        "trust",
        "add",
        &env.r("prod"),
        "--key-set",
        "release",
        "--key",
        t.to_str().unwrap(),
    ]);
    let e = pem(&expired, "expired.pub.pem");
    ok(&[
        "trust",
        "add",
        &env.r("prod"),
        "--key-set",
        "release",
        "--key",
        e.to_str().unwrap(),
        "--not-before",
        "2020-01-01T00:00:00Z",
        "--not-after",
        "2021-01-01T00:00:00Z",
    ]);
    // A key trusted in another key set only.
    let dev = SigningKey::generate(KeyAlg::Ed25519);
    let d = pem(&dev, "dev.pub.pem");
    ok(&[
        "trust",
        "add",
        &env.r("prod"),
        "--key-set",
        "dev",
        "--key",
        d.to_str().unwrap(),
    ]);

    let mut tampered: Envelope = Envelope::parse(&statement_env(
        &trusted,
        &digest,
        predicate_types::SIGNATURE,
    ))
    .unwrap();
    tampered.payload_type = "application/vnd.in-toto+json ".into();
    let mut swapped: Envelope = Envelope::parse(&statement_env(
        &trusted,
        &digest,
        predicate_types::SIGNATURE,
    ))
    .unwrap();
    let forged = Statement::new(
        Subject::of("prod/app", &digest.parse().unwrap()),
        predicate_types::SIGNATURE,
        json!({"reference": "forged"}),
    );
    swapped.payload =
        base64::Engine::encode(&base64::engine::general_purpose::STANDARD, forged.to_json());
    let cases: Vec<(&str, Kind, Vec<u8>, &str)> = vec![
        (
            "malformed",
            Kind::Signature,
            b"{not json".to_vec(),
            "malformed attestation",
        ),
        (
            "wrong digest",
            Kind::Signature,
            statement_env(&trusted, &other, predicate_types::SIGNATURE),
            "is about",
        ),
        (
            "unknown key",
            Kind::Signature,
            statement_env(&stranger, &digest, predicate_types::SIGNATURE),
            "unknown key",
        ),
        (
            "expired key",
            Kind::Signature,
            statement_env(&expired, &digest, predicate_types::SIGNATURE),
            "was not valid when the registry received",
        ),
        (
            "payload swapped after signing",
            Kind::Signature,
            swapped.to_json(),
            "does not verify",
        ),
        (
            "payload type",
            Kind::Signature,
            tampered.to_json(),
            "payloadType",
        ),
        (
            "provenance posing as a signature",
            Kind::Signature,
            statement_env(&trusted, &digest, predicate_types::SLSA_PROVENANCE_V1),
            "cannot carry predicate type",
        ),
        (
            "a key of another key set",
            Kind::Signature,
            statement_env(&dev, &digest, predicate_types::SIGNATURE),
            "not by key set \"release\"",
        ),
    ];
    let mut referrers = Vec::new();
    for (what, kind, envelope, want) in &cases {
        referrers.push(push_referrer(&env, "prod/app", &digest, *kind, envelope));
        let (status, msg, _) = pull(&env, "prod/app", "v1");
        assert_eq!(status, 403, "{what}: {msg}");
        assert!(
            msg.starts_with("DENIED: policy \"prod-signed\""),
            "{what}: {msg}"
        );
        assert!(msg.contains(want), "{what}: expected {want:?} in {msg}");
    }
    // The management API lists each as invalid, with its reason.
    let (status, _, body) = http(
        "GET",
        &env.server
            .url("/api/v1/supply/artifact?repository=prod/app&reference=v1"),
        "",
        vec![],
    );
    assert_eq!(status, 200);
    let v: Value = serde_json::from_slice(&body).unwrap();
    // Signed, but only by a key of another key set: the policy still fails.
    assert_eq!(v["signed"], true);
    assert_eq!(v["valid_signatures"], 1);
    let atts = v["attestations"].as_array().unwrap();
    assert_eq!(atts.len(), cases.len());
    // Only the dev-set signature is cryptographically valid (for the wrong key set).
    assert_eq!(atts.iter().filter(|a| a["valid"] == true).count(), 1);
    assert_eq!(v["policy"][0]["passed"], false);

    // One good signature, and the pull passes.
    push_referrer(
        &env,
        "prod/app",
        &digest,
        Kind::Signature,
        &statement_env(&trusted, &digest, predicate_types::SIGNATURE),
    );
    let (status, msg, _) = pull(&env, "prod/app", "v1");
    assert_eq!(status, 200, "{msg}");
}

/// Rotation: a key whose validity window has ended still vouches for what the registry received
/// while it was valid, but not for anything pushed afterwards; the successor key takes over.
#[test]
fn rotated_keys_keep_old_signatures_valid_and_new_ones_invalid() {
    let env = Env::start();
    let (old_private, old_public, old_id) = env.key("old", "ed25519");
    let (new_private, new_public, new_id) = env.key("new", "ed25519");
    let end = bonded_supply::time::rfc3339(bonded_supply::time::now_ms() + 3_000);
    ok(&[
        "trust",
        "add",
        &env.r("prod"),
        "--key-set",
        "release",
        "--key",
        old_public.to_str().unwrap(),
        "--not-after",
        &end,
    ]);
    ok(&[
        "trust",
        "add",
        &env.r("prod"),
        "--key-set",
        "release",
        "--key",
        new_public.to_str().unwrap(),
        "--not-before",
        &end,
    ]);
    env.push("prod/app:v1", "v1 payload");
    ok(&[
        "sign",
        &env.r("prod/app:v1"),
        "--key",
        old_private.to_str().unwrap(),
    ]);
    assert_eq!(pull(&env, "prod/app", "v1").0, 200);

    // Let the old key's window end (the window is what is under test, not synchronisation).
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while bonded_supply::time::now_ms() < bonded_supply::time::parse_rfc3339(&end).unwrap() + 100 {
        assert!(std::time::Instant::now() < deadline);
        std::thread::sleep(Duration::from_millis(100));
    }
    // What the old key signed while valid still counts.
    assert_eq!(pull(&env, "prod/app", "v1").0, 200);
    let out = ok(&["verify", &env.r("prod/app:v1")]);
    assert!(out.contains(&old_id), "{out}");

    // A signature by the old key received now does not; the new key's does.
    env.push("prod/app:v2", "v2 payload");
    ok(&[
        "sign",
        &env.r("prod/app:v2"),
        "--key",
        old_private.to_str().unwrap(),
    ]);
    let (status, msg, _) = pull(&env, "prod/app", "v2");
    assert_eq!(status, 403);
    assert!(
        msg.contains("was not valid when the registry received"),
        "{msg}"
    );
    ok(&[
        "sign",
        &env.r("prod/app:v2"),
        "--key",
        new_private.to_str().unwrap(),
    ]);
    assert_eq!(pull(&env, "prod/app", "v2").0, 200);
    let out = ok(&["verify", &env.r("prod/app:v2")]);
    assert!(out.contains(&new_id) && out.contains("FAIL"), "{out}");
}

/// Warn mode lets the pull through with a header naming the rule.
#[test]
fn warn_mode_allows_the_pull_and_says_why_in_a_header() {
    let env = Env::start();
    env.push("beta/app:v1", "beta");
    let (status, _, headers) = pull(&env, "beta/app", "v1");
    assert_eq!(status, 200);
    let warning = headers
        .iter()
        .find(|(k, _)| k == "bonded-policy-warning")
        .map(|(_, v)| v.clone())
        .expect("a Bonded-Policy-Warning header");
    assert!(
        warning.contains("beta-signed") && warning.contains("no signature"),
        "{warning}"
    );
    // No rule covers dev/: no header.
    env.push("dev/app:v1", "dev");
    let (status, _, headers) = pull(&env, "dev/app", "v1");
    assert_eq!(status, 200);
    assert!(!headers.iter().any(|(k, _)| k == "bonded-policy-warning"));
}

/// Pushes of a tag to ml/** need signed SLSA provenance from the right builder and source plus a
/// signed SBOM; `bonded attest` and `bonded sbom attach` supply them for a manifest pushed by
/// digest, after which the tag push is accepted. Invalid SBOMs are refused before upload.
#[test]
fn tag_push_requires_provenance_and_sbom_which_attest_and_sbom_attach_supply() {
    let env = Env::start();
    let (private, public, _) = env.key("ci", "ed25519");
    ok(&[
        "trust",
        "add",
        &env.r("ml"),
        "--key-set",
        "ci",
        "--key",
        public.to_str().unwrap(),
    ]);
    // Stage the artifact by digest: push to an uncovered repository, then copy the manifest.
    let digest = env.push("staging/model:v1", "weights");
    let (_, _, manifest) = http(
        "GET",
        &env.server
            .url(&format!("/v2/staging/model/manifests/{digest}")),
        "",
        vec![],
    );
    let m: Value = serde_json::from_slice(&manifest).unwrap();
    for blob in [&m["config"]["digest"], &m["layers"][0]["digest"]] {
        let b = blob.as_str().unwrap();
        let (s, _, _) = http(
            "POST",
            &env.server.url(&format!(
                "/v2/ml/model/blobs/uploads/?mount={b}&from=staging/model"
            )),
            "",
            vec![],
        );
        assert_eq!(s, 201);
    }
    let put = |reference: &str| {
        http(
            "PUT",
            &env.server
                .url(&format!("/v2/ml/model/manifests/{reference}")),
            "application/vnd.oci.image.manifest.v1+json",
            manifest.clone(),
        )
    };
    assert_eq!(put(&digest).0, 201, "push by digest is always allowed");
    let (status, _, body) = put("v1");
    assert_eq!(status, 403);
    let msg = String::from_utf8_lossy(&body);
    assert!(
        msg.contains("ml-provenance") && msg.contains("no provenance"),
        "{msg}"
    );
    assert!(msg.contains("no sbom"), "{msg}");

    // Provenance from the wrong builder does not count.
    let target = env.r(&format!("ml/model@{digest}"));
    let hyper = env.path("hyper.json");
    std::fs::write(&hyper, r#"{"lr": 0.001, "epochs": 3}"#).unwrap();
    let metrics = env.path("metrics.json");
    std::fs::write(&metrics, r#"{"accuracy": 0.91}"#).unwrap();
    let common_args = |builder: &'static str| -> Vec<String> {
        [
            "attest",
            &target,
            "--provenance",
            "--key",
            private.to_str().unwrap(),
            "--builder-id",
            builder,
            "--source-uri",
            "git+https://example.com/acme/model",
            "--commit",
            "0123456789abcdef0123456789abcdef01234567",
            "--build-command",
            "python train.py --epochs 3",
            "--dataset",
            &format!("{}/ml/data@sha256:{}", env.server.addr, "ab".repeat(32)),
            "--hyperparameters",
            hyper.to_str().unwrap(),
            "--metrics",
            metrics.to_str().unwrap(),
        ]
        .iter()
        .map(|s| s.to_string())
        .collect()
    };
    let args = common_args("https://elsewhere.example/builder");
    ok(&args.iter().map(String::as_str).collect::<Vec<_>>());
    let (status, _, body) = put("v1");
    assert_eq!(status, 403);
    assert!(String::from_utf8_lossy(&body)
        .contains("builder is \\\"https://elsewhere.example/builder\\\""));
    let args = common_args("https://ci.example/builder");
    ok(&args.iter().map(String::as_str).collect::<Vec<_>>());
    let (status, _, body) = put("v1");
    assert_eq!(status, 403);
    let msg = String::from_utf8_lossy(&body);
    assert!(
        !msg.contains("SLSA provenance") && msg.contains("no sbom"),
        "{msg}"
    );

    // Invalid SBOMs are refused by the CLI with the problem named.
    let bad = env.path("bad.json");
    std::fs::write(&bad, r#"{"bomFormat":"CycloneDX","specVersion":"1.2"}"#).unwrap();
    let out = fails(&[
        "sbom",
        "attach",
        &target,
        bad.to_str().unwrap(),
        "--key",
        private.to_str().unwrap(),
    ]);
    assert!(
        out.contains("specVersion \"1.2\" is not supported"),
        "{out}"
    );
    let sbom = env.path("sbom.json");
    std::fs::write(
        &sbom,
        r#"{"bomFormat":"CycloneDX","specVersion":"1.5","version":1,
            "components":[{"type":"library","name":"numpy","version":"2.1.0","purl":"pkg:pypi/numpy@2.1.0"}]}"#,
    )
    .unwrap();
    ok(&[
        "sbom",
        "attach",
        &target,
        sbom.to_str().unwrap(),
        "--key",
        private.to_str().unwrap(),
    ]);
    let (status, _, body) = put("v1");
    assert_eq!(status, 201, "{}", String::from_utf8_lossy(&body));

    // The overview shows provenance (with training facts) and the SBOM.
    let (_, _, body) = http(
        "GET",
        &env.server
            .url("/api/v1/supply/artifact?repository=ml/model&reference=v1"),
        "",
        vec![],
    );
    let v: Value = serde_json::from_slice(&body).unwrap();
    // Both provenance statements verify; only one satisfies the rule.
    assert_eq!(v["valid_provenance"], 2);
    assert_eq!(v["valid_sboms"], 1);
    assert_eq!(v["policy"][0]["passed"], true);
    let prov = fetch_envelope(&env, "ml/model", &digest, Kind::Provenance);
    let envl = Envelope::parse(&prov).unwrap();
    let st = Statement::parse(&envl.payload_bytes().unwrap()).unwrap();
    let bd = &st.predicate["buildDefinition"];
    assert_eq!(
        bd["externalParameters"]["training"]["hyperparameters"]["epochs"],
        3
    );
    assert_eq!(
        st.predicate["runDetails"]["byproducts"][0]["annotations"]["accuracy"],
        0.91
    );
    assert!(bd["internalParameters"]["toolchain"].get("git").is_some());
}

/// The trust store's management API answers bad input with its documented envelope.
#[test]
fn trust_api_rejects_bad_keys_and_names_with_clear_errors() {
    let env = Env::start();
    let post = |ns: &str, body: Value| {
        let (s, _, b) = http(
            "POST",
            &env.server.url(&format!("/api/v1/trust/{ns}/keys")),
            "application/json",
            serde_json::to_vec(&body).unwrap(),
        );
        (
            s,
            serde_json::from_slice::<Value>(&b).unwrap_or(Value::Null),
        )
    };
    let (s, v) = post(
        "prod",
        json!({"key_set": "release", "public_key": "not a key"}),
    );
    assert_eq!(s, 400);
    assert_eq!(v["error"]["code"], "INVALID_KEY");
    let k = SigningKey::generate(KeyAlg::Ed25519).public().to_pem();
    let (s, v) = post("Prod", json!({"key_set": "release", "public_key": k}));
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (400, Some("INVALID_NAME"))
    );
    let (s, v) = post("prod", json!({"key_set": "Release!", "public_key": k}));
    assert_eq!((s, v["error"]["code"].as_str()), (400, Some("INVALID_KEY")));
    let (s, v) = post(
        "prod",
        json!({"key_set": "release", "public_key": k, "not_before": "yesterday"}),
    );
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (400, Some("INVALID_REQUEST"))
    );
    assert!(v["error"]["message"].as_str().unwrap().contains("RFC 3339"));
    let (s, _) = post("prod", json!({"key_set": "release", "public_key": k}));
    assert_eq!(s, 201);
    let (s, v) = post("prod", json!({"key_set": "release", "public_key": k}));
    assert_eq!((s, v["error"]["code"].as_str()), (409, Some("CONFLICT")));
    let (s, _, b) = http(
        "POST",
        &env.server.url("/api/v1/trust/prod/keys/sha256:nope/revoke"),
        "",
        vec![],
    );
    let v: Value = serde_json::from_slice(&b).unwrap();
    assert_eq!((s, v["error"]["code"].as_str()), (404, Some("NOT_FOUND")));
}

/// Coverage per namespace (API and metrics) counts artifacts, not their referrers, and only
/// signatures that count; `bonded inspect` shows the artifact's attestations and verdicts.
#[test]
fn coverage_metrics_and_inspect_report_what_is_signed() {
    let env = Env::start();
    let (private, public, key_id) = env.key("k", "ed25519");
    ok(&[
        "trust",
        "add",
        &env.r("prod"),
        "--key-set",
        "release",
        "--key",
        public.to_str().unwrap(),
    ]);
    let signed = env.push("prod/app:v1", "one");
    env.push("prod/app:v2", "two");
    env.push("dev/app:v1", "three");
    ok(&[
        "sign",
        &env.r("prod/app:v1"),
        "--key",
        private.to_str().unwrap(),
    ]);
    // A signature by an untrusted key does not raise coverage.
    let (stranger, _, _) = env.key("stranger", "ed25519");
    ok(&[
        "sign",
        &env.r("prod/app:v2"),
        "--key",
        stranger.to_str().unwrap(),
    ]);

    let (status, _, body) = http(
        "GET",
        &env.server.url("/api/v1/supply/coverage"),
        "",
        vec![],
    );
    assert_eq!(status, 200);
    let v: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v["namespaces"]["prod"]["artifacts"], 2);
    assert_eq!(v["namespaces"]["prod"]["signed"], 1);
    assert_eq!(v["namespaces"]["prod"]["signing_coverage"], 0.5);
    assert_eq!(v["namespaces"]["dev"]["signed"], 0);
    let (_, _, metrics) = http("GET", &env.server.url("/metrics"), "", vec![]);
    let metrics = String::from_utf8(metrics).unwrap();
    assert!(
        metrics.contains("bonded_supply_signed_artifacts{namespace=\"prod\"} 1"),
        "{metrics}"
    );
    assert!(metrics.contains("bonded_supply_artifacts{namespace=\"prod\"} 2"));

    let out: Value =
        serde_json::from_str(&ok(&["inspect", &env.r(&format!("prod/app@{signed}"))])).unwrap();
    assert_eq!(out["supply"]["valid_signatures"], 1);
    assert_eq!(out["supply"]["attestations"][0]["key_id"], key_id.as_str());
    assert_eq!(out["supply"]["policy"][0]["rule"], "prod-signed");
    assert_eq!(out["supply"]["policy"][0]["passed"], true);
}

/// Ed25519 signatures (the default algorithm) verify with securesystemslib/in-toto too, provenance
/// envelopes included.
#[test]
fn ed25519_signatures_and_provenance_verify_with_securesystemslib() {
    python_tools();
    let env = Env::start();
    let (private, public, key_id) = env.key("ed", "ed25519");
    let digest = env.push("dev/app:v1", "ed25519 payload");
    ok(&[
        "sign",
        &env.r("dev/app:v1"),
        "--key",
        private.to_str().unwrap(),
    ]);
    ok(&[
        "attest",
        &env.r("dev/app:v1"),
        "--provenance",
        "--key",
        private.to_str().unwrap(),
        "--source-uri",
        "git+https://example.com/acme/app",
        "--commit",
        "abc",
    ]);
    for kind in [Kind::Signature, Kind::Provenance] {
        let envelope = fetch_envelope(&env, "dev/app", &digest, kind);
        let file = env.path("envelope.json");
        std::fs::write(&file, &envelope).unwrap();
        let v = verified_dsse(&file, &public, &key_id, &digest, &format!("{kind:?}"));
        assert_eq!(v["scheme"], "ed25519");
    }
}

/// `bonded migrate` copies the trust store (windows and revocations included) before the tags,
/// so the target's push policies accept the signed artifacts, and reads manifests past the
/// source's pull policies.
#[test]
fn migrate_copies_the_trust_store_and_is_not_gated_by_policy() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    let source_cfg = tmp.path().join("source.toml");
    std::fs::write(
        &source_cfg,
        r#"
[[policy]]
name = "prod-all-pulls"
repositories = "prod/**"
on = ["pull-by-tag", "pull-by-digest"]
require_signature = { key_set = "release" }
"#,
    )
    .unwrap();
    let s = Server::start_config(&source_cfg, &src);
    let addr = s.addr.clone();
    let key = tmp.path().join("k");
    let key_id = ok(&["key", "generate", "--out", key.to_str().unwrap()])
        .trim()
        .to_string();
    let old = tmp.path().join("old");
    let old_id = ok(&["key", "generate", "--out", old.to_str().unwrap()])
        .trim()
        .to_string();
    let pem = |p: &Path, ext: &str| format!("{}{ext}", p.display());
    for (k, set) in [(&key, "release"), (&old, "release")] {
        ok(&[
            "trust",
            "add",
            &format!("{addr}/prod"),
            "--key-set",
            set,
            "--key",
            &pem(k, ".pub.pem"),
        ]);
    }
    ok(&["trust", "revoke", &format!("{addr}/prod"), &old_id]);
    let f = tmp.path().join("f.txt");
    std::fs::write(&f, "migrated payload").unwrap();
    ok(&[
        "push",
        "-q",
        f.to_str().unwrap(),
        &format!("{addr}/prod/app:v1"),
    ]);
    std::fs::write(&f, "unsigned payload").unwrap();
    ok(&[
        "push",
        "-q",
        f.to_str().unwrap(),
        &format!("{addr}/prod/unsigned:v1"),
    ]);
    ok(&[
        "sign",
        &format!("{addr}/prod/app:v1"),
        "--key",
        &pem(&key, ".pem"),
    ]);
    drop(s);

    let target_dir = tmp.path().join("target");
    let target_cfg = tmp.path().join("target.toml");
    std::fs::write(
        &target_cfg,
        format!(
            "data_dir = {:?}\n\n[[policy]]\nname = \"prod-signed-tags\"\nrepositories = \"prod/app\"\non = [\"push\"]\nrequire_signature = {{ key_set = \"release\" }}\n",
            target_dir.to_str().unwrap()
        ),
    )
    .unwrap();
    let out = Command::new(bin())
        .args(["migrate", "-q", "--config"])
        .arg(&source_cfg)
        .arg("--data-dir")
        .arg(&src)
        .arg("--to")
        .arg(&target_cfg)
        .output()
        .unwrap();
    let stdout = common::succeeded(&out, "bonded migrate");
    assert!(stdout.contains("2 trusted keys written"), "{stdout}");

    let t = Server::start_config(&target_cfg, &target_dir);
    let keys: Value =
        serde_json::from_str(&ok(&["trust", "list", &format!("{}/prod", t.addr)])).unwrap();
    let keys = keys["keys"].as_array().unwrap();
    assert_eq!(keys.len(), 2);
    let revoked =
        |id: &str| keys.iter().find(|k| k["key_id"] == id).unwrap()["revoked_at"].is_string();
    assert!(revoked(&old_id) && !revoked(&key_id));
    let out = ok(&[
        "verify",
        &format!("{}/prod/app:v1", t.addr),
        "--key-set",
        "release",
    ]);
    assert!(out.contains(&key_id), "{out}");
}
