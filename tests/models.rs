//! Convolutional networks: parameter counts of the standard architectures, output shapes,
//! learning on the real digits, and exact resume of a ResNet from a checkpoint.

use std::path::Path;

use dfdx::prelude::*;
use icm::data::ImageShape;
use icm::grid::runner::{run_grid, RunOptions};
use icm::nn::DeviceKind;
use icm::nn::Network;
use icm::nn::{Arch, ModelSpec};
use icm::spec::parse_experiment;
use icm::train::{train_run, Checkpointing};
use icm::util::Matrix;
use rand::SeedableRng;

fn network(arch: Arch, shape: ImageShape, classes: usize) -> Network {
    let spec = ModelSpec { arch, hidden: None };
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0);
    Network::new(&spec, shape, classes, &Cpu::default(), &mut rng)
}

const CIFAR: ImageShape = ImageShape {
    channels: 3,
    height: 32,
    width: 32,
};
const DIGITS: ImageShape = ImageShape {
    channels: 1,
    height: 8,
    width: 8,
};

/// The counts published for these networks (akamaster's CIFAR ResNets; ResNet-18/34 as in the
/// common CIFAR implementations the ICM code uses).
#[test]
fn parameter_counts_match_the_published_architectures() {
    for (arch, count) in [
        (Arch::Resnet20, 269_722),
        (Arch::Resnet32, 464_154),
        (Arch::Resnet18, 11_173_962),
        (Arch::Resnet34, 21_282_122),
    ] {
        assert_eq!(network(arch, CIFAR, 10).num_parameters(), count, "{arch:?}");
    }
}

#[test]
fn output_shapes_for_cifar_and_digits_inputs() {
    let dev = Cpu::default();
    for (arch, shape) in [
        (Arch::Resnet20, CIFAR),
        (Arch::Resnet18, CIFAR),
        (Arch::SmallCnn, CIFAR),
        (Arch::Resnet20, DIGITS),
        (Arch::SmallCnn, DIGITS),
        (
            Arch::SmallCnn,
            ImageShape {
                channels: 1,
                height: 28,
                width: 28,
            },
        ),
    ] {
        let mut net = network(arch, shape, 7);
        let x: Matrix<Cpu> = dev.sample_normal_like(&(2, shape.numel()));
        let train = net.forward(x.leaky_trace(), true);
        assert_eq!(*train.shape(), (2, 7), "{arch:?} {shape:?}");
        let eval = net.forward(x, false);
        assert!(eval.as_vec().iter().all(|v| v.is_finite()));
    }
}

const RESNET_DIGITS: &str = "\
name: resnet-digits
splits: [balanced]
model: {arch: resnet20}
train: {epochs: 3, batch_size: 64, lr: 0.1, weight_decay: 5.0e-4}
methods: [icm-mixup]
seeds: [0]
";

/// A ResNet-20 trained on the embedded digits (8×8 → 4×4 → 2×2) by the shipped experiment file
/// `experiments/resnet20-digits.yaml` (its ICM-Mixup run on the balanced split, 8 epochs) is far
/// better than chance (10 %).
#[test]
fn resnet20_learns_the_digits() {
    let tmp = tempfile::tempdir().unwrap();
    let mut exp =
        icm::spec::load_experiment(Path::new("experiments/resnet20-digits.yaml")).unwrap();
    assert_eq!(exp.model.arch, Arch::Resnet20);
    exp.splits.truncate(1);
    exp.methods.retain(|m| m.display_name() == "icm-mixup");
    let summary = run_grid(&exp, tmp.path(), &RunOptions::default()).unwrap();
    assert_eq!(summary.trained, 1, "{summary:?}");
    let dir = icm::grid::records::run_dir(tmp.path(), &exp.name, &exp.runs()[0].run_id());
    let m = icm::grid::records::read_metrics(&dir.join(icm::grid::records::METRICS_FILE)).unwrap();
    assert!(
        m.test.accuracy > 0.9,
        "ResNet-20 on digits: {}",
        m.test.accuracy
    );
}

