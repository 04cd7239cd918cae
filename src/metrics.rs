//! Test-set metrics (DESIGN §4), computed from logits in f64. The calibration error lives here:
//! [`reliability_bins`] assigns confidences to 15 equal-width bins `(lo, hi]`, with confidence 0
//! in the first bin and 1.0 in the last; ECE, MCE and the diagrams all use those bins.

use serde::{Deserialize, Serialize};

/// Number of confidence bins used for ECE and the reliability diagrams.
pub const ECE_BINS: usize = 15;

/// One reliability bin.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Bin {
    pub lower: f64,
    pub upper: f64,
    pub count: usize,
    /// Mean top-label confidence of the bin's samples (0 when empty).
    pub confidence: f64,
    /// Fraction of the bin's samples predicted correctly (0 when empty).
    pub accuracy: f64,
}

/// Per-sample outcome of a prediction.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Prediction {
    pub label: usize,
    pub predicted: usize,
    /// Probability of the predicted class.
    pub confidence: f64,
}

/// Everything a run reports about the test set.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TestMetrics {
    pub accuracy: f64,
    pub ece: f64,
    pub adaptive_ece: f64,
    pub mce: f64,
    pub nll: f64,
    pub brier: f64,
    pub per_class_accuracy: Vec<f64>,
}

/// Row-wise softmax of B × C logits, in f64.
pub fn softmax_rows(logits: &[f32], classes: usize) -> Vec<f64> {
    let mut out = Vec::with_capacity(logits.len());
    for row in logits.chunks(classes) {
        let max = row.iter().fold(f64::NEG_INFINITY, |m, &z| m.max(z as f64));
        let exps: Vec<f64> = row.iter().map(|&z| (z as f64 - max).exp()).collect();
        let sum: f64 = exps.iter().sum();
        out.extend(exps.iter().map(|e| e / sum));
    }
    out
}

/// Top-label predictions from row-wise probabilities (ties go to the lowest class index).
pub fn predictions(probs: &[f64], labels: &[usize], classes: usize) -> Vec<Prediction> {
    probs
        .chunks(classes)
        .zip(labels)
        .map(|(row, &label)| {
            let (predicted, &confidence) = row.iter().enumerate().fold(
                (0, &row[0]),
                |best, cur| if cur.1 > best.1 { cur } else { best },
            );
            Prediction {
                label,
                predicted,
                confidence,
            }
        })
        .collect()
}

/// Bin index of a confidence: bins are `(k/n, (k+1)/n]`, 0 goes to the first, 1.0 to the last.
/// The estimate from `ceil(c·n) − 1` is corrected against the same edges `k/n` that the bins
/// report, so a confidence one ulp above an edge never lands below it.
pub fn bin_index(confidence: f64, bins: usize) -> usize {
    let n = bins as f64;
    let mut k = ((confidence * n).ceil() as isize - 1).clamp(0, bins as isize - 1) as usize;
    while k + 1 < bins && confidence > (k + 1) as f64 / n {
        k += 1;
    }
    while k > 0 && confidence <= k as f64 / n {
        k -= 1;
    }
    k
}

/// Equal-width reliability bins over top-label confidence.
pub fn reliability_bins(preds: &[Prediction], bins: usize) -> Vec<Bin> {
    let mut count = vec![0usize; bins];
    let mut conf = vec![0.0f64; bins];
    let mut correct = vec![0usize; bins];
    for p in preds {
        let k = bin_index(p.confidence, bins);
        count[k] += 1;
        conf[k] += p.confidence;
        correct[k] += (p.predicted == p.label) as usize;
    }
    (0..bins)
        .map(|k| {
            let n = count[k];
            Bin {
                lower: k as f64 / bins as f64,
                upper: (k + 1) as f64 / bins as f64,
                count: n,
                confidence: if n > 0 { conf[k] / n as f64 } else { 0.0 },
                accuracy: if n > 0 {
                    correct[k] as f64 / n as f64
                } else {
                    0.0
                },
            }
        })
        .collect()
}

/// Expected calibration error: Σ_b (n_b / N) · |acc_b − conf_b|.
pub fn ece(bins: &[Bin]) -> f64 {
    let total: usize = bins.iter().map(|b| b.count).sum();
    if total == 0 {
        return 0.0;
    }
    bins.iter()
        .map(|b| b.count as f64 / total as f64 * (b.accuracy - b.confidence).abs())
        .sum()
}

