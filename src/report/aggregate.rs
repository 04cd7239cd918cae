//! Aggregation over seeds with polars: group by every config field except the seed, then mean,
//! sample standard deviation (ddof = 1) and n of every metric.

use std::collections::BTreeMap;

use anyhow::Result;
use polars::prelude::*;

use crate::metrics::METRICS;

/// mean ± std over seeds of one metric for one group.
#[derive(Debug, Clone, PartialEq)]
pub struct Cell {
    pub mean: f64,
    /// Sample standard deviation (ddof = 1); `None` with a single seed.
    pub std: Option<f64>,
    pub n: usize,
}

/// Group key as shown in reports.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct GroupKey {
    pub dataset: String,
    pub method: String,
    pub split: String,
}

/// Every metric's cell per group.
#[derive(Debug, Clone, Default)]
pub struct Aggregates {
    pub cells: BTreeMap<GroupKey, BTreeMap<String, Cell>>,
    /// Groups that share a (dataset, method, split) but differ in another config field; only the
    /// one with the most runs is kept, these are reported.
    pub conflicts: Vec<String>,
}

impl Aggregates {
    pub fn get(&self, dataset: &str, method: &str, split: &str, metric: &str) -> Option<&Cell> {
        self.cells
            .get(&GroupKey {
                dataset: dataset.into(),
                method: method.into(),
                split: split.into(),
            })
            .and_then(|m| m.get(metric))
    }
}

/// Columns that vary within a group (everything else is the group key).
/// The data folder (`config.dataset.*.root`) is not part of a group either: like the run id, a
/// group does not change when the data moves.
fn is_per_run(name: &str) -> bool {
    matches!(
        name,
        "run_id" | "seed" | "config.seed" | "train_seconds" | "device"
    ) || METRICS.iter().any(|m| m.name == name)
        || (name.starts_with("config.dataset") && name.ends_with(".root"))
}

/// Aggregates a runs frame (see `collect::runs_frame`).
pub fn aggregate(runs: &DataFrame) -> Result<Aggregates> {
    let out = grouped(runs)?;
    let text = |name: &str| -> Result<Vec<String>> {
        let ca = out.column(name)?.str()?.clone();
        Ok((0..ca.len())
            .map(|i| ca.get(i).unwrap_or_default().to_string())
            .collect())
    };
    let (datasets, methods, splits) = (text("dataset")?, text("method")?, text("split")?);
    let runs_col = out.column("__runs")?.cast(&DataType::UInt64)?;
    let runs_ca = runs_col.u64()?;
    let mut result = Aggregates::default();
    let mut kept_runs: BTreeMap<GroupKey, u64> = BTreeMap::new();
    for i in 0..out.height() {
        let key = GroupKey {
            dataset: datasets[i].clone(),
            method: methods[i].clone(),
            split: splits[i].clone(),
        };
        let cells = row_cells(&out, i)?;
        let runs = runs_ca.get(i).unwrap_or(0);
        if let Some(&kept) = kept_runs.get(&key) {
            result.conflicts.push(format!(
                "{} / {} / {}: runs differ in a config field other than the seed; kept the \
                 group of {} runs, ignored one of {}",
                key.dataset,
                key.method,
                key.split,
                kept.max(runs),
                kept.min(runs)
            ));
            if runs <= kept {
                continue;
            }
        }
        kept_runs.insert(key.clone(), runs);
        result.cells.insert(key, cells);
    }
    Ok(result)
}

/// One row per group of runs that differ only in the seed: its run count (`__runs`) and, per
/// metric, mean, sample std and n (`<metric>__mean`, `__std`, `__n`).
fn grouped(runs: &DataFrame) -> Result<DataFrame> {
    let keys: Vec<Expr> = runs
        .get_column_names()
        .into_iter()
        .filter(|c| !is_per_run(c.as_str()))
        .map(|c| col(c.clone()))
        .collect();
    let mut aggs = vec![len().alias("__runs")];
    for m in METRICS.iter().map(|m| m.name) {
        aggs.push(col(m).mean().alias(format!("{m}__mean")));
        aggs.push(col(m).std(1).alias(format!("{m}__std")));
        aggs.push(
            col(m)
                .count()
                .cast(DataType::UInt64)
                .alias(format!("{m}__n")),
        );
    }
    Ok(runs
        .clone()
        .lazy()
        .group_by_stable(keys)
        .agg(aggs)
        .collect()?)
}

/// The cells of group row `i` of [`grouped`]'s frame: every metric with at least one value.
fn row_cells(out: &DataFrame, i: usize) -> Result<BTreeMap<String, Cell>> {
    let mut cells = BTreeMap::new();
    for m in METRICS.iter().map(|m| m.name) {
        let n = out.column(&format!("{m}__n"))?.u64()?.get(i).unwrap_or(0) as usize;
        if n == 0 {
            continue;
        }
        let mean = out
            .column(&format!("{m}__mean"))?
            .f64()?
            .get(i)
            .unwrap_or(f64::NAN);
        let std = out.column(&format!("{m}__std"))?.f64()?.get(i);
        cells.insert(
            m.to_string(),
            Cell {
                mean,
                std: if n >= 2 { std } else { None },
                n,
            },
        );
    }
    Ok(cells)
}
