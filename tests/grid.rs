//! Crash safety and concurrency of grids, with the real `icm` binary: a worker killed mid-run
//! or while writing results, two processes on one grid, shards, claims and NaN failures.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use icm::grid::locks::{self, ClaimResult, LockInfo, RunState, ATTEMPTS_FILE, LOCK_FILE};
use icm::grid::records::{self, PREDICTIONS_FILE};
use icm::grid::runner::{run_grid, shard_runs, RunOptions};
use icm::spec::{parse_experiment, LoadedExperiment};
use icm::train::{Checkpoint, CHECKPOINT_FILE};

/// Four runs of a few hundred milliseconds each on the real digits, with random crops (so a
/// resume must also restore the augmentation's random state).
const GRID: &str = "\
name: crash
splits: [balanced]
model: {arch: mlp, hidden: [64]}
train: {epochs: 40, batch_size: 32, lr: 0.05, augment: {crop_padding: 1}}
methods: [erm, icm-mixup]
seeds: [0, 1]
";

fn write_grid(dir: &Path, yaml: &str) -> (PathBuf, LoadedExperiment) {
    let path = dir.join("crash.yaml");
    fs::write(&path, yaml).unwrap();
    let exp = parse_experiment(yaml, &path).unwrap();
    (path, exp)
}

