//! Direct kernels for a same-size stride-1 convolution on a [`super::kernels`] frame, on
//! AVX-512 or AVX2, where the `gemm` crate's kernels fit the shapes badly. The kernels are
//! written once over a [`Vector`] (512 or 256 bits) and compiled for each level.
//!
//! The convolution (forward, and the input gradient, which is the convolution of dY with the
//! flipped kernel) is, per kernel row, a product of a strided view of the frame (pixels ×
//! k·cin) by the row's weights (k·cin × cout). With cout = 16 or 32 the gemm crate's kernels
//! hold one or two vectors of outputs against six positions (or, with pixel pairs, pay 4/3
//! the multiplies), and they compute the frame's zero positions too (27 % of an 8 × 8 map).
//! [`convolve`] keeps a block of pixels of one image row × all cout outputs in registers (16
//! vectors on AVX-512, 8 on AVX2), loads each weight vector once per block, broadcasts each
//! input straight from the frame, never visits the zero positions, and writes the outputs
//! straight to their image pixels (no copy out of the frame). Each output adds, per kernel
//! row, its k·cin products in tap order into a sum that starts at zero, and the kernel rows'
//! sums in row order: the gemm crate's order, so the same bits as the products it replaced.
//!
//! [`weight_gradient`] sums X[q][ci] · dY-patch[q][column] over the image pixels q in order,
//! a block of input channels × columns in registers (the gemm crate packed both long
//! operands and summed the zero positions too). Its sums run in pixel order, not the gemm
//! crate's blocks: the weight gradient changed in its last bits when it came in.
//!
//! ResNet layers (`cargo bench --bench conv_layers`), B = 128, 2 threads, forward / backward ms,
//! gemm crate → direct. AVX-512: 16 channels at 32 × 32 1.96 / 3.45 → 1.36 / 2.62, 32 at 16 × 16
//! 1.38 / 2.81 → 1.17 / 2.35, 64 at 8 × 8 1.55 / 3.37 → 1.21 / 2.36. AVX2: 16 channels 2.57 / 5.49
//! → 2.47 / 5.07, 32 channels 2.53 / 5.42 → 2.39–2.46 / 5.28–5.37 (64 channels run on patches
//! there).

#[cfg(target_arch = "x86_64")]
use std::arch::x86_64::*;

use std::mem::MaybeUninit;

use crate::util::simd::f32_lanes;

/// Whether [`convolve`] takes a convolution with `cout` output channels at the SIMD level in
/// use.
pub(crate) fn handles(cout: usize) -> bool {
    // On AVX2, 64 channels are 8 vectors: 8 loads per 8 multiplies, slower than the gemm
    // crate's kernels (forward 2.84 → 3.73 ms; such layers of the ResNets run on patches).
    cfg!(target_arch = "x86_64")
        && match f32_lanes() {
            16 => matches!(cout, 16 | 32 | 64),
            8 => matches!(cout, 16 | 32),
            _ => false,
        }
}

/// Where a group of images lies in a frame: `images` images of `h` × `w` pixels, each row
/// followed by `p` zero pixels and each image by `p` zero rows, the first image's first pixel
/// at position 0; the patches of the pixel at position q and kernel row ky (of k = 2p + 1)
/// start at frame pixel q + ky·(w + p).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Framing {
    pub(crate) images: usize,
    pub(crate) h: usize,
    pub(crate) w: usize,
    pub(crate) p: usize,
}

/// out (images × h × w × cout, every value written) = the convolution of `framed` (frame
/// pixels × cin, laid out as `framing` says) with `wm` ((k·k·cin) × cout, rows ordered (ky,
/// kx, ci)). `framed` must hold every pixel the last image pixel reads. Call only when
/// [`handles`] says so.
pub(crate) fn convolve(
    framed: &[f32],
    framing: Framing,
    (cin, cout): (usize, usize),
    wm: &[f32],
    out: &mut [MaybeUninit<f32>],
) {
    assert!(handles(cout), "direct convolution: {cout} channels");
    let Framing { images, h, w, p } = framing;
    if images * h * w == 0 {
        return;
    }
    let (k, pitch) = (2 * p + 1, w + p);
    let taps = k * cin;
    assert_eq!(wm.len(), k * taps * cout, "direct convolution: weights");
    let last = ((images - 1) * (h + p) + h - 1) * pitch + w - 1;
    assert!(
        (last + (k - 1) * pitch) * cin + taps <= framed.len(),
        "direct convolution: frame"
    );
    // Exactly the pixels written: callers take every value as written.
    assert!(
        out.len() == images * h * w * cout,
        "direct convolution: output"
    );
    let shape = Shape { cin, k, pitch };
    #[cfg(target_arch = "x86_64")]
    // SAFETY: `handles` checked the level's features at run time; the asserts above bound
    // every access.
    unsafe {
        if f32_lanes() == 16 {
            convolve_avx512(framed, framing, shape, cout, wm, out)
        } else {
            convolve_avx2(framed, framing, shape, cout, wm, out)
        }
    }
}

