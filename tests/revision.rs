//! Runs trained by a trainer revision with a known defect that affects them (RegMixup on the MLP
//! before the native MLP op) are never reused as done: `icm status` counts them as pending, `icm
//! run` moves their files aside and trains them again, the report lists them until then, and
//! their checkpoints are not resumed. Unaffected runs of the same grid are kept.

use std::fs;
use std::path::Path;
use std::time::Duration;

use icm::grid::locks::{self, RunState};
use icm::grid::records::{self, METRICS_FILE};
use icm::grid::runner::{run_grid, RunOptions};
use icm::spec::parse_experiment;
use icm::train::{Checkpoint, CHECKPOINT_FILE, LEGACY_CHECKPOINT_FILE, TRAINER_REVISION};

const GRID: &str = "\
name: rev
splits: [{per_class: 10}]
model: {arch: mlp, hidden: [16]}
train: {epochs: 2, batch_size: 16, lr: 0.05}
methods: [erm, regmixup]
seeds: [0]
";

/// Rewrites a record as a trainer without revisions wrote it.
fn make_old(dir: &Path) {
    let path = dir.join(METRICS_FILE);
    let mut value: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(&path).unwrap()).unwrap();
    value.as_object_mut().unwrap().remove("trainer_revision");
    fs::write(&path, serde_json::to_string_pretty(&value).unwrap()).unwrap();
}

#[test]
fn records_of_a_defective_trainer_are_trained_again() {
    let tmp = tempfile::tempdir().unwrap();
    let results = tmp.path().join("results");
    let exp = parse_experiment(GRID, Path::new("rev.yaml")).unwrap();
    let first = run_grid(&exp, &results, &RunOptions::default()).unwrap();
    assert_eq!(first.trained, 2);
    let dirs: Vec<_> = exp
        .runs()
        .iter()
        .map(|r| records::run_dir(&results, "rev", &r.run_id()))
        .collect();
    let m = records::read_metrics(&dirs[1].join(METRICS_FILE)).unwrap();
    assert_eq!(m.trainer_revision, TRAINER_REVISION);
    for dir in &dirs {
        make_old(dir);
    }
    let hour = Duration::from_secs(3600);
    assert_eq!(
        locks::state(&dirs[0], hour),
        RunState::Done,
        "erm was never affected"
    );
    match locks::state(&dirs[1], hour) {
        RunState::Superseded(why) => assert!(why.contains("RegMixup on the MLP"), "{why}"),
        other => panic!("regmixup should be superseded, is {other:?}"),
    }
    let again = run_grid(&exp, &results, &RunOptions::default()).unwrap();
    assert_eq!((again.trained, again.skipped), (1, 1));
    let m = records::read_metrics(&dirs[1].join(METRICS_FILE)).unwrap();
    assert_eq!(m.trainer_revision, TRAINER_REVISION);
    let aside: Vec<_> = fs::read_dir(&dirs[1])
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
        .filter(|n| n.starts_with("superseded-"))
        .collect();
    assert_eq!(aside.len(), 1, "the old files are kept aside");
    assert!(dirs[1].join(&aside[0]).join(METRICS_FILE).is_file());
    assert_eq!(locks::state(&dirs[1], hour), RunState::Done);
}

#[test]
fn checkpoints_of_a_defective_trainer_are_not_resumed() {
    let tmp = tempfile::tempdir().unwrap();
    let results = tmp.path().join("results");
    let exp = parse_experiment(GRID, Path::new("rev.yaml")).unwrap();
    let reference = run_grid(&exp, &tmp.path().join("reference"), &RunOptions::default()).unwrap();
    assert_eq!(reference.trained, 2);
    // A checkpoint after epoch 1 of the RegMixup run, as a defective trainer would leave it: with
    // parameters it could never have reached (all zeros), and no revision.
    // (in the all-JSON form of those versions).
    let keep = RunOptions {
        keep_checkpoints: true,
        ..RunOptions::default()
    };
    run_grid(&exp, &results, &keep).unwrap();
    let run = &exp.runs()[1];
    let dir = records::run_dir(&results, "rev", &run.run_id());
    let mut ckpt = Checkpoint::load(&dir.join(CHECKPOINT_FILE), &run.run_id())
        .unwrap()
        .unwrap();
    fs::remove_file(dir.join(CHECKPOINT_FILE)).unwrap();
    ckpt.epoch = 1;
    ckpt.history.truncate(1);
    ckpt.params.iter_mut().for_each(|p| *p = 0.0);
    let mut value = serde_json::to_value(&ckpt).unwrap();
    value.as_object_mut().unwrap().remove("trainer_revision");
    for f in [METRICS_FILE, records::HISTORY_FILE] {
        fs::remove_file(dir.join(f)).unwrap();
    }
    fs::write(dir.join(LEGACY_CHECKPOINT_FILE), value.to_string()).unwrap();
    run_grid(&exp, &results, &RunOptions::default()).unwrap();
    let resumed = records::read_metrics(&dir.join(METRICS_FILE)).unwrap();
    let fresh = records::read_metrics(
        &records::run_dir(&tmp.path().join("reference"), "rev", &run.run_id()).join(METRICS_FILE),
    )
    .unwrap();
    assert_eq!(
        resumed.test, fresh.test,
        "trained from scratch, not from the old checkpoint"
    );
}

/// Revision 3 fixed the blur corruption's σ on images under 28 pixels: a revision-2 record of a
/// digits run scored on `gaussian_blur` is superseded; one scored on other corruptions only, or
/// one on Fashion-MNIST's 28 × 28 images, is kept.
#[test]
fn blur_scores_of_revision_2_on_small_images_are_superseded() {
    use icm::train::revision::defect_affecting;
    let run = |extra: &str| {
        let exp = parse_experiment(&format!("{GRID}{extra}"), Path::new("rev.yaml")).unwrap();
        exp.runs()[0].clone()
    };
    let blur = run("evaluate: {corruptions: [gaussian_blur, rotate], severities: [1]}\n");
    let why = defect_affecting(&blur, 2).expect("superseded").what;
    assert!(why.contains("gaussian_blur"), "{why}");
    assert!(
        defect_affecting(&blur, 3).is_none(),
        "trained by the fixed revision"
    );
    let other = run("evaluate: {corruptions: [rotate], severities: [1]}\n");
    assert!(defect_affecting(&other, 2).is_none());
    let fashion =
        run("evaluate: {corruptions: [gaussian_blur], severities: [1]}\ndataset: fashion-mnist\n");
    assert!(defect_affecting(&fashion, 2).is_none());
    let padded = run(
        "evaluate: {corruptions: [gaussian_blur], severities: [1]}\npreprocess: {pad_to: 32}\n",
    );
    assert!(defect_affecting(&padded, 2).is_none());
}
