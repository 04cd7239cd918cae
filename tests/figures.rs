//! Figures: ticks at the grid's values and at round values on log axes, keys beside the plots
//! naming every mark, the reliability diagram's fading by count and ECE placement, and runs still
//! running drawn (dashed, keyed `(running)`) in a report's training curves but in no table.

use std::path::Path;

use icm::report::plots::{
    ece_box_fits, line_chart, log_ticks, opacity, reliability_diagram, tick_label, MeanBin, Panel,
    Series,
};

/// The texts of an SVG figure, trimmed, in document order.
fn svg_texts(path: &Path) -> Vec<String> {
    let svg = std::fs::read_to_string(path).unwrap();
    svg.split("<text")
        .skip(1)
        .filter_map(|t| {
            let body = t.split_once('>')?.1;
            Some(body.split_once("</text>")?.0.trim().to_string())
        })
        .collect()
}

fn series(name: &str, points: &[(f64, f64, Option<f64>)], running: bool) -> Series {
    Series {
        name: name.into(),
        points: points.to_vec(),
        running,
    }
}

#[test]
fn log_ticks_sit_at_round_values() {
    let labels = |lo: f64, hi: f64| -> Vec<String> {
        log_ticks(lo, hi)
            .iter()
            .map(|v| tick_label(10f64.powf(*v)))
            .collect()
    };
    // One to three decades: 1, 2 and 5 times powers of ten.
    assert_eq!(labels(0.0, 2.0), ["1", "2", "5", "10", "20", "50", "100"]);
    // Three decades or more: powers of ten only.
    assert_eq!(labels(-1.0, 3.0), ["0.1", "1", "10", "100", "1000"]);
    assert_eq!(
        labels(0.0, 8.0),
        ["1", "10", "100", "1000", "10000", "1e5", "1e6", "1e7", "1e8"]
    );
    // Over eight decades: every k-th power, k = ceil(span / 8).
    assert_eq!(
        labels(-0.5, 17.0),
        ["1", "1000", "1e6", "1e9", "1e12", "1e15"]
    );
    // Under one decade: every integer multiple inside the range.
    assert_eq!(labels(0.45, 0.95), ["3", "4", "5", "6", "7", "8"]);
}

#[test]
fn tick_labels_are_short() {
    let cases = [
        (10.0, "10"),
        (143.7, "143.7"),
        (0.125, "0.125"),
        (2.0 / 3.0, "0.667"),
        (-0.0, "0"),
        (1e5, "1e5"),
        (1.8e34, "1.8e34"),
        (2.5e-5, "2.5e-5"),
    ];
    for (v, text) in cases {
        assert_eq!(tick_label(v), text, "{v}");
    }
}

/// The chart: accuracy vs ρ on a log axis had ticks at 1.3, 3.2, 6.3 and 7.9; they sit
/// at the grid's ratios now, and the key (methods, error bars) is outside the plot.
#[test]
fn accuracy_chart_ticks_sit_at_the_grid_values() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("accuracy.svg");
    let panel = Panel {
        x_desc: "imbalance ratio ρ".into(),
        y_desc: "test accuracy (%)".into(),
        log_x: true,
        x_ticks: vec![1.0, 10.0, 50.0, 100.0],
        series: vec![
            series(
                "erm",
                &[
                    (1.0, 97.5, Some(0.2)),
                    (10.0, 93.1, Some(0.4)),
                    (50.0, 90.2, None),
                ],
                false,
            ),
            series(
                "icm-mixup",
                &[(1.0, 97.9, None), (100.0, 88.6, None)],
                false,
            ),
        ],
        ..Panel::default()
    };
    line_chart(&path, "Test accuracy vs ρ", &panel).unwrap();
    let texts = svg_texts(&path);
    for tick in ["1", "10", "50", "100"] {
        assert!(texts.iter().any(|t| t == tick), "tick {tick}: {texts:?}");
    }
    for odd in ["1.3", "3.2", "6.3", "7.9", "2", "5", "20"] {
        assert!(!texts.iter().any(|t| t == odd), "tick {odd}: {texts:?}");
    }
    // The key names each method once and the error bars.
    assert_eq!(texts.iter().filter(|t| *t == "erm").count(), 1);
    assert_eq!(texts.iter().filter(|t| *t == "icm-mixup").count(), 1);
    assert!(texts.iter().any(|t| t == "±1 std over seeds"), "{texts:?}");
}

