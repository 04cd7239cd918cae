//! The paired statistics of claims, against hand-computed values.

use std::collections::BTreeMap;

use icm::metrics::catalog::Better;
use icm::metrics::paired::{compare, holm_adjusted, sign_test_p, Verdict};

fn values(pairs: &[(u64, f64)]) -> BTreeMap<u64, f64> {
    pairs.iter().copied().collect()
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-9
}

#[test]
fn differences_1_2_3_give_mean_2_and_the_student_t_interval() {
    let a = values(&[(0, 11.0), (1, 12.0), (2, 13.0)]);
    let b = values(&[(0, 10.0), (1, 10.0), (2, 10.0)]);
    let c = compare(&a, &b, Better::Higher);
    assert_eq!((c.n, c.unpaired, c.wins, c.ties, c.losses), (3, 0, 3, 0, 0));
    assert!(close(c.mean, 2.0));
    // sd = 1, se = 1/√3, t(0.975, 2) = 4.302652729749464: 2 ± 2.4841377...
    let half = 4.302652729749464 / 3f64.sqrt();
    let (lo, hi) = c.interval.unwrap();
    assert!(close(lo, 2.0 - half) && close(hi, 2.0 + half), "{lo} {hi}");
    assert!((half - 2.484).abs() < 1e-3);
    // t = 2 / (1/√3) = 3.4641; two-sided p with 2 degrees of freedom = 0.0741799...
    assert!((c.t_p.unwrap() - 0.074180).abs() < 1e-6, "{:?}", c.t_p);
    assert_eq!(c.verdict, Verdict::NoDetectableDifference);
    // 3 wins of 3: 2 · 0.5³ = 0.25.
    assert!(close(c.sign_p, 0.25));
}

#[test]
fn sign_test_exact_values() {
    assert!(close(sign_test_p(5, 0), 0.0625));
    assert!(close(sign_test_p(0, 5), 0.0625));
    // 2 · P(X ≤ 1), X ~ Bin(6, ½) = 2 · 7/64.
    assert!(close(sign_test_p(5, 1), 14.0 / 64.0));
    assert!(close(sign_test_p(3, 3), 1.0), "capped at 1");
    assert!(close(sign_test_p(0, 0), 1.0), "every pair tied");
}

#[test]
fn lower_is_better_flips_the_sign_and_ties_are_counted() {
    // ECE of a is lower (better) on seeds 0 and 1, equal on seed 2.
    let a = values(&[(0, 0.02), (1, 0.03), (2, 0.05)]);
    let b = values(&[(0, 0.04), (1, 0.05), (2, 0.05)]);
    let c = compare(&a, &b, Better::Lower);
    assert_eq!((c.wins, c.ties, c.losses), (2, 1, 0));
    assert!(c.mean > 0.0, "positive favours a");
    assert!(close(c.sign_p, 0.5), "2 wins of 2 untied: 2 · 0.25");
}

#[test]
fn unpaired_runs_are_left_out_and_counted() {
    // Seed 3 only in a, seed 4 only in b.
    let a = values(&[(0, 1.0), (1, 2.0), (3, 9.0)]);
    let b = values(&[(0, 0.0), (1, 0.0), (4, 9.0)]);
    let c = compare(&a, &b, Better::Higher);
    assert_eq!((c.n, c.unpaired), (2, 2));
    assert!(close(c.mean, 1.5));
}

#[test]
fn one_pair_is_not_tested() {
    let c = compare(&values(&[(0, 1.0)]), &values(&[(0, 0.0)]), Better::Higher);
    assert_eq!((c.n, c.interval, c.t_p), (1, None, None));
    assert_eq!(c.verdict, Verdict::NotTested);
    assert_eq!(c.verdict.describe("a", "b", c.n), "n = 1 < 2: not tested");
}

#[test]
fn clear_differences_give_a_verdict_each_way() {
    let a = values(&[(0, 0.90), (1, 0.91), (2, 0.92), (3, 0.90), (4, 0.93)]);
    let b = values(&[(0, 0.80), (1, 0.82), (2, 0.81), (3, 0.80), (4, 0.82)]);
    assert_eq!(compare(&a, &b, Better::Higher).verdict, Verdict::ABetter);
    assert_eq!(compare(&b, &a, Better::Higher).verdict, Verdict::BBetter);
    assert_eq!(
        compare(&a, &a, Better::Higher).verdict,
        Verdict::NoDetectableDifference
    );
    assert_eq!(
        compare(&a, &b, Better::Higher)
            .verdict
            .describe("icm-mixup", "mixup", 5),
        "icm-mixup better"
    );
}

/// Holm's step-down method by hand: p = (0.01, 0.04, 0.03, 0.5) sorted are 0.01, 0.03, 0.04, 0.5;
/// times 4, 3, 2, 1: 0.04, 0.09, 0.08, 0.5; made non-decreasing: 0.04, 0.09, 0.09, 0.5; back in
/// input order. A product above 1 is capped at 1, and a lone test keeps its p.
#[test]
fn holm_adjusts_in_step_down_order() {
    let adjusted = holm_adjusted(&[0.01, 0.04, 0.03, 0.5]);
    let want = [0.04, 0.09, 0.09, 0.5];
    assert!(
        adjusted.iter().zip(want).all(|(&a, w)| close(a, w)),
        "{adjusted:?}"
    );
    assert_eq!(holm_adjusted(&[0.4, 0.6]), vec![0.8, 0.8]);
    assert_eq!(holm_adjusted(&[0.7, 0.9]), vec![1.0, 1.0]);
    assert_eq!(holm_adjusted(&[0.03]), vec![0.03]);
    assert!(holm_adjusted(&[]).is_empty());
}
