//! `cargo bench --bench conv_layers`: the forward and backward pass of each kind of 3 × 3
//! convolution in the CIFAR ResNets (B = 128, NHWC, the threads of the global pool), best of
//! 15 rounds of 4 calls, with the nominal GFLOP/s. The backward pass includes the input
//! gradient (the networks skip it for their first layer, the last line). `ICM_SIMD=avx2` times the AVX2 kernels on an
//! AVX-512 host. An argument `16`, `32` or `64` times only that same-size layer.

use std::time::Instant;

use icm::nn::kernels::{conv2d_backward, conv2d_forward, ConvGeometry, Dims, OutputGrad};
use icm::util::simd::{set_simd_from_env, simd_in_use};

/// (input channels, output channels, map size, stride) of each layer kind.
const LAYERS: [(usize, usize, usize, usize); 6] = [
    (16, 16, 32, 1),
    (32, 32, 16, 1),
    (64, 64, 8, 1),
    (16, 32, 32, 2),
    (32, 64, 16, 2),
    (3, 16, 32, 1),
];

/// Deterministic values in [−0.5, 0.5).
fn values(n: usize, step: usize) -> Vec<f32> {
    (0..n)
        .map(|i| ((i * step) % 1000) as f32 / 1000.0 - 0.5)
        .collect()
}

/// The best time per call of `f` over 15 rounds of 4 calls, in seconds.
fn best_of(mut f: impl FnMut()) -> f64 {
    (0..15)
        .map(|_| {
            let t = Instant::now();
            for _ in 0..4 {
                f();
            }
            t.elapsed().as_secs_f64() / 4.0
        })
        .fold(f64::INFINITY, f64::min)
}

fn main() {
    if let Err(e) = set_simd_from_env() {
        eprintln!("error: {e:#}");
        std::process::exit(2);
    }
    let only: Option<usize> = std::env::args().skip(1).find_map(|a| a.parse().ok());
    println!(
        "{} on {} thread(s)",
        simd_in_use(),
        rayon::current_num_threads()
    );
    for (cin, cout, size, stride) in LAYERS {
        if only.is_some_and(|c| c != cin || cin != cout) {
            continue;
        }
        let g = ConvGeometry {
            in_channels: cin,
            out_channels: cout,
            kernel: 3,
            stride,
            padding: 1,
        };
        let d = Dims {
            n: 128,
            h: size,
            w: size,
            c: cin,
        };
        let od = d.conv(&g);
        let x = values(d.len(), 7919);
        let w = values(cout * cin * 9, 31);
        let dy = values(od.len(), 13);
        let flops = 2.0 * (od.len() * cin * 9) as f64;
        let forward = best_of(|| {
            std::hint::black_box(conv2d_forward(&x, d, &w, None, &g));
        });
        let backward = best_of(|| {
            let grad = OutputGrad::Values(&dy);
            std::hint::black_box(conv2d_backward(&x, d, &w, grad, &g, true));
        });
        println!(
            "{cin:2} → {cout:2} channels, {size:2} × {size:2}, stride {stride}: forward {:.3} ms \
             ({:.0} GFLOP/s), backward {:.3} ms ({:.0} GFLOP/s)",
            forward * 1e3,
            flops / forward / 1e9,
            backward * 1e3,
            2.0 * flops / backward / 1e9
        );
    }
}
