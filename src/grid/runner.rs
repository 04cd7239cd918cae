//! Runs an experiment grid: checks every split against the data first, then trains the runs of
//! this shard that no one else has claimed, `jobs` at a time, each with its own thread budget;
//! finished runs are skipped, failures are recorded without stopping the grid, and interrupted
//! runs resume from their checkpoints.

use std::collections::{BTreeMap, VecDeque};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use indicatif::ProgressBar;

use super::history_file::HistoryLog;
use super::locks::{self, ClaimResult, RunState};
use super::progress::{GridProgress, Mode};
use super::records;
use crate::data::{self, splits, Dataset};
use crate::nn::DeviceKind;
use crate::spec::{LoadedExperiment, RunConfig};
use crate::train::{
    train_and_score, BeyondSets, Checkpoint, Checkpointing, EpochUpdate, RunOutcome,
    CHECKPOINT_FILE, LEGACY_CHECKPOINT_FILE,
};

/// How `icm run` works through a grid.
#[derive(Debug, Clone)]
pub struct RunOptions {
    pub quiet: bool,
    /// Runs trained at the same time in this process.
    pub jobs: usize,
    /// Threads per run (matrix products).
    pub threads: usize,
    /// `(k, n)`: only shard k of n (see [`shard_runs`]).
    pub shard: Option<(usize, usize)>,
    /// Run failed runs again.
    pub retry_failed: bool,
    /// A lock without a heartbeat for this long is stale.
    pub lock_timeout: Duration,
    /// Save a checkpoint every this many epochs; `None`: once a minute (and always at the end).
    pub checkpoint_every: Option<usize>,
    /// Overrides the experiment's `device`.
    pub device: Option<DeviceKind>,
    /// Keep a finished run's checkpoint (by default it is removed once the run is recorded).
    pub keep_checkpoints: bool,
}

impl Default for RunOptions {
    fn default() -> Self {
        RunOptions {
            quiet: true,
            jobs: 1,
            threads: default_threads(1),
            shard: None,
            retry_failed: false,
            lock_timeout: Duration::from_secs(3600),
            checkpoint_every: None,
            device: None,
            keep_checkpoints: false,
        }
    }
}

/// Threads per run so that jobs × threads ≤ cores.
pub fn default_threads(jobs: usize) -> usize {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    (cores / jobs.max(1)).max(1)
}

/// Parses `k/n` (0 ≤ k < n).
pub fn parse_shard(text: &str) -> Result<(usize, usize)> {
    let parsed = text.split_once('/').and_then(|(k, n)| {
        Some((
            k.trim().parse::<usize>().ok()?,
            n.trim().parse::<usize>().ok()?,
        ))
    });
    match parsed {
        Some((k, n)) if n > 0 && k < n => Ok((k, n)),
        _ => bail!("--shard `{text}`: expected k/n with 0 ≤ k < n, e.g. 0/4 (Slurm: $SLURM_ARRAY_TASK_ID/$SLURM_ARRAY_TASK_COUNT)"),
    }
}

/// The runs of shard k of n: the grid's run ids are sorted and dealt out in turn, so shards
/// differ in size by at most one run, and reordering the YAML's lists changes nothing.
pub fn shard_runs(runs: Vec<RunConfig>, shard: Option<(usize, usize)>) -> Vec<RunConfig> {
    let Some((k, n)) = shard else {
        return runs;
    };
    let mut ids: Vec<String> = runs.iter().map(|r| r.run_id()).collect();
    ids.sort();
    runs.into_iter()
        .filter(|r| {
            let id = r.run_id();
            ids.binary_search(&id).is_ok_and(|pos| pos % n == k)
        })
        .collect()
}

/// Counts of what a grid run did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct GridSummary {
    /// Runs in this shard.
    pub total: usize,
    /// Already done before this invocation.
    pub skipped: usize,
    pub trained: usize,
    /// Resumed from a checkpoint (counted in `trained`).
    pub resumed: usize,
    /// Found held by another process's worker and waited for (finished there, or taken over
    /// here once its owner was gone).
    pub running_elsewhere: usize,
    /// Failed earlier and not retried (`--retry-failed` retries them): (run id, reason).
    pub previously_failed: Vec<(String, String)>,
    /// Failed in this invocation: (run id, reason).
    pub failed: Vec<(String, String)>,
    /// Trained in this invocation and seen to diverge: (run id, what was seen).
    pub diverged: Vec<(String, String)>,
    pub seconds: f64,
}

