//! CPU kernels of the convolutional layers, forward and backward, on plain slices in N × H × W × C
//! layout (channels innermost): dfdx 0.13 has no convolution or pooling on stable Rust (`docs/dependencies.md`).
//! A convolution gathers each output pixel's window into a patch row and multiplies the patches
//! by the weight matrix ([`super::products::gemm`]); in this layout the patch rows are contiguous
//! copies and every product streams its operands without repacking (about twice the speed of
//! N × C × H × W im2col here). Convolution and batch norm run in parallel over the batch with
//! rayon (pooling and the shortcut are cheap and serial), and every reduction over the batch adds
//! fixed per-image (or per-group) partials in order, so results are bit-identical whatever the
//! number of threads. [`super::native`] chains these kernels into a network and puts the whole
//! network on dfdx's tape as one op. Each kernel is checked against a naive reference and finite
//! differences in `tests/ops.rs`.

use rayon::prelude::*;

use super::products::gemm;
use crate::util::tensor::transpose_add;

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
    /// Stride 1 with "same" padding: the output has the input's size.
    fn is_same_stride1(&self) -> bool {
        self.stride == 1 && 2 * self.padding + 1 == self.kernel
    }
}

/// Shape of a batch of feature maps, stored N × H × W × C (channels innermost).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Dims {
    pub n: usize,
    pub h: usize,
    pub w: usize,
    pub c: usize,
}

