//! Report tables from fixed run records: exact means, sample stds, n and bolding (ties,
//! lower-is-better), LaTeX well-formedness, and the full report on disk.

use std::path::Path;

use icm::grid::records::RunMetrics;
use icm::metrics::TestMetrics;
use icm::report::aggregate::{aggregate, Aggregates};
use icm::report::collect::{runs_frame, RunRecord};
use icm::report::layouts::{tables, TableInput};
use icm::report::tables::Table;
use icm::spec::{parse_experiment, LoadedExperiment, RunConfig};

const GRID: &str = "\
name: fixed
splits:
  - balanced
  - long_tailed: {ratio: 10}
model: {arch: mlp, hidden: [8]}
train: {epochs: 1, batch_size: 8, lr: 0.1}
methods: [erm, mixup, icm-mixup]
seeds: [0, 1, 2]
";

fn exp() -> LoadedExperiment {
    parse_experiment(GRID, Path::new("fixed.yaml")).unwrap()
}

/// A run record with the given accuracy and ECE; per-class accuracies give shot groups.
fn record(config: &RunConfig, accuracy: f64, ece: f64) -> RunRecord {
    RunRecord {
        dir: "unused".into(),
        config: config.clone(),
        metrics: RunMetrics {
            run_id: config.run_id(),
            experiment: "fixed".into(),
            method: config.method.display_name(),
            split: config.split.slug(),
            split_title: config.split.title(),
            seed: config.seed,
            test: TestMetrics {
                accuracy,
                ece,
                adaptive_ece: ece,
                mce: ece,
                nll: 0.5,
                brier: 0.1,
                per_class_accuracy: vec![Some(accuracy), Some(accuracy / 2.0)],
                corrupted: vec![],
                ood: vec![],
            },
            train_class_counts: vec![150, 10],
            train_size: 160,
            test_size: 100,
            epochs: 1,
            train_seconds: 1.0,
            beyond_seconds: None,
            device: Default::default(),
            trainer_revision: icm::train::TRAINER_REVISION,
            diverged: None,
        },
    }
}

/// Accuracy per (method, split): erm 0.90/0.92/0.94 (mean 0.92, std 0.02); mixup 0.92 with one
/// seed missing on balanced (n = 2, mean 0.92, std 0); icm-mixup 0.80, 0.90, 1.00 (mean 0.90,
/// std 0.1). ECE: erm 0.05, mixup 0.03, icm-mixup 0.03 (a tie for lowest).
fn fixed_records(e: &LoadedExperiment) -> Vec<RunRecord> {
    let mut out = Vec::new();
    for cfg in e.runs() {
        let s = cfg.seed as f64;
        let (acc, ece) = match cfg.method.display_name().as_str() {
            "erm" => (0.90 + 0.02 * s, 0.05),
            "mixup" => (0.92, 0.03),
            _ => (0.80 + 0.10 * s, 0.03),
        };
        if cfg.method.display_name() == "mixup" && cfg.seed == 2 && cfg.split.slug() == "balanced" {
            continue;
        }
        out.push(record(&cfg, acc, ece));
    }
    out
}

fn built(e: &LoadedExperiment) -> Vec<Table> {
    tables_of(e, &fixed_records(e)).0
}

/// The experiment's tables over `records`, and their aggregates.
fn tables_of(e: &LoadedExperiment, records: &[RunRecord]) -> (Vec<Table>, Aggregates) {
    let agg = aggregate(&runs_frame(records).unwrap()).unwrap();
    let input = TableInput {
        expected_n: Some(e.seeds.len()),
        dataset: &e.dataset,
        splits: &e.splits,
        methods: &e.methods,
        aggregates: &agg,
    };
    let t = tables(&input, &e.tables);
    (t, agg)
}

