//! `icm bench`: throughput of full training steps on synthetic input, and how much of a step
//! the method's own work (mixing, loss forward + backward) takes.

use std::time::Instant;

use anyhow::{bail, Result};
use dfdx::prelude::*;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::{train_step, Batch};
use crate::data::augment::Augment;
use crate::data::batch::assemble_batch;
use crate::data::{Dataset, ImageShape};
use crate::mix::losses::target_loss_and_stats;
use crate::mix::{mix_batch, Method, MethodEntry};
use crate::nn::{DeviceKind, ModelSpec, NetDevice, Network, Sgd};
use crate::util::Matrix;

/// What to time.
#[derive(Debug, Clone)]
pub struct BenchSpec {
    /// The network (as in experiment files: `mlp` with `hidden`, `resnet20`, ...).
    pub model: ModelSpec,
    pub shape: ImageShape,
    pub batch: usize,
    pub classes: usize,
    pub warmup: usize,
    pub steps: usize,
    pub method: Method,
    pub device: DeviceKind,
}

/// Mean times in milliseconds.
#[derive(Debug, Clone)]
pub struct BenchResult {
    pub step_ms: f64,
    pub mix_ms: f64,
    pub loss_ms: f64,
    pub images_per_second: f64,
    /// Share of a step spent in mixing plus the loss (forward and backward).
    pub method_share: f64,
    /// Evaluation (forward without a tape, running batch-norm statistics, in batches of
    /// `eval_batch` as runs score datasets) images per second.
    pub eval_images_per_second: f64,
    pub eval_batch: usize,
    pub peak_rss_mib: f64,
    /// Floating-point operations of one training step's matrix products on the CPU (the
    /// networks' products; dfdx's own products in the loss, small B × B ones, are not counted).
    pub product_flops_per_step: f64,
}

/// Parses `3x32x32` (channels × height × width).
pub fn parse_shape(text: &str) -> Result<ImageShape> {
    let parts: Vec<usize> = text
        .split('x')
        .map(|p| p.trim().parse::<usize>())
        .collect::<Result<_, _>>()
        .map_err(|_| anyhow::anyhow!("--input `{text}`: expected CxHxW, e.g. 3x32x32"))?;
    match parts[..] {
        [c, h, w] if c > 0 && h > 0 && w > 0 => {
            let values = c.checked_mul(h).and_then(|ch| ch.checked_mul(w));
            if values.is_none_or(|v| v > MAX_IMAGE_VALUES) {
                bail!(
                    "--input `{text}`: an image of more than {MAX_IMAGE_VALUES} values; use a \
                     smaller shape, e.g. 3x224x224"
                );
            }
            Ok(ImageShape {
                channels: c,
                height: h,
                width: w,
            })
        }
        _ => bail!("--input `{text}`: expected CxHxW with positive sizes, e.g. 3x32x32"),
    }
}

/// Resolves a preset name given to the command-line option `flag` (same rules as in experiment
/// files).
pub fn parse_method(flag: &str, text: &str) -> Result<Method> {
    let entry: MethodEntry =
        serde_yaml::from_str(text).map_err(|e| anyhow::anyhow!("{flag} `{text}`: {e}"))?;
    entry
        .resolve()
        .map_err(|e| anyhow::anyhow!("{flag} `{text}`: {e}"))
}

fn peak_rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<f64>().ok())
        })
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

fn time_ms(reps: usize, mut f: impl FnMut()) -> f64 {
    let start = Instant::now();
    for _ in 0..reps {
        f();
    }
    start.elapsed().as_secs_f64() * 1000.0 / reps as f64
}

/// Runs the benchmark on the device `spec` asks for.
pub fn run(spec: &BenchSpec) -> Result<BenchResult> {
    check(spec, &spec.method)?;
    match spec.device {
        DeviceKind::Cpu => run_on(Cpu::seed_from_u64(0), spec),
        #[cfg(feature = "cuda")]
        DeviceKind::Cuda => run_on(crate::nn::device::cuda(0)?, spec),
        #[cfg(not(feature = "cuda"))]
        DeviceKind::Cuda => unreachable!("checked above"),
    }
}

/// The most values an `--input` image may have (a 3 × 2048 × 2048 image is 12.6 M).
const MAX_IMAGE_VALUES: usize = 1 << 24;
/// The largest `--batch`: a step times one batch, and larger ones only exhaust memory.
const MAX_BATCH: usize = 1 << 16;

