//! CVSS v4.0 scores with the specification's MacroVector method, as FIRST's reference
//! calculator computes them: the vector's six equivalence classes (EQ1–EQ6) select a MacroVector
//! whose score comes from the specification's lookup table; the score is then lowered by the
//! mean, over the EQs that have a lower MacroVector, of (score gap to that lower MacroVector) ×
//! (the vector's severity distance from the MacroVector's highest-severity vectors ÷ the
//! MacroVector's depth). Floating-point steps follow the reference so results are identical.
//! Threat (`E`), environmental (`CR`/`IR`/`AR`, `M*`) metrics are honoured when present, so the
//! result is CVSS-B, -BT, -BE or -BTE depending on the vector; supplemental metrics are ignored.

use std::collections::HashMap;

use super::CvssError;

/// The specification's MacroVector scores: (EQ1..EQ6 digits as a decimal number, score in
/// tenths). Transcribed from the CVSS v4.0 specification's lookup table (FIRST calculator).
const LOOKUP: [(u32, u8); 270] = [
    (0, 100),
    (1, 99),
    (10, 98),
    (11, 95),
    (20, 95),
    (21, 92),
    (100, 100),
    (101, 96),
    (110, 93),
    (111, 87),
    (120, 91),
    (121, 81),
    (200, 93),
    (201, 90),
    (210, 89),
    (211, 80),
    (220, 81),
    (221, 68),
    (1000, 98),
    (1001, 95),
    (1010, 95),
    (1011, 92),
    (1020, 90),
    (1021, 84),
    (1100, 93),
    (1101, 92),
    (1110, 89),
    (1111, 81),
    (1120, 81),
    (1121, 65),
    (1200, 88),
    (1201, 80),
    (1210, 78),
    (1211, 70),
    (1220, 69),
    (1221, 48),
    (2001, 92),
    (2011, 82),
    (2021, 72),
    (2101, 79),
    (2111, 69),
    (2121, 50),
    (2201, 69),
    (2211, 55),
    (2221, 27),
    (10000, 99),
    (10001, 97),
    (10010, 95),
    (10011, 92),
    (10020, 92),
    (10021, 85),
    (10100, 95),
    (10101, 91),
    (10110, 90),
    (10111, 83),
    (10120, 84),
    (10121, 71),
    (10200, 92),
    (10201, 81),
    (10210, 82),
    (10211, 71),
    (10220, 72),
    (10221, 53),
    (11000, 95),
    (11001, 93),
    (11010, 92),
    (11011, 85),
    (11020, 85),
    (11021, 73),
    (11100, 92),
    (11101, 82),
    (11110, 80),
    (11111, 72),
    (11120, 70),
    (11121, 59),
    (11200, 84),
    (11201, 70),
    (11210, 71),
    (11211, 52),
    (11220, 50),
    (11221, 30),
    (12001, 86),
    (12011, 75),
    (12021, 52),
    (12101, 71),
    (12111, 52),
    (12121, 29),
    (12201, 63),
    (12211, 29),
    (12221, 17),
    (100000, 98),
    (100001, 95),
    (100010, 94),
    (100011, 87),
    (100020, 91),
    (100021, 81),
    (100100, 94),
    (100101, 89),
    (100110, 86),
    (100111, 74),
    (100120, 77),
    (100121, 64),
    (100200, 87),
    (100201, 75),
    (100210, 74),
    (100211, 63),
    (100220, 63),
    (100221, 49),
    (101000, 94),
    (101001, 89),
    (101010, 88),
    (101011, 77),
    (101020, 76),
    (101021, 67),
    (101100, 86),
    (101101, 76),
    (101110, 74),
    (101111, 58),
    (101120, 59),
    (101121, 50),
    (101200, 72),
    (101201, 57),
    (101210, 57),
    (101211, 52),
    (101220, 52),
    (101221, 25),
    (102001, 83),
    (102011, 70),
    (102021, 54),
    (102101, 65),
    (102111, 58),
    (102121, 26),
    (102201, 53),
    (102211, 21),
    (102221, 13),
    (110000, 95),
    (110001, 90),
    (110010, 88),
    (110011, 76),
    (110020, 76),
    (110021, 70),
    (110100, 90),
    (110101, 77),
    (110110, 75),
    (110111, 62),
    (110120, 61),
    (110121, 53),
    (110200, 77),
    (110201, 66),
    (110210, 68),
    (110211, 59),
    (110220, 52),
    (110221, 30),
    (111000, 89),
    (111001, 78),
    (111010, 76),
    (111011, 67),
    (111020, 62),
    (111021, 58),
    (111100, 74),
    (111101, 59),
    (111110, 57),
    (111111, 57),
    (111120, 47),
    (111121, 23),
    (111200, 61),
    (111201, 52),
    (111210, 57),
    (111211, 29),
    (111220, 24),
    (111221, 16),
    (112001, 71),
    (112011, 59),
    (112021, 30),
    (112101, 58),
    (112111, 26),
    (112121, 15),
    (112201, 23),
    (112211, 13),
    (112221, 6),
    (200000, 93),
    (200001, 87),
    (200010, 86),
    (200011, 72),
    (200020, 75),
    (200021, 58),
    (200100, 86),
    (200101, 74),
    (200110, 74),
    (200111, 61),
    (200120, 56),
    (200121, 34),
    (200200, 70),
    (200201, 54),
    (200210, 52),
    (200211, 40),
    (200220, 40),
    (200221, 22),
    (201000, 85),
    (201001, 75),
    (201010, 74),
    (201011, 55),
    (201020, 62),
    (201021, 51),
    (201100, 72),
    (201101, 57),
    (201110, 55),
    (201111, 41),
    (201120, 46),
    (201121, 19),
    (201200, 53),
    (201201, 36),
    (201210, 34),
    (201211, 19),
    (201220, 19),
    (201221, 8),
    (202001, 64),
    (202011, 51),
    (202021, 20),
    (202101, 47),
    (202111, 21),
    (202121, 11),
    (202201, 24),
    (202211, 9),
    (202221, 4),
    (210000, 88),
    (210001, 75),
    (210010, 73),
    (210011, 53),
    (210020, 60),
    (210021, 50),
    (210100, 73),
    (210101, 55),
    (210110, 59),
    (210111, 40),
    (210120, 41),
    (210121, 20),
    (210200, 54),
    (210201, 43),
    (210210, 45),
    (210211, 22),
    (210220, 20),
    (210221, 11),
    (211000, 75),
    (211001, 55),
    (211010, 58),
    (211011, 45),
    (211020, 40),
    (211021, 21),
    (211100, 61),
    (211101, 51),
    (211110, 48),
    (211111, 18),
    (211120, 20),
    (211121, 9),
    (211200, 46),
    (211201, 18),
    (211210, 17),
    (211211, 7),
    (211220, 8),
    (211221, 2),
    (212001, 53),
    (212011, 24),
    (212021, 14),
    (212101, 24),
    (212111, 12),
    (212121, 5),
    (212201, 10),
    (212211, 3),
    (212221, 1),
];

