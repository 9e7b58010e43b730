//! Conformance suite for the access-control and audit aggregates, run against SQLite and
//! PostgreSQL; on PostgreSQL the racing audit appends go through two stores (two nodes).

use std::collections::HashSet;

use crate::conformance::pg;
use crate::{
    chain_hash, AccountKind, AccountRecord, AuditEntry, AuditQuery, Checkpoint, GrantRecord,
    MetaError, MetaStore, SigningKeyRecord,
};

fn account(name: &str, kind: AccountKind) -> AccountRecord {
    AccountRecord {
        name: name.into(),
        kind,
        secret_hash: format!("$argon2id$fake${name}"),
        system_admin: false,
        created_at_ms: 1,
        expires_at_ms: None,
        revoked_at_ms: None,
    }
}

fn grant(ns: &str, subject: &str, role: &str) -> GrantRecord {
    GrantRecord {
        namespace: ns.into(),
        subject: subject.into(),
        role: role.into(),
        created_at_ms: 1,
    }
}

fn entry(actor: &str, action: &str, repo: &str, at_ms: i64) -> AuditEntry {
    AuditEntry {
        at_ms,
        actor: actor.into(),
        action: action.into(),
        repo: repo.into(),
        target: "sha256:abc".into(),
        source: "127.0.0.1".into(),
        outcome: "ok".into(),
        detail: String::new(),
    }
}

async fn access_suite(meta: MetaStore) {
    // Accounts: create once, names are unique even after revocation.
    let mut alice = account("alice", AccountKind::User);
    alice.system_admin = true;
    meta.accounts().create(&alice).await.unwrap();
    let mut ci = account("ci", AccountKind::Robot);
    ci.expires_at_ms = Some(99);
    meta.accounts().create(&ci).await.unwrap();
    assert!(matches!(
        meta.accounts()
            .create(&account("alice", AccountKind::User))
            .await,
        Err(MetaError::Conflict(_))
    ));
    assert_eq!(
        meta.accounts().get("alice").await.unwrap(),
        Some(alice.clone())
    );
    assert_eq!(meta.accounts().get("ci").await.unwrap(), Some(ci.clone()));
    assert_eq!(meta.accounts().get("bob").await.unwrap(), None);
    meta.accounts().revoke("ci", 50).await.unwrap();
    meta.accounts().revoke("ci", 70).await.unwrap();
    assert_eq!(
        meta.accounts()
            .get("ci")
            .await
            .unwrap()
            .unwrap()
            .revoked_at_ms,
        Some(50),
        "revocation keeps its first time"
    );
    assert!(matches!(
        meta.accounts().revoke("bob", 1).await,
        Err(MetaError::NotFound)
    ));
    let names: Vec<String> = meta
        .accounts()
        .list()
        .await
        .unwrap()
        .into_iter()
        .map(|a| a.name)
        .collect();
    assert_eq!(names, ["alice", "ci"]);

    // Grants: upsert changes the role; `of` returns only the asked subjects.
    meta.grants()
        .put(&grant("team-a/", "ci", "reader"))
        .await
        .unwrap();
    meta.grants()
        .put(&grant("team-a/", "ci", "developer"))
        .await
        .unwrap();
    meta.grants()
        .put(&grant("ml/**", "anonymous", "reader"))
        .await
        .unwrap();
    meta.grants()
        .put(&grant("team-b/", "alice", "admin"))
        .await
        .unwrap();
    let of = meta.grants().of(&["ci", "anonymous"]).await.unwrap();
    let got: HashSet<(String, String, String)> = of
        .into_iter()
        .map(|g| (g.namespace, g.subject, g.role))
        .collect();
    let want: HashSet<(String, String, String)> = [
        ("team-a/", "ci", "developer"),
        ("ml/**", "anonymous", "reader"),
    ]
    .into_iter()
    .map(|(a, b, c)| (a.into(), b.into(), c.into()))
    .collect();
    assert_eq!(got, want);
    assert_eq!(meta.grants().list().await.unwrap().len(), 3);
    meta.grants().remove("ml/**", "anonymous").await.unwrap();
    assert!(matches!(
        meta.grants().remove("ml/**", "anonymous").await,
        Err(MetaError::NotFound)
    ));
    // Deleting an account takes its grants with it.
    meta.accounts().delete("ci").await.unwrap();
    assert!(meta.grants().of(&["ci"]).await.unwrap().is_empty());
    assert!(matches!(
        meta.accounts().delete("ci").await,
        Err(MetaError::NotFound)
    ));
    assert_eq!(meta.grants().list().await.unwrap().len(), 1);

    // Signing keys: rotation retires the old key and keeps it.
    let key = |kid: &str, at: i64| SigningKeyRecord {
        kid: kid.into(),
        algorithm: "EdDSA".into(),
        private_key: vec![1, 2, 3],
        public_key: vec![4, 5],
        created_at_ms: at,
        retired_at_ms: None,
    };
    assert!(meta.signing_keys().list().await.unwrap().is_empty());
    meta.signing_keys()
        .rotate(&key("k1", 10), 10)
        .await
        .unwrap();
    meta.signing_keys()
        .rotate(&key("k2", 20), 20)
        .await
        .unwrap();
    let keys = meta.signing_keys().list().await.unwrap();
    assert_eq!(keys.len(), 2);
    assert_eq!((keys[0].kid.as_str(), keys[0].retired_at_ms), ("k2", None));
    assert_eq!(
        (keys[1].kid.as_str(), keys[1].retired_at_ms),
        ("k1", Some(20))
    );
    assert_eq!(keys[1].private_key, vec![1, 2, 3]);

    // Audit: a chain, queryable by repo, actor, action and time.
    assert_eq!(meta.audit().head().await.unwrap(), (0, String::new()));
    let e1 = meta
        .audit()
        .append(&entry("alice", "push", "team-a/x", 100))
        .await
        .unwrap();
    let e2 = meta
        .audit()
        .append(&entry("ci", "delete", "team-a/y", 200))
        .await
        .unwrap();
    let e3 = meta
        .audit()
        .append(&entry("alice", "login", "", 300))
        .await
        .unwrap();
    assert_eq!((e1.seq, e2.seq, e3.seq), (1, 2, 3));
    assert_eq!(e1.prev_hash, "");
    assert_eq!(e1.hash, chain_hash("", 1, &e1.entry));
    assert_eq!(e2.prev_hash, e1.hash);
    assert_eq!(e3.hash, chain_hash(&e2.hash, 3, &e3.entry));
    assert_eq!(meta.audit().head().await.unwrap(), (3, e3.hash.clone()));
    let q = |f: fn(&mut AuditQuery)| {
        let mut q = AuditQuery {
            limit: 100,
            ..Default::default()
        };
        f(&mut q);
        q
    };
    let seqs = |rs: Vec<crate::AuditRecord>| rs.into_iter().map(|r| r.seq).collect::<Vec<_>>();
    let all = meta.audit().query(&q(|_| {})).await.unwrap();
    assert_eq!(all, vec![e1.clone(), e2.clone(), e3.clone()]);
    let by_actor = meta
        .audit()
        .query(&q(|q| q.actor = Some("alice".into())))
        .await;
    assert_eq!(seqs(by_actor.unwrap()), [1, 3]);
    let by_repo = meta
        .audit()
        .query(&q(|q| q.repo = Some("team-a/y".into())))
        .await;
    assert_eq!(seqs(by_repo.unwrap()), [2]);
    let by_action = meta
        .audit()
        .query(&q(|q| q.action = Some("login".into())))
        .await;
    assert_eq!(seqs(by_action.unwrap()), [3]);
    let by_time = meta
        .audit()
        .query(&q(|q| {
            q.since_ms = Some(150);
            q.until_ms = Some(300);
        }))
        .await;
    assert_eq!(seqs(by_time.unwrap()), [2]);
    let paged = meta
        .audit()
        .query(&q(|q| {
            q.after_seq = 1;
            q.limit = 1;
        }))
        .await;
    assert_eq!(seqs(paged.unwrap()), [2]);
    let cp = Checkpoint {
        seq: 3,
        hash: e3.hash.clone(),
        kid: "k2".into(),
        signature: "sig".into(),
        at_ms: 400,
    };
    meta.audit().add_checkpoint(&cp).await.unwrap();
    meta.audit().add_checkpoint(&cp).await.unwrap();
    assert_eq!(meta.audit().checkpoints().await.unwrap(), vec![cp]);
}

