//! Aggregation over seeds with polars: group by every config field except the seed, then mean,
//! sample standard deviation (ddof = 1) and n of every metric, keeping each seed's value for the
//! paired statistics.

use std::collections::BTreeMap;

use anyhow::{bail, Result};
use polars::prelude::*;

use crate::metrics::catalog::in_use;

/// What pairs runs of two methods: the training seed and the data seed.
pub type PairKey = (u64, u64);

/// mean ± std over seeds of one metric for one group.
#[derive(Debug, Clone, PartialEq)]
pub struct Cell {
    pub mean: f64,
    /// Sample standard deviation (ddof = 1); `None` with a single seed.
    pub std: Option<f64>,
    pub n: usize,
    /// Each run's value by (seed, data seed).
    pub values: BTreeMap<PairKey, f64>,
    /// Runs of the group that diverged and are not in this cell (0 in tables that include them).
    pub diverged: usize,
}

/// Group key as shown in reports.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct GroupKey {
    pub dataset: String,
    pub method: String,
    pub split: String,
}

/// Cells per group and metric.
pub type Cells = BTreeMap<GroupKey, BTreeMap<String, Cell>>;

/// Every metric's cell per group, over the ordinary runs (diverged runs left out and counted)
/// and over every run.
#[derive(Debug, Clone, Default)]
pub struct Aggregates {
    pub cells: Cells,
    pub with_diverged: Cells,
}

impl Aggregates {
    /// The cell of the ordinary runs.
    pub fn get(&self, dataset: &str, method: &str, split: &str, metric: &str) -> Option<&Cell> {
        lookup(&self.cells, dataset, method, split, metric)
    }

    /// The cell of every run, diverged ones included.
    pub fn get_with_diverged(
        &self,
        dataset: &str,
        method: &str,
        split: &str,
        metric: &str,
    ) -> Option<&Cell> {
        lookup(&self.with_diverged, dataset, method, split, metric)
    }
}

fn lookup<'a>(
    cells: &'a Cells,
    dataset: &str,
    method: &str,
    split: &str,
    metric: &str,
) -> Option<&'a Cell> {
    cells
        .get(&GroupKey {
            dataset: dataset.into(),
            method: method.into(),
            split: split.into(),
        })
        .and_then(|m| m.get(metric))
}

/// Columns that vary within a group (everything else is the group key).
/// The experiment a run was trained under is bookkeeping (runs copied between experiments keep
/// their run ids and join their cells). The data folder (`config.dataset.*.root`) is not part
/// of a group either: like the run id, a group does not change when the data moves.
fn is_per_run(name: &str) -> bool {
    matches!(
        name,
        "run_id" | "experiment" | "seed" | "config.seed" | "train_seconds" | "device" | "diverged"
    ) || in_use().iter().any(|m| m.name == name)
        || (name.starts_with("config.dataset") && name.ends_with(".root"))
}

/// Aggregates a runs frame (see `collect::runs_frame`): the ordinary runs, with each cell's
/// count of diverged runs (a group whose every run diverged has a cell with n = 0), and every
/// run. Runs whose configurations differ in anything but the seed must already carry different
/// method labels (`configurations` names them); two such groups under one label are an error,
/// never merged or dropped.
pub fn aggregate(runs: &DataFrame) -> Result<Aggregates> {
    let with_diverged = cells_of(runs)?;
    let ordinary = runs
        .clone()
        .lazy()
        .filter(col("diverged").eq(lit(false)))
        .collect()?;
    let mut cells = cells_of(&ordinary)?;
    for (key, metrics) in &with_diverged {
        for (metric, all) in metrics {
            let cell = cells
                .entry(key.clone())
                .or_default()
                .entry(metric.clone())
                .or_insert_with(|| Cell {
                    mean: f64::NAN,
                    std: None,
                    n: 0,
                    values: BTreeMap::new(),
                    diverged: 0,
                });
            cell.diverged = all.n - cell.n;
        }
    }
    Ok(Aggregates {
        cells,
        with_diverged,
    })
}

/// The cells of every group of `runs`.
fn cells_of(runs: &DataFrame) -> Result<Cells> {
    let out = grouped(runs)?;
    let text = |frame: &DataFrame, name: &str| -> Result<Vec<String>> {
        let ca = frame.column(name)?.str()?.clone();
        Ok((0..ca.len())
            .map(|i| ca.get(i).unwrap_or_default().to_string())
            .collect())
    };
    let (datasets, methods, splits) = (
        text(&out, "dataset")?,
        text(&out, "method")?,
        text(&out, "split")?,
    );
    let mut result = Cells::new();
    for i in 0..out.height() {
        let key = GroupKey {
            dataset: datasets[i].clone(),
            method: methods[i].clone(),
            split: splits[i].clone(),
        };
        if result.contains_key(&key) {
            bail!(
                "{} / {} / {}: runs of two configurations share this row; report them from \
                 their experiment file, or keep them in separate results folders",
                key.dataset,
                key.method,
                key.split
            );
        }
        result.insert(key, row_cells(&out, i)?);
    }
    attach_values(runs, &mut result)?;
    Ok(result)
}

/// The metrics that are columns of `runs`. The catalog's `name@part` metrics grow as they are
/// asked for (by any thread), so the frame's columns, not the catalog, say what to aggregate.
fn metric_columns(runs: &DataFrame) -> Vec<&'static str> {
    let schema = runs.schema();
    in_use()
        .into_iter()
        .map(|m| m.name)
        .filter(|name| schema.contains(name))
        .collect()
}

/// Fills every cell's per-run values from the runs frame.
fn attach_values(runs: &DataFrame, cells: &mut Cells) -> Result<()> {
    let text = |name: &str| -> Result<StringChunked> { Ok(runs.column(name)?.str()?.clone()) };
    let (datasets, methods, splits) = (text("dataset")?, text("method")?, text("split")?);
    let seeds = runs.column("seed")?.cast(&DataType::UInt64)?;
    let data_seeds = runs.column("config.data_seed")?.cast(&DataType::UInt64)?;
    let (seeds, data_seeds) = (seeds.u64()?, data_seeds.u64()?);
    for metric in metric_columns(runs) {
        let values = runs.column(metric)?.cast(&DataType::Float64)?;
        let values = values.f64()?;
        for row in 0..runs.height() {
            let Some(value) = values.get(row) else {
                continue;
            };
            let key = GroupKey {
                dataset: datasets.get(row).unwrap_or_default().to_string(),
                method: methods.get(row).unwrap_or_default().to_string(),
                split: splits.get(row).unwrap_or_default().to_string(),
            };
            let pair = (
                seeds.get(row).unwrap_or(0),
                data_seeds.get(row).unwrap_or(0),
            );
            if let Some(cell) = cells.get_mut(&key).and_then(|cells| cells.get_mut(metric)) {
                cell.values.insert(pair, value);
            }
        }
    }
    Ok(())
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
    for m in metric_columns(runs) {
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
    let schema = out.schema();
    let aggregated = in_use()
        .into_iter()
        .map(|m| m.name)
        .filter(|m| schema.contains(&format!("{m}__n")));
    for m in aggregated {
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
                values: BTreeMap::new(),
                diverged: 0,
            },
        );
    }
    Ok(cells)
}
