//! Every target × regulariser combination on a fixed batch (B = 4, C = 3, fixed λ and partner
//! permutation): the dfdx losses against an independent f64 reference written out below, and
//! their gradients w.r.t. the logits against central finite differences of that reference.

use dfdx::prelude::*;
use icm::data::ImageShape;
use icm::mix::losses::{regmixup_total, target_loss};
use icm::mix::method::{IcmAxes, Method, MethodEntry, Target};
use icm::mix::mixers::mixup::mixup_inputs;
use icm::mix::mixers::Mixer;
use icm::mix::rule::{label_weight, mix_batch, soft_targets};
use icm::util::Matrix;
use rand::SeedableRng;

const B: usize = 4;
const C: usize = 3;
const LAMBDA: f64 = 0.7;
const LABELS: [usize; B] = [0, 1, 2, 0];
const PARTNER: [usize; B] = [1, 2, 3, 0];
/// Logits of the mixed batch and of the clean batch (RegMixup's second pass).
const Z_MIXED: [f64; B * C] = [
    1.0, -0.5, 0.2, 0.3, 0.8, -1.0, -0.2, 0.1, 0.9, 0.5, 0.5, -0.3,
];
const Z_CLEAN: [f64; B * C] = [2.0, 0.0, -1.0, 0.0, 1.5, 0.5, -0.5, 0.0, 1.0, 1.0, 0.2, 0.1];
const GAMMA: f64 = 0.5;

fn method(yaml: &str) -> Method {
    serde_yaml::from_str::<MethodEntry>(yaml)
        .unwrap()
        .resolve()
        .unwrap()
}

// ---- independent f64 reference -------------------------------------------------------------

fn log_softmax(v: &[f64]) -> Vec<f64> {
    let m = v.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
    let lse = m + v.iter().map(|x| (x - m).exp()).sum::<f64>().ln();
    v.iter().map(|x| x - lse).collect()
}

fn ref_soft_ce(z: &[f64], t: &[f64], b: usize, c: usize) -> f64 {
    (0..b)
        .map(|i| {
            let lp = log_softmax(&z[i * c..(i + 1) * c]);
            -(0..c).map(|k| t[i * c + k] * lp[k]).sum::<f64>()
        })
        .sum::<f64>()
        / b as f64
}

/// S_ij = Σ_k z_ik t_jk.
fn scores(z: &[f64], t: &[f64], b: usize, c: usize) -> Vec<f64> {
    let mut s = vec![0.0; b * b];
    for i in 0..b {
        for j in 0..b {
            s[i * b + j] = (0..c).map(|k| z[i * c + k] * t[j * c + k]).sum();
        }
    }
    s
}

fn ref_icm(z: &[f64], t: &[f64], b: usize, c: usize, axes: IcmAxes) -> f64 {
    let s = scores(z, t, b, c);
    let row: f64 = (0..b)
        .map(|i| -log_softmax(&s[i * b..(i + 1) * b])[i])
        .sum::<f64>()
        / b as f64;
    let col: f64 = (0..b)
        .map(|j| {
            let column: Vec<f64> = (0..b).map(|i| s[i * b + j]).collect();
            -log_softmax(&column)[j]
        })
        .sum::<f64>()
        / b as f64;
    match axes {
        IcmAxes::Pair => row,
        IcmAxes::Class => col,
        IcmAxes::Dual => row + col,
    }
}

fn ref_total(m: &Method, zm: &[f64], zc: &[f64], t: &[f64], one_hot: &[f64]) -> f64 {
    let mixed = match m.target {
        Target::Label => ref_soft_ce(zm, t, B, C),
        Target::Icm => ref_icm(zm, t, B, C, m.axes.unwrap()),
    };
    if m.regularised {
        ref_soft_ce(zc, one_hot, B, C) + m.gamma.unwrap() * mixed
    } else {
        mixed
    }
}

