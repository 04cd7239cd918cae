//! Sweeps over any config field (`sweep:`, crossed keys and `zip:` blocks) and `--set`
//! overrides: how they expand, the errors they give (with the place and where the value came
//! from), and that a swept grid trains each point on its own data and reports and compares its
//! points apart.

use std::path::Path;

use icm::grid::records;
use icm::grid::runner::{run_grid, RunOptions};
use icm::report::{write_report, Formats, ReportSource};
use icm::spec::{parse_experiment, parse_experiment_with, LoadedExperiment, Override};

const BASE: &str = "\
name: swept
splits: [balanced]
model: {arch: mlp, hidden: [16]}
train: {epochs: 1, batch_size: 32, lr: 0.05}
methods: [mixup, icm-mixup]
seeds: [0, 1]
";

fn parse(yaml: &str) -> anyhow::Result<LoadedExperiment> {
    parse_experiment(yaml, Path::new("experiments/swept.yaml"))
}

fn with_sets(yaml: &str, sets: &[&str]) -> anyhow::Result<LoadedExperiment> {
    let overrides = sets
        .iter()
        .map(|s| Override::parse(s).map_err(anyhow::Error::msg))
        .collect::<anyhow::Result<Vec<_>>>()?;
    parse_experiment_with(yaml, Path::new("experiments/swept.yaml"), &overrides)
}

fn error(result: anyhow::Result<LoadedExperiment>) -> String {
    format!("{:#}", result.expect_err("must be refused"))
}

#[test]
fn a_sweep_crosses_its_keys_and_each_point_is_a_whole_experiment() {
    let exp = parse(&format!(
        "{BASE}sweep: {{train.lr: [0.05, 0.1], data_seed: [0, 1]}}\n"
    ))
    .unwrap();
    let labels: Vec<&str> = exp.points().iter().map(|(l, _)| *l).collect();
    assert_eq!(
        labels,
        [
            "train.lr=0.05, data_seed=0",
            "train.lr=0.05, data_seed=1",
            "train.lr=0.1, data_seed=0",
            "train.lr=0.1, data_seed=1"
        ]
    );
    let values: Vec<(f64, u64)> = exp
        .points()
        .iter()
        .map(|(_, p)| (p.train.lr, p.data_seed))
        .collect();
    assert_eq!(values, [(0.05, 0), (0.05, 1), (0.1, 0), (0.1, 1)]);
    // points × splits × methods × seeds, the point outermost.
    let runs = exp.runs();
    assert_eq!(runs.len(), 4 * 2 * 2);
    assert_eq!((runs[3].train.lr, runs[3].data_seed), (0.05, 0));
    assert_eq!((runs[4].train.lr, runs[4].data_seed), (0.05, 1));
    let rows: Vec<String> = exp.row_methods().iter().map(|m| m.display_name()).collect();
    assert_eq!(rows[0], "mixup [train.lr=0.05, data_seed=0]");
    assert_eq!(rows[4], "icm-mixup [train.lr=0.05, data_seed=0]");
    assert_eq!(rows.len(), 8);
}

#[test]
fn a_zip_block_advances_its_keys_together() {
    let exp = parse(&format!(
        "{BASE}sweep:\n  zip: {{train.lr: [0.05, 0.1], train.epochs: [1, 2]}}\n  model.hidden: [[8], [16, 8]]\n"
    ))
    .unwrap();
    let got: Vec<(f64, usize, Vec<usize>)> = exp
        .points()
        .iter()
        .map(|(_, p)| (p.train.lr, p.train.epochs, p.model.hidden.clone().unwrap()))
        .collect();
    assert_eq!(
        got,
        [
            (0.05, 1, vec![8]),
            (0.05, 1, vec![16, 8]),
            (0.1, 2, vec![8]),
            (0.1, 2, vec![16, 8])
        ]
    );
    assert_eq!(
        exp.points()[1].0,
        "train.lr=0.05, train.epochs=1, model.hidden=[16,8]"
    );
    // A key with one value is the same in every point: not part of the labels.
    let one = parse(&format!(
        "{BASE}sweep: {{train.lr: [0.05, 0.1], train.momentum: [0.8]}}\n"
    ))
    .unwrap();
    assert_eq!(one.points()[1].0, "train.lr=0.1");
    assert!(one.points().iter().all(|(_, p)| p.train.momentum == 0.8));
    // A sweep of one point is an override: no labels at all.
    let single = parse(&format!("{BASE}sweep: {{train.lr: [0.1]}}\n")).unwrap();
    assert!(single.sweep.is_empty());
    assert_eq!(single.train.lr, 0.1);
    assert_eq!(single.points()[0].0, "");
}