/// Appends racing from several nodes form one unbroken chain.
async fn racing_audit_appends_form_one_chain(nodes: &[MetaStore]) {
    let mut tasks = Vec::new();
    for i in 0..40 {
        let meta = nodes[i % nodes.len()].clone();
        tasks.push(tokio::spawn(async move {
            meta.audit()
                .append(&entry(&format!("actor{i}"), "push", "r", i as i64))
                .await
                .unwrap()
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let all = nodes[0]
        .audit()
        .query(&AuditQuery {
            limit: 1000,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(all.len(), 40);
    let mut prev = String::new();
    for (i, r) in all.iter().enumerate() {
        assert_eq!(r.seq, i as i64 + 1);
        assert_eq!(
            r.prev_hash, prev,
            "entry {} does not follow its predecessor",
            r.seq
        );
        assert_eq!(r.hash, chain_hash(&prev, r.seq, &r.entry));
        prev = r.hash.clone();
    }
}

#[tokio::test]
async fn sqlite_access_and_audit_pass_the_suite() {
    let dir = tempfile::tempdir().unwrap();
    access_suite(MetaStore::sqlite(&dir.path().join("a.db")).await.unwrap()).await;
}

#[tokio::test]
async fn postgres_access_and_audit_pass_the_suite() {
    let db = pg::TestDb::create().await;
    access_suite(db.store().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_racing_audit_appends_form_one_chain() {
    let dir = tempfile::tempdir().unwrap();
    let meta = MetaStore::sqlite(&dir.path().join("a.db")).await.unwrap();
    racing_audit_appends_form_one_chain(&[meta]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_racing_audit_appends_on_two_nodes_form_one_chain() {
    let db = pg::TestDb::create().await;
    racing_audit_appends_form_one_chain(&db.nodes(2).await).await;
}
