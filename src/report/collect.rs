//! Finding runs on disk (walkdir) and turning them into one polars DataFrame, one row per run:
//! every resolved config field as a column plus every metric.

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use polars::prelude::*;
use walkdir::WalkDir;

use crate::grid::locks::{self, RunState};
use crate::grid::records::{self, RunMetrics};
use crate::metrics::catalog::in_use;
use crate::metrics::{Metric, TestMetrics};
use crate::spec::RunConfig;
use crate::train::EpochRecord;
use crate::util::json::flatten;
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

/// A run still training (a live `lock.json`, no `metrics.json`): its configuration and the
/// epochs its `history.csv` holds so far. Drawn in the training curves, never aggregated.
#[derive(Debug, Clone)]
pub struct RunningRun {
    pub dir: PathBuf,
    pub config: RunConfig,
    pub history: Vec<EpochRecord>,
}

/// Everything found under a results folder.
#[derive(Debug, Clone, Default)]
pub struct Collection {
    pub runs: Vec<RunRecord>,
    /// Not aggregated, with the reason; running runs are listed here too.
    pub unfinished: Vec<Unfinished>,
    pub running: Vec<RunningRun>,
}

/// A lock older than this without a heartbeat is taken for a dead worker's (`icm run`'s
/// default `--lock-timeout`).
const LOCK_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(3600);

/// The epochs a running run has written so far. The last line may be torn (the trainer may be
/// writing it right now): a last line without its newline is left out.
pub fn partial_history(dir: &Path) -> Result<Vec<EpochRecord>> {
    let path = dir.join(records::HISTORY_FILE);
    if !path.is_file() {
        return Ok(Vec::new());
    }
    records::read_history_so_far(&path)
}

/// A run folder without `metrics.json` or `failure.txt`: running (live lock) or interrupted.
fn unfinished_run(dir: &Path, out: &mut Collection) {
    let running = matches!(locks::state(dir, LOCK_TIMEOUT), RunState::Running(_));
    let config = records::read_config(&dir.join(records::CONFIG_FILE));
    let (Ok(config), true) = (config, running) else {
        out.unfinished.push(Unfinished {
            dir: dir.to_path_buf(),
            reason: "not finished (interrupted: `icm run` resumes it)".into(),
        });
        return;
    };
    let (history, reason) = match partial_history(dir) {
        Ok(h) => {
            let reason = format!(
                "running: {} epoch{} so far, drawn in the training curves",
                h.len(),
                if h.len() == 1 { "" } else { "s" }
            );
            (h, reason)
        }
        Err(e) => (
            Vec::new(),
            format!("running; its history cannot be drawn: {e:#}"),
        ),
    };
    out.unfinished.push(Unfinished {
        dir: dir.to_path_buf(),
        reason,
    });
    out.running.push(RunningRun {
        dir: dir.to_path_buf(),
        config,
        history,
    });
}

/// Walks `root` for run folders (those with a `config.yaml`, or a `metrics.json` without one,
/// which is reported as unreadable), following links as `icm status` does, and not into a run
/// folder (its `superseded-*/` folders hold old records kept aside). A run stored twice (a copy
/// of its folder elsewhere under `root`) counts once (`drop_copies`). A link that is broken or
/// loops is listed as unreadable; only an unreadable `root` stops the walk.
pub fn collect(root: &Path) -> Result<Collection> {
    if !root.is_dir() {
        bail!(
            "no results at {}: run the experiment first (`icm run <file.yaml>`)",
            root.display()
        );
    }
    let mut out = Collection::default();
    // Folders whose names start with a dot hold runs moved aside (`icm clean`), not results.
    let mut walk = WalkDir::new(root)
        .follow_links(true)
        .sort_by_file_name()
        .into_iter()
        .filter_entry(|e| e.depth() == 0 || !e.file_name().to_string_lossy().starts_with('.'));
    while let Some(entry) = walk.next() {
        let entry = match entry {
            Ok(entry) => entry,
            Err(e) if e.depth() > 0 => {
                out.unfinished.push(Unfinished {
                    dir: e.path().unwrap_or(root).to_path_buf(),
                    reason: format!("cannot be read (a broken or looping link?): {e}"),
                });
                continue;
            }
            Err(e) => return Err(e).with_context(|| format!("cannot walk {}", root.display())),
        };
        let dir = entry.path();
        if !entry.file_type().is_dir() {
            continue;
        }
        let is_run = [records::CONFIG_FILE, records::METRICS_FILE]
            .iter()
            .any(|f| dir.join(f).is_file());
        if is_run && entry.depth() > 0 {
            walk.skip_current_dir();
        }
        let unfinished = |reason: String| Unfinished {
            dir: dir.to_path_buf(),
            reason,
        };
        if !dir.join(records::CONFIG_FILE).is_file() {
            if dir.join(records::METRICS_FILE).is_file() {
                out.unfinished.push(unfinished(format!(
                    "unreadable: {} has no {} (`icm run` trains it again)",
                    dir.display(),
                    records::CONFIG_FILE
                )));
            }
            continue;
        }
        if let Some(reason) = records::retrain_reason(dir) {
            out.unfinished
                .push(unfinished(format!("to be trained again: {reason}")));
        } else if dir.join(records::METRICS_FILE).is_file() {
            let read = records::read_config(&dir.join(records::CONFIG_FILE)).and_then(|config| {
                let checked = records::check_auxiliary(dir)?;
                let mut metrics = checked.metrics;
                metrics.diverged = records::divergence(&config, &metrics, &checked.history);
                Ok(RunRecord {
                    dir: dir.to_path_buf(),
                    config,
                    metrics,
                })
            });
            match read {
                Ok(run) => out.runs.push(run),
                Err(e) => out
                    .unfinished
                    .push(unfinished(format!("unreadable: {e:#}"))),
            }
        } else if dir.join(records::FAILURE_FILE).is_file() {
            let reason = fs::read(dir.join(records::FAILURE_FILE)).unwrap_or_default();
            let reason = String::from_utf8_lossy(&reason);
            out.unfinished
                .push(unfinished(format!("failed: {}", reason.trim())));
        } else {
            unfinished_run(dir, &mut out);
        }
    }
    drop_copies(&mut out);
    Ok(out)
}

