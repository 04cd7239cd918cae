//! Paper-style report of an experiment: finds the runs (walkdir), aggregates them over seeds
//! (polars: mean, sample std with ddof = 1, n) and writes `table.md` plus one reliability diagram
//! per method and split.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use polars::prelude::*;
use walkdir::WalkDir;

use crate::config::LoadedExperiment;
use crate::metrics::Bin;
use crate::plots;
use crate::records::{self, RunMetrics};

/// A finished run found on disk.
#[derive(Debug, Clone)]
pub struct FoundRun {
    pub dir: PathBuf,
    pub metrics: RunMetrics,
}

/// Every finished run (a folder with `metrics.json`) under `root`; staging folders are ignored.
pub fn collect_runs(root: &Path) -> Result<Vec<FoundRun>> {
    if !root.is_dir() {
        bail!(
            "no results at {}: run the experiment first (`icm run <file.yaml>`)",
            root.display()
        );
    }
    let mut runs = Vec::new();
    let walker = WalkDir::new(root)
        .sort_by_file_name()
        .into_iter()
        .filter_entry(|e| !e.file_name().to_string_lossy().starts_with('.') || e.depth() == 0);
    for entry in walker {
        let entry = entry.with_context(|| format!("cannot walk {}", root.display()))?;
        if entry.file_type().is_file() && entry.file_name() == records::METRICS_FILE {
            let dir = entry
                .path()
                .parent()
                .expect("file has a folder")
                .to_path_buf();
            runs.push(FoundRun {
                metrics: records::read_metrics(entry.path())?,
                dir,
            });
        }
    }
    Ok(runs)
}

/// mean ± std over seeds of one metric for one (method, split).
#[derive(Debug, Clone, PartialEq)]
pub struct Cell {
    pub mean: f64,
    /// Sample standard deviation (ddof = 1); `None` with a single seed.
    pub std: Option<f64>,
    pub n: usize,
}

/// Which way a metric improves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Better {
    Higher,
    Lower,
}

/// One metric over the grid: rows = methods, columns = splits.
#[derive(Debug, Clone)]
pub struct Table {
    pub title: String,
    pub better: Better,
    /// Values are multiplied by this for display (100 for percentages).
    pub scale: f64,
    pub decimals: usize,
    pub methods: Vec<String>,
    /// (slug, title) of each column.
    pub splits: Vec<(String, String)>,
    /// Keyed by (method, split slug).
    pub cells: BTreeMap<(String, String), Cell>,
}

/// Aggregates `metric` (a numeric field of `metrics.json`) over seeds with polars.
pub fn aggregate(runs: &[RunMetrics], metric: &str) -> Result<BTreeMap<(String, String), Cell>> {
    let value = |r: &RunMetrics| -> f64 {
        match metric {
            "accuracy" => r.test.accuracy,
            "ece" => r.test.ece,
            "adaptive_ece" => r.test.adaptive_ece,
            "mce" => r.test.mce,
            "nll" => r.test.nll,
            "brier" => r.test.brier,
            other => unreachable!("unknown metric {other}"),
        }
    };
    let df = df!(
        "method" => runs.iter().map(|r| r.method.clone()).collect::<Vec<_>>(),
        "split" => runs.iter().map(|r| r.split.clone()).collect::<Vec<_>>(),
        "value" => runs.iter().map(value).collect::<Vec<_>>(),
    )?;
    let out = df
        .lazy()
        .group_by([col("method"), col("split")])
        .agg([
            col("value").mean().alias("mean"),
            col("value").std(1).alias("std"),
            col("value").count().cast(DataType::UInt64).alias("n"),
        ])
        .collect()?;
    let methods = out.column("method")?.str()?.clone();
    let splits = out.column("split")?.str()?.clone();
    let means = out.column("mean")?.f64()?.clone();
    let stds = out.column("std")?.f64()?.clone();
    let ns = out.column("n")?.u64()?.clone();
    let mut cells = BTreeMap::new();
    for i in 0..out.height() {
        let n = ns.get(i).unwrap_or(0) as usize;
        cells.insert(
            (
                methods.get(i).unwrap_or_default().to_string(),
                splits.get(i).unwrap_or_default().to_string(),
            ),
            Cell {
                mean: means.get(i).unwrap_or(f64::NAN),
                std: if n >= 2 { stds.get(i) } else { None },
                n,
            },
        );
    }
    Ok(cells)
}

impl Table {
    /// Columns whose best mean (at display precision) is held by each row; ties are all bold.
    fn best_in_column(&self, split: &str) -> Option<f64> {
        let rounded = self.methods.iter().filter_map(|m| {
            self.cells
                .get(&(m.clone(), split.to_string()))
                .map(|c| self.round(c.mean))
        });
        match self.better {
            Better::Higher => {
                rounded.fold(None, |b: Option<f64>, v| Some(b.map_or(v, |b| b.max(v))))
            }
            Better::Lower => {
                rounded.fold(None, |b: Option<f64>, v| Some(b.map_or(v, |b| b.min(v))))
            }
        }
    }

