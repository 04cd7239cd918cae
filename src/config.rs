//! Experiment files: the YAML schema a user writes, the checks run before any training, and the
//! expansion of a grid into fully resolved runs.
//!
//! Every mistake in a file is reported with the file name, the place (line/column from the YAML
//! parser, or the key path for value checks) and what to write instead.

use std::collections::BTreeSet;
use std::fmt;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::de::{self, MapAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::augment::Augment;
use crate::cifar::Cifar100Labels;
use crate::data::{Normalize, Preprocess};
use crate::device::DeviceKind;
use crate::method::{LabelRule, Method, MethodEntry};
use crate::report::tables::TableEntry;

/// An experiment file as written by the user.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Experiment {
    /// Folder name under `results/` and `reports/`.
    pub name: String,
    #[serde(default)]
    pub dataset: DatasetSpec,
    /// Seed of the data subsets (long-tailed, per-class); separate from the training seeds.
    #[serde(default)]
    pub data_seed: u64,
    pub splits: Vec<Split>,
    pub model: ModelSpec,
    pub train: TrainSpec,
    pub methods: Vec<MethodEntry>,
    pub seeds: Vec<u64>,
    /// Share of each class of every split's training images held out for validation (scored
    /// every epoch in `history.csv`); none when absent.
    #[serde(default)]
    pub validation: Option<f64>,
    /// Padding and normalisation of the images; the dataset's default when absent (CIFAR:
    /// per-channel; others: per-pixel standardisation).
    #[serde(default)]
    pub preprocess: Option<Preprocess>,
    /// Tables of the report (presets or custom); defaults when absent.
    #[serde(default)]
    pub tables: Vec<TableEntry>,
    /// Where the runs train (`cpu` or `cuda`); `icm run --device` overrides it.
    #[serde(default)]
    pub device: DeviceKind,
}