/// Refuses a batch `method` or the network cannot train on, widths or a class count the network
/// cannot be built with, an MLP that would not fit in the memory available, and a device this
/// build lacks.
fn check(spec: &BenchSpec, method: &Method) -> Result<()> {
    if spec.batch > MAX_BATCH {
        bail!(
            "--batch {} is more than {MAX_BATCH}; use a smaller batch",
            spec.batch
        );
    }
    if spec.classes < 2 {
        bail!("--classes must be ≥ 2, got {}", spec.classes);
    }
    spec.model
        .clone()
        .check()
        .map_err(|e| anyhow::anyhow!("--hidden: {e}"))?;
    let memory =
        crate::nn::memory::mlp_memory(&spec.model, spec.shape.numel(), spec.classes, spec.batch);
    if let (Some(m), Some(available)) = (memory, crate::util::available_memory()) {
        if m.total_bytes() > available as f64 {
            bail!(
                "--hidden {:?}: the MLP needs about {:.1} GiB to train ({:.3e} parameters), but \
                 this machine has {:.1} GiB available; use smaller widths or a smaller --batch",
                spec.model.hidden.as_deref().unwrap_or_default(),
                m.total_bytes() / f64::from(1u32 << 30),
                m.parameters,
                available as f64 / f64::from(1u32 << 30),
            );
        }
    }
    if method.uses_icm() && spec.batch < 2 {
        bail!("--batch must be ≥ 2 for ICM methods");
    }
    if spec.model.arch.is_conv() && spec.batch < 2 {
        bail!("--batch must be ≥ 2: batch normalisation needs batches of at least 2 images");
    }
    if spec.batch == 0 {
        bail!("--batch must be ≥ 1");
    }
    crate::nn::device::check(spec.device)
}

/// Every result reads back to the host (`as_vec`), which waits for an asynchronous device.
fn run_on<D: NetDevice>(dev: D, spec: &BenchSpec) -> Result<BenchResult> {
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    let d = spec.shape.numel();
    let data = Synthetic::new(spec, &mut rng);
    let mut model = Network::new(&spec.model, spec.shape, spec.classes, &dev, &mut rng);
    let mut sgd = Sgd::new(model.params(), 0.9, 5e-4);
    let batch = data.batch(spec);
    let mut step = || {
        train_step(
            &dev,
            &mut model,
            &mut sgd,
            &spec.method,
            &batch,
            1e-3,
            &mut rng,
        )
        .expect("bench step");
    };
    for _ in 0..spec.warmup {
        step();
    }
    let flops_before = crate::nn::products::flops_done();
    let step_ms = time_ms(spec.steps, step);
    let product_flops_per_step =
        (crate::nn::products::flops_done() - flops_before) as f64 / spec.steps as f64;
    let eval_batch = model.eval_batch();
    // Evaluation as a run scores a dataset: batches of the network's eval_batch images (the
    // training batch's images repeated).
    let eval_x: Vec<f32> = data
        .x
        .iter()
        .copied()
        .cycle()
        .take(eval_batch * d)
        .collect();
    let inputs: Matrix<D> = dev.tensor_from_vec(eval_x, (eval_batch, d));
    let eval_ms = time_ms(spec.steps, || {
        std::hint::black_box(model.forward(inputs.clone(), false).as_vec());
    });

    let mut mix_rng = ChaCha8Rng::seed_from_u64(1);
    let mut last = None;
    let mix_ms = time_ms(spec.steps, || {
        last = Some(mix_batch(
            &spec.method,
            &data.x,
            &data.labels,
            spec.shape,
            spec.classes,
            &data.counts,
            &mut mix_rng,
        ));
    });
    let mixed = last.expect("at least one step is timed");
    let logits: Matrix<D> = dev.sample_normal_like(&(spec.batch, spec.classes));
    let targets: Matrix<D> = dev.tensor_from_vec(mixed.targets, (spec.batch, spec.classes));
    let loss_ms = time_ms(spec.steps, || {
        // As a training step asks for it: with the ICM loss's score statistics.
        let (loss, _) = target_loss_and_stats(&spec.method, logits.leaky_trace(), targets.clone())
            .expect("bench loss");
        let grads = loss.backward();
        std::hint::black_box(grads.get(&logits).as_vec());
    });
    Ok(BenchResult {
        step_ms,
        mix_ms,
        loss_ms,
        images_per_second: spec.batch as f64 / (step_ms / 1000.0),
        method_share: (mix_ms + loss_ms) / step_ms,
        eval_images_per_second: eval_batch as f64 / (eval_ms / 1000.0),
        eval_batch,
        peak_rss_mib: peak_rss_mib(),
        product_flops_per_step,
    })
}

/// A batch of `spec.batch` uniform images in [−1, 1) and uniform labels, over a training set of
/// 100 images per class (what Remix reads).
struct Synthetic {
    x: Vec<f32>,
    labels: Vec<usize>,
    counts: Vec<usize>,
}

impl Synthetic {
    fn new(spec: &BenchSpec, rng: &mut ChaCha8Rng) -> Self {
        Synthetic {
            x: (0..spec.batch * spec.shape.numel())
                .map(|_| rng.gen_range(-1.0..1.0))
                .collect(),
            labels: (0..spec.batch)
                .map(|_| rng.gen_range(0..spec.classes))
                .collect(),
            counts: vec![100; spec.classes],
        }
    }

