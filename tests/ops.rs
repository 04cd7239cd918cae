//! The CPU kernels of the convolutional layers against naive reference implementations, and their
//! backward kernels against central finite differences of the references. The kernels work in
//! N × H × W × C; the references and the wrappers below speak N × C × H × W, so every test also
//! covers the layout conversion.

use icm::nn::kernels::*;

fn dims(n: usize, c: usize, h: usize, w: usize) -> Dims {
    Dims { n, h, w, c }
}

fn conv_forward(
    x: &[f32],
    (n, h, w): (usize, usize, usize),
    wt: &[f32],
    bias: Option<&[f32]>,
    g: &ConvGeometry,
) -> Vec<f32> {
    let d = dims(n, g.in_channels, h, w);
    let y = conv2d_forward(&nchw_to_nhwc(x, d), d, wt, bias, g);
    nhwc_to_nchw(&y, d.conv(g))
}

type ConvGrads = (Option<Vec<f32>>, Vec<f32>, Vec<f32>);

fn conv_backward(
    x: &[f32],
    (n, h, w): (usize, usize, usize),
    wt: &[f32],
    r: &[f32],
    g: &ConvGeometry,
    need_dx: bool,
) -> ConvGrads {
    let d = dims(n, g.in_channels, h, w);
    let r = nchw_to_nhwc(r, d.conv(g));
    let (dx, dw) = conv2d_backward(
        &nchw_to_nhwc(x, d),
        d,
        wt,
        OutputGrad::Values(&r),
        g,
        need_dx,
    );
    (
        dx.map(|dx| nhwc_to_nchw(&dx, d)),
        dw,
        conv2d_bias_grad(&r, g.out_channels),
    )
}

/// N × C × plane values seen as maps of plane × 1 pixels.
fn plane_dims((n, c, plane): (usize, usize, usize)) -> Dims {
    dims(n, c, plane, 1)
}

fn moments(x: &[f32], shape: (usize, usize, usize)) -> (Vec<f32>, Vec<f32>) {
    let d = plane_dims(shape);
    batch_moments(&nchw_to_nhwc(x, d), d)
}

#[allow(clippy::too_many_arguments)]
fn bn_forward(
    x: &[f32],
    shape: (usize, usize, usize),
    mean: &[f32],
    inv: &[f32],
    gamma: &[f32],
    beta: &[f32],
    residual: Option<&[f32]>,
    relu: bool,
) -> Vec<f32> {
    let d = plane_dims(shape);
    let residual = residual.map(|r| nchw_to_nhwc(r, d));
    let out = batch_norm_forward(
        &nchw_to_nhwc(x, d),
        d.c,
        mean,
        inv,
        gamma,
        beta,
        residual.as_deref(),
        relu,
    );
    nhwc_to_nchw(&out, d)
}

fn bn_backward(
    x: &[f32],
    shape: (usize, usize, usize),
    stats: (&[f32], &[f32]),
    gamma: &[f32],
    r: &[f32],
    batch_stats: bool,
) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    let d = plane_dims(shape);
    let (dy, dg, db) = batch_norm_backward(
        &nchw_to_nhwc(x, d),
        d,
        stats.0,
        stats.1,
        gamma,
        &nchw_to_nhwc(r, d),
        batch_stats,
    );
    (nhwc_to_nchw(&dy, d), dg, db)
}
use rand::{Rng, SeedableRng};

fn random(n: usize, seed: u64) -> Vec<f32> {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    (0..n).map(|_| rng.gen_range(-1.0..1.0)).collect()
}

