//! Run ids are hashes of the resolved run configs: they must never drift, or every stored result
//! is orphaned. These grids cover every dataset source, split kind, network family, training
//! option and method setting; their ids are pinned as computed when they were introduced.

use std::path::Path;

use icm::spec::{parse_experiment, parse_experiment_with, Override};

/// Every run id of `yaml`'s grid, in grid order.
fn ids(yaml: &str) -> Vec<String> {
    parse_experiment(yaml, Path::new("experiments/ids.yaml"))
        .unwrap_or_else(|e| panic!("{e:#}"))
        .runs()
        .iter()
        .map(|r| r.run_id())
        .collect()
}

const DATASETS: &[&str] = &[
    "digits",
    "fashion-mnist",
    "{fashion-mnist: {root: /data/fm}}",
    "{idx: {root: /data/mnist}}",
    "{cifar10: {root: /data/c10}}",
    "{cifar100: {root: /data/c100}}",
    "{cifar100: {root: /data/c100, labels: coarse}}",
    "{folder: {root: /data/cub}}",
    "{folder: {root: /data/cub, size: 64, test_fraction: 0.3}}",
];

const PINNED_DATASETS: &[&str] = &[
    "6261e98156869685",
    "e564a2a8b829d214",
    "e564a2a8b829d214",
    "7ca06cdd98e67d4d",
    "bf8a5bfecb539a5d",
    "cc62f76dd226a3e9",
    "efff9c190a04cbdd",
    "8ac064089e41dbbf",
    "0219354fdee2f70b",
];

#[test]
fn dataset_sources_keep_their_ids() {
    let got: Vec<String> = DATASETS
        .iter()
        .map(|d| {
            ids(&format!(
                "name: t\ndataset: {d}\nsplits: [balanced]\nmodel: {{arch: mlp}}\n\
                 train: {{epochs: 1, batch_size: 8, lr: 0.1}}\nmethods: [erm]\nseeds: [0]\n"
            ))
            .join(",")
        })
        .collect();
    assert_eq!(got, PINNED_DATASETS, "{got:#?}");
}

const GRID: &str = "\
name: t
data_seed: 3
splits:
  - balanced
  - long_tailed: {ratio: 10}
  - long_tailed: {ratio: 100, profile: step}
  - per_class: 5
model: {arch: mlp, hidden: [32, 16]}
train: {epochs: 3, batch_size: 16, lr: 0.05}
methods:
  - erm
  - mixup
  - cutmix
  - regmixup
  - icm-mixup
  - icm-cutmix
  - icm-regmixup
  - mixup: {alpha: 0.4, lambda: per_sample, name: m2}
  - icm-mixup: {axes: pair, label_smoothing: 0.1}
  - icm-regmixup: {gamma: 0.5, axes: class}
  - custom: {mixer: cutmix, target: icm, regularised: true}
seeds: [7]
";

const PINNED_GRID: &[&str] = &[
    "d83e01405b2a60c1",
    "19569b1c92372d01",
    "b718e24ecf5731ba",
    "dd39031ea8b3a13f",
    "647c3f8d96a40e07",
    "b17784c034317204",
    "1fdca9d0d99f4b2b",
    "4c5fcbd6d1656484",
    "71e10b9c5a1d55a8",
    "7cc9334f599df3e6",
    "b63ccec3a390e577",
    "1b2ad2e11bcf7e0e",
    "3be83836cae5446e",
    "05484d38f5210c71",
    "2c77322b24bb4084",
    "9dd894628be0d3bd",
    "fc939c6f8774a39f",
    "c9fa69713661ae4b",
    "820701ff133189c6",
    "699c3754dc246263",
    "70dcb818f98079aa",
    "4234504e6afeb770",
    "dbb6945f8510453f",
    "fc6e65956e67c2b5",
    "ddbfda07800e3c39",
    "f18103fe864c3c4e",
    "eecfa92e02286ad8",
    "ac9ded161ff21272",
    "f1930ef3f0db1d6d",
    "9e571295d56de630",
    "565fa1d9cacca7be",
    "f52480fc58de9bc0",
    "febae35eee511de5",
    "59a0c13181fca23a",
    "2f4178edaaedaf67",
    "b7f424f529d9ac8f",
    "f5c610bc7b2760b4",
    "8a5b3914c5ccb0ac",
    "548f2b8ae404af47",
    "6435657c3ddd3f80",
    "44a71941e0af9fc7",
    "b3f66513bfb18e9d",
    "c1e92fa9f75d8ae6",
    "f134c6db79547a77",
];

