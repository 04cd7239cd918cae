//! The training losses on dfdx tensors, generic over device and tape so they drop into any dfdx
//! training loop: soft-target cross-entropy and the Infinite Class Mixup loss, in one place
//! (definitions in `docs/methods.md`).
//!
//! ```
//! use dfdx::prelude::*;
//! use icm::mix::losses::icm_loss;
//! use icm::mix::method::IcmAxes;
//!
//! let dev = Cpu::default();
//! // Logits of 2 mixed samples over 3 classes, and their mixed targets (rows sum to 1).
//! let logits: Tensor<(usize, usize), f32, _> =
//!     dev.tensor_from_vec(vec![1.0, 0.0, -1.0, 0.5, 0.5, 0.0], (2, 3));
//! let targets = dev.tensor_from_vec(vec![0.7, 0.3, 0.0, 0.0, 0.2, 0.8], (2, 3));
//! let loss = icm_loss(logits.leaky_trace(), targets, IcmAxes::Dual).unwrap();
//! let grads = loss.backward();
//! assert_eq!(grads.get(&logits).as_vec().len(), 6);
//! ```

use anyhow::{ensure, Result};
use dfdx::prelude::*;
use rayon::prelude::*;

use super::method::{IcmAxes, Method, Target};
use crate::util::tensor::transpose_add;
use crate::util::Matrix;

/// −(1/B) Σ_i Σ_c t_ic · log softmax(z_i)_c.
pub fn soft_target_cross_entropy<D: Device<f32>, T: Tape<f32, D>>(
    logits: Matrix<D, T>,
    targets: Matrix<D>,
) -> Result<Tensor<Rank0, f32, D, T>> {
    ensure!(
        logits.shape() == targets.shape(),
        "logits are {:?} but targets are {:?}",
        logits.shape(),
        targets.shape()
    );
    let b = logits.shape().0 as f32;
    let log_probs = logits.log_softmax::<Axis<1>>();
    Ok((log_probs * targets).sum::<Rank0, _>().negate() / b)
}

/// Infinite Class Mixup loss. With scores S = Z·Tᵀ (S_ij = w̃_jᵀh_i + b̃_j, pair j's own mixed
/// classifier applied to sample i):
/// - pair axis: (1/B) Σ_i −log softmax_j(S_i·)_i (each sample picks its own classifier);
/// - class axis: (1/B) Σ_j −log softmax_i(S_·j)_j (each classifier picks its own sample);
/// - dual: their sum.
///
/// No temperature, no normalisation, duplicate class pairs count as negatives (as the official
/// code). Needs B ≥ 2. [`icm_loss_with`] adds the optional stabilisers.
pub fn icm_loss<D: Device<f32>, T: Tape<f32, D>>(
    logits: Matrix<D, T>,
    targets: Matrix<D>,
    axes: IcmAxes,
) -> Result<Tensor<Rank0, f32, D, T>> {
    icm_loss_with(logits, targets, &IcmLoss::faithful(axes))
}

/// The ICM loss's settings: its axes and the stabilisers (off in the paper's form).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct IcmLoss {
    pub axes: IcmAxes,
    /// Pairs whose mixed classifiers are identical (identical target rows) are not negatives of
    /// each other, on either axis: their scores leave the softmax.
    pub mask_duplicates: bool,
    /// Scores are divided by τ before the softmax (1: the paper's form).
    pub temperature: f64,
}

impl IcmLoss {
    /// The paper's loss: no masking, no temperature.
    pub fn faithful(axes: IcmAxes) -> Self {
        IcmLoss {
            axes,
            mask_duplicates: false,
            temperature: 1.0,
        }
    }
}

/// A score far below any real one: masked entries get it, so their softmax weight is exactly 0
/// while every product stays finite (−∞ · 0 would be NaN where the loss picks the diagonal).
const MASKED: f32 = -1.0e30;

