//! Which tables a report has and what their rows and columns are: the experiment's `tables:`
//! entries (the paper's presets or custom tables), or the defaults; then every cell is looked up
//! in the aggregates.

use super::aggregate::Aggregates;
use super::tables::{Axis, Table};
use crate::data::{DatasetSpec, Split};
use crate::metrics::catalog::{metric, Better};
use crate::mix::{Method, Target};
use crate::spec::run::point_row;
use crate::spec::tables::{Float, Preset, RowKind, TableEntry, TableSpec};

/// What the tables are built from.
pub struct TableInput<'a> {
    /// Seeds per cell the grid asks for (an experiment file's `seeds`), if known.
    pub expected_n: Option<usize>,
    pub dataset: &'a DatasetSpec,
    pub splits: &'a [Split],
    pub methods: &'a [Method],
    pub aggregates: &'a Aggregates,
}

/// What a table shows, before its cells are looked up.
struct TableLayout<'a> {
    name: &'a str,
    title: &'a str,
    rows: Vec<Axis>,
    columns: Vec<Axis>,
    /// Metric of every cell unless a row or column sets its own.
    metric: Option<&'a str>,
    precision: Option<usize>,
    better: Option<Better>,
    /// Diverged runs averaged in.
    include_diverged: bool,
}

impl<'a> TableLayout<'a> {
    /// A table of one metric with these rows and columns, shown as the metric says.
    fn of_metric(
        name: &'a str,
        title: &'a str,
        metric: &'a str,
        rows: Vec<Axis>,
        columns: Vec<Axis>,
    ) -> Self {
        TableLayout {
            name,
            title,
            rows,
            columns,
            metric: Some(metric),
            precision: None,
            better: None,
            include_diverged: false,
        }
    }
}

impl TableInput<'_> {
    fn method_rows(&self, keep: impl Fn(&Method) -> bool) -> Vec<Axis> {
        self.methods
            .iter()
            .filter(|m| keep(m))
            .map(|m| Axis::method(&m.display_name()))
            .collect()
    }

    fn split_columns(&self, keep: impl Fn(&Split) -> bool) -> Vec<Axis> {
        self.splits
            .iter()
            .filter(|s| keep(s))
            .map(Axis::split)
            .collect()
    }

    /// Looks up every cell of `layout`; `None` for a table without rows or columns.
    fn build(&self, layout: TableLayout) -> Option<Table> {
        let TableLayout {
            name,
            title,
            rows,
            columns,
            metric: table_metric,
            precision,
            better,
            include_diverged,
        } = layout;
        if rows.is_empty() || columns.is_empty() {
            return None;
        }
        let dataset = self.dataset.name();
        let metric_of = |r: &Axis, c: &Axis| -> String {
            c.metric
                .clone()
                .or_else(|| r.metric.clone())
                .or_else(|| table_metric.map(str::to_string))
                .unwrap_or_else(|| "accuracy".into())
        };
        let cells = rows
            .iter()
            .map(|r| {
                columns
                    .iter()
                    .map(|c| {
                        let method = r.method.as_ref().or(c.method.as_ref())?;
                        let method = &with_point(method, r, c);
                        let split = r.split.as_ref().or(c.split.as_ref())?;
                        let metric = metric_of(r, c);
                        let cell = if include_diverged {
                            self.aggregates
                                .get_with_diverged(&dataset, method, split, &metric)
                        } else {
                            self.aggregates.get(&dataset, method, split, &metric)
                        };
                        cell.cloned()
                    })
                    .collect()
            })
            .collect();
        let formats = columns
            .iter()
            .map(|c| {
                let m = metric(&metric_of(&rows[0], c));
                let (dir, scale, decimals) = m.map_or((Better::Higher, 1.0, 3), |i| {
                    (i.better, i.scale, i.decimals)
                });
                (better.unwrap_or(dir), scale, precision.unwrap_or(decimals))
            })
            .collect();
        Some(Table {
            name: name.into(),
            title: title.into(),
            expected_n: self.expected_n,
            rows,
            columns,
            cells,
            formats,
            marks: true,
            float: Float::default(),
        })
    }
}

/// The row name of a cell whose row and column each fix some sweep values: the method in the
/// sweep point they fix together (`mixup [train.lr=0.1, data_seed=1]`).
fn with_point(method: &str, r: &Axis, c: &Axis) -> String {
    if r.point.is_empty() && c.point.is_empty() {
        return method.to_string();
    }
    let mut values: Vec<&(usize, String)> = r.point.iter().chain(&c.point).collect();
    values.sort();
    let label: Vec<&str> = values.iter().map(|(_, v)| v.as_str()).collect();
    point_row(method, &label.join(", "))
}

/// A sweep as the tables see it: the methods as the file lists them, and each point's swept
/// values (key, value) in the sweep's order.
#[derive(Debug, Clone, Default)]
pub struct SweepAxes {
    pub methods: Vec<Method>,
    pub points: Vec<Vec<(String, String)>>,
}

