//! Collapse detection: the signatures of the collapses seen in practice are caught at the right
//! epoch, ordinary histories (the baselines' bumps included) are not, and a real run that blows
//! up on the digits is recorded as diverged while an ordinary one is not.

use std::path::Path;

use icm::grid::records;
use icm::grid::runner::{run_grid, RunOptions};
use icm::mix::losses::uniform_score_loss;
use icm::mix::MethodEntry;
use icm::spec::parse_experiment;
use icm::train::{DivergenceWatch, EpochRecord};

/// The loss of uniform scores for ICM (dual axes) at B = 128: 2·ln 128.
const ICM_UNIFORM: f64 = 9.704060527839234;

/// A history of (train loss, test accuracy) per epoch, 10 classes, ICM at B = 128.
fn watch(history: &[(f64, f64)]) -> Option<(usize, String)> {
    watch_with(ICM_UNIFORM, history)
}

/// [`watch`] for a loss whose uniform-score level is `uniform`.
fn watch_with(uniform: f64, history: &[(f64, f64)]) -> Option<(usize, String)> {
    let mut w = DivergenceWatch::new(10, history.len(), uniform);
    history.iter().enumerate().find_map(|(i, &(loss, acc))| {
        w.observe(&EpochRecord {
            epoch: i + 1,
            lr: 0.05,
            train_loss: loss,
            test_accuracy: acc,
            ..Default::default()
        })
        .map(|d| (d.epoch, d.what))
    })
}

#[test]
fn the_long_tailed_collapse_is_caught_at_its_spike() {
    // Loss ~6.7 for 9 epochs, 49.4 at epoch 10, then flat at 2·ln 128 = 9.70, accuracy 0.0999.
    let mut h: Vec<(f64, f64)> = (0..9).map(|i| (6.8 - 0.01 * i as f64, 0.80)).collect();
    h.push((49.4, 0.30));
    h.extend((0..20).map(|_| (9.70, 0.0999)));
    let (epoch, what) = watch(&h).expect("detected");
    assert_eq!(epoch, 10);
    assert!(what.contains("jumped to 49.4000"), "{what}");
    assert!(what.contains("uniform scores give 9.7041"), "{what}");
}

#[test]
fn the_uniform_score_loss_of_each_loss() {
    let method = |yaml: &str| {
        serde_yaml::from_str::<MethodEntry>(yaml)
            .unwrap()
            .resolve()
            .unwrap()
    };
    let ln = |x: f64| x.ln();
    assert_eq!(uniform_score_loss(&method("mixup"), 10, 128), ln(10.0));
    assert_eq!(
        uniform_score_loss(&method("icm-mixup"), 10, 128),
        ICM_UNIFORM
    );
    assert_eq!(
        uniform_score_loss(&method("icm-mixup: {axes: pair}"), 10, 64),
        ln(64.0)
    );
    assert_eq!(
        uniform_score_loss(&method("regmixup: {gamma: 0.5}"), 10, 64),
        ln(10.0) + 0.5 * ln(10.0)
    );
    assert_eq!(
        uniform_score_loss(&method("icm-regmixup"), 10, 64),
        ln(10.0) + 2.0 * ln(64.0)
    );
}

#[test]
fn a_label_loss_swinging_with_its_mixing_weight_is_not_a_spike() {
    // Mixup on the digits (one λ per batch, 23 batches an epoch): its epoch loss jumps
    // 0.15 → 0.84 (5.6×) and back, far below ln 10 = 2.30; accuracy stays up.
    let h = [
        (0.60, 0.95),
        (0.30, 0.97),
        (0.15, 0.97),
        (0.84, 0.97),
        (0.21, 0.98),
        (0.91, 0.97),
    ];
    assert_eq!(watch_with(10f64.ln(), &h), None);
    // The same jump to past the uniform level is a spike.
    let h = [(0.60, 0.95), (0.30, 0.97), (0.15, 0.97), (2.10, 0.97)];
    assert_eq!(watch_with(10f64.ln(), &h).unwrap().0, 4);
}

#[test]
fn the_pytorch_collapse_is_caught_at_epoch_2() {
    // Loss 6.1 → 12.1 (1.98×), accuracy 0.853 → 0.100.
    let h = [(6.1, 0.853), (12.1, 0.100), (9.70, 0.100), (9.70, 0.100)];
    assert_eq!(watch(&h).unwrap().0, 2);
}

#[test]
fn accuracy_back_at_chance_is_caught_without_a_spike() {
    // A slow drift up in loss, accuracy at chance for two epochs after 0.85.
    let h = [
        (2.0, 0.85),
        (2.2, 0.80),
        (2.4, 0.11),
        (2.5, 0.10),
        (2.5, 0.10),
    ];
    let (epoch, what) = watch(&h).unwrap();
    assert_eq!(epoch, 4, "two epochs at chance: the second one");
    assert!(what.contains("chance 0.1000"), "{what}");
    // At chance in the last epoch only: caught there.
    let h = [(2.0, 0.85), (2.2, 0.80), (2.4, 0.11)];
    assert_eq!(watch(&h).unwrap().0, 3);
}

