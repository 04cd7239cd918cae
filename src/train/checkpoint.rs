//! Training checkpoints: everything needed to continue a run exactly where it stopped (model and
//! optimiser state, the random generators, the epoch order, the history so far). Written
//! atomically (every N epochs, or once a minute by default) and at the end; an interrupted run
//! resumes from its last checkpoint and ends with the same metrics as an uninterrupted run with
//! the same seed on the same machine.
//!
//! The file is safetensors: the tensors (parameters, momentum, batch-norm statistics, the epoch
//! order) as raw little-endian data, bit for bit, and the rest (random generators, history,
//! revision) as JSON in the header's metadata under `icm`, so one atomic write holds all of it.
//! Checkpoints of earlier versions (`checkpoint.json`, all JSON) still resume.

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use rand_chacha::ChaCha8Rng;
use safetensors::{Dtype, SafeTensors, View};
use serde::{Deserialize, Serialize};

use super::{EpochRecord, EpochUpdate, Progress};
use crate::nn::kernels::BatchNormStats;
use crate::nn::NetDevice;
use crate::spec::RunConfig;
use crate::util::{fault_point, write_atomic};

pub const CHECKPOINT_FILE: &str = "checkpoint.safetensors";
/// The all-JSON checkpoint of earlier versions (about 20× larger): resumed, and replaced by the
/// next checkpoint.
pub const LEGACY_CHECKPOINT_FILE: &str = "checkpoint.json";

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

/// What a checkpoint holds besides its tensors: the `icm` entry of the safetensors metadata.
#[derive(Serialize, Deserialize)]
struct State {
    run_id: String,
    trainer_revision: u32,
    epoch: usize,
    bn_layers: usize,
    order_rng: ChaCha8Rng,
    mix_rng: ChaCha8Rng,
    augment_rng: ChaCha8Rng,
    #[serde(with = "super::history::exact")]
    history: Vec<EpochRecord>,
    seconds: f64,
}

/// One tensor to write: its type, shape and little-endian bytes.
struct Raw {
    dtype: Dtype,
    shape: Vec<usize>,
    bytes: Vec<u8>,
}

impl View for &Raw {
    fn dtype(&self) -> Dtype {
        self.dtype
    }
    fn shape(&self) -> &[usize] {
        &self.shape
    }
    fn data(&self) -> std::borrow::Cow<'_, [u8]> {
        (&self.bytes[..]).into()
    }
    fn data_len(&self) -> usize {
        self.bytes.len()
    }
}

fn f32_tensor(values: &[f32]) -> Raw {
    Raw {
        dtype: Dtype::F32,
        shape: vec![values.len()],
        bytes: values.iter().flat_map(|v| v.to_le_bytes()).collect(),
    }
}

/// The metadata key of the non-tensor state.
const STATE_KEY: &str = "icm";

impl Checkpoint {
    /// The checkpoint as a safetensors file.
    pub fn to_safetensors(&self) -> Result<Vec<u8>> {
        let order: Vec<u32> = self
            .order
            .iter()
            .map(|&i| u32::try_from(i))
            .collect::<Result<_, _>>()
            .context("more than 2^32 training images")?;
        let mut tensors = vec![
            ("params".to_string(), f32_tensor(&self.params)),
            ("velocity".to_string(), f32_tensor(&self.velocity)),
            (
                "order".to_string(),
                Raw {
                    dtype: Dtype::U32,
                    shape: vec![order.len()],
                    bytes: order.iter().flat_map(|v| v.to_le_bytes()).collect(),
                },
            ),
        ];
        for (i, bn) in self.bn_stats.iter().enumerate() {
            tensors.push((format!("bn.{i}.mean"), f32_tensor(&bn.mean)));
            tensors.push((format!("bn.{i}.var"), f32_tensor(&bn.var)));
        }
        let state = State {
            run_id: self.run_id.clone(),
            trainer_revision: self.trainer_revision,
            epoch: self.epoch,
            bn_layers: self.bn_stats.len(),
            order_rng: self.order_rng.clone(),
            mix_rng: self.mix_rng.clone(),
            augment_rng: self.augment_rng.clone(),
            history: self.history.clone(),
            seconds: self.seconds,
        };
        let meta = HashMap::from([(STATE_KEY.to_string(), serde_json::to_string(&state)?)]);
        let views = tensors.iter().map(|(name, raw)| (name.as_str(), raw));
        Ok(safetensors::serialize(views, Some(meta))?)
    }

