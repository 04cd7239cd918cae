//! Figures of the scores beyond the test set, per split: accuracy and ECE against corruption
//! severity (mean over corruptions per run, then mean ± std over seeds; severity 0 is the clean
//! test set), and histograms of the maximum softmax probability of the test images against each
//! out-of-distribution set's (every seed's images pooled).

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::Result;

use super::collect::RunRecord;
use super::plots::{self, Panel, Series};
use super::Grid;
use crate::data::Split;
use crate::grid::records;
use crate::metrics::{CorruptedMetrics, TestMetrics};
use crate::util::file_safe;

/// Bins of the score histograms over 0..1.
const HISTOGRAM_BINS: usize = 20;

/// Writes the split's robustness figures (when its runs have corrupted or OOD scores); returns
/// the PNG paths relative to `out`.
pub(super) fn write_figures(
    grid: &Grid,
    runs: &[RunRecord],
    split: &Split,
    out: &Path,
) -> Result<Vec<String>> {
    let on_split: Vec<&RunRecord> = runs
        .iter()
        .filter(|r| r.metrics.split == split.slug())
        .collect();
    let mut written = Vec::new();
    let severity = severity_panels(grid, &on_split);
    if !severity.is_empty() {
        let file = format!("figures/severity-{}", split.slug());
        let title = format!("Corrupted test sets — {}", split.title());
        draw(out, &file, &title, &severity)?;
        written.push(format!("{file}.png"));
    }
    for m in &grid.methods {
        let label = m.display_name();
        let members: Vec<&&RunRecord> = on_split
            .iter()
            .filter(|r| r.metrics.method == label)
            .collect();
        let panels = histogram_panels(&members)?;
        if !panels.is_empty() {
            let file = format!("figures/ood-scores-{}-{}", file_safe(&label), split.slug());
            let title = format!("MSP, test vs OOD sets: {label} — {}", split.title());
            draw(out, &file, &title, &panels)?;
            written.push(format!("{file}.png"));
        }
    }
    Ok(written)
}

fn draw(out: &Path, file: &str, title: &str, panels: &[Panel]) -> Result<()> {
    for ext in ["png", "svg"] {
        plots::panels(&out.join(format!("{file}.{ext}")), title, panels, 2)?;
    }
    Ok(())
}

/// A y axis of the severity figure: its title, the clean test value, the corrupted value.
type SeverityField = (
    &'static str,
    fn(&TestMetrics) -> f64,
    fn(&CorruptedMetrics) -> f64,
);

/// Accuracy and ECE (%) against severity, one line per method.
fn severity_panels(grid: &Grid, runs: &[&RunRecord]) -> Vec<Panel> {
    let fields: [SeverityField; 2] = [
        ("accuracy (%)", |t| t.accuracy, |c| c.accuracy),
        ("ECE (%)", |t| t.ece, |c| c.ece),
    ];
    let mut panels = Vec::new();
    for (y_desc, clean, corrupted) in fields {
        let mut series = Vec::new();
        for m in &grid.methods {
            let label = m.display_name();
            // Severity → one value per run (the mean over its corruptions).
            let mut by_severity: BTreeMap<u8, Vec<f64>> = BTreeMap::new();
            for r in runs.iter().filter(|r| r.metrics.method == label) {
                let t = &r.metrics.test;
                if t.corrupted.is_empty() {
                    continue;
                }
                by_severity.entry(0).or_default().push(clean(t) * 100.0);
                let mut per: BTreeMap<u8, Vec<f64>> = BTreeMap::new();
                for c in &t.corrupted {
                    per.entry(c.severity)
                        .or_default()
                        .push(corrupted(c) * 100.0);
                }
                for (s, v) in per {
                    let mean = v.iter().sum::<f64>() / v.len() as f64;
                    by_severity.entry(s).or_default().push(mean);
                }
            }
            if by_severity.is_empty() {
                continue;
            }
            series.push(Series {
                name: label,
                points: by_severity
                    .iter()
                    .map(|(&s, v)| {
                        let (mean, std) = plots::mean_std(v);
                        (s as f64, mean, std)
                    })
                    .collect(),
                running: false,
            });
        }
        if !series.is_empty() {
            let severities: std::collections::BTreeSet<u64> = series
                .iter()
                .flat_map(|s| s.points.iter().map(|p| p.0 as u64))
                .collect();
            panels.push(Panel {
                title: format!("{y_desc} vs severity, mean over corruptions"),
                x_desc: "severity (0 = clean)".into(),
                y_desc: y_desc.into(),
                x_ticks: severities.into_iter().map(|s| s as f64).collect(),
                series,
                ..Panel::default()
            });
        }
    }
    panels
}

/// One panel per OOD set: the share of images per MSP bin, test set against the set.
fn histogram_panels(runs: &[&&RunRecord]) -> Result<Vec<Panel>> {
    let mut pooled: BTreeMap<String, Vec<f64>> = BTreeMap::new();
    for r in runs {
        let path = r.dir.join(records::OOD_SCORES_FILE);
        if !path.is_file() {
            continue;
        }
        for (set, v) in records::read_ood_scores(&path)? {
            pooled.entry(set).or_default().push(v);
        }
    }
    let Some(test) = pooled.remove("test") else {
        return Ok(Vec::new());
    };
    Ok(pooled
        .iter()
        .map(|(set, scores)| Panel {
            title: format!("test vs {set}"),
            x_desc: "maximum softmax probability".into(),
            y_desc: "share of images".into(),
            series: vec![
                Series {
                    name: "test (in-distribution)".into(),
                    points: histogram(&test),
                    running: false,
                },
                Series {
                    name: format!("{set} (OOD)"),
                    points: histogram(scores),
                    running: false,
                },
            ],
            ..Panel::default()
        })
        .collect())
}

/// Share of `scores` in each of [`HISTOGRAM_BINS`] equal bins of 0..1, at the bin centres.
fn histogram(scores: &[f64]) -> Vec<(f64, f64, Option<f64>)> {
    let mut counts = [0usize; HISTOGRAM_BINS];
    for &s in scores {
        let b = ((s * HISTOGRAM_BINS as f64) as usize).min(HISTOGRAM_BINS - 1);
        counts[b] += 1;
    }
    let n = scores.len().max(1) as f64;
    counts
        .iter()
        .enumerate()
        .map(|(b, &c)| ((b as f64 + 0.5) / HISTOGRAM_BINS as f64, c as f64 / n, None))
        .collect()
}
