//! One training step of a method: mix, forward, loss (plus RegMixup's clean pass), backward,
//! SGD update.

use anyhow::Result;
use dfdx::prelude::*;

use crate::data::ImageShape;
use crate::mix::rule::soft_targets;
use crate::mix::{mix_batch, regmixup_total, target_loss, Method};
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

/// One SGD step of `method`: mix, forward, loss (plus RegMixup's clean pass), backward, update.
/// Returns the loss; a non-finite loss leaves the parameters untouched (batch-norm running
/// statistics have already seen the batch).
pub fn train_step<D: NetDevice, R: rand::Rng>(
    dev: &D,
    model: &mut Network<D>,
    sgd: &mut Sgd<D>,
    method: &Method,
    batch: &Batch,
    lr: f64,
    rng: &mut R,
) -> Result<f32> {
    let grads = model.params().alloc_grads();
    let loss = method_loss(dev, model, method, batch, rng, |x| x.traced(grads))?;
    let value = loss.as_vec()[0];
    if value.is_finite() {
        let grads = loss.backward();
        sgd.step(model.params_mut(), &grads, lr);
    }
    Ok(value)
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
    let loss = method_loss(dev, model, method, batch, rng, |x| x)?;
    Ok(loss.as_vec()[0])
}

/// Mixes `batch` and builds the method's loss on tape `T`: `trace` puts the tape on the mixed
/// inputs, and RegMixup's clean pass joins the same tape.
fn method_loss<D: NetDevice, R: rand::Rng, T: Tape<f32, D>>(
    dev: &D,
    model: &mut Network<D>,
    method: &Method,
    batch: &Batch,
    rng: &mut R,
    trace: impl FnOnce(Matrix<D>) -> Matrix<D, T>,
) -> Result<Tensor<Rank0, f32, D, T>> {
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
    let loss = target_loss(method, logits, targets)?;
    if !method.regularised {
        return Ok(loss);
    }
    // RegMixup: a second forward pass on the clean batch with hard labels.
    let clean: Matrix<D> = dev.tensor_from_vec(batch.x.to_vec(), (b, d));
    let identity: Vec<usize> = (0..b).collect();
    let one_hot = soft_targets(batch.labels, &identity, &vec![1.0; b], classes);
    let one_hot: Matrix<D> = dev.tensor_from_vec(one_hot, (b, classes));
    let clean_logits = model.forward(clean.retaped::<T>(), true);
    regmixup_total(clean_logits, one_hot, loss, method.gamma.unwrap_or(1.0))
}