impl SweepAxes {
    /// The distinct combinations, in point order, of the points' values of the keys in `keys`
    /// (`inside`) or of the other keys; each value with its key's position.
    fn combinations(&self, keys: &[String], inside: bool) -> Vec<Vec<(usize, String)>> {
        let mut out: Vec<Vec<(usize, String)>> = Vec::new();
        for point in &self.points {
            let combination: Vec<(usize, String)> = point
                .iter()
                .enumerate()
                .filter(|(_, (k, _))| keys.contains(k) == inside)
                .map(|(i, (k, v))| (i, format!("{k}={v}")))
                .collect();
            if !out.contains(&combination) {
                out.push(combination);
            }
        }
        out
    }
}

/// The text of sweep values: `train.lr=0.1, data_seed=1`.
fn values_text(values: &[(usize, String)]) -> String {
    let texts: Vec<&str> = values.iter().map(|(_, v)| v.as_str()).collect();
    texts.join(", ")
}

/// A custom table whose columns are the values of swept keys under each split; the rows are
/// the methods in each combination of the other swept keys.
fn swept_columns_table(input: &TableInput, spec: &TableSpec, sweep: &SweepAxes) -> Option<Table> {
    let title = format!("Test {}", metric(&spec.metric).expect("checked").title);
    let mut rows = Vec::new();
    for m in &sweep.methods {
        for values in sweep.combinations(&spec.columns, false) {
            rows.push(Axis {
                title: point_row(&m.display_name(), &values_text(&values)),
                point: values,
                ..Axis::method(&m.display_name())
            });
        }
    }
    let mut columns = Vec::new();
    for split in input.splits {
        for values in sweep.combinations(&spec.columns, true) {
            columns.push(Axis {
                title: values_text(&values),
                group: Some(split.title()),
                point: values,
                ..Axis::split(split)
            });
        }
    }
    input.build(TableLayout {
        precision: spec.precision,
        better: spec.better,
        include_diverged: spec.include_diverged,
        ..TableLayout::of_metric(&spec.name, &title, &spec.metric, rows, columns)
    })
}

/// The tables of an experiment: its `tables:` entries, or the defaults (accuracy, ECE, NLL and
/// Brier over all splits, plus the long-tailed shot table when there are long-tailed splits).
pub fn tables(input: &TableInput, entries: &[TableEntry]) -> Vec<Table> {
    swept_tables(input, entries, &SweepAxes::default())
}

/// [`tables`] of a swept experiment, whose custom tables may put swept keys in the columns.
pub fn swept_tables(input: &TableInput, entries: &[TableEntry], sweep: &SweepAxes) -> Vec<Table> {
    if entries.is_empty() {
        let mut out: Vec<Table> = ["accuracy", "ece", "nll", "brier"]
            .into_iter()
            .filter_map(|m| metric_table(input, m))
            .collect();
        out.extend(shot_table(input));
        let any_diverged = input
            .aggregates
            .cells
            .values()
            .flat_map(|m| m.values())
            .any(|c| c.diverged > 0);
        if any_diverged {
            out.extend(collapse_table(input));
        }
        return out;
    }
    let mut out = Vec::new();
    for entry in entries {
        let first = out.len();
        match entry {
            TableEntry::Custom(spec) if !spec.columns.is_empty() => {
                out.extend(swept_columns_table(input, spec, sweep))
            }
            TableEntry::Custom(spec) => out.extend(custom_table(input, spec)),
            TableEntry::Preset(Preset::Balanced, _) => out.extend(balanced_table(input)),
            TableEntry::Preset(Preset::LongTailed, _) => {
                out.extend(long_tailed_table(input));
                out.extend(shot_table(input));
            }
            TableEntry::Preset(Preset::DataConstrained, _) => {
                out.extend(data_constrained_table(input))
            }
            TableEntry::Preset(Preset::IcmAxes, _) => out.extend(icm_axes_table(input)),
            TableEntry::Preset(Preset::Collapse, _) => out.extend(collapse_table(input)),
        }
        // The caption is the entry's first table's (`long_tailed` also writes the shot table,
        // which keeps its own title as caption); each table gets its own default label.
        for (k, table) in out[first..].iter_mut().enumerate() {
            let float = entry.float();
            table.float = Float {
                caption: float.caption.clone().filter(|_| k == 0),
                label: float.label.clone().filter(|_| k == 0),
            };
            if float.is_set() && k > 0 {
                table.float.caption = Some(table.title.clone());
            }
        }
    }
    out
}

/// One metric, methods as rows, splits as columns.
fn metric_table(input: &TableInput, name: &str) -> Option<Table> {
    let title = format!("Test {}", metric(name).expect("known metric").title);
    input.build(TableLayout::of_metric(
        name,
        &title,
        name,
        input.method_rows(|_| true),
        input.split_columns(|_| true),
    ))
}