fn icm(yaml: &Path, results: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_icm"));
    c.arg("run")
        .arg(yaml)
        .arg("--results")
        .arg(results)
        .args([
            "--no-report",
            "--quiet",
            "--threads",
            "1",
            "--checkpoint-every",
            "1",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    c
}

/// Every run is done with exactly one finished training, and its predictions equal the
/// reference (uninterrupted) run's.
fn assert_complete_and_equal(exp: &LoadedExperiment, results: &Path, reference: &Path) {
    for run in exp.runs() {
        let dir = records::run_dir(results, &exp.name, &run.run_id());
        let want = records::run_dir(reference, &exp.name, &run.run_id());
        assert_eq!(
            locks::state(&dir, Duration::from_secs(3600)),
            RunState::Done,
            "{}",
            dir.display()
        );
        let m = records::read_metrics(&dir.join(records::METRICS_FILE)).unwrap();
        let r = records::read_metrics(&want.join(records::METRICS_FILE)).unwrap();
        assert_eq!(
            m.test,
            r.test,
            "metrics of {} differ from the uninterrupted run",
            dir.display()
        );
        assert_eq!(
            fs::read_to_string(dir.join(PREDICTIONS_FILE)).unwrap(),
            fs::read_to_string(want.join(PREDICTIONS_FILE)).unwrap()
        );
        assert_eq!(
            fs::read(dir.join(records::HISTORY_FILE)).unwrap(),
            fs::read(want.join(records::HISTORY_FILE)).unwrap(),
            "history.csv of {} differs from the uninterrupted run's",
            dir.display()
        );
        assert!(!dir.join(LOCK_FILE).exists(), "lock released");
    }
}

fn reference(exp: &LoadedExperiment, root: &Path) -> PathBuf {
    let results = root.join("reference");
    let one_thread = RunOptions {
        threads: 1,
        ..RunOptions::default()
    };
    let s = run_grid(exp, &results, &one_thread).unwrap();
    assert_eq!(s.trained, exp.runs().len());
    results
}

#[test]
fn sigkill_mid_run_then_restart_resumes_to_identical_metrics() {
    let tmp = tempfile::tempdir().unwrap();
    let (yaml, exp) = write_grid(tmp.path(), GRID);
    let want = reference(&exp, tmp.path());
    let results = tmp.path().join("results");
    let mut child = icm(&yaml, &results).spawn().unwrap();
    // Kill as soon as some run has a checkpoint but is not finished.
    let start = Instant::now();
    let killed_mid_run = loop {
        let mid = exp.runs().iter().any(|r| {
            let dir = records::run_dir(&results, &exp.name, &r.run_id());
            dir.join(CHECKPOINT_FILE).is_file() && !records::is_done(&dir)
        });
        if mid {
            child.kill().unwrap(); // SIGKILL
            child.wait().unwrap();
            break true;
        }
        if child.try_wait().unwrap().is_some() || start.elapsed() > Duration::from_secs(60) {
            break false;
        }
        std::thread::sleep(Duration::from_millis(2));
    };
    assert!(
        killed_mid_run,
        "the worker finished before it could be killed"
    );
    let unfinished = exp
        .runs()
        .iter()
        .filter(|r| !records::is_done(&records::run_dir(&results, &exp.name, &r.run_id())))
        .count();
    assert!(unfinished > 0);
    let status = icm(&yaml, &results).status().unwrap();
    assert!(status.success());
    assert_complete_and_equal(&exp, &results, &want);
}

#[test]
fn crash_after_a_checkpoint_and_while_writing_results_lose_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let (yaml, exp) = write_grid(tmp.path(), GRID);
    let want = reference(&exp, tmp.path());
    for fault in ["after-checkpoint-7", "writing-results"] {
        let results = tmp.path().join(fault);
        let status = icm(&yaml, &results)
            .env("ICM_FAULT", fault)
            .status()
            .unwrap();
        assert!(!status.success(), "{fault}: the process aborted");
        // Exactly one run was started and left unfinished, with its stale lock.
        let started: Vec<PathBuf> = exp
            .runs()
            .iter()
            .map(|r| records::run_dir(&results, &exp.name, &r.run_id()))
            .filter(|d| d.exists())
            .collect();
        assert_eq!(started.len(), 1, "{fault}");
        assert!(started[0].join(LOCK_FILE).is_file() && !records::is_done(&started[0]));
        let ckpt = Checkpoint::load(&started[0].join(CHECKPOINT_FILE), &exp.runs()[0].run_id())
            .unwrap()
            .unwrap();
        assert_eq!(ckpt.epoch, if fault == "writing-results" { 40 } else { 7 });

        let out = icm(&yaml, &results)
            .stdout(Stdio::piped())
            .output()
            .unwrap();
        assert!(out.status.success(), "{fault}: restart");
        let said = String::from_utf8_lossy(&out.stdout);
        assert!(
            said.contains("(1 resumed)"),
            "{fault}: the run resumed from its checkpoint: {said}"
        );
        assert_complete_and_equal(&exp, &results, &want);
        let attempts = fs::read_to_string(started[0].join(ATTEMPTS_FILE)).unwrap();
        assert_eq!(
            attempts.lines().count(),
            2,
            "{fault}: crashed attempt + resumed attempt"
        );
    }
}

#[test]
fn two_processes_on_one_grid_train_each_run_once() {
    let tmp = tempfile::tempdir().unwrap();
    let (yaml, exp) = write_grid(
        tmp.path(),
        &GRID.replace("seeds: [0, 1]", "seeds: [0, 1, 2, 3]"),
    );
    let results = tmp.path().join("results");
    let a = icm(&yaml, &results).spawn().unwrap();
    let b = icm(&yaml, &results).spawn().unwrap();
    for mut child in [a, b] {
        assert!(child.wait().unwrap().success());
    }
    for run in exp.runs() {
        let dir = records::run_dir(&results, &exp.name, &run.run_id());
        assert!(records::is_done(&dir));
        let attempts = fs::read_to_string(dir.join(ATTEMPTS_FILE)).unwrap();
        assert_eq!(
            attempts.lines().count(),
            1,
            "{} trained more than once",
            dir.display()
        );
        // `<ISO-8601 UTC time> <host> <pid>`.
        let time = attempts.split(' ').next().unwrap();
        assert!(
            time.len() == 20 && time.ends_with('Z') && time.as_bytes()[10] == b'T',
            "{attempts}"
        );
    }
}

#[test]
fn shards_partition_the_grid_evenly_and_ignore_yaml_order() {
    let exp = parse_experiment(GRID, Path::new("x.yaml")).unwrap();
    let reordered = parse_experiment(
        &GRID
            .replace("[erm, icm-mixup]", "[icm-mixup, erm]")
            .replace("[0, 1]", "[1, 0]"),
        Path::new("x.yaml"),
    )
    .unwrap();
    let ids = |runs: Vec<icm::spec::RunConfig>| {
        let mut v: Vec<String> = runs.iter().map(|r| r.run_id()).collect();
        v.sort();
        v
    };
    let all = ids(exp.runs());
    for n in [1, 2, 3, 4] {
        let mut seen = Vec::new();
        for k in 0..n {
            let a = ids(shard_runs(exp.runs(), Some((k, n))));
            let b = ids(shard_runs(reordered.runs(), Some((k, n))));
            assert_eq!(
                a, b,
                "shard {k}/{n} is the same set after reordering the YAML"
            );
            assert!(
                a.len() == 4 / n || a.len() == 4 / n + 1,
                "shard {k}/{n} has {} runs",
                a.len()
            );
            seen.extend(a);
        }
        seen.sort();
        assert_eq!(seen, all, "shards of {n} cover every run exactly once");
    }
    assert!(icm::grid::runner::parse_shard("2/2").is_err());
    assert_eq!(icm::grid::runner::parse_shard("1/4").unwrap(), (1, 4));
}

/// A lock of a process on this host that no longer exists.
fn dead_lock() -> LockInfo {
    LockInfo {
        host: icm::util::host_name(),
        pid: 4_000_000,
        started: 0,
        nonce: 0,
    }
}

fn write_lock(dir: &Path, lock: &LockInfo) {
    fs::write(dir.join(LOCK_FILE), serde_json::to_string(lock).unwrap()).unwrap();
}

#[test]
fn stale_locks_are_taken_over_live_ones_are_not() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("run");
    fs::create_dir_all(&dir).unwrap();
    let hour = Duration::from_secs(3600);
    let quiet = |_: String| {};
    let dead = dead_lock();
    write_lock(&dir, &dead);
    assert_eq!(locks::state(&dir, hour), RunState::Pending(Some(dead)));
    let messages = std::cell::RefCell::new(Vec::new());
    let notify = |m: String| messages.borrow_mut().push(m);
    let claim = match locks::try_claim(&dir, hour, false, &notify).unwrap() {
        ClaimResult::Claimed(c) => c,
        other => panic!("expected to take over, got {other:?}"),
    };
    assert!(
        messages.borrow()[0].contains("stale lock"),
        "{:?}",
        messages.borrow()
    );
    // Now held by this live process: nobody else gets it.
    assert!(matches!(
        locks::try_claim(&dir, hour, false, &quiet).unwrap(),
        ClaimResult::Busy(RunState::Running(_))
    ));
    drop(claim);
    assert!(!dir.join(LOCK_FILE).exists());
    // Another host's lock is only stale once its heartbeat is older than the timeout.
    let remote = LockInfo {
        host: "elsewhere".into(),
        pid: 1,
        started: 0,
        nonce: 0,
    };
    write_lock(&dir, &remote);
    assert!(matches!(locks::state(&dir, hour), RunState::Running(_)));
    std::thread::sleep(Duration::from_millis(1100));
    assert!(matches!(
        locks::state(&dir, Duration::from_secs(1)),
        RunState::Pending(Some(_))
    ));
}

