//! The training losses on dfdx tensors, generic over device and tape so they drop into any dfdx
//! training loop: soft-target cross-entropy and the Infinite Class Mixup loss, in one place
//! (definitions in `docs/methods.md`).
//!
//! ```
//! use dfdx::prelude::*;
//! use icm::mix::losses::icm_loss;
//! use icm::mix::method::IcmAxes;
//!
//! let dev = Cpu::default();
//! // Logits of 2 mixed samples over 3 classes, and their mixed targets (rows sum to 1).
//! let logits: Tensor<(usize, usize), f32, _> =
//!     dev.tensor_from_vec(vec![1.0, 0.0, -1.0, 0.5, 0.5, 0.0], (2, 3));
//! let targets = dev.tensor_from_vec(vec![0.7, 0.3, 0.0, 0.0, 0.2, 0.8], (2, 3));
//! let loss = icm_loss(logits.leaky_trace(), targets, IcmAxes::Dual).unwrap();
//! let grads = loss.backward();
//! assert_eq!(grads.get(&logits).as_vec().len(), 6);
//! ```

use anyhow::{ensure, Result};
use dfdx::prelude::*;

use super::method::{IcmAxes, Method, Target};
use crate::util::simd::vectorised;
use crate::util::tensor::transpose_add;
use crate::util::Matrix;

/// −(1/B) Σ_i Σ_c t_ic · log softmax(z_i)_c.
pub fn soft_target_cross_entropy<D: Device<f32>, T: Tape<f32, D>>(
    logits: Matrix<D, T>,
    targets: Matrix<D>,
) -> Result<Tensor<Rank0, f32, D, T>> {
    ensure!(
        logits.shape() == targets.shape(),
        "logits are {:?} but targets are {:?}",
        logits.shape(),
        targets.shape()
    );
    let b = logits.shape().0 as f32;
    let log_probs = logits.log_softmax::<Axis<1>>();
    Ok((log_probs * targets).sum::<Rank0, _>().negate() / b)
}

/// Infinite Class Mixup loss. With scores S = Z·Tᵀ (S_ij = w̃_jᵀh_i + b̃_j, pair j's own mixed
/// classifier applied to sample i):
/// - pair axis: (1/B) Σ_i −log softmax_j(S_i·)_i (each sample picks its own classifier);
/// - class axis: (1/B) Σ_j −log softmax_i(S_·j)_j (each classifier picks its own sample);
/// - dual: their sum.
///
/// No temperature, no normalisation, duplicate class pairs count as negatives (as the official
/// code). Needs B ≥ 2. [`icm_loss_with`] adds the optional stabilisers.
pub fn icm_loss<D: LossDevice, T: Tape<f32, D>>(
    logits: Matrix<D, T>,
    targets: Matrix<D>,
    axes: IcmAxes,
) -> Result<Tensor<Rank0, f32, D, T>> {
    icm_loss_with(logits, targets, &IcmLoss::faithful(axes))
}

/// The ICM loss's settings: its axes and the stabilisers (off in the paper's form).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct IcmLoss {
    pub axes: IcmAxes,
    /// Pairs whose mixed classifiers are identical (identical target rows) are not negatives of
    /// each other, on either axis: their scores leave the softmax.
    pub mask_duplicates: bool,
    /// Scores are divided by τ before the softmax (1: the paper's form).
    pub temperature: f64,
}

impl IcmLoss {
    /// The paper's loss: no masking, no temperature.
    pub fn faithful(axes: IcmAxes) -> Self {
        IcmLoss {
            axes,
            mask_duplicates: false,
            temperature: 1.0,
        }
    }
}

/// A score far below any real one: masked entries get it, so their softmax weight is exactly 0
/// while every product stays finite (−∞ · 0 would be NaN where the loss picks the diagonal).
const MASKED: f32 = -1.0e30;

/// The ICM loss with its stabilisers ([`IcmLoss`]); with both off it is exactly [`icm_loss`].
pub fn icm_loss_with<D: LossDevice, T: Tape<f32, D>>(
    logits: Matrix<D, T>,
    targets: Matrix<D>,
    loss: &IcmLoss,
) -> Result<Tensor<Rank0, f32, D, T>> {
    icm_loss_on_tape(logits, targets, loss, false).map(|(value, _)| value)
}

/// [`icm_loss_with`] and what it saw of its scores (the step's diagnostics), from the same
/// transposed logits and pair weights.
pub fn icm_loss_and_stats<D: LossDevice, T: Tape<f32, D>>(
    logits: Matrix<D, T>,
    targets: Matrix<D>,
    loss: &IcmLoss,
) -> Result<(Tensor<Rank0, f32, D, T>, ScoreStats)> {
    icm_loss_on_tape(logits, targets, loss, true)
        .map(|(value, stats)| (value, stats.expect("asked for")))
}

fn icm_loss_on_tape<D: LossDevice, T: Tape<f32, D>>(
    logits: Matrix<D, T>,
    targets: Matrix<D>,
    loss: &IcmLoss,
    with_stats: bool,
) -> Result<LossAndStats<D, T>> {
    let (b, c) = *logits.shape();
    ensure!(
        targets.shape() == &(b, c),
        "logits are {:?} but targets are {:?}",
        logits.shape(),
        targets.shape()
    );
    ensure!(
        b >= 2,
        "the ICM loss contrasts each mixed pair with the others in its batch, so it needs a batch of \
         at least 2 samples (got {b}); raise batch_size"
    );
    // dfdx's CPU ops spent a tenth of an MLP step on the B × B score matrix; this is one pass
    // over it, on any device, joined to the tape as a value and its gradient.
    let z = logits.as_vec();
    let (value, grad, stats) = icm_terms(&z, &targets.as_vec(), b, c, loss, with_stats);
    Ok((D::loss_on_tape(logits, &z, value, grad), stats))
}

