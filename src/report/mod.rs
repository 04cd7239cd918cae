//! Paper-style report of an experiment, regenerated from the run folders alone:
//! [`collect`] finds the runs (walkdir) and builds one polars frame (`runs.parquet`, `runs.csv`),
//! [`aggregate`] takes mean, sample std (ddof = 1) and n over seeds, [`tables`] renders the
//! tables (Markdown, LaTeX, CSV), the charts come from [`crate::plots`], and [`html`] ties it all
//! into `index.html`.

pub mod aggregate;
pub mod collect;
pub mod html;
pub mod tables;

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

use crate::config::{DatasetSpec, LoadedExperiment, Profile, Split};
use crate::method::Method;
use crate::plots::{self, MeanBin, Series};
use crate::records;
use collect::{RunRecord, Unfinished};
use tables::{Table, TableEntry, TableInput};

/// Where a report comes from: an experiment file (its grid, in its order) or a folder of runs.
pub enum ReportSource {
    Experiment(Box<LoadedExperiment>),
    Folder(PathBuf),
}

/// Table file formats to write (`--format md,tex,csv`); `table.md` and `index.html` always.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Formats {
    pub md: bool,
    pub tex: bool,
    pub csv: bool,
}

impl Default for Formats {
    fn default() -> Self {
        Formats {
            md: true,
            tex: true,
            csv: true,
        }
    }
}

impl Formats {
    /// Parses `md,tex,csv` (any subset).
    pub fn parse(text: &str) -> Result<Formats> {
        let mut f = Formats {
            md: false,
            tex: false,
            csv: false,
        };
        for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            match part {
                "md" => f.md = true,
                "tex" => f.tex = true,
                "csv" => f.csv = true,
                other => bail!("--format: unknown format `{other}`; use md, tex and/or csv"),
            }
        }
        Ok(f)
    }
}

/// What `write_report` produced.
#[derive(Debug, Clone)]
pub struct ReportOutput {
    pub dir: PathBuf,
    pub tables: Vec<Table>,
    /// Figure files relative to `dir` (PNG; an SVG twin sits beside each).
    pub figures: Vec<String>,
    pub unfinished: Vec<Unfinished>,
}

/// The grid being reported: dataset, splits and methods in display order.
struct Grid {
    name: String,
    root: PathBuf,
    dataset: DatasetSpec,
    splits: Vec<Split>,
    methods: Vec<Method>,
    entries: Vec<TableEntry>,
    /// Seeds per (method, split) the experiment asks for; unknown for a bare folder.
    seeds: Option<usize>,
}

fn grid_of(source: &ReportSource, results: &Path, runs: &[RunRecord]) -> Result<Grid> {
    Ok(match source {
        ReportSource::Experiment(exp) => Grid {
            name: exp.name.clone(),
            root: results.join(&exp.name),
            dataset: exp.dataset.clone(),
            splits: exp.splits.clone(),
            methods: exp.methods.clone(),
            entries: exp.tables.clone(),
            seeds: Some(exp.seeds.len()),
        },
        ReportSource::Folder(dir) => {
            let first = runs.first().context("no runs")?;
            let datasets: BTreeSet<String> = runs.iter().map(|r| r.config.dataset.name()).collect();
            if datasets.len() > 1 {
                bail!(
                    "{} holds runs of several datasets ({}); report each experiment from its file",
                    dir.display(),
                    datasets.into_iter().collect::<Vec<_>>().join(", ")
                );
            }
            let splits: BTreeMap<String, Split> = runs
                .iter()
                .map(|r| (r.config.split.slug(), r.config.split.clone()))
                .collect();
            let methods: BTreeMap<String, Method> = runs
                .iter()
                .map(|r| (r.config.method.label(), r.config.method.clone()))
                .collect();
            Grid {
                name: dir
                    .file_name()
                    .map(|n| n.to_string_lossy().to_string())
                    .unwrap_or_else(|| "results".into()),
                root: dir.clone(),
                dataset: first.config.dataset.clone(),
                splits: splits.into_values().collect(),
                methods: methods.into_values().collect(),
                entries: Vec::new(),
                seeds: None,
            }
        }
    })
}

