//! One training step of a method: mix, forward, loss (plus RegMixup's clean pass), backward,
//! SGD update.

use anyhow::Result;
use dfdx::prelude::*;

use crate::data::ImageShape;
use crate::mix::losses::{duplicate_share, PairWeights};
use crate::mix::rule::soft_targets;
use crate::mix::{mix_batch, regmixup_total, target_loss, Method};
use crate::nn::{NetDevice, Network, Sgd};
use crate::util::simd::vectorised;
use crate::util::tensor::transpose_add;
use crate::util::Matrix;

/// One clean mini-batch, before mixing.
pub struct Batch<'a> {
    /// B × D images, row-major.
    pub x: &'a [f32],
    pub labels: &'a [usize],
    pub shape: ImageShape,
    pub classes: usize,
    /// Class counts of the training split (Remix).
    pub class_counts: &'a [usize],
}

/// What one training step saw: its loss and the diagnostics `history.csv` keeps per epoch.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct StepStats {
    pub loss: f32,
    /// L2 norm of the loss's gradient, before any clipping (0 when the loss was not finite and
    /// no step was taken).
    pub grad_norm: f64,
    /// Largest |logit| of the mixed batch.
    pub max_logit: f64,
    /// Largest |ICM score| (ICM methods; 0 otherwise).
    pub max_score: f64,
    /// Share of pairs whose mixed classifier another pair of the batch shares (ICM methods).
    pub duplicates: f64,
}

/// One SGD step of `method`: mix, forward, loss (plus RegMixup's clean pass), backward, update
/// (with the method's gradient clipping). A non-finite loss leaves the parameters untouched
/// (batch-norm running statistics have already seen the batch).
pub fn train_step<D: NetDevice, R: rand::Rng>(
    dev: &D,
    model: &mut Network<D>,
    sgd: &mut Sgd<D>,
    method: &Method,
    batch: &Batch,
    lr: f64,
    rng: &mut R,
) -> Result<StepStats> {
    let grads = model.params().alloc_grads();
    let (loss, mut stats) = method_loss(dev, model, method, batch, rng, |x| x.traced(grads))?;
    stats.loss = loss.as_vec()[0];
    if stats.loss.is_finite() {
        let grads = loss.backward();
        stats.grad_norm = D::sgd_step(sgd, model.params_mut(), grads, lr, method.clip_grad_norm);
    }
    Ok(stats)
}

/// The loss a training step of `method` minimises on `batch`, with the mixing drawn from `rng`
/// exactly as [`train_step`] draws it, without a tape: what finite differences of the step's
/// gradient differentiate. Batch norm uses batch statistics (and updates its running ones).
pub fn step_loss<D: NetDevice, R: rand::Rng>(
    dev: &D,
    model: &mut Network<D>,
    method: &Method,
    batch: &Batch,
    rng: &mut R,
) -> Result<f32> {
    let (loss, _) = method_loss(dev, model, method, batch, rng, |x| x)?;
    Ok(loss.as_vec()[0])
}

/// The loss of one training step of `method` and its gradient with respect to the flat
/// parameters, with the mixing drawn from `rng` as [`train_step`] draws it, without updating
/// anything (batch norm's running statistics do see the batch): what `icm device-check`
/// compares between devices.
pub fn step_gradient<D: NetDevice, R: rand::Rng>(
    dev: &D,
    model: &mut Network<D>,
    method: &Method,
    batch: &Batch,
    rng: &mut R,
) -> Result<(f32, Vec<f32>)> {
    let grads = model.params().alloc_grads();
    let (loss, _) = method_loss(dev, model, method, batch, rng, |x| x.traced(grads))?;
    let value = loss.as_vec()[0];
    let grads = loss.backward();
    Ok((value, grads.get(&model.params().all).as_vec()))
}

/// Mixes `batch` and builds the method's loss on tape `T`: `trace` puts the tape on the mixed
/// inputs, and RegMixup's clean pass joins the same tape. Also returns the batch's logit and
/// ICM-score diagnostics.
fn method_loss<D: NetDevice, R: rand::Rng, T: Tape<f32, D>>(
    dev: &D,
    model: &mut Network<D>,
    method: &Method,
    batch: &Batch,
    rng: &mut R,
    trace: impl FnOnce(Matrix<D>) -> Matrix<D, T>,
) -> Result<(Tensor<Rank0, f32, D, T>, StepStats)> {
    let (b, d, classes) = (batch.labels.len(), batch.shape.numel(), batch.classes);
    let mixed = mix_batch(
        method,
        batch.x,
        batch.labels,
        batch.shape,
        classes,
        batch.class_counts,
        rng,
    );
    let stats_targets = mixed.targets.clone();
    let inputs: Matrix<D> = dev.tensor_from_vec(mixed.inputs, (b, d));
    let targets: Matrix<D> = dev.tensor_from_vec(mixed.targets, (b, classes));
    let logits = model.forward(trace(inputs), true);
    let stats = diagnostics(method, &logits.as_vec(), &stats_targets, b, classes);
    let loss = target_loss(method, logits, targets)?;
    if !method.regularised {
        return Ok((loss, stats));
    }
    // RegMixup: a second forward pass on the clean batch with hard labels.
    let clean: Matrix<D> = dev.tensor_from_vec(batch.x.to_vec(), (b, d));
    let identity: Vec<usize> = (0..b).collect();
    let one_hot = soft_targets(batch.labels, &identity, &vec![1.0; b], classes);
    let one_hot: Matrix<D> = dev.tensor_from_vec(one_hot, (b, classes));
    let clean_logits = model.forward(clean.retaped::<T>(), true);
    let total = regmixup_total(clean_logits, one_hot, loss, method.gamma.unwrap_or(1.0))?;
    Ok((total, stats))
}

