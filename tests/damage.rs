//! Nothing lost, nothing silently wrong: damaged run records are retrained (their files set
//! aside), damaged auxiliary files leave one run out of the report instead of failing it, dead
//! writers' temporaries are removed, unsafe lock timeouts and zero counts are refused, and a
//! worker whose peer dies finishes the grid.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use icm::grid::locks::{self, RunState, ATTEMPTS_FILE, LOCK_FILE};
use icm::grid::records::{self, CONFIG_FILE, METRICS_FILE};
use icm::grid::runner::{run_grid, RunOptions};
use icm::grid::status::grid_status;
use icm::report::{write_report, Formats, ReportSource};
use icm::spec::{parse_experiment, LoadedExperiment};

const GRID: &str = "\
name: dmg
splits: [{per_class: 10}]
model: {arch: mlp, hidden: [16]}
train: {epochs: 2, batch_size: 16, lr: 0.05}
methods: [erm]
seeds: [0, 1, 2, 3]
";

const HOUR: Duration = Duration::from_secs(3600);

fn grid(tmp: &Path, yaml: &str) -> (PathBuf, LoadedExperiment) {
    let path = tmp.join("dmg.yaml");
    fs::write(&path, yaml).unwrap();
    (path.clone(), parse_experiment(yaml, &path).unwrap())
}

fn dirs(exp: &LoadedExperiment, results: &Path) -> Vec<PathBuf> {
    exp.runs()
        .iter()
        .map(|r| records::run_dir(results, &exp.name, &r.run_id()))
        .collect()
}

/// The folders `set_aside` made in a run folder.
fn asides(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.is_dir())
        .collect();
    v.sort();
    v
}

#[test]
fn damaged_records_are_reported_retrained_and_kept_aside() {
    let tmp = tempfile::tempdir().unwrap();
    let (_, exp) = grid(tmp.path(), GRID);
    let results = tmp.path().join("results");
    assert_eq!(
        run_grid(&exp, &results, &RunOptions::default())
            .unwrap()
            .trained,
        4
    );
    let dir = dirs(&exp, &results)[0].clone();
    let sound = fs::read_to_string(dir.join(METRICS_FILE)).unwrap();
    let truncated = &sound[..sound.len() / 2];
    let string_number = sound.replacen("\"accuracy\": ", "\"accuracy\": \"high\", \"x\": ", 1);
    let nan = sound.replacen("\"nll\": ", "\"nll\": NaN, \"x\": ", 1);
    let out_of_range = {
        let mut v: serde_json::Value = serde_json::from_str(&sound).unwrap();
        v["accuracy"] = serde_json::json!(1.5);
        serde_json::to_string(&v).unwrap()
    };
    let cases: [(&str, &str, &str); 7] = [
        (METRICS_FILE, truncated, "not a valid run record"),
        (METRICS_FILE, "", "not a valid run record"),
        (METRICS_FILE, "{}", "missing field"),
        (METRICS_FILE, &string_number, "invalid type"),
        (METRICS_FILE, &nan, "not a valid run record"),
        (
            METRICS_FILE,
            &out_of_range,
            "`accuracy` is 1.5, outside [0, 1]",
        ),
        (CONFIG_FILE, "\u{0}\u{1}garbage: [", "config.yaml"),
    ];
    for (file, bytes, why) in cases {
        fs::write(dir.join(file), bytes).unwrap();
        assert!(!records::is_done(&dir), "{file} = {bytes:?} counts as done");
        match locks::state(&dir, HOUR) {
            RunState::Superseded(reason) => {
                assert!(
                    reason.contains("damaged record") && reason.contains(why),
                    "{reason}"
                )
            }
            other => panic!("{file} = {bytes:?}: {other:?}"),
        }
        let status = grid_status(&exp, &results, HOUR).unwrap();
        assert!(status.contains("3 done"), "{status}");
        assert!(status.contains("1 pending"), "{status}");
        assert!(
            status.contains("to train again") && status.contains(why),
            "{status}"
        );
        let before = asides(&dir).len();
        let again = run_grid(&exp, &results, &RunOptions::default()).unwrap();
        assert_eq!((again.trained, again.skipped), (1, 3), "{file} = {bytes:?}");
        assert!(records::is_done(&dir));
        let retrained = records::read_metrics(&dir.join(METRICS_FILE)).unwrap();
        let original: records::RunMetrics = serde_json::from_str(&sound).unwrap();
        assert_eq!(
            retrained.test, original.test,
            "retrained to the same metrics"
        );
        let aside = asides(&dir);
        assert_eq!(aside.len(), before + 1, "the damaged files are kept aside");
        let kept = aside.last().unwrap();
        let kept_file = if file == CONFIG_FILE {
            records::DAMAGED_CONFIG_FILE
        } else {
            METRICS_FILE
        };
        assert_eq!(fs::read(kept.join(kept_file)).unwrap(), bytes.as_bytes());
    }
}

