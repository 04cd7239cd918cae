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