/// [`convolve`] on AVX-512: 16 sums in registers, as many pixels as fit a row of the ResNets'
/// 32 × 32, 16 × 16 and 8 × 8 maps twice.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn convolve_avx512(
    framed: &[f32],
    framing: Framing,
    shape: Shape,
    cout: usize,
    wm: &[f32],
    out: &mut [MaybeUninit<f32>],
) {
    match cout {
        16 => rows::<__m512, 1, 16>(framed, framing, shape, wm, out),
        32 => rows::<__m512, 2, 8>(framed, framing, shape, wm, out),
        _ => rows::<__m512, 4, 4>(framed, framing, shape, wm, out),
    }
}

/// [`convolve`] on AVX2 (16 registers): 8 sums, the pixels again dividing the ResNets' rows.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn convolve_avx2(
    framed: &[f32],
    framing: Framing,
    shape: Shape,
    cout: usize,
    wm: &[f32],
    out: &mut [MaybeUninit<f32>],
) {
    match cout {
        16 => rows::<__m256, 2, 4>(framed, framing, shape, wm, out),
        _ => rows::<__m256, 4, 2>(framed, framing, shape, wm, out),
    }
}

#[derive(Clone, Copy)]
struct Shape {
    cin: usize,
    k: usize,
    pitch: usize,
}

/// Every image row in blocks of `P` pixels, the last block of a row moved back to end at the
/// row's last pixel (its overlap computed twice, with the same result); rows narrower than
/// `P` a pixel at a time. The frame's zero positions are never computed. `V` vectors of
/// outputs per pixel: cout = V · lanes.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
unsafe fn rows<S: Vector, const V: usize, const P: usize>(
    framed: &[f32],
    Framing { images, h, w, p }: Framing,
    shape: Shape,
    wm: &[f32],
    out: &mut [MaybeUninit<f32>],
) {
    let cout = S::LANES * V;
    for image in 0..images {
        for y in 0..h {
            let position = (image * (h + p) + y) * shape.pitch;
            let row = &mut out[((image * h + y) * w) * cout..((image * h + y + 1) * w) * cout];
            if w < P {
                for x in 0..w {
                    block::<S, V, 1>(framed, shape, wm, position + x, &mut row[x * cout..]);
                }
                continue;
            }
            let mut x = 0;
            while x < w {
                let x0 = x.min(w - P);
                block::<S, V, P>(framed, shape, wm, position + x0, &mut row[x0 * cout..]);
                x += P;
            }
        }
    }
}

/// The `P` pixels at frame positions `first ..`, all `V` vectors of outputs each, into `out`
/// (P × cout): each kernel row's sums start at zero in registers and are added into the
/// output (the first row's stored), as the gemm crate's products did one kernel row at a time.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
unsafe fn block<S: Vector, const V: usize, const P: usize>(
    framed: &[f32],
    Shape { cin, k, pitch }: Shape,
    wm: &[f32],
    first: usize,
    out: &mut [MaybeUninit<f32>],
) {
    let cout = S::LANES * V;
    let taps = k * cin;
    let dst = out[..P * cout].as_mut_ptr().cast::<f32>();
    for ky in 0..k {
        let x = framed.as_ptr().add((first + ky * pitch) * cin);
        let w = wm.as_ptr().add(ky * taps * cout);
        let mut sum = [[S::zero(); V]; P];
        for t in 0..taps {
            let mut wv = [S::zero(); V];
            for (v, wv) in wv.iter_mut().enumerate() {
                *wv = S::load(w.add(t * cout + S::LANES * v));
            }
            for (p, sum) in sum.iter_mut().enumerate() {
                let xv = S::splat(*x.add(p * cin + t));
                for v in 0..V {
                    sum[v] = S::mul_add(xv, wv[v], sum[v]);
                }
            }
        }
        for (p, sum) in sum.iter().enumerate() {
            for (v, &s) in sum.iter().enumerate() {
                let at = dst.add(p * cout + S::LANES * v);
                let total = if ky == 0 { s } else { S::load(at).add(s) };
                total.store(at);
            }
        }
    }
}

