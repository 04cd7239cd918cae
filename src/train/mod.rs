//! The training layer: trains and evaluates one run on the CPU or a CUDA device. A run draws from
//! independent seeded random streams, trains mini-batches with its method's mixing and loss
//! ([`step`]), scores the test set (and the validation hold-out) after every epoch ([`eval`],
//! [`history`]) and saves checkpoints it can resume from bit for bit ([`checkpoint`]), telling an
//! observer after every epoch ([`EpochUpdate`]: the grid writes `history.csv` and progress lines
//! from it; this layer has no UI). [`bench`](mod@bench)
//! times training steps; [`device_check`] compares one step's loss and gradient on two devices.

pub mod bench;
pub mod beyond;
pub mod checkpoint;
pub mod device_check;
pub mod divergence;
pub mod eval;
pub mod history;
pub mod revision;
pub mod step;

use std::time::Instant;

use anyhow::Result;
use dfdx::prelude::*;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

pub use beyond::{BeyondScores, BeyondSets};
pub use checkpoint::{Checkpoint, Checkpointing, CHECKPOINT_FILE, LEGACY_CHECKPOINT_FILE};
pub use divergence::{Divergence, DivergenceWatch};
pub use eval::predict_logits;
pub use history::{EpochDiagnostics, EpochRecord};
pub use revision::TRAINER_REVISION;
pub use step::{step_gradient, step_loss, train_step, Batch, StepStats};

use crate::data::batch::{assemble_batch, batches};
use crate::data::Dataset;
use crate::metrics::{self, Bin, Prediction, TestMetrics};
use crate::mix::losses::uniform_score_loss;
use crate::nn::{DeviceKind, NetDevice, Network, Sgd};
use crate::spec::RunConfig;

/// What a finished run produced.
#[derive(Debug, Clone)]
pub struct RunOutcome {
    pub history: Vec<EpochRecord>,
    pub metrics: TestMetrics,
    pub predictions: Vec<Prediction>,
    /// The final network's logits of every test image (test images × classes, row-major): every
    /// test metric is a function of them and the labels.
    pub test_logits: Vec<f32>,
    pub bins: Vec<Bin>,
    pub train_class_counts: Vec<usize>,
    pub train_seconds: f64,
    pub device: DeviceKind,
    /// When and how the run was seen to collapse, if it was.
    pub diverged: Option<Divergence>,
    /// Its scores on the corrupted and out-of-distribution sets (empty without them).
    pub beyond: BeyondScores,
    /// Seconds spent scoring those sets (not part of `train_seconds`).
    pub beyond_seconds: f64,
}

/// What a run tells its observer (see [`Checkpointing::observer`]): once when it starts, with the
/// history a checkpoint restored (empty for a fresh run), and after every epoch it trains.
#[derive(Debug, Clone, Copy)]
pub struct EpochUpdate<'a> {
    /// Every epoch so far; the last one was just trained when `trained` is set.
    pub history: &'a [EpochRecord],
    /// Epochs the run trains in all.
    pub epochs: usize,
    /// Whether an epoch was just trained (false for the notice at the start).
    pub trained: bool,
    /// Training images per epoch.
    pub images: usize,
    /// Wall seconds of the last epoch (training and scoring); 0 at the start.
    pub epoch_seconds: f64,
    /// Wall seconds and epochs of this attempt so far (a resumed run counts from its resume).
    pub attempt_seconds: f64,
    pub attempt_epochs: usize,
}

/// The random streams of a run. Each is ChaCha8 seeded with the run's seed on a stream id of its
/// own, so the draws of one (e.g. more mixing) never shift another (e.g. the epoch order).
#[derive(Debug, Clone, Copy)]
enum Stream {
    /// Parameter initialisation.
    Init = 0,
    /// The shuffled order of every epoch.
    Order = 1,
    /// Partners, λ and CutMix boxes.
    Mix = 2,
    /// Crops and flips.
    Augment = 3,
}

fn stream(seed: u64, which: Stream) -> ChaCha8Rng {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(which as u64);
    rng
}

/// Everything that changes while a run trains: what a checkpoint stores.
struct Progress<D: NetDevice> {
    model: Network<D>,
    sgd: Sgd<D>,
    /// The training order after the last shuffle (each epoch shuffles the previous order).
    order: Vec<usize>,
    order_rng: ChaCha8Rng,
    mix_rng: ChaCha8Rng,
    augment_rng: ChaCha8Rng,
    history: Vec<EpochRecord>,
    /// Training time of earlier attempts (a resumed run).
    earlier_seconds: f64,
    /// When this attempt started.
    attempt_start: Instant,
}

