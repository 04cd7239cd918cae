//! The official binary CIFAR files. CIFAR-10: `cifar-10-batches-bin/data_batch_{1..5}.bin` and
//! `test_batch.bin`, records of 1 label byte + 3,072 pixel bytes. CIFAR-100:
//! `cifar-100-binary/{train,test}.bin`, records of a coarse byte, a fine byte and 3,072 pixels.
//! Pixels are the R plane, then G, then B, each 32×32 row-major (our channel-major layout).

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

use super::Source;
use crate::data::augment::Augment;
use crate::data::preprocess::{Normalize, Preprocess};
use crate::data::{Dataset, ImageShape};

const PIXELS: usize = 3 * 32 * 32;
const SHAPE: ImageShape = ImageShape {
    channels: 3,
    height: 32,
    width: 32,
};

/// `dataset: {cifar10: {root: DIR}}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Cifar10 {
    pub root: PathBuf,
}

/// `dataset: {cifar100: {root: DIR, labels: fine | coarse}}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Cifar100 {
    pub root: PathBuf,
    #[serde(default)]
    pub labels: Cifar100Labels,
}

/// The official protocol's preprocessing: per-channel normalisation.
fn cifar_preprocess() -> Preprocess {
    Preprocess {
        normalize: Normalize::PerChannel,
        pad_to: None,
    }
}

/// The official protocol's augmentation: random crop with 4 pixels of padding, horizontal flip.
fn cifar_augment() -> Option<Augment> {
    Some(Augment {
        crop_padding: 4,
        flip: true,
    })
}

impl Source for Cifar10 {
    fn name(&self) -> String {
        "cifar10".into()
    }
    fn load(&self) -> Result<(Dataset, Dataset)> {
        load_cifar10(&self.root)
    }
    fn default_preprocess(&self) -> Preprocess {
        cifar_preprocess()
    }
    fn default_augment(&self) -> Option<Augment> {
        cifar_augment()
    }
}

impl Source for Cifar100 {
    fn name(&self) -> String {
        match self.labels {
            Cifar100Labels::Fine => "cifar100".into(),
            Cifar100Labels::Coarse => "cifar100-coarse".into(),
        }
    }
    fn load(&self) -> Result<(Dataset, Dataset)> {
        load_cifar100(&self.root, self.labels)
    }
    fn default_preprocess(&self) -> Preprocess {
        cifar_preprocess()
    }
    fn default_augment(&self) -> Option<Augment> {
        cifar_augment()
    }
}

/// Which CIFAR-100 label to train on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Cifar100Labels {
    /// 100 classes.
    #[default]
    Fine,
    /// 20 superclasses.
    Coarse,
}

/// Parses records of `label_bytes` label bytes followed by 3,072 pixels; `pick` is the index of
/// the label byte to use.
pub fn parse_records(
    bytes: &[u8],
    path: &Path,
    label_bytes: usize,
    pick: usize,
    classes: usize,
) -> Result<(Vec<u8>, Vec<usize>)> {
    let record = label_bytes + PIXELS;
    if bytes.is_empty() || !bytes.len().is_multiple_of(record) {
        bail!(
            "{}: {} bytes is not a whole number of {record}-byte records (truncated or wrong file; \
             the last whole record ends at byte {})",
            path.display(),
            bytes.len(),
            bytes.len() / record * record
        );
    }
    let n = bytes.len() / record;
    let mut pixels = Vec::with_capacity(n * PIXELS);
    let mut labels = Vec::with_capacity(n);
    for (i, r) in bytes.chunks(record).enumerate() {
        let y = r[pick] as usize;
        if y >= classes {
            bail!(
                "{}: label {y} at byte {} is out of range (0..{classes})",
                path.display(),
                i * record + pick
            );
        }
        labels.push(y);
        pixels.extend_from_slice(&r[label_bytes..]);
    }
    Ok((pixels, labels))
}

fn read(path: &Path, hint: &str) -> Result<Vec<u8>> {
    if !path.is_file() {
        bail!("missing {}: {hint}", path.display());
    }
    fs::read(path).with_context(|| format!("cannot read {}", path.display()))
}

fn dataset(pixels: Vec<u8>, labels: Vec<usize>, classes: usize) -> Dataset {
    Dataset {
        images: pixels.iter().map(|&p| p as f32 / 255.0).collect(),
        labels,
        shape: SHAPE,
        classes,
        background: vec![0.0; PIXELS],
    }
}

/// `root` may be the `cifar-10-batches-bin` folder itself or its parent.
fn resolve(root: &Path, sub: &str) -> PathBuf {
    if root.join(sub).is_dir() {
        root.join(sub)
    } else {
        root.to_path_buf()
    }
}

/// Loads CIFAR-10 (train: the five data batches; test: `test_batch.bin`).
pub fn load_cifar10(root: &Path) -> Result<(Dataset, Dataset)> {
    let dir = resolve(root, "cifar-10-batches-bin");
    let hint = "CIFAR-10 binary version: cifar-10-batches-bin/data_batch_1.bin … data_batch_5.bin \
                and test_batch.bin (the 'CIFAR-10 binary version' archive from the CIFAR site)";
    let (mut pixels, mut labels) = (Vec::new(), Vec::new());
    for k in 1..=5 {
        let path = dir.join(format!("data_batch_{k}.bin"));
        let (p, l) = parse_records(&read(&path, hint)?, &path, 1, 0, 10)?;
        pixels.extend(p);
        labels.extend(l);
    }
    let test_path = dir.join("test_batch.bin");
    let (tp, tl) = parse_records(&read(&test_path, hint)?, &test_path, 1, 0, 10)?;
    Ok((dataset(pixels, labels, 10), dataset(tp, tl, 10)))
}

/// Loads CIFAR-100 with fine (100) or coarse (20) labels.
pub fn load_cifar100(root: &Path, which: Cifar100Labels) -> Result<(Dataset, Dataset)> {
    let dir = resolve(root, "cifar-100-binary");
    let hint = "CIFAR-100 binary version: cifar-100-binary/train.bin and test.bin";
    let (pick, classes) = match which {
        Cifar100Labels::Coarse => (0, 20),
        Cifar100Labels::Fine => (1, 100),
    };
    let mut sets = Vec::new();
    for name in ["train.bin", "test.bin"] {
        let path = dir.join(name);
        let (p, l) = parse_records(&read(&path, hint)?, &path, 2, pick, classes)?;
        sets.push(dataset(p, l, classes));
    }
    let test = sets.pop().expect("two sets");
    let train = sets.pop().expect("two sets");
    Ok((train, test))
}
