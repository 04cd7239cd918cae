//! The CPU's in-place SGD update against the tensor-op one it replaces in training steps: the
//! same parameters and velocity, bit for bit, whenever the gradient is not clipped, and the same
//! gradient norm up to summation order; the norm's exact values and thread independence.

use dfdx::prelude::*;
use icm::nn::sgd::gradient_norm;
use icm::nn::{FlatParams, Sgd};
use icm::util::tensor::{cpu_data, cpu_data_mut};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

fn random(rng: &mut ChaCha8Rng, n: usize, scale: f32) -> Vec<f32> {
    (0..n).map(|_| rng.gen_range(-scale..scale)).collect()
}

/// Gradients holding `g` for `params` (what `backward()` returns).
fn grads_of(params: &FlatParams<f32, Cpu>, g: &[f32]) -> Gradients<f32, Cpu> {
    let mut grads = params.alloc_grads();
    grads
        .get_or_alloc_mut(&params.all)
        .unwrap()
        .copy_from_slice(g);
    grads
}

#[test]
fn in_place_sgd_equals_the_tensor_op_update() {
    let dev = Cpu::default();
    let n = 1003;
    for (momentum, wd, clip) in [
        (0.9, 5e-4, None),
        (0.9, 0.0, None),
        (0.0, 0.0, None),
        (0.9, 5e-4, Some(0.5)),
        (0.5, 1e-2, Some(1e6)),
    ] {
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        let start = random(&mut rng, n, 1.0);
        let mut a = FlatParams {
            all: dev.tensor_from_vec(start.clone(), (n,)),
        };
        let mut b = a.clone();
        let (mut sgd_a, mut sgd_b) = (Sgd::new(&a, momentum, wd), Sgd::new(&b, momentum, wd));
        for step in 0..4 {
            let g = random(&mut rng, n, 0.3);
            let (grads_a, mut grads_b) = (grads_of(&a, &g), grads_of(&b, &g));
            let norm_a = sgd_a.step(&mut a, &grads_a, 0.1, clip);
            let norm_b = sgd_b.step_in_place(&mut b, &mut grads_b, 0.1, clip);
            let case = format!("momentum {momentum}, wd {wd}, clip {clip:?}, step {step}");
            assert!(norm_b > 1.0, "{case}: a real gradient");
            assert!(
                (norm_a - norm_b).abs() <= 1e-6 * norm_b,
                "{case}: norm {norm_a} vs {norm_b}"
            );
            let clipped = clip.is_some_and(|c| norm_b > c);
            if clipped {
                // The clip scale comes from the norm, which differs in the last bits.
                for (x, y) in a.all.as_vec().iter().zip(b.all.as_vec()) {
                    assert!(
                        (x - y).abs() <= 1e-6 * (1.0 + x.abs()),
                        "{case}: {x} vs {y}"
                    );
                }
            } else {
                assert_eq!(a.all.as_vec(), b.all.as_vec(), "{case}: parameters");
                assert_eq!(
                    sgd_a.velocity.as_vec(),
                    sgd_b.velocity.as_vec(),
                    "{case}: velocity"
                );
            }
        }
        assert_ne!(b.all.as_vec(), start, "the update moved the parameters");
    }
}

/// Two steps by hand (PyTorch's SGD: d = g + wd·p, v = μ·v + d, p −= lr·v, no dampening), for
/// both forms: p = 1, g = 0.5, lr 0.1, μ 0.9, wd 0.1. Step 1: d = 0.6, v = 0.6, p = 0.94.
/// Step 2: d = 0.5 + 0.094 = 0.594, v = 0.54 + 0.594 = 1.134, p = 0.94 − 0.1134 = 0.8266
/// (without weight decay p would be 0.855; with dampening 0.9826).
#[test]
fn two_sgd_steps_match_the_hand_computation() {
    let dev = Cpu::default();
    for in_place in [false, true] {
        let mut p = FlatParams {
            all: dev.tensor_from_vec(vec![1.0f32], (1,)),
        };
        let mut sgd = Sgd::new(&p, 0.9, 0.1);
        for _ in 0..2 {
            let mut grads = grads_of(&p, &[0.5]);
            if in_place {
                sgd.step_in_place(&mut p, &mut grads, 0.1, None);
            } else {
                sgd.step(&mut p, &grads, 0.1, None);
            }
        }
        let (param, velocity) = (p.all.as_vec()[0], sgd.velocity.as_vec()[0]);
        assert!(
            (param - 0.8266).abs() < 1e-6,
            "in place {in_place}: {param}"
        );
        assert!(
            (velocity - 1.134).abs() < 1e-6,
            "in place {in_place}: {velocity}"
        );
    }
}

#[test]
fn gradient_norm_is_exact_on_hand_cases_and_independent_of_threads() {
    assert_eq!(gradient_norm(&[3.0, 4.0]), 5.0);
    assert_eq!(gradient_norm(&[]), 0.0);
    // 40,000 halves and 14, 2, 1 (three chunks, the last partial and ending in a part-block):
    // √(10,000 + 196 + 4 + 1) = 101.
    let mut g = vec![0.5f32; 40_000];
    g.extend([14.0, 2.0, 1.0]);
    assert_eq!(gradient_norm(&g), 101.0);
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    let g = random(&mut rng, 100_003, 2.0);
    let exact = g.iter().map(|&v| v as f64 * v as f64).sum::<f64>().sqrt();
    let on = |threads: usize| {
        rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap()
            .install(|| gradient_norm(&g))
    };
    let (one, three) = (on(1), on(3));
    assert_eq!(one.to_bits(), three.to_bits(), "1 vs 3 threads");
    assert!((one - exact).abs() <= 1e-6 * exact, "{one} vs {exact}");
}

#[test]
fn cpu_data_borrows_the_elements_and_writes_reach_only_this_tensor() {
    let dev = Cpu::default();
    let mut t = dev.tensor_from_vec(vec![1.0f32, 2.0, 3.0], (3,));
    let shared = t.clone();
    assert_eq!(cpu_data(&t), &[1.0, 2.0, 3.0]);
    cpu_data_mut(&mut t)[1] = 9.0;
    assert_eq!(t.as_vec(), vec![1.0, 9.0, 3.0]);
    assert_eq!(
        shared.as_vec(),
        vec![1.0, 2.0, 3.0],
        "a clone keeps its values"
    );
    let empty = dev.tensor_from_vec(Vec::<f32>::new(), (0,));
    assert!(cpu_data(&empty).is_empty());
}

#[test]
fn transpose_add_adds_the_transpose_of_a_rectangular_matrix() {
    use icm::util::tensor::transpose_add;
    // 2 × 3 → 3 × 2, added onto ones; and a 20 × 17 one (two tiles each way, both partial).
    let src = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0];
    let mut dst = [1.0f32; 6];
    transpose_add(&src, &mut dst, 2, 3);
    assert_eq!(dst, [2.0, 5.0, 3.0, 6.0, 4.0, 7.0]);
    let (rows, cols) = (20, 17);
    let src: Vec<f32> = (0..rows * cols).map(|v| v as f32).collect();
    let mut dst = vec![0.0f32; rows * cols];
    transpose_add(&src, &mut dst, rows, cols);
    for i in 0..rows {
        for j in 0..cols {
            assert_eq!(dst[j * rows + i], src[i * cols + j], "({i}, {j})");
        }
    }
}
