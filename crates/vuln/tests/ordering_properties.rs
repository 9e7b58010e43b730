//! Property tests for every version ordering: total order laws, display/parse stability and
//! each ecosystem's own laws.

use std::cmp::Ordering;
use std::fmt::Display;
use std::str::FromStr;

use bonded_vuln::version::apk::ApkVersion;
use bonded_vuln::version::dpkg::DpkgVersion;
use bonded_vuln::version::maven::MavenVersion;
use bonded_vuln::version::pep440::Pep440Version;
use bonded_vuln::version::semver::SemVersion;
use proptest::prelude::*;

fn num() -> impl Strategy<Value = String> {
    prop_oneof![3 => (0u32..20).prop_map(|n| n.to_string()), 1 => (0u64..100_000_000).prop_map(|n| n.to_string())]
}

fn release(max: usize) -> impl Strategy<Value = String> {
    prop::collection::vec(num(), 1..=max).prop_map(|v| v.join("."))
}

fn pep440() -> impl Strategy<Value = String> {
    (
        prop::option::of(0u32..3),
        release(4),
        prop::option::of((
            prop::sample::select(vec!["a", "b", "rc", "alpha", "c", "-pre", ".beta"]),
            prop::option::of(0u32..15),
        )),
        prop::option::of((
            prop::sample::select(vec![".post", "-", "post", ".rev", "-r"]),
            0u32..15,
        )),
        prop::option::of((
            prop::sample::select(vec![".dev", "dev", "-dev"]),
            prop::option::of(0u32..15),
        )),
        prop::option::of(prop::collection::vec(
            prop::sample::select(vec!["abc", "ubuntu", "7", "12", "x1"]),
            1..3,
        )),
    )
        .prop_map(|(epoch, rel, pre, post, dev, local)| {
            let mut s = String::new();
            if let Some(e) = epoch {
                s += &format!("{e}!");
            }
            s += &rel;
            if let Some((l, n)) = pre {
                s += l;
                if let Some(n) = n {
                    s += &n.to_string();
                }
            }
            if let Some((l, n)) = post {
                s += &format!("{l}{n}");
            }
            if let Some((l, n)) = dev {
                s += l;
                if let Some(n) = n {
                    s += &n.to_string();
                }
            }
            if let Some(parts) = local {
                s += "+";
                s += &parts.join(".");
            }
            s
        })
}

fn semver() -> impl Strategy<Value = String> {
    (
        0u32..5,
        0u32..5,
        0u32..5,
        prop::option::of(prop::collection::vec(
            prop::sample::select(vec!["alpha", "beta", "rc", "1", "2", "11", "x-y", "0"]),
            1..4,
        )),
        prop::option::of(prop::sample::select(vec![
            "build.1",
            "incompatible",
            "sha.5114f85",
        ])),
    )
        .prop_map(|(a, b, c, pre, build)| {
            let mut s = format!("{a}.{b}.{c}");
            if let Some(p) = pre {
                s += "-";
                s += &p.join(".");
            }
            if let Some(b) = build {
                s += "+";
                s += b;
            }
            s
        })
}

fn maven_qualifier() -> impl Strategy<Value = String> {
    (
        prop::sample::select(vec!["-", ".", ""]),
        prop::sample::select(vec![
            "alpha",
            "a",
            "beta",
            "b",
            "milestone",
            "m",
            "rc",
            "cr",
            "SNAPSHOT",
            "ga",
            "final",
            "sp",
            "foo",
        ]),
        prop::option::of(0u32..12),
    )
        .prop_map(|(sep, q, n)| format!("{sep}{q}{}", n.map(|n| n.to_string()).unwrap_or_default()))
}

fn maven() -> impl Strategy<Value = String> {
    (
        release(4),
        prop::option::of(maven_qualifier()),
        prop::option::of((prop::sample::select(vec!["-", "."]), 0u32..5)),
    )
        .prop_map(|(r, q, tail)| {
            let mut s = r;
            if let Some(q) = q {
                s += &q;
            }
            if let Some((sep, n)) = tail {
                s += &format!("{sep}{n}");
            }
            s
        })
}