/// Whether [`weight_gradient`] takes a k × k convolution with `cin` input and `cout` output
/// channels at the SIMD level in use: blocks of input channels × columns of a kernel row
/// (k·cout columns) must tile the gradient. (On AVX2, 64 output channels stay with the gemm
/// crate, 1–3 % faster there.)
pub(crate) fn handles_weight_gradient(k: usize, cin: usize, cout: usize) -> bool {
    let (rows, columns) = gradient_block();
    cfg!(target_arch = "x86_64")
        && (f32_lanes() == 16 || (f32_lanes() == 8 && cout <= 32))
        && cin.is_multiple_of(rows)
        && (k * cout).is_multiple_of(columns)
}

/// Input channels × columns of one block of [`weight_gradient`] at the level in use: 24 sums
/// on AVX-512 (8 × 3 vectors), 8 of AVX2's 16 registers (4 × 2 vectors; 4 × 3 spilled).
fn gradient_block() -> (usize, usize) {
    if f32_lanes() == 16 {
        (8, 48)
    } else {
        (4, 16)
    }
}

/// The weight gradient of a same-size stride-1 convolution from its input `x` (images × h × w
/// × cin, not framed: only its image pixels are read) and the frame of its output gradient
/// (`framed_dy`, cout channels, laid out as `framing` says), in the flipped kernel's layout
/// transposed: `dwm` (cin × k·k·cout), row ci, column (ty, tx, co) = Σ over the image pixels q
/// of X[q][ci] · dY[q + (ty − p)·(w + p) + tx − p][co]. Each value is one sum over the pixels
/// in order, image by image (the frame's zero positions, zero in X, add nothing and are
/// skipped). Every value of `dwm` is written. Call only when [`handles_weight_gradient`] says
/// so.
pub(crate) fn weight_gradient(
    x: &[f32],
    framed_dy: &[f32],
    framing: Framing,
    (cin, cout): (usize, usize),
    dwm: &mut [f32],
) {
    let Framing { images, h, w, p } = framing;
    let (k, pitch) = (2 * p + 1, w + p);
    assert!(
        handles_weight_gradient(k, cin, cout),
        "direct weight gradient: {k} × {k}, {cin} × {cout}"
    );
    let columns = k * k * cout;
    assert_eq!(dwm.len(), cin * columns, "direct weight gradient: output");
    if images * h * w == 0 {
        dwm.fill(0.0);
        return;
    }
    let last = ((images - 1) * (h + p) + h - 1) * pitch + w - 1;
    assert!(x.len() >= images * h * w * cin, "direct weight gradient: X");
    assert!(
        (last + (k - 1) * pitch) * cout + k * cout <= framed_dy.len(),
        "direct weight gradient: dY frame"
    );
    let frames = (x, framed_dy);
    #[cfg(target_arch = "x86_64")]
    // SAFETY: `handles_weight_gradient` checked the level's features at run time; the
    // asserts above bound every read, and every write goes through a checked slice of `dwm`.
    unsafe {
        if f32_lanes() == 16 {
            gradient_avx512(frames, framing, (cin, cout), dwm)
        } else {
            gradient_avx2(frames, framing, (cin, cout), dwm)
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn gradient_avx512(
    frames: (&[f32], &[f32]),
    framing: Framing,
    channels: (usize, usize),
    dwm: &mut [f32],
) {
    gradient_blocks::<__m512, 8, 3>(frames, framing, channels, dwm)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn gradient_avx2(
    frames: (&[f32], &[f32]),
    framing: Framing,
    channels: (usize, usize),
    dwm: &mut [f32],
) {
    gradient_blocks::<__m256, 4, 2>(frames, framing, channels, dwm)
}

/// [`weight_gradient`] in blocks of `R` input channels × `C` vectors of columns.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
unsafe fn gradient_blocks<S: Vector, const R: usize, const C: usize>(
    (x, framed_dy): (&[f32], &[f32]),
    framing: Framing,
    (cin, cout): (usize, usize),
    dwm: &mut [f32],
) {
    let (p, pitch) = (framing.p, framing.w + framing.p);
    let k = 2 * p + 1;
    let (columns, width) = (k * k * cout, C * S::LANES);
    for c0 in (0..cin).step_by(R) {
        for ty in 0..k {
            for j0 in (0..k * cout).step_by(width) {
                let at = c0 * columns + ty * k * cout + j0;
                let x = x.as_ptr().add(c0);
                let dy = framed_dy.as_ptr().add(ty * pitch * cout + j0);
                let sums = gradient_block_sums::<S, R, C>(x, dy, framing, (cin, cout));
                for (r, sums) in sums.iter().enumerate() {
                    let row = &mut dwm[at + r * columns..at + r * columns + width];
                    for (v, &s) in sums.iter().enumerate() {
                        s.store(row.as_mut_ptr().add(S::LANES * v));
                    }
                }
            }
        }
    }
}

/// One block of [`weight_gradient`]: `R` input channels (from `x`, the input at the block's
/// first channel) × `C` vectors of columns (from `dy`, the frame at
/// the block's kernel row and first column), summed over the image pixels.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
unsafe fn gradient_block_sums<S: Vector, const R: usize, const C: usize>(
    x: *const f32,
    dy: *const f32,
    Framing { images, h, w, p }: Framing,
    (cin, cout): (usize, usize),
) -> [[S; C]; R] {
    let pitch = w + p;
    let mut sums = [[S::zero(); C]; R];
    for image in 0..images {
        for y in 0..h {
            // Frame position and image pixel of the row's first pixel.
            let (row, pixel) = ((image * (h + p) + y) * pitch, (image * h + y) * w);
            for i in 0..w {
                let d = dy.add((row + i) * cout);
                let mut dv = [S::zero(); C];
                for (v, dv) in dv.iter_mut().enumerate() {
                    *dv = S::load(d.add(S::LANES * v));
                }
                let xq = x.add((pixel + i) * cin);
                for (r, sums) in sums.iter_mut().enumerate() {
                    let xv = S::splat(*xq.add(r));
                    for v in 0..C {
                        sums[v] = S::mul_add(xv, dv[v], sums[v]);
                    }
                }
            }
        }
    }
    sums
}

/// The vector operations the kernels use, for 512-bit (`__m512`) and 256-bit (`__m256`)
/// registers. Every method is inlined into the caller built for its level (the callers
/// above are themselves inlined into a `#[target_feature]` function).
#[cfg(target_arch = "x86_64")]
trait Vector: Copy {
    const LANES: usize;
    unsafe fn zero() -> Self;
    unsafe fn load(at: *const f32) -> Self;
    unsafe fn store(self, at: *mut f32);
    unsafe fn splat(value: f32) -> Self;
    /// a · b + c, rounded once.
    unsafe fn mul_add(a: Self, b: Self, c: Self) -> Self;
    unsafe fn add(self, other: Self) -> Self;
}

/// The [`Vector`] implementation for one register type, from its intrinsics.
#[cfg(target_arch = "x86_64")]
macro_rules! vector {
    ($t:ty, $lanes:expr, $zero:ident, $load:ident, $store:ident, $splat:ident, $fma:ident, $add:ident) => {
        impl Vector for $t {
            const LANES: usize = $lanes;
            #[inline(always)]
            unsafe fn zero() -> Self {
                $zero()
            }
            #[inline(always)]
            unsafe fn load(at: *const f32) -> Self {
                $load(at)
            }
            #[inline(always)]
            unsafe fn store(self, at: *mut f32) {
                $store(at, self)
            }
            #[inline(always)]
            unsafe fn splat(value: f32) -> Self {
                $splat(value)
            }
            #[inline(always)]
            unsafe fn mul_add(a: Self, b: Self, c: Self) -> Self {
                $fma(a, b, c)
            }
            #[inline(always)]
            unsafe fn add(self, other: Self) -> Self {
                $add(self, other)
            }
        }
    };
}

#[cfg(target_arch = "x86_64")]
vector!(
    __m512,
    16,
    _mm512_setzero_ps,
    _mm512_loadu_ps,
    _mm512_storeu_ps,
    _mm512_set1_ps,
    _mm512_fmadd_ps,
    _mm512_add_ps
);
#[cfg(target_arch = "x86_64")]
vector!(
    __m256,
    8,
    _mm256_setzero_ps,
    _mm256_loadu_ps,
    _mm256_storeu_ps,
    _mm256_set1_ps,
    _mm256_fmadd_ps,
    _mm256_add_ps
);