/// Per EQ value, the highest-severity vectors of that MacroVector (the specification's
/// "max composed" data). EQ3 is indexed by EQ3 then EQ6.
const EQ1_MAX: [&[&str]; 3] = [
    &["AV:N/PR:N/UI:N"],
    &["AV:A/PR:N/UI:N", "AV:N/PR:L/UI:N", "AV:N/PR:N/UI:P"],
    &["AV:P/PR:N/UI:N", "AV:A/PR:L/UI:P"],
];
const EQ2_MAX: [&[&str]; 2] = [&["AC:L/AT:N"], &["AC:H/AT:N", "AC:L/AT:P"]];
const EQ3_EQ6_MAX: [[&[&str]; 2]; 3] = [
    [
        &["VC:H/VI:H/VA:H/CR:H/IR:H/AR:H"],
        &[
            "VC:H/VI:H/VA:L/CR:M/IR:M/AR:H",
            "VC:H/VI:H/VA:H/CR:M/IR:M/AR:M",
        ],
    ],
    [
        &[
            "VC:L/VI:H/VA:H/CR:H/IR:H/AR:H",
            "VC:H/VI:L/VA:H/CR:H/IR:H/AR:H",
        ],
        &[
            "VC:L/VI:H/VA:L/CR:H/IR:M/AR:H",
            "VC:L/VI:H/VA:H/CR:H/IR:M/AR:M",
            "VC:H/VI:L/VA:H/CR:M/IR:H/AR:M",
            "VC:H/VI:L/VA:L/CR:M/IR:H/AR:H",
            "VC:L/VI:L/VA:H/CR:H/IR:H/AR:M",
        ],
    ],
    [&[], &["VC:L/VI:L/VA:L/CR:H/IR:H/AR:H"]],
];
const EQ4_MAX: [&str; 3] = ["SC:H/SI:S/SA:S", "SC:H/SI:H/SA:H", "SC:L/SI:L/SA:L"];

