//! Direct kernels for a same-size stride-1 convolution on a [`super::kernels`] frame, on
//! AVX-512, where the `gemm` crate's kernels fit the shapes badly.
//!
//! The convolution (forward, and the input gradient, which is the convolution of dY with the
//! flipped kernel) is, per kernel row, a product of a strided view of the frame (pixels ×
//! k·cin) by the row's weights (k·cin × cout). With cout = 16 or 32 the gemm crate's kernels
//! hold one or two vectors of outputs against six positions (or, with pixel pairs, pay 4/3
//! the multiplies), and they compute the frame's zero positions too (27 % of an 8 × 8 map).
//! [`convolve`] keeps a block of pixels of one image row × all cout outputs in registers (16
//! vectors), loads each weight vector once per block, broadcasts each input straight from the
//! frame, never visits the zero positions, and writes the outputs straight to their image
//! pixels (no copy out of the frame). Each output adds, per kernel row, its k·cin products in
//! tap order into a sum that starts at zero, and the kernel rows' sums in row order: the
//! gemm crate's order, so the same bits as the products it replaced.
//!
//! [`weight_gradient`] sums X[q][ci] · dY-patch[q][column] over the image pixels q in order,
//! 8 input channels × 48 columns in registers (the gemm crate packed both long operands and
//! summed the zero positions too). Its sums run in pixel order, not the gemm crate's blocks:
//! the weight gradient changed in its last bits when it came in.
//!
//! ResNet layers (B = 128, 2 threads, AVX-512; forward / backward ms, gemm → direct): 16
//! channels at 32 × 32 1.96 / 3.45 → 1.40 / 2.70, 32 at 16 × 16 1.38 / 2.81 → 1.14 / 2.30,
//! 64 at 8 × 8 1.55 / 3.37 → 1.18 / 2.35.

#[cfg(target_arch = "x86_64")]
use std::arch::x86_64::*;

