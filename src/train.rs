//! Trains and evaluates one run on the CPU or a CUDA device: seeded mini-batches, the method's
//! mixing and loss, SGD with the configured schedule, and per-epoch test accuracy.

use std::path::Path;
use std::time::Instant;

use anyhow::{bail, Result};
use dfdx::prelude::*;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use crate::augment::{augment_image, Augment};
use crate::checkpoint::{fault_point, Checkpoint};
use crate::config::RunConfig;
use crate::convnet::ConvDevice;
use crate::data::Dataset;
use crate::device::DeviceKind;
use crate::losses::{regmixup_total, target_loss, Matrix};
use crate::method::Method;
use crate::metrics::{self, Bin, Prediction, TestMetrics};
use crate::mixing::{mix_batch, soft_targets, ImageShape};
use crate::model::Network;
use crate::optim::Sgd;

/// One line of `history.csv`.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct EpochRecord {
    pub epoch: usize,
    pub lr: f64,
    pub train_loss: f64,
    pub test_accuracy: f64,
    /// Accuracy on the validation hold-out, when the experiment has one.
    #[serde(default)]
    pub val_accuracy: Option<f64>,
}

/// What a finished run produced.
#[derive(Debug, Clone)]
pub struct RunOutcome {
    pub history: Vec<EpochRecord>,
    pub metrics: TestMetrics,
    pub predictions: Vec<Prediction>,
    pub bins: Vec<Bin>,
    pub train_class_counts: Vec<usize>,
    pub train_seconds: f64,
    pub device: DeviceKind,
}

/// Independent random streams of a run, all derived from its seed.
fn stream(seed: u64, id: u64) -> ChaCha8Rng {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(id);
    rng
}

/// Batches of a shuffled order; a trailing batch of one sample joins the previous batch (the ICM
/// loss needs at least two samples, and no sample is dropped).
pub fn batches(order: &[usize], batch_size: usize) -> Vec<&[usize]> {
    let mut out: Vec<&[usize]> = order.chunks(batch_size).collect();
    if out.len() >= 2 && out.last().map(|b| b.len()) == Some(1) {
        let n = order.len();
        out.pop();
        let last = out.pop().expect("two batches");
        out.push(&order[n - last.len() - 1..]);
    }
    out
}

/// Logits of a whole dataset, computed in batches without a tape.
pub fn predict_logits<D: ConvDevice>(dev: &D, model: &mut Network<D>, data: &Dataset) -> Vec<f32> {
    let d = data.shape.numel();
    let mut out = Vec::with_capacity(data.len() * data.classes);
    for rows in data.images.chunks(512 * d) {
        let x: Matrix<D> = dev.tensor_from_vec(rows.to_vec(), (rows.len() / d, d));
        out.extend(model.forward(x, false).as_vec());
    }
    out
}

fn accuracy(logits: &[f32], labels: &[usize], classes: usize) -> f64 {
    let probs = metrics::softmax_rows(logits, classes);
    let preds = metrics::predictions(&probs, labels, classes);
    preds.iter().filter(|p| p.label == p.predicted).count() as f64 / labels.len().max(1) as f64
}

/// The data pipeline: copies the images at `idx` out of the dataset (only this batch) and
/// augments each one. Returns the B × D inputs and their labels.
pub fn assemble_batch<R: rand::Rng>(
    data: &Dataset,
    idx: &[usize],
    augment: Option<&Augment>,
    rng: &mut R,
) -> (Vec<f32>, Vec<usize>) {
    let d = data.shape.numel();
    let mut x = Vec::with_capacity(idx.len() * d);
    for &i in idx {
        x.extend_from_slice(data.image(i));
    }
    if let Some(aug) = augment {
        for image in x.chunks_mut(d) {
            augment_image(image, data.shape, aug, &data.background, rng);
        }
    }
    (x, idx.iter().map(|&i| data.labels[i]).collect())
}

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
pub fn train_step<D: ConvDevice, R: rand::Rng>(
    dev: &D,
    model: &mut Network<D>,
    sgd: &mut Sgd<D>,
    method: &Method,
    batch: &Batch,
    lr: f64,
    rng: &mut R,
) -> Result<f32> {
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
    let grads = model.params().alloc_grads();
    let inputs: Matrix<D> = dev.tensor_from_vec(mixed.inputs, (b, d));
    let targets: Matrix<D> = dev.tensor_from_vec(mixed.targets, (b, classes));
    let logits = model.forward(inputs.traced(grads), true);
    let mut loss = target_loss(method, logits, targets)?;
    if method.regularised {
        // RegMixup: a second forward pass on the clean batch with hard labels.
        let clean: Matrix<D> = dev.tensor_from_vec(batch.x.to_vec(), (b, d));
        let identity: Vec<usize> = (0..b).collect();
        let one_hot = soft_targets(batch.labels, &identity, &vec![1.0; b], classes);
        let one_hot: Matrix<D> = dev.tensor_from_vec(one_hot, (b, classes));
        let clean_logits = model.forward(clean.retaped::<OwnedTape<f32, D>>(), true);
        loss = regmixup_total(clean_logits, one_hot, loss, method.gamma.unwrap_or(1.0))?;
    }
    let value = loss.as_vec()[0];
    if value.is_finite() {
        let grads = loss.backward();
        sgd.step(model.params_mut(), &grads, lr);
    }
    Ok(value)
}

