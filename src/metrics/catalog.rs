//! The catalog of metrics a report can show: one row per metric, read by the run records, the
//! aggregation, the tables, the claims and the HTML page alike. Adding a metric is a row here
//! plus the function that computes it.

use serde::Deserialize;

use super::{shot_accuracies, OodScore, TestMetrics};

/// Which way a metric improves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Better {
    Higher,
    Lower,
}

/// One metric: its name in YAML and in `runs.csv`, how it is shown, and how it is read from a
/// finished run.
#[derive(Debug, Clone, Copy)]
pub struct Metric {
    /// Name in `tables:` entries, column name in `runs.csv` / `runs.parquet`.
    pub name: &'static str,
    /// Title in tables and charts, with the unit.
    pub title: &'static str,
    pub better: Better,
    /// Factor from the stored value to the shown one (100 for percentages).
    pub scale: f64,
    /// Decimals shown unless a table says otherwise.
    pub decimals: usize,
    /// The run's value from its test metrics and training class counts; `None` where the metric
    /// does not apply (e.g. no few-shot classes in a balanced split).
    pub read: fn(&TestMetrics, &[usize]) -> Option<f64>,
}

/// Every metric, in the order of `runs.csv`'s metric columns.
pub const METRICS: &[Metric] = &[
    Metric {
        name: "accuracy",
        title: "accuracy (%)",
        better: Better::Higher,
        scale: 100.0,
        decimals: 2,
        read: |t, _| Some(t.accuracy),
    },
    Metric {
        name: "ece",
        title: "ECE (%)",
        better: Better::Lower,
        scale: 100.0,
        decimals: 2,
        read: |t, _| Some(t.ece),
    },
    Metric {
        name: "adaptive_ece",
        title: "adaptive ECE (%)",
        better: Better::Lower,
        scale: 100.0,
        decimals: 2,
        read: |t, _| Some(t.adaptive_ece),
    },
    Metric {
        name: "mce",
        title: "MCE (%)",
        better: Better::Lower,
        scale: 100.0,
        decimals: 2,
        read: |t, _| Some(t.mce),
    },
    Metric {
        name: "nll",
        title: "NLL",
        better: Better::Lower,
        scale: 1.0,
        decimals: 3,
        read: |t, _| Some(t.nll),
    },
    Metric {
        name: "brier",
        title: "Brier",
        better: Better::Lower,
        scale: 1.0,
        decimals: 4,
        read: |t, _| Some(t.brier),
    },
    Metric {
        name: "many_shot",
        title: "many-shot acc. (%)",
        better: Better::Higher,
        scale: 100.0,
        decimals: 2,
        read: |t, counts| shot_accuracies(&t.per_class_accuracy, counts).many,
    },
    Metric {
        name: "medium_shot",
        title: "medium-shot acc. (%)",
        better: Better::Higher,
        scale: 100.0,
        decimals: 2,
        read: |t, counts| shot_accuracies(&t.per_class_accuracy, counts).medium,
    },
    Metric {
        name: "few_shot",
        title: "few-shot acc. (%)",
        better: Better::Higher,
        scale: 100.0,
        decimals: 2,
        read: |t, counts| shot_accuracies(&t.per_class_accuracy, counts).few,
    },
    Metric {
        name: "corruption_accuracy",
        title: "mean corruption acc. (%)",
        better: Better::Higher,
        scale: 100.0,
        decimals: 2,
        read: |t, _| t.mean_corrupted(|c| c.accuracy),
    },
    Metric {
        name: "corruption_ece",
        title: "mean corruption ECE (%)",
        better: Better::Lower,
        scale: 100.0,
        decimals: 2,
        read: |t, _| t.mean_corrupted(|c| c.ece),
    },
    Metric {
        name: "corruption_nll",
        title: "mean corruption NLL",
        better: Better::Lower,
        scale: 1.0,
        decimals: 3,
        read: |t, _| t.mean_corrupted(|c| c.nll),
    },
    Metric {
        name: "ood_auroc",
        title: "OOD AUROC, MSP (%)",
        better: Better::Higher,
        scale: 100.0,
        decimals: 2,
        read: |t, _| t.mean_ood(OodScore::Msp, |d| d.auroc),
    },
    Metric {
        name: "ood_auroc_max_logit",
        title: "OOD AUROC, max logit (%)",
        better: Better::Higher,
        scale: 100.0,
        decimals: 2,
        read: |t, _| t.mean_ood(OodScore::MaxLogit, |d| d.auroc),
    },
    Metric {
        name: "ood_auroc_energy",
        title: "OOD AUROC, energy (%)",
        better: Better::Higher,
        scale: 100.0,
        decimals: 2,
        read: |t, _| t.mean_ood(OodScore::Energy, |d| d.auroc),
    },
    Metric {
        name: "ood_aupr_in",
        title: "OOD AUPR-in, MSP (%)",
        better: Better::Higher,
        scale: 100.0,
        decimals: 2,
        read: |t, _| t.mean_ood(OodScore::Msp, |d| d.aupr_in),
    },
    Metric {
        name: "ood_aupr_out",
        title: "OOD AUPR-out, MSP (%)",
        better: Better::Higher,
        scale: 100.0,
        decimals: 2,
        read: |t, _| t.mean_ood(OodScore::Msp, |d| d.aupr_out),
    },
    Metric {
        name: "ood_fpr95",
        title: "OOD FPR@95%TPR, MSP (%)",
        better: Better::Lower,
        scale: 100.0,
        decimals: 2,
        read: |t, _| t.mean_ood(OodScore::Msp, |d| d.fpr95),
    },
];

/// The catalog row of `name`.
pub fn metric(name: &str) -> Option<&'static Metric> {
    METRICS.iter().find(|m| m.name == name)
}

/// Every metric name, comma separated (for messages).
pub fn names() -> String {
    METRICS
        .iter()
        .map(|m| m.name)
        .collect::<Vec<_>>()
        .join(", ")
}
