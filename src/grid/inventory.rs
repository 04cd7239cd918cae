//! Every run folder of an experiment's results folder, in the current grid or not: `icm runs`
//! lists them with their state and, for runs of an earlier version of the file, how their
//! configuration differs from the nearest current run; `icm clean` moves or deletes the runs
//! outside the current grid (never a running one).

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result};

use super::locks::{self, RunState};
use super::records;
use crate::spec::run::point_row;
use crate::spec::{LoadedExperiment, RunConfig};
use crate::util::text::aligned_rows;

/// Where `icm clean` puts the runs it moves when not told otherwise, inside the experiment's
/// results folder (reports and `icm runs` skip folders whose names start with a dot).
pub const STALE_DIR: &str = ".stale";

/// One run folder.
#[derive(Debug, Clone, PartialEq)]
pub struct RunFolder {
    pub dir: PathBuf,
    /// The folder name (a run id).
    pub id: String,
    /// done, diverged, failed, running, pending, damaged or superseded.
    pub state: String,
    pub in_grid: bool,
    /// `method / split / seed` (the grid's current names for runs of the grid); `?` when the
    /// folder's `config.yaml` cannot be read.
    pub what: String,
    /// For a run outside the grid: each field whose value differs from the nearest run of the
    /// grid, as (field, this run's value, the grid run's value); `–` where a field is absent.
    pub differs: Vec<(String, String, String)>,
}

/// Whether a folder inside an experiment's results folder holds a run (rather than the Slurm
/// scripts or moved-aside runs).
fn is_run_folder(dir: &Path) -> bool {
    let name = dir
        .file_name()
        .map_or(String::new(), |n| n.to_string_lossy().to_string());
    if name.starts_with('.') || !dir.is_dir() {
        return false;
    }
    let run_id_like = name.len() == 16 && name.chars().all(|c| c.is_ascii_hexdigit());
    run_id_like
        || [
            records::CONFIG_FILE,
            records::METRICS_FILE,
            records::FAILURE_FILE,
            locks::LOCK_FILE,
        ]
        .iter()
        .any(|f| dir.join(f).is_file())
}

/// The run folders under `results/<experiment>/` that are not runs of the current grid.
pub fn outside_grid(exp: &LoadedExperiment, results: &Path) -> Vec<PathBuf> {
    let ids: std::collections::BTreeSet<String> = exp.runs().iter().map(|r| r.run_id()).collect();
    let Ok(entries) = fs::read_dir(results.join(&exp.name)) else {
        return Vec::new();
    };
    let mut out: Vec<PathBuf> = entries
        .flatten()
        .map(|e| e.path())
        .filter(|d| is_run_folder(d))
        .filter(|d| {
            !d.file_name()
                .is_some_and(|n| ids.contains(n.to_string_lossy().as_ref()))
        })
        .collect();
    out.sort();
    out
}

/// The state of a run folder in one word.
fn state_word(dir: &Path, timeout: Duration) -> String {
    match locks::state(dir, timeout) {
        RunState::Done => {
            let m = records::read_metrics(&dir.join(records::METRICS_FILE)).ok();
            if m.is_some_and(|m| m.diverged.is_some()) {
                "diverged".into()
            } else {
                "done".into()
            }
        }
        RunState::Failed(_) => "failed".into(),
        RunState::Running(_) => "running".into(),
        RunState::Pending(_) => "pending".into(),
        RunState::Superseded(why) if why.starts_with("damaged") => "damaged".into(),
        RunState::Superseded(_) => "superseded".into(),
    }
}

/// The grid run whose configuration differs from `fields` in the fewest fields, and those
/// differences.
fn nearest(
    fields: &BTreeMap<String, String>,
    grid: &[BTreeMap<String, String>],
) -> Vec<(String, String, String)> {
    let diff = |other: &BTreeMap<String, String>| -> Vec<(String, String, String)> {
        let mut keys: Vec<&String> = fields.keys().chain(other.keys()).collect();
        keys.sort();
        keys.dedup();
        keys.into_iter()
            .filter(|k| fields.get(*k) != other.get(*k))
            .map(|k| {
                let shown = |m: &BTreeMap<String, String>| m.get(k).cloned().unwrap_or("–".into());
                (k.clone(), shown(fields), shown(other))
            })
            .collect()
    };
    grid.iter()
        .map(diff)
        .min_by_key(|d| d.len())
        .unwrap_or_default()
}

