//! Training-set subsampling (`docs/methods.md`, "Splits"): balanced, long-tailed, per-class.
//! Drawn with the experiment's data seed, independent of the training seed; the test set is
//! never touched.

use std::fmt;

use anyhow::{bail, Result};
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::de::{self, MapAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::util::fmt_num;

/// How the training set is subsampled. In YAML: `balanced`, `{long_tailed: {ratio: 10}}`,
/// `{per_class: 20}`.
#[derive(Debug, Clone, PartialEq)]
pub enum Split {
    Balanced,
    LongTailed { ratio: f64, profile: Profile },
    PerClass { k: usize },
}

/// Shape of a long-tailed class profile.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Profile {
    /// n_i = floor(n_max · ρ^(−i/(C−1))) (LDAM-DRW).
    #[default]
    Exp,
    /// First half of the classes keep n_max, the rest get n_max/ρ.
    Step,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct LongTailedFields {
    ratio: f64,
    #[serde(default)]
    profile: Profile,
}

impl Split {
    /// Short name used in file names and as the stable key of a table column.
    pub fn slug(&self) -> String {
        match self {
            Split::Balanced => "balanced".into(),
            Split::LongTailed { ratio, profile } => match profile {
                Profile::Exp => format!("long_tailed-{}", fmt_num(*ratio)),
                Profile::Step => format!("long_tailed-step-{}", fmt_num(*ratio)),
            },
            Split::PerClass { k } => format!("per_class-{k}"),
        }
    }

    /// Human-readable column title.
    pub fn title(&self) -> String {
        match self {
            Split::Balanced => "balanced".into(),
            Split::LongTailed { ratio, profile } => match profile {
                Profile::Exp => format!("long-tailed ρ={}", fmt_num(*ratio)),
                Profile::Step => format!("long-tailed step ρ={}", fmt_num(*ratio)),
            },
            Split::PerClass { k } => format!("{k} per class"),
        }
    }

    /// Checks the split's parameter: `Err((key path below the split, message))`.
    pub fn check(&self) -> std::result::Result<(), (String, String)> {
        match self {
            Split::Balanced => Ok(()),
            Split::LongTailed { ratio, .. } if !(ratio.is_finite() && *ratio >= 1.0) => Err((
                "long_tailed.ratio".into(),
                format!(
                    "imbalance ratio must be ≥ 1 and finite (1: every class gets the \
                     smallest class's count), got {ratio}"
                ),
            )),
            Split::PerClass { k: 0 } => Err((
                "per_class".into(),
                "images per class must be ≥ 1, got 0".into(),
            )),
            _ => Ok(()),
        }
    }
}

impl Serialize for Split {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        match self {
            Split::Balanced => s.serialize_str("balanced"),
            Split::LongTailed { ratio, profile } => {
                let mut m = s.serialize_map(Some(1))?;
                m.serialize_entry(
                    "long_tailed",
                    &LongTailedFields {
                        ratio: *ratio,
                        profile: *profile,
                    },
                )?;
                m.end()
            }
            Split::PerClass { k } => {
                let mut m = s.serialize_map(Some(1))?;
                m.serialize_entry("per_class", k)?;
                m.end()
            }
        }
    }
}

const SPLIT_KINDS: &[&str] = &["balanced", "long_tailed", "per_class"];

impl<'de> Deserialize<'de> for Split {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        struct SplitVisitor;
        impl<'de> Visitor<'de> for SplitVisitor {
            type Value = Split;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("`balanced`, `long_tailed: {ratio: R}` or `per_class: K`")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> std::result::Result<Split, E> {
                match v {
                    "balanced" => Ok(Split::Balanced),
                    "long_tailed" | "per_class" => Err(E::custom(format!(
                        "split `{v}` needs a parameter: write `{v}: {}`",
                        if v == "per_class" {
                            "20"
                        } else {
                            "{ratio: 10}"
                        }
                    ))),
                    other => Err(E::unknown_variant(other, SPLIT_KINDS)),
                }
            }
            fn visit_map<A: MapAccess<'de>>(
                self,
                mut map: A,
            ) -> std::result::Result<Split, A::Error> {
                let key: String = map
                    .next_key()?
                    .ok_or_else(|| de::Error::custom("empty split entry"))?;
                let split = match key.as_str() {
                    "balanced" => {
                        map.next_value::<crate::util::NoParameters>()?;
                        Split::Balanced
                    }
                    "long_tailed" => {
                        let f: LongTailedFields = map.next_value()?;
                        Split::LongTailed {
                            ratio: f.ratio,
                            profile: f.profile,
                        }
                    }
                    "per_class" => Split::PerClass {
                        k: map.next_value()?,
                    },
                    other => return Err(de::Error::unknown_variant(other, SPLIT_KINDS)),
                };
                if let Some(extra) = map.next_key::<String>()? {
                    return Err(de::Error::custom(format!(
                        "one split per list entry: `{extra}` must be its own `- {extra}: ...` item"
                    )));
                }
                Ok(split)
            }
        }
        d.deserialize_any(SplitVisitor)
    }
}