/// The ICM loss with its stabilisers ([`IcmLoss`]); with both off it is exactly [`icm_loss`].
pub fn icm_loss_with<D: Device<f32>, T: Tape<f32, D>>(
    logits: Matrix<D, T>,
    targets: Matrix<D>,
    loss: &IcmLoss,
) -> Result<Tensor<Rank0, f32, D, T>> {
    let (b, c) = *logits.shape();
    ensure!(
        targets.shape() == &(b, c),
        "logits are {:?} but targets are {:?}",
        logits.shape(),
        targets.shape()
    );
    ensure!(
        b >= 2,
        "the ICM loss contrasts each mixed pair with the others in its batch, so it needs a batch of \
         at least 2 samples (got {b}); raise batch_size"
    );
    let z = logits.as_vec();
    let (value, grad) = icm_value_and_grad(&z, &targets.as_vec(), b, c, loss);
    // The loss enters the tape as Σ (Z ⊙ G − their values) + the loss's value: every difference
    // is exactly 0, so this is exactly the loss's value, with exactly G as the logits' gradient
    // (dfdx's CPU ops spent a tenth of an MLP step on the B × B score matrix; this is one pass
    // over it, on any device). Element by element, because a sum of the products could
    // overflow for the huge logits of a collapsing run where each product does not.
    let products: Vec<f32> = z.iter().zip(&grad).map(|(z, g)| z * g).collect();
    let dev = logits.device().clone();
    let grad: Matrix<D> = dev.tensor_from_vec(grad, (b, c));
    let products: Matrix<D> = dev.tensor_from_vec(products, (b, c));
    Ok(((logits * grad) - products).sum::<Rank0, _>() + value)
}

/// The ICM loss of logits `z` (B × C) against mixed targets `t` (B × C), and its gradient with
/// respect to `z`, both row-major. Scores S = Z·Tᵀ / τ (+ [`MASKED`] for masked duplicates);
/// each axis is (1/B) Σ (logsumexp − the diagonal score), its gradient (softmax − I) / B along
/// that axis; ∂S/∂Z = T / τ. Scores are f32 as on the tape; sums of exponentials and the
/// loss run in f64.
///
/// The products S = Z·Tᵀ and G = ∂L/∂S · T run along the pairs (C vectorised passes over each
/// row of B scores, B-long dot products in eight lanes), both axes' lines (the rows of S and of
/// Sᵀ) are one parallel pass with a vectorised exp, and every sum keeps one fixed order: the
/// results do not depend on the thread count.
pub fn icm_value_and_grad(
    z: &[f32],
    t: &[f32],
    b: usize,
    c: usize,
    loss: &IcmLoss,
) -> (f32, Vec<f32>) {
    if z.iter().any(|v| !v.is_finite()) {
        // ∞ · 0 and NaN · 0 are NaN: a non-finite logit makes scores, the loss and the whole
        // gradient NaN, whichever target weights it meets. Said at once, whatever the path.
        return (f32::NAN, vec![f32::NAN; b * c]);
    }
    let tau = loss.temperature as f32;
    // Tᵀ (C × B): row k holds every pair's weight of class k.
    let mut t_cols = vec![0.0f32; c * b];
    for (j, row) in t.chunks(c).enumerate() {
        for (k, &w) in row.iter().enumerate() {
            t_cols[k * b + j] = w;
        }
    }
    // S (B × B), row i = Σ_k z_ik · (row k of Tᵀ): C vectorised passes over the row, the terms
    // added in class order as in the dot products z_i · t_j.
    let mut scores = vec![0.0f32; b * b];
    scores
        .par_chunks_mut(b)
        .zip(z.par_chunks(c))
        .for_each(|(row, zi)| {
            for (&zk, tk) in zi.iter().zip(t_cols.chunks(b)) {
                for (s, &w) in row.iter_mut().zip(tk) {
                    *s += zk * w;
                }
            }
            if tau != 1.0 {
                row.iter_mut().for_each(|s| *s /= tau);
            }
        });
    if loss.mask_duplicates {
        for (s, m) in scores.iter_mut().zip(duplicate_mask(t, b, c)) {
            *s += m;
        }
    }
    let used = match loss.axes {
        IcmAxes::Pair => 0..b,
        IcmAxes::Class => b..2 * b,
        IcmAxes::Dual => 0..2 * b,
    };
    // Lines 0..B are the rows of S, lines B..2B its columns (copied in tiles, each contiguous).
    // Each line becomes its gradient ((softmax − I) / B) in place; its loss term is returned.
    let mut lines = vec![0.0f32; 2 * b * b];
    let (rows, columns) = lines.split_at_mut(b * b);
    rows.copy_from_slice(&scores);
    transpose_add(&scores, columns, b, b);
    let inv_b = 1.0 / b as f32;
    let terms: Vec<f64> = lines
        .par_chunks_mut(b)
        .enumerate()
        .filter(|(line, _)| used.contains(line))
        .map(|(line, s)| {
            let fixed = line % b;
            let diagonal = s[fixed];
            let max = max_in_lanes(s);
            exp_shifted(s, max);
            let total = sum_in_f64(s);
            let inv_total = 1.0 / total;
            for (j, v) in s.iter_mut().enumerate() {
                let soft = (*v as f64 * inv_total) as f32;
                *v = (soft - if j == fixed { 1.0 } else { 0.0 }) * inv_b;
            }
            (max as f64 + total.ln() - diagonal as f64) / b as f64
        })
        .collect();
    let value: f64 = terms.iter().sum();
    // ∂L/∂S: the rows' part, plus the columns' part transposed.
    let (rows, columns) = lines.split_at(b * b);
    let mut ds = if used.contains(&0) {
        rows.to_vec()
    } else {
        vec![0.0f32; b * b]
    };
    if used.contains(&b) {
        transpose_add(columns, &mut ds, b, b);
    }
    // ∂L/∂z_ik = (ds_i · row k of Tᵀ) / τ.
    let mut grad = vec![0.0f32; b * c];
    grad.par_chunks_mut(c)
        .zip(ds.par_chunks(b))
        .for_each(|(g, dsi)| {
            for (g, tk) in g.iter_mut().zip(t_cols.chunks(b)) {
                let dot = dot_in_lanes(dsi, tk);
                *g = if tau == 1.0 { dot } else { dot / tau };
            }
        });
    (value as f32, grad)
}