#[test]
fn aggregation_gives_exact_means_stds_and_n() {
    let e = exp();
    let records = fixed_records(&e);
    let agg = aggregate(&runs_frame(&records).unwrap()).unwrap();
    let erm = agg.get("digits", "erm", "balanced", "accuracy").unwrap();
    assert!((erm.mean - 0.92).abs() < 1e-12 && (erm.std.unwrap() - 0.02).abs() < 1e-12);
    assert_eq!(erm.n, 3);
    let mixup = agg.get("digits", "mixup", "balanced", "accuracy").unwrap();
    assert_eq!((mixup.n, mixup.std), (2, Some(0.0)));
    let icm = agg
        .get("digits", "icm-mixup", "long_tailed-10", "accuracy")
        .unwrap();
    assert!((icm.mean - 0.90).abs() < 1e-12 && (icm.std.unwrap() - 0.1).abs() < 1e-12);
    // Shot groups: class 0 has 150 training images (many), class 1 has 10 (few).
    let few = agg
        .get("digits", "erm", "long_tailed-10", "few_shot")
        .unwrap();
    assert!((few.mean - 0.46).abs() < 1e-12);
    assert!(agg
        .get("digits", "erm", "balanced", "medium_shot")
        .is_none());
}

#[test]
fn markdown_bolds_best_with_ties_and_direction_and_shows_missing_n() {
    let e = exp();
    let t = built(&e);
    let acc = t
        .iter()
        .find(|t| t.name == "accuracy")
        .unwrap()
        .to_markdown();
    // Balanced accuracy: erm 92.00 and mixup 92.00 tie for best; icm-mixup 90.00 is italic: its
    // paired differences to erm (0.10, 0.02, −0.06) are no evidence of a difference.
    assert!(acc.contains("| erm | **92.00 ± 2.00** |"), "{acc}");
    assert!(acc.contains("| mixup | **92.00 ± 0.00 (n=2)** |"), "{acc}");
    assert!(acc.contains("| icm-mixup | *90.00 ± 10.00* |"), "{acc}");
    assert!(
        acc.contains("*italic*: not distinguishable from the best"),
        "{acc}"
    );
    let ece = t.iter().find(|t| t.name == "ece").unwrap().to_markdown();
    // Lower is better: mixup and icm-mixup tie at 3.00; erm is worse by 2.00 on every seed, a
    // difference the paired test detects, so it has no mark.
    assert!(ece.contains("| erm | 5.00 ± 0.00 |"), "{ece}");
    assert!(ece.contains("| icm-mixup | **3.00 ± 0.00** |"), "{ece}");
    let shots = t
        .iter()
        .find(|t| t.name == "long_tailed_shots")
        .unwrap()
        .to_markdown();
    assert!(shots.contains("long-tailed ρ=10: few"), "{shots}");
}

#[test]
fn latex_is_well_formed() {
    let e = exp();
    for t in built(&e) {
        let tex = t.to_latex();
        let opens = tex.matches('{').count() - tex.matches("\\{").count();
        let closes = tex.matches('}').count() - tex.matches("\\}").count();
        assert_eq!(opens, closes, "balanced braces in {}:\n{tex}", t.name);
        assert!(
            tex.contains("\\toprule") && tex.contains("\\midrule") && tex.contains("\\bottomrule")
        );
        assert_eq!(tex.matches("\\begin{tabular}").count(), 1);
        for line in tex.lines().filter(|l| !l.starts_with('%')) {
            // Every underscore outside math is escaped.
            let unescaped = line
                .match_indices('_')
                .filter(|(i, _)| !line[..*i].ends_with('\\'))
                .count();
            assert_eq!(unescaped, 0, "unescaped underscore in `{line}`");
            assert_eq!(
                line.matches('$').count() % 2,
                0,
                "unbalanced math in `{line}`"
            );
        }
    }
    let acc = built(&e)
        .into_iter()
        .find(|t| t.name == "accuracy")
        .unwrap()
        .to_latex();
    assert!(
        acc.contains("$\\mathbf{92.00 \\pm 0.00}$\\,(n{=}2)"),
        "{acc}"
    );
    assert!(acc.contains("long-tailed $\\rho$=10"), "{acc}");
    assert!(
        acc.contains("icm-mixup & $\\underline{90.00 \\pm 10.00}$"),
        "{acc}"
    );
    assert_eq!(
        icm::report::tables::latex_escape("a_b & 50%"),
        "a\\_b \\& 50\\%"
    );
}

