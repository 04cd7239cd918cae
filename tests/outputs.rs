//! What a run leaves while and after it trains: `history.csv` growing epoch by epoch (a killed
//! run leaves a readable prefix; a resume rewrites it to its checkpoint's history), the final
//! logits in `.npy` and `icm report --recompute` rebuilding every metric from them, safetensors
//! checkpoints (removed once the run is done; old JSON ones still resume), and per-epoch
//! progress lines.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use icm::grid::records::{self, HISTORY_FILE, LABELS_FILE, LOGITS_FILE, METRICS_FILE};
use icm::grid::runner::{run_grid, RunOptions};
use icm::report::{write_report, write_report_recomputing, Formats, ReportSource};
use icm::spec::{parse_experiment, LoadedExperiment};
use icm::train::{Checkpoint, CHECKPOINT_FILE, LEGACY_CHECKPOINT_FILE};

/// Four runs of a few hundred milliseconds each on the real digits, with random crops.
const GRID: &str = "\
name: outputs
splits: [balanced]
model: {arch: mlp, hidden: [64]}
train: {epochs: 40, batch_size: 32, lr: 0.05, augment: {crop_padding: 1}}
methods: [erm, icm-mixup]
seeds: [0, 1]
";

/// Two short runs (3 epochs on 200 images) with a validation hold-out.
const SMALL: &str = "\
name: small
splits: [{per_class: 20}]
model: {arch: mlp, hidden: [32]}
train: {epochs: 3, batch_size: 16, lr: 0.05}
methods: [erm, icm-mixup]
seeds: [0]
";

fn write_grid(dir: &Path, yaml: &str) -> (PathBuf, LoadedExperiment) {
    let path = dir.join("grid.yaml");
    fs::write(&path, yaml).unwrap();
    let exp = parse_experiment(yaml, &path).unwrap();
    (path, exp)
}

fn icm(yaml: &Path, results: &Path, extra: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_icm"));
    c.arg("run")
        .arg(yaml)
        .arg("--results")
        .arg(results)
        .args(["--no-report", "--quiet", "--threads", "1"])
        .args(extra)
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    c
}

fn dirs(exp: &LoadedExperiment, results: &Path) -> Vec<PathBuf> {
    exp.runs()
        .iter()
        .map(|r| records::run_dir(results, &exp.name, &r.run_id()))
        .collect()
}

/// The grid trained in this process, uninterrupted: what the command line's runs are compared
/// with. At the SIMD level the command line runs at: an exported `ICM_SIMD` reaches the
/// command line, so it is applied here too (the levels differ in their last bits).
fn reference(exp: &LoadedExperiment, root: &Path) -> PathBuf {
    icm::util::simd::set_simd_from_env().unwrap();
    let results = root.join("reference");
    let one_thread = RunOptions {
        threads: 1,
        ..RunOptions::default()
    };
    assert_eq!(
        run_grid(exp, &results, &one_thread).unwrap().trained,
        exp.runs().len()
    );
    results
}

/// `history.csv` as its whole lines: the header and the first `epochs` epochs.
fn first_lines(path: &Path, epochs: usize) -> String {
    let text = fs::read_to_string(path).unwrap();
    text.split_inclusive('\n').take(epochs + 1).collect()
}

