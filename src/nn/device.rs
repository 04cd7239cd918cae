//! Where runs train: the CPU (always), or an NVIDIA GPU through dfdx's CUDA device in a build with
//! the `cuda` cargo feature. Chosen by `device:` in the experiment file or `--device` on the
//! command line; it is an execution setting like `--threads`, so it is not part of a run's id.

use anyhow::{bail, Result};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DeviceKind {
    #[default]
    Cpu,
    Cuda,
}

impl std::str::FromStr for DeviceKind {
    type Err = anyhow::Error;
    fn from_str(text: &str) -> Result<Self> {
        match text {
            "cpu" => Ok(DeviceKind::Cpu),
            "cuda" => Ok(DeviceKind::Cuda),
            other => bail!("unknown device `{other}`: expected `cpu` or `cuda`"),
        }
    }
}

impl std::fmt::Display for DeviceKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            DeviceKind::Cpu => "cpu",
            DeviceKind::Cuda => "cuda",
        })
    }
}

/// One forward and backward pass of ResNet-8 and of the small CNN on `dev`: every op kind the
/// networks use.
#[cfg(feature = "cuda")]
fn smoke_step(dev: &dfdx::prelude::Cuda) -> bool {
    use dfdx::prelude::*;
    use rand::SeedableRng;
    let shape = crate::data::ImageShape {
        channels: 1,
        height: 4,
        width: 4,
    };
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0);
    [super::Arch::Resnet8, super::Arch::SmallCnn]
        .into_iter()
        .all(|arch| {
            let mut net = super::ConvNet::new(arch, shape, 2, dev, &mut rng);
            let x: crate::util::Matrix<Cuda> = dev.sample_normal_like(&(2, shape.numel()));
            let grads = net.params.alloc_grads();
            let logits = net.forward_composed(x.traced(grads), true);
            let grads = logits.sum::<Rank0, _>().backward();
            grads
                .get(&net.params.all)
                .as_vec()
                .iter()
                .all(|g| g.is_finite())
        })
}

/// The CUDA device with `seed` for its random streams, or an error that says what to do.
#[cfg(feature = "cuda")]
pub fn cuda(seed: u64) -> Result<dfdx::prelude::Cuda> {
    // cudarc panics instead of returning an error on some driver problems.
    match std::panic::catch_unwind(|| dfdx::prelude::Cuda::try_seed_from_u64(seed)) {
        Ok(Ok(dev)) => Ok(dev),
        Ok(Err(e)) => bail!("device: cuda: no usable NVIDIA GPU ({e:?}); use `device: cpu`"),
        Err(_) => bail!("device: cuda: the CUDA driver failed to start; use `device: cpu`"),
    }
}

/// Checks that `kind` can train here before a grid starts, so that a missing GPU is one clear
/// error rather than every run failing. For CUDA this trains one step of a tiny convolutional
/// network: dfdx compiles some kernels only when first used (with NVRTC), and a machine with a
/// GPU but no usable NVRTC would otherwise fail every run.
pub fn check(kind: DeviceKind) -> Result<()> {
    match kind {
        DeviceKind::Cpu => Ok(()),
        #[cfg(feature = "cuda")]
        DeviceKind::Cuda => {
            let dev = cuda(0)?;
            match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| smoke_step(&dev))) {
                Ok(true) => Ok(()),
                Ok(false) => bail!("device: cuda: a test step on the GPU gave non-finite values"),
                Err(_) => bail!(
                    "device: cuda: the GPU is visible but dfdx's kernels failed to run (is NVRTC \
                     from the CUDA toolkit installed? a scripts/build-cuda bundle runs through its \
                     own `icm` wrapper, which provides it); use `device: cpu`"
                ),
            }
        }
        #[cfg(not(feature = "cuda"))]
        DeviceKind::Cuda => bail!(
            "device: cuda: this icm was built without CUDA; rebuild with \
             `cargo build --release --features cuda` (needs the CUDA toolkit), or build a bundle \
             with scripts/build-cuda (no toolkit needed), or use `device: cpu`"
        ),
    }
}
