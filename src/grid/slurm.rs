//! `icm slurm`: an sbatch job-array script whose tasks each run one shard of the grid
//! (`icm run --shard $SLURM_ARRAY_TASK_ID/$SLURM_ARRAY_TASK_COUNT`); claims keep tasks from
//! training a run twice, and `icm report` collects everything afterwards.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};

use crate::nn::DeviceKind;
use crate::spec::LoadedExperiment;
use crate::util::write_atomic;

/// Resources of each array task.
#[derive(Debug, Clone)]
pub struct SlurmOptions {
    pub partition: Option<String>,
    /// Wall-time limit per task, Slurm syntax (e.g. `04:00:00`).
    pub time: String,
    /// GPUs per task; `None`: one when the experiment trains on CUDA, none otherwise.
    pub gpus: Option<u32>,
    pub cpus: u32,
    /// At most this many tasks at once (`--array=...%M`).
    pub array_parallelism: Option<u32>,
    /// Number of array tasks (shards); default: one per run, at most 1000.
    pub tasks: Option<usize>,
}

/// Checks a wall-time limit against the forms sbatch accepts: `M`, `M:S`, `H:M:S`, `D-H`,
/// `D-H:M`, `D-H:M:S` (numbers), or `UNLIMITED`/`INFINITE`/`-1` (any case, as Slurm reads them).
/// sbatch itself would refuse a bad one only when the script is submitted, perhaps on another
/// machine.
pub fn check_time(time: &str) -> std::result::Result<(), String> {
    let unlimited = ["UNLIMITED", "INFINITE", "-1"]
        .iter()
        .any(|w| time.eq_ignore_ascii_case(w));
    if unlimited {
        return Ok(());
    }
    let number = |p: &str| !p.is_empty() && p.len() <= 9 && p.bytes().all(|b| b.is_ascii_digit());
    let (days, clock) = match time.split_once('-') {
        Some((d, rest)) => (Some(d), rest),
        None => (None, time),
    };
    let parts: Vec<&str> = clock.split(':').collect();
    let fits = match days {
        Some(d) => number(d) && parts.len() <= 3,
        None => parts.len() <= 3,
    };
    if fits && parts.iter().all(|p| number(p)) {
        Ok(())
    } else {
        Err(
            "not a Slurm time; use minutes, `H:M:S` or `D-H:M:S`, e.g. `04:00:00` or `1-12:00:00`"
                .into(),
        )
    }
}

fn absolute(p: &Path) -> Result<PathBuf> {
    let abs = if p.is_absolute() {
        p.to_path_buf()
    } else {
        std::env::current_dir()?.join(p)
    };
    Ok(abs)
}

/// Single-quotes a string for bash.
fn quote(p: &Path) -> String {
    format!("'{}'", p.display().to_string().replace('\'', r"'\''"))
}

/// Writes `results/<experiment>/slurm/<experiment>.sbatch` and returns its path and the number of
/// array tasks.
pub fn write_script(
    exp: &LoadedExperiment,
    results: &Path,
    opts: &SlurmOptions,
) -> Result<(PathBuf, usize)> {
    let runs = exp.runs().len();
    if let Some(0) = opts.array_parallelism {
        bail!("--array-parallelism must be ≥ 1");
    }
    if opts.tasks == Some(0) {
        bail!("--tasks must be ≥ 1");
    }
    if opts.cpus == 0 {
        bail!("--cpus must be ≥ 1");
    }
    check_time(&opts.time).map_err(|e| anyhow::anyhow!("--time `{}`: {e}", opts.time))?;
    let tasks = opts.tasks.unwrap_or(runs.min(1000)).max(1);
    let results = absolute(results)?;
    let yaml = absolute(&exp.path)?;
    let exe = std::env::current_exe().context("cannot find the icm executable")?;
    let dir = results.join(&exp.name).join("slurm");
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let mut s = String::from("#!/bin/bash\n");
    s.push_str(&format!("#SBATCH --job-name=icm-{}\n", exp.name));
    let limit = opts
        .array_parallelism
        .map_or(String::new(), |m| format!("%{m}"));
    s.push_str(&format!("#SBATCH --array=0-{}{limit}\n", tasks - 1));
    if let Some(p) = &opts.partition {
        s.push_str(&format!("#SBATCH --partition={p}\n"));
    }
    s.push_str(&format!("#SBATCH --time={}\n", opts.time));
    s.push_str(&format!("#SBATCH --cpus-per-task={}\n", opts.cpus));
    let gpus = opts
        .gpus
        .unwrap_or(u32::from(exp.device == DeviceKind::Cuda));
    if gpus > 0 {
        s.push_str(&format!("#SBATCH --gpus={gpus}\n"));
    }
    s.push_str(&format!("#SBATCH --output={}/%A_%a.out\n", dir.display()));
    s.push_str("set -euo pipefail\n");
    s.push_str(&format!("cd {}\n", quote(&std::env::current_dir()?)));
    // The tasks must see the grid this command saw: the same `--set` overrides.
    let sets: String = exp
        .overrides
        .iter()
        .map(|o| format!(" --set {}", quote(Path::new(o))))
        .collect();
    s.push_str(&format!(
        "exec {} run {}{sets} --results {} --shard \"$SLURM_ARRAY_TASK_ID/$SLURM_ARRAY_TASK_COUNT\" \\\n  --threads {} --no-report --quiet\n",
        quote(&exe),
        quote(&yaml),
        quote(&results),
        opts.cpus.max(1)
    ));
    let path = dir.join(format!("{}.sbatch", exp.name));
    write_atomic(&path, s.as_bytes())?;
    Ok((path, tasks))
}

/// Submits a script with `sbatch`; returns the job id.
pub fn submit(script: &Path) -> Result<String> {
    let out = Command::new("sbatch")
        .arg("--parsable")
        .arg(script)
        .output()
        .context("cannot run sbatch: is Slurm installed and on PATH?")?;
    if !out.status.success() {
        bail!(
            "sbatch {} failed: {}",
            script.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    let id = String::from_utf8_lossy(&out.stdout).trim().to_string();
    Ok(id.split(';').next().unwrap_or_default().to_string())
}

#[cfg(test)]
mod tests {
    use super::check_time;

    #[test]
    fn times_take_the_forms_sbatch_accepts() {
        for ok in [
            "30",
            "30:00",
            "04:00:00",
            "1-12",
            "1-12:30",
            "1-12:30:00",
            "UNLIMITED",
            "unlimited",
            "Infinite",
            "-1",
        ] {
            assert_eq!(check_time(ok), Ok(()), "{ok}");
        }
        for bad in [
            "",
            "banana",
            "4h",
            "1:2:3:4",
            "-2",
            "1-",
            "1-2-3",
            "04::00",
            "1.5",
            "INFINITEx",
        ] {
            assert!(check_time(bad).is_err(), "{bad}");
        }
    }
}
