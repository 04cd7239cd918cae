//! Crash campaign: the real `icm run` (training, checkpointing every epoch, then the report) is
//! killed with SIGKILL at random moments and restarted, round after round; then two workers share
//! the grid and one is killed. At the end every run is done and was finished exactly once (a
//! finished record is never rewritten), every file parses, no temporaries or locks are left, the
//! report is complete and the metrics, predictions and histories equal an uninterrupted grid's.
//!
//! `ICM_CRASH_ROUNDS` (default 12) sets the number of kills of single workers, `ICM_CRASH_SEED` (default 0) the
//! moments' random seed; e.g. `ICM_CRASH_ROUNDS=200 cargo test --release --test crash_campaign`.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

use icm::grid::locks::{self, RunState};
use icm::grid::records::{self, METRICS_FILE};
use icm::report::{write_report, Formats, ReportSource};
use icm::spec::{parse_experiment, LoadedExperiment};
use rand::{Rng, SeedableRng};
use walkdir::WalkDir;

const GRID: &str = "\
name: campaign
splits: [{per_class: 40}]
model: {arch: mlp, hidden: [32]}
train: {epochs: 12, batch_size: 16, lr: 0.05, augment: {crop_padding: 1}}
methods: [erm, icm-mixup]
seeds: [0, 1]
";