    fn round(&self, v: f64) -> f64 {
        let p = 10f64.powi(self.decimals as i32);
        (v * self.scale * p).round() / p
    }

    /// Most common seed count; cells that differ show their own n.
    fn usual_n(&self) -> usize {
        let mut freq: BTreeMap<usize, usize> = BTreeMap::new();
        for c in self.cells.values() {
            *freq.entry(c.n).or_default() += 1;
        }
        freq.into_iter()
            .max_by_key(|&(n, f)| (f, n))
            .map_or(0, |(n, _)| n)
    }

    /// The cell text: `mean ± std`, `(n=k)` when k differs from the table's usual count.
    pub fn cell_text(&self, method: &str, split: &str) -> (String, bool) {
        let Some(c) = self.cells.get(&(method.to_string(), split.to_string())) else {
            return ("–".into(), false);
        };
        let d = self.decimals;
        let mut text = format!("{:.d$}", c.mean * self.scale);
        if let Some(s) = c.std {
            text.push_str(&format!(" ± {:.d$}", s * self.scale));
        }
        if c.n != self.usual_n() {
            text.push_str(&format!(" (n={})", c.n));
        }
        let best = self.best_in_column(split) == Some(self.round(c.mean));
        (text, best)
    }

    /// Markdown table with the best cell of each column in bold.
    pub fn to_markdown(&self) -> String {
        let n = self.usual_n();
        let mut s = format!(
            "mean ± std over {n} seed{} ({} is better; best per column in **bold**)\n\n",
            if n == 1 { "" } else { "s" },
            if self.better == Better::Higher {
                "higher"
            } else {
                "lower"
            }
        );
        s.push_str("| method |");
        for (_, title) in &self.splits {
            s.push_str(&format!(" {title} |"));
        }
        s.push_str("\n|---|");
        for _ in &self.splits {
            s.push_str("---:|");
        }
        s.push('\n');
        for m in &self.methods {
            s.push_str(&format!("| {m} |"));
            for (slug, _) in &self.splits {
                let (text, best) = self.cell_text(m, slug);
                if best {
                    s.push_str(&format!(" **{text}** |"));
                } else {
                    s.push_str(&format!(" {text} |"));
                }
            }
            s.push('\n');
        }
        s
    }
}

/// Where a report comes from: an experiment file (fixes row and column order) or a folder.
pub enum ReportSource {
    Experiment(Box<LoadedExperiment>),
    Folder(PathBuf),
}

/// Writes `table.md` and the reliability diagrams; returns the report folder.
pub fn write_report(source: &ReportSource, results: &Path, reports: &Path) -> Result<PathBuf> {
    let (name, root) = match source {
        ReportSource::Experiment(exp) => (exp.name.clone(), results.join(&exp.name)),
        ReportSource::Folder(dir) => (
            dir.file_name()
                .map(|n| n.to_string_lossy().to_string())
                .unwrap_or_else(|| "results".into()),
            dir.clone(),
        ),
    };
    let found = collect_runs(&root)?;
    // With an experiment file, report exactly its grid (older runs of edited files are ignored).
    let found: Vec<FoundRun> = match source {
        ReportSource::Experiment(exp) => {
            let ids: std::collections::BTreeSet<String> =
                exp.runs().iter().map(|r| r.run_id()).collect();
            found
                .into_iter()
                .filter(|r| ids.contains(&r.metrics.run_id))
                .collect()
        }
        ReportSource::Folder(_) => found,
    };
    if found.is_empty() {
        bail!(
            "no finished runs under {}: run the experiment first (`icm run <file.yaml>`)",
            root.display()
        );
    }
    let (methods, splits) = order(source, &found);
    let out = reports.join(&name);
    fs::create_dir_all(&out).with_context(|| format!("cannot create {}", out.display()))?;

    let metrics: Vec<RunMetrics> = found.iter().map(|r| r.metrics.clone()).collect();
    let mut md = format!(
        "# {name}\n\n{} runs from `{}`. Regenerate with `icm report`.\n\n",
        found.len(),
        root.display()
    );
    for (metric, title, better, decimals) in [
        ("accuracy", "Test accuracy (%)", Better::Higher, 2),
        (
            "ece",
            "Expected calibration error (%, 15 bins)",
            Better::Lower,
            2,
        ),
        ("nll", "Test NLL", Better::Lower, 3),
        ("brier", "Brier score", Better::Lower, 4),
    ] {
        let table = Table {
            title: title.to_string(),
            better,
            scale: if metric == "nll" || metric == "brier" {
                1.0
            } else {
                100.0
            },
            decimals,
            methods: methods.clone(),
            splits: splits.clone(),
            cells: aggregate(&metrics, metric)?,
        };
        md.push_str(&format!("## {title}\n\n{}\n", table.to_markdown()));
    }
    md.push_str(&methods_legend(&methods, &found)?);
    md.push_str("## Reliability diagrams\n\n");
    for m in &methods {
        for (slug, title) in &splits {
            let group: Vec<&FoundRun> = found
                .iter()
                .filter(|r| &r.metrics.method == m && &r.metrics.split == slug)
                .collect();
            if group.is_empty() {
                continue;
            }
            let mut bins_per_run = Vec::new();
            let mut eces = Vec::new();
            for r in &group {
                let rel = records::read_reliability(&r.dir.join(records::RELIABILITY_FILE))?;
                eces.push(rel.ece);
                bins_per_run.push(rel.bins);
            }
            let pooled = pool_bins(&bins_per_run);
            let file = format!("reliability-{}-{}", method_slug(m), slug);
            plots::reliability_diagram(
                &out.join(format!("{file}.png")),
                &format!("{m} — {title}"),
                &pooled,
                &eces,
            )?;
            plots::reliability_diagram(
                &out.join(format!("{file}.svg")),
                &format!("{m} — {title}"),
                &pooled,
                &eces,
            )?;
            md.push_str(&format!("![{m} — {title}]({file}.png)\n"));
        }
    }
    records::write_atomic(&out.join("table.md"), md.as_bytes())?;
    Ok(out)
}

