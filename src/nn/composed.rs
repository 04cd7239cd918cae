//! The convolutional layers composed from dfdx's own differentiable ops, for devices where the CPU
//! kernels of [`super::kernels`] do not run: on CUDA, dfdx's device internals are crate-private
//! (`docs/dependencies.md`), but its matrix products, permutes, reductions and element-wise ops all run there.
//!
//! A convolution is three matrix products: two constant 0/1 gather matrices pick each kernel
//! tap's columns and then rows (stride and zero padding included), which lays the patches out as
//! im2col rows, and the weight matrix does the rest. Max pooling is a maximum over gathered
//! windows and the option-A shortcut a 1×1, stride-2 "convolution" with a fixed identity weight.
//! The same code runs on the CPU in the tests, where it must agree with the native kernels.

use std::ops::Range;
use std::sync::Arc;

use dfdx::prelude::*;

use super::convnet::{ConvBn, ConvNet, Shortcut, Unit};
use super::kernels::{inverse_std, BatchNormStats, ConvGeometry, BN_EPS};
use crate::util::Matrix;

/// A batch of images, N × C × H × W, on any device.
pub type Image<D, T = NoneTape> = Tensor<(usize, usize, usize, usize), f32, D, T>;

/// Gather matrix of one axis (size × k·out, row-major): column `kx·out + o` has a single 1 in
/// row `o·stride + kx − padding`, or is all zero where that row falls in the padding.
pub fn gather_matrix(
    size: usize,
    out: usize,
    kernel: usize,
    stride: usize,
    padding: usize,
) -> Vec<f32> {
    let mut m = vec![0.0f32; size * kernel * out];
    for kx in 0..kernel {
        for o in 0..out {
            let i = (o * stride + kx) as isize - padding as isize;
            if (0..size as isize).contains(&i) {
                m[i as usize * kernel * out + kx * out + o] = 1.0;
            }
        }
    }
    m
}

/// The patches of `x` gathered for a `kernel`-tap window: (N, C, Kx, Wo, Ky, Ho).
#[allow(clippy::type_complexity)]
fn gather_windows<D: Device<f32>, T: Tape<f32, D>>(
    x: Image<D, T>,
    kernel: usize,
    stride: usize,
    padding: usize,
    (ho, wo): (usize, usize),
) -> Tensor<(usize, usize, usize, usize, usize, usize), f32, D, T> {
    let dev = x.device().clone();
    let (n, c, h, w) = *x.shape();
    let k = kernel;
    let cols: Tensor<(usize, usize), f32, D> =
        dev.tensor_from_vec(gather_matrix(w, wo, k, stride, padding), (w, k * wo));
    let rows: Tensor<(usize, usize), f32, D> =
        dev.tensor_from_vec(gather_matrix(h, ho, k, stride, padding), (h, k * ho));
    // (N·C·H, W) · (W, Kx·Wo) → (N·C, H, Kx·Wo)
    let t = x
        .reshape_like(&(n * c * h, w))
        .matmul(cols)
        .reshape_like(&(n * c, h, k * wo));
    // (N·C·Kx·Wo, H) · (H, Ky·Ho) → (N, C, Kx, Wo, Ky, Ho)
    t.permute::<(usize, usize, usize), Axes3<0, 2, 1>>()
        .reshape_like(&(n * c * k * wo, h))
        .matmul(rows)
        .reshape_like(&(n, c, k, wo, k, ho))
}

/// 2-D convolution without bias; `weight` is (Cout, Cin, k, k) flattened, trained (on the tape)
/// or constant.
pub fn conv2d<D: Device<f32>, T: Tape<f32, D> + Merge<R>, R: Tape<f32, D>>(
    x: Image<D, T>,
    weight: Tensor<(usize,), f32, D, R>,
    g: &ConvGeometry,
) -> Image<D, T> {
    let (n, c, h, w) = *x.shape();
    assert_eq!(c, g.in_channels, "conv2d: input channels");
    let (k, ho, wo) = (g.kernel, g.out_size(h), g.out_size(w));
    let windows = gather_windows(x, k, g.stride, g.padding, (ho, wo));
    // (N, Ho, Wo, C, Ky, Kx): one im2col row per output pixel.
    let patches = windows
        .permute::<(usize, usize, usize, usize, usize, usize), Axes6<0, 5, 3, 1, 4, 2>>()
        .reshape_like(&(n * ho * wo, c * k * k));
    let weight = weight
        .reshape_like(&(g.out_channels, c * k * k))
        .permute::<(usize, usize), Axes2<1, 0>>();
    patches
        .matmul(weight)
        .reshape_like(&(n, ho, wo, g.out_channels))
        .permute::<(usize, usize, usize, usize), Axes4<0, 3, 1, 2>>()
}