/// Writes the whole report of `source` under `reports/<experiment>/`.
pub fn write_report(
    source: &ReportSource,
    results: &Path,
    reports: &Path,
    formats: Formats,
) -> Result<ReportOutput> {
    let root = match source {
        ReportSource::Experiment(exp) => results.join(&exp.name),
        ReportSource::Folder(dir) => dir.clone(),
    };
    let mut found = collect::collect(&root)?;
    // With an experiment file, report exactly its grid (runs of an earlier version are ignored).
    if let ReportSource::Experiment(exp) = source {
        let ids: BTreeSet<String> = exp.runs().iter().map(|r| r.run_id()).collect();
        let in_grid = |dir: &Path| {
            dir.file_name()
                .is_some_and(|n| ids.contains(n.to_string_lossy().as_ref()))
        };
        found.runs.retain(|r| ids.contains(&r.metrics.run_id));
        found.unfinished.retain(|u| in_grid(&u.dir));
    }
    if found.runs.is_empty() {
        bail!(
            "no finished runs under {}: run the experiment first (`icm run <file.yaml>`)",
            root.display()
        );
    }
    let grid = grid_of(source, results, &found.runs)?;
    let out = reports.join(&grid.name);
    fs::create_dir_all(out.join("tables"))
        .with_context(|| format!("cannot create {}", out.display()))?;
    fs::create_dir_all(out.join("figures"))
        .with_context(|| format!("cannot create {}", out.display()))?;

    let mut frame = collect::runs_frame(&found.runs)?;
    collect::write_runs_files(&mut frame, &out)?;
    let aggregates = aggregate::aggregate(&frame)?;
    let input = TableInput {
        expected_n: grid.seeds,
        dataset: &grid.dataset,
        splits: &grid.splits,
        methods: &grid.methods,
        aggregates: &aggregates,
    };
    let tables = tables::tables(&input, &grid.entries);
    for t in &tables {
        let file = |ext: &str| out.join("tables").join(format!("{}.{ext}", t.name));
        if formats.md {
            records::write_atomic(&file("md"), t.to_markdown().as_bytes())?;
        }
        if formats.tex {
            records::write_atomic(&file("tex"), t.to_latex().as_bytes())?;
        }
        if formats.csv {
            records::write_atomic(&file("csv"), t.to_csv().as_bytes())?;
        }
    }
    let figures = write_figures(&grid, &found.runs, &out)?;

    let mut md = format!(
        "# {}\n\n{} finished runs of `{}` on {}. Regenerate with `icm report`.\n\n",
        grid.name,
        found.runs.len(),
        grid.root.display(),
        grid.dataset.name()
    );
    for t in &tables {
        md.push_str(&t.to_markdown());
        md.push('\n');
    }
    let legend = methods_legend(&grid.methods);
    md.push_str(&legend);
    if !found.unfinished.is_empty() || !aggregates.conflicts.is_empty() {
        md.push_str("## Not aggregated\n\n");
        for u in &found.unfinished {
            md.push_str(&format!("- `{}`: {}\n", u.dir.display(), u.reason));
        }
        for c in &aggregates.conflicts {
            md.push_str(&format!("- {c}\n"));
        }
        md.push('\n');
    }
    md.push_str("## Figures\n\n");
    for f in &figures {
        md.push_str(&format!("![{f}]({f})\n"));
    }
    records::write_atomic(&out.join("table.md"), md.as_bytes())?;
    let output = ReportOutput {
        dir: out.clone(),
        tables,
        figures,
        unfinished: found.unfinished,
    };
    html::write_index(&output, &grid.name, &legend, formats)?;
    Ok(output)
}

/// Reliability diagrams (one per method × split, and a grid per split), accuracy vs imbalance
/// ratio and vs images per class, and training curves per split. Returns PNG paths relative to
/// the report folder; each has an SVG twin.
fn write_figures(grid: &Grid, runs: &[RunRecord], out: &Path) -> Result<Vec<String>> {
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
            let label = m.label();
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
                name: m.label(),
                points: xs
                    .iter()
                    .filter_map(|(x, s)| {
                        let accs: Vec<f64> = group(&m.label(), &s.slug())
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
            .filter(|r| r.metrics.method == m.label() && r.metrics.split == split.slug())
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
            name: m.label(),
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

/// File-name-safe method label.
pub fn file_safe(label: &str) -> String {
    label
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '.' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// A table of every method's full resolved settings.
fn methods_legend(methods: &[Method]) -> String {
    let mut s = String::from(
        "## Methods\n\n| method | mixer | α | λ drawn | label rule (κ, τ) | target (axes) | RegMixup γ | label smoothing |\n\
         |---|---|---|---|---|---|---|---|\n",
    );
    let opt = |v: Option<f64>| v.map_or("–".to_string(), crate::config::fmt_num);
    for m in methods {
        let label_rule = match (m.kappa, m.tau) {
            (Some(k), Some(t)) => format!("{} ({k}, {t})", name(&m.label)),
            _ => name(&m.label),
        };
        let target = match m.axes {
            Some(a) => format!("{} ({})", name(&m.target), name(&a)),
            None => name(&m.target),
        };
        s.push_str(&format!(
            "| {} | {} | {} | {} | {label_rule} | {target} | {} | {} |\n",
            m.label(),
            name(&m.mixer),
            opt(m.alpha),
            m.lambda.map_or("–".to_string(), |l| name(&l)),
            if m.regularised {
                opt(m.gamma)
            } else {
                "–".into()
            },
            opt(m.label_smoothing),
        ));
    }
    s.push('\n');
    s
}

/// The YAML spelling of a method setting (`cutmix`, `per_batch`, ...).
fn name<T: serde::Serialize>(v: &T) -> String {
    match serde_json::to_value(v) {
        Ok(serde_json::Value::String(s)) => s,
        Ok(other) => other.to_string(),
        Err(_) => "?".into(),
    }
}
