//! Collapse detection: the signatures of the collapses seen in practice are caught at the right
//! epoch, ordinary histories (the baselines' bumps included) are not, and a real run that blows
//! up on the digits is recorded as diverged while an ordinary one is not.

use std::path::Path;

use icm::grid::records;
use icm::grid::runner::{run_grid, RunOptions};
use icm::spec::parse_experiment;
use icm::train::{DivergenceWatch, EpochRecord};

/// A history of (train loss, test accuracy) per epoch, 10 classes.
fn watch(history: &[(f64, f64)]) -> Option<(usize, String)> {
    let mut w = DivergenceWatch::new(10, history.len());
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

#[test]
fn ordinary_histories_are_not_flagged() {
    // Falling loss with a baseline's largest bump (1.3×), rising accuracy.
    let h = [
        (2.3, 0.30),
        (1.2, 0.60),
        (0.9, 0.70),
        (1.17, 0.68),
        (0.8, 0.75),
        (0.7, 0.78),
    ];
    assert_eq!(watch(&h), None);
    // A run that never learned (accuracy at chance from the start) did not collapse.
    let h = [(2.30, 0.10), (2.30, 0.11), (2.29, 0.10)];
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