/// Time between checkpoints when no epoch interval is set.
const CHECKPOINT_INTERVAL: std::time::Duration = std::time::Duration::from_secs(60);

/// Where and how often a run saves checkpoints, and what it does after every epoch.
pub struct Checkpointing<'a> {
    pub path: &'a Path,
    /// Save every this many epochs; `None`: whenever a minute has passed since the last save.
    /// Always after the last epoch.
    pub every: Option<usize>,
    /// Called after every epoch (the runner's lock heartbeat).
    pub after_epoch: &'a (dyn Fn() -> Result<()> + Sync),
}

/// Trains `config` on `train` (already the split's subset, less any validation hold-out `val`,
/// which is scored every epoch) and evaluates on `test`, resuming
/// from `checkpointing`'s file when it holds a checkpoint of this run.
pub fn train_run(
    config: &RunConfig,
    device: DeviceKind,
    train: &Dataset,
    val: Option<&Dataset>,
    test: &Dataset,
    checkpointing: Option<&Checkpointing>,
) -> Result<RunOutcome> {
    match device {
        DeviceKind::Cpu => train_on(
            Cpu::seed_from_u64(config.seed),
            device,
            config,
            train,
            val,
            test,
            checkpointing,
        ),
        #[cfg(feature = "cuda")]
        DeviceKind::Cuda => train_on(
            crate::device::cuda(config.seed)?,
            device,
            config,
            train,
            val,
            test,
            checkpointing,
        ),
        #[cfg(not(feature = "cuda"))]
        DeviceKind::Cuda => crate::device::check(device).map(|_| unreachable!()),
    }
}

