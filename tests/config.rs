//! Experiment files: grid expansion, run ids, and clear errors for bad input.

use std::path::Path;

use icm::spec::{parse_experiment, LoadedExperiment};

const GOOD: &str = "\
name: t
splits:
  - balanced
  - long_tailed: {ratio: 10}
  - per_class: 20
model:
  arch: mlp
  hidden: [16]
train:
  epochs: 2
  batch_size: 8
  lr: 0.1
methods:
  - erm
  - mixup
  - icm-mixup: {alpha: 0.4}
  - icm-mixup: {axes: pair}
seeds: [0, 1, 2]
";

fn parse(text: &str) -> anyhow::Result<LoadedExperiment> {
    parse_experiment(text, Path::new("experiments/t.yaml"))
}

fn error(text: &str) -> String {
    format!("{:#}", parse(text).unwrap_err())
}

#[test]
fn grid_is_splits_times_methods_times_seeds() {
    let exp = parse(GOOD).unwrap();
    let runs = exp.runs();
    assert_eq!(runs.len(), 3 * 4 * 3);
    let ids: std::collections::BTreeSet<String> = runs.iter().map(|r| r.run_id()).collect();
    assert_eq!(ids.len(), 36, "every run has its own id");
    let labels: Vec<String> = exp.methods.iter().map(|m| m.display_name()).collect();
    assert_eq!(
        labels,
        [
            "erm",
            "mixup",
            "icm-mixup(alpha=0.4)",
            "icm-mixup(axes=pair)"
        ]
    );
}

#[test]
fn run_id_is_stable() {
    let a = parse(GOOD).unwrap().runs();
    let b = parse(&GOOD.replace("hidden: [16]", "hidden: [16]   # same"))
        .unwrap()
        .runs();
    assert_eq!(a[0].run_id(), b[0].run_id());
    // Pinned: the id is a hash of the resolved config and must not drift between versions or
    // machines (changing it would orphan every stored result).
    assert_eq!(a[0].run_id(), RUN0_ID);
    // A display name is not part of the id: renaming a method keeps its finished runs.
    let renamed = parse(&GOOD.replace("  - erm\n", "  - erm: {name: baseline}\n")).unwrap();
    assert_eq!(renamed.methods[0].display_name(), "baseline");
    assert_eq!(renamed.runs()[0].run_id(), a[0].run_id());
    let c = parse(&GOOD.replace("lr: 0.1", "lr: 0.2")).unwrap().runs();
    assert_ne!(a[0].run_id(), c[0].run_id());
}

const RUN0_ID: &str = "308c9617e7b4e66c";

#[test]
fn misspelled_key_names_key_line_and_suggestion() {
    let err = error(&GOOD.replace("  epochs: 2", "  epocs: 2"));
    assert!(err.contains("experiments/t.yaml:10:"), "{err}");
    assert!(err.contains("unknown field `epocs`"), "{err}");
    assert!(err.contains("did you mean `epochs`"), "{err}");
}

#[test]
fn unknown_method_suggests_preset() {
    let err = error(&GOOD.replace("  - mixup\n", "  - mixpu\n"));
    assert!(err.contains("unknown variant `mixpu`"), "{err}");
    assert!(err.contains("did you mean `mixup`"), "{err}");
    assert!(err.contains(":15:"), "{err}");
}

#[test]
fn wrong_type_names_line() {
    let err = error(&GOOD.replace("batch_size: 8", "batch_size: eight"));
    assert!(err.contains("experiments/t.yaml:11:"), "{err}");
    assert!(err.contains("batch_size"), "{err}");
}

#[test]
fn values_are_checked_before_training() {
    let err = error(&GOOD.replace("batch_size: 8", "batch_size: 1"));
    assert!(err.contains("batch_size must be ≥ 2"), "{err}");
    let err = error(&GOOD.replace("{alpha: 0.4}", "{alpha: -1}"));
    assert!(
        err.contains("methods[2]") && err.contains("alpha must be > 0"),
        "{err}"
    );
    let err = error(&GOOD.replace("ratio: 10", "ratio: 0.5"));
    assert!(err.contains("splits[1].long_tailed.ratio"), "{err}");
    let err = error(&GOOD.replace("per_class: 20", "per_class: 0"));
    assert!(err.contains("≥ 1"), "{err}");
    let err = error(&GOOD.replace("seeds: [0, 1, 2]", "seeds: []"));
    assert!(err.contains("`seeds`"), "{err}");
    let err = error(&GOOD.replace("  - erm\n", "  - mixup\n"));
    assert!(err.contains("same settings as methods[0]"), "{err}");
    let err = error(&GOOD.replace("  - erm\n", "  - mixup: {name: again}\n"));
    assert!(err.contains("same settings"), "{err}");
}

