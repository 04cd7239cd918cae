//! Convolutional networks: the CIFAR ResNet-(6n+2) of He et al. 2016 (widths 16/32/64,
//! parameter-free "option A" shortcuts), ResNet-18/34 in the official ICM code's CIFAR form (3×3
//! stem, no max-pool, widths 64–512, BasicBlocks, 1×1 projection shortcuts), and a small CNN for
//! 8×8 and 28×28 inputs. As for the MLP, every parameter lives in one flat tensor; batch-norm
//! running statistics are kept beside it.
//!
//! On the CPU the whole network is a single op on dfdx's tape: the forward pass chains the
//! kernels of [`crate::ops`] on buffers of its own, keeping what the backward pass needs, and the
//! backward pass walks the layers in reverse and adds into the flat parameter gradient. Fusing
//! the network this way avoids a copy in and out of dfdx tensors at every layer.

use std::ops::Range;
use std::sync::Arc;

use dfdx::prelude::*;
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Normal};

use crate::losses::Matrix;
use crate::mixing::ImageShape;
use crate::model::FlatParams;
use crate::ops::{
    add_into, batch_moments, batch_norm_backward, batch_norm_forward, conv2d_backward,
    conv2d_forward, gemm, global_avg_pool_backward, global_avg_pool_forward, inverse_std,
    max_pool2x2_backward, max_pool2x2_forward, nchw_to_nhwc, relu_backward, shortcut_a_backward,
    shortcut_a_forward, BatchNormStats, ConvGeometry, Dims,
};

/// Which convolutional network.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConvArch {
    /// CIFAR ResNet with 6n + 2 layers.
    Resnet(usize),
    Resnet18,
    Resnet34,
    SmallCnn,
}

/// A bias-free convolution followed by batch normalisation.
#[derive(Debug, Clone)]
pub(crate) struct ConvBn {
    geometry: ConvGeometry,
    weight: Range<usize>,
    gamma: Range<usize>,
    beta: Range<usize>,
    /// Index of its running statistics.
    bn: usize,
}

#[derive(Debug, Clone)]
pub(crate) enum Shortcut {
    Identity,
    /// Subsample and zero-pad channels (CIFAR ResNet-(6n+2)).
    PadA(usize),
    /// 1×1 convolution + batch norm (ResNet-18/34).
    Projection(ConvBn),
}

#[derive(Debug, Clone)]
pub(crate) enum Unit {
    /// BasicBlock: conv-bn-relu-conv-bn, plus the shortcut, then relu.
    Block(ConvBn, ConvBn, Shortcut),
    /// conv-bn-relu, then 2×2 max pooling when `pool`.
    ConvPool(ConvBn, bool),
}

/// A convolutional classifier: stem, units, global average pooling, linear head.
#[derive(Debug, Clone)]
pub struct ConvNet<D: Device<f32> = Cpu> {
    pub arch: ConvArch,
    pub input: ImageShape,
    pub classes: usize,
    pub params: FlatParams<f32, D>,
    pub bn_stats: Vec<BatchNormStats>,
    pub(crate) layout: Arc<Layout>,
}

/// Where each layer's parameters sit in the flat tensor, and how the layers connect.
#[derive(Debug)]
pub(crate) struct Layout {
    pub(crate) input: ImageShape,
    pub(crate) classes: usize,
    pub(crate) stem: ConvBn,
    pub(crate) units: Vec<Unit>,
    /// Head weight (features × classes, row-major) and bias.
    pub(crate) fc_weight: Range<usize>,
    pub(crate) fc_bias: Range<usize>,
    pub(crate) features: usize,
}

/// Collects parameter values while the network is laid out.
struct Builder<'a> {
    values: Vec<f32>,
    bn_stats: Vec<BatchNormStats>,
    rng: &'a mut ChaCha8Rng,
}