/// Which dataset the runs train on. In YAML: `digits` (default, embedded), `fashion-mnist`
/// (Debian's `dataset-fashion-mnist` folder unless `root` is given), `{idx: {root: DIR}}`,
/// `{cifar10: {root: DIR}}`, `{cifar100: {root: DIR, labels: fine | coarse}}`.
#[derive(Debug, Clone, Default, PartialEq)]
pub enum DatasetSpec {
    /// UCI optical digits (1,797 8×8 images), embedded in the binary.
    #[default]
    Digits,
    /// Any folder with the four MNIST-format files (MNIST, Fashion-MNIST, KMNIST).
    Idx {
        name: String,
        root: PathBuf,
    },
    Cifar10 {
        root: PathBuf,
    },
    Cifar100 {
        root: PathBuf,
        labels: Cifar100Labels,
    },
    /// `root/<class>/*.{png,jpg}` (optionally with CUB-style split files), resized.
    Folder {
        root: PathBuf,
        size: u32,
        test_fraction: f64,
    },
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct FolderFields {
    root: PathBuf,
    /// Images are resized to size × size.
    #[serde(default = "default_folder_size")]
    size: u32,
    /// Share of each class held out for testing when there are no split files.
    #[serde(default = "default_test_fraction")]
    test_fraction: f64,
}

fn default_folder_size() -> u32 {
    32
}
fn default_test_fraction() -> f64 {
    0.2
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RootFields {
    root: PathBuf,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct OptionalRootFields {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    root: Option<PathBuf>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Cifar100Fields {
    root: PathBuf,
    #[serde(default)]
    labels: Cifar100Labels,
}

const DATASETS: &[&str] = &[
    "digits",
    "fashion-mnist",
    "idx",
    "cifar10",
    "cifar100",
    "folder",
];

impl DatasetSpec {
    /// Short name for messages and reports.
    pub fn name(&self) -> String {
        match self {
            DatasetSpec::Digits => "digits".into(),
            DatasetSpec::Idx { name, .. } => name.clone(),
            DatasetSpec::Cifar10 { .. } => "cifar10".into(),
            DatasetSpec::Cifar100 { labels, .. } => match labels {
                Cifar100Labels::Fine => "cifar100".into(),
                Cifar100Labels::Coarse => "cifar100-coarse".into(),
            },
            DatasetSpec::Folder { .. } => "folder".into(),
        }
    }

    /// Preprocessing used when `preprocess` is absent: per-channel normalisation for CIFAR (its
    /// protocol), per-pixel standardisation otherwise.
    pub fn default_preprocess(&self) -> Preprocess {
        match self {
            DatasetSpec::Cifar10 { .. } | DatasetSpec::Cifar100 { .. } => Preprocess {
                normalize: Normalize::PerChannel,
                pad_to: None,
            },
            _ => Preprocess::default(),
        }
    }

    /// Augmentation used when `train.augment` is absent: the official CIFAR protocol's crop and
    /// flip for CIFAR; none for digits and MNIST-format data (flipping digits changes them).
    pub fn default_augment(&self) -> Option<Augment> {
        match self {
            DatasetSpec::Cifar10 { .. } | DatasetSpec::Cifar100 { .. } => Some(Augment {
                crop_padding: 4,
                flip: true,
            }),
            _ => None,
        }
    }

    fn fashion_mnist(root: Option<PathBuf>) -> DatasetSpec {
        DatasetSpec::Idx {
            name: "fashion-mnist".into(),
            root: root.unwrap_or_else(|| PathBuf::from(crate::idx::FASHION_MNIST_ROOT)),
        }
    }
}

impl Serialize for DatasetSpec {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        use serde::ser::{Error, SerializeMap};
        let json = |v: serde_json::Result<serde_json::Value>| v.map_err(S::Error::custom);
        let (key, value) = match self {
            DatasetSpec::Digits => return s.serialize_str("digits"),
            DatasetSpec::Idx { name, root } => (
                if name == "fashion-mnist" {
                    "fashion-mnist"
                } else {
                    "idx"
                },
                json(serde_json::to_value(RootFields { root: root.clone() }))?,
            ),
            DatasetSpec::Cifar10 { root } => (
                "cifar10",
                json(serde_json::to_value(RootFields { root: root.clone() }))?,
            ),
            DatasetSpec::Cifar100 { root, labels } => (
                "cifar100",
                json(serde_json::to_value(Cifar100Fields {
                    root: root.clone(),
                    labels: *labels,
                }))?,
            ),
            DatasetSpec::Folder {
                root,
                size,
                test_fraction,
            } => (
                "folder",
                json(serde_json::to_value(FolderFields {
                    root: root.clone(),
                    size: *size,
                    test_fraction: *test_fraction,
                }))?,
            ),
        };
        let mut m = s.serialize_map(Some(1))?;
        m.serialize_entry(key, &value)?;
        m.end()
    }
}

impl<'de> Deserialize<'de> for DatasetSpec {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        struct DatasetVisitor;
        impl<'de> Visitor<'de> for DatasetVisitor {
            type Value = DatasetSpec;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("`digits`, `fashion-mnist`, or `idx`/`cifar10`/`cifar100: {root: DIR}`")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> std::result::Result<DatasetSpec, E> {
                match v {
                    "digits" => Ok(DatasetSpec::Digits),
                    "fashion-mnist" => Ok(DatasetSpec::fashion_mnist(None)),
                    "idx" | "cifar10" | "cifar100" | "folder" => Err(E::custom(format!(
                        "dataset `{v}` needs its folder: write `{v}: {{root: /path/to/data}}`"
                    ))),
                    other => Err(E::unknown_variant(other, DATASETS)),
                }
            }
            fn visit_map<A: MapAccess<'de>>(
                self,
                mut map: A,
            ) -> std::result::Result<DatasetSpec, A::Error> {
                let key: String = map
                    .next_key()?
                    .ok_or_else(|| de::Error::custom("empty dataset entry"))?;
                let spec = match key.as_str() {
                    "digits" => {
                        map.next_value::<de::IgnoredAny>()?;
                        DatasetSpec::Digits
                    }
                    "fashion-mnist" => {
                        let f: Option<OptionalRootFields> = map.next_value()?;
                        DatasetSpec::fashion_mnist(f.and_then(|f| f.root))
                    }
                    "idx" => DatasetSpec::Idx {
                        name: "idx".into(),
                        root: map.next_value::<RootFields>()?.root,
                    },
                    "cifar10" => DatasetSpec::Cifar10 {
                        root: map.next_value::<RootFields>()?.root,
                    },
                    "cifar100" => {
                        let f: Cifar100Fields = map.next_value()?;
                        DatasetSpec::Cifar100 {
                            root: f.root,
                            labels: f.labels,
                        }
                    }
                    "folder" => {
                        let f: FolderFields = map.next_value()?;
                        if !(1..=1024).contains(&f.size) {
                            return Err(de::Error::custom(format!(
                                "folder `size` must be between 1 and 1024 pixels, got {}",
                                f.size
                            )));
                        }
                        if !(f.test_fraction > 0.0 && f.test_fraction < 1.0) {
                            return Err(de::Error::custom(format!(
                                "folder `test_fraction` must be in (0, 1), got {}",
                                f.test_fraction
                            )));
                        }
                        DatasetSpec::Folder {
                            root: f.root,
                            size: f.size,
                            test_fraction: f.test_fraction,
                        }
                    }
                    other => return Err(de::Error::unknown_variant(other, DATASETS)),
                };
                if let Some(extra) = map.next_key::<String>()? {
                    return Err(de::Error::custom(format!(
                        "one dataset per experiment: unexpected `{extra}`"
                    )));
                }
                Ok(spec)
            }
        }
        d.deserialize_any(DatasetVisitor)
    }
}

/// How the training set is subsampled (DESIGN §3). In YAML: `balanced`, `{long_tailed: {ratio: 10}}`,
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
}

