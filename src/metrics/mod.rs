//! Test-set metrics, computed from logits in f64 (definitions in `docs/metrics.md`): accuracy,
//! calibration ([`calibration`]), NLL and Brier score, per-class and shot-group accuracy
//! ([`shots`]). [`catalog`] lists every metric a report can show.

pub mod calibration;
pub mod catalog;
pub mod ood;
pub mod paired;
pub mod shots;

use serde::{Deserialize, Serialize};

pub use calibration::{adaptive_ece, bin_index, ece, mce, reliability_bins, Bin, ECE_BINS};
pub use catalog::{Better, Metric, METRICS};
pub use ood::{detection, Detection, OodMetrics, OodScore};
pub use shots::{shot_accuracies, ShotAccuracy};

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
    /// Accuracy on each class's test images; `None` (null) for a class without test images.
    pub per_class_accuracy: Vec<Option<f64>>,
    /// Metrics on each corrupted copy of the test set (`evaluate:`); none for runs without.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub corrupted: Vec<CorruptedMetrics>,
    /// Detection of each out-of-distribution set under each score (`ood:`); none for runs
    /// without.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ood: Vec<OodMetrics>,
}

/// The test metrics of one corruption at one severity.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CorruptedMetrics {
    pub corruption: String,
    pub severity: u8,
    pub accuracy: f64,
    pub ece: f64,
    pub nll: f64,
}

impl TestMetrics {
    /// Mean of `f` over the corrupted test sets (`None` without any).
    pub fn mean_corrupted(&self, f: fn(&CorruptedMetrics) -> f64) -> Option<f64> {
        mean(self.corrupted.iter().map(f))
    }

    /// Mean of `f` over the corrupted sets of corruption `part` (its name) or of severity `part`
    /// (a number).
    pub fn part_corrupted(&self, part: &str, f: fn(&CorruptedMetrics) -> f64) -> Option<f64> {
        mean(
            self.corrupted
                .iter()
                .filter(|c| c.corruption == part || c.severity.to_string() == part)
                .map(f),
        )
    }

    /// `f` of the out-of-distribution set `part` under `score`.
    pub fn part_ood(&self, part: &str, score: OodScore, f: fn(&Detection) -> f64) -> Option<f64> {
        self.ood
            .iter()
            .find(|o| o.set == part && o.score == score)
            .map(|o| f(&o.detection))
    }

    /// Mean of `f` over the out-of-distribution sets under `score` (`None` without any).
    pub fn mean_ood(&self, score: OodScore, f: fn(&Detection) -> f64) -> Option<f64> {
        mean(
            self.ood
                .iter()
                .filter(|o| o.score == score)
                .map(|o| f(&o.detection)),
        )
    }
}

fn mean(values: impl Iterator<Item = f64>) -> Option<f64> {
    let (sum, n) = values.fold((0.0, 0usize), |(s, n), v| (s + v, n + 1));
    (n > 0).then(|| sum / n as f64)
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

/// Mean negative log-likelihood of the true class, from the logits through log-softmax in f64:
/// −log p_y = logsumexp(z) − z_y, exact even where p_y underflows (logits [1000, 0, −1000] with
/// label 2 give 2000, not a clamped 708).
pub fn nll(logits: &[f32], labels: &[usize], classes: usize) -> f64 {
    let sum: f64 = logits
        .chunks(classes)
        .zip(labels)
        .map(|(row, &y)| {
            let max = row.iter().fold(f64::NEG_INFINITY, |m, &z| m.max(z as f64));
            let lse = max
                + row
                    .iter()
                    .map(|&z| (z as f64 - max).exp())
                    .sum::<f64>()
                    .ln();
            lse - row[y] as f64
        })
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

/// All metrics from the logits (B × C). A row with a non-finite logit (NaN or ±∞: a network whose
/// outputs overflowed f32, i.e. diverged) carries no information: it is scored as uniform
/// probabilities, so every metric stays finite (and representable in `metrics.json`).
pub fn evaluate(
    logits: &[f32],
    labels: &[usize],
    classes: usize,
) -> (TestMetrics, Vec<Prediction>, Vec<Bin>) {
    let usable = |row: &[f32]| row.iter().all(|z| z.is_finite());
    let sanitized: Vec<f32>;
    let logits = if logits.chunks(classes).all(usable) {
        logits
    } else {
        sanitized = logits
            .chunks(classes)
            .flat_map(|row| {
                let keep = usable(row);
                row.iter().map(move |&z| if keep { z } else { 0.0 })
            })
            .collect();
        &sanitized
    };
    let probs = softmax_rows(logits, classes);
    let preds = predictions(&probs, labels, classes);
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
        nll: nll(logits, labels, classes),
        brier: brier(&probs, labels, classes),
        per_class_accuracy: per_class_correct
            .iter()
            .zip(&per_class_total)
            .map(|(&c, &t)| (t > 0).then(|| c as f64 / t as f64))
            .collect(),
        corrupted: Vec::new(),
        ood: Vec::new(),
    };
    (metrics, preds, bins)
}