/// Devices a loss computed off the tape joins the tape on: as a scalar equal to its value
/// whose gradient with respect to the logits is the gradient it computed.
pub trait LossDevice: Device<f32> {
    /// `value` on `logits`' tape (their values `z`), with ∂value/∂logits = `grad` (B × C,
    /// row-major). Any device ([`loss_on_tape_in_ops`]):
    /// Σ (Z ⊙ G − their values) + value in dfdx's ops. Every difference is exactly 0, so this
    /// is exactly `value`, and its backward pass adds exactly g·G (g the gradient arriving at
    /// the scalar) to the logits' gradient. Element by element, because a sum of the products
    /// could overflow for the huge logits of a collapsing run where each product does not.
    fn loss_on_tape<T: Tape<f32, Self>>(
        logits: Matrix<Self, T>,
        z: &[f32],
        value: f32,
        grad: Vec<f32>,
    ) -> Tensor<Rank0, f32, Self, T> {
        loss_on_tape_in_ops(logits, z, value, grad)
    }
}

/// [`LossDevice::loss_on_tape`]'s generic form, in dfdx's ops on any device.
pub fn loss_on_tape_in_ops<D: Device<f32>, T: Tape<f32, D>>(
    logits: Matrix<D, T>,
    z: &[f32],
    value: f32,
    grad: Vec<f32>,
) -> Tensor<Rank0, f32, D, T> {
    let shape = *logits.shape();
    let products: Vec<f32> = z.iter().zip(&grad).map(|(z, g)| z * g).collect();
    let dev = logits.device().clone();
    let grad: Matrix<D> = dev.tensor_from_vec(grad, shape);
    let products: Matrix<D> = dev.tensor_from_vec(products, shape);
    ((logits * grad) - products).sum::<Rank0, _>() + value
}

/// On the CPU the loss is one op on the tape, its backward pass adding g·G into the logits'
/// gradient: the same values as the generic form (whose backward adds 0 + 1·g, exactly g, and
/// then G·g), without its four ops, allocations and backward passes (10 of the 28 µs an ICM
/// loss took at B = 128, C = 10, 2-core AVX-512 host; an MLP step is about 950 µs).
impl LossDevice for Cpu {
    fn loss_on_tape<T: Tape<f32, Cpu>>(
        logits: Matrix<Cpu, T>,
        _z: &[f32],
        value: f32,
        grad: Vec<f32>,
    ) -> Tensor<Rank0, f32, Cpu, T> {
        let (logits, mut tape) = logits.split_tape();
        let out = logits.device().tensor(value);
        if T::OWNS_TAPE {
            let (logits_grad, out_grad) = (logits.ghost(), out.ghost());
            tape.add_backward_op(move |grads| {
                let g = grads.get_or_alloc_mut(&out_grad)?[0];
                let dz = grads.get_or_alloc_mut(&logits_grad)?;
                for (d, &gz) in dz.iter_mut().zip(&grad) {
                    *d += gz * g;
                }
                Ok(())
            });
        }
        out.put_tape(tape)
    }
}

/// CUDA takes the generic form.
#[cfg(feature = "cuda")]
impl LossDevice for Cuda {}

/// The ICM loss of logits `z` (B × C) against mixed targets `t` (B × C), and its gradient with
/// respect to `z`, both row-major. Scores S = Z·Tᵀ / τ (+ `MASKED` for masked duplicates);
/// each axis is (1/B) Σ (logsumexp − the diagonal score), its gradient (softmax − I) / B along
/// that axis; ∂S/∂Z = T / τ. Scores are f32 as on the tape; sums of exponentials and the
/// loss run in f64.
///
/// Everything works on Sᵀ (row j: pair j's mixed classifier against every sample), built from
/// each pair's nonzero target weights (one or two; a zero weight adds a zero, which changes no
/// sum): the class axis runs along its rows, the pair axis down its columns, all columns at
/// once, so every pass is a plain loop over contiguous values that compiles to vector code
/// (a reduction along a row, such as a dot product, does not), and ∂L/∂Z is built from the
/// rows of ∂L/∂Sᵀ the same way; the two axes share their exponentials where that is exact to
/// f32 precision (`both_axes_from_shared_exponentials`), and a row that repeats an earlier
/// one (pairs with one mixed classifier, unless masked) takes that row's exponentials. It runs
/// on the calling thread (at B = 128, C = 10, one λ per batch about 16 µs; the two axes on two
/// threads made an MLP step slower, the hand-off costing more than it saved), and every sum
/// keeps one fixed order.
pub fn icm_value_and_grad(
    z: &[f32],
    t: &[f32],
    b: usize,
    c: usize,
    loss: &IcmLoss,
) -> (f32, Vec<f32>) {
    let (value, grad, _) = icm_terms(z, t, b, c, loss, false);
    (value, grad)
}

