//! SGD with momentum and weight decay, PyTorch conventions:
//! d = g + wd·p; v = μ·v + d; p = p − lr·v (v starts at 0, so the first step is p − lr·d).

use dfdx::prelude::*;

use super::FlatParams;
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
    /// [`Sgd::step`] in one pass over the parameters, in place: the same f32 arithmetic in the
    /// same order (the results are bit-identical), without the tensor ops' five temporaries
    /// and passes (an eighth of an MLP step).
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
        let squares = g.iter().fold(0.0f32, |sum, v| sum + v * v);
        let norm = (squares as f64).sqrt();
        let scale = match clip {
            Some(max) if norm > max => max / norm,
            _ => 1.0,
        };
        let decay = self.weight_decay != 0.0 || scale != 1.0;
        let (scale, wd) = (scale as f32, self.weight_decay as f32);
        let (mu, step) = (self.momentum as f32, -lr as f32);
        let p = cpu_data_mut(&mut params.all);
        let v = cpu_data_mut(&mut self.velocity);
        for ((p, v), &g) in p.iter_mut().zip(v.iter_mut()).zip(g) {
            let d = if decay { g * scale + *p * wd } else { g };
            *v = *v * mu + d * 1.0;
            *p = *p * 1.0 + *v * step;
        }
        norm
    }
}
