//! The report's figures: reliability diagrams (one per method × split, and a grid per split),
//! accuracy vs imbalance ratio and vs images per class (ticks at the grid's values), and training
//! curves per split, runs still running included (dashed). Each is written as PNG and SVG by
//! [`super::plots`].

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::Result;

use super::claims::{self, ClaimRow};
use super::collect::{RunRecord, RunningRun};
use super::plots::{self, MeanBin, Panel, Series};
use super::Grid;
use crate::data::{Profile, Split};
use crate::grid::records;
use crate::metrics::catalog::metric;
use crate::mix::{Method, Target};
use crate::train::EpochRecord;
use crate::util::file_safe;

/// Writes every figure of the report under `out`; returns the PNG paths relative to `out` (each
/// has an SVG twin). Runs still running appear in the training curves only.
pub(super) fn write_figures(
    grid: &Grid,
    runs: &[RunRecord],
    running: &[RunningRun],
    out: &Path,
) -> Result<Vec<String>> {
    let mut figures = Figures {
        grid,
        runs,
        running,
        out,
        written: Vec::new(),
    };
    for split in &grid.splits {
        figures.reliability(split)?;
        figures.training_curves(split)?;
    }
    figures.accuracy_chart(Axis::Imbalance)?;
    figures.accuracy_chart(Axis::SamplesPerClass)?;
    let mut written = figures.written;
    for split in &grid.splits {
        written.extend(super::robustness::write_figures(grid, runs, split, out)?);
    }
    Ok(written)
}

/// The x axis of an accuracy chart.
#[derive(Clone, Copy, PartialEq)]
enum Axis {
    /// Imbalance ratio ρ of the exponential long-tailed splits; the balanced split is ρ = 1.
    Imbalance,
    /// Training images per class of the per-class splits; the balanced split sits at its mean
    /// number of images per class.
    SamplesPerClass,
}

struct Figures<'a> {
    grid: &'a Grid,
    runs: &'a [RunRecord],
    running: &'a [RunningRun],
    out: &'a Path,
    written: Vec<String>,
}

