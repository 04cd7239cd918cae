//! Preprocessing applied once when the data is loaded (`preprocess:` in an experiment file):
//! optional zero padding, then standardisation with the training pool's statistics.

use anyhow::Result;
use serde::{Deserialize, Serialize};

use super::{Dataset, ImageShape};

/// How images are normalised, from the training pool's statistics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Normalize {
    /// Each pixel position to mean 0, std 1 (small grey images).
    #[default]
    PerPixel,
    /// Each colour channel to mean 0, std 1 (the CIFAR protocol).
    PerChannel,
}

/// Preprocessing applied once when the data is loaded (`preprocess:` in an experiment file).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Preprocess {
    #[serde(default)]
    pub normalize: Normalize,
    /// Zero-pad images to pad_to × pad_to (e.g. 28 → 32 so CIFAR networks fit MNIST data). The
    /// padding happens first, so the normalisation statistics include the zero border.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pad_to: Option<usize>,
}

impl Preprocess {
    pub fn is_default(&self) -> bool {
        *self == Preprocess::default()
    }
}

/// Zero-pads every image to size × size, centred.
pub(crate) fn pad(data: &Dataset, size: usize) -> Result<Dataset> {
    let s = data.shape;
    if size < s.height || size < s.width {
        anyhow::bail!(
            "preprocess.pad_to {size} is smaller than the images ({}×{})",
            s.height,
            s.width
        );
    }
    let (top, left) = ((size - s.height) / 2, (size - s.width) / 2);
    let shape = ImageShape {
        channels: s.channels,
        height: size,
        width: size,
    };
    let mut images = vec![0.0f32; data.len() * shape.numel()];
    for (i, out) in images.chunks_mut(shape.numel()).enumerate() {
        let img = data.image(i);
        for c in 0..s.channels {
            for y in 0..s.height {
                let from = (c * s.height + y) * s.width;
                let to = (c * size + y + top) * size + left;
                out[to..to + s.width].copy_from_slice(&img[from..from + s.width]);
            }
        }
    }
    Ok(Dataset {
        images,
        labels: data.labels.clone(),
        shape,
        classes: data.classes,
        background: vec![0.0; shape.numel()],
    })
}

/// The training pool's per-feature mean and standard deviation: what every set the network sees
/// (test, corrupted, out-of-distribution) is normalised with.
#[derive(Debug, Clone, PartialEq)]
pub struct Standardiser {
    mean: Vec<f64>,
    std: Vec<f64>,
}

impl Standardiser {
    /// The statistics of `train`, per pixel or per channel (constant features keep std 1).
    pub fn fit(train: &Dataset, how: Normalize) -> Standardiser {
        let d = train.shape.numel();
        let n = train.len() as f64;
        let mut mean = vec![0.0f64; d];
        let mut var = vec![0.0f64; d];
        for row in train.images.chunks(d) {
            for (m, &x) in mean.iter_mut().zip(row) {
                *m += x as f64 / n;
            }
        }
        for row in train.images.chunks(d) {
            for ((v, &m), &x) in var.iter_mut().zip(&mean).zip(row) {
                *v += (x as f64 - m).powi(2) / n;
            }
        }
        if how == Normalize::PerChannel {
            // Pool each channel's pixels: E[x] and E[x²] over positions give the channel's moments.
            let plane = train.shape.height * train.shape.width;
            for c in 0..train.shape.channels {
                let r = c * plane..(c + 1) * plane;
                let m = mean[r.clone()].iter().sum::<f64>() / plane as f64;
                let second =
                    r.clone().map(|i| var[i] + mean[i] * mean[i]).sum::<f64>() / plane as f64;
                let v = (second - m * m).max(0.0);
                for i in r {
                    mean[i] = m;
                    var[i] = v;
                }
            }
        }
        let std = var
            .iter()
            .map(|&v| if v > 1e-12 { v.sqrt() } else { 1.0 })
            .collect();
        Standardiser { mean, std }
    }

    /// Normalises `set` in place (it must have the training images' shape).
    pub fn apply(&self, set: &mut Dataset) {
        let d = self.mean.len();
        for row in set.images.chunks_mut(d) {
            for ((x, &m), &s) in row.iter_mut().zip(&self.mean).zip(&self.std) {
                *x = ((*x as f64 - m) / s) as f32;
            }
        }
        set.background = self
            .mean
            .iter()
            .zip(&self.std)
            .map(|(&m, &s)| (-m / s) as f32)
            .collect();
    }
}

/// Standardisation with the training pool's statistics, per pixel or per channel; returns them.
pub(crate) fn standardise(train: &mut Dataset, test: &mut Dataset, how: Normalize) -> Standardiser {
    let stats = Standardiser::fit(train, how);
    stats.apply(train);
    stats.apply(test);
    stats
}
