//! The files of one run under `results/<experiment>/<run-id>/`. Every file is written
//! atomically (temporary file, fsync, rename) and `metrics.json` last, so a run folder is either
//! complete (it has `metrics.json`) or visibly unfinished.

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

use crate::metrics::{Bin, Prediction, TestMetrics};
use crate::nn::DeviceKind;
use crate::spec::{yaml_error, RunConfig};
use crate::train::revision::defect_affecting;
use crate::train::{Divergence, DivergenceWatch, EpochRecord, RunOutcome, TRAINER_REVISION};
use crate::util::{fault_point, npy, write_atomic};

/// Contents of `metrics.json`: identification of the run plus its test metrics.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunMetrics {
    pub run_id: String,
    pub experiment: String,
    /// Method label as shown in reports.
    pub method: String,
    /// Split slug (file names) and title (tables).
    pub split: String,
    pub split_title: String,
    pub seed: u64,
    #[serde(flatten)]
    pub test: TestMetrics,
    pub train_class_counts: Vec<usize>,
    pub train_size: usize,
    pub test_size: usize,
    pub epochs: usize,
    pub train_seconds: f64,
    /// Seconds spent scoring the corrupted and out-of-distribution sets after training (absent
    /// in runs without them).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub beyond_seconds: Option<f64>,
    /// Where the attempt that finished the run trained (not part of the run id: CPU and CUDA
    /// results agree only up to rounding).
    #[serde(default)]
    pub device: DeviceKind,
    /// The trainer revision that trained it (see `crate::train::revision`); records without one
    /// predate revisions.
    #[serde(default = "crate::train::revision::unrecorded_revision")]
    pub trainer_revision: u32,
    /// When and how the run was seen to collapse (see `crate::train::divergence`): such a run
    /// is reported apart from ordinary ones.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub diverged: Option<Divergence>,
}

/// Contents of `reliability.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Reliability {
    pub ece: f64,
    pub bins: Vec<Bin>,
}

pub const CONFIG_FILE: &str = "config.yaml";
pub const METRICS_FILE: &str = "metrics.json";
pub const HISTORY_FILE: &str = "history.csv";
pub const RELIABILITY_FILE: &str = "reliability.json";
pub const PREDICTIONS_FILE: &str = "predictions.csv";
/// The final network's logits of every test image: float32, shape (test images, classes).
pub const LOGITS_FILE: &str = "logits.npy";
/// The test images' labels, in the order of [`LOGITS_FILE`]: int64, shape (test images,).
pub const LABELS_FILE: &str = "labels.npy";
pub const FAILURE_FILE: &str = "failure.txt";
/// Maximum softmax probability of every test and out-of-distribution image (`set,msp`; the
/// test set is `test`): the data of the score histograms.
pub const OOD_SCORES_FILE: &str = "ood_scores.csv";
/// A damaged `config.yaml` as it was, in the folder its run's files were set aside to.
pub const DAMAGED_CONFIG_FILE: &str = "damaged-config.yaml";

/// Folder of a run.
pub fn run_dir(results: &Path, experiment: &str, run_id: &str) -> PathBuf {
    results.join(experiment).join(run_id)
}

/// A run is done when its `metrics.json` exists, parses and validates, and no defect of the
/// trainer that wrote it affects it.
pub fn is_done(dir: &Path) -> bool {
    dir.join(METRICS_FILE).is_file() && retrain_reason(dir).is_none()
}

/// Why the finished run in `dir` must be trained again: its record is damaged (see
/// [`damage`]) or superseded (see [`superseded`]). `None` for a sound, current record or no
/// record.
pub fn retrain_reason(dir: &Path) -> Option<String> {
    damage(dir)
        .map(|d| format!("damaged record: {d}"))
        .or_else(|| superseded(dir))
}

