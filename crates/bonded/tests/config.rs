//! `bonded config show` and configuration errors.

mod common;

use std::process::Command;

#[test]
fn config_show_reports_effective_values_and_their_sources() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("bonded.toml");
    std::fs::write(
        &file,
        "[limits]\nmax_manifest_bytes = 2097152\n\n[[immutable_tags]]\nrepositories = \"prod/**\"\ntags = \"v*\"\n",
    )
    .unwrap();
    let out = Command::new(common::bin())
        .args(["config", "show", "--config"])
        .arg(&file)
        .args(["--listen", "127.0.0.1:6000"])
        .env("BONDED_LIMITS__CHUNK_MIN_BYTES", "4096")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let line = |key: &str| {
        text.lines()
            .find(|l| l.starts_with(&format!("{key} = ")))
            .unwrap_or_else(|| panic!("{key} missing from:\n{text}"))
            .to_string()
    };
    assert!(line("limits.max_manifest_bytes").contains("2097152"));
    assert!(line("limits.max_manifest_bytes").contains("bonded.toml"));
    assert!(line("limits.chunk_min_bytes").contains("4096"));
    assert!(line("limits.chunk_min_bytes")
        .to_lowercase()
        .contains("environment"));
    assert!(line("server.listen").contains("127.0.0.1:6000"));
    assert!(line("uploads.expire_after_secs").contains("86400"));
}

#[test]
fn unknown_keys_and_bad_values_are_refused_with_a_fix() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("bad.toml");
    std::fs::write(
        &file,
        "[server]\nlisten = \"127.0.0.1:5000\"\nlisten_port = 5\n",
    )
    .unwrap();
    let out = Command::new(common::bin())
        .args(["config", "show", "--config"])
        .arg(&file)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("listen_port"), "{err}");

    let out = Command::new(common::bin())
        .args(["serve", "--listen", "not-an-address"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("server.listen") && err.contains("127.0.0.1:5000"),
        "{err}"
    );
}