/// The largest |logit|, and for ICM methods the largest |score| of S = Z·Tᵀ (over the
/// temperature) and the share of duplicated mixed classifiers.
fn diagnostics(method: &Method, z: &[f32], t: &[f32], b: usize, c: usize) -> StepStats {
    let max_logit = z.iter().fold(0.0f64, |m, &v| m.max((v as f64).abs()));
    if !method.uses_icm() {
        return StepStats {
            max_logit,
            ..Default::default()
        };
    }
    let temperature = method.temperature.unwrap_or(1.0);
    let pairs = PairWeights::from_targets(t, b, c);
    let alike = pairs.first_alike();
    let max_abs = max_abs_score(z, t, &pairs, &alike, b, c);
    // Dividing by a positive temperature keeps the order (rounding included): one division.
    let max_score = max_abs / temperature;
    StepStats {
        max_logit,
        max_score,
        duplicates: duplicate_share(&alike),
        ..Default::default()
    }
}

/// max |S_ij| over S = Z·Tᵀ in f64, each S_ij added in class order: Σ_k z_ik·t_jk.
///
/// A mixed target has one or two nonzero weights, and the other terms add ±0, which changes
/// no sum's magnitude: each column S_·j is computed from its pair's nonzero classes only, down
/// all rows at once (Zᵀ, vectorised), B·B·2 products instead of B·B·C, and only once for pairs
/// with the same terms (`PairWeights::first_alike`: the same column). A row with a non-finite
/// logit is the exception (∞·0 is NaN, which the maximum ignores): it is computed with every
/// term, as written.
fn max_abs_score(
    z: &[f32],
    t: &[f32],
    pairs: &PairWeights,
    alike: &[usize],
    b: usize,
    c: usize,
) -> f64 {
    // Every logit checked without stopping early (a loop that can stop at the first non-finite
    // value does not vectorise), then row by row only where one is not finite.
    let finite: Vec<bool> = if z.iter().fold(true, |all, v| all & v.is_finite()) {
        vec![true; b]
    } else {
        (0..b)
            .map(|i| z[i * c..(i + 1) * c].iter().all(|v| v.is_finite()))
            .collect()
    };
    // Zᵀ (C × B), widened to f64 as the products are taken, the rows with a non-finite logit
    // set to 0.
    let mut z_cols = vec![0.0f32; c * b];
    transpose_add(z, &mut z_cols, b, c);
    for i in (0..b).filter(|&i| !finite[i]) {
        for k in 0..c {
            z_cols[k * b + i] = 0.0;
        }
    }
    let finite_max = vectorised(
        #[inline(always)]
        || {
            // A running maximum per sample, over the pairs: a plain loop over contiguous
            // values (a maximum does not depend on the order it is taken in).
            let mut largest = vec![0.0f64; b];
            let mut column = vec![0.0f64; b];
            let z_col = |k: usize| &z_cols[k * b..(k + 1) * b];
            for j in (0..b).filter(|&j| alike[j] == j) {
                // Weights in f64, as the products are taken.
                let weight = |&(k, w): &(usize, f32)| (k, w as f64);
                // The usual one or two weights in one pass each (the same sums as below).
                match *pairs.of(j) {
                    [one] => {
                        let (k, w) = weight(&one);
                        for (m, &zv) in largest.iter_mut().zip(z_col(k)) {
                            *m = m.max((zv as f64 * w).abs());
                        }
                        continue;
                    }
                    [first, second] => {
                        let ((k, w), (l, v)) = (weight(&first), weight(&second));
                        for ((m, &zk), &zl) in largest.iter_mut().zip(z_col(k)).zip(z_col(l)) {
                            *m = m.max((zk as f64 * w + zl as f64 * v).abs());
                        }
                        continue;
                    }
                    _ => {}
                }
                let mut weights = pairs.of(j).iter().map(weight);
                match weights.next() {
                    // 0 + the first term: the first term (0 + −0 is +0, and |·| drops signs).
                    Some((k, w)) => {
                        for (s, &zv) in column.iter_mut().zip(z_col(k)) {
                            *s = zv as f64 * w;
                        }
                    }
                    None => column.fill(0.0),
                }
                for (k, w) in weights {
                    for (s, &zv) in column.iter_mut().zip(z_col(k)) {
                        *s += zv as f64 * w;
                    }
                }
                for (m, s) in largest.iter_mut().zip(&column) {
                    *m = m.max(s.abs());
                }
            }
            largest.into_iter().fold(0.0f64, f64::max)
        },
    );
    (0..b)
        .filter(|&i| !finite[i])
        .flat_map(|i| {
            t.chunks(c).take(b).map(move |tj| {
                let zi = &z[i * c..(i + 1) * c];
                zi.iter()
                    .zip(tj)
                    .fold(0.0f64, |s, (&zk, &w)| s + zk as f64 * w as f64)
            })
        })
        .fold(finite_max, |m, s| m.max(s.abs()))
}

