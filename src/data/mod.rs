//! The data layer: datasets as flat `f32` images plus labels ([`Dataset`]), where they come from
//! ([`sources`]: one file per source), how the training pool is subsampled ([`splits`]), how
//! images are preprocessed ([`preprocess`]) and augmented ([`augment`]), and how a shuffled
//! order becomes mini-batches ([`batch`]). The default is the real UCI optical digits set
//! embedded in the binary: no download, no setup.

pub mod augment;
pub mod batch;
pub mod conform;
pub mod corrupt;
pub mod preprocess;
pub mod sources;
pub mod splits;

use anyhow::Result;

pub use corrupt::Corruption;
pub use preprocess::{Normalize, Preprocess, Standardiser};
pub use sources::DatasetSpec;
pub use splits::{Profile, Split};

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
    /// The test set's raw pixels (after padding, before normalisation): what corruptions start
    /// from.
    pub raw_test: Dataset,
    /// The training pool's statistics, which normalised both sets.
    pub standardiser: Standardiser,
}

/// Loads a dataset's training pool and test set, padded and normalised as `pre` says with the
/// training pool's statistics. Fails with the missing or broken file and where the data comes
/// from.
pub fn load(spec: &DatasetSpec, pre: &Preprocess) -> Result<TrainTest> {
    Ok(load_holding_out(spec, pre, &[])?.0)
}

/// [`load`] without the classes `held_out`: the other classes keep their order, renumbered
/// from 0, and the statistics are the kept training pool's. Also returns the raw (padded, not
/// normalised) test images of the held-out classes, empty when none are.
pub fn load_holding_out(
    spec: &DatasetSpec,
    pre: &Preprocess,
    held_out: &[usize],
) -> Result<(TrainTest, Dataset)> {
    let (train, test) = spec.load_raw()?;
    let (mut train, _) = without_classes(&train, held_out)?;
    let (mut test, held) = without_classes(&test, held_out)?;
    let mut held = held;
    if let Some(size) = pre.pad_to {
        train = preprocess::pad(&train, size)?;
        test = preprocess::pad(&test, size)?;
        held = preprocess::pad(&held, size)?;
    }
    let raw_test = test.clone();
    let standardiser = preprocess::standardise(&mut train, &mut test, pre.normalize);
    let data = TrainTest {
        train,
        test,
        raw_test,
        standardiser,
    };
    Ok((data, held))
}

/// The images of the classes not in `held_out`, renumbered in order, and those of the held-out
/// classes (labels kept).
fn without_classes(data: &Dataset, held_out: &[usize]) -> Result<(Dataset, Dataset)> {
    if let Some(&c) = held_out.iter().find(|&&c| c >= data.classes) {
        anyhow::bail!(
            "held-out class {c} does not exist: the classes are 0..{}",
            data.classes - 1
        );
    }
    if held_out.len() + 2 > data.classes {
        anyhow::bail!(
            "{} of the {} classes are held out: keep at least two for training (a classifier \
             of one class is always right)",
            held_out.len(),
            data.classes
        );
    }
    let kept: Vec<usize> = (0..data.classes)
        .filter(|c| !held_out.contains(c))
        .collect();
    let (inside, outside): (Vec<usize>, Vec<usize>) =
        (0..data.len()).partition(|&i| !held_out.contains(&data.labels[i]));
    let mut keep = data.subset(&inside);
    keep.labels = keep
        .labels
        .iter()
        .map(|y| kept.iter().position(|k| k == y).expect("kept class"))
        .collect();
    keep.classes = kept.len();
    Ok((keep, data.subset(&outside)))
}

/// The embedded UCI digits (36 test images per class, 1,437 training images), standardised per
/// pixel with the training pool's statistics.
pub fn load_digits() -> TrainTest {
    load(&DatasetSpec::default(), &Preprocess::default()).expect("the embedded digits load")
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