/// A loss on the tape, and what the ICM loss saw of its scores (`None` for the others).
pub type LossAndStats<D, T> = (Tensor<Rank0, f32, D, T>, Option<ScoreStats>);

/// What the ICM loss saw of its scores, for the step's diagnostics.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ScoreStats {
    /// max |S_ij| over S = Z·Tᵀ in f64, before the temperature.
    pub max_abs: f64,
    /// The share of pairs whose mixed classifier another pair of the batch shares.
    pub duplicates: f64,
}

/// [`icm_value_and_grad`], and with `with_stats` its [`ScoreStats`].
fn icm_terms(
    z: &[f32],
    t: &[f32],
    b: usize,
    c: usize,
    loss: &IcmLoss,
    with_stats: bool,
) -> (f32, Vec<f32>, Option<ScoreStats>) {
    // Every logit checked without stopping early (a loop that can stop at the first
    // non-finite value does not vectorise).
    let finite = z.iter().fold(true, |all, v| all & v.is_finite());
    // Zᵀ (C × B): row k holds every sample's logit of class k.
    let mut z_cols = vec![0.0f32; c * b];
    transpose_add(z, &mut z_cols, b, c);
    let pairs = PairWeights::from_targets(t, b, c);
    let first_alike = pairs.first_alike();
    let stats = with_stats.then(|| ScoreStats {
        max_abs: largest_abs_score(z, t, &z_cols, finite, &pairs, &first_alike, c),
        duplicates: duplicate_share(&first_alike),
    });
    if !finite {
        // ∞ · 0 and NaN · 0 are NaN: a non-finite logit makes scores, the loss and the whole
        // gradient NaN, whichever target weights it meets. Said at once, whatever the path.
        return (f32::NAN, vec![f32::NAN; b * c], stats);
    }
    let tau = loss.temperature as f32;
    let mask = loss.mask_duplicates.then(|| duplicate_mask(&first_alike));
    // Rows of Sᵀ that repeat an earlier one (the mask makes every row its own).
    let alike: Vec<usize> = match mask {
        None => first_alike,
        Some(_) => (0..b).collect(),
    };
    let mut scores_t = vec![0.0f32; b * b];
    vectorised(
        #[inline(always)]
        || {
            let z_col = |k: usize| &z_cols[k * b..(k + 1) * b];
            for j in 0..b {
                if alike[j] != j {
                    scores_t.copy_within(alike[j] * b..(alike[j] + 1) * b, j * b);
                    continue;
                }
                let line = &mut scores_t[j * b..(j + 1) * b];
                match *pairs.of(j) {
                    // The usual two weights in one pass (a + b: the value of 0 + a + b).
                    [(k, w), (l, v)] => {
                        for ((s, &zk), &zl) in line.iter_mut().zip(z_col(k)).zip(z_col(l)) {
                            *s = zk * w + zl * v;
                        }
                    }
                    ref weights => {
                        for &(k, w) in weights {
                            for (s, &zv) in line.iter_mut().zip(z_col(k)) {
                                *s += zv * w;
                            }
                        }
                    }
                }
                if tau != 1.0 {
                    line.iter_mut().for_each(|s| *s /= tau);
                }
                if let Some(mask) = &mask {
                    // Symmetric: row j of the mask is its column j.
                    for (s, m) in line.iter_mut().zip(&mask[j * b..(j + 1) * b]) {
                        *s += m;
                    }
                }
            }
        },
    );
    let (pair_axis, class_axis) = match loss.axes {
        IcmAxes::Pair => (true, false),
        IcmAxes::Class => (false, true),
        IcmAxes::Dual => (true, true),
    };
    let inv_b = 1.0 / b as f32;
    let mut terms: Vec<f64> = Vec::with_capacity(2 * b);
    // ∂L/∂Sᵀ: in place of Sᵀ when the axes share their exponentials.
    let shared = pair_axis && class_axis;
    let ds_t = match shared
        .then(|| both_axes_from_shared_exponentials(&mut scores_t, &alike))
        .flatten()
    {
        Some(both_terms) => {
            terms.extend(both_terms);
            scores_t
        }
        None => {
            let mut ds_t = vec![0.0f32; b * b];
            if pair_axis {
                terms.extend(softmax_grads_down_columns(&scores_t, &mut ds_t, b, inv_b));
            }
            if class_axis {
                let class_terms = softmax_grads_along_rows(&mut scores_t, b, inv_b);
                terms.extend(class_terms);
                vectorised(
                    #[inline(always)]
                    || {
                        for (d, &g) in ds_t.iter_mut().zip(&scores_t) {
                            *d += g;
                        }
                    },
                );
            }
            ds_t
        }
    };
    let value: f64 = terms.iter().sum();
    // ∂L/∂Zᵀ: row k = Σ_j t_jk · (row j of ∂L/∂Sᵀ) / τ, the pairs in order.
    let mut grad_t = vec![0.0f32; c * b];
    vectorised(
        #[inline(always)]
        || {
            for (j, ds_j) in ds_t.chunks(b).enumerate() {
                for &(k, w) in pairs.of(j) {
                    for (g, &d) in grad_t[k * b..(k + 1) * b].iter_mut().zip(ds_j) {
                        *g += d * w;
                    }
                }
            }
            if tau != 1.0 {
                grad_t.iter_mut().for_each(|g| *g /= tau);
            }
        },
    );
    let mut grad = vec![0.0f32; b * c];
    transpose_add(&grad_t, &mut grad, c, b);
    (value as f32, grad, stats)
}

