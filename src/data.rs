//! Datasets as flat `f32` images plus labels. The default is the real UCI optical digits set
//! (1,797 8×8 grey images, 10 classes) embedded in the `smartcore` crate: no download, no setup.

use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use anyhow::Result;

use crate::config::DatasetSpec;
use crate::mixing::ImageShape;

/// Images (one per row, channel-major) with their labels.
#[derive(Debug, Clone)]
pub struct Dataset {
    pub images: Vec<f32>,
    pub labels: Vec<usize>,
    pub shape: ImageShape,
    pub classes: usize,
    /// Value of a black pixel at each feature after normalisation (the padding of random
    /// crops); zeros before normalisation.
    pub background: Vec<f32>,
}

impl Dataset {
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    pub fn image(&self, i: usize) -> &[f32] {
        let d = self.shape.numel();
        &self.images[i * d..(i + 1) * d]
    }

    /// Number of images of each class.
    pub fn class_counts(&self) -> Vec<usize> {
        let mut counts = vec![0; self.classes];
        for &y in &self.labels {
            counts[y] += 1;
        }
        counts
    }

    /// The images at `indices`, in that order.
    pub fn subset(&self, indices: &[usize]) -> Dataset {
        let mut images = Vec::with_capacity(indices.len() * self.shape.numel());
        for &i in indices {
            images.extend_from_slice(self.image(i));
        }
        Dataset {
            images,
            labels: indices.iter().map(|&i| self.labels[i]).collect(),
            shape: self.shape,
            classes: self.classes,
            background: self.background.clone(),
        }
    }
}

/// The training pool (before any split subsampling) and the fixed test set.
#[derive(Debug, Clone)]
pub struct TrainTest {
    pub train: Dataset,
    pub test: Dataset,
}

/// Seed of the fixed digits train/test split. Changing it changes every published number.
pub const DIGITS_SPLIT_SEED: u64 = 20230517;
/// Test images per digits class (the other 138–147 per class are the training pool).
pub const DIGITS_TEST_PER_CLASS: usize = 36;

/// How images are normalised, from the training pool's statistics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Normalize {
    /// Each pixel position to mean 0, std 1 (small grey images).
    #[default]
    PerPixel,
    /// Each colour channel to mean 0, std 1 (the CIFAR protocol).
    PerChannel,
}

/// Preprocessing applied once when the data is loaded (`preprocess:` in an experiment file).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
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

/// Loads a dataset's training pool and test set, padded and normalised as `pre` says with the
/// training pool's statistics. Fails with the missing or broken file and where the data comes
/// from.
pub fn load(spec: &DatasetSpec, pre: &Preprocess) -> Result<TrainTest> {
    let (mut train, mut test) = match spec {
        DatasetSpec::Digits => {
            let raw = load_digits_raw();
            (raw.train, raw.test)
        }
        DatasetSpec::Idx { root, .. } => crate::idx::load(root)?,
        DatasetSpec::Cifar10 { root } => crate::cifar::load_cifar10(root)?,
        DatasetSpec::Cifar100 { root, labels } => crate::cifar::load_cifar100(root, *labels)?,
        DatasetSpec::Folder {
            root,
            size,
            test_fraction,
        } => crate::folder::load(root, *size, *test_fraction)?,
    };
    if let Some(size) = pre.pad_to {
        train = pad(&train, size)?;
        test = pad(&test, size)?;
    }
    standardise(&mut train, &mut test, pre.normalize);
    Ok(TrainTest { train, test })
}

/// Zero-pads every image to size × size, centred.
fn pad(data: &Dataset, size: usize) -> Result<Dataset> {
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

/// UCI digits: a stratified split with exactly 36 test images per class (360 test, 1,437 train),
/// drawn once with [`DIGITS_SPLIT_SEED`]; pixels scaled from 0..16 to 0..1, then standardised per
/// pixel with the training pool's mean and standard deviation.
pub fn load_digits() -> TrainTest {
    load(&DatasetSpec::Digits, &Preprocess::default()).expect("the embedded digits load")
}

/// The digits split before normalisation.
fn load_digits_raw() -> TrainTest {
    let raw = smartcore::dataset::digits::load_dataset();
    let shape = ImageShape {
        channels: 1,
        height: 8,
        width: 8,
    };
    assert_eq!(raw.num_features, shape.numel(), "embedded digits are 8×8");
    let labels: Vec<usize> = raw.target.iter().map(|&y| y as usize).collect();
    let classes = 10;
    let mut rng = ChaCha8Rng::seed_from_u64(DIGITS_SPLIT_SEED);
    let (mut train_idx, mut test_idx) = (Vec::new(), Vec::new());
    for c in 0..classes {
        let mut idx: Vec<usize> = (0..labels.len()).filter(|&i| labels[i] == c).collect();
        idx.shuffle(&mut rng);
        test_idx.extend_from_slice(&idx[..DIGITS_TEST_PER_CLASS]);
        train_idx.extend_from_slice(&idx[DIGITS_TEST_PER_CLASS..]);
    }
    train_idx.sort_unstable();
    test_idx.sort_unstable();
    let all = Dataset {
        images: raw.data.iter().map(|&p| p / 16.0).collect(),
        labels,
        shape,
        classes,
        background: vec![0.0; shape.numel()],
    };
    TrainTest {
        train: all.subset(&train_idx),
        test: all.subset(&test_idx),
    }
}

/// Standardisation with the training pool's statistics, per pixel or per channel (constant
/// features keep std 1).
fn standardise(train: &mut Dataset, test: &mut Dataset, how: Normalize) {
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
            let second = r.clone().map(|i| var[i] + mean[i] * mean[i]).sum::<f64>() / plane as f64;
            let v = (second - m * m).max(0.0);
            for i in r {
                mean[i] = m;
                var[i] = v;
            }
        }
    }
    let std: Vec<f64> = var
        .iter()
        .map(|&v| if v > 1e-12 { v.sqrt() } else { 1.0 })
        .collect();
    for set in [train, test] {
        for row in set.images.chunks_mut(d) {
            for ((x, &m), &s) in row.iter_mut().zip(&mean).zip(&std) {
                *x = ((*x as f64 - m) / s) as f32;
            }
        }
        set.background = mean
            .iter()
            .zip(&std)
            .map(|(&m, &s)| (-m / s) as f32)
            .collect();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digits_split_sizes_are_fixed_and_stratified() {
        let data = load_digits();
        assert_eq!(data.train.len(), 1437);
        assert_eq!(data.test.len(), 360);
        assert_eq!(data.test.class_counts(), vec![36; 10]);
        assert_eq!(
            data.train.class_counts(),
            vec![142, 146, 141, 147, 145, 146, 145, 143, 138, 144]
        );
        // Standardised: the training pool has mean ≈ 0 in every pixel.
        let d = 64;
        for p in 0..d {
            let m: f64 = (0..data.train.len())
                .map(|i| data.train.images[i * d + p] as f64)
                .sum::<f64>()
                / data.train.len() as f64;
            assert!(m.abs() < 1e-4, "pixel {p} mean {m}");
        }
    }
}
