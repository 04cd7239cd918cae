//! `icm status`: where every run of a grid stands.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use anyhow::Result;

use super::locks::{self, RunState};
use super::records;
use crate::spec::run::point_row;
use crate::spec::LoadedExperiment;

/// `icm status`: done / diverged / running / failed / pending per method (and sweep point) and
/// overall, with an ETA from the finished runs' training times. A diverged run is finished (not
/// trained again) but counted apart: reports leave it out of means. A run whose record is
/// damaged or superseded is pending, with a line saying why.
pub fn grid_status(
    exp: &LoadedExperiment,
    results: &Path,
    lock_timeout: Duration,
) -> Result<String> {
    #[derive(Default)]
    struct Counts {
        done: usize,
        diverged: usize,
        running: usize,
        failed: usize,
        pending: usize,
    }
    let mut per_method: BTreeMap<usize, (String, Counts)> = BTreeMap::new();
    let mut total = Counts::default();
    let mut seconds = Vec::new();
    let mut retrain = Vec::new();
    let order: Vec<String> = exp.row_methods().iter().map(|m| m.display_name()).collect();
    for (point, config) in exp.labelled_runs() {
        let dir = records::run_dir(results, &exp.name, &config.run_id());
        let label = point_row(&config.method.display_name(), &point);
        let slot = order.iter().position(|l| *l == label).unwrap_or(0);
        let counts = &mut per_method
            .entry(slot)
            .or_insert_with(|| (label, Counts::default()))
            .1;
        match locks::state(&dir, lock_timeout) {
            RunState::Done => {
                let record = records::read_metrics(&dir.join(records::METRICS_FILE)).ok();
                let diverged = record.as_ref().is_some_and(|m| {
                    // An unreadable history leaves the record's own verdict.
                    let history = records::read_history(&dir.join(records::HISTORY_FILE));
                    records::divergence(&config, m, &history.unwrap_or_default()).is_some()
                });
                if diverged {
                    counts.diverged += 1;
                    total.diverged += 1;
                } else {
                    counts.done += 1;
                    total.done += 1;
                }
                seconds.extend(record.map(|m| m.train_seconds));
            }
            RunState::Running(_) => {
                counts.running += 1;
                total.running += 1;
            }
            RunState::Failed(_) => {
                counts.failed += 1;
                total.failed += 1;
            }
            RunState::Superseded(why) => {
                retrain.push(format!("to train again: {}: {why}\n", dir.display()));
                counts.pending += 1;
                total.pending += 1;
            }
            RunState::Pending(_) => {
                counts.pending += 1;
                total.pending += 1;
            }
        }
    }
    let line = |name: &str, c: &Counts| {
        format!(
            "{name:<28} {:>5} done {:>5} diverged {:>5} running {:>5} failed {:>5} pending\n",
            c.done, c.diverged, c.running, c.failed, c.pending
        )
    };
    let mut out = format!("{} ({})\n", exp.name, results.join(&exp.name).display());
    for (label, c) in per_method.values() {
        out.push_str(&line(label, c));
    }
    out.push_str(&line("all", &total));
    out.extend(retrain);
    let outside = super::inventory::outside_grid(exp, results).len();
    if outside > 0 {
        out.push_str(&format!(
            "{outside} run folders are not in the current grid (runs of an earlier version of the \
             file?): `icm runs` lists them, `icm clean` moves them aside\n"
        ));
    }
    out.push_str(&eta(total.pending + total.running, &seconds));
    Ok(out)
}

/// The ETA line for `left` runs from the training times of the finished ones (empty when
/// nothing is left).
fn eta(left: usize, seconds: &[f64]) -> String {
    if left == 0 {
        return String::new();
    }
    if seconds.is_empty() {
        return "ETA: unknown until a run finishes\n".into();
    }
    let mean = seconds.iter().sum::<f64>() / seconds.len() as f64;
    format!(
        "ETA: {:.0} s of training left at one run at a time (mean {:.1} s per finished run)\n",
        mean * left as f64,
        mean
    )
}