/// Interrupted after epoch 1 and resumed from its checkpoint, a ResNet (with batch-norm running
/// statistics) ends with exactly the predictions of an uninterrupted run.
#[test]
fn resnet_resumes_bit_exactly_from_a_checkpoint() {
    let yaml = RESNET_DIGITS
        .replace("[balanced]", "[{per_class: 20}]")
        .replace("resnet20", "small_cnn");
    let exp = parse_experiment(&yaml, Path::new("resnet.yaml")).unwrap();
    let config = &exp.runs()[0];
    let data = icm::data::load(&exp.dataset, &exp.preprocess).unwrap();
    let subsets = icm::grid::runner::split_subsets(&exp, &data.train).unwrap();
    let train = &subsets["per_class-20"];
    let full = train_run(config, DeviceKind::Cpu, train, None, &data.test, None).unwrap();

    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join(icm::train::CHECKPOINT_FILE);
    let crash = |u: &icm::train::EpochUpdate| -> anyhow::Result<()> {
        if u.trained {
            anyhow::bail!("simulated crash after epoch {}", u.history.len())
        }
        Ok(())
    };
    let ck = Checkpointing {
        path: &path,
        every: Some(1),
        observer: &crash,
    };
    assert!(train_run(config, DeviceKind::Cpu, train, None, &data.test, Some(&ck)).is_err());
    let saved = icm::train::Checkpoint::load(&path, &config.run_id()).unwrap();
    assert_eq!(saved.map(|c| c.epoch), Some(1), "checkpoint after epoch 1");
    let fine = |_: &icm::train::EpochUpdate| -> anyhow::Result<()> { Ok(()) };
    let ck = Checkpointing {
        path: &path,
        every: Some(1),
        observer: &fine,
    };
    let resumed = train_run(config, DeviceKind::Cpu, train, None, &data.test, Some(&ck)).unwrap();
    assert_eq!(resumed.metrics, full.metrics);
    assert_eq!(resumed.predictions, full.predictions);
    assert_eq!(resumed.history, full.history);
}

/// Largest |a − b| / (1 + |b|) over two equally long vectors.
fn max_rel_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs() / (1.0 + y.abs()))
        .fold(0.0, f32::max)
}

/// The network composed from dfdx's ops (the CUDA path) and the fused CPU kernels compute the
/// same logits, parameter gradients and batch-norm statistics, in training and in evaluation.
#[test]
fn composed_network_matches_the_native_kernels() {
    use icm::nn::ConvNet;
    let dev = Cpu::default();
    for (arch, shape) in [
        (Arch::Resnet8, CIFAR),
        (
            Arch::Resnet8,
            ImageShape {
                channels: 2,
                height: 7,
                width: 5,
            },
        ),
        (Arch::SmallCnn, DIGITS),
        (
            Arch::SmallCnn,
            ImageShape {
                channels: 1,
                height: 9,
                width: 7,
            },
        ),
        (Arch::Resnet18, DIGITS),
    ] {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
        let mut native = ConvNet::new(arch, shape, 5, &dev, &mut rng);
        let mut composed = native.clone();
        let x: Matrix<Cpu> = dev.sample_normal_like(&(4, shape.numel()));
        let r: Matrix<Cpu> = dev.sample_normal_like(&(4, 5));
        let grads = native.params.alloc_grads();
        let a = native.forward_native(x.clone().traced(grads), true);
        let a_logits = a.as_vec();
        let a_grad = (a * r.clone())
            .sum::<Rank0, _>()
            .backward()
            .get(&native.params.all)
            .as_vec();
        let grads = composed.params.alloc_grads();
        let b = composed.forward_composed(x.clone().traced(grads), true);
        let b_logits = b.as_vec();
        let b_grad = (b * r.clone())
            .sum::<Rank0, _>()
            .backward()
            .get(&composed.params.all)
            .as_vec();
        let case = format!("{arch:?} on {shape:?}");
        assert!(max_rel_diff(&a_logits, &b_logits) < 1e-4, "{case}: logits");
        assert!(a_grad.iter().any(|&g| g != 0.0), "{case}: gradient");
        // ResNet-18 on 8×8 ends at 1×1 maps: batch norm over 4 values amplifies rounding.
        assert!(max_rel_diff(&a_grad, &b_grad) < 3e-3, "{case}: gradients");
        for (s, t) in native.bn_stats.iter().zip(&composed.bn_stats) {
            assert!(
                max_rel_diff(&s.mean, &t.mean) < 1e-4,
                "{case}: running mean"
            );
            assert!(max_rel_diff(&s.var, &t.var) < 1e-4, "{case}: running var");
        }
        let a = native.forward_native(x.clone(), false).as_vec();
        let b = composed.forward_composed(x, false).as_vec();
        assert!(max_rel_diff(&a, &b) < 1e-4, "{case}: evaluation logits");
    }
}

