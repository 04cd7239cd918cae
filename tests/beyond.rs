//! Beyond the test set: corrupted test sets, out-of-distribution scores and detection metrics,
//! OOD images of another shape, the `evaluate:` / `ood:` sections and a grid run that stores
//! them.

use std::fs;
use std::path::Path;

use icm::data::conform::conform;
use icm::data::corrupt::corrupt;
use icm::data::{Corruption, Dataset, ImageShape, Normalize, Standardiser};
use icm::metrics::ood::{auroc, average_precision, fpr_at_tpr};
use icm::metrics::{detection, OodScore};
use icm::spec::parse_experiment;
use icm::train::BeyondSets;

/// Raw (0..1) RGB images of 20 × 24: smooth gradients (a different one per channel) and a
/// bright square, like a natural image's shading and an object.
fn rgb_images(n: usize) -> Dataset {
    let shape = ImageShape {
        channels: 3,
        height: 20,
        width: 24,
    };
    let mut images = Vec::new();
    for i in 0..n {
        for c in 0..3 {
            for y in 0..20 {
                for x in 0..24 {
                    let base = 0.2
                        + 0.25 * ((x + i) as f32 / 24.0)
                        + 0.15 * (y as f32 / 20.0) * (c as f32 / 2.0);
                    let square = (6..12).contains(&y) && (8..16).contains(&x);
                    images.push(if square { 0.9 } else { base });
                }
            }
        }
    }
    Dataset {
        images,
        labels: (0..n).map(|i| i % 2).collect(),
        shape,
        classes: 2,
        background: vec![0.0; shape.numel()],
    }
}

fn distance(a: &Dataset, b: &Dataset) -> f64 {
    a.images
        .iter()
        .zip(&b.images)
        .map(|(x, y)| ((x - y) as f64).powi(2))
        .sum::<f64>()
        .sqrt()
}

/// Real images in colour at another size: the first 40 digits test images at 3 × 20 × 24, each
/// channel tinted differently.
fn rgb_digits() -> Dataset {
    let digits = icm::data::load_digits().raw_test;
    let shape = ImageShape {
        channels: 3,
        height: 20,
        width: 24,
    };
    let mut rgb = conform(&digits.subset(&(0..40).collect::<Vec<_>>()), shape);
    let plane = 20 * 24;
    for img in rgb.images.chunks_mut(shape.numel()) {
        for (c, channel) in img.chunks_mut(plane).enumerate() {
            channel.iter_mut().for_each(|x| *x *= 0.6 + 0.2 * c as f32);
        }
    }
    rgb
}

#[test]
fn every_corruption_is_the_identity_at_severity_0_and_grows_with_severity() {
    let grey = icm::data::load_digits().raw_test;
    for data in [grey, rgb_digits()] {
        for c in Corruption::ALL {
            assert_eq!(corrupt(&data, c, 0, 7).images, data.images, "{c:?}");
            let mut last = 0.0;
            for s in 1..=5 {
                let out = corrupt(&data, c, s, 7);
                assert_eq!(out.shape, data.shape);
                assert_eq!(out.labels, data.labels);
                assert!(out.images.iter().all(|x| (0.0..=1.0).contains(x)));
                let d = distance(&out, &data);
                assert!(
                    d > last,
                    "{c:?} {:?}: severity {s} distance {d} after {last}",
                    data.shape
                );
                last = d;
            }
        }
    }
}

#[test]
fn corruptions_are_deterministic_per_seed() {
    let data = rgb_images(3);
    for c in Corruption::ALL {
        assert_eq!(
            corrupt(&data, c, 3, 11).images,
            corrupt(&data, c, 3, 11).images,
            "{c:?}"
        );
    }
    // The random ones change with the seed.
    for c in [
        Corruption::GaussianNoise,
        Corruption::ShotNoise,
        Corruption::ImpulseNoise,
    ] {
        assert_ne!(
            corrupt(&data, c, 3, 11).images,
            corrupt(&data, c, 3, 12).images,
            "{c:?}"
        );
    }
}

