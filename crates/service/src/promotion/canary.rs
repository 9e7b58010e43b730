//! Canary analysis: does a canary behave worse than its baseline on a set of metrics?
//!
//! Each metric's two samples are compared with the Mann–Whitney U test (rank-based, so no
//! assumption of normality; ties get average ranks and the variance its tie correction; normal
//! approximation with continuity correction), as Netflix's Kayenta does. A metric is `high` or
//! `low` only when the difference is significant at `alpha` *and* its size — the Hodges–Lehmann
//! shift (median of all canary − baseline differences) relative to the baseline median — exceeds
//! the metric's tolerance; otherwise it passes. A metric fails when it moved in its bad direction.
//! The score is the weighted share of passing metrics (0–100); `pass` at or above
//! `pass_score`, `marginal` at or above `marginal_score`, else `fail`; a failing critical metric
//! fails the whole analysis. Pure: samples in, report out.

use serde::{Deserialize, Serialize};

/// Largest sample accepted per side (the Hodges–Lehmann estimate looks at every pair).
pub const MAX_SAMPLES: usize = 2000;
/// Fewest samples per side for a meaningful test.
pub const MIN_SAMPLES: usize = 3;

/// Which way a metric must not move.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    /// Higher is worse (error rate, latency).
    #[default]
    Increase,
    /// Lower is worse (throughput, success rate).
    Decrease,
    /// Any significant change is worse.
    Either,
}

fn default_tolerance() -> f64 {
    0.05
}

fn default_weight() -> f64 {
    1.0
}

/// One metric's samples and how to judge them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MetricSamples {
    pub name: String,
    #[serde(default)]
    pub direction: Direction,
    /// Relative change (of the baseline median) tolerated even when significant.
    #[serde(default = "default_tolerance")]
    pub tolerance: f64,
    #[serde(default)]
    pub critical: bool,
    #[serde(default = "default_weight")]
    pub weight: f64,
    pub baseline: Vec<f64>,
    pub canary: Vec<f64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Thresholds {
    pub alpha: f64,
    pub pass_score: f64,
    pub marginal_score: f64,
}

