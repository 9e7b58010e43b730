//! Matches every SBOM of `tests/corpus/sboms` against the advisories of
//! `tests/corpus/advisories` and asserts exactly the hand-written `expected.json`.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use bonded_vuln::import::load_dir;
use bonded_vuln::{Index, Purl, Severity, SeveritySource};

fn corpus() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/corpus")
}

fn load_index() -> Index {
    let loaded = load_dir(&corpus().join("advisories")).unwrap();
    assert_eq!(loaded.errors.len(), 1, "{:?}", loaded.errors);
    assert!(loaded.errors[0].file.ends_with("not-an-osv-record.json"));
    assert_eq!(loaded.records.len(), 20);
    Index::build(loaded.records.iter().map(|r| r.to_advisory()))
}

type Row = (String, String, String, Option<String>);

fn sbom_purls(path: &Path) -> Vec<Purl> {
    let doc: serde_json::Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
    doc["components"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["purl"].as_str().unwrap().parse().unwrap())
        .collect()
}

#[test]
fn every_sbom_produces_exactly_the_expected_findings() {
    let index = load_index();
    assert_eq!(index.len(), 19, "the withdrawn record is not indexed");
    let expected: serde_json::Value =
        serde_json::from_slice(&std::fs::read(corpus().join("expected.json")).unwrap()).unwrap();
    let expected = expected.as_object().unwrap();
    let mut sboms: Vec<PathBuf> = std::fs::read_dir(corpus().join("sboms"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    sboms.sort();
    assert_eq!(sboms.len(), expected.len());
    for path in sboms {
        let file = path.file_name().unwrap().to_str().unwrap().to_owned();
        let mut got: Vec<Row> = Vec::new();
        for purl in sbom_purls(&path) {
            for f in index.match_purl(&purl).unwrap() {
                got.push((
                    f.advisory_id,
                    f.package,
                    f.installed_version,
                    f.fixed_version,
                ));
            }
        }
        let want: Vec<Row> = expected[&file]
            .as_array()
            .unwrap_or_else(|| panic!("{file} missing from expected.json"))
            .iter()
            .map(|r| {
                (
                    r["id"].as_str().unwrap().to_owned(),
                    r["package"].as_str().unwrap().to_owned(),
                    r["installed"].as_str().unwrap().to_owned(),
                    r["fixed"].as_str().map(str::to_owned),
                )
            })
            .collect();
        let got_set: BTreeSet<Row> = got.iter().cloned().collect();
        let want_set: BTreeSet<Row> = want.iter().cloned().collect();
        assert_eq!(got.len(), got_set.len(), "{file}: duplicate findings");
        let missing: Vec<_> = want_set.difference(&got_set).collect();
        let extra: Vec<_> = got_set.difference(&want_set).collect();
        assert!(
            missing.is_empty() && extra.is_empty(),
            "{file}:\n missing {missing:#?}\n extra {extra:#?}"
        );
    }
}

#[test]
fn findings_carry_aliases_and_severity() {
    let index = load_index();
    let log4j: Purl = "pkg:maven/org.apache.logging.log4j/log4j-core@2.14.1"
        .parse()
        .unwrap();
    let findings = index.match_purl(&log4j).unwrap();
    let shell = findings
        .iter()
        .find(|f| f.advisory_id == "GHSA-jfh8-c2jp-5v3q")
        .unwrap();
    assert_eq!(shell.aliases, ["CVE-2021-44228"]);
    let sev = shell.severity.unwrap();
    assert_eq!(
        (sev.level, sev.score(), sev.source),
        (Severity::Critical, Some(10.0), SeveritySource::CvssV3)
    );
    assert_eq!(
        shell.summary.as_deref(),
        Some("Remote code injection in Log4j")
    );

    let babel: Purl = "pkg:npm/%40babel/traverse@7.23.0".parse().unwrap();
    let sev = index.match_purl(&babel).unwrap()[0].severity.unwrap();
    assert_eq!(
        (sev.level, sev.score_tenths, sev.source),
        (Severity::Critical, None, SeveritySource::Database)
    );

    let regex: Purl = "pkg:cargo/regex@1.5.4".parse().unwrap();
    assert_eq!(
        index.match_purl(&regex).unwrap()[0].severity,
        None,
        "no severity in the record: none invented"
    );
}

#[test]
fn components_with_unparsable_versions_never_panic_and_only_use_version_lists() {
    let index = load_index();
    for purl in [
        "pkg:pypi/django@not%20a%20version",
        "pkg:maven/org.apache.logging.log4j/log4j-core@",
        "pkg:deb/debian/openssl@~~~?distro=debian-12",
        "pkg:apk/alpine/openssl@latest?distro=alpine-3.18",
        "pkg:golang/golang.org/x/net@master",
    ] {
        let purl: Purl = purl.parse().unwrap();
        assert_eq!(index.match_purl(&purl).unwrap(), vec![], "{purl}");
    }
}
