//! The checks run on an experiment file before anything trains: one function per section, then
//! the checks that span sections (a method against the batch size or the splits). Every mistake
//! names its key path and what to write instead.

use std::collections::BTreeSet;
use std::path::Path;

use anyhow::Result;

use super::evaluate::{EvaluateSpec, OodSpec, HELD_OUT};
use super::run::LoadedExperiment;
use super::sweep::Origins;
use super::tables::{self, TableEntry};
use super::train::Schedule;
use super::Experiment;
use crate::data::Split;
use crate::metrics::catalog::Section;
use crate::mix::{LabelRule, Method};

/// A mistake in an experiment file: where (a key path such as `train.lr`) and what is wrong.
struct Mistake {
    place: String,
    message: String,
}

fn mistake(place: impl Into<String>, message: impl Into<String>) -> Mistake {
    Mistake {
        place: place.into(),
        message: message.into(),
    }
}

type Checked<T = ()> = std::result::Result<T, Mistake>;

/// Checks `exp` and resolves its defaults; errors read `file: `place`: message`, followed by
/// the `--set` override or sweep value the mistake comes from, if any.
pub(super) fn check_experiment(
    exp: Experiment,
    path: &Path,
    origins: &Origins,
) -> Result<LoadedExperiment> {
    resolve(exp, path).map_err(|m| {
        anyhow::anyhow!(
            "{}: `{}`: {}{}",
            path.display(),
            m.place,
            m.message,
            origins.explain(&m.place)
        )
    })
}

fn resolve(mut exp: Experiment, path: &Path) -> Checked<LoadedExperiment> {
    check_name(&exp.name)?;
    check_splits(&exp.splits)?;
    exp.model.check().map_err(|m| mistake("model", m))?;
    exp.train
        .check()
        .map_err(|(k, m)| mistake(format!("train.{k}"), m))?;
    if let Some(v) = exp.validation {
        if !(v > 0.0 && v < 1.0) {
            return Err(mistake(
                "validation",
                format!("the held-out share must be in (0, 1), got {v}"),
            ));
        }
    }
    let preprocess = exp
        .preprocess
        .unwrap_or_else(|| exp.dataset.default_preprocess());
    if let Some(size) = preprocess.pad_to {
        if !(1..=1024).contains(&size) {
            return Err(mistake(
                "preprocess.pad_to",
                format!("must be between 1 and 1024, got {size}"),
            ));
        }
    }
    if let Some(e) = &exp.evaluate {
        e.check()
            .map_err(|(k, m)| mistake(format!("evaluate.{k}"), m))?;
    }
    if let Some(o) = &exp.ood {
        o.check().map_err(|(k, m)| mistake(format!("ood.{k}"), m))?;
    }
    resolve_train_defaults(&mut exp);
    let methods = check_methods(&exp)?;
    check_seeds(&exp.seeds)?;
    check_tables(&exp.tables)?;
    check_parts(&exp)?;
    let listed = exp
        .claims
        .iter()
        .enumerate()
        .map(|(i, c)| {
            c.resolve(&methods)
                .map_err(|m| mistake(format!("claims[{i}]"), m))
        })
        .collect::<Checked<Vec<_>>>()?;
    let claims = super::claims::all_claims(&methods, &listed);
    Ok(LoadedExperiment {
        path: path.to_path_buf(),
        name: exp.name,
        dataset: exp.dataset,
        data_seed: exp.data_seed,
        splits: exp.splits,
        model: exp.model,
        train: exp.train,
        methods,
        seeds: exp.seeds,
        preprocess,
        validation: exp.validation,
        tables: exp.tables,
        device: exp.device,
        claims,
        evaluate: exp.evaluate,
        ood: exp.ood,
        sweep: Vec::new(),
        overrides: Vec::new(),
    })
}

/// The longest experiment name: it names the results and reports folders (file systems refuse
/// names over 255 bytes; figure and table names are bounded on their own).
const MAX_NAME_LEN: usize = 100;

