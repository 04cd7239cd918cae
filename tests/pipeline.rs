//! End to end on the real embedded digits: a small grid trains, is skipped when run again, and
//! its report has the table and readable reliability diagrams.

use std::fs;
use std::path::Path;

use icm::grid::records;
use icm::grid::runner::{run_grid, RunOptions};
use icm::report::{write_report, Formats, ReportSource};
use icm::spec::parse_experiment;

const GRID: &str = "\
name: e2e
splits:
  - balanced
  - per_class: 10
model:
  arch: mlp
  hidden: [32]
train:
  epochs: 8
  batch_size: 32
  lr: 0.05
methods:
  - erm
  - icm-mixup
seeds: [0, 1]
";

#[test]
fn grid_trains_skips_and_reports() {
    let tmp = tempfile::tempdir().unwrap();
    let (results, reports) = (tmp.path().join("results"), tmp.path().join("reports"));
    let exp = parse_experiment(GRID, Path::new("e2e.yaml")).unwrap();

    let first = run_grid(&exp, &results, &RunOptions::default()).unwrap();
    assert_eq!((first.total, first.trained, first.skipped), (8, 8, 0));
    assert!(first.failed.is_empty(), "{:?}", first.failed);

    for run in exp.runs() {
        let dir = records::run_dir(&results, "e2e", &run.run_id());
        for f in [
            records::CONFIG_FILE,
            records::METRICS_FILE,
            records::HISTORY_FILE,
            records::RELIABILITY_FILE,
            records::PREDICTIONS_FILE,
        ] {
            assert!(dir.join(f).is_file(), "{} missing in {}", f, dir.display());
        }
        let m = records::read_metrics(&dir.join(records::METRICS_FILE)).unwrap();
        assert_eq!(m.test_size, 360);
        // Clearly better than chance (10 %) on the real digits.
        assert!(
            m.test.accuracy > 0.6,
            "{} {}: {}",
            m.method,
            m.split,
            m.test.accuracy
        );
        let expected_train = if m.split == "balanced" { 1437 } else { 100 };
        assert_eq!(m.train_size, expected_train);
        let preds = fs::read_to_string(dir.join(records::PREDICTIONS_FILE)).unwrap();
        assert_eq!(preds.lines().count(), 361);
        let history = fs::read_to_string(dir.join(records::HISTORY_FILE)).unwrap();
        assert_eq!(history.lines().count(), 9);
        // The stored config is the resolved run config (round trip).
        let cfg: icm::spec::RunConfig =
            serde_yaml::from_str(&fs::read_to_string(dir.join(records::CONFIG_FILE)).unwrap())
                .unwrap();
        assert_eq!(cfg, run);
    }

    // Same seed, same machine: bit-identical metrics when a run is trained again.
    let again_dir = records::run_dir(&results, "e2e", &exp.runs()[0].run_id());
    let before = fs::read_to_string(again_dir.join(records::PREDICTIONS_FILE)).unwrap();
    fs::remove_file(again_dir.join(records::METRICS_FILE)).unwrap();
    // A finished run's checkpoint is removed (`--keep-checkpoints` keeps it).
    assert!(!again_dir.join(icm::train::CHECKPOINT_FILE).exists());
    let second = run_grid(&exp, &results, &RunOptions::default()).unwrap();
    assert_eq!((second.trained, second.skipped), (1, 7));
    let after = fs::read_to_string(again_dir.join(records::PREDICTIONS_FILE)).unwrap();
    assert_eq!(before, after);

    let third = run_grid(&exp, &results, &RunOptions::default()).unwrap();
    assert_eq!((third.trained, third.skipped), (0, 8));

    let report = write_report(
        &ReportSource::Experiment(Box::new(exp.clone())),
        &results,
        &reports,
        Formats::default(),
    )
    .unwrap();
    let out = report.dir.clone();
    let table = fs::read_to_string(out.join("table.md")).unwrap();
    assert!(
        table.contains("| method | balanced | 10 per class |"),
        "{table}"
    );
    assert!(
        table.contains("| erm |") && table.contains("| icm-mixup |"),
        "{table}"
    );
    assert!(table.contains(" ± "), "{table}");
    assert!(table.contains("**"), "{table}");
    for m in ["erm", "icm-mixup"] {
        for s in ["balanced", "per_class-10"] {
            let png = out.join(format!("figures/reliability-{m}-{s}.png"));
            let bytes = fs::read(&png).unwrap();
            assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n", "{}", png.display());
            let svg =
                fs::read_to_string(out.join(format!("figures/reliability-{m}-{s}.svg"))).unwrap();
            assert!(svg.contains("ECE ="), "diagram text is rendered");
        }
    }
    // Every chart type, the raw run table and the per-table files.
    for f in [
        "figures/reliability-grid-balanced.png",
        "figures/curves-per_class-10.png",
        "figures/curves-balanced.svg",
        "figures/accuracy-vs-samples.png",
        "runs.csv",
        "runs.parquet",
        "tables/accuracy.md",
        "tables/accuracy.tex",
        "tables/accuracy.csv",
        "index.html",
    ] {
        assert!(out.join(f).is_file(), "{f} missing");
    }
    let runs_csv = fs::read_to_string(out.join("runs.csv")).unwrap();
    assert_eq!(runs_csv.lines().count(), 9, "header + one line per run");
    assert!(runs_csv
        .lines()
        .next()
        .unwrap()
        .contains("config.method.alpha"));
    let html = fs::read_to_string(out.join("index.html")).unwrap();
    for f in &report.figures {
        assert!(
            html.contains(&format!("src=\"{f}\"")),
            "{f} not in index.html"
        );
    }
    // A report from the bare folder gives the same table rows.
    let from_dir = write_report(
        &ReportSource::Folder(results.join("e2e")),
        &results,
        &reports,
        Formats::parse("md").unwrap(),
    )
    .unwrap();
    assert!(fs::read_to_string(from_dir.dir.join("table.md"))
        .unwrap()
        .contains("| icm-mixup |"));
}

