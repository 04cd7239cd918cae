//! The claims table: every claim (method a against method b on a metric) tested on every split
//! with the paired statistics of [`crate::metrics::paired`], as Markdown, LaTeX, CSV and HTML, and
//! as a forest plot per metric. It opens the report.

use super::aggregate::Aggregates;
use super::plots::ForestRow;
use super::tables::{csv_field, latex_escape};
use crate::data::{DatasetSpec, Split};
use crate::metrics::catalog::{metric, Metric};
use crate::metrics::paired::{compare, holm_adjusted, PairedComparison};
use crate::spec::Claim;
use crate::util::text::aligned_rows;

/// One claim tested on one split.
#[derive(Debug, Clone)]
pub struct ClaimRow {
    pub claim: Claim,
    pub split: Split,
    pub result: PairedComparison,
    /// Runs of a and b on this split that diverged: left out of the pairs, counted here.
    pub diverged: usize,
    /// The paired t-test's p adjusted by Holm's method over every tested row of its table
    /// ([`holm_adjusted`]); `None` where the row was not tested.
    pub t_p_holm: Option<f64>,
}

impl ClaimRow {
    fn metric(&self) -> &'static Metric {
        metric(&self.claim.metric).expect("claims are checked against the catalog")
    }

    /// "a vs b".
    pub fn name(&self) -> String {
        format!("{} vs {}", self.claim.a, self.claim.b)
    }

    /// The verdict in words.
    pub fn verdict(&self) -> String {
        self.result
            .verdict
            .describe(&self.claim.a, &self.claim.b, self.result.n)
    }

    /// A value of the metric as shown (percentage points for percentages).
    fn shown(&self, v: f64) -> String {
        let m = self.metric();
        format!("{:+.*}", m.decimals, v * m.scale)
    }

    pub fn cells(&self) -> [String; 10] {
        let r = &self.result;
        let p = |x: Option<f64>| x.map_or("–".to_string(), |p| format!("{p:.3}"));
        [
            self.split.title(),
            self.metric().title.to_string(),
            if r.n == 0 {
                "–".into()
            } else {
                self.shown(r.mean)
            },
            r.interval.map_or("–".into(), |(lo, hi)| {
                format!("[{}, {}]", self.shown(lo), self.shown(hi))
            }),
            format!("{}/{}/{}", r.wins, r.ties, r.losses),
            p((r.n > 0).then_some(r.sign_p)),
            p(r.t_p),
            p(self.t_p_holm),
            self.pairs(),
            self.verdict(),
        ]
    }
}

impl ClaimRow {
    /// The number of pairs, with the runs left out: diverged ones, and those whose partner is
    /// missing (or diverged).
    fn pairs(&self) -> String {
        let r = &self.result;
        let mut left_out = Vec::new();
        if self.diverged > 0 {
            left_out.push(format!("{} diverged", self.diverged));
        }
        if r.unpaired > 0 {
            left_out.push(format!("{} unpaired", r.unpaired));
        }
        if left_out.is_empty() {
            r.n.to_string()
        } else {
            format!("{} ({} left out)", r.n, left_out.join(", "))
        }
    }
}

pub const HEADERS: [&str; 11] = [
    "claim",
    "split",
    "metric",
    "Δ",
    "95 % CI",
    "wins/ties/losses",
    "p (sign test)",
    "p (paired t)",
    "p (t, Holm)",
    "pairs",
    "verdict",
];

/// How to read the claims table, stated under it in every format.
pub const READING: &str = "Δ is a − b where higher is better and b − a where lower is better, so \
    Δ > 0 favours a (percentage points for percentages). Runs are paired by training seed and \
    data seed; the 95 % interval is Student t over the per-pair differences; wins/ties/losses \
    count pairs. The verdict is the paired t-test, two-sided, at α = 0.05, for its own row; the \
    exact sign test is shown beside it (with fewer than 6 pairs it cannot reach 0.05). Many rows \
    are many tests: p (t, Holm) adjusts the t-test's p for every tested row of this table (Holm's \
    step-down method), and only a verdict whose adjusted p is below 0.05 holds for the table as \
    a whole (the chance of any false verdict among them stays below 5 %). Diverged runs are left \
    out and counted under pairs: a verdict over the runs that did not diverge says nothing about \
    how often a method collapses (see the collapse rate).";

