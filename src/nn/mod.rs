//! The networks layer: which networks exist ([`arch`]), how they are laid out ([`mlp`],
//! [`convnet`]) and run (the CPU kernels in [`kernels`] chained into one tape op by [`native`];
//! the same networks from dfdx's own ops in [`composed`], the CUDA path; every CPU matrix product
//! in [`products`], which chooses its SIMD level), the optimiser
//! ([`sgd`]) and the device ([`device`]).
//!
//! Networks use runtime shapes. All of a network's parameters live in one flat `(usize,)`
//! tensor ([`FlatParams`]), so the optimiser, gradient allocation and checkpoints see a single
//! tensor whatever the architecture.

pub mod arch;
pub mod composed;
pub mod convnet;
pub mod device;
mod direct;
pub mod kernels;
pub mod memory;
pub mod mlp;
pub mod native;
pub mod products;
pub mod sgd;
mod winograd;

use dfdx::optim::UnusedTensors;
use dfdx::prelude::*;
use rand_chacha::ChaCha8Rng;

pub use arch::{Arch, ModelSpec};
pub use convnet::ConvNet;
pub use device::DeviceKind;
pub use mlp::Mlp;
pub use sgd::Sgd;

use crate::data::ImageShape;
use crate::mix::losses::LossDevice;
use crate::util::Matrix;

/// Every parameter of a network, concatenated into one tensor.
#[derive(Debug, Clone)]
pub struct FlatParams<E: Dtype, D: Storage<E>> {
    pub all: Tensor<(usize,), E, D>,
}

impl<D: Device<f32>> FlatParams<f32, D> {
    /// Fresh gradient buffers that keep only this tensor's gradient after `backward()` (dfdx's
    /// `alloc_grads`, which needs const shapes, does the same for its own modules).
    pub fn alloc_grads(&self) -> Gradients<f32, D> {
        let mut grads = Gradients::leaky();
        grads
            .try_alloc_for(&self.all)
            .expect("allocating the parameter gradient");
        // dfdx exposes a tensor's id only through `UnusedTensors`.
        let mut id = UnusedTensors::default();
        id.add(&self.all);
        grads.retain_leafs(&id.ids);
        grads
    }
}

/// Devices a network trains on: the CPU with our kernels, each network one op on dfdx's tape
/// ([`native`], [`Mlp::forward_native`]); CUDA with the networks composed from dfdx's ops.
pub trait NetDevice: LossDevice {
    /// Images per forward pass when a run scores a dataset with a conv net (and `icm bench`
    /// times evaluation).
    const EVAL_BATCH: usize;
    /// The same for an MLP.
    const MLP_EVAL_BATCH: usize;
    fn convnet_forward<T: Tape<f32, Self>>(
        net: &mut ConvNet<Self>,
        x: Matrix<Self, T>,
        training: bool,
    ) -> Matrix<Self, T>;
    fn mlp_forward<T: Tape<f32, Self>>(net: &Mlp<Self>, x: Matrix<Self, T>) -> Matrix<Self, T>;
    /// One SGD update of `params` from `grads`; returns the gradient norm before clipping.
    fn sgd_step(
        sgd: &mut Sgd<Self>,
        params: &mut FlatParams<f32, Self>,
        grads: Gradients<f32, Self>,
        lr: f64,
        clip: Option<f64>,
    ) -> f64;
}

impl NetDevice for Cpu {
    /// Small batches for conv nets: a ResNet's activations for 512 images overflow the caches
    /// (on a 2-core AVX-512 host, ResNet-20 scored 3,050 images/s in batches of 128 and 2,370
    /// in batches of 512). An MLP's weights are read once per batch, so it takes larger ones
    /// (784-512-256: 320-325k images/s in batches of 128, 388-395k in batches of 1,024). The
    /// logits do not depend on the batch (`tests/models.rs`).
    const EVAL_BATCH: usize = 128;
    const MLP_EVAL_BATCH: usize = 1024;
    fn convnet_forward<T: Tape<f32, Cpu>>(
        net: &mut ConvNet<Cpu>,
        x: Matrix<Cpu, T>,
        training: bool,
    ) -> Matrix<Cpu, T> {
        net.forward_native(x, training)
    }
    fn mlp_forward<T: Tape<f32, Cpu>>(net: &Mlp<Cpu>, x: Matrix<Cpu, T>) -> Matrix<Cpu, T> {
        net.forward_native(x)
    }
    fn sgd_step(
        sgd: &mut Sgd<Cpu>,
        params: &mut FlatParams<f32, Cpu>,
        mut grads: Gradients<f32, Cpu>,
        lr: f64,
        clip: Option<f64>,
    ) -> f64 {
        sgd.step_in_place(params, &mut grads, lr, clip)
    }
}

