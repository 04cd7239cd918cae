//! Paper-style report of an experiment, regenerated from the run folders alone:
//! [`collect`] finds the runs (walkdir) and builds one polars frame (`runs.parquet`, `runs.csv`),
//! [`aggregate`] takes mean, sample std (ddof = 1) and n over seeds, [`layouts`] decides the
//! tables and [`tables`] renders them (Markdown, LaTeX, CSV), [`figures`] draws the charts with
//! [`plots`], and [`html`] ties it all into `index.html`.

pub mod aggregate;
pub mod collect;
pub mod figures;
pub mod html;
pub mod layouts;
pub mod legend;
pub mod plots;
pub mod tables;

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

use crate::data::{DatasetSpec, Split};
use crate::mix::Method;
use crate::spec::{LoadedExperiment, TableEntry};
use crate::util::write_atomic;
use collect::{RunRecord, Unfinished};
use layouts::TableInput;
use tables::Table;

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
                .map(|r| (r.config.method.display_name(), r.config.method.clone()))
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
    let found = find_runs(source, results)?;
    let grid = grid_of(source, results, &found.runs)?;
    let out = reports.join(&grid.name);
    for sub in ["tables", "figures"] {
        fs::create_dir_all(out.join(sub))
            .with_context(|| format!("cannot create {}", out.display()))?;
    }
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
    let tables = layouts::tables(&input, &grid.entries);
    write_tables(&tables, &out, formats)?;
    let figures = figures::write_figures(&grid, &found.runs, &out)?;
    let legend = legend::methods_legend(&grid.methods);
    let mut notes: Vec<String> = found
        .unfinished
        .iter()
        .map(|u| format!("`{}`: {}", u.dir.display(), u.reason))
        .collect();
    notes.extend(aggregates.conflicts.iter().cloned());
    let summary = summary_markdown(&grid, found.runs.len(), &tables, &legend, &notes, &figures);
    write_atomic(&out.join("table.md"), summary.as_bytes())?;
    let output = ReportOutput {
        dir: out.clone(),
        tables,
        figures,
        unfinished: found.unfinished,
    };
    html::write_index(&output, &grid.name, &legend, formats)?;
    Ok(output)
}

/// The runs to report: with an experiment file exactly its grid's (runs of an earlier version
/// are ignored), with a folder everything under it.
fn find_runs(source: &ReportSource, results: &Path) -> Result<collect::Collection> {
    let root = match source {
        ReportSource::Experiment(exp) => results.join(&exp.name),
        ReportSource::Folder(dir) => dir.clone(),
    };
    let mut found = collect::collect(&root)?;
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
    Ok(found)
}

/// Each table in the asked formats under `out/tables/`.
fn write_tables(tables: &[Table], out: &Path, formats: Formats) -> Result<()> {
    for t in tables {
        let file = |ext: &str| out.join("tables").join(format!("{}.{ext}", t.name));
        if formats.md {
            write_atomic(&file("md"), t.to_markdown().as_bytes())?;
        }
        if formats.tex {
            write_atomic(&file("tex"), t.to_latex().as_bytes())?;
        }
        if formats.csv {
            write_atomic(&file("csv"), t.to_csv().as_bytes())?;
        }
    }
    Ok(())
}

/// `table.md`: every table, the methods legend, what was not aggregated, the figures.
fn summary_markdown(
    grid: &Grid,
    runs: usize,
    tables: &[Table],
    legend: &str,
    not_aggregated: &[String],
    figures: &[String],
) -> String {
    let mut md = format!(
        "# {}\n\n{runs} finished runs of `{}` on {}. Regenerate with `icm report`.\n\n",
        grid.name,
        grid.root.display(),
        grid.dataset.name()
    );
    for t in tables {
        md.push_str(&t.to_markdown());
        md.push('\n');
    }
    md.push_str(legend);
    if !not_aggregated.is_empty() {
        md.push_str("## Not aggregated\n\n");
        for note in not_aggregated {
            md.push_str(&format!("- {note}\n"));
        }
        md.push('\n');
    }
    md.push_str("## Figures\n\n");
    for f in figures {
        md.push_str(&format!("![{f}]({f})\n"));
    }
    md
}