#[test]
fn contrast_and_brightness_have_their_documented_values() {
    // One 1 × 1 × 2 grey image, pixels 0.2 and 0.6 (mean 0.4).
    let data = Dataset {
        images: vec![0.2, 0.6],
        labels: vec![0],
        shape: ImageShape {
            channels: 1,
            height: 1,
            width: 2,
        },
        classes: 1,
        background: vec![0.0; 2],
    };
    // Severity 2: factor 0.5 towards the mean; + 0.2.
    let contrast = corrupt(&data, Corruption::Contrast, 2, 0).images;
    let m = (0.2f32 as f64 + 0.6f32 as f64) / 2.0;
    assert_eq!(
        contrast,
        vec![
            (m + (0.2f32 as f64 - m) * 0.5) as f32,
            (m + (0.6f32 as f64 - m) * 0.5) as f32
        ]
    );
    let bright = corrupt(&data, Corruption::Brightness, 5, 0).images;
    assert_eq!(bright, vec![(0.2f32 as f64 + 0.5) as f32, 1.0]);
}

/// In-distribution scores [0.9, 0.8, 0.8, 0.3] against OOD scores [0.8, 0.5, 0.1], by hand:
/// AUROC = (3 + 2.5 + 2.5 + 1) / 12; AUPR-in = 0.25·1 + 0.5·0.75 + 0.25·4/6 = 19/24;
/// AUPR-out (negated scores) = 1/3·1 + 1/3·2/3 + 1/3·1/2 = 13/18; FPR@95 needs all four
/// in-distribution images, threshold 0.3, accepting 0.8 and 0.5: 2/3.
#[test]
fn detection_metrics_match_hand_computed_values_with_ties() {
    let inside = [0.9, 0.8, 0.8, 0.3];
    let outside = [0.8, 0.5, 0.1];
    let d = detection(&inside, &outside).unwrap();
    assert_eq!(d.auroc, 9.0 / 12.0);
    assert!((d.aupr_in - 19.0 / 24.0).abs() < 1e-12, "{}", d.aupr_in);
    assert!((d.aupr_out - 13.0 / 18.0).abs() < 1e-12, "{}", d.aupr_out);
    assert_eq!(d.fpr95, 2.0 / 3.0);
    // Exactly 95 % of the in-distribution images at a threshold tied with an OOD image: the tied
    // OOD image is accepted too.
    let mut inside = vec![0.9; 19];
    inside.push(0.2);
    assert_eq!(fpr_at_tpr(&inside, &[0.9, 0.5], 0.95), 0.5);
    // All tied: chance.
    assert_eq!(auroc(&[0.5, 0.5], &[0.5]), 0.5);
    assert_eq!(average_precision(&[0.5, 0.5], &[0.5]), 2.0 / 3.0);
    assert!(detection(&[], &[0.1]).is_none());
}

#[test]
fn auroc_is_the_rank_formula_for_any_order_of_tied_scores() {
    // Scores on a coarse grid, so many tie; a fixed pseudo-random sequence.
    let mut state = 12345u64;
    let mut next = || {
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((state >> 33) % 7) as f64 / 7.0
    };
    let inside: Vec<f64> = (0..300).map(|_| next()).collect();
    let outside: Vec<f64> = (0..200).map(|_| next()).collect();
    let (mut wins, mut ties) = (0u64, 0u64);
    for &a in &inside {
        for &b in &outside {
            wins += (a > b) as u64;
            ties += (a == b) as u64;
        }
    }
    let pairs = (inside.len() * outside.len()) as f64;
    let rank = wins as f64 / pairs + 0.5 * ties as f64 / pairs;
    assert!((auroc(&inside, &outside) - rank).abs() < 1e-12);
    let mut reversed = inside.clone();
    reversed.reverse();
    assert_eq!(auroc(&reversed, &outside), auroc(&inside, &outside));
    assert_eq!(
        average_precision(&reversed, &outside),
        average_precision(&inside, &outside)
    );
}

