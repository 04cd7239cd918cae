//! Recognising a run that collapsed while it trains. The ICM loss scores every mixed pair against
//! the batch's other mixed classifiers without normalisation, and a run can fall into a state
//! where every score is equal: the loss jumps, then sits at 2·ln B (uniform scores), and accuracy
//! drops to chance. Such a run finishes like any other, so without a watch its numbers would be
//! averaged in as ordinary ones.
//!
//! A run is diverged at the first epoch where any of these holds:
//! - the loss is not finite;
//! - the epoch's mean training loss is more than [`LOSS_SPIKE`] times the lowest of the previous
//!   [`LOSS_WINDOW`] epochs' (observed collapses jumped 2× to 7.4×) and at least
//!   [`SPIKE_CHANCE_SHARE`] of the loss of uniform scores (collapses jump to or past it: 2·ln 128 =
//!   9.70 for ICM at B = 128). The second condition keeps label-loss noise out: Mixup's epoch loss
//!   on a small set swings 3×–6× with its per-batch λ (0.15 → 0.84 on the digits), but stays far
//!   below ln C;
//! - the epoch's mean training loss is at or above the loss of uniform scores after an earlier
//!   epoch below [`SPIKE_CHANCE_SHARE`] of it: a collapse that climbs over a few epochs (1.3×
//!   then 1.65×, never one spike of 1.8×) and may partly recover (on long-tailed Fashion-MNIST
//!   such runs ended at 74.6 % and 84.2 % where the others reached 85 %);
//! - accuracy (validation when the run has a hold-out, else test) is at most [`CHANCE_FACTOR`]
//!   times chance (1/C) in [`CHANCE_EPOCHS`] consecutive epochs (or the last one), after an epoch
//!   at [`LEARNED_FACTOR`] times chance or more.
//!
//! A diverged run still trains to its last epoch (or stops at a non-finite loss) and keeps its
//! metrics; reports leave it out of means and claims unless a table asks for it.

use serde::{Deserialize, Serialize};

use super::EpochRecord;

/// Loss spike: this many times the lowest recent epoch loss.
pub const LOSS_SPIKE: f64 = 1.8;
/// Epochs the spike is measured against.
pub const LOSS_WINDOW: usize = 3;
/// A spike counts only when the loss reaches this share of the loss of uniform scores.
pub const SPIKE_CHANCE_SHARE: f64 = 0.75;
/// Accuracy at or below this many times chance counts as chance level.
pub const CHANCE_FACTOR: f64 = 1.5;
/// ... in this many consecutive epochs.
pub const CHANCE_EPOCHS: usize = 2;
/// An accuracy of at least this many times chance shows the run had learned something.
pub const LEARNED_FACTOR: f64 = 3.0;

/// When and how a run was seen to diverge.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Divergence {
    /// The 1-based epoch where it was seen.
    pub epoch: usize,
    pub what: String,
}

/// Watches a run's epochs for a collapse.
#[derive(Debug, Clone)]
pub struct DivergenceWatch {
    classes: usize,
    epochs: usize,
    uniform_loss: f64,
    seen: Vec<EpochRecord>,
}

impl DivergenceWatch {
    /// A watch for a run of `epochs` epochs over `classes` classes whose loss with uniform scores
    /// is `uniform_loss` (`crate::mix::losses::uniform_score_loss`).
    pub fn new(classes: usize, epochs: usize, uniform_loss: f64) -> Self {
        DivergenceWatch {
            classes,
            epochs,
            uniform_loss,
            seen: Vec::new(),
        }
    }

    /// Looks at one more epoch; the divergence it shows, if any.
    pub fn observe(&mut self, record: &EpochRecord) -> Option<Divergence> {
        self.seen.push(record.clone());
        let found = |what: String| {
            Some(Divergence {
                epoch: record.epoch,
                what,
            })
        };
        if !record.train_loss.is_finite() {
            return found(format!("training loss became {}", record.train_loss));
        }
        let earlier = &self.seen[..self.seen.len() - 1];
        let window = &earlier[earlier.len().saturating_sub(LOSS_WINDOW)..];
        if let Some(low) = window.iter().map(|r| r.train_loss).reduce(f64::min) {
            let loss = record.train_loss;
            if low > 0.0
                && loss > LOSS_SPIKE * low
                && loss >= SPIKE_CHANCE_SHARE * self.uniform_loss
            {
                return found(format!(
                    "training loss jumped to {loss:.4}, {:.1}× the lowest of the {} epochs before \
                     ({low:.4}; uniform scores give {:.4})",
                    loss / low,
                    window.len(),
                    self.uniform_loss
                ));
            }
        }
        if let Some(low) = earlier.iter().map(|r| r.train_loss).reduce(f64::min) {
            let (loss, uniform) = (record.train_loss, self.uniform_loss);
            if low < SPIKE_CHANCE_SHARE * uniform && loss >= uniform {
                return found(format!(
                    "training loss rose to {loss:.4}, at or above the loss of uniform scores \
                     ({uniform:.4}), after {low:.4}"
                ));
            }
        }
        self.chance_level(record).and_then(found)
    }

    /// The first divergence in a whole history (a finished run's `history.csv`), as the watch
    /// would have seen it epoch by epoch.
    pub fn replay(mut self, history: &[EpochRecord]) -> Option<Divergence> {
        history.iter().find_map(|r| self.observe(r))
    }

    /// Accuracy back at chance after having been well above it.
    fn chance_level(&self, record: &EpochRecord) -> Option<String> {
        let chance = 1.0 / self.classes as f64;
        let accuracy = |r: &EpochRecord| r.val_accuracy.unwrap_or(r.test_accuracy);
        let n = self.seen.len();
        let needed = if record.epoch == self.epochs {
            1
        } else {
            CHANCE_EPOCHS
        };
        if n < needed + 1 {
            return None;
        }
        let recent = &self.seen[n - needed..];
        let at_chance = recent.iter().all(|r| accuracy(r) <= CHANCE_FACTOR * chance);
        let learned = self.seen[..n - needed]
            .iter()
            .map(accuracy)
            .fold(0.0, f64::max);
        (at_chance && learned >= LEARNED_FACTOR * chance).then(|| {
            format!(
                "accuracy fell to {:.4} (chance {:.4}) after reaching {:.4}",
                accuracy(record),
                chance,
                learned
            )
        })
    }
}
