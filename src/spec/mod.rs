//! The spec layer: the YAML schema of an experiment file, assembled from each layer's own section
//! ([`crate::data`]'s dataset, splits and preprocessing; [`crate::mix`]'s methods;
//! [`crate::nn`]'s model and device) plus the `train:` ([`train`]) and `tables:` ([`tables`])
//! sections; the checks run before any training ([`check`]); YAML error messages ([`yaml`]);
//! `--set` overrides and sweeps ([`sweep`], applied by [`load`]); and run identity and grid
//! expansion ([`run`]).
//!
//! Every mistake in a file is reported with the file name, the place (line/column from the YAML
//! parser, or the key path for value checks) and what to write instead.

pub mod check;
pub mod claims;
pub mod evaluate;
pub mod load;
pub mod run;
pub mod sweep;
pub mod tables;
pub mod train;
pub mod yaml;

use std::path::Path;

use anyhow::{Context, Result};
use serde::Deserialize;

pub use claims::Claim;
pub use evaluate::{EvaluateSpec, OodSource, OodSpec};
pub use run::{LoadedExperiment, RunConfig, SweepPoint};
pub use sweep::Override;
pub use tables::TableEntry;
pub use train::{Schedule, TrainSpec};
pub use yaml::yaml_error;

use crate::data::{DatasetSpec, Preprocess, Split};
use crate::mix::MethodEntry;
use crate::nn::{DeviceKind, ModelSpec};

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
    /// Comparisons the report tests beyond the default ones (every ICM method against its
    /// label-loss twin).
    #[serde(default)]
    pub claims: Vec<claims::ClaimSpec>,
    /// Corrupted copies of the test set each run is scored on after its last epoch.
    #[serde(default)]
    pub evaluate: Option<EvaluateSpec>,
    /// Out-of-distribution sets each run is scored against after its last epoch.
    #[serde(default)]
    pub ood: Option<OodSpec>,
    /// Values to sweep over, by key path (`train.lr: [0.05, 0.1]`); read by [`sweep`].
    #[serde(default)]
    pub sweep: Option<serde_yaml::Mapping>,
}

/// Reads, parses and checks an experiment file.
pub fn load_experiment(path: &Path) -> Result<LoadedExperiment> {
    load_experiment_with(path, &[])
}

/// Reads an experiment file, applies `--set` overrides and checks the result.
pub fn load_experiment_with(path: &Path, overrides: &[Override]) -> Result<LoadedExperiment> {
    if path.is_dir() {
        anyhow::bail!(
            "{} is a folder, not an experiment file: give a .yaml file (e.g. experiments/quickstart.yaml)",
            path.display()
        );
    }
    let bytes = std::fs::read(path).with_context(|| {
        format!(
            "cannot read experiment file {}: check the path (experiment files live under experiments/)",
            path.display()
        )
    })?;
    let text = yaml::yaml_text(path, bytes).map_err(anyhow::Error::msg)?;
    parse_experiment_with(&text, path, overrides)
}

/// Parses and checks experiment YAML (a leading byte-order mark is ignored); `path` is only used
/// in messages.
pub fn parse_experiment(text: &str, path: &Path) -> Result<LoadedExperiment> {
    parse_experiment_with(text, path, &[])
}

/// [`parse_experiment`] with `--set` overrides and the points of the file's `sweep:` (see
/// [`load`]).
pub fn parse_experiment_with(
    text: &str,
    path: &Path,
    overrides: &[Override],
) -> Result<LoadedExperiment> {
    load::parse(text, path, overrides)
}
