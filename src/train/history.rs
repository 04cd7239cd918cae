//! Per-epoch history of a run (`history.csv`): the schedule, the loss, the accuracies, and the
//! diagnostics that show a collapse coming (see [`super::divergence`]).

use serde::{Deserialize, Serialize};

/// One line of `history.csv`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct EpochRecord {
    pub epoch: usize,
    pub lr: f64,
    pub train_loss: f64,
    pub test_accuracy: f64,
    /// Accuracy on the validation hold-out, when the experiment has one.
    #[serde(default)]
    pub val_accuracy: Option<f64>,
    /// Mean and largest L2 norm of the steps' gradients (before any clipping).
    #[serde(default)]
    pub grad_norm: Option<f64>,
    #[serde(default)]
    pub max_grad_norm: Option<f64>,
    /// Largest |logit| of the mixed batches.
    #[serde(default)]
    pub max_logit: Option<f64>,
    /// Largest |ICM score| S = Z·Tᵀ (ICM methods).
    #[serde(default)]
    pub max_score: Option<f64>,
    /// Mean share of a batch's pairs whose mixed classifier another pair shares (ICM methods).
    #[serde(default)]
    pub duplicates: Option<f64>,
}

/// Running totals of an epoch's step diagnostics.
#[derive(Debug, Clone, Default)]
pub struct EpochDiagnostics {
    steps: usize,
    grad_norm_sum: f64,
    max_grad_norm: f64,
    max_logit: f64,
    max_score: f64,
    duplicates_sum: f64,
}

impl EpochDiagnostics {
    /// Adds one step's diagnostics.
    pub fn add(&mut self, step: &super::step::StepStats) {
        self.steps += 1;
        self.grad_norm_sum += step.grad_norm;
        self.max_grad_norm = self.max_grad_norm.max(step.grad_norm);
        self.max_logit = self.max_logit.max(step.max_logit);
        self.max_score = self.max_score.max(step.max_score);
        self.duplicates_sum += step.duplicates;
    }

    /// Writes the epoch's diagnostics into its record; the ICM ones only for ICM methods.
    pub fn fill(&self, record: &mut EpochRecord, icm: bool) {
        if self.steps == 0 {
            return;
        }
        let n = self.steps as f64;
        record.grad_norm = Some(self.grad_norm_sum / n);
        record.max_grad_norm = Some(self.max_grad_norm);
        record.max_logit = Some(self.max_logit);
        if icm {
            record.max_score = Some(self.max_score);
            record.duplicates = Some(self.duplicates_sum / n);
        }
    }
}

/// `EpochRecord`s stored with their floats as IEEE bit patterns (checkpoints: a resumed run's
/// history must be the uninterrupted run's bit for bit; JSON's decimal floats do not promise
/// that). Records stored as plain numbers by earlier versions read too.
pub mod exact {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    use super::EpochRecord;

    #[derive(Serialize, Deserialize)]
    struct Bits {
        epoch: usize,
        lr: u64,
        train_loss: u64,
        test_accuracy: u64,
        val_accuracy: Option<u64>,
        grad_norm: Option<u64>,
        max_grad_norm: Option<u64>,
        max_logit: Option<u64>,
        max_score: Option<u64>,
        duplicates: Option<u64>,
    }

    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Stored {
        Bits(Bits),
        Plain(EpochRecord),
    }

    pub fn serialize<S: Serializer>(history: &[EpochRecord], s: S) -> Result<S::Ok, S::Error> {
        let bits = |v: Option<f64>| v.map(f64::to_bits);
        history
            .iter()
            .map(|r| Bits {
                epoch: r.epoch,
                lr: r.lr.to_bits(),
                train_loss: r.train_loss.to_bits(),
                test_accuracy: r.test_accuracy.to_bits(),
                val_accuracy: bits(r.val_accuracy),
                grad_norm: bits(r.grad_norm),
                max_grad_norm: bits(r.max_grad_norm),
                max_logit: bits(r.max_logit),
                max_score: bits(r.max_score),
                duplicates: bits(r.duplicates),
            })
            .collect::<Vec<_>>()
            .serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<EpochRecord>, D::Error> {
        let float = |v: Option<u64>| v.map(f64::from_bits);
        Ok(Vec::<Stored>::deserialize(d)?
            .into_iter()
            .map(|stored| match stored {
                Stored::Plain(r) => r,
                Stored::Bits(b) => EpochRecord {
                    epoch: b.epoch,
                    lr: f64::from_bits(b.lr),
                    train_loss: f64::from_bits(b.train_loss),
                    test_accuracy: f64::from_bits(b.test_accuracy),
                    val_accuracy: float(b.val_accuracy),
                    grad_norm: float(b.grad_norm),
                    max_grad_norm: float(b.max_grad_norm),
                    max_logit: float(b.max_logit),
                    max_score: float(b.max_score),
                    duplicates: float(b.duplicates),
                },
            })
            .collect())
    }
}