#[test]
fn remix_needs_long_tailed_splits() {
    let err = error(&GOOD.replace("  - erm\n", "  - remix\n"));
    assert!(err.contains("methods[0] (remix)"), "{err}");
    assert!(err.contains("split `balanced` has equal counts"), "{err}");
    let only_lt = GOOD
        .replace("  - balanced\n", "")
        .replace("  - per_class: 20\n", "")
        .replace("  - erm\n", "  - icm-remix\n");
    let exp = parse(&only_lt).unwrap();
    assert_eq!(exp.runs().len(), 4 * 3);
}

#[test]
fn icm_batch_of_one_and_unknown_preset_fail_before_training() {
    let err = error(&GOOD.replace("batch_size: 8", "batch_size: 1"));
    assert!(err.contains("icm-mixup") && err.contains("≥ 2"), "{err}");
    let err = error(&GOOD.replace("  - erm\n", "  - icm-mixpu\n"));
    assert!(err.contains("did you mean `icm-mixup`"), "{err}");
    let err = error(&GOOD.replace("{axes: pair}", "{axes: rows}"));
    assert!(err.contains("unknown variant `rows`"), "{err}");
}

/// Every experiment file shipped in `experiments/` parses and passes the checks.
#[test]
fn shipped_experiments_are_valid() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("experiments");
    let mut count = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "yaml") {
            icm::spec::load_experiment(&path)
                .unwrap_or_else(|e| panic!("{}: {e:#}", path.display()));
            count += 1;
        }
    }
    assert!(count >= 6, "found {count} experiment files");
}

/// `device:` takes `cpu` or `cuda`; it is an execution setting, so it does not change run ids.
/// Asking for CUDA from a build without the `cuda` feature says how to get one, before any
/// data loads or any run starts.
#[test]
fn device_is_checked_and_not_part_of_the_run_id() {
    use icm::nn::DeviceKind;
    let cpu = parse(GOOD).unwrap();
    assert_eq!(cpu.device, DeviceKind::Cpu);
    let cuda = parse(&format!("{GOOD}device: cuda\n")).unwrap();
    assert_eq!(cuda.device, DeviceKind::Cuda);
    assert_eq!(cpu.runs()[0].run_id(), cuda.runs()[0].run_id());
    let err = error(&format!("{GOOD}device: gpu\n"));
    assert!(err.contains("unknown variant `gpu`"), "{err}");
    assert!(err.contains("`cpu`") && err.contains("`cuda`"), "{err}");
    assert!(err.contains("experiments/t.yaml:19:"), "{err}");

    #[cfg(not(feature = "cuda"))]
    {
        let tmp = tempfile::tempdir().unwrap();
        let err = icm::grid::runner::run_grid(&cuda, tmp.path(), &Default::default()).unwrap_err();
        let err = format!("{err:#}");
        assert!(err.contains("built without CUDA"), "{err}");
        assert!(err.contains("--features cuda"), "{err}");
        assert!(err.contains("scripts/build-cuda"), "{err}");
        assert_eq!(
            std::fs::read_dir(tmp.path()).unwrap().count(),
            0,
            "no run started"
        );
        // `--device cpu` overrides the file.
        let opts = icm::grid::runner::RunOptions {
            device: Some(DeviceKind::Cpu),
            ..Default::default()
        };
        let quick = parse(
            &format!("{GOOD}device: cuda\n")
                .replace("epochs: 2", "epochs: 1")
                .replace("seeds: [0, 1, 2]", "seeds: [0]")
                .replace("  - per_class: 20\n", "")
                .replace("  - long_tailed: {ratio: 10}\n", ""),
        )
        .unwrap();
        let summary = icm::grid::runner::run_grid(&quick, tmp.path(), &opts).unwrap();
        assert_eq!(summary.trained, 4);
        // With nothing left to train, a CUDA grid runs (and reports) anywhere.
        let again = icm::grid::runner::run_grid(&quick, tmp.path(), &Default::default()).unwrap();
        assert_eq!((again.trained, again.skipped), (0, 4));
        // The run records where it trained.
        let dir = icm::grid::records::run_dir(tmp.path(), &quick.name, &quick.runs()[0].run_id());
        let metrics =
            icm::grid::records::read_metrics(&dir.join(icm::grid::records::METRICS_FILE)).unwrap();
        assert_eq!(metrics.device, DeviceKind::Cpu);
        let text = std::fs::read_to_string(dir.join(icm::grid::records::METRICS_FILE)).unwrap();
        assert!(text.contains("\"device\": \"cpu\""), "{text}");
    }
}
