//! MNIST-format (idx) files: `train-images-idx3-ubyte`, `train-labels-idx1-ubyte`,
//! `t10k-images-idx3-ubyte`, `t10k-labels-idx1-ubyte`, each optionally gzipped (`.gz`).
//! Covers MNIST, Fashion-MNIST (Debian package `dataset-fashion-mnist`) and KMNIST.

use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

use super::Source;
use crate::data::{Dataset, ImageShape};

/// Magic numbers: 0x00000803 for u8 images (3 dims), 0x00000801 for u8 labels (1 dim).
const IMAGES_MAGIC: u32 = 0x0803;
const LABELS_MAGIC: u32 = 0x0801;

/// Where Debian's `dataset-fashion-mnist` package puts Fashion-MNIST.
pub const FASHION_MNIST_ROOT: &str = "/usr/share/datasets/fashion-mnist";

/// `dataset: {idx: {root: DIR}}`: any folder of MNIST-format files.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Idx {
    pub root: PathBuf,
}

impl Source for Idx {
    fn name(&self) -> String {
        "idx".into()
    }
    fn load(&self) -> Result<(Dataset, Dataset)> {
        load(&self.root)
    }
}

/// `dataset: fashion-mnist`: Fashion-MNIST from Debian's package, or from `root`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FashionMnist {
    #[serde(default = "fashion_mnist_root")]
    pub root: PathBuf,
}

fn fashion_mnist_root() -> PathBuf {
    PathBuf::from(FASHION_MNIST_ROOT)
}

impl Source for FashionMnist {
    fn bare() -> Option<Self> {
        Some(FashionMnist {
            root: fashion_mnist_root(),
        })
    }
    fn name(&self) -> String {
        "fashion-mnist".into()
    }
    fn load(&self) -> Result<(Dataset, Dataset)> {
        load(&self.root)
    }
}

/// The four files of an idx dataset, by role.
pub const FILES: [&str; 4] = [
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
];

/// Finds `name` or `name.gz` under `root`.
fn find(root: &Path, name: &str) -> Result<PathBuf> {
    for candidate in [root.join(name), root.join(format!("{name}.gz"))] {
        if candidate.is_file() {
            return Ok(candidate);
        }
    }
    bail!(
        "{} has no `{name}` (or `{name}.gz`); an idx dataset folder holds {} (gzipped or not). \
         Fashion-MNIST: `apt-get install dataset-fashion-mnist` puts them in {FASHION_MNIST_ROOT}",
        root.display(),
        FILES.join(", ")
    )
}

/// Reads a whole file, un-gzipping `.gz`.
fn read_bytes(path: &Path) -> Result<Vec<u8>> {
    let raw = fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    if path.extension().is_some_and(|e| e == "gz") {
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(&raw[..])
            .read_to_end(&mut out)
            .with_context(|| format!("{} is not a valid gzip file", path.display()))?;
        Ok(out)
    } else {
        Ok(raw)
    }
}

fn be_u32(bytes: &[u8], at: usize, path: &Path) -> Result<u32> {
    bytes
        .get(at..at + 4)
        .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
        .with_context(|| {
            format!(
                "{} is truncated: header ends at byte {} (needs {})",
                path.display(),
                bytes.len(),
                at + 4
            )
        })
}

/// Parses an idx3 image file: (count, height, width, pixels).
pub fn parse_images(bytes: &[u8], path: &Path) -> Result<(usize, usize, usize, Vec<u8>)> {
    let magic = be_u32(bytes, 0, path)?;
    if magic != IMAGES_MAGIC {
        bail!(
            "{}: bad idx magic {magic:#010x} at byte 0 (images need {IMAGES_MAGIC:#010x})",
            path.display()
        );
    }
    let n = be_u32(bytes, 4, path)? as usize;
    let h = be_u32(bytes, 8, path)? as usize;
    let w = be_u32(bytes, 12, path)? as usize;
    if h == 0 || w == 0 {
        bail!(
            "{}: images of {h}×{w} pixels in the header (bytes 8–15); not an image file",
            path.display()
        );
    }
    let need = n
        .checked_mul(h)
        .and_then(|x| x.checked_mul(w))
        .and_then(|x| x.checked_add(16))
        .with_context(|| format!("{}: header sizes {n}×{h}×{w} overflow", path.display()))?;
    if bytes.len() != need {
        bail!(
            "{}: {n} images of {h}×{w} need {need} bytes, the file has {} (wrong size from byte {})",
            path.display(),
            bytes.len(),
            bytes.len().min(need)
        );
    }
    Ok((n, h, w, bytes[16..].to_vec()))
}