#[test]
fn table_presets_from_yaml() {
    let yaml = GRID.replace(
        "seeds: [0, 1, 2]",
        "seeds: [0, 1, 2]\ntables: [balanced, long_tailed, icm_axes, {name: nll, metric: nll, precision: 4}]",
    );
    let e = parse_experiment(&yaml, Path::new("fixed.yaml")).unwrap();
    let names: Vec<String> = built(&e).iter().map(|t| t.name.clone()).collect();
    assert_eq!(
        names,
        [
            "balanced",
            "long_tailed",
            "long_tailed_shots",
            "icm_axes",
            "nll"
        ]
    );
    let icm_axes = built(&e)
        .into_iter()
        .find(|t| t.name == "icm_axes")
        .unwrap();
    assert_eq!(icm_axes.rows.len(), 1, "only ICM methods");
    let bad = GRID.replace(
        "seeds: [0, 1, 2]",
        "seeds: [0, 1, 2]\ntables: [{name: x, metric: acuracy}]",
    );
    let err = format!(
        "{:#}",
        parse_experiment(&bad, Path::new("fixed.yaml")).unwrap_err()
    );
    assert!(
        err.contains("tables[0]") && err.contains("unknown metric `acuracy`"),
        "{err}"
    );
    let bad = GRID.replace("seeds: [0, 1, 2]", "seeds: [0, 1, 2]\ntables: [balansed]");
    let err = format!(
        "{:#}",
        parse_experiment(&bad, Path::new("fixed.yaml")).unwrap_err()
    );
    assert!(err.contains("did you mean `balanced`"), "{err}");
}

/// When every cell misses a seed, n is still shown (measured against the grid's seed count).
#[test]
fn missing_seed_in_every_cell_still_shows_n() {
    let e = exp();
    let records: Vec<RunRecord> = fixed_records(&e)
        .into_iter()
        .filter(|r| r.config.seed != 2)
        .collect();
    let agg = aggregate(&runs_frame(&records).unwrap()).unwrap();
    let input = TableInput {
        expected_n: Some(3),
        dataset: &e.dataset,
        splits: &e.splits,
        methods: &e.methods,
        aggregates: &agg,
    };
    let md = tables(&input, &[])[0].to_markdown();
    assert!(md.contains("over 3 seeds") && md.contains("(n=2)"), "{md}");
}

/// With splits as rows and methods as columns, bold still marks the best method on each split
/// (not the best split of each method), in Markdown and in the CSV `best` column.
#[test]
fn bold_marks_the_best_method_when_splits_are_rows() {
    let yaml = GRID.replace(
        "seeds: [0, 1, 2]",
        "seeds: [0, 1, 2]\ntables: [{name: ece_by_split, metric: ece, rows: split}]",
    );
    let e = parse_experiment(&yaml, Path::new("fixed.yaml")).unwrap();
    let t = built(&e).into_iter().next().unwrap();
    let md = t.to_markdown();
    // ECE: erm 5.00 on both splits (the worst method), mixup and icm-mixup 3.00.
    assert!(
        md.contains("| balanced | 5.00 ± 0.00 | **3.00 ± 0.00 (n=2)** | **3.00 ± 0.00** |"),
        "{md}"
    );
    assert!(
        md.contains("| long-tailed ρ=10 | 5.00 ± 0.00 | **3.00 ± 0.00** | **3.00 ± 0.00** |"),
        "{md}"
    );
    let csv = t.to_csv();
    assert!(
        csv.contains("balanced,,erm,0.05000000000000001,0,3,false,false"),
        "{csv}"
    );
    assert!(
        csv.contains("balanced,,icm-mixup,0.03,0,3,true,false"),
        "{csv}"
    );
}

/// One seed says nothing about noise: no cell is bold or italic.
#[test]
fn one_seed_gives_no_marks() {
    let e = exp();
    let records: Vec<RunRecord> = fixed_records(&e)
        .into_iter()
        .filter(|r| r.config.seed == 0)
        .collect();
    let agg = aggregate(&runs_frame(&records).unwrap()).unwrap();
    let input = TableInput {
        expected_n: Some(1),
        dataset: &e.dataset,
        splits: &e.splits,
        methods: &e.methods,
        aggregates: &agg,
    };
    for t in tables(&input, &e.tables) {
        let md = t.to_markdown();
        let body = &md[md.find("|---").unwrap()..];
        assert!(!body.contains('*'), "{md}");
        assert!(!t.to_csv().contains(",true"), "{}", t.to_csv());
    }
}