/// v ← e^(v − shift) for every value, eight at a time with `wide`'s vectorised exp (relative
/// error at most 8.2e-8, below one f32 epsilon, over [−87, 0]; e^(−∞) = 0, NaN stays NaN). The last part-block is
/// padded, so every value goes through the same function: the results do not depend on where a
/// value sits in the line.
fn exp_shifted(values: &mut [f32], shift: f32) {
    use wide::f32x8;
    let shift = f32x8::splat(shift);
    let mut blocks = values.chunks_exact_mut(8);
    for block in blocks.by_ref() {
        let v = f32x8::from(<[f32; 8]>::try_from(&*block).expect("8 values"));
        block.copy_from_slice(&(v - shift).exp().to_array());
    }
    let tail = blocks.into_remainder();
    if !tail.is_empty() {
        let mut padded = [0.0f32; 8];
        padded[..tail.len()].copy_from_slice(tail);
        let out = (f32x8::from(padded) - shift).exp().to_array();
        tail.copy_from_slice(&out[..tail.len()]);
    }
}

/// The largest value (NaNs ignored, as `f32::max`), in eight interleaved running maxima: one
/// running maximum waits on every comparison.
fn max_in_lanes(values: &[f32]) -> f32 {
    let mut lanes = [f32::NEG_INFINITY; 8];
    let mut blocks = values.chunks_exact(8);
    for block in blocks.by_ref() {
        for (lane, &v) in lanes.iter_mut().zip(block) {
            *lane = lane.max(v);
        }
    }
    let tail = blocks.remainder().iter().copied();
    lanes
        .into_iter()
        .chain(tail)
        .fold(f32::NEG_INFINITY, f32::max)
}

/// a · b in eight interleaved f32 partial sums, added in a fixed order.
fn dot_in_lanes(a: &[f32], b: &[f32]) -> f32 {
    let mut lanes = [0.0f32; 8];
    let (mut xa, mut xb) = (a.chunks_exact(8), b.chunks_exact(8));
    for (x, y) in xa.by_ref().zip(xb.by_ref()) {
        for ((lane, &x), &y) in lanes.iter_mut().zip(x).zip(y) {
            *lane += x * y;
        }
    }
    let tail: f32 = xa
        .remainder()
        .iter()
        .zip(xb.remainder())
        .map(|(x, y)| x * y)
        .sum();
    lanes.iter().sum::<f32>() + tail
}

/// Σ values in f64, in four interleaved partial sums (one running sum waits on every addition),
/// added in a fixed order.
fn sum_in_f64(values: &[f32]) -> f64 {
    let mut lanes = [0.0f64; 4];
    let mut blocks = values.chunks_exact(4);
    for block in blocks.by_ref() {
        for (lane, &v) in lanes.iter_mut().zip(block) {
            *lane += v as f64;
        }
    }
    let tail: f64 = blocks.remainder().iter().map(|&v| v as f64).sum();
    (lanes[0] + lanes[1]) + (lanes[2] + lanes[3]) + tail
}

