//! Paper tables: which tables (the experiment's `tables:` or defaults, with presets for the
//! paper's balanced / long-tailed / data-constrained / ICM-axes tables), and their rendering as
//! Markdown, LaTeX (booktabs) and CSV with `mean ± std` cells and the best value per column in bold.

use std::fmt;

use serde::de::{self, MapAccess, Visitor};
use serde::{Deserialize, Deserializer};

use super::aggregate::{Aggregates, Cell};
use crate::config::{DatasetSpec, Split};
use crate::method::{Method, Target};

/// Which way a metric improves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Better {
    Higher,
    Lower,
}

/// Display defaults of a metric: title, direction, scale (100 for percentages), decimals.
pub fn metric_info(metric: &str) -> Option<(&'static str, Better, f64, usize)> {
    Some(match metric {
        "accuracy" => ("accuracy (%)", Better::Higher, 100.0, 2),
        "ece" => ("ECE (%)", Better::Lower, 100.0, 2),
        "adaptive_ece" => ("adaptive ECE (%)", Better::Lower, 100.0, 2),
        "mce" => ("MCE (%)", Better::Lower, 100.0, 2),
        "nll" => ("NLL", Better::Lower, 1.0, 3),
        "brier" => ("Brier", Better::Lower, 1.0, 4),
        "many_shot" => ("many-shot acc. (%)", Better::Higher, 100.0, 2),
        "medium_shot" => ("medium-shot acc. (%)", Better::Higher, 100.0, 2),
        "few_shot" => ("few-shot acc. (%)", Better::Higher, 100.0, 2),
        _ => return None,
    })
}

/// The paper's tables.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Preset {
    /// Accuracy and ECE on the balanced splits.
    Balanced,
    /// Accuracy per imbalance ratio, and many/medium/few-shot accuracy.
    LongTailed,
    /// Accuracy per number of training images per class.
    DataConstrained,
    /// ICM methods only: the pair / class / dual axes ablation.
    IcmAxes,
}

/// What a table's rows are (the columns are the other one).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RowKind {
    #[default]
    Method,
    Split,
}

/// A custom table in the experiment's `tables:` list.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TableSpec {
    /// File stem under `reports/<experiment>/tables/`.
    pub name: String,
    pub metric: String,
    /// `method` (default: methods as rows, splits as columns) or `split`.
    #[serde(default)]
    pub rows: RowKind,
    /// Decimals shown (default per metric).
    pub precision: Option<usize>,
    /// Overrides the metric's direction for bolding.
    pub better: Option<Better>,
}

/// One entry of `tables:`: a preset name or a custom table.
#[derive(Debug, Clone)]
pub enum TableEntry {
    Preset(Preset),
    Custom(TableSpec),
}

impl<'de> Deserialize<'de> for TableEntry {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct EntryVisitor;
        impl<'de> Visitor<'de> for EntryVisitor {
            type Value = TableEntry;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a preset (`balanced`, `long_tailed`, `data_constrained`, `icm_axes`) or `{name: ..., metric: ...}`")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<TableEntry, E> {
                Preset::deserialize(de::value::StrDeserializer::<E>::new(v)).map(TableEntry::Preset)
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<TableEntry, A::Error> {
                TableSpec::deserialize(de::value::MapAccessDeserializer::new(map))
                    .map(TableEntry::Custom)
            }
        }
        d.deserialize_any(EntryVisitor)
    }
}

/// File stems an entry writes (for the uniqueness check).
pub fn entry_files(entry: &TableEntry) -> Vec<String> {
    match entry {
        TableEntry::Custom(spec) => vec![spec.name.clone()],
        TableEntry::Preset(Preset::Balanced) => vec!["balanced".into()],
        TableEntry::Preset(Preset::LongTailed) => {
            vec!["long_tailed".into(), "long_tailed_shots".into()]
        }
        TableEntry::Preset(Preset::DataConstrained) => vec!["data_constrained".into()],
        TableEntry::Preset(Preset::IcmAxes) => vec!["icm_axes".into()],
    }
}

/// Checks a custom table's metric name (presets need no check).
pub fn check_entry(entry: &TableEntry) -> Result<(), String> {
    if let TableEntry::Custom(spec) = entry {
        if metric_info(&spec.metric).is_none() {
            return Err(format!(
                "unknown metric `{}`; use one of {}",
                spec.metric,
                super::collect::METRICS.join(", ")
            ));
        }
        if spec.name.is_empty()
            || !spec
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            return Err(format!(
                "table name `{}` must be letters, digits, `-` or `_` (it names the table's files)",
                spec.name
            ));
        }
    }
    Ok(())
}