/// Depth of each MacroVector (the specification's maximal severity distances, +1), in steps.
const EQ1_DEPTH: [f64; 3] = [1.0, 4.0, 5.0];
const EQ2_DEPTH: [f64; 2] = [1.0, 2.0];
const EQ3_EQ6_DEPTH: [[f64; 2]; 3] = [[7.0, 6.0], [8.0, 8.0], [f64::NAN, 10.0]];
const EQ4_DEPTH: [f64; 3] = [6.0, 5.0, 4.0];

const STEP: f64 = 0.1;

fn allowed(metric: &str) -> Option<&'static [&'static str]> {
    Some(match metric {
        "AV" => &["N", "A", "L", "P"],
        "AC" => &["L", "H"],
        "AT" => &["N", "P"],
        "PR" => &["N", "L", "H"],
        "UI" => &["N", "P", "A"],
        "VC" | "VI" | "VA" | "SC" | "SI" | "SA" => &["H", "L", "N"],
        "E" => &["X", "A", "P", "U"],
        "CR" | "IR" | "AR" => &["X", "H", "M", "L"],
        "MAV" => &["X", "N", "A", "L", "P"],
        "MAC" => &["X", "L", "H"],
        "MAT" => &["X", "N", "P"],
        "MPR" => &["X", "N", "L", "H"],
        "MUI" => &["X", "N", "P", "A"],
        "MVC" | "MVI" | "MVA" | "MSC" => &["X", "H", "L", "N"],
        "MSI" | "MSA" => &["X", "S", "H", "L", "N"],
        "S" => &["X", "N", "P"],
        "AU" => &["X", "N", "Y"],
        "R" => &["X", "A", "U", "I"],
        "V" => &["X", "D", "C"],
        "RE" => &["X", "L", "M", "H"],
        "U" => &["X", "Clear", "Green", "Amber", "Red"],
        _ => return None,
    })
}

const BASE: [&str; 11] = [
    "AV", "AC", "AT", "PR", "UI", "VC", "VI", "VA", "SC", "SI", "SA",
];

struct Vector<'a>(HashMap<&'a str, &'a str>);

impl<'a> Vector<'a> {
    fn parse(vector: &'a str) -> Result<Self, CvssError> {
        let invalid = |reason: String| CvssError::Invalid {
            vector: vector.to_owned(),
            reason,
        };
        let mut parts = vector.trim().split('/');
        if parts.next() != Some("CVSS:4.0") {
            return Err(CvssError::NotVersion {
                expected: "4.0",
                vector: vector.to_owned(),
            });
        }
        let mut map = HashMap::new();
        for part in parts {
            let (k, v) = part
                .split_once(':')
                .ok_or_else(|| invalid("metric without a value".to_owned()))?;
            let values = allowed(k).ok_or_else(|| invalid(format!("unknown metric {k}")))?;
            if !values.contains(&v) {
                return Err(invalid(format!("invalid value {v:?} for {k}")));
            }
            if map.insert(k, v).is_some() {
                return Err(invalid(format!("metric {k} given twice")));
            }
        }
        if let Some(missing) = BASE.iter().find(|m| !map.contains_key(*m)) {
            return Err(invalid(format!("base metric {missing} is missing")));
        }
        Ok(Vector(map))
    }

    /// The effective value of a metric: modified metrics override base ones; unset threat and
    /// requirement metrics take their worst case (`E:A`, `CR/IR/AR:H`).
    fn m(&self, metric: &str) -> &'a str {
        let selected = self.0.get(metric).copied().unwrap_or("X");
        match (metric, selected) {
            ("E", "X") => return "A",
            ("CR" | "IR" | "AR", "X") => return "H",
            _ => {}
        }
        if let Some(&modified) = self.0.get(format!("M{metric}").as_str()) {
            if modified != "X" {
                return modified;
            }
        }
        selected
    }

    fn macro_vector(&self) -> [usize; 6] {
        let is = |metric: &str, v: &str| self.m(metric) == v;
        let eq1 = if is("AV", "N") && is("PR", "N") && is("UI", "N") {
            0
        } else if (is("AV", "N") || is("PR", "N") || is("UI", "N")) && !is("AV", "P") {
            1
        } else {
            2
        };
        let eq2 = if is("AC", "L") && is("AT", "N") { 0 } else { 1 };
        let eq3 = if is("VC", "H") && is("VI", "H") {
            0
        } else if is("VC", "H") || is("VI", "H") || is("VA", "H") {
            1
        } else {
            2
        };
        let eq4 = if is("MSI", "S") || is("MSA", "S") {
            0
        } else if is("SC", "H") || is("SI", "H") || is("SA", "H") {
            1
        } else {
            2
        };
        let eq5 = match self.m("E") {
            "A" => 0,
            "P" => 1,
            _ => 2,
        };
        let eq6 = if (is("CR", "H") && is("VC", "H"))
            || (is("IR", "H") && is("VI", "H"))
            || (is("AR", "H") && is("VA", "H"))
        {
            0
        } else {
            1
        };
        [eq1, eq2, eq3, eq4, eq5, eq6]
    }
}

