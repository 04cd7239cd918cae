//! Run identity and grid expansion: an experiment after checking ([`LoadedExperiment`]) expands
//! into fully resolved runs ([`RunConfig`]), each named by a hash of its resolved config.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::evaluate::{EvaluateSpec, OodSpec};
use super::tables::TableEntry;
use super::train::TrainSpec;
use crate::data::{DatasetSpec, Preprocess, Split};
use crate::mix::Method;
use crate::nn::{DeviceKind, ModelSpec};

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
    /// Corrupted test sets; only in the run id when set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub evaluate: Option<EvaluateSpec>,
    /// Out-of-distribution sets and held-out classes; only in the run id when set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ood: Option<OodSpec>,
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
    /// The claims the report tests: the defaults and the experiment's `claims:`.
    pub claims: Vec<super::Claim>,
    pub evaluate: Option<EvaluateSpec>,
    pub ood: Option<OodSpec>,
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
                        evaluate: self.evaluate.clone(),
                        ood: self.ood.clone(),
                    });
                }
            }
        }
        out
    }
}
