//! Exact values of the losses on small hand-computed cases, and their gradients w.r.t. logits.

use dfdx::prelude::*;
use icm::mix::losses::{icm_loss, soft_target_cross_entropy};
use icm::mix::method::IcmAxes;
use icm::util::Matrix;

fn close(a: f64, b: f64, tol: f64) -> bool {
    (a - b).abs() <= tol
}

/// Z = diag(1, 2, 3); targets t0 = ½e0 + ½e1, t1 = e1, t2 = 0.2e0 + 0.8e2, so
/// S = Z Tᵀ = [[0.5, 0, 0.2], [1, 2, 0], [0, 0, 2.4]].
fn case() -> (Cpu, Matrix<Cpu>, Matrix<Cpu>) {
    let dev = Cpu::default();
    let z = dev.tensor_from_vec(vec![1.0, 0.0, 0.0, 0.0, 2.0, 0.0, 0.0, 0.0, 3.0], (3, 3));
    let t = dev.tensor_from_vec(vec![0.5, 0.5, 0.0, 0.0, 1.0, 0.0, 0.2, 0.0, 0.8], (3, 3));
    (dev, z, t)
}

fn e(x: f64) -> f64 {
    x.exp()
}

/// L_row = ⅓ Σ_i (−S_ii + ln Σ_j e^{S_ij}), written out for S above.
fn hand_row() -> f64 {
    ((-0.5 + (e(0.5) + 1.0 + e(0.2)).ln())
        + (-2.0 + (e(1.0) + e(2.0) + 1.0).ln())
        + (-2.4 + (1.0 + 1.0 + e(2.4)).ln()))
        / 3.0
}

/// L_col = ⅓ Σ_j (−S_jj + ln Σ_i e^{S_ij}).
fn hand_col() -> f64 {
    ((-0.5 + (e(0.5) + e(1.0) + 1.0).ln())
        + (-2.0 + (1.0 + e(2.0) + 1.0).ln())
        + (-2.4 + (e(0.2) + 1.0 + e(2.4)).ln()))
        / 3.0
}

#[test]
fn icm_loss_rows_columns_dual_match_hand_computation() {
    let (_, z, t) = case();
    let row = icm_loss(z.clone(), t.clone(), IcmAxes::Pair)
        .unwrap()
        .array() as f64;
    let col = icm_loss(z.clone(), t.clone(), IcmAxes::Class)
        .unwrap()
        .array() as f64;
    let dual = icm_loss(z, t, IcmAxes::Dual).unwrap().array() as f64;
    assert!(close(row, hand_row(), 1e-6), "row {row} vs {}", hand_row());
    assert!(close(col, hand_col(), 1e-6), "col {col} vs {}", hand_col());
    assert!(close(dual, hand_row() + hand_col(), 1e-6), "dual {dual}");
    // The two axes differ on this case, so a swapped axis cannot pass.
    assert!((hand_row() - hand_col()).abs() > 0.05);
}

/// dL/dZ = dL/dS · T with dL_row/dS = (softmax_rows(S) − I)/B and dL_col/dS = (softmax_cols(S) − I)/B;
/// values computed independently (Python, float64).
#[test]
fn icm_loss_gradients_wrt_logits() {
    let expected = [
        (
            IcmAxes::Pair,
            [
                -0.074624725,
                -0.009534697,
                0.084159422,
                0.046790117,
                -0.07079827,
                0.024008153,
                0.002559539,
                0.038393091,
                -0.040952631,
            ],
        ),
        (
            IcmAxes::Class,
            [
                -0.109319414,
                -0.079965026,
                0.024591752,
                0.089446904,
                0.013408746,
                0.020134023,
                0.01987251,
                0.06655628,
                -0.044725775,
            ],
        ),
        (
            IcmAxes::Dual,
            [
                -0.18394414,
                -0.089499723,
                0.108751174,
                0.136237021,
                -0.057389524,
                0.044142176,
                0.022432049,
                0.104949371,
                -0.085678406,
            ],
        ),
    ];
    for (axes, want) in expected {
        let (_, z, t) = case();
        let loss = icm_loss(z.leaky_trace(), t, axes).unwrap();
        let grads = loss.backward();
        let got = grads.get(&z).as_vec();
        for (g, w) in got.iter().zip(want) {
            assert!(close(*g as f64, w, 1e-6), "{axes:?}: {got:?} vs {want:?}");
        }
    }
}