/// Formats a number without a trailing `.0` (10 → "10", 0.5 → "0.5").
pub fn fmt_num(x: f64) -> String {
    if x.fract() == 0.0 && x.abs() < 1e15 {
        format!("{}", x as i64)
    } else {
        format!("{x}")
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
                        map.next_value::<de::IgnoredAny>()?;
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

/// The network.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelSpec {
    pub arch: Arch,
    /// Hidden layer widths of the MLP (default [128]); not used by convolutional networks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hidden: Option<Vec<usize>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Arch {
    /// Fully connected ReLU network on the flattened image.
    Mlp,
    /// conv32-pool-conv64-pool-conv128, global average pooling (for 8×8 and 28×28 inputs).
    SmallCnn,
    /// CIFAR ResNets (He et al. 2016): 6n + 2 layers, widths 16/32/64.
    Resnet20,
    Resnet32,
    Resnet44,
    Resnet56,
    Resnet110,
    /// ResNet-18/34 in the official ICM code's CIFAR form.
    Resnet18,
    Resnet34,
}

impl Arch {
    /// The convolutional architecture, `None` for the MLP.
    pub fn conv(self) -> Option<crate::convnet::ConvArch> {
        use crate::convnet::ConvArch;
        Some(match self {
            Arch::Mlp => return None,
            Arch::SmallCnn => ConvArch::SmallCnn,
            Arch::Resnet20 => ConvArch::Resnet(20),
            Arch::Resnet32 => ConvArch::Resnet(32),
            Arch::Resnet44 => ConvArch::Resnet(44),
            Arch::Resnet56 => ConvArch::Resnet(56),
            Arch::Resnet110 => ConvArch::Resnet(110),
            Arch::Resnet18 => ConvArch::Resnet18,
            Arch::Resnet34 => ConvArch::Resnet34,
        })
    }
}

/// Optimiser and schedule. SGD with momentum and weight decay, PyTorch conventions.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainSpec {
    pub epochs: usize,
    pub batch_size: usize,
    pub lr: f64,
    #[serde(default = "default_momentum")]
    pub momentum: f64,
    #[serde(default = "default_weight_decay")]
    pub weight_decay: f64,
    #[serde(default)]
    pub schedule: Schedule,
    /// Epochs at which a `multistep` schedule multiplies the rate by `lr_decay`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub milestones: Vec<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lr_decay: Option<f64>,
    /// Random crop / flip of training images; absent: the dataset's default (CIFAR: crop 4 and
    /// flip; digits and MNIST-format: none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub augment: Option<Augment>,
}