#[test]
fn ood_scores_are_msp_max_logit_and_energy() {
    let logits = [2.0f32, 0.0, 0.0, 1.0, 1.0, 1.0];
    let lse = |m: f64, s: f64| m + s.ln();
    let s0 = 1.0 + (-2.0f64).exp() + (-2.0f64).exp();
    assert_eq!(OodScore::Msp.scores(&logits, 3), vec![1.0 / s0, 1.0 / 3.0]);
    assert_eq!(OodScore::MaxLogit.scores(&logits, 3), vec![2.0, 1.0]);
    assert_eq!(
        OodScore::Energy.scores(&logits, 3),
        vec![lse(2.0, s0), lse(1.0, 3.0)]
    );
    assert_eq!(
        OodScore::Msp.scores(&[f32::NAN, 0.0], 2),
        vec![f64::NEG_INFINITY]
    );
}

#[test]
fn ood_images_of_another_shape_are_converted_as_documented() {
    let target = ImageShape {
        channels: 3,
        height: 5,
        width: 7,
    };
    // Grey → RGB: the plane repeated; a constant image stays constant when resized.
    let grey = Dataset {
        images: vec![0.25; 9],
        labels: vec![3],
        shape: ImageShape {
            channels: 1,
            height: 3,
            width: 3,
        },
        classes: 10,
        background: vec![0.0; 9],
    };
    let out = conform(&grey, target);
    assert_eq!(out.shape, target);
    assert_eq!(out.images.len(), 105);
    assert!(out.images.iter().all(|&x| (x - 0.25).abs() < 1e-6));
    // RGB → grey at the same size: the luma.
    let rgb = Dataset {
        images: vec![0.2, 0.4, 0.6],
        labels: vec![0],
        shape: ImageShape {
            channels: 3,
            height: 1,
            width: 1,
        },
        classes: 1,
        background: vec![0.0; 3],
    };
    let one = ImageShape {
        channels: 1,
        height: 1,
        width: 1,
    };
    assert_eq!(
        conform(&rgb, one).images,
        vec![0.299f32 * 0.2 + 0.587 * 0.4 + 0.114 * 0.6]
    );
    // The embedded digits (8 × 8) upscaled to 28 × 28 keep their range and mean.
    let digits = icm::data::load_digits().raw_test;
    let big = conform(
        &digits,
        ImageShape {
            channels: 1,
            height: 28,
            width: 28,
        },
    );
    assert_eq!(big.images.len(), 360 * 784);
    let mean = |v: &[f32]| v.iter().map(|&x| x as f64).sum::<f64>() / v.len() as f64;
    assert!((mean(&big.images) - mean(&digits.images)).abs() < 0.01);
}

#[test]
fn ood_sets_take_the_training_shape_and_statistics() {
    let test = rgb_images(4);
    let stats = Standardiser::fit(&test, Normalize::PerChannel);
    let ood: icm::spec::OodSpec =
        serde_yaml::from_str("sets: {digits: {dataset: digits}, noise: uniform_noise}").unwrap();
    let empty = test.subset(&[]);
    let sets = BeyondSets::build(None, Some(&ood), &test, &stats, &empty).unwrap();
    let names: Vec<&str> = sets.ood.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["digits", "noise"]);
    let mut want = conform(&icm::data::load_digits().raw_test, test.shape);
    stats.apply(&mut want);
    assert_eq!(sets.ood[0].1.images, want.images);
    assert_eq!(sets.ood[0].1.shape, test.shape);
    assert_eq!(sets.ood[1].1.len(), 4);
    assert_eq!(sets.ood[1].1.shape, test.shape);
}

