//! Paper tables as rendered: a [`Table`] with every cell resolved, written as Markdown, LaTeX
//! (booktabs) and CSV with `mean ± std` cells and the best value per column in bold. Which
//! tables a report has, and what their rows and columns are, is [`super::layouts`].

use super::aggregate::Cell;
use crate::data::Split;
use crate::metrics::catalog::Better;
use crate::metrics::paired::{self, Verdict};
use crate::spec::tables::Float;

/// A cell as display strings.
#[derive(Debug, Clone, PartialEq)]
pub struct CellParts {
    /// `None` when every run of the cell diverged.
    pub mean: Option<String>,
    pub std: Option<String>,
    /// `n=k` where seeds are missing, with `d diverged` where runs were left out.
    pub note: Option<String>,
}

/// How a cell is marked in every format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mark {
    /// The best mean among the methods on its split and metric (bold).
    Best,
    /// Not distinguishable from the best by the paired t-test over seeds (italic, underlined in
    /// LaTeX).
    NotDistinguishable,
    None,
}

/// The marking convention, stated under every table.
pub const MARKS: &str = "**bold**: best mean among the methods (cells with n ≥ 2 seeds and no \
     diverged run); *italic*: not distinguishable from the best (paired t-test over seeds, \
     two-sided α = 0.05); cells with one seed or with diverged runs are never marked";

/// Whether a cell may be marked: at least two seeds (one says nothing about noise) and no
/// diverged run (the mean of the runs that survived a collapse is not the method's mean).
fn markable(cell: &Cell) -> bool {
    cell.n >= 2 && cell.diverged == 0
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
    /// The sweep values it fixes, as (position of the key in the sweep, `key=value`): a table
    /// with swept keys as columns finds a cell's sweep point from its row's and column's values.
    pub point: Vec<(usize, String)>,
}

