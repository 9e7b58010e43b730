//! CVSS v4.0 scores against values produced by FIRST's reference calculator (the vector/score
//! pairs published with the calculator and mirrored by the `cvss` Python library's test data),
//! chosen to cover every EQ level, low and high scores, the no-impact shortcut and the threat
//! metric.

use bonded_vuln::cvss::base_score_v3;
use bonded_vuln::cvss::v4::score_v4;
use proptest::prelude::*;

const REFERENCE: &[(&str, f64)] = &[
    (
        "AV:N/AC:L/AT:N/PR:N/UI:N/VC:H/VI:H/VA:H/SC:H/SI:H/SA:H",
        10.0,
    ),
    (
        "AV:N/AC:L/AT:N/PR:N/UI:N/VC:H/VI:H/VA:H/SC:N/SI:N/SA:N",
        9.3,
    ),
    (
        "AV:N/AC:L/AT:N/PR:N/UI:N/VC:L/VI:H/VA:L/SC:N/SI:H/SA:L",
        9.2,
    ),
    (
        "AV:N/AC:L/AT:N/PR:N/UI:N/VC:L/VI:L/VA:L/SC:H/SI:N/SA:L",
        7.8,
    ),
    (
        "AV:N/AC:L/AT:N/PR:N/UI:N/VC:L/VI:L/VA:N/SC:N/SI:L/SA:N",
        6.9,
    ),
    (
        "AV:N/AC:L/AT:N/PR:N/UI:N/VC:N/VI:N/VA:N/SC:H/SI:L/SA:H",
        7.9,
    ),
    (
        "AV:N/AC:L/AT:N/PR:N/UI:P/VC:H/VI:N/VA:L/SC:N/SI:H/SA:N",
        8.3,
    ),
    (
        "AV:N/AC:L/AT:N/PR:N/UI:P/VC:L/VI:N/VA:N/SC:L/SI:N/SA:L",
        5.3,
    ),
    (
        "AV:N/AC:L/AT:N/PR:N/UI:A/VC:H/VI:H/VA:H/SC:N/SI:N/SA:N",
        8.6,
    ),
    (
        "AV:N/AC:L/AT:N/PR:N/UI:A/VC:L/VI:L/VA:N/SC:N/SI:N/SA:N",
        5.1,
    ),
    (
        "AV:N/AC:L/AT:N/PR:L/UI:N/VC:H/VI:N/VA:L/SC:N/SI:L/SA:N",
        7.1,
    ),
    (
        "AV:N/AC:L/AT:N/PR:L/UI:N/VC:L/VI:N/VA:N/SC:N/SI:N/SA:H",
        6.3,
    ),
    (
        "AV:N/AC:L/AT:N/PR:L/UI:A/VC:H/VI:H/VA:H/SC:H/SI:N/SA:H",
        9.3,
    ),
    (
        "AV:N/AC:L/AT:N/PR:H/UI:N/VC:L/VI:L/VA:L/SC:L/SI:L/SA:N",
        5.1,
    ),
    (
        "AV:N/AC:L/AT:N/PR:H/UI:P/VC:L/VI:L/VA:N/SC:L/SI:N/SA:N",
        4.8,
    ),
    (
        "AV:N/AC:L/AT:N/PR:H/UI:A/VC:L/VI:N/VA:N/SC:H/SI:N/SA:H",
        6.0,
    ),
    (
        "AV:N/AC:L/AT:P/PR:N/UI:N/VC:H/VI:H/VA:H/SC:H/SI:N/SA:H",
        9.5,
    ),
    (
        "AV:N/AC:L/AT:P/PR:N/UI:A/VC:N/VI:N/VA:N/SC:L/SI:N/SA:N",
        2.1,
    ),
    (
        "AV:N/AC:L/AT:P/PR:L/UI:N/VC:N/VI:N/VA:N/SC:N/SI:L/SA:N",
        2.3,
    ),
    (
        "AV:N/AC:L/AT:P/PR:H/UI:A/VC:N/VI:L/VA:L/SC:L/SI:N/SA:N",
        1.8,
    ),
    (
        "AV:N/AC:L/AT:P/PR:H/UI:P/VC:H/VI:L/VA:L/SC:L/SI:N/SA:L",
        5.8,
    ),
    (
        "AV:N/AC:H/AT:N/PR:N/UI:N/VC:H/VI:H/VA:N/SC:L/SI:H/SA:L",
        9.4,
    ),
    (
        "AV:N/AC:H/AT:N/PR:L/UI:A/VC:N/VI:L/VA:L/SC:H/SI:H/SA:L",
        5.0,
    ),
    (
        "AV:N/AC:H/AT:N/PR:L/UI:P/VC:H/VI:H/VA:H/SC:H/SI:L/SA:H",
        8.8,
    ),
    (
        "AV:N/AC:H/AT:N/PR:H/UI:A/VC:N/VI:N/VA:N/SC:N/SI:H/SA:N",
        4.0,
    ),
    (
        "AV:N/AC:H/AT:P/PR:N/UI:N/VC:H/VI:H/VA:H/SC:H/SI:L/SA:N",
        9.5,
    ),
    (
        "AV:N/AC:H/AT:P/PR:N/UI:N/VC:N/VI:L/VA:N/SC:L/SI:H/SA:L",
        7.0,
    ),
    (
        "AV:L/AC:H/AT:P/PR:H/UI:P/VC:L/VI:H/VA:H/SC:L/SI:H/SA:L",
        5.9,
    ),
    (
        "AV:L/AC:H/AT:P/PR:H/UI:P/VC:L/VI:L/VA:L/SC:N/SI:H/SA:N",
        1.8,
    ),
    (
        "AV:L/AC:H/AT:P/PR:H/UI:A/VC:N/VI:L/VA:N/SC:N/SI:H/SA:L",
        2.0,
    ),
    (
        "AV:L/AC:H/AT:P/PR:H/UI:A/VC:N/VI:N/VA:H/SC:L/SI:L/SA:N",
        4.1,
    ),
    (
        "AV:P/AC:L/AT:N/PR:N/UI:N/VC:H/VI:H/VA:L/SC:N/SI:N/SA:N",
        6.9,
    ),
    (
        "AV:P/AC:L/AT:N/PR:N/UI:N/VC:L/VI:N/VA:L/SC:L/SI:L/SA:N",
        2.4,
    ),
    (
        "AV:P/AC:L/AT:N/PR:N/UI:P/VC:H/VI:H/VA:L/SC:L/SI:H/SA:H",
        8.5,
    ),
    (
        "AV:P/AC:L/AT:N/PR:N/UI:A/VC:N/VI:L/VA:N/SC:L/SI:H/SA:L",
        4.4,
    ),
    (
        "AV:P/AC:L/AT:N/PR:L/UI:N/VC:H/VI:H/VA:L/SC:N/SI:H/SA:H",
        8.4,
    ),
    (
        "AV:P/AC:L/AT:N/PR:H/UI:N/VC:N/VI:N/VA:N/SC:N/SI:H/SA:N",
        4.1,
    ),
    (
        "AV:P/AC:L/AT:P/PR:L/UI:P/VC:N/VI:N/VA:N/SC:L/SI:N/SA:L",
        1.0,
    ),
    (
        "AV:P/AC:L/AT:P/PR:L/UI:A/VC:H/VI:H/VA:N/SC:N/SI:N/SA:L",
        5.3,
    ),
    (
        "AV:P/AC:H/AT:N/PR:N/UI:A/VC:H/VI:H/VA:H/SC:L/SI:L/SA:L",
        5.4,
    ),
    (
        "AV:P/AC:H/AT:N/PR:H/UI:A/VC:N/VI:N/VA:N/SC:N/SI:N/SA:N",
        0.0,
    ),
    (
        "AV:P/AC:H/AT:P/PR:N/UI:N/VC:H/VI:H/VA:N/SC:H/SI:H/SA:H",
        7.2,
    ),
    (
        "AV:P/AC:H/AT:P/PR:H/UI:A/VC:H/VI:H/VA:H/SC:H/SI:H/SA:H/E:A",
        7.3,
    ),
    (
        "AV:P/AC:H/AT:P/PR:H/UI:A/VC:H/VI:H/VA:H/SC:H/SI:H/SA:H/E:P",
        5.9,
    ),
    (
        "AV:P/AC:H/AT:P/PR:H/UI:A/VC:H/VI:H/VA:H/SC:H/SI:H/SA:H/E:U",
        4.1,
    ),
    (
        "AV:N/AC:L/AT:N/PR:N/UI:N/VC:N/VI:N/VA:N/SC:N/SI:N/SA:N/E:U",
        0.0,
    ),
];

