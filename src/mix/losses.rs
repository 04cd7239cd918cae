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
/// code). Needs B ≥ 2.
pub fn icm_loss<D: Device<f32>, T: Tape<f32, D>>(
    logits: Matrix<D, T>,
    targets: Matrix<D>,
    axes: IcmAxes,
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
    let dev = logits.device().clone();
    let mut eye = vec![0.0f32; b * b];
    for i in 0..b {
        eye[i * b + i] = 1.0;
    }
    let eye: Matrix<D> = dev.tensor_from_vec(eye, (b, b));
    let scores = logits.matmul(targets.permute::<_, Axes2<1, 0>>());
    let row_loss = |s: Matrix<D, T>| {
        (s.log_softmax::<Axis<1>>() * eye.clone())
            .sum::<Rank0, _>()
            .negate()
            / b as f32
    };
    let col_loss = |s: Matrix<D, T>| {
        (s.log_softmax::<Axis<0>>() * eye.clone())
            .sum::<Rank0, _>()
            .negate()
            / b as f32
    };
    Ok(match axes {
        IcmAxes::Pair => row_loss(scores),
        IcmAxes::Class => col_loss(scores),
        IcmAxes::Dual => {
            // Both branches read S; the empty-tape copy's gradient reaches S through its id.
            let rows = row_loss(scores.with_empty_tape());
            rows + col_loss(scores)
        }
    })
}

/// The loss a method puts on its mixed batch: soft-target CE or ICM with the method's axes.
pub fn target_loss<D: Device<f32>, T: Tape<f32, D>>(
    method: &Method,
    logits: Matrix<D, T>,
    targets: Matrix<D>,
) -> Result<Tensor<Rank0, f32, D, T>> {
    match method.target {
        Target::Label => soft_target_cross_entropy(logits, targets),
        Target::Icm => icm_loss(logits, targets, method.axes.unwrap_or_default()),
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