impl Builder<'_> {
    fn take(&mut self, values: impl IntoIterator<Item = f32>) -> Range<usize> {
        let start = self.values.len();
        self.values.extend(values);
        start..self.values.len()
    }

    /// Kaiming-normal conv weights (fan-in, ReLU gain), BN γ = 1, β = 0.
    fn conv_bn(&mut self, cin: usize, cout: usize, kernel: usize, stride: usize) -> ConvBn {
        let geometry = ConvGeometry {
            in_channels: cin,
            out_channels: cout,
            kernel,
            stride,
            padding: kernel / 2,
        };
        let fan_in = (cin * kernel * kernel) as f64;
        let normal = Normal::new(0.0, (2.0 / fan_in).sqrt()).expect("valid std");
        let n = cout * cin * kernel * kernel;
        let weights: Vec<f32> = (0..n).map(|_| normal.sample(self.rng) as f32).collect();
        let weight = self.take(weights);
        let gamma = self.take(vec![1.0; cout]);
        let beta = self.take(vec![0.0; cout]);
        self.bn_stats.push(BatchNormStats::new(cout));
        ConvBn {
            geometry,
            weight,
            gamma,
            beta,
            bn: self.bn_stats.len() - 1,
        }
    }
}

impl<D: Device<f32>> ConvNet<D> {
    pub fn new(
        arch: ConvArch,
        input: ImageShape,
        classes: usize,
        dev: &D,
        rng: &mut ChaCha8Rng,
    ) -> ConvNet<D> {
        let mut b = Builder {
            values: Vec::new(),
            bn_stats: Vec::new(),
            rng,
        };
        let c = input.channels;
        let (stem, units, features) = match arch {
            ConvArch::Resnet(depth) => {
                let n = (depth - 2) / 6;
                let stem = b.conv_bn(c, 16, 3, 1);
                let mut units = Vec::new();
                let mut cin = 16;
                for (stage, width) in [16, 32, 64].into_iter().enumerate() {
                    for j in 0..n {
                        let stride = if stage > 0 && j == 0 { 2 } else { 1 };
                        let c1 = b.conv_bn(cin, width, 3, stride);
                        let c2 = b.conv_bn(width, width, 3, 1);
                        let shortcut = if stride != 1 || cin != width {
                            Shortcut::PadA(width)
                        } else {
                            Shortcut::Identity
                        };
                        units.push(Unit::Block(c1, c2, shortcut));
                        cin = width;
                    }
                }
                (stem, units, 64)
            }
            ConvArch::Resnet18 | ConvArch::Resnet34 => {
                let blocks = if arch == ConvArch::Resnet18 {
                    [2, 2, 2, 2]
                } else {
                    [3, 4, 6, 3]
                };
                let stem = b.conv_bn(c, 64, 3, 1);
                let mut units = Vec::new();
                let mut cin = 64;
                for (stage, (width, count)) in
                    [64, 128, 256, 512].into_iter().zip(blocks).enumerate()
                {
                    for j in 0..count {
                        let stride = if stage > 0 && j == 0 { 2 } else { 1 };
                        let c1 = b.conv_bn(cin, width, 3, stride);
                        let c2 = b.conv_bn(width, width, 3, 1);
                        let shortcut = if stride != 1 || cin != width {
                            Shortcut::Projection(b.conv_bn(cin, width, 1, stride))
                        } else {
                            Shortcut::Identity
                        };
                        units.push(Unit::Block(c1, c2, shortcut));
                        cin = width;
                    }
                }
                (stem, units, 512)
            }
            ConvArch::SmallCnn => {
                let stem = b.conv_bn(c, 32, 3, 1);
                // Pool only while the feature map is at least 2×2 (8×8 → 4×4 → 2×2; 28 → 14 → 7).
                let pool_first = input.height >= 2 && input.width >= 2;
                let (h, w) = if pool_first {
                    (input.height / 2, input.width / 2)
                } else {
                    (input.height, input.width)
                };
                let second = b.conv_bn(32, 64, 3, 1);
                let third = b.conv_bn(64, 128, 3, 1);
                let units = vec![
                    Unit::ConvPool(second, pool_first),
                    Unit::ConvPool(third, h >= 2 && w >= 2),
                ];
                (stem, units, 128)
            }
        };
        let bound = 1.0 / (features as f32).sqrt();
        let fc: Vec<f32> = (0..features * classes)
            .map(|_| b.rng.gen_range(-bound..bound))
            .collect();
        let fc_weight = b.take(fc);
        let fc_b: Vec<f32> = (0..classes)
            .map(|_| b.rng.gen_range(-bound..bound))
            .collect();
        let fc_bias = b.take(fc_b);
        let n = b.values.len();
        ConvNet {
            arch,
            input,
            classes,
            params: FlatParams {
                all: dev.tensor_from_vec(b.values, (n,)),
            },
            bn_stats: b.bn_stats,
            layout: Arc::new(Layout {
                input,
                classes,
                stem,
                units,
                fc_weight,
                fc_bias,
                features,
            }),
        }
    }

