//! The ICM stabilisers: off by default (the presets stay the paper's), in the run id only when
//! set, and each doing exactly what it says (the masked and scaled losses have their exact-value
//! tests in `tests/losses.rs`).

use std::path::Path;

use dfdx::prelude::*;
use icm::data::ImageShape;
use icm::grid::records;
use icm::grid::runner::{run_grid, RunOptions};
use icm::mix::{Method, MethodEntry};
use icm::nn::{Arch, ModelSpec, Network, Sgd};
use icm::spec::parse_experiment;
use icm::train::{train_step, Batch};
use rand::SeedableRng;

fn method(yaml: &str) -> Result<Method, String> {
    serde_yaml::from_str::<MethodEntry>(yaml).unwrap().resolve()
}

const GRID: &str = "\
name: stab
splits: [{per_class: 10}]
model: {arch: mlp, hidden: [16]}
train: {epochs: 4, batch_size: 16, lr: 0.1, schedule: constant}
methods: [METHOD]
seeds: [0]
";

fn run_id(method: &str) -> String {
    parse_experiment(&GRID.replace("METHOD", method), Path::new("stab.yaml"))
        .unwrap()
        .runs()[0]
        .run_id()
}

#[test]
fn stabilisers_enter_the_run_id_only_when_set() {
    let plain = run_id("icm-mixup");
    for off in [
        "{icm-mixup: {mask_duplicates: false}}",
        "{icm-mixup: {temperature: 1.0}}",
        "{icm-mixup: {warmup_epochs: 1}}",
    ] {
        assert_eq!(run_id(off), plain, "{off} is the paper's loss");
    }
    for on in [
        "{icm-mixup: {mask_duplicates: true}}",
        "{icm-mixup: {temperature: 2.0}}",
        "{icm-mixup: {clip_grad_norm: 5.0}}",
        "{icm-mixup: {warmup_epochs: 3}}",
    ] {
        assert_ne!(run_id(on), plain, "{on}");
    }
    let m = method("icm-mixup: {mask_duplicates: true, temperature: 2}").unwrap();
    assert_eq!(
        m.display_name(),
        "icm-mixup(mask_duplicates=true,temperature=2.0)"
    );
    let err = method("mixup: {mask_duplicates: true}").unwrap_err();
    assert!(err.contains("stabilise the ICM loss"), "{err}");
    assert!(method("icm-mixup: {temperature: 0}")
        .unwrap_err()
        .contains("> 0"));
    assert!(method("erm: {clip_grad_norm: -1}")
        .unwrap_err()
        .contains("> 0"));
}

#[test]
fn clipping_bounds_the_update_to_lr_times_the_clip() {
    let dev = Cpu::default();
    let shape = ImageShape {
        channels: 1,
        height: 2,
        width: 2,
    };
    let spec = ModelSpec {
        arch: Arch::Mlp,
        hidden: Some(vec![4]),
    };
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
    let x: Vec<f32> = (0..16).map(|i| (i as f32 - 8.0) / 3.0).collect();
    let labels = [0, 1, 2, 1];
    let batch = Batch {
        x: &x,
        labels: &labels,
        shape,
        classes: 3,
        class_counts: &[10, 10, 10],
    };
    let clip = 1e-3;
    let m = method(&format!("icm-mixup: {{clip_grad_norm: {clip}}}")).unwrap();
    let mut model: Network = Network::new(&spec, shape, 3, &dev, &mut rng);
    let before = model.params().all.as_vec();
    let mut sgd = Sgd::new(model.params(), 0.0, 0.0);
    let lr = 0.5;
    let stats = train_step(&dev, &mut model, &mut sgd, &m, &batch, lr, &mut rng).unwrap();
    assert!(
        stats.grad_norm > clip,
        "the gradient is longer than the clip"
    );
    let after = model.params().all.as_vec();
    let moved: f64 = before
        .iter()
        .zip(&after)
        .map(|(a, b)| ((a - b) as f64).powi(2))
        .sum::<f64>()
        .sqrt();
    assert!((moved - lr * clip).abs() < 1e-6, "{moved} vs {}", lr * clip);
}

#[test]
fn warm_up_ramps_the_learning_rate_linearly() {
    let m = method("icm-mixup: {warmup_epochs: 4}").unwrap();
    let factors: Vec<f64> = (0..6).map(|e| m.warmup_factor(e)).collect();
    assert_eq!(factors, [0.25, 0.5, 0.75, 1.0, 1.0, 1.0]);
    let tmp = tempfile::tempdir().unwrap();
    let exp = parse_experiment(
        &GRID.replace("METHOD", "{icm-mixup: {warmup_epochs: 2}}"),
        Path::new("stab.yaml"),
    )
    .unwrap();
    run_grid(&exp, tmp.path(), &RunOptions::default()).unwrap();
    let dir = records::run_dir(tmp.path(), "stab", &exp.runs()[0].run_id());
    let lrs: Vec<f64> = records::read_history(&dir.join(records::HISTORY_FILE))
        .unwrap()
        .iter()
        .map(|h| h.lr)
        .collect();
    assert_eq!(lrs, [0.05, 0.1, 0.1, 0.1]);
}
