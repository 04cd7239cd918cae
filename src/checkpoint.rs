//! Training checkpoints: everything needed to continue a run exactly where it stopped (model and
//! optimiser state, the random generators, the epoch order, the history so far). Written
//! atomically (every N epochs, or once a minute by default) and at the end; an interrupted run resumes from its last checkpoint
//! and ends with the same metrics as an uninterrupted run with the same seed on the same machine.

use std::fs;
use std::path::Path;

use anyhow::{bail, Context, Result};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::records;
use crate::train::EpochRecord;

pub const CHECKPOINT_FILE: &str = "checkpoint.json";

/// State after `epoch` completed epochs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Checkpoint {
    pub run_id: String,
    pub epoch: usize,
    /// Stored as IEEE bit patterns so they come back bit for bit.
    #[serde(with = "f32_bits")]
    pub params: Vec<f32>,
    #[serde(with = "f32_bits")]
    pub velocity: Vec<f32>,
    /// Batch-norm running statistics (empty for the MLP).
    #[serde(default)]
    pub bn_stats: Vec<crate::ops::BatchNormStats>,
    /// The training order after the last shuffle (each epoch shuffles the previous order).
    pub order: Vec<usize>,
    pub order_rng: ChaCha8Rng,
    pub mix_rng: ChaCha8Rng,
    pub augment_rng: ChaCha8Rng,
    pub history: Vec<EpochRecord>,
    /// Training time spent so far, over all attempts.
    pub seconds: f64,
}

impl Checkpoint {
    pub fn save(&self, path: &Path) -> Result<()> {
        records::write_atomic(path, serde_json::to_string(self)?.as_bytes())
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

/// Serialises `Vec<f32>` as the `u32` bit patterns of its values.
pub mod f32_bits {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    pub fn serialize<S: Serializer>(v: &[f32], s: S) -> Result<S::Ok, S::Error> {
        v.iter()
            .map(|x| x.to_bits())
            .collect::<Vec<u32>>()
            .serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<f32>, D::Error> {
        Ok(Vec::<u32>::deserialize(d)?
            .into_iter()
            .map(f32::from_bits)
            .collect())
    }
}

/// Fault injection for the crash tests: when the environment variable `ICM_FAULT` equals `point`,
/// the process aborts right there (like a kill, no clean-up).
pub fn fault_point(point: &str) {
    if std::env::var("ICM_FAULT").is_ok_and(|v| v == point) {
        eprintln!("ICM_FAULT={point}: aborting");
        std::process::abort();
    }
}
