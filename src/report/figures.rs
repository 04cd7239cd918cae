//! The report's figures: reliability diagrams (one per method × split, and a grid per split),
//! accuracy vs imbalance ratio and vs images per class, and training curves per split. Each is
//! written as PNG and SVG by [`super::plots`].

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::Result;

use super::collect::RunRecord;
use super::plots::{self, MeanBin, Series};
use super::Grid;
use crate::data::{Profile, Split};
use crate::grid::records;
use crate::util::file_safe;

/// Reliability diagrams (one per method × split, and a grid per split), accuracy vs imbalance
/// ratio and vs images per class, and training curves per split. Returns PNG paths relative to
/// the report folder; each has an SVG twin.
pub(super) fn write_figures(grid: &Grid, runs: &[RunRecord], out: &Path) -> Result<Vec<String>> {
    let mut figures = Vec::new();
    let mut both = |name: String, draw: &dyn Fn(&Path) -> Result<()>| -> Result<()> {
        for ext in ["png", "svg"] {
            draw(&out.join(format!("{name}.{ext}")))?;
        }
        figures.push(format!("{name}.png"));
        Ok(())
    };
    let group = |method: &str, split: &str| -> Vec<&RunRecord> {
        runs.iter()
            .filter(|r| r.metrics.method == method && r.metrics.split == split)
            .collect()
    };
    for split in &grid.splits {
        let mut panels = Vec::new();
        for m in &grid.methods {
            let label = m.display_name();
            let members = group(&label, &split.slug());
            if members.is_empty() {
                continue;
            }
            let mut bins = Vec::new();
            let mut eces = Vec::new();
            for r in &members {
                let rel = records::read_reliability(&r.dir.join(records::RELIABILITY_FILE))?;
                eces.push(rel.ece);
                bins.push(rel.bins);
            }
            let mean: Vec<MeanBin> = plots::mean_bins(&bins);
            let title = format!("{label} — {}", split.title());
            both(
                format!("figures/reliability-{}-{}", file_safe(&label), split.slug()),
                &|p| plots::reliability_diagram(p, &title, &mean, &eces),
            )?;
            panels.push((label, mean, eces));
        }
        if panels.len() > 1 {
            let title = format!("Reliability — {}", split.title());
            both(format!("figures/reliability-grid-{}", split.slug()), &|p| {
                plots::reliability_grid(p, &title, &panels)
            })?;
        }
        let (loss, acc) = curves(grid, runs, split)?;
        if !loss.is_empty() {
            let title = format!("Training — {}", split.title());
            both(format!("figures/curves-{}", split.slug()), &|p| {
                plots::training_curves(p, &title, &loss, &acc)
            })?;
        }
    }
    for (kind, x_desc, log_x, file) in [
        (
            "long_tailed",
            "imbalance ratio ρ",
            true,
            "accuracy-vs-imbalance",
        ),
        (
            "per_class",
            "training images per class",
            true,
            "accuracy-vs-samples",
        ),
    ] {
        // The balanced split is the ρ = 1 point, and the "all images" point of the per-class chart
        // (at its mean number of training images per class).
        let xs: Vec<(f64, &Split)> = grid
            .splits
            .iter()
            .filter_map(|s| match s {
                // One line per method: the exponential profile (step profiles are another curve).
                Split::LongTailed {
                    ratio,
                    profile: Profile::Exp,
                } if kind == "long_tailed" => Some((*ratio, s)),
                Split::PerClass { k } if kind == "per_class" => Some((*k as f64, s)),
                Split::Balanced if kind == "long_tailed" => Some((1.0, s)),
                Split::Balanced => runs.iter().find(|r| r.metrics.split == s.slug()).map(|r| {
                    (
                        r.metrics.train_size as f64 / r.metrics.train_class_counts.len() as f64,
                        s,
                    )
                }),
                _ => None,
            })
            .collect();
        let mut xs = xs;
        xs.sort_by(|a, b| a.0.total_cmp(&b.0));
        let specific = xs
            .iter()
            .filter(|(_, s)| !matches!(s, Split::Balanced))
            .count();
        if xs.len() < 2 || specific == 0 {
            continue;
        }
        let series: Vec<Series> = grid
            .methods
            .iter()
            .map(|m| Series {
                name: m.display_name(),
                points: xs
                    .iter()
                    .filter_map(|(x, s)| {
                        let accs: Vec<f64> = group(&m.display_name(), &s.slug())
                            .iter()
                            .map(|r| r.metrics.test.accuracy * 100.0)
                            .collect();
                        (!accs.is_empty()).then(|| {
                            let (mean, std) = plots::mean_std(&accs);
                            (*x, mean, std)
                        })
                    })
                    .collect(),
            })
            .filter(|s| !s.points.is_empty())
            .collect();
        let title = format!("Test accuracy vs {x_desc}");
        both(format!("figures/{file}"), &|p| {
            plots::line_chart(p, &title, x_desc, "test accuracy (%)", log_x, &series)
        })?;
    }
    Ok(figures)
}

/// Mean-over-seeds training loss and test accuracy per epoch, one series per method.
fn curves(grid: &Grid, runs: &[RunRecord], split: &Split) -> Result<(Vec<Series>, Vec<Series>)> {
    let (mut loss, mut acc) = (Vec::new(), Vec::new());
    for m in &grid.methods {
        let mut per_epoch: BTreeMap<usize, (Vec<f64>, Vec<f64>)> = BTreeMap::new();
        for r in runs
            .iter()
            .filter(|r| r.metrics.method == m.display_name() && r.metrics.split == split.slug())
        {
            for h in records::read_history(&r.dir.join(records::HISTORY_FILE))? {
                let e = per_epoch.entry(h.epoch).or_default();
                e.0.push(h.train_loss);
                e.1.push(h.test_accuracy * 100.0);
            }
        }
        if per_epoch.is_empty() {
            continue;
        }
        let series = |second: bool| Series {
            name: m.display_name(),
            points: per_epoch
                .iter()
                .map(|(&e, (losses, accs))| {
                    let (mean, std) = plots::mean_std(if second { accs } else { losses });
                    (e as f64, mean, std)
                })
                .collect(),
        };
        loss.push(series(false));
        acc.push(series(true));
    }
    Ok((loss, acc))
}
