//! Reading an experiment file with `--set` overrides and the points of its `sweep:`: the file
//! is read on its own first (its mistakes keep their line and column), then each override and
//! sweep value is set in its YAML tree ([`super::sweep`]) and the result is read into the schema
//! and checked like a file, every mistake naming the override or sweep value it comes from.

use std::path::Path;

use anyhow::Result;

use super::run::{LoadedExperiment, SweepPoint};
use super::sweep::{self, Override};
use super::tables::{self, TableEntry};
use super::{check, yaml, Experiment};

/// Parses and checks experiment YAML with `--set` overrides, and the points of its `sweep:`.
/// The file must read on its own (its mistakes are placed by line and column); the overrides and every
/// sweep point are then applied to its YAML tree and each result is read and checked like a
/// file, mistakes naming the override or sweep value they come from.
pub fn parse(text: &str, path: &Path, overrides: &[Override]) -> Result<LoadedExperiment> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    if text.trim().is_empty() {
        anyhow::bail!(
            "{}: the file is empty; an experiment file sets `name`, `splits`, `model`, `train`, \
             `methods` and `seeds` (see experiments/quickstart.yaml)",
            path.display()
        );
    }
    let located = |e: serde_yaml::Error| anyhow::anyhow!(yaml::yaml_parse_error(path, text, &e));
    let exp: Experiment = serde_yaml::from_str(text).map_err(located)?;
    if overrides.is_empty() && exp.sweep.is_none() {
        let loaded = check::check_experiment(exp, path, &sweep::Origins::default())?;
        check_table_columns(&loaded, path)?;
        return Ok(loaded);
    }
    let mut root: serde_yaml::Value = serde_yaml::from_str(text).map_err(located)?;
    let mut exp = exp;
    for o in overrides {
        o.apply(&mut root)
            .map_err(|m| anyhow::anyhow!("{}: {m}", path.display()))?;
        exp = schema_of(&root, &o.path)
            .map_err(|m| anyhow::anyhow!("{}: --set {}: {m}", path.display(), o.text))?;
    }
    let sets = overrides.to_vec();
    let mut loaded = match take_sweep(&mut root) {
        None => {
            let origins = sweep::Origins { sets, point: None };
            check::check_experiment(exp, path, &origins)?
        }
        Some(block) => read_sweep(&root, &block, path, sets)?,
    };
    loaded.overrides = overrides.iter().map(|o| o.text.clone()).collect();
    check_table_columns(&loaded, path)?;
    Ok(loaded)
}

/// A custom table's `columns:` must name swept keys (that take more than one value), with
/// methods as rows.
fn check_table_columns(exp: &LoadedExperiment, path: &Path) -> Result<()> {
    let swept: Vec<&String> = exp
        .sweep
        .first()
        .map_or(Vec::new(), |p| p.values.iter().map(|(k, _)| k).collect());
    for (i, entry) in exp.tables.iter().enumerate() {
        let TableEntry::Custom(spec) = entry else {
            continue;
        };
        if !spec.columns.is_empty() && spec.rows != tables::RowKind::Method {
            anyhow::bail!(
                "{}: `tables[{i}].columns`: swept columns need methods as rows: remove `rows: split`",
                path.display()
            );
        }
        if let Some(key) = spec.columns.iter().find(|k| !swept.contains(k)) {
            let choices = if swept.is_empty() {
                "this experiment sweeps nothing with more than one value (add a `sweep:`)".into()
            } else {
                let names: Vec<String> = swept.iter().map(|k| format!("`{k}`")).collect();
                format!("use one of {}", names.join(", "))
            };
            anyhow::bail!(
                "{}: `tables[{i}].columns`: `{key}` is not a swept key; {choices}",
                path.display()
            );
        }
    }
    Ok(())
}

