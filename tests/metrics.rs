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

/// Two samples: probabilities (0.5, 0.25, 0.25) with label 0 and (0.2, 0.8, 0) with label 1.
/// NLL = (−ln 0.5 − ln 0.8) / 2.
/// Brier = ((0.5² + 0.25² + 0.25²) + (0.2² + 0.2² + 0²)) / 2 = (0.375 + 0.08) / 2.
#[test]
fn nll_brier_accuracy_hand_case() {
    let probs = [0.5, 0.25, 0.25, 0.2, 0.8, 0.0];
    let labels = [0, 1];
    assert!((nll(&probs, &labels, 3) - (2f64.ln() - 0.8f64.ln()) / 2.0).abs() < 1e-12);
    assert!((brier(&probs, &labels, 3) - 0.2275).abs() < 1e-12);
    let (m, preds, _) = evaluate(&probs, &labels, 3);
    assert_eq!(m.accuracy, 1.0);
    assert_eq!(preds[1], pred(1, 1, 0.8));
    assert_eq!(m.per_class_accuracy, vec![1.0, 1.0, 0.0]);
}

#[test]
fn softmax_rows_sum_to_one() {
    let p = softmax_rows(&[0.0, 2f32.ln(), 0.0], 3);
    assert!((p[1] - 0.5).abs() < 1e-7 && (p[0] - 0.25).abs() < 1e-7);
}

/// Many > 100, medium 20–100, few < 20 training images; boundaries 100 and 20 are medium.
#[test]
fn shot_groups() {
    let acc = [1.0, 0.9, 0.8, 0.5, 0.3, 0.1];
    let counts = [500, 101, 100, 20, 19, 3];
    let s = shot_accuracies(&acc, &counts);
    assert!((s.many.unwrap() - 0.95).abs() < 1e-12);
    assert!((s.medium.unwrap() - 0.65).abs() < 1e-12);
    assert!((s.few.unwrap() - 0.2).abs() < 1e-12);
    assert_eq!(shot_accuracies(&[0.5, 0.5], &[50, 60]).many, None);
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
