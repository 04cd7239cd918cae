//! `icm device-check`: does a second device train the same networks as the CPU? For every network
//! family, one network is built on the CPU from a seed, its flat parameters are copied to the other
//! device, and one training step's loss and gradient (same batch, same ICM mixing) are taken on
//! both. The comparison is generic over two [`NetDevice`]s, so it is tested CPU against CPU here
//! and run CPU against CUDA on a GPU machine (`scripts/gpu-check`).

use anyhow::{bail, Result};
use dfdx::prelude::*;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::step::{step_gradient, Batch};
use crate::data::ImageShape;
use crate::mix::{Method, MethodEntry};
use crate::nn::{Arch, DeviceKind, ModelSpec, NetDevice, Network};

/// One network of each family: the MLP, the small CNN, a CIFAR ResNet and ResNet-18.
pub const FAMILIES: [Arch; 4] = [Arch::Mlp, Arch::SmallCnn, Arch::Resnet20, Arch::Resnet18];

/// Largest |Δloss| accepted, relative to max(1, |loss|). Both sides compute in fp32 (unit
/// round-off 6e-8) but sum in different orders (our CPU kernels against cuBLAS and dfdx's
/// reductions); over a network's ~20 layers that gives relative differences around 1e-6, while
/// a wrong kernel (a missed term, a wrong index) moves the loss by far more than 1e-4.
pub const LOSS_TOLERANCE: f64 = 1e-4;

/// Largest max|Δgrad| accepted, relative to max|grad|. The CUDA path is the network composed
/// from dfdx's ops, and on the CPU that composed network and our fused kernels already differ by
/// up to 3.1e-2 of max|grad| in this check's step (ResNet-18, seed 0; 1e-6 for other seeds and
/// families): an activation within rounding of a ReLU kink switches, and its gradient path with it,
/// while the losses agree to 1e-6. So the check cannot be tighter than 5e-2; a wrong kernel (a
/// missed term, a wrong index) differs by the size of the gradient itself.
pub const GRAD_TOLERANCE: f64 = 5e-2;

/// The step both devices take.
#[derive(Debug, Clone)]
pub struct CheckSetup {
    pub shape: ImageShape,
    pub batch: usize,
    pub classes: usize,
    pub method: Method,
    /// Seeds the network, the batch and the mixing.
    pub seed: u64,
}

impl CheckSetup {
    /// CIFAR-sized images, a batch of 8 over 10 classes, `icm-mixup`.
    pub fn cifar() -> CheckSetup {
        CheckSetup {
            shape: ImageShape {
                channels: 3,
                height: 32,
                width: 32,
            },
            batch: 8,
            classes: 10,
            method: MethodEntry {
                preset: "icm-mixup".into(),
                params: Default::default(),
            }
            .resolve()
            .expect("icm-mixup is a preset"),
            seed: 0,
        }
    }
}

/// One family's comparison of device `a` (the CPU) with device `b`.
#[derive(Debug, Clone, PartialEq)]
pub struct FamilyCheck {
    pub arch: Arch,
    pub parameters: usize,
    pub loss_a: f32,
    pub loss_b: f32,
    /// max|grad| on `a`.
    pub max_grad: f64,
    /// max|Δgrad| over all parameters, divided by `max_grad`.
    pub grad_rel_diff: f64,
}

impl FamilyCheck {
    pub fn loss_diff(&self) -> f64 {
        (self.loss_a as f64 - self.loss_b as f64).abs()
    }

    /// Both losses finite and within [`LOSS_TOLERANCE`], gradients within [`GRAD_TOLERANCE`].
    pub fn passed(&self) -> bool {
        let loss_ok = self.loss_diff() <= LOSS_TOLERANCE * (self.loss_a.abs() as f64).max(1.0);
        self.loss_a.is_finite() && loss_ok && self.grad_rel_diff <= GRAD_TOLERANCE
    }
}

/// A seeded batch of `setup`: uniform pixels in [-1, 1), labels cycling over the classes.
fn synthetic_batch(setup: &CheckSetup) -> (Vec<f32>, Vec<usize>) {
    let mut rng = ChaCha8Rng::seed_from_u64(setup.seed);
    let x = (0..setup.batch * setup.shape.numel())
        .map(|_| rng.gen_range(-1.0..1.0))
        .collect();
    let labels = (0..setup.batch).map(|i| i % setup.classes).collect();
    (x, labels)
}

fn spec(arch: Arch) -> ModelSpec {
    ModelSpec {
        arch,
        hidden: (arch == Arch::Mlp).then(|| vec![128]),
    }
}

/// The parameters `arch` starts from: built on the CPU from `setup.seed`.
pub fn initial_parameters(setup: &CheckSetup, arch: Arch) -> Vec<f32> {
    let mut rng = ChaCha8Rng::seed_from_u64(setup.seed);
    let net: Network<Cpu> = Network::new(
        &spec(arch),
        setup.shape,
        setup.classes,
        &Cpu::default(),
        &mut rng,
    );
    net.params().all.as_vec()
}