#[test]
fn sweep_mistakes_name_the_key_and_the_fix() {
    let e = error(parse(&format!("{BASE}sweep: {{seeds: [[0], [1]]}}\n")));
    assert!(
        e.starts_with("experiments/swept.yaml: `sweep.seeds`: `seeds` cannot be swept: it is already an axis of the grid"),
        "{e}"
    );
    let e = error(parse(&format!("{BASE}sweep: {{device: [cpu, cuda]}}\n")));
    assert!(
        e.contains("`sweep.device`: `device` cannot be swept: the device does not change a run"),
        "{e}"
    );
    let e = error(parse(&format!("{BASE}sweep: {{train.lrr: [0.1, 0.2]}}\n")));
    assert!(
        e.starts_with("experiments/swept.yaml: `sweep.train.lrr`: value 0.1: unknown field `lrr`"),
        "{e}"
    );
    assert!(e.ends_with("hint: did you mean `train.lr`?"), "{e}");
    let e = error(parse(&format!("{BASE}sweep: {{train.lr: [0.1, fast]}}\n")));
    assert!(
        e.starts_with(
            "experiments/swept.yaml: `sweep.train.lr`: value fast: invalid type: string \"fast\""
        ),
        "{e}"
    );
    let e = error(parse(&format!(
        "{BASE}sweep: {{zip: {{train.lr: [0.1, 0.2], train.epochs: [1]}}}}\n"
    )));
    assert_eq!(
        e,
        "experiments/swept.yaml: `sweep.zip`: the lists of a zip block advance together and \
         must have the same length: `train.lr` has 2 values, `train.epochs` has 1"
    );
    // A value the checks refuse names the sweep value it came from.
    let e = error(parse(&format!(
        "{BASE}sweep: {{train.batch_size: [8, 1]}}\n"
    )));
    assert!(
        e.starts_with("experiments/swept.yaml: `train.batch_size`: icm-mixup uses the ICM loss"),
        "{e}"
    );
    assert!(e.ends_with("(from `sweep: train.batch_size: 1`)"), "{e}");
    let e = error(parse(&format!("{BASE}sweep: {{train.lr: [0.1, -1]}}\n")));
    assert!(
        e.contains("`train.lr`") && e.ends_with("(from `sweep: train.lr: -1`)"),
        "{e}"
    );
    // Two values that resolve to the same runs.
    let e = error(parse(&format!(
        "{BASE}sweep: {{train.augment: [null, {{crop_padding: 0, flip: false}}]}}\n"
    )));
    assert!(e.contains("give the same runs"), "{e}");
    let e = error(parse(&format!(
        "{BASE}sweep: {{train.lr: [0.1, 0.2]}}\ntables: [{{name: t, metric: accuracy, columns: [data_seed]}}]\n"
    )));
    assert_eq!(
        e,
        "experiments/swept.yaml: `tables[0].columns`: `data_seed` is not a swept key; use one of `train.lr`"
    );
    let e = error(parse(&format!(
        "{BASE}tables: [{{name: t, metric: accuracy, columns: [train.lr]}}]\n"
    )));
    assert!(
        e.ends_with("this experiment sweeps nothing with more than one value (add a `sweep:`)"),
        "{e}"
    );
    let e = error(parse(&format!("{BASE}sweep: [train.lr]\n")));
    assert!(e.starts_with("experiments/swept.yaml:"), "{e}");
}