/// A finished run whose lock outlived its owner (killed between recording the run and removing
/// the lock): the next look at the run removes the stale lock and leaves the run as it is; a
/// live owner's lock stays.
#[test]
fn a_finished_runs_stale_lock_is_removed_a_live_one_kept() {
    let tmp = tempfile::tempdir().unwrap();
    let (yaml, exp) = write_grid(
        tmp.path(),
        &GRID
            .replace("epochs: 40", "epochs: 2")
            .replace("methods: [erm, icm-mixup]", "methods: [erm]")
            .replace("seeds: [0, 1]", "seeds: [0]"),
    );
    let results = tmp.path().join("results");
    assert!(icm(&yaml, &results).status().unwrap().success());
    let dir = records::run_dir(&results, &exp.name, &exp.runs()[0].run_id());
    let metrics = fs::read(dir.join(records::METRICS_FILE)).unwrap();
    let hour = Duration::from_secs(3600);
    let quiet = |_: String| {};
    let dead = dead_lock();
    write_lock(&dir, &dead);
    assert!(matches!(
        locks::try_claim(&dir, hour, false, &quiet).unwrap(),
        ClaimResult::Busy(RunState::Done)
    ));
    assert!(!dir.join(LOCK_FILE).exists(), "the stale lock is left");
    let live = LockInfo {
        pid: std::process::id(),
        ..dead.clone()
    };
    write_lock(&dir, &live);
    assert!(matches!(
        locks::try_claim(&dir, hour, false, &quiet).unwrap(),
        ClaimResult::Busy(RunState::Done)
    ));
    assert!(
        dir.join(LOCK_FILE).exists(),
        "a live owner's lock is removed"
    );
    fs::remove_file(dir.join(LOCK_FILE)).unwrap();
    // Through the command line as well: a rerun skips the run and clears a dead owner's lock.
    write_lock(&dir, &dead);
    assert!(icm(&yaml, &results).status().unwrap().success());
    assert!(!dir.join(LOCK_FILE).exists());
    assert_eq!(fs::read(dir.join(records::METRICS_FILE)).unwrap(), metrics);
}