#[test]
fn splits_and_methods_keep_their_ids() {
    let got = ids(GRID);
    assert_eq!(got, PINNED_GRID, "{got:#?}");
}

const REMIX: &str = "\
name: t
splits: [{long_tailed: {ratio: 50}}]
model: {arch: small_cnn}
train: {epochs: 2, batch_size: 4, lr: 0.1, schedule: multistep, milestones: [1], augment: {crop_padding: 2, flip: true}}
preprocess: {normalize: per_channel, pad_to: 12}
validation: 0.2
methods: [remix, icm-remix, {remix: {kappa: 2, tau: 0.3}}]
seeds: [0, 1]
device: cuda
";

const PINNED_REMIX: &[&str] = &[
    "cb94e480134c7b44",
    "5694b8b966a976e8",
    "adb65016cd908861",
    "7fecb9e2ae6738e9",
    "fcf37d2f2b9cef81",
    "63366c9c3fcf3dc5",
];

#[test]
fn training_options_keep_their_ids() {
    let got = ids(REMIX);
    assert_eq!(got, PINNED_REMIX, "{got:#?}");
}

const NETWORKS: &[&str] = &[
    "mlp",
    "small_cnn",
    "resnet20",
    "resnet32",
    "resnet44",
    "resnet56",
    "resnet110",
    "resnet18",
    "resnet34",
];

const PINNED_NETWORKS: &[&str] = &[
    "2d0c80b64f330f5c",
    "d8d66fd9cf70087b",
    "125fff91480f973d",
    "0c67e24d1a4571e3",
    "4c81b77edc211a03",
    "d286b9d1a7b2a778",
    "ea7ec907abab8800",
    "54542d944fa4554e",
    "5491254531e86657",
];

#[test]
fn networks_keep_their_ids() {
    let got: Vec<String> = NETWORKS
        .iter()
        .map(|a| {
            ids(&format!(
                "name: t\ndataset: {{cifar10: {{root: /c}}}}\nsplits: [balanced]\nmodel: {{arch: {a}}}\n\
                 train: {{epochs: 200, batch_size: 128, lr: 0.1, schedule: constant, momentum: 0.8, weight_decay: 0.0001}}\n\
                 methods: [icm-mixup]\nseeds: [0]\n"
            ))
            .join(",")
        })
        .collect();
    assert_eq!(got, PINNED_NETWORKS, "{got:#?}");
}

/// A sweep point or `--set` override equal to the file's value is the file's run: same ids.
/// The other point's ids are pinned too (a sweep's ids never depend on the sweep).
#[test]
fn sweeps_and_overrides_keep_the_ids_of_unchanged_values() {
    let swept = ids(&format!("{GRID}sweep: {{train.lr: [0.05, 0.1]}}\n"));
    assert_eq!(swept.len(), 2 * PINNED_GRID.len());
    assert_eq!(&swept[..PINNED_GRID.len()], PINNED_GRID);
    let faster = &swept[PINNED_GRID.len()..];
    assert_eq!(&faster[..4], PINNED_LR_01, "{faster:#?}");
    assert!(faster.iter().all(|id| !PINNED_GRID.contains(&id.as_str())));
    // The lr = 0.1 point is the file with `lr: 0.1`, swept or not.
    assert_eq!(ids(&GRID.replace("lr: 0.05", "lr: 0.1")), faster);

    let set = |sets: &[&str]| -> Vec<String> {
        let overrides: Vec<Override> = sets.iter().map(|s| Override::parse(s).unwrap()).collect();
        parse_experiment_with(GRID, Path::new("experiments/ids.yaml"), &overrides)
            .unwrap_or_else(|e| panic!("{e:#}"))
            .runs()
            .iter()
            .map(|r| r.run_id())
            .collect()
    };
    assert_eq!(set(&["train.lr=0.05", "data_seed=3"]), PINNED_GRID);
    assert_eq!(set(&["train.lr=0.1"]), faster);
    assert_eq!(set(&["sweep.train.lr=[0.05, 0.1]"]), swept);
}

/// The first runs of the lr = 0.1 point, as computed when sweeps were introduced.
const PINNED_LR_01: &[&str] = &[
    "3feacb252ee54dab",
    "de396289f51a0a0e",
    "c1dcd112a951d96c",
    "d6574d9886ed2234",
];