/// File-name-safe method label.
pub fn method_slug(label: &str) -> String {
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

/// Row and column order: the experiment file's, or sorted names for a bare folder.
fn order(source: &ReportSource, found: &[FoundRun]) -> (Vec<String>, Vec<(String, String)>) {
    match source {
        ReportSource::Experiment(exp) => (
            exp.methods.iter().map(|m| m.label()).collect(),
            exp.splits.iter().map(|s| (s.slug(), s.title())).collect(),
        ),
        ReportSource::Folder(_) => {
            let methods: std::collections::BTreeSet<String> =
                found.iter().map(|r| r.metrics.method.clone()).collect();
            let splits: BTreeMap<String, String> = found
                .iter()
                .map(|r| (r.metrics.split.clone(), r.metrics.split_title.clone()))
                .collect();
            (methods.into_iter().collect(), splits.into_iter().collect())
        }
    }
}

/// Sums bins over runs: counts add, confidence and accuracy are count-weighted means.
pub fn pool_bins(runs: &[Vec<Bin>]) -> Vec<Bin> {
    let Some(first) = runs.first() else {
        return Vec::new();
    };
    let mut pooled: Vec<Bin> = first
        .iter()
        .map(|b| Bin {
            count: 0,
            confidence: 0.0,
            accuracy: 0.0,
            ..b.clone()
        })
        .collect();
    for bins in runs {
        for (p, b) in pooled.iter_mut().zip(bins) {
            p.count += b.count;
            p.confidence += b.confidence * b.count as f64;
            p.accuracy += b.accuracy * b.count as f64;
        }
    }
    for p in &mut pooled {
        if p.count > 0 {
            p.confidence /= p.count as f64;
            p.accuracy /= p.count as f64;
        }
    }
    pooled
}

/// A table of every method's full resolved settings, read from a run's `config.yaml`.
fn methods_legend(methods: &[String], found: &[FoundRun]) -> Result<String> {
    let mut s = String::from(
        "## Methods\n\n| method | mixer | α | λ drawn | label rule (κ, τ) | target (axes) | RegMixup γ |\n\
         |---|---|---|---|---|---|---|\n",
    );
    for label in methods {
        let Some(run) = found.iter().find(|r| &r.metrics.method == label) else {
            continue;
        };
        let m = records::read_config(&run.dir.join(records::CONFIG_FILE))?.method;
        let opt = |v: Option<f64>| v.map_or("–".to_string(), crate::config::fmt_num);
        let label_rule = match (m.kappa, m.tau) {
            (Some(k), Some(t)) => format!("{} ({}, {})", name(&m.label), k, t),
            _ => name(&m.label),
        };
        let target = match m.axes {
            Some(a) => format!("{} ({})", name(&m.target), name(&a)),
            None => name(&m.target),
        };
        s.push_str(&format!(
            "| {label} | {} | {} | {} | {label_rule} | {target} | {} |\n",
            name(&m.mixer),
            opt(m.alpha),
            m.lambda.map_or("–".to_string(), |l| name(&l)),
            if m.regularised {
                opt(m.gamma)
            } else {
                "–".into()
            },
        ));
    }
    s.push('\n');
    Ok(s)
}

/// The YAML spelling of a method setting (`cutmix`, `per_batch`, ...), for the legend.
fn name<T: serde::Serialize>(v: &T) -> String {
    match serde_json::to_value(v) {
        Ok(serde_json::Value::String(s)) => s,
        Ok(other) => other.to_string(),
        Err(_) => "?".into(),
    }
}