impl<D: NetDevice> Progress<D> {
    /// A run at epoch 0: fresh parameters from the run's init stream.
    fn fresh(dev: &D, config: &RunConfig, train: &Dataset) -> Self {
        let mut init_rng = stream(config.seed, Stream::Init);
        let model = Network::new(
            &config.model,
            train.shape,
            train.classes,
            dev,
            &mut init_rng,
        );
        let sgd = Sgd::new(
            model.params(),
            config.train.momentum,
            config.train.weight_decay,
        );
        Progress {
            model,
            sgd,
            order: (0..train.len()).collect(),
            order_rng: stream(config.seed, Stream::Order),
            mix_rng: stream(config.seed, Stream::Mix),
            augment_rng: stream(config.seed, Stream::Augment),
            history: Vec::with_capacity(config.train.epochs),
            earlier_seconds: 0.0,
            attempt_start: Instant::now(),
        }
    }

    fn epochs_done(&self) -> usize {
        self.history.len()
    }
}

/// Trains `config` on `train` (already the split's subset, less any validation hold-out `val`,
/// which is scored every epoch) and evaluates on `test`, resuming from `checkpointing`'s file
/// when it holds a checkpoint of this run.
pub fn train_run(
    config: &RunConfig,
    device: DeviceKind,
    train: &Dataset,
    val: Option<&Dataset>,
    test: &Dataset,
    checkpointing: Option<&Checkpointing>,
) -> Result<RunOutcome> {
    train_and_score(config, device, train, val, test, None, checkpointing)
}

/// [`train_run`], then scores the trained network once on `beyond`'s corrupted and
/// out-of-distribution sets.
pub fn train_and_score(
    config: &RunConfig,
    device: DeviceKind,
    train: &Dataset,
    val: Option<&Dataset>,
    test: &Dataset,
    beyond: Option<&BeyondSets>,
    checkpointing: Option<&Checkpointing>,
) -> Result<RunOutcome> {
    let data = RunData {
        train,
        val,
        test,
        beyond,
    };
    match device {
        DeviceKind::Cpu => train_on(
            Cpu::seed_from_u64(config.seed),
            device,
            config,
            &data,
            checkpointing,
        ),
        #[cfg(feature = "cuda")]
        DeviceKind::Cuda => train_on(
            crate::nn::device::cuda(config.seed)?,
            device,
            config,
            &data,
            checkpointing,
        ),
        #[cfg(not(feature = "cuda"))]
        DeviceKind::Cuda => crate::nn::device::check(device).map(|_| unreachable!()),
    }
}

/// The sets a run sees.
struct RunData<'a> {
    train: &'a Dataset,
    val: Option<&'a Dataset>,
    test: &'a Dataset,
    beyond: Option<&'a BeyondSets>,
}

/// [`train_run`] on the device `dev` (of kind `kind`).
fn train_on<D: NetDevice>(
    dev: D,
    kind: DeviceKind,
    config: &RunConfig,
    data: &RunData,
    checkpointing: Option<&Checkpointing>,
) -> Result<RunOutcome> {
    let mut progress = Progress::fresh(&dev, config, data.train);
    let mut saver = checkpointing.map(|ck| ck.saver(config.run_id()));
    if let Some(saver) = &saver {
        saver.resume(&dev, &mut progress, config)?;
        saver.observe(&EpochUpdate {
            history: &progress.history,
            epochs: config.train.epochs,
            trained: false,
            images: data.train.len(),
            epoch_seconds: 0.0,
            attempt_seconds: 0.0,
            attempt_epochs: 0,
        })?;
    }
    let (test_logits, diverged) = train_epochs(&dev, &mut progress, config, data, &mut saver)?;
    // A run resumed from its final checkpoint trained no epoch here: evaluate now.
    let logits =
        test_logits.unwrap_or_else(|| predict_logits(&dev, &mut progress.model, data.test));
    let (mut metrics, predictions, bins) =
        metrics::evaluate(&logits, &data.test.labels, data.test.classes);
    let train_seconds = progress.earlier_seconds + progress.attempt_start.elapsed().as_secs_f64();
    let scoring = Instant::now();
    let beyond = data.beyond.map_or_else(BeyondScores::default, |sets| {
        beyond::score(
            &dev,
            &mut progress.model,
            config.evaluate.as_ref(),
            &logits,
            sets,
        )
    });
    metrics.corrupted = beyond.corrupted.clone();
    metrics.ood = beyond.ood.clone();
    Ok(RunOutcome {
        history: progress.history,
        metrics,
        predictions,
        test_logits: logits,
        bins,
        train_class_counts: data.train.class_counts(),
        train_seconds,
        device: kind,
        diverged,
        beyond,
        beyond_seconds: scoring.elapsed().as_secs_f64(),
    })
}