fn custom_table(input: &TableInput, spec: &TableSpec) -> Option<Table> {
    let title = format!(
        "Test {}",
        metric(&spec.metric).expect("checked at load time").title
    );
    let (methods, splits) = (input.method_rows(|_| true), input.split_columns(|_| true));
    let (rows, columns) = match spec.rows {
        RowKind::Method => (methods, splits),
        RowKind::Split => (splits, methods),
    };
    input.build(TableLayout {
        precision: spec.precision,
        better: spec.better,
        include_diverged: spec.include_diverged,
        ..TableLayout::of_metric(&spec.name, &title, &spec.metric, rows, columns)
    })
}

/// Accuracy and ECE on each balanced split.
fn balanced_table(input: &TableInput) -> Option<Table> {
    let mut columns = Vec::new();
    for s in input.splits.iter().filter(|s| matches!(s, Split::Balanced)) {
        for name in ["accuracy", "ece"] {
            columns.push(Axis {
                title: metric(name).expect("known").title.into(),
                group: Some(format!("{} ({})", input.dataset.name(), s.title())),
                metric: Some(name.into()),
                ..Axis::split(s)
            });
        }
    }
    input.build(TableLayout {
        metric: None,
        ..TableLayout::of_metric(
            "balanced",
            "Balanced: accuracy and calibration",
            "accuracy",
            input.method_rows(|_| true),
            columns,
        )
    })
}

/// Accuracy per imbalance ratio, ratios ascending.
fn long_tailed_table(input: &TableInput) -> Option<Table> {
    let mut lt: Vec<&Split> = input
        .splits
        .iter()
        .filter(|s| matches!(s, Split::LongTailed { .. }))
        .collect();
    lt.sort_by(|a, b| ratio(a).total_cmp(&ratio(b)));
    input.build(TableLayout::of_metric(
        "long_tailed",
        "Long-tailed: accuracy (%) per imbalance ratio",
        "accuracy",
        input.method_rows(|_| true),
        lt.into_iter().map(Axis::split).collect(),
    ))
}

fn ratio(s: &Split) -> f64 {
    match s {
        Split::LongTailed { ratio, .. } => *ratio,
        _ => 0.0,
    }
}

/// Accuracy per number of training images per class, ascending.
fn data_constrained_table(input: &TableInput) -> Option<Table> {
    let mut pc: Vec<&Split> = input
        .splits
        .iter()
        .filter(|s| matches!(s, Split::PerClass { .. }))
        .collect();
    pc.sort_by_key(|s| match s {
        Split::PerClass { k } => *k,
        _ => 0,
    });
    input.build(TableLayout::of_metric(
        "data_constrained",
        "Data-constrained: accuracy (%) per images per class",
        "accuracy",
        input.method_rows(|_| true),
        pc.into_iter().map(Axis::split).collect(),
    ))
}

/// The ICM methods only: the pair / class / dual axes ablation.
fn icm_axes_table(input: &TableInput) -> Option<Table> {
    input.build(TableLayout::of_metric(
        "icm_axes",
        "ICM axes ablation: accuracy (%)",
        "accuracy",
        input.method_rows(|m| m.target == Target::Icm),
        input.split_columns(|_| true),
    ))
}

/// Many / medium / few-shot accuracy for each long-tailed split.
fn shot_table(input: &TableInput) -> Option<Table> {
    let mut columns = Vec::new();
    for s in input
        .splits
        .iter()
        .filter(|s| matches!(s, Split::LongTailed { .. }))
    {
        for (name, title) in [
            ("many_shot", "many"),
            ("medium_shot", "medium"),
            ("few_shot", "few"),
        ] {
            columns.push(Axis {
                title: title.into(),
                group: Some(s.title()),
                metric: Some(name.into()),
                ..Axis::split(s)
            });
        }
    }
    input.build(TableLayout {
        metric: None,
        ..TableLayout::of_metric(
            "long_tailed_shots",
            "Long-tailed: many (> 100) / medium (20–100) / few (< 20) shot accuracy (%)",
            "accuracy",
            input.method_rows(|_| true),
            columns,
        )
    })
}

/// The collapse rate: the share of each method's runs on each split that diverged, `k of n`
/// beside it. Counts carry no per-seed test, so nothing is marked.
fn collapse_table(input: &TableInput) -> Option<Table> {
    let mut table = input.build(TableLayout::of_metric(
        "collapse",
        "Collapse rate: runs that diverged (%)",
        "accuracy",
        input.method_rows(|_| true),
        input.split_columns(|_| true),
    ))?;
    for row in &mut table.cells {
        for cell in row.iter_mut().flatten() {
            let total = cell.n + cell.diverged;
            cell.mean = cell.diverged as f64 / total.max(1) as f64;
            cell.std = None;
            cell.n = total;
            cell.values.clear();
        }
    }
    table.formats = vec![(Better::Lower, 100.0, 0); table.columns.len()];
    table.marks = false;
    Some(table)
}
