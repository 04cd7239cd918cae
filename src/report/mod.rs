//! Paper-style report of an experiment, regenerated from the run folders alone:
//! [`collect`] finds the runs (walkdir) and builds one polars frame (`runs.parquet`, `runs.csv`),
//! [`aggregate`] takes mean, sample std (ddof = 1) and n over seeds, [`layouts`] decides the
//! tables and [`tables`] renders them (Markdown, LaTeX, CSV), [`figures`] draws the charts with
//! [`plots`], and [`html`] ties it all into `index.html`.

pub mod aggregate;
pub mod claims;
pub mod collect;
pub mod configurations;
pub mod figures;
pub mod html;
pub mod layouts;
pub mod legend;
pub mod plots;
pub mod robustness;
pub mod tables;

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

use crate::data::{DatasetSpec, Split};
use crate::mix::Method;
use crate::spec::claims::default_claims_within;
use crate::spec::{Claim, LoadedExperiment, TableEntry};
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
        if !(f.md || f.tex || f.csv) {
            bail!("--format `{text}` names no format; use md, tex and/or csv (e.g. `md,tex`)");
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
    /// Runs still training: in the training curves (dashed), in no table or claim.
    pub running: Vec<PathBuf>,
    /// What a reader must know about the runs reported (shown in every output).
    pub notes: Vec<String>,
    /// Every claim tested on every split.
    pub claims: Vec<claims::ClaimRow>,
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
    claims: Vec<Claim>,
    /// The experiment's sweep (none for a bare folder).
    sweep: layouts::SweepAxes,
}

