//! Winograd's F(2 × 2, 3 × 3) convolution (Lavin & Gray, 2016) for same-size stride-1 3 × 3
//! layers in N × H × W × C: each 2 × 2 block of outputs comes from its 4 × 4 input tile through
//! 16 products per channel pair instead of 36, at the cost of transforming the tiles in and
//! out. With V = Bᵀ·d·B (the input tile), U = G·g·Gᵀ (the kernel) and M = Σ_channels U ⊙ V,
//! the outputs are Aᵀ·M·A, where
//!
//! ```text
//! Bᵀ = [1  0 −1  0]    G = [1    0    0]    Aᵀ = [1  1  1  0]
//!      [0  1  1  0]        [½    ½    ½]         [0  1 −1 −1]
//!      [0 −1  1  0]        [½   −½    ½]
//!      [0  1  0 −1]        [0    0    1]
//! ```
//!
//! The sum over input channels is one matrix product per tile position ξ (16 of them):
//! M_ξ (tiles × Cout) = V_ξ (tiles × Cin) · U_ξ (Cin × Cout), on the gemm crate. The products
//! do 4/9 of a direct convolution's multiplies; the transforms are adds over contiguous
//! channels. The results differ from a direct convolution's in the last bits (other sums);
//! `tests/ops.rs` checks them against the naive convolution.

use std::cell::RefCell;

use super::products::{count_flops, gemm_views, View};
use crate::util::simd::vectorised;

/// Tile rows (2 × 2 output blocks) per product: enough rows for the gemm crate's kernels, few
/// enough that V and M of a chunk stay in a core's L2.
const ROWS_PER_PRODUCT: usize = 256;

thread_local! {
    /// A chunk's transformed inputs V and products M, reused across calls.
    static SCRATCH: RefCell<(Vec<f32>, Vec<f32>)> = const { RefCell::new((Vec::new(), Vec::new())) };
}

/// The 16 transformed kernels U_ξ (ξ = 4·row + column of the 4 × 4 tile), each Cin × Cout
/// row-major, from the kernel's 9 taps, each a Cin × Cout matrix, taps in (ky, kx) order (the
/// layout of the direct convolution's weight matrix).
pub(super) fn transform_weights(taps: &[f32], cin: usize, cout: usize) -> Vec<f32> {
    let cc = cin * cout;
    assert_eq!(taps.len(), 9 * cc, "winograd: 9 taps of {cin} × {cout}");
    let mut u = vec![0.0f32; 16 * cc];
    let tap = |ky: usize, kx: usize, e: usize| taps[(ky * 3 + kx) * cc + e];
    for e in 0..cc {
        // G·g (4 × 3), then (G·g)·Gᵀ (4 × 4).
        let gg: [[f32; 3]; 4] = {
            let column = |kx: usize| (tap(0, kx, e), tap(1, kx, e), tap(2, kx, e));
            let rows = |f: fn((f32, f32, f32)) -> f32| [f(column(0)), f(column(1)), f(column(2))];
            [
                rows(|(g0, _, _)| g0),
                rows(|(g0, g1, g2)| (g0 + g1 + g2) * 0.5),
                rows(|(g0, g1, g2)| (g0 - g1 + g2) * 0.5),
                rows(|(_, _, g2)| g2),
            ]
        };
        for (r, [g0, g1, g2]) in gg.into_iter().enumerate() {
            u[(r * 4) * cc + e] = g0;
            u[(r * 4 + 1) * cc + e] = (g0 + g1 + g2) * 0.5;
            u[(r * 4 + 2) * cc + e] = (g0 - g1 + g2) * 0.5;
            u[(r * 4 + 3) * cc + e] = g2;
        }
    }
    u
}

