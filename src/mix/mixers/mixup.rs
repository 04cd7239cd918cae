//! Mixup (Zhang et al. 2018): x̃_i = λ_i · x_i + (1 − λ_i) · x_π(i).

use rand::RngCore;
use rayon::prelude::*;

use super::MixInputs;
use crate::data::ImageShape;
use crate::util::simd::vectorised;

pub struct Mixup;

impl MixInputs for Mixup {
    const DEFAULT_ALPHA: f64 = 0.2;
    fn mix(
        x: &[f32],
        shape: ImageShape,
        partner: &[usize],
        lambda: &mut [f64],
        _per_sample: bool,
        _rng: &mut dyn RngCore,
    ) -> Vec<f32> {
        mixup_inputs(x, shape.numel(), partner, lambda)
    }
}

/// x̃_i = λ_i · x_i + (1 − λ_i) · x_π(i), rows of `dim` values.
pub fn mixup_inputs(x: &[f32], dim: usize, partner: &[usize], lambda: &[f64]) -> Vec<f32> {
    let mut out = vec![0.0; x.len()];
    // One image per task, vectorised at the run-time level: the same bits as a plain loop.
    out.par_chunks_mut(dim.max(1))
        .enumerate()
        .for_each(|(i, row)| {
            let (a, b) = (
                &x[i * dim..(i + 1) * dim],
                &x[partner[i] * dim..(partner[i] + 1) * dim],
            );
            let l = lambda[i] as f32;
            vectorised(
                #[inline(always)]
                || {
                    for ((o, &xa), &xb) in row.iter_mut().zip(a).zip(b) {
                        *o = l * xa + (1.0 - l) * xb;
                    }
                },
            )
        });
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mixup_is_convex_combination() {
        let x = [1.0, 2.0, 10.0, 20.0];
        let out = mixup_inputs(&x, 2, &[1, 0], &[0.25, 0.25]);
        assert_eq!(out, vec![7.75, 15.5, 3.25, 6.5]);
    }
}