fn check_name(name: &str) -> Checked {
    let usable = |c: char| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.';
    // A name of dots alone (`.`, `..`) would put the runs and the report beside or above the
    // results and reports folders instead of in a folder of their own.
    let only_dots = name.chars().all(|c| c == '.');
    if name.trim().is_empty() || !name.chars().all(usable) || only_dots {
        return Err(mistake(
            "name",
            format!(
                "`{name}` is not a usable folder name; use letters, digits, `-`, `_` or `.`, \
                 not dots alone"
            ),
        ));
    }
    if name.len() > MAX_NAME_LEN {
        return Err(mistake(
            "name",
            format!(
                "`{name}` is {} characters long; use at most {MAX_NAME_LEN} (it names folders)",
                name.len()
            ),
        ));
    }
    Ok(())
}

fn check_splits(splits: &[Split]) -> Checked {
    if splits.is_empty() {
        return Err(mistake(
            "splits",
            "list at least one split, e.g. `- balanced`",
        ));
    }
    let mut seen = BTreeSet::new();
    for (i, split) in splits.iter().enumerate() {
        let place = format!("splits[{i}]");
        split
            .check()
            .map_err(|(key, m)| mistake(format!("{place}.{key}"), m))?;
        if !seen.insert(split.slug()) {
            return Err(mistake(
                &place,
                format!("split `{}` is listed twice", split.slug()),
            ));
        }
    }
    Ok(())
}

/// Fills the training defaults that depend on the dataset or that have two spellings, so that
/// writing a default and leaving it out are the same run.
fn resolve_train_defaults(exp: &mut Experiment) {
    if exp.train.augment.is_none() {
        exp.train.augment = exp.dataset.default_augment();
    }
    if exp.train.augment.is_some_and(|a| a.is_identity()) {
        exp.train.augment = None; // no augmentation: the same runs as leaving it out
    }
    if exp.train.schedule == Schedule::Multistep {
        exp.train.lr_decay.get_or_insert(0.2);
    }
}

/// Resolves every method entry and checks it against the rest of the experiment.
fn check_methods(exp: &Experiment) -> Checked<Vec<Method>> {
    if exp.methods.is_empty() {
        return Err(mistake("methods", "list at least one method, e.g. `- erm`"));
    }
    if exp.model.arch.is_conv() && exp.train.batch_size < 2 {
        return Err(mistake(
            "train.batch_size",
            "batch normalisation needs batches of at least 2 images",
        ));
    }
    let mut methods: Vec<Method> = Vec::new();
    for (i, entry) in exp.methods.iter().enumerate() {
        let place = format!("methods[{i}] ({})", entry.preset_name());
        let method = entry.resolve().map_err(|m| mistake(&place, m))?;
        check_method_fits(&method, exp, &place)?;
        let settings = method.settings();
        if let Some(j) = methods.iter().position(|m| m.settings() == settings) {
            return Err(mistake(
                format!("methods[{i}]"),
                format!(
                    "`{}` has the same settings as methods[{j}] (`{}`): they would be the same runs",
                    method.display_name(),
                    methods[j].display_name()
                ),
            ));
        }
        if methods
            .iter()
            .any(|m| m.display_name() == method.display_name())
        {
            return Err(mistake(
                format!("methods[{i}]"),
                format!(
                    "method `{}` is listed twice; give one of them a different `name:`",
                    method.display_name()
                ),
            ));
        }
        methods.push(method);
    }
    Ok(methods)
}

/// A method against the batch size and the splits.
fn check_method_fits(method: &Method, exp: &Experiment, place: &str) -> Checked {
    if method.uses_icm() && exp.train.batch_size < 2 {
        return Err(mistake(
            "train.batch_size",
            format!(
                "{} uses the ICM loss, which contrasts each pair with the other pairs of its batch: \
                 batch_size must be ≥ 2, got {}",
                method.display_name(),
                exp.train.batch_size
            ),
        ));
    }
    if let Some(w) = method.warmup_epochs.filter(|&w| w > exp.train.epochs) {
        return Err(mistake(
            format!("{place}.warmup_epochs"),
            format!(
                "a warm-up of {w} epochs is longer than the run's {} (`train.epochs`): the \
                 learning rate would never reach its schedule; use at most {}",
                exp.train.epochs, exp.train.epochs
            ),
        ));
    }
    if method.label_rule == LabelRule::Remix {
        if let Some(split) = exp
            .splits
            .iter()
            .find(|s| !matches!(s, Split::LongTailed { .. }))
        {
            return Err(mistake(
                place,
                format!(
                    "Remix re-weights labels by the long-tailed class counts, but split `{}` \
                     has equal counts (Remix would silently equal Mixup); put Remix methods in \
                     an experiment whose splits are all `long_tailed`",
                    split.slug()
                ),
            ));
        }
    }
    Ok(())
}