/// A cell with diverged runs is never marked (the mean of the runs that survived a collapse is
/// not the method's mean), and claims count the diverged runs they leave out.
#[test]
fn cells_with_diverged_runs_are_not_marked_and_claims_count_them() {
    let e = exp();
    let mut records = fixed_records(&e);
    for r in records.iter_mut() {
        let m = &mut r.metrics;
        if m.method == "icm-mixup" && m.split == "long_tailed-10" && m.seed == 0 {
            m.diverged = Some(icm::train::Divergence {
                epoch: 1,
                what: "training loss became NaN".into(),
            });
        }
    }
    let (t, agg) = tables_of(&e, &records);
    let acc = t.iter().find(|t| t.name == "accuracy").unwrap();
    let md = acc.to_markdown();
    // Long-tailed: icm-mixup's two surviving seeds (0.90, 1.00) average 95.00, above erm's and
    // mixup's 92.00, but one of its three runs diverged: erm and mixup share the bold.
    assert!(
        md.contains("| icm-mixup | *90.00 ± 10.00* | 95.00 ± 7.07 (n=2, 1 diverged) |"),
        "{md}"
    );
    assert!(
        md.contains("| erm | **92.00 ± 2.00** | **92.00 ± 2.00** |"),
        "{md}"
    );
    assert!(md.contains("no diverged run"), "{md}");
    let rows = icm::report::claims::claim_rows(&e.claims, &e.splits, &e.dataset, &agg);
    let lt = rows
        .iter()
        .find(|r| r.split.slug() == "long_tailed-10" && r.claim.metric == "accuracy")
        .unwrap();
    assert_eq!((lt.result.n, lt.result.unpaired, lt.diverged), (2, 1, 1));
    let table = icm::report::claims::to_markdown(&rows);
    assert!(
        table.contains("| 2 (1 diverged, 1 unpaired left out) |"),
        "{table}"
    );
    // Holm's column adjusts each tested row's t-test p over every tested row of the table.
    let tested: Vec<f64> = rows.iter().filter_map(|r| r.result.t_p).collect();
    assert!(tested.len() >= 2, "{table}");
    let want = icm::metrics::paired::holm_adjusted(&tested);
    let got: Vec<f64> = rows.iter().filter_map(|r| r.t_p_holm).collect();
    assert_eq!(got, want);
    for r in &rows {
        assert_eq!(r.t_p_holm.is_some(), r.result.t_p.is_some());
        if let (Some(h), Some(p)) = (r.t_p_holm, r.result.t_p) {
            assert!(h >= p && h <= 1.0, "{h} {p}");
        }
    }
}

/// A diverged run's history holds NaN, infinite and enormous values (loss, gradient norm up to
/// 1e34): charts draw what can be drawn, on log axes where asked, and finish.
#[test]
fn charts_skip_non_finite_points_and_draw_huge_ones() {
    use icm::report::plots::{line_chart, panels, Panel, Series};
    let tmp = tempfile::tempdir().unwrap();
    let series = vec![Series {
        name: "icm-mixup".into(),
        points: vec![
            (1.0, 6.7, Some(0.1)),
            (2.0, f64::NAN, None),
            (3.0, f64::INFINITY, Some(f64::NAN)),
            (4.0, 1.9e34, None),
            (5.0, 9.7, None),
        ],
        running: false,
    }];
    let path = tmp.path().join("loss.svg");
    let chart = Panel {
        x_desc: "epoch".into(),
        y_desc: "loss".into(),
        series: series.clone(),
        ..Panel::default()
    };
    line_chart(&path, "loss", &chart).unwrap();
    let svg = std::fs::read_to_string(&path).unwrap();
    assert!(svg.contains("icm-mixup"), "the series is drawn");
    assert!(
        !svg.contains("NaN") && !svg.contains("inf"),
        "no non-finite coordinate"
    );
    let panel = |log_y| Panel {
        title: "gradient norm".into(),
        x_desc: "epoch".into(),
        y_desc: "L2 norm".into(),
        log_y,
        series: series.clone(),
        ..Panel::default()
    };
    let path = tmp.path().join("diagnostics.svg");
    panels(&path, "diagnostics", &[panel(true), panel(false)], 2).unwrap();
    let svg = std::fs::read_to_string(&path).unwrap();
    // Log ticks at every sixth power of ten over the ~40 decades drawn (1, 1e6, ..., 1e36);
    // linear ticks in powers-of-ten notation.
    assert!(svg.contains("\n1e6\n") && svg.contains("\n1e36\n"), "{svg}");
    assert!(!svg.contains("\n1e5\n"), "{svg}");
    assert!(svg.contains("\n1.5e34\n"), "{svg}");
}