/// What is wrong with the record of the finished run in `dir`: a `metrics.json` that does not
/// parse (truncated, empty, wrong types, NaN) or holds impossible values, or a `config.yaml` that
/// does not parse. `None` for a sound record or none at all.
pub fn damage(dir: &Path) -> Option<String> {
    let path = dir.join(METRICS_FILE);
    if !path.is_file() {
        return None;
    }
    let metrics = match read_metrics(&path) {
        Ok(m) => m,
        Err(e) => return Some(format!("{e:#}")),
    };
    let config = match read_config(&dir.join(CONFIG_FILE)) {
        Ok(c) => c,
        Err(e) => return Some(format!("{e:#}")),
    };
    if metrics.seed != config.seed {
        return Some(format!(
            "{}: seed {} differs from the seed {} of {CONFIG_FILE}",
            path.display(),
            metrics.seed,
            config.seed
        ));
    }
    let name = dir.file_name().map(|n| n.to_string_lossy().to_string());
    if name.as_deref() != Some(metrics.run_id.as_str()) {
        return Some(format!(
            "{}: run_id `{}` is not this folder's run",
            path.display(),
            metrics.run_id
        ));
    }
    invalid_value(&metrics).map(|what| format!("{}: {what}", path.display()))
}

/// The first value of a parsed record outside its range (accuracies and calibration errors in
/// [0, 1], NLL and training time ≥ 0, Brier score in [0, 2]).
fn invalid_value(m: &RunMetrics) -> Option<String> {
    let t = &m.test;
    let classes = m.train_class_counts.len();
    if t.per_class_accuracy.len() != classes {
        return Some(format!(
            "`per_class_accuracy` has {} classes, `train_class_counts` {classes}",
            t.per_class_accuracy.len()
        ));
    }
    if m.train_size != m.train_class_counts.iter().sum::<usize>() {
        return Some(format!(
            "`train_size` {} is not the sum of `train_class_counts`",
            m.train_size
        ));
    }
    let unit = [
        ("accuracy", t.accuracy),
        ("ece", t.ece),
        ("adaptive_ece", t.adaptive_ece),
        ("mce", t.mce),
    ];
    let per_class = t
        .per_class_accuracy
        .iter()
        .flatten()
        .map(|&a| ("per_class_accuracy", a));
    for (key, v) in unit.into_iter().chain(per_class) {
        if !(0.0..=1.0).contains(&v) {
            return Some(format!("`{key}` is {v}, outside [0, 1]"));
        }
    }
    let ranges = [
        ("nll", t.nll, f64::INFINITY),
        ("brier", t.brier, 2.0),
        ("train_seconds", m.train_seconds, f64::INFINITY),
    ];
    ranges
        .into_iter()
        .find(|(_, v, max)| !(0.0..=*max).contains(v))
        .map(|(key, v, max)| format!("`{key}` is {v}, outside [0, {max}]"))
}

/// Why the finished run in `dir` no longer counts as done: a defect of the trainer revision that
/// trained it, which affects its configuration (`None` for a current record, or no record).
pub fn superseded(dir: &Path) -> Option<String> {
    let metrics = read_metrics(&dir.join(METRICS_FILE)).ok()?;
    let config = read_config(&dir.join(CONFIG_FILE)).ok()?;
    defect_affecting(&config, metrics.trainer_revision).map(|d| {
        format!(
            "trained by trainer revision {} before a fix (revision {}): {}",
            metrics.trainer_revision, d.fixed_in, d.what
        )
    })
}

/// Moves the result files of a damaged or superseded run into `superseded-<unix seconds>/`
/// inside its folder (a fresh name if that exists), so it can be trained again without losing
/// what it was; returns that folder.
pub fn set_aside(dir: &Path) -> Result<PathBuf> {
    let stamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let mut aside = dir.join(format!("superseded-{stamp}"));
    for n in 1.. {
        if !aside.exists() {
            break;
        }
        aside = dir.join(format!("superseded-{stamp}-{n}"));
    }
    fs::create_dir_all(&aside).with_context(|| format!("cannot create {}", aside.display()))?;
    // metrics.json first: once it is gone the run no longer looks finished.
    for name in [
        METRICS_FILE,
        HISTORY_FILE,
        RELIABILITY_FILE,
        PREDICTIONS_FILE,
        LOGITS_FILE,
        LABELS_FILE,
        OOD_SCORES_FILE,
        crate::train::CHECKPOINT_FILE,
        crate::train::LEGACY_CHECKPOINT_FILE,
    ] {
        let from = dir.join(name);
        if from.is_file() {
            fs::rename(&from, aside.join(name))
                .with_context(|| format!("cannot move {} aside", from.display()))?;
        }
    }
    // config.yaml stays (retraining rewrites it; a folder with one is a run folder), but a
    // damaged one is kept as it was.
    let config = dir.join(CONFIG_FILE);
    if config.is_file() && read_config(&config).is_err() {
        fs::copy(&config, aside.join(DAMAGED_CONFIG_FILE))
            .with_context(|| format!("cannot copy {} aside", config.display()))?;
    }
    Ok(aside)
}

