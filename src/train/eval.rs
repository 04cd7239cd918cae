//! Evaluation: logits of a whole dataset without a tape, and their accuracy.

use crate::data::Dataset;
use crate::metrics;
use crate::nn::{NetDevice, Network};
use crate::util::Matrix;

/// Logits of a whole dataset, computed in batches of the network's
/// [`Network::eval_batch`] images without a tape.
pub fn predict_logits<D: NetDevice>(dev: &D, model: &mut Network<D>, data: &Dataset) -> Vec<f32> {
    let d = data.shape.numel();
    let mut out = Vec::with_capacity(data.len() * data.classes);
    for rows in data.images.chunks(model.eval_batch() * d) {
        let x: Matrix<D> = dev.tensor_from_vec(rows.to_vec(), (rows.len() / d, d));
        out.extend(model.forward(x, false).as_vec());
    }
    out
}

pub fn accuracy(logits: &[f32], labels: &[usize], classes: usize) -> f64 {
    let probs = metrics::softmax_rows(logits, classes);
    let preds = metrics::predictions(&probs, labels, classes);
    preds.iter().filter(|p| p.label == p.predicted).count() as f64 / labels.len().max(1) as f64
}
