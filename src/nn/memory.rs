//! How much memory a network needs to train, estimated before anything is allocated, so that
//! absurd widths (`hidden: [4000000000]`) are refused with the numbers instead of aborting.

use super::{Arch, ModelSpec};

/// Rows evaluated at once (`crate::train::eval` predicts in chunks of this many images).
pub const EVAL_ROWS: usize = 512;

/// Estimated training memory of an MLP, in bytes (f64: widths may be absurd).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MemoryEstimate {
    pub parameters: f64,
    /// Weights, their gradients and the SGD momentum: 3 × 4 bytes per parameter.
    pub parameter_bytes: f64,
    /// Layer outputs of the largest batch (training or evaluation), kept for the backward pass
    /// with their gradients, for two forward passes (clean and mixed): 4 × 4 bytes per value.
    pub activation_bytes: f64,
}

impl MemoryEstimate {
    pub fn total_bytes(&self) -> f64 {
        self.parameter_bytes + self.activation_bytes
    }
}

/// The estimate for an MLP on `input` features and `classes` outputs with batches of `batch`;
/// `None` for convolutional networks (their widths are fixed and small).
pub fn mlp_memory(
    model: &ModelSpec,
    input: usize,
    classes: usize,
    batch: usize,
) -> Option<MemoryEstimate> {
    if model.arch != Arch::Mlp {
        return None;
    }
    let mut widths = vec![input as f64];
    widths.extend(model.hidden.iter().flatten().map(|&w| w as f64));
    widths.push(classes as f64);
    let parameters: f64 = widths.windows(2).map(|w| w[0] * w[1] + w[1]).sum();
    let rows = batch.max(EVAL_ROWS) as f64;
    Some(MemoryEstimate {
        parameters,
        parameter_bytes: 12.0 * parameters,
        activation_bytes: 16.0 * rows * widths.iter().sum::<f64>(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn estimates_count_every_weight_and_bias() {
        let model = ModelSpec {
            arch: Arch::Mlp,
            hidden: Some(vec![10]),
        };
        let m = mlp_memory(&model, 64, 3, 32).unwrap();
        assert_eq!(m.parameters, (64.0 * 10.0 + 10.0) + (10.0 * 3.0 + 3.0));
        assert_eq!(m.parameter_bytes, 12.0 * 683.0);
        assert_eq!(m.activation_bytes, 16.0 * 512.0 * 77.0);
        let conv = ModelSpec {
            arch: Arch::SmallCnn,
            hidden: None,
        };
        assert_eq!(mlp_memory(&conv, 64, 3, 32), None);
    }
}
