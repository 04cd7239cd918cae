//! Changing an experiment file's values by dotted key path (`train.lr`), on the YAML value tree
//! before it is read into the schema, so that every field can be changed and is checked like
//! the file itself: command-line overrides ([`Override`], `--set train.lr=0.1`) and the points
//! of a `sweep:` block ([`points`]).
//!
//! A sweep's keys are crossed (every combination); the keys of a `zip:` block advance together
//! (lists of equal length). `zip:` takes one block or a list of blocks, each crossed with the
//! rest.

use serde_yaml::{Mapping, Value};

/// A `--set key=value` override: the key path and the value, parsed as YAML.
#[derive(Debug, Clone, PartialEq)]
pub struct Override {
    /// As written on the command line, for messages.
    pub text: String,
    pub path: String,
    pub value: Value,
}

impl Override {
    /// Parses `key=value` (the value as YAML: `0.1`, `resnet20`, `[64, 64]`, `{ratio: 10}`).
    pub fn parse(text: &str) -> Result<Override, String> {
        let Some((path, value)) = text.split_once('=') else {
            return Err(format!(
                "--set {text}: expected key=value with a dotted key path, e.g. `--set train.lr=0.1`"
            ));
        };
        let path = path.trim();
        check_path(path).map_err(|m| format!("--set {text}: {m}"))?;
        let value: Value = serde_yaml::from_str(value)
            .map_err(|e| format!("--set {text}: the value is not YAML: {e}"))?;
        Ok(Override {
            text: text.to_string(),
            path: path.to_string(),
            value,
        })
    }

    /// Sets the value in the experiment's YAML tree. `sweep.<key>` sets one key of the sweep
    /// block (whose keys are themselves dotted paths): `--set sweep.train.lr=[0.05,0.1]`.
    pub fn apply(&self, root: &mut Value) -> Result<(), String> {
        let keys: Vec<&str> = match self.path.strip_prefix("sweep.") {
            Some(rest) => vec!["sweep", rest],
            None => self.path.split('.').collect(),
        };
        set_path(root, &keys, self.value.clone()).map_err(|m| format!("--set {}: {m}", self.text))
    }
}

/// A key path must be dot-separated, non-empty keys.
fn check_path(path: &str) -> Result<(), String> {
    if path.is_empty() || path.split('.').any(|k| k.trim().is_empty()) {
        return Err(format!(
            "`{path}` is not a key path: write keys separated by dots, e.g. `train.lr`"
        ));
    }
    Ok(())
}

/// `path` with its key `wrong` replaced by `good`: `train.lr` for `train.lrr`.
pub fn replace_key(path: &str, wrong: &str, good: &str) -> String {
    path.split('.')
        .map(|k| if k == wrong { good } else { k })
        .collect::<Vec<_>>()
        .join(".")
}

/// What a YAML value is, for messages.
fn kind(v: &Value) -> String {
    match v {
        Value::Mapping(_) => "a mapping".into(),
        Value::Sequence(_) => "a list".into(),
        other => format!("`{}`", short(other)),
    }
}

/// Sets `keys` in `root`, creating mappings on the way where there is nothing yet.
fn set_path(root: &mut Value, keys: &[&str], value: Value) -> Result<(), String> {
    let mut node = root;
    for (i, key) in keys.iter().enumerate() {
        if node.is_null() {
            *node = Value::Mapping(Mapping::new());
        }
        let Value::Mapping(map) = node else {
            let above = keys[..i].join(".");
            return Err(format!(
                "`{above}` is {}, which has no key `{key}`: set `{above}` whole instead",
                kind(node)
            ));
        };
        let k = Value::String(key.to_string());
        if i + 1 == keys.len() {
            map.insert(k, value);
            return Ok(());
        }
        node = map.entry(k).or_insert(Value::Null);
    }
    Ok(())
}

/// Sets the value at dotted key path `path` (a sweep's key) in the YAML tree.
pub fn set_value(root: &mut Value, path: &str, value: Value) -> Result<(), String> {
    let keys: Vec<&str> = path.split('.').collect();
    set_path(root, &keys, value)
}

