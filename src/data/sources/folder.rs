//! Image folders: `root/<class>/*.{png,jpg,jpeg}`, decoded with the `image` crate as RGB and
//! resized to `size × size`. With the CUB/DEIC split files `root/splits/{trainval,test}.txt` (one
//! `relative/path label` per line, labels 0-based) the files give the images and labels; without
//! them the classes are the sub-folders in name order and `test_fraction` of every class is held
//! out with a fixed seed.

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use super::Source;
use crate::data::{Dataset, ImageShape};

/// `dataset: {folder: {root: DIR, size: 32, test_fraction: 0.2}}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Folder {
    pub root: PathBuf,
    /// Images are resized to size × size.
    #[serde(default = "default_size")]
    pub size: u32,
    /// Share of each class held out for testing when there are no split files.
    #[serde(default = "default_test_fraction")]
    pub test_fraction: f64,
}

fn default_size() -> u32 {
    32
}
fn default_test_fraction() -> f64 {
    0.2
}

impl Source for Folder {
    fn check(&self) -> Result<(), String> {
        if !(1..=1024).contains(&self.size) {
            return Err(format!(
                "folder `size` must be between 1 and 1024 pixels, got {}",
                self.size
            ));
        }
        if !(self.test_fraction > 0.0 && self.test_fraction < 1.0) {
            return Err(format!(
                "folder `test_fraction` must be in (0, 1), got {}",
                self.test_fraction
            ));
        }
        Ok(())
    }
    fn name(&self) -> String {
        "folder".into()
    }
    fn load(&self) -> Result<(Dataset, Dataset)> {
        load(&self.root, self.size, self.test_fraction)
    }
}

/// Seed of the stratified split of folders without split files.
pub const FOLDER_SPLIT_SEED: u64 = 20230517;

fn is_image(p: &Path) -> bool {
    p.extension()
        .map(|e| e.to_string_lossy().to_ascii_lowercase())
        .is_some_and(|e| e == "png" || e == "jpg" || e == "jpeg")
}

/// One image and its class index.
type Item = (PathBuf, usize);

/// Every image of the class sub-folders (in name order: the first folder is class 0).
fn scan_classes(root: &Path) -> Result<Vec<Item>> {
    let mut classes: Vec<PathBuf> = fs::read_dir(root)
        .with_context(|| format!("cannot read image folder {}", root.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_dir() && p.file_name().is_some_and(|n| n != "splits"))
        .collect();
    classes.sort();
    if classes.len() < 2 {
        bail!(
            "{} must hold one sub-folder of images per class (at least 2), e.g. {0}/cat/1.png, \
             {0}/dog/2.jpg",
            root.display()
        );
    }
    let mut items = Vec::new();
    for (label, dir) in classes.iter().enumerate() {
        let mut files: Vec<PathBuf> = fs::read_dir(dir)
            .with_context(|| format!("cannot read {}", dir.display()))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.is_file() && is_image(p))
            .collect();
        if files.is_empty() {
            bail!("class folder {} has no .png/.jpg images", dir.display());
        }
        files.sort();
        items.extend(files.into_iter().map(|f| (f, label)));
    }
    Ok(items)
}

/// Reads a `relative/path label` split file.
fn read_split(root: &Path, file: &Path) -> Result<Vec<Item>> {
    let text =
        fs::read_to_string(file).with_context(|| format!("cannot read {}", file.display()))?;
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let (path, label) = line
            .rsplit_once(char::is_whitespace)
            .and_then(|(p, l)| Some((p.trim(), l.parse::<usize>().ok()?)))
            .with_context(|| {
                format!(
                    "{}:{}: expected `relative/path label`, got `{line}`",
                    file.display(),
                    i + 1
                )
            })?;
        out.push((root.join(path), label));
    }
    Ok(out)
}