/// Direct-loop convolution.
fn naive_conv(
    x: &[f32],
    (n, h, w): (usize, usize, usize),
    wt: &[f32],
    bias: &[f32],
    g: &ConvGeometry,
) -> Vec<f32> {
    let (ho, wo, k) = (g.out_size(h), g.out_size(w), g.kernel);
    let mut out = vec![0.0; n * g.out_channels * ho * wo];
    for b in 0..n {
        for co in 0..g.out_channels {
            for oy in 0..ho {
                for ox in 0..wo {
                    let mut s = bias[co] as f64;
                    for ci in 0..g.in_channels {
                        for ky in 0..k {
                            for kx in 0..k {
                                let iy = (oy * g.stride + ky) as isize - g.padding as isize;
                                let ix = (ox * g.stride + kx) as isize - g.padding as isize;
                                if iy >= 0 && iy < h as isize && ix >= 0 && ix < w as isize {
                                    s += (x[((b * g.in_channels + ci) * h + iy as usize) * w
                                        + ix as usize]
                                        * wt[((co * g.in_channels + ci) * k + ky) * k + kx])
                                        as f64;
                                }
                            }
                        }
                    }
                    out[((b * g.out_channels + co) * ho + oy) * wo + ox] = s as f32;
                }
            }
        }
    }
    out
}

/// Checks `analytic` against central differences of `f` at `at`.
fn check_grad(
    name: &str,
    f: &dyn Fn(&[f32]) -> f64,
    at: &[f32],
    analytic: &[f32],
    eps: f32,
    tol: f64,
) {
    assert_eq!(at.len(), analytic.len(), "{name}");
    for i in 0..at.len() {
        let (mut up, mut down) = (at.to_vec(), at.to_vec());
        up[i] += eps;
        down[i] -= eps;
        let numeric = (f(&up) - f(&down)) / (2.0 * eps as f64);
        let err = (numeric - analytic[i] as f64).abs();
        assert!(
            err <= tol * (1.0 + numeric.abs()),
            "{name}[{i}]: analytic {} vs numeric {numeric}",
            analytic[i]
        );
    }
}

/// Σ out · r in f64: a scalar whose gradient w.r.t. the output is r.
fn weighted_sum(out: &[f32], r: &[f32]) -> f64 {
    out.iter().zip(r).map(|(a, b)| *a as f64 * *b as f64).sum()
}

#[test]
fn conv2d_matches_reference_and_finite_differences() {
    for g in [
        ConvGeometry {
            in_channels: 2,
            out_channels: 3,
            kernel: 3,
            stride: 1,
            padding: 1,
        },
        ConvGeometry {
            in_channels: 3,
            out_channels: 2,
            kernel: 3,
            stride: 2,
            padding: 1,
        },
        ConvGeometry {
            in_channels: 2,
            out_channels: 4,
            kernel: 1,
            stride: 2,
            padding: 0,
        },
    ] {
        let (n, h, w) = (2, 5, 4);
        let x = random(n * g.in_channels * h * w, 1);
        let wt = random(g.out_channels * g.in_channels * g.kernel * g.kernel, 2);
        let bias = random(g.out_channels, 3);
        let want = naive_conv(&x, (n, h, w), &wt, &bias, &g);
        let got = conv_forward(&x, (n, h, w), &wt, Some(&bias), &g);
        for (a, b) in got.iter().zip(&want) {
            assert!((a - b).abs() < 1e-5, "{g:?}: {a} vs {b}");
        }

        let r = random(want.len(), 4);
        let (dx, dw, db) = conv_backward(&x, (n, h, w), &wt, &r, &g, true);
        let f_x = |v: &[f32]| weighted_sum(&naive_conv(v, (n, h, w), &wt, &bias, &g), &r);
        let f_w = |v: &[f32]| weighted_sum(&naive_conv(&x, (n, h, w), v, &bias, &g), &r);
        let f_b = |v: &[f32]| weighted_sum(&naive_conv(&x, (n, h, w), &wt, v, &g), &r);
        check_grad("dx", &f_x, &x, &dx.unwrap(), 1e-2, 1e-3);
        check_grad("dw", &f_w, &wt, &dw, 1e-2, 1e-3);
        check_grad("db", &f_b, &bias, &db, 1e-2, 1e-3);
        // Without the input gradient, the weight gradient is the same.
        let (none, dw2, _) = conv_backward(&x, (n, h, w), &wt, &r, &g, false);
        assert!(none.is_none());
        assert_eq!(dw2, dw);
    }
}

