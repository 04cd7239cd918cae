//! Convolutional layers as custom dfdx ops on the CPU: dfdx 0.13 has no convolution or pooling on
//! stable Rust (DESIGN §6). Each op computes its output with plain Rust kernels (im2col + the
//! `gemm` crate, parallel over the batch with rayon) and records a backward closure on the tape
//! through dfdx's public API (`split_tape`, `add_backward_op`, `ghost`, `put_tape`), which reads
//! the output's gradient and adds into the inputs'. Every op is checked against a naive reference
//! and finite differences in `tests/ops.rs`.

use dfdx::prelude::*;
use rayon::prelude::*;

/// A batch of images, N × C × H × W.
pub type Image4<T = NoneTape> = Tensor<(usize, usize, usize, usize), f32, Cpu, T>;

/// Geometry of a 2-D convolution.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConvGeometry {
    pub in_channels: usize,
    pub out_channels: usize,
    pub kernel: usize,
    pub stride: usize,
    pub padding: usize,
}

impl ConvGeometry {
    /// Output height or width for an input of `size`.
    pub fn out_size(&self, size: usize) -> usize {
        assert!(
            self.stride > 0 && size + 2 * self.padding >= self.kernel,
            "convolution of a {size}-pixel side with kernel {}, padding {}, stride {}",
            self.kernel,
            self.padding,
            self.stride
        );
        (size + 2 * self.padding - self.kernel) / self.stride + 1
    }
    fn patch(&self) -> usize {
        self.in_channels * self.kernel * self.kernel
    }
}

/// c (m × n) = a (m × k) · b (k × n), or += with `accumulate`; each operand row-major, or its
/// transpose when the flag is set (a stored k × m, b stored n × k).
#[allow(clippy::too_many_arguments)]
fn gemm(
    m: usize,
    n: usize,
    k: usize,
    a: &[f32],
    a_t: bool,
    b: &[f32],
    b_t: bool,
    c: &mut [f32],
    accumulate: bool,
) {
    assert!(a.len() >= m * k && b.len() >= k * n && c.len() >= m * n);
    let (a_rs, a_cs) = if a_t {
        (1, m as isize)
    } else {
        (k as isize, 1)
    };
    let (b_rs, b_cs) = if b_t {
        (1, k as isize)
    } else {
        (n as isize, 1)
    };
    // SAFETY: the strides describe matrices inside the slices, checked by the assert above.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            c.as_mut_ptr(),
            1,
            n as isize,
            accumulate,
            a.as_ptr(),
            a_cs,
            a_rs,
            b.as_ptr(),
            b_cs,
            b_rs,
            1.0,
            1.0,
            false,
            false,
            false,
            gemm::Parallelism::None,
        );
    }
}

/// Output columns `ox` whose input column `ox·s + kx − p` lies inside `0..w`, as a range.
fn valid_columns(wo: usize, w: usize, s: usize, kx: usize, p: usize) -> std::ops::Range<usize> {
    // ox·s + kx ≥ p  and  ox·s + kx − p ≤ w − 1
    let lo = p.saturating_sub(kx).div_ceil(s);
    let hi = if w + p > kx {
        ((w + p - kx - 1) / s + 1).min(wo)
    } else {
        0
    };
    lo.min(hi)..hi
}

/// Unfolds one image (C × H × W) into columns (C·k·k × Ho·Wo). Rows are filled a segment at a
/// time: zeros outside the image, a copy (stride 1) or a strided gather inside.
fn im2col(x: &[f32], h: usize, w: usize, g: &ConvGeometry, col: &mut [f32]) {
    let (ho, wo) = (g.out_size(h), g.out_size(w));
    let (k, s, p) = (g.kernel, g.stride, g.padding);
    for ci in 0..g.in_channels {
        let plane = &x[ci * h * w..(ci + 1) * h * w];
        for ky in 0..k {
            for kx in 0..k {
                let row = (ci * k + ky) * k + kx;
                let out = &mut col[row * ho * wo..(row + 1) * ho * wo];
                let cols = valid_columns(wo, w, s, kx, p);
                for oy in 0..ho {
                    let dst = &mut out[oy * wo..(oy + 1) * wo];
                    let iy = (oy * s + ky) as isize - p as isize;
                    if iy < 0 || iy >= h as isize {
                        dst.fill(0.0);
                        continue;
                    }
                    let src_row = &plane[iy as usize * w..(iy as usize + 1) * w];
                    dst[..cols.start].fill(0.0);
                    dst[cols.end..].fill(0.0);
                    if cols.is_empty() {
                        continue;
                    }
                    let first = cols.start * s + kx - p;
                    if s == 1 {
                        dst[cols.clone()].copy_from_slice(&src_row[first..first + cols.len()]);
                    } else {
                        for (j, v) in dst[cols.clone()].iter_mut().enumerate() {
                            *v = src_row[first + j * s];
                        }
                    }
                }
            }
        }
    }
}

