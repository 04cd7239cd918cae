//! End-to-end finite-difference checks of whole training steps: for every method preset and every
//! network family, the parameter update of one `train_step` (SGD with lr 1, no momentum, no
//! weight decay, so the update is minus the gradient) must match central differences of the loss
//! that step minimises, with the same mixing. This covers what checks of single ops cannot: two
//! forward passes over shared parameters (RegMixup), the mixing, the losses and the networks
//! together.

use dfdx::prelude::*;
use icm::data::ImageShape;
use icm::mix::{Method, MethodEntry};
use icm::nn::{Arch, ModelSpec, Network, Sgd};
use icm::train::{step_loss, train_step, Batch};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

const PRESETS: &[&str] = &[
    "erm",
    "mixup",
    "cutmix",
    "remix",
    "regmixup",
    "icm-mixup",
    "icm-cutmix",
    "icm-remix",
    "icm-regmixup",
];

fn method(preset: &str) -> Method {
    serde_yaml::from_str::<MethodEntry>(preset)
        .unwrap()
        .resolve()
        .unwrap()
}

/// A tiny problem: 6 images of 2×4×4 over 3 classes with long-tailed counts (so Remix acts).
struct Problem {
    x: Vec<f32>,
    labels: Vec<usize>,
    shape: ImageShape,
    counts: Vec<usize>,
}

fn problem() -> Problem {
    let mut rng = ChaCha8Rng::seed_from_u64(11);
    let shape = ImageShape {
        channels: 2,
        height: 4,
        width: 4,
    };
    Problem {
        x: (0..6 * shape.numel())
            .map(|_| rng.gen_range(-1.0..1.0))
            .collect(),
        labels: vec![0, 1, 2, 0, 0, 1],
        shape,
        counts: vec![90, 25, 5],
    }
}

/// Largest violation of |g − fd| ≤ 2e-3 + 2 % |fd| over the checked parameters, as
/// (index, g, fd); `None` when all agree.
fn worst_mismatch(arch: Arch, preset: &str) -> Option<(usize, f32, f32)> {
    let dev = Cpu::default();
    let p = problem();
    let spec = ModelSpec {
        arch,
        hidden: (arch == Arch::Mlp).then(|| vec![5]),
    };
    let mut init = ChaCha8Rng::seed_from_u64(5);
    let base: Network = Network::new(&spec, p.shape, 3, &dev, &mut init);
    let method = method(preset);
    let batch = Batch {
        x: &p.x,
        labels: &p.labels,
        shape: p.shape,
        classes: 3,
        class_counts: &p.counts,
    };
    let mix_rng = ChaCha8Rng::seed_from_u64(7);
    // The step's gradient, read off the SGD update.
    let mut model = base.clone();
    let before = model.params().all.as_vec();
    let mut sgd = Sgd::new(model.params(), 0.0, 0.0);
    train_step(
        &dev,
        &mut model,
        &mut sgd,
        &method,
        &batch,
        1.0,
        &mut mix_rng.clone(),
    )
    .unwrap();
    let after = model.params().all.as_vec();
    let grad: Vec<f32> = before.iter().zip(&after).map(|(b, a)| b - a).collect();
    // Central differences of the same loss (same mixing) at up to 60 parameters spread over
    // every layer, the head included.
    let n = before.len();
    let mut picks: Vec<usize> = (0..60).map(|k| k * n / 60).collect();
    picks.extend(n.saturating_sub(8)..n);
    let loss_at = |params: Vec<f32>| -> f64 {
        let mut m = base.clone();
        m.params_mut().all = dev.tensor_from_vec(params, (n,));
        step_loss(&dev, &mut m, &method, &batch, &mut mix_rng.clone()).unwrap() as f64
    };
    let eps = 1e-3f32;
    let mut worst: Option<(usize, f32, f32, f32)> = None;
    for i in picks {
        let (mut up, mut down) = (before.clone(), before.clone());
        up[i] += eps;
        down[i] -= eps;
        let fd = ((loss_at(up) - loss_at(down)) / (2.0 * eps as f64)) as f32;
        let excess = (grad[i] - fd).abs() - (2e-3 + 0.02 * fd.abs());
        if excess > 0.0 && worst.is_none_or(|w| excess > w.3) {
            worst = Some((i, grad[i], fd, excess));
        }
    }
    worst.map(|(i, g, fd, _)| (i, g, fd))
}

fn check_family(arch: Arch) {
    let failures: Vec<String> = PRESETS
        .iter()
        .filter_map(|preset| {
            worst_mismatch(arch, preset).map(|(i, g, fd)| {
                format!(
                    "{arch:?} {preset}: parameter {i}: step gradient {g}, finite difference {fd}"
                )
            })
        })
        .collect();
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn mlp_steps_match_finite_differences_for_every_preset() {
    check_family(Arch::Mlp);
}

#[test]
fn small_cnn_steps_match_finite_differences_for_every_preset() {
    check_family(Arch::SmallCnn);
}

#[test]
fn resnet_steps_match_finite_differences_for_every_preset() {
    check_family(Arch::Resnet8);
}
