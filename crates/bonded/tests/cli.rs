//! The `bonded` CLI against a real server: push, pull, list, tag, inspect, delete.

mod common;

use std::process::Command;

use common::{bin, Server};

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
    assert!(success, "bonded {args:?} failed:\n{err}");
    out
}

#[test]
fn push_pull_tag_inspect_and_delete_round_trip() {
    let s = Server::start();
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("model.safetensors");
    let data: Vec<u8> = (0..3_000_000u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect();
    std::fs::write(&model, &data).unwrap();
    let target = format!("{}/ml/recsys:v3", s.addr);

    let out = ok(&[
        "push",
        "-q",
        model.to_str().unwrap(),
        &target,
        "--artifact-type",
        "application/vnd.example.model.v1",
        "--annotation",
        "org.opencontainers.image.source=https://example.com/recsys",
    ]);
    let pushed_digest = out.trim().rsplit('@').next().unwrap().to_string();
    assert!(pushed_digest.starts_with("sha256:"), "{out}");

    // Pushing the same file again uploads nothing new and yields the same manifest digest.
    let again = ok(&[
        "push",
        "-q",
        model.to_str().unwrap(),
        &target,
        "--artifact-type",
        "application/vnd.example.model.v1",
        "--annotation",
        "org.opencontainers.image.source=https://example.com/recsys",
    ]);
    assert_eq!(again.trim().rsplit('@').next().unwrap(), pushed_digest);

    // Pull by tag and by digest; bytes identical.
    for reference in [
        target.clone(),
        format!("{}/ml/recsys@{pushed_digest}", s.addr),
    ] {
        let out_dir = tempfile::tempdir().unwrap();
        let out = ok(&[
            "pull",
            "-q",
            "-o",
            out_dir.path().to_str().unwrap(),
            &reference,
        ]);
        assert!(out.contains(&pushed_digest), "{out}");
        assert_eq!(
            std::fs::read(out_dir.path().join("model.safetensors")).unwrap(),
            data
        );
    }

    // A directory round-trips as a tree.
    let tree = dir.path().join("dataset");
    std::fs::create_dir_all(tree.join("split/train")).unwrap();
    std::fs::write(tree.join("README"), "rows: 2\n").unwrap();
    std::fs::write(tree.join("split/train/part-0.csv"), "a,b\n1,2\n").unwrap();
    ok(&[
        "push",
        "-q",
        tree.to_str().unwrap(),
        &format!("{}/ml/dataset:2026-11", s.addr),
    ]);
    let out_dir = tempfile::tempdir().unwrap();
    ok(&[
        "pull",
        "-q",
        "-o",
        out_dir.path().to_str().unwrap(),
        &format!("{}/ml/dataset:2026-11", s.addr),
    ]);
    assert_eq!(
        std::fs::read_to_string(out_dir.path().join("dataset/split/train/part-0.csv")).unwrap(),
        "a,b\n1,2\n"
    );

    assert_eq!(ok(&["ls", &s.addr]), "ml/dataset\nml/recsys\n");
    ok(&["tag", &target, "stable"]);
    assert_eq!(
        ok(&["tags", &format!("{}/ml/recsys", s.addr)]),
        "stable\nv3\n"
    );

    let inspect: serde_json::Value =
        serde_json::from_str(&ok(&["inspect", &format!("{}/ml/recsys:stable", s.addr)])).unwrap();
    assert_eq!(inspect["digest"], pushed_digest);
    assert_eq!(
        inspect["manifest"]["artifactType"],
        "application/vnd.example.model.v1"
    );
    assert_eq!(
        inspect["manifest"]["annotations"]["org.opencontainers.image.source"],
        "https://example.com/recsys"
    );

    ok(&["delete", &format!("{}/ml/recsys:stable", s.addr)]);
    assert_eq!(ok(&["tags", &format!("{}/ml/recsys", s.addr)]), "v3\n");
    ok(&["delete", &format!("{}/ml/recsys@{pushed_digest}", s.addr)]);
    let (success, _, err) = bonded(&["pull", "-q", "-o", dir.path().to_str().unwrap(), &target]);
    assert!(!success);
    assert!(err.contains("MANIFEST_UNKNOWN"), "{err}");
}

#[test]
fn cli_refuses_bad_references_with_a_clear_message() {
    for (args, needle) in [
        (vec!["pull", "no-host-here"], "host"),
        (vec!["pull", "127.0.0.1:1/Upper:v1"], "path component"),
        (
            vec!["push", "/nonexistent/file", "127.0.0.1:1/a:v1"],
            "/nonexistent/file",
        ),
        (vec!["inspect", "127.0.0.1:1/a"], "needs a tag or digest"),
    ] {
        let (success, _, err) = bonded(&args);
        assert!(!success, "{args:?}");
        assert!(err.contains(needle), "{args:?}: {err}");
    }
}