#[test]
fn icm_loss_needs_two_samples() {
    let dev = Cpu::default();
    let z: Matrix<Cpu> = dev.tensor_from_vec(vec![1.0, 2.0], (1, 2));
    let t: Matrix<Cpu> = dev.tensor_from_vec(vec![1.0, 0.0], (1, 2));
    let err = icm_loss(z, t, IcmAxes::Dual).unwrap_err().to_string();
    assert!(err.contains("at least 2"), "{err}");
}

/// Row 0: logits (0, ln 2, 0) → softmax (¼, ½, ¼), target (0.7, 0.3, 0) → 0.7 ln 4 + 0.3 ln 2 = 1.7 ln 2.
/// Row 1: logits 0 → softmax ⅓ each, target (0, ½, ½) → ln 3. Mean: (1.7 ln 2 + ln 3) / 2.
#[test]
fn soft_target_cross_entropy_hand_case() {
    let dev = Cpu::default();
    let ln2 = std::f32::consts::LN_2;
    let z: Matrix<Cpu> = dev.tensor_from_vec(vec![0.0, ln2, 0.0, 0.0, 0.0, 0.0], (2, 3));
    let t: Matrix<Cpu> = dev.tensor_from_vec(vec![0.7, 0.3, 0.0, 0.0, 0.5, 0.5], (2, 3));
    let loss = soft_target_cross_entropy(z.leaky_trace(), t).unwrap();
    let want = (1.7 * 2f64.ln() + 3f64.ln()) / 2.0;
    assert!(
        close(loss.array() as f64, want, 1e-6),
        "{} vs {want}",
        loss.array()
    );
    // Gradient: (softmax − t) / B.
    let grads = loss.backward();
    let g = grads.get(&z).as_vec();
    let want_g = [
        (0.25 - 0.7) / 2.0,
        (0.5 - 0.3) / 2.0,
        0.25 / 2.0,
        (1.0 / 3.0) / 2.0,
        (1.0 / 3.0 - 0.5) / 2.0,
        (1.0 / 3.0 - 0.5) / 2.0,
    ];
    for (a, b) in g.iter().zip(want_g) {
        assert!(close(*a as f64, b, 1e-6), "{g:?}");
    }
}

/// The masked loss on a batch with a duplicate: Z = diag(1, 2, 3), targets e1, e1, e2 (pairs 0
/// and 1 share their mixed classifier), so S = [[0, 0, 0], [2, 2, 0], [0, 0, 3]] and S_01, S_10
/// leave the softmaxes:
/// L_row = ⅓ (ln 2 + (−2 + ln(e² + 1)) + (−3 + ln(2 + e³))),
/// L_col = ⅓ (ln 2 + (−2 + ln(e² + 1)) + (−3 + ln(2 + e³))) (S is symmetric in its masked form).
#[test]
fn masked_icm_loss_and_gradient_match_hand_computation() {
    use icm::mix::losses::{icm_loss_with, IcmLoss};
    let dev = Cpu::default();
    let z: Matrix<Cpu> =
        dev.tensor_from_vec(vec![1.0, 0.0, 0.0, 0.0, 2.0, 0.0, 0.0, 0.0, 3.0], (3, 3));
    let t: Matrix<Cpu> =
        dev.tensor_from_vec(vec![0.0, 1.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0], (3, 3));
    let masked = IcmLoss {
        mask_duplicates: true,
        ..IcmLoss::faithful(IcmAxes::Pair)
    };
    let row = (2f64.ln() + (-2.0 + (e(2.0) + 1.0).ln()) + (-3.0 + (2.0 + e(3.0)).ln())) / 3.0;
    let got = icm_loss_with(z.clone(), t.clone(), &masked)
        .unwrap()
        .array() as f64;
    assert!(close(got, row, 1e-6), "{got} vs {row}");
    let unmasked = icm_loss(z.clone(), t.clone(), IcmAxes::Pair)
        .unwrap()
        .array() as f64;
    let unmasked_row =
        (3f64.ln() + (-2.0 + (2.0 * e(2.0) + 1.0).ln()) + (-3.0 + (2.0 + e(3.0)).ln())) / 3.0;
    assert!(
        close(unmasked, unmasked_row, 1e-6),
        "masking changes the loss"
    );
    for axes in [IcmAxes::Class, IcmAxes::Dual] {
        let loss = IcmLoss { axes, ..masked };
        let want = if axes == IcmAxes::Dual {
            2.0 * row
        } else {
            row
        };
        let got = icm_loss_with(z.clone(), t.clone(), &loss).unwrap().array() as f64;
        assert!(close(got, want, 1e-6), "{axes:?}: {got} vs {want}");
    }
    // Gradient of the pair axis: dL/dS_ij = (softmax over the unmasked j of row i − δ_ij) / 3,
    // 0 at masked entries; dL/dZ = dL/dS · T.
    let p = |a: f64, others: &[f64]| e(a) / (e(a) + others.iter().map(|&x| e(x)).sum::<f64>());
    let d_s = [
        [(p(0.0, &[0.0]) - 1.0) / 3.0, 0.0, p(0.0, &[0.0]) / 3.0],
        [0.0, (p(2.0, &[0.0]) - 1.0) / 3.0, p(0.0, &[2.0]) / 3.0],
        [
            p(0.0, &[0.0, 3.0]) / 3.0,
            p(0.0, &[0.0, 3.0]) / 3.0,
            (p(3.0, &[0.0, 0.0]) - 1.0) / 3.0,
        ],
    ];
    let targets = [[0.0, 1.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]];
    let grads = icm_loss_with(z.leaky_trace(), t, &masked)
        .unwrap()
        .backward();
    let got = grads.get(&z).as_vec();
    for i in 0..3 {
        for c in 0..3 {
            let want: f64 = (0..3).map(|j| d_s[i][j] * targets[j][c]).sum();
            assert!(
                close(got[i * 3 + c] as f64, want, 1e-6),
                "dZ[{i},{c}]: {got:?}"
            );
        }
    }
}