fn numeric_grad(f: impl Fn(&[f64]) -> f64, at: &[f64]) -> Vec<f64> {
    let h = 1e-5;
    (0..at.len())
        .map(|k| {
            let (mut up, mut down) = (at.to_vec(), at.to_vec());
            up[k] += h;
            down[k] -= h;
            (f(&up) - f(&down)) / (2.0 * h)
        })
        .collect()
}

// ---- the tests -----------------------------------------------------------------------------

fn fixed_targets() -> (Vec<f64>, Vec<f64>) {
    let w = vec![LAMBDA; B];
    let t: Vec<f64> = soft_targets(&LABELS, &PARTNER, &w, C)
        .iter()
        .map(|&x| x as f64)
        .collect();
    let one_hot: Vec<f64> = soft_targets(&LABELS, &[0, 1, 2, 3], &[1.0; B], C)
        .iter()
        .map(|&x| x as f64)
        .collect();
    (t, one_hot)
}

#[test]
fn fixed_batch_targets_are_exact() {
    let (t, _) = fixed_targets();
    // t_i = 0.7 e_{y_i} + 0.3 e_{y_π(i)} with y = (0, 1, 2, 0), y_π = (1, 2, 0, 0).
    let want = [0.7, 0.3, 0.0, 0.0, 0.7, 0.3, 0.3, 0.0, 0.7, 1.0, 0.0, 0.0];
    for (a, b) in t.iter().zip(want) {
        assert!((a - b).abs() < 1e-6, "{t:?}");
    }
    let x: Vec<f32> = vec![0.0, 1.0, 2.0, 3.0];
    assert_eq!(
        mixup_inputs(&x, 1, &PARTNER, &[LAMBDA; B]),
        vec![0.3, 1.3, 2.3, 2.1]
    );
}

#[test]
fn every_target_and_regulariser_matches_reference_value_and_gradient() {
    let (t, one_hot) = fixed_targets();
    let presets = [
        "mixup",
        "icm-mixup",
        "icm-mixup: {axes: pair}",
        "icm-mixup: {axes: class}",
        "regmixup: {gamma: 0.5}",
        "icm-regmixup: {gamma: 0.5}",
        "icm-regmixup: {gamma: 0.5, axes: pair}",
        "icm-regmixup: {gamma: 0.5, axes: class}",
    ];
    let dev = Cpu::default();
    let f32s = |v: &[f64]| v.iter().map(|&x| x as f32).collect::<Vec<f32>>();
    for yaml in presets {
        let m = method(yaml);
        assert_eq!(m.gamma, m.regularised.then_some(GAMMA));
        let zm: Matrix<Cpu> = dev.tensor_from_vec(f32s(&Z_MIXED), (B, C));
        let zc: Matrix<Cpu> = dev.tensor_from_vec(f32s(&Z_CLEAN), (B, C));
        let tt: Matrix<Cpu> = dev.tensor_from_vec(f32s(&t), (B, C));
        let oh: Matrix<Cpu> = dev.tensor_from_vec(f32s(&one_hot), (B, C));
        let mut loss = target_loss(&m, zm.leaky_trace(), tt).unwrap();
        if m.regularised {
            loss = regmixup_total(zc.leaky_trace(), oh, loss, m.gamma.unwrap()).unwrap();
        }
        let want = ref_total(&m, &Z_MIXED, &Z_CLEAN, &t, &one_hot);
        let got = loss.array() as f64;
        assert!(
            (got - want).abs() < 1e-5,
            "{yaml}: {got} vs reference {want}"
        );

        let grads = loss.backward();
        let g_mixed = grads.get(&zm).as_vec();
        let fd_mixed = numeric_grad(|z| ref_total(&m, z, &Z_CLEAN, &t, &one_hot), &Z_MIXED);
        for (a, b) in g_mixed.iter().zip(&fd_mixed) {
            assert!(
                (*a as f64 - b).abs() < 1e-4,
                "{yaml} d/dz_mixed: {g_mixed:?} vs {fd_mixed:?}"
            );
        }
        if m.regularised {
            let g_clean = grads.get(&zc).as_vec();
            let fd_clean = numeric_grad(|z| ref_total(&m, &Z_MIXED, z, &t, &one_hot), &Z_CLEAN);
            for (a, b) in g_clean.iter().zip(&fd_clean) {
                assert!((*a as f64 - b).abs() < 1e-4, "{yaml} d/dz_clean");
            }
        }
    }
}

