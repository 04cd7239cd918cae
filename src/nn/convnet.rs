//! Convolutional networks: the CIFAR ResNet-(6n+2) of He et al. 2016 (widths 16/32/64,
//! parameter-free "option A" shortcuts), ResNet-18/34 in the official ICM code's CIFAR form (3×3
//! stem, no max-pool, widths 64–512, BasicBlocks, 1×1 projection shortcuts), and a small CNN for
//! 8×8 and 28×28 inputs. As for the MLP, every parameter lives in one flat tensor; batch-norm
//! running statistics are kept beside it.
//!
//! This module lays the networks out (parameters, layers, initialisation); the passes live in
//! [`super::native`] (the CPU: the whole network as one op on dfdx's tape) and
//! [`super::composed`] (any device, from dfdx's own ops: the CUDA path).

use std::ops::Range;
use std::sync::Arc;

use dfdx::prelude::*;
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Normal};

use super::arch::{Arch, Family};
use super::kernels::{BatchNormStats, ConvGeometry};
use super::{FlatParams, NetDevice};
use crate::data::ImageShape;
use crate::util::Matrix;

/// A bias-free convolution followed by batch normalisation.
#[derive(Debug, Clone)]
pub(crate) struct ConvBn {
    pub(crate) geometry: ConvGeometry,
    pub(crate) weight: Range<usize>,
    pub(crate) gamma: Range<usize>,
    pub(crate) beta: Range<usize>,
    /// Index of its running statistics.
    pub(crate) bn: usize,
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
    pub arch: Arch,
    pub input: ImageShape,
    pub classes: usize,
    pub params: FlatParams<f32, D>,
    pub bn_stats: Vec<BatchNormStats>,
    pub(crate) layout: Arc<NetLayout>,
}

/// Where each layer's parameters sit in the flat tensor, and how the layers connect.
#[derive(Debug)]
pub(crate) struct NetLayout {
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

    /// Stages of BasicBlocks: `blocks[s]` blocks of width `widths[s]`, the first block of every
    /// stage after the first with stride 2. Where the shape changes the shortcut is option A
    /// (parameter-free) or, with `projection`, a 1×1 convolution + batch norm.
    fn residual_stages(
        &mut self,
        mut cin: usize,
        widths: &[usize],
        blocks: &[usize],
        projection: bool,
    ) -> Vec<Unit> {
        let mut units = Vec::new();
        for (stage, (&width, &count)) in widths.iter().zip(blocks).enumerate() {
            for j in 0..count {
                let stride = if stage > 0 && j == 0 { 2 } else { 1 };
                let c1 = self.conv_bn(cin, width, 3, stride);
                let c2 = self.conv_bn(width, width, 3, 1);
                let shortcut = if stride == 1 && cin == width {
                    Shortcut::Identity
                } else if projection {
                    Shortcut::Projection(self.conv_bn(cin, width, 1, stride))
                } else {
                    Shortcut::PadA(width)
                };
                units.push(Unit::Block(c1, c2, shortcut));
                cin = width;
            }
        }
        units
    }

    /// The small CNN after its stem: conv64 and conv128, each pooled 2×2 while the feature map
    /// is at least 2×2 (8×8 → 4×4 → 2×2; 28 → 14 → 7).
    fn small_cnn_units(&mut self, input: ImageShape) -> Vec<Unit> {
        let pool_first = input.height >= 2 && input.width >= 2;
        let (h, w) = if pool_first {
            (input.height / 2, input.width / 2)
        } else {
            (input.height, input.width)
        };
        let second = self.conv_bn(32, 64, 3, 1);
        let third = self.conv_bn(64, 128, 3, 1);
        vec![
            Unit::ConvPool(second, pool_first),
            Unit::ConvPool(third, h >= 2 && w >= 2),
        ]
    }

    /// The linear head (PyTorch's `nn.Linear` initialisation): weight and bias ranges.
    fn head(&mut self, features: usize, classes: usize) -> (Range<usize>, Range<usize>) {
        let bound = 1.0 / (features as f32).sqrt();
        let fc: Vec<f32> = (0..features * classes)
            .map(|_| self.rng.gen_range(-bound..bound))
            .collect();
        let weight = self.take(fc);
        let fc_b: Vec<f32> = (0..classes)
            .map(|_| self.rng.gen_range(-bound..bound))
            .collect();
        (weight, self.take(fc_b))
    }
}

impl<D: Device<f32>> ConvNet<D> {
    /// Lays out `arch` for images of `input` and `classes` classes, initialised from `rng`
    /// (Kaiming-normal convolutions, γ = 1, β = 0, a uniform head).
    pub fn new(
        arch: Arch,
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
        let (stem, units, features) = match arch.family() {
            Family::Mlp => panic!("the MLP is not a convolutional network"),
            Family::CifarResnet(depth) => {
                let n = (depth - 2) / 6;
                let stem = b.conv_bn(c, 16, 3, 1);
                (
                    stem,
                    b.residual_stages(16, &[16, 32, 64], &[n; 3], false),
                    64,
                )
            }
            Family::Resnet(blocks) => {
                let stem = b.conv_bn(c, 64, 3, 1);
                let widths = [64, 128, 256, 512];
                (stem, b.residual_stages(64, &widths, &blocks, true), 512)
            }
            Family::SmallCnn => {
                let stem = b.conv_bn(c, 32, 3, 1);
                (stem, b.small_cnn_units(input), 128)
            }
        };
        let (fc_weight, fc_bias) = b.head(features, classes);
        let n = b.values.len();
        ConvNet {
            arch,
            input,
            classes,
            params: FlatParams {
                all: dev.tensor_from_vec(b.values, (n,)),
            },
            bn_stats: b.bn_stats,
            layout: Arc::new(NetLayout {
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
}

impl<D: NetDevice> ConvNet<D> {
    /// Logits for a batch of flattened images (B × C·H·W). `training` uses batch statistics in
    /// batch norm and updates the running ones.
    pub fn forward<T: Tape<f32, D>>(&mut self, x: Matrix<D, T>, training: bool) -> Matrix<D, T> {
        D::convnet_forward(self, x, training)
    }
}