/// Trains every pending run of `exp` (in the shard) under `results`.
pub fn run_grid(exp: &LoadedExperiment, results: &Path, opts: &RunOptions) -> Result<GridSummary> {
    let start = Instant::now();
    locks::check_lock_timeout(opts.lock_timeout)?;
    let runs = shard_runs(exp.runs(), opts.shard);
    // A device that cannot train is one clear error up front, unless there is nothing left to
    // train (writing the report of a finished GPU grid works anywhere).
    let device = opts.device.unwrap_or(exp.device);
    if results.exists() && !results.is_dir() {
        bail!(
            "--results {}: this is a file, not a folder; give the folder that holds (or will hold) the run folders",
            results.display()
        );
    }
    let finished =
        |c: &&RunConfig| records::is_done(&records::run_dir(results, &exp.name, &c.run_id()));
    let pending = runs.iter().filter(|c| !finished(c)).count();
    if pending > 0 {
        crate::nn::device::check(device)?;
    }
    super::temporaries::remove_stale_temporaries(&results.join(&exp.name));
    // Resolve every split of every sweep point before training anything, so a bad split fails
    // fast.
    let points = prepare_points(exp, pending > 0)?;
    let point_of = point_of_runs(exp);
    let subsets_of =
        |c: &RunConfig| &points[point_of.get(&c.run_id()).copied().unwrap_or(0)].subsets;
    let images_left: f64 = runs
        .iter()
        .filter(|c| !finished(c))
        .map(|c| run_images(c, subsets_of(c)))
        .sum();
    let grid = GridRun {
        exp,
        results,
        opts,
        device,
        point_of,
        points: &points,
        summary: Mutex::new(GridSummary {
            total: runs.len(),
            ..Default::default()
        }),
        progress: GridProgress::new(runs.len(), images_left, Mode::detect(opts.quiet)),
        queue: Mutex::new(runs.iter().collect()),
        elsewhere: Mutex::new(Vec::new()),
    };
    // More workers than pending runs would only start idle thread pools.
    let workers = opts.jobs.clamp(1, pending.max(1));
    let mut waited_for = std::collections::BTreeSet::new();
    loop {
        grid.work_through(workers)?;
        // Runs held by other workers: wait for them, and take over those whose owner died.
        let held = std::mem::take(&mut *grid.elsewhere.lock().expect("waiting"));
        if held.is_empty() {
            break;
        }
        waited_for.extend(held.iter().map(|c| c.run_id()));
        std::thread::sleep(WAIT_POLL);
        grid.queue.lock().expect("queue").extend(held);
    }
    grid.progress.bar.finish_and_clear();
    let mut summary = grid.summary.into_inner().expect("summary");
    summary.running_elsewhere = waited_for.len();
    summary.seconds = start.elapsed().as_secs_f64();
    Ok(summary)
}

/// How often a worker that has finished its own runs looks at runs held by other workers.
const WAIT_POLL: Duration = Duration::from_millis(500);

/// Training images of all of a run's epochs.
fn run_images(config: &RunConfig, subsets: &BTreeMap<String, (Dataset, Option<Dataset>)>) -> f64 {
    let size = subsets
        .get(&config.split.slug())
        .map_or(0, |(t, _)| t.len());
    (config.train.epochs * size) as f64
}

/// A grid being worked through by this process's workers.
struct GridRun<'a> {
    exp: &'a LoadedExperiment,
    results: &'a Path,
    opts: &'a RunOptions,
    device: DeviceKind,
    /// The data of every sweep point (one without a sweep), and each run id's point.
    points: &'a [PointData],
    point_of: BTreeMap<String, usize>,
    summary: Mutex<GridSummary>,
    progress: GridProgress,
    /// Runs no worker of this process has looked at yet.
    queue: Mutex<VecDeque<&'a RunConfig>>,
    /// Runs found held by a live worker of another process: looked at again later.
    elsewhere: Mutex<Vec<&'a RunConfig>>,
}

