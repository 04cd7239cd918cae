//! Reports never mix, drop or mislabel runs: a renamed method keeps its runs, a results folder
//! holding two configurations reports them apart (and says so in every format), failed runs make
//! `icm run` fail and are listed in the report, integer fields stay integers, and the claims
//! table opens the report. Trained on the real embedded digits, 2 epochs.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use icm::grid::records;
use icm::grid::runner::{run_grid, RunOptions};
use icm::report::{write_report, Formats, ReportSource};
use icm::spec::parse_experiment;

const GRID: &str = "\
name: integrity
splits: [balanced, {per_class: 10}]
model: {arch: mlp, hidden: [16]}
train: {epochs: 2, batch_size: 32, lr: 0.05}
methods:
  - mixup
  - icm-mixup
seeds: [0, 1]
";

fn train(yaml: &str, results: &Path) -> icm::spec::LoadedExperiment {
    let exp = parse_experiment(yaml, Path::new("integrity.yaml")).unwrap();
    let summary = run_grid(&exp, results, &RunOptions::default()).unwrap();
    assert!(summary.failed.is_empty(), "{:?}", summary.failed);
    exp
}

/// The report of `source` over the runs in `results`, written under `reports`.
fn report(source: ReportSource, results: &Path, reports: &Path) -> icm::report::ReportOutput {
    write_report(&source, results, reports, Formats::default()).unwrap()
}