/// Each pair's nonzero target weights, in class order, flattened: pair j's are
/// `terms[starts[j]..starts[j + 1]]`. A mixed target has one or two; the other classes add
/// nothing to a score (also the step diagnostics' largest |score| reads them).
pub(crate) struct PairWeights {
    terms: Vec<(usize, f32)>,
    starts: Vec<usize>,
}

impl PairWeights {
    pub(crate) fn from_targets(t: &[f32], b: usize, c: usize) -> Self {
        let mut terms = Vec::with_capacity(2 * b);
        let mut starts = Vec::with_capacity(b + 1);
        starts.push(0);
        for row in t.chunks(c).take(b) {
            let weights = row.iter().enumerate().filter(|(_, &w)| w != 0.0);
            terms.extend(weights.map(|(k, &w)| (k, w)));
            starts.push(terms.len());
        }
        PairWeights { terms, starts }
    }

    /// Pair `j`'s (class, weight) terms.
    pub(crate) fn of(&self, j: usize) -> &[(usize, f32)] {
        &self.terms[self.starts[j]..self.starts[j + 1]]
    }

    /// The number of pairs.
    fn len(&self) -> usize {
        self.starts.len() - 1
    }

    /// For each pair, the first pair of the batch with the same terms (classes and weights'
    /// bits), itself where no earlier pair has them: pairs with one mixed classifier (one
    /// target row, bit for bit) have one row of scores. With one λ per batch, about two
    /// thirds of a 128-pair batch over 10 classes share theirs. Found through a table keyed
    /// by a hash of the terms, rows compared in full on a match.
    pub(crate) fn first_alike(&self) -> Vec<usize> {
        let same = |a: usize, b: usize| {
            let bits = |j: usize| self.of(j).iter().map(|&(k, w)| (k, w.to_bits()));
            self.of(a).len() == self.of(b).len() && bits(a).eq(bits(b))
        };
        let hash = |j: usize| {
            self.of(j)
                .iter()
                .fold(0xcbf2_9ce4_8422_2325u64, |h, &(k, w)| {
                    let h = (h ^ k as u64).wrapping_mul(0x0000_0100_0000_01b3);
                    (h ^ w.to_bits() as u64).wrapping_mul(0x0000_0100_0000_01b3)
                })
        };
        let slots = (2 * self.len()).next_power_of_two();
        let mut table = vec![usize::MAX; slots];
        (0..self.len())
            .map(|j| {
                let mut slot = (hash(j) >> 17) as usize & (slots - 1);
                loop {
                    match table[slot] {
                        usize::MAX => {
                            table[slot] = j;
                            return j;
                        }
                        first if same(first, j) => return first,
                        _ => slot = (slot + 1) & (slots - 1),
                    }
                }
            })
            .collect()
    }
}

/// The share of pairs whose mixed classifier another pair of the batch shares, from each
/// pair's [`PairWeights::first_alike`].
pub(crate) fn duplicate_share(first_alike: &[usize]) -> f64 {
    let mut members = vec![0usize; first_alike.len()];
    for &f in first_alike {
        members[f] += 1;
    }
    let duplicated = first_alike.iter().filter(|&&f| members[f] > 1).count();
    duplicated as f64 / first_alike.len().max(1) as f64
}