/// Per-class image counts of a long-tailed profile with `n_max` images in class 0.
/// Exponential: n_i = ⌊n_max · ρ^(−i/(C−1))⌋ (LDAM-DRW); step: the first ⌊C/2⌋ classes keep
/// n_max, the rest get ⌊n_max/ρ⌋.
pub fn long_tailed_counts(
    n_max: usize,
    classes: usize,
    ratio: f64,
    profile: Profile,
) -> Vec<usize> {
    (0..classes)
        .map(|i| match profile {
            Profile::Exp => {
                if classes == 1 {
                    n_max
                } else {
                    let exponent = i as f64 / (classes - 1) as f64;
                    (n_max as f64 * (1.0 / ratio).powf(exponent)).floor() as usize
                }
            }
            Profile::Step => {
                if i < classes / 2 {
                    n_max
                } else {
                    (n_max as f64 / ratio).floor() as usize
                }
            }
        })
        .collect()
}

/// How many training images of each class a split keeps, given the pool's class counts.
/// Long-tailed profiles start from the smallest pool class so every class can supply its share.
pub fn split_counts(split: &Split, pool_counts: &[usize]) -> Result<Vec<usize>> {
    if let Some(c) = pool_counts.iter().position(|&n| n == 0) {
        bail!(
            "the dataset's training set has no images of class {c} (counts {pool_counts:?}); \
             every class needs training images"
        );
    }
    let smallest = *pool_counts.iter().min().unwrap_or(&0);
    let counts = match split {
        Split::Balanced => pool_counts.to_vec(),
        Split::LongTailed { ratio, profile } => {
            long_tailed_counts(smallest, pool_counts.len(), *ratio, *profile)
        }
        Split::PerClass { k } => {
            if *k > smallest {
                let c = pool_counts.iter().position(|&n| n == smallest).unwrap_or(0);
                bail!(
                    "split `{}` asks for {k} images per class, but class {c} has only {smallest} \
                     training images; use per_class ≤ {smallest}",
                    split.slug()
                );
            }
            vec![*k; pool_counts.len()]
        }
    };
    if let Some(c) = counts.iter().position(|&n| n == 0) {
        bail!(
            "split `{}` leaves class {c} with 0 training images (counts {:?}); lower the ratio",
            split.slug(),
            counts
        );
    }
    Ok(counts)
}

/// Indices (into the training pool) of the images a split keeps: for each class, the first n_c
/// of that class's images shuffled with a generator seeded by (data seed, class).
pub fn select(
    split: &Split,
    labels: &[usize],
    classes: usize,
    data_seed: u64,
) -> Result<Vec<usize>> {
    let mut by_class: Vec<Vec<usize>> = vec![Vec::new(); classes];
    for (i, &y) in labels.iter().enumerate() {
        by_class[y].push(i);
    }
    let pool_counts: Vec<usize> = by_class.iter().map(Vec::len).collect();
    let counts = split_counts(split, &pool_counts)?;
    if matches!(split, Split::Balanced) {
        return Ok((0..labels.len()).collect());
    }
    let mut keep = Vec::new();
    for (c, idx) in by_class.iter_mut().enumerate() {
        let mut rng = ChaCha8Rng::seed_from_u64(data_seed);
        rng.set_stream(c as u64 + 1);
        idx.shuffle(&mut rng);
        keep.extend_from_slice(&idx[..counts[c]]);
    }
    keep.sort_unstable();
    Ok(keep)
}

