//! Finding runs on disk (walkdir) and turning them into one polars DataFrame, one row per run:
//! every resolved config field as a column plus every metric.

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use polars::prelude::*;
use walkdir::WalkDir;

use crate::grid::records::{self, RunMetrics};
use crate::metrics::catalog::in_use;
use crate::metrics::{Metric, TestMetrics};
use crate::spec::RunConfig;
use crate::util::write_atomic;

/// A finished run.
#[derive(Debug, Clone)]
pub struct RunRecord {
    pub dir: PathBuf,
    pub config: RunConfig,
    pub metrics: RunMetrics,
}

/// A run folder that is not aggregated: failed (with its reason), interrupted or still running,
/// or unreadable.
#[derive(Debug, Clone, PartialEq)]
pub struct Unfinished {
    pub dir: PathBuf,
    pub reason: String,
}

/// Everything found under a results folder.
#[derive(Debug, Clone, Default)]
pub struct Collection {
    pub runs: Vec<RunRecord>,
    pub unfinished: Vec<Unfinished>,
}

/// Walks `root` for run folders (those with a `config.yaml`).
pub fn collect(root: &Path) -> Result<Collection> {
    if !root.is_dir() {
        bail!(
            "no results at {}: run the experiment first (`icm run <file.yaml>`)",
            root.display()
        );
    }
    let mut out = Collection::default();
    for entry in WalkDir::new(root).sort_by_file_name() {
        let entry = entry.with_context(|| format!("cannot walk {}", root.display()))?;
        let dir = entry.path();
        if !entry.file_type().is_dir() || !dir.join(records::CONFIG_FILE).is_file() {
            continue;
        }
        let unfinished = |reason: String| Unfinished {
            dir: dir.to_path_buf(),
            reason,
        };
        if let Some(reason) = records::retrain_reason(dir) {
            out.unfinished
                .push(unfinished(format!("to be trained again: {reason}")));
        } else if dir.join(records::METRICS_FILE).is_file() {
            let read = records::read_config(&dir.join(records::CONFIG_FILE)).and_then(|config| {
                records::check_auxiliary(dir)?;
                Ok(RunRecord {
                    dir: dir.to_path_buf(),
                    config,
                    metrics: records::read_metrics(&dir.join(records::METRICS_FILE))?,
                })
            });
            match read {
                Ok(run) => out.runs.push(run),
                Err(e) => out
                    .unfinished
                    .push(unfinished(format!("unreadable: {e:#}"))),
            }
        } else if dir.join(records::FAILURE_FILE).is_file() {
            let reason = fs::read_to_string(dir.join(records::FAILURE_FILE)).unwrap_or_default();
            out.unfinished
                .push(unfinished(format!("failed: {}", reason.trim())));
        } else {
            out.unfinished.push(unfinished(
                "not finished (running, or interrupted: `icm run` resumes it)".into(),
            ));
        }
    }
    Ok(out)
}

/// Replaces every run's test metrics by those computed again from its stored logits
/// (`icm report --recompute`); returns the notes that say what was done: how many were
/// recomputed, how many changed, and which runs (of earlier versions, without `logits.npy`) keep
/// their stored metrics.
pub fn recompute_metrics(runs: &mut [RunRecord]) -> Result<Vec<String>> {
    let (mut recomputed, mut changed, mut kept) = (0, 0, Vec::new());
    for run in runs.iter_mut() {
        match records::recompute(&run.dir, &run.metrics.test)? {
            Some((test, _)) => {
                recomputed += 1;
                changed += usize::from(!same_metrics(&test, &run.metrics.test));
                run.metrics.test = test;
            }
            None => kept.push(run.dir.display().to_string()),
        }
    }
    let mut notes = vec![format!(
        "--recompute: the metrics of {recomputed} runs were computed again from their {} \
         ({changed} differ from their {} by more than its last digit)",
        records::LOGITS_FILE,
        records::METRICS_FILE
    )];
    if !kept.is_empty() {
        notes.push(format!(
            "--recompute: {} runs have no {} (written by an earlier version) and keep their \
             stored metrics: {}",
            kept.len(),
            records::LOGITS_FILE,
            kept.join(", ")
        ));
    }
    Ok(notes)
}

/// Whether two runs' test metrics agree up to the last bit of each value: serde_json's default
/// parser may read a number of `metrics.json` 1 ulp off the value written.
fn same_metrics(a: &TestMetrics, b: &TestMetrics) -> bool {
    let values = |t: &TestMetrics| {
        let mut v = vec![t.accuracy, t.ece, t.adaptive_ece, t.mce, t.nll, t.brier];
        v.extend(t.per_class_accuracy.iter().map(|a| a.unwrap_or(-1.0)));
        v
    };
    let (va, vb) = (values(a), values(b));
    va.len() == vb.len() && va.iter().zip(&vb).all(|(&x, &y)| same_value(x, y))
}

/// Equal but for the last bit (a value read back from JSON by serde_json's default parser).
fn same_value(x: f64, y: f64) -> bool {
    x == y || (x - y).abs() <= 2.0 * f64::EPSILON * x.abs().max(y.abs())
}

