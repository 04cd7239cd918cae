//! The CPU path of the convolutional networks: the whole network is a single op on dfdx's tape.
//! The forward pass chains the kernels of [`super::kernels`] on buffers of its own (N × H × W × C),
//! keeping what the backward pass needs; the backward pass walks the layers in reverse and adds
//! into the flat parameter gradient. One op instead of one per layer avoids copying every
//! activation in and out of dfdx tensors, and lets batch norm, the residual add and ReLU run as
//! one pass.

use std::sync::Arc;

use dfdx::prelude::*;

use super::convnet::{ConvBn, ConvNet, NetLayout, Shortcut, Unit};
use super::kernels::{
    add_into, add_into_parallel, batch_moments, batch_norm_forward, batch_norm_grad,
    batch_norm_in_place, conv2d_backward, conv2d_forward, global_avg_pool_backward,
    global_avg_pool_forward, inverse_std, max_pool2x2_backward, max_pool2x2_forward, nchw_to_nhwc,
    relu_backward, shortcut_a_backward, shortcut_a_forward, BatchNormStats, Dims, OutputGrad,
};
use super::products::gemm;
use crate::util::Matrix;

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
                add_into_parallel(grads.get_or_alloc_mut(&pg)?, &dp);
                Ok(())
            });
        }
        out.put_tape(tape)
    }
}

/// How a forward pass runs: with the batch's statistics (training) or the running ones, and
/// whether a backward pass follows (then each layer keeps what it needs for it).
#[derive(Debug, Clone, Copy)]
struct Pass {
    training: bool,
    keep: bool,
}