impl Figures<'_> {
    /// Draws figure `name` as PNG and SVG.
    fn both(&mut self, name: String, draw: &dyn Fn(&Path) -> Result<()>) -> Result<()> {
        for ext in ["png", "svg"] {
            draw(&self.out.join(format!("{name}.{ext}")))?;
        }
        self.written.push(format!("{name}.png"));
        Ok(())
    }

    /// The runs of one method on one split.
    fn group(&self, method: &str, split: &str) -> Vec<&RunRecord> {
        self.runs
            .iter()
            .filter(|r| r.metrics.method == method && r.metrics.split == split)
            .collect()
    }

    /// A reliability diagram per method (mean over seeds) and, with several methods, a grid.
    fn reliability(&mut self, split: &Split) -> Result<()> {
        let mut panels = Vec::new();
        for m in &self.grid.methods {
            let label = m.display_name();
            let members = self.group(&label, &split.slug());
            if members.is_empty() {
                continue;
            }
            let mut bins = Vec::new();
            let mut eces = Vec::new();
            for r in &members {
                let rel = super::collect::reliability(r)?;
                eces.push(rel.ece);
                bins.push(rel.bins);
            }
            let mean: Vec<MeanBin> = plots::mean_bins(&bins);
            let title = format!("{label} — {}", split.title());
            self.both(
                format!("figures/reliability-{}-{}", file_safe(&label), split.slug()),
                &|p| plots::reliability_diagram(p, &title, &mean, &eces),
            )?;
            panels.push((label, mean, eces));
        }
        if panels.len() > 1 {
            let title = format!("Reliability — {}", split.title());
            self.both(format!("figures/reliability-grid-{}", split.slug()), &|p| {
                plots::reliability_grid(p, &title, &panels)
            })?;
        }
        Ok(())
    }

    /// Every run's history on `split`, finished and running.
    fn histories(&self, split: &Split) -> Result<Vec<RunHistory>> {
        let mut out = Vec::new();
        for r in self.runs.iter().filter(|r| r.metrics.split == split.slug()) {
            out.push(RunHistory {
                method: r.metrics.method.clone(),
                seed: r.metrics.seed,
                running: false,
                history: records::read_history(&r.dir.join(records::HISTORY_FILE))?,
            });
        }
        for r in self.running.iter().filter(|r| r.config.split == *split) {
            out.push(RunHistory {
                method: r.config.method.display_name(),
                seed: r.config.seed,
                running: true,
                history: r.history.clone(),
            });
        }
        Ok(out)
    }

    /// Training curves (the train loss, one panel per kind of loss, and the test accuracy) and,
    /// with more than one diagnostic recorded, every run's collapse diagnostics.
    fn training_curves(&mut self, split: &Split) -> Result<()> {
        let histories = self.histories(split)?;
        let panels = curves(self.grid, &histories);
        if !panels.is_empty() {
            let title = format!("Training — {}", split.title());
            self.both(format!("figures/curves-{}", split.slug()), &|p| {
                plots::panels(p, &title, &panels, 3)
            })?;
        }
        let panels = diagnostics(self.grid, &histories);
        if panels.len() > 1 {
            let title = format!("Training diagnostics, every run — {}", split.title());
            self.both(format!("figures/diagnostics-{}", split.slug()), &|p| {
                plots::panels(p, &title, &panels, 2)
            })?;
        }
        Ok(())
    }

    /// The splits on `axis` with their x values, ascending.
    fn points(&self, axis: Axis) -> Vec<(f64, &Split)> {
        let mut xs: Vec<(f64, &Split)> = self
            .grid
            .splits
            .iter()
            .filter_map(|s| match (s, axis) {
                // One line per method: the exponential profile (step profiles are another curve).
                (
                    Split::LongTailed {
                        ratio,
                        profile: Profile::Exp,
                    },
                    Axis::Imbalance,
                ) => Some((*ratio, s)),
                (Split::PerClass { k }, Axis::SamplesPerClass) => Some((*k as f64, s)),
                (Split::Balanced, Axis::Imbalance) => Some((1.0, s)),
                (Split::Balanced, Axis::SamplesPerClass) => self
                    .runs
                    .iter()
                    .find(|r| r.metrics.split == s.slug())
                    .map(|r| {
                        let m = &r.metrics;
                        (m.train_size as f64 / m.train_class_counts.len() as f64, s)
                    }),
                _ => None,
            })
            .collect();
        xs.sort_by(|a, b| a.0.total_cmp(&b.0));
        xs
    }

    /// Test accuracy (mean ± std over seeds) against `axis`, one line per method; drawn when the
    /// grid has at least two points, one of them not the balanced split.
    fn accuracy_chart(&mut self, axis: Axis) -> Result<()> {
        let (x_desc, file) = match axis {
            Axis::Imbalance => ("imbalance ratio ρ", "accuracy-vs-imbalance"),
            Axis::SamplesPerClass => ("training images per class", "accuracy-vs-samples"),
        };
        let xs = self.points(axis);
        let specific = xs
            .iter()
            .filter(|(_, s)| !matches!(s, Split::Balanced))
            .count();
        if xs.len() < 2 || specific == 0 {
            return Ok(());
        }
        let series: Vec<Series> = self
            .grid
            .methods
            .iter()
            .map(|m| Series {
                name: m.display_name(),
                running: false,
                points: xs
                    .iter()
                    .filter_map(|(x, s)| {
                        let accs: Vec<f64> = self
                            .group(&m.display_name(), &s.slug())
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
        if series.is_empty() {
            return Ok(());
        }
        let title = format!("Test accuracy vs {x_desc}");
        let panel = Panel {
            x_desc: x_desc.into(),
            y_desc: "test accuracy (%)".into(),
            log_x: true,
            x_ticks: xs.iter().map(|(x, _)| *x).collect(),
            series,
            ..Panel::default()
        };
        self.both(format!("figures/{file}"), &|p| {
            plots::line_chart(p, &title, &panel)
        })
    }
}

/// One value per epoch of a run's history (`None` where the run did not record it).
type Field = fn(&EpochRecord) -> Option<f64>;

/// A run's history as the curves draw it.
struct RunHistory {
    method: String,
    seed: u64,
    running: bool,
    history: Vec<EpochRecord>,
}

/// Series of a history field for `methods`: the mean over finished seeds per method, or with
/// `per_run` one line per run (a single seed's collapse is what the diagnostics must show). A
/// running run is always a line of its own, marked running: its epochs so far are not
/// comparable with finished runs'.
fn history_series(
    methods: &[&Method],
    runs: &[RunHistory],
    field: Field,
    per_run: bool,
) -> Vec<Series> {
    let mut out = Vec::new();
    for m in methods {
        let label = m.display_name();
        let mut per_epoch: BTreeMap<usize, Vec<f64>> = BTreeMap::new();
        for r in runs.iter().filter(|r| r.method == label) {
            let points: Vec<(usize, f64)> = r
                .history
                .iter()
                .filter_map(|h| field(h).map(|v| (h.epoch, v)))
                .collect();
            if (per_run || r.running) && !points.is_empty() {
                out.push(Series {
                    name: format!("{label} (seed {})", r.seed),
                    points: points.iter().map(|&(e, v)| (e as f64, v, None)).collect(),
                    running: r.running,
                });
            }
            if !r.running {
                for (e, v) in points {
                    per_epoch.entry(e).or_default().push(v);
                }
            }
        }
        if !per_run && !per_epoch.is_empty() {
            out.push(Series {
                name: label,
                points: per_epoch
                    .iter()
                    .map(|(&e, values)| {
                        let (mean, std) = plots::mean_std(values);
                        (e as f64, mean, std)
                    })
                    .collect(),
                running: false,
            });
        }
    }
    out
}

/// The training curves: the train loss in one panel per kind of loss (cross-entropy for label
/// targets, the ICM loss for ICM targets: their scales differ several-fold) and the test
/// accuracy in its own panel. Empty without any history.
fn curves(grid: &Grid, runs: &[RunHistory]) -> Vec<Panel> {
    let kinds = [
        ("train loss — cross-entropy", Target::Label),
        ("train loss — ICM loss", Target::Icm),
    ];
    let mut panels = Vec::new();
    for (title, target) in kinds {
        let methods: Vec<&Method> = grid.methods.iter().filter(|m| m.target == target).collect();
        let series = history_series(&methods, runs, |h| Some(h.train_loss), false);
        if !series.is_empty() {
            panels.push(Panel {
                title: title.into(),
                x_desc: "epoch".into(),
                y_desc: "loss".into(),
                series,
                ..Panel::default()
            });
        }
    }
    if panels.is_empty() {
        return panels;
    }
    let methods: Vec<&Method> = grid.methods.iter().collect();
    panels.push(Panel {
        title: "test accuracy".into(),
        x_desc: "epoch".into(),
        y_desc: "accuracy (%)".into(),
        series: history_series(&methods, runs, |h| Some(h.test_accuracy * 100.0), false),
        ..Panel::default()
    });
    panels
}

/// The collapse diagnostics of every run on a split, one panel per diagnostic the runs recorded.
fn diagnostics(grid: &Grid, runs: &[RunHistory]) -> Vec<Panel> {
    // Magnitudes on log axes: a collapse takes them from ~1 to 1e17 and beyond.
    let fields: [(&str, &str, bool, Field); 5] = [
        ("train loss", "loss", true, |h| Some(h.train_loss)),
        ("gradient norm (mean per epoch)", "L2 norm", true, |h| {
            h.grad_norm
        }),
        ("largest |logit|", "|z|", true, |h| h.max_logit),
        ("largest |ICM score|", "|S|", true, |h| h.max_score),
        (
            "duplicated mixed classifiers",
            "share of pairs",
            false,
            |h| h.duplicates,
        ),
    ];
    let methods: Vec<&Method> = grid.methods.iter().collect();
    let mut panels = Vec::new();
    for (title, y_desc, log_y, field) in fields {
        let series = history_series(&methods, runs, field, true);
        if !series.is_empty() {
            panels.push(Panel {
                title: title.into(),
                x_desc: "epoch".into(),
                y_desc: y_desc.into(),
                log_y,
                series,
                ..Panel::default()
            });
        }
    }
    panels
}

/// A forest plot of the claims per metric (`figures/claims-<metric>`); returns the PNG paths.
pub(super) fn write_forest_plots(rows: &[ClaimRow], out: &Path) -> Result<Vec<String>> {
    let mut metrics: Vec<&str> = Vec::new();
    for r in rows {
        if !metrics.contains(&r.claim.metric.as_str()) {
            metrics.push(&r.claim.metric);
        }
    }
    let mut written = Vec::new();
    for name in metrics {
        let forest = claims::forest_rows(rows, name);
        if forest.is_empty() {
            continue;
        }
        let m = metric(name).expect("claims use catalog metrics");
        let unit = if m.scale == 100.0 { " (points)" } else { "" };
        let title = format!("Claims: {} (Δ > 0 favours the first method)", m.title);
        let x_desc = format!("Δ {}{unit}, mean over paired seeds with 95 % CI", m.name);
        let file = format!("figures/claims-{name}");
        for ext in ["png", "svg"] {
            plots::forest_plot(&out.join(format!("{file}.{ext}")), &title, &x_desc, &forest)?;
        }
        written.push(format!("{file}.png"));
    }
    Ok(written)
}