/// Refuses a validation hold-out that takes half or more of some class's training images
/// ([`hold_out`] takes round(n·fraction) of a class of n, at least 1 and at most n − 1, none of
/// a class of one): such a split would train on too little of that class to mean anything.
pub fn check_hold_out(
    indices: &[usize],
    labels: &[usize],
    classes: usize,
    fraction: f64,
) -> Result<(), String> {
    let mut counts = vec![0usize; classes];
    for &i in indices {
        counts[labels[i]] += 1;
    }
    for (c, &n) in counts.iter().enumerate() {
        let held = held_out(n, fraction);
        if n >= 2 && held * 2 >= n {
            return Err(format!(
                "`validation: {fraction}` would hold out {held} of the {n} training images of \
                 class {c}, half or more; use a split with more images per class, or leave out \
                 `validation`"
            ));
        }
    }
    Ok(())
}

/// How many of a class's `n` images [`hold_out`] holds out.
fn held_out(n: usize, fraction: f64) -> usize {
    if n >= 2 {
        ((n as f64 * fraction).round() as usize).clamp(1, n - 1)
    } else {
        0
    }
}

/// Splits a training subset into (train, validation): `fraction` of each class (rounded, at
/// least one image when the class has two or more) goes to validation, drawn with the data seed.
pub fn hold_out(
    indices: &[usize],
    labels: &[usize],
    classes: usize,
    fraction: f64,
    data_seed: u64,
) -> (Vec<usize>, Vec<usize>) {
    let (mut train, mut val) = (Vec::new(), Vec::new());
    for c in 0..classes {
        let mut members: Vec<usize> = indices
            .iter()
            .copied()
            .filter(|&i| labels[i] == c)
            .collect();
        let mut rng = ChaCha8Rng::seed_from_u64(data_seed);
        rng.set_stream(1000 + c as u64);
        members.shuffle(&mut rng);
        let held = held_out(members.len(), fraction);
        val.extend_from_slice(&members[..held]);
        train.extend_from_slice(&members[held..]);
    }
    train.sort_unstable();
    val.sort_unstable();
    (train, val)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ldam_counts() {
        assert_eq!(
            long_tailed_counts(5000, 10, 100.0, Profile::Exp),
            vec![5000, 2997, 1796, 1077, 645, 387, 232, 139, 83, 50]
        );
        assert_eq!(
            long_tailed_counts(5000, 10, 10.0, Profile::Step),
            vec![5000, 5000, 5000, 5000, 5000, 500, 500, 500, 500, 500]
        );
        // The digits quickstart's ρ = 10 split (smallest pool class: 138 images), as documented.
        assert_eq!(
            long_tailed_counts(138, 10, 10.0, Profile::Exp),
            vec![138, 106, 82, 64, 49, 38, 29, 23, 17, 13]
        );
    }

    #[test]
    fn per_class_and_seeds() {
        let labels: Vec<usize> = (0..100).map(|i| i % 4).collect();
        let s = Split::PerClass { k: 5 };
        let a = select(&s, &labels, 4, 1).unwrap();
        let b = select(&s, &labels, 4, 1).unwrap();
        let c = select(&s, &labels, 4, 2).unwrap();
        assert_eq!(a.len(), 20);
        assert_eq!(a, b);
        assert_ne!(a, c);
        for class in 0..4 {
            assert_eq!(a.iter().filter(|&&i| labels[i] == class).count(), 5);
        }
        let err = select(&Split::PerClass { k: 26 }, &labels, 4, 0).unwrap_err();
        assert!(err.to_string().contains("only 25"), "{err}");
    }

    #[test]
    fn validation_hold_out_per_class() {
        let labels: Vec<usize> = (0..40).map(|i| i % 2).collect();
        let all: Vec<usize> = (0..40).collect();
        let (train, val) = hold_out(&all, &labels, 2, 0.1, 3);
        assert_eq!((train.len(), val.len()), (36, 4));
        assert_eq!(val.iter().filter(|&&i| labels[i] == 0).count(), 2);
        assert!(train.iter().all(|i| !val.contains(i)));
        assert_eq!(hold_out(&all, &labels, 2, 0.1, 3), (train, val));
    }

    #[test]
    fn too_steep_ratio_names_the_empty_class() {
        let labels: Vec<usize> = (0..40).map(|i| i % 4).collect();
        let s = Split::LongTailed {
            ratio: 100.0,
            profile: Profile::Exp,
        };
        let err = select(&s, &labels, 4, 0).unwrap_err().to_string();
        assert!(err.contains("class 2 with 0"), "{err}");
    }
}