#[test]
fn a_killed_run_leaves_a_readable_history_and_its_resume_rewrites_it_exactly() {
    let tmp = tempfile::tempdir().unwrap();
    let (yaml, exp) = write_grid(tmp.path(), GRID);
    let want = reference(&exp, tmp.path());
    let results = tmp.path().join("results");
    let run_dirs = dirs(&exp, &results);
    // Checkpoints every 10 epochs, so the history runs ahead of the last checkpoint.
    let mut child = icm(&yaml, &results, &["--checkpoint-every", "10"])
        .spawn()
        .unwrap();
    let start = Instant::now();
    let killed = loop {
        let running = run_dirs.iter().position(|d| {
            !records::is_done(d)
                && records::read_history_so_far(&d.join(HISTORY_FILE)).is_ok_and(|h| h.len() >= 13)
        });
        if let Some(i) = running {
            child.kill().unwrap(); // SIGKILL
            child.wait().unwrap();
            break i;
        }
        assert!(child.try_wait().unwrap().is_none(), "finished unkilled");
        assert!(start.elapsed() < Duration::from_secs(120));
        std::thread::sleep(Duration::from_millis(1));
    };
    let (dir, reference_dir) = (&run_dirs[killed], &dirs(&exp, &want)[killed]);
    let path = dir.join(HISTORY_FILE);
    let so_far = records::read_history_so_far(&path).unwrap();
    let reference_history = records::read_history(&reference_dir.join(HISTORY_FILE)).unwrap();
    assert!(so_far.len() >= 13 && so_far.len() < 40);
    assert_eq!(
        so_far,
        reference_history[..so_far.len()],
        "a readable prefix"
    );
    assert!(first_lines(&reference_dir.join(HISTORY_FILE), so_far.len())
        .starts_with(&first_lines(&path, so_far.len())));
    // As if killed in the middle of writing the next line.
    let mut f = fs::OpenOptions::new().append(true).open(&path).unwrap();
    f.write_all(b"99,0.05,1.2").unwrap();
    drop(f);
    assert_eq!(records::read_history_so_far(&path).unwrap(), so_far);
    assert!(
        records::read_history(&path).is_err(),
        "a torn line is damage in a finished run"
    );

    // The resumed attempt starts from the checkpoint after epoch 10 (or 20, 30): stopped right
    // after its first new checkpoint, its history is exactly the checkpoint's.
    let ckpt = Checkpoint::load(&dir.join(CHECKPOINT_FILE), &exp.runs()[killed].run_id())
        .unwrap()
        .expect("a checkpoint");
    // (A kill between saving a checkpoint and appending its epoch's line leaves one line less.)
    assert!(ckpt.epoch >= 10 && ckpt.epoch <= so_far.len() + 1);
    let fault = format!("after-checkpoint-{}", ckpt.epoch + 1);
    let status = icm(&yaml, &results, &["--checkpoint-every", "1"])
        .env("ICM_FAULT", &fault)
        .status()
        .unwrap();
    assert!(!status.success(), "aborted at {fault}");
    assert_eq!(
        fs::read_to_string(&path).unwrap(),
        first_lines(&reference_dir.join(HISTORY_FILE), ckpt.epoch),
        "rewritten to the checkpoint's {} epochs (the {} trained past it and the torn line dropped)",
        ckpt.epoch,
        so_far.len().saturating_sub(ckpt.epoch)
    );

    assert!(icm(&yaml, &results, &[]).status().unwrap().success());
    for (dir, want) in run_dirs.iter().zip(dirs(&exp, &want)) {
        for file in [
            HISTORY_FILE,
            LOGITS_FILE,
            LABELS_FILE,
            records::PREDICTIONS_FILE,
        ] {
            assert_eq!(
                fs::read(dir.join(file)).unwrap(),
                fs::read(want.join(file)).unwrap(),
                "{file} of {}",
                dir.display()
            );
        }
        assert!(!dir.join(CHECKPOINT_FILE).exists(), "removed once done");
    }
}