#[test]
fn overrides_change_any_field_and_their_mistakes_name_them() {
    let exp = with_sets(BASE, &["train.lr=0.1", "model.hidden=[8, 8]", "seeds=[3]"]).unwrap();
    assert_eq!(exp.train.lr, 0.1);
    assert_eq!(exp.model.hidden, Some(vec![8, 8]));
    assert_eq!(exp.seeds, [3]);
    assert_eq!(
        exp.overrides,
        ["train.lr=0.1", "model.hidden=[8, 8]", "seeds=[3]"]
    );
    // `--set sweep.<key>=...` sweeps from the command line.
    let swept = with_sets(BASE, &["sweep.data_seed=[0, 1]"]).unwrap();
    assert_eq!(swept.points().len(), 2);

    let e = error(with_sets(BASE, &["train.lr=abc"]));
    assert!(
        e.starts_with("experiments/swept.yaml: --set train.lr=abc: invalid type: string \"abc\", expected f64"),
        "{e}"
    );
    let e = error(with_sets(BASE, &["trian.lr=0.1"]));
    assert!(
        e.starts_with("experiments/swept.yaml: --set trian.lr=0.1: unknown field `trian`"),
        "{e}"
    );
    assert!(e.ends_with("hint: did you mean `train.lr`?"), "{e}");
    let e = error(with_sets(BASE, &["train.lr=-1"]));
    assert!(e.starts_with("experiments/swept.yaml: `train.lr`:"), "{e}");
    assert!(e.ends_with("(from `--set train.lr=-1`)"), "{e}");
    let e = error(with_sets(
        &format!("{BASE}sweep: {{train.lr: [0.05, 0.1]}}\n"),
        &["train.lr=0.2"],
    ));
    assert_eq!(
        e,
        "experiments/swept.yaml: --set train.lr=0.2: `train.lr` is swept, so every sweep point \
         replaces this value; change the sweep instead, e.g. `--set sweep.train.lr=[...]`"
    );
    let e = error(with_sets(BASE, &["train.lr.x=1"]));
    assert_eq!(
        e,
        "experiments/swept.yaml: --set train.lr.x=1: `train.lr` is `0.05`, which has no key `x`: \
         set `train.lr` whole instead"
    );
    let e = error(with_sets(BASE, &["train.lr"]));
    assert!(e.starts_with("--set train.lr: expected key=value"), "{e}");
    // The file must read on its own: its mistakes keep their line and column.
    let e = error(with_sets(
        &BASE.replace("lr: 0.05", "lrr: 0.05"),
        &["train.lr=0.1"],
    ));
    assert!(e.starts_with("experiments/swept.yaml:4:"), "{e}");
}

/// Each point trains on its own data: a sweep over the validation share holds out a different
/// number of images per point.
#[test]
fn each_point_trains_on_its_own_data() {
    let tmp = tempfile::tempdir().unwrap();
    let exp = parse(&format!(
        "{}sweep: {{validation: [0.1, 0.3]}}\n",
        BASE.replace("methods: [mixup, icm-mixup]", "methods: [erm]")
            .replace("seeds: [0, 1]", "seeds: [0]")
    ))
    .unwrap();
    let summary = run_grid(&exp, tmp.path(), &RunOptions::default()).unwrap();
    assert_eq!(summary.trained, 2);
    let sizes: Vec<usize> = exp
        .runs()
        .iter()
        .map(|r| {
            let dir = records::run_dir(tmp.path(), "swept", &r.run_id());
            records::read_metrics(&dir.join(records::METRICS_FILE))
                .unwrap()
                .train_size
        })
        .collect();
    // 1,437 pool images; per class round(n × share) held out.
    assert!(sizes[0] > sizes[1] + 250, "{sizes:?}");
}