/// Convolves `images` maps of `h` × `w` (both even) × `cin` (`xs`, N × H × W × C) with the
/// transformed kernels `u` ([`transform_weights`]), zero padding 1, stride 1, writing every
/// value of `out` (N × H × W × `cout`). Counts the direct convolution's multiplies in
/// [`super::products::flops_done`], so that GFLOP/s stay comparable.
pub(super) fn convolve(
    xs: &[f32],
    (images, h, w): (usize, usize, usize),
    cin: usize,
    u: &[f32],
    cout: usize,
    out: &mut [f32],
) {
    assert!(
        h.is_multiple_of(2) && w.is_multiple_of(2),
        "winograd: {h} × {w} maps"
    );
    assert_eq!(xs.len(), images * h * w * cin, "winograd: input");
    assert_eq!(out.len(), images * h * w * cout, "winograd: output");
    assert_eq!(u.len(), 16 * cin * cout, "winograd: kernels");
    let tiles = (h / 2) * (w / 2);
    let per_chunk = (ROWS_PER_PRODUCT / tiles).max(1);
    SCRATCH.with(|cell| {
        let (v, m) = &mut *cell.borrow_mut();
        for first in (0..images).step_by(per_chunk) {
            let chunk = per_chunk.min(images - first);
            let rows = chunk * tiles;
            grow(v, rows * 16 * cin);
            grow(m, rows * 16 * cout);
            let x = &xs[first * h * w * cin..(first + chunk) * h * w * cin];
            transform_inputs(x, (h, w), cin, &mut v[..rows * 16 * cin]);
            // V and M are stored tile by tile (row r of V_ξ at r·16·Cin + ξ·Cin): each tile's
            // 16 transforms are one contiguous block, and the products read strided rows.
            for xi in 0..16 {
                let a = View {
                    values: &v[xi * cin..rows * 16 * cin],
                    row_stride: 16 * cin,
                    col_stride: 1,
                };
                let b = View {
                    values: &u[xi * cin * cout..(xi + 1) * cin * cout],
                    row_stride: cout,
                    col_stride: 1,
                };
                let c = &mut m[xi * cout..rows * 16 * cout];
                gemm_views((rows, cout, cin), a, b, (c, 16 * cout), false);
            }
            let y = &mut out[first * h * w * cout..(first + chunk) * h * w * cout];
            transform_outputs(&m[..rows * 16 * cout], (h, w), cout, y);
        }
    });
    count_flops(2 * (images * h * w * 9 * cin * cout) as u64);
}

fn grow(buf: &mut Vec<f32>, len: usize) {
    if buf.len() < len {
        buf.resize(len, 0.0);
    }
}

/// V = Bᵀ·d·B for every 4 × 4 input tile (top-left corner at (2·ty − 1, 2·tx − 1), zeros
/// outside the map), per channel, into `v` (tile by tile, 16 × Cin each). Each step is a plain
/// loop over the channels of two operands, which compiles to vector code.
fn transform_inputs(x: &[f32], (h, w): (usize, usize), c: usize, v: &mut [f32]) {
    let zeros = vec![0.0f32; c];
    let mut t = vec![0.0f32; 16 * c];
    let (th, tw) = (h / 2, w / 2);
    vectorised(
        #[inline(always)]
        || {
            for (tile, vt) in v.chunks_exact_mut(16 * c).enumerate() {
                let (img, ty, tx) = (tile / (th * tw), tile / tw % th, tile % tw);
                let d = |r: usize, s: usize| -> &[f32] {
                    let (y, xx) = ((2 * ty + r) as isize - 1, (2 * tx + s) as isize - 1);
                    if y < 0 || xx < 0 || y >= h as isize || xx >= w as isize {
                        &zeros
                    } else {
                        let at = ((img * h + y as usize) * w + xx as usize) * c;
                        &x[at..at + c]
                    }
                };
                // t = Bᵀ·d, column by column.
                for s in 0..4 {
                    let (d0, d1, d2, d3) = (d(0, s), d(1, s), d(2, s), d(3, s));
                    apply(&mut t[s * c..][..c], d0, d2, |a, b| a - b);
                    apply(&mut t[(4 + s) * c..][..c], d1, d2, |a, b| a + b);
                    apply(&mut t[(8 + s) * c..][..c], d2, d1, |a, b| a - b);
                    apply(&mut t[(12 + s) * c..][..c], d1, d3, |a, b| a - b);
                }
                // V = t·B, row by row.
                for r in 0..4 {
                    let row = &t[4 * r * c..4 * (r + 1) * c];
                    let (t0, t1, t2, t3) =
                        (&row[..c], &row[c..2 * c], &row[2 * c..3 * c], &row[3 * c..]);
                    let out = &mut vt[4 * r * c..4 * (r + 1) * c];
                    apply(&mut out[..c], t0, t2, |a, b| a - b);
                    apply(&mut out[c..2 * c], t1, t2, |a, b| a + b);
                    apply(&mut out[2 * c..3 * c], t2, t1, |a, b| a - b);
                    apply(&mut out[3 * c..], t1, t3, |a, b| a - b);
                }
            }
        },
    );
}