/// Scores over a temperature: the loss of (Z, T) at τ equals the plain loss of (Z/τ, T), and its
/// gradient is 1/τ times the plain gradient there.
#[test]
fn scaled_icm_loss_and_gradient_match_the_plain_loss_of_scaled_logits() {
    use icm::mix::losses::{icm_loss_with, IcmLoss};
    let (dev, z, t) = case();
    let tau = 2.0;
    let scaled = IcmLoss {
        temperature: tau,
        ..IcmLoss::faithful(IcmAxes::Dual)
    };
    let z_over: Matrix<Cpu> =
        dev.tensor_from_vec(z.as_vec().iter().map(|v| v / tau as f32).collect(), (3, 3));
    let a = icm_loss_with(z.leaky_trace(), t.clone(), &scaled).unwrap();
    let b = icm_loss(z_over.leaky_trace(), t, IcmAxes::Dual).unwrap();
    assert!(close(a.array() as f64, b.array() as f64, 1e-6));
    // By hand: row 0 of S/2 = (0.25, 0, 0.1).
    assert!(a.array() > 0.0);
    let ga = a.backward().get(&z).as_vec();
    let gb = b.backward().get(&z_over).as_vec();
    for (x, y) in ga.iter().zip(&gb) {
        assert!(close(*x as f64, *y as f64 / tau, 1e-6), "{ga:?} vs {gb:?}");
    }
    // Off (τ = 1, no masking) the stabilised loss is the paper's loss bit for bit.
    let (_, z, t) = case();
    let plain = icm_loss(z.clone(), t.clone(), IcmAxes::Dual)
        .unwrap()
        .array();
    let off = icm_loss_with(z, t, &IcmLoss::faithful(IcmAxes::Dual))
        .unwrap()
        .array();
    assert_eq!(plain, off);
}