/// The whole network is one op on dfdx's tape: its parameter gradient matches central finite
/// differences of the loss (evaluation mode, so batch norm is a fixed affine map and the loss is
/// smooth away from ReLU kinks; training mode is covered by the comparison with the composed
/// network above).
#[test]
fn network_op_gradient_matches_finite_differences() {
    use icm::nn::ConvNet;
    let dev = Cpu::default();
    let shape = ImageShape {
        channels: 2,
        height: 6,
        width: 6,
    };
    for arch in [Arch::Resnet8, Arch::SmallCnn] {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(3);
        let mut net = ConvNet::new(arch, shape, 3, &dev, &mut rng);
        // Non-trivial running statistics.
        for s in &mut net.bn_stats {
            for (i, (m, v)) in s.mean.iter_mut().zip(s.var.iter_mut()).enumerate() {
                *m = 0.1 * (i % 3) as f32 - 0.1;
                *v = 0.5 + 0.25 * (i % 4) as f32;
            }
        }
        let x: Matrix<Cpu> = dev.sample_normal_like(&(3, shape.numel()));
        let r: Matrix<Cpu> = dev.sample_normal_like(&(3, 3));
        let rv = r.as_vec();
        let grads = net.params.alloc_grads();
        let out = net.forward_native(x.clone().traced(grads), false);
        let grad = (out * r)
            .sum::<Rank0, _>()
            .backward()
            .get(&net.params.all)
            .as_vec();
        let params = net.params.all.as_vec();
        let mut loss_at = |p: Vec<f32>| -> f64 {
            net.params.all = dev.tensor_from_vec(p, (params.len(),));
            let out = net.forward_native(x.clone(), false).as_vec();
            out.iter()
                .zip(&rv)
                .map(|(a, b)| *a as f64 * *b as f64)
                .sum()
        };
        let mut checked = 0;
        for i in (0..params.len()).step_by(params.len() / 97 + 1) {
            let eps = 1e-3f32;
            let (mut up, mut down) = (params.clone(), params.clone());
            up[i] += eps;
            down[i] -= eps;
            let numeric = (loss_at(up) - loss_at(down)) / (2.0 * eps as f64);
            let err = (numeric - grad[i] as f64).abs();
            assert!(
                err <= 1e-2 * (1.0 + numeric.abs()),
                "{arch:?} parameter {i}: analytic {} vs numeric {numeric}",
                grad[i]
            );
            checked += 1;
        }
        assert!(checked > 90, "{checked}");
    }
}

/// Runs `f` on a rayon pool of `threads` threads.
fn on_threads<R: Send>(threads: usize, f: impl FnOnce() -> R + Send) -> R {
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .unwrap()
        .install(f)
}

/// The bit patterns of `values`, to compare floats exactly.
fn bits(values: &[f32]) -> Vec<u32> {
    values.iter().map(|x| x.to_bits()).collect()
}

/// A training step's logits, parameter gradient and batch-norm statistics are bit-identical on
/// 1 and 3 threads (20 images of 16 × 16: the kernels split the batch into several products,
/// the last one partial).
#[test]
fn results_do_not_depend_on_the_thread_count() {
    use icm::nn::ConvNet;
    let shape = ImageShape {
        channels: 3,
        height: 16,
        width: 16,
    };
    let step = |threads: usize| {
        on_threads(threads, || {
            let dev = Cpu::default();
            let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(5);
            let mut net = ConvNet::new(Arch::Resnet8, shape, 4, &dev, &mut rng);
            let x: Matrix<Cpu> = dev.sample_normal_like(&(20, shape.numel()));
            let r: Matrix<Cpu> = dev.sample_normal_like(&(20, 4));
            let grads = net.params.alloc_grads();
            let logits = net.forward_native(x.traced(grads), true);
            let values = logits.as_vec();
            let grad = (logits * r)
                .sum::<Rank0, _>()
                .backward()
                .get(&net.params.all)
                .as_vec();
            (values, grad, net.bn_stats)
        })
    };
    let (one, three) = (step(1), step(3));
    assert!(one.1.iter().any(|&g| g != 0.0));
    assert_eq!(bits(&one.0), bits(&three.0), "logits");
    assert_eq!(bits(&one.1), bits(&three.1), "gradients");
    assert_eq!(one.2, three.2, "batch-norm statistics");
}