/// B × B additive mask: [`MASKED`] at (i, k), k ≠ i, where pairs i and k have identical target
/// rows (the same mixed classifier), 0 elsewhere. Symmetric, so it serves both axes.
pub fn duplicate_mask(targets: &[f32], b: usize, c: usize) -> Vec<f32> {
    let row = |i: usize| &targets[i * c..(i + 1) * c];
    let mut mask = vec![0.0f32; b * b];
    for i in 0..b {
        for k in 0..b {
            if i != k && row(i) == row(k) {
                mask[i * b + k] = MASKED;
            }
        }
    }
    mask
}

/// The share of a batch's pairs whose mixed classifier (target row) another pair of the batch
/// shares: the duplicates the paper's loss treats as negatives.
pub fn duplicate_fraction(targets: &[f32], b: usize, c: usize) -> f64 {
    // Rows keyed by their values' bits (−0 taken as +0, so the key is float equality for
    // the finite values targets hold): one pass instead of comparing every pair.
    let key = |i: usize| -> Vec<u32> {
        let row = &targets[i * c..(i + 1) * c];
        row.iter().map(|&v| (v + 0.0).to_bits()).collect()
    };
    let mut counts: std::collections::HashMap<Vec<u32>, usize> = Default::default();
    for i in 0..b {
        *counts.entry(key(i)).or_default() += 1;
    }
    let duplicated = (0..b).filter(|&i| counts[&key(i)] > 1).count();
    duplicated as f64 / b.max(1) as f64
}

/// The loss a method puts on its mixed batch: soft-target CE, or ICM with the method's axes and
/// stabilisers.
pub fn target_loss<D: Device<f32>, T: Tape<f32, D>>(
    method: &Method,
    logits: Matrix<D, T>,
    targets: Matrix<D>,
) -> Result<Tensor<Rank0, f32, D, T>> {
    match method.target {
        Target::Label => soft_target_cross_entropy(logits, targets),
        Target::Icm => icm_loss_with(logits, targets, &method.icm_loss()),
    }
}

/// The loss `method` has on a batch of `batch` samples over `classes` classes when every logit
/// (and so every ICM score) is equal: the level a collapsed run sits at. Soft-target CE gives
/// ln C whatever the targets; each ICM axis ln B (the masked loss at most that); RegMixup adds
/// its clean term's ln C.
pub fn uniform_score_loss(method: &Method, classes: usize, batch: usize) -> f64 {
    let label = (classes.max(1) as f64).ln();
    let mixed = match method.target {
        Target::Label => label,
        Target::Icm => {
            let axes = match method.axes.unwrap_or_default() {
                IcmAxes::Dual => 2.0,
                IcmAxes::Pair | IcmAxes::Class => 1.0,
            };
            axes * (batch.max(1) as f64).ln()
        }
    };
    if method.regularised {
        label + method.gamma.unwrap_or(1.0) * mixed
    } else {
        mixed
    }
}

/// RegMixup's total: CE(clean logits, one-hot labels) + γ · (loss on the mixed batch).
pub fn regmixup_total<D: Device<f32>, T: Tape<f32, D>>(
    clean_logits: Matrix<D, T>,
    one_hot: Matrix<D>,
    mixed_loss: Tensor<Rank0, f32, D, T>,
    gamma: f64,
) -> Result<Tensor<Rank0, f32, D, T>> {
    Ok(soft_target_cross_entropy(clean_logits, one_hot)? + mixed_loss * gamma as f32)
}

#[cfg(test)]
mod tests {
    use super::exp_shifted;

    /// `wide`'s exp against f64's over the range the loss uses (every argument is ≤ 0 after
    /// the shift, down to where f32 underflows), the padded tail included.
    #[test]
    fn vectorised_exp_is_within_one_epsilon_and_keeps_the_special_values() {
        let xs: Vec<f32> = (0..=20_001).map(|i| -87.0 * i as f32 / 20_001.0).collect();
        let mut ys = xs.clone();
        exp_shifted(&mut ys, 0.0);
        let mut worst = 0.0f64;
        for (&x, &y) in xs.iter().zip(&ys) {
            let exact = (x as f64).exp();
            worst = worst.max((y as f64 - exact).abs() / exact);
        }
        assert!(worst <= f32::EPSILON as f64, "relative error {worst}");
        let mut special = [f32::NEG_INFINITY, f32::NAN, 0.0, -200.0, 1.0];
        exp_shifted(&mut special, 1.0);
        assert_eq!(special[0], 0.0);
        assert!(special[1].is_nan());
        assert!((special[2] - (-1.0f32).exp()).abs() <= 1e-7);
        assert_eq!(special[3], 0.0);
        assert_eq!(special[4], 1.0);
    }
}