/// A row or a column: what it fixes of the cell it selects.
#[derive(Debug, Clone, PartialEq)]
pub struct Axis {
    pub title: String,
    /// Header line above a run of columns (e.g. the split over many/medium/few).
    pub group: Option<String>,
    pub method: Option<String>,
    pub split: Option<String>,
    pub metric: Option<String>,
}

impl Axis {
    fn method(label: &str) -> Axis {
        Axis {
            title: label.into(),
            group: None,
            method: Some(label.into()),
            split: None,
            metric: None,
        }
    }
    fn split(split: &Split) -> Axis {
        Axis {
            title: split.title(),
            group: None,
            method: None,
            split: Some(split.slug()),
            metric: None,
        }
    }
}

/// A table ready to render: every cell resolved.
#[derive(Debug, Clone)]
pub struct Table {
    pub name: String,
    pub title: String,
    /// Seeds per cell the grid asks for, if known.
    pub expected_n: Option<usize>,
    pub rows: Vec<Axis>,
    pub columns: Vec<Axis>,
    /// `cells[row][column]`.
    pub cells: Vec<Vec<Option<Cell>>>,
    /// Per column: metric direction, scale, decimals.
    pub formats: Vec<(Better, f64, usize)>,
}

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
struct Layout<'a> {
    name: &'a str,
    title: &'a str,
    rows: Vec<Axis>,
    columns: Vec<Axis>,
    /// Metric of every cell unless a row or column sets its own.
    metric: Option<&'a str>,
    precision: Option<usize>,
    better: Option<Better>,
}

fn build(input: &TableInput, layout: Layout) -> Option<Table> {
    let Layout {
        name,
        title,
        rows,
        columns,
        metric,
        precision,
        better,
    } = layout;
    if rows.is_empty() || columns.is_empty() {
        return None;
    }
    let dataset = input.dataset.name();
    let metric_of = |r: &Axis, c: &Axis| -> String {
        c.metric
            .clone()
            .or_else(|| r.metric.clone())
            .or_else(|| metric.map(str::to_string))
            .unwrap_or_else(|| "accuracy".into())
    };
    let cells = rows
        .iter()
        .map(|r| {
            columns
                .iter()
                .map(|c| {
                    let method = r.method.as_ref().or(c.method.as_ref())?;
                    let split = r.split.as_ref().or(c.split.as_ref())?;
                    input
                        .aggregates
                        .get(&dataset, method, split, &metric_of(r, c))
                        .cloned()
                })
                .collect()
        })
        .collect();
    let formats = columns
        .iter()
        .map(|c| {
            let m = metric_of(&rows[0], c);
            let (_, dir, scale, decimals) = metric_info(&m).unwrap_or(("", Better::Higher, 1.0, 3));
            (better.unwrap_or(dir), scale, precision.unwrap_or(decimals))
        })
        .collect();
    Some(Table {
        name: name.into(),
        title: title.into(),
        expected_n: input.expected_n,
        rows,
        columns,
        cells,
        formats,
    })
}