/// A non-finite logit makes the loss and its whole gradient NaN, on every axis (as the dense
/// product Z·Tᵀ would: ∞ · 0 and NaN · 0 are NaN), even where it meets only zero target weights.
#[test]
fn a_non_finite_logit_gives_a_nan_loss_and_gradient() {
    use icm::mix::losses::{icm_value_and_grad, IcmLoss};
    // Two samples over three classes; no target row gives class 2 any weight.
    let t = [0.7, 0.3, 0.0, 0.0, 1.0, 0.0];
    let mut z = [1.0, -1.0, 0.5, 0.25, 2.0, -0.5];
    let (value, grad) = icm_value_and_grad(&z, &t, 2, 3, &IcmLoss::faithful(IcmAxes::Dual));
    assert!(value.is_finite() && value > 0.0, "{value}");
    assert!(grad.iter().all(|g| g.is_finite()));
    for bad in [f32::NAN, f32::INFINITY, f32::NEG_INFINITY] {
        z[2] = bad;
        for axes in [IcmAxes::Pair, IcmAxes::Class, IcmAxes::Dual] {
            let (value, grad) = icm_value_and_grad(&z, &t, 2, 3, &IcmLoss::faithful(axes));
            assert!(value.is_nan(), "{bad} {axes:?}: {value}");
            assert!(grad.iter().all(|g| g.is_nan()), "{bad} {axes:?}: {grad:?}");
        }
    }
}

/// Six pairs over 2 classes: rows 0, 2 and 5 share (½, ½) (one with a −0 weight, equal as
/// floats), rows 1 and 4 share (1, 0), row 3 is alone: 5 of 6 pairs have a duplicate.
#[test]
fn duplicate_fraction_counts_pairs_sharing_a_mixed_classifier() {
    use icm::mix::losses::duplicate_fraction;
    let t = [0.5, 0.5, 1.0, 0.0, 0.5, 0.5, 0.3, 0.7, 1.0, -0.0, 0.5, 0.5];
    assert_eq!(duplicate_fraction(&t, 6, 2), 5.0 / 6.0);
    assert_eq!(duplicate_fraction(&t[..6], 3, 2), 2.0 / 3.0);
    assert_eq!(duplicate_fraction(&[0.2, 0.8, 0.8, 0.2], 2, 2), 0.0);
    assert_eq!(duplicate_fraction(&[], 0, 2), 0.0);
}

/// The ICM loss by its definition, in f64 and with every class term: S = Z·Tᵀ / τ (masked
/// duplicates at −∞ off the diagonal), each axis (1/B) Σ (logsumexp − diagonal), and
/// ∂L/∂Z = Σ_axes (softmax − I) / B · T / τ.
fn icm_by_definition(
    z: &[f32],
    t: &[f32],
    b: usize,
    c: usize,
    loss: &icm::mix::losses::IcmLoss,
) -> (f64, Vec<f64>) {
    let tau = loss.temperature;
    let row = |m: &[f32], i: usize| m[i * c..(i + 1) * c].to_vec();
    let mut s = vec![vec![0.0f64; b]; b];
    for (i, s_i) in s.iter_mut().enumerate() {
        for (j, s_ij) in s_i.iter_mut().enumerate() {
            let dot: f64 = row(z, i)
                .iter()
                .zip(row(t, j))
                .map(|(&a, w)| a as f64 * w as f64)
                .sum();
            let duplicate = i != j && row(t, i) == row(t, j);
            *s_ij = if loss.mask_duplicates && duplicate {
                f64::NEG_INFINITY
            } else {
                dot / tau
            };
        }
    }
    let (pair, class) = match loss.axes {
        IcmAxes::Pair => (true, false),
        IcmAxes::Class => (false, true),
        IcmAxes::Dual => (true, true),
    };
    let mut value = 0.0;
    let mut ds = vec![vec![0.0f64; b]; b];
    // Axis lines: the rows of S (pair axis), its columns (class axis).
    for (on, transposed) in [(pair, false), (class, true)] {
        if !on {
            continue;
        }
        for line in 0..b {
            let at = |k: usize| if transposed { (k, line) } else { (line, k) };
            let max = (0..b)
                .map(|k| s[at(k).0][at(k).1])
                .fold(f64::NEG_INFINITY, f64::max);
            let total: f64 = (0..b).map(|k| (s[at(k).0][at(k).1] - max).exp()).sum();
            value += (max + total.ln() - s[line][line]) / b as f64;
            for k in 0..b {
                let (i, j) = at(k);
                let soft = (s[i][j] - max).exp() / total;
                ds[i][j] += (soft - if k == line { 1.0 } else { 0.0 }) / b as f64;
            }
        }
    }
    let mut grad = vec![0.0f64; b * c];
    for i in 0..b {
        for k in 0..c {
            grad[i * c + k] = (0..b).map(|j| ds[i][j] * t[j * c + k] as f64).sum::<f64>() / tau;
        }
    }
    (value, grad)
}

