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
use super::products::gemm_threaded;
use super::FlatParams;
use crate::util::simd::vectorised;
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
    /// adds the parameters' gradient straight into the gradient buffer (the inputs are data:
    /// they get none).
    pub fn forward_native<T: Tape<f32, Cpu>>(&self, x: Matrix<Cpu, T>) -> Matrix<Cpu, T> {
        let (batch, input) = *x.shape();
        let classes = *self.widths.last().expect("an output layer");
        let (x, x_tape) = x.split_tape();
        let (params, p_tape) = self.params.all.retaped::<T>().split_tape();
        let mut tape = x_tape.merge(p_tape);
        // The parameters and the images are read in place (not copied: 2 MB of parameters and
        // 0.4 MB of images per step for a 784-512-256 MLP); the backward pass holds shared
        // handles to the same buffers.
        let x = x.reshape_like(&(batch * input,));
        let (logits, hidden) =
            self.layout
                .forward(cpu_data(&params), cpu_data(&x), batch, T::OWNS_TAPE);
        let out = x.device().tensor_from_vec(logits, (batch, classes));
        if T::OWNS_TAPE {
            let (pg, og) = (params.ghost(), out.ghost());
            let layout = Arc::clone(&self.layout);
            tape.add_backward_op(move |grads| {
                let d = grads.get_or_alloc_mut(&og)?.clone();
                let dp = grads.get_or_alloc_mut(&pg)?;
                layout.backward(cpu_data(&params), cpu_data(&x), &hidden, &d, dp);
                Ok(())
            });
        }
        out.put_tape(tape)
    }
}

impl MlpLayout {
    /// Logits (N × classes) of `x` (N × input) under parameters `p`, and, when `keep`, every
    /// hidden layer's output (after its ReLU) for the backward pass. Each layer is one product
    /// over the whole batch, spread over the threads by [`gemm_threaded`]: results do not depend
    /// on the thread count.
    fn forward(&self, p: &[f32], x: &[f32], n: usize, keep: bool) -> (Vec<f32>, Vec<Vec<f32>>) {
        let mut hidden: Vec<Vec<f32>> = Vec::new();
        for (l, (w, b)) in self.layers.iter().enumerate() {
            let (fan_in, fan_out) = (self.widths[l], self.widths[l + 1]);
            let h = if l == 0 { x } else { &hidden[hidden.len() - 1] };
            // Every row starts at the bias; the product adds x·W.
            let mut out: Vec<f32> = Vec::with_capacity(n * fan_out);
            for _ in 0..n {
                out.extend_from_slice(&p[b.clone()]);
            }
            gemm_threaded(
                n,
                fan_out,
                fan_in,
                h,
                false,
                &p[w.clone()],
                false,
                &mut out,
                true,
            );
            if l + 1 < self.layers.len() {
                relu(&mut out);
            }
            if !keep && l > 0 {
                hidden.pop(); // its successor is computed: no longer needed
            }
            hidden.push(out);
        }
        let logits = hidden.pop().expect("an output layer");
        (logits, hidden)
    }

    /// Adds the gradient of the flat parameters from the logits' gradient `d` (N × classes) into
    /// `dp`, given the images `x` and the hidden layers' outputs from [`MlpLayout::forward`].
    fn backward(&self, p: &[f32], x: &[f32], hidden: &[Vec<f32>], d: &[f32], dp: &mut [f32]) {
        let n = d.len() / self.widths[self.widths.len() - 1];
        let mut d = d.to_vec();
        for (l, (w, b)) in self.layers.iter().enumerate().rev() {
            let (fan_in, fan_out) = (self.widths[l], self.widths[l + 1]);
            let h = if l == 0 { x } else { &hidden[l - 1] };
            // dW += hᵀ · d over the whole batch (one fixed order of the batch's terms).
            gemm_threaded(
                fan_in,
                fan_out,
                n,
                h,
                true,
                &d,
                false,
                &mut dp[w.clone()],
                true,
            );
            for row in d.chunks(fan_out) {
                add_into(&mut dp[b.clone()], row);
            }
            if l == 0 {
                break; // the images are data: no gradient
            }
            // dh = d · Wᵀ, through the ReLU that produced h.
            let mut dh = vec![0.0f32; n * fan_in];
            gemm_threaded(
                n,
                fan_in,
                fan_out,
                &d,
                false,
                &p[w.clone()],
                true,
                &mut dh,
                false,
            );
            dh.par_chunks_mut(1 << 14)
                .zip(h.par_chunks(1 << 14))
                .for_each(|(g, v)| {
                    // A select written to every value (not a conditional store): it vectorises.
                    vectorised(
                        #[inline(always)]
                        || {
                            for (g, &v) in g.iter_mut().zip(v) {
                                *g = if v <= 0.0 { 0.0 } else { *g };
                            }
                        },
                    )
                });
            d = dh;
        }
    }
}

/// max(v, 0) in place, in parallel chunks.
fn relu(values: &mut [f32]) {
    values.par_chunks_mut(1 << 14).for_each(|c| {
        vectorised(
            #[inline(always)]
            || c.iter_mut().for_each(|v| *v = v.max(0.0)),
        )
    });
}
