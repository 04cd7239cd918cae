//! Direct convolution of a [`super::kernels`] frame on AVX-512, for the channel counts where the
//! `gemm` crate's kernels fit the shape badly. A same-size stride-1 convolution on a frame is,
//! per kernel row, a product of a strided view (positions × k·cin) by the row's weights
//! (k·cin × cout). With cout = 16 or 32 the gemm crate's kernels hold one or two vectors of
//! outputs against six positions (or, with pixel pairs, pay 4/3 the multiplies); here a block
//! of positions × all cout outputs stays in registers (24 vectors), each weight vector is
//! loaded once per position block and each input value broadcast straight from the frame: no
//! packing, no zero blocks, and the outputs go straight to their image pixels (no copy out
//! of the frame). A ResNet's 16-channel layers: forward 1.96 → 1.49–1.60 ms, backward 3.45 →
//! 2.93–3.06 ms; 32 and 64 channels 2–5 % faster (B = 128, 2 threads, AVX-512).
//!
//! Each output adds, per kernel row, its k·cin products in tap order into a sum that starts
//! at zero, and the kernel rows' sums into the output in row order: the order of the gemm
//! crate's products that [`super::kernels`] used before (same bits).

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