/// The reliability bins of a run as its report uses them: `reliability.json`, unless the run's
/// test metrics were recomputed (`--recompute`) to an ECE other than the file's, when they are
/// computed again from the stored logits too, so the diagrams agree with the tables.
pub fn reliability(run: &RunRecord) -> Result<records::Reliability> {
    let stored = records::read_reliability(&run.dir.join(records::RELIABILITY_FILE))?;
    if same_value(stored.ece, run.metrics.test.ece) {
        return Ok(stored);
    }
    Ok(records::recompute(&run.dir, &run.metrics.test)?.map_or(stored, |(_, r)| r))
}

/// A run's value of a catalog metric (`None`: the metric does not apply, e.g. no few-shot
/// classes).
pub fn metric_value(r: &RunMetrics, metric: &Metric) -> Option<f64> {
    metric.value(&r.test, &r.train_class_counts)
}

/// Flattens a JSON value into `prefix.key` → leaf pairs.
pub(super) fn flatten(
    prefix: &str,
    v: &serde_json::Value,
    out: &mut Vec<(String, serde_json::Value)>,
) {
    match v {
        serde_json::Value::Object(map) => {
            for (k, x) in map {
                let key = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                flatten(&key, x, out);
            }
        }
        other => out.push((prefix.to_string(), other.clone())),
    }
}

/// One row per run: identification, every resolved config field (dotted names such as
/// `config.train.lr`, `config.method.alpha`) and every metric.
pub fn runs_frame(runs: &[RunRecord]) -> Result<DataFrame> {
    let text = |name: &str, f: &dyn Fn(&RunRecord) -> String| {
        Column::new(name.into(), runs.iter().map(f).collect::<Vec<_>>())
    };
    let mut columns: Vec<Column> = vec![
        text("run_id", &|r| r.metrics.run_id.clone()),
        text("experiment", &|r| r.metrics.experiment.clone()),
        text("dataset", &|r| r.config.dataset.name()),
        text("method", &|r| r.metrics.method.clone()),
        text("split", &|r| r.metrics.split.clone()),
        Column::new(
            "seed".into(),
            runs.iter().map(|r| r.metrics.seed).collect::<Vec<_>>(),
        ),
    ];
    columns.extend(config_columns(runs));
    for metric in in_use() {
        let xs: Vec<Option<f64>> = runs
            .iter()
            .map(|r| metric_value(&r.metrics, metric))
            .collect();
        columns.push(Column::new(metric.name.into(), xs));
    }
    columns.push(Column::new(
        "train_seconds".into(),
        runs.iter()
            .map(|r| r.metrics.train_seconds)
            .collect::<Vec<_>>(),
    ));
    columns.push(text("device", &|r| r.metrics.device.to_string()));
    columns.push(Column::new(
        "diverged".into(),
        runs.iter()
            .map(|r| r.metrics.diverged.is_some())
            .collect::<Vec<_>>(),
    ));
    Ok(DataFrame::new(runs.len(), columns)?)
}

/// One column per config field, over the union of the runs' fields: integers (seeds, epochs,
/// widths) as integer columns, other numbers as f64, the rest as text.
fn config_columns(runs: &[RunRecord]) -> Vec<Column> {
    let flat: Vec<Vec<(String, serde_json::Value)>> = runs
        .iter()
        .map(|r| {
            let mut out = Vec::new();
            flatten(
                "config",
                &serde_json::to_value(&r.config).expect("config serialises"),
                &mut out,
            );
            out
        })
        .collect();
    let mut keys: Vec<String> = flat.iter().flatten().map(|(k, _)| k.clone()).collect();
    keys.sort();
    keys.dedup();
    keys.into_iter()
        .map(|key| {
            let values: Vec<Option<&serde_json::Value>> = flat
                .iter()
                .map(|row| row.iter().find(|(k, _)| *k == key).map(|(_, v)| v))
                .collect();
            let present = || values.iter().flatten();
            if present().all(|v| v.is_u64()) {
                let xs: Vec<Option<u64>> =
                    values.iter().map(|v| v.and_then(|v| v.as_u64())).collect();
                return Column::new(key.as_str().into(), xs);
            }
            if present().all(|v| v.is_i64() || v.is_u64()) {
                let xs: Vec<Option<i64>> =
                    values.iter().map(|v| v.and_then(|v| v.as_i64())).collect();
                return Column::new(key.as_str().into(), xs);
            }
            if present().all(|v| v.is_number()) {
                let xs: Vec<Option<f64>> =
                    values.iter().map(|v| v.and_then(|v| v.as_f64())).collect();
                return Column::new(key.as_str().into(), xs);
            }
            let xs: Vec<Option<String>> = values
                .iter()
                .map(|v| {
                    v.and_then(|v| match v {
                        serde_json::Value::Null => None,
                        serde_json::Value::String(s) => Some(s.clone()),
                        other => Some(other.to_string()),
                    })
                })
                .collect();
            Column::new(key.as_str().into(), xs)
        })
        .collect()
}

/// Writes `runs.csv` and `runs.parquet` next to each other, each atomically (a killed report
/// never leaves a torn table).
pub fn write_runs_files(df: &mut DataFrame, dir: &Path) -> Result<()> {
    let mut csv = Vec::new();
    CsvWriter::new(&mut csv).finish(df)?;
    write_atomic(&dir.join("runs.csv"), &csv)?;
    let mut parquet = std::io::Cursor::new(Vec::new());
    ParquetWriter::new(&mut parquet).finish(df)?;
    write_atomic(&dir.join("runs.parquet"), parquet.get_ref())
}
