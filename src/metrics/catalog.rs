//! The catalog of metrics a report can show: one row per metric, read by the run records, the
//! aggregation, the tables, the claims and the HTML page alike. Adding a metric is a row here
//! plus the function that computes it.

use std::sync::Mutex;

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
    /// For a mean over OOD sets or corruptions: the value of one of them, so `name@part` is a
    /// metric too (`ood_auroc@digits`, `corruption_accuracy@rotate`, `corruption_accuracy@5`).
    pub of_part: Option<fn(&TestMetrics, &str) -> Option<f64>>,
    /// The part a `name@part` metric reads; empty for the catalog's own rows.
    pub part: &'static str,
}

impl Metric {
    /// The run's value (of its part, for a `name@part` metric).
    pub fn value(&self, t: &TestMetrics, class_counts: &[usize]) -> Option<f64> {
        match self.of_part {
            Some(of_part) if !self.part.is_empty() => of_part(t, self.part),
            _ => (self.read)(t, class_counts),
        }
    }
}

/// What a metric is measured on, and so which section of an experiment file it needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Section {
    /// The clean test set: every run has it.
    TestSet,
    /// Corrupted copies of the test set (`evaluate:`): the `corruption_*` metrics.
    Evaluate,
    /// Out-of-distribution sets (`ood:`): the `ood_*` metrics.
    Ood,
}

impl Section {
    /// The section metric `name` (a catalog name without `@part`) is measured on.
    pub fn of_metric(name: &str) -> Section {
        if name.starts_with("corruption_") {
            Section::Evaluate
        } else if name.starts_with("ood_") {
            Section::Ood
        } else {
            Section::TestSet
        }
    }
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
        of_part: None,
        part: "",
    },
    Metric {
        name: "ece",
        title: "ECE (%)",
        better: Better::Lower,
        scale: 100.0,
        decimals: 2,
        read: |t, _| Some(t.ece),
        of_part: None,
        part: "",
    },
    Metric {
        name: "adaptive_ece",
        title: "adaptive ECE (%)",
        better: Better::Lower,
        scale: 100.0,
        decimals: 2,
        read: |t, _| Some(t.adaptive_ece),
        of_part: None,
        part: "",
    },
    Metric {
        name: "mce",
        title: "MCE (%)",
        better: Better::Lower,
        scale: 100.0,
        decimals: 2,
        read: |t, _| Some(t.mce),
        of_part: None,
        part: "",
    },
    Metric {
        name: "nll",
        title: "NLL",
        better: Better::Lower,
        scale: 1.0,
        decimals: 3,
        read: |t, _| Some(t.nll),
        of_part: None,
        part: "",
    },
    Metric {
        name: "brier",
        title: "Brier",
        better: Better::Lower,
        scale: 1.0,
        decimals: 4,
        read: |t, _| Some(t.brier),
        of_part: None,
        part: "",
    },
    Metric {
        name: "many_shot",
        title: "many-shot acc. (%)",
        better: Better::Higher,
        scale: 100.0,
        decimals: 2,
        read: |t, counts| shot_accuracies(&t.per_class_accuracy, counts).many,
        of_part: None,
        part: "",
    },
    Metric {
        name: "medium_shot",
        title: "medium-shot acc. (%)",
        better: Better::Higher,
        scale: 100.0,
        decimals: 2,
        read: |t, counts| shot_accuracies(&t.per_class_accuracy, counts).medium,
        of_part: None,
        part: "",
    },
    Metric {
        name: "few_shot",
        title: "few-shot acc. (%)",
        better: Better::Higher,
        scale: 100.0,
        decimals: 2,
        read: |t, counts| shot_accuracies(&t.per_class_accuracy, counts).few,
        of_part: None,
        part: "",
    },
    Metric {
        name: "corruption_accuracy",
        title: "mean corruption acc. (%)",
        better: Better::Higher,
        scale: 100.0,
        decimals: 2,
        read: |t, _| t.mean_corrupted(|c| c.accuracy),
        of_part: Some(|t, part| t.part_corrupted(part, |c| c.accuracy)),
        part: "",
    },
    Metric {
        name: "corruption_ece",
        title: "mean corruption ECE (%)",
        better: Better::Lower,
        scale: 100.0,
        decimals: 2,
        read: |t, _| t.mean_corrupted(|c| c.ece),
        of_part: Some(|t, part| t.part_corrupted(part, |c| c.ece)),
        part: "",
    },
    Metric {
        name: "corruption_nll",
        title: "mean corruption NLL",
        better: Better::Lower,
        scale: 1.0,
        decimals: 3,
        read: |t, _| t.mean_corrupted(|c| c.nll),
        of_part: Some(|t, part| t.part_corrupted(part, |c| c.nll)),
        part: "",
    },
    Metric {
        name: "ood_auroc",
        title: "OOD AUROC, MSP (%)",
        better: Better::Higher,
        scale: 100.0,
        decimals: 2,
        read: |t, _| t.mean_ood(OodScore::Msp, |d| d.auroc),
        of_part: Some(|t, part| t.part_ood(part, OodScore::Msp, |d| d.auroc)),
        part: "",
    },
    Metric {
        name: "ood_auroc_max_logit",
        title: "OOD AUROC, max logit (%)",
        better: Better::Higher,
        scale: 100.0,
        decimals: 2,
        read: |t, _| t.mean_ood(OodScore::MaxLogit, |d| d.auroc),
        of_part: Some(|t, part| t.part_ood(part, OodScore::MaxLogit, |d| d.auroc)),
        part: "",
    },
    Metric {
        name: "ood_auroc_energy",
        title: "OOD AUROC, energy (%)",
        better: Better::Higher,
        scale: 100.0,
        decimals: 2,
        read: |t, _| t.mean_ood(OodScore::Energy, |d| d.auroc),
        of_part: Some(|t, part| t.part_ood(part, OodScore::Energy, |d| d.auroc)),
        part: "",
    },
    Metric {
        name: "ood_aupr_in",
        title: "OOD AUPR-in, MSP (%)",
        better: Better::Higher,
        scale: 100.0,
        decimals: 2,
        read: |t, _| t.mean_ood(OodScore::Msp, |d| d.aupr_in),
        of_part: Some(|t, part| t.part_ood(part, OodScore::Msp, |d| d.aupr_in)),
        part: "",
    },
    Metric {
        name: "ood_aupr_out",
        title: "OOD AUPR-out, MSP (%)",
        better: Better::Higher,
        scale: 100.0,
        decimals: 2,
        read: |t, _| t.mean_ood(OodScore::Msp, |d| d.aupr_out),
        of_part: Some(|t, part| t.part_ood(part, OodScore::Msp, |d| d.aupr_out)),
        part: "",
    },
    Metric {
        name: "ood_fpr95",
        title: "OOD FPR@95%TPR, MSP (%)",
        better: Better::Lower,
        scale: 100.0,
        decimals: 2,
        read: |t, _| t.mean_ood(OodScore::Msp, |d| d.fpr95),
        of_part: Some(|t, part| t.part_ood(part, OodScore::Msp, |d| d.fpr95)),
        part: "",
    },
];

