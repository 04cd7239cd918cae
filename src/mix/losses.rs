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
/// A target row has at most two nonzero weights, so the products S = Z·Tᵀ and G = ∂L/∂S · T
/// visit only those (B² · 2 instead of B² · C multiply-adds; the skipped terms are exact
/// zeros). The lines of both axes (rows of S and of Sᵀ) are one parallel pass; every sum keeps
/// one fixed order, so the results do not depend on the thread count.
pub fn icm_value_and_grad(
    z: &[f32],
    t: &[f32],
    b: usize,
    c: usize,
    loss: &IcmLoss,
) -> (f32, Vec<f32>) {
    if z.iter().any(|v| !v.is_finite()) {
        // A non-finite logit meets a zero target weight somewhere (∞ · 0 and NaN · 0 are NaN in
        // the dense product), so every score, the loss and the whole gradient are NaN: say so
        // rather than skip the zero terms into a finite answer.
        return (f32::NAN, vec![f32::NAN; b * c]);
    }
    let tau = loss.temperature as f32;
    let nonzero: Vec<Vec<(usize, f32)>> = t
        .chunks(c)
        .map(|row| {
            let weights = row.iter().enumerate().filter(|(_, &w)| w != 0.0);
            weights.map(|(k, &w)| (k, w)).collect()
        })
        .collect();
    // lines[0]: the rows of S; lines[1]: the rows of Sᵀ (S's columns, contiguous).
    let mut lines = vec![0.0f32; 2 * b * b];
    for (i, zi) in z.chunks(c).enumerate() {
        for (j, tj) in nonzero.iter().enumerate() {
            let dot = tj.iter().fold(0.0f32, |sum, &(k, w)| sum + zi[k] * w);
            lines[i * b + j] = dot / tau;
        }
    }
    if loss.mask_duplicates {
        for (s, m) in lines.iter_mut().zip(duplicate_mask(t, b, c)) {
            *s += m;
        }
    }
    let (rows, columns) = lines.split_at_mut(b * b);
    for (i, row) in rows.chunks(b).enumerate() {
        for (j, &s) in row.iter().enumerate() {
            columns[j * b + i] = s;
        }
    }
    let used = match loss.axes {
        IcmAxes::Pair => 0..b,
        IcmAxes::Class => b..2 * b,
        IcmAxes::Dual => 0..2 * b,
    };
    // Each line becomes its gradient ((softmax − I) / B) in place; its loss term is returned.
    let terms: Vec<f64> = lines
        .par_chunks_mut(b)
        .enumerate()
        .filter(|(line, _)| used.contains(line))
        .map(|(line, s)| {
            let diagonal = s[line % b];
            let max = s.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            s.iter_mut().for_each(|v| *v = (*v - max).exp());
            let total: f64 = s.iter().map(|&e| e as f64).sum();
            for (j, v) in s.iter_mut().enumerate() {
                let soft = (*v as f64 / total) as f32;
                *v = (soft - if j == line % b { 1.0 } else { 0.0 }) / b as f32;
            }
            (max as f64 + total.ln() - diagonal as f64) / b as f64
        })
        .collect();
    let value: f64 = terms.iter().sum();
    // ∂L/∂S: the rows' part, then the columns' part added (each zero where its axis is unused).
    let mut ds = vec![0.0f32; b * b];
    for (axis, part) in lines.chunks(b * b).enumerate() {
        if !used.contains(&(axis * b)) {
            continue;
        }
        for (i, line) in part.chunks(b).enumerate() {
            for (j, &d) in line.iter().enumerate() {
                let at = if axis == 0 { i * b + j } else { j * b + i };
                ds[at] += d;
            }
        }
    }
    let mut grad = vec![0.0f32; b * c];
    for (g, dsi) in grad.chunks_mut(c).zip(ds.chunks(b)) {
        for (&d, tj) in dsi.iter().zip(&nonzero) {
            for &(k, w) in tj {
                g[k] += d * w / tau;
            }
        }
    }
    (value as f32, grad)
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
    let row = |i: usize| &targets[i * c..(i + 1) * c];
    let duplicated = (0..b)
        .filter(|&i| (0..b).any(|k| k != i && row(k) == row(i)))
        .count();
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
