//! The mixing rule (DESIGN §2), in one place: draw λ ~ Beta(α, α) and a partner permutation π,
//! mix the inputs (Mixup or CutMix), then set each sample's label weight λ_y (standard or
//! Remix) and build the soft targets t_i = λ_y,i · e_{y_i} + (1 − λ_y,i) · e_{y_π(i)}
//! (optionally label-smoothed: t := (1 − ε)·t + ε/C).
//!
//! Works on plain `f32` slices (row-major, one image per row) so it can feed any trainer.

use rand::seq::SliceRandom;
use rand::Rng;
use rand_distr::{Beta, Distribution};

use crate::method::{LabelRule, LambdaSampling, Method, Mixer};

/// Layout of one image in a row: channels × height × width, channel-major.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ImageShape {
    pub channels: usize,
    pub height: usize,
    pub width: usize,
}

impl ImageShape {
    pub fn numel(&self) -> usize {
        self.channels * self.height * self.width
    }
}

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

/// x̃_i = λ_i · x_i + (1 − λ_i) · x_π(i).
pub fn mixup_inputs(x: &[f32], dim: usize, partner: &[usize], lambda: &[f64]) -> Vec<f32> {
    let mut out = vec![0.0; x.len()];
    for (i, row) in out.chunks_mut(dim).enumerate() {
        let (a, b) = (
            &x[i * dim..(i + 1) * dim],
            &x[partner[i] * dim..(partner[i] + 1) * dim],
        );
        let l = lambda[i] as f32;
        for ((o, &xa), &xb) in row.iter_mut().zip(a).zip(b) {
            *o = l * xa + (1.0 - l) * xb;
        }
    }
    out
}

/// A CutMix box `[y0, y1) × [x0, x1)` in pixels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CutBox {
    pub y0: usize,
    pub y1: usize,
    pub x0: usize,
    pub x1: usize,
}

impl CutBox {
    /// Box of area ratio 1 − λ centred at (cy, cx), clipped at the border (timm / CutMix paper).
    pub fn from_lambda(lambda: f64, height: usize, width: usize, cy: usize, cx: usize) -> CutBox {
        let ratio = (1.0 - lambda).max(0.0).sqrt();
        let (ch, cw) = (
            (height as f64 * ratio) as usize,
            (width as f64 * ratio) as usize,
        );
        let clip = |c: usize, half: usize, n: usize| (c.saturating_sub(half), (c + half).min(n));
        let (y0, y1) = clip(cy, ch / 2, height);
        let (x0, x1) = clip(cx, cw / 2, width);
        CutBox { y0, y1, x0, x1 }
    }

    /// Draws the box centre uniformly over the image.
    pub fn sample<R: Rng>(lambda: f64, shape: ImageShape, rng: &mut R) -> CutBox {
        let cy = rng.gen_range(0..shape.height);
        let cx = rng.gen_range(0..shape.width);
        CutBox::from_lambda(lambda, shape.height, shape.width, cy, cx)
    }

    /// λ := 1 − (pasted area / image area).
    pub fn corrected_lambda(&self, height: usize, width: usize) -> f64 {
        let area = (self.y1 - self.y0) * (self.x1 - self.x0);
        1.0 - area as f64 / (height * width) as f64
    }
}

