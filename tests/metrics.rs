//! ECE and the other metrics on hand cases, including confidences exactly 0 and 1.0.

use icm::metrics::*;

fn pred(label: usize, predicted: usize, confidence: f64) -> Prediction {
    Prediction {
        label,
        predicted,
        confidence,
    }
}

#[test]
fn bins_are_lower_open_upper_closed_with_both_ends_included() {
    assert_eq!(bin_index(0.0, 15), 0);
    assert_eq!(bin_index(1.0, 15), 14);
    assert_eq!(bin_index(1.0 / 15.0, 15), 0); // upper edge belongs to its bin
    assert_eq!(bin_index(1.0 / 15.0 + 1e-12, 15), 1);
    assert_eq!(bin_index(0.5, 15), 7); // (7/15, 8/15]
}

/// Four predictions: conf 1.0 right, conf 1.0 wrong (last bin: acc ½, conf 1 → gap ½),
/// conf 0 wrong (first bin: gap 0), conf 0.5 right (bin 7: gap ½).
/// ECE = 2/4 · ½ + 1/4 · 0 + 1/4 · ½ = 0.375; MCE = 0.5.
#[test]
fn ece_hand_case() {
    let preds = [
        pred(0, 0, 1.0),
        pred(1, 0, 1.0),
        pred(2, 1, 0.0),
        pred(1, 1, 0.5),
    ];
    let bins = reliability_bins(&preds, ECE_BINS);
    assert_eq!(bins.len(), 15);
    assert_eq!(bins[14].count, 2);
    assert_eq!(bins[14].accuracy, 0.5);
    assert_eq!(bins[14].confidence, 1.0);
    assert_eq!(bins[0].count, 1);
    assert_eq!(bins[7].count, 1);
    assert_eq!(bins.iter().map(|b| b.count).sum::<usize>(), 4);
    assert!((ece(&bins) - 0.375).abs() < 1e-12);
    assert!((mce(&bins) - 0.5).abs() < 1e-12);
}

/// Two samples: logits giving probabilities (0.5, 0.25, 0.25) with label 0 and (0.2, 0.8, 0)
/// with label 1. NLL = (−ln 0.5 − ln 0.8) / 2.
/// Brier = ((0.5² + 0.25² + 0.25²) + (0.2² + 0.2² + 0²)) / 2 = (0.375 + 0.08) / 2.
#[test]
fn nll_brier_accuracy_hand_case() {
    let logits = [2f32.ln(), 0.0, 0.0, 0.2f32.ln(), 0.8f32.ln(), -1.0e30];
    let labels = [0, 1];
    let expected_nll = (2f64.ln() - 0.8f64.ln()) / 2.0;
    assert!((nll(&logits, &labels, 3) - expected_nll).abs() < 1e-7);
    let probs = [0.5, 0.25, 0.25, 0.2, 0.8, 0.0];
    assert!((brier(&probs, &labels, 3) - 0.2275).abs() < 1e-12);
    let (m, preds, _) = evaluate(&logits, &labels, 3);
    assert_eq!(m.accuracy, 1.0);
    assert!((m.brier - 0.2275).abs() < 1e-7);
    assert!((preds[1].confidence - 0.8).abs() < 1e-7);
    assert_eq!(m.per_class_accuracy, vec![Some(1.0), Some(1.0), None]);
}

/// A diverged network's overflowed logits (NaN, ±∞) say nothing: such a row is scored as uniform
/// probabilities, so NLL stays finite (ln 3 here) even where the label's logit is −∞, and the
/// record stays valid JSON.
#[test]
fn overflowed_logits_score_as_uniform() {
    let logits = [0.0, f32::NEG_INFINITY, 0.0, f32::NAN, 1.0, 0.0];
    let (m, preds, _) = evaluate(&logits, &[1, 0], 3);
    assert!((m.nll - 3f64.ln()).abs() < 1e-12, "{}", m.nll);
    assert!((preds[0].confidence - 1.0 / 3.0).abs() < 1e-12);
    let json = serde_json::to_string(&m).unwrap();
    assert!(json.contains("\"nll\":1.0986"), "{json}");
}

/// NLL comes from log-softmax, not from clamped probabilities: logits [1000, 0, −1000] with label
/// 2 give exactly 2000 (a clamped probability gave at most 708.4).
#[test]
fn nll_of_an_extreme_logit_is_exact() {
    assert_eq!(nll(&[1000.0, 0.0, -1000.0], &[2], 3), 2000.0);
    let (m, _, _) = evaluate(&[1000.0, 0.0, -1000.0], &[2], 3);
    assert_eq!(m.nll, 2000.0);
}

