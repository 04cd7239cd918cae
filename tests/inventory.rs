//! `icm runs` and `icm clean` on real results folders: runs of an earlier version of the file are
//! listed with how they differ from the current grid, cleaning is a dry run unless told
//! otherwise, and it never touches runs of the grid or runs held by a live process.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use icm::grid::inventory::{clean, run_folders, CleanAction, STALE_DIR};
use icm::grid::locks::LOCK_FILE;
use icm::grid::records;
use icm::grid::runner::{run_grid, RunOptions};
use icm::report::{write_report, Formats, ReportSource};
use icm::spec::{parse_experiment, LoadedExperiment};

const V1: &str = "\
name: inv
splits: [{per_class: 10}]
model: {arch: mlp, hidden: [8]}
train: {epochs: 1, batch_size: 16, lr: 0.05}
methods: [erm]
seeds: [0, 1]
";

const TIMEOUT: Duration = Duration::from_secs(3600);

fn train(yaml: &str, results: &Path) -> LoadedExperiment {
    let exp = parse_experiment(yaml, Path::new("inv.yaml")).unwrap();
    let summary = run_grid(&exp, results, &RunOptions::default()).unwrap();
    assert!(summary.failed.is_empty(), "{:?}", summary.failed);
    exp
}

/// Sorted names of the folders in `dir`.
fn names(dir: &Path) -> Vec<String> {
    let mut out: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
        .collect();
    out.sort();
    out
}

/// Two versions of the grid (epochs 1, then 2) in one results folder, plus a run of version 1
/// held by a live process (this test): returns the current experiment, the old runs' folders
/// and the held one.
fn two_versions(results: &Path) -> (LoadedExperiment, Vec<PathBuf>, PathBuf) {
    let old = train(V1, results);
    let old_dirs: Vec<PathBuf> = old
        .runs()
        .iter()
        .map(|r| records::run_dir(results, "inv", &r.run_id()))
        .collect();
    let new = train(&V1.replace("epochs: 1", "epochs: 2"), results);
    // A run of another version being trained right now: its lock names this live process.
    let held = results.join("inv").join("00000000000000aa");
    fs::create_dir_all(&held).unwrap();
    fs::copy(
        old_dirs[0].join(records::CONFIG_FILE),
        held.join(records::CONFIG_FILE),
    )
    .unwrap();
    let lock = format!(
        "{{\"host\": \"{}\", \"pid\": {}, \"started\": 0, \"nonce\": 7}}",
        icm::util::host_name(),
        std::process::id()
    );
    fs::write(held.join(LOCK_FILE), lock).unwrap();
    (new, old_dirs, held)
}

#[test]
fn runs_lists_every_folder_with_its_state_and_differences() {
    let tmp = tempfile::tempdir().unwrap();
    let (exp, old_dirs, held) = two_versions(tmp.path());
    let folders = run_folders(&exp, tmp.path(), TIMEOUT).unwrap();
    assert_eq!(folders.len(), 5);
    let in_grid: Vec<&str> = folders
        .iter()
        .filter(|f| f.in_grid)
        .map(|f| f.id.as_str())
        .collect();
    let mut want: Vec<String> = exp.runs().iter().map(|r| r.run_id()).collect();
    want.sort();
    assert_eq!(in_grid, want);
    for old in &old_dirs {
        let f = folders.iter().find(|f| &f.dir == old).unwrap();
        assert!(!f.in_grid);
        assert_eq!(f.state, "done");
        assert_eq!(
            f.differs,
            [("train.epochs".to_string(), "1".to_string(), "2".to_string())]
        );
    }
    assert_eq!(folders[0].dir, held);
    // A record that no longer parses is damaged.
    let torn = &old_dirs[1];
    fs::write(torn.join(records::METRICS_FILE), "{\"run_id\": ").unwrap();
    let folders = run_folders(&exp, tmp.path(), TIMEOUT).unwrap();
    let f = folders.iter().find(|f| &f.dir == torn).unwrap();
    assert_eq!(f.state, "damaged");
    assert_eq!(folders[0].state, "running");
    assert_eq!(folders[0].what, "erm / per_class-10 / 0");
    let text = icm::grid::inventory::render_run_folders(&exp, tmp.path(), &folders);
    assert!(
        text.contains("5 run folders: 2 of the current grid's 2 runs (0 without a folder yet), 3 outside the grid"),
        "{text}"
    );
    assert!(text.contains("train.epochs: 1 → 2"), "{text}");
    // `icm status` and the report say that the other runs exist.
    let status = icm::grid::status::grid_status(&exp, tmp.path(), TIMEOUT).unwrap();
    assert!(
        status.contains("3 run folders are not in the current grid"),
        "{status}"
    );
    let out = write_report(
        &ReportSource::Experiment(Box::new(exp)),
        tmp.path(),
        &tmp.path().join("reports"),
        Formats::default(),
    )
    .unwrap();
    assert!(
        out.notes
            .iter()
            .any(|n| n.starts_with("3 run folders under")),
        "{:?}",
        out.notes
    );
}

