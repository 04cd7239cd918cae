//! Training checkpoints: everything needed to continue a run exactly where it stopped (model and
//! optimiser state, the random generators, the epoch order, the history so far). Written
//! atomically (every N epochs, or once a minute by default) and at the end; an interrupted run
//! resumes from its last checkpoint and ends with the same metrics as an uninterrupted run with
//! the same seed on the same machine.

use std::fs;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use super::{EpochRecord, Progress};
use crate::nn::kernels::BatchNormStats;
use crate::nn::NetDevice;
use crate::spec::RunConfig;
use crate::util::{fault_point, write_atomic};

pub const CHECKPOINT_FILE: &str = "checkpoint.json";

/// State after `epoch` completed epochs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Checkpoint {
    pub run_id: String,
    /// The trainer revision that wrote it (see [`super::revision`]).
    #[serde(default = "super::revision::unrecorded_revision")]
    pub trainer_revision: u32,
    pub epoch: usize,
    /// Stored as IEEE bit patterns so they come back bit for bit.
    #[serde(with = "crate::util::bits")]
    pub params: Vec<f32>,
    #[serde(with = "crate::util::bits")]
    pub velocity: Vec<f32>,
    /// Batch-norm running statistics (empty for the MLP).
    #[serde(default)]
    pub bn_stats: Vec<BatchNormStats>,
    /// The training order after the last shuffle (each epoch shuffles the previous order).
    pub order: Vec<usize>,
    pub order_rng: ChaCha8Rng,
    pub mix_rng: ChaCha8Rng,
    pub augment_rng: ChaCha8Rng,
    #[serde(with = "super::history::exact")]
    pub history: Vec<EpochRecord>,
    /// Training time spent so far, over all attempts.
    pub seconds: f64,
}

impl Checkpoint {
    pub fn save(&self, path: &Path) -> Result<()> {
        write_atomic(path, serde_json::to_string(self)?.as_bytes())
    }

    /// Loads a checkpoint of `run_id`; `None` when there is none yet.
    pub fn load(path: &Path, run_id: &str) -> Result<Option<Checkpoint>> {
        if !path.is_file() {
            return Ok(None);
        }
        let text =
            fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
        let ckpt: Checkpoint = serde_json::from_str(&text).with_context(|| {
            format!(
                "{} is corrupt; delete it to restart the run from scratch",
                path.display()
            )
        })?;
        if ckpt.run_id != run_id {
            bail!(
                "{} belongs to run {}, not {run_id}; delete it to restart the run",
                path.display(),
                ckpt.run_id
            );
        }
        Ok(Some(ckpt))
    }

    /// Checks that the checkpoint fits a run with `params` parameters, `train_size` training
    /// images and `epochs` epochs, so a damaged file gives an error instead of a panic.
    pub fn check(
        &self,
        params: usize,
        bn_layers: usize,
        train_size: usize,
        epochs: usize,
        path: &Path,
    ) -> Result<()> {
        let mut sorted = self.order.clone();
        sorted.sort_unstable();
        let permutation = sorted.iter().enumerate().all(|(i, &v)| i == v);
        if self.params.len() != params
            || self.velocity.len() != params
            || self.bn_stats.len() != bn_layers
            || self.order.len() != train_size
            || !permutation
            || self.epoch > epochs
            || self.history.len() != self.epoch
        {
            bail!(
                "{} does not match this run (model, data or epochs differ, or the file is damaged); \
                 delete it to restart the run from scratch",
                path.display()
            );
        }
        Ok(())
    }
}

/// Time between checkpoints when no epoch interval is set.
const CHECKPOINT_INTERVAL: Duration = Duration::from_secs(60);

/// Where and how often a run saves checkpoints, and what it does after every epoch.
pub struct Checkpointing<'a> {
    pub path: &'a Path,
    /// Save every this many epochs; `None`: whenever a minute has passed since the last save.
    /// Always after the last epoch.
    pub every: Option<usize>,
    /// Called after every epoch (the runner's lock heartbeat).
    pub after_epoch: &'a (dyn Fn() -> Result<()> + Sync),
}

impl<'a> Checkpointing<'a> {
    /// The saver of run `run_id`.
    pub(super) fn saver(&'a self, run_id: String) -> Saver<'a> {
        Saver {
            settings: self,
            run_id,
            last_save: Instant::now(),
        }
    }
}

/// Resumes a run from its checkpoint and saves new ones as the run goes.
pub(super) struct Saver<'a> {
    settings: &'a Checkpointing<'a>,
    run_id: String,
    last_save: Instant,
}

impl Saver<'_> {
    /// Restores `progress` from the checkpoint, when there is one of this run.
    pub(super) fn resume<D: NetDevice>(
        &self,
        dev: &D,
        progress: &mut Progress<D>,
        config: &RunConfig,
    ) -> Result<()> {
        let epochs = config.train.epochs;
        let path = self.settings.path;
        let Some(saved) = Checkpoint::load(path, &self.run_id)? else {
            return Ok(());
        };
        if super::revision::defect_affecting(config, saved.trainer_revision).is_some() {
            // Written by a trainer with a defect that affects this run: start afresh (the next
            // checkpoint overwrites it).
            return Ok(());
        }
        let model = &mut progress.model;
        saved.check(
            model.num_parameters(),
            model.bn_stats().len(),
            progress.order.len(),
            epochs,
            path,
        )?;
        let layers_match = saved
            .bn_stats
            .iter()
            .zip(model.bn_stats())
            .all(|(a, b)| a.mean.len() == b.mean.len() && a.var.len() == b.var.len());
        if !layers_match {
            bail!(
                "{} holds batch-norm statistics of another network; delete it to restart the run",
                path.display()
            );
        }
        let n = saved.params.len();
        model.params_mut().all = dev.tensor_from_vec(saved.params, (n,));
        model.bn_stats_mut().clone_from_slice(&saved.bn_stats);
        progress.sgd.velocity = dev.tensor_from_vec(saved.velocity, (n,));
        progress.order = saved.order;
        progress.order_rng = saved.order_rng;
        progress.mix_rng = saved.mix_rng;
        progress.augment_rng = saved.augment_rng;
        progress.history = saved.history;
        progress.earlier_seconds = saved.seconds;
        Ok(())
    }

    /// Saves a checkpoint when one is due (always after the last epoch), then runs the
    /// after-epoch hook. `seconds`: training time so far, over all attempts.
    pub(super) fn after_epoch<D: NetDevice>(
        &mut self,
        progress: &Progress<D>,
        epochs: usize,
        seconds: f64,
    ) -> Result<()> {
        let done = progress.epochs_done();
        let due = match self.settings.every {
            Some(n) => done.is_multiple_of(n.max(1)),
            None => self.last_save.elapsed() >= CHECKPOINT_INTERVAL,
        };
        if due || done == epochs {
            self.last_save = Instant::now();
            Checkpoint {
                run_id: self.run_id.clone(),
                trainer_revision: super::TRAINER_REVISION,
                epoch: done,
                params: progress.model.params().all.as_vec(),
                bn_stats: progress.model.bn_stats().to_vec(),
                velocity: progress.sgd.velocity.as_vec(),
                order: progress.order.clone(),
                order_rng: progress.order_rng.clone(),
                mix_rng: progress.mix_rng.clone(),
                augment_rng: progress.augment_rng.clone(),
                history: progress.history.clone(),
                seconds,
            }
            .save(self.settings.path)?;
            fault_point(&format!("after-checkpoint-{done}"));
        }
        (self.settings.after_epoch)()
    }
}