/// The tables of an experiment: its `tables:` entries, or the defaults (accuracy, ECE, NLL and
/// Brier over all splits, plus the long-tailed shot table when there are long-tailed splits).
pub fn tables(input: &TableInput, entries: &[TableEntry]) -> Vec<Table> {
    let method_rows: Vec<Axis> = input
        .methods
        .iter()
        .map(|m| Axis::method(&m.label()))
        .collect();
    let split_cols: Vec<Axis> = input.splits.iter().map(Axis::split).collect();
    let metric_table = |metric: &str| {
        let (title, ..) = metric_info(metric).expect("known metric");
        build(
            input,
            Layout {
                name: metric,
                title: &format!("Test {title}"),
                rows: method_rows.clone(),
                columns: split_cols.clone(),
                metric: Some(metric),
                precision: None,
                better: None,
            },
        )
    };
    let mut out = Vec::new();
    if entries.is_empty() {
        for metric in ["accuracy", "ece", "nll", "brier"] {
            out.extend(metric_table(metric));
        }
        out.extend(shot_table(input, &method_rows));
        return out;
    }
    for entry in entries {
        match entry {
            TableEntry::Custom(spec) => {
                let (title, ..) = metric_info(&spec.metric).expect("checked at load time");
                let (rows, cols) = match spec.rows {
                    RowKind::Method => (method_rows.clone(), split_cols.clone()),
                    RowKind::Split => (split_cols.clone(), method_rows.clone()),
                };
                out.extend(build(
                    input,
                    Layout {
                        name: &spec.name,
                        title: &format!("Test {title}"),
                        rows,
                        columns: cols,
                        metric: Some(&spec.metric),
                        precision: spec.precision,
                        better: spec.better,
                    },
                ));
            }
            TableEntry::Preset(Preset::Balanced) => {
                let mut cols = Vec::new();
                for s in input.splits.iter().filter(|s| matches!(s, Split::Balanced)) {
                    for metric in ["accuracy", "ece"] {
                        cols.push(Axis {
                            title: metric_info(metric).expect("known").0.into(),
                            group: Some(format!("{} ({})", input.dataset.name(), s.title())),
                            metric: Some(metric.into()),
                            ..Axis::split(s)
                        });
                    }
                }
                out.extend(build(
                    input,
                    Layout {
                        name: "balanced",
                        title: "Balanced: accuracy and calibration",
                        rows: method_rows.clone(),
                        columns: cols,
                        metric: None,
                        precision: None,
                        better: None,
                    },
                ));
            }
            TableEntry::Preset(Preset::LongTailed) => {
                let mut lt: Vec<&Split> = input
                    .splits
                    .iter()
                    .filter(|s| matches!(s, Split::LongTailed { .. }))
                    .collect();
                lt.sort_by(|a, b| ratio(a).total_cmp(&ratio(b)));
                let cols = lt.iter().map(|s| Axis::split(s)).collect();
                out.extend(build(
                    input,
                    Layout {
                        name: "long_tailed",
                        title: "Long-tailed: accuracy (%) per imbalance ratio",
                        rows: method_rows.clone(),
                        columns: cols,
                        metric: Some("accuracy"),
                        precision: None,
                        better: None,
                    },
                ));
                out.extend(shot_table(input, &method_rows));
            }
            TableEntry::Preset(Preset::DataConstrained) => {
                let mut pc: Vec<&Split> = input
                    .splits
                    .iter()
                    .filter(|s| matches!(s, Split::PerClass { .. }))
                    .collect();
                pc.sort_by_key(|s| match s {
                    Split::PerClass { k } => *k,
                    _ => 0,
                });
                let cols = pc.iter().map(|s| Axis::split(s)).collect();
                out.extend(build(
                    input,
                    Layout {
                        name: "data_constrained",
                        title: "Data-constrained: accuracy (%) per images per class",
                        rows: method_rows.clone(),
                        columns: cols,
                        metric: Some("accuracy"),
                        precision: None,
                        better: None,
                    },
                ));
            }
            TableEntry::Preset(Preset::IcmAxes) => {
                let rows = input
                    .methods
                    .iter()
                    .filter(|m| m.target == Target::Icm)
                    .map(|m| Axis::method(&m.label()))
                    .collect();
                out.extend(build(
                    input,
                    Layout {
                        name: "icm_axes",
                        title: "ICM axes ablation: accuracy (%)",
                        rows,
                        columns: split_cols.clone(),
                        metric: Some("accuracy"),
                        precision: None,
                        better: None,
                    },
                ));
            }
        }
    }
    out
}

fn ratio(s: &Split) -> f64 {
    match s {
        Split::LongTailed { ratio, .. } => *ratio,
        _ => 0.0,
    }
}

/// Many / medium / few-shot accuracy for each long-tailed split.
fn shot_table(input: &TableInput, method_rows: &[Axis]) -> Option<Table> {
    let mut cols = Vec::new();
    for s in input
        .splits
        .iter()
        .filter(|s| matches!(s, Split::LongTailed { .. }))
    {
        for (metric, title) in [
            ("many_shot", "many"),
            ("medium_shot", "medium"),
            ("few_shot", "few"),
        ] {
            cols.push(Axis {
                title: title.into(),
                group: Some(s.title()),
                metric: Some(metric.into()),
                ..Axis::split(s)
            });
        }
    }
    build(
        input,
        Layout {
            name: "long_tailed_shots",
            title: "Long-tailed: many (> 100) / medium (20–100) / few (< 20) shot accuracy (%)",
            rows: method_rows.to_vec(),
            columns: cols,
            metric: None,
            precision: None,
            better: None,
        },
    )
}