/// Reads a YAML tree into the schema after the value at `key` was changed; the message on
/// failure, with a "did you mean" for a misspelt key of `key`.
fn schema_of(tree: &serde_yaml::Value, key: &str) -> std::result::Result<Experiment, String> {
    serde_yaml::from_value(tree.clone()).map_err(|e| {
        let message = yaml::bare_message(&e);
        let hint = match (yaml::did_you_mean(&message), yaml::unknown_name(&message)) {
            (Some(good), Some(wrong)) if key.split('.').any(|k| k == wrong) => {
                Some(sweep::replace_key(key, wrong, &good))
            }
            (good, _) => good,
        };
        let hint = hint.map_or(String::new(), |h| format!("\n  hint: did you mean `{h}`?"));
        format!("{message}{hint}")
    })
}

/// Removes the `sweep:` block from the YAML tree; `None` when there is none. (The schema has
/// already read it as a mapping, from the file and after each override.)
fn take_sweep(root: &mut serde_yaml::Value) -> Option<serde_yaml::Mapping> {
    match root.as_mapping_mut().and_then(|m| m.remove("sweep")) {
        Some(serde_yaml::Value::Mapping(m)) => Some(m),
        _ => None,
    }
}

/// Every point of a sweep read and checked; the first point's experiment with all of them.
fn read_sweep(
    root: &serde_yaml::Value,
    block: &serde_yaml::Mapping,
    path: &Path,
    sets: Vec<Override>,
) -> Result<LoadedExperiment> {
    let (points, shown) =
        sweep::points(block).map_err(|m| anyhow::anyhow!("{}: {m}", path.display()))?;
    sweep::check_overrides(&points[0], &sets)
        .map_err(|m| anyhow::anyhow!("{}: {m}", path.display()))?;
    let mut loaded = Vec::new();
    for point in points {
        let exp = read_point(root, &point, path, &sets)?;
        let values = point
            .values
            .iter()
            .filter(|(k, _)| shown.contains(k))
            .map(|(k, v)| (k.clone(), sweep::short(v)))
            .collect();
        loaded.push(SweepPoint {
            label: point.label(&shown),
            values,
            exp,
        });
    }
    check_points_differ(&loaded, path)?;
    let mut first = loaded[0].exp.clone();
    if loaded.len() > 1 {
        first.sweep = loaded;
    }
    Ok(first)
}

/// Two sweep points that resolve to the same runs (a value that does not change a run, such
/// as a data folder, or two spellings of one value) would train nothing new.
fn check_points_differ(points: &[SweepPoint], path: &Path) -> Result<()> {
    let mut seen: std::collections::BTreeMap<String, &str> = Default::default();
    for p in points {
        for run in p.exp.runs() {
            if let Some(other) = seen.insert(run.run_id(), &p.label) {
                anyhow::bail!(
                    "{}: `sweep`: the points {other} and {} give the same runs: the values \
                     differ in a way that does not change a run (a data folder, a display name, \
                     a default written out); sweep values that change the runs",
                    path.display(),
                    p.label
                );
            }
        }
    }
    Ok(())
}

/// Reads and checks one sweep point: its values set one at a time in the YAML tree, so that a
/// value the schema refuses is named.
fn read_point(
    root: &serde_yaml::Value,
    point: &sweep::Point,
    path: &Path,
    sets: &[Override],
) -> Result<LoadedExperiment> {
    let mut tree = root.clone();
    let mut exp = None;
    for (key, value) in &point.values {
        sweep::set_value(&mut tree, key, value.clone())
            .map_err(|m| anyhow::anyhow!("{}: sweep.{key}: {m}", path.display()))?;
        exp = Some(schema_of(&tree, key).map_err(|m| {
            anyhow::anyhow!(
                "{}: `sweep.{key}`: value {}: {m}",
                path.display(),
                sweep::short(value)
            )
        })?);
    }
    let exp = match exp {
        Some(exp) => exp,
        None => schema_of(&tree, "").map_err(|m| anyhow::anyhow!("{}: {m}", path.display()))?,
    };
    let origins = sweep::Origins {
        sets: sets.to_vec(),
        point: Some(point.clone()),
    };
    check::check_experiment(exp, path, &origins)
}