/// 2-D batch normalisation: batch statistics (and a running-statistics update) when training,
/// running statistics otherwise.
pub fn batch_norm2d<D: Device<f32>, T: Tape<f32, D>>(
    y: Image<D, T>,
    gamma: Tensor<(usize,), f32, D, T>,
    beta: Tensor<(usize,), f32, D, T>,
    stats: &mut BatchNormStats,
    training: bool,
) -> Image<D, T> {
    let shape = *y.shape();
    let (n, c, h, w) = shape;
    let dev = y.device().clone();
    let xhat = if training {
        // (y − μ) / √(σ² + ε) with the batch moments, each computed once; their values also
        // update the running statistics.
        let mean = y.retaped::<T>().mean::<(usize,), Axes3<0, 2, 3>>();
        let mean_values = mean.as_vec();
        let centered = y - mean.broadcast_like::<_, Axes3<0, 2, 3>>(&shape);
        let var = centered
            .retaped::<T>()
            .square()
            .mean::<(usize,), Axes3<0, 2, 3>>();
        stats.update(&mean_values, &var.as_vec(), n * h * w);
        let inv_std = (var + BN_EPS).sqrt().recip();
        centered * inv_std.broadcast_like::<_, Axes3<0, 2, 3>>(&shape)
    } else {
        let mean: Tensor<(usize,), f32, D> = dev.tensor_from_vec(stats.mean.clone(), (c,));
        let inv: Tensor<(usize,), f32, D> = dev.tensor_from_vec(inverse_std(&stats.var), (c,));
        (y - mean.broadcast_like::<_, Axes3<0, 2, 3>>(&shape))
            * inv.broadcast_like::<_, Axes3<0, 2, 3>>(&shape)
    };
    xhat * gamma.broadcast_like::<_, Axes3<0, 2, 3>>(&shape)
        + beta.broadcast_like::<_, Axes3<0, 2, 3>>(&shape)
}

/// 2 × 2 max pooling with stride 2 (odd trailing rows/columns dropped).
pub fn max_pool2x2<D: Device<f32>, T: Tape<f32, D>>(x: Image<D, T>) -> Image<D, T> {
    let (_, _, h, w) = *x.shape();
    gather_windows(x, 2, 2, 0, (h / 2, w / 2))
        .max::<(usize, usize, usize, usize), Axes2<2, 4>>()
        .permute::<(usize, usize, usize, usize), Axes4<0, 1, 3, 2>>()
}

/// The CIFAR ResNet's option-A shortcut: every second row and column, channels zero-padded.
pub fn shortcut_a<D: Device<f32>, T: Tape<f32, D>>(
    x: Image<D, T>,
    out_channels: usize,
) -> Image<D, T> {
    let c = x.shape().1;
    let mut eye = vec![0.0f32; out_channels * c];
    for ch in 0..c {
        eye[ch * c + ch] = 1.0;
    }
    let weight: Tensor<(usize,), f32, D> = x.device().tensor_from_vec(eye, (out_channels * c,));
    let g = ConvGeometry {
        in_channels: c,
        out_channels,
        kernel: 1,
        stride: 2,
        padding: 0,
    };
    conv2d(x, weight, &g)
}

/// Mean over each channel's plane: (N, C, H, W) → (N, C).
pub fn global_avg_pool<D: Device<f32>, T: Tape<f32, D>>(
    x: Image<D, T>,
) -> Tensor<(usize, usize), f32, D, T> {
    x.mean::<(usize, usize), Axes2<2, 3>>()
}

impl<D: Device<f32>> ConvNet<D> {
    /// The network built from dfdx's own ops, on any device (the CUDA path).
    pub fn forward_composed<T: Tape<f32, D>>(
        &mut self,
        x: Matrix<D, T>,
        training: bool,
    ) -> Matrix<D, T> {
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