    pub fn num_parameters(&self) -> usize {
        self.params.all.shape().0
    }

    /// The network built from dfdx's own ops ([`crate::composed`]), on any device.
    pub fn forward_composed<T: Tape<f32, D>>(
        &mut self,
        x: Matrix<D, T>,
        training: bool,
    ) -> Matrix<D, T> {
        use crate::composed::{batch_norm2d, conv2d, global_avg_pool, max_pool2x2, shortcut_a};
        let layout = Arc::clone(&self.layout);
        let batch = x.shape().0;
        let s = self.input;
        let param = |range: &Range<usize>| self.params.all.retaped::<T>().slice((range.clone(),));
        let stats = &mut self.bn_stats;
        let mut conv_bn = |layer: &ConvBn, x| {
            let y = conv2d(x, param(&layer.weight), &layer.geometry);
            batch_norm2d(
                y,
                param(&layer.gamma),
                param(&layer.beta),
                &mut stats[layer.bn],
                training,
            )
        };
        let x = x.reshape_like(&(batch, s.channels, s.height, s.width));
        let mut h = conv_bn(&layout.stem, x).relu();
        for unit in &layout.units {
            h = match unit {
                Unit::Block(c1, c2, shortcut) => {
                    let skip = match shortcut {
                        Shortcut::Identity => h.with_empty_tape(),
                        Shortcut::PadA(width) => shortcut_a(h.with_empty_tape(), *width),
                        Shortcut::Projection(l) => conv_bn(l, h.with_empty_tape()),
                    };
                    let r = conv_bn(c1, h).relu();
                    (conv_bn(c2, r) + skip).relu()
                }
                Unit::ConvPool(l, pool) => {
                    let y = conv_bn(l, h).relu();
                    if *pool {
                        max_pool2x2(y)
                    } else {
                        y
                    }
                }
            };
        }
        let features = global_avg_pool(h);
        let w = param(&layout.fc_weight).reshape_like(&(layout.features, self.classes));
        let b = param(&layout.fc_bias).broadcast_like::<_, Axis<0>>(&(batch, self.classes));
        features.matmul(w) + b
    }
}

/// Devices a convolutional network trains on: the CPU with the fused kernels of
/// [`crate::ops`]; CUDA with the network composed from dfdx's ops.
pub trait ConvDevice: Device<f32> {
    fn convnet_forward<T: Tape<f32, Self>>(
        net: &mut ConvNet<Self>,
        x: Matrix<Self, T>,
        training: bool,
    ) -> Matrix<Self, T>;
}

impl ConvDevice for Cpu {
    fn convnet_forward<T: Tape<f32, Cpu>>(
        net: &mut ConvNet<Cpu>,
        x: Matrix<Cpu, T>,
        training: bool,
    ) -> Matrix<Cpu, T> {
        net.forward_native(x, training)
    }
}