impl Dims {
    pub fn plane(&self) -> usize {
        self.h * self.w
    }
    pub fn image(&self) -> usize {
        self.h * self.w * self.c
    }
    pub fn len(&self) -> usize {
        self.n * self.image()
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// The output of convolution `g` applied to maps of this shape.
    pub fn conv(&self, g: &ConvGeometry) -> Dims {
        Dims {
            n: self.n,
            h: g.out_size(self.h),
            w: g.out_size(self.w),
            c: g.out_channels,
        }
    }
}

/// Reorders N × C × H × W values (the datasets' layout) to N × H × W × C.
pub fn nchw_to_nhwc(x: &[f32], d: Dims) -> Vec<f32> {
    let mut out = vec![0.0f32; x.len()];
    out.par_chunks_mut(d.image())
        .zip(x.par_chunks(d.image()))
        .for_each(|(o, img)| {
            for (ch, plane) in img.chunks(d.plane()).enumerate() {
                for (p, &v) in plane.iter().enumerate() {
                    o[p * d.c + ch] = v;
                }
            }
        });
    out
}

/// Reorders N × H × W × C values to N × C × H × W.
pub fn nhwc_to_nchw(x: &[f32], d: Dims) -> Vec<f32> {
    let mut out = vec![0.0f32; x.len()];
    for (o, img) in out.chunks_mut(d.image()).zip(x.chunks(d.image())) {
        for (p, px) in img.chunks(d.c).enumerate() {
            for (ch, &v) in px.iter().enumerate() {
                o[ch * d.plane() + p] = v;
            }
        }
    }
    out
}

/// Output pixels per matrix product: small maps are batched several images at a time so that
/// each product has enough rows. Depends only on the map size, never on the thread count, so
/// the sums it groups (weight gradients) do not change with the number of threads.
const ROWS_PER_PRODUCT: usize = 1024;

fn images_per_product(out_plane: usize) -> usize {
    (ROWS_PER_PRODUCT / out_plane.max(1)).max(1)
}

/// Moves weights (or their gradient) between the (Cout, Cin, k, k) layout of the parameters and
/// the (k·k·Cin) × Cout matrix of the NHWC product, rows ordered (ky, kx, ci) like the patches of
/// [`im2row`]; `to_matrix` picks the direction.
fn reorder_weights(src: &[f32], g: &ConvGeometry, to_matrix: bool) -> Vec<f32> {
    let (k, cin, cout) = (g.kernel, g.in_channels, g.out_channels);
    let mut out = vec![0.0f32; src.len()];
    for co in 0..cout {
        for ci in 0..cin {
            for t in 0..k * k {
                let (param, matrix) = ((co * cin + ci) * k * k + t, (t * cin + ci) * cout + co);
                if to_matrix {
                    out[matrix] = src[param];
                } else {
                    out[param] = src[matrix];
                }
            }
        }
    }
    out
}

/// For a same-size stride-1 convolution, the input gradient is the convolution of the output
/// gradient with the flipped kernel, channels swapped. Moves weights (or their gradient) between
/// the parameters' (Cout, Cin, k, k) layout and that kernel's (k·k·Cout) × Cin matrix, rows
/// ordered (flipped tap, co) like the patches of the output gradient; `to_matrix` picks the
/// direction.
fn reorder_flipped(src: &[f32], g: &ConvGeometry, to_matrix: bool) -> Vec<f32> {
    let (k, cin, cout) = (g.kernel, g.in_channels, g.out_channels);
    let mut out = vec![0.0f32; src.len()];
    for co in 0..cout {
        for ci in 0..cin {
            for ky in 0..k {
                for kx in 0..k {
                    let t = (k - 1 - ky) * k + (k - 1 - kx);
                    let param = ((co * cin + ci) * k + ky) * k + kx;
                    let matrix = (t * cout + co) * cin + ci;
                    if to_matrix {
                        out[matrix] = src[param];
                    } else {
                        out[param] = src[matrix];
                    }
                }
            }
        }
    }
    out
}

/// Unfolds one image (H × W × C) into patches: one row of k·k·C values per output pixel, taps
/// in (ky, kx) order, each tap the C channels of one input pixel (zeros in the padding). The k
/// taps of one kernel row are adjacent in the input row too: inside the image they are a single
/// copy of k·C values. Every value of `out` is written.
fn im2row(x: &[f32], h: usize, w: usize, c: usize, g: &ConvGeometry, out: &mut [f32]) {
    let (ho, wo) = (g.out_size(h), g.out_size(w));
    let (k, s, p) = (g.kernel, g.stride, g.padding);
    let row_len = k * k * c;
    for oy in 0..ho {
        for ox in 0..wo {
            let row = &mut out[(oy * wo + ox) * row_len..][..row_len];
            let ix0 = (ox * s) as isize - p as isize;
            let inside = ix0 >= 0 && ix0 as usize + k <= w;
            for ky in 0..k {
                let iy = (oy * s + ky) as isize - p as isize;
                let taps = &mut row[ky * k * c..(ky + 1) * k * c];
                if iy < 0 || iy >= h as isize {
                    taps.fill(0.0);
                    continue;
                }
                let src_row = &x[iy as usize * w * c..(iy as usize + 1) * w * c];
                if inside {
                    copy_short(taps, &src_row[ix0 as usize * c..][..k * c]);
                    continue;
                }
                for kx in 0..k {
                    let ix = (ox * s + kx) as isize - p as isize;
                    let tap = &mut taps[kx * c..(kx + 1) * c];
                    if ix < 0 || ix >= w as isize {
                        tap.fill(0.0);
                    } else {
                        copy_short(tap, &src_row[ix as usize * c..(ix as usize + 1) * c]);
                    }
                }
            }
        }
    }
}

/// Copies a few dozen values in blocks of 8: inlined vector moves instead of a `memcpy` call,
/// which costs more than the copy at this size (patch rows are copied millions of times a step).
#[inline(always)]
fn copy_short(dst: &mut [f32], src: &[f32]) {
    let mut d = dst.chunks_exact_mut(8);
    let mut s = src.chunks_exact(8);
    for (d, s) in d.by_ref().zip(s.by_ref()) {
        let block: &[f32; 8] = s.try_into().expect("8 values");
        d.copy_from_slice(block);
    }
    for (d, s) in d.into_remainder().iter_mut().zip(s.remainder()) {
        *d = *s;
    }
}

/// Adds patch rows back into an image (the adjoint of [`im2row`]).
fn row2im(rows: &[f32], h: usize, w: usize, c: usize, g: &ConvGeometry, x: &mut [f32]) {
    let (ho, wo) = (g.out_size(h), g.out_size(w));
    let (k, s, p) = (g.kernel, g.stride, g.padding);
    let row_len = k * k * c;
    for oy in 0..ho {
        for ox in 0..wo {
            let row = &rows[(oy * wo + ox) * row_len..][..row_len];
            for ky in 0..k {
                let iy = (oy * s + ky) as isize - p as isize;
                if iy < 0 || iy >= h as isize {
                    continue;
                }
                for kx in 0..k {
                    let ix = (ox * s + kx) as isize - p as isize;
                    if ix < 0 || ix >= w as isize {
                        continue;
                    }
                    let dst = &mut x[(iy as usize * w + ix as usize) * c..][..c];
                    add_into(dst, &row[(ky * k + kx) * c..][..c]);
                }
            }
        }
    }
}

thread_local! {
    /// Patch rows of the product a thread is working on, reused between calls: every value is
    /// written before it is read, so the buffer is never cleared.
    static PATCHES: std::cell::RefCell<Vec<f32>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Runs `f` on this thread's patch buffer, grown to at least `len` values.
fn with_patches<R>(len: usize, f: impl FnOnce(&mut [f32]) -> R) -> R {
    PATCHES.with(|cell| {
        let mut buf = cell.borrow_mut();
        if buf.len() < len {
            buf.resize(len, 0.0);
        }
        f(&mut buf[..len])
    })
}

/// Forward convolution of a batch in NHWC: (N, H, W, Cin) → (N, Ho, Wo, Cout); `weight` is
/// (Cout, Cin, k, k) flattened.
pub fn conv2d_forward(
    x: &[f32],
    d: Dims,
    weight: &[f32],
    bias: Option<&[f32]>,
    g: &ConvGeometry,
) -> Vec<f32> {
    assert_eq!(d.c, g.in_channels, "conv2d: input channels");
    let od = d.conv(g);
    let k = g.patch();
    let wm = reorder_weights(weight, g, true);
    let group = images_per_product(od.plane());
    let mut out = vec![0.0f32; od.len()];
    out.par_chunks_mut(group * od.image())
        .zip(x.par_chunks(group * d.image()))
        .for_each(|(y, xs)| {
            let images = xs.len() / d.image();
            let rows = images * od.plane();
            with_patches(rows * k, |patches| {
                for (img, pt) in xs.chunks(d.image()).zip(patches.chunks_mut(od.plane() * k)) {
                    im2row(img, d.h, d.w, d.c, g, pt);
                }
                gemm(rows, od.c, k, patches, false, &wm, false, y, false);
            });
            if let Some(bias) = bias {
                for px in y.chunks_mut(od.c) {
                    add_into(px, bias);
                }
            }
        });
    out
}

/// Gradients of a convolution's input and weights from the output gradient (NHWC): (dx,
/// dweight); dx only when `need_dx` (the first layer's input is data and needs none). The bias
/// gradient, when there is a bias, is [`conv2d_bias_grad`].
pub fn conv2d_backward(
    x: &[f32],
    d: Dims,
    weight: &[f32],
    grad_out: &[f32],
    g: &ConvGeometry,
    need_dx: bool,
) -> (Option<Vec<f32>>, Vec<f32>) {
    let od = d.conv(g);
    let k = g.patch();
    let group = images_per_product(od.plane());
    // Same-size stride 1 with dX wanted: both gradients come from the patches of dY. dX is the
    // convolution of dY with the flipped kernel (dpatches · flipped), and the weight gradient,
    // in that kernel's layout, is dpatchesᵀ · X: one gather instead of two. Otherwise the patches
    // of X give dW = patchesᵀ · dY, and dX (when wanted) = dY · Wᵀ added back into the image.
    let flipped = (need_dx && g.is_same_stride1()).then(|| reorder_flipped(weight, g, true));
    let wm = (need_dx && flipped.is_none()).then(|| reorder_weights(weight, g, true));
    let mut dx = vec![0.0f32; if need_dx { d.len() } else { 0 }];
    let groups = d.n.div_ceil(group);
    let mut dx_groups: Vec<&mut [f32]> = if need_dx {
        dx.chunks_mut(group * d.image()).collect()
    } else {
        (0..groups).map(|_| <&mut [f32]>::default()).collect()
    };
    // Partial weight gradients per group of images, summed in group order afterwards:
    // bit-identical whatever the number of threads.
    let partials: Vec<Vec<f32>> = dx_groups
        .par_iter_mut()
        .enumerate()
        .map(|(gi, dx_group)| {
            let first = gi * group;
            let images = group.min(d.n - first);
            let xs = &x[first * d.image()..(first + images) * d.image()];
            let dy = &grad_out[first * od.image()..(first + images) * od.image()];
            let mut dwm = vec![0.0f32; g.out_channels * k];
            let shapes = (d, od, images);
            match &flipped {
                Some(flipped) => backward_flipped(xs, dy, flipped, g, shapes, &mut dwm, dx_group),
                None => backward_patches(xs, dy, wm.as_deref(), g, shapes, &mut dwm, dx_group),
            }
            dwm
        })
        .collect();
    // The partials are transposed (see the two functions below): summed, then turned back.
    let mut dwm_transposed = vec![0.0f32; g.out_channels * k];
    for pw in &partials {
        add_into(&mut dwm_transposed, pw);
    }
    let (rows, cols) = if flipped.is_some() {
        (g.in_channels, g.kernel * g.kernel * g.out_channels)
    } else {
        (g.out_channels, k)
    };
    let mut dwm = vec![0.0f32; dwm_transposed.len()];
    transpose_add(&dwm_transposed, &mut dwm, rows, cols);
    let dw = if flipped.is_some() {
        reorder_flipped(&dwm, g, false)
    } else {
        reorder_weights(&dwm, g, false)
    };
    (need_dx.then_some(dx), dw)
}

/// One group of images of a same-size stride-1 convolution's backward pass, from the patches of
/// dY alone: dW in the flipped kernel's layout, computed transposed (Cin × k·k·Cout = Xᵀ ·
/// dpatches: the gemm crate runs its vector kernel along the output's rows, here the long
/// k·k·Cout side instead of 16 to 64 channels), and dX (rows × Cin) = dpatches · flipped.
fn backward_flipped(
    xs: &[f32],
    dy: &[f32],
    flipped: &[f32],
    g: &ConvGeometry,
    (d, od, images): (Dims, Dims, usize),
    dwm: &mut [f32],
    dx: &mut [f32],
) {
    let gt = ConvGeometry {
        in_channels: g.out_channels,
        out_channels: g.in_channels,
        ..*g
    };
    let kt = gt.patch();
    let rows = images * od.plane();
    with_patches(rows * kt, |dpatches| {
        for (img, pt) in dy
            .chunks(od.image())
            .zip(dpatches.chunks_mut(d.plane() * kt))
        {
            im2row(img, od.h, od.w, od.c, &gt, pt);
        }
        gemm(d.c, kt, rows, xs, true, dpatches, false, dwm, false);
        gemm(rows, d.c, kt, dpatches, false, flipped, false, dx, false);
    });
}

/// One group of images of any other convolution's backward pass, from the patches of X: dW
/// computed transposed (Cout × K = dYᵀ · patches, the long side K along the gemm crate's vector
/// kernel), and, when `wm` (the weight matrix) is given, dX = (dY · Wᵀ) folded back into images.
fn backward_patches(
    xs: &[f32],
    dy: &[f32],
    wm: Option<&[f32]>,
    g: &ConvGeometry,
    (d, od, images): (Dims, Dims, usize),
    dwm: &mut [f32],
    dx: &mut [f32],
) {
    let k = g.patch();
    let rows = images * od.plane();
    with_patches(rows * k, |patches| {
        for (img, pt) in xs.chunks(d.image()).zip(patches.chunks_mut(od.plane() * k)) {
            im2row(img, d.h, d.w, d.c, g, pt);
        }
        gemm(
            g.out_channels,
            k,
            rows,
            dy,
            true,
            patches,
            false,
            dwm,
            false,
        );
        if let Some(wm) = wm {
            gemm(rows, k, od.c, dy, false, wm, true, patches, false);
            for (pt, dxi) in patches.chunks(od.plane() * k).zip(dx.chunks_mut(d.image())) {
                row2im(pt, d.h, d.w, d.c, g, dxi);
            }
        }
    });
}

/// The bias gradient of a convolution: the output gradient (NHWC) summed per channel.
pub fn conv2d_bias_grad(grad_out: &[f32], channels: usize) -> Vec<f32> {
    let mut db = vec![0.0f32; channels];
    for px in grad_out.chunks(channels) {
        add_into(&mut db, px);
    }
    db
}

/// Adds `src` into `dst` element-wise.
pub fn add_into(dst: &mut [f32], src: &[f32]) {
    dst.iter_mut().zip(src).for_each(|(d, s)| *d += s);
}

/// Running statistics of a batch-normalisation layer (not trained by SGD).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct BatchNormStats {
    #[serde(with = "crate::util::bits")]
    pub mean: Vec<f32>,
    #[serde(with = "crate::util::bits")]
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

/// Per-channel mean and biased variance of `y` (NHWC). Per-image sums in f64, added in image
/// order: deterministic whatever the threads.
pub fn batch_moments(y: &[f32], d: Dims) -> (Vec<f32>, Vec<f32>) {
    let sums: Vec<(Vec<f64>, Vec<f64>)> = y
        .par_chunks(d.image())
        .map(|img| {
            let (mut s, mut s2) = (vec![0.0f64; d.c], vec![0.0f64; d.c]);
            for px in img.chunks(d.c) {
                for ((s, s2), &v) in s.iter_mut().zip(s2.iter_mut()).zip(px) {
                    *s += v as f64;
                    *s2 += v as f64 * v as f64;
                }
            }
            (s, s2)
        })
        .collect();
    let m = (d.n * d.plane()) as f64;
    (0..d.c)
        .map(|ch| {
            let (s, s2) = sums
                .iter()
                .fold((0.0, 0.0), |(a, b), img| (a + img.0[ch], b + img.1[ch]));
            let mu = s / m;
            (mu as f32, (s2 / m - mu * mu).max(0.0) as f32)
        })
        .unzip()
}

/// 1 / √(var + ε) per channel.
pub fn inverse_std(var: &[f32]) -> Vec<f32> {
    var.iter().map(|v| 1.0 / (v + BN_EPS).sqrt()).collect()
}

/// Batch normalisation (NHWC) with its epilogue fused in one pass:
/// out = γ·(y − μ)·inv_std + β, plus `residual` when given, then ReLU when `relu`.
#[allow(clippy::too_many_arguments)]
pub fn batch_norm_forward(
    y: &[f32],
    channels: usize,
    mean: &[f32],
    inv_std: &[f32],
    gamma: &[f32],
    beta: &[f32],
    residual: Option<&[f32]>,
    relu: bool,
) -> Vec<f32> {
    let c = channels;
    let scale: Vec<f32> = (0..c).map(|ch| gamma[ch] * inv_std[ch]).collect();
    let shift: Vec<f32> = (0..c).map(|ch| beta[ch] - mean[ch] * scale[ch]).collect();
    let chunk = c * 256;
    let mut out = vec![0.0f32; y.len()];
    out.par_chunks_mut(chunk)
        .zip(y.par_chunks(chunk))
        .enumerate()
        .for_each(|(i, (o, yi))| {
            let res = residual.map(|r| &r[i * chunk..i * chunk + yi.len()]);
            for (j, (o, yp)) in o.chunks_mut(c).zip(yi.chunks(c)).enumerate() {
                for ((o, &v), (&k, &t)) in o.iter_mut().zip(yp).zip(scale.iter().zip(&shift)) {
                    *o = v * k + t;
                }
                if let Some(res) = res {
                    add_into(o, &res[j * c..(j + 1) * c]);
                }
                if relu {
                    o.iter_mut().for_each(|o| *o = o.max(0.0));
                }
            }
        });
    out
}

/// Gradients through batch normalisation (NHWC) from `d`, the gradient at its output (before
/// any epilogue: ReLU already applied by [`relu_backward`]): (dy, dγ, dβ). `batch_stats`: the
/// normalisation used this batch's moments (training), so they are differentiated too.
#[allow(clippy::too_many_arguments)]
pub fn batch_norm_backward(
    y: &[f32],
    dims: Dims,
    mean: &[f32],
    inv_std: &[f32],
    gamma: &[f32],
    d: &[f32],
    batch_stats: bool,
) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    let c = dims.c;
    // Per-image partial sums of d and d·x̂, added in image order (deterministic).
    let partials: Vec<(Vec<f32>, Vec<f32>)> = d
        .par_chunks(dims.image())
        .zip(y.par_chunks(dims.image()))
        .map(|(di, yi)| {
            let (mut db, mut dg) = (vec![0.0f32; c], vec![0.0f32; c]);
            for (dp, yp) in di.chunks_exact(c).zip(yi.chunks_exact(c)) {
                let sums = db.iter_mut().zip(dg.iter_mut());
                let values = dp.iter().zip(yp).zip(mean.iter().zip(inv_std));
                for ((db, dg), ((&dv, &v), (&mu, &s))) in sums.zip(values) {
                    *db += dv;
                    *dg += dv * (v - mu) * s;
                }
            }
            (db, dg)
        })
        .collect();
    let mut dbeta = vec![0.0f32; c];
    let mut dgamma = vec![0.0f32; c];
    for (db, dg) in &partials {
        add_into(&mut dbeta, db);
        add_into(&mut dgamma, dg);
    }
    // dy = k · (d − Σd/m − x̂ · Σ(d·x̂)/m) with k = γ·inv_std and x̂ = (y − μ)·inv_std, written
    // as a·d + b·(y − μ) + e per channel; with running statistics the sums drop out (b = e = 0).
    let m = (dims.n * dims.plane()) as f32;
    let mut a = vec![0.0f32; c];
    let mut b = vec![0.0f32; c];
    let mut e = vec![0.0f32; c];
    for ch in 0..c {
        let k = gamma[ch] * inv_std[ch];
        a[ch] = k;
        if batch_stats {
            b[ch] = -k * inv_std[ch] * dgamma[ch] / m;
            e[ch] = -k * dbeta[ch] / m;
        }
    }
    let chunk = c * 256;
    let mut dy = vec![0.0f32; d.len()];
    dy.par_chunks_mut(chunk)
        .zip(d.par_chunks(chunk))
        .zip(y.par_chunks(chunk))
        .for_each(|((o, di), yi)| {
            for ((o, dp), yp) in o
                .chunks_exact_mut(c)
                .zip(di.chunks_exact(c))
                .zip(yi.chunks_exact(c))
            {
                let coef = a.iter().zip(&b).zip(&e).zip(mean);
                for ((o, (&dv, &v)), (((&a, &b), &e), &mu)) in
                    o.iter_mut().zip(dp.iter().zip(yp)).zip(coef)
                {
                    *o = a * dv + b * (v - mu) + e;
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

/// 2 × 2 max pooling with stride 2 (NHWC; odd trailing rows/columns are dropped, as PyTorch):
/// the pooled values and the input index of each maximum.
pub fn max_pool2x2_forward(x: &[f32], d: Dims) -> (Vec<f32>, Vec<u32>) {
    let (ho, wo, c) = (d.h / 2, d.w / 2, d.c);
    let mut out = vec![0.0f32; d.n * ho * wo * c];
    let mut argmax = vec![0u32; out.len()];
    for b in 0..d.n {
        for oy in 0..ho {
            for ox in 0..wo {
                for ch in 0..c {
                    let at = |dy: usize, dx: usize| {
                        ((b * d.h + 2 * oy + dy) * d.w + 2 * ox + dx) * c + ch
                    };
                    let mut best = (x[at(0, 0)], at(0, 0));
                    for (dy, dx) in [(0, 1), (1, 0), (1, 1)] {
                        let i = at(dy, dx);
                        if x[i] > best.0 {
                            best = (x[i], i);
                        }
                    }
                    let o = ((b * ho + oy) * wo + ox) * c + ch;
                    out[o] = best.0;
                    argmax[o] = best.1 as u32;
                }
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

/// Mean over each image's pixels, per channel: (N, H, W, C) → (N, C).
pub fn global_avg_pool_forward(x: &[f32], d: Dims) -> Vec<f32> {
    let mut out = vec![0.0f32; d.n * d.c];
    for (o, img) in out.chunks_mut(d.c).zip(x.chunks(d.image())) {
        for px in img.chunks(d.c) {
            add_into(o, px);
        }
        o.iter_mut().for_each(|v| *v /= d.plane() as f32);
    }
    out
}

/// Spreads each (N, C) gradient evenly over the image's pixels.
pub fn global_avg_pool_backward(g: &[f32], d: Dims) -> Vec<f32> {
    let mut dx = vec![0.0f32; d.len()];
    for (img, gi) in dx.chunks_mut(d.image()).zip(g.chunks(d.c)) {
        for px in img.chunks_mut(d.c) {
            for (v, &gv) in px.iter_mut().zip(gi) {
                *v = gv / d.plane() as f32;
            }
        }
    }
    dx
}

/// The CIFAR ResNet's parameter-free "option A" shortcut (NHWC): keep every second row and
/// column and zero-pad the channels at the end, (N, H, W, Cin) → (N, ⌈H/2⌉, ⌈W/2⌉, Cout).
pub fn shortcut_a_forward(x: &[f32], d: Dims, out_channels: usize) -> Vec<f32> {
    assert!(out_channels >= d.c);
    let (ho, wo) = (d.h.div_ceil(2), d.w.div_ceil(2));
    let mut out = vec![0.0f32; d.n * ho * wo * out_channels];
    for b in 0..d.n {
        for oy in 0..ho {
            for ox in 0..wo {
                let src = ((b * d.h + 2 * oy) * d.w + 2 * ox) * d.c;
                let dst = ((b * ho + oy) * wo + ox) * out_channels;
                out[dst..dst + d.c].copy_from_slice(&x[src..src + d.c]);
            }
        }
    }
    out
}

/// The option-A shortcut's input gradient: the kept pixels take their output's gradient.
pub fn shortcut_a_backward(g: &[f32], d: Dims, out_channels: usize) -> Vec<f32> {
    let (ho, wo) = (d.h.div_ceil(2), d.w.div_ceil(2));
    let mut dx = vec![0.0f32; d.len()];
    for b in 0..d.n {
        for oy in 0..ho {
            for ox in 0..wo {
                let dst = ((b * d.h + 2 * oy) * d.w + 2 * ox) * d.c;
                let src = ((b * ho + oy) * wo + ox) * out_channels;
                dx[dst..dst + d.c].copy_from_slice(&g[src..src + d.c]);
            }
        }
    }
    dx
}
