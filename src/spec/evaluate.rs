//! The `evaluate:` and `ood:` sections: what each run is scored on after its last epoch beyond
//! the test set. Corrupted copies of the test set (`evaluate:`), and out-of-distribution sets
//! (`ood:`): another dataset's test images, synthetic noise, or the test images of classes held
//! out of training. Both enter a run's id only when they are set, so runs of files without them
//! keep their ids.

use std::collections::BTreeMap;

use serde::de::{self, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize};

use crate::data::corrupt::MAX_SEVERITY;
use crate::data::{Corruption, DatasetSpec};

/// `evaluate:` — corrupted copies of the test set.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EvaluateSpec {
    /// A list of corruption names, or `all`.
    #[serde(deserialize_with = "corruptions_or_all")]
    pub corruptions: Vec<Corruption>,
    /// Severities 1–5 (default: 1 to 5).
    #[serde(default = "all_severities")]
    pub severities: Vec<u8>,
    /// Seed of the corruptions' random draws (the same images for every run).
    #[serde(default)]
    pub seed: u64,
    /// Corrupt only the first `images` test images (cheaper); the whole test set when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub images: Option<usize>,
}

fn all_severities() -> Vec<u8> {
    (1..=MAX_SEVERITY).collect()
}

fn corruptions_or_all<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Corruption>, D::Error> {
    struct ListVisitor;
    impl<'de> Visitor<'de> for ListVisitor {
        type Value = Vec<Corruption>;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("`all` or a list of corruptions (gaussian_noise, shot_noise, impulse_noise, gaussian_blur, contrast, brightness, pixelate, rotate)")
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
            if v == "all" {
                Ok(Corruption::ALL.to_vec())
            } else {
                Corruption::deserialize(de::value::StrDeserializer::<E>::new(v)).map(|c| vec![c])
            }
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
            let mut out = Vec::new();
            while let Some(c) = seq.next_element()? {
                out.push(c);
            }
            Ok(out)
        }
    }
    d.deserialize_any(ListVisitor)
}

impl EvaluateSpec {
    /// Checks the values; errors give the key below `evaluate.` and the fix.
    pub fn check(&self) -> Result<(), (String, String)> {
        if self.corruptions.is_empty() {
            return Err((
                "corruptions".into(),
                "list at least one corruption, or write `all`".into(),
            ));
        }
        if self.severities.is_empty() {
            return Err((
                "severities".into(),
                "list at least one severity, e.g. `[1, 3, 5]`".into(),
            ));
        }
        for (i, &s) in self.severities.iter().enumerate() {
            if !(1..=MAX_SEVERITY).contains(&s) {
                return Err((
                    format!("severities[{i}]"),
                    format!("severities run from 1 to {MAX_SEVERITY}, got {s}"),
                ));
            }
            if self.severities[..i].contains(&s) {
                return Err((
                    format!("severities[{i}]"),
                    format!("severity {s} is listed twice (it would count twice in the means)"),
                ));
            }
        }
        // An alias (`blur` for `gaussian_blur`) resolves to the same corruption.
        for (i, c) in self.corruptions.iter().enumerate() {
            if self.corruptions[..i].contains(c) {
                return Err((
                    format!("corruptions[{i}]"),
                    format!(
                        "`{}` is listed twice (perhaps under another name; it would count \
                         twice in the means)",
                        c.name()
                    ),
                ));
            }
        }
        if self.images == Some(0) {
            return Err((
                "images".into(),
                "must be at least 1 (or leave it out for the whole test set)".into(),
            ));
        }
        Ok(())
    }
}

/// Where an out-of-distribution set's images come from: `{dataset: SOURCE}`, `uniform_noise` or
/// `gaussian_noise`.
#[derive(Debug, Clone, PartialEq)]
pub enum OodSource {
    /// The test set of a dataset source, brought to the training images' shape.
    Dataset(DatasetSpec),
    /// Pixels uniform in 0..1, as many images as the test set.
    UniformNoise,
    /// Pixels N(0.5, 0.25²) clipped to 0..1, as many images as the test set.
    GaussianNoise,
}

/// `ood:` — out-of-distribution sets scored against the test set.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OodSpec {
    /// Classes left out of training (renumbered in order); their test images are the set
    /// `held_out` (near OOD). This changes training.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub held_out_classes: Vec<usize>,
    /// Named sets.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub sets: BTreeMap<String, OodSource>,
    /// Seed of the synthetic sets.
    #[serde(default)]
    pub seed: u64,
}

/// Name of the set of held-out classes.
pub const HELD_OUT: &str = "held_out";

impl OodSpec {
    /// Checks the values (the held-out classes against the dataset when it loads).
    pub fn check(&self) -> Result<(), (String, String)> {
        if self.held_out_classes.is_empty() && self.sets.is_empty() {
            return Err(("sets".into(), "name at least one set (e.g. `sets: {noise: uniform_noise}`) or give `held_out_classes`".into()));
        }
        if self.sets.contains_key(HELD_OUT) {
            return Err((
                format!("sets.{HELD_OUT}"),
                format!(
                    "`{HELD_OUT}` is the name of the held-out classes' set; choose another name"
                ),
            ));
        }
        let mut seen = self.held_out_classes.clone();
        seen.sort_unstable();
        seen.dedup();
        if seen.len() != self.held_out_classes.len() {
            return Err(("held_out_classes".into(), "a class is listed twice".into()));
        }
        Ok(())
    }
}

const NOISE_SETS: [(&str, OodSource); 2] = [
    ("uniform_noise", OodSource::UniformNoise),
    ("gaussian_noise", OodSource::GaussianNoise),
];

impl Serialize for OodSource {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        match self {
            OodSource::Dataset(d) => {
                let mut m = s.serialize_map(Some(1))?;
                m.serialize_entry("dataset", d)?;
                m.end()
            }
            other => {
                let (name, _) = NOISE_SETS
                    .iter()
                    .find(|(_, v)| v == other)
                    .expect("a noise set");
                s.serialize_str(name)
            }
        }
    }
}

impl<'de> Deserialize<'de> for OodSource {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct SourceVisitor;
        impl<'de> Visitor<'de> for SourceVisitor {
            type Value = OodSource;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("`uniform_noise`, `gaussian_noise` or `{dataset: SOURCE}` (e.g. `{dataset: digits}`)")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<OodSource, E> {
                NOISE_SETS
                    .iter()
                    .find(|(name, _)| *name == v)
                    .map(|(_, source)| source.clone())
                    .ok_or_else(|| {
                        E::unknown_variant(v, &["uniform_noise", "gaussian_noise", "dataset"])
                    })
            }
            fn visit_map<A: de::MapAccess<'de>>(self, mut map: A) -> Result<OodSource, A::Error> {
                let key: String = map
                    .next_key()?
                    .ok_or_else(|| de::Error::custom("empty OOD set"))?;
                if key != "dataset" {
                    return Err(de::Error::unknown_field(&key, &["dataset"]));
                }
                let spec = map.next_value::<DatasetSpec>()?;
                if let Some(extra) = map.next_key::<String>()? {
                    return Err(de::Error::custom(format!(
                        "one dataset per OOD set: unexpected `{extra}`"
                    )));
                }
                Ok(OodSource::Dataset(spec))
            }
        }
        d.deserialize_any(SourceVisitor)
    }
}
