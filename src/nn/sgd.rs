//! SGD with momentum and weight decay, PyTorch conventions:
//! d = g + wd·p; v = μ·v + d; p = p − lr·v (v starts at 0, so the first step is p − lr·d).

use dfdx::prelude::*;

use super::FlatParams;

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