#[test]
fn logits_round_trip_and_recompute_gives_the_stored_metrics() {
    let tmp = tempfile::tempdir().unwrap();
    let (_, exp) = write_grid(tmp.path(), &format!("{SMALL}validation: 0.1\n"));
    let results = tmp.path().join("results");
    run_grid(&exp, &results, &RunOptions::default()).unwrap();
    for dir in dirs(&exp, &results) {
        let bytes = fs::read(dir.join(LOGITS_FILE)).unwrap();
        let header = String::from_utf8_lossy(&bytes[..128]);
        assert!(
            header.starts_with("\u{FFFD}NUMPY\u{1}\u{0}v\u{0}{'descr': '<f4', 'fortran_order': False, 'shape': (360, 10), }"),
            "{header}"
        );
        assert_eq!(bytes.len(), 128 + 360 * 10 * 4);
        let records::TestOutputs {
            logits,
            labels,
            classes,
        } = records::read_test_outputs(&dir).unwrap().unwrap();
        assert_eq!((logits.len(), labels.len(), classes), (3600, 360, 10));
        let csv_labels: Vec<usize> =
            records::read_predictions(&dir.join(records::PREDICTIONS_FILE))
                .unwrap()
                .iter()
                .map(|p| p.0)
                .collect();
        assert_eq!(labels, csv_labels, "labels.npy in test-set order");

        // Compared as the JSON text the run wrote: serde_json prints the shortest decimal that
        // reads back as the same f64, but its default parser may read a value 1 ulp off.
        let text = |path: &Path| fs::read_to_string(path).unwrap();
        let stored = records::read_metrics(&dir.join(METRICS_FILE)).unwrap();
        let (test, again) = records::recompute(&dir, &stored.test).unwrap().unwrap();
        let recomputed = records::RunMetrics { test, ..stored };
        assert_eq!(
            serde_json::to_string_pretty(&recomputed).unwrap(),
            text(&dir.join(METRICS_FILE)),
            "every metric, bit for bit"
        );
        assert_eq!(
            serde_json::to_string_pretty(&again).unwrap(),
            text(&dir.join(records::RELIABILITY_FILE))
        );
    }

    // The report from recomputed metrics is the report from stored ones.
    let source = ReportSource::Experiment(Box::new(exp.clone()));
    let reports = tmp.path().join("reports");
    write_report(&source, &results, &reports, Formats::default()).unwrap();
    let runs_csv = reports.join("small").join("runs.csv");
    let stored_csv = fs::read_to_string(&runs_csv).unwrap();
    let report =
        write_report_recomputing(&source, &results, &reports, Formats::default(), true).unwrap();
    assert_same_up_to_parsing(&fs::read_to_string(&runs_csv).unwrap(), &stored_csv);
    assert!(
        report.notes.iter().any(|n| {
            n.contains(
            "--recompute: the metrics of 2 runs were computed again from their logits.npy (0 differ"
        )
        }),
        "{:?}",
        report.notes
    );

    // Stored metrics and bins that no longer match the logits (as after a change of a metric's
    // definition): --recompute replaces both, the report without it keeps them.
    let first = &dirs(&exp, &results)[0];
    let reliability_path = first.join(records::RELIABILITY_FILE);
    let true_reliability = fs::read_to_string(&reliability_path).unwrap();
    let mut m = records::read_metrics(&first.join(METRICS_FILE)).unwrap();
    let true_ece = records::recompute(first, &m.test).unwrap().unwrap().0.ece;
    m.test.ece = 0.5;
    fs::write(first.join(METRICS_FILE), serde_json::to_string(&m).unwrap()).unwrap();
    let mut stale = records::read_reliability(&reliability_path).unwrap();
    stale.ece = 0.5;
    stale.bins.iter_mut().for_each(|b| b.accuracy = 0.0);
    fs::write(&reliability_path, serde_json::to_string(&stale).unwrap()).unwrap();
    let report =
        write_report_recomputing(&source, &results, &reports, Formats::default(), true).unwrap();
    assert!(
        report.notes.iter().any(|n| n.contains("(1 differ from")),
        "{:?}",
        report.notes
    );
    let found = icm::report::collect::collect(&results.join("small")).unwrap();
    let mut runs = found.runs;
    icm::report::collect::recompute_metrics(&mut runs).unwrap();
    let run = runs.iter().find(|r| &r.dir == first).unwrap();
    assert_eq!(run.metrics.test.ece, true_ece);
    assert_eq!(
        serde_json::to_string_pretty(&icm::report::collect::reliability(run).unwrap()).unwrap(),
        true_reliability,
        "the diagrams use the recomputed bins"
    );
    write_report(&source, &results, &reports, Formats::default()).unwrap();
    let without = fs::read_to_string(&runs_csv).unwrap();
    assert_ne!(
        without, stored_csv,
        "without --recompute the stored (stale) ECE is reported"
    );

    // A run folder of an earlier version (no .npy) keeps its stored metrics, and says so.
    let old = &dirs(&exp, &results)[1];
    for f in [LOGITS_FILE, LABELS_FILE] {
        fs::remove_file(old.join(f)).unwrap();
    }
    let report =
        write_report_recomputing(&source, &results, &reports, Formats::default(), true).unwrap();
    assert_same_up_to_parsing(&fs::read_to_string(&runs_csv).unwrap(), &stored_csv);
    assert!(report.unfinished.is_empty());
    let note = format!(
        "--recompute: 1 runs have no logits.npy (written by an earlier version) and keep their stored metrics: {}",
        old.display()
    );
    assert!(report.notes.contains(&note), "{:?}", report.notes);

    // A damaged logits.npy: the run is not aggregated, and the error names the file.
    let first = &dirs(&exp, &results)[0];
    let bytes = fs::read(first.join(LOGITS_FILE)).unwrap();
    fs::write(first.join(LOGITS_FILE), &bytes[..bytes.len() - 4]).unwrap();
    let err = format!("{:#}", records::check_auxiliary(first).unwrap_err());
    assert!(
        err.contains("logits.npy") && err.contains("needs 14400 bytes of data, has 14396"),
        "{err}"
    );
}

/// Two `runs.csv` texts hold the same values: the report reads `metrics.json` exactly (serde_json
/// with `float_roundtrip`), so a recomputed value is the stored one bit for bit.
fn assert_same_up_to_parsing(a: &str, b: &str) {
    assert_eq!(a.lines().count(), b.lines().count());
    for (x, y) in a.lines().zip(b.lines()) {
        for (u, v) in x.split(',').zip(y.split(',')) {
            match (u.parse::<f64>(), v.parse::<f64>()) {
                (Ok(u), Ok(v)) => assert_eq!(u.to_bits(), v.to_bits(), "{u} vs {v}"),
                _ => assert_eq!(u, v),
            }
        }
    }
}