fn read(path: PathBuf) -> String {
    fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn a_renamed_method_keeps_its_runs_under_its_new_name() {
    let tmp = tempfile::tempdir().unwrap();
    let (results, reports) = (tmp.path().join("results"), tmp.path().join("reports"));
    train(GRID, &results);
    let renamed = parse_experiment(
        &GRID.replace("  - icm-mixup\n", "  - icm-mixup: {name: ours}\n"),
        Path::new("integrity.yaml"),
    )
    .unwrap();
    let out = report(
        ReportSource::Experiment(Box::new(renamed)),
        &results,
        &reports,
    );
    let acc = read(out.dir.join("tables/accuracy.md"));
    let row = acc.lines().find(|l| l.starts_with("| ours |")).expect(&acc);
    assert!(
        !row.contains('–'),
        "the renamed method's cells are filled: {row}"
    );
    assert!(!acc.contains("| icm-mixup |"), "{acc}");
    let claims = read(out.dir.join("tables/claims.md"));
    assert!(claims.contains("| ours vs mixup |"), "{claims}");
}

/// The experiment a run was trained under is bookkeeping, not configuration: runs copied in from
/// another experiment's folder (same run ids) join their cells.
#[test]
fn runs_trained_under_another_experiment_name_join_their_cells() {
    let tmp = tempfile::tempdir().unwrap();
    let (results, reports) = (tmp.path().join("results"), tmp.path().join("reports"));
    train(GRID, &results);
    let other = tmp.path().join("other");
    let third_seed = GRID
        .replace("name: integrity", "name: probe")
        .replace("seeds: [0, 1]", "seeds: [2]");
    train(&third_seed, &other);
    for entry in fs::read_dir(other.join("probe")).unwrap() {
        let from = entry.unwrap().path();
        let to = results.join("integrity").join(from.file_name().unwrap());
        fs::rename(&from, &to).unwrap();
    }
    let all_seeds = GRID.replace("seeds: [0, 1]", "seeds: [0, 1, 2]");
    let exp = parse_experiment(&all_seeds, Path::new("integrity.yaml")).unwrap();
    let out = report(ReportSource::Experiment(Box::new(exp)), &results, &reports);
    let acc = read(out.dir.join("tables/accuracy.md"));
    assert!(acc.contains("mean ± std over 3 seeds"), "{acc}");
    assert!(!acc.contains("(n="), "every cell has its 3 runs: {acc}");
}

#[test]
fn a_folder_with_two_configurations_reports_them_apart() {
    let tmp = tempfile::tempdir().unwrap();
    let (results, reports) = (tmp.path().join("results"), tmp.path().join("reports"));
    train(GRID, &results);
    train(&GRID.replace("lr: 0.05", "lr: 0.1"), &results);
    let out = report(
        ReportSource::Folder(results.join("integrity")),
        &results,
        &reports,
    );
    let acc = read(out.dir.join("tables/accuracy.md"));
    for row in [
        "| mixup [train.lr=0.05] |",
        "| mixup [train.lr=0.1] |",
        "| icm-mixup [train.lr=0.05] |",
        "| icm-mixup [train.lr=0.1] |",
    ] {
        let line = acc.lines().find(|l| l.starts_with(row)).expect(&acc);
        assert!(!line.contains('–'), "{line}");
        assert!(
            line.contains("± "),
            "both seeds of one configuration, never mixed: {line}"
        );
    }
    let noted = "differ in train.lr";
    assert!(read(out.dir.join("table.md")).contains(noted));
    assert!(acc.contains(noted), "in every Markdown table");
    let tex = read(out.dir.join("tables/accuracy.tex"));
    assert!(
        tex.lines()
            .any(|l| l.starts_with("% note:") && l.contains(noted)),
        "{tex}"
    );
    assert!(read(out.dir.join("index.html")).contains(noted));
    // Default claims pair each configuration with its own twin only.
    let claims = read(out.dir.join("tables/claims.csv"));
    assert!(
        claims.contains("icm-mixup [train.lr=0.1],mixup [train.lr=0.1]"),
        "{claims}"
    );
    assert!(!claims.contains("icm-mixup [train.lr=0.1],mixup [train.lr=0.05]"));
}

#[test]
fn the_claims_table_opens_the_report_and_integers_stay_integers() {
    let tmp = tempfile::tempdir().unwrap();
    let (results, reports) = (tmp.path().join("results"), tmp.path().join("reports"));
    let exp = train(GRID, &results);
    let out = report(ReportSource::Experiment(Box::new(exp)), &results, &reports);
    let md = read(out.dir.join("table.md"));
    let first_table = md.find("### ").unwrap();
    assert!(md[first_table..].starts_with("### Claims"), "{md}");
    assert!(
        md.contains("| icm-mixup vs mixup | balanced | accuracy (%) |"),
        "{md}"
    );
    let html = read(out.dir.join("index.html"));
    assert!(html.find("id=\"claims\"").unwrap() < html.find("<h2>Tables</h2>").unwrap());
    assert!(out.dir.join("figures/claims-accuracy.png").is_file());
    assert!(out.dir.join("figures/claims-ece.svg").is_file());
    use polars::prelude::*;
    let frame = ParquetReader::new(fs::File::open(out.dir.join("runs.parquet")).unwrap())
        .finish()
        .unwrap();
    for column in [
        "seed",
        "config.seed",
        "config.data_seed",
        "config.train.epochs",
    ] {
        let dtype = frame.column(column).unwrap().dtype().clone();
        assert!(dtype.is_integer(), "{column} is {dtype:?}");
    }
    assert_eq!(
        frame.column("config.train.lr").unwrap().dtype(),
        &DataType::Float64
    );
}

fn icm() -> Command {
    Command::new(env!("CARGO_BIN_EXE_icm"))
}

#[test]
fn failed_runs_fail_the_grid_every_time_and_are_listed_in_the_report() {
    let tmp = tempfile::tempdir().unwrap();
    let yaml = tmp.path().join("integrity.yaml");
    fs::write(&yaml, GRID).unwrap();
    let results = tmp.path().join("results");
    let run = |retry: bool| {
        let mut cmd = icm();
        cmd.arg("run")
            .arg(&yaml)
            .arg("--quiet")
            .arg("--results")
            .arg(&results)
            .arg("--reports")
            .arg(tmp.path().join("reports"));
        if retry {
            cmd.arg("--retry-failed");
        }
        cmd.output().unwrap()
    };
    assert!(run(false).status.success());
    // One run failed earlier: its metrics gone, a failure note in their place.
    let exp = parse_experiment(GRID, Path::new("integrity.yaml")).unwrap();
    let dir = records::run_dir(&results, "integrity", &exp.runs()[0].run_id());
    fs::remove_file(dir.join(records::METRICS_FILE)).unwrap();
    fs::write(
        dir.join(records::FAILURE_FILE),
        "loss became NaN at epoch 2 batch 3",
    )
    .unwrap();
    for _ in 0..2 {
        let out = run(false);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success(),
            "a failed run fails the grid: {stderr}"
        );
        assert!(stderr.contains("1 of 8 runs failed"), "{stderr}");
        assert!(
            stderr.contains("loss became NaN at epoch 2 batch 3"),
            "{stderr}"
        );
        let md = read(tmp.path().join("reports/integrity/table.md"));
        assert!(
            md.contains("failed: loss became NaN"),
            "the report lists it: {md}"
        );
    }
    assert!(run(true).status.success(), "--retry-failed trains it again");
}

#[test]
fn icm_compare_prints_the_claim_on_every_split() {
    let tmp = tempfile::tempdir().unwrap();
    let yaml = tmp.path().join("integrity.yaml");
    fs::write(&yaml, GRID).unwrap();
    let results = tmp.path().join("results");
    train(GRID, &results);
    let out = icm()
        .args(["compare"])
        .arg(&yaml)
        .args(["icm-mixup", "mixup", "--metric", "nll", "--results"])
        .arg(&results)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("icm-mixup vs mixup"))
        .collect();
    assert_eq!(lines.len(), 2, "one line per split: {text}");
    assert!(
        lines.iter().all(|l| l.contains("NLL") && l.contains(" 2 ")),
        "{text}"
    );
    assert!(text.contains("paired t-test"), "{text}");
    let bad = icm()
        .args(["compare"])
        .arg(&yaml)
        .args(["icm-mixup", "mixpu", "--results"])
        .arg(&results)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(!bad.status.success());
    assert!(
        err.contains("`b: mixpu` is not a method of this experiment"),
        "{err}"
    );
}