/// Whether [`convolve`] takes a convolution with `cout` output channels at the SIMD level in
/// use.
pub(crate) fn handles(cout: usize) -> bool {
    cfg!(target_arch = "x86_64")
        && crate::util::simd::f32_lanes() == 16
        && matches!(cout, 16 | 32 | 64)
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

/// out (images × h × w × cout) = the convolution of `framed` (frame pixels × cin, laid out as
/// `framing` says) with `wm` ((k·k·cin) × cout, rows ordered (ky, kx, ci)). `framed` must hold
/// every pixel the last image pixel reads. Call only when [`handles`] says so.
pub(crate) fn convolve(
    framed: &[f32],
    framing: Framing,
    (cin, cout): (usize, usize),
    wm: &[f32],
    out: &mut [f32],
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
    assert!(
        out.len() >= images * h * w * cout,
        "direct convolution: output"
    );
    let shape = Shape { cin, k, pitch };
    #[cfg(target_arch = "x86_64")]
    // SAFETY: `handles` checked AVX-512 at run time; the asserts above bound every access.
    unsafe {
        // 16 sums in registers, as many pixels as fit a row of the ResNets' 32 × 32, 16 × 16
        // and 8 × 8 maps twice.
        match cout {
            16 => rows::<1, 16>(framed, framing, shape, wm, out),
            32 => rows::<2, 8>(framed, framing, shape, wm, out),
            _ => rows::<4, 4>(framed, framing, shape, wm, out),
        }
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
/// `P` a pixel at a time. The frame's zero positions are never computed.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn rows<const V: usize, const P: usize>(
    framed: &[f32],
    Framing { images, h, w, p }: Framing,
    shape: Shape,
    wm: &[f32],
    out: &mut [f32],
) {
    let cout = 16 * V;
    for image in 0..images {
        for y in 0..h {
            let position = (image * (h + p) + y) * shape.pitch;
            let row = &mut out[((image * h + y) * w) * cout..((image * h + y + 1) * w) * cout];
            if w < P {
                for x in 0..w {
                    block::<V, 1>(framed, shape, wm, position + x, &mut row[x * cout..]);
                }
                continue;
            }
            let mut x = 0;
            while x < w {
                let x0 = x.min(w - P);
                block::<V, P>(framed, shape, wm, position + x0, &mut row[x0 * cout..]);
                x += P;
            }
        }
    }
}

/// The `P` pixels at frame positions `first ..`, all `16·V` outputs each, into `out` (P × cout):
/// each kernel row's sums start at zero in registers and are added into the output (the
/// first row's stored), as the gemm crate's products did one kernel row at a time.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
#[inline]
unsafe fn block<const V: usize, const P: usize>(
    framed: &[f32],
    Shape { cin, k, pitch }: Shape,
    wm: &[f32],
    first: usize,
    out: &mut [f32],
) {
    let cout = 16 * V;
    let taps = k * cin;
    let dst = out[..P * cout].as_mut_ptr();
    for ky in 0..k {
        let x = framed.as_ptr().add((first + ky * pitch) * cin);
        let w = wm.as_ptr().add(ky * taps * cout);
        let mut sum = [[_mm512_setzero_ps(); V]; P];
        for t in 0..taps {
            let mut wv = [_mm512_setzero_ps(); V];
            for (v, wv) in wv.iter_mut().enumerate() {
                *wv = _mm512_loadu_ps(w.add(t * cout + 16 * v));
            }
            for (p, sum) in sum.iter_mut().enumerate() {
                let xv = _mm512_set1_ps(*x.add(p * cin + t));
                for v in 0..V {
                    sum[v] = _mm512_fmadd_ps(xv, wv[v], sum[v]);
                }
            }
        }
        for (p, sum) in sum.iter().enumerate() {
            for (v, &s) in sum.iter().enumerate() {
                let at = dst.add(p * cout + 16 * v);
                let total = if ky == 0 {
                    s
                } else {
                    _mm512_add_ps(_mm512_loadu_ps(at), s)
                };
                _mm512_storeu_ps(at, total);
            }
        }
    }
}

/// Whether [`weight_gradient`] takes a k × k convolution with `cin` input and `cout` output
/// channels at the SIMD level in use: blocks of 8 input channels × 48 columns of a kernel row
/// (k·cout columns) must tile the gradient.
pub(crate) fn handles_weight_gradient(k: usize, cin: usize, cout: usize) -> bool {
    cfg!(target_arch = "x86_64")
        && crate::util::simd::f32_lanes() == 16
        && cin.is_multiple_of(WG_ROWS)
        && (k * cout).is_multiple_of(48)
}

/// Input channels per block of [`weight_gradient`] (times 3 vectors of its columns: 24 sums).
const WG_ROWS: usize = 8;

/// The weight gradient of a same-size stride-1 convolution from the frames of its input
/// (`framed_x`, cin channels) and of its output gradient (`framed_dy`, cout channels), both
/// laid out as `framing` says, in the flipped kernel's layout transposed: `dwm` (cin ×
/// k·k·cout), row ci, column (ty, tx, co) = Σ over the image pixels q of X[q][ci] ·
/// dY[q + (ty − p)·(w + p) + tx − p][co]. Each value is one sum over the pixels in order,
/// image by image; the frame's zero positions (zero in X) are skipped. Every value of `dwm`
/// is written. Call only when [`handles_weight_gradient`] says so.
pub(crate) fn weight_gradient(
    framed_x: &[f32],
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
    let first = p + p * pitch;
    let last = ((images - 1) * (h + p) + h - 1) * pitch + w - 1;
    assert!(
        (first + last + 1) * cin <= framed_x.len(),
        "direct weight gradient: X frame"
    );
    assert!(
        (last + (k - 1) * pitch) * cout + k * cout <= framed_dy.len(),
        "direct weight gradient: dY frame"
    );
    #[cfg(target_arch = "x86_64")]
    // SAFETY: `handles_weight_gradient` checked AVX-512 at run time; the asserts above bound
    // every read, and every write goes through a checked slice of `dwm`.
    unsafe {
        for c0 in (0..cin).step_by(WG_ROWS) {
            for ty in 0..k {
                for j0 in (0..k * cout).step_by(48) {
                    let at = c0 * columns + ty * k * cout + j0;
                    let x = framed_x.as_ptr().add(first * cin + c0);
                    let dy = framed_dy.as_ptr().add(ty * pitch * cout + j0);
                    let sums = gradient_tile(x, dy, framing, (cin, cout));
                    for (r, sums) in sums.iter().enumerate() {
                        let row = &mut dwm[at + r * columns..at + r * columns + 48];
                        for (v, &s) in sums.iter().enumerate() {
                            _mm512_storeu_ps(row.as_mut_ptr().add(16 * v), s);
                        }
                    }
                }
            }
        }
    }
}

/// One block of [`weight_gradient`]: `WG_ROWS` input channels (from `x`, the frame at the
/// first image pixel and the block's first channel) × 48 columns (from `dy`, the frame at the
/// block's kernel row and first column), summed over the image pixels.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn gradient_tile(
    x: *const f32,
    dy: *const f32,
    Framing { images, h, w, p }: Framing,
    (cin, cout): (usize, usize),
) -> [[__m512; 3]; WG_ROWS] {
    let pitch = w + p;
    let mut sums = [[_mm512_setzero_ps(); 3]; WG_ROWS];
    for image in 0..images {
        for y in 0..h {
            let row = (image * (h + p) + y) * pitch;
            for q in row..row + w {
                let d = dy.add(q * cout);
                let dv = [
                    _mm512_loadu_ps(d),
                    _mm512_loadu_ps(d.add(16)),
                    _mm512_loadu_ps(d.add(32)),
                ];
                let xq = x.add(q * cin);
                for (r, sums) in sums.iter_mut().enumerate() {
                    let xv = _mm512_set1_ps(*xq.add(r));
                    for v in 0..3 {
                        sums[v] = _mm512_fmadd_ps(xv, dv[v], sums[v]);
                    }
                }
            }
        }
    }
    sums
}