/// max |S_ij| over S = Z·Tᵀ in f64, each S_ij added in class order: Σ_k z_ik·t_jk (the step
/// diagnostics' largest |score|, before the temperature), over B = `first_alike.len()` pairs
/// and `c` classes; `z_cols` is Zᵀ, `finite` whether every logit is finite.
///
/// A mixed target has one or two nonzero weights, and the other terms add ±0, which changes
/// no sum's magnitude: each column S_·j is computed from its pair's nonzero classes only, down
/// all rows at once (Zᵀ widened to f64 as the products are taken, vectorised), B·B·2 products
/// instead of B·B·C, and only once for pairs with the same terms (`first_alike`: the same
/// column). A row with a non-finite logit is the exception (∞·0 is NaN, which the maximum
/// ignores): it is computed with every term, as written.
fn largest_abs_score(
    z: &[f32],
    t: &[f32],
    z_cols: &[f32],
    finite: bool,
    pairs: &PairWeights,
    first_alike: &[usize],
    c: usize,
) -> f64 {
    let b = first_alike.len();
    let finite_rows: Vec<bool> = (0..b)
        .map(|i| finite || z[i * c..(i + 1) * c].iter().all(|v| v.is_finite()))
        .collect();
    // The rows with a non-finite logit set to 0 (in a copy: the rare case).
    let zeroed: Vec<f32>;
    let z_cols = if finite {
        z_cols
    } else {
        let mut copy = z_cols.to_vec();
        for i in (0..b).filter(|&i| !finite_rows[i]) {
            for k in 0..c {
                copy[k * b + i] = 0.0;
            }
        }
        zeroed = copy;
        &zeroed
    };
    let finite_max = vectorised(
        #[inline(always)]
        || {
            // A running maximum per sample, over the pairs: a plain loop over contiguous
            // values (a maximum does not depend on the order it is taken in).
            let mut largest = vec![0.0f64; b];
            let mut column = vec![0.0f64; b];
            let z_col = |k: usize| &z_cols[k * b..(k + 1) * b];
            for j in (0..b).filter(|&j| first_alike[j] == j) {
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
        .filter(|&i| !finite_rows[i])
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

/// How far (natural-log units) below the largest row maximum of Sᵀ every column's maximum
/// may lie for the two axes to share their exponentials: then each column's largest term
/// e^(S − max) is at least e^−60 and computed from normal floats, and a term lost to underflow
/// (below e^−87) is below e^−27 of it, under f32's precision.
const SHARED_RANGE: f64 = 60.0;

/// Both axes of the ICM loss on Sᵀ (B × B, row-major) from one set of exponentials, Sᵀ
/// becoming ∂L/∂Sᵀ in place; returns the loss terms, the pair axis's (columns) then the class
/// axis's (rows). E_ji = e^(S_ji − r_j) with r_j row j's maximum serves the rows as it is; the
/// columns take E_ji · e^(r_j − r) = e^(S_ji − r) with r the largest r_j, summed in f64, rows
/// in order. One exponential per score instead of two; `None`, Sᵀ untouched (each axis then
/// takes its own exponentials), when a column's scores all lie more than [`SHARED_RANGE`]
/// below r, as in a collapsing run's huge scores.
///
/// Row j of Sᵀ equals row `alike[j]` (≤ j) of it: a repeated row's maximum, exponentials and
/// sum are its first occurrence's, taken once (the same values), and only its own diagonal
/// term differs in its gradient.
fn both_axes_from_shared_exponentials(scores: &mut [f32], alike: &[usize]) -> Option<Vec<f64>> {
    let b = alike.len();
    vectorised(
        #[inline(always)]
        || {
            // A local (as a capture, read through the closure's reference, it would be
            // reloaded after every store that might alias it: the gradient pass would not
            // vectorise).
            let inv_b = 1.0 / b as f32;
            let mut row_max = vec![0.0f32; b];
            let mut column_max = vec![f32::NEG_INFINITY; b];
            for (j, row) in scores.chunks(b).enumerate() {
                if alike[j] != j {
                    // A repeated row changes no column's maximum.
                    row_max[j] = row_max[alike[j]];
                    continue;
                }
                row_max[j] = max_in_lanes(row);
                for (m, &v) in column_max.iter_mut().zip(row) {
                    *m = m.max(v);
                }
            }
            let top = row_max.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            if column_max
                .iter()
                .any(|&m| (m as f64) < top as f64 - SHARED_RANGE || m.is_nan())
            {
                return None;
            }
            // e^(r_j − r) ≤ 1, per row.
            let scale: Vec<f64> = row_max
                .iter()
                .map(|&r| (r as f64 - top as f64).exp())
                .collect();
            let diagonal: Vec<f32> = (0..b).map(|i| scores[i * b + i]).collect();
            let mut row_total = vec![0.0f64; b];
            let mut column_total = vec![0.0f64; b];
            // E in place of each first occurrence (a repeated row keeps its scores, which the
            // gradient pass below overwrites); the column sums take every row, in order.
            for j in 0..b {
                let first = alike[j];
                if first == j {
                    let out = &mut scores[j * b..(j + 1) * b];
                    let shift = row_max[j];
                    for e in out.iter_mut() {
                        *e = exp_as_wide(*e - shift);
                    }
                    row_total[j] = sum_in_f64(out);
                } else {
                    row_total[j] = row_total[first];
                }
                let scale = scale[j];
                let exps = &scores[first * b..(first + 1) * b];
                for (total, &e) in column_total.iter_mut().zip(exps) {
                    *total += e as f64 * scale;
                }
            }
            let mut terms = Vec::with_capacity(2 * b);
            for (i, total) in column_total.iter().enumerate() {
                terms.push((top as f64 + total.ln() - diagonal[i] as f64) / b as f64);
            }
            for (j, total) in row_total.iter().enumerate() {
                terms.push((row_max[j] as f64 + total.ln() - diagonal[j] as f64) / b as f64);
            }
            let inv_column: Vec<f64> = column_total.iter().map(|t| 1.0 / t).collect();
            // Last row first: a repeated row reads its first occurrence's E before that row
            // becomes its own gradient.
            for j in (0..b).rev() {
                let (inv_row, scale) = (1.0 / row_total[j], scale[j]);
                let (before, rest) = scores.split_at_mut(j * b);
                let out = &mut rest[..b];
                let own = if alike[j] == j {
                    let own = out[j] as f64;
                    for (v, &inv_column) in out.iter_mut().zip(&inv_column) {
                        *v = off_diagonal_gradient(*v, scale, inv_column, inv_row, inv_b);
                    }
                    own
                } else {
                    let exps = &before[alike[j] * b..(alike[j] + 1) * b];
                    for ((v, &e), &inv_column) in out.iter_mut().zip(exps).zip(&inv_column) {
                        *v = off_diagonal_gradient(e, scale, inv_column, inv_row, inv_b);
                    }
                    exps[j] as f64
                };
                let pair = ((own * scale * inv_column[j]) as f32 - 1.0) * inv_b;
                let class = ((own * inv_row) as f32 - 1.0) * inv_b;
                out[j] = pair + class;
            }
            Some(terms)
        },
    )
}

/// An off-diagonal entry of ∂L/∂Sᵀ from its E (row j, column i): the pair axis's
/// E · e^(r_j − r) / (column i's total) / B plus the class axis's E / (row j's total) / B.
#[inline(always)]
fn off_diagonal_gradient(e: f32, scale: f64, inv_column: f64, inv_row: f64, inv_b: f32) -> f32 {
    let e = e as f64;
    let pair = (e * scale * inv_column) as f32 * inv_b;
    let class = (e * inv_row) as f32 * inv_b;
    pair + class
}

/// The pair axis on Sᵀ (B × B, row-major): each column i (sample i against every pair's
/// classifier, its own at row i) becomes its gradient (softmax − I) / B in `grad`; returns
/// each column's loss term (logsumexp − diagonal) / B, in column order. All columns at once,
/// row by row: each column's maximum, exponentials, f64 sum (rows in order) and normalisation.
fn softmax_grads_down_columns(scores: &[f32], grad: &mut [f32], b: usize, inv_b: f32) -> Vec<f64> {
    vectorised(
        #[inline(always)]
        || {
            let mut max = vec![f32::NEG_INFINITY; b];
            for row in scores.chunks(b) {
                for (m, &v) in max.iter_mut().zip(row) {
                    *m = m.max(v);
                }
            }
            let mut total = vec![0.0f64; b];
            for (row, out) in scores.chunks(b).zip(grad.chunks_mut(b)) {
                for ((e, &v), &m) in out.iter_mut().zip(row).zip(&max) {
                    *e = exp_as_wide(v - m);
                }
                for (s, &e) in total.iter_mut().zip(out.iter()) {
                    *s += e as f64;
                }
            }
            let inv_total: Vec<f64> = total.iter().map(|t| 1.0 / t).collect();
            let own: Vec<f32> = (0..b).map(|i| grad[i * b + i]).collect();
            for out in grad.chunks_mut(b) {
                for (v, &inv) in out.iter_mut().zip(&inv_total) {
                    *v = (*v as f64 * inv) as f32 * inv_b;
                }
            }
            let mut terms = Vec::with_capacity(b);
            for i in 0..b {
                grad[i * b + i] = ((own[i] as f64 * inv_total[i]) as f32 - 1.0) * inv_b;
                let diagonal = scores[i * b + i];
                terms.push((max[i] as f64 + total[i].ln() - diagonal as f64) / b as f64);
            }
            terms
        },
    )
}

/// The class axis on Sᵀ (B × B, row-major): each row j (pair j's classifier against every
/// sample, its own at column j) becomes its gradient (softmax − I) / B in place; returns each
/// row's loss term (logsumexp − diagonal) / B, in row order.
fn softmax_grads_along_rows(scores: &mut [f32], b: usize, inv_b: f32) -> Vec<f64> {
    vectorised(
        #[inline(always)]
        || {
            let mut terms = Vec::with_capacity(b);
            for (j, line) in scores.chunks_mut(b).enumerate() {
                let diagonal = line[j];
                let max = max_in_lanes(line);
                exp_shifted(line, max);
                let own = line[j];
                let total = sum_in_f64(line);
                let inv_total = 1.0 / total;
                for v in line.iter_mut() {
                    *v = (*v as f64 * inv_total) as f32 * inv_b;
                }
                line[j] = ((own as f64 * inv_total) as f32 - 1.0) * inv_b;
                terms.push((max as f64 + total.ln() - diagonal as f64) / b as f64);
            }
            terms
        },
    )
}

/// v ← e^(v − shift) for every value, with [`exp_as_wide`]: written per value so that, inside
/// [`vectorised`], it becomes 16- or 8-lane vector code at the level in use.
#[inline(always)]
fn exp_shifted(values: &mut [f32], shift: f32) {
    for v in values {
        *v = exp_as_wide(*v - shift);
    }
}

/// e^v, computed exactly as the `wide` crate's vectorised `f32x8::exp` computes it in a
/// baseline x86-64 build (separate multiplies and adds, no fused multiply-add): the same bits,
/// so losses and gradients are those of the loss's earlier `wide` form, at every SIMD level.
/// `wide` fixes its instruction set when the crate is compiled (SSE2 here), this runs at the
/// level picked at run time. Relative error at most 8.2e-8 over [−87, 0]; e^(−∞) = 0, NaN stays
/// NaN, e^v = 0 below −103.63 and +∞ above 88.723. Bit-for-bit equality with `wide` is tested.
#[inline(always)]
fn exp_as_wide(v: f32) -> f32 {
    const P0: f32 = 1.0 / 2.0;
    const P1: f32 = 1.0 / 6.0;
    const P2: f32 = 1.0 / 24.0;
    const P3: f32 = 1.0 / 120.0;
    const P4: f32 = 1.0 / 720.0;
    const P5: f32 = 1.0 / 5040.0;
    // ln 2 split in two f32 parts (fdlibm's range reduction): 0.693359375 and −2.1219444e−4.
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    const MAX_R: f32 = 127.0;
    // v = r·ln 2 + x with r an integer, |x| ≤ ln 2 / 2; e^v = 2^r · e^x.
    let r = (v * std::f32::consts::LOG2_E).round_ties_even();
    let big = r > MAX_R;
    let scale = pow2n(if big { r - MAX_R } else { 0.0 });
    let x = v - r * LN2_HI;
    let x = x - r * LN2_LO;
    let x2 = x * x;
    let x4 = x2 * x2;
    let z = (P3 * x + P2) * x2 + ((P5 * x + P4) * x4 + (P1 * x + P0));
    let z = z * (x * x) + x;
    let z = (z + 1.0) * scale * pow2n(if big { MAX_R } else { r });
    if v.is_nan() {
        f32::NAN
    } else if v > 88.723 {
        f32::INFINITY // +∞ included
    } else if v < -103.63 {
        0.0 // −∞ included
    } else {
        z
    }
}

/// 2^n for an integer-valued n, as `wide` builds it: the exponent field for normal results;
/// below 2^−126 the exact subnormal (here a normal power of two times 2^−126, exact, so that no
/// float-to-integer conversion keeps the loop from vectorising), 0 below 2^−149.
#[inline(always)]
fn pow2n(n: f32) -> f32 {
    let normal = |n: f32| f32::from_bits((n + (127.0 + 8_388_608.0)).to_bits() << 23);
    if n < -126.0 {
        normal(n.max(-160.0) + 126.0) * f32::from_bits(1 << 23)
    } else {
        normal(n)
    }
}

/// The largest value (NaNs ignored, as `f32::max`), in eight interleaved running maxima: one
/// running maximum waits on every comparison.
#[inline(always)]
fn max_in_lanes(values: &[f32]) -> f32 {
    let mut lanes = [f32::NEG_INFINITY; 8];
    let mut blocks = values.chunks_exact(8);
    for block in blocks.by_ref() {
        for (lane, &v) in lanes.iter_mut().zip(block) {
            *lane = lane.max(v);
        }
    }
    let tail = blocks.remainder().iter().copied();
    lanes
        .into_iter()
        .chain(tail)
        .fold(f32::NEG_INFINITY, f32::max)
}

/// Σ values in f64, in four interleaved partial sums (one running sum waits on every addition),
/// added in a fixed order.
#[inline(always)]
fn sum_in_f64(values: &[f32]) -> f64 {
    let mut lanes = [0.0f64; 4];
    let mut blocks = values.chunks_exact(4);
    for block in blocks.by_ref() {
        for (lane, &v) in lanes.iter_mut().zip(block) {
            *lane += v as f64;
        }
    }
    let tail: f64 = blocks.remainder().iter().map(|&v| v as f64).sum();
    (lanes[0] + lanes[1]) + (lanes[2] + lanes[3]) + tail
}

/// B × B additive mask: `MASKED` at (i, k), k ≠ i, where pairs i and k have the same mixed
/// classifier (`first_alike`: the same target row), 0 elsewhere. Symmetric, so it serves both
/// axes.
fn duplicate_mask(first_alike: &[usize]) -> Vec<f32> {
    let b = first_alike.len();
    let mut mask = vec![0.0f32; b * b];
    for (i, row) in mask.chunks_mut(b).enumerate() {
        for (k, m) in row.iter_mut().enumerate() {
            if i != k && first_alike[i] == first_alike[k] {
                *m = MASKED;
            }
        }
    }
    mask
}

/// The share of a batch's pairs whose mixed classifier (target row) another pair of the batch
/// shares: the duplicates the paper's loss treats as negatives.
pub fn duplicate_fraction(targets: &[f32], b: usize, c: usize) -> f64 {
    // Two rows have the same bits (−0 taken as +0) exactly when their nonzero weights (the
    // pairs' terms) have.
    duplicate_share(&PairWeights::from_targets(targets, b, c).first_alike())
}

/// The loss a method puts on its mixed batch: soft-target CE, or ICM with the method's axes and
/// stabilisers.
pub fn target_loss<D: LossDevice, T: Tape<f32, D>>(
    method: &Method,
    logits: Matrix<D, T>,
    targets: Matrix<D>,
) -> Result<Tensor<Rank0, f32, D, T>> {
    match method.target {
        Target::Label => soft_target_cross_entropy(logits, targets),
        Target::Icm => icm_loss_with(logits, targets, &method.icm_loss()),
    }
}

/// [`target_loss`], and for ICM methods what the loss saw of its scores (what a training
/// step reports).
pub fn target_loss_and_stats<D: LossDevice, T: Tape<f32, D>>(
    method: &Method,
    logits: Matrix<D, T>,
    targets: Matrix<D>,
) -> Result<LossAndStats<D, T>> {
    match method.target {
        Target::Label => Ok((soft_target_cross_entropy(logits, targets)?, None)),
        Target::Icm => icm_loss_and_stats(logits, targets, &method.icm_loss())
            .map(|(value, stats)| (value, Some(stats))),
    }
}

/// The loss `method` has on a batch of `batch` samples over `classes` classes when every logit
/// (and so every ICM score) is equal: the level a collapsed run sits at. Soft-target CE gives
/// ln C whatever the targets; each ICM axis ln B (the masked loss at most that); RegMixup adds
/// its clean term's ln C.
pub fn uniform_score_loss(method: &Method, classes: usize, batch: usize) -> f64 {
    let label = (classes.max(1) as f64).ln();
    let mixed = match method.target {
        Target::Label => label,
        Target::Icm => {
            let axes = match method.axes.unwrap_or_default() {
                IcmAxes::Dual => 2.0,
                IcmAxes::Pair | IcmAxes::Class => 1.0,
            };
            axes * (batch.max(1) as f64).ln()
        }
    };
    if method.regularised {
        label + method.gamma.unwrap_or(1.0) * mixed
    } else {
        mixed
    }
}

/// RegMixup's total: CE(clean logits, one-hot labels) + γ · (loss on the mixed batch).
pub fn regmixup_total<D: Device<f32>, T: Tape<f32, D>>(
    clean_logits: Matrix<D, T>,
    one_hot: Matrix<D>,
    mixed_loss: Tensor<Rank0, f32, D, T>,
    gamma: f64,
) -> Result<Tensor<Rank0, f32, D, T>> {
    Ok(soft_target_cross_entropy(clean_logits, one_hot)? + mixed_loss * gamma as f32)
}

#[cfg(test)]
mod tests {
    use super::{exp_as_wide, exp_shifted, icm_terms, IcmAxes, IcmLoss, PairWeights};

    /// The loss's largest |score|, as a training step asks for it.
    fn max_of(z: &[f32], t: &[f32], b: usize, c: usize) -> f64 {
        let loss = IcmLoss::faithful(IcmAxes::Dual);
        let (_, _, stats) = icm_terms(z, t, b, c, &loss, true);
        stats.expect("asked for").max_abs
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
    /// same bits as the dense sum; also with rows holding ∞ and NaN logits, where ∞·0 terms
    /// make NaN scores.
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

    /// Against comparing every pair with every earlier one: 1,500 pairs over 6 classes with
    /// weights from 3 values (many repeats, many pairs with the same classes but other weights,
    /// one- to three-term pairs, so the table's slots collide and probe often).
    #[test]
    fn first_alike_is_the_first_pair_with_the_same_terms() {
        let (b, c) = (1500, 6);
        let mut t = vec![0.0f32; b * c];
        for (j, row) in t.chunks_mut(c).enumerate() {
            let weights = [0.25, 0.5, 0.75];
            row[j % c] += weights[j % 3];
            row[(j * j + 1) % c] += weights[(j / 7) % 3];
            if j % 11 == 0 {
                row[(j / 3) % c] += 0.125;
            }
        }
        let pairs = PairWeights::from_targets(&t, b, c);
        let row = |j: usize| &t[j * c..(j + 1) * c];
        let want: Vec<usize> = (0..b)
            .map(|j| (0..=j).find(|&k| row(k) == row(j)).unwrap())
            .collect();
        assert_eq!(pairs.first_alike(), want);
        assert!(want.iter().enumerate().filter(|&(j, &f)| f != j).count() > 1000);
    }

    /// The same bits as `wide`'s `f32x8::exp` (in this baseline build: separate multiplies and
    /// adds), at the SIMD level in use: over [−110, 95] in steps of 2^−12, every integer
    /// multiple of ln 2 and its neighbours (the rounding boundaries), and the special values.
    #[test]
    fn exp_matches_wide_bit_for_bit() {
        let mut xs: Vec<f32> = (0..=205 * 4096)
            .map(|i| -110.0 + i as f32 / 4096.0)
            .collect();
        for n in -160..=130 {
            let x = n as f32 * std::f32::consts::LN_2;
            xs.extend([
                x,
                x.next_up(),
                x.next_down(),
                x + 0.5 * std::f32::consts::LN_2,
            ]);
        }
        xs.extend([
            f32::NEG_INFINITY,
            f32::INFINITY,
            f32::NAN,
            -0.0,
            0.0,
            f32::MIN,
            f32::MAX,
        ]);
        xs.extend([
            -103.63,
            -103.62,
            88.723,
            88.72,
            -87.33,
            -1.0e30,
            f32::MIN_POSITIVE,
        ]);
        while !xs.len().is_multiple_of(8) {
            xs.push(0.0);
        }
        let mut ours = xs.clone();
        crate::util::simd::vectorised(
            #[inline(always)]
            || exp_shifted(&mut ours, 0.0),
        );
        for (block, got) in xs.chunks(8).zip(ours.chunks(8)) {
            let want = wide::f32x8::from(<[f32; 8]>::try_from(block).unwrap()).exp();
            for ((&x, &g), w) in block.iter().zip(got).zip(want.to_array()) {
                let same = g.to_bits() == w.to_bits() || (g.is_nan() && w.is_nan());
                assert!(same, "e^{x:e}: {g:e} against wide's {w:e}");
                assert_eq!(g.to_bits(), exp_as_wide(x).to_bits(), "scalar e^{x:e}");
            }
        }
    }

    /// `wide`'s exp against f64's over the range the loss uses (every argument is ≤ 0 after
    /// the shift, down to where f32 underflows), the padded tail included.
    #[test]
    fn vectorised_exp_is_within_one_epsilon_and_keeps_the_special_values() {
        let xs: Vec<f32> = (0..=20_001).map(|i| -87.0 * i as f32 / 20_001.0).collect();
        let mut ys = xs.clone();
        exp_shifted(&mut ys, 0.0);
        let mut worst = 0.0f64;
        for (&x, &y) in xs.iter().zip(&ys) {
            let exact = (x as f64).exp();
            worst = worst.max((y as f64 - exact).abs() / exact);
        }
        assert!(worst <= f32::EPSILON as f64, "relative error {worst}");
        let mut special = [f32::NEG_INFINITY, f32::NAN, 0.0, -200.0, 1.0];
        exp_shifted(&mut special, 1.0);
        assert_eq!(special[0], 0.0);
        assert!(special[1].is_nan());
        assert!((special[2] - (-1.0f32).exp()).abs() <= 1e-7);
        assert_eq!(special[3], 0.0);
        assert_eq!(special[4], 1.0);
    }
}