impl Table {
    /// Seeds per cell: the grid's, or else the largest count in the table; cells with fewer
    /// show their n.
    pub fn full_n(&self) -> usize {
        let seen = self
            .cells
            .iter()
            .flatten()
            .flatten()
            .map(|c| c.n)
            .max()
            .unwrap_or(0);
        self.expected_n.unwrap_or(0).max(seen)
    }

    /// The mean as displayed, read back: bolding compares exactly what the reader sees.
    fn rounded(&self, col: usize, v: f64) -> f64 {
        let (_, scale, d) = self.formats[col];
        format!("{:.d$}", v * scale).parse().unwrap_or(f64::NAN)
    }

    /// Whether cell (row, col) holds the best mean of its column (ties at display precision are
    /// all best).
    pub fn is_best(&self, row: usize, col: usize) -> bool {
        let Some(cell) = &self.cells[row][col] else {
            return false;
        };
        let better = self.formats[col].0;
        let values = self
            .cells
            .iter()
            .filter_map(|r| r[col].as_ref())
            .map(|c| self.rounded(col, c.mean));
        let best = match better {
            Better::Higher => values.fold(f64::NEG_INFINITY, f64::max),
            Better::Lower => values.fold(f64::INFINITY, f64::min),
        };
        self.rounded(col, cell.mean) == best
    }

    /// `(mean, Some(std), Some(n))` as display strings; n only when below the table's full count.
    pub fn cell_parts(
        &self,
        row: usize,
        col: usize,
    ) -> Option<(String, Option<String>, Option<usize>)> {
        let cell = self.cells[row][col].as_ref()?;
        let (_, scale, d) = self.formats[col];
        Some((
            format!("{:.d$}", cell.mean * scale),
            cell.std.map(|s| format!("{:.d$}", s * scale)),
            (cell.n < self.full_n()).then_some(cell.n),
        ))
    }

    /// The cell as plain text: `mean ± std`, `(n=k)` where seeds are missing, `–` when empty.
    pub fn cell_text(&self, row: usize, col: usize) -> String {
        match self.cell_parts(row, col) {
            None => "–".to_string(),
            Some((mean, std, n)) => {
                let mut text = mean;
                if let Some(sd) = std {
                    text.push_str(&format!(" ± {sd}"));
                }
                if let Some(n) = n {
                    text.push_str(&format!(" (n={n})"));
                }
                text
            }
        }
    }