/// A copy of a run folder elsewhere under the results folder (a backup) counts once, and says so;
/// a run folder reached through a link counts like any other (as `icm status` sees it).
#[test]
fn a_copied_run_counts_once_and_a_linked_run_counts() {
    let tmp = tempfile::tempdir().unwrap();
    let (results, reports) = (tmp.path().join("results"), tmp.path().join("reports"));
    let exp = train(GRID, &results);
    let first = records::run_dir(&results, "integrity", &exp.runs()[0].run_id());
    let backup = results
        .join("integrity/backup")
        .join(first.file_name().unwrap());
    fs::create_dir_all(&backup).unwrap();
    for entry in fs::read_dir(&first).unwrap() {
        let from = entry.unwrap().path();
        fs::copy(&from, backup.join(from.file_name().unwrap())).unwrap();
    }
    // Another run lives elsewhere; the results folder holds a link to it.
    let second = records::run_dir(&results, "integrity", &exp.runs()[1].run_id());
    let elsewhere = tmp.path().join("scratch").join(second.file_name().unwrap());
    fs::create_dir_all(elsewhere.parent().unwrap()).unwrap();
    fs::rename(&second, &elsewhere).unwrap();
    std::os::unix::fs::symlink(&elsewhere, &second).unwrap();
    // A dangling link and a link to a folder above it are listed, not fatal; an old record kept
    // aside inside a run folder (`superseded-*/`) is not a run of its own.
    let root = results.join("integrity");
    std::os::unix::fs::symlink(tmp.path().join("deleted"), root.join("scratch")).unwrap();
    std::os::unix::fs::symlink("..", root.join("loop")).unwrap();
    let aside = first.join("superseded-1");
    fs::create_dir(&aside).unwrap();
    fs::copy(
        first.join(records::METRICS_FILE),
        aside.join(records::METRICS_FILE),
    )
    .unwrap();

    for source in [
        ReportSource::Experiment(Box::new(exp.clone())),
        ReportSource::Folder(results.join("integrity")),
    ] {
        let out = report(source, &results, &reports);
        let acc = read(out.dir.join("tables/accuracy.md"));
        assert!(acc.contains("mean ± std over 2 seeds"), "{acc}");
        assert!(
            !acc.contains("(n="),
            "every cell has its 2 runs, no more: {acc}"
        );
        let md = read(out.dir.join("table.md"));
        assert!(md.contains("8 finished runs"), "{md}");
        assert!(
            md.contains(&format!(
                "a copy of run {} (counted once, from {})",
                exp.runs()[0].run_id(),
                first.display()
            )),
            "{md}"
        );
        assert!(!md.contains("superseded-1"), "{md}");
    }
    let folder = report(ReportSource::Folder(root.clone()), &results, &reports);
    let notes = folder.notes.join("\n");
    assert!(
        notes.contains("scratch") && notes.contains("cannot be read"),
        "{notes}"
    );
}

/// A `metrics.json` whose seed is not its `config.yaml`'s is a damaged record: trained again,
/// never counted as a second run of that seed.
#[test]
fn a_record_whose_seed_differs_from_its_config_is_damaged() {
    let tmp = tempfile::tempdir().unwrap();
    let results = tmp.path().join("results");
    let exp = train(GRID, &results);
    let dir = records::run_dir(&results, "integrity", &exp.runs()[0].run_id());
    let path = dir.join(records::METRICS_FILE);
    let text = read(path.clone());
    let seed = format!("\"seed\": {}", exp.runs()[0].seed);
    assert!(text.contains(&seed), "{text}");
    fs::write(&path, text.replacen(&seed, "\"seed\": 7", 1)).unwrap();
    let damage = records::damage(&dir).expect("damaged");
    assert!(
        damage.contains("seed 7 differs from the seed 0 of config.yaml"),
        "{damage}"
    );
}

/// An experiment-file report takes each run's configuration from the grid by its run id: a
/// `config.yaml` copied over from another run cannot move the run to another row or make two
/// configurations share one.
#[test]
fn a_config_copied_from_another_run_does_not_move_the_run() {
    let tmp = tempfile::tempdir().unwrap();
    let (results, reports) = (tmp.path().join("results"), tmp.path().join("reports"));
    let exp = train(GRID, &results);
    let runs = exp.runs();
    let other = runs
        .iter()
        .find(|r| {
            r.method.display_name() != runs[0].method.display_name()
                && r.seed == runs[0].seed
                && r.split == runs[0].split
        })
        .unwrap();
    let dir_of = |r: &icm::spec::RunConfig| records::run_dir(&results, "integrity", &r.run_id());
    fs::copy(
        dir_of(other).join(records::CONFIG_FILE),
        dir_of(&runs[0]).join(records::CONFIG_FILE),
    )
    .unwrap();
    let out = report(
        ReportSource::Experiment(Box::new(exp.clone())),
        &results,
        &reports,
    );
    let acc = read(out.dir.join("tables/accuracy.md"));
    assert!(acc.contains("mean ± std over 2 seeds"), "{acc}");
    assert!(!acc.contains("(n="), "every cell keeps its 2 runs: {acc}");
}
