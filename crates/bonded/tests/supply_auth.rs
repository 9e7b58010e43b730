//! The supply-chain management API under access control: changing the trust store needs a system
//! admin and is audited; reading an artifact's attestations needs pull on its repository.

mod common;

use std::process::Command;

fn key_pair(dir: &std::path::Path) -> String {
    let out = Command::new(common::bin())
        .args(["key", "generate", "--out"])
        .arg(dir.join("k"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::read_to_string(dir.join("k.pub.pem")).unwrap()
}

#[tokio::test]
async fn trust_changes_need_a_system_admin_and_are_audited() {
    let s = common::Server::start_auth(&[]);
    let http = reqwest::Client::new();
    let dir = tempfile::tempdir().unwrap();
    let public_key = key_pair(dir.path());
    let url = s.url("/api/v1/trust/prod/keys");
    let body = serde_json::json!({"key_set": "release", "public_key": public_key});

    // Nobody: 401.
    let r = http.post(&url).json(&body).send().await.unwrap();
    assert_eq!(r.status(), 401);
    let e: serde_json::Value = r.json().await.unwrap();
    assert_eq!(e["error"]["code"], "UNAUTHENTICATED");

    // An ordinary account, even one that may push to prod: 403.
    let r = http
        .post(s.url("/api/v1/users"))
        .basic_auth("admin", Some(common::ADMIN_PASSWORD))
        .json(&serde_json::json!({"name": "alice", "password": "alice-password-1"}))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{}", r.text().await.unwrap());
    let r = http
        .post(s.url("/api/v1/grants"))
        .basic_auth("admin", Some(common::ADMIN_PASSWORD))
        .json(&serde_json::json!({"namespace": "prod/", "subject": "alice", "role": "maintainer"}))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{}", r.text().await.unwrap());
    let r = http
        .post(&url)
        .basic_auth("alice", Some("alice-password-1"))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    let e: serde_json::Value = r.json().await.unwrap();
    assert_eq!(e["error"]["code"], "FORBIDDEN");
    // Reading an artifact's attestations needs pull on it: alice may for prod, not for dev.
    let r = http
        .get(s.url("/api/v1/supply/artifact?repository=dev/app&reference=v1"))
        .basic_auth("alice", Some("alice-password-1"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);

    // The system admin: 201, and the audit log says who.
    let r = http
        .post(&url)
        .basic_auth("admin", Some(common::ADMIN_PASSWORD))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());
    let key: serde_json::Value = r.json().await.unwrap();
    let r = http
        .get(s.url("/api/v1/audit?action=trust.add"))
        .basic_auth("admin", Some(common::ADMIN_PASSWORD))
        .send()
        .await
        .unwrap();
    let text = r.text().await.unwrap();
    assert!(text.contains("\"actor\":\"admin\""), "{text}");
    assert!(text.contains(key["key_id"].as_str().unwrap()), "{text}");
}
