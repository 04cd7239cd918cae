//! Run identity and grid expansion: an experiment after checking ([`LoadedExperiment`]) expands
//! into fully resolved runs ([`RunConfig`]), each named by a hash of its resolved config.

use std::collections::BTreeMap;
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
        crate::util::text::sha256_hex(&json, 8)
    }
}

impl RunConfig {
    /// Every field of the resolved config as `dotted.path → value` (`train.lr → 0.1`), without
    /// the method's display names and the data folder (what run ids leave out too).
    pub fn fields(&self) -> BTreeMap<String, String> {
        let mut value = serde_json::to_value(self).expect("run config serialises");
        if let Some(m) = value.get_mut("method").and_then(|m| m.as_object_mut()) {
            m.remove("name");
            m.remove("label_text");
        }
        let mut leaves = Vec::new();
        crate::util::json::flatten("", &value, &mut leaves);
        leaves
            .into_iter()
            .filter(|(k, _)| !(k.starts_with("dataset.") && k.ends_with(".root")))
            .map(|(k, v)| (k, crate::util::json::leaf_text(&v)))
            .collect()
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
    /// The points of the file's `sweep:`, each a whole experiment (resolved and checked), in
    /// sweep order; empty without a sweep. With a sweep the fields above are the first point's
    /// (the grid axes, dataset, name, tables and claims are the same in every point).
    pub sweep: Vec<SweepPoint>,
    /// The `--set` overrides applied, as written (`train.lr=0.1`).
    pub overrides: Vec<String>,
}

/// One point of a sweep.
#[derive(Debug, Clone)]
pub struct SweepPoint {
    /// The swept values that tell it from the other points: `train.lr=0.1, data_seed=1`.
    pub label: String,
    /// The same as (key path, value) pairs, in the sweep's order.
    pub values: Vec<(String, String)>,
    pub exp: LoadedExperiment,
}

/// The name of a method's row in a point of a sweep: `mixup [train.lr=0.1]` (the method's own
/// name without a sweep).
pub fn point_row(method: &str, label: &str) -> String {
    if label.is_empty() {
        method.to_string()
    } else {
        format!("{method} [{label}]")
    }
}

impl LoadedExperiment {
    /// Every point of the sweep with its label; the experiment itself with an empty label when
    /// it has no sweep.
    pub fn points(&self) -> Vec<(&str, &LoadedExperiment)> {
        if self.sweep.is_empty() {
            return vec![("", self)];
        }
        self.sweep
            .iter()
            .map(|p| (p.label.as_str(), &p.exp))
            .collect()
    }

    /// The grid: sweep points × splits × methods × seeds, in that nesting order.
    pub fn runs(&self) -> Vec<RunConfig> {
        self.labelled_runs().into_iter().map(|(_, r)| r).collect()
    }

    /// The grid's runs, each with the label of its sweep point (empty without a sweep).
    pub fn labelled_runs(&self) -> Vec<(String, RunConfig)> {
        self.points()
            .into_iter()
            .flat_map(|(label, exp)| {
                exp.point_runs()
                    .into_iter()
                    .map(move |r| (label.to_string(), r))
            })
            .collect()
    }

    /// The methods as rows of the report: each method once per sweep point, named
    /// `mixup [train.lr=0.1]` (the methods themselves without a sweep).
    pub fn row_methods(&self) -> Vec<Method> {
        let mut out = Vec::new();
        for method in &self.methods {
            for (label, _) in self.points() {
                let mut m = method.clone();
                m.display_name = point_row(&method.display_name(), label);
                out.push(m);
            }
        }
        out
    }

    /// The claims the report tests: each claim within every sweep point, never across points
    /// (`icm-mixup [train.lr=0.1]` against `mixup [train.lr=0.1]`).
    pub fn row_claims(&self) -> Vec<super::Claim> {
        let mut out = Vec::new();
        for claim in &self.claims {
            for (label, _) in self.points() {
                out.push(super::Claim {
                    a: point_row(&claim.a, label),
                    b: point_row(&claim.b, label),
                    metric: claim.metric.clone(),
                });
            }
        }
        out
    }

    /// The runs of one point: splits × methods × seeds.
    fn point_runs(&self) -> Vec<RunConfig> {
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
