//! Rescan benchmark: 200,000 synthetic advisories, 10,000 SBOMs of 300 components (~20 % of
//! components named like an advisory's package). Prints index build time, match time, findings
//! count and peak RSS.
//!
//! `cargo run --release -p bonded-vuln --example rescan_bench [advisories] [sboms]`

use std::time::{Duration, Instant};

use bonded_vuln::osv::{OsvAffected, OsvEvent, OsvPackageRef, OsvRange, OsvRecord, OsvSeverity};
use bonded_vuln::{Index, Purl};

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

#[derive(Clone, Copy)]
enum Eco {
    Npm,
    PyPI,
    Maven,
    Go,
    Crates,
    Debian,
    Alpine,
}

/// Share of advisories per ecosystem, in percent (roughly OSV's mix).
const MIX: [(Eco, u64); 7] = [
    (Eco::Npm, 25),
    (Eco::PyPI, 15),
    (Eco::Maven, 15),
    (Eco::Go, 10),
    (Eco::Crates, 5),
    (Eco::Debian, 20),
    (Eco::Alpine, 10),
];

fn pick_eco(r: &mut Rng) -> Eco {
    let mut x = r.below(100);
    for (e, p) in MIX {
        if x < p {
            return e;
        }
        x -= p;
    }
    Eco::Npm
}

/// Distinct package names per ecosystem in the advisory database.
const NAMES_PER_ECO: u64 = 12_000;

fn name(e: Eco, i: u64) -> String {
    match e {
        Eco::Npm if matches!(i % 5, 0) => format!("@scope{}/pkg-{i}", i % 97),
        Eco::Npm => format!("npm-pkg-{i}"),
        Eco::PyPI => format!("py_pkg.{i}"),
        Eco::Maven => format!("org.example{}:artifact-{i}", i % 113),
        Eco::Go => format!("github.com/org{}/mod{i}", i % 89),
        Eco::Crates => format!("crate-{i}"),
        Eco::Debian | Eco::Alpine => format!("lib{i}"),
    }
}

fn version(e: Eco, r: &mut Rng) -> String {
    let (a, b, c) = (r.below(5), r.below(20), r.below(30));
    match e {
        Eco::Npm | Eco::Crates | Eco::PyPI => format!("{a}.{b}.{c}"),
        Eco::Maven if r.below(4) == 0 => format!("{a}.{b}.{c}.Final"),
        Eco::Maven => format!("{a}.{b}.{c}"),
        Eco::Go => format!("v{a}.{b}.{c}"),
        Eco::Debian if r.below(5) == 0 => {
            format!("1:{a}.{b}.{c}-{}~deb12u{}", r.below(4) + 1, r.below(3) + 1)
        }
        Eco::Debian => format!("{a}.{b}.{c}-{}", r.below(4) + 1),
        Eco::Alpine => format!("{a}.{b}.{c}-r{}", r.below(5)),
    }
}

fn ecosystem_string(e: Eco) -> &'static str {
    match e {
        Eco::Npm => "npm",
        Eco::PyPI => "PyPI",
        Eco::Maven => "Maven",
        Eco::Go => "Go",
        Eco::Crates => "crates.io",
        Eco::Debian => "Debian:12",
        Eco::Alpine => "Alpine:v3.18",
    }
}

fn ev(kind: &str, v: String) -> OsvEvent {
    let mut e = OsvEvent::default();
    match kind {
        "introduced" => e.introduced = Some(v),
        "fixed" => e.fixed = Some(v),
        _ => e.last_affected = Some(v),
    }
    e
}