#[cfg(feature = "cuda")]
impl NetDevice for Cuda {
    const EVAL_BATCH: usize = 512;
    const MLP_EVAL_BATCH: usize = 512;
    fn convnet_forward<T: Tape<f32, Cuda>>(
        net: &mut ConvNet<Cuda>,
        x: Matrix<Cuda, T>,
        training: bool,
    ) -> Matrix<Cuda, T> {
        net.forward_composed(x, training)
    }
    fn mlp_forward<T: Tape<f32, Cuda>>(net: &Mlp<Cuda>, x: Matrix<Cuda, T>) -> Matrix<Cuda, T> {
        net.forward_composed(x)
    }
    fn sgd_step(
        sgd: &mut Sgd<Cuda>,
        params: &mut FlatParams<f32, Cuda>,
        grads: Gradients<f32, Cuda>,
        lr: f64,
        clip: Option<f64>,
    ) -> f64 {
        sgd.step(params, &grads, lr, clip)
    }
}

/// Any network the trainer can train: the MLP or a convolutional network.
#[derive(Debug, Clone)]
pub enum Network<D: NetDevice = Cpu> {
    Mlp(Mlp<D>),
    Conv(ConvNet<D>),
}

impl<D: NetDevice> Network<D> {
    /// Builds `spec` for images of `shape` and `classes` classes, initialised from `rng`.
    pub fn new(
        spec: &ModelSpec,
        shape: ImageShape,
        classes: usize,
        dev: &D,
        rng: &mut ChaCha8Rng,
    ) -> Network<D> {
        if spec.arch.is_conv() {
            Network::Conv(ConvNet::new(spec.arch, shape, classes, dev, rng))
        } else {
            Network::Mlp(Mlp::new(
                dev,
                shape.numel(),
                spec.hidden.as_deref().unwrap_or(&[128]),
                classes,
                rng,
            ))
        }
    }

    pub fn params(&self) -> &FlatParams<f32, D> {
        match self {
            Network::Mlp(m) => &m.params,
            Network::Conv(c) => &c.params,
        }
    }

    pub fn params_mut(&mut self) -> &mut FlatParams<f32, D> {
        match self {
            Network::Mlp(m) => &mut m.params,
            Network::Conv(c) => &mut c.params,
        }
    }

    pub fn num_parameters(&self) -> usize {
        self.params().all.shape().0
    }

    /// Batch-norm running statistics (none for the MLP).
    pub fn bn_stats(&self) -> &[kernels::BatchNormStats] {
        match self {
            Network::Mlp(_) => &[],
            Network::Conv(c) => &c.bn_stats,
        }
    }

    pub fn bn_stats_mut(&mut self) -> &mut [kernels::BatchNormStats] {
        match self {
            Network::Mlp(_) => &mut [],
            Network::Conv(c) => &mut c.bn_stats,
        }
    }

    /// Logits of a batch of flattened images; `training` selects batch-norm batch statistics.
    pub fn forward<T: Tape<f32, D>>(&mut self, x: Matrix<D, T>, training: bool) -> Matrix<D, T> {
        match self {
            Network::Mlp(m) => D::mlp_forward(m, x),
            Network::Conv(c) => c.forward(x, training),
        }
    }

    /// Images per forward pass when scoring a dataset ([`NetDevice::EVAL_BATCH`] or
    /// [`NetDevice::MLP_EVAL_BATCH`]).
    pub fn eval_batch(&self) -> usize {
        match self {
            Network::Mlp(_) => D::MLP_EVAL_BATCH,
            Network::Conv(_) => D::EVAL_BATCH,
        }
    }
}