impl<'a> GridRun<'a> {
    /// The data of the sweep point `config` belongs to.
    fn data_of(&self, config: &RunConfig) -> &'a PointData {
        &self.points[self.point_of.get(&config.run_id()).copied().unwrap_or(0)]
    }

    /// Works through the queue with `workers` threads; the first error stops them all.
    fn work_through(&self, workers: usize) -> Result<()> {
        let first_error: Mutex<Option<anyhow::Error>> = Mutex::new(None);
        std::thread::scope(|scope| {
            for _ in 0..workers {
                scope.spawn(|| {
                    if let Err(e) = self.work() {
                        first_error.lock().expect("errors").get_or_insert(e);
                        // Stop the other workers from taking new runs.
                        self.queue.lock().expect("queue").clear();
                    }
                });
            }
        });
        match first_error.into_inner().expect("errors") {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// One worker: takes runs off the queue until it is empty, each on its own thread pool.
    fn work(&self) -> Result<()> {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(self.opts.threads.max(1))
            .build()?;
        let line = self.progress.worker_line();
        loop {
            let Some(config) = self.queue.lock().expect("queue").pop_front() else {
                line.finish_and_clear();
                return Ok(());
            };
            if self.run_one(config, &pool, &line)? {
                self.progress.bar.inc(1);
            }
        }
    }

    /// Claims the run (or counts why not), trains it and records the outcome. Returns `false`
    /// for a run held by another process's worker (set aside to be looked at again).
    fn run_one(
        &self,
        config: &'a RunConfig,
        pool: &rayon::ThreadPool,
        line: &ProgressBar,
    ) -> Result<bool> {
        let id = config.run_id();
        let dir = records::run_dir(self.results, &self.exp.name, &id);
        // Take-overs and retrainings are on stderr always (pipes, --quiet, Slurm logs).
        let notify = |m: String| self.progress.bar.suspend(|| eprintln!("{m}"));
        let opts = self.opts;
        let claim = match locks::try_claim(&dir, opts.lock_timeout, opts.retry_failed, &notify)? {
            ClaimResult::Claimed(c) => c,
            ClaimResult::Busy(state) => {
                let mut s = self.summary.lock().expect("summary");
                match state {
                    RunState::Done => {
                        s.skipped += 1;
                        if !opts.keep_checkpoints {
                            // Left by a process killed right after recording the run.
                            Checkpoint::remove(&dir.join(CHECKPOINT_FILE))?;
                        }
                    }
                    RunState::Failed(why) => s.previously_failed.push((id, why)),
                    _ => {
                        self.elsewhere.lock().expect("waiting").push(config);
                        return Ok(false);
                    }
                }
                self.progress
                    .forget(run_images(config, &self.data_of(config).subsets));
                return Ok(true);
            }
        };
        // Written before training, so that `icm report` can draw the run while it trains.
        records::write_config(&dir, config)?;
        self.progress.bar.set_message(format!(
            "{} / {} / seed {}",
            config.method.display_name(),
            config.split.slug(),
            config.seed
        ));
        let resuming = [CHECKPOINT_FILE, LEGACY_CHECKPOINT_FILE]
            .iter()
            .any(|f| dir.join(f).is_file());
        match pool.install(|| self.train(config, &claim, line)) {
            Err(e) if e.downcast_ref::<locks::ClaimLost>().is_some() => {
                // Another process owns the run now: write nothing, and wait for it like any run
                // held elsewhere.
                self.progress.bar.suspend(|| eprintln!("{e}"));
                self.elsewhere.lock().expect("waiting").push(config);
                return Ok(false);
            }
            Ok(outcome) => {
                let test_size = self.data_of(config).test().len();
                records::write_run(&dir, &self.exp.name, config, &outcome, test_size)?;
                if !opts.keep_checkpoints {
                    Checkpoint::remove(&dir.join(CHECKPOINT_FILE))?;
                }
                let mut s = self.summary.lock().expect("summary");
                s.trained += 1;
                s.resumed += resuming as usize;
                if let Some(d) = &outcome.diverged {
                    let what = format!("epoch {}: {}", d.epoch, d.what);
                    self.progress
                        .notice(&format!("run {id} diverged at {what}"));
                    s.diverged.push((id, what));
                }
            }
            Err(e) => {
                let reason = format!("{e:#}");
                records::write_failure(&dir, config, &reason)?;
                self.progress
                    .forget(run_images(config, &self.data_of(config).subsets));
                self.progress.notice(&format!("run {id} failed: {reason}"));
                let mut s = self.summary.lock().expect("summary");
                s.failed.push((id, reason));
            }
        }
        Ok(true)
    }

    /// Trains a claimed run, resuming from its checkpoint; a panic fails this run, not the grid.
    fn train(
        &self,
        config: &RunConfig,
        claim: &locks::Claim,
        line: &ProgressBar,
    ) -> Result<RunOutcome> {
        let ckpt_path = claim.dir().join(CHECKPOINT_FILE);
        let history = Mutex::new(HistoryLog::new(claim.dir().join(records::HISTORY_FILE)));
        // The claim first: a worker that lost its run writes nothing more into its folder.
        let observer = |update: &EpochUpdate| -> Result<()> {
            if update.trained {
                claim.heartbeat()?;
            }
            history.lock().expect("history").sync(update.history)?;
            self.progress.show(line, config, update);
            Ok(())
        };
        let checkpointing = Checkpointing {
            path: &ckpt_path,
            every: self.opts.checkpoint_every,
            observer: &observer,
        };
        let data = self.data_of(config);
        let (train, val) = &data.subsets[&config.split.slug()];
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            train_and_score(
                config,
                self.device,
                train,
                val.as_ref(),
                data.test(),
                data.beyond.as_ref(),
                Some(&checkpointing),
            )
        }))
        .unwrap_or_else(|panic| {
            let what = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default();
            Err(anyhow::anyhow!("training panicked: {what}"))
        })
    }
}