/// Folds columns back into an image, adding overlapping contributions (the adjoint of im2col).
fn col2im(col: &[f32], h: usize, w: usize, g: &ConvGeometry, x: &mut [f32]) {
    let (ho, wo) = (g.out_size(h), g.out_size(w));
    let (k, s, p) = (g.kernel, g.stride, g.padding);
    for ci in 0..g.in_channels {
        let plane = &mut x[ci * h * w..(ci + 1) * h * w];
        for ky in 0..k {
            for kx in 0..k {
                let row = (ci * k + ky) * k + kx;
                let src = &col[row * ho * wo..(row + 1) * ho * wo];
                let cols = valid_columns(wo, w, s, kx, p);
                for oy in 0..ho {
                    let iy = (oy * s + ky) as isize - p as isize;
                    if iy < 0 || iy >= h as isize || cols.is_empty() {
                        continue;
                    }
                    let dst_row = &mut plane[iy as usize * w..(iy as usize + 1) * w];
                    let seg = &src[oy * wo + cols.start..oy * wo + cols.end];
                    let first = cols.start * s + kx - p;
                    if s == 1 {
                        for (d, v) in dst_row[first..first + seg.len()].iter_mut().zip(seg) {
                            *d += v;
                        }
                    } else {
                        for (j, v) in seg.iter().enumerate() {
                            dst_row[first + j * s] += v;
                        }
                    }
                }
            }
        }
    }
}

/// Images per partial weight gradient in the backward pass.
const GRAD_GROUP: usize = 8;

/// Forward convolution of a whole batch: (N, Cin, H, W) → (N, Cout, Ho, Wo).
pub fn conv2d_forward(
    x: &[f32],
    dims: (usize, usize, usize),
    weight: &[f32],
    bias: Option<&[f32]>,
    g: &ConvGeometry,
) -> Vec<f32> {
    let (n, h, w) = dims;
    let (ho, wo) = (g.out_size(h), g.out_size(w));
    let (in_img, out_img) = (g.in_channels * h * w, g.out_channels * ho * wo);
    let mut out = vec![0.0f32; n * out_img];
    out.par_chunks_mut(out_img).enumerate().for_each_init(
        || vec![0.0f32; g.patch() * ho * wo],
        |col, (b, y)| {
            im2col(&x[b * in_img..(b + 1) * in_img], h, w, g, col);
            gemm(
                g.out_channels,
                ho * wo,
                g.patch(),
                weight,
                false,
                col,
                false,
                y,
                false,
            );
            if let Some(bias) = bias {
                for (co, plane) in y.chunks_mut(ho * wo).enumerate() {
                    plane.iter_mut().for_each(|v| *v += bias[co]);
                }
            }
        },
    );
    out
}

/// Gradients of a convolution: (dx, dweight, dbias) from the output gradient.
pub fn conv2d_backward(
    x: &[f32],
    dims: (usize, usize, usize),
    weight: &[f32],
    grad_out: &[f32],
    g: &ConvGeometry,
) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    let (n, h, w) = dims;
    let (ho, wo) = (g.out_size(h), g.out_size(w));
    let (in_img, out_img) = (g.in_channels * h * w, g.out_channels * ho * wo);
    let mut dx = vec![0.0f32; n * in_img];
    let wlen = g.out_channels * g.patch();
    // Partial weight gradients over fixed groups of images, summed in order afterwards: the
    // result is bit-identical whatever the number of threads (runs are reproducible).
    let partials: Vec<(Vec<f32>, Vec<f32>)> = dx
        .par_chunks_mut(in_img * GRAD_GROUP)
        .enumerate()
        .map(|(group, dx_group)| {
            let mut dw = vec![0.0f32; wlen];
            let mut db = vec![0.0f32; g.out_channels];
            let mut col = vec![0.0f32; g.patch() * ho * wo];
            for (i, dxb) in dx_group.chunks_mut(in_img).enumerate() {
                let b = group * GRAD_GROUP + i;
                let gy = &grad_out[b * out_img..(b + 1) * out_img];
                im2col(&x[b * in_img..(b + 1) * in_img], h, w, g, &mut col);
                // dW += dY (Cout × P) · colᵀ (P × K)
                gemm(
                    g.out_channels,
                    g.patch(),
                    ho * wo,
                    gy,
                    false,
                    &col,
                    true,
                    &mut dw,
                    true,
                );
                for (co, plane) in gy.chunks(ho * wo).enumerate() {
                    db[co] += plane.iter().sum::<f32>();
                }
                // dcol = Wᵀ (K × Cout) · dY (Cout × P), then fold back into the image.
                gemm(
                    g.patch(),
                    ho * wo,
                    g.out_channels,
                    weight,
                    true,
                    gy,
                    false,
                    &mut col,
                    false,
                );
                col2im(&col, h, w, g, dxb);
            }
            (dw, db)
        })
        .collect();
    let mut dw = vec![0.0f32; wlen];
    let mut db = vec![0.0f32; g.out_channels];
    for (pw, pb) in &partials {
        add_into(&mut dw, pw);
        add_into(&mut db, pb);
    }
    (dx, dw, db)
}