fn dpkg() -> impl Strategy<Value = String> {
    (
        prop::option::of(0u32..3),
        release(3),
        prop::option::of(prop::sample::select(vec![
            "~rc1",
            "~beta",
            "+dfsg",
            "a",
            "+really1.0",
            "~~",
        ])),
        prop::option::of(prop::sample::select(vec![
            "1",
            "2",
            "0ubuntu1.10",
            "1~deb12u2",
            "1+deb11u1",
            "10",
        ])),
    )
        .prop_map(|(e, up, mid, rev)| {
            let mut s = String::new();
            if let Some(e) = e {
                s += &format!("{e}:");
            }
            s += &up;
            if let Some(m) = mid {
                s += m;
            }
            if let Some(r) = rev {
                s += "-";
                s += r;
            }
            s
        })
}

fn apk() -> impl Strategy<Value = String> {
    (
        release(4),
        prop::option::of(prop::sample::select(vec!["a", "b", "z"])),
        prop::collection::vec(
            (
                prop::sample::select(vec![
                    "alpha", "beta", "pre", "rc", "cvs", "svn", "git", "hg", "p",
                ]),
                prop::option::of(0u32..30),
            ),
            0..3,
        ),
        prop::option::of(0u32..20),
    )
        .prop_map(|(r, letter, suffixes, rev)| {
            let mut s = r;
            if let Some(l) = letter {
                s += l;
            }
            for (name, n) in suffixes {
                s += &format!("_{name}{}", n.map(|n| n.to_string()).unwrap_or_default());
            }
            if let Some(r) = rev {
                s += &format!("-r{r}");
            }
            s
        })
}