/// Maximum calibration error over non-empty bins.
pub fn mce(bins: &[Bin]) -> f64 {
    bins.iter()
        .filter(|b| b.count > 0)
        .map(|b| (b.accuracy - b.confidence).abs())
        .fold(0.0, f64::max)
}

/// Adaptive ECE: `bins` equal-mass bins over the samples sorted by confidence.
pub fn adaptive_ece(preds: &[Prediction], bins: usize) -> f64 {
    let n = preds.len();
    if n == 0 {
        return 0.0;
    }
    let mut sorted: Vec<&Prediction> = preds.iter().collect();
    sorted.sort_by(|a, b| a.confidence.total_cmp(&b.confidence));
    let mut total = 0.0;
    for k in 0..bins {
        let (lo, hi) = (k * n / bins, (k + 1) * n / bins);
        if hi == lo {
            continue;
        }
        let chunk = &sorted[lo..hi];
        let conf: f64 = chunk.iter().map(|p| p.confidence).sum::<f64>() / chunk.len() as f64;
        let acc =
            chunk.iter().filter(|p| p.predicted == p.label).count() as f64 / chunk.len() as f64;
        total += chunk.len() as f64 / n as f64 * (acc - conf).abs();
    }
    total
}

/// Mean negative log-likelihood of the true class.
pub fn nll(probs: &[f64], labels: &[usize], classes: usize) -> f64 {
    let sum: f64 = probs
        .chunks(classes)
        .zip(labels)
        .map(|(row, &y)| -row[y].max(f64::MIN_POSITIVE).ln())
        .sum();
    sum / labels.len().max(1) as f64
}

/// Brier score: Σ_c (p_c − 1[c = y])², averaged over samples.
pub fn brier(probs: &[f64], labels: &[usize], classes: usize) -> f64 {
    let sum: f64 = probs
        .chunks(classes)
        .zip(labels)
        .map(|(row, &y)| {
            row.iter()
                .enumerate()
                .map(|(c, &p)| {
                    let t = if c == y { 1.0 } else { 0.0 };
                    (p - t) * (p - t)
                })
                .sum::<f64>()
        })
        .sum();
    sum / labels.len().max(1) as f64
}

/// All metrics from probabilities.
pub fn evaluate(
    probs: &[f64],
    labels: &[usize],
    classes: usize,
) -> (TestMetrics, Vec<Prediction>, Vec<Bin>) {
    let preds = predictions(probs, labels, classes);
    let bins = reliability_bins(&preds, ECE_BINS);
    let correct = preds.iter().filter(|p| p.predicted == p.label).count();
    let mut per_class_total = vec![0usize; classes];
    let mut per_class_correct = vec![0usize; classes];
    for p in &preds {
        per_class_total[p.label] += 1;
        per_class_correct[p.label] += (p.predicted == p.label) as usize;
    }
    let metrics = TestMetrics {
        accuracy: correct as f64 / preds.len().max(1) as f64,
        ece: ece(&bins),
        adaptive_ece: adaptive_ece(&preds, ECE_BINS),
        mce: mce(&bins),
        nll: nll(probs, labels, classes),
        brier: brier(probs, labels, classes),
        per_class_accuracy: per_class_correct
            .iter()
            .zip(&per_class_total)
            .map(|(&c, &t)| if t > 0 { c as f64 / t as f64 } else { 0.0 })
            .collect(),
    };
    (metrics, preds, bins)
}

/// Accuracy of the many-shot (> 100 training images), medium-shot (20–100) and few-shot (< 20)
/// classes of a long-tailed split: the mean per-class test accuracy of each group (`None` for
/// an empty group).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ShotAccuracy {
    pub many: Option<f64>,
    pub medium: Option<f64>,
    pub few: Option<f64>,
}

pub fn shot_accuracies(per_class_accuracy: &[f64], train_counts: &[usize]) -> ShotAccuracy {
    let group = |keep: &dyn Fn(usize) -> bool| -> Option<f64> {
        let accs: Vec<f64> = per_class_accuracy
            .iter()
            .zip(train_counts)
            .filter(|(_, &n)| keep(n))
            .map(|(&a, _)| a)
            .collect();
        (!accs.is_empty()).then(|| accs.iter().sum::<f64>() / accs.len() as f64)
    };
    ShotAccuracy {
        many: group(&|n| n > 100),
        medium: group(&|n| (20..=100).contains(&n)),
        few: group(&|n| n < 20),
    }
}
