//! Bringing images of another dataset to the training data's shape (out-of-distribution sets):
//! channels first (grey → RGB repeats the grey plane; RGB → grey is the luma
//! 0.299 R + 0.587 G + 0.114 B), then each plane resized with the `image` crate's triangle
//! (bilinear) filter, which averages over the source pixels when it shrinks. Pixels stay raw
//! (0..1); normalisation with the training statistics comes after.

use image::imageops::{self, FilterType};
use image::{ImageBuffer, Luma};

use super::{Dataset, ImageShape};

/// `data`'s images converted to `shape`'s channels and size (unchanged when they already have it).
pub fn conform(data: &Dataset, shape: ImageShape) -> Dataset {
    if data.shape == shape {
        return data.clone();
    }
    let from = data.shape;
    let plane = from.height * from.width;
    let mut images = Vec::with_capacity(data.len() * shape.numel());
    for i in 0..data.len() {
        let img = data.image(i);
        let planes: Vec<Vec<f32>> = match (from.channels, shape.channels) {
            (a, b) if a == b => img.chunks(plane).map(<[f32]>::to_vec).collect(),
            (1, b) => vec![img.to_vec(); b],
            (3, 1) => vec![(0..plane)
                .map(|p| 0.299 * img[p] + 0.587 * img[plane + p] + 0.114 * img[2 * plane + p])
                .collect()],
            // Any other count: the channels' mean, repeated.
            (a, b) => {
                let mean: Vec<f32> = (0..plane)
                    .map(|p| (0..a).map(|c| img[c * plane + p]).sum::<f32>() / a as f32)
                    .collect();
                vec![mean; b]
            }
        };
        for p in planes {
            images.extend(resize_plane(p, from, shape));
        }
    }
    Dataset {
        images,
        labels: data.labels.clone(),
        shape,
        classes: data.classes,
        background: vec![0.0; shape.numel()],
    }
}

fn resize_plane(p: Vec<f32>, from: ImageShape, to: ImageShape) -> Vec<f32> {
    if (from.height, from.width) == (to.height, to.width) {
        return p;
    }
    let buf: ImageBuffer<Luma<f32>, Vec<f32>> =
        ImageBuffer::from_raw(from.width as u32, from.height as u32, p).expect("plane size");
    imageops::resize(
        &buf,
        to.width as u32,
        to.height as u32,
        FilterType::Triangle,
    )
    .into_raw()
    .into_iter()
    .map(|v| v.clamp(0.0, 1.0))
    .collect()
}