/// Pastes `bx` of the partner image into each image (all channels).
pub fn cutmix_inputs(
    x: &[f32],
    shape: ImageShape,
    partner: &[usize],
    boxes: &[CutBox],
) -> Vec<f32> {
    let dim = shape.numel();
    let mut out = x.to_vec();
    for (i, bx) in boxes.iter().enumerate() {
        let src = partner[i] * dim;
        for c in 0..shape.channels {
            for y in bx.y0..bx.y1 {
                let off = c * shape.height * shape.width + y * shape.width;
                let (a, b) = (i * dim + off + bx.x0, src + off + bx.x0);
                let n = bx.x1 - bx.x0;
                out[a..a + n].copy_from_slice(&x[b..b + n]);
            }
        }
    }
    out
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

/// Applies `method`'s mixer and label rule to a batch. All randomness comes from `rng`.
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
    let dim = shape.numel();
    let (partner, lambda, inputs) = match method.mixer {
        Mixer::None => ((0..b).collect(), vec![1.0; b], x.to_vec()),
        mixer => {
            let alpha = method.alpha.expect("a mixer always has alpha");
            let partner = random_permutation(b, rng);
            let mut lambda = match method.lambda.unwrap_or_default() {
                LambdaSampling::PerBatch => vec![sample_lambda(alpha, rng); b],
                LambdaSampling::PerSample => (0..b).map(|_| sample_lambda(alpha, rng)).collect(),
            };
            let inputs = if mixer == Mixer::Mixup {
                mixup_inputs(x, dim, &partner, &lambda)
            } else {
                let boxes: Vec<CutBox> = match method.lambda.unwrap_or_default() {
                    LambdaSampling::PerBatch => vec![CutBox::sample(lambda[0], shape, rng); b],
                    LambdaSampling::PerSample => lambda
                        .iter()
                        .map(|&l| CutBox::sample(l, shape, rng))
                        .collect(),
                };
                for (l, bx) in lambda.iter_mut().zip(&boxes) {
                    *l = bx.corrected_lambda(shape.height, shape.width);
                }
                cutmix_inputs(x, shape, &partner, &boxes)
            };
            (partner, lambda, inputs)
        }
    };
    let label_weight: Vec<f64> = (0..b)
        .map(|i| {
            label_weight(
                method.label,
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
    fn mixup_is_convex_combination() {
        let x = [1.0, 2.0, 10.0, 20.0];
        let out = mixup_inputs(&x, 2, &[1, 0], &[0.25, 0.25]);
        assert_eq!(out, vec![7.75, 15.5, 3.25, 6.5]);
    }

    #[test]
    fn soft_targets_rows() {
        let t = soft_targets(&[0, 2, 2], &[1, 2, 0], &[0.7, 0.7, 0.7], 3);
        let expect = [0.7, 0.0, 0.3, 0.0, 0.0, 1.0, 0.3, 0.0, 0.7];
        for (a, b) in t.iter().zip(expect) {
            assert!((a - b).abs() < 1e-6);
        }
    }

    #[test]
    fn cutmix_box_clipped_at_border_corrects_lambda() {
        // 8×8 image, λ = 0.75 → box side 8·√0.25 = 4; centred at the corner (0, 0) the box is
        // clipped to 2×2 = 4 pixels, so λ becomes 1 − 4/64 = 0.9375.
        let bx = CutBox::from_lambda(0.75, 8, 8, 0, 0);
        assert_eq!(
            bx,
            CutBox {
                y0: 0,
                y1: 2,
                x0: 0,
                x1: 2
            }
        );
        assert_eq!(bx.corrected_lambda(8, 8), 0.9375);
        // Unclipped in the middle: 4×4 = 16 pixels → λ = 0.75 exactly.
        let bx = CutBox::from_lambda(0.75, 8, 8, 4, 4);
        assert_eq!(bx.corrected_lambda(8, 8), 0.75);
    }

    #[test]
    fn cutmix_pastes_partner_pixels() {
        let shape = ImageShape {
            channels: 1,
            height: 2,
            width: 2,
        };
        let x = [1.0, 1.0, 1.0, 1.0, 9.0, 9.0, 9.0, 9.0];
        let bx = CutBox {
            y0: 0,
            y1: 1,
            x0: 1,
            x1: 2,
        };
        let out = cutmix_inputs(&x, shape, &[1, 0], &[bx, bx]);
        assert_eq!(out, vec![1.0, 9.0, 1.0, 1.0, 9.0, 1.0, 9.0, 9.0]);
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
        // balanced pair: plain λ.
        assert_eq!(
            label_weight(LabelRule::Remix, 0.3, 1, 2, &counts, 3.0, 0.5),
            0.3
        );
    }
}
