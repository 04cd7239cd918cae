//! The mixing rule, in one place (`docs/methods.md`): draw λ ~ Beta(α, α) and a partner
//! permutation π, mix the inputs with the method's mixer ([`super::mixers`]), then set each
//! sample's label weight λ_y (standard or Remix) and build the soft targets
//! t_i = λ_y,i · e_{y_i} + (1 − λ_y,i) · e_{y_π(i)} (optionally label-smoothed:
//! t := (1 − ε)·t + ε/C).
//!
//! Works on plain `f32` slices (row-major, one image per row) so it can feed any trainer.

use rand::seq::SliceRandom;
use rand::Rng;
use rand_distr::{Beta, Distribution};

use super::method::{LabelRule, LambdaSampling, Method};
use super::mixers::Mixer;
use crate::data::ImageShape;

/// A mixed mini-batch, ready for the loss.
#[derive(Debug, Clone, PartialEq)]
pub struct MixedBatch {
    /// B × D mixed inputs.
    pub inputs: Vec<f32>,
    /// B × C soft targets (rows sum to 1).
    pub targets: Vec<f32>,
    /// Partner of each sample.
    pub partner: Vec<usize>,
    /// Input-mixing weight of each sample's own image (after CutMix correction).
    pub lambda: Vec<f64>,
    /// Weight of each sample's own label in its target (after the label rule).
    pub label_weight: Vec<f64>,
}

/// λ ~ Beta(α, α).
pub fn sample_lambda<R: Rng>(alpha: f64, rng: &mut R) -> f64 {
    Beta::new(alpha, alpha)
        .expect("alpha > 0 is checked when the experiment is loaded")
        .sample(rng)
}

/// A uniformly random permutation of 0..b.
pub fn random_permutation<R: Rng>(b: usize, rng: &mut R) -> Vec<usize> {
    let mut p: Vec<usize> = (0..b).collect();
    p.shuffle(rng);
    p
}

/// Weight λ_y of the sample's own label. `counts` are the training split's class counts.
pub fn label_weight(
    rule: LabelRule,
    lambda: f64,
    y: usize,
    y_partner: usize,
    counts: &[usize],
    kappa: f64,
    tau: f64,
) -> f64 {
    match rule {
        LabelRule::Standard => lambda,
        LabelRule::Remix => {
            let ratio = counts[y] as f64 / counts[y_partner] as f64;
            if ratio >= kappa && lambda < tau {
                0.0
            } else if ratio <= 1.0 / kappa && 1.0 - lambda < tau {
                1.0
            } else {
                lambda
            }
        }
    }
}

/// t_i = w_i · e_{y_i} + (1 − w_i) · e_{y_π(i)}, as a B × C row-major matrix.
pub fn soft_targets(
    labels: &[usize],
    partner: &[usize],
    weight: &[f64],
    classes: usize,
) -> Vec<f32> {
    let mut t = vec![0.0f32; labels.len() * classes];
    for i in 0..labels.len() {
        t[i * classes + labels[i]] += weight[i] as f32;
        t[i * classes + labels[partner[i]]] += (1.0 - weight[i]) as f32;
    }
    t
}

/// Applies `method`'s mixer and label rule to a batch. All randomness comes from `rng`, in this
/// order: the partner permutation, λ (one per batch or one per sample), then the mixer's own
/// draws (CutMix's box centres).
pub fn mix_batch<R: Rng>(
    method: &Method,
    x: &[f32],
    labels: &[usize],
    shape: ImageShape,
    classes: usize,
    class_counts: &[usize],
    rng: &mut R,
) -> MixedBatch {
    let b = labels.len();
    let (partner, lambda, inputs) = match method.mixer {
        Mixer::None => ((0..b).collect(), vec![1.0; b], x.to_vec()),
        mixer => {
            let alpha = method.alpha.expect("a mixer always has alpha");
            let partner = random_permutation(b, rng);
            let per_sample = method.lambda.unwrap_or_default() == LambdaSampling::PerSample;
            let mut lambda = if per_sample {
                (0..b).map(|_| sample_lambda(alpha, rng)).collect()
            } else {
                vec![sample_lambda(alpha, rng); b]
            };
            let inputs = mixer.mix(x, shape, &partner, &mut lambda, per_sample, rng);
            (partner, lambda, inputs)
        }
    };
    let label_weight: Vec<f64> = (0..b)
        .map(|i| {
            label_weight(
                method.label_rule,
                lambda[i],
                labels[i],
                labels[partner[i]],
                class_counts,
                method.kappa.unwrap_or(3.0),
                method.tau.unwrap_or(0.5),
            )
        })
        .collect();
    let mut targets = soft_targets(labels, &partner, &label_weight, classes);
    if let Some(eps) = method.label_smoothing {
        for t in &mut targets {
            *t = (1.0 - eps as f32) * *t + eps as f32 / classes as f32;
        }
    }
    MixedBatch {
        inputs,
        targets,
        partner,
        lambda,
        label_weight,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn soft_targets_rows() {
        let t = soft_targets(&[0, 2, 2], &[1, 2, 0], &[0.7, 0.7, 0.7], 3);
        let expect = [0.7, 0.0, 0.3, 0.0, 0.0, 1.0, 0.3, 0.0, 0.7];
        for (a, b) in t.iter().zip(expect) {
            assert!((a - b).abs() < 1e-6);
        }
    }

    #[test]
    fn remix_edges() {
        let counts = [30, 10, 10];
        // ratio exactly κ = 3 and λ just below τ: the label goes to the minority partner.
        assert_eq!(
            label_weight(LabelRule::Remix, 0.49, 0, 1, &counts, 3.0, 0.5),
            0.0
        );
        // λ exactly τ is not < τ: standard weight.
        assert_eq!(
            label_weight(LabelRule::Remix, 0.5, 0, 1, &counts, 3.0, 0.5),
            0.5
        );
        // ratio exactly 1/κ and 1 − λ < τ: the minority sample keeps its label.
        assert_eq!(
            label_weight(LabelRule::Remix, 0.6, 1, 0, &counts, 3.0, 0.5),
            1.0
        );
        // ratio exactly 1/κ and 1 − λ exactly τ, not < τ: standard weight.
        assert_eq!(
            label_weight(LabelRule::Remix, 0.5, 1, 0, &counts, 3.0, 0.5),
            0.5
        );
        // balanced pair: plain λ.
        assert_eq!(
            label_weight(LabelRule::Remix, 0.3, 1, 2, &counts, 3.0, 0.5),
            0.3
        );
    }
}