/// Writes every file of a finished run into its folder, each atomically, `metrics.json` last:
/// a run folder without `metrics.json` is visibly unfinished and is run again.
pub fn write_run(
    dir: &Path,
    experiment: &str,
    config: &RunConfig,
    outcome: &RunOutcome,
    test_size: usize,
) -> Result<()> {
    write_config(dir, config)?;
    let history = history_csv(&outcome.history);
    write_atomic(&dir.join(HISTORY_FILE), history.as_bytes())?;

    let reliability = Reliability {
        ece: outcome.metrics.ece,
        bins: outcome.bins.clone(),
    };
    write_atomic(
        &dir.join(RELIABILITY_FILE),
        serde_json::to_string_pretty(&reliability)?.as_bytes(),
    )?;
    fault_point("writing-results");

    let mut preds = String::from("label,predicted,confidence\n");
    for p in &outcome.predictions {
        preds.push_str(&format!("{},{},{}\n", p.label, p.predicted, p.confidence));
    }
    write_atomic(&dir.join(PREDICTIONS_FILE), preds.as_bytes())?;
    write_test_outputs(dir, &outcome.test_logits, &outcome.predictions)?;
    if !outcome.beyond.msp.is_empty() {
        let mut scores = String::from("set,msp\n");
        for (set, values) in &outcome.beyond.msp {
            let set = if set.is_empty() { "test" } else { set };
            for v in values {
                scores.push_str(&format!("{set},{v}\n"));
            }
        }
        write_atomic(&dir.join(OOD_SCORES_FILE), scores.as_bytes())?;
    }

    let metrics = RunMetrics {
        run_id: config.run_id(),
        experiment: experiment.to_string(),
        method: config.method.display_name(),
        split: config.split.slug(),
        split_title: config.split.title(),
        seed: config.seed,
        test: outcome.metrics.clone(),
        train_class_counts: outcome.train_class_counts.clone(),
        train_size: outcome.train_class_counts.iter().sum(),
        test_size,
        epochs: config.train.epochs,
        train_seconds: outcome.train_seconds,
        beyond_seconds: (config.evaluate.is_some() || config.ood.is_some())
            .then_some(outcome.beyond_seconds),
        device: outcome.device,
        trainer_revision: TRAINER_REVISION,
        diverged: outcome.diverged.clone(),
    };
    write_atomic(
        &dir.join(METRICS_FILE),
        serde_json::to_string_pretty(&metrics)?.as_bytes(),
    )
}

/// Writes `logits.npy` and `labels.npy` (the labels are the predictions' labels, in test-set
/// order).
fn write_test_outputs(dir: &Path, logits: &[f32], predictions: &[Prediction]) -> Result<()> {
    let n = predictions.len();
    let classes = logits.len().checked_div(n).unwrap_or(0);
    write_atomic(&dir.join(LOGITS_FILE), &npy::to_npy(&[n, classes], logits))?;
    let labels: Vec<i64> = predictions.iter().map(|p| p.label as i64).collect();
    write_atomic(&dir.join(LABELS_FILE), &npy::to_npy(&[n], &labels))
}

/// What a finished run stored of its final network's test outputs.
#[derive(Debug, Clone, PartialEq)]
pub struct TestOutputs {
    /// Test images × classes, row-major.
    pub logits: Vec<f32>,
    pub labels: Vec<usize>,
    pub classes: usize,
}

