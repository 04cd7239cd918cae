//! CutMix (Yun et al. 2019): paste a box of area ratio 1 − λ from the partner image, centred
//! uniformly at random and clipped at the border, then λ := 1 − (pasted area / image area).

use rand::{Rng, RngCore};

use super::MixInputs;
use crate::data::ImageShape;

pub struct CutMix;

impl MixInputs for CutMix {
    const DEFAULT_ALPHA: f64 = 1.0;
    fn mix(
        x: &[f32],
        shape: ImageShape,
        partner: &[usize],
        lambda: &mut [f64],
        per_sample: bool,
        rng: &mut dyn RngCore,
    ) -> Vec<f32> {
        let boxes: Vec<CutBox> = if per_sample {
            lambda
                .iter()
                .map(|&l| CutBox::sample(l, shape, rng))
                .collect()
        } else {
            vec![CutBox::sample(lambda[0], shape, rng); lambda.len()]
        };
        for (l, bx) in lambda.iter_mut().zip(&boxes) {
            *l = bx.corrected_lambda(shape.height, shape.width);
        }
        cutmix_inputs(x, shape, partner, &boxes)
    }
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
    pub fn sample<R: Rng + ?Sized>(lambda: f64, shape: ImageShape, rng: &mut R) -> CutBox {
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
