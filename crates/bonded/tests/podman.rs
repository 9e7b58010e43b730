//! Interop with podman and buildah (Debian packages; no daemon, vfs storage in a temporary
//! directory): podman pushes an image and pulls it back with the same digest; buildah builds an
//! image from scratch and pushes it, and the registry serves exactly what it pushed.

mod common;

use std::path::PathBuf;
use std::process::Command;

use common::{interop_dir, Server};
use sha2::{Digest as _, Sha256};

struct Tools {
    dir: tempfile::TempDir,
}

impl Tools {
    fn new() -> Tools {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        let dir = tempfile::Builder::new()
            .prefix(&format!("bonded-podman-{}-{nanos}", std::process::id()))
            .rand_bytes(0)
            .tempdir()
            .unwrap();
        std::fs::write(
            dir.path().join("storage.conf"),
            format!(
                "[storage]\ndriver = \"vfs\"\nrunroot = \"{0}/run\"\ngraphroot = \"{0}/graph\"\n",
                dir.path().display()
            ),
        )
        .unwrap();
        Tools { dir }
    }
    fn path(&self, p: &str) -> PathBuf {
        self.dir.path().join(p)
    }
    fn run(&self, tool: &str, args: &[&str]) -> String {
        let mut cmd = Command::new(tool);
        if tool == "podman" {
            cmd.args(["--cgroup-manager=cgroupfs", "--events-backend=none"]);
        } else {
            cmd.args(["--storage-driver", "vfs"]);
        }
        let o = cmd
            .args(args)
            .env("CONTAINERS_STORAGE_CONF", self.path("storage.conf"))
            .output()
            .unwrap_or_else(|e| {
                panic!("run {tool} (scripts/install-test-tools.sh installs it): {e}")
            });
        assert!(
            o.status.success(),
            "{tool} {args:?} failed:\n{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8_lossy(&o.stdout).trim().to_string()
    }
}

/// The sha256 of the manifest the registry serves for `reference` (via skopeo).
fn served_digest(reference: &str) -> String {
    let o = Command::new("skopeo")
        .args([
            "--insecure-policy",
            "inspect",
            "--raw",
            "--tls-verify=false",
        ])
        .arg(format!("docker://{reference}"))
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    format!("sha256:{}", hex::encode(Sha256::digest(&o.stdout)))
}

#[test]
fn podman_pushes_and_pulls_back_the_same_image() {
    let server = Server::start();
    let t = Tools::new();
    // podman names an image pulled from `oci:<path>` after the path: it must be lowercase.
    let layout = t.path("layout");
    let o = Command::new("python3")
        .arg(interop_dir().join("make_oci_layout.py"))
        .arg(&layout)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let id = t.run(
        "podman",
        &["pull", "-q", &format!("oci:{}:v1", layout.display())],
    );
    let target = format!("{}/pod/app:v1", server.addr);
    t.run(
        "podman",
        &[
            "push",
            "--tls-verify=false",
            &id,
            &format!("docker://{target}"),
        ],
    );
    let pushed = served_digest(&target);
    // Forget the local copy, pull it from bonded, and compare what podman recorded.
    t.run("podman", &["rmi", "-a", "-f"]);
    t.run(
        "podman",
        &[
            "pull",
            "-q",
            "--tls-verify=false",
            &format!("docker://{target}"),
        ],
    );
    let pulled = t.run(
        "podman",
        &["image", "inspect", "--format", "{{.Digest}}", &target],
    );
    assert_eq!(pulled, pushed);
    let config = t.run(
        "podman",
        &["image", "inspect", "--format", "{{.Id}}", &target],
    );
    assert_eq!(config, id, "the image config is the one pushed");
}

#[test]
fn buildah_builds_from_scratch_and_pushes() {
    let server = Server::start();
    let t = Tools::new();
    let ctr = t.run("buildah", &["from", "scratch"]);
    let file = t.path("hello.txt");
    std::fs::write(&file, "hello from buildah\n").unwrap();
    t.run(
        "buildah",
        &["copy", &ctr, file.to_str().unwrap(), "/hello.txt"],
    );
    t.run(
        "buildah",
        &[
            "config",
            "--annotation",
            "org.example.built-by=buildah",
            &ctr,
        ],
    );
    t.run("buildah", &["commit", "-q", &ctr, "built:v1"]);
    let target = format!("{}/pod/built:v1", server.addr);
    let digestfile = t.path("digest");
    t.run(
        "buildah",
        &[
            "push",
            "--tls-verify=false",
            "--digestfile",
            digestfile.to_str().unwrap(),
            "built:v1",
            &format!("docker://{target}"),
        ],
    );
    let reported = std::fs::read_to_string(&digestfile).unwrap();
    assert_eq!(served_digest(&target), reported.trim());
    // The layer holds the file.
    let out = t.path("out");
    let o = Command::new("skopeo")
        .args(["--insecure-policy", "copy", "--src-tls-verify=false"])
        .arg(format!("docker://{target}"))
        .arg(format!("dir:{}", out.display()))
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("manifest.json")).unwrap()).unwrap();
    assert_eq!(manifest["layers"].as_array().unwrap().len(), 1);
}