/// Refuses split files that list an image in both the training and the test set (the test
/// accuracy would measure memory, not generalisation).
fn check_disjoint(
    train: &[Item],
    test: &[Item],
    train_file: &Path,
    test_file: &Path,
) -> Result<()> {
    let trained: std::collections::HashSet<&PathBuf> = train.iter().map(|(p, _)| p).collect();
    let shared: Vec<&PathBuf> = test
        .iter()
        .map(|(p, _)| p)
        .filter(|p| trained.contains(p))
        .collect();
    if let Some(first) = shared.first() {
        bail!(
            "{} and {} both list {} image(s), e.g. {}: an image must be in one of them only",
            train_file.display(),
            test_file.display(),
            shared.len(),
            first.display()
        );
    }
    Ok(())
}

/// Decodes one image as RGB, resized to `size × size`, channel-major in [0, 1].
fn decode(path: &Path, size: u32) -> Result<Vec<f32>> {
    let img = image::open(path)
        .with_context(|| format!("cannot decode image {}", path.display()))?
        .to_rgb8();
    let img = image::imageops::resize(&img, size, size, image::imageops::FilterType::Triangle);
    let n = (size * size) as usize;
    let mut out = vec![0.0f32; 3 * n];
    for (i, px) in img.pixels().enumerate() {
        for c in 0..3 {
            out[c * n + i] = px[c] as f32 / 255.0;
        }
    }
    Ok(out)
}

fn dataset(items: &[Item], size: u32, classes: usize) -> Result<Dataset> {
    let images: Vec<Vec<f32>> = items
        .par_iter()
        .map(|(p, _)| decode(p, size))
        .collect::<Result<_>>()?;
    let shape = ImageShape {
        channels: 3,
        height: size as usize,
        width: size as usize,
    };
    Ok(Dataset {
        images: images.concat(),
        labels: items.iter().map(|(_, y)| *y).collect(),
        shape,
        classes,
        background: vec![0.0; shape.numel()],
    })
}

/// Loads the training and test sets of an image folder.
pub fn load(root: &Path, size: u32, test_fraction: f64) -> Result<(Dataset, Dataset)> {
    if !root.is_dir() {
        bail!(
            "image folder {} does not exist; it must hold one sub-folder of .png/.jpg images per \
             class (and optionally splits/trainval.txt and splits/test.txt)",
            root.display()
        );
    }
    let (train_file, test_file) = (
        root.join("splits/trainval.txt"),
        root.join("splits/test.txt"),
    );
    if train_file.is_file() != test_file.is_file() {
        let (has, lacks) = if train_file.is_file() {
            (&train_file, &test_file)
        } else {
            (&test_file, &train_file)
        };
        bail!(
            "{} exists but {} does not: give both split files, or neither (then `test_fraction` \
             of every class folder is held out for testing)",
            has.display(),
            lacks.display()
        );
    }
    let (train, test) = if train_file.is_file() {
        let (train, test) = (
            read_split(root, &train_file)?,
            read_split(root, &test_file)?,
        );
        check_disjoint(&train, &test, &train_file, &test_file)?;
        (train, test)
    } else {
        let items = scan_classes(root)?;
        let classes = items.iter().map(|(_, y)| y + 1).max().unwrap_or(0);
        let mut rng = ChaCha8Rng::seed_from_u64(FOLDER_SPLIT_SEED);
        let (mut train, mut test) = (Vec::new(), Vec::new());
        for c in 0..classes {
            let mut members: Vec<&(PathBuf, usize)> =
                items.iter().filter(|(_, y)| *y == c).collect();
            if members.len() < 2 {
                bail!(
                    "class {c} of {} has {} image(s); it needs at least 2 (train and test)",
                    root.display(),
                    members.len()
                );
            }
            members.shuffle(&mut rng);
            let wanted = (members.len() as f64 * test_fraction).round() as usize;
            let held = wanted.clamp(1, members.len() - 1);
            test.extend(members[..held].iter().map(|&x| x.clone()));
            train.extend(members[held..].iter().map(|&x| x.clone()));
        }
        (train, test)
    };
    let classes = train
        .iter()
        .chain(&test)
        .map(|(_, y)| y + 1)
        .max()
        .unwrap_or(0);
    if classes < 2 {
        bail!("{}: fewer than 2 classes", root.display());
    }
    Ok((
        dataset(&train, size, classes)?,
        dataset(&test, size, classes)?,
    ))
}