/// Parses an idx1 label file.
pub fn parse_labels(bytes: &[u8], path: &Path) -> Result<Vec<u8>> {
    let magic = be_u32(bytes, 0, path)?;
    if magic != LABELS_MAGIC {
        bail!(
            "{}: bad idx magic {magic:#010x} at byte 0 (labels need {LABELS_MAGIC:#010x})",
            path.display()
        );
    }
    let n = be_u32(bytes, 4, path)? as usize;
    if bytes.len() != 8 + n {
        bail!(
            "{}: {n} labels need {} bytes, the file has {} (wrong size from byte {})",
            path.display(),
            8 + n,
            bytes.len(),
            bytes.len().min(8 + n)
        );
    }
    Ok(bytes[8..].to_vec())
}

/// Encodes images in idx3 form (used by tests and tools that write small datasets).
pub fn encode_images(h: usize, w: usize, pixels: &[u8]) -> Vec<u8> {
    let n = pixels.len() / (h * w);
    let mut out = Vec::with_capacity(16 + pixels.len());
    for v in [IMAGES_MAGIC, n as u32, h as u32, w as u32] {
        out.extend_from_slice(&v.to_be_bytes());
    }
    out.extend_from_slice(pixels);
    out
}

/// Encodes labels in idx1 form.
pub fn encode_labels(labels: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(8 + labels.len());
    out.extend_from_slice(&LABELS_MAGIC.to_be_bytes());
    out.extend_from_slice(&(labels.len() as u32).to_be_bytes());
    out.extend_from_slice(labels);
    out
}

fn load_pair(root: &Path, images: &str, labels: &str, classes: usize) -> Result<Dataset> {
    let (ip, lp) = (find(root, images)?, find(root, labels)?);
    let (n, h, w, pixels) = parse_images(&read_bytes(&ip)?, &ip)?;
    let labels = parse_labels(&read_bytes(&lp)?, &lp)?;
    if labels.len() != n {
        bail!(
            "{} has {} labels but {} has {n} images",
            lp.display(),
            labels.len(),
            ip.display()
        );
    }
    if let Some(i) = labels.iter().position(|&y| y as usize >= classes) {
        bail!(
            "{}: label {} at byte {} is out of range (0..{classes})",
            lp.display(),
            labels[i],
            8 + i
        );
    }
    Ok(Dataset {
        images: pixels.iter().map(|&p| p as f32 / 255.0).collect(),
        labels: labels.iter().map(|&y| y as usize).collect(),
        shape: ImageShape {
            channels: 1,
            height: h,
            width: w,
        },
        classes,
        background: vec![0.0; h * w],
    })
}

/// Loads the training and test sets of an idx folder, pixels scaled to [0, 1].
pub fn load(root: &Path) -> Result<(Dataset, Dataset)> {
    if !root.is_dir() {
        bail!(
            "idx dataset folder {} does not exist; it must hold {} (gzipped or not). \
             Fashion-MNIST: `apt-get install dataset-fashion-mnist` puts them in {FASHION_MNIST_ROOT}",
            root.display(),
            FILES.join(", ")
        );
    }
    let train = load_pair(root, FILES[0], FILES[1], 10)?;
    let test = load_pair(root, FILES[2], FILES[3], 10)?;
    if train.shape != test.shape {
        bail!(
            "{}: training images are {}×{} but test images are {}×{}",
            root.display(),
            train.shape.height,
            train.shape.width,
            test.shape.height,
            test.shape.width
        );
    }
    Ok((train, test))
}