/// The `name@part` metrics asked for so far (each made once and kept for the process).
static PARTS: Mutex<Vec<&'static Metric>> = Mutex::new(Vec::new());

/// The catalog row of `name`, or the `name@part` metric of a row that has parts.
pub fn metric(name: &str) -> Option<&'static Metric> {
    if let Some(m) = METRICS.iter().find(|m| m.name == name) {
        return Some(m);
    }
    let (base, part) = name.split_once('@')?;
    let base = METRICS
        .iter()
        .find(|m| m.name == base && m.of_part.is_some())?;
    if part.is_empty() {
        return None;
    }
    let mut parts = PARTS.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(m) = parts.iter().find(|m| m.name == name) {
        return Some(m);
    }
    let leak = |s: String| -> &'static str { Box::leak(s.into_boxed_str()) };
    let made: &'static Metric = Box::leak(Box::new(Metric {
        name: leak(name.to_string()),
        title: leak(format!("{} — {part}", base.title)),
        part: leak(part.to_string()),
        ..*base
    }));
    parts.push(made);
    Some(made)
}

/// Every catalog row, then every `name@part` metric asked for so far: the columns of
/// `runs.csv`.
pub fn in_use() -> Vec<&'static Metric> {
    let parts = PARTS.lock().unwrap_or_else(|e| e.into_inner());
    METRICS.iter().chain(parts.iter().copied()).collect()
}

/// Whether a metric of the catalog has parts (`name@part`).
pub fn has_parts(name: &str) -> bool {
    METRICS
        .iter()
        .any(|m| m.name == name && m.of_part.is_some())
}

/// Every metric name, comma separated (for messages).
pub fn names() -> String {
    let all = METRICS
        .iter()
        .map(|m| m.name)
        .collect::<Vec<_>>()
        .join(", ");
    format!("{all} (the corruption_* and ood_* metrics also as `name@part`: one OOD set, corruption or severity)")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The metrics with parts are exactly those measured beyond the test set, so a `name@part`
    /// check and a section check agree.
    #[test]
    fn metrics_with_parts_are_the_ones_that_need_a_section() {
        for m in METRICS {
            let section = Section::of_metric(m.name);
            assert_eq!(
                m.of_part.is_some(),
                section != Section::TestSet,
                "{}: {section:?}",
                m.name
            );
        }
        assert_eq!(Section::of_metric("corruption_nll"), Section::Evaluate);
        assert_eq!(Section::of_metric("ood_fpr95"), Section::Ood);
        assert_eq!(Section::of_metric("few_shot"), Section::TestSet);
    }
}