/// A value as one short piece of text: scalars as written, lists and mappings as JSON.
pub fn short(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        Value::Bool(b) => b.to_string(),
        Value::Null => "null".into(),
        other => serde_json::to_string(other).unwrap_or_else(|_| format!("{other:?}")),
    }
}

/// One point of a sweep: the values it sets, in the order of the sweep block.
#[derive(Debug, Clone, PartialEq)]
pub struct Point {
    pub values: Vec<(String, Value)>,
}

impl Point {
    /// `train.lr=0.1, data_seed=1`: the point's values of the keys in `shown`.
    pub fn label(&self, shown: &[String]) -> String {
        self.values
            .iter()
            .filter(|(k, _)| shown.contains(k))
            .map(|(k, v)| format!("{k}={}", short(v)))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// Where the values that differ from the file came from (`--set` overrides, a sweep point), so
/// that a mistake found in them names its source.
#[derive(Debug, Clone, Default)]
pub struct Origins {
    pub sets: Vec<Override>,
    pub point: Option<Point>,
}

/// Whether a mistake at key path `place` concerns the value at `path`.
fn related(place: &str, path: &str) -> bool {
    let inside = |outer: &str, inner: &str| {
        inner == outer
            || inner.starts_with(&format!("{outer}."))
            || inner.starts_with(&format!("{outer}["))
            || inner.starts_with(&format!("{outer} "))
    };
    inside(path, place) || inside(place, path)
}

impl Origins {
    /// What to add to a message about key path `place`: the overrides and sweep values that
    /// set it, else the sweep point the mistake was found in.
    pub fn explain(&self, place: &str) -> String {
        let point = self.point.as_ref();
        let mut from: Vec<String> = Vec::new();
        for o in &self.sets {
            if related(place, &o.path) {
                from.push(format!("`--set {}`", o.text));
            }
        }
        for (k, v) in point.map_or(&[][..], |p| &p.values[..]) {
            if related(place, k) {
                from.push(format!("`sweep: {k}: {}`", short(v)));
            }
        }
        if !from.is_empty() {
            return format!(" (from {})", from.join(", "));
        }
        match point {
            Some(p) => {
                let all: Vec<String> = p.values.iter().map(|(k, _)| k.clone()).collect();
                format!(" (in the sweep point {})", p.label(&all))
            }
            None => String::new(),
        }
    }
}

/// Refuses an override of a swept key: every sweep point would replace its value.
pub fn check_overrides(point: &Point, sets: &[Override]) -> Result<(), String> {
    for o in sets.iter().filter(|o| !o.path.starts_with("sweep.")) {
        if let Some((key, _)) = point.values.iter().find(|(k, _)| related(k, &o.path)) {
            return Err(format!(
                "--set {}: `{key}` is swept, so every sweep point replaces this value; change the \
                 sweep instead, e.g. `--set sweep.{key}=[...]`",
                o.text
            ));
        }
    }
    Ok(())
}

/// Keys that cannot be swept, and why.
fn refused(root: &str) -> Option<&'static str> {
    Some(match root {
        "splits" | "methods" | "seeds" => {
            "it is already an axis of the grid (splits × methods × seeds): list its values there \
             (methods with different settings each get a `name:`)"
        }
        "name" => "it names the results folder and the report, which a sweep's runs share",
        "dataset" => {
            "the report's tables are per dataset: write one experiment file per dataset \
             (`--set dataset=...` changes it for one invocation)"
        }
        "device" => {
            "the device does not change a run (runs on cpu and cuda have the same id): set it \
             with `device:` or `icm run --device`"
        }
        "tables" | "claims" => {
            "it only changes the report, not the runs: there is nothing to sweep"
        }
        "sweep" => "a sweep cannot sweep itself",
        _ => return None,
    })
}

/// The values of one swept key: a non-empty list without repeats.
fn values_of(place: &str, v: &Value) -> Result<Vec<Value>, String> {
    let Value::Sequence(items) = v else {
        return Err(format!(
            "`{place}`: give a list of values, e.g. `train.lr: [0.05, 0.1]` (got {})",
            kind(v)
        ));
    };
    if items.is_empty() {
        return Err(format!(
            "`{place}`: the list is empty; give at least one value"
        ));
    }
    for (i, item) in items.iter().enumerate() {
        if items[..i].contains(item) {
            return Err(format!("`{place}`: {} is listed twice", short(item)));
        }
    }
    Ok(items.clone())
}

/// Keys that advance together, each with its values (all lists of one length).
type Axis = Vec<(String, Vec<Value>)>;

/// A `zip:` block: keys whose lists must have the same length.
fn zip_axis(place: &str, block: &Value) -> Result<Axis, String> {
    let Value::Mapping(map) = block else {
        return Err(format!(
            "`{place}`: a zip block maps keys to lists of equal length, e.g. \
             `zip: {{train.lr: [0.05, 0.1], train.epochs: [10, 20]}}` (got {})",
            kind(block)
        ));
    };
    let mut axis = Axis::new();
    for (k, v) in map {
        let key = key_of(place, k)?;
        axis.push((key.clone(), values_of(&format!("{place}.{key}"), v)?));
    }
    if let Some(((k0, v0), rest)) = axis.split_first() {
        if let Some((k, v)) = rest.iter().find(|(_, v)| v.len() != v0.len()) {
            return Err(format!(
                "`{place}`: the lists of a zip block advance together and must have the same \
                 length: `{k0}` has {} values, `{k}` has {}",
                v0.len(),
                v.len()
            ));
        }
    } else {
        return Err(format!("`{place}`: the zip block is empty"));
    }
    Ok(axis)
}

/// A swept key: a string key path that may be swept.
fn key_of(place: &str, k: &Value) -> Result<String, String> {
    let Value::String(key) = k else {
        return Err(format!(
            "`{place}`: keys are dotted key paths such as `train.lr`, got {}",
            kind(k)
        ));
    };
    check_path(key).map_err(|m| format!("`{place}`: {m}"))?;
    let root = key.split('.').next().unwrap_or_default();
    if let Some(why) = refused(root) {
        return Err(format!("`{place}.{key}`: `{root}` cannot be swept: {why}"));
    }
    Ok(key.clone())
}

/// The axes of a sweep block, in order: one per key, one per zip block.
fn axes(sweep: &Mapping) -> Result<Vec<Axis>, String> {
    let mut out = Vec::new();
    for (k, v) in sweep {
        if k.as_str() == Some("zip") {
            match v {
                Value::Sequence(blocks) => {
                    for (i, b) in blocks.iter().enumerate() {
                        out.push(zip_axis(&format!("sweep.zip[{i}]"), b)?);
                    }
                }
                block => out.push(zip_axis("sweep.zip", block)?),
            }
            continue;
        }
        let key = key_of("sweep", k)?;
        out.push(vec![(key.clone(), values_of(&format!("sweep.{key}"), v)?)]);
    }
    let keys: Vec<&String> = out.iter().flatten().map(|(k, _)| k).collect();
    for (i, a) in keys.iter().enumerate() {
        for b in &keys[..i] {
            if a == b {
                return Err(format!(
                    "`sweep`: `{a}` is swept twice; list its values once"
                ));
            }
            let (outer, inner) = if a.len() < b.len() { (a, b) } else { (b, a) };
            if inner.starts_with(&format!("{outer}.")) {
                return Err(format!(
                    "`sweep`: `{inner}` lies inside `{outer}`, which is swept too; sweep one of them"
                ));
            }
        }
    }
    Ok(out)
}

/// Every point of a sweep block (the crossing of its axes, the first axis outermost) and the
/// keys that take more than one value (those that name a point).
pub fn points(sweep: &Mapping) -> Result<(Vec<Point>, Vec<String>), String> {
    let axes = axes(sweep)?;
    let mut points = vec![Point { values: Vec::new() }];
    for axis in &axes {
        let len = axis[0].1.len();
        points = points
            .into_iter()
            .flat_map(|p| {
                (0..len).map(move |i| {
                    let mut values = p.values.clone();
                    values.extend(axis.iter().map(|(k, v)| (k.clone(), v[i].clone())));
                    Point { values }
                })
            })
            .collect();
    }
    let varying = axes
        .iter()
        .flatten()
        .filter(|(_, v)| v.len() > 1)
        .map(|(k, _)| k.clone())
        .collect();
    Ok((points, varying))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sweep(yaml: &str) -> Mapping {
        serde_yaml::from_str(yaml).unwrap()
    }

    fn labels(yaml: &str) -> Vec<String> {
        let (points, shown) = points(&sweep(yaml)).unwrap();
        points.iter().map(|p| p.label(&shown)).collect()
    }

    #[test]
    fn keys_cross_and_zip_blocks_advance_together() {
        assert_eq!(
            labels("{train.lr: [0.05, 0.1], data_seed: [0, 1]}"),
            [
                "train.lr=0.05, data_seed=0",
                "train.lr=0.05, data_seed=1",
                "train.lr=0.1, data_seed=0",
                "train.lr=0.1, data_seed=1"
            ]
        );
        assert_eq!(
            labels("{zip: {train.lr: [0.05, 0.1], train.epochs: [10, 20]}, model.arch: [mlp]}"),
            [
                "train.lr=0.05, train.epochs=10",
                "train.lr=0.1, train.epochs=20"
            ]
        );
        assert_eq!(
            labels("{zip: [{train.lr: [1, 2]}, {data_seed: [3, 4]}]}"),
            [
                "train.lr=1, data_seed=3",
                "train.lr=1, data_seed=4",
                "train.lr=2, data_seed=3",
                "train.lr=2, data_seed=4"
            ]
        );
    }

    #[test]
    fn bad_sweeps_name_their_place() {
        let err = |yaml: &str| points(&sweep(yaml)).unwrap_err();
        assert_eq!(
            err("{zip: {train.lr: [1, 2], train.epochs: [1, 2, 3]}}"),
            "`sweep.zip`: the lists of a zip block advance together and must have the same \
             length: `train.lr` has 2 values, `train.epochs` has 3"
        );
        assert!(err("{seeds: [[0], [1]]}").starts_with("`sweep.seeds`: `seeds` cannot be swept"));
        assert!(err("{train.lr: 0.1}").starts_with("`sweep.train.lr`: give a list of values"));
        assert_eq!(
            err("{train.lr: []}"),
            "`sweep.train.lr`: the list is empty; give at least one value"
        );
        assert_eq!(
            err("{data_seed: [1, 1]}"),
            "`sweep.data_seed`: 1 is listed twice"
        );
        assert_eq!(
            err("{train: [{lr: 1}], train.lr: [1, 2]}"),
            "`sweep`: `train.lr` lies inside `train`, which is swept too; sweep one of them"
        );
        assert_eq!(
            err("{zip: {data_seed: [1]}, data_seed: [2]}"),
            "`sweep`: `data_seed` is swept twice; list its values once"
        );
        assert!(err("{train..lr: [1]}").contains("is not a key path"));
    }

    #[test]
    fn overrides_set_values_by_path() {
        let mut root: Value =
            serde_yaml::from_str("train: {lr: 0.05}\nmodel: {arch: mlp}").unwrap();
        Override::parse("train.lr=0.1")
            .unwrap()
            .apply(&mut root)
            .unwrap();
        Override::parse("preprocess.pad_to=32")
            .unwrap()
            .apply(&mut root)
            .unwrap();
        Override::parse("sweep.data_seed=[0, 1]")
            .unwrap()
            .apply(&mut root)
            .unwrap();
        let want: Value = serde_yaml::from_str(
            "train: {lr: 0.1}\nmodel: {arch: mlp}\npreprocess: {pad_to: 32}\nsweep: {data_seed: [0, 1]}",
        )
        .unwrap();
        assert_eq!(root, want);
        let err = Override::parse("model.arch.depth=3")
            .unwrap()
            .apply(&mut root)
            .unwrap_err();
        assert_eq!(
            err,
            "--set model.arch.depth=3: `model.arch` is `mlp`, which has no key `depth`: set \
             `model.arch` whole instead"
        );
        assert!(Override::parse("train.lr")
            .unwrap_err()
            .contains("expected key=value"));
        assert!(Override::parse("=3")
            .unwrap_err()
            .contains("is not a key path"));
        assert!(Override::parse("a=[1")
            .unwrap_err()
            .contains("the value is not YAML"));
    }
}
