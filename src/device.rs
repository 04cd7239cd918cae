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
/// error rather than every run failing.
pub fn check(kind: DeviceKind) -> Result<()> {
    match kind {
        DeviceKind::Cpu => Ok(()),
        #[cfg(feature = "cuda")]
        DeviceKind::Cuda => cuda(0).map(|_| ()),
        #[cfg(not(feature = "cuda"))]
        DeviceKind::Cuda => bail!(
            "device: cuda: this icm was built without CUDA; rebuild with \
             `cargo build --release --features cuda` (needs the CUDA toolkit) or use `device: cpu`"
        ),
    }
}