#[cfg(feature = "cuda")]
impl ConvDevice for Cuda {
    fn convnet_forward<T: Tape<f32, Cuda>>(
        net: &mut ConvNet<Cuda>,
        x: Matrix<Cuda, T>,
        training: bool,
    ) -> Matrix<Cuda, T> {
        net.forward_composed(x, training)
    }
}

impl<D: ConvDevice> ConvNet<D> {
    /// Logits for a batch of flattened images (B × C·H·W). `training` uses batch statistics in
    /// batch norm and updates the running ones.
    pub fn forward<T: Tape<f32, D>>(&mut self, x: Matrix<D, T>, training: bool) -> Matrix<D, T> {
        D::convnet_forward(self, x, training)
    }
}

impl ConvNet<Cpu> {
    /// The network as one op on the tape, on the fused CPU kernels. With an owned tape, the
    /// backward pass adds the parameters' gradient (the images are data: they get none).
    pub fn forward_native<T: Tape<f32, Cpu>>(
        &mut self,
        x: Matrix<Cpu, T>,
        training: bool,
    ) -> Matrix<Cpu, T> {
        let batch = x.shape().0;
        let (x, x_tape) = x.split_tape();
        let (params, p_tape) = self.params.all.retaped::<T>().split_tape();
        let mut tape = x_tape.merge(p_tape);
        let p = params.as_vec();
        let (logits, trace) = self.layout.forward(
            &p,
            &mut self.bn_stats,
            x.as_vec(),
            batch,
            training,
            T::OWNS_TAPE,
        );
        let out = x.device().tensor_from_vec(logits, (batch, self.classes));
        if let Some(trace) = trace {
            let (pg, og) = (params.ghost(), out.ghost());
            let layout = Arc::clone(&self.layout);
            tape.add_backward_op(move |grads| {
                let d = grads.get_or_alloc_mut(&og)?.clone();
                let dp = layout.backward(&p, trace, &d, training);
                add_into(grads.get_or_alloc_mut(&pg)?, &dp);
                Ok(())
            });
        }
        out.put_tape(tape)
    }
}

/// What the backward pass needs from one convolution + batch-norm layer.
struct ConvBnSaved {
    input: Arc<Vec<f32>>,
    in_dims: Dims,
    /// The convolution's output, before batch norm.
    conv: Vec<f32>,
    mean: Vec<f32>,
    inv_std: Vec<f32>,
    /// After batch norm and the epilogue (residual, ReLU).
    out: Arc<Vec<f32>>,
    out_dims: Dims,
}

enum UnitSaved {
    Block {
        first: ConvBnSaved,
        second: ConvBnSaved,
        projection: Option<Box<ConvBnSaved>>,
        in_dims: Dims,
    },
    ConvPool {
        layer: ConvBnSaved,
        argmax: Option<Vec<u32>>,
    },
}

/// Everything a training forward pass keeps for its backward pass.
struct Trace {
    stem: ConvBnSaved,
    units: Vec<UnitSaved>,
    /// Global average pooling's input size per channel, and its output (N × features).
    pooled: Dims,
    features: Vec<f32>,
}

impl Layout {
    /// Convolution, batch norm, then `residual` and ReLU as asked.
    #[allow(clippy::too_many_arguments)]
    fn conv_bn(
        &self,
        layer: &ConvBn,
        p: &[f32],
        input: Arc<Vec<f32>>,
        in_dims: Dims,
        stats: &mut BatchNormStats,
        training: bool,
        residual: Option<&[f32]>,
        relu: bool,
    ) -> ConvBnSaved {
        let g = &layer.geometry;
        let out_dims = in_dims.conv(g);
        let conv = conv2d_forward(&input, in_dims, &p[layer.weight.clone()], None, g);
        let (mean, var) = if training {
            let (mean, var) = batch_moments(&conv, out_dims);
            stats.update(&mean, &var, out_dims.n * out_dims.plane());
            (mean, var)
        } else {
            (stats.mean.clone(), stats.var.clone())
        };
        let inv_std = inverse_std(&var);
        let out = batch_norm_forward(
            &conv,
            out_dims.c,
            &mean,
            &inv_std,
            &p[layer.gamma.clone()],
            &p[layer.beta.clone()],
            residual,
            relu,
        );
        ConvBnSaved {
            input,
            in_dims,
            conv,
            mean,
            inv_std,
            out: Arc::new(out),
            out_dims,
        }
    }