/// Adds `src` into `dst` element-wise.
fn add_into(dst: &mut [f32], src: &[f32]) {
    dst.iter_mut().zip(src).for_each(|(d, s)| *d += s);
}

/// 2-D convolution on the tape. `weight` is (Cout, Cin, k, k) flattened, `bias` (Cout); both
/// usually slices of a network's flat parameter tensor.
pub fn conv2d<T: Tape<f32, Cpu>>(
    x: Image4<T>,
    weight: Tensor<(usize,), f32, Cpu, T>,
    bias: Option<Tensor<(usize,), f32, Cpu, T>>,
    g: ConvGeometry,
) -> Image4<T> {
    let (n, c, h, w) = *x.shape();
    assert_eq!(
        c, g.in_channels,
        "conv2d: input has {c} channels, layer expects {}",
        g.in_channels
    );
    assert_eq!(
        weight.shape().0,
        g.out_channels * g.patch(),
        "conv2d: weight size"
    );
    let (x, x_tape) = x.split_tape();
    let (weight, w_tape) = weight.split_tape();
    let mut tape = x_tape.merge(w_tape);
    let (bias, b_ghost) = match bias {
        Some(b) => {
            let (b, b_tape) = b.split_tape();
            tape = tape.merge(b_tape);
            let ghost = b.ghost();
            (Some(b.as_vec()), Some(ghost))
        }
        None => (None, None),
    };
    let xv = x.as_vec();
    let wv = weight.as_vec();
    let out = conv2d_forward(&xv, (n, h, w), &wv, bias.as_deref(), &g);
    let dev = x.device().clone();
    let out = dev.tensor_from_vec(out, (n, g.out_channels, g.out_size(h), g.out_size(w)));
    if T::OWNS_TAPE {
        let (xg, wg, og) = (x.ghost(), weight.ghost(), out.ghost());
        tape.add_backward_op(move |grads| {
            let gy = grads.get_or_alloc_mut(&og)?.clone();
            let (dx, dw, db) = conv2d_backward(&xv, (n, h, w), &wv, &gy, &g);
            add_into(grads.get_or_alloc_mut(&xg)?, &dx);
            add_into(grads.get_or_alloc_mut(&wg)?, &dw);
            if let Some(bg) = &b_ghost {
                add_into(grads.get_or_alloc_mut(bg)?, &db);
            }
            Ok(())
        });
    }
    out.put_tape(tape)
}

/// Running statistics of a batch-normalisation layer (not trained by SGD).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct BatchNormStats {
    #[serde(with = "crate::checkpoint::f32_bits")]
    pub mean: Vec<f32>,
    #[serde(with = "crate::checkpoint::f32_bits")]
    pub var: Vec<f32>,
}

impl BatchNormStats {
    pub fn new(channels: usize) -> Self {
        BatchNormStats {
            mean: vec![0.0; channels],
            var: vec![1.0; channels],
        }
    }
}

/// PyTorch's defaults.
pub const BN_MOMENTUM: f32 = 0.1;
pub const BN_EPS: f32 = 1e-5;