/// Per-run series (`method (seed k)`, as in the diagnostics figure) share their method's colour
/// and one legend entry: 45 runs make 9 entries, not 45.
#[test]
fn per_run_series_share_one_legend_entry_per_method() {
    use icm::report::plots::{line_chart, Panel, Series};
    let tmp = tempfile::tempdir().unwrap();
    let run = |name: &str, y: f64| Series {
        name: name.into(),
        points: vec![(1.0, y, None), (2.0, y + 1.0, None)],
        running: false,
    };
    let series = [
        run("mixup (seed 0)", 1.0),
        run("mixup (seed 1)", 2.0),
        run("icm-mixup (seed 0)", 3.0),
    ];
    let path = tmp.path().join("runs.svg");
    let chart = Panel {
        x_desc: "epoch".into(),
        y_desc: "loss".into(),
        series: series.to_vec(),
        ..Panel::default()
    };
    line_chart(&path, "runs", &chart).unwrap();
    let svg = std::fs::read_to_string(&path).unwrap();
    assert!(!svg.contains("(seed"), "{svg}");
    assert_eq!(svg.matches("\nmixup\n").count(), 1, "{svg}");
    assert_eq!(svg.matches("\nicm-mixup\n").count(), 1, "{svg}");
}

/// A grid with captions, labels and a method name full of LaTeX's special characters.
const PAPER: &str = "\
name: paper
splits:
  - balanced
  - long_tailed: {ratio: 10}
