//! Paper tables as rendered: a [`Table`] with every cell resolved, written as Markdown, LaTeX
//! (booktabs) and CSV with `mean ± std` cells and the best value per column in bold. Which
//! tables a report has, and what their rows and columns are, is [`super::layouts`].

use super::aggregate::Cell;
use crate::data::Split;
use crate::metrics::catalog::Better;

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
    pub(super) fn method(label: &str) -> Axis {
        Axis {
            title: label.into(),
            group: None,
            method: Some(label.into()),
            split: None,
            metric: None,
        }
    }
    pub(super) fn split(split: &Split) -> Axis {
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