fn lookup(eq: [usize; 6]) -> Option<f64> {
    let key = eq
        .iter()
        .try_fold(0u32, |acc, &d| (d <= 9).then(|| acc * 10 + d as u32))?;
    LOOKUP
        .binary_search_by_key(&key, |(k, _)| *k)
        .ok()
        .map(|i| f64::from(LOOKUP[i].1) / 10.0)
}

/// Severity levels per metric value, as the reference calculator defines them.
fn level(metric: &str, value: &str) -> f64 {
    match (metric, value) {
        ("AV", "N") | ("PR", "N") | ("UI", "N") | ("AC", "L") | ("AT", "N") => 0.0,
        ("AV", "A") | ("PR", "L") | ("UI", "P") | ("AC", "H") | ("AT", "P") => 0.1,
        ("AV", "L") | ("PR", "H") | ("UI", "A") => 0.2,
        ("AV", "P") => 0.3,
        ("VC" | "VI" | "VA", "H") => 0.0,
        ("VC" | "VI" | "VA", "L") => 0.1,
        ("VC" | "VI" | "VA", "N") => 0.2,
        ("SC", "H") => 0.1,
        ("SC", "L") => 0.2,
        ("SC", "N") => 0.3,
        ("SI" | "SA", "S") => 0.0,
        ("SI" | "SA", "H") => 0.1,
        ("SI" | "SA", "L") => 0.2,
        ("SI" | "SA", "N") => 0.3,
        ("CR" | "IR" | "AR", "H") => 0.0,
        ("CR" | "IR" | "AR", "M") => 0.1,
        ("CR" | "IR" | "AR", "L") => 0.2,
        _ => f64::NAN,
    }
}

const DISTANCE_METRICS: [&str; 14] = [
    "AV", "PR", "UI", "AC", "AT", "VC", "VI", "VA", "SC", "SI", "SA", "CR", "IR", "AR",
];