/// [`train_run`] on the device `dev` (of kind `kind`).
fn train_on<D: ConvDevice>(
    dev: D,
    kind: DeviceKind,
    config: &RunConfig,
    train: &Dataset,
    val: Option<&Dataset>,
    test: &Dataset,
    checkpointing: Option<&Checkpointing>,
) -> Result<RunOutcome> {
    let start = Instant::now();
    let run_id = config.run_id();
    let method = &config.method;
    let spec = &config.train;
    let classes = train.classes;
    let counts = train.class_counts();
    let mut init_rng = stream(config.seed, 0);
    let mut order_rng = stream(config.seed, 1);
    let mut mix_rng = stream(config.seed, 2);
    let mut augment_rng = stream(config.seed, 3);

    let mut model = Network::new(&config.model, train.shape, classes, &dev, &mut init_rng);
    let mut sgd = Sgd::new(model.params(), spec.momentum, spec.weight_decay);
    let mut history = Vec::with_capacity(spec.epochs);
    let mut order: Vec<usize> = (0..train.len()).collect();
    let mut first_epoch = 0;
    let mut earlier_seconds = 0.0;
    if let Some(ck) = checkpointing {
        if let Some(saved) = Checkpoint::load(ck.path, &run_id)? {
            saved.check(
                model.num_parameters(),
                model.bn_stats().len(),
                order.len(),
                spec.epochs,
                ck.path,
            )?;
            let layers_match = saved
                .bn_stats
                .iter()
                .zip(model.bn_stats())
                .all(|(a, b)| a.mean.len() == b.mean.len() && a.var.len() == b.var.len());
            if !layers_match {
                bail!(
                    "{} holds batch-norm statistics of another network; delete it to restart the run",
                    ck.path.display()
                );
            }
            let n = saved.params.len();
            model.params_mut().all = dev.tensor_from_vec(saved.params, (n,));
            model.bn_stats_mut().clone_from_slice(&saved.bn_stats);
            sgd.velocity = dev.tensor_from_vec(saved.velocity, (n,));
            order = saved.order;
            order_rng = saved.order_rng;
            mix_rng = saved.mix_rng;
            augment_rng = saved.augment_rng;
            history = saved.history;
            first_epoch = saved.epoch;
            earlier_seconds = saved.seconds;
        }
    }

    let mut last_save = Instant::now();
    // The last epoch's test logits are the final predictions: evaluated once, not twice.
    let mut test_logits = None;
    for epoch in first_epoch..spec.epochs {
        let lr = spec.lr_at(epoch);
        order.shuffle(&mut order_rng);
        let (mut loss_sum, mut seen) = (0.0f64, 0usize);
        for (step, idx) in batches(&order, spec.batch_size).into_iter().enumerate() {
            let b = idx.len();
            let (x, labels) = assemble_batch(train, idx, spec.augment.as_ref(), &mut augment_rng);
            let batch = Batch {
                x: &x,
                labels: &labels,
                shape: train.shape,
                classes,
                class_counts: &counts,
            };
            let value = train_step(&dev, &mut model, &mut sgd, method, &batch, lr, &mut mix_rng)?;
            if !value.is_finite() {
                bail!(
                    "loss became {value} at epoch {} batch {} (lr {lr}); lower `train.lr` or \
                     check the method's parameters",
                    epoch + 1,
                    step + 1
                );
            }
            loss_sum += value as f64 * b as f64;
            seen += b;
        }
        let logits = predict_logits(&dev, &mut model, test);
        let test_accuracy = accuracy(&logits, &test.labels, classes);
        test_logits = Some(logits);
        history.push(EpochRecord {
            epoch: epoch + 1,
            lr,
            train_loss: loss_sum / seen.max(1) as f64,
            test_accuracy,
            val_accuracy: val.filter(|v| !v.is_empty()).map(|v| {
                let logits = predict_logits(&dev, &mut model, v);
                accuracy(&logits, &v.labels, classes)
            }),
        });
        if let Some(ck) = checkpointing {
            let done = epoch + 1;
            let due = match ck.every {
                Some(n) => done % n.max(1) == 0,
                None => last_save.elapsed() >= CHECKPOINT_INTERVAL,
            };
            if due || done == spec.epochs {
                last_save = Instant::now();
                Checkpoint {
                    run_id: run_id.clone(),
                    epoch: done,
                    params: model.params().all.as_vec(),
                    bn_stats: model.bn_stats().to_vec(),
                    velocity: sgd.velocity.as_vec(),
                    order: order.clone(),
                    order_rng: order_rng.clone(),
                    mix_rng: mix_rng.clone(),
                    augment_rng: augment_rng.clone(),
                    history: history.clone(),
                    seconds: earlier_seconds + start.elapsed().as_secs_f64(),
                }
                .save(ck.path)?;
                fault_point(&format!("after-checkpoint-{done}"));
            }
            (ck.after_epoch)()?;
        }
    }

    // A run resumed from its final checkpoint trained no epoch here: evaluate now.
    let logits = test_logits.unwrap_or_else(|| predict_logits(&dev, &mut model, test));
    let probs = metrics::softmax_rows(&logits, classes);
    let (metrics, predictions, bins) = metrics::evaluate(&probs, &test.labels, classes);
    Ok(RunOutcome {
        history,
        metrics,
        predictions,
        bins,
        train_class_counts: counts,
        train_seconds: earlier_seconds + start.elapsed().as_secs_f64(),
        device: kind,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trailing_single_sample_joins_previous_batch() {
        let order: Vec<usize> = (0..9).collect();
        let b = batches(&order, 4);
        assert_eq!(b, vec![&order[0..4], &order[4..9]]);
        let b = batches(&order, 3);
        assert_eq!(b.len(), 3);
        assert_eq!(batches(&order[..1], 4), vec![&order[0..1]]);
    }
}
