//! Corrupted copies of a test set, made on the fly from its raw pixels (0..1, before
//! normalisation) in the spirit of CIFAR-10-C and MNIST-C: noise, blur, contrast, brightness,
//! pixelation and rotation at severities 1–5, for grey and RGB images of any size. Nothing is
//! downloaded.
//!
//! Every corruption draws its random numbers from one seeded stream whose draws do not depend on
//! the severity (common random numbers), so a seed always gives the same images and a higher
//! severity moves each pixel of the noise, contrast and brightness corruptions further from the
//! original (blur, pixelation and rotation move natural images further; a texture at the
//! pixelation grid's period can alias). Severity 0 is the identity. The parameters
//! are listed in `docs/metrics.md`.

use std::f64::consts::PI;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::StandardNormal;
use serde::{Deserialize, Serialize};

use super::{Dataset, ImageShape};

/// The highest severity.
pub const MAX_SEVERITY: u8 = 5;

/// One corruption of the test images.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Corruption {
    /// Additive Gaussian noise, σ = 0.08, 0.12, 0.18, 0.26, 0.38.
    GaussianNoise,
    /// Photon noise: Poisson with rate λ·x (its Gaussian approximation, variance x/λ),
    /// λ = 60, 25, 12, 5, 3.
    ShotNoise,
    /// Salt and pepper: a share 0.03, 0.06, 0.09, 0.17, 0.27 of the pixels set to 0 or 1.
    ImpulseNoise,
    /// Gaussian blur, σ = 0.4, 0.6, 0.8, 1.0, 1.5 pixels up to 28 pixels (scaled with larger
    /// sizes).
    #[serde(alias = "blur")]
    GaussianBlur,
    /// Contrast towards each image's mean, factor 0.75, 0.5, 0.4, 0.3, 0.15.
    Contrast,
    /// Brightness: + 0.1, 0.2, 0.3, 0.4, 0.5.
    Brightness,
    /// Box-averaged down to 75, 60, 50, 37.5, 25 % of the size and back up (nearest).
    Pixelate,
    /// Rotation by 6, 12, 18, 24, 30 degrees (direction drawn per image), bilinear, black fill.
    Rotate,
}

impl Corruption {
    /// Every corruption, in report order (`corruptions: all`).
    pub const ALL: [Corruption; 8] = [
        Corruption::GaussianNoise,
        Corruption::ShotNoise,
        Corruption::ImpulseNoise,
        Corruption::GaussianBlur,
        Corruption::Contrast,
        Corruption::Brightness,
        Corruption::Pixelate,
        Corruption::Rotate,
    ];

    /// The YAML name.
    pub fn name(self) -> &'static str {
        match self {
            Corruption::GaussianNoise => "gaussian_noise",
            Corruption::ShotNoise => "shot_noise",
            Corruption::ImpulseNoise => "impulse_noise",
            Corruption::GaussianBlur => "gaussian_blur",
            Corruption::Contrast => "contrast",
            Corruption::Brightness => "brightness",
            Corruption::Pixelate => "pixelate",
            Corruption::Rotate => "rotate",
        }
    }

    /// The parameter of severity 1..=5 (see each variant).
    fn parameter(self, severity: u8) -> f64 {
        let table: [f64; 5] = match self {
            Corruption::GaussianNoise => [0.08, 0.12, 0.18, 0.26, 0.38],
            Corruption::ShotNoise => [60.0, 25.0, 12.0, 5.0, 3.0],
            Corruption::ImpulseNoise => [0.03, 0.06, 0.09, 0.17, 0.27],
            Corruption::GaussianBlur => [0.4, 0.6, 0.8, 1.0, 1.5],
            Corruption::Contrast => [0.75, 0.5, 0.4, 0.3, 0.15],
            Corruption::Brightness => [0.1, 0.2, 0.3, 0.4, 0.5],
            Corruption::Pixelate => [0.75, 0.6, 0.5, 0.375, 0.25],
            Corruption::Rotate => [6.0, 12.0, 18.0, 24.0, 30.0],
        };
        table[usize::from(severity.clamp(1, MAX_SEVERITY)) - 1]
    }
}