#[test]
fn checkpoints_are_safetensors_removed_when_done_and_old_json_ones_resume() {
    let tmp = tempfile::tempdir().unwrap();
    let (yaml, exp) = write_grid(tmp.path(), SMALL);
    let want = reference(&exp, tmp.path());
    let results = tmp.path().join("results");
    // Aborted right after the checkpoint of epoch 2 of the first run.
    let status = icm(&yaml, &results, &["--checkpoint-every", "1"])
        .env("ICM_FAULT", "after-checkpoint-2")
        .status()
        .unwrap();
    assert!(!status.success());
    let (dir, id) = (&dirs(&exp, &results)[0], exp.runs()[0].run_id());
    let path = dir.join(CHECKPOINT_FILE);
    let ckpt = Checkpoint::load(&path, &id).unwrap().unwrap();
    assert_eq!(ckpt.epoch, 2);
    let bytes = ckpt.to_safetensors().unwrap();
    assert_eq!(bytes, fs::read(&path).unwrap());
    assert_eq!(Checkpoint::from_safetensors(&bytes).unwrap(), ckpt);
    let json = serde_json::to_string(&ckpt).unwrap();
    assert!(
        bytes.len() * 2 < json.len(),
        "safetensors {} bytes, JSON {} bytes",
        bytes.len(),
        json.len()
    );

    // A damaged checkpoint is named, with what to do.
    fs::write(&path, &bytes[..bytes.len() / 2]).unwrap();
    let err = format!("{:#}", Checkpoint::load(&path, &id).unwrap_err());
    assert!(
        err.contains("checkpoint.safetensors is corrupt; delete it to restart the run"),
        "{err}"
    );

    // The same state as an earlier version's checkpoint.json resumes, bit for bit.
    fs::remove_file(&path).unwrap();
    fs::write(dir.join(LEGACY_CHECKPOINT_FILE), json).unwrap();
    let out = icm(&yaml, &results, &[])
        .stdout(Stdio::piped())
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("(1 resumed)"));
    for (dir, want) in dirs(&exp, &results).iter().zip(dirs(&exp, &want)) {
        let m = records::read_metrics(&dir.join(METRICS_FILE)).unwrap();
        let r = records::read_metrics(&want.join(METRICS_FILE)).unwrap();
        assert_eq!(m.test, r.test);
        assert_eq!(
            fs::read(dir.join(HISTORY_FILE)).unwrap(),
            fs::read(want.join(HISTORY_FILE)).unwrap()
        );
        for f in [CHECKPOINT_FILE, LEGACY_CHECKPOINT_FILE] {
            assert!(!dir.join(f).exists(), "{f} removed once done");
        }
    }

    // --keep-checkpoints keeps the final one.
    let kept = tmp.path().join("kept");
    assert!(icm(&yaml, &kept, &["--keep-checkpoints"])
        .status()
        .unwrap()
        .success());
    for (dir, run) in dirs(&exp, &kept).iter().zip(exp.runs()) {
        let ckpt = Checkpoint::load(&dir.join(CHECKPOINT_FILE), &run.run_id()).unwrap();
        assert_eq!(ckpt.map(|c| c.epoch), Some(3));
    }
}

#[test]
fn progress_is_a_line_per_epoch_in_a_pipe_and_nothing_when_quiet() {
    let tmp = tempfile::tempdir().unwrap();
    let (yaml, exp) = write_grid(tmp.path(), &format!("{SMALL}validation: 0.1\n"));
    let results = tmp.path().join("results");
    let out = Command::new(env!("CARGO_BIN_EXE_icm"))
        .arg("run")
        .arg(&yaml)
        .arg("--results")
        .arg(&results)
        .args(["--no-report", "--threads", "1"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    let run = &exp.runs()[0];
    let label = format!("run {} erm per_class-20 seed 0: ", run.run_id());
    assert!(
        stderr.contains(&format!("{label}training 3 epochs\n")),
        "{stderr}"
    );
    let history = records::read_history(
        &records::run_dir(&results, "small", &run.run_id()).join(HISTORY_FILE),
    )
    .unwrap();
    for record in &history {
        let start = format!(
            "{label}epoch {}/3 loss {:.3} acc {:.3} (val) ",
            record.epoch,
            record.train_loss,
            record.val_accuracy.unwrap()
        );
        let line = stderr
            .lines()
            .find(|l| l.starts_with(&start))
            .unwrap_or_else(|| panic!("no line `{start}…` in\n{stderr}"));
        assert!(
            line.contains(" img/s ETA run ") && line.contains(" grid "),
            "{line}"
        );
    }
    assert_eq!(stderr.matches(": epoch ").count(), 6, "{stderr}");

    let quiet = Command::new(env!("CARGO_BIN_EXE_icm"))
        .arg("run")
        .arg(&yaml)
        .arg("--results")
        .arg(tmp.path().join("quiet"))
        .args(["--no-report", "--quiet"])
        .output()
        .unwrap();
    assert!(quiet.status.success());
    assert_eq!(String::from_utf8_lossy(&quiet.stderr), "");
}