/// What the backward pass needs from one convolution + batch-norm layer.
struct ConvBnSaved {
    input: Arc<Vec<f32>>,
    in_dims: Dims,
    /// The convolution's output, before batch norm (empty after an evaluation pass).
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

impl NetLayout {
    /// Convolution, batch norm, then `residual` and ReLU as asked.
    #[allow(clippy::too_many_arguments)]
    fn conv_bn(
        &self,
        layer: &ConvBn,
        p: &[f32],
        input: Arc<Vec<f32>>,
        in_dims: Dims,
        stats: &mut BatchNormStats,
        pass: Pass,
        residual: Option<&[f32]>,
        relu: bool,
    ) -> ConvBnSaved {
        let g = &layer.geometry;
        let out_dims = in_dims.conv(g);
        let conv = conv2d_forward(&input, in_dims, &p[layer.weight.clone()], None, g);
        let (mean, var) = if pass.training {
            let (mean, var) = batch_moments(&conv, out_dims);
            stats.update(&mean, &var, out_dims.n * out_dims.plane());
            (mean, var)
        } else {
            (stats.mean.clone(), stats.var.clone())
        };
        let inv_std = inverse_std(&var);
        let (gamma, beta) = (&p[layer.gamma.clone()], &p[layer.beta.clone()]);
        let (conv, out) = if pass.keep {
            let out = batch_norm_forward(
                &conv, out_dims.c, &mean, &inv_std, gamma, beta, residual, relu,
            );
            (conv, out)
        } else {
            // No backward pass follows: normalised in place, the values before are gone.
            let mut out = conv;
            batch_norm_in_place(
                &mut out, out_dims.c, &mean, &inv_std, gamma, beta, residual, relu,
            );
            (Vec::new(), out)
        };
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
        let (grad, dgamma, dbeta) = batch_norm_grad(
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
        // Batch norm's input gradient is computed as the convolution's backward pass reads it
        // (into its frame): no buffer of its own.
        let (dx, dw) = conv2d_backward(
            &saved.input,
            saved.in_dims,
            &p[layer.weight.clone()],
            OutputGrad::BatchNorm {
                grad: &grad,
                d,
                y: &saved.conv,
            },
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
        let pass = Pass { training, keep };
        let input = Arc::new(nchw_to_nhwc(&x, dims));
        let stem = self.conv_bn(stem, p, input, dims, &mut stats[stem.bn], pass, None, true);
        let (mut h, mut dims) = (Arc::clone(&stem.out), stem.out_dims);
        let mut units = Vec::new();
        for unit in &self.units {
            let saved;
            (saved, h, dims) = self.unit_forward(unit, p, stats, h, dims, pass);
            if keep {
                units.push(saved);
            }
        }
        let features = global_avg_pool_forward(&h, dims);
        let logits = self.head_forward(p, &features, n);
        let trace = keep.then_some(Trace {
            stem,
            units,
            pooled: dims,
            features,
        });
        (logits, trace)
    }

    /// One unit (a residual block, or a convolution with optional pooling) on `h`: what its
    /// backward pass needs, and its output with its shape.
    fn unit_forward(
        &self,
        unit: &Unit,
        p: &[f32],
        stats: &mut [BatchNormStats],
        h: Arc<Vec<f32>>,
        dims: Dims,
        pass: Pass,
    ) -> (UnitSaved, Arc<Vec<f32>>, Dims) {
        match unit {
            Unit::Block(c1, c2, shortcut) => {
                let (skip, projection) = match shortcut {
                    Shortcut::Identity => (Arc::clone(&h), None),
                    Shortcut::PadA(width) => (Arc::new(shortcut_a_forward(&h, dims, *width)), None),
                    Shortcut::Projection(l) => {
                        let stats = &mut stats[l.bn];
                        let s = self.conv_bn(l, p, Arc::clone(&h), dims, stats, pass, None, false);
                        (Arc::clone(&s.out), Some(Box::new(s)))
                    }
                };
                let first = self.conv_bn(c1, p, h, dims, &mut stats[c1.bn], pass, None, true);
                let second = self.conv_bn(
                    c2,
                    p,
                    Arc::clone(&first.out),
                    first.out_dims,
                    &mut stats[c2.bn],
                    pass,
                    Some(&skip),
                    true,
                );
                let (out, out_dims) = (Arc::clone(&second.out), second.out_dims);
                let saved = UnitSaved::Block {
                    first,
                    second,
                    projection,
                };
                (saved, out, out_dims)
            }
            Unit::ConvPool(l, pool) => {
                let layer = self.conv_bn(l, p, h, dims, &mut stats[l.bn], pass, None, true);
                let od = layer.out_dims;
                if *pool {
                    let (pooled, argmax) = max_pool2x2_forward(&layer.out, od);
                    let pooled_dims = Dims {
                        h: od.h / 2,
                        w: od.w / 2,
                        ..od
                    };
                    let saved = UnitSaved::ConvPool {
                        layer,
                        argmax: Some(argmax),
                    };
                    (saved, Arc::new(pooled), pooled_dims)
                } else {
                    let out = Arc::clone(&layer.out);
                    (
                        UnitSaved::ConvPool {
                            layer,
                            argmax: None,
                        },
                        out,
                        od,
                    )
                }
            }
        }
    }

    /// The linear head: logits (N × classes) = features · W + b.
    fn head_forward(&self, p: &[f32], features: &[f32], n: usize) -> Vec<f32> {
        let mut logits: Vec<f32> = (0..n)
            .flat_map(|_| p[self.fc_bias.clone()].to_vec())
            .collect();
        gemm(
            n,
            self.classes,
            self.features,
            features,
            false,
            &p[self.fc_weight.clone()],
            false,
            &mut logits,
            true,
        );
        logits
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
            dh = self.unit_backward(unit, saved, p, dh, training, &mut dp);
        }
        relu_backward(&trace.stem.out, &mut dh);
        self.conv_bn_backward(&self.stem, p, &trace.stem, &dh, training, &mut dp, false);
        dp
    }

    /// One unit's backward pass from `dh`, the gradient at its output: adds into `dp` and
    /// returns the gradient at its input.
    fn unit_backward(
        &self,
        unit: &Unit,
        saved: UnitSaved,
        p: &[f32],
        mut dh: Vec<f32>,
        training: bool,
        dp: &mut [f32],
    ) -> Vec<f32> {
        let input_grad = "the input gradient is asked for";
        match (unit, saved) {
            (
                Unit::Block(c1, c2, shortcut),
                UnitSaved::Block {
                    first,
                    second,
                    projection,
                },
            ) => {
                // out = relu(bn2(conv2(relu(bn1(conv1(h))))) + skip(h))
                relu_backward(&second.out, &mut dh);
                let mut dr = self
                    .conv_bn_backward(c2, p, &second, &dh, training, dp, true)
                    .expect(input_grad);
                relu_backward(&first.out, &mut dr);
                let mut dx = self
                    .conv_bn_backward(c1, p, &first, &dr, training, dp, true)
                    .expect(input_grad);
                let skip = match (shortcut, projection) {
                    (Shortcut::Identity, _) => dh,
                    (Shortcut::PadA(width), _) => shortcut_a_backward(&dh, first.in_dims, *width),
                    (Shortcut::Projection(l), Some(s)) => self
                        .conv_bn_backward(l, p, &s, &dh, training, dp, true)
                        .expect(input_grad),
                    (Shortcut::Projection(_), None) => unreachable!("projection saved"),
                };
                add_into_parallel(&mut dx, &skip);
                dx
            }
            (Unit::ConvPool(l, _), UnitSaved::ConvPool { layer, argmax }) => {
                if let Some(argmax) = &argmax {
                    dh = max_pool2x2_backward(argmax, &dh, layer.out.len());
                }
                relu_backward(&layer.out, &mut dh);
                self.conv_bn_backward(l, p, &layer, &dh, training, dp, true)
                    .expect(input_grad)
            }
            _ => unreachable!("the trace follows the layout"),
        }
    }
}