/// `data` (raw pixels in 0..1) with `corruption` at `severity` (0 = unchanged, 1..=5), its
/// random draws from `seed`; pixels stay in 0..1.
pub fn corrupt(data: &Dataset, corruption: Corruption, severity: u8, seed: u64) -> Dataset {
    let mut out = data.clone();
    if severity == 0 {
        return out;
    }
    let p = corruption.parameter(severity);
    let shape = data.shape;
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(corruption as u64);
    for img in out.images.chunks_mut(shape.numel()) {
        match corruption {
            Corruption::GaussianNoise => {
                for x in img.iter_mut() {
                    let z: f64 = rng.sample(StandardNormal);
                    *x = clip(*x as f64 + p * z);
                }
            }
            Corruption::ShotNoise => {
                for x in img.iter_mut() {
                    let z: f64 = rng.sample(StandardNormal);
                    let v = (*x as f64).max(0.0);
                    *x = clip(v + (v / p).sqrt() * z);
                }
            }
            Corruption::ImpulseNoise => {
                for x in img.iter_mut() {
                    let (u, salt): (f64, bool) = (rng.gen(), rng.gen());
                    if u < p {
                        *x = if salt { 1.0 } else { 0.0 };
                    }
                }
            }
            Corruption::GaussianBlur => {
                // σ in pixels up to 28 × 28, scaled up for larger images only.
                let side = shape.height.max(shape.width).max(28);
                blur(img, shape, p * side as f64 / 28.0)
            }
            Corruption::Contrast => {
                let plane = shape.height * shape.width;
                for channel in img.chunks_mut(plane) {
                    let mean = channel.iter().map(|&x| x as f64).sum::<f64>() / plane as f64;
                    for x in channel.iter_mut() {
                        *x = clip(mean + (*x as f64 - mean) * p);
                    }
                }
            }
            Corruption::Brightness => img.iter_mut().for_each(|x| *x = clip(*x as f64 + p)),
            Corruption::Pixelate => pixelate(img, shape, p),
            Corruption::Rotate => {
                let sign = if rng.gen::<bool>() { 1.0 } else { -1.0 };
                rotate(img, shape, sign * p * PI / 180.0);
            }
        }
    }
    out
}

fn clip(v: f64) -> f32 {
    v.clamp(0.0, 1.0) as f32
}

/// Separable Gaussian blur with standard deviation `sigma` pixels (radius 3σ, edges clamped).
fn blur(img: &mut [f32], shape: ImageShape, sigma: f64) {
    let radius = (3.0 * sigma).ceil() as isize;
    let kernel: Vec<f64> = (-radius..=radius)
        .map(|k| (-(k * k) as f64 / (2.0 * sigma * sigma)).exp())
        .collect();
    let total: f64 = kernel.iter().sum();
    let (h, w) = (shape.height as isize, shape.width as isize);
    let plane = shape.height * shape.width;
    for channel in img.chunks_mut(plane) {
        // Along rows, then along columns.
        for (len, stride_of) in [(w, (1, w)), (h, (w, 1))] {
            let src: Vec<f64> = channel.iter().map(|&x| x as f64).collect();
            let (step, other) = stride_of;
            let lines = plane as isize / len;
            for line in 0..lines {
                for i in 0..len {
                    let mut acc = 0.0;
                    for (k, wgt) in (-radius..=radius).zip(&kernel) {
                        let j = (i + k).clamp(0, len - 1);
                        acc += wgt * src[(line * other + j * step) as usize];
                    }
                    channel[(line * other + i * step) as usize] = (acc / total) as f32;
                }
            }
        }
    }
}

/// Box-averages each block of a grid `fraction` of the size, then paints each block its mean.
fn pixelate(img: &mut [f32], shape: ImageShape, fraction: f64) {
    let (h, w) = (shape.height, shape.width);
    let gh = ((h as f64 * fraction).round() as usize).clamp(1, h);
    let gw = ((w as f64 * fraction).round() as usize).clamp(1, w);
    let block = |i: usize, n: usize, g: usize| i * g / n;
    for channel in img.chunks_mut(h * w) {
        let mut sum = vec![0.0f64; gh * gw];
        let mut count = vec![0usize; gh * gw];
        for y in 0..h {
            for x in 0..w {
                let b = block(y, h, gh) * gw + block(x, w, gw);
                sum[b] += channel[y * w + x] as f64;
                count[b] += 1;
            }
        }
        for y in 0..h {
            for x in 0..w {
                let b = block(y, h, gh) * gw + block(x, w, gw);
                channel[y * w + x] = (sum[b] / count[b] as f64) as f32;
            }
        }
    }
}

/// Rotation by `angle` radians about the image centre, bilinear, black outside.
fn rotate(img: &mut [f32], shape: ImageShape, angle: f64) {
    let (h, w) = (shape.height, shape.width);
    let (cy, cx) = ((h as f64 - 1.0) / 2.0, (w as f64 - 1.0) / 2.0);
    let (sin, cos) = angle.sin_cos();
    for channel in img.chunks_mut(h * w) {
        let src: Vec<f32> = channel.to_vec();
        let at = |y: isize, x: isize| -> f64 {
            if y < 0 || x < 0 || y >= h as isize || x >= w as isize {
                0.0
            } else {
                src[y as usize * w + x as usize] as f64
            }
        };
        for y in 0..h {
            for x in 0..w {
                // The source point that lands on (y, x).
                let (dy, dx) = (y as f64 - cy, x as f64 - cx);
                let sy = cy + cos * dy - sin * dx;
                let sx = cx + sin * dy + cos * dx;
                let (y0, x0) = (sy.floor(), sx.floor());
                let (fy, fx) = (sy - y0, sx - x0);
                let (y0, x0) = (y0 as isize, x0 as isize);
                let v = (1.0 - fy) * ((1.0 - fx) * at(y0, x0) + fx * at(y0, x0 + 1))
                    + fy * ((1.0 - fx) * at(y0 + 1, x0) + fx * at(y0 + 1, x0 + 1));
                channel[y * w + x] = clip(v);
            }
        }
    }
}