fn env_number(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn spawn(yaml: &Path, root: &Path) -> Child {
    Command::new(env!("CARGO_BIN_EXE_icm"))
        .arg("run")
        .arg(yaml)
        .arg("--results")
        .arg(root.join("results"))
        .arg("--reports")
        .arg(root.join("reports"))
        .args(["--quiet", "--threads", "1", "--checkpoint-every", "1"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

/// Runs until it exits (`true`) or `after` has passed, then SIGKILLs it (`false`).
fn kill_after(mut child: Child, after: Duration) -> bool {
    let start = Instant::now();
    loop {
        if child.try_wait().unwrap().is_some() {
            return true;
        }
        if start.elapsed() >= after {
            child.kill().unwrap();
            child.wait().unwrap();
            return false;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

fn run_dirs(exp: &LoadedExperiment, results: &Path) -> Vec<PathBuf> {
    exp.runs()
        .iter()
        .map(|r| records::run_dir(results, &exp.name, &r.run_id()))
        .collect()
}

/// (bytes, modification time) of every finished record.
fn finished_records(
    exp: &LoadedExperiment,
    results: &Path,
) -> BTreeMap<PathBuf, (Vec<u8>, SystemTime)> {
    run_dirs(exp, results)
        .into_iter()
        .filter(|d| records::is_done(d))
        .map(|d| {
            let path = d.join(METRICS_FILE);
            let modified = fs::metadata(&path).unwrap().modified().unwrap();
            (d, (fs::read(&path).unwrap(), modified))
        })
        .collect()
}

/// Records finished earlier are untouched (no run is finished twice, none lost); returns the
/// finished records now.
fn assert_never_refinished(
    exp: &LoadedExperiment,
    root: &Path,
    before: &BTreeMap<PathBuf, (Vec<u8>, SystemTime)>,
) -> BTreeMap<PathBuf, (Vec<u8>, SystemTime)> {
    let now = finished_records(exp, &root.join("results"));
    for (dir, record) in before {
        assert_eq!(
            now.get(dir),
            Some(record),
            "{} was finished again (or lost)",
            dir.display()
        );
    }
    now
}

/// Whatever report tables a killed attempt left parse whole (they are written atomically).
fn assert_report_tables_whole(exp: &LoadedExperiment, root: &Path) {
    use polars::prelude::{CsvReadOptions, SerReader};
    let dir = root.join("reports").join(&exp.name);
    let csv = dir.join("runs.csv");
    if csv.is_file() {
        let frame = CsvReadOptions::default()
            .try_into_reader_with_file_path(Some(csv.clone()))
            .unwrap()
            .finish()
            .unwrap_or_else(|e| panic!("{} is torn: {e}", csv.display()));
        assert!(frame.height() >= 1, "{} has no runs", csv.display());
    }
    let parquet = dir.join("runs.parquet");
    if parquet.is_file() {
        let file = fs::File::open(&parquet).unwrap();
        polars::prelude::ParquetReader::new(file)
            .finish()
            .unwrap_or_else(|e| panic!("{} is torn: {e}", parquet.display()));
    }
}

fn assert_no_leftovers(root: &Path) {
    for entry in WalkDir::new(root).into_iter().flatten() {
        let name = entry.file_name().to_string_lossy();
        assert!(
            !name.contains(".tmp.") && name != locks::LOCK_FILE && !name.ends_with(".stale"),
            "left behind: {}",
            entry.path().display()
        );
    }
}

fn assert_equal_to_reference(exp: &LoadedExperiment, results: &Path, reference: &Path) {
    for (dir, want) in run_dirs(exp, results)
        .into_iter()
        .zip(run_dirs(exp, reference))
    {
        assert_eq!(
            locks::state(&dir, Duration::from_secs(3600)),
            RunState::Done
        );
        records::read_config(&dir.join(records::CONFIG_FILE)).unwrap();
        records::check_auxiliary(&dir).unwrap();
        let m = records::read_metrics(&dir.join(METRICS_FILE)).unwrap();
        let r = records::read_metrics(&want.join(METRICS_FILE)).unwrap();
        assert_eq!(m.test, r.test, "{}", dir.display());
        for file in [records::PREDICTIONS_FILE, records::HISTORY_FILE] {
            assert_eq!(
                fs::read(dir.join(file)).unwrap(),
                fs::read(want.join(file)).unwrap(),
                "{file} of {}",
                dir.display()
            );
        }
    }
}

/// The report on disk is complete: every run in `runs.csv` and `runs.parquet`, every table and
/// page there; and rebuilding it finds nothing unfinished.
fn assert_report_complete(exp: &LoadedExperiment, root: &Path) {
    let dir = root.join("reports").join(&exp.name);
    let csv = fs::read_to_string(dir.join("runs.csv")).unwrap();
    assert_eq!(csv.lines().count(), exp.runs().len() + 1, "{csv}");
    let file = fs::File::open(dir.join("runs.parquet")).unwrap();
    use polars::prelude::SerReader;
    let frame = polars::prelude::ParquetReader::new(file).finish().unwrap();
    assert_eq!(frame.height(), exp.runs().len());
    for page in ["table.md", "index.html"] {
        assert!(
            fs::metadata(dir.join(page)).unwrap().len() > 0,
            "{page} is empty"
        );
    }
    let source = ReportSource::Experiment(Box::new(exp.clone()));
    let again = write_report(
        &source,
        &root.join("results"),
        &root.join("reports"),
        Formats::default(),
    )
    .unwrap();
    assert!(again.unfinished.is_empty(), "{:?}", again.unfinished);
}

#[test]
fn sigkills_during_training_checkpoints_and_reports_lose_nothing() {
    let rounds = env_number("ICM_CRASH_ROUNDS", 12) as usize;
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(env_number("ICM_CRASH_SEED", 0));
    let tmp = tempfile::tempdir().unwrap();
    let yaml = tmp.path().join("campaign.yaml");
    fs::write(&yaml, GRID).unwrap();
    let exp = parse_experiment(GRID, &yaml).unwrap();

    // The uninterrupted grid, and how long a whole `icm run` takes (timed on a second grid: the
    // first start reads the binary from disk).
    assert!(kill_after(
        spawn(&yaml, &tmp.path().join("warm-up")),
        Duration::MAX
    ));
    let reference = tmp.path().join("reference");
    let start = Instant::now();
    assert!(kill_after(spawn(&yaml, &reference), Duration::MAX));
    let whole = start.elapsed();

    // Cycles on a fresh results folder: SIGKILL at a random moment, restart, repeat until an
    // attempt finishes; then check. Until `rounds` kills were made.
    let mut kills = 0;
    let mut cycles = 0;
    while kills < rounds {
        let root = tmp.path().join(format!("killed-{cycles}"));
        let mut finished = BTreeMap::new();
        loop {
            // Anywhere from start-up to the end of the report.
            let after = whole.mul_f64(rng.gen_range(0.0..1.1));
            let completed = kill_after(spawn(&yaml, &root), after);
            finished = assert_never_refinished(&exp, &root, &finished);
            assert_report_tables_whole(&exp, &root);
            if completed {
                break;
            }
            kills += 1;
        }
        assert_complete(&exp, &root, &reference);
        fs::remove_dir_all(&root).unwrap();
        cycles += 1;
    }

    // Two workers on a fresh grid, one killed at a random moment: the other finishes the grid
    // (taking over the dead one's run); a restart leaves it as it is.
    let shared = tmp.path().join("shared");
    let survivor = spawn(&yaml, &shared);
    // Early enough that both are still training (the survivor then waits for the other's run).
    let after = whole.mul_f64(rng.gen_range(0.05..0.4));
    let killed_worker = !kill_after(spawn(&yaml, &shared), after);
    assert!(survivor.wait_with_output().unwrap().status.success());
    let finished = assert_never_refinished(&exp, &shared, &BTreeMap::new());
    assert_eq!(
        finished.len(),
        exp.runs().len(),
        "the survivor completes the grid"
    );
    assert!(kill_after(spawn(&yaml, &shared), Duration::MAX));
    assert_never_refinished(&exp, &shared, &finished);
    assert_complete(&exp, &shared, &reference);
    println!(
        "crash campaign: {cycles} grids killed {kills} times; 2 workers, one killed: {killed_worker}"
    );
}

/// Every run done like the reference, every file parsing, the report complete, nothing left
/// behind.
fn assert_complete(exp: &LoadedExperiment, root: &Path, reference: &Path) {
    assert_no_leftovers(root);
    assert_equal_to_reference(exp, &root.join("results"), &reference.join("results"));
    assert_report_complete(exp, root);
    assert_no_leftovers(root);
}