/// CVSS v4.0 score of a vector, in tenths.
pub fn score_v4(vector: &str) -> Result<u8, CvssError> {
    let v = Vector::parse(vector)?;
    if ["VC", "VI", "VA", "SC", "SI", "SA"]
        .iter()
        .all(|m| v.m(m) == "N")
    {
        return Ok(0);
    }
    let mv = v.macro_vector();
    let [eq1, eq2, eq3, eq4, _, eq6] = mv;
    let value = lookup(mv).ok_or_else(|| CvssError::Invalid {
        vector: vector.to_owned(),
        reason: "MacroVector missing from the lookup table".to_owned(),
    })?;

    let lower = |i: usize, j: Option<usize>| {
        let mut m = mv;
        m[i] += 1;
        if let Some(j) = j {
            m[j] += 1;
        }
        lookup(m)
    };
    let score_eq1 = lower(0, None);
    let score_eq2 = lower(1, None);
    let score_eq3eq6 = match (eq3, eq6) {
        (1, 1) | (0, 1) => lower(2, None),
        (1, 0) => lower(5, None),
        (0, 0) => {
            let left = lower(5, None);
            let right = lower(2, None);
            // The reference keeps `left` only when it is strictly higher than an existing right.
            match (left, right) {
                (Some(l), Some(r)) if l > r => Some(l),
                _ => right,
            }
        }
        _ => lower(2, Some(5)),
    };
    let score_eq4 = lower(3, None);
    let score_eq5 = lower(4, None);

    // Highest-severity vectors of this MacroVector; the first one the vector does not exceed
    // gives the severity distances (the reference keeps the last one tried if none fits).
    let mut maxes = Vec::new();
    for a in EQ1_MAX[eq1] {
        for b in EQ2_MAX[eq2] {
            for c in EQ3_EQ6_MAX[eq3][eq6] {
                maxes.push(format!("{a}/{b}/{c}/{}", EQ4_MAX[eq4]));
            }
        }
    }
    if maxes.is_empty() {
        return Err(CvssError::Invalid {
            vector: vector.to_owned(),
            reason: "no highest-severity vector for this MacroVector".to_owned(),
        });
    }
    let mut dist: HashMap<&str, f64> = HashMap::new();
    for max in &maxes {
        let max_values: HashMap<&str, &str> =
            max.split('/').filter_map(|p| p.split_once(':')).collect();
        dist = DISTANCE_METRICS
            .iter()
            .map(|&m| (m, level(m, v.m(m)) - level(m, max_values[m])))
            .collect();
        if !dist.values().any(|d| *d < 0.0) {
            break;
        }
    }
    let d = |m: &str| dist.get(m).copied().unwrap_or(0.0);
    let current_eq1 = d("AV") + d("PR") + d("UI");
    let current_eq2 = d("AC") + d("AT");
    let current_eq3eq6 = d("VC") + d("VI") + d("VA") + d("CR") + d("IR") + d("AR");
    let current_eq4 = d("SC") + d("SI") + d("SA");

    let parts = [
        (score_eq1, current_eq1, EQ1_DEPTH[eq1] * STEP),
        (score_eq2, current_eq2, EQ2_DEPTH[eq2] * STEP),
        (score_eq3eq6, current_eq3eq6, EQ3_EQ6_DEPTH[eq3][eq6] * STEP),
        (score_eq4, current_eq4, EQ4_DEPTH[eq4] * STEP),
    ];
    let mut existing = 0u32;
    let mut sum = 0.0;
    for (lower_score, current, depth) in parts {
        if let Some(l) = lower_score {
            existing += 1;
            sum += (value - l) * (current / depth);
        }
    }
    if score_eq5.is_some() {
        // EQ5's proportion is always 0, but an existing lower MacroVector still counts.
        existing += 1;
    }
    let mean = if existing == 0 {
        0.0
    } else {
        sum / f64::from(existing)
    };
    let score = (value - mean).clamp(0.0, 10.0);
    Ok((score * 10.0).round() as u8)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &str) -> f64 {
        f64::from(score_v4(v).unwrap_or_else(|e| panic!("{v}: {e}"))) / 10.0
    }

    #[test]
    fn lookup_table_is_sorted_and_complete() {
        assert!(LOOKUP.windows(2).all(|w| w[0].0 < w[1].0));
        // Every valid MacroVector (EQ3 = 2 forces EQ6 = 1) has a score.
        let mut n = 0;
        for e1 in 0..3 {
            for e2 in 0..2 {
                for e3 in 0..3 {
                    for e4 in 0..3 {
                        for e5 in 0..3 {
                            for e6 in 0..2 {
                                if e3 == 2 && e6 == 0 {
                                    continue;
                                }
                                assert!(lookup([e1, e2, e3, e4, e5, e6]).is_some());
                                n += 1;
                            }
                        }
                    }
                }
            }
        }
        assert_eq!(n, LOOKUP.len());
    }

    #[test]
    fn highest_vectors_score_their_macrovector() {
        assert_eq!(
            s("CVSS:4.0/AV:N/AC:L/AT:N/PR:N/UI:N/VC:H/VI:H/VA:H/SC:H/SI:H/SA:H"),
            10.0
        );
        assert_eq!(
            s("CVSS:4.0/AV:N/AC:L/AT:N/PR:N/UI:N/VC:H/VI:H/VA:H/SC:N/SI:N/SA:N"),
            9.3
        );
    }

    #[test]
    fn no_impact_scores_zero() {
        assert_eq!(
            s("CVSS:4.0/AV:N/AC:L/AT:N/PR:N/UI:N/VC:N/VI:N/VA:N/SC:N/SI:N/SA:N"),
            0.0
        );
    }

    #[test]
    fn rejects_malformed_vectors() {
        for v in [
            "CVSS:4.0/AV:N/AC:L/AT:N/PR:N/UI:N/VC:H/VI:H/VA:H/SC:N/SI:N",
            "CVSS:4.0/AV:N/AC:L/AT:N/PR:N/UI:N/VC:H/VI:H/VA:H/SC:N/SI:N/SA:S",
            "CVSS:4.0/AV:N/AC:L/AT:N/PR:N/UI:N/VC:H/VI:H/VA:H/SC:N/SI:N/SA:N/SA:N",
            "CVSS:4.0/AV:N/AC:L/AT:N/PR:N/UI:N/VC:H/VI:H/VA:H/SC:N/SI:N/SA:N/XX:Y",
            "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H",
        ] {
            assert!(score_v4(v).is_err(), "{v}");
        }
    }
}
