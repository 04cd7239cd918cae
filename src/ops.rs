//! CPU kernels of the convolutional layers, forward and backward, on plain slices in N × C × H × W
//! layout: dfdx 0.13 has no convolution or pooling on stable Rust (DESIGN §6). Convolution is
//! im2col + the `gemm` crate; everything runs in parallel over the batch with rayon, and every
//! reduction over the batch adds fixed per-image (or per-group) partials in order, so results are
//! bit-identical whatever the number of threads. [`crate::convnet`] chains these kernels into a
//! network and puts the whole network on dfdx's tape as one op. Each kernel is checked against a
//! naive reference and finite differences in `tests/ops.rs`.

use rayon::prelude::*;

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
pub(crate) fn gemm(
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

impl ConvGeometry {
    /// Stride 1 with "same" padding: the output has the input's size, and each kernel tap's
    /// im2col row is the input plane shifted by a constant offset.
    fn is_same_stride1(&self) -> bool {
        self.stride == 1 && 2 * self.padding + 1 == self.kernel
    }
}

/// One im2col row of a same-size, stride-1 convolution: `out[y·w + x] = plane[(y+dy)·w + x+dx]`,
/// zero where that falls outside the plane. One contiguous copy, then the rows and columns that
/// wrapped around are zeroed.
fn shifted_plane(plane: &[f32], h: usize, w: usize, dy: isize, dx: isize, out: &mut [f32]) {
    let n = (h * w) as isize;
    let shift = dy * w as isize + dx;
    let (lo, hi) = ((-shift).max(0), (n - shift).min(n));
    if lo >= hi {
        out.fill(0.0);
        return;
    }
    let (lo, hi) = (lo as usize, hi as usize);
    out[..lo].fill(0.0);
    out[hi..].fill(0.0);
    let src = (lo as isize + shift) as usize;
    out[lo..hi].copy_from_slice(&plane[src..src + (hi - lo)]);
    // Rows whose source row is outside the plane.
    let first_row = (-dy).clamp(0, h as isize) as usize;
    let end_row = (h as isize - dy).clamp(0, h as isize) as usize;
    out[..first_row * w].fill(0.0);
    out[end_row * w..].fill(0.0);
    // Columns whose source column is outside the plane.
    let (c0, c1) = if dx < 0 {
        (0, (-dx as usize).min(w))
    } else {
        (w.saturating_sub(dx as usize), w)
    };
    if c0 < c1 {
        for row in out.chunks_mut(w) {
            row[c0..c1].fill(0.0);
        }
    }
}

/// Unfolds one image (C × H × W) into columns (C·k·k × Ho·Wo). Rows are filled a segment at a
/// time: zeros outside the image, a copy (stride 1) or a strided gather inside; a same-size
/// stride-1 convolution fills each row as one shifted plane.
fn im2col(x: &[f32], h: usize, w: usize, g: &ConvGeometry, col: &mut [f32]) {
    let (ho, wo) = (g.out_size(h), g.out_size(w));
    let (k, s, p) = (g.kernel, g.stride, g.padding);
    for ci in 0..g.in_channels {
        let plane = &x[ci * h * w..(ci + 1) * h * w];
        for ky in 0..k {
            for kx in 0..k {
                let row = (ci * k + ky) * k + kx;
                let out = &mut col[row * ho * wo..(row + 1) * ho * wo];
                if g.is_same_stride1() {
                    let (dy, dx) = (ky as isize - p as isize, kx as isize - p as isize);
                    shifted_plane(plane, h, w, dy, dx, out);
                    continue;
                }
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

/// Gradients of a convolution from the output gradient: (dx, dweight, dbias); dx only when
/// `need_dx` (the first layer's input is data and needs none).
pub fn conv2d_backward(
    x: &[f32],
    dims: (usize, usize, usize),
    weight: &[f32],
    grad_out: &[f32],
    g: &ConvGeometry,
    need_dx: bool,
) -> (Option<Vec<f32>>, Vec<f32>, Vec<f32>) {
    let (n, h, w) = dims;
    let (ho, wo) = (g.out_size(h), g.out_size(w));
    let (in_img, out_img) = (g.in_channels * h * w, g.out_channels * ho * wo);
    let mut dx = vec![0.0f32; if need_dx { n * in_img } else { 0 }];
    let wlen = g.out_channels * g.patch();
    let groups = n.div_ceil(GRAD_GROUP);
    // Partial weight gradients over fixed groups of images, summed in order afterwards: the
    // result is bit-identical whatever the number of threads (runs are reproducible).
    let mut dx_groups: Vec<&mut [f32]> = if need_dx {
        dx.chunks_mut(in_img * GRAD_GROUP).collect()
    } else {
        (0..groups).map(|_| <&mut [f32]>::default()).collect()
    };
    // A same-size stride-1 convolution's input gradient is the convolution of the output
    // gradient with the flipped, transposed kernel: an im2col gather and one product per image
    // instead of a product and a col2im scatter.
    let transposed = (need_dx && g.is_same_stride1()).then(|| {
        let k = g.kernel;
        let gt = ConvGeometry {
            in_channels: g.out_channels,
            out_channels: g.in_channels,
            ..*g
        };
        let mut wt = vec![0.0f32; wlen];
        for co in 0..g.out_channels {
            for ci in 0..g.in_channels {
                for ky in 0..k {
                    for kx in 0..k {
                        wt[((ci * g.out_channels + co) * k + k - 1 - ky) * k + k - 1 - kx] =
                            weight[((co * g.in_channels + ci) * k + ky) * k + kx];
                    }
                }
            }
        }
        (gt, wt)
    });
    let partials: Vec<(Vec<f32>, Vec<f32>)> = dx_groups
        .par_iter_mut()
        .enumerate()
        .map(|(group, dx_group)| {
            let mut dw = vec![0.0f32; wlen];
            let mut db = vec![0.0f32; g.out_channels];
            let mut col = vec![0.0f32; g.patch() * ho * wo];
            let mut col_t = match &transposed {
                Some((gt, _)) => vec![0.0f32; gt.patch() * h * w],
                None => Vec::new(),
            };
            let images = group * GRAD_GROUP..((group + 1) * GRAD_GROUP).min(n);
            for (i, b) in images.enumerate() {
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
                if !need_dx {
                    continue;
                }
                let dxb = &mut dx_group[i * in_img..(i + 1) * in_img];
                if let Some((gt, wt)) = &transposed {
                    // dX (Cin × H·W) = W' (Cin × Cout·k·k) · im2col(dY)
                    im2col(gy, ho, wo, gt, &mut col_t);
                    gemm(
                        g.in_channels,
                        h * w,
                        gt.patch(),
                        wt,
                        false,
                        &col_t,
                        false,
                        dxb,
                        false,
                    );
                } else {
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
    (need_dx.then_some(dx), dw, db)
}

/// Adds `src` into `dst` element-wise.
pub fn add_into(dst: &mut [f32], src: &[f32]) {
    dst.iter_mut().zip(src).for_each(|(d, s)| *d += s);
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

impl BatchNormStats {
    /// Momentum update from a batch's moments over `count` values per channel (the running
    /// variance takes the unbiased batch variance, as PyTorch).
    pub fn update(&mut self, mean: &[f32], var: &[f32], count: usize) {
        let m = count as f32;
        for ch in 0..mean.len() {
            let unbiased = if count > 1 {
                var[ch] * m / (m - 1.0)
            } else {
                var[ch]
            };
            self.mean[ch] = (1.0 - BN_MOMENTUM) * self.mean[ch] + BN_MOMENTUM * mean[ch];
            self.var[ch] = (1.0 - BN_MOMENTUM) * self.var[ch] + BN_MOMENTUM * unbiased;
        }
    }
}

/// Per-channel mean and biased variance of `y` (N × C × plane). Per-image sums in f64, added in
/// image order: deterministic whatever the threads.
pub fn batch_moments(y: &[f32], (n, c, plane): (usize, usize, usize)) -> (Vec<f32>, Vec<f32>) {
    let sums: Vec<Vec<(f64, f64)>> = y
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
    let m = (n * plane) as f64;
    (0..c)
        .map(|ch| {
            let (s, s2) = sums
                .iter()
                .fold((0.0, 0.0), |(a, b), img| (a + img[ch].0, b + img[ch].1));
            let mu = s / m;
            (mu as f32, (s2 / m - mu * mu).max(0.0) as f32)
        })
        .unzip()
}

/// 1 / √(var + ε) per channel.
pub fn inverse_std(var: &[f32]) -> Vec<f32> {
    var.iter().map(|v| 1.0 / (v + BN_EPS).sqrt()).collect()
}

/// Batch normalisation with its epilogue fused in one pass:
/// out = γ·(y − μ)·inv_std + β, plus `residual` when given, then ReLU when `relu`.
#[allow(clippy::too_many_arguments)]
pub fn batch_norm_forward(
    y: &[f32],
    (c, plane): (usize, usize),
    mean: &[f32],
    inv_std: &[f32],
    gamma: &[f32],
    beta: &[f32],
    residual: Option<&[f32]>,
    relu: bool,
) -> Vec<f32> {
    let image = c * plane;
    let scale: Vec<f32> = (0..c).map(|ch| gamma[ch] * inv_std[ch]).collect();
    let shift: Vec<f32> = (0..c).map(|ch| beta[ch] - mean[ch] * scale[ch]).collect();
    let mut out = vec![0.0f32; y.len()];
    out.par_chunks_mut(image)
        .zip(y.par_chunks(image))
        .enumerate()
        .for_each(|(b, (o, yi))| {
            for ch in 0..c {
                let r = ch * plane..(ch + 1) * plane;
                let (k, t) = (scale[ch], shift[ch]);
                let o = &mut o[r.clone()];
                for (o, &v) in o.iter_mut().zip(&yi[r.clone()]) {
                    *o = v * k + t;
                }
                if let Some(res) = residual {
                    let res = &res[b * image + r.start..b * image + r.end];
                    o.iter_mut().zip(res).for_each(|(o, s)| *o += s);
                }
                if relu {
                    o.iter_mut().for_each(|o| *o = o.max(0.0));
                }
            }
        });
    out
}

/// Gradients through batch normalisation from `d`, the gradient at its output (before any
/// epilogue: ReLU already applied by [`relu_backward`]): (dy, dγ, dβ). `batch_stats`: the
/// normalisation used this batch's moments (training), so they are differentiated too.
#[allow(clippy::too_many_arguments)]
pub fn batch_norm_backward(
    y: &[f32],
    (n, c, plane): (usize, usize, usize),
    mean: &[f32],
    inv_std: &[f32],
    gamma: &[f32],
    d: &[f32],
    batch_stats: bool,
) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    let image = c * plane;
    // Per-image partial sums of d and d·x̂, added in image order (deterministic).
    let partials: Vec<Vec<(f32, f32)>> = d
        .par_chunks(image)
        .zip(y.par_chunks(image))
        .map(|(di, yi)| {
            (0..c)
                .map(|ch| {
                    let r = ch * plane..(ch + 1) * plane;
                    let (mu, s) = (mean[ch], inv_std[ch]);
                    di[r.clone()]
                        .iter()
                        .zip(&yi[r])
                        .fold((0.0f32, 0.0f32), |(db, dg), (&dv, &v)| {
                            (db + dv, dg + dv * (v - mu) * s)
                        })
                })
                .collect()
        })
        .collect();
    let mut dbeta = vec![0.0f32; c];
    let mut dgamma = vec![0.0f32; c];
    for img in &partials {
        for ch in 0..c {
            dbeta[ch] += img[ch].0;
            dgamma[ch] += img[ch].1;
        }
    }
    let m = (n * plane) as f32;
    let mut dy = vec![0.0f32; d.len()];
    dy.par_chunks_mut(image)
        .zip(d.par_chunks(image))
        .zip(y.par_chunks(image))
        .for_each(|((o, di), yi)| {
            for ch in 0..c {
                let r = ch * plane..(ch + 1) * plane;
                let (mu, s) = (mean[ch], inv_std[ch]);
                let k = gamma[ch] * s;
                let o = o[r.clone()].iter_mut().zip(&di[r.clone()]).zip(&yi[r]);
                if batch_stats {
                    // k/m · (m·d − Σd − x̂·Σ(d·x̂))
                    let (sb, sg) = (dbeta[ch] / m, dgamma[ch] / m);
                    for ((o, &dv), &v) in o {
                        *o = k * (dv - sb - (v - mu) * s * sg);
                    }
                } else {
                    for ((o, &dv), _) in o {
                        *o = k * dv;
                    }
                }
            }
        });
    (dy, dgamma, dbeta)
}

/// Zeroes the gradient `d` wherever the ReLU's output `out` is not positive.
pub fn relu_backward(out: &[f32], d: &mut [f32]) {
    d.par_chunks_mut(1 << 14)
        .zip(out.par_chunks(1 << 14))
        .for_each(|(d, o)| {
            d.iter_mut()
                .zip(o)
                .for_each(|(d, &o)| *d = if o > 0.0 { *d } else { 0.0 })
        });
}

/// 2 × 2 max pooling with stride 2 of `planes` planes of h × w (odd trailing rows/columns are
/// dropped, as PyTorch): the pooled values and the input index of each maximum.
pub fn max_pool2x2_forward(
    x: &[f32],
    (planes, h, w): (usize, usize, usize),
) -> (Vec<f32>, Vec<u32>) {
    let (ho, wo) = (h / 2, w / 2);
    let mut out = vec![0.0f32; planes * ho * wo];
    let mut argmax = vec![0u32; out.len()];
    for p in 0..planes {
        for oy in 0..ho {
            for ox in 0..wo {
                let o = (p * ho + oy) * wo + ox;
                let first = (p * h + 2 * oy) * w + 2 * ox;
                let mut best = (x[first], first);
                for (dy, dx) in [(0, 1), (1, 0), (1, 1)] {
                    let i = (p * h + 2 * oy + dy) * w + 2 * ox + dx;
                    if x[i] > best.0 {
                        best = (x[i], i);
                    }
                }
                out[o] = best.0;
                argmax[o] = best.1 as u32;
            }
        }
    }
    (out, argmax)
}

/// Routes each pooled gradient to its maximum's place in an input of `input_len` values.
pub fn max_pool2x2_backward(argmax: &[u32], d: &[f32], input_len: usize) -> Vec<f32> {
    let mut dx = vec![0.0f32; input_len];
    for (&i, &g) in argmax.iter().zip(d) {
        dx[i as usize] += g;
    }
    dx
}

/// Mean over each channel's plane: (N, C, plane) → (N, C).
pub fn global_avg_pool_forward(x: &[f32], plane: usize) -> Vec<f32> {
    x.chunks(plane)
        .map(|p| p.iter().sum::<f32>() / plane as f32)
        .collect()
}

/// Spreads each (N, C) gradient evenly over its plane.
pub fn global_avg_pool_backward(d: &[f32], plane: usize) -> Vec<f32> {
    d.iter()
        .flat_map(|&g| std::iter::repeat_n(g / plane as f32, plane))
        .collect()
}

/// The CIFAR ResNet's parameter-free "option A" shortcut: keep every second row and column and
/// zero-pad the channels at the end, (N, Cin, H, W) → (N, Cout, ⌈H/2⌉, ⌈W/2⌉).
pub fn shortcut_a_forward(
    x: &[f32],
    (n, c, h, w): (usize, usize, usize, usize),
    out_channels: usize,
) -> Vec<f32> {
    assert!(out_channels >= c);
    let (ho, wo) = (h.div_ceil(2), w.div_ceil(2));
    let mut out = vec![0.0f32; n * out_channels * ho * wo];
    for b in 0..n {
        for ch in 0..c {
            let src = &x[(b * c + ch) * h * w..(b * c + ch + 1) * h * w];
            let dst = &mut out[(b * out_channels + ch) * ho * wo..][..ho * wo];
            for oy in 0..ho {
                for ox in 0..wo {
                    dst[oy * wo + ox] = src[2 * oy * w + 2 * ox];
                }
            }
        }
    }
    out
}

/// The option-A shortcut's input gradient: the kept pixels take their output's gradient.
pub fn shortcut_a_backward(
    d: &[f32],
    (n, c, h, w): (usize, usize, usize, usize),
    out_channels: usize,
) -> Vec<f32> {
    let (ho, wo) = (h.div_ceil(2), w.div_ceil(2));
    let mut dx = vec![0.0f32; n * c * h * w];
    for b in 0..n {
        for ch in 0..c {
            let dst = &mut dx[(b * c + ch) * h * w..(b * c + ch + 1) * h * w];
            let src = &d[(b * out_channels + ch) * ho * wo..][..ho * wo];
            for oy in 0..ho {
                for ox in 0..wo {
                    dst[2 * oy * w + 2 * ox] = src[oy * wo + ox];
                }
            }
        }
    }
    dx
}