/// Keeps one record of each run id (every record's folder is named after its id, see
/// `records::damage`): the one nearest `root`, where `icm run` writes it, then the first in path
/// order. The others, copies such as `backup/<run-id>/`, move to the unfinished list with the
/// folder that was counted instead, so a copy is neither averaged in as a second seed nor
/// dropped without a word.
fn drop_copies(out: &mut Collection) {
    let rank = |r: &RunRecord| (r.dir.components().count(), r.dir.clone());
    let mut order: Vec<usize> = (0..out.runs.len()).collect();
    order.sort_by_key(|&i| rank(&out.runs[i]));
    let mut kept: std::collections::BTreeMap<&str, &Path> = std::collections::BTreeMap::new();
    let mut copies = Vec::new();
    for &i in &order {
        let run = &out.runs[i];
        match kept.get(run.metrics.run_id.as_str()) {
            Some(first) => copies.push((i, first.to_path_buf())),
            None => {
                kept.insert(&run.metrics.run_id, &run.dir);
            }
        }
    }
    copies.sort_by_key(|&(i, _)| std::cmp::Reverse(i));
    for (i, first) in copies {
        let copy = out.runs.remove(i);
        out.unfinished.push(Unfinished {
            reason: format!(
                "a copy of run {} (counted once, from {})",
                copy.metrics.run_id,
                first.display()
            ),
            dir: copy.dir,
        });
    }
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
         ({changed} differ from their {})",
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

/// Whether two runs' test metrics agree bit for bit (serde_json reads numbers exactly, its
/// `float_roundtrip` feature: a value read back from `metrics.json` is the value written).
fn same_metrics(a: &TestMetrics, b: &TestMetrics) -> bool {
    let values = |t: &TestMetrics| {
        let mut v = vec![t.accuracy, t.ece, t.adaptive_ece, t.mce, t.nll, t.brier];
        v.extend(t.per_class_accuracy.iter().map(|a| a.unwrap_or(-1.0)));
        v
    };
    let (va, vb) = (values(a), values(b));
    va.len() == vb.len() && va.iter().zip(&vb).all(|(x, y)| x.to_bits() == y.to_bits())
}

/// The reliability bins of a run as its report uses them: `reliability.json`, unless the run's
/// test metrics were recomputed (`--recompute`) to an ECE other than the file's, when they are
/// computed again from the stored logits too, so the diagrams agree with the tables.
pub fn reliability(run: &RunRecord) -> Result<records::Reliability> {
    let stored = records::read_reliability(&run.dir.join(records::RELIABILITY_FILE))?;
    if stored.ece.to_bits() == run.metrics.test.ece.to_bits() {
        return Ok(stored);
    }
    Ok(records::recompute(&run.dir, &run.metrics.test)?.map_or(stored, |(_, r)| r))
}

/// A run's value of a catalog metric (`None`: the metric does not apply, e.g. no few-shot
/// classes).
pub fn metric_value(r: &RunMetrics, metric: &Metric) -> Option<f64> {
    metric.value(&r.test, &r.train_class_counts)
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