/// Reference batch norm in f64 (training mode).
fn naive_bn(
    x: &[f32],
    (n, c, plane): (usize, usize, usize),
    gamma: &[f32],
    beta: &[f32],
) -> Vec<f32> {
    let mut out = vec![0.0; x.len()];
    for ch in 0..c {
        let idx: Vec<usize> = (0..n)
            .flat_map(|b| (0..plane).map(move |i| (b * c + ch) * plane + i))
            .collect();
        let m = idx.len() as f64;
        let mean = idx.iter().map(|&i| x[i] as f64).sum::<f64>() / m;
        let var = idx
            .iter()
            .map(|&i| (x[i] as f64 - mean).powi(2))
            .sum::<f64>()
            / m;
        for &i in &idx {
            out[i] = (gamma[ch] as f64 * (x[i] as f64 - mean) / (var + 1e-5).sqrt()
                + beta[ch] as f64) as f32;
        }
    }
    out
}

/// Batch norm in training mode as the network uses it: batch moments, then the fused pass.
fn bn_train(x: &[f32], dims: (usize, usize, usize), gamma: &[f32], beta: &[f32]) -> Vec<f32> {
    let (mean, var) = moments(x, dims);
    let inv = inverse_std(&var);
    bn_forward(x, dims, &mean, &inv, gamma, beta, None, false)
}

#[test]
fn batch_norm_training_eval_running_stats_and_gradients() {
    let (n, c, h, w) = (3, 2, 2, 3);
    let dims = (n, c, h * w);
    let x = random(n * c * h * w, 5);
    let gamma = vec![1.5, -0.5];
    let beta = vec![0.1, 0.2];
    let want = naive_bn(&x, dims, &gamma, &beta);
    for (a, b) in bn_train(&x, dims, &gamma, &beta).iter().zip(&want) {
        assert!((a - b).abs() < 1e-4, "{a} vs {b}");
    }
    // Running statistics: 0.9 · initial + 0.1 · batch (unbiased variance).
    let (mean, var) = moments(&x, dims);
    let mut stats = BatchNormStats::new(c);
    stats.update(&mean, &var, n * h * w);
    let ch0: Vec<f64> = (0..n)
        .flat_map(|b| x[b * c * h * w..b * c * h * w + h * w].to_vec())
        .map(|v| v as f64)
        .collect();
    let mean0 = ch0.iter().sum::<f64>() / ch0.len() as f64;
    let var0 = ch0.iter().map(|v| (v - mean0).powi(2)).sum::<f64>() / (ch0.len() - 1) as f64;
    assert!((stats.mean[0] as f64 - 0.1 * mean0).abs() < 1e-5);
    assert!((stats.var[0] as f64 - (0.9 + 0.1 * var0)).abs() < 1e-5);

    // Gradients through the batch moments.
    let r = random(x.len(), 6);
    let inv = inverse_std(&var);
    let (dx, dgamma, dbeta) = bn_backward(&x, dims, (&mean, &inv), &gamma, &r, true);
    let f_x = |v: &[f32]| weighted_sum(&naive_bn(v, dims, &gamma, &beta), &r);
    let f_g = |v: &[f32]| weighted_sum(&naive_bn(&x, dims, v, &beta), &r);
    let f_b = |v: &[f32]| weighted_sum(&naive_bn(&x, dims, &gamma, v), &r);
    check_grad("bn dx", &f_x, &x, &dx, 1e-2, 2e-3);
    check_grad("bn dgamma", &f_g, &gamma, &dgamma, 1e-2, 2e-3);
    check_grad("bn dbeta", &f_b, &beta, &dbeta, 1e-2, 2e-3);

    // Evaluation uses the running statistics, and its input gradient is γ/σ · d.
    let inv_run = inverse_std(&stats.var);
    let eval = bn_forward(&x, dims, &stats.mean, &inv_run, &gamma, &beta, None, false);
    let i = 4; // channel 0
    let expect = gamma[0] * (x[i] - stats.mean[0]) / (stats.var[0] + 1e-5).sqrt() + beta[0];
    assert!((eval[i] - expect).abs() < 1e-5);
    let (dx, _, _) = bn_backward(&x, dims, (&stats.mean, &inv_run), &gamma, &r, false);
    assert!((dx[i] - gamma[0] * inv_run[0] * r[i]).abs() < 1e-6);

    // The fused epilogue: relu(bn(x) + residual), and the ReLU's backward mask.
    let residual = random(x.len(), 9);
    let fused = bn_forward(&x, dims, &mean, &inv, &gamma, &beta, Some(&residual), true);
    for ((f, b), s) in fused.iter().zip(&want).zip(&residual) {
        assert!(
            (f - (b + s).max(0.0)).abs() < 1e-4,
            "{f} vs relu({b} + {s})"
        );
    }
    assert!(fused.contains(&0.0) && fused.iter().any(|&v| v > 0.0));
    let mut d = r.clone();
    relu_backward(&fused, &mut d);
    for ((g, o), r) in d.iter().zip(&fused).zip(&r) {
        assert_eq!(*g, if *o > 0.0 { *r } else { 0.0 });
    }
}