/// Every claim on every split of the grid, from the aggregated per-seed values.
pub fn claim_rows(
    claims: &[Claim],
    splits: &[Split],
    dataset: &DatasetSpec,
    aggregates: &Aggregates,
) -> Vec<ClaimRow> {
    let dataset = dataset.name();
    let mut rows = Vec::new();
    for claim in claims {
        let better = metric(&claim.metric).expect("checked").better;
        for split in splits {
            let cell =
                |method: &str| aggregates.get(&dataset, method, &split.slug(), &claim.metric);
            let values = |method: &str| cell(method).map(|c| c.values.clone()).unwrap_or_default();
            let diverged = |method: &str| cell(method).map_or(0, |c| c.diverged);
            rows.push(ClaimRow {
                claim: claim.clone(),
                split: split.clone(),
                result: compare(&values(&claim.a), &values(&claim.b), better),
                diverged: diverged(&claim.a) + diverged(&claim.b),
                t_p_holm: None,
            });
        }
    }
    let tested: Vec<usize> = (0..rows.len())
        .filter(|&i| rows[i].result.t_p.is_some())
        .collect();
    let p: Vec<f64> = tested.iter().filter_map(|&i| rows[i].result.t_p).collect();
    for (&i, adjusted) in tested.iter().zip(holm_adjusted(&p)) {
        rows[i].t_p_holm = Some(adjusted);
    }
    rows
}

pub fn to_markdown(rows: &[ClaimRow]) -> String {
    let mut s = format!(
        "### Claims: paired comparisons over seeds\n\n{READING}\n\n| {} |\n|{}\n",
        HEADERS.join(" | "),
        "---|".repeat(HEADERS.len())
    );
    for row in rows {
        s.push_str(&format!(
            "| {} | {} |\n",
            row.name(),
            row.cells().join(" | ")
        ));
    }
    s
}

pub fn to_latex(rows: &[ClaimRow]) -> String {
    let mut s = format!(
        "% Claims: paired comparisons over seeds; needs \\usepackage{{booktabs}}\n% {READING}\n\
         \\begin{{tabular}}{{lllrrrrrrrl}}\n\\toprule\n{} \\\\\n\\midrule\n",
        HEADERS
            .iter()
            .map(|h| latex_escape(h))
            .collect::<Vec<_>>()
            .join(" & ")
    );
    for row in rows {
        let mut cells = vec![latex_escape(&row.name())];
        cells.extend(row.cells().iter().map(|c| latex_escape(c)));
        s.push_str(&format!("{} \\\\\n", cells.join(" & ")));
    }
    s.push_str("\\bottomrule\n\\end{tabular}\n");
    s
}

/// One line per claim and split, raw (unscaled) numbers.
pub fn to_csv(rows: &[ClaimRow]) -> String {
    let mut s = String::from(
        "a,b,metric,split,n,unpaired,diverged,mean_difference,ci_low,ci_high,wins,ties,losses,sign_p,t_p,t_p_holm,verdict\n",
    );
    let num = |x: Option<f64>| x.map_or(String::new(), |v| v.to_string());
    for row in rows {
        let r = &row.result;
        s.push_str(&format!(
            "{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{}\n",
            csv_field(&row.claim.a),
            csv_field(&row.claim.b),
            row.claim.metric,
            row.split.slug(),
            r.n,
            r.unpaired,
            row.diverged,
            num((r.n > 0).then_some(r.mean)),
            num(r.interval.map(|i| i.0)),
            num(r.interval.map(|i| i.1)),
            r.wins,
            r.ties,
            r.losses,
            num((r.n > 0).then_some(r.sign_p)),
            num(r.t_p),
            num(row.t_p_holm),
            csv_field(&row.verdict())
        ));
    }
    s
}

/// The forest plot's rows for one metric: label, Δ and interval as shown.
pub fn forest_rows(rows: &[ClaimRow], metric_name: &str) -> Vec<ForestRow> {
    rows.iter()
        .filter(|r| r.claim.metric == metric_name && r.result.n > 0)
        .map(|r| {
            let scale = r.metric().scale;
            (
                format!("{} — {}", r.name(), r.split.title()),
                r.result.mean * scale,
                r.result.interval.map(|(lo, hi)| (lo * scale, hi * scale)),
            )
        })
        .collect()
}

/// The claim rows as aligned plain text, with how to read them (`icm compare`).
pub fn to_text(rows: &[ClaimRow]) -> String {
    let mut table: Vec<Vec<String>> = vec![HEADERS.iter().map(|h| h.to_string()).collect()];
    for row in rows {
        let mut line = vec![row.name()];
        line.extend(row.cells());
        table.push(line);
    }
    let mut s = aligned_rows(&table);
    s.push('\n');
    s.push_str(READING);
    s.push('\n');
    s
}