/// Pairs with the same ordered classes get identical mixed classifiers, hence identical score
/// columns; as in the official code they still count as negatives (no masking), so the loss is
/// larger than it would be with duplicates masked out.
#[test]
fn identical_class_pairs_are_negatives() {
    let labels = [0, 1, 0, 1];
    let partner = [1, 0, 3, 2];
    let t: Vec<f64> = soft_targets(&labels, &partner, &[LAMBDA; 4], C)
        .iter()
        .map(|&x| x as f64)
        .collect();
    let s = scores(&Z_MIXED, &t, B, C);
    for i in 0..B {
        assert_eq!(s[i * B], s[i * B + 2], "columns 0 and 2 coincide");
    }
    let dev = Cpu::default();
    let z: Matrix<Cpu> = dev.tensor_from_vec(Z_MIXED.iter().map(|&x| x as f32).collect(), (B, C));
    let tt: Matrix<Cpu> = dev.tensor_from_vec(t.iter().map(|&x| x as f32).collect(), (B, C));
    let got = target_loss(&method("icm-mixup: {axes: pair}"), z, tt)
        .unwrap()
        .array() as f64;
    assert!((got - ref_icm(&Z_MIXED, &t, B, C, IcmAxes::Pair)).abs() < 1e-5);
    // Row loss with the duplicate column removed from each row's denominator.
    let masked: f64 = (0..B)
        .map(|i| {
            let dup = i ^ 2; // 0↔2, 1↔3
            let row: Vec<f64> = (0..B).filter(|&j| j != dup).map(|j| s[i * B + j]).collect();
            let own = (0..B).filter(|&j| j != dup).position(|j| j == i).unwrap();
            -log_softmax(&row)[own]
        })
        .sum::<f64>()
        / B as f64;
    assert!(got > masked + 0.1, "unmasked {got} vs masked {masked}");
}

#[test]
fn mix_batch_draws_one_lambda_per_batch_or_per_sample() {
    let shape = ImageShape {
        channels: 1,
        height: 4,
        width: 4,
    };
    let x: Vec<f32> = (0..B * 16).map(|i| i as f32).collect();
    let counts = [10, 10, 10];
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(3);
    let per_batch = mix_batch(&method("mixup"), &x, &LABELS, shape, C, &counts, &mut rng);
    assert!(per_batch.lambda.iter().all(|&l| l == per_batch.lambda[0]));
    let mut sorted = per_batch.partner.clone();
    sorted.sort();
    assert_eq!(sorted, vec![0, 1, 2, 3], "partner is a permutation");
    let per_sample = mix_batch(
        &method("mixup: {lambda: per_sample, alpha: 1.0}"),
        &x,
        &LABELS,
        shape,
        C,
        &counts,
        &mut rng,
    );
    assert!(per_sample.lambda.iter().any(|&l| l != per_sample.lambda[0]));
    // CutMix: λ is the unpasted fraction, a multiple of 1/16 on a 4×4 image.
    let cut = mix_batch(&method("cutmix"), &x, &LABELS, shape, C, &counts, &mut rng);
    for (i, &l) in cut.lambda.iter().enumerate() {
        assert_eq!((l * 16.0).fract(), 0.0);
        let kept = (0..16)
            .filter(|&p| cut.inputs[i * 16 + p] == x[i * 16 + p])
            .count();
        let self_partner = cut.partner[i] == i;
        if !self_partner {
            assert_eq!(kept as f64 / 16.0, l, "sample {i}");
        }
    }
    // Same seed → same batch, bit for bit.
    let mut a = rand_chacha::ChaCha8Rng::seed_from_u64(9);
    let mut b = rand_chacha::ChaCha8Rng::seed_from_u64(9);
    let m = method("icm-cutmix");
    assert_eq!(
        mix_batch(&m, &x, &LABELS, shape, C, &counts, &mut a),
        mix_batch(&m, &x, &LABELS, shape, C, &counts, &mut b)
    );
}

