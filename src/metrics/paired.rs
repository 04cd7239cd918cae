//! Paired statistics of one claim, in one place: "method a beats method b on this metric". Runs
//! of the two methods with the same training seed and data seed start from the same
//! initialisation and see the same batches, so their per-seed difference removes most of the
//! seed-to-seed noise. From the differences: their mean with a 95 % Student-t interval, wins /
//! ties / losses, the exact two-sided sign test and the paired t-test. The verdict follows the
//! paired t-test at [`ALPHA`] (the sign test cannot reach 5 % with fewer than 6 seeds).

use std::collections::BTreeMap;

use statrs::distribution::{Binomial, ContinuousCDF, DiscreteCDF, StudentsT};

use super::catalog::Better;

/// Two-sided level of the tests and the intervals (95 % intervals).
pub const ALPHA: f64 = 0.05;

/// What the paired t-test concludes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// a is better (p < α, mean difference in a's favour).
    ABetter,
    /// b is better.
    BBetter,
    /// p ≥ α with this many pairs.
    NoDetectableDifference,
    /// Fewer than 2 pairs: no test.
    NotTested,
}

/// One claim on one split and metric, from its paired runs.
#[derive(Debug, Clone, PartialEq)]
pub struct PairedComparison {
    /// Pairs of runs (same seed and data seed in both methods).
    pub n: usize,
    /// Runs of either method without a partner in the other (left out).
    pub unpaired: usize,
    /// Mean difference, oriented so that a positive value favours a: a − b for metrics where
    /// higher is better, b − a where lower is better.
    pub mean: f64,
    /// 95 % Student-t interval of the mean difference (`None` with fewer than 2 pairs).
    pub interval: Option<(f64, f64)>,
    /// Pairs where a is better, equal, worse.
    pub wins: usize,
    pub ties: usize,
    pub losses: usize,
    /// Exact two-sided sign test over the untied pairs (1 when every pair ties).
    pub sign_p: f64,
    /// Two-sided paired t-test (`None` with fewer than 2 pairs).
    pub t_p: Option<f64>,
    pub verdict: Verdict,
}

/// Compares per-pair values of a and b (keyed by whatever pairs runs, e.g. (seed, data seed)).
pub fn compare<K: Ord>(
    a: &BTreeMap<K, f64>,
    b: &BTreeMap<K, f64>,
    better: Better,
) -> PairedComparison {
    let diffs: Vec<f64> = a
        .iter()
        .filter_map(|(k, &va)| {
            b.get(k).map(|&vb| match better {
                Better::Higher => va - vb,
                Better::Lower => vb - va,
            })
        })
        .collect();
    let n = diffs.len();
    let unpaired = a.len() + b.len() - 2 * n;
    let wins = diffs.iter().filter(|&&d| d > 0.0).count();
    let losses = diffs.iter().filter(|&&d| d < 0.0).count();
    let mean = if n == 0 {
        f64::NAN
    } else {
        diffs.iter().sum::<f64>() / n as f64
    };
    let (interval, t_p) = if n >= 2 {
        let sd = (diffs.iter().map(|d| (d - mean).powi(2)).sum::<f64>() / (n - 1) as f64).sqrt();
        let se = sd / (n as f64).sqrt();
        let t = StudentsT::new(0.0, 1.0, (n - 1) as f64).expect("n ≥ 2 degrees of freedom");
        let half = t.inverse_cdf(1.0 - ALPHA / 2.0) * se;
        (
            Some((mean - half, mean + half)),
            Some(t_test_p(&t, mean, se)),
        )
    } else {
        (None, None)
    };
    let verdict = match t_p {
        None => Verdict::NotTested,
        Some(p) if p < ALPHA && mean > 0.0 => Verdict::ABetter,
        Some(p) if p < ALPHA && mean < 0.0 => Verdict::BBetter,
        Some(_) => Verdict::NoDetectableDifference,
    };
    PairedComparison {
        n,
        unpaired,
        mean,
        interval,
        wins,
        ties: n - wins - losses,
        losses,
        sign_p: sign_test_p(wins, losses),
        t_p,
        verdict,
    }
}

/// Two-sided p-value of t = mean / se. With no spread at all (every pair differs by the same
/// amount) the test is degenerate: p = 1 for a zero difference, 0 otherwise.
fn t_test_p(t: &StudentsT, mean: f64, se: f64) -> f64 {
    if se == 0.0 {
        return if mean == 0.0 { 1.0 } else { 0.0 };
    }
    (2.0 * (1.0 - t.cdf((mean / se).abs()))).min(1.0)
}

/// Holm's step-down adjustment of the p-values of a family of tests: sorted ascending, the k-th
/// smallest (k from 0) becomes min(1, max over j ≤ k of (m − j)·p₍ⱼ₎), m the number of tests.
/// Rejecting where the adjusted p is below α keeps the chance of any false rejection in the
/// family at or below α, whatever the dependence between the tests. Returned in input order.
pub fn holm_adjusted(p: &[f64]) -> Vec<f64> {
    let m = p.len();
    let mut order: Vec<usize> = (0..m).collect();
    order.sort_by(|&i, &j| p[i].total_cmp(&p[j]));
    let mut adjusted = vec![0.0; m];
    let mut running = 0.0f64;
    for (k, &i) in order.iter().enumerate() {
        running = running.max(((m - k) as f64 * p[i]).min(1.0));
        adjusted[i] = running;
    }
    adjusted
}

/// Exact two-sided sign test: 2 · P(X ≤ min(wins, losses)) for X ~ Binomial(wins + losses, ½),
/// capped at 1; ties are left out, and 1 when every pair ties.
pub fn sign_test_p(wins: usize, losses: usize) -> f64 {
    let m = (wins + losses) as u64;
    if m == 0 {
        return 1.0;
    }
    let binomial = Binomial::new(0.5, m).expect("p = ½ is a probability");
    (2.0 * binomial.cdf(wins.min(losses) as u64)).min(1.0)
}

impl Verdict {
    /// The verdict in words, for tables and the terminal.
    pub fn describe(&self, a: &str, b: &str, n: usize) -> String {
        match self {
            Verdict::ABetter => format!("{a} better"),
            Verdict::BBetter => format!("{b} better"),
            Verdict::NoDetectableDifference => {
                format!("no detectable difference with {n} seeds")
            }
            Verdict::NotTested => format!("n = {n} < 2: not tested"),
        }
    }
}