    fn batch(&self, spec: &BenchSpec) -> Batch<'_> {
        Batch {
            x: &self.x,
            labels: &self.labels,
            shape: spec.shape,
            classes: spec.classes,
            class_counts: &self.counts,
        }
    }
}

/// A training step of `spec.method` against one of `against`, timed in alternating rounds in one
/// process, so that the drift of a shared machine hits both alike.
#[derive(Debug, Clone)]
pub struct StepComparison {
    /// Median over the rounds of (this round's mean step of `spec.method`) / (that of `against`).
    pub median_ratio: f64,
    pub min_ratio: f64,
    pub max_ratio: f64,
    /// Median mean step times (ms) of the two methods over the rounds.
    pub median_ms: (f64, f64),
    pub rounds: usize,
}

/// Times `spec.method` against `against` on the same network, batch and threads: each model is
/// warmed up, then `rounds` rounds each time `spec.steps / rounds` steps (at least one) of one
/// method, then of the other.
pub fn compare_steps(spec: &BenchSpec, against: &Method, rounds: usize) -> Result<StepComparison> {
    if rounds == 0 {
        bail!("--rounds must be ≥ 1");
    }
    check(spec, &spec.method)?;
    check(spec, against)?;
    match spec.device {
        DeviceKind::Cpu => compare_on(Cpu::seed_from_u64(0), spec, against, rounds),
        #[cfg(feature = "cuda")]
        DeviceKind::Cuda => compare_on(crate::nn::device::cuda(0)?, spec, against, rounds),
        #[cfg(not(feature = "cuda"))]
        DeviceKind::Cuda => unreachable!("checked above"),
    }
}

fn compare_on<D: NetDevice>(
    dev: D,
    spec: &BenchSpec,
    against: &Method,
    rounds: usize,
) -> Result<StepComparison> {
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    let data = Synthetic::new(spec, &mut rng);
    let batch = data.batch(spec);
    let init = Network::new(&spec.model, spec.shape, spec.classes, &dev, &mut rng);
    let methods = [&spec.method, against];
    let mut models: Vec<(Network<D>, Sgd<D>)> = methods
        .iter()
        .map(|_| {
            let model = init.clone();
            let sgd = Sgd::new(model.params(), 0.9, 5e-4);
            (model, sgd)
        })
        .collect();
    let per_round = (spec.steps / rounds).max(1);
    let mut step = |which: usize, reps: usize| -> Result<f64> {
        let (model, sgd) = &mut models[which];
        let start = Instant::now();
        for _ in 0..reps {
            train_step(&dev, model, sgd, methods[which], &batch, 1e-3, &mut rng)?;
        }
        Ok(start.elapsed().as_secs_f64() * 1000.0 / reps as f64)
    };
    for which in 0..2 {
        step(which, spec.warmup)?;
    }
    let mut times = Vec::with_capacity(rounds);
    for _ in 0..rounds {
        times.push((step(0, per_round)?, step(1, per_round)?));
    }
    let median = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        let n = v.len();
        if n % 2 == 1 {
            v[n / 2]
        } else {
            (v[n / 2 - 1] + v[n / 2]) / 2.0
        }
    };
    let ratios: Vec<f64> = times.iter().map(|(a, b)| a / b).collect();
    Ok(StepComparison {
        median_ratio: median(ratios.clone()),
        min_ratio: ratios.iter().copied().fold(f64::INFINITY, f64::min),
        max_ratio: ratios.iter().copied().fold(f64::NEG_INFINITY, f64::max),
        median_ms: (
            median(times.iter().map(|t| t.0).collect()),
            median(times.iter().map(|t| t.1).collect()),
        ),
        rounds,
    })
}

/// Images per second the data pipeline ([`crate::data::batch::assemble_batch`]: gather a shuffled batch
/// and apply the CIFAR crop-and-flip augmentation) delivers on a synthetic dataset of `images`
/// images of `shape`.
pub fn loader_images_per_second(
    shape: ImageShape,
    images: usize,
    batch: usize,
    steps: usize,
) -> f64 {
    use rand::seq::SliceRandom;
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    let d = shape.numel();
    let data = Dataset {
        images: (0..images * d).map(|_| rng.gen_range(-1.0..1.0)).collect(),
        labels: (0..images).map(|i| i % 10).collect(),
        shape,
        classes: 10,
        background: vec![0.0; d],
    };
    let aug = Augment {
        crop_padding: 4,
        flip: true,
    };
    let mut order: Vec<usize> = (0..images).collect();
    order.shuffle(&mut rng);
    let start = Instant::now();
    let mut delivered = 0usize;
    for step in 0..steps {
        let at = (step * batch) % (images - batch + 1);
        let (x, _) = assemble_batch(&data, &order[at..at + batch], Some(&aug), &mut rng);
        delivered += std::hint::black_box(x).len() / d;
    }
    delivered as f64 / start.elapsed().as_secs_f64()
}