    /// Header of the row-label column.
    pub fn corner(&self) -> &'static str {
        if self.rows.first().is_none_or(|r| r.method.is_some()) {
            "method"
        } else {
            "split"
        }
    }

    fn groups(&self) -> bool {
        self.columns.iter().any(|c| c.group.is_some())
    }

    /// Markdown: `mean ± std`, `(n=k)` where seeds are missing, best per column in bold.
    pub fn to_markdown(&self) -> String {
        let n = self.full_n();
        let mut s = format!(
            "### {}\n\nmean ± std over {n} seed{}; best per column in **bold**\n\n| {} |",
            self.title,
            if n == 1 { "" } else { "s" },
            self.corner()
        );
        for c in &self.columns {
            match &c.group {
                Some(g) => s.push_str(&format!(" {g}: {} |", c.title)),
                None => s.push_str(&format!(" {} |", c.title)),
            }
        }
        s.push_str("\n|---|");
        s.push_str(&"---:|".repeat(self.columns.len()));
        s.push('\n');
        for (i, r) in self.rows.iter().enumerate() {
            s.push_str(&format!("| {} |", r.title));
            for j in 0..self.columns.len() {
                let text = self.cell_text(i, j);
                if self.is_best(i, j) {
                    s.push_str(&format!(" **{text}** |"));
                } else {
                    s.push_str(&format!(" {text} |"));
                }
            }
            s.push('\n');
        }
        s
    }

    /// LaTeX tabular with booktabs rules; cells `$m \pm s$`, best `$\mathbf{...}$`.
    pub fn to_latex(&self) -> String {
        let mut s = format!(
            "% {} — mean ± std over {} seeds; needs \\usepackage{{booktabs}}\n\\begin{{tabular}}{{l{}}}\n\\toprule\n",
            self.title,
            self.full_n(),
            "r".repeat(self.columns.len())
        );
        if self.groups() {
            // Group header with \cmidrule under each run of columns sharing a group.
            let mut runs: Vec<(Option<String>, usize)> = Vec::new();
            for c in &self.columns {
                match runs.last_mut() {
                    Some((g, k)) if *g == c.group => *k += 1,
                    _ => runs.push((c.group.clone(), 1)),
                }
            }
            let mut line = String::new();
            let mut rules = String::new();
            let mut at = 2;
            for (g, k) in &runs {
                let text = g.as_deref().map(latex_escape).unwrap_or_default();
                line.push_str(&format!(" & \\multicolumn{{{k}}}{{c}}{{{text}}}"));
                if g.is_some() {
                    rules.push_str(&format!("\\cmidrule(lr){{{at}-{}}}", at + k - 1));
                }
                at += k;
            }
            s.push_str(&format!("{line} \\\\\n{rules}\n"));
        }
        s.push_str(if self.corner() == "method" {
            "Method"
        } else {
            "Split"
        });
        for c in &self.columns {
            s.push_str(&format!(" & {}", latex_escape(&c.title)));
        }
        s.push_str(" \\\\\n\\midrule\n");
        for (i, r) in self.rows.iter().enumerate() {
            s.push_str(&latex_escape(&r.title));
            for j in 0..self.columns.len() {
                let cell = match self.cell_parts(i, j) {
                    None => "--".to_string(),
                    Some((mean, std, n)) => {
                        let mut body = mean;
                        if let Some(sd) = std {
                            body.push_str(&format!(" \\pm {sd}"));
                        }
                        let body = if self.is_best(i, j) {
                            format!("\\mathbf{{{body}}}")
                        } else {
                            body
                        };
                        match n {
                            Some(n) => format!("${body}$\\,(n{{=}}{n})"),
                            None => format!("${body}$"),
                        }
                    }
                };
                s.push_str(&format!(" & {cell}"));
            }
            s.push_str(" \\\\\n");
        }
        s.push_str("\\bottomrule\n\\end{tabular}\n");
        s
    }

    /// Long CSV: one line per cell.
    pub fn to_csv(&self) -> String {
        let mut s = String::from("row,column_group,column,mean,std,n,best\n");
        for (i, r) in self.rows.iter().enumerate() {
            for (j, c) in self.columns.iter().enumerate() {
                if let Some(cell) = &self.cells[i][j] {
                    s.push_str(&format!(
                        "{},{},{},{},{},{},{}\n",
                        csv_field(&r.title),
                        csv_field(c.group.as_deref().unwrap_or("")),
                        csv_field(&c.title),
                        cell.mean,
                        cell.std.map_or(String::new(), |x| x.to_string()),
                        cell.n,
                        self.is_best(i, j)
                    ));
                }
            }
        }
        s
    }
}

/// Escapes LaTeX's special characters in plain text.
pub fn latex_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for ch in text.chars() {
        match ch {
            '\\' => out.push_str("\\textbackslash{}"),
            '&' | '%' | '$' | '#' | '_' | '{' | '}' => {
                out.push('\\');
                out.push(ch);
            }
            '~' => out.push_str("\\textasciitilde{}"),
            '^' => out.push_str("\\textasciicircum{}"),
            '<' => out.push_str("\\textless{}"),
            '>' => out.push_str("\\textgreater{}"),
            '|' => out.push_str("\\textbar{}"),
            '–' => out.push_str("--"),
            'α' => out.push_str("$\\alpha$"),
            'γ' => out.push_str("$\\gamma$"),
            'ε' => out.push_str("$\\varepsilon$"),
            'κ' => out.push_str("$\\kappa$"),
            'λ' => out.push_str("$\\lambda$"),
            'ρ' => out.push_str("$\\rho$"),
            'τ' => out.push_str("$\\tau$"),
            '±' => out.push_str("$\\pm$"),
            other => out.push(other),
        }
    }
    out
}

fn csv_field(text: &str) -> String {
    if text.contains([',', '"', '\n']) {
        format!("\"{}\"", text.replace('"', "\"\""))
    } else {
        text.to_string()
    }
}
