//! `cargo bench --bench report`: time `icm report` over 10,000 synthetic run records
//! (5 methods × 4 splits × 500 seeds, each run folder with config, metrics, reliability and
//! a 10-epoch history), the reading, aggregation, tables, charts and HTML included.

use std::fs;
use std::path::Path;
use std::time::Instant;

use icm::grid::records::{self, Reliability, RunMetrics};
use icm::metrics::{Bin, TestMetrics};
use icm::report::{write_report, Formats, ReportSource};
use icm::spec::parse_experiment;

const GRID: &str = "\
name: synthetic
splits:
  - {long_tailed: {ratio: 10}}
  - {long_tailed: {ratio: 50}}
  - {long_tailed: {ratio: 100}}
  - {long_tailed: {ratio: 200}}
model: {arch: mlp, hidden: [8]}
train: {epochs: 10, batch_size: 8, lr: 0.1}
methods: [erm, mixup, icm-mixup, remix, icm-remix]
";

fn main() {
    let seeds: Vec<String> = (0..500).map(|s| s.to_string()).collect();
    let yaml = format!("{GRID}seeds: [{}]\n", seeds.join(", "));
    let exp = parse_experiment(&yaml, Path::new("synthetic.yaml")).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let results = tmp.path().join("results");
    let runs = exp.runs();
    let start = Instant::now();
    for (i, cfg) in runs.iter().enumerate() {
        let dir = records::run_dir(&results, &exp.name, &cfg.run_id());
        fs::create_dir_all(&dir).unwrap();
        let acc = 0.7 + (i % 97) as f64 / 500.0;
        let bins: Vec<Bin> = (0..15)
            .map(|k| Bin {
                lower: k as f64 / 15.0,
                upper: (k + 1) as f64 / 15.0,
                count: k * 3,
                confidence: (k as f64 + 0.5) / 15.0,
                accuracy: ((k as f64 + 0.5) / 15.0 * acc / 0.8).min(1.0),
            })
            .collect();
        let metrics = RunMetrics {
            run_id: cfg.run_id(),
            experiment: exp.name.clone(),
            method: cfg.method.display_name(),
            split: cfg.split.slug(),
            split_title: cfg.split.title(),
            seed: cfg.seed,
            test: TestMetrics {
                accuracy: acc,
                ece: 0.05,
                adaptive_ece: 0.05,
                mce: 0.1,
                nll: 0.5,
                brier: 0.2,
                per_class_accuracy: vec![Some(acc); 10],
                corrupted: vec![],
                ood: vec![],
            },
            train_class_counts: vec![500, 300, 150, 90, 60, 40, 25, 15, 8, 5],
            train_size: 1193,
            test_size: 1000,
            epochs: 10,
            train_seconds: 1.0,
            beyond_seconds: None,
            device: Default::default(),
            trainer_revision: icm::train::TRAINER_REVISION,
            diverged: None,
        };
        fs::write(
            dir.join(records::CONFIG_FILE),
            serde_yaml::to_string(cfg).unwrap(),
        )
        .unwrap();
        fs::write(
            dir.join(records::METRICS_FILE),
            serde_json::to_string(&metrics).unwrap(),
        )
        .unwrap();
        let rel = Reliability { ece: 0.05, bins };
        fs::write(
            dir.join(records::RELIABILITY_FILE),
            serde_json::to_string(&rel).unwrap(),
        )
        .unwrap();
        let mut history = String::from("epoch,lr,train_loss,test_accuracy\n");
        for e in 1..=10 {
            history.push_str(&format!(
                "{e},0.1,{},{}\n",
                2.0 / e as f64,
                acc * e as f64 / 10.0
            ));
        }
        fs::write(dir.join(records::HISTORY_FILE), history).unwrap();
    }
    eprintln!(
        "wrote {} synthetic runs in {:.1} s",
        runs.len(),
        start.elapsed().as_secs_f64()
    );

    let start = Instant::now();
    let out = write_report(
        &ReportSource::Experiment(Box::new(exp)),
        &results,
        &tmp.path().join("reports"),
        Formats::default(),
    )
    .unwrap();
    let seconds = start.elapsed().as_secs_f64();
    println!(
        "icm report over {} run records: {seconds:.2} s ({} tables, {} figures as PNG + SVG)",
        runs.len(),
        out.tables.len(),
        out.figures.len()
    );
}