/// `method / split / seed` of a run config.
fn describe(method: &str, config: &RunConfig) -> String {
    format!("{method} / {} / {}", config.split.slug(), config.seed)
}

/// Every run folder under `results/<experiment>/`, sorted by folder name.
pub fn run_folders(
    exp: &LoadedExperiment,
    results: &Path,
    timeout: Duration,
) -> Result<Vec<RunFolder>> {
    let root = results.join(&exp.name);
    let grid: BTreeMap<String, (String, RunConfig)> = exp
        .labelled_runs()
        .into_iter()
        .map(|(label, r)| (r.run_id(), (label, r)))
        .collect();
    let grid_fields: Vec<BTreeMap<String, String>> =
        grid.values().map(|(_, r)| r.fields()).collect();
    let mut out = Vec::new();
    if !root.is_dir() {
        return Ok(out);
    }
    let entries = fs::read_dir(&root).with_context(|| format!("cannot read {}", root.display()))?;
    let mut dirs: Vec<PathBuf> = entries
        .flatten()
        .map(|e| e.path())
        .filter(|d| is_run_folder(d))
        .collect();
    dirs.sort();
    for dir in dirs {
        let id = dir
            .file_name()
            .map_or(String::new(), |n| n.to_string_lossy().to_string());
        let state = state_word(&dir, timeout);
        let folder = match grid.get(&id) {
            Some((label, config)) => RunFolder {
                what: describe(&point_row(&config.method.display_name(), label), config),
                differs: Vec::new(),
                in_grid: true,
                dir,
                id,
                state,
            },
            None => {
                let config = records::read_config(&dir.join(records::CONFIG_FILE)).ok();
                RunFolder {
                    what: config
                        .as_ref()
                        .map_or("?".into(), |c| describe(&c.method.display_name(), c)),
                    differs: config.map_or(Vec::new(), |c| nearest(&c.fields(), &grid_fields)),
                    in_grid: false,
                    dir,
                    id,
                    state,
                }
            }
        };
        out.push(folder);
    }
    Ok(out)
}

/// `icm runs`: one line per run folder, then the counts.
pub fn render_run_folders(exp: &LoadedExperiment, results: &Path, folders: &[RunFolder]) -> String {
    let mut rows: Vec<[String; 5]> = vec![[
        "run".into(),
        "state".into(),
        "in grid".into(),
        "method / split / seed".into(),
        "differs from the nearest grid run (this run → grid)".into(),
    ]];
    for f in folders {
        let differs: Vec<String> = f
            .differs
            .iter()
            .map(|(k, this, grid)| format!("{k}: {this} → {grid}"))
            .collect();
        let differs = match (f.in_grid, differs.is_empty()) {
            (true, _) => String::new(),
            (false, true) => "(config.yaml unreadable, or no difference)".into(),
            (false, false) => differs.join(", "),
        };
        rows.push([
            f.id.clone(),
            f.state.clone(),
            if f.in_grid { "yes" } else { "no" }.into(),
            f.what.clone(),
            differs,
        ]);
    }
    let mut out = format!("{} ({})\n", exp.name, results.join(&exp.name).display());
    out.push_str(&aligned_rows(&rows));
    let in_grid = folders.iter().filter(|f| f.in_grid).count();
    let grid_runs = exp.runs().len();
    out.push_str(&format!(
        "{} run folders: {in_grid} of the current grid's {grid_runs} runs ({} without a folder yet), {} outside the grid",
        folders.len(),
        grid_runs - in_grid,
        folders.len() - in_grid
    ));
    if folders.len() > in_grid {
        out.push_str(" (`icm clean` moves them aside)");
    }
    out.push('\n');
    out
}

/// What `icm clean` does with the runs outside the current grid.
#[derive(Debug, Clone, PartialEq)]
pub enum CleanAction {
    /// Only say what would be done.
    DryRun,
    /// Move each run folder into this folder.
    MoveTo(PathBuf),
    Delete,
}