#[test]
fn remix_uses_the_split_counts() {
    let m = method("remix");
    assert_eq!((m.kappa, m.tau, m.alpha), (Some(3.0), Some(0.5), Some(1.0)));
    // Class 0 has 30 images, class 1 has 10: the minority partner takes the label.
    let counts = [30, 10, 10];
    assert_eq!(
        label_weight(m.label_rule, 0.2, 0, 1, &counts, 3.0, 0.5),
        0.0
    );
    assert_eq!(
        label_weight(m.label_rule, 0.8, 1, 0, &counts, 3.0, 0.5),
        1.0
    );
}

/// λ ~ Beta(α, α) and partners are a shuffle of the batch: over 20,000 per-sample draws at
/// α = 0.4 (seeded) the mean is 1/2 and the variance 1/(4(2α + 1)) = 0.1389, within 4 standard
/// errors (Beta(α, 1) would give a mean of 0.29); most samples get another sample as partner.
#[test]
fn lambda_follows_beta_alpha_alpha_and_partners_are_shuffled() {
    let n = 20_000;
    let shape = ImageShape {
        channels: 1,
        height: 1,
        width: 1,
    };
    let x: Vec<f32> = (0..n).map(|i| i as f32).collect();
    let labels: Vec<usize> = (0..n).map(|i| i % C).collect();
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(11);
    let m = method("mixup: {lambda: per_sample, alpha: 0.4}");
    let mixed = mix_batch(&m, &x, &labels, shape, C, &[n; C], &mut rng);
    let mean = mixed.lambda.iter().sum::<f64>() / n as f64;
    let var = mixed.lambda.iter().map(|l| (l - mean).powi(2)).sum::<f64>() / (n - 1) as f64;
    let want_var = 1.0 / (4.0 * (2.0 * 0.4 + 1.0));
    assert!(
        (mean - 0.5).abs() < 4.0 * (want_var / n as f64).sqrt(),
        "mean {mean}"
    );
    assert!(
        (var - want_var).abs() < 0.01,
        "variance {var} vs {want_var}"
    );
    let moved = mixed
        .partner
        .iter()
        .enumerate()
        .filter(|&(i, &p)| p != i)
        .count();
    assert!(
        moved > n * 99 / 100,
        "{moved} of {n} samples have another partner"
    );
}

/// Each sample mixes with its own λ: x̃_i = λ_i·x_i + (1 − λ_i)·x_partner(i).
#[test]
fn per_sample_mixup_uses_each_samples_lambda() {
    let mixed = mixup_inputs(&[1.0, 2.0, 10.0, 20.0], 2, &[1, 0], &[0.25, 0.5]);
    assert_eq!(mixed, vec![7.75, 15.5, 5.5, 11.0]);
}

/// Remix inside `mix_batch`: sample 0 (class 0, 30 images) pairs with sample 1 (class 1, 10
/// images) at λ < τ: its label goes wholly to the minority partner (weight 0 on its own class),
/// while sample 1 keeps its λ (its partner is the majority). Seed 5 draws the pair [1, 0].
#[test]
fn remix_in_mix_batch_hands_the_majority_label_to_the_minority() {
    let shape = ImageShape {
        channels: 1,
        height: 1,
        width: 1,
    };
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(5);
    let m = mix_batch(
        &method("remix"),
        &[0.0, 1.0],
        &[0, 1],
        shape,
        2,
        &[30, 10],
        &mut rng,
    );
    assert_eq!(m.partner, vec![1, 0]);
    assert!(m.lambda[0] < 0.5, "{:?}", m.lambda);
    assert_eq!(m.label_weight, vec![0.0, m.lambda[1]]);
    assert_eq!(&m.targets[..2], &[0.0, 1.0]);
}