impl Axis {
    pub(super) fn method(label: &str) -> Axis {
        Axis {
            title: label.into(),
            group: None,
            method: Some(label.into()),
            split: None,
            metric: None,
            point: Vec::new(),
        }
    }
    pub(super) fn split(split: &Split) -> Axis {
        Axis {
            title: split.title(),
            group: None,
            method: None,
            split: Some(split.slug()),
            metric: None,
            point: Vec::new(),
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
    /// Whether cells are marked (bold / italic): not for counts, where no test applies.
    pub marks: bool,
    /// The LaTeX float (caption, label); unset: a bare `tabular`.
    pub float: Float,
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

    /// The cells (row, col) competes with: the other methods on the same split and metric (down
    /// its column when methods are rows, along its row when they are columns).
    fn peers(&self, row: usize, col: usize) -> Vec<(usize, usize)> {
        if self.rows[row].method.is_some() {
            (0..self.rows.len()).map(|r| (r, col)).collect()
        } else {
            (0..self.columns.len()).map(|c| (row, c)).collect()
        }
    }

    /// The best cells among (row, col)'s peers: the best mean as displayed, among
    /// [`markable`] cells. Ties at display precision all count.
    fn best_of_peers(&self, row: usize, col: usize) -> Vec<(usize, usize)> {
        let candidates: Vec<((usize, usize), f64)> = self
            .peers(row, col)
            .into_iter()
            .filter_map(|(r, c)| {
                let cell = self.cells[r][c].as_ref().filter(|cell| markable(cell))?;
                Some(((r, c), self.rounded(c, cell.mean)))
            })
            .collect();
        let higher = self.formats[col].0 == Better::Higher;
        let best = candidates
            .iter()
            .map(|(_, v)| *v)
            .reduce(|a, b| if (b > a) == higher { b } else { a });
        candidates
            .into_iter()
            .filter(|(_, v)| Some(*v) == best)
            .map(|(at, _)| at)
            .collect()
    }

    /// How cell (row, col) is marked: the best of its peers (bold), not distinguishable from the
    /// best by the paired t-test over seeds (italic), or nothing.
    pub fn mark(&self, row: usize, col: usize) -> Mark {
        if !self.marks {
            return Mark::None;
        }
        let Some(cell) = self.cells[row][col].as_ref().filter(|c| markable(c)) else {
            return Mark::None;
        };
        let best = self.best_of_peers(row, col);
        if best.contains(&(row, col)) {
            return Mark::Best;
        }
        let Some(&(br, bc)) = best.first() else {
            return Mark::None;
        };
        let best_cell = self.cells[br][bc].as_ref().expect("best cells exist");
        let c = paired::compare(&best_cell.values, &cell.values, self.formats[col].0);
        if c.verdict == Verdict::NoDetectableDifference {
            Mark::NotDistinguishable
        } else {
            Mark::None
        }
    }

    /// Whether cell (row, col) is bold.
    pub fn is_best(&self, row: usize, col: usize) -> bool {
        self.mark(row, col) == Mark::Best
    }

    /// The cell's parts as display strings; `None` for a cell without runs.
    pub fn cell_parts(&self, row: usize, col: usize) -> Option<CellParts> {
        let cell = self.cells[row][col].as_ref()?;
        let (_, scale, d) = self.formats[col];
        let short = cell.n < self.full_n() || cell.diverged > 0;
        let note = match (cell.n, cell.diverged) {
            (0, k) => Some(format!("{k} diverged")),
            (n, 0) => short.then(|| format!("n={n}")),
            (n, k) => Some(format!("n={n}, {k} diverged")),
        };
        Some(CellParts {
            mean: (cell.n > 0).then(|| format!("{:.d$}", cell.mean * scale)),
            std: cell.std.map(|s| format!("{:.d$}", s * scale)),
            note,
        })
    }

    /// The cell as plain text: `mean ± std`, `(n=k)` where seeds are missing or runs diverged,
    /// `–` when empty.
    pub fn cell_text(&self, row: usize, col: usize) -> String {
        let Some(parts) = self.cell_parts(row, col) else {
            return "–".to_string();
        };
        let mut text = parts.mean.unwrap_or_else(|| "–".into());
        if let Some(sd) = parts.std {
            text.push_str(&format!(" ± {sd}"));
        }
        if let Some(note) = parts.note {
            text.push_str(&format!(" ({note})"));
        }
        text
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
            "### {}\n\n{}\n\n| {} |",
            self.title,
            if self.marks {
                format!(
                    "mean ± std over {n} seed{}; {MARKS}",
                    if n == 1 { "" } else { "s" }
                )
            } else {
                format!("over {n} seeds per cell; counts, so no marks")
            },
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
                match self.mark(i, j) {
                    Mark::Best => s.push_str(&format!(" **{text}** |")),
                    Mark::NotDistinguishable => s.push_str(&format!(" *{text}* |")),
                    Mark::None => s.push_str(&format!(" {text} |")),
                }
            }
            s.push('\n');
        }
        s
    }

    /// Gives a table with a caption but no label the label `tab:<experiment>-<table>`.
    pub fn default_label(&mut self, experiment: &str) {
        if self.float.is_set() && self.float.label.is_none() {
            let key: String = format!("tab:{experiment}-{}", self.name)
                .chars()
                .map(|c| {
                    if c.is_ascii_alphanumeric() || "-_:./".contains(c) {
                        c
                    } else {
                        '-'
                    }
                })
                .collect();
            self.float.label = Some(key);
        }
    }

    /// LaTeX with booktabs rules; cells `$m \pm s$`, best `$\mathbf{...}$`. With a caption or a
    /// label, a whole `table` float (caption above, as booktabs recommends); else the bare
    /// `tabular`, to `\input` into a float of one's own.
    pub fn to_latex(&self) -> String {
        let mut s = format!(
            "% {} — mean ± std over {} seeds; needs \\usepackage{{booktabs}}\n\
             % \\mathbf: best mean among the methods (n ≥ 2 seeds, none diverged); \\underline: not distinguishable \
             from the best (paired t-test over seeds, two-sided α = 0.05)\n",
            self.title,
            self.full_n(),
        );
        if !self.float.is_set() {
            s.push_str(&self.latex_tabular());
            return s;
        }
        let caption = self.float.caption.as_deref().unwrap_or(&self.title);
        s.push_str(&format!(
            "\\begin{{table}}[t]\n\\centering\n\\caption{{{}}}\n",
            latex_escape(caption)
        ));
        if let Some(label) = &self.float.label {
            s.push_str(&format!("\\label{{{label}}}\n"));
        }
        s.push_str(&self.latex_tabular());
        s.push_str("\\end{table}\n");
        s
    }