#[cfg(test)]
mod tests {
    use super::max_abs_score;
    use crate::mix::losses::PairWeights;

    fn max_of(z: &[f32], t: &[f32], b: usize, c: usize) -> f64 {
        let pairs = PairWeights::from_targets(t, b, c);
        max_abs_score(z, t, &pairs, &pairs.first_alike(), b, c)
    }

    /// Every term, in class order, as the definition reads.
    fn dense(z: &[f32], t: &[f32], c: usize) -> f64 {
        let mut max = 0.0f64;
        for zi in z.chunks(c) {
            for tj in t.chunks(c) {
                let s = zi
                    .iter()
                    .zip(tj)
                    .fold(0.0f64, |s, (&zk, &w)| s + zk as f64 * w as f64);
                max = max.max(s.abs());
            }
        }
        max
    }

    /// Mixed targets (one or two classes, one row with three, repeated rows), random logits: the
    /// same bits as the dense sum; also with rows holding ∞ and NaN logits, where ∞·0 terms make NaN scores.
    #[test]
    fn sparse_max_score_equals_the_dense_sum() {
        use rand::{Rng, SeedableRng};
        let (b, c) = (37, 10);
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(3);
        let mut z: Vec<f32> = (0..b * c).map(|_| rng.gen_range(-40.0..40.0)).collect();
        let mut t = vec![0.0f32; b * c];
        for row in t.chunks_mut(c) {
            let (a, k) = (rng.gen_range(0..c), rng.gen_range(0..c));
            let lambda: f32 = rng.gen();
            row[a] += lambda;
            row[k] += 1.0 - lambda;
        }
        t[5 * c..6 * c].copy_from_slice(&[0.2, 0.0, 0.3, 0.0, 0.0, 0.5, 0.0, 0.0, 0.0, 0.0]);
        // Pairs 10–13 repeat pair 2 (their columns are computed once); pair 20 has pair 2's
        // classes (8 and 9, in no other target) with other weights, and sample 0's logits of
        // them make its column hold the maximum: a grouping by classes alone would skip it.
        for row in t.chunks_mut(c) {
            row[0] += row[8] + row[9];
            (row[8], row[9]) = (0.0, 0.0);
        }
        t[2 * c..3 * c].fill(0.0);
        (t[2 * c + 8], t[2 * c + 9]) = (0.5, 0.5);
        for j in 10..14 {
            t.copy_within(2 * c..3 * c, j * c);
        }
        t[20 * c..21 * c].fill(0.0);
        (t[20 * c + 8], t[20 * c + 9]) = (0.999, 0.001);
        (z[8], z[9]) = (1.0e4, -1.0e4);
        let want = dense(&z, &t, c);
        let mut without_20 = t.clone();
        without_20[20 * c..21 * c].fill(0.0);
        assert!(want > dense(&z, &without_20, c));
        assert_eq!(max_of(&z, &t, b, c).to_bits(), want.to_bits());
        z[3 * c + 4] = f32::INFINITY;
        z[7 * c] = f32::NAN;
        let want = dense(&z, &t, c);
        assert_eq!(max_of(&z, &t, b, c).to_bits(), want.to_bits());
        // Class 9 in no target: an ∞ there makes every score of its row NaN (ignored).
        for row in t.chunks_mut(c) {
            let nine = row[9];
            row[0] += nine;
            row[9] = 0.0;
        }
        // Its other logits are the largest: were its scores not NaN, they would be the maximum.
        z[3 * c..4 * c].fill(1.0e6);
        z[3 * c + 9] = f32::INFINITY;
        let want = dense(&z, &t, c);
        assert_eq!(max_of(&z, &t, b, c).to_bits(), want.to_bits());
    }
}