/// A whole MLP training step (RegMixup's two passes over the ICM loss, then SGD with clipping)
/// leaves bit-identical parameters and statistics on 1 and 3 threads: the layers' products are
/// split over threads by output tiles, never over the batch's terms.
#[test]
fn mlp_step_does_not_depend_on_the_thread_count() {
    use icm::mix::MethodEntry;
    use icm::nn::Sgd;
    use icm::train::{train_step, Batch};
    use rand::Rng;
    let shape = ImageShape {
        channels: 1,
        height: 28,
        width: 28,
    };
    let method = serde_yaml::from_str::<MethodEntry>("icm-regmixup: {clip_grad_norm: 0.5}")
        .unwrap()
        .resolve()
        .unwrap();
    let step = |threads: usize| {
        on_threads(threads, || {
            let dev = Cpu::default();
            let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(9);
            let spec = ModelSpec {
                arch: Arch::Mlp,
                hidden: Some(vec![96, 40]),
            };
            let mut model: Network = Network::new(&spec, shape, 5, &dev, &mut rng);
            let x: Vec<f32> = (0..40 * shape.numel())
                .map(|_| rng.gen_range(-1.0..1.0))
                .collect();
            let labels: Vec<usize> = (0..40).map(|i| i % 5).collect();
            let counts = vec![8; 5];
            let batch = Batch {
                x: &x,
                labels: &labels,
                shape,
                classes: 5,
                class_counts: &counts,
            };
            let mut sgd = Sgd::new(model.params(), 0.9, 5e-4);
            let stats: Vec<_> = (0..3)
                .map(|_| train_step(&dev, &mut model, &mut sgd, &method, &batch, 0.05, &mut rng))
                .collect::<Result<_, _>>()
                .unwrap();
            (model.params().all.as_vec(), stats)
        })
    };
    let (one, three) = (step(1), step(3));
    assert!(one
        .1
        .iter()
        .all(|s| s.loss.is_finite() && s.grad_norm > 0.0));
    assert_eq!(bits(&one.0), bits(&three.0), "parameters after three steps");
    assert_eq!(one.1, three.1, "losses, gradient norms and diagnostics");
}

/// Scoring a dataset in larger batches gives the same logits, bit for bit: an MLP on its
/// evaluation batch (1,024 Fashion-MNIST-shaped images) at once against batches of 128, and a
/// small ResNet on 256 images against two batches of 128.
#[test]
fn logits_do_not_depend_on_the_evaluation_batch() {
    let fashion = ImageShape {
        channels: 1,
        height: 28,
        width: 28,
    };
    let mlp = ModelSpec {
        arch: Arch::Mlp,
        hidden: Some(vec![512, 256]),
    };
    let resnet = ModelSpec {
        arch: Arch::Resnet8,
        hidden: None,
    };
    for (spec, shape, whole) in [(mlp, fashion, None), (resnet, CIFAR, Some(256))] {
        let dev = Cpu::default();
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(9);
        let mut net: Network = Network::new(&spec, shape, 10, &dev, &mut rng);
        let whole = whole.unwrap_or(net.eval_batch());
        assert!(whole > 128, "{spec:?}: {whole}");
        let x: Vec<f32> = dev.sample_normal_like(&(whole, shape.numel())).as_vec();
        let d = shape.numel();
        let at_once = net
            .forward(dev.tensor_from_vec(x.clone(), (whole, d)), false)
            .as_vec();
        let mut in_parts = Vec::new();
        for rows in x.chunks(128 * d) {
            in_parts.extend(
                net.forward(
                    dev.tensor_from_vec(rows.to_vec(), (rows.len() / d, d)),
                    false,
                )
                .as_vec(),
            );
        }
        assert_eq!(bits(&at_once), bits(&in_parts), "{spec:?}");
    }
}