/// Adaptive ECE does not depend on the order of tied confidences: 30 predictions at 0.5, half of
/// them correct, share one bin (accuracy 0.5 = confidence 0.5), in any order.
#[test]
fn adaptive_ece_keeps_tied_confidences_together() {
    let correct_first: Vec<Prediction> = (0..30)
        .map(|i| pred(0, usize::from(i >= 15), 0.5))
        .collect();
    let alternating: Vec<Prediction> = (0..30).map(|i| pred(0, i % 2, 0.5)).collect();
    let wrong_first: Vec<Prediction> = correct_first.iter().rev().copied().collect();
    for preds in [&correct_first, &alternating, &wrong_first] {
        assert_eq!(adaptive_ece(preds, 15), 0.0);
    }
    // Without ties nothing moves: 15 bins of 2 with confidences 0.5..0.79, all correct.
    let spread: Vec<Prediction> = (0..30).map(|i| pred(0, 0, 0.5 + 0.01 * i as f64)).collect();
    let expected: f64 = (0..30).map(|i| 0.5 - 0.01 * i as f64).sum::<f64>() / 30.0;
    assert!((adaptive_ece(&spread, 15) - expected).abs() < 1e-12);
}

/// Merged bins weigh by their size: two tied predictions at 0.6 (one right) share a bin of
/// accuracy 0.5, the wrong one at 0.9 has its own: 2/3 · 0.1 + 1/3 · 0.9 = 11/30.
#[test]
fn adaptive_ece_weighs_each_bin_by_its_share() {
    let preds = [pred(0, 0, 0.6), pred(0, 1, 0.6), pred(0, 1, 0.9)];
    assert!((adaptive_ece(&preds, 15) - 11.0 / 30.0).abs() < 1e-12);
}

/// The boundaries fall after ⌊k·n/bins⌋ samples: 20 predictions at 0.50, 0.52, ..., 0.88, the
/// even ones right, in 15 bins of sizes 1, 1, 2, 1, 1, 2, ... give 0.36 (boundaries rounded up
/// would give 0.34).
#[test]
fn adaptive_ece_cuts_at_the_floor_of_k_n_over_bins() {
    let preds: Vec<Prediction> = (0..20)
        .map(|i| pred(0, i % 2, 0.5 + 0.02 * i as f64))
        .collect();
    assert!((adaptive_ece(&preds, 15) - 0.36).abs() < 1e-12);
}

/// Tied top probabilities predict the lowest class (as NumPy's argmax): uniform logits over 3
/// classes predict class 0.
#[test]
fn tied_top_probabilities_predict_the_lowest_class() {
    let (m, preds, _) = evaluate(&[0.0, 0.0, 0.0], &[0], 3);
    assert_eq!(preds[0].predicted, 0);
    assert_eq!(m.accuracy, 1.0);
}

/// A class without test images has no accuracy and is left out of its shot group.
#[test]
fn classes_without_test_images_are_not_counted_as_zero() {
    let per_class = [Some(0.9), None, Some(0.5)];
    let shots = shot_accuracies(&per_class, &[150, 10, 5]);
    assert_eq!(shots.many, Some(0.9));
    assert_eq!(
        shots.few,
        Some(0.5),
        "the class without test images is not a 0"
    );
}

#[test]
fn softmax_rows_sum_to_one() {
    let p = softmax_rows(&[0.0, 2f32.ln(), 0.0], 3);
    assert!((p[1] - 0.5).abs() < 1e-7 && (p[0] - 0.25).abs() < 1e-7);
}

/// Many > 100, medium 20–100, few < 20 training images; boundaries 100 and 20 are medium.
#[test]
fn shot_groups() {
    let acc = [1.0, 0.9, 0.8, 0.5, 0.3, 0.1].map(Some);
    let counts = [500, 101, 100, 20, 19, 3];
    let s = shot_accuracies(&acc, &counts);
    assert!((s.many.unwrap() - 0.95).abs() < 1e-12);
    assert!((s.medium.unwrap() - 0.65).abs() < 1e-12);
    assert!((s.few.unwrap() - 0.2).abs() < 1e-12);
    assert_eq!(
        shot_accuracies(&[Some(0.5), Some(0.5)], &[50, 60]).many,
        None
    );
}

/// A confidence one ulp above an edge belongs to the next bin, exactly at the edge to the lower.
#[test]
fn bin_edges_are_exact() {
    for k in 1..15 {
        let edge = k as f64 / 15.0;
        assert_eq!(bin_index(edge, 15), k - 1, "edge {k}/15");
        assert_eq!(
            bin_index(f64::from_bits(edge.to_bits() + 1), 15),
            k,
            "above {k}/15"
        );
    }
}
