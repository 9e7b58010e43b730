//! Access control end to end: the real binary with `[auth]` on, driven over HTTP. Every attempt
//! to get in where one does not belong is refused with the spec's status and code; every role ×
//! action pair is allowed or refused as the role says; tokens, robots, key rotation and the
//! management API behave as documented.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine as _;
use common::{Server, ADMIN_PASSWORD};
use reqwest::header::HeaderMap;
use reqwest::Method;
use serde_json::{json, Value};
use sha2::{Digest as _, Sha256};

pub enum Cred<'a> {
    None,
    Basic(&'a str, &'a str),
    Bearer(&'a str),
}

pub struct Resp {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: String,
}

impl Resp {
    pub fn code(&self) -> String {
        serde_json::from_str::<Value>(&self.body)
            .ok()
            .and_then(|v| v.pointer("/errors/0/code")?.as_str().map(str::to_string))
            .unwrap_or_default()
    }
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or(Value::Null)
    }
    pub fn header(&self, k: &str) -> String {
        self.headers
            .get(k)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string()
    }
    /// Asserts the status and OCI error code.
    #[track_caller]
    pub fn refused(&self, status: u16, code: &str, what: &str) {
        assert_eq!(
            (self.status, self.code().as_str()),
            (status, code),
            "{what}: {}",
            self.body
        );
    }
}

pub struct Reg {
    pub server: Server,
    http: reqwest::Client,
}

pub fn sha256(b: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(b)))
}

/// The claims of a JWT, unverified (to see what the registry granted).
pub fn claims(token: &str) -> Value {
    let payload = token.split('.').nth(1).expect("JWT payload");
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).expect("base64url")).expect("JSON")
}

impl Reg {
    pub fn start(env: &[(&str, &str)]) -> Reg {
        Reg::with(Server::start_auth(env))
    }

    fn with(server: Server) -> Reg {
        Reg {
            server,
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap(),
        }
    }

    pub async fn call(
        &self,
        method: Method,
        path: &str,
        cred: Cred<'_>,
        body: Option<(&str, Vec<u8>)>,
    ) -> Resp {
        let mut rb = self.http.request(method, self.server.url(path));
        rb = match cred {
            Cred::None => rb,
            Cred::Basic(u, p) => rb.basic_auth(u, Some(p)),
            Cred::Bearer(t) => rb.bearer_auth(t),
        };
        if let Some((ct, b)) = body {
            rb = rb.header("content-type", ct).body(b);
        }
        let r = rb.send().await.expect("request");
        let status = r.status().as_u16();
        let headers = r.headers().clone();
        let body = r.text().await.unwrap_or_default();
        Resp {
            status,
            headers,
            body,
        }
    }

    /// A management API call as the admin.
    pub async fn admin(&self, method: Method, path: &str, body: Option<Value>) -> Resp {
        let body = body.map(|b| ("application/json", b.to_string().into_bytes()));
        self.call(
            method,
            &format!("/api/v1{path}"),
            Cred::Basic("admin", ADMIN_PASSWORD),
            body,
        )
        .await
    }

    pub async fn user(&self, name: &str, password: &str) {
        let r = self
            .admin(
                Method::POST,
                "/users",
                Some(json!({"name": name, "password": password})),
            )
            .await;
        assert_eq!(r.status, 201, "creating {name}: {}", r.body);
    }

    pub async fn grant(&self, ns: &str, subject: &str, role: &str) {
        let r = self
            .admin(
                Method::POST,
                "/grants",
                Some(json!({"namespace": ns, "subject": subject, "role": role})),
            )
            .await;
        assert_eq!(
            r.status, 201,
            "granting {role} on {ns} to {subject}: {}",
            r.body
        );
    }

