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
    /// Averages diverged runs in with the others (by default they are left out and counted).
    #[serde(default)]
    pub include_diverged: bool,
    /// Swept keys whose values are columns (under each split) rather than parts of the rows.
    #[serde(default)]
    pub columns: Vec<String>,
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
                f.write_str("a preset (`balanced`, `long_tailed`, `data_constrained`, `icm_axes`, `collapse`) or `{name: ..., metric: ...}`")
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
        TableEntry::Preset(Preset::Collapse) => vec!["collapse".into()],
    }
}

impl TableEntry {
    /// Checks a custom table's metric and name (presets need no check).
    pub fn check(&self) -> Result<(), String> {
        let entry = self;
        if let TableEntry::Custom(spec) = entry {
            if metric(&spec.metric).is_none() {
                return Err(format!(
                    "unknown metric `{}`; use one of {}",
                    spec.metric,
                    names()
                ));
            }
            if spec.name == "claims" {
                return Err(
                    "table name `claims` is taken by the claims table; choose another name".into(),
                );
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
}