/// Trains the epochs left (saving checkpoints and telling the observer after each): the last
/// epoch's test logits (`None` when no epoch was left) and the divergence seen, if any.
fn train_epochs<D: NetDevice>(
    dev: &D,
    progress: &mut Progress<D>,
    config: &RunConfig,
    data: &RunData,
    saver: &mut Option<checkpoint::Saver<'_>>,
) -> Result<(Option<Vec<f32>>, Option<Divergence>)> {
    let uniform_loss = uniform_score_loss(
        &config.method,
        data.train.classes,
        config.train.batch_size.min(data.train.labels.len()),
    );
    let mut watch = DivergenceWatch::new(data.train.classes, config.train.epochs, uniform_loss);
    // A resumed run's watch sees its earlier epochs again.
    let mut diverged = progress.history.iter().find_map(|r| watch.observe(r));
    // The last epoch's test logits are the final predictions: evaluated once, not twice.
    let mut test_logits = None;
    let first = progress.epochs_done();
    for epoch in first..config.train.epochs {
        let epoch_start = Instant::now();
        let (record, logits, stopped) = train_epoch(dev, progress, config, data, epoch)?;
        if let Some(seen) = watch.observe(&record) {
            diverged.get_or_insert(seen);
        }
        progress.history.push(record);
        test_logits = Some(logits);
        if let Some(saver) = saver {
            let attempt = progress.attempt_start.elapsed().as_secs_f64();
            if stopped.is_none() {
                let seconds = progress.earlier_seconds + attempt;
                saver.save_if_due(progress, config.train.epochs, seconds)?;
            }
            saver.observe(&EpochUpdate {
                history: &progress.history,
                epochs: config.train.epochs,
                trained: true,
                images: data.train.len(),
                epoch_seconds: epoch_start.elapsed().as_secs_f64(),
                attempt_seconds: attempt,
                attempt_epochs: epoch + 1 - first,
            })?;
        }
        if let Some(why) = stopped {
            // No finite loss, no step to take: the run ends here, scored as it stands.
            if let Some(d) = diverged.as_mut().filter(|d| d.epoch == epoch + 1) {
                d.what = format!("{}: {why}", d.what);
            }
            break;
        }
    }
    Ok((test_logits, diverged))
}

/// Trains epoch `epoch` (0-based) and scores it: its history line, the test logits, and why
/// training had to stop, if it did (a non-finite loss: its batch and learning rate).
fn train_epoch<D: NetDevice>(
    dev: &D,
    progress: &mut Progress<D>,
    config: &RunConfig,
    data: &RunData,
    epoch: usize,
) -> Result<(EpochRecord, Vec<f32>, Option<String>)> {
    let spec = &config.train;
    let (train, classes) = (data.train, data.train.classes);
    let counts = train.class_counts();
    let lr = spec.lr_at(epoch) * config.method.warmup_factor(epoch);
    progress.order.shuffle(&mut progress.order_rng);
    let (mut loss_sum, mut seen) = (0.0f64, 0usize);
    let mut diagnostics = EpochDiagnostics::default();
    let mut stopped = None;
    for (step, idx) in batches(&progress.order, spec.batch_size)
        .into_iter()
        .enumerate()
    {
        let (x, labels) =
            assemble_batch(train, idx, spec.augment.as_ref(), &mut progress.augment_rng);
        let batch = Batch {
            x: &x,
            labels: &labels,
            shape: train.shape,
            classes,
            class_counts: &counts,
        };
        let stats = train_step(
            dev,
            &mut progress.model,
            &mut progress.sgd,
            &config.method,
            &batch,
            lr,
            &mut progress.mix_rng,
        )?;
        loss_sum += stats.loss as f64 * idx.len() as f64;
        seen += idx.len();
        if !stats.loss.is_finite() {
            stopped = Some(format!("batch {} (lr {lr})", step + 1));
            break;
        }
        diagnostics.add(&stats);
    }
    let logits = predict_logits(dev, &mut progress.model, data.test);
    let mut record = EpochRecord {
        epoch: epoch + 1,
        lr,
        train_loss: loss_sum / seen.max(1) as f64,
        test_accuracy: eval::accuracy(&logits, &data.test.labels, classes),
        val_accuracy: data.val.filter(|v| !v.is_empty()).map(|v| {
            let logits = predict_logits(dev, &mut progress.model, v);
            eval::accuracy(&logits, &v.labels, classes)
        }),
        ..EpochRecord::default()
    };
    diagnostics.fill(&mut record, config.method.uses_icm());
    Ok((record, logits, stopped))
}