    /// `GET /auth/token` for `scopes`; returns the status and the token (if any).
    pub async fn token(&self, cred: Cred<'_>, scopes: &[&str]) -> (u16, String) {
        let q: String = scopes
            .iter()
            .map(|s| format!("&scope={}", s.replace(':', "%3A").replace(',', "%2C")))
            .collect();
        let r = self
            .call(
                Method::GET,
                &format!("/auth/token?service=bonded{q}"),
                cred,
                None,
            )
            .await;
        let t = r.json()["token"].as_str().unwrap_or("").to_string();
        (r.status, t)
    }

    /// Pushes a blob (monolithic POST) and a manifest referencing it; returns the manifest's
    /// status and digest.
    pub async fn push(&self, repo: &str, tag: &str, cred: &Cred<'_>, seed: &str) -> (u16, String) {
        let layer = format!("layer of {repo} {seed}").into_bytes();
        let config = b"{}".to_vec();
        for b in [&layer, &config] {
            let r = self
                .call(
                    Method::POST,
                    &format!("/v2/{repo}/blobs/uploads/?digest={}", sha256(b)),
                    clone(cred),
                    Some(("application/octet-stream", b.clone())),
                )
                .await;
            if r.status != 201 {
                return (r.status, r.body);
            }
        }
        let manifest = json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                       "digest": sha256(&config), "size": config.len()},
            "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar",
                        "digest": sha256(&layer), "size": layer.len()}],
        })
        .to_string()
        .into_bytes();
        let d = sha256(&manifest);
        let r = self
            .call(
                Method::PUT,
                &format!("/v2/{repo}/manifests/{tag}"),
                clone(cred),
                Some(("application/vnd.oci.image.manifest.v1+json", manifest)),
            )
            .await;
        (r.status, if r.status == 201 { d } else { r.body })
    }

    /// A request with the path sent exactly as written (no client-side normalisation).
    pub fn raw_get(&self, path: &str, basic: (&str, &str)) -> (u16, String) {
        let mut s = TcpStream::connect(&self.server.addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        let auth = STANDARD.encode(format!("{}:{}", basic.0, basic.1));
        let req = format!(
            "GET {path} HTTP/1.1\r\nHost: {}\r\nAuthorization: Basic {auth}\r\nConnection: close\r\n\r\n",
            self.server.addr
        );
        s.write_all(req.as_bytes()).unwrap();
        let mut out = String::new();
        let _ = s.read_to_string(&mut out);
        let status = out
            .split_whitespace()
            .nth(1)
            .and_then(|c| c.parse().ok())
            .unwrap_or(0);
        (status, out)
    }
}

pub fn clone<'a>(c: &Cred<'a>) -> Cred<'a> {
    match c {
        Cred::None => Cred::None,
        Cred::Basic(u, p) => Cred::Basic(u, p),
        Cred::Bearer(t) => Cred::Bearer(t),
    }
}