#[test]
fn a_non_finite_loss_is_caught() {
    let h = [(2.0, 0.5), (f64::NAN, 0.5)];
    let (epoch, what) = watch(&h).unwrap();
    assert_eq!(epoch, 2);
    assert!(what.contains("NaN"), "{what}");
}

/// Collapses that climb over a few epochs and partly recover (long-tailed Fashion-MNIST, ICM at
/// B = 128; losses of the real runs): no epoch is 1.8× the lowest of the 3 before it, and
/// accuracy never stays at chance for 2 epochs, but the loss climbs past the uniform level.
#[test]
fn a_collapse_that_climbs_past_the_uniform_level_is_caught() {
    // Warm-up run, seed 0: 6.67 → 8.65 (1.30×) → 11.00 (1.65×), accuracy 0.43, 0.22, 0.11, 0.16;
    // it ended at 74.6 % where its twins reached 85 %.
    let mut h = vec![
        (7.77, 0.71),
        (7.14, 0.78),
        (6.95, 0.80),
        (6.67, 0.82),
        (6.68, 0.80),
    ];
    h.extend([
        (8.65, 0.43),
        (11.00, 0.22),
        (9.76, 0.11),
        (9.56, 0.16),
        (9.59, 0.13),
    ]);
    h.extend((0..5).map(|i| (7.5 - 0.1 * i as f64, 0.70)));
    let (epoch, what) = watch(&h).expect("detected");
    assert_eq!(epoch, 7);
    assert!(
        what.contains(
            "rose to 11.0000, at or above the loss of uniform scores (9.7041), after 6.6700"
        ),
        "{what}"
    );
    // Plain ICM-Mixup, seed 2: 6.55 → 7.01 → 9.89 (1.51×), accuracy 0.43; it recovered to 84.2 %.
    let h = [
        (7.45, 0.79),
        (6.55, 0.84),
        (7.01, 0.79),
        (9.89, 0.43),
        (9.38, 0.67),
        (7.27, 0.73),
    ];
    assert_eq!(watch(&h).unwrap().0, 4);
    // Just below the uniform level it is not (the spike rule still applies to sharp jumps).
    let h = [
        (7.45, 0.79),
        (6.55, 0.84),
        (7.01, 0.79),
        (9.70, 0.43),
        (7.27, 0.73),
    ];
    assert_eq!(watch(&h), None);
}

#[test]
fn ordinary_histories_are_not_flagged() {
    // Falling ICM loss with a large bump (1.7×), rising accuracy.
    let h = [
        (9.0, 0.30),
        (7.2, 0.60),
        (4.5, 0.70),
        (7.6, 0.68),
        (4.0, 0.75),
        (3.7, 0.78),
    ];
    assert_eq!(watch(&h), None);
    // A run that never learned (accuracy at chance from the start) did not collapse.
    let h = [(9.70, 0.10), (9.70, 0.11), (9.69, 0.10)];
    assert_eq!(watch(&h), None);
}

const GRID: &str = "\
name: collapse
splits: [balanced]
model: {arch: mlp, hidden: [32]}
train: {epochs: 6, batch_size: 32, lr: LR, schedule: constant}
methods: [icm-mixup]
seeds: [0]
";

/// The real digits: at lr 0.05 ICM-Mixup trains normally; at lr 30 it blows up in its first
/// epochs and is recorded as diverged, with the epoch and what was seen.
#[test]
fn a_real_collapse_is_recorded_and_a_normal_run_is_not() {
    let tmp = tempfile::tempdir().unwrap();
    for (lr, diverges) in [("0.05", false), ("30", true)] {
        let exp = parse_experiment(&GRID.replace("LR", lr), Path::new("collapse.yaml")).unwrap();
        let results = tmp.path().join(lr);
        let summary = run_grid(&exp, &results, &RunOptions::default()).unwrap();
        assert_eq!(
            summary.diverged.is_empty(),
            !diverges,
            "lr {lr}: {summary:?}"
        );
        let dir = records::run_dir(&results, "collapse", &exp.runs()[0].run_id());
        let m = records::read_metrics(&dir.join(records::METRICS_FILE)).unwrap();
        assert_eq!(m.diverged.is_some(), diverges, "lr {lr}: {:?}", m.diverged);
        if !diverges {
            assert!(m.test.accuracy > 0.8, "{}", m.test.accuracy);
        }
        let history = records::read_history(&dir.join(records::HISTORY_FILE)).unwrap();
        assert!(history
            .iter()
            .all(|h| h.grad_norm.is_some() && h.max_score.is_some()));
    }
}

/// The quickstart's label-loss methods on the real digits (3 splits × 3 seeds each): none is
/// flagged, though Mixup's epoch loss swings several-fold with its mixing weight there.
#[test]
fn the_quickstarts_baselines_are_never_flagged() {
    let tmp = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string("experiments/quickstart.yaml").unwrap();
    let text: String = text
        .lines()
        .filter(|line| !line.trim_start().starts_with("- icm-mixup"))
        .map(|line| format!("{line}\n"))
        .collect();
    let exp = parse_experiment(&text, Path::new("quickstart.yaml")).unwrap();
    assert_eq!(exp.runs().len(), 18, "erm and mixup, 3 splits, 3 seeds");
    let summary = run_grid(&exp, tmp.path(), &RunOptions::default()).unwrap();
    assert!(summary.diverged.is_empty(), "{:?}", summary.diverged);
}