/// Y = Aᵀ·M·A for every tile: its 2 × 2 output pixels, per channel, from `m` (tile by tile,
/// 16 × Cout each) into `y` (N × H × W × Cout).
fn transform_outputs(m: &[f32], (h, w): (usize, usize), c: usize, y: &mut [f32]) {
    let (th, tw) = (h / 2, w / 2);
    let mut t = vec![0.0f32; 8 * c];
    vectorised(
        #[inline(always)]
        || {
            for (img, y_img) in y.chunks_exact_mut(h * w * c).enumerate() {
                for ty in 0..th {
                    // The two output rows of this tile row.
                    let rows = &mut y_img[2 * ty * w * c..(2 * ty + 2) * w * c];
                    let (upper, lower) = rows.split_at_mut(w * c);
                    for tx in 0..tw {
                        let tile = (img * th + ty) * tw + tx;
                        let q = &m[tile * 16 * c..(tile + 1) * 16 * c];
                        // t = M·A (4 × 2), row by row.
                        for r in 0..4 {
                            let row = &q[4 * r * c..4 * (r + 1) * c];
                            let (m0, m1, m2, m3) =
                                (&row[..c], &row[c..2 * c], &row[2 * c..3 * c], &row[3 * c..]);
                            let (t0, t1) = t[2 * r * c..2 * (r + 1) * c].split_at_mut(c);
                            apply3(t0, m0, m1, m2, |a, b, c| a + b + c);
                            apply3(t1, m1, m2, m3, |a, b, c| a - b - c);
                        }
                        // Y = Aᵀ·t.
                        let col = |r: usize, j: usize| &t[(2 * r + j) * c..(2 * r + j + 1) * c];
                        let (y00, y01) = upper[2 * tx * c..(2 * tx + 2) * c].split_at_mut(c);
                        let (y10, y11) = lower[2 * tx * c..(2 * tx + 2) * c].split_at_mut(c);
                        apply3(y00, col(0, 0), col(1, 0), col(2, 0), |a, b, c| a + b + c);
                        apply3(y01, col(0, 1), col(1, 1), col(2, 1), |a, b, c| a + b + c);
                        apply3(y10, col(1, 0), col(2, 0), col(3, 0), |a, b, c| a - b - c);
                        apply3(y11, col(1, 1), col(2, 1), col(3, 1), |a, b, c| a - b - c);
                    }
                }
            }
        },
    );
}

/// out = f(a, b), value by value.
#[inline(always)]
fn apply(out: &mut [f32], a: &[f32], b: &[f32], f: impl Fn(f32, f32) -> f32) {
    for ((o, &a), &b) in out.iter_mut().zip(a).zip(b) {
        *o = f(a, b);
    }
}

/// out = f(a, b, c), value by value.
#[inline(always)]
fn apply3(out: &mut [f32], a: &[f32], b: &[f32], c: &[f32], f: impl Fn(f32, f32, f32) -> f32) {
    for (((o, &a), &b), &c) in out.iter_mut().zip(a).zip(b).zip(c) {
        *o = f(a, b, c);
    }
}

#[cfg(test)]
mod tests {
    use super::{convolve, transform_weights};

    /// Winograd against the definition (zero padding 1, stride 1, correlation), on maps that
    /// are not square, with channel counts that fill no vector, two images.
    #[test]
    fn matches_the_direct_convolution() {
        let (n, h, w, cin, cout) = (2, 6, 4, 3, 5);
        let value = |i: usize, step: usize| ((i * step) % 97) as f32 / 48.0 - 1.0;
        let x: Vec<f32> = (0..n * h * w * cin).map(|i| value(i, 31)).collect();
        // Taps in (ky, kx) order, each Cin × Cout.
        let taps: Vec<f32> = (0..9 * cin * cout).map(|i| value(i, 17)).collect();
        let mut out = vec![f32::NAN; n * h * w * cout];
        convolve(
            &x,
            (n, h, w),
            cin,
            &transform_weights(&taps, cin, cout),
            cout,
            &mut out,
        );
        for img in 0..n {
            for y in 0..h {
                for xx in 0..w {
                    for co in 0..cout {
                        let mut want = 0.0f64;
                        for ky in 0..3 {
                            for kx in 0..3 {
                                let (sy, sx) = (y + ky, xx + kx);
                                if sy < 1 || sx < 1 || sy > h || sx > w {
                                    continue;
                                }
                                for ci in 0..cin {
                                    let xv = x[((img * h + sy - 1) * w + sx - 1) * cin + ci];
                                    let tv = taps[((ky * 3 + kx) * cin + ci) * cout + co];
                                    want += xv as f64 * tv as f64;
                                }
                            }
                        }
                        let got = out[((img * h + y) * w + xx) * cout + co] as f64;
                        assert!(
                            (got - want).abs() < 1e-5,
                            "({img}, {y}, {xx}, {co}): {got} vs {want}"
                        );
                    }
                }
            }
        }
    }
}