#[test]
fn held_out_classes_leave_training_and_become_an_ood_set() {
    let (data, held) = icm::data::load_holding_out(
        &icm::data::DatasetSpec::default(),
        &icm::data::Preprocess::default(),
        &[1, 8],
    )
    .unwrap();
    assert_eq!(data.train.classes, 8);
    assert_eq!(data.test.class_counts(), vec![36; 8]);
    assert_eq!(data.train.len(), 1437 - 146 - 138);
    assert_eq!(held.len(), 72);
    assert!(held.labels.iter().all(|&y| y == 1 || y == 8));
    let err = icm::data::load_holding_out(
        &icm::data::DatasetSpec::default(),
        &icm::data::Preprocess::default(),
        &[10],
    )
    .unwrap_err();
    assert!(format!("{err:#}").contains("held-out class 10 does not exist"));
}

const GRID: &str = "\
name: beyond
splits: [balanced]
model: {arch: mlp, hidden: [32]}
train: {epochs: 2, batch_size: 64, lr: 0.05}
methods: [erm]
seeds: [0]
";

#[test]
fn the_new_sections_enter_run_ids_only_when_set_and_bad_values_are_named() {
    let path = Path::new("x.yaml");
    let plain = parse_experiment(GRID, path).unwrap().runs()[0].run_id();
    let with = format!("{GRID}evaluate: {{corruptions: all, severities: [1, 3]}}\n");
    let exp = parse_experiment(&with, path).unwrap();
    assert_eq!(exp.evaluate.as_ref().unwrap().corruptions.len(), 8);
    assert_ne!(exp.runs()[0].run_id(), plain);
    let bad = format!("{GRID}evaluate: {{corruptions: [blur], severities: [1, 6]}}\n");
    let err = format!("{:#}", parse_experiment(&bad, path).unwrap_err());
    assert!(
        err.contains("x.yaml") && err.contains("evaluate.severities[1]"),
        "{err}"
    );
    let part = format!("{with}tables: [{{name: t, metric: corruption_accuracy@digits}}]\n");
    let err = format!("{:#}", parse_experiment(&part, path).unwrap_err());
    assert!(
        err.contains("x.yaml") && err.contains("tables[0].metric") && err.contains("`digits`"),
        "{err}"
    );
    // An OOD metric without an `ood:` section would be a table of dashes.
    let part = format!("{with}tables: [{{name: t, metric: ood_auroc}}]\n");
    let err = format!("{:#}", parse_experiment(&part, path).unwrap_err());
    assert!(
        err.contains("tables[0].metric") && err.contains("add an `ood:` section"),
        "{err}"
    );
    let ok = format!("{with}tables: [{{name: t, metric: corruption_ece@rotate}}]\n");
    assert!(parse_experiment(&ok, path).is_ok());
    let unknown = format!("{GRID}evaluate: {{corruptions: [fog]}}\n");
    let err = format!("{:#}", parse_experiment(&unknown, path).unwrap_err());
    assert!(err.contains("x.yaml") && err.contains("fog"), "{err}");
}