/// A diverging run is recorded as failed with its reason; the rest of the grid completes.
#[test]
fn nan_loss_marks_the_run_diverged_not_failed() {
    let tmp = tempfile::tempdir().unwrap();
    let results = tmp.path().join("results");
    let yaml = GRID
        .replace("lr: 0.05", "lr: 1.0e+30")
        .replace("  - per_class: 10\n", "")
        .replace("seeds: [0, 1]", "seeds: [0]");
    let exp = parse_experiment(&yaml, Path::new("nan.yaml")).unwrap();
    let summary = run_grid(&exp, &results, &RunOptions::default()).unwrap();
    assert_eq!((summary.total, summary.trained), (2, 2));
    assert!(summary.failed.is_empty(), "{summary:?}");
    assert_eq!(summary.diverged.len(), 2, "{summary:?}");
    for (id, what) in &summary.diverged {
        assert!(what.contains("training loss became"), "{what}");
        let dir = records::run_dir(&results, "e2e", id);
        let m = records::read_metrics(&dir.join(records::METRICS_FILE)).unwrap();
        assert!(m.diverged.is_some());
        assert!(
            m.test.accuracy.is_finite(),
            "scored as it stood before the non-finite step"
        );
    }
    icm::grid::runner::ensure_no_failures(&summary, &results, "e2e").unwrap();
}

/// A validation hold-out is taken from each split's training images and scored every epoch.
#[test]
fn validation_hold_out_is_scored_each_epoch() {
    let tmp = tempfile::tempdir().unwrap();
    let yaml = GRID
        .replace("seeds: [0, 1]", "seeds: [0]\nvalidation: 0.1")
        .replace("  - erm\n", "");
    let exp = parse_experiment(&yaml, Path::new("val.yaml")).unwrap();
    let text = icm::grid::runner::describe_data(&exp).unwrap();
    assert!(
        text.contains("validation") && text.contains("total    145"),
        "{text}"
    );
    run_grid(&exp, &tmp.path().join("r"), &RunOptions::default()).unwrap();
    let run = &exp.runs()[0];
    let dir = records::run_dir(&tmp.path().join("r"), "e2e", &run.run_id());
    let m = records::read_metrics(&dir.join(records::METRICS_FILE)).unwrap();
    assert_eq!(m.train_size, 1437 - 145);
    let history = records::read_history(&dir.join(records::HISTORY_FILE)).unwrap();
    assert!(history
        .iter()
        .all(|h| h.val_accuracy.is_some_and(|a| a > 0.0)));
    let err = format!(
        "{:#}",
        parse_experiment(
            &yaml.replace("validation: 0.1", "validation: 1.5"),
            Path::new("val.yaml")
        )
        .unwrap_err()
    );
    assert!(err.contains("`validation`"), "{err}");
}