#[test]
fn max_pool_shortcut_and_global_pool() {
    let (n, c, h, w) = (2, 2, 4, 5);
    // Distinct values so the maxima are unique.
    let x: Vec<f32> = (0..n * c * h * w)
        .map(|i| ((i * 37) % 101) as f32 / 10.0)
        .collect();
    let d = dims(n, c, h, w);
    let pd = dims(n, c, h / 2, w / 2);
    let (pooled, argmax) = max_pool2x2_forward(&nchw_to_nhwc(&x, d), d);
    let pooled = nhwc_to_nchw(&pooled, pd);
    assert_eq!(pooled.len(), n * c * 2 * 2);
    let naive_pool = |v: &[f32]| -> Vec<f32> {
        let mut o = Vec::new();
        for p in 0..n * c {
            for oy in 0..2 {
                for ox in 0..2 {
                    let at = |dy: usize, dx: usize| v[(p * h + 2 * oy + dy) * w + 2 * ox + dx];
                    o.push(at(0, 0).max(at(0, 1)).max(at(1, 0)).max(at(1, 1)));
                }
            }
        }
        o
    };
    assert_eq!(pooled, naive_pool(&x));
    let r = random(16, 7);
    check_grad(
        "maxpool",
        &|v| weighted_sum(&naive_pool(v), &r),
        &x,
        &nhwc_to_nchw(
            &max_pool2x2_backward(&argmax, &nchw_to_nhwc(&r, pd), x.len()),
            d,
        ),
        1e-3,
        1e-3,
    );

    // Option-A shortcut: stride-2 subsample, channels zero-padded 2 → 4, output 2 × 3.
    let sd = dims(n, 4, 2, 3);
    let sv = nhwc_to_nchw(&shortcut_a_forward(&nchw_to_nhwc(&x, d), d, 4), sd);
    assert_eq!(sv.len(), n * 4 * 2 * 3);
    assert_eq!(sv[0], x[0]);
    assert_eq!(sv[1], x[2]);
    assert_eq!(sv[3], x[2 * w]);
    assert!(
        sv[2 * 6..4 * 6].iter().all(|&v| v == 0.0),
        "padded channels are zero"
    );
    let r = random(sv.len(), 8);
    let gx = nhwc_to_nchw(&shortcut_a_backward(&nchw_to_nhwc(&r, sd), d, 4), d);
    assert_eq!(gx[2], r[1]);
    assert_eq!(gx[1], 0.0, "odd columns get no gradient");
    // The backward is the forward's adjoint: <S x, r> = <x, Sᵀ r>.
    let lhs = weighted_sum(&sv, &r);
    assert!((lhs - weighted_sum(&x, &gx)).abs() < 1e-9 * (1.0 + lhs.abs()));

    let gap = global_avg_pool_forward(&nchw_to_nhwc(&x, d), d);
    assert_eq!(gap.len(), n * c);
    let first: f32 = x[..h * w].iter().sum::<f32>() / (h * w) as f32;
    assert!((gap[0] - first).abs() < 1e-5);
    let r = random(n * c, 10);
    check_grad(
        "global average pool",
        &|v| weighted_sum(&global_avg_pool_forward(&nchw_to_nhwc(v, d), d), &r),
        &x,
        &nhwc_to_nchw(&global_avg_pool_backward(&r, d), d),
        1e-2,
        1e-3,
    );
}