impl Default for Thresholds {
    fn default() -> Self {
        Thresholds {
            alpha: 0.05,
            pass_score: 95.0,
            marginal_score: 75.0,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Classification {
    Pass,
    High,
    Low,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MetricResult {
    pub name: String,
    pub classification: Classification,
    pub passed: bool,
    pub critical: bool,
    /// Two-sided p-value of the Mann–Whitney U test.
    pub p_value: f64,
    pub u: f64,
    pub baseline_median: f64,
    pub canary_median: f64,
    /// Hodges–Lehmann estimate of canary − baseline.
    pub shift: f64,
    /// `shift` relative to the baseline median (absolute shift when that median is 0).
    pub relative_shift: f64,
    pub baseline_count: usize,
    pub canary_count: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CanaryVerdict {
    Pass,
    Marginal,
    Fail,
}

impl CanaryVerdict {
    pub fn as_str(self) -> &'static str {
        match self {
            CanaryVerdict::Pass => "pass",
            CanaryVerdict::Marginal => "marginal",
            CanaryVerdict::Fail => "fail",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CanaryReport {
    pub verdict: CanaryVerdict,
    pub score: f64,
    pub thresholds: Thresholds,
    pub metrics: Vec<MetricResult>,
    /// Why the verdict is what it is, in one line.
    pub summary: String,
}

fn median(sorted: &[f64]) -> f64 {
    let n = sorted.len();
    if n % 2 == 1 {
        sorted[n / 2]
    } else {
        (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0
    }
}

/// Standard normal upper tail, via the complementary error function (Numerical Recipes'
/// Chebyshev fit of erfc, relative error < 1.2e-7).
fn normal_sf(z: f64) -> f64 {
    0.5 * erfc(z / std::f64::consts::SQRT_2)
}

fn erfc(x: f64) -> f64 {
    let z = x.abs();
    let t = 1.0 / (1.0 + 0.5 * z);
    let r = t
        * (-z * z - 1.265_512_23
            + t * (1.000_023_68
                + t * (0.374_091_96
                    + t * (0.096_784_18
                        + t * (-0.186_288_06
                            + t * (0.278_868_07
                                + t * (-1.135_203_98
                                    + t * (1.488_515_87
                                        + t * (-0.822_152_23 + t * 0.170_872_77)))))))))
            .exp();
    if x >= 0.0 {
        r
    } else {
        2.0 - r
    }
}

/// Mann–Whitney U of `canary` against `baseline`: (U of the canary, two-sided p-value).
pub fn mann_whitney(baseline: &[f64], canary: &[f64]) -> (f64, f64) {
    let (n1, n2) = (baseline.len() as f64, canary.len() as f64);
    let mut all: Vec<(f64, bool)> = baseline
        .iter()
        .map(|&v| (v, false))
        .chain(canary.iter().map(|&v| (v, true)))
        .collect();
    all.sort_by(|a, b| a.0.total_cmp(&b.0));
    let n = all.len();
    let (mut rank_sum, mut ties) = (0.0, 0.0);
    let mut i = 0;
    while i < n {
        let mut j = i;
        while j + 1 < n && all[j + 1].0 == all[i].0 {
            j += 1;
        }
        let rank = (i + j) as f64 / 2.0 + 1.0;
        let t = (j - i + 1) as f64;
        ties += t * t * t - t;
        rank_sum += rank * all[i..=j].iter().filter(|(_, c)| *c).count() as f64;
        i = j + 1;
    }
    let u = rank_sum - n2 * (n2 + 1.0) / 2.0;
    let mean = n1 * n2 / 2.0;
    let nn = n1 + n2;
    let var = n1 * n2 / 12.0 * ((nn + 1.0) - ties / (nn * (nn - 1.0)));
    if var <= 0.0 {
        // Every value equal: no evidence of any difference.
        return (u, 1.0);
    }
    let diff = (u - mean).abs();
    let z = (diff - 0.5).max(0.0) / var.sqrt();
    (u, (2.0 * normal_sf(z)).min(1.0))
}

/// Hodges–Lehmann shift: the median of every canary − baseline difference.
pub fn hodges_lehmann(baseline: &[f64], canary: &[f64]) -> f64 {
    let mut diffs: Vec<f64> = canary
        .iter()
        .flat_map(|c| baseline.iter().map(move |b| c - b))
        .collect();
    diffs.sort_by(f64::total_cmp);
    median(&diffs)
}

fn check(m: &MetricSamples) -> Result<(), String> {
    if m.name.is_empty() {
        return Err("a metric needs a name".into());
    }
    for (side, s) in [("baseline", &m.baseline), ("canary", &m.canary)] {
        if s.len() < MIN_SAMPLES || s.len() > MAX_SAMPLES {
            return Err(format!(
                "metric {:?}: {side} has {} samples; between {MIN_SAMPLES} and {MAX_SAMPLES} are needed",
                m.name,
                s.len()
            ));
        }
        if s.iter().any(|v| !v.is_finite()) {
            return Err(format!(
                "metric {:?}: {side} has a value that is not a finite number",
                m.name
            ));
        }
    }
    if !(m.tolerance >= 0.0 && m.tolerance.is_finite()) {
        return Err(format!("metric {:?}: tolerance must be ≥ 0", m.name));
    }
    if !(m.weight > 0.0 && m.weight.is_finite()) {
        return Err(format!("metric {:?}: weight must be > 0", m.name));
    }
    Ok(())
}

/// Judges one metric.
pub fn judge_metric(m: &MetricSamples, alpha: f64) -> Result<MetricResult, String> {
    check(m)?;
    let (u, p) = mann_whitney(&m.baseline, &m.canary);
    let mut b = m.baseline.clone();
    let mut c = m.canary.clone();
    b.sort_by(f64::total_cmp);
    c.sort_by(f64::total_cmp);
    let (bm, cm) = (median(&b), median(&c));
    let shift = hodges_lehmann(&m.baseline, &m.canary);
    let relative = if bm == 0.0 { shift } else { shift / bm.abs() };
    let classification = if p < alpha && relative.abs() > m.tolerance {
        if shift > 0.0 {
            Classification::High
        } else {
            Classification::Low
        }
    } else {
        Classification::Pass
    };
    let passed = matches!(
        (classification, m.direction),
        (Classification::Pass, _)
            | (Classification::High, Direction::Decrease)
            | (Classification::Low, Direction::Increase)
    );
    Ok(MetricResult {
        name: m.name.clone(),
        classification,
        passed,
        critical: m.critical,
        p_value: p,
        u,
        baseline_median: bm,
        canary_median: cm,
        shift,
        relative_shift: relative,
        baseline_count: m.baseline.len(),
        canary_count: m.canary.len(),
    })
}

/// Judges every metric and the whole canary.
pub fn analyse(metrics: &[MetricSamples], t: Thresholds) -> Result<CanaryReport, String> {
    if metrics.is_empty() {
        return Err("canary analysis needs at least one metric".into());
    }
    if !(t.alpha > 0.0 && t.alpha < 1.0) {
        return Err("alpha must be between 0 and 1".into());
    }
    if !(0.0..=100.0).contains(&t.marginal_score)
        || !(0.0..=100.0).contains(&t.pass_score)
        || t.marginal_score > t.pass_score
    {
        return Err("need 0 ≤ marginal_score ≤ pass_score ≤ 100".into());
    }
    let results = metrics
        .iter()
        .map(|m| judge_metric(m, t.alpha))
        .collect::<Result<Vec<_>, _>>()?;
    let total: f64 = metrics.iter().map(|m| m.weight).sum();
    let passed: f64 = metrics
        .iter()
        .zip(&results)
        .filter(|(_, r)| r.passed)
        .map(|(m, _)| m.weight)
        .sum();
    let score = 100.0 * passed / total;
    let failed: Vec<&str> = results
        .iter()
        .filter(|r| !r.passed)
        .map(|r| r.name.as_str())
        .collect();
    let critical = results.iter().find(|r| r.critical && !r.passed);
    let verdict = if critical.is_some() {
        CanaryVerdict::Fail
    } else if score >= t.pass_score {
        CanaryVerdict::Pass
    } else if score >= t.marginal_score {
        CanaryVerdict::Marginal
    } else {
        CanaryVerdict::Fail
    };
    let summary = match critical {
        Some(r) => format!("critical metric {:?} regressed", r.name),
        None if failed.is_empty() => format!("score {score:.1}: every metric passed"),
        None => format!("score {score:.1}: regressed: {}", failed.join(", ")),
    };
    Ok(CanaryReport {
        verdict,
        score,
        thresholds: t,
        metrics: results,
        summary,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A deterministic pseudo-random sequence in [0, 1) (64-bit LCG), for reproducible noise.
    fn noise(seed: u64, n: usize) -> Vec<f64> {
        let mut s = seed;
        (0..n)
            .map(|_| {
                s = s
                    .wrapping_mul(6_364_136_223_846_793_005)
                    .wrapping_add(1_442_695_040_888_963_407);
                (s >> 11) as f64 / (1u64 << 53) as f64
            })
            .collect()
    }

    fn metric(name: &str, baseline: Vec<f64>, canary: Vec<f64>) -> MetricSamples {
        MetricSamples {
            name: name.into(),
            direction: Direction::Increase,
            tolerance: 0.05,
            critical: false,
            weight: 1.0,
            baseline,
            canary,
        }
    }

    #[test]
    fn u_statistic_matches_a_hand_computed_example() {
        // Baseline 1,2,3 and canary 4,5,6: every canary value outranks every baseline one, so
        // U(canary) = 9 = n1·n2. Exact two-sided p is 0.1; the normal approximation with
        // continuity correction gives 2·(1 − Φ((9 − 4.5 − 0.5)/√5.25)) = 0.0809.
        let (u, p) = mann_whitney(&[1.0, 2.0, 3.0], &[4.0, 5.0, 6.0]);
        assert_eq!(u, 9.0);
        assert!((p - 0.0809).abs() < 5e-4, "{p}");
        // Identical samples: U at its mean, p = 1.
        let (u, p) = mann_whitney(&[1.0, 2.0, 3.0], &[1.0, 2.0, 3.0]);
        assert_eq!(u, 4.5);
        assert!((p - 1.0).abs() < 1e-9);
        // All ties: no evidence.
        assert_eq!(mann_whitney(&[5.0; 4], &[5.0; 4]).1, 1.0);
    }

    #[test]
    fn normal_tail_is_accurate() {
        assert!((normal_sf(0.0) - 0.5).abs() < 1e-7);
        assert!((normal_sf(1.959_964) - 0.025).abs() < 1e-6);
        assert!((normal_sf(-1.0) - 0.841_344_7).abs() < 1e-6);
        assert!((normal_sf(3.0) - 0.001_349_9).abs() < 1e-6);
    }

    #[test]
    fn hodges_lehmann_is_the_median_pairwise_shift() {
        assert_eq!(hodges_lehmann(&[1.0, 2.0, 3.0], &[11.0, 12.0, 13.0]), 10.0);
        assert_eq!(hodges_lehmann(&[1.0, 2.0], &[1.0, 2.0]), 0.0);
    }

    #[test]
    fn a_clear_regression_fails_and_noise_passes() {
        // Error rate around 1 % in the baseline, 3 % in the canary.
        let base: Vec<f64> = noise(1, 60).iter().map(|x| 0.01 + 0.002 * x).collect();
        let bad: Vec<f64> = noise(2, 60).iter().map(|x| 0.03 + 0.002 * x).collect();
        let same: Vec<f64> = noise(3, 60).iter().map(|x| 0.01 + 0.002 * x).collect();
        let latency_base: Vec<f64> = noise(4, 60).iter().map(|x| 100.0 + 20.0 * x).collect();
        let latency_same: Vec<f64> = noise(5, 60).iter().map(|x| 100.0 + 20.0 * x).collect();

        let regression = analyse(
            &[
                metric("error_rate", base.clone(), bad),
                metric("latency_p99", latency_base.clone(), latency_same.clone()),
            ],
            Thresholds::default(),
        )
        .unwrap();
        assert_eq!(regression.verdict, CanaryVerdict::Fail);
        assert_eq!(regression.metrics[0].classification, Classification::High);
        assert!(!regression.metrics[0].passed);
        assert!(regression.metrics[1].passed);
        assert_eq!(regression.score, 50.0);
        assert!(regression.summary.contains("error_rate"));

        let fine = analyse(
            &[
                metric("error_rate", base, same),
                metric("latency_p99", latency_base, latency_same),
            ],
            Thresholds::default(),
        )
        .unwrap();
        assert_eq!(fine.verdict, CanaryVerdict::Pass, "{}", fine.summary);
        assert_eq!(fine.score, 100.0);
    }

    #[test]
    fn direction_tolerance_criticality_and_marginal_scores() {
        let base: Vec<f64> = noise(7, 40).iter().map(|x| 1000.0 + 10.0 * x).collect();
        let higher: Vec<f64> = noise(8, 40).iter().map(|x| 1200.0 + 10.0 * x).collect();
        // Throughput going up is good.
        let mut throughput = metric("rps", base.clone(), higher.clone());
        throughput.direction = Direction::Decrease;
        assert!(judge_metric(&throughput, 0.05).unwrap().passed);
        // Either direction: any real change fails.
        throughput.direction = Direction::Either;
        assert!(!judge_metric(&throughput, 0.05).unwrap().passed);
        // A 20 % shift within a 25 % tolerance passes although significant.
        let mut tolerant = metric("latency", base.clone(), higher.clone());
        tolerant.tolerance = 0.25;
        let r = judge_metric(&tolerant, 0.05).unwrap();
        assert!(r.p_value < 0.05 && r.passed, "{r:?}");
        // One bad metric of four: score 75 → marginal; critical → fail.
        let ok = || metric("ok", base.clone(), base.clone());
        let mut four = vec![
            ok(),
            ok(),
            ok(),
            metric("bad", base.clone(), higher.clone()),
        ];
        let report = analyse(&four, Thresholds::default()).unwrap();
        assert_eq!(
            (report.verdict, report.score),
            (CanaryVerdict::Marginal, 75.0)
        );
        four[3].critical = true;
        let report = analyse(&four, Thresholds::default()).unwrap();
        assert_eq!(report.verdict, CanaryVerdict::Fail);
        assert!(report.summary.contains("critical"));
    }

    #[test]
    fn bad_input_is_refused_with_the_reason() {
        let ok = vec![1.0, 2.0, 3.0];
        assert!(analyse(&[], Thresholds::default()).is_err());
        let few = analyse(&[metric("m", vec![1.0], ok.clone())], Thresholds::default());
        assert!(few.unwrap_err().contains("samples"));
        let nan = analyse(
            &[metric("m", vec![1.0, f64::NAN, 2.0], ok.clone())],
            Thresholds::default(),
        );
        assert!(nan.unwrap_err().contains("finite"));
        let t = Thresholds {
            marginal_score: 99.0,
            pass_score: 90.0,
            ..Thresholds::default()
        };
        assert!(analyse(&[metric("m", ok.clone(), ok)], t).is_err());
    }
}
