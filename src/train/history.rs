//! Per-epoch history of a run (`history.csv`).

use serde::{Deserialize, Serialize};

/// One line of `history.csv`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EpochRecord {
    pub epoch: usize,
    pub lr: f64,
    pub train_loss: f64,
    pub test_accuracy: f64,
    /// Accuracy on the validation hold-out, when the experiment has one.
    #[serde(default)]
    pub val_accuracy: Option<f64>,
}
