//! `bonded sbom generate` against real inputs: a real Python virtual environment (compared with
//! the `cyclonedx-bom` PyPI tool's SBOM of the same environment) and a Debian root filesystem
//! layer holding this machine's dpkg database (compared with `dpkg-query`).

mod common;

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

use common::{bin, Server};
use serde_json::Value;

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    common::succeeded(&out, &format!("{cmd:?}"))
}

fn bonded(args: &[&str]) -> String {
    run(Command::new(bin()).args(args))
}

fn name_versions(doc: &Value) -> BTreeSet<(String, String)> {
    doc["components"]
        .as_array()
        .expect("components")
        .iter()
        .map(|c| {
            (
                c["name"].as_str().unwrap().to_lowercase(),
                c["version"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn purls(doc: &Value) -> BTreeSet<String> {
    doc["components"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["purl"].as_str().unwrap().to_string())
        .collect()
}

fn site_packages(venv: &Path) -> std::path::PathBuf {
    let lib = venv.join("lib");
    let py = std::fs::read_dir(&lib)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("python")
        })
        .expect("lib/python3.x in the venv");
    py.join("site-packages")
}

#[test]
fn python_environment_sbom_matches_cyclonedx_bom() {
    let tmp = tempfile::tempdir().unwrap();
    let venv = tmp.path().join("venv");
    run(Command::new("python3").args(["-m", "venv"]).arg(&venv));
    let python = venv.join("bin").join("python");
    run(Command::new(&python).args([
        "-m",
        "pip",
        "install",
        "--quiet",
        "--disable-pip-version-check",
        "six",
        "idna",
        "typing_extensions",
    ]));
    let reference = tmp.path().join("reference.json");
    run(Command::new("cyclonedx-py")
        .args(["environment", "--of", "JSON", "-o"])
        .arg(&reference)
        .arg(&python));
    let reference: Value = serde_json::from_slice(&std::fs::read(&reference).unwrap()).unwrap();

    let site = site_packages(&venv);
    let ours: Value = serde_json::from_str(&bonded(&[
        "sbom",
        "generate",
        "--path",
        site.to_str().unwrap(),
    ]))
    .unwrap();
    assert!(name_versions(&reference).len() >= 5, "{reference}");
    assert_eq!(name_versions(&ours), name_versions(&reference));
    assert_eq!(purls(&ours), purls(&reference));

    // The same environment pushed as an artifact (a tar layer) gives the same components.
    let s = Server::start();
    let target = format!("{}/py/env:v1", s.addr);
    bonded(&["push", "-q", site.to_str().unwrap(), &target]);
    let from_layer: Value = serde_json::from_str(&bonded(&["sbom", "generate", &target])).unwrap();
    assert_eq!(purls(&from_layer), purls(&reference));
    assert_eq!(from_layer["specVersion"], "1.5");
}

#[test]
fn debian_rootfs_layer_sbom_lists_the_installed_dpkg_packages() {
    let status = Path::new("/var/lib/dpkg/status");
    assert!(
        status.exists(),
        "this test reads the Debian machine's dpkg database"
    );
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("rootfs");
    std::fs::create_dir_all(root.join("var/lib/dpkg")).unwrap();
    std::fs::create_dir_all(root.join("etc")).unwrap();
    std::fs::copy(status, root.join("var/lib/dpkg/status")).unwrap();
    std::fs::copy("/etc/os-release", root.join("etc/os-release")).unwrap();
    let distro = std::fs::read_to_string("/etc/os-release")
        .unwrap()
        .lines()
        .find_map(|l| {
            l.strip_prefix("ID=")
                .map(|v| v.trim_matches('"').to_string())
        })
        .unwrap();

    let installed: BTreeSet<(String, String)> =
        run(Command::new("dpkg-query").args(["-W", "-f", "${Status}\t${Package}\t${Version}\n"]))
            .lines()
            .filter_map(|l| {
                let mut f = l.split('\t');
                let st = f.next()?;
                st.ends_with(" installed").then(|| {
                    (
                        f.next().unwrap().to_lowercase(),
                        f.next().unwrap().to_string(),
                    )
                })
            })
            .collect();
    assert!(installed.len() > 50);

    let s = Server::start();
    let target = format!("{}/debian/base:v1", s.addr);
    bonded(&["push", "-q", root.to_str().unwrap(), &target]);
    let key = tmp.path().join("k");
    bonded(&["key", "generate", "--out", key.to_str().unwrap()]);
    let private = tmp.path().join("k.pem");
    let doc: Value = serde_json::from_str(&bonded(&[
        "sbom",
        "generate",
        &target,
        "--key",
        private.to_str().unwrap(),
    ]))
    .unwrap();
    assert_eq!(name_versions(&doc), installed);
    let purl = purls(&doc).into_iter().next().unwrap();
    assert!(purl.starts_with(&format!("pkg:deb/{distro}/")), "{purl}");
    assert!(purl.contains("?arch="), "{purl}");

    // The generated SBOM was attached as a signed attestation of the artifact.
    bonded(&["sign", &target, "--key", private.to_str().unwrap()]);
    let out = bonded(&[
        "verify",
        &target,
        "--key",
        tmp.path().join("k.pub.pem").to_str().unwrap(),
    ]);
    assert!(
        out.contains("OK    sbom") && out.contains("CycloneDX"),
        "{out}"
    );
}

/// A real Go binary (this machine's skopeo) in a pushed layer yields its toolchain as
/// `pkg:golang/stdlib@…` from the embedded build info; the unit tests cover module lists.
#[test]
fn go_binary_in_a_layer_reports_its_toolchain() {
    let skopeo = Path::new("/usr/bin/skopeo");
    assert!(
        skopeo.exists(),
        "scripts/install-test-tools.sh installs skopeo"
    );
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("rootfs");
    std::fs::create_dir_all(root.join("usr/bin")).unwrap();
    std::fs::copy(skopeo, root.join("usr/bin/skopeo")).unwrap();
    let s = Server::start();
    let target = format!("{}/tools/skopeo:v1", s.addr);
    bonded(&["push", "-q", root.to_str().unwrap(), &target]);
    let doc: Value = serde_json::from_str(&bonded(&["sbom", "generate", &target])).unwrap();
    let go: Vec<&Value> = doc["components"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| {
            c["purl"]
                .as_str()
                .unwrap()
                .starts_with("pkg:golang/stdlib@1.")
        })
        .collect();
    assert_eq!(go.len(), 1, "{doc}");
    assert!(go[0]["properties"][0]["value"]
        .as_str()
        .unwrap()
        .ends_with("usr/bin/skopeo"));
}