#[test]
fn a_garbage_lock_does_not_count_as_running() {
    let tmp = tempfile::tempdir().unwrap();
    let (_, exp) = grid(tmp.path(), GRID);
    let results = tmp.path().join("results");
    let dir = dirs(&exp, &results)[0].clone();
    fs::create_dir_all(&dir).unwrap();
    for garbage in ["", "{\"host\": ", "\u{0}\u{ff}"] {
        fs::write(dir.join(LOCK_FILE), garbage).unwrap();
        assert_eq!(
            locks::state(&dir, HOUR),
            RunState::Pending(None),
            "{garbage:?}"
        );
    }
    let s = run_grid(&exp, &results, &RunOptions::default()).unwrap();
    assert_eq!(s.trained, 4);
    assert!(!dir.join(LOCK_FILE).exists());
    let attempts = fs::read_to_string(dir.join(ATTEMPTS_FILE)).unwrap();
    assert!(
        attempts.contains("took over from an unreadable lock"),
        "{attempts}"
    );
}

#[test]
fn one_damaged_auxiliary_file_leaves_only_its_run_out_of_the_report() {
    let tmp = tempfile::tempdir().unwrap();
    let (_, exp) = grid(tmp.path(), GRID);
    let results = tmp.path().join("results");
    run_grid(&exp, &results, &RunOptions::default()).unwrap();
    let d = dirs(&exp, &results);
    fs::write(d[0].join(records::HISTORY_FILE), "\u{0}garbage\n1,2\n").unwrap();
    fs::write(d[1].join(records::RELIABILITY_FILE), "{\"ece\": ").unwrap();
    fs::remove_file(d[2].join(records::PREDICTIONS_FILE)).unwrap();
    let source = ReportSource::Experiment(Box::new(exp.clone()));
    let out = write_report(
        &source,
        &results,
        &tmp.path().join("reports"),
        Formats::default(),
    )
    .unwrap();
    let mut reasons: Vec<(PathBuf, String)> = out
        .unfinished
        .iter()
        .map(|u| (u.dir.clone(), u.reason.clone()))
        .collect();
    reasons.sort();
    let mut want = vec![
        (d[0].clone(), "history.csv line 1: expected a header"),
        (
            d[1].clone(),
            "reliability.json is not a valid reliability file",
        ),
        (d[2].clone(), "cannot read"),
    ];
    want.sort();
    assert_eq!(reasons.len(), 3, "{reasons:?}");
    for ((dir, reason), (want_dir, want_reason)) in reasons.iter().zip(&want) {
        assert_eq!(dir, want_dir);
        assert!(reason.contains(want_reason), "{reason}");
    }
    let table = fs::read_to_string(out.dir.join("table.md")).unwrap();
    assert!(table.contains("not aggregated"), "{table}");
    let csv = fs::read_to_string(out.dir.join("runs.csv")).unwrap();
    assert_eq!(
        csv.lines().count(),
        2,
        "header and the one sound run: {csv}"
    );
}

#[test]
fn temporaries_of_dead_writers_are_removed_live_ones_kept() {
    let tmp = tempfile::tempdir().unwrap();
    let (_, exp) = grid(tmp.path(), GRID);
    let results = tmp.path().join("results");
    run_grid(&exp, &results, &RunOptions::default()).unwrap();
    let host = icm::util::host_name();
    let run = dirs(&exp, &results)[0].clone();
    let dead = run.join(format!(
        ".checkpoint.json.{host}.4000000.00000000deadbeef.tmp.json"
    ));
    let live = run.join(format!(
        ".history.csv.{host}.{}.00000000deadbeef.tmp.csv",
        std::process::id()
    ));
    let remote = run.join(".metrics.json.elsewhere.1.00000000deadbeef.tmp.json");
    for f in [&dead, &live, &remote] {
        fs::write(f, "partial").unwrap();
    }
    let reports = tmp.path().join("reports");
    let table_tmp = reports.join("dmg/tables").join(format!(
        ".accuracy.tex.{host}.4000000.0123456789abcdef.tmp.tex"
    ));
    fs::create_dir_all(table_tmp.parent().unwrap()).unwrap();
    fs::write(&table_tmp, "partial").unwrap();
    run_grid(&exp, &results, &RunOptions::default()).unwrap();
    let source = ReportSource::Experiment(Box::new(exp.clone()));
    write_report(&source, &results, &reports, Formats::default()).unwrap();
    assert!(
        !dead.exists() && !table_tmp.exists(),
        "dead writers' files removed"
    );
    assert!(
        live.exists() && remote.exists(),
        "live and other hosts' files kept"
    );
}