/// A running run's series is keyed `<method> (running)` beside its method's finished mean; a
/// chart without error bars has no error-bar entry.
#[test]
fn running_series_have_their_own_key_entry() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("curves.svg");
    let panel = Panel {
        x_desc: "epoch".into(),
        y_desc: "loss".into(),
        series: vec![
            series("icm-mixup", &[(1.0, 5.0, None), (2.0, 4.5, None)], false),
            series("icm-mixup (seed 2)", &[(1.0, 5.1, None)], true),
            series("mixup (seed 0)", &[(1.0, 0.9, None)], true),
        ],
        ..Panel::default()
    };
    line_chart(&path, "curves", &panel).unwrap();
    let texts = svg_texts(&path);
    let key: Vec<&str> = ["icm-mixup", "icm-mixup (running)", "mixup (running)"].to_vec();
    for entry in &key {
        assert_eq!(
            texts.iter().filter(|t| t == entry).count(),
            1,
            "{entry}: {texts:?}"
        );
    }
    assert!(
        !texts.iter().any(|t| t == "mixup"),
        "mixup has no finished run: {texts:?}"
    );
    assert!(!texts.iter().any(|t| t.contains("std")), "{texts:?}");
}

fn bin(lower: f64, count: usize, accuracy: f64, confidence: f64, std: f64) -> MeanBin {
    MeanBin {
        lower,
        upper: lower + 1.0 / 15.0,
        count,
        accuracy,
        confidence,
        accuracy_std: std,
    }
}

#[test]
fn bins_fade_with_their_count() {
    assert_eq!(opacity(100, 100), 1.0);
    assert!((opacity(5, 100) - 0.24).abs() < 1e-12);
    assert!((opacity(0, 100) - 0.2).abs() < 1e-12);
    assert_eq!(opacity(3, 0), 1.0, "no division by zero, never above 1");
}

/// The ECE box goes top-left only where no mark is: the bin 0.4–0.47 of a handful of
/// samples with accuracy 1.0 reaches into that corner.
#[test]
fn ece_box_avoids_every_bar() {
    let confident = vec![
        bin(13.0 / 15.0, 900, 0.95, 0.93, 0.01),
        bin(0.6, 60, 0.5, 0.63, 0.05),
    ];
    assert!(ece_box_fits(&confident, 3, (0.4, 0.1)));
    let mut stray = confident.clone();
    stray.push(bin(0.4, 3, 1.0, 0.44, 0.0));
    assert!(!ece_box_fits(&stray, 3, (0.4, 0.1)));
    // A bar whose error bar (drawn: 60 samples over 3 seeds ≥ 10 per seed) reaches the box.
    let tall = vec![bin(0.3, 60, 0.8, 0.35, 0.15)];
    assert!(!ece_box_fits(&tall, 3, (0.4, 0.1)));
    // The same bin with 12 samples has no error bar, and the box fits above it.
    let small = vec![bin(0.3, 12, 0.8, 0.35, 0.15)];
    assert!(ece_box_fits(&small, 3, (0.4, 0.1)));
    // Empty bins draw nothing.
    assert!(ece_box_fits(&[bin(0.4, 0, 1.0, 0.44, 0.0)], 3, (0.4, 0.1)));
}

/// Every mark of the diagram has a key entry; the error-bar entry only when a bin is big enough
/// to get one; the ECE is printed once; the histogram's axis has several ticks.
#[test]
fn reliability_diagram_keys_every_mark() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("reliability.svg");
    let bins = vec![
        bin(0.4, 3, 1.0, 0.44, 0.5),
        bin(0.8, 300, 0.75, 0.83, 0.04),
        bin(14.0 / 15.0, 700, 0.97, 0.98, 0.01),
    ];
    reliability_diagram(&path, "mixup — balanced", &bins, &[0.031, 0.029, 0.036]).unwrap();
    let texts = svg_texts(&path);
    for entry in [
        "accuracy (outlined bar)",
        "gap to mean confidence",
        "±1 std over 3 seeds (bins ≥ 10/seed)",
        "perfect calibration",
        "fainter: fewer samples",
    ] {
        assert!(texts.iter().any(|t| t == entry), "{entry}: {texts:?}");
    }
    assert_eq!(
        texts
            .iter()
            .filter(|t| t.starts_with("ECE = 3.20%"))
            .count(),
        1,
        "{texts:?}"
    );
    for tick in ["0", "20", "40", "60", "% of samples"] {
        assert!(texts.iter().any(|t| t == tick), "{tick}: {texts:?}");
    }

    // Only the 3-sample bin has a spread: no error bar is drawn, so none is keyed.
    let only_small = vec![bin(0.4, 3, 1.0, 0.44, 0.5), bin(0.9, 900, 0.9, 0.95, 0.0)];
    reliability_diagram(&path, "erm — balanced", &only_small, &[0.03, 0.04]).unwrap();
    assert!(!svg_texts(&path).iter().any(|t| t.contains("std")));
}