/// Antisymmetry, transitivity, reflexivity, Eq agreeing with Ord, and parse(display(v)) == v
/// with a stable display.
fn order_laws<T: FromStr + Ord + Display + std::fmt::Debug>(a: &str, b: &str, c: &str)
where
    T::Err: std::fmt::Debug,
{
    let (x, y, z): (T, T, T) = (a.parse().unwrap(), b.parse().unwrap(), c.parse().unwrap());
    assert_eq!(x.cmp(&x), Ordering::Equal);
    assert_eq!(x.cmp(&y), y.cmp(&x).reverse(), "antisymmetry {a} {b}");
    assert_eq!(x == y, x.cmp(&y) == Ordering::Equal);
    if x <= y && y <= z {
        assert!(x <= z, "transitivity {a} <= {b} <= {c}");
    }
    if x >= y && y >= z {
        assert!(x >= z, "transitivity {a} >= {b} >= {c}");
    }
    let shown = x.to_string();
    let back: T = shown.parse().unwrap();
    assert_eq!(back.cmp(&x), Ordering::Equal, "{a} displays as {shown}");
    assert_eq!(back.to_string(), shown, "display is stable for {a}");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn pep440_is_a_total_order(a in pep440(), b in pep440(), c in pep440()) {
        order_laws::<Pep440Version>(&a, &b, &c);
    }

    #[test]
    fn pep440_local_label_sorts_after_its_public_version(a in pep440()) {
        let a = a.split('+').next().unwrap();
        let v: Pep440Version = a.parse().unwrap();
        let l: Pep440Version = format!("{a}+zzz.1").parse().unwrap();
        prop_assert!(l > v);
        let d: Pep440Version = format!("{a}.dev0").parse().unwrap_or_else(|_| v.clone());
        prop_assert!(d <= v);
    }

    #[test]
    fn semver_is_a_total_order(a in semver(), b in semver(), c in semver()) {
        order_laws::<SemVersion>(&a, &b, &c);
    }

    #[test]
    fn semver_ignores_build_metadata_and_prereleases_sort_first(a in semver(), meta in "[0-9A-Za-z-]{1,8}") {
        let v: SemVersion = a.parse().unwrap();
        let core = a.split(['-', '+']).next().unwrap();
        let with_meta: SemVersion = format!("{}+{meta}", a.split('+').next().unwrap()).parse().unwrap();
        prop_assert_eq!(&with_meta, &v);
        let release: SemVersion = core.parse().unwrap();
        prop_assert!(v <= release);
        let go: SemVersion = format!("v{a}").parse().unwrap();
        prop_assert_eq!(go, v);
    }

    #[test]
    fn maven_is_a_total_order(a in maven(), b in maven(), c in maven()) {
        order_laws::<MavenVersion>(&a, &b, &c);
    }

    #[test]
    fn maven_sp_sorts_after_and_alpha_before_a_release(r in release(4)) {
        let v: MavenVersion = r.parse().unwrap();
        let sp: MavenVersion = format!("{r}-sp").parse().unwrap();
        let alpha: MavenVersion = format!("{r}-alpha-1").parse().unwrap();
        let zero: MavenVersion = format!("{r}.0").parse().unwrap();
        prop_assert!(alpha < v);
        prop_assert!(v < sp);
        prop_assert_eq!(zero, v);
    }

    #[test]
    fn dpkg_is_a_total_order(a in dpkg(), b in dpkg(), c in dpkg()) {
        order_laws::<DpkgVersion>(&a, &b, &c);
    }

    #[test]
    fn dpkg_tilde_suffix_sorts_lower_and_epoch_dominates(a in dpkg(), x in "[a-z0-9]{0,4}", b in dpkg()) {
        let v: DpkgVersion = a.parse().unwrap();
        let tilde: DpkgVersion = format!("{a}~{x}").parse().unwrap();
        prop_assert!(tilde < v, "{}~{} < {}", a, x, a);
        let w: DpkgVersion = b.parse().unwrap();
        let bumped: DpkgVersion = format!("{}:{}", v.epoch.unwrap_or(0) + 1, a.split_once(':').map_or(a.as_str(), |p| p.1)).parse().unwrap();
        prop_assert!(bumped > w || w.epoch.unwrap_or(0) > v.epoch.unwrap_or(0));
    }

    #[test]
    fn apk_is_a_total_order(a in apk(), b in apk(), c in apk()) {
        order_laws::<ApkVersion>(&a, &b, &c);
    }

    #[test]
    fn apk_pre_suffix_sorts_lower_post_suffix_and_revision_higher(a in apk()) {
        let base = a.rsplit_once("-r").map_or(a.as_str(), |p| p.0);
        let v: ApkVersion = base.parse().unwrap();
        let rc: ApkVersion = format!("{base}_rc1").parse().unwrap();
        let p: ApkVersion = format!("{base}_p1").parse().unwrap();
        let r: ApkVersion = format!("{base}-r1").parse().unwrap();
        prop_assert!(rc < v);
        prop_assert!(v < r);
        prop_assert!(r < p);
    }

    #[test]
    fn parsers_never_panic_on_arbitrary_input(s in "\\PC{0,24}") {
        for eco in [
            bonded_vuln::Ecosystem::PyPI,
            bonded_vuln::Ecosystem::Npm,
            bonded_vuln::Ecosystem::Maven,
            bonded_vuln::Ecosystem::Debian,
            bonded_vuln::Ecosystem::Alpine,
            bonded_vuln::Ecosystem::Other("Hex".into()),
        ] {
            let _ = bonded_vuln::compare(&eco, &s, "1.0");
        }
        let _ = s.parse::<bonded_vuln::Purl>();
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1000))]

    /// parse → display → parse is the identity on purls, whatever characters the parts hold.
    #[test]
    fn purl_display_round_trips(
        ty in "[a-z][a-z0-9]{0,7}",
        ns in prop::option::of(prop::collection::vec("[^/]{1,8}", 1..3)),
        name in "[^/]{1,12}",
        version in prop::option::of("\\PC{1,12}"),
        quals in prop::collection::btree_map("[a-z]{1,6}", "\\PC{1,8}", 0..3),
        subpath in prop::option::of(prop::collection::vec("[a-z0-9._-]{1,6}", 1..3)),
    ) {
        let subpath = subpath
            .map(|segs| segs.into_iter().filter(|s| s != "." && s != "..").collect::<Vec<_>>())
            .filter(|segs| !segs.is_empty())
            .map(|segs| segs.join("/"));
        let purl = bonded_vuln::Purl {
            ty,
            namespace: ns.map(|v| v.join("/")),
            name,
            version,
            qualifiers: quals,
            subpath,
        };
        let shown = purl.to_string();
        let back: bonded_vuln::Purl = shown.parse().unwrap_or_else(|e| panic!("{shown}: {e}"));
        prop_assert_eq!(back, purl);
    }
}
