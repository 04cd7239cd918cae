//! Networks on dfdx with runtime shapes. All of a network's parameters live in one flat
//! `(usize,)` tensor ([`FlatParams`]); layers take slices of it (views on the tape, so gradients
//! flow back into the one buffer). The optimiser, gradient allocation and checkpoints then see a
//! single tensor whatever the architecture.

use std::ops::Range;

use dfdx::optim::UnusedTensors;
use dfdx::prelude::*;
use rand::Rng;
use rand_chacha::ChaCha8Rng;

use crate::convnet::{ConvDevice, ConvNet};
use crate::losses::Matrix;

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

/// Fully connected ReLU network: input → hidden… → classes.
#[derive(Debug, Clone)]
pub struct Mlp<D: Device<f32>> {
    /// Layer widths, input first, classes last.
    pub widths: Vec<usize>,
    pub params: FlatParams<f32, D>,
    /// Range of each layer's weight (in × out, row-major) and bias inside `params`.
    layout: Vec<(Range<usize>, Range<usize>)>,
}

impl<D: Device<f32>> Mlp<D> {
    /// PyTorch's `nn.Linear` initialisation: w, b ~ U(−1/√fan_in, 1/√fan_in).
    pub fn new(
        dev: &D,
        input: usize,
        hidden: &[usize],
        classes: usize,
        rng: &mut ChaCha8Rng,
    ) -> Self {
        let mut widths = vec![input];
        widths.extend_from_slice(hidden);
        widths.push(classes);
        let mut values = Vec::new();
        let mut layout = Vec::new();
        for w in widths.windows(2) {
            let (fan_in, fan_out) = (w[0], w[1]);
            let bound = 1.0 / (fan_in as f32).sqrt();
            let start = values.len();
            values.extend((0..fan_in * fan_out + fan_out).map(|_| rng.gen_range(-bound..bound)));
            let split = start + fan_in * fan_out;
            layout.push((start..split, split..values.len()));
        }
        let n = values.len();
        Mlp {
            widths,
            params: FlatParams {
                all: dev.tensor_from_vec(values, (n,)),
            },
            layout,
        }
    }

    /// Logits for a batch of flattened inputs (B × input). With an `OwnedTape` on `x`, the
    /// gradients reach `self.params`.
    pub fn forward<T: Tape<f32, D>>(&self, x: Matrix<D, T>) -> Matrix<D, T> {
        let batch = x.shape().0;
        let layers = self.layout.len();
        let mut h = x;
        for (l, (w_range, b_range)) in self.layout.iter().enumerate() {
            let (fan_in, fan_out) = (self.widths[l], self.widths[l + 1]);
            let w = self
                .params
                .all
                .retaped::<T>()
                .slice((w_range.clone(),))
                .reshape_like(&(fan_in, fan_out));
            let b = self
                .params
                .all
                .retaped::<T>()
                .slice((b_range.clone(),))
                .broadcast_like::<_, Axis<0>>(&(batch, fan_out));
            h = h.matmul(w) + b;
            if l + 1 < layers {
                h = h.relu();
            }
        }
        h
    }

    pub fn num_parameters(&self) -> usize {
        self.params.all.shape().0
    }
}

/// Any network the trainer can train: the MLP or a convolutional network.
#[derive(Debug, Clone)]
pub enum Network<D: ConvDevice = Cpu> {
    Mlp(Mlp<D>),
    Conv(ConvNet<D>),
}

impl<D: ConvDevice> Network<D> {
    /// Builds `spec` for images of `shape` and `classes` classes, initialised from `rng`.
    pub fn new(
        spec: &crate::config::ModelSpec,
        shape: crate::mixing::ImageShape,
        classes: usize,
        dev: &D,
        rng: &mut ChaCha8Rng,
    ) -> Network<D> {
        match spec.arch.conv() {
            None => Network::Mlp(Mlp::new(
                dev,
                shape.numel(),
                spec.hidden.as_deref().unwrap_or(&[128]),
                classes,
                rng,
            )),
            Some(arch) => Network::Conv(ConvNet::new(arch, shape, classes, dev, rng)),
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
    pub fn bn_stats(&self) -> &[crate::ops::BatchNormStats] {
        match self {
            Network::Mlp(_) => &[],
            Network::Conv(c) => &c.bn_stats,
        }
    }

    pub fn bn_stats_mut(&mut self) -> &mut [crate::ops::BatchNormStats] {
        match self {
            Network::Mlp(_) => &mut [],
            Network::Conv(c) => &mut c.bn_stats,
        }
    }

    /// Logits of a batch of flattened images; `training` selects batch-norm batch statistics.
    pub fn forward<T: Tape<f32, D>>(&mut self, x: Matrix<D, T>, training: bool) -> Matrix<D, T> {
        match self {
            Network::Mlp(m) => m.forward(x),
            Network::Conv(c) => c.forward(x, training),
        }
    }
}
