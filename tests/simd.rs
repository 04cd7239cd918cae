//! The SIMD level (`src/util/simd.rs`) and the products' FLOP count (`src/nn/products.rs`). Alone in this test binary:
//! the level and the counter are process-wide, and forcing a level changes last bits of every
//! product, which the bit-exact tests of other binaries must not see.

use dfdx::prelude::*;
use icm::data::ImageShape;
use icm::nn::kernels::{conv2d_backward, conv2d_forward, ConvGeometry, Dims, OutputGrad};
use icm::nn::products::flops_done;
use icm::nn::{Arch, ModelSpec, Network};
use icm::util::simd::{set_simd, simd_in_use, Simd};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

fn logits(net: &mut Network, x: &[f32], batch: usize, d: usize) -> Vec<f32> {
    let dev = Cpu::default();
    net.forward(dev.tensor_from_vec(x.to_vec(), (batch, d)), false)
        .as_vec()
}

#[test]
fn levels_parse_count_flops_and_agree() {
    assert_eq!(Simd::parse("AVX2").unwrap(), Simd::Avx2);
    assert_eq!(Simd::parse("avx512").unwrap(), Simd::Avx512);
    assert_eq!(Simd::parse("auto").unwrap(), Simd::Auto);
    let err = Simd::parse("avx3").unwrap_err().to_string();
    assert!(
        err.contains("avx3") && err.contains("auto, avx512 or avx2"),
        "{err}"
    );

    // An MLP 4 → 3 → 2 on a batch of 5: products of 5×4·4×3 and 5×3·3×2, 2·(60 + 30) FLOPs.
    let spec = ModelSpec {
        arch: Arch::Mlp,
        hidden: Some(vec![3]),
    };
    let shape = ImageShape {
        channels: 1,
        height: 2,
        width: 2,
    };
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    let mut mlp = Network::new(&spec, shape, 2, &Cpu::default(), &mut rng);
    let x: Vec<f32> = (0..20).map(|_| rng.gen_range(-1.0..1.0)).collect();
    let before = flops_done();
    logits(&mut mlp, &x, 5, 4);
    assert_eq!(flops_done() - before, 180);

    // A ResNet-8 at each level the CPU has: the same logits up to accumulation order.
    let spec = ModelSpec {
        arch: Arch::Resnet8,
        hidden: None,
    };
    let shape = ImageShape {
        channels: 3,
        height: 8,
        width: 8,
    };
    let mut net = Network::new(&spec, shape, 10, &Cpu::default(), &mut rng);
    let x: Vec<f32> = (0..4 * 192).map(|_| rng.gen_range(-1.0..1.0)).collect();
    let auto = logits(&mut net, &x, 4, 192);
    let auto_convs = convolutions(&mut rng.clone());
    assert!(simd_in_use().ends_with("(auto)"), "{}", simd_in_use());
    for level in [Simd::Avx2, Simd::Avx512] {
        if set_simd(level).is_err() {
            continue; // this CPU lacks the level: refused, as `--simd` says
        }
        assert!(simd_in_use().ends_with("(forced)"), "{}", simd_in_use());
        let forced = logits(&mut net, &x, 4, 192);
        let scale = auto.iter().fold(0.0f32, |m, v| m.max(v.abs()));
        for (a, f) in auto.iter().zip(&forced) {
            assert!((a - f).abs() <= 1e-5 * scale, "{level:?}: {a} vs {f}");
        }
        // Each level's convolution kernels (the direct ones of 16 to 64 channels and the
        // Winograd layers included, which differ between levels): output, input gradient and
        // weight gradient.
        let forced_convs = convolutions(&mut rng.clone());
        for (case, (a, f)) in auto_convs.iter().zip(&forced_convs).enumerate() {
            let scale = a.iter().fold(1.0f32, |m, v| m.max(v.abs()));
            for (a, f) in a.iter().zip(f) {
                assert!(
                    (a - f).abs() <= 1e-5 * scale,
                    "{level:?} case {case}: {a} vs {f}"
                );
            }
        }
    }
    set_simd(Simd::Auto).unwrap();
    assert!(simd_in_use().ends_with("(auto)"));
}

/// Forward output, input gradient and weight gradient of 3 × 3 same-size convolutions with
/// 16, 32 and 64 channels on two 8 × 8 images, at the level in use.
fn convolutions(rng: &mut ChaCha8Rng) -> Vec<Vec<f32>> {
    let mut results = Vec::new();
    for (cin, cout) in [(16, 16), (32, 32), (16, 32), (32, 16), (64, 64)] {
        let g = ConvGeometry {
            in_channels: cin,
            out_channels: cout,
            kernel: 3,
            stride: 1,
            padding: 1,
        };
        let d = Dims {
            n: 2,
            h: 8,
            w: 8,
            c: cin,
        };
        let x: Vec<f32> = (0..d.len()).map(|_| rng.gen_range(-1.0..1.0)).collect();
        let w: Vec<f32> = (0..cout * cin * 9)
            .map(|_| rng.gen_range(-1.0..1.0))
            .collect();
        let dy: Vec<f32> = (0..d.len() / cin * cout)
            .map(|_| rng.gen_range(-1.0..1.0))
            .collect();
        results.push(conv2d_forward(&x, d, &w, None, &g));
        let (dx, dw) = conv2d_backward(&x, d, &w, OutputGrad::Values(&dy), &g, true);
        results.push(dx.expect("asked for"));
        results.push(dw);
    }
    results
}
