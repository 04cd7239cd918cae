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

/// Runs `f`, turning a panic into `Err` with the panic's message and printing nothing: cudarc
/// panics (`unwrap`) instead of returning errors on driver problems, e.g. `cuInit` on a machine
/// with a driver but no GPU, and those must reach the user as one clear error line. The panic
/// hook is process-wide, so callers are serialised while it is swapped.
pub fn catch_quietly<T>(f: impl FnOnce() -> T) -> std::result::Result<T, String> {
    static HOOK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _guard = HOOK.lock().unwrap_or_else(|e| e.into_inner());
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
    std::panic::set_hook(hook);
    result.map_err(|payload| {
        payload
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_else(|| "a panic without a message".into())
    })
}

/// The CUDA device with `seed` for its random streams, or an error that says what to do.
#[cfg(feature = "cuda")]
pub fn cuda(seed: u64) -> Result<dfdx::prelude::Cuda> {
    match catch_quietly(|| dfdx::prelude::Cuda::try_seed_from_u64(seed)) {
        Ok(Ok(dev)) => Ok(dev),
        Ok(Err(e)) => bail!("device: cuda: no usable NVIDIA GPU ({e:?}); use `device: cpu`"),
        Err(panic) => bail!(
            "device: cuda: no usable NVIDIA GPU: the CUDA driver failed to start ({panic}); \
             use `device: cpu`"
        ),
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
            match catch_quietly(|| smoke_step(&dev)) {
                Ok(true) => Ok(()),
                Ok(false) => bail!("device: cuda: a test step on the GPU gave non-finite values"),
                Err(panic) => bail!(
                    "device: cuda: the GPU is visible but dfdx's kernels failed to run ({panic}; \
                     is NVRTC from the CUDA toolkit installed? a scripts/build-cuda bundle runs \
                     through its own `icm` wrapper, which provides it); use `device: cpu`"
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

#[cfg(test)]
mod tests {
    use super::catch_quietly;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    // One test: the panic hook is process-wide, and a second test swapping it in parallel would
    // race with this one.
    #[test]
    fn catch_quietly_returns_the_value_or_the_message_silently_and_restores_the_hook() {
        assert_eq!(catch_quietly(|| 7), Ok(7));
        let code = 100;
        assert_eq!(
            catch_quietly(|| -> i32 { panic!("driver said {code}") }),
            Err("driver said 100".to_string())
        );
        assert_eq!(
            catch_quietly(|| -> i32 { panic!("plain") }),
            Err("plain".to_string())
        );
        assert_eq!(
            catch_quietly(|| -> i32 { std::panic::panic_any(3u8) }),
            Err("a panic without a message".to_string())
        );
        // Counts this thread's panics only: other tests run in parallel.
        let me = std::thread::current().id();
        let seen = Arc::new(AtomicUsize::new(0));
        let counter = seen.clone();
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |_| {
            if std::thread::current().id() == me {
                counter.fetch_add(1, Ordering::SeqCst);
            }
        }));
        let _ = catch_quietly(|| -> i32 { panic!("quiet") });
        let silenced = seen.load(Ordering::SeqCst);
        let _ = std::panic::catch_unwind(|| -> i32 { panic!("loud") });
        let restored = seen.load(Ordering::SeqCst);
        std::panic::set_hook(previous);
        assert_eq!((silenced, restored), (0, 1));
    }
}