    /// Gradients of one convolution + batch-norm layer from `d`, the gradient at its batch-norm
    /// output: adds into `dp` and returns the input's gradient when `need_dx`.
    #[allow(clippy::too_many_arguments)]
    fn conv_bn_backward(
        &self,
        layer: &ConvBn,
        p: &[f32],
        saved: &ConvBnSaved,
        d: &[f32],
        training: bool,
        dp: &mut [f32],
        need_dx: bool,
    ) -> Option<Vec<f32>> {
        let od = saved.out_dims;
        let (dy, dgamma, dbeta) = batch_norm_backward(
            &saved.conv,
            od,
            &saved.mean,
            &saved.inv_std,
            &p[layer.gamma.clone()],
            d,
            training,
        );
        add_into(&mut dp[layer.gamma.clone()], &dgamma);
        add_into(&mut dp[layer.beta.clone()], &dbeta);
        let (dx, dw, _) = conv2d_backward(
            &saved.input,
            saved.in_dims,
            &p[layer.weight.clone()],
            &dy,
            &layer.geometry,
            need_dx,
        );
        add_into(&mut dp[layer.weight.clone()], &dw);
        dx
    }

    /// Logits (N × classes) of `x` (N × C·H·W) under parameters `p`, and, when `keep`, what the
    /// backward pass needs.
    fn forward(
        &self,
        p: &[f32],
        stats: &mut [BatchNormStats],
        x: Vec<f32>,
        n: usize,
        training: bool,
        keep: bool,
    ) -> (Vec<f32>, Option<Trace>) {
        let s = self.input;
        let dims = Dims {
            n,
            c: s.channels,
            h: s.height,
            w: s.width,
        };
        let stem = &self.stem;
        let stem = self.conv_bn(
            stem,
            p,
            Arc::new(nchw_to_nhwc(&x, dims)),
            dims,
            &mut stats[stem.bn],
            training,
            None,
            true,
        );
        let (mut h, mut dims) = (Arc::clone(&stem.out), stem.out_dims);
        let mut units = Vec::new();
        for unit in &self.units {
            let saved = match unit {
                Unit::Block(c1, c2, shortcut) => {
                    let in_dims = dims;
                    let (skip, projection) = match shortcut {
                        Shortcut::Identity => (Arc::clone(&h), None),
                        Shortcut::PadA(width) => {
                            (Arc::new(shortcut_a_forward(&h, dims, *width)), None)
                        }
                        Shortcut::Projection(l) => {
                            let s = self.conv_bn(
                                l,
                                p,
                                Arc::clone(&h),
                                dims,
                                &mut stats[l.bn],
                                training,
                                None,
                                false,
                            );
                            (Arc::clone(&s.out), Some(Box::new(s)))
                        }
                    };
                    let first =
                        self.conv_bn(c1, p, h, dims, &mut stats[c1.bn], training, None, true);
                    let second = self.conv_bn(
                        c2,
                        p,
                        Arc::clone(&first.out),
                        first.out_dims,
                        &mut stats[c2.bn],
                        training,
                        Some(&skip),
                        true,
                    );
                    (h, dims) = (Arc::clone(&second.out), second.out_dims);
                    UnitSaved::Block {
                        first,
                        second,
                        projection,
                        in_dims,
                    }
                }
                Unit::ConvPool(l, pool) => {
                    let layer = self.conv_bn(l, p, h, dims, &mut stats[l.bn], training, None, true);
                    let od = layer.out_dims;
                    let argmax = if *pool {
                        let (pooled, argmax) = max_pool2x2_forward(&layer.out, od);
                        h = Arc::new(pooled);
                        dims = Dims {
                            h: od.h / 2,
                            w: od.w / 2,
                            ..od
                        };
                        Some(argmax)
                    } else {
                        (h, dims) = (Arc::clone(&layer.out), od);
                        None
                    };
                    UnitSaved::ConvPool { layer, argmax }
                }
            };
            if keep {
                units.push(saved);
            }
        }
        let features = global_avg_pool_forward(&h, dims);
        let k = self.classes;
        let mut logits: Vec<f32> = (0..n)
            .flat_map(|_| p[self.fc_bias.clone()].to_vec())
            .collect();
        gemm(
            n,
            k,
            self.features,
            &features,
            false,
            &p[self.fc_weight.clone()],
            false,
            &mut logits,
            true,
        );
        let trace = keep.then_some(Trace {
            stem,
            units,
            pooled: dims,
            features,
        });
        (logits, trace)
    }