/// Per-sample CutMix draws each box from its own λ: λ = 1 pastes nothing, so image 1 stays as
/// it was while image 0 takes a box of its partner.
#[test]
fn per_sample_cutmix_boxes_follow_each_lambda() {
    let shape = ImageShape {
        channels: 1,
        height: 8,
        width: 8,
    };
    let x: Vec<f32> = (0..128).map(|i| if i < 64 { 0.0 } else { 1.0 }).collect();
    let mut lambda = [0.75, 1.0];
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0);
    let out = Mixer::Cutmix.mix(&x, shape, &[1, 0], &mut lambda, true, &mut rng);
    assert_eq!(lambda[1], 1.0);
    assert_eq!(&out[64..], &x[64..]);
    assert!(lambda[0] < 1.0 && out[..64].contains(&1.0), "{lambda:?}");
}

#[test]
fn label_smoothing_is_off_unless_set() {
    assert_eq!(method("icm-mixup").label_smoothing, None);
    let m = method("erm: {label_smoothing: 0.1}");
    assert_eq!(m.display_name(), "erm(label_smoothing=0.1)");
    let shape = ImageShape {
        channels: 1,
        height: 1,
        width: 1,
    };
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0);
    let mixed = mix_batch(&m, &[0.0, 1.0], &[2, 0], shape, C, &[1, 1, 1], &mut rng);
    // (1 − 0.1)·e_y + 0.1/3.
    let want = [
        0.1 / 3.0,
        0.1 / 3.0,
        0.9 + 0.1 / 3.0,
        0.9 + 0.1 / 3.0,
        0.1 / 3.0,
        0.1 / 3.0,
    ];
    for (a, b) in mixed.targets.iter().zip(want) {
        assert!((*a as f64 - b).abs() < 1e-6, "{:?}", mixed.targets);
    }
    let err = serde_yaml::from_str::<MethodEntry>("erm: {label_smoothing: 1.0}")
        .unwrap()
        .resolve()
        .unwrap_err();
    assert!(err.contains("label_smoothing"), "{err}");
}

/// `icm methods` prints every preset with its resolved settings (the report's legend), and the
/// one that needs settings with what it needs; with an experiment, that grid's methods.
#[test]
fn icm_methods_lists_the_presets_and_an_experiments_methods() {
    let run = |args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_icm"))
            .args(args)
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        String::from_utf8(out.stdout).unwrap()
    };
    let presets = run(&["methods"]);
    for row in [
        "| mixup | mixup | 0.2 | per_batch | standard | label | – | – | – |",
        "| remix | mixup | 1 | per_batch | remix (3, 0.5) | label | – | – | – |",
        "| regmixup | mixup | 20 | per_batch | standard | label | 1 | – | – |",
        "| icm-cutmix | cutmix | 1 | per_batch | standard | icm (dual) | – | – | – |",
    ] {
        assert!(presets.contains(row), "{row} missing from\n{presets}");
    }
    assert_eq!(
        presets.matches("\n| ").count(),
        1 + 9,
        "header and 9 presets"
    );
    assert!(presets.contains("`custom` needs both `mixer:` and `target:`"));
    let grid = run(&["methods", "experiments/icm-stability.yaml"]);
    assert!(grid.contains(
        "| icm-mixup+clip | mixup | 0.2 | per_batch | standard | icm (dual) | – | – | gradient norm clipped at 5 |"
    ), "{grid}");
}