/// A record written before the watch knew a signature is judged by this version's watch in
/// reports: a finished run whose `metrics.json` names no collapse but whose `history.csv` climbs
/// past the uniform level is reported as diverged (left out of means, counted in its cell).
#[test]
fn reports_judge_older_records_by_their_history() {
    use icm::report::{write_report, Formats, ReportSource};
    let tmp = tempfile::tempdir().unwrap();
    let yaml = GRID
        .replace("LR", "0.05")
        .replace("seeds: [0]", "seeds: [0, 1, 2]");
    let exp = parse_experiment(&yaml, Path::new("collapse.yaml")).unwrap();
    let results = tmp.path().join("results");
    let summary = run_grid(&exp, &results, &RunOptions::default()).unwrap();
    assert!(summary.diverged.is_empty(), "{:?}", summary.diverged);
    let dir = records::run_dir(&results, "collapse", &exp.runs()[0].run_id());
    let path = dir.join(records::HISTORY_FILE);
    let text = std::fs::read_to_string(&path).unwrap();
    let uniform = uniform_score_loss(&exp.runs()[0].method, 10, 32);
    let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
    // Epoch 5's loss becomes the uniform level: its earlier epochs are far below it.
    let mut cells: Vec<String> = lines[5].split(',').map(str::to_string).collect();
    cells[2] = format!("{}", uniform + 0.5);
    lines[5] = cells.join(",");
    std::fs::write(&path, lines.join("\n") + "\n").unwrap();
    let out = write_report(
        &ReportSource::Experiment(Box::new(exp.clone())),
        &results,
        &tmp.path().join("reports"),
        Formats::default(),
    )
    .unwrap();
    let acc = std::fs::read_to_string(out.dir.join("tables/accuracy.md")).unwrap();
    assert!(acc.contains("(n=2, 1 diverged)"), "{acc}");
    let md = std::fs::read_to_string(out.dir.join("table.md")).unwrap();
    assert!(md.contains("(seen in history.csv)"), "{md}");
    // `icm status` judges it the same way.
    let hour = std::time::Duration::from_secs(3600);
    let status = icm::grid::status::grid_status(&exp, &results, hour).unwrap();
    assert!(status.contains("2 done     1 diverged"), "{status}");
}

// ---------------------------------------------------------------------------------------------
// Divergence watch

fn watched(classes: usize, epochs: usize, uniform: f64, h: &[(f64, f64)]) -> Option<usize> {
    let mut w = DivergenceWatch::new(classes, epochs, uniform);
    h.iter().enumerate().find_map(|(i, &(loss, acc))| {
        w.observe(&EpochRecord {
            epoch: i + 1,
            lr: 0.1,
            train_loss: loss,
            test_accuracy: acc,
            ..Default::default()
        })
        .map(|d| d.epoch)
    })
}

/// The spike compares with the lowest loss of exactly the 3 previous epochs (uniform loss 1, so
/// every loss here passes the 0.75 share; accuracy stays 0.9): losses [1.0, 1.7, 1.7, 1.9] spike
/// at epoch 4 (1.9 > 1.8 · 1.0, epoch 1 is in the window); [1.0, 1.7, 1.7, 1.7, 1.9] do not
/// (epoch 1 is four back; 1.9 < 1.8 · 1.7). (Mutants: a window of 4 flags the second at epoch 5,
/// a window of 2 misses the first.)
#[test]
fn the_spike_window_is_the_three_previous_epochs() {
    let h = |losses: &[f64]| -> Vec<(f64, f64)> { losses.iter().map(|&l| (l, 0.9)).collect() };
    assert_eq!(watched(10, 20, 1.0, &h(&[1.0, 1.7, 1.7, 1.9])), Some(4));
    assert_eq!(watched(10, 20, 1.0, &h(&[1.0, 1.7, 1.7, 1.7, 1.9])), None);
}

/// Back at chance means accuracy ≤ 1.5 × chance in 2 consecutive epochs after one at ≥ 3 ×
/// chance; both bounds are inclusive. Four classes (chance 0.25, exact in binary), 20 epochs,
/// flat loss: accuracies [0.75, 0.375, 0.375] → diverged at epoch 3. (Mutants: `<` for the
/// chance bound or `>` for the learned bound miss it.) Just outside either bound is not.
#[test]
fn chance_level_bounds_are_inclusive() {
    let h = |accs: &[f64]| -> Vec<(f64, f64)> { accs.iter().map(|&a| (1.0, a)).collect() };
    assert_eq!(watched(4, 20, 100.0, &h(&[0.75, 0.375, 0.375])), Some(3));
    assert_eq!(watched(4, 20, 100.0, &h(&[0.74, 0.375, 0.375])), None);
    assert_eq!(watched(4, 20, 100.0, &h(&[0.75, 0.38, 0.375])), None);
}
