//! From a shuffled order to mini-batches: the batch boundaries, and the data pipeline that
//! copies a batch's images out of the dataset and augments them.

use super::augment::{augment_image, Augment};
use super::Dataset;

/// Batches of a shuffled order; a trailing batch of one sample joins the previous batch (the ICM
/// loss needs at least two samples, and no sample is dropped).
pub fn batches(order: &[usize], batch_size: usize) -> Vec<&[usize]> {
    let mut out: Vec<&[usize]> = order.chunks(batch_size).collect();
    if out.len() >= 2 && out.last().map(|b| b.len()) == Some(1) {
        let n = order.len();
        out.pop();
        let last = out.pop().expect("two batches");
        out.push(&order[n - last.len() - 1..]);
    }
    out
}

/// The data pipeline: copies the images at `idx` out of the dataset (only this batch) and
/// augments each one. Returns the B × D inputs and their labels.
pub fn assemble_batch<R: rand::Rng>(
    data: &Dataset,
    idx: &[usize],
    augment: Option<&Augment>,
    rng: &mut R,
) -> (Vec<f32>, Vec<usize>) {
    let d = data.shape.numel();
    let mut x = Vec::with_capacity(idx.len() * d);
    for &i in idx {
        x.extend_from_slice(data.image(i));
    }
    if let Some(aug) = augment {
        for image in x.chunks_mut(d) {
            augment_image(image, data.shape, aug, &data.background, rng);
        }
    }
    (x, idx.iter().map(|&i| data.labels[i]).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trailing_single_sample_joins_previous_batch() {
        let order: Vec<usize> = (0..9).collect();
        let b = batches(&order, 4);
        assert_eq!(b, vec![&order[0..4], &order[4..9]]);
        let b = batches(&order, 3);
        assert_eq!(b.len(), 3);
        assert_eq!(batches(&order[..1], 4), vec![&order[0..1]]);
    }
}
