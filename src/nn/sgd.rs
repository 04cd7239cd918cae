//! SGD with momentum and weight decay, PyTorch conventions:
//! d = g + wd·p; v = μ·v + d; p = p − lr·v (v starts at 0, so the first step is p − lr·d).

use dfdx::prelude::*;
use rayon::prelude::*;

use super::FlatParams;
use crate::util::simd::vectorised;
use crate::util::tensor::cpu_data_mut;

#[derive(Debug, Clone)]
pub struct Sgd<D: Device<f32>> {
    pub momentum: f64,
    pub weight_decay: f64,
    /// Velocity of every parameter, laid out like the flat parameter tensor.
    pub velocity: Tensor<(usize,), f32, D>,
}

impl<D: Device<f32>> Sgd<D> {
    pub fn new(params: &FlatParams<f32, D>, momentum: f64, weight_decay: f64) -> Self {
        Sgd {
            momentum,
            weight_decay,
            velocity: params.all.device().zeros_like(params.all.shape()),
        }
    }

    /// Updates `params` in place from `grads` (as returned by `backward()`), the gradient
    /// scaled down to `clip` when its norm exceeds it. Returns the gradient's norm before
    /// clipping.
    pub fn step(
        &mut self,
        params: &mut FlatParams<f32, D>,
        grads: &Gradients<f32, D>,
        lr: f64,
        clip: Option<f64>,
    ) -> f64 {
        let mut d = grads.get(&params.all);
        let norm = (d.clone().square().sum::<Rank0, _>().as_vec()[0] as f64).sqrt();
        let scale = match clip {
            Some(max) if norm > max => max / norm,
            _ => 1.0,
        };
        if self.weight_decay != 0.0 || scale != 1.0 {
            d.axpy(scale, &params.all, self.weight_decay);
        }
        self.velocity.axpy(self.momentum, &d, 1.0);
        params.all.axpy(1.0, &self.velocity, -lr);
        norm
    }
}

impl Sgd<Cpu> {
    /// [`Sgd::step`] in one parallel pass over the parameters, in place, without the tensor
    /// ops' five temporaries and passes: the same f32 update arithmetic in the same order, so
    /// parameters and velocity are bit-identical to [`Sgd::step`]'s whenever the gradient is not
    /// clipped. The norm is [`gradient_norm`]'s (it differs from the tensor ops' sum in the last
    /// bits, and so does a clipped step).
    pub fn step_in_place(
        &mut self,
        params: &mut FlatParams<f32, Cpu>,
        grads: &mut Gradients<f32, Cpu>,
        lr: f64,
        clip: Option<f64>,
    ) -> f64 {
        let g: &[f32] = grads
            .get_or_alloc_mut(&params.all)
            .expect("the CPU allocates the gradient");
        let norm = gradient_norm(g);
        let scale = match clip {
            Some(max) if norm > max => max / norm,
            _ => 1.0,
        };
        let decay = self.weight_decay != 0.0 || scale != 1.0;
        let (scale, wd) = (scale as f32, self.weight_decay as f32);
        let (mu, step) = (self.momentum as f32, -lr as f32);
        let p = cpu_data_mut(&mut params.all);
        let v = cpu_data_mut(&mut self.velocity);
        p.par_chunks_mut(CHUNK)
            .zip(v.par_chunks_mut(CHUNK))
            .zip(g.par_chunks(CHUNK))
            .for_each(|((p, v), g)| {
                // Equal lengths and the branch outside the loops: both loops vectorise.
                vectorised(
                    #[inline(always)]
                    || {
                        let n = p.len();
                        let (v, g) = (&mut v[..n], &g[..n]);
                        if decay {
                            for i in 0..n {
                                let d = g[i] * scale + p[i] * wd;
                                v[i] = v[i] * mu + d * 1.0;
                                p[i] = p[i] * 1.0 + v[i] * step;
                            }
                        } else {
                            for i in 0..n {
                                v[i] = v[i] * mu + g[i] * 1.0;
                                p[i] = p[i] * 1.0 + v[i] * step;
                            }
                        }
                    },
                )
            });
        norm
    }
}

/// Values per chunk of the parallel passes over the parameters. Fixed, so that the gradient
/// norm adds the same partial sums in the same order whatever the number of threads.
const CHUNK: usize = 1 << 14;

/// The Euclidean norm of a gradient: each fixed chunk's squares summed in 16 interleaved f32
/// lanes (a sequential f32 sum waits on every addition: a tenth of an MLP step), the chunks'
/// sums added in order in f64. Bit-identical whatever the number of threads.
pub fn gradient_norm(g: &[f32]) -> f64 {
    let partials: Vec<f64> = g
        .par_chunks(CHUNK)
        .map(|chunk| {
            vectorised(
                #[inline(always)]
                || {
                    let mut lanes = [0.0f32; 16];
                    let mut blocks = chunk.chunks_exact(16);
                    for block in blocks.by_ref() {
                        for (lane, &v) in lanes.iter_mut().zip(block) {
                            *lane += v * v;
                        }
                    }
                    let tail: f32 = blocks.remainder().iter().map(|v| v * v).sum();
                    lanes.iter().map(|&l| l as f64).sum::<f64>() + tail as f64
                },
            )
        })
        .collect();
    partials.iter().sum::<f64>().sqrt()
}
