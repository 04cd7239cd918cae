//! Out-of-distribution detection: a score per image from its logits (higher = more
//! in-distribution) and how well the scores separate in-distribution images (positives) from
//! out-of-distribution ones. Tied scores are one threshold: no metric depends on the order of
//! tied images. Definitions in `docs/metrics.md`.

use serde::{Deserialize, Serialize};

/// How an image's logits become its in-distribution score.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OodScore {
    /// Maximum softmax probability (Hendrycks & Gimpel, 2017).
    Msp,
    /// Largest logit.
    MaxLogit,
    /// Negative energy, logsumexp of the logits (Liu et al., 2020).
    Energy,
}

impl OodScore {
    pub const ALL: [OodScore; 3] = [OodScore::Msp, OodScore::MaxLogit, OodScore::Energy];

    pub fn name(self) -> &'static str {
        match self {
            OodScore::Msp => "msp",
            OodScore::MaxLogit => "max_logit",
            OodScore::Energy => "energy",
        }
    }

    /// The score of every row of B × C logits, in f64. A row with a NaN logit scores −∞ (it is
    /// the least in-distribution image there is). A row whose largest logit is ±∞ has that
    /// infinity as its max logit and energy, and the MSP of uniform probabilities, 1/C (an MSP
    /// is a probability, never ∞).
    pub fn scores(self, logits: &[f32], classes: usize) -> Vec<f64> {
        logits
            .chunks(classes)
            .map(|row| {
                if row.iter().any(|z| z.is_nan()) {
                    return f64::NEG_INFINITY;
                }
                let max = row.iter().fold(f64::NEG_INFINITY, |m, &z| m.max(z as f64));
                if !max.is_finite() {
                    return match self {
                        OodScore::Msp => 1.0 / classes as f64,
                        OodScore::MaxLogit | OodScore::Energy => max,
                    };
                }
                let sum: f64 = row.iter().map(|&z| (z as f64 - max).exp()).sum();
                match self {
                    OodScore::Msp => 1.0 / sum,
                    OodScore::MaxLogit => max,
                    OodScore::Energy => max + sum.ln(),
                }
            })
            .collect()
    }
}

/// How well scores separate in- from out-of-distribution images.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Detection {
    /// P(score_in > score_out) + ½ P(score_in = score_out).
    pub auroc: f64,
    /// Average precision with the in-distribution images as positives.
    pub aupr_in: f64,
    /// Average precision with the out-of-distribution images as positives (scores negated).
    pub aupr_out: f64,
    /// Share of out-of-distribution images accepted at the highest threshold that accepts at
    /// least 95 % of the in-distribution images.
    pub fpr95: f64,
}

/// All detection metrics of scores `inside` (positives) against `outside`; `None` when either
/// set is empty.
pub fn detection(inside: &[f64], outside: &[f64]) -> Option<Detection> {
    if inside.is_empty() || outside.is_empty() {
        return None;
    }
    let negated = |v: &[f64]| v.iter().map(|s| -s).collect::<Vec<f64>>();
    Some(Detection {
        auroc: auroc(inside, outside),
        aupr_in: average_precision(inside, outside),
        aupr_out: average_precision(&negated(outside), &negated(inside)),
        fpr95: fpr_at_tpr(inside, outside, 0.95),
    })
}

fn sorted(v: &[f64]) -> Vec<f64> {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    s
}

/// AUROC by counting: for each positive, the negatives below it plus half those tied with it.
pub fn auroc(positives: &[f64], negatives: &[f64]) -> f64 {
    let neg = sorted(negatives);
    let mut wins = 0.0;
    for &s in positives {
        let below = neg.partition_point(|&n| n < s);
        let tied = neg.partition_point(|&n| n <= s) - below;
        wins += below as f64 + 0.5 * tied as f64;
    }
    wins / (positives.len() as f64 * negatives.len() as f64)
}

/// Average precision: Σ over distinct thresholds t (descending) of (recall(t) − recall(previous))
/// × precision(t), where everything scoring ≥ t is called positive (scikit-learn's definition).
pub fn average_precision(positives: &[f64], negatives: &[f64]) -> f64 {
    let (pos, neg) = (sorted(positives), sorted(negatives));
    let mut thresholds: Vec<f64> = pos.iter().chain(&neg).copied().collect();
    thresholds.sort_by(|a, b| b.total_cmp(a));
    thresholds.dedup();
    let at_least = |v: &[f64], t: f64| v.len() - v.partition_point(|&x| x < t);
    let (mut ap, mut last_recall) = (0.0, 0.0);
    for t in thresholds {
        let (tp, fp) = (at_least(&pos, t), at_least(&neg, t));
        let recall = tp as f64 / pos.len() as f64;
        ap += (recall - last_recall) * tp as f64 / (tp + fp) as f64;
        last_recall = recall;
    }
    ap
}

/// False-positive rate at the highest threshold (a score of either set; ≥ counts as positive)
/// whose true-positive rate reaches `tpr`.
pub fn fpr_at_tpr(positives: &[f64], negatives: &[f64], tpr: f64) -> f64 {
    let (pos, neg) = (sorted(positives), sorted(negatives));
    let at_least = |v: &[f64], t: f64| v.len() - v.partition_point(|&x| x < t);
    let mut thresholds: Vec<f64> = pos.clone();
    thresholds.sort_by(|a, b| b.total_cmp(a));
    thresholds.dedup();
    let needed = tpr * pos.len() as f64;
    let t = thresholds
        .into_iter()
        .find(|&t| at_least(&pos, t) as f64 >= needed - 1e-9)
        .unwrap_or(f64::NEG_INFINITY);
    at_least(&neg, t) as f64 / neg.len() as f64
}

/// One out-of-distribution set's detection metrics under one score, as a run stores them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OodMetrics {
    /// The set's name (`ood:` in the experiment file).
    pub set: String,
    pub score: OodScore,
    #[serde(flatten)]
    pub detection: Detection,
}
