//! The `tables:` section: which tables a report shows (the paper's presets or custom tables of
//! any metric in the catalog). The rendering lives in the report layer.

use std::fmt;

use serde::de::{self, MapAccess, Visitor};
use serde::{Deserialize, Deserializer};

use crate::metrics::catalog::{metric, names, Better};

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
    /// The share of runs that diverged, per method and split (added by default when any did).
    Collapse,
}

/// What a table's rows are (the columns are the other one).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RowKind {
    #[default]
    Method,
    Split,
}

/// The most decimals a table cell may show (`precision:`); f64 carries about 16 digits.
pub const MAX_PRECISION: usize = 12;

/// A custom table in the experiment's `tables:` list.
#[derive(Debug, Clone)]
pub struct TableSpec {
    /// File stem under `reports/<experiment>/tables/`.
    pub name: String,
    pub metric: String,
    /// `method` (default: methods as rows, splits as columns) or `split`.
    pub rows: RowKind,
    /// Decimals shown (default per metric).
    pub precision: Option<usize>,
    /// Overrides the metric's direction for bolding.
    pub better: Option<Better>,
    /// Averages diverged runs in with the others (by default they are left out and counted).
    pub include_diverged: bool,
    /// Swept keys whose values are columns (under each split) rather than parts of the rows.
    pub columns: Vec<String>,
    pub float: Float,
}

/// A table's LaTeX float: with a caption or a label the `.tex` file is a whole `table`
/// environment (caption, label, booktabs tabular), else a bare `tabular` to `\input` into one's
/// own.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct Float {
    /// Caption, as plain text (LaTeX's special characters are escaped).
    pub caption: Option<String>,
    /// `\label` key; default `tab:<experiment>-<table>` when there is a caption.
    pub label: Option<String>,
}

impl Float {
    /// Whether the table is written as a `table` float.
    pub fn is_set(&self) -> bool {
        self.caption.is_some() || self.label.is_some()
    }
}

/// One entry of `tables:`: a preset name (`balanced`, or `{preset: balanced, caption: ...}`
/// for a caption and label) or a custom table.
#[derive(Debug, Clone)]
pub enum TableEntry {
    Preset(Preset, Float),
    Custom(TableSpec),
}

/// A `tables:` entry written as a map: a custom table or a preset with a caption. Read as one
/// shape so that a misspelt key is named in the error.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EntryMap {
    preset: Option<Preset>,
    name: Option<String>,
    metric: Option<String>,
    rows: Option<RowKind>,
    precision: Option<usize>,
    better: Option<Better>,
    include_diverged: Option<bool>,
    columns: Option<Vec<String>>,
    caption: Option<String>,
    label: Option<String>,
}

impl EntryMap {
    fn entry(self) -> Result<TableEntry, String> {
        let float = Float {
            caption: self.caption,
            label: self.label,
        };
        if let Some(preset) = self.preset {
            let custom = self.name.is_some()
                || self.metric.is_some()
                || self.rows.is_some()
                || self.precision.is_some()
                || self.better.is_some()
                || self.include_diverged.is_some()
                || self.columns.is_some();
            if custom {
                return Err(
                    "a `preset:` entry takes only `caption` and `label`; for a table of \
                            your own drop `preset` and give `name` and `metric`"
                        .into(),
                );
            }
            return Ok(TableEntry::Preset(preset, float));
        }
        let (Some(name), Some(metric)) = (self.name, self.metric) else {
            return Err(
                "a custom table needs `name` and `metric` (e.g. `{name: calibration, \
                        metric: adaptive_ece}`), a preset `{preset: balanced, caption: ...}`"
                    .into(),
            );
        };
        Ok(TableEntry::Custom(TableSpec {
            name,
            metric,
            rows: self.rows.unwrap_or_default(),
            precision: self.precision,
            better: self.better,
            include_diverged: self.include_diverged.unwrap_or(false),
            columns: self.columns.unwrap_or_default(),
            float,
        }))
    }
}

impl<'de> Deserialize<'de> for TableEntry {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct EntryVisitor;
        impl<'de> Visitor<'de> for EntryVisitor {
            type Value = TableEntry;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a preset (`balanced`, `long_tailed`, `data_constrained`, `icm_axes`, `collapse`), `{preset: ..., caption: ...}` or `{name: ..., metric: ...}`")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<TableEntry, E> {
                Preset::deserialize(de::value::StrDeserializer::<E>::new(v))
                    .map(|p| TableEntry::Preset(p, Float::default()))
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<TableEntry, A::Error> {
                EntryMap::deserialize(de::value::MapAccessDeserializer::new(map))?
                    .entry()
                    .map_err(de::Error::custom)
            }
        }
        d.deserialize_any(EntryVisitor)
    }
}

/// File stems an entry writes (for the uniqueness check).
pub fn entry_files(entry: &TableEntry) -> Vec<String> {
    match entry {
        TableEntry::Custom(spec) => vec![spec.name.clone()],
        TableEntry::Preset(Preset::Balanced, _) => vec!["balanced".into()],
        TableEntry::Preset(Preset::LongTailed, _) => {
            vec!["long_tailed".into(), "long_tailed_shots".into()]
        }
        TableEntry::Preset(Preset::DataConstrained, _) => vec!["data_constrained".into()],
        TableEntry::Preset(Preset::IcmAxes, _) => vec!["icm_axes".into()],
        TableEntry::Preset(Preset::Collapse, _) => vec!["collapse".into()],
    }
}

impl TableEntry {
    /// The entry's LaTeX float settings.
    pub fn float(&self) -> &Float {
        match self {
            TableEntry::Preset(_, float) => float,
            TableEntry::Custom(spec) => &spec.float,
        }
    }

    /// Checks a custom table's metric and name, and any entry's label.
    pub fn check(&self) -> Result<(), String> {
        let entry = self;
        if let Some(label) = &self.float().label {
            let ok = |c: char| c.is_ascii_alphanumeric() || "-_:./".contains(c);
            if label.is_empty() || !label.chars().all(ok) {
                return Err(format!(
                    "label `{label}` must be letters, digits, `-`, `_`, `:`, `.` or `/` (it is a \
                     LaTeX \\label key), e.g. `tab:long-tailed`"
                ));
            }
        }
        if let TableEntry::Custom(spec) = entry {
            if metric(&spec.metric).is_none() {
                return Err(format!(
                    "unknown metric `{}`; use one of {}",
                    spec.metric,
                    names()
                ));
            }
            if let Some(p) = spec.precision.filter(|&p| p > MAX_PRECISION) {
                return Err(format!(
                    "precision {p} is more decimals than a table can show; use 0 to \
                     {MAX_PRECISION}"
                ));
            }
            if spec.name == "claims" {
                return Err(
                    "table name `claims` is taken by the claims table; choose another name".into(),
                );
            }
            let usable = |c: char| c.is_ascii_alphanumeric() || c == '-' || c == '_';
            if spec.name.is_empty() || spec.name.len() > 100 || !spec.name.chars().all(usable) {
                return Err(format!(
                    "table name `{}` must be 1 to 100 letters, digits, `-` or `_` (it names the \
                     table's files)",
                    spec.name
                ));
            }
        }
        Ok(())
    }
}
