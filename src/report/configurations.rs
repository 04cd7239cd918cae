//! Keeping configurations apart. A report never combines runs whose configurations differ in
//! anything but the training seed: from an experiment file it takes exactly the current grid's
//! runs, by run id, under the current names ([`relabel_to_grid`]); from a bare results folder,
//! runs that share a method label but differ elsewhere (an edited `lr`, say) become separate
//! rows, named by the fields that differ ([`separate_configurations`]).

use std::collections::{BTreeMap, BTreeSet};

use super::collect::{RunRecord, RunningRun};
use crate::spec::run::point_row;
use crate::spec::{LoadedExperiment, RunConfig};

/// Gives every run the current grid's configuration of its run id (the id names the
/// configuration, and the record's id is its folder's name, see `records::damage`), so it is named after the
/// current method and split (run ids leave display names out, so a renamed method keeps its
/// runs), with a sweep after its point (`mixup [train.lr=0.1]`), and a `config.yaml` edited or
/// copied from another run cannot move it to another row. Runs not in the grid are dropped.
pub fn relabel_to_grid(runs: &mut Vec<RunRecord>, exp: &LoadedExperiment) {
    let grid: BTreeMap<String, (String, RunConfig)> = exp
        .labelled_runs()
        .into_iter()
        .map(|(label, r)| (r.run_id(), (label, r)))
        .collect();
    runs.retain(|r| grid.contains_key(&r.metrics.run_id));
    for run in runs.iter_mut() {
        let (label, current) = &grid[&run.metrics.run_id];
        let row = point_row(&current.method.display_name(), label);
        run.metrics.method = row.clone();
        run.metrics.split = current.split.slug();
        run.metrics.split_title = current.split.title();
        run.metrics.seed = current.seed;
        run.config = current.clone();
        run.config.method.display_name = row;
    }
}

/// Gives every running run the current grid's configuration of its run id (its folder name),
/// so it is drawn under the current method name. Runs not in the grid are dropped.
pub fn relabel_running(running: &mut Vec<RunningRun>, exp: &LoadedExperiment) {
    let grid: BTreeMap<String, RunConfig> =
        exp.runs().into_iter().map(|r| (r.run_id(), r)).collect();
    running.retain_mut(|run| {
        let id = run.dir.file_name().map(|n| n.to_string_lossy().to_string());
        match id.and_then(|id| grid.get(&id)) {
            Some(current) => {
                run.config = current.clone();
                true
            }
            None => false,
        }
    });
}

/// The configuration of a run apart from its seed and split, flattened to `field → value`
/// (display names and the data folder left out, as in run ids).
fn arm(config: &RunConfig) -> BTreeMap<String, String> {
    let mut out = config.fields();
    out.remove("seed");
    out.retain(|k, _| k != "split" && !k.starts_with("split."));
    out
}

/// Gives runs that share a method label but not a configuration labels of their own,
/// `label [field=value, ...]` with the fields that differ among that label's configurations.
/// Returns a note for every label split this way.
pub fn separate_configurations(runs: &mut [RunRecord]) -> Vec<String> {
    let mut arms: BTreeMap<String, BTreeSet<BTreeMap<String, String>>> = BTreeMap::new();
    for run in runs.iter() {
        arms.entry(run.metrics.method.clone())
            .or_default()
            .insert(arm(&run.config));
    }
    let mut notes = Vec::new();
    for (label, configs) in arms.iter().filter(|(_, c)| c.len() > 1) {
        let fields: BTreeSet<&String> = configs.iter().flat_map(|c| c.keys()).collect();
        let differing: Vec<&String> = fields
            .into_iter()
            .filter(|f| {
                let values: BTreeSet<Option<&String>> = configs.iter().map(|c| c.get(*f)).collect();
                values.len() > 1
            })
            .collect();
        let mut names = Vec::new();
        for run in runs.iter_mut().filter(|r| &r.metrics.method == label) {
            let config = arm(&run.config);
            let parts: Vec<String> = differing
                .iter()
                .map(|f| format!("{f}={}", config.get(*f).map_or("–", |v| v.as_str())))
                .collect();
            let name = format!("{label} [{}]", parts.join(", "));
            run.metrics.method = name.clone();
            run.config.method.display_name = name.clone();
            if !names.contains(&name) {
                names.push(name);
            }
        }
        let fields: Vec<&str> = differing.iter().map(|f| f.as_str()).collect();
        notes.push(format!(
            "runs labelled `{label}` come from {} configurations that differ in {}: each is a \
             row of its own ({}); `icm report <experiment file>` reports only its current grid",
            configs.len(),
            fields.join(", "),
            names.join("; ")
        ));
    }
    notes
}

/// The rest of a run's configuration apart from its method, seed and split, as one string:
/// methods of a results folder are compared only within the same rest.
pub fn context(config: &RunConfig) -> String {
    let mut rest = arm(config);
    rest.retain(|k, _| !k.starts_with("method."));
    serde_json::to_string(&rest).expect("strings serialise")
}