/// Loss and gradient of one step of `arch` with `params` on `dev`.
fn step_on<D: NetDevice>(
    dev: &D,
    setup: &CheckSetup,
    arch: Arch,
    params: &[f32],
) -> Result<(f32, Vec<f32>)> {
    let mut init = ChaCha8Rng::seed_from_u64(setup.seed);
    let mut model = Network::new(&spec(arch), setup.shape, setup.classes, dev, &mut init);
    let n = model.num_parameters();
    if params.len() != n {
        bail!(
            "{arch:?} has {n} parameters on this device, but {} were given",
            params.len()
        );
    }
    model.params_mut().all = dev.tensor_from_vec(params.to_vec(), (n,));
    let (x, labels) = synthetic_batch(setup);
    let counts = vec![10; setup.classes];
    let batch = Batch {
        x: &x,
        labels: &labels,
        shape: setup.shape,
        classes: setup.classes,
        class_counts: &counts,
    };
    let mut mixing = ChaCha8Rng::seed_from_u64(setup.seed + 1);
    step_gradient(dev, &mut model, &setup.method, &batch, &mut mixing)
}

/// One step of `arch` on `a` with `params_a` and on `b` with `params_b` (the same parameters,
/// except in tests that check a mismatch is reported).
pub fn compare_params<A: NetDevice, B: NetDevice>(
    a: &A,
    b: &B,
    setup: &CheckSetup,
    arch: Arch,
    params_a: &[f32],
    params_b: &[f32],
) -> Result<FamilyCheck> {
    let (loss_a, grad_a) = step_on(a, setup, arch, params_a)?;
    let (loss_b, grad_b) = step_on(b, setup, arch, params_b)?;
    let max_grad = grad_a.iter().fold(0.0f64, |m, &g| m.max((g as f64).abs()));
    let max_diff = grad_a.iter().zip(&grad_b).fold(0.0f64, |m, (&ga, &gb)| {
        let d = (ga as f64 - gb as f64).abs();
        // A NaN on either side must fail the check, and f64::max would drop it.
        if d.is_nan() {
            f64::INFINITY
        } else {
            m.max(d)
        }
    });
    Ok(FamilyCheck {
        arch,
        parameters: params_a.len(),
        loss_a,
        loss_b,
        max_grad,
        grad_rel_diff: if max_diff == 0.0 {
            0.0
        } else {
            max_diff / max_grad
        },
    })
}

/// [`compare_params`] from the seeded initial parameters, on every family.
pub fn compare_families<A: NetDevice, B: NetDevice>(
    a: &A,
    b: &B,
    setup: &CheckSetup,
    families: &[Arch],
) -> Result<Vec<FamilyCheck>> {
    families
        .iter()
        .map(|&arch| {
            let params = initial_parameters(setup, arch);
            compare_params(a, b, setup, arch, &params, &params)
        })
        .collect()
}

/// The CPU against `kind` (against a second CPU device for `cpu`, which must agree exactly).
/// Stops with the device's clear error when `kind` cannot train here.
pub fn run(kind: DeviceKind, setup: &CheckSetup, families: &[Arch]) -> Result<Vec<FamilyCheck>> {
    crate::nn::device::check(kind)?;
    let cpu = Cpu::seed_from_u64(setup.seed);
    match kind {
        DeviceKind::Cpu => compare_families(&cpu, &Cpu::seed_from_u64(setup.seed), setup, families),
        #[cfg(feature = "cuda")]
        DeviceKind::Cuda => {
            let cuda = crate::nn::device::cuda(setup.seed)?;
            compare_families(&cpu, &cuda, setup, families)
        }
        #[cfg(not(feature = "cuda"))]
        DeviceKind::Cuda => unreachable!("checked above"),
    }
}

/// The table `icm device-check` prints: one line per family, then the tolerances.
pub fn render(kind: DeviceKind, setup: &CheckSetup, checks: &[FamilyCheck]) -> String {
    let s = setup.shape;
    let mut out = format!(
        "device-check: one {} step, batch {} of {}x{}x{}, {} classes, cpu vs {kind}\n",
        setup.method.display_name(),
        setup.batch,
        s.channels,
        s.height,
        s.width,
        setup.classes
    );
    out += &format!(
        "{:<10} {:>10} {:>12} {:>12} {:>10} {:>10} {:>12}  result\n",
        "family",
        "params",
        "loss cpu",
        format!("loss {kind}"),
        "|Δloss|",
        "max|grad|",
        "Δgrad rel"
    );
    for c in checks {
        let arch = serde_yaml::to_string(&c.arch).unwrap_or_default();
        out += &format!(
            "{:<10} {:>10} {:>12.6} {:>12.6} {:>10.2e} {:>10.3e} {:>12.2e}  {}\n",
            arch.trim(),
            c.parameters,
            c.loss_a,
            c.loss_b,
            c.loss_diff(),
            c.max_grad,
            c.grad_rel_diff,
            if c.passed() { "PASS" } else { "FAIL" }
        );
    }
    out += &format!(
        "tolerances: |Δloss| ≤ {LOSS_TOLERANCE:e}·max(1, |loss|), max|Δgrad| ≤ {GRAD_TOLERANCE:e}·max|grad| \
         (fp32, different summation order)\n"
    );
    out
}
