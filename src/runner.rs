//! Runs an experiment grid: checks every split against the data first, skips finished runs,
//! trains the rest with a progress bar, and records failures without stopping the grid.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Instant;

use anyhow::{bail, Result};
use indicatif::{ProgressBar, ProgressStyle};

use crate::config::LoadedExperiment;
use crate::data::{self, Dataset};
use crate::records;
use crate::splits;
use crate::train::train_run;

/// Counts of what a grid run did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct GridSummary {
    pub total: usize,
    pub skipped: usize,
    pub trained: usize,
    pub failed: Vec<(String, String)>,
    pub seconds: f64,
}

/// Trains every run of `exp` that has no `metrics.json` under `results`.
pub fn run_grid(exp: &LoadedExperiment, results: &Path, quiet: bool) -> Result<GridSummary> {
    let start = Instant::now();
    let data = load_data(exp)?;
    // Resolve every split before training anything, so a bad split fails fast.
    let subsets = split_subsets(exp, &data.train)?;
    let runs = exp.runs();
    let mut summary = GridSummary {
        total: runs.len(),
        ..Default::default()
    };
    let pending: Vec<_> = runs
        .iter()
        .filter(|r| !records::is_done(&records::run_dir(results, &exp.name, &r.run_id())))
        .collect();
    summary.skipped = runs.len() - pending.len();

    let bar = if quiet {
        ProgressBar::hidden()
    } else {
        ProgressBar::new(runs.len() as u64)
    };
    bar.set_style(
        ProgressStyle::with_template(
            "{bar:30} {pos}/{len} runs  {elapsed} elapsed, ETA {eta}  {msg}",
        )
        .expect("valid template"),
    );
    bar.set_position(summary.skipped as u64);
    bar.reset_eta();
    if summary.skipped > 0 {
        bar.println(format!(
            "{}: {} of {} runs already done, skipped",
            exp.name, summary.skipped, summary.total
        ));
    }
    for config in pending {
        let id = config.run_id();
        let dir = records::run_dir(results, &exp.name, &id);
        bar.set_message(format!(
            "{} / {} / seed {}",
            config.method.label(),
            config.split.slug(),
            config.seed
        ));
        let train = &subsets[&config.split.slug()];
        match train_run(config, train, &data.test) {
            Ok(outcome) => {
                records::write_run(&dir, &exp.name, config, &outcome, data.test.len())?;
                summary.trained += 1;
            }
            Err(e) => {
                let reason = format!("{e:#}");
                records::write_failure(&dir, config, &reason)?;
                bar.println(format!("run {id} failed: {reason}"));
                summary.failed.push((id, reason));
            }
        }
        bar.inc(1);
    }
    bar.finish_and_clear();
    summary.seconds = start.elapsed().as_secs_f64();
    Ok(summary)
}

/// The training subset of every split of `exp`, keyed by split slug.
pub fn split_subsets(exp: &LoadedExperiment, pool: &Dataset) -> Result<BTreeMap<String, Dataset>> {
    let mut subsets = BTreeMap::new();
    for split in &exp.splits {
        let keep = splits::select(split, &pool.labels, pool.classes, exp.data_seed)
            .map_err(|e| anyhow::anyhow!("{}: {e}", exp.path.display()))?;
        subsets.insert(split.slug(), pool.subset(&keep));
    }
    Ok(subsets)
}

/// `icm data`: per-class training counts of every split, and the test-set size.
pub fn describe_data(exp: &LoadedExperiment) -> Result<String> {
    let data = load_data(exp)?;
    let subsets = split_subsets(exp, &data.train)?;
    let mut out = format!(
        "{}: dataset {} ({} classes, {}×{}×{} images), training pool {}, test set {} (never subsampled)\n",
        exp.name,
        exp.dataset.name(),
        data.train.classes,
        data.train.shape.channels,
        data.train.shape.height,
        data.train.shape.width,
        data.train.len(),
        data.test.len()
    );
    for split in &exp.splits {
        let counts = subsets[&split.slug()].class_counts();
        out.push_str(&format!(
            "{:<24} total {:>6}  per class {:?}\n",
            split.slug(),
            counts.iter().sum::<usize>(),
            counts
        ));
    }
    Ok(out)
}

fn load_data(exp: &LoadedExperiment) -> Result<data::TrainTest> {
    data::load(&exp.dataset).map_err(|e| {
        anyhow::anyhow!(
            "{}: dataset `{}`: {e:#}",
            exp.path.display(),
            exp.dataset.name()
        )
    })
}

/// Fails with the list of failed runs, if any.
pub fn ensure_no_failures(summary: &GridSummary, results: &Path, experiment: &str) -> Result<()> {
    if summary.failed.is_empty() {
        return Ok(());
    }
    let list: Vec<String> = summary
        .failed
        .iter()
        .map(|(id, why)| {
            format!(
                "  {}: {why}",
                records::run_dir(results, experiment, id).display()
            )
        })
        .collect();
    bail!(
        "{} of {} runs failed (their folders hold {}; `icm run` again retries them):\n{}",
        summary.failed.len(),
        summary.total,
        records::FAILURE_FILE,
        list.join("\n")
    )
}
