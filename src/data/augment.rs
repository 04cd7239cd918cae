//! Training-time augmentation, applied to each image of a batch before mixing (`docs/methods.md`): a
//! random crop of the original size from the image zero-padded by `crop_padding` pixels on every
//! side, and a horizontal flip with probability ½. "Zero" is a black pixel of the raw image, i.e.
//! its standardised value, which the dataset records per feature ([`Dataset::background`]).
//!
//! [`Dataset::background`]: crate::data::Dataset::background

use rand::Rng;
use serde::{Deserialize, Serialize};

use super::ImageShape;

/// Augmentation settings (`train.augment` in YAML; the dataset's default when absent).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Augment {
    /// Pixels of zero padding before the random crop (0: no crop).
    #[serde(default)]
    pub crop_padding: usize,
    /// Mirror left–right with probability ½.
    #[serde(default)]
    pub flip: bool,
}

impl Augment {
    pub fn is_identity(&self) -> bool {
        self.crop_padding == 0 && !self.flip
    }
}

/// Augments one image in place. `background[i]` is the value of a black pixel at feature `i`.
pub fn augment_image<R: Rng>(
    image: &mut [f32],
    shape: ImageShape,
    aug: &Augment,
    background: &[f32],
    rng: &mut R,
) {
    let (h, w) = (shape.height, shape.width);
    let p = aug.crop_padding;
    // Draw in a fixed order so runs are reproducible whatever the settings.
    let (dy, dx) = if p > 0 {
        (rng.gen_range(0..=2 * p), rng.gen_range(0..=2 * p))
    } else {
        (p, p)
    };
    let flip = aug.flip && rng.gen_bool(0.5);
    if dy == p && dx == p && !flip {
        return;
    }
    let source = image.to_vec();
    for c in 0..shape.channels {
        for y in 0..h {
            for x in 0..w {
                let out = c * h * w + y * w + x;
                // Output (y, x) reads the padded image at (y + dy, x + dx), i.e. the source at
                // (y + dy − p, x + dx − p); flipping mirrors the output column.
                let sx = if flip { w - 1 - x } else { x };
                let (yy, xx) = (
                    (y + dy) as isize - p as isize,
                    (sx + dx) as isize - p as isize,
                );
                image[out] = if (0..h as isize).contains(&yy) && (0..w as isize).contains(&xx) {
                    source[c * h * w + yy as usize * w + xx as usize]
                } else {
                    background[out]
                };
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    /// A 1×2×3 image 1..6 with background −1, shifted by a known crop and flipped.
    #[test]
    fn crop_and_flip_move_pixels_and_fill_background() {
        let shape = ImageShape {
            channels: 1,
            height: 2,
            width: 3,
        };
        let bg = [-1.0; 6];
        let aug = Augment {
            crop_padding: 1,
            flip: true,
        };
        let mut seen_shift = false;
        for seed in 0..50 {
            let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
            let mut img: Vec<f32> = (1..=6).map(|v| v as f32).collect();
            augment_image(&mut img, shape, &aug, &bg, &mut rng);
            // Every output pixel is a source pixel or background; values keep their row.
            for (i, v) in img.iter().enumerate() {
                assert!(*v == -1.0 || (1.0..=6.0).contains(v), "{img:?}");
                if *v != -1.0 {
                    let src_row = (*v as usize - 1) / 3;
                    let out_row = i / 3;
                    assert!(src_row.abs_diff(out_row) <= 1);
                }
            }
            seen_shift |= img.contains(&-1.0);
        }
        assert!(
            seen_shift,
            "some crops move the image and expose background"
        );
        // Flip only: exact mirror.
        let flip_only = Augment {
            crop_padding: 0,
            flip: true,
        };
        let mut mirrored = false;
        for seed in 0..20 {
            let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
            let mut img: Vec<f32> = (1..=6).map(|v| v as f32).collect();
            augment_image(&mut img, shape, &flip_only, &bg, &mut rng);
            assert!(img == [1.0, 2.0, 3.0, 4.0, 5.0, 6.0] || img == [3.0, 2.0, 1.0, 6.0, 5.0, 4.0]);
            mirrored |= img[0] == 3.0;
        }
        assert!(mirrored);
    }
}