/// The test outputs of the finished run in `dir` (`logits.npy`, `labels.npy`); `None` for a run
/// folder of a version that did not store them.
pub fn read_test_outputs(dir: &Path) -> Result<Option<TestOutputs>> {
    let (logits_path, labels_path) = (dir.join(LOGITS_FILE), dir.join(LABELS_FILE));
    if !logits_path.is_file() && !labels_path.is_file() {
        return Ok(None);
    }
    let read =
        |path: &Path| fs::read(path).with_context(|| format!("cannot read {}", path.display()));
    let (shape, logits) = npy::from_npy::<f32>(&read(&logits_path)?)
        .with_context(|| format!("{}", logits_path.display()))?;
    let (label_shape, labels) = npy::from_npy::<i64>(&read(&labels_path)?)
        .with_context(|| format!("{}", labels_path.display()))?;
    let [n, classes] = shape[..] else {
        bail!(
            "{}: shape {shape:?}, expected (test images, classes)",
            logits_path.display()
        );
    };
    if label_shape != [n] {
        bail!(
            "{}: shape {label_shape:?} does not match {} ({n} test images)",
            labels_path.display(),
            logits_path.display()
        );
    }
    let labels = labels
        .into_iter()
        .enumerate()
        .map(|(i, l)| {
            usize::try_from(l)
                .ok()
                .filter(|&l| l < classes)
                .with_context(|| {
                    format!(
                        "{}: label {l} of image {i} is not a class of 0..{classes}",
                        labels_path.display()
                    )
                })
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(Some(TestOutputs {
        logits,
        labels,
        classes,
    }))
}

/// Every test metric of the finished run in `dir` and its reliability bins computed again from
/// its stored logits (the same computation training ends with, so the values are the stored
/// ones bit for bit until a metric's definition changes). The corrupted and out-of-distribution
/// scores are not test-set outputs and are kept from `stored`. `None` for a folder without
/// `logits.npy` (written by an earlier version).
pub fn recompute(dir: &Path, stored: &TestMetrics) -> Result<Option<(TestMetrics, Reliability)>> {
    let Some(out) = read_test_outputs(dir)? else {
        return Ok(None);
    };
    let (mut test, _, bins) = crate::metrics::evaluate(&out.logits, &out.labels, out.classes);
    test.corrupted = stored.corrupted.clone();
    test.ood = stored.ood.clone();
    let reliability = Reliability {
        ece: test.ece,
        bins,
    };
    Ok(Some((test, reliability)))
}

/// Records why a run failed (`icm run --retry-failed` runs it again).
pub fn write_failure(dir: &Path, config: &RunConfig, reason: &str) -> Result<()> {
    write_config(dir, config)?;
    write_atomic(&dir.join(FAILURE_FILE), reason.as_bytes())
}

/// Writes the run's `config.yaml` (creating its folder): when the run is claimed, so that a
/// report drawn while it trains knows what it is (a folder with one is a run folder), and again
/// with its results.
pub fn write_config(dir: &Path, config: &RunConfig) -> Result<()> {
    fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    write_atomic(
        &dir.join(CONFIG_FILE),
        serde_yaml::to_string(config)?.as_bytes(),
    )
}

/// Reads a run's `metrics.json`.
pub fn read_metrics(path: &Path) -> Result<RunMetrics> {
    let text =
        fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    serde_json::from_str(&text)
        .with_context(|| format!("{} is not a valid run record", path.display()))
}

/// Reads a run's `reliability.json`.
pub fn read_reliability(path: &Path) -> Result<Reliability> {
    let text =
        fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    serde_json::from_str(&text)
        .with_context(|| format!("{} is not a valid reliability file", path.display()))
}

/// Reads a run's `predictions.csv`: (label, predicted class, confidence) per test image.
pub fn read_predictions(path: &Path) -> Result<Vec<(usize, usize, f64)>> {
    let text =
        fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let mut lines = text.lines();
    if lines.next() != Some("label,predicted,confidence") {
        anyhow::bail!(
            "{} line 1: expected the header `label,predicted,confidence`",
            path.display()
        );
    }
    lines
        .enumerate()
        .map(|(i, line)| {
            let f: Vec<&str> = line.split(',').collect();
            let parsed = match f[..] {
                [l, p, c] => l.parse().ok().zip(p.parse().ok()).zip(c.parse().ok()),
                _ => None,
            };
            parsed.map(|((l, p), c)| (l, p, c)).with_context(|| {
                format!(
                    "{} line {}: expected `label,predicted,confidence` (two class numbers and a number)",
                    path.display(),
                    i + 2
                )
            })
        })
        .collect()
}

/// How a finished run collapsed, if it did: as its record says, or else as its `history.csv`
/// (`history`) shows to this version's watch (`crate::train::divergence`), so a run recorded
/// before the watch knew a signature is judged like a run trained now, without training it
/// again (its cause then ends `(seen in history.csv)`). Reports and `icm status` both ask here.
pub fn divergence(
    config: &RunConfig,
    metrics: &RunMetrics,
    history: &[EpochRecord],
) -> Option<Divergence> {
    if metrics.diverged.is_some() {
        return metrics.diverged.clone();
    }
    let classes = metrics.train_class_counts.len();
    let batch = config.train.batch_size.min(metrics.train_size);
    let uniform = crate::mix::losses::uniform_score_loss(&config.method, classes, batch);
    let watch = DivergenceWatch::new(classes, config.train.epochs, uniform);
    watch.replay(history).map(|d| Divergence {
        epoch: d.epoch,
        what: format!("{} (seen in history.csv)", d.what),
    })
}

/// What [`check_auxiliary`] read of a finished run, for its caller to use instead of reading
/// the files again.
#[derive(Debug)]
pub struct CheckedRecord {
    pub metrics: RunMetrics,
    pub history: Vec<EpochRecord>,
}

/// Checks the files of a finished run besides `metrics.json` (history, reliability bins,
/// predictions, test logits and labels), each on its own and against `metrics.json`'s test-set
/// size and class count: a run with a damaged one is not aggregated (nor recomputed from its
/// logits), and the error says which file and what. Returns the record and history it read.
pub fn check_auxiliary(dir: &Path) -> Result<CheckedRecord> {
    let metrics = read_metrics(&dir.join(METRICS_FILE))?;
    let (test_size, classes) = (metrics.test_size, metrics.train_class_counts.len());
    let history_path = dir.join(HISTORY_FILE);
    let history = read_history(&history_path)?;
    if history.is_empty() {
        bail!(
            "{}: no epochs after the header ({} says the run trained {})",
            history_path.display(),
            METRICS_FILE,
            metrics.epochs
        );
    }
    let reliability_path = dir.join(RELIABILITY_FILE);
    check_reliability(&read_reliability(&reliability_path)?, test_size)
        .map_err(|e| anyhow::anyhow!("{}: {e}", reliability_path.display()))?;
    let predictions_path = dir.join(PREDICTIONS_FILE);
    let predictions = read_predictions(&predictions_path)?;
    if predictions.len() != test_size {
        bail!(
            "{}: {} predictions, but {} says {test_size} test images",
            predictions_path.display(),
            predictions.len(),
            METRICS_FILE
        );
    }
    if let Some(outputs) = read_test_outputs(dir)? {
        let rows = outputs.labels.len();
        if (rows, outputs.classes) != (test_size, classes) {
            bail!(
                "{}: logits of {rows} images × {} classes, but {} says {test_size} test images \
                 of {classes} classes",
                dir.join(LOGITS_FILE).display(),
                outputs.classes,
                METRICS_FILE
            );
        }
    }
    Ok(CheckedRecord { metrics, history })
}

/// A reliability file's bins: edges within [0, 1] in order, confidences and accuracies in
/// [0, 1], counts adding up to the test set, an ECE in [0, 1].
fn check_reliability(r: &Reliability, test_size: usize) -> std::result::Result<(), String> {
    let unit = |v: f64| (0.0..=1.0).contains(&v);
    if !unit(r.ece) {
        return Err(format!("`ece` is {}, outside [0, 1]", r.ece));
    }
    if r.bins.is_empty() {
        return Err("no bins".into());
    }
    for (i, b) in r.bins.iter().enumerate() {
        let sound = unit(b.lower)
            && unit(b.upper)
            && b.lower <= b.upper
            && unit(b.confidence)
            && unit(b.accuracy);
        if !sound {
            return Err(format!(
                "bin {i}: edges [{}, {}], confidence {}, accuracy {}: each must lie in [0, 1], \
                 the lower edge below the upper",
                b.lower, b.upper, b.confidence, b.accuracy
            ));
        }
    }
    let counted = r
        .bins
        .iter()
        .try_fold(0usize, |sum, b| sum.checked_add(b.count));
    if counted != Some(test_size) {
        return Err(format!(
            "the bins count {} images, but {} says {test_size} test images",
            counted.map_or("more than 2^64".to_string(), |c| c.to_string()),
            METRICS_FILE
        ));
    }
    Ok(())
}

/// Reads a run's `config.yaml`.
pub fn read_config(path: &Path) -> Result<RunConfig> {
    let text =
        fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    serde_yaml::from_str(&text).map_err(|e| anyhow::anyhow!(yaml_error(path, &e)))
}

/// The columns of `history.csv`, in order; the last six may be empty.
const HISTORY_COLUMNS: [&str; 10] = [
    "epoch",
    "lr",
    "train_loss",
    "test_accuracy",
    "val_accuracy",
    "grad_norm",
    "max_grad_norm",
    "max_logit",
    "max_score",
    "duplicates",
];

/// `history.csv` of these epochs.
pub fn history_csv(history: &[EpochRecord]) -> String {
    let mut out = HISTORY_COLUMNS.join(",");
    out.push('\n');
    for h in history {
        out.push_str(&history_line(h));
    }
    out
}

/// The line of one epoch in `history.csv`, with its newline.
pub fn history_line(h: &EpochRecord) -> String {
    let opt = |v: Option<f64>| v.map_or(String::new(), |v| v.to_string());
    format!(
        "{},{},{},{},{},{},{},{},{},{}\n",
        h.epoch,
        h.lr,
        h.train_loss,
        h.test_accuracy,
        opt(h.val_accuracy),
        opt(h.grad_norm),
        opt(h.max_grad_norm),
        opt(h.max_logit),
        opt(h.max_score),
        opt(h.duplicates)
    )
}

/// Reads a run's `history.csv` (columns found by their header names, so files of earlier
/// versions with fewer columns read too).
pub fn read_history(path: &Path) -> Result<Vec<EpochRecord>> {
    let text =
        fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    parse_history(&text, path)
}

/// Reads the `history.csv` of a run that may still be training (it gains a line every epoch): a
/// last line without its newline, cut short by a kill while it was written, is left out.
pub fn read_history_so_far(path: &Path) -> Result<Vec<EpochRecord>> {
    let text =
        fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let whole_lines = text.rfind('\n').map_or("", |end| &text[..=end]);
    if whole_lines.is_empty() {
        return Ok(Vec::new()); // not even the header is complete yet
    }
    parse_history(whole_lines, path)
}

/// The epochs of `history.csv` text read from `path` (for messages).
fn parse_history(text: &str, path: &Path) -> Result<Vec<EpochRecord>> {
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().unwrap_or_default().split(',').collect();
    let column = |name: &str| header.iter().position(|h| *h == name);
    if column("epoch").is_none() {
        anyhow::bail!(
            "{} line 1: expected a header starting `{}`",
            path.display(),
            HISTORY_COLUMNS.join(",")
        );
    }
    let mut out = Vec::new();
    for (i, line) in lines.enumerate() {
        let f: Vec<&str> = line.split(',').collect();
        let optional = |name: &str| -> Option<f64> {
            column(name)
                .and_then(|k| f.get(k))
                .and_then(|v| v.parse::<f64>().ok())
        };
        let required = |name: &str| -> Result<f64> {
            optional(name).with_context(|| {
                format!(
                    "{} line {}: expected a number in column `{name}`",
                    path.display(),
                    i + 2
                )
            })
        };
        out.push(EpochRecord {
            epoch: required("epoch")? as usize,
            lr: required("lr")?,
            train_loss: required("train_loss")?,
            test_accuracy: required("test_accuracy")?,
            val_accuracy: optional("val_accuracy"),
            grad_norm: optional("grad_norm"),
            max_grad_norm: optional("max_grad_norm"),
            max_logit: optional("max_logit"),
            max_score: optional("max_score"),
            duplicates: optional("duplicates"),
        });
    }
    Ok(out)
}

/// Reads a run's `ood_scores.csv`: (set, MSP score) per image.
pub fn read_ood_scores(path: &Path) -> Result<Vec<(String, f64)>> {
    let text =
        fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    text.lines()
        .enumerate()
        .skip(1)
        .map(|(i, line)| {
            line.rsplit_once(',')
                .and_then(|(set, v)| Some((set.to_string(), v.parse::<f64>().ok()?)))
                .with_context(|| format!("{} line {}: expected `set,score`", path.display(), i + 1))
        })
        .collect()
}