model: {arch: mlp, hidden: [8]}
train: {epochs: 1, batch_size: 8, lr: 0.1}
methods: [erm, {mixup: {name: \"mixup_50% & #1\"}}, icm-mixup]
seeds: [0, 1, 2]
tables:
  - {preset: long_tailed, caption: \"Long-tailed, ρ = 10 & 5% of ≥ 20_x\"}
  - {preset: balanced, label: \"tab:bal\"}
  - {name: calib, metric: ece}
";

fn paper_tables() -> Vec<Table> {
    let e = parse_experiment(PAPER, Path::new("paper.yaml")).unwrap();
    let mut tables = tables_of(&e, &fixed_records(&e)).0;
    for t in &mut tables {
        t.default_label("paper");
    }
    tables
}

#[test]
fn latex_tables_carry_caption_label_and_escaped_names() {
    let tables = paper_tables();
    let tex = |name: &str| tables.iter().find(|t| t.name == name).unwrap().to_latex();
    let lt = tex("long_tailed");
    assert!(lt.contains("\\begin{table}[t]\n\\centering\n"), "{lt}");
    assert!(
        lt.contains("\\caption{Long-tailed, $\\rho$ = 10 \\& 5\\% of $\\geq$ 20\\_x}\n"),
        "{lt}"
    );
    assert!(lt.contains("\\label{tab:paper-long_tailed}\n"), "{lt}");
    assert!(lt.ends_with("\\end{tabular}\n\\end{table}\n"), "{lt}");
    assert!(lt.contains("\nmixup\\_50\\% \\& \\#1 & "), "{lt}");
    // The shot table of the same entry: its own title as caption, its own label.
    let shots = tex("long_tailed_shots");
    assert!(
        shots.contains("\\caption{Long-tailed: many (\\textgreater{} 100)"),
        "{shots}"
    );
    assert!(
        shots.contains("\\label{tab:paper-long_tailed_shots}"),
        "{shots}"
    );
    // A label alone: the title is the caption.
    let bal = tex("balanced");
    assert!(
        bal.contains("\\caption{Balanced: accuracy and calibration}\n\\label{tab:bal}\n"),
        "{bal}"
    );
    // Neither: the bare tabular, to \input into one's own float.
    let calib = tex("calib");
    assert!(!calib.contains("\\begin{table}") && !calib.contains("\\caption"));
    assert!(calib.contains("\\begin{tabular}{lrr}"), "{calib}");
}

/// Every table compiles with pdflatex in a minimal document with booktabs (CI installs Debian's
/// texlive; `scripts/check-latex` does the same for real reports).
#[test]
fn latex_tables_compile_with_pdflatex() {
    let Ok(version) = std::process::Command::new("pdflatex")
        .arg("--version")
        .output()
    else {
        assert!(
            std::env::var_os("CI").is_none(),
            "pdflatex is missing: .ci/run installs texlive-latex-base and texlive-latex-recommended"
        );
        eprintln!("no pdflatex on this machine: LaTeX check not run (CI runs it)");
        return;
    };
    assert!(version.status.success());
    let tmp = tempfile::tempdir().unwrap();
    let mut tables = paper_tables();
    tables.extend(built(&exp()));
    for t in &tables {
        let doc = format!(
            "\\documentclass{{article}}\n\\usepackage{{booktabs}}\n\\begin{{document}}\n{}\\end{{document}}\n",
            t.to_latex()
        );
        std::fs::write(tmp.path().join("doc.tex"), &doc).unwrap();
        let out = std::process::Command::new("pdflatex")
            .args(["-halt-on-error", "-interaction=nonstopmode", "doc.tex"])
            .current_dir(tmp.path())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "table {} does not compile:\n{}\n{doc}",
            t.name,
            String::from_utf8_lossy(&out.stdout)
        );
    }
}

#[test]
fn table_entries_with_bad_captions_or_labels_are_refused() {
    let with = |tables: &str| {
        let yaml = GRID.to_string() + "tables:\n  - " + tables + "\n";
        match parse_experiment(&yaml, Path::new("t.yaml")) {
            Ok(_) => panic!("accepted: {tables}"),
            Err(e) => format!("{e:#}"),
        }
    };
    let e = with("{preset: balanced, metric: ece}");
    assert!(e.contains("takes only `caption` and `label`"), "{e}");
    let e = with("{name: x, metric: ece, label: \"tab x\"}");
    assert!(
        e.contains("tables[0]") && e.contains("label `tab x`"),
        "{e}"
    );
    let e = with("{preset: balanced, captoin: x}");
    assert!(e.contains("captoin"), "{e}");
    let e = with("{caption: x}");
    assert!(e.contains("needs `name` and `metric`"), "{e}");
}

/// `history.csv` of a run being trained: a last line without its newline is being written and
/// is left out; a file with no whole line has no epochs.
#[test]
fn partial_history_leaves_out_a_torn_last_line() {
    use icm::report::collect::partial_history;
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("history.csv");
    assert!(partial_history(tmp.path()).unwrap().is_empty());
    std::fs::write(
        &file,
        "epoch,lr,train_loss,test_accuracy\n1,0.1,2.5,0.5\n2,0.1,2.",
    )
    .unwrap();
    let h = partial_history(tmp.path()).unwrap();
    assert_eq!(h.len(), 1);
    assert_eq!(
        (h[0].epoch, h[0].train_loss, h[0].test_accuracy),
        (1, 2.5, 0.5)
    );
    std::fs::write(&file, "epoch,lr,train_loss,test_acc").unwrap();
    assert!(partial_history(tmp.path()).unwrap().is_empty());
    std::fs::write(&file, "").unwrap();
    assert!(partial_history(tmp.path()).unwrap().is_empty());
    // A whole line that does not parse is an error naming the file and line.
    std::fs::write(&file, "epoch,lr,train_loss,test_accuracy\n1,0.1,x,0.5\n").unwrap();
    let e = format!("{:#}", partial_history(tmp.path()).unwrap_err());
    assert!(
        e.contains("history.csv line 2") && e.contains("train_loss"),
        "{e}"
    );
}

/// A finished 2 × 2 grid (erm, icm-mixup; seeds 0, 1) on the balanced digits.
fn watched_grid(tmp: &Path) -> (LoadedExperiment, std::path::PathBuf) {
    use icm::grid::runner::{run_grid, RunOptions};
    let yaml = "name: watch\nsplits: [balanced]\nmodel: {arch: mlp, hidden: [8]}\n\
                train: {epochs: 2, batch_size: 64, lr: 0.05}\nmethods: [erm, icm-mixup]\n\
                seeds: [0, 1]\n";
    let exp = parse_experiment(yaml, Path::new("watch.yaml")).unwrap();
    let results = tmp.join("results");
    run_grid(&exp, &results, &RunOptions::default()).unwrap();
    (exp, results)
}

/// Makes the finished run in `dir` look as if it were still training: no `metrics.json`, and a
/// live lock (held by this test's process).
fn make_running(dir: &Path) {
    let lock = icm::grid::locks::LockInfo {
        host: icm::util::host_name(),
        pid: std::process::id(),
        started: 0,
        nonce: 7,
    };
    let _ = std::fs::remove_file(dir.join("metrics.json"));
    std::fs::write(dir.join("lock.json"), serde_json::to_string(&lock).unwrap()).unwrap();
}

fn report_of(exp: &LoadedExperiment, results: &Path, tmp: &Path) -> icm::report::ReportOutput {
    use icm::report::{write_report, Formats, ReportSource};
    write_report(
        &ReportSource::Experiment(Box::new(exp.clone())),
        results,
        &tmp.join("reports"),
        Formats::default(),
    )
    .unwrap()
}

/// `icm report` while a grid runs: finished runs in the tables, the running run's epochs so far
/// in the training curves, keyed `(running)`, and the page says how many runs are running.
#[test]
fn report_of_a_running_grid_draws_running_runs_in_curves_only() {
    let tmp = tempfile::tempdir().unwrap();
    let (exp, results) = watched_grid(tmp.path());
    // icm-mixup seed 1 still trains: one epoch written and the next being written.
    let cfg = exp
        .runs()
        .into_iter()
        .find(|r| r.method.display_name() == "icm-mixup" && r.seed == 1)
        .unwrap();
    let dir = icm::grid::records::run_dir(&results, "watch", &cfg.run_id());
    make_running(&dir);
    let history = std::fs::read_to_string(dir.join("history.csv")).unwrap();
    let lines: Vec<&str> = history.lines().collect();
    let partial = format!("{}\n{}\n{}", lines[0], lines[1], &lines[2][..4]);
    std::fs::write(dir.join("history.csv"), partial).unwrap();

    let report = report_of(&exp, &results, tmp.path());
    assert_eq!(report.running, vec![dir.clone()]);
    let why = &report
        .unfinished
        .iter()
        .find(|u| u.dir == dir)
        .unwrap()
        .reason;
    assert!(why.starts_with("running: 1 epoch so far"), "{why}");
    let acc = report.tables.iter().find(|t| t.name == "accuracy").unwrap();
    let row = acc
        .rows
        .iter()
        .position(|r| r.title == "icm-mixup")
        .unwrap();
    assert!(
        acc.cell_text(row, 0).ends_with("(n=1)"),
        "{}",
        acc.cell_text(row, 0)
    );
    let svg = std::fs::read_to_string(report.dir.join("figures/curves-balanced.svg")).unwrap();
    let compact: String = svg.split('\n').map(str::trim).collect();
    for text in [
        ">icm-mixup (running)<",
        ">train loss — cross-entropy<",
        ">train loss — ICM loss<",
        ">test accuracy<",
    ] {
        assert!(compact.contains(text), "{text} not in the curves");
    }
    for page in ["index.html", "table.md"] {
        let text = std::fs::read_to_string(report.dir.join(page)).unwrap();
        assert!(text.contains("1 run is still running"), "{page}");
    }
}

/// Right after the start every run is running: the report draws curves, and only curves.
#[test]
fn report_of_a_grid_whose_runs_all_run_has_curves_only() {
    let tmp = tempfile::tempdir().unwrap();
    let (exp, results) = watched_grid(tmp.path());
    for cfg in exp.runs() {
        make_running(&icm::grid::records::run_dir(
            &results,
            "watch",
            &cfg.run_id(),
        ));
    }
    let report = report_of(&exp, &results, tmp.path());
    assert_eq!(report.running.len(), 4);
    let acc = report.tables.iter().find(|t| t.name == "accuracy").unwrap();
    assert_eq!(acc.cell_text(0, 0), "–");
    let mut figures = report.figures.clone();
    figures.sort();
    assert_eq!(
        figures,
        [
            "figures/curves-balanced.png",
            "figures/diagnostics-balanced.png"
        ]
    );
    let md = std::fs::read_to_string(report.dir.join("table.md")).unwrap();
    assert!(md.contains("4 runs are still running"), "{md}");
}

/// The same with a real `icm run` in another process: while its one run trains (a live lock, a
/// `history.csv` growing, no `metrics.json`), `icm report` draws it as running. A run folder
/// gets its `config.yaml` when the run is claimed, not only when it finishes.
#[test]
fn a_report_drawn_while_icm_run_trains_shows_the_run_as_running() {
    use std::process::{Command, Stdio};
    let tmp = tempfile::tempdir().unwrap();
    let yaml = tmp.path().join("live.yaml");
    std::fs::write(
        &yaml,
        "name: live\nsplits: [balanced]\nmodel: {arch: mlp, hidden: [16]}\n\
         train: {epochs: 100000, batch_size: 64, lr: 0.05}\nmethods: [mixup]\nseeds: [0]\n",
    )
    .unwrap();
    let (results, reports) = (tmp.path().join("results"), tmp.path().join("reports"));
    let icm = env!("CARGO_BIN_EXE_icm");
    /// Ends the training process however the test ends.
    struct Killed(std::process::Child);
    impl Drop for Killed {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let _training = Killed(
        Command::new(icm)
            .arg("run")
            .arg(&yaml)
            .args(["--quiet", "--no-report", "--results"])
            .arg(&results)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let exp = parse_experiment(&std::fs::read_to_string(&yaml).unwrap(), &yaml).unwrap();
    let dir = icm::grid::records::run_dir(&results, "live", &exp.runs()[0].run_id());
    let started = std::time::Instant::now();
    while std::fs::read_to_string(dir.join("history.csv")).map_or(true, |h| h.lines().count() < 3) {
        assert!(started.elapsed().as_secs() < 60, "no epoch written in 60 s");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let out = Command::new(icm)
        .arg("report")
        .arg(&yaml)
        .arg("--results")
        .arg(&results)
        .arg("--out")
        .arg(&reports)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let md = std::fs::read_to_string(reports.join("live/table.md")).unwrap();
    assert!(md.contains("1 run is still running"), "{md}");
    assert!(md.contains("running: "), "{md}");
}

/// A one-column table of `cells` (accuracy, higher is better, shown ×100 with 2 decimals).
fn one_column(cells: Vec<icm::report::aggregate::Cell>) -> Table {
    use icm::report::tables::Axis;
    let axis = |title: String, metric: Option<String>| Axis {
        method: metric.is_none().then(|| title.clone()),
        title,
        group: None,
        split: None,
        metric,
        point: vec![],
    };
    Table {
        name: "t".into(),
        title: "t".into(),
        expected_n: None,
        rows: (0..cells.len())
            .map(|i| axis(format!("m{i}"), None))
            .collect(),
        columns: vec![axis("accuracy".into(), Some("accuracy".into()))],
        cells: cells.into_iter().map(|c| vec![Some(c)]).collect(),
        formats: vec![(icm::metrics::catalog::Better::Higher, 100.0, 2)],
        marks: true,
        float: Default::default(),
    }
}

/// A cell of per-(seed, data seed) values, its mean and sample std.
fn cell_of(values: &[((u64, u64), f64)]) -> icm::report::aggregate::Cell {
    let n = values.len() as f64;
    let mean = values.iter().map(|v| v.1).sum::<f64>() / n;
    let var = values.iter().map(|v| (v.1 - mean).powi(2)).sum::<f64>() / (n - 1.0);
    icm::report::aggregate::Cell {
        mean,
        std: Some(var.sqrt()),
        n: values.len(),
        values: values.iter().copied().collect(),
        diverged: 0,
    }
}

/// Bold compares means as shown: 92.004 % and 91.996 % both read 92.00, so both are bold.
#[test]
fn means_equal_as_shown_are_both_bold() {
    use icm::report::tables::Mark;
    let t = one_column(vec![
        cell_of(&[((0, 0), 0.92004), ((1, 0), 0.92004)]),
        cell_of(&[((0, 0), 0.91996), ((1, 0), 0.91996)]),
    ]);
    assert_eq!((t.mark(0, 0), t.mark(1, 0)), (Mark::Best, Mark::Best));
}

/// Italic needs a test that says "no detectable difference": a cell whose seeds share no pair
/// with the best cell's was never tested, so it is not marked.
#[test]
fn a_cell_without_pairs_to_the_best_is_not_italic() {
    use icm::report::tables::Mark;
    let t = one_column(vec![
        cell_of(&[((0, 0), 0.90), ((1, 0), 0.92)]),
        cell_of(&[((2, 0), 0.80), ((3, 0), 0.82)]),
    ]);
    assert_eq!((t.mark(0, 0), t.mark(1, 0)), (Mark::Best, Mark::None));
}