/// Images smaller than the kernel, odd sizes, and batches that the kernels split into several
/// products (24 × 24 maps: one image per product; 8 × 8 outputs: 16 images per product, so 18
/// images leave a partial group), with few and with many channels (the same-size stride-1 ones
/// run on the frame, the others on patches; 16 to 64 channels take the direct kernels of an
/// AVX-512 host, and even same-size maps with 64 channels, or on AVX2 32 and more, take
/// Winograd's algorithm): every geometry agrees with the reference, and
/// both gradients are the adjoints of the forward pass.
#[test]
fn conv2d_edge_geometries() {
    for ((n, k, s, p, h, w), (cin, cout)) in [
        (3, 3, 1, 1, 1, 1),
        (3, 3, 2, 1, 1, 2),
        (3, 3, 2, 1, 3, 3),
        (3, 5, 2, 2, 2, 7),
        (3, 1, 1, 0, 2, 3),
        (3, 5, 1, 2, 3, 2),
        (3, 5, 1, 2, 1, 6),
        (3, 3, 1, 1, 4, 1),
        (3, 3, 1, 1, 24, 24),
        (3, 3, 2, 1, 24, 24),
        (18, 3, 1, 1, 8, 8),
        (18, 3, 2, 1, 16, 16),
        (18, 1, 2, 0, 16, 16),
    ]
    .into_iter()
    .flat_map(|geometry| {
        // Few and many channels; 16, 32 and 64 outputs (forward) or inputs (input gradient)
        // take the direct kernels on AVX-512, with input channels fixed at compile time
        // (equal counts) or not.
        [
            (2, 3),
            (16, 8),
            (16, 16),
            (3, 16),
            (32, 16),
            (32, 32),
            (16, 32),
            (64, 64),
            (48, 64),
        ]
        .map(|channels| (geometry, channels))
    }) {
        let g = ConvGeometry {
            in_channels: cin,
            out_channels: cout,
            kernel: k,
            stride: s,
            padding: p,
        };
        let x = random(n * cin * h * w, 11);
        let wt = random(cout * cin * k * k, 12);
        let bias = random(cout, 13);
        let want = naive_conv(&x, (n, h, w), &wt, &bias, &g);
        let got = conv_forward(&x, (n, h, w), &wt, Some(&bias), &g);
        assert_eq!(got.len(), want.len());
        // f32 sums of up to k·k·cin terms against f64 ones.
        let tolerance = 1e-5 * (1.0 + (cin * k * k) as f32 / 64.0);
        for (a, b) in got.iter().zip(&want) {
            assert!((a - b).abs() < tolerance, "{g:?} {h}x{w}: {a} vs {b}");
        }
        // The backward's input gradient is the adjoint: <conv(x), r> = <x, convᵀ(r)>.
        let r = random(want.len(), 14);
        let (dx, dw, db) = conv_backward(&x, (n, h, w), &wt, &r, &g, true);
        let no_bias = vec![0.0; cout];
        let lhs = weighted_sum(&naive_conv(&x, (n, h, w), &wt, &no_bias, &g), &r);
        let rhs = weighted_sum(&x, &dx.unwrap());
        assert!(
            (lhs - rhs).abs() < 1e-4 * (1.0 + lhs.abs()),
            "{g:?} dx: {lhs} vs {rhs}"
        );
        // The output is linear in the weights too: <conv(x; W), r> = <W, dW>.
        let rhs = weighted_sum(&wt, &dw);
        assert!(
            (lhs - rhs).abs() < 1e-4 * (1.0 + lhs.abs()),
            "{g:?} dW: {lhs} vs {rhs}"
        );
        let r_sum: f64 = r.iter().map(|&v| v as f64).sum();
        let db_sum: f64 = db.iter().map(|&v| v as f64).sum();
        assert!(
            (r_sum - db_sum).abs() < 1e-4 * (1.0 + r_sum.abs()),
            "{g:?} db"
        );
    }
}