fn icm_run(yaml: &Path, results: &Path, extra: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_icm"));
    c.arg("run")
        .arg(yaml)
        .arg("--results")
        .arg(results)
        .args(["--no-report", "--quiet"])
        .args(extra);
    c
}

#[test]
fn unsafe_lock_timeouts_and_zero_counts_are_refused_with_the_reason() {
    let tmp = tempfile::tempdir().unwrap();
    let (yaml, _) = grid(tmp.path(), GRID);
    let results = tmp.path().join("results");
    let cases: [(&[&str], &str); 5] = [
        (
            &["--lock-timeout", "0"],
            "--lock-timeout 0: must be at least 60 s",
        ),
        (&["--lock-timeout", "3"], "takes live runs over"),
        (&["--jobs", "0"], "--jobs <JOBS>': must be at least 1"),
        (
            &["--threads", "0"],
            "--threads <THREADS>': must be at least 1",
        ),
        (&["--checkpoint-every", "0"], "must be at least 1"),
    ];
    for (args, want) in cases {
        let out = icm_run(&yaml, &results, args).output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?} accepted");
        assert!(err.contains(want), "{args:?}: {err}");
        assert!(!results.join("dmg").exists(), "{args:?} trained something");
    }
    let ok = icm_run(
        &yaml,
        &results,
        &["--lock-timeout", "60", "--jobs", "100000"],
    )
    .output()
    .unwrap();
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
}

#[test]
fn a_results_path_that_is_a_file_and_a_missing_report_source_say_what_is_wrong() {
    let tmp = tempfile::tempdir().unwrap();
    let (yaml, _) = grid(tmp.path(), GRID);
    let file = tmp.path().join("results");
    fs::write(&file, "x").unwrap();
    let out = icm_run(&yaml, &file, &[]).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains(&format!(
            "--results {}: this is a file, not a folder",
            file.display()
        )),
        "{err}"
    );
    let out = Command::new(env!("CARGO_BIN_EXE_icm"))
        .args(["report", "/nonexistent/dir"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("icm report /nonexistent/dir: no such file or folder"),
        "{err}"
    );
}

/// Whether `dir` has a lock held by `pid`.
fn locked_by(dir: &Path, pid: u32) -> bool {
    fs::read_to_string(dir.join(LOCK_FILE))
        .ok()
        .and_then(|t| serde_json::from_str::<locks::LockInfo>(&t).ok())
        .is_some_and(|l| l.pid == pid)
}

#[test]
fn a_surviving_worker_takes_over_a_dead_workers_run_and_finishes_the_grid() {
    let tmp = tempfile::tempdir().unwrap();
    let yaml = GRID.replace("epochs: 2", "epochs: 400");
    let (path, exp) = grid(tmp.path(), &yaml);
    let results = tmp.path().join("results");
    let runs = dirs(&exp, &results);
    let mut a = icm_run(&path, &results, &["--threads", "1"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let start = Instant::now();
    while !runs.iter().any(|d| locked_by(d, a.id())) {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "a never claimed a run"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    let b = icm_run(&path, &results, &["--threads", "1"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Kill a while it holds a run that b will find held.
    let held = loop {
        if let Some(d) = runs
            .iter()
            .find(|d| locked_by(d, a.id()) && !records::is_done(d))
        {
            a.kill().unwrap();
            a.wait().unwrap();
            break d.clone();
        }
        assert!(
            a.try_wait().unwrap().is_none(),
            "a finished before it was killed"
        );
        std::thread::sleep(Duration::from_millis(1));
    };
    let out = b.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(
        err.contains(&format!("taking over {}", held.display())) && err.contains("is gone"),
        "the take-over is on stderr without a TTY: {err}"
    );
    for d in &runs {
        assert!(records::is_done(d), "{}", d.display());
        assert!(!d.join(LOCK_FILE).exists());
    }
    let attempts = fs::read_to_string(held.join(ATTEMPTS_FILE)).unwrap();
    assert!(attempts.contains("took over from"), "{attempts}");
}