#[test]
fn clean_is_a_dry_run_unless_told_and_spares_the_grid_and_running_runs() {
    let tmp = tempfile::tempdir().unwrap();
    let (exp, old_dirs, held) = two_versions(tmp.path());
    let root = tmp.path().join("inv");
    let before = names(&root);

    let dry = clean(&exp, tmp.path(), TIMEOUT, &CleanAction::DryRun).unwrap();
    assert_eq!(names(&root), before, "a dry run moves nothing");
    assert!(
        dry.contains("dry run: 3 run folders outside the current grid: 2 to move aside or delete, 1 running (kept); 2 in the grid untouched."),
        "{dry}"
    );

    let inside = clean(
        &exp,
        tmp.path(),
        TIMEOUT,
        &CleanAction::MoveTo(root.join("old")),
    );
    let e = format!("{:#}", inside.unwrap_err());
    assert!(
        e.contains("where reports would find the moved runs again"),
        "{e}"
    );
    assert_eq!(names(&root), before);

    let stale = root.join(STALE_DIR);
    let done = clean(
        &exp,
        tmp.path(),
        TIMEOUT,
        &CleanAction::MoveTo(stale.clone()),
    )
    .unwrap();
    assert!(
        done.contains(&format!("moved 2 run folders into {}", stale.display())),
        "{done}"
    );
    let mut grid_and_held: Vec<String> = exp.runs().iter().map(|r| r.run_id()).collect();
    grid_and_held.push("00000000000000aa".into());
    grid_and_held.push(STALE_DIR.into());
    grid_and_held.sort();
    assert_eq!(names(&root), grid_and_held);
    let moved: Vec<String> = old_dirs
        .iter()
        .map(|d| d.file_name().unwrap().to_string_lossy().to_string())
        .collect();
    assert_eq!(names(&stale), moved);
    assert!(stale.join(&moved[0]).join(records::METRICS_FILE).is_file());
    assert!(held.join(LOCK_FILE).is_file());

    // Runs moved aside are not runs of the folder any more, for `icm runs` and for reports.
    assert_eq!(run_folders(&exp, tmp.path(), TIMEOUT).unwrap().len(), 3);
    let out = write_report(
        &ReportSource::Folder(root.clone()),
        tmp.path(),
        &tmp.path().join("reports"),
        Formats::default(),
    )
    .unwrap();
    let runs_csv = fs::read_to_string(out.dir.join("runs.csv")).unwrap();
    assert_eq!(runs_csv.lines().count(), 1 + 2, "{runs_csv}");

    // Once the process holding it is gone, the held run can be deleted; the grid stays.
    fs::remove_file(held.join(LOCK_FILE)).unwrap();
    let deleted = clean(&exp, tmp.path(), TIMEOUT, &CleanAction::Delete).unwrap();
    assert!(
        deleted.contains("deleted 1 run folders; 0 running kept, 2 in the grid untouched"),
        "{deleted}"
    );
    assert!(!held.exists());
    for run in exp.runs() {
        assert!(records::is_done(&records::run_dir(
            tmp.path(),
            "inv",
            &run.run_id()
        )));
    }
}

#[test]
fn the_commands_print_the_listing_and_refuse_bad_overrides() {
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("inv.yaml");
    fs::write(&file, V1).unwrap();
    let results = tmp.path().join("results");
    train(V1, &results);
    let icm = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_icm"))
            .args(args)
            .arg(&file)
            .arg("--results")
            .arg(&results)
            .output()
            .unwrap()
    };
    // With the learning rate overridden, the trained runs are not the grid's.
    let out = icm(&["runs", "--set", "train.lr=0.1"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("train.lr: 0.05 → 0.1"), "{text}");
    assert!(text.contains("2 run folders: 0 of the current grid's 2 runs (2 without a folder yet), 2 outside the grid"), "{text}");
    let out = icm(&["clean", "--set", "train.lr=0.1"]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("dry run: 2 run folders"));
    assert_eq!(names(&results.join("inv")).len(), 2);
    let out = icm(&["status", "--set", "train.lr=abc"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--set train.lr=abc: invalid type: string \"abc\", expected f64"),
        "{err}"
    );
}