#[test]
fn scores_match_the_reference_calculator() {
    let mut wrong = Vec::new();
    for (metrics, want) in REFERENCE {
        let vector = format!("CVSS:4.0/{metrics}");
        let got = f64::from(score_v4(&vector).unwrap_or_else(|e| panic!("{vector}: {e}"))) / 10.0;
        if (got - want).abs() > 1e-9 {
            wrong.push(format!("{vector}: got {got}, reference {want}"));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

fn pick(values: &'static [&'static str]) -> impl Strategy<Value = &'static str> {
    prop::sample::select(values)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(3000))]

    /// Every well-formed vector (base metrics, optionally threat and environmental ones) gets a
    /// score in 0.0..=10.0, and raising exploit maturity never lowers it.
    #[test]
    fn every_valid_v4_vector_scores_within_range(
        base in (pick(&["N", "A", "L", "P"]), pick(&["L", "H"]), pick(&["N", "P"]), pick(&["N", "L", "H"]),
                 pick(&["N", "P", "A"]), pick(&["H", "L", "N"]), pick(&["H", "L", "N"]), pick(&["H", "L", "N"]),
                 pick(&["H", "L", "N"]), pick(&["H", "L", "N"]), pick(&["H", "L", "N"])),
        env in (pick(&["X", "H", "M", "L"]), pick(&["X", "H", "M", "L"]), pick(&["X", "H", "M", "L"]),
                pick(&["X", "S", "H", "L", "N"]), pick(&["X", "N", "A", "L", "P"])),
    ) {
        let (av, ac, at, pr, ui, vc, vi, va, sc, si, sa) = base;
        let b = format!("CVSS:4.0/AV:{av}/AC:{ac}/AT:{at}/PR:{pr}/UI:{ui}/VC:{vc}/VI:{vi}/VA:{va}/SC:{sc}/SI:{si}/SA:{sa}");
        let (cr, ir, ar, msi, mav) = env;
        let full = format!("{b}/CR:{cr}/IR:{ir}/AR:{ar}/MSI:{msi}/MAV:{mav}");
        for v in [&b, &full] {
            let s = score_v4(v).unwrap();
            prop_assert!(s <= 100, "{} scored {}", v, s);
        }
        let unreported = score_v4(&format!("{b}/E:U")).unwrap();
        let poc = score_v4(&format!("{b}/E:P")).unwrap();
        let attacked = score_v4(&format!("{b}/E:A")).unwrap();
        prop_assert!(unreported <= poc && poc <= attacked, "{}: U {} P {} A {}", b, unreported, poc, attacked);
        prop_assert_eq!(attacked, score_v4(&b).unwrap());
    }

    #[test]
    fn every_valid_v3_vector_scores_within_range(
        m in (pick(&["N", "A", "L", "P"]), pick(&["L", "H"]), pick(&["N", "L", "H"]), pick(&["N", "R"]),
              pick(&["U", "C"]), pick(&["H", "L", "N"]), pick(&["H", "L", "N"]), pick(&["H", "L", "N"])),
        minor in pick(&["3.0", "3.1"]),
    ) {
        let (av, ac, pr, ui, s, c, i, a) = m;
        let v = format!("CVSS:{minor}/AV:{av}/AC:{ac}/PR:{pr}/UI:{ui}/S:{s}/C:{c}/I:{i}/A:{a}");
        let score = base_score_v3(&v).unwrap();
        prop_assert!(score <= 100);
        prop_assert_eq!(score == 0, c == "N" && i == "N" && a == "N", "{} scored {}", v, score);
    }

    #[test]
    fn arbitrary_strings_never_panic(s in "\\PC{0,80}") {
        let _ = score_v4(&s);
        let _ = score_v4(&format!("CVSS:4.0/{s}"));
        let _ = base_score_v3(&format!("CVSS:3.1/{s}"));
    }
}