/// The report keeps the points apart: one row per method and learning rate, and the default
/// claims (ICM-Mixup against Mixup) within each learning rate, never across.
#[test]
fn reports_and_claims_compare_only_within_a_point() {
    let tmp = tempfile::tempdir().unwrap();
    let (results, reports) = (tmp.path().join("results"), tmp.path().join("reports"));
    let exp = parse(&format!("{BASE}sweep: {{train.lr: [0.05, 0.1]}}\n")).unwrap();
    let summary = run_grid(&exp, &results, &RunOptions::default()).unwrap();
    assert_eq!(summary.trained, 8);
    let out = write_report(
        &ReportSource::Experiment(Box::new(exp.clone())),
        &results,
        &reports,
        Formats::default(),
    )
    .unwrap();
    let claims: Vec<(String, String, String, usize)> = out
        .claims
        .iter()
        .map(|c| {
            (
                c.claim.a.clone(),
                c.claim.b.clone(),
                c.claim.metric.clone(),
                c.result.n,
            )
        })
        .collect();
    let want = |lr: &str, metric: &str| {
        (
            format!("icm-mixup [train.lr={lr}]"),
            format!("mixup [train.lr={lr}]"),
            metric.to_string(),
            2,
        )
    };
    assert_eq!(
        claims,
        [
            want("0.05", "accuracy"),
            want("0.1", "accuracy"),
            want("0.05", "ece"),
            want("0.1", "ece")
        ]
    );
    let accuracy = out.tables.iter().find(|t| t.name == "accuracy").unwrap();
    let rows: Vec<&str> = accuracy.rows.iter().map(|r| r.title.as_str()).collect();
    assert_eq!(
        rows,
        [
            "mixup [train.lr=0.05]",
            "mixup [train.lr=0.1]",
            "icm-mixup [train.lr=0.05]",
            "icm-mixup [train.lr=0.1]"
        ]
    );
    assert!(accuracy
        .cells
        .iter()
        .flatten()
        .all(|c| c.as_ref().is_some_and(|c| c.n == 2)));
    // A claim's differences are exactly its own point's runs, paired by seed.
    let accuracy_of = |method: &str, lr: f64, seed: u64| {
        let run = exp
            .runs()
            .into_iter()
            .find(|r| r.method.display_name() == method && r.train.lr == lr && r.seed == seed)
            .unwrap();
        let dir = records::run_dir(&results, "swept", &run.run_id());
        records::read_metrics(&dir.join(records::METRICS_FILE))
            .unwrap()
            .test
            .accuracy
    };
    for (row, lr) in [(0, 0.05), (1, 0.1)] {
        let mean: f64 = [0, 1]
            .iter()
            .map(|&s| accuracy_of("icm-mixup", lr, s) - accuracy_of("mixup", lr, s))
            .sum::<f64>()
            / 2.0;
        assert!(
            (out.claims[row].result.mean - mean).abs() < 1e-12,
            "lr {lr}"
        );
    }
    // A table may put the learning rate in its columns: the same cells, methods as rows.
    let by_lr = parse(&format!(
        "{BASE}sweep: {{train.lr: [0.05, 0.1]}}\n\
         tables: [{{name: by_lr, metric: accuracy, columns: [train.lr]}}]\n"
    ))
    .unwrap();
    let out2 = write_report(
        &ReportSource::Experiment(Box::new(by_lr)),
        &results,
        &reports,
        Formats::default(),
    )
    .unwrap();
    let table = &out2.tables[0];
    let titles = |axes: &[icm::report::tables::Axis]| -> Vec<String> {
        axes.iter().map(|a| a.title.clone()).collect()
    };
    assert_eq!(titles(&table.rows), ["mixup", "icm-mixup"]);
    assert_eq!(titles(&table.columns), ["train.lr=0.05", "train.lr=0.1"]);
    assert_eq!(table.columns[1].group.as_deref(), Some("balanced"));
    for (r, c, row) in [(0, 0, 0), (0, 1, 1), (1, 0, 2), (1, 1, 3)] {
        assert_eq!(table.cells[r][c], accuracy.cells[row][0], "cell {r},{c}");
    }
    let md = std::fs::read_to_string(out2.dir.join("tables/by_lr.md")).unwrap();
    assert!(
        md.contains("| method | balanced: train.lr=0.05 | balanced: train.lr=0.1 |"),
        "{md}"
    );
    // `icm compare` tests a claim within each point too.
    let text = icm::report::compare(&exp, &results, "icm-mixup", "mixup", None).unwrap();
    assert!(
        text.contains("icm-mixup [train.lr=0.05] vs mixup [train.lr=0.05]"),
        "{text}"
    );
    assert!(
        text.contains("icm-mixup [train.lr=0.1] vs mixup [train.lr=0.1]"),
        "{text}"
    );
    assert!(
        !text.contains("[train.lr=0.05] vs mixup [train.lr=0.1]"),
        "{text}"
    );
}

/// A Slurm job array runs the grid this command saw: its tasks get the same `--set` overrides,
/// and a swept grid has one task per run of every point.
#[test]
fn slurm_tasks_get_the_same_overrides() {
    let tmp = tempfile::tempdir().unwrap();
    let exp = with_sets(BASE, &["train.lr=0.1", "sweep.data_seed=[0, 1]"]).unwrap();
    let opts = icm::grid::slurm::SlurmOptions {
        partition: None,
        time: "01:00:00".into(),
        gpus: None,
        cpus: 2,
        array_parallelism: None,
        tasks: None,
    };
    let (script, tasks) = icm::grid::slurm::write_script(&exp, tmp.path(), &opts).unwrap();
    assert_eq!(tasks, 2 * 2 * 2);
    let text = std::fs::read_to_string(script).unwrap();
    assert!(
        text.contains("swept.yaml' --set 'train.lr=0.1' --set 'sweep.data_seed=[0, 1]' --results"),
        "{text}"
    );
}