/// The data a sweep point's runs train and are scored on.
struct PointData {
    /// Shared by the points whose dataset, preprocessing and held-out classes agree.
    data: Arc<data::TrainTest>,
    /// The corrupted and out-of-distribution sets, when the experiment has any.
    beyond: Option<BeyondSets>,
    /// (training, validation) sets per split slug.
    subsets: BTreeMap<String, (Dataset, Option<Dataset>)>,
}

impl PointData {
    fn test(&self) -> &Dataset {
        &self.data.test
    }
}

/// Loads the data of every sweep point (each dataset once) and resolves its splits; with
/// `training`, checks that its network fits in memory.
fn prepare_points(exp: &LoadedExperiment, training: bool) -> Result<Vec<PointData>> {
    type Loaded = (String, Arc<data::TrainTest>, Arc<Dataset>);
    let mut loaded: Vec<Loaded> = Vec::new();
    let mut out = Vec::new();
    for (label, point) in exp.points() {
        // A mistake found in the data of one point says which point.
        let in_point = |e: anyhow::Error| match label {
            "" => e,
            _ => anyhow::anyhow!("{e:#} (in the sweep point {label})"),
        };
        let key = serde_json::to_string(&(
            &point.dataset,
            &point.preprocess,
            point.ood.as_ref().map(|o| &o.held_out_classes),
        ))?;
        let (data, held_out) = match loaded.iter().find(|(k, _, _)| *k == key) {
            Some((_, d, h)) => (d.clone(), h.clone()),
            None => {
                let (d, h) = load_data(point).map_err(in_point)?;
                let (d, h) = (Arc::new(d), Arc::new(h));
                loaded.push((key, d.clone(), h.clone()));
                (d, h)
            }
        };
        if training {
            check_memory(point, &data.train).map_err(in_point)?;
            check_augment(point, &data.train).map_err(in_point)?;
        }
        out.push(PointData {
            subsets: split_sets(point, &data.train).map_err(in_point)?,
            beyond: beyond_sets(point, &data, &held_out).map_err(in_point)?,
            data,
        });
    }
    Ok(out)
}