fn default_momentum() -> f64 {
    0.9
}
fn default_weight_decay() -> f64 {
    5e-4
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Schedule {
    Constant,
    /// Per-epoch cosine annealing, lr·(1 + cos(π·e/E))/2 for epoch e of E (PyTorch's
    /// `CosineAnnealingLR` with `T_max = E`, stepped per epoch).
    #[default]
    Cosine,
    /// `lr · lr_decay^(milestones passed)`.
    Multistep,
}

impl TrainSpec {
    /// Learning rate used throughout epoch `epoch` (0-based).
    pub fn lr_at(&self, epoch: usize) -> f64 {
        match self.schedule {
            Schedule::Constant => self.lr,
            Schedule::Cosine => {
                let t = epoch as f64 / self.epochs as f64;
                0.5 * self.lr * (1.0 + (std::f64::consts::PI * t).cos())
            }
            Schedule::Multistep => {
                let passed = self.milestones.iter().filter(|&&m| epoch >= m).count();
                self.lr * self.lr_decay.unwrap_or(0.2).powi(passed as i32)
            }
        }
    }
}

/// One point of the grid: everything that determines a run's result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunConfig {
    pub dataset: DatasetSpec,
    /// Left out when it is the default (per-pixel standardisation, no padding).
    #[serde(default, skip_serializing_if = "Preprocess::is_default")]
    pub preprocess: Preprocess,
    /// Validation hold-out share, when there is one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub validation: Option<f64>,
    pub data_seed: u64,
    pub split: Split,
    pub model: ModelSpec,
    pub train: TrainSpec,
    pub method: Method,
    pub seed: u64,
}

impl RunConfig {
    /// Stable identifier: the first 16 hex digits of SHA-256 over the canonical JSON of the
    /// resolved config without the data folder and the method's display name. Same on every
    /// machine (keys are sorted, floats print in shortest round-trip form).
    pub fn run_id(&self) -> String {
        use sha2::{Digest, Sha256};
        let mut value = serde_json::to_value(self).expect("run config serialises");
        // Display names do not change a result either: renaming a method keeps its runs.
        if let Some(serde_json::Value::Object(method)) = value.get_mut("method") {
            method.remove("name");
            method.remove("label_text");
        }
        // Where the data lives does not change a result: moving a dataset keeps the ids.
        if let Some(serde_json::Value::Object(fields)) = value
            .get_mut("dataset")
            .and_then(|d| d.as_object_mut())
            .and_then(|m| m.values_mut().next())
        {
            fields.remove("root");
        }
        let json = serde_json::to_string(&value).expect("run config serialises");
        let digest = Sha256::digest(json.as_bytes());
        digest.iter().take(8).map(|b| format!("{b:02x}")).collect()
    }
}

/// An experiment file after parsing and checking, with the place it came from.
#[derive(Debug, Clone)]
pub struct LoadedExperiment {
    pub path: PathBuf,
    pub name: String,
    pub dataset: DatasetSpec,
    pub data_seed: u64,
    pub splits: Vec<Split>,
    pub model: ModelSpec,
    pub train: TrainSpec,
    pub methods: Vec<Method>,
    pub seeds: Vec<u64>,
    pub preprocess: Preprocess,
    pub validation: Option<f64>,
    pub tables: Vec<TableEntry>,
    pub device: DeviceKind,
}

impl LoadedExperiment {
    /// The grid: splits × methods × seeds, in that nesting order.
    pub fn runs(&self) -> Vec<RunConfig> {
        let mut out = Vec::new();
        for split in &self.splits {
            for method in &self.methods {
                for &seed in &self.seeds {
                    out.push(RunConfig {
                        dataset: self.dataset.clone(),
                        preprocess: self.preprocess,
                        validation: self.validation,
                        data_seed: self.data_seed,
                        split: split.clone(),
                        model: self.model.clone(),
                        train: self.train.clone(),
                        method: method.clone(),
                        seed,
                    });
                }
            }
        }
        out
    }
}