fn grid_of(source: &ReportSource, results: &Path, runs: &[RunRecord]) -> Result<Grid> {
    Ok(match source {
        ReportSource::Experiment(exp) => Grid {
            name: exp.name.clone(),
            root: results.join(&exp.name),
            dataset: exp.dataset.clone(),
            splits: exp.splits.clone(),
            methods: exp.row_methods(),
            entries: exp.tables.clone(),
            seeds: Some(exp.seeds.len()),
            claims: exp.row_claims(),
            sweep: layouts::SweepAxes {
                methods: exp.methods.clone(),
                points: exp.sweep.iter().map(|p| p.values.clone()).collect(),
            },
        },
        ReportSource::Folder(dir) => {
            let first = runs.first().with_context(|| {
                format!(
                    "no finished runs under {}: report a grid whose runs are all still running from its experiment file (`icm report <file.yaml>`)",
                    dir.display()
                )
            })?;
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
            let methods: BTreeMap<String, (Method, String)> = runs
                .iter()
                .map(|r| {
                    let context = configurations::context(&r.config);
                    (
                        r.config.method.display_name(),
                        (r.config.method.clone(), context),
                    )
                })
                .collect();
            let claims = default_claims_within(&methods.values().cloned().collect::<Vec<_>>());
            let methods: Vec<Method> = methods.into_values().map(|(m, _)| m).collect();
            Grid {
                name: dir
                    .file_name()
                    .map(|n| n.to_string_lossy().to_string())
                    .unwrap_or_else(|| "results".into()),
                root: dir.clone(),
                dataset: first.config.dataset.clone(),
                splits: splits.into_values().collect(),
                claims,
                methods,
                entries: Vec::new(),
                seeds: None,
                sweep: layouts::SweepAxes::default(),
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
    write_report_recomputing(source, results, reports, formats, false)
}

/// [`write_report`]; with `recompute`, every run's test metrics are first computed again from
/// its stored logits (`icm report --recompute`), and the notes say so.
pub fn write_report_recomputing(
    source: &ReportSource,
    results: &Path,
    reports: &Path,
    formats: Formats,
    recompute: bool,
) -> Result<ReportOutput> {
    let (mut found, mut notes) = find_runs(source, results)?;
    if recompute {
        notes.extend(collect::recompute_metrics(&mut found.runs)?);
    }
    let grid = grid_of(source, results, &found.runs)?;
    let out = reports.join(&grid.name);
    crate::grid::temporaries::remove_stale_temporaries(&out);
    for sub in ["tables", "figures"] {
        fs::create_dir_all(out.join(sub))
            .with_context(|| format!("cannot create {}", out.display()))?;
    }
    let mut frame = collect::runs_frame(&found.runs)?;
    collect::write_runs_files(&mut frame, &out)?;
    // A grid whose runs are all still running has curves to show and nothing to aggregate.
    let aggregates = if found.runs.is_empty() {
        aggregate::Aggregates::default()
    } else {
        aggregate::aggregate(&frame)?
    };
    let input = TableInput {
        expected_n: grid.seeds,
        dataset: &grid.dataset,
        splits: &grid.splits,
        methods: &grid.methods,
        aggregates: &aggregates,
    };
    let mut tables = layouts::swept_tables(&input, &grid.entries, &grid.sweep);
    for t in &mut tables {
        t.default_label(&grid.name);
    }
    let claim_rows = claims::claim_rows(&grid.claims, &grid.splits, &grid.dataset, &aggregates);
    notes.extend(
        found
            .unfinished
            .iter()
            .map(|u| format!("not aggregated: `{}`: {}", u.dir.display(), u.reason)),
    );
    notes.extend(found.runs.iter().filter_map(|r| {
        r.metrics.diverged.as_ref().map(|d| {
            format!(
                "diverged (left out of means and claims unless a table includes them): `{}`: \
                 epoch {}: {}",
                r.dir.display(),
                d.epoch,
                d.what
            )
        })
    }));
    write_tables(&tables, &notes, &out, formats)?;
    write_claims(&claim_rows, &notes, &out, formats)?;
    let mut figures = figures::write_forest_plots(&claim_rows, &out)?;
    figures.extend(figures::write_figures(
        &grid,
        &found.runs,
        &found.running,
        &out,
    )?);
    let legend = legend::methods_legend(&grid.methods);
    let running: Vec<PathBuf> = found.running.iter().map(|r| r.dir.clone()).collect();
    let summary = summary_markdown(
        &grid,
        (found.runs.len(), running.len()),
        (&claim_rows, &tables),
        &legend,
        &notes,
        &figures,
    );
    write_atomic(&out.join("table.md"), summary.as_bytes())?;
    let output = ReportOutput {
        dir: out.clone(),
        tables,
        figures,
        unfinished: found.unfinished,
        running,
        notes,
        claims: claim_rows,
    };
    html::write_index(&output, &grid.name, &legend, formats)?;
    Ok(output)
}

/// `icm compare`: the claim "a beats b on `metric`" (accuracy when absent) on every split of
/// the experiment's grid, tested on its finished runs, as text.
pub fn compare(
    exp: &LoadedExperiment,
    results: &Path,
    a: &str,
    b: &str,
    metric: Option<&str>,
) -> Result<String> {
    let spec = crate::spec::claims::ClaimSpec {
        a: a.into(),
        b: b.into(),
        metric: metric.map(str::to_string),
    };
    let claim = spec
        .resolve(&exp.methods)
        .map_err(|e| anyhow::anyhow!("icm compare: {e}"))?;
    crate::spec::check::check_metric_sections(
        &claim.metric,
        exp.evaluate.as_ref(),
        exp.ood.as_ref(),
    )
    .map_err(|e| anyhow::anyhow!("icm compare --metric: {e} in {}", exp.path.display()))?;
    // Within each sweep point, never across points.
    let claims = LoadedExperiment {
        claims: vec![claim],
        ..exp.clone()
    }
    .row_claims();
    let source = ReportSource::Experiment(Box::new(exp.clone()));
    let (found, _) = find_runs(&source, results)?;
    if found.runs.is_empty() {
        bail!(
            "icm compare: no finished runs of {} yet ({} still running; `icm status` shows them)",
            exp.name,
            found.running.len()
        );
    }
    let aggregates = aggregate::aggregate(&collect::runs_frame(&found.runs)?)?;
    let rows = claims::claim_rows(&claims, &exp.splits, &exp.dataset, &aggregates);
    let mut text = claims::to_text(&rows);
    let mut named: BTreeSet<&str> = BTreeSet::new();
    for claim in &claims {
        for method in [claim.a.as_str(), claim.b.as_str()] {
            let has_runs = found.runs.iter().any(|r| r.metrics.method == method);
            if !has_runs && named.insert(method) {
                text.push_str(&format!(
                    "`{method}` has no finished runs yet, so it pairs with nothing (`icm status`).\n"
                ));
            }
        }
    }
    if !found.unfinished.is_empty() {
        text.push_str(&format!(
            "{} run folders of the grid are left out:\n",
            found.unfinished.len()
        ));
        for u in &found.unfinished {
            text.push_str(&format!("  {}: {}\n", u.dir.display(), u.reason));
        }
    }
    Ok(text)
}

/// The runs to report, and notes on them: with an experiment file exactly its grid's, by run id
/// and under its current names (runs of an earlier version are ignored); with a folder everything
/// under it, configurations kept apart.
fn find_runs(source: &ReportSource, results: &Path) -> Result<(collect::Collection, Vec<String>)> {
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
        configurations::relabel_to_grid(&mut found.runs, exp);
        configurations::relabel_running(&mut found.running, exp);
        found.unfinished.retain(|u| in_grid(&u.dir));
    }
    let outside = match source {
        ReportSource::Experiment(exp) => crate::grid::inventory::outside_grid(exp, results).len(),
        ReportSource::Folder(_) => 0,
    };
    if found.runs.is_empty() && found.running.is_empty() {
        let others = if outside > 0 {
            format!(
                " of this grid ({outside} run folders there belong to another version of the \
                 file or other `--set` values: `icm runs` shows how they differ)"
            )
        } else {
            String::new()
        };
        bail!(
            "no finished runs{others} under {}: run the experiment first (`icm run <file.yaml>`)",
            root.display()
        );
    }
    let notes = match source {
        ReportSource::Experiment(_) => (outside > 0)
            .then(|| {
                format!(
                    "{outside} run folders under `{}` are not in the current grid (runs of an \
                         earlier version of the file?) and are not reported: `icm runs` lists \
                         them, `icm clean` moves them aside",
                    root.display()
                )
            })
            .into_iter()
            .collect(),
        ReportSource::Folder(_) => configurations::separate_configurations(&mut found.runs),
    };
    Ok((found, notes))
}

/// Each table in the asked formats under `out/tables/`; the notes go with every table (in
/// LaTeX as comments).
fn write_tables(tables: &[Table], notes: &[String], out: &Path, formats: Formats) -> Result<()> {
    let note_lines =
        |prefix: &str| -> String { notes.iter().map(|n| format!("{prefix}{n}\n")).collect() };
    for t in tables {
        let file = |ext: &str| out.join("tables").join(format!("{}.{ext}", t.name));
        if formats.md {
            let md = format!("{}\n{}", t.to_markdown(), note_lines("- note: "));
            write_atomic(&file("md"), md.as_bytes())?;
        }
        if formats.tex {
            let tex = format!("{}{}", note_lines("% note: "), t.to_latex());
            write_atomic(&file("tex"), tex.as_bytes())?;
        }
        if formats.csv {
            write_atomic(&file("csv"), t.to_csv().as_bytes())?;
        }
    }
    Ok(())
}

/// The claims table in the asked formats, as `tables/claims.*`.
fn write_claims(
    rows: &[claims::ClaimRow],
    notes: &[String],
    out: &Path,
    formats: Formats,
) -> Result<()> {
    if rows.is_empty() {
        return Ok(());
    }
    let file = |ext: &str| out.join("tables").join(format!("claims.{ext}"));
    let notes_with =
        |prefix: &str| -> String { notes.iter().map(|n| format!("{prefix}{n}\n")).collect() };
    if formats.md {
        let md = format!("{}\n{}", claims::to_markdown(rows), notes_with("- note: "));
        write_atomic(&file("md"), md.as_bytes())?;
    }
    if formats.tex {
        let tex = format!("{}{}", notes_with("% note: "), claims::to_latex(rows));
        write_atomic(&file("tex"), tex.as_bytes())?;
    }
    if formats.csv {
        write_atomic(&file("csv"), claims::to_csv(rows).as_bytes())?;
    }
    Ok(())
}

/// What a page says about runs still running.
pub fn running_line(running: usize) -> String {
    format!(
        "{running} run{} still running: {} training curves so far are drawn dashed and keyed \
         \"(running)\"; {} in no table or claim. Run icm report again to update.",
        if running == 1 { " is" } else { "s are" },
        if running == 1 { "its" } else { "their" },
        if running == 1 { "it is" } else { "they are" },
    )
}

/// `table.md`: the claims, every table, the methods legend, the notes, the figures.
fn summary_markdown(
    grid: &Grid,
    (runs, running): (usize, usize),
    (claim_rows, tables): (&[claims::ClaimRow], &[Table]),
    legend: &str,
    notes: &[String],
    figures: &[String],
) -> String {
    let mut md = format!(
        "# {}\n\n{runs} finished runs of `{}` on {}. Regenerate with `icm report`.\n\n",
        grid.name,
        grid.root.display(),
        grid.dataset.name()
    );
    if running > 0 {
        md.push_str(&format!("{}\n\n", running_line(running)));
    }
    if !notes.is_empty() {
        md.push_str(&format!(
            "**Read the notes at the end of this page: {} about these runs.**\n\n",
            notes.len()
        ));
    }
    if !claim_rows.is_empty() {
        md.push_str(&claims::to_markdown(claim_rows));
        md.push('\n');
    }
    for t in tables {
        md.push_str(&t.to_markdown());
        md.push('\n');
    }
    md.push_str(legend);
    if !notes.is_empty() {
        md.push_str("## Notes\n\n");
        for note in notes {
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
