//! The `train:` section: optimiser, schedule, epochs and augmentation.

use serde::{Deserialize, Serialize};

use crate::data::augment::Augment;

/// Optimiser and schedule. SGD with momentum and weight decay, PyTorch conventions.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainSpec {
    pub epochs: usize,
    pub batch_size: usize,
    pub lr: f64,
    #[serde(default = "default_momentum")]
    pub momentum: f64,
    #[serde(default = "default_weight_decay")]
    pub weight_decay: f64,
    #[serde(default)]
    pub schedule: Schedule,
    /// Epochs at which a `multistep` schedule multiplies the rate by `lr_decay`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub milestones: Vec<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lr_decay: Option<f64>,
    /// Random crop / flip of training images; absent: the dataset's default (CIFAR: crop 4 and
    /// flip; digits and MNIST-format: none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub augment: Option<Augment>,
}

fn default_momentum() -> f64 {
    0.9
}
fn default_weight_decay() -> f64 {
    5e-4
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Schedule {
    Constant,
    /// Per-epoch cosine annealing, lr·(1 + cos(π·e/E))/2 for epoch e of E (PyTorch's
    /// `CosineAnnealingLR` with `T_max = E`, stepped per epoch).
    #[default]
    Cosine,
    /// `lr · lr_decay^(milestones passed)`.
    Multistep,
}

impl TrainSpec {
    /// Learning rate used throughout epoch `epoch` (0-based).
    pub fn lr_at(&self, epoch: usize) -> f64 {
        match self.schedule {
            Schedule::Constant => self.lr,
            Schedule::Cosine => {
                let t = epoch as f64 / self.epochs as f64;
                0.5 * self.lr * (1.0 + (std::f64::consts::PI * t).cos())
            }
            Schedule::Multistep => {
                let passed = self.milestones.iter().filter(|&&m| epoch >= m).count();
                self.lr * self.lr_decay.unwrap_or(0.2).powi(passed as i32)
            }
        }
    }
}

impl TrainSpec {
    /// Checks the values: `Err((key below train, message))`.
    pub fn check(&self) -> Result<(), (&'static str, String)> {
        let t = self;
        if t.epochs == 0 || t.epochs > 1_000_000 {
            return Err((
                "epochs",
                format!("must be between 1 and 1,000,000, got {}", t.epochs),
            ));
        }
        if t.batch_size == 0 {
            return Err(("batch_size", "must be ≥ 1".into()));
        }
        if !(t.lr.is_finite() && t.lr > 0.0) {
            return Err((
                "lr",
                format!("learning rate must be > 0 and finite, got {}", t.lr),
            ));
        }
        if !(0.0..1.0).contains(&t.momentum) {
            return Err(("momentum", format!("must be in [0, 1), got {}", t.momentum)));
        }
        if !(t.weight_decay.is_finite() && t.weight_decay >= 0.0) {
            return Err((
                "weight_decay",
                format!("must be ≥ 0, got {}", t.weight_decay),
            ));
        }
        match t.schedule {
            Schedule::Multistep => {
                if t.milestones.is_empty() {
                    return Err((
                        "milestones",
                        "a multistep schedule needs `milestones: [e1, e2, ...]` (epochs)".into(),
                    ));
                }
                if t.milestones.windows(2).any(|w| w[0] >= w[1]) {
                    return Err((
                        "milestones",
                        format!("must be strictly increasing, got {:?}", t.milestones),
                    ));
                }
                if let Some(m) = t.milestones.iter().find(|&&m| m >= t.epochs) {
                    return Err((
                        "milestones",
                        format!(
                            "milestone {m} is never reached: training runs epochs 0 to {} \
                             (0-based), so milestones must be below `epochs` ({})",
                            t.epochs.saturating_sub(1),
                            t.epochs
                        ),
                    ));
                }
                if let Some(d) = t.lr_decay {
                    if !(d > 0.0 && d <= 1.0) {
                        return Err(("lr_decay", format!("must be in (0, 1], got {d}")));
                    }
                }
            }
            _ => {
                if !t.milestones.is_empty() || t.lr_decay.is_some() {
                    return Err((
                        "schedule",
                        "`milestones`/`lr_decay` only apply to `schedule: multistep`".into(),
                    ));
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cosine_and_multistep_rates() {
        let mut t = TrainSpec {
            epochs: 4,
            batch_size: 8,
            lr: 0.1,
            momentum: 0.9,
            weight_decay: 0.0,
            schedule: Schedule::Cosine,
            milestones: vec![],
            lr_decay: None,
            augment: None,
        };
        assert!((t.lr_at(0) - 0.1).abs() < 1e-12);
        assert!((t.lr_at(2) - 0.05).abs() < 1e-12);
        t.schedule = Schedule::Multistep;
        t.milestones = vec![1, 3];
        t.lr_decay = Some(0.2);
        assert!((t.lr_at(0) - 0.1).abs() < 1e-12);
        assert!((t.lr_at(1) - 0.02).abs() < 1e-12);
        assert!((t.lr_at(3) - 0.004).abs() < 1e-12);
        // Without `lr_decay` the rate falls by the documented default, 0.2, at each milestone.
        t.lr_decay = None;
        assert!((t.lr_at(1) - 0.02).abs() < 1e-12);
        assert!((t.lr_at(3) - 0.004).abs() < 1e-12);
    }
}