/// Each run id of the grid with the index of its sweep point.
fn point_of_runs(exp: &LoadedExperiment) -> BTreeMap<String, usize> {
    exp.points()
        .iter()
        .enumerate()
        .flat_map(|(i, (_, p))| p.runs().into_iter().map(move |r| (r.run_id(), i)))
        .collect()
}

/// The training subset (and validation hold-out, when the experiment has one) of every split
/// of `exp`, keyed by split slug.
pub fn split_subsets(exp: &LoadedExperiment, pool: &Dataset) -> Result<BTreeMap<String, Dataset>> {
    Ok(split_sets(exp, pool)?
        .into_iter()
        .map(|(k, (train, _))| (k, train))
        .collect())
}

/// (training, validation) subsets of every split.
pub fn split_sets(
    exp: &LoadedExperiment,
    pool: &Dataset,
) -> Result<BTreeMap<String, (Dataset, Option<Dataset>)>> {
    let mut subsets = BTreeMap::new();
    for split in &exp.splits {
        let keep = splits::select(split, &pool.labels, pool.classes, exp.data_seed)
            .map_err(|e| anyhow::anyhow!("{}: {e}", exp.path.display()))?;
        let sets = match exp.validation {
            Some(fraction) => {
                splits::check_hold_out(&keep, &pool.labels, pool.classes, fraction).map_err(
                    |e| anyhow::anyhow!("{}: split `{}`: {e}", exp.path.display(), split.slug()),
                )?;
                let (train, val) =
                    splits::hold_out(&keep, &pool.labels, pool.classes, fraction, exp.data_seed);
                (pool.subset(&train), Some(pool.subset(&val)))
            }
            None => (pool.subset(&keep), None),
        };
        subsets.insert(split.slug(), sets);
    }
    Ok(subsets)
}

/// A byte count in MiB or GiB, for messages.
fn gib(bytes: f64) -> String {
    let mib = bytes / (1u64 << 20) as f64;
    if mib < 1024.0 {
        format!("{mib:.1} MiB")
    } else {
        format!("{:.1} GiB", mib / 1024.0)
    }
}

/// Refuses a network whose estimated training memory exceeds what this machine has available,
/// with the numbers; returns the estimate as a line for `icm data` (empty for networks without
/// one).
pub fn check_memory(exp: &LoadedExperiment, train: &Dataset) -> Result<String> {
    let input = train.shape.numel();
    let batch = exp.train.batch_size;
    let Some(m) = crate::nn::memory::mlp_memory(&exp.model, input, train.classes, batch) else {
        return Ok(String::new());
    };
    let line = format!(
        "about {:.3e} parameters, {} for weights, gradients and momentum + {} for \
         activations = {} per run",
        m.parameters,
        gib(m.parameter_bytes),
        gib(m.activation_bytes),
        gib(m.total_bytes())
    );
    if let Some(available) = crate::util::available_memory() {
        if m.total_bytes() > available as f64 {
            bail!(
                "{}: `model.hidden` {:?}: the MLP needs {line}, but this machine has {} \
                 available; use smaller widths or a smaller `train.batch_size`",
                exp.path.display(),
                exp.model.hidden.as_deref().unwrap_or_default(),
                gib(available as f64)
            );
        }
    }
    Ok(line)
}

/// Refuses a crop padding as large as the images: most crops would then hold no image at all.
pub fn check_augment(exp: &LoadedExperiment, train: &Dataset) -> Result<()> {
    let Some(augment) = exp.train.augment else {
        return Ok(());
    };
    let side = train.shape.height.min(train.shape.width);
    if augment.crop_padding >= side {
        bail!(
            "{}: `train.augment.crop_padding` {} is not smaller than the {}×{} images: most \
             crops would hold no image; use at most {} (CIFAR's is 4)",
            exp.path.display(),
            augment.crop_padding,
            train.shape.height,
            train.shape.width,
            side - 1
        );
    }
    Ok(())
}