/// Batches longer than a vector and not a multiple of one (37 and 48 pairs), targets with
/// one, two and three nonzero weights, duplicated pairs, every axis, masking and a
/// temperature: the fast path's loss and gradient against the definition in f64. Also with
/// one sample's logits 150 above the rest, as in a collapsing run: every pair's best score is
/// then that sample's, the other samples' columns lie far below, and the two axes cannot
/// share their exponentials.
#[test]
fn icm_loss_on_larger_batches_matches_its_definition() {
    use icm::mix::losses::{icm_value_and_grad, IcmLoss};
    let c = 5;
    for (b, outlier) in [(37, 0.0), (48, 0.0), (37, 150.0)] {
        let mut z: Vec<f32> = (0..b * c)
            .map(|i| ((i * 7919 + 13) % 101) as f32 / 17.0 - 3.0)
            .collect();
        z[..c].iter_mut().for_each(|v| *v += outlier);
        let mut t = vec![0.0f32; b * c];
        for j in 0..b {
            let (a, p) = (j % c, (j * 3 + 1) % c);
            match j % 4 {
                0 => t[j * c + a] = 1.0,
                1 if a != p => {
                    t[j * c + a] = 0.3;
                    t[j * c + p] = 0.7;
                }
                2 => {
                    t[j * c + a] += 0.5;
                    t[j * c + (a + 1) % c] += 0.25;
                    t[j * c + (a + 2) % c] += 0.25;
                }
                _ => {
                    t[j * c + a] += 0.6;
                    t[j * c + p] += 0.4;
                }
            }
        }
        for axes in [IcmAxes::Pair, IcmAxes::Class, IcmAxes::Dual] {
            for (mask_duplicates, temperature) in [(false, 1.0), (true, 1.0), (false, 2.5)] {
                let loss = IcmLoss {
                    axes,
                    mask_duplicates,
                    temperature,
                };
                let (value, grad) = icm_value_and_grad(&z, &t, b, c, &loss);
                let (want, want_grad) = icm_by_definition(&z, &t, b, c, &loss);
                let case = format!("B={b} outlier {outlier} {loss:?}");
                assert!(
                    close(value as f64, want, 1e-5 * want.abs().max(1.0)),
                    "{case}: {value} vs {want}"
                );
                for (g, w) in grad.iter().zip(&want_grad) {
                    assert!(close(*g as f64, *w, 2e-6), "{case}: {g} vs {w}");
                }
            }
        }
    }
}

/// The CPU's one-op form of a loss on the tape and the generic form in dfdx's ops (what CUDA
/// runs) give the same value and, with a gradient of 0.75 arriving at the scalar (as RegMixup's
/// γ sends) and the logits also summed into the total (their gradient 1 arrives first), the
/// same logits' gradient, bit for bit: 1 + 0.75·G. With no tape, the same value. A backward
/// pass that forgot the arriving gradient, or assigned instead of adding, would differ.
#[test]
fn the_cpu_loss_op_matches_the_generic_form_bit_for_bit() {
    use icm::mix::losses::{loss_on_tape_in_ops, LossDevice};
    let dev = Cpu::default();
    let z_values = vec![1.5, -2.25, 0.125, 3.0e3, -0.5, 7.0];
    let grad = vec![0.3, -0.1, 1.0e-3, -2.5, 0.7, 1.1];
    let value = 2.375_f32;
    let z: Matrix<Cpu> = dev.tensor_from_vec(z_values.clone(), (2, 3));
    let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
    let want: Vec<f32> = grad.iter().map(|g| 1.0 + g * 0.75).collect();
    for cpu_op in [true, false] {
        let traced = z.leaky_trace();
        let also = traced.with_empty_tape();
        let loss = if cpu_op {
            Cpu::loss_on_tape(traced, &z_values, value, grad.clone())
        } else {
            loss_on_tape_in_ops(traced, &z_values, value, grad.clone())
        };
        assert_eq!(loss.array().to_bits(), value.to_bits(), "{cpu_op}");
        let total = loss * 0.75 + also.sum::<Rank0, _>();
        assert_eq!(
            bits(&total.backward().get(&z).as_vec()),
            bits(&want),
            "{cpu_op}"
        );
    }
    let untaped = Cpu::loss_on_tape(z.clone(), &z_values, value, grad);
    assert_eq!(untaped.array().to_bits(), value.to_bits());
}
