//! The real UCI optical digits set (1,797 8×8 grey images, 10 classes), embedded in the
//! `smartcore` crate: the zero-setup default dataset. It is split once, stratified, with a fixed
//! seed: 36 test images per class (360) and the other 1,437 images as the training pool.

use anyhow::Result;
use serde::{Deserialize, Serialize};

use super::Source;
use crate::data::Dataset;

/// Seed of the fixed digits train/test split. Changing it changes every published number.
pub const DIGITS_SPLIT_SEED: u64 = 20230517;
/// Test images per digits class (the other 138–147 per class are the training pool).
pub const DIGITS_TEST_PER_CLASS: usize = 36;

/// `dataset: digits` (no fields).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Digits {}

impl Source for Digits {
    const KEY_ONLY: bool = true;
    fn bare() -> Option<Self> {
        Some(Digits {})
    }
    fn name(&self) -> String {
        "digits".into()
    }
    fn load(&self) -> Result<(Dataset, Dataset)> {
        load_raw()
    }
}

/// The stratified split, pixels scaled from 0..16 to 0..1 (before normalisation).
#[cfg(feature = "digits")]
fn load_raw() -> Result<(Dataset, Dataset)> {
    use crate::data::ImageShape;
    use rand::seq::SliceRandom;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;
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
    Ok((all.subset(&train_idx), all.subset(&test_idx)))
}

#[cfg(not(feature = "digits"))]
fn load_raw() -> Result<(Dataset, Dataset)> {
    anyhow::bail!(
        "dataset `digits`: this icm was built without its `digits` feature (the embedded data); \
         rebuild with `--features digits` or use another dataset"
    )
}