#[tokio::test]
async fn attacks_are_refused_with_the_right_codes() {
    let reg = Reg::start(&[]);
    let admin = Cred::Basic("admin", ADMIN_PASSWORD);
    reg.user("alice", "alice-password").await;
    reg.user("bob", "bob-password").await;
    reg.grant("team-a/", "alice", "developer").await;
    reg.grant("team-a/", "bob", "reader").await;
    reg.grant("public/", "anonymous", "reader").await;
    assert_eq!(reg.push("team-a/app", "v1", &admin, "a").await.0, 201);
    let (st, secret_digest) = reg.push("team-b/secret", "v1", &admin, "b").await;
    assert_eq!(st, 201);
    assert_eq!(reg.push("public/tool", "v1", &admin, "p").await.0, 201);

    // No credentials: 401 with a challenge naming the realm, service and scope.
    let r = reg
        .call(Method::GET, "/v2/team-a/app/manifests/v1", Cred::None, None)
        .await;
    r.refused(401, "UNAUTHORIZED", "no credentials");
    let ch = r.header("www-authenticate");
    assert!(
        ch.starts_with(&format!(
            "Bearer realm=\"http://{}/auth/token\",service=\"bonded\"",
            reg.server.addr
        )) && ch.contains("scope=\"repository:team-a/app:pull\""),
        "challenge: {ch}"
    );
    let r = reg
        .call(
            Method::POST,
            "/v2/team-a/app/blobs/uploads/",
            Cred::None,
            None,
        )
        .await;
    r.refused(401, "UNAUTHORIZED", "anonymous push");
    assert!(r
        .header("www-authenticate")
        .contains("scope=\"repository:team-a/app:pull,push\""));
    let r = reg.call(Method::GET, "/v2/", Cred::None, None).await;
    r.refused(401, "UNAUTHORIZED", "anonymous /v2/");

    // Anonymous pull where granted, and nothing more.
    let r = reg
        .call(
            Method::GET,
            "/v2/public/tool/manifests/v1",
            Cred::None,
            None,
        )
        .await;
    assert_eq!(r.status, 200, "anonymous pull of public/: {}", r.body);
    let r = reg
        .call(
            Method::DELETE,
            "/v2/public/tool/manifests/v1",
            Cred::None,
            None,
        )
        .await;
    r.refused(401, "UNAUTHORIZED", "anonymous delete in public/");

    // Wrong password: on /v2 and at the token endpoint. The secret is not echoed.
    let r = reg
        .call(
            Method::GET,
            "/v2/team-a/app/manifests/v1",
            Cred::Basic("alice", "not-her-password"),
            None,
        )
        .await;
    r.refused(401, "UNAUTHORIZED", "wrong password");
    assert!(!r.body.contains("not-her-password"));
    let (st, _) = reg
        .token(
            Cred::Basic("alice", "not-her-password"),
            &["repository:team-a/app:pull"],
        )
        .await;
    assert_eq!(st, 401, "token with a wrong password");
    let (st, _) = reg
        .token(
            Cred::Basic("nobody", "whatever-pass"),
            &["repository:team-a/app:pull"],
        )
        .await;
    assert_eq!(st, 401, "token for an unknown account");

    // Scope escalation: bob (reader) asks for push and delete and gets pull only.
    let (st, bob_token) = reg
        .token(
            Cred::Basic("bob", "bob-password"),
            &[
                "repository:team-a/app:pull,push,delete",
                "repository:team-b/secret:pull",
            ],
        )
        .await;
    assert_eq!(st, 200);
    let access = claims(&bob_token)["access"].clone();
    assert_eq!(
        access,
        json!([
            {"type": "repository", "name": "team-a/app", "actions": ["pull"]},
            {"type": "repository", "name": "team-b/secret", "actions": []}
        ]),
        "bob's token must carry only what bob may do"
    );
    // A pull-only token used to push or delete: bob may not, so DENIED.
    let r = reg
        .call(
            Method::POST,
            "/v2/team-a/app/blobs/uploads/",
            Cred::Bearer(&bob_token),
            None,
        )
        .await;
    r.refused(403, "DENIED", "pull-only token used to push");
    let r = reg
        .call(
            Method::DELETE,
            "/v2/team-a/app/manifests/v1",
            Cred::Bearer(&bob_token),
            None,
        )
        .await;
    r.refused(403, "DENIED", "pull-only token used to delete");
    let r = reg
        .call(
            Method::GET,
            "/v2/team-a/app/manifests/v1",
            Cred::Bearer(&bob_token),
            None,
        )
        .await;
    assert_eq!(r.status, 200, "bob pulls with his token: {}", r.body);
    // The refusal is in the audit log, under bob's name.
    let r = reg
        .admin(Method::GET, "/audit?actor=bob&action=delete", None)
        .await;
    let e = &r.json()["entries"][0];
    assert_eq!(
        (
            e["repository"].as_str(),
            e["target"].as_str(),
            e["outcome"].as_str()
        ),
        (Some("team-a/app"), Some("v1"), Some("denied")),
        "{}",
        r.body
    );
    // Bob with Basic on /v2 directly: pull works, push is DENIED.
    let r = reg
        .call(
            Method::GET,
            "/v2/team-a/app/manifests/v1",
            Cred::Basic("bob", "bob-password"),
            None,
        )
        .await;
    assert_eq!(r.status, 200);
    let (st, _) = reg
        .push(
            "team-a/app",
            "bob",
            &Cred::Basic("bob", "bob-password"),
            "x",
        )
        .await;
    assert_eq!(st, 403, "bob pushes with Basic");

    // A token for repo A used on repo B.
    let (_, alice_a) = reg
        .token(
            Cred::Basic("alice", "alice-password"),
            &["repository:team-a/app:pull,push"],
        )
        .await;
    let r = reg
        .call(
            Method::GET,
            "/v2/team-b/secret/manifests/v1",
            Cred::Bearer(&alice_a),
            None,
        )
        .await;
    r.refused(403, "DENIED", "token for team-a/app used on team-b/secret");
    // ... and on a repository alice may use but the token does not name: a new token will do.
    let r = reg
        .call(
            Method::GET,
            "/v2/team-a/other/tags/list",
            Cred::Bearer(&alice_a),
            None,
        )
        .await;
    r.refused(403, "DENIED", "token without the scope alice holds");
    assert!(r.header("www-authenticate").contains("insufficient_scope"));
    assert_eq!(
        reg.push("team-a/app", "v2", &Cred::Bearer(&alice_a), "c")
            .await
            .0,
        201,
        "alice pushes with her token"
    );

    // Tampered tokens: claims swapped for more, signature kept; a garbage token.
    let parts: Vec<&str> = bob_token.split('.').collect();
    let mut forged = claims(&bob_token);
    forged["access"][0]["actions"] = json!(["pull", "push", "delete"]);
    forged["sub"] = json!("admin");
    let forged = format!(
        "{}.{}.{}",
        parts[0],
        URL_SAFE_NO_PAD.encode(forged.to_string()),
        parts[2]
    );
    let r = reg
        .call(
            Method::DELETE,
            "/v2/team-a/app/manifests/v1",
            Cred::Bearer(&forged),
            None,
        )
        .await;
    r.refused(401, "UNAUTHORIZED", "tampered token");
    assert!(r.header("www-authenticate").contains("invalid_token"));
    let r = reg
        .call(
            Method::GET,
            "/v2/team-a/app/manifests/v1",
            Cred::Bearer("a.b.c"),
            None,
        )
        .await;
    r.refused(401, "UNAUTHORIZED", "garbage token");

    // Namespace tricks, sent byte for byte: never a different repository.
    for path in [
        "/v2/team-a/../team-b/secret/manifests/v1",
        "/v2/TEAM-B/secret/manifests/v1",
        "/v2/team-b%2fsecret/manifests/v1",
        "/v2/team-a/%2e%2e/team-b/secret/manifests/v1",
    ] {
        let (status, body) = reg.raw_get(path, ("alice", "alice-password"));
        assert!(
            status == 400 && body.contains("NAME_INVALID"),
            "{path}: {status} {body}"
        );
    }

    // A mount from a repository the caller cannot read falls back to a normal upload.
    let config_digest = sha256(b"{}");
    let layer_b = sha256(b"layer of team-b/secret b");
    let r = reg
        .call(
            Method::POST,
            &format!("/v2/team-a/app/blobs/uploads/?mount={layer_b}&from=team-b/secret"),
            Cred::Basic("alice", "alice-password"),
            None,
        )
        .await;
    assert_eq!(r.status, 202, "mount from an unreadable repo: {}", r.body);
    let r = reg
        .call(
            Method::HEAD,
            &format!("/v2/team-a/app/blobs/{layer_b}"),
            Cred::Basic("alice", "alice-password"),
            None,
        )
        .await;
    assert_eq!(r.status, 404, "the blob must not have been linked");
    // From a readable repository it mounts.
    reg.grant("team-b/secret", "alice", "reader").await;
    let r = reg
        .call(
            Method::POST,
            &format!("/v2/team-a/app/blobs/uploads/?mount={layer_b}&from=team-b/secret"),
            Cred::Basic("alice", "alice-password"),
            None,
        )
        .await;
    assert_eq!(r.status, 201, "mount from a readable repo: {}", r.body);
    let _ = (config_digest, secret_digest);

    // The catalog lists only what the caller can see.
    let r = reg
        .call(
            Method::GET,
            "/v2/_catalog",
            Cred::Basic("bob", "bob-password"),
            None,
        )
        .await;
    assert_eq!(
        r.json()["repositories"],
        json!(["public/tool", "team-a/app"]),
        "bob's catalog"
    );
    let r = reg.call(Method::GET, "/v2/_catalog", admin, None).await;
    assert_eq!(
        r.json()["repositories"],
        json!(["public/tool", "team-a/app", "team-b/secret"])
    );

    // A robot works until it is revoked, then neither Basic nor the token endpoint accepts it.
    let r = reg
        .admin(
            Method::POST,
            "/robots",
            Some(json!({"name": "ci", "expires_in_days": 1})),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let secret = r.json()["secret"].as_str().unwrap().to_string();
    reg.grant("team-a/", "ci", "maintainer").await;
    let ci = Cred::Basic("ci", &secret);
    assert_eq!(reg.push("team-a/app", "ci", &ci, "ci").await.0, 201);
    let r = reg.admin(Method::GET, "/robots", None).await;
    assert!(!r.body.contains(&secret), "robot secrets are never listed");
    let r = reg.admin(Method::POST, "/robots/ci/revoke", None).await;
    assert_eq!(r.status, 204, "{}", r.body);
    let r = reg
        .call(
            Method::GET,
            "/v2/team-a/app/manifests/v1",
            Cred::Basic("ci", &secret),
            None,
        )
        .await;
    r.refused(401, "UNAUTHORIZED", "revoked robot on /v2");
    let (st, _) = reg
        .token(Cred::Basic("ci", &secret), &["repository:team-a/app:pull"])
        .await;
    assert_eq!(st, 401, "revoked robot at the token endpoint");

    // An expired robot is refused too (its expiry moved into the past behind bonded's back).
    let r = reg
        .admin(
            Method::POST,
            "/robots",
            Some(json!({"name": "old-ci", "expires_in_days": 30})),
        )
        .await;
    let old_secret = r.json()["secret"].as_str().unwrap().to_string();
    reg.grant("team-a/", "old-ci", "reader").await;
    let pull_as_old = || {
        reg.call(
            Method::GET,
            "/v2/team-a/app/manifests/v1",
            Cred::Basic("old-ci", &old_secret),
            None,
        )
    };
    assert_eq!(pull_as_old().await.status, 200);
    common::sql(
        &reg.server.data_dir,
        "UPDATE accounts SET expires_at = 1 WHERE name = 'old-ci'",
    );
    pull_as_old()
        .await
        .refused(401, "UNAUTHORIZED", "expired robot");

    // Management API: only system admins, errors in the documented envelope.
    let r = reg
        .call(
            Method::GET,
            "/api/v1/users",
            Cred::Basic("alice", "alice-password"),
            None,
        )
        .await;
    assert_eq!(r.status, 403);
    assert_eq!(r.json()["error"]["code"], "FORBIDDEN");
    let r = reg
        .call(Method::GET, "/api/v1/users", Cred::None, None)
        .await;
    assert_eq!(r.status, 401);
    assert_eq!(r.json()["error"]["code"], "UNAUTHENTICATED");
    let r = reg
        .admin(
            Method::POST,
            "/grants",
            Some(json!({"namespace": "a/../b/", "subject": "bob", "role": "reader"})),
        )
        .await;
    assert_eq!(
        (r.status, r.json()["error"]["code"].clone()),
        (400, json!("INVALID_ARGUMENT"))
    );
    let r = reg
        .admin(
            Method::POST,
            "/grants",
            Some(json!({"namespace": "x/", "subject": "bob", "role": "owner"})),
        )
        .await;
    assert_eq!(r.status, 400, "{}", r.body);
    let r = reg
        .admin(
            Method::POST,
            "/users",
            Some(json!({"name": "bob", "password": "another-pass"})),
        )
        .await;
    assert_eq!(
        (r.status, r.json()["error"]["code"].clone()),
        (409, json!("CONFLICT"))
    );
    let r = reg.admin(Method::GET, "/nothing-here", None).await;
    assert_eq!(
        (r.status, r.json()["error"]["code"].clone()),
        (404, json!("NOT_FOUND"))
    );
}

/// Every role × action pair over HTTP Basic on /v2: allowed where the role says, `DENIED`
/// elsewhere; and nothing outside the role's namespace.
#[tokio::test]
async fn every_role_may_do_exactly_its_actions() {
    let reg = Reg::start(&[]);
    let admin = Cred::Basic("admin", ADMIN_PASSWORD);
    // (role, may pull, may push, may delete)
    let table = [
        ("reader", true, false, false),
        ("developer", true, true, false),
        ("maintainer", true, true, true),
        ("admin", true, true, true),
    ];
    for (role, pull, push, delete) in table {
        let user = format!("u-{role}");
        let pass = format!("{role}-password");
        reg.user(&user, &pass).await;
        let ns = format!("ns-{role}/");
        let repo = format!("ns-{role}/app");
        reg.grant(&ns, &user, role).await;
        assert_eq!(reg.push(&repo, "seed", &admin, role).await.0, 201);
        let me = Cred::Basic(&user, &pass);

        let r = reg
            .call(
                Method::GET,
                &format!("/v2/{repo}/manifests/seed"),
                clone(&me),
                None,
            )
            .await;
        assert_eq!(r.status == 200, pull, "{role} pull: {}", r.body);

        let (st, _) = reg.push(&repo, "mine", &me, "mine").await;
        if push {
            assert_eq!(st, 201, "{role} push");
        } else {
            assert_eq!(st, 403, "{role} push must be DENIED");
        }

        let r = reg
            .call(
                Method::DELETE,
                &format!("/v2/{repo}/manifests/seed"),
                clone(&me),
                None,
            )
            .await;
        if delete {
            assert_eq!(r.status, 202, "{role} delete: {}", r.body);
        } else {
            r.refused(403, "DENIED", &format!("{role} delete"));
        }

        // Outside its namespace the role gives nothing.
        let r = reg
            .call(
                Method::GET,
                "/v2/elsewhere/app/manifests/seed",
                clone(&me),
                None,
            )
            .await;
        r.refused(403, "DENIED", &format!("{role} outside its namespace"));

        // Manage: only the namespace admin may grant, and only inside its namespace.
        let grant = |ns: &str| {
            let body = json!({"namespace": ns, "subject": "u-reader", "role": "reader"});
            reg.call(
                Method::POST,
                "/api/v1/grants",
                clone(&me),
                Some(("application/json", body.to_string().into_bytes())),
            )
        };
        let inside = grant(&format!("ns-{role}/sub/")).await;
        let outside = grant("elsewhere/").await;
        let listed = reg
            .call(Method::GET, "/api/v1/grants", clone(&me), None)
            .await;
        if role == "admin" {
            assert_eq!(inside.status, 201, "admin grants inside: {}", inside.body);
            assert_eq!(
                outside.status, 403,
                "admin grants outside: {}",
                outside.body
            );
            let namespaces: Vec<String> = listed.json()["grants"]
                .as_array()
                .unwrap()
                .iter()
                .map(|g| g["namespace"].as_str().unwrap().to_string())
                .collect();
            assert_eq!(
                namespaces,
                ["ns-admin/", "ns-admin/sub/"],
                "a namespace admin sees its own"
            );
        } else {
            for r in [&inside, &outside, &listed] {
                assert_eq!(
                    (r.status, r.json()["error"]["code"].as_str()),
                    (403, Some("FORBIDDEN")),
                    "{role} manage: {}",
                    r.body
                );
            }
        }
        // Accounts stay with system admins.
        let r = reg
            .call(Method::GET, "/api/v1/users", clone(&me), None)
            .await;
        assert_eq!(r.status, 403, "{role} lists users");
    }
}

async fn pull(reg: &Reg, token: &str) -> Resp {
    reg.call(
        Method::GET,
        "/v2/team-a/app/manifests/v1",
        Cred::Bearer(token),
        None,
    )
    .await
}

#[tokio::test]
async fn expired_tokens_are_refused_and_key_rotation_keeps_old_tokens_valid() {
    // A data directory of the test's own, so the server can be restarted on it.
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let mut env = common::auth_env().to_vec();
    env.push(("BONDED_AUTH__TOKEN_TTL_SECS", "30"));
    let reg = Reg::with(Server::start_in(&data, &env));
    reg.user("alice", "alice-password").await;
    reg.grant("team-a/", "alice", "developer").await;
    let admin = Cred::Basic("admin", ADMIN_PASSWORD);
    assert_eq!(reg.push("team-a/app", "v1", &admin, "a").await.0, 201);
    let scope = ["repository:team-a/app:pull"];
    let (_, old) = reg
        .token(Cred::Basic("alice", "alice-password"), &scope)
        .await;
    assert_eq!(pull(&reg, &old).await.status, 200);

    // Rotate: new tokens use the new key; the old token still works.
    let r = reg.admin(Method::POST, "/signing-keys/rotate", None).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let (_, new) = reg
        .token(Cred::Basic("alice", "alice-password"), &scope)
        .await;
    let kid = |t: &str| {
        let h = t.split('.').next().unwrap();
        serde_json::from_slice::<Value>(&URL_SAFE_NO_PAD.decode(h).unwrap()).unwrap()["kid"].clone()
    };
    assert_ne!(kid(&old), kid(&new), "rotation changes the signing key");
    assert_eq!(kid(&new), r.json()["kid"]);
    assert_eq!(pull(&reg, &old).await.status, 200, "old key still verifies");
    assert_eq!(pull(&reg, &new).await.status, 200);

    // The keys persist: after a restart both tokens still verify.
    let mut reg = reg;
    reg.server.kill();
    reg.server = Server::start_in(&data, &env);
    assert_eq!(
        pull(&reg, &old).await.status,
        200,
        "key persisted across restart"
    );
    assert_eq!(pull(&reg, &new).await.status, 200);

    // Past its lifetime a token is refused.
    let exp = claims(&old)["exp"].as_i64().unwrap();
    let now = || {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64
    };
    // Waiting for expiry is the behaviour under test, not synchronisation.
    while now() <= exp {
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let r = pull(&reg, &old).await;
    r.refused(401, "UNAUTHORIZED", "expired token");
    assert!(r.body.contains("expired"), "{}", r.body);
    drop(reg);
    if common::s3_postgres() {
        common::drop_database(&data);
    }
}

#[tokio::test]
async fn failed_logins_are_rate_limited_per_account_and_source() {
    let reg = Reg::start(&[("BONDED_AUTH__LOGIN_MAX_FAILURES", "3")]);
    reg.user("alice", "alice-password").await;
    for i in 0..3 {
        let r = reg
            .call(
                Method::GET,
                "/v2/",
                Cred::Basic("alice", &format!("guess-{i}")),
                None,
            )
            .await;
        r.refused(401, "UNAUTHORIZED", "a wrong guess");
    }
    // Now even the right password is refused for a while, with Retry-After.
    let r = reg
        .call(
            Method::GET,
            "/v2/",
            Cred::Basic("alice", "alice-password"),
            None,
        )
        .await;
    r.refused(429, "TOOMANYREQUESTS", "rate-limited login");
    assert!(r.header("retry-after").parse::<u64>().unwrap() > 0);
    let (st, _) = reg.token(Cred::Basic("alice", "alice-password"), &[]).await;
    assert_eq!(st, 429, "the token endpoint shares the limit");
}

#[test]
fn first_start_creates_an_admin_and_prints_how_to_log_in() {
    use std::io::BufRead;
    let tmp = tempfile::tempdir().unwrap();
    let mut child = std::process::Command::new(common::bin())
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(tmp.path().join("data"))
        .env("RUST_LOG", "warn")
        .env("BONDED_AUTH__ENABLED", "true")
        .env_remove("BONDED_ADMIN_PASSWORD")
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let mut printed = Vec::new();
    for line in lines.by_ref() {
        let line = line.unwrap();
        let done = line.contains("listening on");
        printed.push(line);
        if done {
            break;
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    let all = printed.join("\n");
    assert!(all.contains("bonded login"), "{all}");
    let password = all
        .split("with password: ")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .unwrap_or_else(|| panic!("no password printed: {all}"));
    assert!(password.len() >= 32, "a generated password is long");
    for f in ["bonded.db", "bonded.db-wal"] {
        let bytes = std::fs::read(tmp.path().join("data").join(f)).unwrap_or_default();
        assert!(
            !bytes
                .windows(password.len())
                .any(|w| w == password.as_bytes()),
            "the password is stored only hashed ({f})"
        );
    }
}

/// Signed checkpoints catch what the chain alone cannot: a tail cut off together with the head
/// row rewritten to match, and a forged checkpoint.
#[tokio::test]
async fn signed_checkpoints_catch_a_rewritten_tail() {
    let reg = Reg::start(&[("BONDED_AUDIT__CHECKPOINT_EVERY", "3")]);
    for i in 0..7 {
        reg.user(&format!("user{i}"), "a-long-password").await;
    }
    let verify = || reg.admin(Method::GET, "/audit/verify", None);
    let r = verify().await;
    assert_eq!(r.json()["intact"], true, "{}", r.body);
    let entries = r.json()["entries"].as_i64().unwrap();
    assert!(entries >= 7, "{}", r.body);
    assert!(r.json()["checkpoints"].as_i64().unwrap() >= 2, "{}", r.body);

    // Cut the log back to entry 4 and make the head agree: the chain itself is consistent again,
    // but the checkpoint signed at entry 6 is past its end.
    let data = &reg.server.data_dir;
    common::sql(data, "DELETE FROM audit_log WHERE seq > 4");
    common::sql(
        data,
        "UPDATE audit_head SET seq = 4, hash = (SELECT hash FROM audit_log WHERE seq = 4) WHERE id = 1",
    );
    let r = verify().await;
    assert_eq!(r.json()["intact"], false, "{}", r.body);
    assert!(r.body.contains("past the end of the log"), "{}", r.body);

    // A forged checkpoint over the truncated chain does not carry a valid signature.
    common::sql(data, "DELETE FROM audit_checkpoints WHERE seq > 4");
    common::sql(
        data,
        "INSERT INTO audit_checkpoints (seq, hash, kid, signature, at) \
         SELECT 4, hash, (SELECT kid FROM audit_checkpoints LIMIT 1), 'Zm9yZ2Vk', 0 \
         FROM audit_log WHERE seq = 4",
    );
    let r = verify().await;
    assert_eq!(r.json()["intact"], false, "{}", r.body);
    assert!(r.body.contains("invalid signature"), "{}", r.body);
}
