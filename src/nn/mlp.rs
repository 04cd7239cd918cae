//! The fully connected ReLU network (input → hidden… → classes) on dfdx's generic ops.

use std::ops::Range;

use dfdx::prelude::*;
use rand::Rng;
use rand_chacha::ChaCha8Rng;

use super::FlatParams;
use crate::util::Matrix;

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