    /// Reads a checkpoint from safetensors bytes (as [`Checkpoint::to_safetensors`] writes).
    pub fn from_safetensors(bytes: &[u8]) -> Result<Checkpoint> {
        let file = SafeTensors::deserialize(bytes)?;
        let (_, header) = SafeTensors::read_metadata(bytes)?;
        let text = header
            .metadata()
            .as_ref()
            .and_then(|m| m.get(STATE_KEY))
            .context("no `icm` entry in the metadata")?;
        let state: State = serde_json::from_str(text)?;
        let tensor = |name: &str, dtype: Dtype| -> Result<Vec<u8>> {
            let t = file.tensor(name)?;
            if t.dtype() != dtype || t.shape().len() != 1 {
                bail!("tensor `{name}` is not a vector of {dtype:?}");
            }
            Ok(t.data().to_vec())
        };
        let floats = |name: &str| -> Result<Vec<f32>> {
            let bytes = tensor(name, Dtype::F32)?;
            Ok(bytes
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect())
        };
        let bn_stats = (0..state.bn_layers)
            .map(|i| {
                Ok(BatchNormStats {
                    mean: floats(&format!("bn.{i}.mean"))?,
                    var: floats(&format!("bn.{i}.var"))?,
                })
            })
            .collect::<Result<_>>()?;
        let order = tensor("order", Dtype::U32)?
            .chunks_exact(4)
            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize)
            .collect();
        Ok(Checkpoint {
            run_id: state.run_id,
            trainer_revision: state.trainer_revision,
            epoch: state.epoch,
            params: floats("params")?,
            velocity: floats("velocity")?,
            bn_stats,
            order,
            order_rng: state.order_rng,
            mix_rng: state.mix_rng,
            augment_rng: state.augment_rng,
            history: state.history,
            seconds: state.seconds,
        })
    }

    /// Writes the checkpoint atomically to `path` and removes an earlier version's
    /// `checkpoint.json` beside it (this one supersedes it).
    pub fn save(&self, path: &Path) -> Result<()> {
        write_atomic(path, &self.to_safetensors()?)?;
        let legacy = legacy_path(path);
        if legacy != path && legacy.is_file() {
            fs::remove_file(&legacy)
                .with_context(|| format!("cannot remove {}", legacy.display()))?;
        }
        Ok(())
    }

    /// Loads a checkpoint of `run_id` from `path`, or from an earlier version's
    /// `checkpoint.json` beside it; `None` when there is none yet.
    pub fn load(path: &Path, run_id: &str) -> Result<Option<Checkpoint>> {
        let legacy = legacy_path(path);
        let path = if path.is_file() {
            path
        } else if legacy.is_file() {
            &legacy
        } else {
            return Ok(None);
        };
        let bytes = fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
        // safetensors starts with its header's length (8 bytes); the JSON of earlier versions
        // with `{`.
        let ckpt = if bytes.first() == Some(&b'{') {
            serde_json::from_slice(&bytes).map_err(anyhow::Error::from)
        } else {
            Checkpoint::from_safetensors(&bytes)
        }
        .with_context(|| {
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

    /// Removes the checkpoint at `path` and an earlier version's beside it (a finished run needs
    /// neither).
    pub fn remove(path: &Path) -> Result<()> {
        for file in [path.to_path_buf(), legacy_path(path)] {
            if file.is_file() {
                fs::remove_file(&file)
                    .with_context(|| format!("cannot remove {}", file.display()))?;
            }
        }
        Ok(())
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

/// `checkpoint.json` in the folder of `path`.
fn legacy_path(path: &Path) -> PathBuf {
    path.with_file_name(LEGACY_CHECKPOINT_FILE)
}

/// Where and how often a run saves checkpoints, and who watches it train.
pub struct Checkpointing<'a> {
    pub path: &'a Path,
    /// Save every this many epochs; `None`: whenever a minute has passed since the last save.
    /// Always after the last epoch.
    pub every: Option<usize>,
    /// Told when the run starts (after any resume) and after every epoch, the checkpoint saved
    /// (the runner's lock heartbeat, `history.csv`, progress lines); an error stops the run.
    pub observer: &'a (dyn Fn(&EpochUpdate) -> Result<()> + Sync),
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

    /// Tells the observer how the run stands.
    pub(super) fn observe(&self, update: &EpochUpdate) -> Result<()> {
        (self.settings.observer)(update)
    }

    /// Saves a checkpoint when one is due (always after the last epoch). `seconds`: training
    /// time so far, over all attempts.
    pub(super) fn save_if_due<D: NetDevice>(
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
        Ok(())
    }
}