/// Reads, parses and checks an experiment file.
pub fn load_experiment(path: &Path) -> Result<LoadedExperiment> {
    let text = std::fs::read_to_string(path).with_context(|| {
        format!(
            "cannot read experiment file {}: check the path (experiment files live under experiments/)",
            path.display()
        )
    })?;
    parse_experiment(&text, path)
}

/// Parses and checks experiment YAML; `path` is only used in messages.
pub fn parse_experiment(text: &str, path: &Path) -> Result<LoadedExperiment> {
    let exp: Experiment =
        serde_yaml::from_str(text).map_err(|e| anyhow::anyhow!(yaml_error(path, &e)))?;
    check_experiment(exp, path)
}

/// Formats a serde_yaml error as `file:line:column: message`, with a "did you mean" hint when an
/// unknown key or name is close to a valid one.
pub fn yaml_error(path: &Path, err: &serde_yaml::Error) -> String {
    let raw = err.to_string();
    // serde_yaml appends " at line L column C"; we move the place to the front.
    let message = match raw.rfind(" at line ") {
        Some(i) => raw[..i].to_string(),
        None => raw.clone(),
    };
    let place = match err.location() {
        Some(loc) => format!("{}:{}:{}", path.display(), loc.line(), loc.column()),
        None => path.display().to_string(),
    };
    let mut out = format!("{place}: {message}");
    if let Some(hint) = did_you_mean(&message) {
        out.push_str(&format!("\n  hint: did you mean `{hint}`?"));
    }
    out
}

/// From serde's "unknown field `x`, expected one of `a`, `b`" (or "unknown variant"), returns the
/// valid name closest to `x` when it is plausibly a typo.
fn did_you_mean(message: &str) -> Option<String> {
    let is_unknown = message.contains("unknown field") || message.contains("unknown variant");
    if !is_unknown {
        return None;
    }
    let mut names = message.split('`').skip(1).step_by(2);
    let wrong = names.next()?;
    names
        .map(|cand| (strsim::damerau_levenshtein(wrong, cand), cand))
        .filter(|(dist, cand)| *dist <= 2.max(cand.len() / 3))
        .min_by_key(|(dist, _)| *dist)
        .map(|(_, cand)| cand.to_string())
}