    /// The gradient of the flat parameters from the logits' gradient `d` (N × classes).
    fn backward(&self, p: &[f32], trace: Trace, d: &[f32], training: bool) -> Vec<f32> {
        let (k, f) = (self.classes, self.features);
        let n = d.len() / k;
        let mut dp = vec![0.0f32; p.len()];
        // Head: dW = featuresᵀ · d, db = Σ rows of d, dfeatures = d · Wᵀ.
        gemm(
            f,
            k,
            n,
            &trace.features,
            true,
            d,
            false,
            &mut dp[self.fc_weight.clone()],
            false,
        );
        for row in d.chunks(k) {
            add_into(&mut dp[self.fc_bias.clone()], row);
        }
        let mut dfeatures = vec![0.0f32; n * f];
        gemm(
            n,
            f,
            k,
            d,
            false,
            &p[self.fc_weight.clone()],
            true,
            &mut dfeatures,
            false,
        );
        let mut dh = global_avg_pool_backward(&dfeatures, trace.pooled);
        for (unit, saved) in self.units.iter().zip(trace.units).rev() {
            dh = match (unit, saved) {
                (
                    Unit::Block(c1, c2, shortcut),
                    UnitSaved::Block {
                        first,
                        second,
                        projection,
                        in_dims,
                    },
                ) => {
                    // out = relu(bn2(conv2(relu(bn1(conv1(h))))) + skip(h))
                    relu_backward(&second.out, &mut dh);
                    let mut dr = self
                        .conv_bn_backward(c2, p, &second, &dh, training, &mut dp, true)
                        .expect("input gradient");
                    relu_backward(&first.out, &mut dr);
                    let mut dx = self
                        .conv_bn_backward(c1, p, &first, &dr, training, &mut dp, true)
                        .expect("input gradient");
                    match (shortcut, projection) {
                        (Shortcut::Identity, _) => add_into(&mut dx, &dh),
                        (Shortcut::PadA(width), _) => {
                            add_into(&mut dx, &shortcut_a_backward(&dh, in_dims, *width))
                        }
                        (Shortcut::Projection(l), Some(s)) => add_into(
                            &mut dx,
                            &self
                                .conv_bn_backward(l, p, &s, &dh, training, &mut dp, true)
                                .expect("input gradient"),
                        ),
                        (Shortcut::Projection(_), None) => unreachable!("projection saved"),
                    }
                    dx
                }
                (Unit::ConvPool(l, _), UnitSaved::ConvPool { layer, argmax }) => {
                    if let Some(argmax) = &argmax {
                        dh = max_pool2x2_backward(argmax, &dh, layer.out.len());
                    }
                    relu_backward(&layer.out, &mut dh);
                    self.conv_bn_backward(l, p, &layer, &dh, training, &mut dp, true)
                        .expect("input gradient")
                }
                _ => unreachable!("the trace follows the layout"),
            };
        }
        relu_backward(&trace.stem.out, &mut dh);
        self.conv_bn_backward(&self.stem, p, &trace.stem, &dh, training, &mut dp, false);
        dp
    }
}