    /// The `tabular`: group header with `\cmidrule`s, header, one line per row.
    fn latex_tabular(&self) -> String {
        let mut s = format!(
            "\\begin{{tabular}}{{l{}}}\n\\toprule\n",
            "r".repeat(self.columns.len())
        );
        if self.groups() {
            s.push_str(&self.latex_groups());
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
                s.push_str(&format!(" & {}", self.latex_cell(i, j)));
            }
            s.push_str(" \\\\\n");
        }
        s.push_str("\\bottomrule\n\\end{tabular}\n");
        s
    }

    /// Group header with `\cmidrule` under each run of columns sharing a group.
    fn latex_groups(&self) -> String {
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
        format!("{line} \\\\\n{rules}\n")
    }

    /// One cell: `$m \pm s$`, marked, with its note (`n=2, 1 diverged`) as text.
    fn latex_cell(&self, row: usize, col: usize) -> String {
        let Some(parts) = self.cell_parts(row, col) else {
            return "--".to_string();
        };
        let body = match parts.mean {
            None => "--".to_string(),
            Some(mean) => {
                let mut body = mean;
                if let Some(sd) = parts.std {
                    body.push_str(&format!(" \\pm {sd}"));
                }
                let body = match self.mark(row, col) {
                    Mark::Best => format!("\\mathbf{{{body}}}"),
                    Mark::NotDistinguishable => format!("\\underline{{{body}}}"),
                    Mark::None => body,
                };
                format!("${body}$")
            }
        };
        match parts.note {
            Some(note) => format!("{body}\\,({})", latex_escape(&note).replace('=', "{=}")),
            None => body,
        }
    }

    /// Long CSV: one line per cell.
    pub fn to_csv(&self) -> String {
        let mut s =
            String::from("row,column_group,column,mean,std,n,best,not_distinguishable_from_best\n");
        for (i, r) in self.rows.iter().enumerate() {
            for (j, c) in self.columns.iter().enumerate() {
                if let Some(cell) = &self.cells[i][j] {
                    let mark = self.mark(i, j);
                    s.push_str(&format!(
                        "{},{},{},{},{},{},{},{}\n",
                        csv_field(&r.title),
                        csv_field(c.group.as_deref().unwrap_or("")),
                        csv_field(&c.title),
                        if cell.n > 0 {
                            cell.mean.to_string()
                        } else {
                            String::new()
                        },
                        cell.std.map_or(String::new(), |x| x.to_string()),
                        cell.n,
                        mark == Mark::Best,
                        mark == Mark::NotDistinguishable
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
            '≥' => out.push_str("$\\geq$"),
            '≤' => out.push_str("$\\leq$"),
            '×' => out.push_str("$\\times$"),
            '·' => out.push_str("$\\cdot$"),
            '→' => out.push_str("$\\to$"),
            '—' => out.push_str("---"),
            'β' => out.push_str("$\\beta$"),
            'δ' => out.push_str("$\\delta$"),
            'Δ' => out.push_str("$\\Delta$"),
            'μ' => out.push_str("$\\mu$"),
            'σ' => out.push_str("$\\sigma$"),
            other => out.push(other),
        }
    }
    out
}

pub(super) fn csv_field(text: &str) -> String {
    if text.contains([',', '"', '\n']) {
        format!("\"{}\"", text.replace('"', "\"\""))
    } else {
        text.to_string()
    }
}