fn check_experiment(mut exp: Experiment, path: &Path) -> Result<LoadedExperiment> {
    let file = path.display();
    let fail =
        |place: &str, msg: String| -> anyhow::Error { anyhow::anyhow!("{file}: `{place}`: {msg}") };
    if exp.name.trim().is_empty()
        || exp
            .name
            .chars()
            .any(|c| !(c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.'))
    {
        return Err(fail(
            "name",
            format!(
                "`{}` is not a usable folder name; use letters, digits, `-`, `_` or `.`",
                exp.name
            ),
        ));
    }
    if exp.splits.is_empty() {
        return Err(fail(
            "splits",
            "list at least one split, e.g. `- balanced`".into(),
        ));
    }
    let mut seen = BTreeSet::new();
    for (i, split) in exp.splits.iter().enumerate() {
        let place = format!("splits[{i}]");
        match split {
            Split::Balanced => {}
            Split::LongTailed { ratio, .. } => {
                if !(ratio.is_finite() && *ratio >= 1.0) {
                    return Err(fail(
                        &format!("{place}.long_tailed.ratio"),
                        format!("imbalance ratio must be ≥ 1 (1 = balanced), got {ratio}"),
                    ));
                }
            }
            Split::PerClass { k } => {
                if *k < 1 {
                    return Err(fail(
                        &format!("{place}.per_class"),
                        "images per class must be ≥ 1, got 0".into(),
                    ));
                }
            }
        }
        if !seen.insert(split.slug()) {
            return Err(fail(
                &place,
                format!("split `{}` is listed twice", split.slug()),
            ));
        }
    }
    check_model(&mut exp.model).map_err(|m| fail("model", m))?;
    check_train(&exp.train).map_err(|(k, m)| fail(&format!("train.{k}"), m))?;
    if let Some(v) = exp.validation {
        if !(v > 0.0 && v < 1.0) {
            return Err(fail(
                "validation",
                format!("the held-out share must be in (0, 1), got {v}"),
            ));
        }
    }
    let preprocess = exp
        .preprocess
        .unwrap_or_else(|| exp.dataset.default_preprocess());
    if let Some(size) = preprocess.pad_to {
        if !(1..=1024).contains(&size) {
            return Err(fail(
                "preprocess.pad_to",
                format!("must be between 1 and 1024, got {size}"),
            ));
        }
    }
    if exp.train.augment.is_none() {
        exp.train.augment = exp.dataset.default_augment();
    }
    if exp.train.augment.is_some_and(|a| a.is_identity()) {
        exp.train.augment = None; // no augmentation: the same runs as leaving it out
    }
    if exp.train.schedule == Schedule::Multistep {
        // Resolved, so that writing the default and leaving it out are the same run.
        exp.train.lr_decay.get_or_insert(0.2);
    }
    if exp.methods.is_empty() {
        return Err(fail(
            "methods",
            "list at least one method, e.g. `- erm`".into(),
        ));
    }
    let mut methods = Vec::new();
    let mut labels = BTreeSet::new();
    for (i, entry) in exp.methods.iter().enumerate() {
        let method = entry
            .resolve()
            .map_err(|m| fail(&format!("methods[{i}] ({})", entry.preset_name()), m))?;
        if exp.model.arch.conv().is_some() && exp.train.batch_size < 2 {
            return Err(fail(
                "train.batch_size",
                "batch normalisation needs batches of at least 2 images".into(),
            ));
        }
        if method.uses_icm() && exp.train.batch_size < 2 {
            return Err(fail(
                "train.batch_size",
                format!(
                    "{} uses the ICM loss, which contrasts each pair with the other pairs of its batch: \
                     batch_size must be ≥ 2, got {}",
                    method.label(),
                    exp.train.batch_size
                ),
            ));
        }
        if method.label == LabelRule::Remix {
            if let Some(split) = exp
                .splits
                .iter()
                .find(|s| !matches!(s, Split::LongTailed { .. }))
            {
                return Err(fail(
                    &format!("methods[{i}] ({})", entry.preset_name()),
                    format!(
                        "Remix re-weights labels by the long-tailed class counts, but split `{}` \
                         has equal counts (Remix would silently equal Mixup); put Remix methods in \
                         an experiment whose splits are all `long_tailed`",
                        split.slug()
                    ),
                ));
            }
        }
        let settings = |m: &Method| {
            let mut v = serde_json::to_value(m).expect("method serialises");
            if let Some(o) = v.as_object_mut() {
                o.remove("name");
                o.remove("label_text");
            }
            v
        };
        if let Some(j) = methods
            .iter()
            .position(|m: &Method| settings(m) == settings(&method))
        {
            return Err(fail(
                &format!("methods[{i}]"),
                format!(
                    "`{}` has the same settings as methods[{j}] (`{}`): they would be the same runs",
                    method.label(),
                    methods[j].label()
                ),
            ));
        }
        if !labels.insert(method.label()) {
            return Err(fail(
                &format!("methods[{i}]"),
                format!(
                    "method `{}` is listed twice; give one of them a different `name:`",
                    method.label()
                ),
            ));
        }
        methods.push(method);
    }
    if exp.seeds.is_empty() {
        return Err(fail(
            "seeds",
            "list at least one training seed, e.g. `[0, 1, 2]`".into(),
        ));
    }
    let unique: BTreeSet<_> = exp.seeds.iter().collect();
    if unique.len() != exp.seeds.len() {
        return Err(fail("seeds", "a seed is listed twice".into()));
    }
    let mut table_names: BTreeSet<String> = BTreeSet::new();
    for (i, entry) in exp.tables.iter().enumerate() {
        crate::report::tables::check_entry(entry).map_err(|m| fail(&format!("tables[{i}]"), m))?;
        for name in crate::report::tables::entry_files(entry) {
            if !table_names.insert(name.clone()) {
                return Err(fail(
                    &format!("tables[{i}]"),
                    format!("a table named `{name}` is already listed; table names name files and must differ"),
                ));
            }
        }
    }
    Ok(LoadedExperiment {
        path: path.to_path_buf(),
        name: exp.name,
        dataset: exp.dataset,
        data_seed: exp.data_seed,
        splits: exp.splits,
        model: exp.model,
        train: exp.train,
        methods,
        seeds: exp.seeds,
        preprocess,
        validation: exp.validation,
        tables: exp.tables,
        device: exp.device,
    })
}

/// Checks the model and fills the MLP's default widths.
fn check_model(model: &mut ModelSpec) -> std::result::Result<(), String> {
    match model.arch {
        Arch::Mlp => {
            let hidden = model.hidden.get_or_insert_with(|| vec![128]);
            if hidden.contains(&0) {
                return Err(format!("hidden layer widths must be ≥ 1, got {hidden:?}"));
            }
        }
        _ => {
            if model.hidden.is_some() {
                return Err(
                    "`hidden` sets the MLP's widths; convolutional networks have fixed widths"
                        .into(),
                );
            }
        }
    }
    Ok(())
}

fn check_train(t: &TrainSpec) -> std::result::Result<(), (&'static str, String)> {
    if t.epochs == 0 || t.epochs > 1_000_000 {
        return Err((
            "epochs",
            format!("must be between 1 and 1,000,000, got {}", t.epochs),
        ));
    }
    if t.batch_size == 0 {
        return Err(("batch_size", "must be ≥ 1".into()));
    }
    if !(t.lr.is_finite() && t.lr > 0.0) {
        return Err(("lr", format!("learning rate must be > 0, got {}", t.lr)));
    }
    if !(0.0..1.0).contains(&t.momentum) {
        return Err(("momentum", format!("must be in [0, 1), got {}", t.momentum)));
    }
    if !(t.weight_decay.is_finite() && t.weight_decay >= 0.0) {
        return Err((
            "weight_decay",
            format!("must be ≥ 0, got {}", t.weight_decay),
        ));
    }
    match t.schedule {
        Schedule::Multistep => {
            if t.milestones.is_empty() {
                return Err((
                    "milestones",
                    "a multistep schedule needs `milestones: [e1, e2, ...]` (epochs)".into(),
                ));
            }
            if t.milestones.windows(2).any(|w| w[0] >= w[1]) {
                return Err((
                    "milestones",
                    format!("must be strictly increasing, got {:?}", t.milestones),
                ));
            }
            if let Some(d) = t.lr_decay {
                if !(d > 0.0 && d <= 1.0) {
                    return Err(("lr_decay", format!("must be in (0, 1], got {d}")));
                }
            }
        }
        _ => {
            if !t.milestones.is_empty() || t.lr_decay.is_some() {
                return Err((
                    "schedule",
                    "`milestones`/`lr_decay` only apply to `schedule: multistep`".into(),
                ));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn did_you_mean_finds_close_key() {
        let msg = "train: unknown field `epocs`, expected one of `epochs`, `batch_size`, `lr`";
        assert_eq!(did_you_mean(msg).as_deref(), Some("epochs"));
        let msg = "unknown field `zzzzzz`, expected one of `epochs`, `lr`";
        assert_eq!(did_you_mean(msg), None);
    }

    #[test]
    fn cosine_and_multistep_rates() {
        let mut t = TrainSpec {
            epochs: 4,
            batch_size: 8,
            lr: 0.1,
            momentum: 0.9,
            weight_decay: 0.0,
            schedule: Schedule::Cosine,
            milestones: vec![],
            lr_decay: None,
            augment: None,
        };
        assert!((t.lr_at(0) - 0.1).abs() < 1e-12);
        assert!((t.lr_at(2) - 0.05).abs() < 1e-12);
        t.schedule = Schedule::Multistep;
        t.milestones = vec![1, 3];
        t.lr_decay = Some(0.2);
        assert!((t.lr_at(0) - 0.1).abs() < 1e-12);
        assert!((t.lr_at(1) - 0.02).abs() < 1e-12);
        assert!((t.lr_at(3) - 0.004).abs() < 1e-12);
    }
}
