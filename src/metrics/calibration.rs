//! Calibration error, in one place: [`reliability_bins`] assigns top-label confidences to 15
//! equal-width bins `(lo, hi]`, with confidence 0 in the first bin and 1.0 in the last; ECE, MCE
//! and the reliability diagrams all use those bins. Adaptive ECE uses equal-mass bins instead.

use serde::{Deserialize, Serialize};

use super::Prediction;

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

/// Adaptive ECE: `bins` equal-mass bins over the samples sorted by confidence, each weighted by
/// its share of the samples; the k-th boundary falls after ⌊k·n/bins⌋ samples (20 samples in 15
/// bins: bins of 1, 1, 2, 1, 1, 2, ...). Samples with the same confidence cannot be told apart,
/// so they always share a bin: each equal-mass boundary moves up to the end of the run of equal
/// confidences it would split. The result therefore
/// does not depend on the order of the samples.
pub fn adaptive_ece(preds: &[Prediction], bins: usize) -> f64 {
    let n = preds.len();
    if n == 0 {
        return 0.0;
    }
    let mut sorted: Vec<&Prediction> = preds.iter().collect();
    sorted.sort_by(|a, b| a.confidence.total_cmp(&b.confidence));
    let mut cuts = vec![0];
    for k in 1..bins {
        let mut cut = (k * n / bins).max(*cuts.last().expect("starts at 0"));
        while cut > 0 && cut < n && sorted[cut].confidence == sorted[cut - 1].confidence {
            cut += 1;
        }
        cuts.push(cut);
    }
    cuts.push(n);
    let mut total = 0.0;
    for w in cuts.windows(2) {
        let chunk = &sorted[w[0]..w[1]];
        if chunk.is_empty() {
            continue;
        }
        let conf: f64 = chunk.iter().map(|p| p.confidence).sum::<f64>() / chunk.len() as f64;
        let acc =
            chunk.iter().filter(|p| p.predicted == p.label).count() as f64 / chunk.len() as f64;
        total += chunk.len() as f64 / n as f64 * (acc - conf).abs();
    }
    total
}