/// 2-D batch normalisation on the tape. Training: normalise with the batch's per-channel mean
/// and (biased) variance and update the running statistics with momentum 0.1 (unbiased
/// variance, as PyTorch); evaluation: normalise with the running statistics.
pub fn batch_norm2d<T: Tape<f32, Cpu>>(
    x: Image4<T>,
    gamma: Tensor<(usize,), f32, Cpu, T>,
    beta: Tensor<(usize,), f32, Cpu, T>,
    stats: &mut BatchNormStats,
    training: bool,
) -> Image4<T> {
    let (n, c, h, w) = *x.shape();
    let plane = h * w;
    let m = (n * plane) as f32;
    let (x, x_tape) = x.split_tape();
    let (gamma, g_tape) = gamma.split_tape();
    let (beta, b_tape) = beta.split_tape();
    let mut tape = x_tape.merge(g_tape).merge(b_tape);
    let xv = x.as_vec();
    let (gv, bv) = (gamma.as_vec(), beta.as_vec());
    let (mean, var): (Vec<f32>, Vec<f32>) = if training {
        // Per-image sums (f64), added in image order: deterministic whatever the threads.
        let sums: Vec<Vec<(f64, f64)>> = xv
            .par_chunks(c * plane)
            .map(|img| {
                img.chunks(plane)
                    .map(|p| {
                        p.iter().fold((0.0f64, 0.0f64), |(s, s2), &v| {
                            (s + v as f64, s2 + v as f64 * v as f64)
                        })
                    })
                    .collect()
            })
            .collect();
        (0..c)
            .map(|ch| {
                let (s, s2) = sums
                    .iter()
                    .fold((0.0, 0.0), |(a, b), img| (a + img[ch].0, b + img[ch].1));
                let mu = s / m as f64;
                (mu as f32, (s2 / m as f64 - mu * mu).max(0.0) as f32)
            })
            .unzip()
    } else {
        (stats.mean.clone(), stats.var.clone())
    };
    if training {
        for ch in 0..c {
            let unbiased = if m > 1.0 {
                var[ch] * m / (m - 1.0)
            } else {
                var[ch]
            };
            stats.mean[ch] = (1.0 - BN_MOMENTUM) * stats.mean[ch] + BN_MOMENTUM * mean[ch];
            stats.var[ch] = (1.0 - BN_MOMENTUM) * stats.var[ch] + BN_MOMENTUM * unbiased;
        }
    }
    let inv_std: Vec<f32> = var.iter().map(|v| 1.0 / (v + BN_EPS).sqrt()).collect();
    // Images are independent in the element-wise passes: parallel over the batch.
    let image = c * plane;
    let mut xhat = vec![0.0f32; xv.len()];
    let mut out = vec![0.0f32; xv.len()];
    xhat.par_chunks_mut(image)
        .zip(out.par_chunks_mut(image))
        .zip(xv.par_chunks(image))
        .for_each(|((xh, o), xi)| {
            for ch in 0..c {
                let r = ch * plane..(ch + 1) * plane;
                for ((xh, o), &v) in xh[r.clone()].iter_mut().zip(&mut o[r.clone()]).zip(&xi[r]) {
                    *xh = (v - mean[ch]) * inv_std[ch];
                    *o = gv[ch] * *xh + bv[ch];
                }
            }
        });
    let out = x.device().tensor_from_vec(out, (n, c, h, w));
    if T::OWNS_TAPE {
        let (xg, gg, bg, og) = (x.ghost(), gamma.ghost(), beta.ghost(), out.ghost());
        tape.add_backward_op(move |grads| {
            let dy = grads.get_or_alloc_mut(&og)?.clone();
            // Per-image partial sums, added in image order (deterministic), then the
            // element-wise pass in parallel over images.
            let partials: Vec<(Vec<f32>, Vec<f32>)> = dy
                .par_chunks(image)
                .zip(xhat.par_chunks(image))
                .map(|(d, xh)| {
                    let mut db = vec![0.0f32; c];
                    let mut dg = vec![0.0f32; c];
                    for ch in 0..c {
                        let r = ch * plane..(ch + 1) * plane;
                        for (&dv, &x) in d[r.clone()].iter().zip(&xh[r]) {
                            db[ch] += dv;
                            dg[ch] += dv * x;
                        }
                    }
                    (dg, db)
                })
                .collect();
            let mut dgamma = vec![0.0f32; c];
            let mut dbeta = vec![0.0f32; c];
            for (dg, db) in &partials {
                add_into(&mut dgamma, dg);
                add_into(&mut dbeta, db);
            }
            let mut dx = vec![0.0f32; dy.len()];
            dx.par_chunks_mut(image)
                .zip(dy.par_chunks(image))
                .zip(xhat.par_chunks(image))
                .for_each(|((dxi, d), xh)| {
                    for ch in 0..c {
                        let k = gv[ch] * inv_std[ch];
                        let r = ch * plane..(ch + 1) * plane;
                        for ((o, &dv), &x) in
                            dxi[r.clone()].iter_mut().zip(&d[r.clone()]).zip(&xh[r])
                        {
                            *o = if training {
                                k / m * (m * dv - dbeta[ch] - x * dgamma[ch])
                            } else {
                                k * dv
                            };
                        }
                    }
                });
            add_into(grads.get_or_alloc_mut(&xg)?, &dx);
            add_into(grads.get_or_alloc_mut(&gg)?, &dgamma);
            add_into(grads.get_or_alloc_mut(&bg)?, &dbeta);
            Ok(())
        });
    }
    out.put_tape(tape)
}

