//! The fully connected ReLU network (input → hidden… → classes). On the CPU the whole network is
//! one op on dfdx's tape ([`Mlp::forward_native`]) whose backward pass *adds* into the flat
//! parameter gradient: composing it from dfdx's ops would slice the flat parameter tensor, and
//! dfdx's CPU slice backward overwrites gradients (`docs/dependencies.md`), which silently dropped
//! RegMixup's clean-pass gradient. The same network from dfdx's ops ([`Mlp::forward_composed`])
//! serves devices without our kernels (CUDA, whose slice backward adds).

use std::ops::Range;
use std::sync::Arc;

use dfdx::prelude::*;
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;

use super::kernels::add_into;
use super::products::gemm;
use super::FlatParams;
use crate::util::tensor::cpu_data;
use crate::util::Matrix;

/// Fully connected ReLU network: input → hidden… → classes.
#[derive(Debug, Clone)]
pub struct Mlp<D: Device<f32>> {
    /// Layer widths, input first, classes last.
    pub widths: Vec<usize>,
    pub params: FlatParams<f32, D>,
    layout: Arc<MlpLayout>,
}

/// Where each layer's weight (in × out, row-major) and bias sit in the flat parameters.
#[derive(Debug)]
struct MlpLayout {
    widths: Vec<usize>,
    layers: Vec<(Range<usize>, Range<usize>)>,
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
        let mut layers = Vec::new();
        for w in widths.windows(2) {
            let (fan_in, fan_out) = (w[0], w[1]);
            let bound = 1.0 / (fan_in as f32).sqrt();
            let start = values.len();
            values.extend((0..fan_in * fan_out + fan_out).map(|_| rng.gen_range(-bound..bound)));
            let split = start + fan_in * fan_out;
            layers.push((start..split, split..values.len()));
        }
        let n = values.len();
        Mlp {
            widths: widths.clone(),
            params: FlatParams {
                all: dev.tensor_from_vec(values, (n,)),
            },
            layout: Arc::new(MlpLayout { widths, layers }),
        }
    }

    /// The network from dfdx's own ops (slices of the flat parameters): for devices without our
    /// kernels. On the CPU, use [`Mlp::forward_native`]: two passes over the parameters in one
    /// step would lose a gradient there.
    pub fn forward_composed<T: Tape<f32, D>>(&self, x: Matrix<D, T>) -> Matrix<D, T> {
        let batch = x.shape().0;
        let layers = self.layout.layers.len();
        let mut h = x;
        for (l, (w_range, b_range)) in self.layout.layers.iter().enumerate() {
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

impl Mlp<Cpu> {
    /// The network as one op on the tape, on our kernels. With an owned tape, the backward pass
    /// adds the parameters' gradient (the inputs are data: they get none).
    pub fn forward_native<T: Tape<f32, Cpu>>(&self, x: Matrix<Cpu, T>) -> Matrix<Cpu, T> {
        let batch = x.shape().0;
        let classes = *self.widths.last().expect("an output layer");
        let (x, x_tape) = x.split_tape();
        let (params, p_tape) = self.params.all.retaped::<T>().split_tape();
        let mut tape = x_tape.merge(p_tape);
        // The parameters are read in place (not copied: 2 MB per step and per evaluated batch
        // for a 784-512-256 MLP); the backward pass holds a shared handle to the same buffer.
        let (logits, activations) =
            self.layout
                .forward(cpu_data(&params), x.as_vec(), batch, T::OWNS_TAPE);
        let out = x.device().tensor_from_vec(logits, (batch, classes));
        if T::OWNS_TAPE {
            let (pg, og) = (params.ghost(), out.ghost());
            let layout = Arc::clone(&self.layout);
            tape.add_backward_op(move |grads| {
                let d = grads.get_or_alloc_mut(&og)?.clone();
                let dp = layout.backward(cpu_data(&params), &activations, &d);
                add_into(grads.get_or_alloc_mut(&pg)?, &dp);
                Ok(())
            });
        }
        out.put_tape(tape)
    }
}

/// Rows per matrix product. The grouping depends only on the batch size, never on the thread
/// count, so the sums over rows (weight gradients) are the same whatever the threads.
const ROWS: usize = 64;

impl MlpLayout {
    /// Logits (N × classes) of `x` (N × input) under parameters `p`, and, when `keep`, every
    /// layer's input (the images, then each hidden layer after its ReLU) for the backward pass.
    fn forward(&self, p: &[f32], x: Vec<f32>, n: usize, keep: bool) -> (Vec<f32>, Vec<Vec<f32>>) {
        let mut inputs = Vec::new();
        let mut h = x;
        for (l, (w, b)) in self.layers.iter().enumerate() {
            let (fan_in, fan_out) = (self.widths[l], self.widths[l + 1]);
            let relu = l + 1 < self.layers.len();
            let mut out = vec![0.0f32; n * fan_out];
            out.par_chunks_mut(ROWS * fan_out)
                .zip(h.par_chunks(ROWS * fan_in))
                .for_each(|(o, hi)| {
                    let rows = o.len() / fan_out;
                    for row in o.chunks_mut(fan_out) {
                        row.copy_from_slice(&p[b.clone()]);
                    }
                    gemm(
                        rows,
                        fan_out,
                        fan_in,
                        hi,
                        false,
                        &p[w.clone()],
                        false,
                        o,
                        true,
                    );
                    if relu {
                        o.iter_mut().for_each(|v| *v = v.max(0.0));
                    }
                });
            if keep {
                inputs.push(h);
            }
            h = out;
        }
        (h, inputs)
    }

    /// The gradient of the flat parameters from the logits' gradient `d` (N × classes), given
    /// every layer's input from [`MlpLayout::forward`].
    fn backward(&self, p: &[f32], inputs: &[Vec<f32>], d: &[f32]) -> Vec<f32> {
        let mut dp = vec![0.0f32; p.len()];
        let mut d = d.to_vec();
        for (l, (w, b)) in self.layers.iter().enumerate().rev() {
            let (fan_in, fan_out) = (self.widths[l], self.widths[l + 1]);
            let h = &inputs[l];
            // dW = hᵀ · d, as fixed row groups' partial products added in order.
            let partials: Vec<Vec<f32>> = h
                .par_chunks(ROWS * fan_in)
                .zip(d.par_chunks(ROWS * fan_out))
                .map(|(hi, di)| {
                    let mut dw = vec![0.0f32; fan_in * fan_out];
                    let rows = di.len() / fan_out;
                    gemm(fan_in, fan_out, rows, hi, true, di, false, &mut dw, false);
                    dw
                })
                .collect();
            for dw in &partials {
                add_into(&mut dp[w.clone()], dw);
            }
            for row in d.chunks(fan_out) {
                add_into(&mut dp[b.clone()], row);
            }
            if l == 0 {
                break; // the images are data: no gradient
            }
            // dh = d · Wᵀ, through the ReLU that produced h.
            let mut dh = vec![0.0f32; h.len()];
            dh.par_chunks_mut(ROWS * fan_in)
                .zip(d.par_chunks(ROWS * fan_out))
                .zip(h.par_chunks(ROWS * fan_in))
                .for_each(|((dhi, di), hi)| {
                    let rows = di.len() / fan_out;
                    gemm(
                        rows,
                        fan_in,
                        fan_out,
                        di,
                        false,
                        &p[w.clone()],
                        true,
                        dhi,
                        false,
                    );
                    for (g, &v) in dhi.iter_mut().zip(hi) {
                        if v <= 0.0 {
                            *g = 0.0;
                        }
                    }
                });
            d = dh;
        }
        dp
    }
}