fn advisory(r: &mut Rng, n: u64) -> OsvRecord {
    let e = pick_eco(r);
    let pkg = name(e, r.below(NAMES_PER_ECO));
    let mut ranges = Vec::new();
    for k in 0..1 + r.below(3) {
        let mut events = vec![if k == 0 && r.below(2) == 0 {
            ev("introduced", "0".to_owned())
        } else {
            ev("introduced", version(e, r))
        }];
        if r.below(10) == 0 {
            events.push(ev("last_affected", version(e, r)));
        } else {
            events.push(ev("fixed", version(e, r)));
        }
        ranges.push(OsvRange {
            kind: if matches!(e, Eco::Go | Eco::Crates) {
                "SEMVER"
            } else {
                "ECOSYSTEM"
            }
            .to_owned(),
            repo: None,
            events,
        });
    }
    let versions = if r.below(10) == 0 {
        (0..20).map(|_| version(e, r)).collect()
    } else {
        Vec::new()
    };
    OsvRecord {
        schema_version: Some("1.6.0".to_owned()),
        id: format!("SYN-{n:07}"),
        modified: "2024-06-01T00:00:00Z".to_owned(),
        aliases: vec![format!("CVE-2024-{n:05}")],
        summary: Some(format!(
            "Synthetic advisory {n} affecting {pkg}: a realistic-length summary line"
        )),
        details: Some("Long details are dropped by the compact form.".repeat(8)),
        severity: if r.below(2) == 0 {
            vec![OsvSeverity {
                kind: "CVSS_V3".to_owned(),
                score: "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H".to_owned(),
            }]
        } else {
            Vec::new()
        },
        affected: vec![OsvAffected {
            package: Some(OsvPackageRef {
                ecosystem: ecosystem_string(e).to_owned(),
                name: pkg,
                purl: None,
            }),
            ranges,
            versions,
            ..OsvAffected::default()
        }],
        database_specific: Some(serde_json::json!({"severity": "HIGH"})),
        ..OsvRecord::default()
    }
}

fn purl(e: Eco, name: &str, version: &str) -> String {
    match e {
        Eco::Npm => format!("pkg:npm/{}@{version}", name.replace('@', "%40")),
        Eco::PyPI => format!("pkg:pypi/{name}@{version}"),
        Eco::Maven => {
            let (g, a) = name.split_once(':').unwrap();
            format!("pkg:maven/{g}/{a}@{version}")
        }
        Eco::Go => format!("pkg:golang/{name}@{version}"),
        Eco::Crates => format!("pkg:cargo/{name}@{version}"),
        Eco::Debian => format!("pkg:deb/debian/{name}@{version}?arch=amd64&distro=debian-12"),
        Eco::Alpine => format!("pkg:apk/alpine/{name}@{version}?arch=x86_64&distro=alpine-3.18"),
    }
}

fn peak_rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

fn main() {
    let mut args = std::env::args().skip(1);
    let n_adv: u64 = args
        .next()
        .map_or(200_000, |a| a.parse().expect("advisory count"));
    let n_sbom: u64 = args
        .next()
        .map_or(10_000, |a| a.parse().expect("sbom count"));
    let per_sbom = 300;
    let mut r = Rng(42);

    let t = Instant::now();
    let advisories: Vec<_> = (0..n_adv)
        .map(|n| advisory(&mut r, n).to_advisory())
        .collect();
    let synth = t.elapsed();
    let t = Instant::now();
    let index = Index::build(advisories);
    let build = t.elapsed();
    println!("advisories: {n_adv} (synthesised + compacted in {synth:.2?})");
    println!(
        "index build: {build:.2?}; RSS after build: {} MiB",
        peak_rss_kib() / 1024
    );

    let mut match_time = Duration::ZERO;
    let mut findings = 0usize;
    let mut components = 0usize;
    let mut matched_components = 0usize;
    let mut batch = Vec::with_capacity(per_sbom);
    for _ in 0..n_sbom {
        batch.clear();
        for _ in 0..per_sbom {
            let e = pick_eco(&mut r);
            let v = version(e, &mut r);
            // ~20 % of components carry a name the database knows.
            let n = if r.below(5) == 0 {
                name(e, r.below(NAMES_PER_ECO))
            } else {
                name(e, NAMES_PER_ECO + r.below(1_000_000))
            };
            batch.push(purl(e, &n, &v));
        }
        let t = Instant::now();
        for p in &batch {
            let purl: Purl = p.parse().expect("synthetic purls are valid");
            let f = index.match_purl(&purl).expect("supported type");
            if !f.is_empty() {
                matched_components += 1;
            }
            findings += f.len();
        }
        match_time += t.elapsed();
        components += batch.len();
    }
    println!(
        "components matched: {components} in {match_time:.2?} ({:.0} components/s)",
        components as f64 / match_time.as_secs_f64()
    );
    println!("findings: {findings} (on {matched_components} vulnerable components)");
    println!(
        "total rescan (index build + match): {:.2?}",
        build + match_time
    );
    println!("peak RSS (VmHWM): {} MiB", peak_rss_kib() / 1024);
}