/// 2 × 2 max pooling with stride 2 (odd trailing rows/columns are dropped, as PyTorch).
pub fn max_pool2x2<T: Tape<f32, Cpu>>(x: Image4<T>) -> Image4<T> {
    let (n, c, h, w) = *x.shape();
    let (ho, wo) = (h / 2, w / 2);
    let (x, mut tape) = x.split_tape();
    let xv = x.as_vec();
    let mut out = vec![0.0f32; n * c * ho * wo];
    let mut argmax = vec![0usize; out.len()];
    for p in 0..n * c {
        for oy in 0..ho {
            for ox in 0..wo {
                let o = (p * ho + oy) * wo + ox;
                let first = (p * h + 2 * oy) * w + 2 * ox;
                let mut best = (xv[first], first);
                for (dy, dx) in [(0, 1), (1, 0), (1, 1)] {
                    let i = (p * h + 2 * oy + dy) * w + 2 * ox + dx;
                    if xv[i] > best.0 {
                        best = (xv[i], i);
                    }
                }
                (out[o], argmax[o]) = best;
            }
        }
    }
    let out = x.device().tensor_from_vec(out, (n, c, ho, wo));
    if T::OWNS_TAPE {
        let (xg, og) = (x.ghost(), out.ghost());
        tape.add_backward_op(move |grads| {
            let dy = grads.get_or_alloc_mut(&og)?.clone();
            let dx = grads.get_or_alloc_mut(&xg)?;
            for (o, &i) in argmax.iter().enumerate() {
                dx[i] += dy[o];
            }
            Ok(())
        });
    }
    out.put_tape(tape)
}

/// Mean over each channel's H × W plane: (N, C, H, W) → (N, C).
pub fn global_avg_pool<T: Tape<f32, Cpu>>(x: Image4<T>) -> Tensor<(usize, usize), f32, Cpu, T> {
    x.mean::<(usize, usize), Axes2<2, 3>>()
}

/// The CIFAR ResNet's parameter-free "option A" shortcut: keep every second row and column and
/// zero-pad the channels at the end, (N, Cin, H, W) → (N, Cout, ⌈H/2⌉, ⌈W/2⌉).
pub fn shortcut_a<T: Tape<f32, Cpu>>(x: Image4<T>, out_channels: usize) -> Image4<T> {
    let (n, c, h, w) = *x.shape();
    assert!(out_channels >= c);
    let (ho, wo) = (h.div_ceil(2), w.div_ceil(2));
    let (x, mut tape) = x.split_tape();
    let xv = x.as_vec();
    let mut out = vec![0.0f32; n * out_channels * ho * wo];
    let src =
        move |b: usize, ch: usize, oy: usize, ox: usize| ((b * c + ch) * h + 2 * oy) * w + 2 * ox;
    let dst = move |b: usize, ch: usize, oy: usize, ox: usize| {
        ((b * out_channels + ch) * ho + oy) * wo + ox
    };
    for b in 0..n {
        for ch in 0..c {
            for oy in 0..ho {
                for ox in 0..wo {
                    out[dst(b, ch, oy, ox)] = xv[src(b, ch, oy, ox)];
                }
            }
        }
    }
    let out = x.device().tensor_from_vec(out, (n, out_channels, ho, wo));
    if T::OWNS_TAPE {
        let (xg, og) = (x.ghost(), out.ghost());
        tape.add_backward_op(move |grads| {
            let dy = grads.get_or_alloc_mut(&og)?.clone();
            let dx = grads.get_or_alloc_mut(&xg)?;
            for b in 0..n {
                for ch in 0..c {
                    for oy in 0..ho {
                        for ox in 0..wo {
                            dx[src(b, ch, oy, ox)] += dy[dst(b, ch, oy, ox)];
                        }
                    }
                }
            }
            Ok(())
        });
    }
    out.put_tape(tape)
}