/// `icm data`: per-class training counts of every split, the test-set size and the network's
/// memory estimate (refused when it cannot fit), for every sweep point.
pub fn describe_data(exp: &LoadedExperiment) -> Result<String> {
    let mut out = String::new();
    for (label, point) in exp.points() {
        if !label.is_empty() {
            out.push_str(&format!("sweep point {label}:\n"));
        }
        out.push_str(&describe_point(point)?);
    }
    Ok(out)
}

/// [`describe_data`] of one sweep point.
fn describe_point(exp: &LoadedExperiment) -> Result<String> {
    let (data, _) = load_data(exp)?;
    let memory = check_memory(exp, &data.train)?;
    check_augment(exp, &data.train)?;
    let subsets = split_sets(exp, &data.train)?;
    let mut out = format!(
        "{}: dataset {} ({} classes, {}×{}×{} images), training pool {}, test set {} (never subsampled)\n",
        exp.name,
        exp.dataset.name(),
        data.train.classes,
        data.train.shape.channels,
        data.train.shape.height,
        data.train.shape.width,
        data.train.len(),
        data.test.len()
    );
    for split in &exp.splits {
        let (train, val) = &subsets[&split.slug()];
        let counts = train.class_counts();
        let total: usize = counts.iter().sum();
        out.push_str(&format!(
            "{:<24} total {:>6}  per class {:?}\n",
            split.slug(),
            total,
            counts
        ));
        if exp.train.batch_size > total {
            out.push_str(&format!(
                "{:<24} `train.batch_size` {} is more than these {total} images: each epoch is \
                 one batch of {total}\n",
                "", exp.train.batch_size
            ));
        }
        if let Some(val) = val {
            out.push_str(&format!(
                "{:<24} total {:>6}  per class {:?}\n",
                "  validation",
                val.len(),
                val.class_counts()
            ));
        }
    }
    if !memory.is_empty() {
        out.push_str(&format!("model: {memory}\n"));
    }
    Ok(out)
}

/// The data of `exp`, and the raw test images of its held-out classes (empty without any).
fn load_data(exp: &LoadedExperiment) -> Result<(data::TrainTest, Dataset)> {
    let held: &[usize] = exp.ood.as_ref().map_or(&[], |o| &o.held_out_classes);
    data::load_holding_out(&exp.dataset, &exp.preprocess, held).map_err(|e| {
        let place = if held.is_empty() {
            ""
        } else {
            " (ood.held_out_classes)"
        };
        anyhow::anyhow!(
            "{}: dataset `{}`{place}: {e:#}",
            exp.path.display(),
            exp.dataset.name()
        )
    })
}

/// The sets each run of `exp` is scored on after training (`evaluate:`, `ood:`), if any.
fn beyond_sets(
    exp: &LoadedExperiment,
    data: &data::TrainTest,
    held_out: &Dataset,
) -> Result<Option<BeyondSets>> {
    if exp.evaluate.is_none() && exp.ood.is_none() {
        return Ok(None);
    }
    BeyondSets::build(
        exp.evaluate.as_ref(),
        exp.ood.as_ref(),
        &data.raw_test,
        &data.standardiser,
        held_out,
    )
    .map(Some)
    .map_err(|e| anyhow::anyhow!("{}: {e:#}", exp.path.display()))
}

/// Fails when any run of the grid (this shard) is failed, whether it failed now or earlier,
/// naming each with its reason.
pub fn ensure_no_failures(summary: &GridSummary, results: &Path, experiment: &str) -> Result<()> {
    let failed: Vec<&(String, String)> = summary
        .failed
        .iter()
        .chain(&summary.previously_failed)
        .collect();
    if failed.is_empty() {
        return Ok(());
    }
    let list: Vec<String> = failed
        .iter()
        .map(|(id, why)| {
            format!(
                "  {}: {why}",
                records::run_dir(results, experiment, id).display()
            )
        })
        .collect();
    bail!(
        "{} of {} runs failed ({} in this invocation, {} earlier; their folders hold {}; \
         `icm run --retry-failed` runs them again):\n{}",
        failed.len(),
        summary.total,
        summary.failed.len(),
        summary.previously_failed.len(),
        records::FAILURE_FILE,
        list.join("\n")
    )
}
