//! One training step of a method: mix, forward, loss (plus RegMixup's clean pass), backward,
//! SGD update.

use anyhow::Result;
use dfdx::prelude::*;

use crate::data::ImageShape;
use crate::mix::losses::{target_loss_and_stats, ScoreStats};
use crate::mix::rule::soft_targets;
use crate::mix::{mix_batch, regmixup_total, Method};
use crate::nn::{NetDevice, Network, Sgd};
use crate::util::Matrix;

/// One clean mini-batch, before mixing.
pub struct Batch<'a> {
    /// B × D images, row-major.
    pub x: &'a [f32],
    pub labels: &'a [usize],
    pub shape: ImageShape,
    pub classes: usize,
    /// Class counts of the training split (Remix).
    pub class_counts: &'a [usize],
}

/// What one training step saw: its loss and the diagnostics `history.csv` keeps per epoch.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct StepStats {
    pub loss: f32,
    /// L2 norm of the loss's gradient, before any clipping (0 when the loss was not finite and
    /// no step was taken).
    pub grad_norm: f64,
    /// Largest |logit| of the mixed batch.
    pub max_logit: f64,
    /// Largest |ICM score| (ICM methods; 0 otherwise).
    pub max_score: f64,
    /// Share of pairs whose mixed classifier another pair of the batch shares (ICM methods).
    pub duplicates: f64,
}

/// One SGD step of `method`: mix, forward, loss (plus RegMixup's clean pass), backward, update
/// (with the method's gradient clipping). A non-finite loss leaves the parameters untouched
/// (batch-norm running statistics have already seen the batch).
pub fn train_step<D: NetDevice, R: rand::Rng>(
    dev: &D,
    model: &mut Network<D>,
    sgd: &mut Sgd<D>,
    method: &Method,
    batch: &Batch,
    lr: f64,
    rng: &mut R,
) -> Result<StepStats> {
    let grads = model.params().alloc_grads();
    let (loss, mut stats) = method_loss(dev, model, method, batch, rng, |x| x.traced(grads))?;
    stats.loss = loss.as_vec()[0];
    if stats.loss.is_finite() {
        let grads = loss.backward();
        stats.grad_norm = D::sgd_step(sgd, model.params_mut(), grads, lr, method.clip_grad_norm);
    }
    Ok(stats)
}

/// The loss a training step of `method` minimises on `batch`, with the mixing drawn from `rng`
/// exactly as [`train_step`] draws it, without a tape: what finite differences of the step's
/// gradient differentiate. Batch norm uses batch statistics (and updates its running ones).
pub fn step_loss<D: NetDevice, R: rand::Rng>(
    dev: &D,
    model: &mut Network<D>,
    method: &Method,
    batch: &Batch,
    rng: &mut R,
) -> Result<f32> {
    let (loss, _) = method_loss(dev, model, method, batch, rng, |x| x)?;
    Ok(loss.as_vec()[0])
}

/// The loss of one training step of `method` and its gradient with respect to the flat
/// parameters, with the mixing drawn from `rng` as [`train_step`] draws it, without updating
/// anything (batch norm's running statistics do see the batch): what `icm device-check`
/// compares between devices.
pub fn step_gradient<D: NetDevice, R: rand::Rng>(
    dev: &D,
    model: &mut Network<D>,
    method: &Method,
    batch: &Batch,
    rng: &mut R,
) -> Result<(f32, Vec<f32>)> {
    let grads = model.params().alloc_grads();
    let (loss, _) = method_loss(dev, model, method, batch, rng, |x| x.traced(grads))?;
    let value = loss.as_vec()[0];
    let grads = loss.backward();
    Ok((value, grads.get(&model.params().all).as_vec()))
}

/// Mixes `batch` and builds the method's loss on tape `T`: `trace` puts the tape on the mixed
/// inputs, and RegMixup's clean pass joins the same tape. Also returns the batch's logit and
/// ICM-score diagnostics.
fn method_loss<D: NetDevice, R: rand::Rng, T: Tape<f32, D>>(
    dev: &D,
    model: &mut Network<D>,
    method: &Method,
    batch: &Batch,
    rng: &mut R,
    trace: impl FnOnce(Matrix<D>) -> Matrix<D, T>,
) -> Result<(Tensor<Rank0, f32, D, T>, StepStats)> {
    let (b, d, classes) = (batch.labels.len(), batch.shape.numel(), batch.classes);
    let mixed = mix_batch(
        method,
        batch.x,
        batch.labels,
        batch.shape,
        classes,
        batch.class_counts,
        rng,
    );
    let inputs: Matrix<D> = dev.tensor_from_vec(mixed.inputs, (b, d));
    let targets: Matrix<D> = dev.tensor_from_vec(mixed.targets, (b, classes));
    let logits = model.forward(trace(inputs), true);
    let z = logits.as_vec();
    let (loss, scores) = target_loss_and_stats(method, logits, targets)?;
    let stats = diagnostics(method, &z, scores);
    if !method.regularised {
        return Ok((loss, stats));
    }
    // RegMixup: a second forward pass on the clean batch with hard labels.
    let clean: Matrix<D> = dev.tensor_from_vec(batch.x.to_vec(), (b, d));
    let identity: Vec<usize> = (0..b).collect();
    let one_hot = soft_targets(batch.labels, &identity, &vec![1.0; b], classes);
    let one_hot: Matrix<D> = dev.tensor_from_vec(one_hot, (b, classes));
    let clean_logits = model.forward(clean.retaped::<T>(), true);
    let total = regmixup_total(clean_logits, one_hot, loss, method.gamma.unwrap_or(1.0))?;
    Ok((total, stats))
}

/// The largest |logit|, and for ICM methods what the loss saw of its scores: the largest
/// |score| (over the temperature) and the share of duplicated mixed classifiers.
fn diagnostics(method: &Method, z: &[f32], scores: Option<ScoreStats>) -> StepStats {
    let max_logit = z.iter().fold(0.0f64, |m, &v| m.max((v as f64).abs()));
    let Some(scores) = scores else {
        return StepStats {
            max_logit,
            ..Default::default()
        };
    };
    let temperature = method.temperature.unwrap_or(1.0);
    StepStats {
        max_logit,
        // Dividing by a positive temperature keeps the order (rounding included): one division.
        max_score: scores.max_abs / temperature,
        duplicates: scores.duplicates,
        ..Default::default()
    }
}