#[test]
fn a_grid_stores_corruption_and_ood_metrics_beside_the_others() {
    let tmp = tempfile::tempdir().unwrap();
    let yaml = format!(
        "{GRID}evaluate: {{corruptions: [gaussian_noise, rotate], severities: [1, 5], images: 100}}\n\
         ood: {{held_out_classes: [9], sets: {{noise: gaussian_noise}}}}\n\
         tables: [{{name: noise, metric: ood_auroc@noise}}]\n"
    );
    let exp = parse_experiment(&yaml, &tmp.path().join("b.yaml")).unwrap();
    let opts = icm::grid::runner::RunOptions {
        quiet: true,
        ..Default::default()
    };
    icm::grid::runner::run_grid(&exp, tmp.path(), &opts).unwrap();
    let run = &exp.runs()[0];
    let dir = icm::grid::records::run_dir(tmp.path(), "beyond", &run.run_id());
    let m = icm::grid::records::read_metrics(&dir.join("metrics.json")).unwrap();
    let got: Vec<(String, u8)> = m
        .test
        .corrupted
        .iter()
        .map(|c| (c.corruption.clone(), c.severity))
        .collect();
    let want = [
        ("gaussian_noise", 1),
        ("gaussian_noise", 5),
        ("rotate", 1),
        ("rotate", 5),
    ];
    assert_eq!(got, want.map(|(c, s)| (c.to_string(), s)).to_vec());
    let sets: Vec<(String, OodScore)> = m
        .test
        .ood
        .iter()
        .map(|o| (o.set.clone(), o.score))
        .collect();
    assert_eq!(sets.len(), 6);
    assert_eq!(sets[0], ("held_out".to_string(), OodScore::Msp));
    assert_eq!(sets[3], ("noise".to_string(), OodScore::Msp));
    assert_eq!(m.train_class_counts.len(), 9);
    assert_eq!(m.test_size, 324);
    assert!(m.beyond_seconds.is_some());
    let acc = icm::metrics::catalog::metric("corruption_accuracy").unwrap();
    let mean = m.test.corrupted.iter().map(|c| c.accuracy).sum::<f64>() / 4.0;
    assert_eq!(acc.value(&m.test, &m.train_class_counts), Some(mean));
    // Per part: one OOD set, one corruption, one severity.
    let noise = icm::metrics::catalog::metric("ood_auroc@noise").unwrap();
    let want = m
        .test
        .ood
        .iter()
        .find(|o| o.set == "noise" && o.score == OodScore::Msp);
    assert_eq!(
        noise.value(&m.test, &[]),
        Some(want.unwrap().detection.auroc)
    );
    let rotate = icm::metrics::catalog::metric("corruption_accuracy@rotate").unwrap();
    let five = icm::metrics::catalog::metric("corruption_accuracy@5").unwrap();
    let c = &m.test.corrupted;
    assert_eq!(
        rotate.value(&m.test, &[]),
        Some((c[2].accuracy + c[3].accuracy) / 2.0)
    );
    assert_eq!(
        five.value(&m.test, &[]),
        Some((c[1].accuracy + c[3].accuracy) / 2.0)
    );
    assert!(icm::metrics::catalog::metric("accuracy@rotate").is_none());
    let scores = fs::read_to_string(dir.join("ood_scores.csv")).unwrap();
    assert_eq!(scores.lines().next(), Some("set,msp"));
    // 324 test images, 36 held-out images, 324 noise images.
    assert_eq!(scores.lines().count(), 1 + 324 + 36 + 324);
    // The report: a table of one OOD set's AUROC, the severity figure and the score histograms.
    let out = icm::report::write_report(
        &icm::report::ReportSource::Experiment(Box::new(exp.clone())),
        tmp.path(),
        &tmp.path().join("reports"),
        icm::report::Formats::default(),
    )
    .unwrap();
    let table = fs::read_to_string(out.dir.join("tables/noise.md")).unwrap();
    let auroc = want.unwrap().detection.auroc * 100.0;
    assert!(table.contains(&format!("| erm | {auroc:.2} |")), "{table}");
    for fig in [
        "figures/severity-balanced.png",
        "figures/ood-scores-erm-balanced.png",
    ] {
        assert!(out.figures.contains(&fig.to_string()), "{:?}", out.figures);
        assert!(out.dir.join(fig).is_file() && out.dir.join(fig.replace(".png", ".svg")).is_file());
    }
    // A record without the new fields (an older run) still reads, with none of them.
    let old = fs::read_to_string(dir.join("metrics.json")).unwrap();
    let mut value: serde_json::Value = serde_json::from_str(&old).unwrap();
    let obj = value.as_object_mut().unwrap();
    obj.remove("corrupted");
    obj.remove("ood");
    obj.remove("beyond_seconds");
    fs::write(dir.join("metrics.json"), value.to_string()).unwrap();
    let m = icm::grid::records::read_metrics(&dir.join("metrics.json")).unwrap();
    assert!(m.test.corrupted.is_empty() && m.test.ood.is_empty());
    assert_eq!(acc.value(&m.test, &m.train_class_counts), None);
}