#[test]
fn diverging_runs_are_recorded_as_diverged_and_the_rest_completes() {
    let tmp = tempfile::tempdir().unwrap();
    let yaml = GRID.replace("[erm, icm-mixup]", "[erm, {regmixup: {gamma: 1.0e+30}}]");
    let (path, exp) = write_grid(tmp.path(), &yaml);
    let results = tmp.path().join("results");
    let out = Command::new(env!("CARGO_BIN_EXE_icm"))
        .arg("run")
        .arg(&path)
        .arg("--results")
        .arg(&results)
        .args(["--quiet", "--no-report"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "a diverged run is a result, not a failure: {stderr}"
    );
    assert_eq!(stderr.matches("diverged at epoch 1").count(), 2, "{stderr}");
    assert!(stderr.contains("training loss became"), "{stderr}");
    for run in exp.runs() {
        let dir = records::run_dir(&results, &exp.name, &run.run_id());
        assert!(records::is_done(&dir));
        let m = records::read_metrics(&dir.join(records::METRICS_FILE)).unwrap();
        match run.method.name.as_str() {
            "erm" => assert_eq!(m.diverged, None),
            _ => {
                let d = m.diverged.expect("diverged");
                assert_eq!(d.epoch, 1);
                assert!(d.what.contains("became NaN: batch"), "{}", d.what);
            }
        }
    }
    let status = Command::new(env!("CARGO_BIN_EXE_icm"))
        .args(["status"])
        .arg(&path)
        .arg("--results")
        .arg(&results)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&status.stdout);
    let all = text.lines().find(|l| l.starts_with("all")).expect(&text);
    assert!(
        all.contains("2 done") && all.contains("2 diverged"),
        "{text}"
    );
    let again = run_grid(&exp, &results, &RunOptions::default()).unwrap();
    assert_eq!(
        again.skipped, 4,
        "diverged runs are finished, not trained again"
    );
}

#[test]
fn slurm_script_runs_one_shard_per_array_task() {
    let tmp = tempfile::tempdir().unwrap();
    let (_, exp) = write_grid(tmp.path(), GRID);
    let opts = icm::grid::slurm::SlurmOptions {
        partition: Some("gpu".into()),
        time: "01:00:00".into(),
        gpus: Some(1),
        cpus: 4,
        array_parallelism: Some(2),
        tasks: None,
    };
    let (script, tasks) =
        icm::grid::slurm::write_script(&exp, &tmp.path().join("results"), &opts).unwrap();
    assert_eq!(tasks, 4);
    let text = fs::read_to_string(script).unwrap();
    for line in [
        "#SBATCH --array=0-3%2",
        "#SBATCH --partition=gpu",
        "#SBATCH --gpus=1",
        "#SBATCH --cpus-per-task=4",
        "--shard \"$SLURM_ARRAY_TASK_ID/$SLURM_ARRAY_TASK_COUNT\"",
    ] {
        assert!(text.contains(line), "{line} missing:\n{text}");
    }
    // A CUDA experiment asks for one GPU per task unless told otherwise; a CPU one for none.
    let cpu_only = icm::grid::slurm::SlurmOptions { gpus: None, ..opts };
    let (script, _) =
        icm::grid::slurm::write_script(&exp, &tmp.path().join("results"), &cpu_only).unwrap();
    assert!(!fs::read_to_string(script).unwrap().contains("--gpus"));
    let cuda = icm::spec::LoadedExperiment {
        device: icm::nn::DeviceKind::Cuda,
        ..exp
    };
    let (script, _) =
        icm::grid::slurm::write_script(&cuda, &tmp.path().join("results"), &cpu_only).unwrap();
    assert!(fs::read_to_string(script)
        .unwrap()
        .contains("#SBATCH --gpus=1\n"));
}

#[test]
fn attempts_log_times_are_iso_8601_utc() {
    assert_eq!(locks::iso8601(0), "1970-01-01T00:00:00Z");
    assert_eq!(locks::iso8601(1796152818), "2026-12-01T19:20:18Z");
}
