//! Our PEP 440 ordering and normalisation against the reference, `packaging.version.Version`,
//! run through `python3`. Fails (does not skip) without python3 + packaging: run
//! `scripts/install-test-tools.sh`.

use std::cmp::Ordering;
use std::io::Write;
use std::process::{Command, Stdio};

use bonded_vuln::version::pep440::Pep440Version;

/// A small deterministic generator (SplitMix64), so failures reproduce.
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
    fn pick<'a>(&mut self, xs: &[&'a str]) -> &'a str {
        xs[self.below(xs.len() as u64) as usize]
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}

/// Random versions in many spellings, over a small value space so that equal and adjacent
/// versions are common.
fn random_version(r: &mut Rng) -> String {
    let mut s = String::new();
    if r.chance(10) {
        s += r.pick(&["v", "V"]);
    }
    if r.chance(10) {
        s += &format!("{}!", r.below(3));
    }
    let parts = 1 + r.below(4);
    for i in 0..parts {
        if i > 0 {
            s += ".";
        }
        s += &if r.chance(10) {
            format!("0{}", r.below(3))
        } else {
            r.below(4).to_string()
        };
    }
    if r.chance(40) {
        s += r.pick(&["", ".", "-", "_"]);
        s += r.pick(&[
            "a", "b", "rc", "alpha", "beta", "c", "pre", "preview", "RC", "A",
        ]);
        if r.chance(80) {
            s += r.pick(&["", ".", "-"]);
            s += &r.below(4).to_string();
        }
    }
    if r.chance(30) {
        if r.chance(30) {
            s += &format!("-{}", r.below(4));
        } else {
            s += r.pick(&["", ".", "-", "_"]);
            s += r.pick(&["post", "rev", "r", "POST"]);
            if r.chance(80) {
                s += &r.below(4).to_string();
            }
        }
    }
    if r.chance(30) {
        s += r.pick(&["", ".", "-", "_"]);
        s += r.pick(&["dev", "DEV"]);
        if r.chance(80) {
            s += &r.below(4).to_string();
        }
    }
    if r.chance(20) {
        s += "+";
        let n = 1 + r.below(3);
        for i in 0..n {
            if i > 0 {
                s += r.pick(&[".", "-", "_"]);
            }
            s += r.pick(&["1", "2", "10", "abc", "ubuntu", "Z9", "01"]);
        }
    }
    s
}

fn python_reference(versions: &[String]) -> Vec<(String, usize)> {
    const SCRIPT: &str = r#"
import sys
from packaging.version import Version
vs = [Version(line) for line in sys.stdin.read().split("\n") if line]
order = sorted(range(len(vs)), key=lambda i: vs[i])
rank = [0] * len(vs)
r = 0
for k, i in enumerate(order):
    if k > 0 and vs[order[k - 1]] != vs[i]:
        r += 1
    rank[i] = r
for v, rk in zip(vs, rank):
    print(f"{v}\t{rk}")
"#;
    let child = Command::new("python3")
        .args(["-c", SCRIPT])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn();
    let mut child = match child {
        Ok(c) => c,
        Err(e) => panic!("cannot run python3 ({e}); run scripts/install-test-tools.sh"),
    };
    let input = versions.join("\n");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "python3 with `packaging` failed (run scripts/install-test-tools.sh): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| {
            let (v, r) = l.split_once('\t').unwrap();
            (v.to_owned(), r.parse().unwrap())
        })
        .collect()
}

#[test]
fn pep440_order_and_normal_form_match_packaging_version() {
    let mut rng = Rng(0x0b0d_ded0_5eed);
    let inputs: Vec<String> = (0..4000).map(|_| random_version(&mut rng)).collect();
    let ours: Vec<Pep440Version> = inputs
        .iter()
        .map(|s| {
            s.parse()
                .unwrap_or_else(|e| panic!("{s:?} is valid for packaging but we said: {e}"))
        })
        .collect();
    let reference = python_reference(&inputs);
    assert_eq!(reference.len(), inputs.len());

    for ((input, v), (normal, _)) in inputs.iter().zip(&ours).zip(&reference) {
        assert_eq!(&v.to_string(), normal, "normal form of {input:?}");
    }

    // Our order, as ranks with ties, must equal packaging's.
    let mut idx: Vec<usize> = (0..ours.len()).collect();
    idx.sort_by(|&a, &b| ours[a].cmp(&ours[b]));
    let mut our_rank = vec![0usize; ours.len()];
    let mut r = 0;
    for k in 0..idx.len() {
        if k > 0 && ours[idx[k - 1]].cmp(&ours[idx[k]]) != Ordering::Equal {
            r += 1;
        }
        our_rank[idx[k]] = r;
    }
    for (i, (_, py_rank)) in reference.iter().enumerate() {
        assert_eq!(
            our_rank[i], *py_rank,
            "rank of {:?} ({})",
            inputs[i], reference[i].0
        );
    }
    assert!(
        r > 500,
        "the sample should contain many distinct versions, got {r}"
    );
}

#[test]
fn versions_packaging_rejects_are_rejected() {
    let bad = [
        "1.0-1-1", "1.0+", "1..0", "1.0.", "1.0+ab#", "one", "1.0-", "1.0_",
    ];
    let script = r#"
import sys
from packaging.version import Version, InvalidVersion
for line in sys.argv[1:]:
    try:
        Version(line); print("ok")
    except InvalidVersion:
        print("invalid")
"#;
    let out = Command::new("python3")
        .args(["-c", script])
        .args(bad)
        .output()
        .unwrap_or_else(|e| panic!("cannot run python3 ({e}); run scripts/install-test-tools.sh"));
    assert!(
        out.status.success(),
        "run scripts/install-test-tools.sh: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let verdicts: Vec<String> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(String::from)
        .collect();
    for (s, verdict) in bad.iter().zip(&verdicts) {
        assert_eq!(
            verdict, "invalid",
            "packaging accepts {s:?}; fix the test list"
        );
        assert!(s.parse::<Pep440Version>().is_err(), "{s:?}");
    }
}