fn check_seeds(seeds: &[u64]) -> Checked {
    if seeds.is_empty() {
        return Err(mistake(
            "seeds",
            "list at least one training seed, e.g. `[0, 1, 2]`",
        ));
    }
    let unique: BTreeSet<_> = seeds.iter().collect();
    if unique.len() != seeds.len() {
        return Err(mistake("seeds", "a seed is listed twice"));
    }
    Ok(())
}

fn check_tables(entries: &[TableEntry]) -> Checked {
    let mut names: BTreeSet<String> = BTreeSet::new();
    for (i, entry) in entries.iter().enumerate() {
        let place = format!("tables[{i}]");
        entry.check().map_err(|m| mistake(&place, m))?;
        for name in tables::entry_files(entry) {
            if !names.insert(name.clone()) {
                return Err(mistake(
                    &place,
                    format!(
                        "a table named `{name}` is already listed; table names name files and must differ"
                    ),
                ));
            }
        }
    }
    Ok(())
}

/// Whether metric `name` (a catalog name, or `name@part`) has values in an experiment with these
/// `evaluate:` and `ood:` sections: a corruption metric needs `evaluate:`, an OOD metric `ood:`,
/// and a part must be one of that section's corruptions, severities or OOD sets. Without this a
/// table or claim of such a metric would be all dashes with no reason given.
pub fn check_metric_sections(
    name: &str,
    evaluate: Option<&EvaluateSpec>,
    ood: Option<&OodSpec>,
) -> Result<(), String> {
    let (base, part) = match name.split_once('@') {
        Some((base, part)) => (base, Some(part)),
        None => (name, None),
    };
    let parts: Vec<String> = match Section::of_metric(base) {
        Section::TestSet => return Ok(()),
        Section::Evaluate => {
            let Some(e) = evaluate else {
                return Err(format!(
                    "`{name}` needs corrupted test sets: add an `evaluate:` section"
                ));
            };
            let corruptions = e.corruptions.iter().map(|c| c.name().to_string());
            corruptions
                .chain(e.severities.iter().map(|s| s.to_string()))
                .collect()
        }
        Section::Ood => {
            let Some(o) = ood else {
                return Err(format!(
                    "`{name}` needs out-of-distribution sets: add an `ood:` section"
                ));
            };
            let held_out = (!o.held_out_classes.is_empty()).then(|| HELD_OUT.to_string());
            held_out.into_iter().chain(o.sets.keys().cloned()).collect()
        }
    };
    match part {
        Some(part) if !parts.iter().any(|k| k == part) => Err(format!(
            "`{part}` is not one of this experiment's parts for `{base}`; use one of {}",
            parts.join(", ")
        )),
        _ => Ok(()),
    }
}

/// Every metric of the tables and claims has values in this experiment
/// ([`check_metric_sections`]).
fn check_parts(exp: &Experiment) -> Checked {
    let tables = exp.tables.iter().enumerate().filter_map(|(i, t)| match t {
        TableEntry::Custom(spec) => Some((format!("tables[{i}].metric"), &spec.metric)),
        TableEntry::Preset(..) => None,
    });
    let claims = exp.claims.iter().enumerate().filter_map(|(i, c)| {
        c.metric
            .as_ref()
            .map(|m| (format!("claims[{i}].metric"), m))
    });
    for (place, name) in tables.chain(claims) {
        check_metric_sections(name, exp.evaluate.as_ref(), exp.ood.as_ref())
            .map_err(|m| mistake(place, m))?;
    }
    Ok(())
}