/// `icm clean`: moves or deletes (or with [`CleanAction::DryRun`] lists) every run folder
/// outside the current grid, except running ones; returns one line per folder and a summary.
pub fn clean(
    exp: &LoadedExperiment,
    results: &Path,
    timeout: Duration,
    action: &CleanAction,
) -> Result<String> {
    if let CleanAction::MoveTo(to) = action {
        check_destination(to, &results.join(&exp.name))?;
    }
    let folders = run_folders(exp, results, timeout)?;
    let mut out = String::new();
    let (mut acted, mut kept) = (0, 0);
    for f in folders.iter().filter(|f| !f.in_grid) {
        // Looked at again just before acting: a run may have been claimed since the listing.
        if f.state == "running" || state_word(&f.dir, timeout) == "running" {
            out.push_str(&format!(
                "keep {} ({}): running, held by a live process\n",
                f.dir.display(),
                f.what
            ));
            kept += 1;
            continue;
        }
        let what = format!("{} ({}, {})", f.dir.display(), f.state, f.what);
        match action {
            CleanAction::DryRun => out.push_str(&format!("outside the grid: {what}\n")),
            CleanAction::Delete => {
                fs::remove_dir_all(&f.dir)
                    .with_context(|| format!("cannot delete {}", f.dir.display()))?;
                out.push_str(&format!("deleted {what}\n"));
            }
            CleanAction::MoveTo(to) => {
                let dest = move_aside(&f.dir, to)?;
                out.push_str(&format!("moved {what} to {}\n", dest.display()));
            }
        }
        acted += 1;
    }
    let in_grid = folders.iter().filter(|f| f.in_grid).count();
    out.push_str(&match action {
        CleanAction::DryRun => format!(
            "dry run: {} run folders outside the current grid: {acted} to move aside or delete, {kept} running (kept); {in_grid} in the grid untouched. `--move` moves them into {}, `--move-to DIR` elsewhere, `--delete` deletes them\n",
            acted + kept,
            results.join(&exp.name).join(STALE_DIR).display()
        ),
        CleanAction::MoveTo(to) => format!("moved {acted} run folders into {}; {kept} running kept, {in_grid} in the grid untouched\n", to.display()),
        CleanAction::Delete => format!("deleted {acted} run folders; {kept} running kept, {in_grid} in the grid untouched\n"),
    });
    Ok(out)
}

/// Refuses to move runs into a folder of the experiment's results folder that reports read
/// (one whose name does not start with a dot).
fn check_destination(to: &Path, root: &Path) -> Result<()> {
    if to.exists() && !to.is_dir() {
        anyhow::bail!(
            "--move-to {}: this is a file; give a folder (it is created if missing)",
            to.display()
        );
    }
    let (to_abs, root_abs) = (std::path::absolute(to)?, std::path::absolute(root)?);
    if let Ok(inside) = to_abs.strip_prefix(&root_abs) {
        let first = inside.components().next();
        let hidden = first.is_some_and(|c| c.as_os_str().to_string_lossy().starts_with('.'));
        if !hidden {
            anyhow::bail!(
                "--move-to {}: this is inside {}, where reports would find the moved runs again; \
                 use a folder outside it, or one whose name starts with a dot (the default is {})",
                to.display(),
                root.display(),
                root.join(STALE_DIR).display()
            );
        }
    }
    Ok(())
}

/// Moves a run folder into `to` (created if needed) under its own name, or `<name>-<n>` when
/// that is taken; returns where it went.
fn move_aside(dir: &Path, to: &Path) -> Result<PathBuf> {
    fs::create_dir_all(to).with_context(|| format!("cannot create {}", to.display()))?;
    let name = dir
        .file_name()
        .map_or(String::new(), |n| n.to_string_lossy().to_string());
    let mut dest = to.join(&name);
    for n in 1.. {
        if !dest.exists() {
            break;
        }
        dest = to.join(format!("{name}-{n}"));
    }
    fs::rename(dir, &dest).with_context(|| {
        format!(
            "cannot move {} to {} (another filesystem? use a folder on the same one, or --delete)",
            dir.display(),
            dest.display()
        )
    })?;
    Ok(dest)
}
