//! CPU kernels of the convolutional layers, forward and backward, on plain slices in N × H × W × C
//! layout (channels innermost): dfdx 0.13 has no convolution or pooling on stable Rust
//! (`docs/dependencies.md`).
//!
//! A same-size stride-1 convolution (every 3 × 3 of the ResNets but the downsampling ones; on
//! 8 × 8 maps only where the direct kernels take it, see `ConvGeometry::is_framed`) lays a group
//! of images out in a zero-banded `Frame` and multiplies strided views of it by the weight
//! matrix, one product per kernel row (`super::products::gemm_views`, or for 16 to 64
//! channels the direct kernels of `super::direct`): no patch copies (11–14 % faster ResNet-20
//! steps than patches on AVX-512). Where there are enough channels (32 on AVX2, 64 on
//! AVX-512; `ConvGeometry::takes_winograd`), its forward pass and input gradient run as
//! Winograd's F(2 × 2, 3 × 3) instead (`super::winograd`). Any other convolution gathers
//! each output pixel's window into a patch row (`im2row`) and multiplies the patches by the
//! weight matrix; in this layout the patch rows are contiguous copies and every product streams
//! its operands without repacking (about twice the speed of N × C × H × W im2col here).
//!
//! Convolution and batch norm run in parallel over the batch with rayon (pooling and the
//! shortcut are cheap and serial), and every reduction over the batch adds fixed per-image (or
//! per-group) partials in order, so results are bit-identical whatever the number of threads.
//! [`super::native`] chains these kernels into a network and puts the whole network on dfdx's
//! tape as one op. Each kernel is checked against a naive reference and finite differences in
//! `tests/ops.rs`.

use std::mem::MaybeUninit;

use rayon::prelude::*;

use super::direct;
use super::products::{count_flops, gemm, gemm_views, View};
use super::winograd;
use crate::util::simd::{self, vectorised};
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
    /// Whether a convolution of maps `d` (its forward pass and input gradient) runs as
    /// Winograd's F(2 × 2, 3 × 3) ([`winograd`]): same-size 3 × 3, stride 1, even maps, and
    /// enough channels for its products (Cin or Cout long) to beat the direct kernels at the
    /// SIMD level in use. Measured per layer (B = 128, 2 threads): AVX2 32 channels forward /
    /// backward 2.38 / 4.94 → 1.75 / 4.36 ms, 64: 2.39 / 5.15 → 1.36 / 4.03; AVX-512 64:
    /// 1.19 / 2.33 → 0.90 / 2.08, but 32: 1.13 → 1.40 ms forward and 16 channels slower at
    /// both levels.
    fn takes_winograd(&self, d: Dims) -> bool {
        let fewest = if simd::f32_lanes() >= 16 { 64 } else { 32 };
        self.kernel == 3
            && self.stride == 1
            && self.padding == 1
            && d.h.is_multiple_of(2)
            && d.w.is_multiple_of(2)
            && self.in_channels.min(self.out_channels) >= fewest
    }
    /// Whether a convolution of maps `d` runs on a [`Frame`] instead of patches: stride 1 with
    /// "same" padding (the output has the input's size), and either the direct kernels take
    /// it both ways or the maps are wider than 8 pixels. At 8 × 8 the frame's zero positions
    /// are 21 % of what the gemm crate's products compute, and patches were faster there (AVX2,
    /// 64 channels: forward 2.88 → 2.40 ms, backward 6.16 → 5.33 ms).
    fn is_framed(&self, d: Dims) -> bool {
        self.stride == 1
            && 2 * self.padding + 1 == self.kernel
            && (d.w > 8
                || (direct::handles(self.out_channels) && direct::handles(self.in_channels)))
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

/// A thread's working buffers, reused between calls: every value a product reads is written
/// first, so they are never cleared.
#[derive(Default)]
struct Scratch {
    /// Patch rows ([`im2row`]).
    patches: Vec<f32>,
    /// A group of images in a [`Frame`].
    framed: Vec<f32>,
    /// A second framed group (the output gradient, beside the input, in the backward pass).
    framed_grad: Vec<f32>,
    /// A framed convolution's outputs, junk positions included.
    grid: Vec<f32>,
}

thread_local! {
    static SCRATCH: std::cell::RefCell<Scratch> = std::cell::RefCell::new(Scratch::default());
}

/// Runs `f` on this thread's [`Scratch`].
fn with_scratch<R>(f: impl FnOnce(&mut Scratch) -> R) -> R {
    SCRATCH.with(|cell| f(&mut cell.borrow_mut()))
}

/// The first `len` values of `buf`, grown to at least `len`.
fn grow(buf: &mut Vec<f32>, len: usize) -> &mut [f32] {
    if buf.len() < len {
        buf.resize(len, 0.0);
    }
    &mut buf[..len]
}

/// A group of images laid out for a same-size stride-1 convolution without patches: each image
/// row is followed by p zero pixels and each image by p zero rows, after p zero rows at the top
/// (one band of zeros is the right padding of a row and the left of the next, the bottom
/// padding of an image and the top of the next), with p zero pixels before and after it all.
/// In this layout the k·C inputs of kernel row ky for an output pixel are one contiguous run,
/// and the runs of consecutive pixels start C apart: the patches of one kernel row are a
/// strided view of the buffer itself. The convolution is then k products, one per kernel row,
/// over every position of the frame, and the outputs at the zero positions (about p/W of
/// them) are dropped. Against [`im2row`], which copies each input value k·k times, the frame
/// copies it once.
#[derive(Debug, Clone, Copy)]
struct Frame {
    images: usize,
    h: usize,
    w: usize,
    p: usize,
}

impl Frame {
    fn new(images: usize, d: Dims, p: usize) -> Self {
        Frame {
            images,
            h: d.h,
            w: d.w,
            p,
        }
    }

    /// The layout as [`super::direct`] takes it.
    fn framing(&self) -> direct::Framing {
        direct::Framing {
            images: self.images,
            h: self.h,
            w: self.w,
            p: self.p,
        }
    }

    /// Pixels from one row of the frame to the next.
    fn pitch(&self) -> usize {
        self.w + self.p
    }

    /// Output positions the products compute: every frame pixel from the first image's first
    /// row to the end of the last image's last row, zero positions between them included.
    fn positions(&self) -> usize {
        (self.images * (self.h + self.p) - self.p) * self.pitch()
    }

    /// Pixels of the whole framed buffer (p guard pixels at the start, p + 1 at the end: the
    /// one more lets [`Frame::convolve`]'s pixel pairs cover an odd number of positions).
    fn pixels(&self) -> usize {
        (self.p + self.images * (self.h + self.p)) * self.pitch() + 2 * self.p + 1
    }

    /// Rows of the output grid [`Frame::convolve`] writes (positions × channels): the
    /// positions, one more when they are odd (pixel pairs).
    fn grid_rows(&self) -> usize {
        self.positions().next_multiple_of(2)
    }

    /// The buffer pixel of output position 0 (the first image's first pixel).
    fn first(&self) -> usize {
        self.p + self.p * self.pitch()
    }

    /// Writes `images` (each h × w × c) into `buf` in this layout; every value is written.
    fn fill<'b>(&self, images: &[f32], c: usize, buf: &'b mut Vec<f32>) -> &'b [f32] {
        let source = OutputGrad::Values(images);
        self.fill_from(&source, c, buf)
    }

    /// [`Frame::fill`] from the values `source` gives (batch norm's input gradient computed as
    /// it is written, or plain values).
    fn fill_from<'b>(&self, source: &OutputGrad, c: usize, buf: &'b mut Vec<f32>) -> &'b [f32] {
        let (w, p, pitch) = (self.w, self.p, self.pitch());
        let framed = grow(buf, self.pixels() * c);
        let (head, mut rest) = framed.split_at_mut(self.first() * c);
        head.fill(0.0);
        for image in 0..source.len() / (self.h * w * c) {
            for y in 0..self.h {
                let (data, tail) = rest.split_at_mut(w * c);
                source.write((image * self.h + y) * w * c, data);
                let (zeros, tail) = tail.split_at_mut(p * c);
                zeros.fill(0.0);
                rest = tail;
            }
            let (zeros, tail) = rest.split_at_mut(p * pitch * c);
            zeros.fill(0.0);
            rest = tail;
        }
        rest.fill(0.0);
        framed
    }

    /// Kernel row `ky`'s patches as a positions × (k·c) view of a framed buffer: row q starts
    /// at position q shifted by (ky − p) rows and −p pixels.
    fn view<'b>(&self, framed: &'b [f32], c: usize, ky: usize) -> View<'b> {
        // Buffer pixel first() + (ky − p)·pitch − p = ky·pitch.
        let start = ky * self.pitch() * c;
        View {
            values: &framed[start..],
            row_stride: c,
            col_stride: 1,
        }
    }

    /// out (images × h × w × cout, every value written) = the convolution of a framed buffer
    /// (cin channels) with `wm`, the (k·k·cin) × cout weight matrix, rows ordered (ky, kx, ci).
    /// Where the direct kernels of [`super::direct`] take it (16 to 64 output channels) they
    /// write the image pixels straight into `out`; otherwise the gemm crate's products fill
    /// `grid` (every frame position, [`Frame::convolve`]) and the image pixels are copied out.
    fn convolve_into(
        &self,
        framed: &[f32],
        cin: usize,
        wm: &[f32],
        cout: usize,
        grid: &mut Vec<f32>,
        out: &mut [MaybeUninit<f32>],
    ) {
        if direct::handles(cout) {
            direct::convolve(framed, self.framing(), (cin, cout), wm, out);
            let k = 2 * self.p + 1;
            count_flops(2 * (self.images * self.h * self.w * k * k * cin * cout) as u64);
        } else {
            let grid = grow(grid, self.grid_rows() * cout);
            self.convolve(framed, cin, wm, cout, grid);
            self.unframe(grid, cout, zero_filled(out));
        }
    }

    /// out ([`Frame::grid_rows`] × cout) = the convolution of a framed buffer (cin channels)
    /// with `wm`, the (k·k·cin) × cout weight matrix, rows ordered (ky, kx, ci): one product per
    /// kernel row.
    ///
    /// When cout fills at most one SIMD vector (16 channels on AVX-512), the gemm crate's
    /// narrowest kernel would run: one vector of outputs against six pixels, loads outnumbering
    /// multiplies. Pixel pairs double its width instead: a product row is two neighbouring
    /// positions (2·cout outputs) over their (k + 1)·cin consecutive inputs, against a weight
    /// matrix with a block of zeros per pixel ([`pair_weights`]). That costs (k + 1)/k the
    /// multiplies, runs the two-vector kernel at about twice the speed, and gives the same
    /// bits: each output adds the same products in the same order, the zero ones adding
    /// nothing.
    fn convolve(&self, framed: &[f32], cin: usize, wm: &[f32], cout: usize, out: &mut [f32]) {
        let k = 2 * self.p + 1;
        let taps = k * cin;
        let pairs = cout <= simd::f32_lanes();
        for ky in 0..k {
            let kernel_row = &wm[ky * taps * cout..(ky + 1) * taps * cout];
            let patches = self.view(framed, cin, ky);
            if pairs {
                let weights = pair_weights(kernel_row, cin, cout);
                let pair_patches = View {
                    row_stride: 2 * cin,
                    ..patches
                };
                gemm_views(
                    (self.grid_rows() / 2, 2 * cout, taps + cin),
                    pair_patches,
                    View {
                        values: &weights,
                        row_stride: 2 * cout,
                        col_stride: 1,
                    },
                    (out, 2 * cout),
                    ky > 0,
                );
            } else {
                let weights = View {
                    values: kernel_row,
                    row_stride: cout,
                    col_stride: 1,
                };
                gemm_views(
                    (self.positions(), cout, taps),
                    patches,
                    weights,
                    (out, cout),
                    ky > 0,
                );
            }
        }
        count_flops(2 * (self.images * self.h * self.w * k * taps * cout) as u64);
    }

    /// Copies the image positions of `grid` (positions × c) into `out` (images × h × w × c).
    fn unframe(&self, grid: &[f32], c: usize, out: &mut [f32]) {
        let (h, w, p, pitch) = (self.h, self.w, self.p, self.pitch());
        for (i, img) in out.chunks_mut(h * w * c).enumerate() {
            for (y, row) in img.chunks_mut(w * c).enumerate() {
                let at = ((i * (h + p) + y) * pitch) * c;
                row.copy_from_slice(&grid[at..at + w * c]);
            }
        }
    }

    /// The framed values at the output positions: the images with zeros at every other
    /// position, positions × c.
    fn at_positions<'b>(&self, framed: &'b [f32], c: usize) -> &'b [f32] {
        &framed[self.first() * c..(self.first() + self.positions()) * c]
    }
}

/// One kernel row's weights (taps × cout, taps = k·cin) for a pair of neighbouring pixels:
/// (taps + cin) × 2·cout, the first pixel's columns holding the kernel row over the first taps
/// rows and zeros below, the second pixel's zeros over the first cin rows and the kernel row
/// below (its inputs start one pixel later).
fn pair_weights(kernel_row: &[f32], cin: usize, cout: usize) -> Vec<f32> {
    let taps = kernel_row.len() / cout;
    let mut pair = vec![0.0f32; (taps + cin) * 2 * cout];
    for (t, w) in kernel_row.chunks(cout).enumerate() {
        pair[t * 2 * cout..][..cout].copy_from_slice(w);
        pair[(t + cin) * 2 * cout + cout..][..cout].copy_from_slice(w);
    }
    pair
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
    let winograd = g
        .takes_winograd(d)
        .then(|| winograd::transform_weights(&wm, d.c, od.c));
    let mut out = unwritten(od.len());
    out.par_chunks_mut(group * od.image())
        .zip(x.par_chunks(group * d.image()))
        .for_each(|(y, xs)| {
            let images = xs.len() / d.image();
            let y = if let Some(u) = &winograd {
                // SAFETY: `convolve` writes every value of its output.
                let y = unsafe { assume_written(y) };
                winograd::convolve(xs, (images, d.h, d.w), d.c, u, od.c, y);
                y
            } else if g.is_framed(d) {
                let frame = Frame::new(images, d, g.padding);
                with_scratch(|scratch| {
                    let framed = frame.fill(xs, d.c, &mut scratch.framed);
                    frame.convolve_into(framed, d.c, &wm, od.c, &mut scratch.grid, y);
                });
                // SAFETY: `convolve_into` writes every value of its output.
                unsafe { assume_written(y) }
            } else {
                let y = zero_filled(y);
                let rows = images * od.plane();
                with_scratch(|scratch| {
                    let patches = grow(&mut scratch.patches, rows * k);
                    for (img, pt) in xs.chunks(d.image()).zip(patches.chunks_mut(od.plane() * k)) {
                        im2row(img, d.h, d.w, d.c, g, pt);
                    }
                    gemm(rows, od.c, k, patches, false, &wm, false, y, false);
                });
                y
            };
            if let Some(bias) = bias {
                for px in y.chunks_mut(od.c) {
                    add_into(px, bias);
                }
            }
        });
    // SAFETY: every group's values were written above.
    unsafe { written(out) }
}

/// Gradients of a convolution's input and weights from the output gradient (NHWC): (dx,
/// dweight); dx only when `need_dx` (the first layer's input is data and needs none). The bias
/// gradient, when there is a bias, is [`conv2d_bias_grad`].
pub fn conv2d_backward(
    x: &[f32],
    d: Dims,
    weight: &[f32],
    grad_out: OutputGrad,
    g: &ConvGeometry,
    need_dx: bool,
) -> (Option<Vec<f32>>, Vec<f32>) {
    assert_eq!(
        grad_out.len(),
        d.conv(g).len(),
        "conv2d backward: output gradient"
    );
    let od = d.conv(g);
    let k = g.patch();
    let group = images_per_product(od.plane());
    // Same-size stride 1 with dX wanted: both gradients come from the framed dY (and X). dX is
    // the convolution of dY with the flipped kernel, and the weight gradient, in that kernel's
    // layout, is Xᵀ · (the patches of dY). Otherwise the patches of X give dW = patchesᵀ · dY,
    // and dX (when wanted) = dY · Wᵀ added back into the image.
    let flipped = (need_dx && g.is_framed(d)).then(|| reorder_flipped(weight, g, true));
    // dX by Winograd where it takes the layer: the flipped kernel, Cout → Cin channels. The
    // weight gradient still comes from the path chosen above.
    let winograd = (need_dx && g.takes_winograd(d)).then(|| match &flipped {
        Some(taps) => winograd::transform_weights(taps, od.c, d.c),
        None => winograd::transform_weights(&reorder_flipped(weight, g, true), od.c, d.c),
    });
    let wm = (need_dx && flipped.is_none() && winograd.is_none())
        .then(|| reorder_weights(weight, g, true));
    let mut dx = unwritten(if need_dx { d.len() } else { 0 });
    let groups = d.n.div_ceil(group);
    let mut dx_groups: Vec<&mut [MaybeUninit<f32>]> = if need_dx {
        dx.chunks_mut(group * d.image()).collect()
    } else {
        (0..groups)
            .map(|_| <&mut [MaybeUninit<f32>]>::default())
            .collect()
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
            let dy = grad_out.part(first * od.image()..(first + images) * od.image());
            let mut dwm = vec![0.0f32; g.out_channels * k];
            let shapes = (d, od, images);
            let dx_group: &mut [MaybeUninit<f32>] = dx_group;
            let (dx_framed, dx_winograd) = match winograd {
                Some(_) => (None, Some(dx_group)),
                None => (Some(dx_group), None),
            };
            // dY's values, where a product reads them (materialised when batch norm's gradient
            // is computed on the fly).
            let dy_values = (flipped.is_none() || winograd.is_some()).then(|| match &dy {
                OutputGrad::Values(dy) => std::borrow::Cow::Borrowed(*dy),
                computed => std::borrow::Cow::Owned(computed.values()),
            });
            match &flipped {
                Some(flipped) => backward_framed(xs, &dy, flipped, g, shapes, &mut dwm, dx_framed),
                None => {
                    let dy = dy_values.as_deref().expect("materialised for the patches");
                    let dx = wm.as_deref().zip(dx_framed.map(zero_filled));
                    backward_patches(xs, dy, g, shapes, &mut dwm, dx);
                }
            }
            if let (Some(u), Some(dx), Some(dy)) = (&winograd, dx_winograd, dy_values.as_deref()) {
                // SAFETY: `convolve` writes every value of its output.
                let dx = unsafe { assume_written(dx) };
                winograd::convolve(dy, (images, d.h, d.w), od.c, u, d.c, dx);
            }
            dwm
        })
        .collect();
    // The partials are transposed (see the two functions below): summed in group order (in
    // parallel over the values, each value's sum in that order), then turned back.
    let mut dwm_transposed = vec![0.0f32; g.out_channels * k];
    dwm_transposed
        .par_chunks_mut(1024)
        .enumerate()
        .for_each(|(i, sum)| {
            vectorised(
                #[inline(always)]
                || {
                    for pw in &partials {
                        add_into(sum, &pw[i * 1024..i * 1024 + sum.len()]);
                    }
                },
            )
        });
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
    // SAFETY: every group's input gradient was written above (framed: by `convolve_into`;
    // Winograd: by `convolve`; patches: zero-filled, then added into).
    let dx = unsafe { written(dx) };
    (need_dx.then_some(dx), dw)
}

/// One group of images of a same-size stride-1 convolution's backward pass, on [`Frame`]s of
/// dY and X: dW in the flipped kernel's layout, computed transposed (Cin × k·k·Cout, kernel
/// row ty's block = Xᵀ · (ty's patches of dY): the gemm crate runs its vector kernel along the
/// long k·Cout side instead of 16 to 64 channels; X is zero at the frame's junk positions, so
/// they add nothing), and dX = the convolution of dY with the flipped kernel.
fn backward_framed(
    xs: &[f32],
    dy: &OutputGrad,
    flipped: &[f32],
    g: &ConvGeometry,
    (d, od, images): (Dims, Dims, usize),
    dwm: &mut [f32],
    dx: Option<&mut [MaybeUninit<f32>]>,
) {
    let (cin, cout, k) = (g.in_channels, g.out_channels, g.kernel);
    let frame = Frame::new(images, d, g.padding);
    with_scratch(|scratch| {
        let framed_dy = frame.fill_from(dy, od.c, &mut scratch.framed_grad);
        let block = k * cout;
        if direct::handles_weight_gradient(k, cin, cout) {
            // X read in place: no framed copy.
            direct::weight_gradient(xs, framed_dy, frame.framing(), (cin, cout), dwm);
        } else {
            let framed_x = frame.fill(xs, cin, &mut scratch.framed);
            let x_t = View {
                values: frame.at_positions(framed_x, cin),
                row_stride: 1,
                col_stride: cin,
            };
            for ty in 0..k {
                gemm_views(
                    (cin, block, frame.positions()),
                    x_t,
                    frame.view(framed_dy, cout, ty),
                    (&mut dwm[ty * block..], k * block),
                    false,
                );
            }
        }
        count_flops(2 * (images * d.plane() * k * block * cin) as u64);
        if let Some(dx) = dx {
            frame.convolve_into(framed_dy, cout, flipped, cin, &mut scratch.grid, dx);
        }
    });
}

/// One group of images of any other convolution's backward pass, from the patches of X: dW
/// computed transposed (Cout × K = dYᵀ · patches, the long side K along the gemm crate's vector
/// kernel), and, when `dx` comes with the weight matrix, dX = (dY · Wᵀ) folded back into images.
fn backward_patches(
    xs: &[f32],
    dy: &[f32],
    g: &ConvGeometry,
    (d, od, images): (Dims, Dims, usize),
    dwm: &mut [f32],
    dx: Option<(&[f32], &mut [f32])>,
) {
    let k = g.patch();
    let rows = images * od.plane();
    with_scratch(|scratch| {
        let patches = grow(&mut scratch.patches, rows * k);
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
        if let Some((wm, dx)) = dx {
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

/// [`add_into`] over a whole activation or parameter tensor: in parallel chunks, vectorised at
/// the run-time level (the same bits).
pub fn add_into_parallel(dst: &mut [f32], src: &[f32]) {
    assert_eq!(dst.len(), src.len(), "add_into_parallel: lengths");
    dst.par_chunks_mut(1 << 14)
        .zip(src.par_chunks(1 << 14))
        .for_each(|(d, s)| {
            vectorised(
                #[inline(always)]
                || add_into(d, s),
            )
        });
}

/// A buffer of `len` values for a kernel that writes every one of them: not zeroed first
/// (zeroing activation-sized buffers that are then overwritten cost 4–6 % of a ResNet-20
/// step). [`written`] turns it into values once the kernel has written them.
fn unwritten(len: usize) -> Vec<MaybeUninit<f32>> {
    let mut v = Vec::with_capacity(len);
    // SAFETY: `MaybeUninit` values need no initialisation.
    unsafe { v.set_len(len) };
    v
}

/// The values of a buffer from [`unwritten`].
///
/// # Safety
/// Every value of `v` has been written.
unsafe fn written(v: Vec<MaybeUninit<f32>>) -> Vec<f32> {
    let mut v = std::mem::ManuallyDrop::new(v);
    // SAFETY: `MaybeUninit<f32>` has the layout of `f32`, and the caller says that every
    // value is initialised; the allocation moves over whole.
    unsafe { Vec::from_raw_parts(v.as_mut_ptr().cast::<f32>(), v.len(), v.capacity()) }
}

/// `values` as the `f32` values they now hold.
///
/// # Safety
/// Every value of `values` has been written.
unsafe fn assume_written(values: &mut [MaybeUninit<f32>]) -> &mut [f32] {
    // SAFETY: same layout; initialised, as the caller says.
    unsafe { &mut *(values as *mut [MaybeUninit<f32>] as *mut [f32]) }
}

/// `values` zero-filled, for the kernels that add into their output or may leave values out.
fn zero_filled(values: &mut [MaybeUninit<f32>]) -> &mut [f32] {
    values.fill(MaybeUninit::new(0.0));
    // SAFETY: every value was just written.
    unsafe { assume_written(values) }
}

/// Adds `src` into `dst` element-wise.
#[inline(always)]
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
            vectorised(
                #[inline(always)]
                || {
                    let (mut s, mut s2) = (vec![0.0f64; d.c], vec![0.0f64; d.c]);
                    for px in img.chunks_exact(d.c) {
                        for ((s, s2), &v) in s.iter_mut().zip(s2.iter_mut()).zip(px) {
                            *s += v as f64;
                            *s2 += v as f64 * v as f64;
                        }
                    }
                    (s, s2)
                },
            )
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
    let mut out = unwritten(y.len());
    let bn = (mean, inv_std, gamma, beta);
    normalise(Normalised::From(y, &mut out), channels, bn, residual, relu);
    // SAFETY: `normalise` writes every value of its output.
    unsafe { written(out) }
}

/// [`batch_norm_forward`] over `y` itself, when the values before normalisation are not needed
/// again (no backward pass follows): no second buffer, the same bits. (Training keeps the
/// out-of-place form: there, writing a fresh buffer was 2.5 % faster than copying and
/// normalising the copy.)
#[allow(clippy::too_many_arguments)]
pub fn batch_norm_in_place(
    y: &mut [f32],
    channels: usize,
    mean: &[f32],
    inv_std: &[f32],
    gamma: &[f32],
    beta: &[f32],
    residual: Option<&[f32]>,
    relu: bool,
) {
    let bn = (mean, inv_std, gamma, beta);
    normalise(Normalised::InPlace(y), channels, bn, residual, relu);
}

/// The pass behind both: out = source·scale + shift per channel (the source is `y`, or `out`
/// itself in place), then the [`epilogue`], in parallel chunks of 256 pixels.
fn normalise(
    values: Normalised,
    c: usize,
    (mean, inv_std, gamma, beta): (&[f32], &[f32], &[f32], &[f32]),
    residual: Option<&[f32]>,
    relu: bool,
) {
    let (scale, shift) = scale_and_shift(mean, inv_std, gamma, beta);
    // Every output value is written below only if whole pixels of c values cover it.
    let (len, source) = match &values {
        Normalised::From(y, out) => (out.len(), y.len()),
        Normalised::InPlace(out) => (out.len(), out.len()),
    };
    assert!(
        source == len && len.is_multiple_of(c) && scale.len() == c,
        "batch norm: shapes"
    );
    let chunk = c * 256;
    let at = |i: usize, j: usize| i * chunk + j * c..i * chunk + (j + 1) * c;
    // After the affine map: the residual, then ReLU, on pixel j of chunk i.
    let residual_at = |i: usize, j: usize| residual.map(|r| &r[at(i, j)]);
    match values {
        Normalised::From(y, out) => out.par_chunks_mut(chunk).enumerate().for_each(|(i, o)| {
            vectorised(
                #[inline(always)]
                || {
                    for (j, o) in o.chunks_mut(c).enumerate() {
                        let coef = scale.iter().zip(&shift);
                        for ((o, &v), (&k, &t)) in o.iter_mut().zip(&y[at(i, j)]).zip(coef) {
                            o.write(v * k + t);
                        }
                        // SAFETY: the loop above wrote every value of the pixel.
                        epilogue(unsafe { assume_written(o) }, residual_at(i, j), relu);
                    }
                },
            )
        }),
        Normalised::InPlace(out) => out.par_chunks_mut(chunk).enumerate().for_each(|(i, o)| {
            vectorised(
                #[inline(always)]
                || {
                    for (j, o) in o.chunks_mut(c).enumerate() {
                        let coef = scale.iter().zip(&shift);
                        o.iter_mut()
                            .zip(coef)
                            .for_each(|(o, (&k, &t))| *o = *o * k + t);
                        epilogue(o, residual_at(i, j), relu);
                    }
                },
            )
        }),
    }
}

/// Batch norm's epilogue on one pixel `o`: plus the residual, then ReLU, as asked.
#[inline(always)]
fn epilogue(o: &mut [f32], residual: Option<&[f32]>, relu: bool) {
    if let Some(res) = residual {
        add_into(o, res);
    }
    if relu {
        o.iter_mut().for_each(|o| *o = o.max(0.0));
    }
}

/// Where [`normalise`] reads and writes: from the values before normalisation into a fresh
/// buffer (each value written), or in place.
enum Normalised<'a> {
    From(&'a [f32], &'a mut [MaybeUninit<f32>]),
    InPlace(&'a mut [f32]),
}

/// Batch norm as out = y·scale + shift per channel: scale = γ·inv_std, shift = β − μ·scale.
fn scale_and_shift(
    mean: &[f32],
    inv_std: &[f32],
    gamma: &[f32],
    beta: &[f32],
) -> (Vec<f32>, Vec<f32>) {
    let scale: Vec<f32> = gamma.iter().zip(inv_std).map(|(g, s)| g * s).collect();
    let shift = beta
        .iter()
        .zip(mean)
        .zip(&scale)
        .map(|((b, m), k)| b - m * k)
        .collect();
    (scale, shift)
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
    let (grad, dgamma, dbeta) = batch_norm_grad(y, dims, mean, inv_std, gamma, d, batch_stats);
    (
        OutputGrad::BatchNorm { grad: &grad, d, y }.values(),
        dgamma,
        dbeta,
    )
}

/// Batch norm's backward pass up to its input gradient: (that gradient's per-channel
/// coefficients, dγ, dβ). The input gradient itself is computed where it is read
/// ([`OutputGrad::BatchNorm`]): into the frame of the output gradient of the convolution
/// before batch norm, with no buffer of its own.
pub fn batch_norm_grad(
    y: &[f32],
    dims: Dims,
    mean: &[f32],
    inv_std: &[f32],
    gamma: &[f32],
    d: &[f32],
    batch_stats: bool,
) -> (BatchNormGrad, Vec<f32>, Vec<f32>) {
    let c = dims.c;
    assert!(
        y.len() == d.len() && d.len().is_multiple_of(c) && mean.len() == c,
        "batch norm backward: shapes"
    );
    // Per-image partial sums of d and d·x̂, added in image order (deterministic).
    let partials: Vec<(Vec<f32>, Vec<f32>)> = d
        .par_chunks(dims.image())
        .zip(y.par_chunks(dims.image()))
        .map(|(di, yi)| {
            vectorised(
                #[inline(always)]
                || {
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
                },
            )
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
    let mean = mean.to_vec();
    (BatchNormGrad { a, b, e, mean }, dgamma, dbeta)
}

/// Batch norm's input gradient as per-channel coefficients ([`batch_norm_grad`]): a·d + b·(y −
/// μ) + e for the gradient d at batch norm's output and the value y it normalised.
#[derive(Debug, Clone)]
pub struct BatchNormGrad {
    a: Vec<f32>,
    b: Vec<f32>,
    e: Vec<f32>,
    mean: Vec<f32>,
}

impl BatchNormGrad {
    /// The input gradient of whole pixels (`d`, `y` and `out` of the same length).
    #[inline(always)]
    fn write(&self, d: &[f32], y: &[f32], out: &mut [f32]) {
        let c = self.a.len();
        for ((o, dp), yp) in out
            .chunks_exact_mut(c)
            .zip(d.chunks_exact(c))
            .zip(y.chunks_exact(c))
        {
            let coef = self.a.iter().zip(&self.b).zip(&self.e).zip(&self.mean);
            for ((o, (&dv, &v)), (((&a, &b), &e), &mu)) in
                o.iter_mut().zip(dp.iter().zip(yp)).zip(coef)
            {
                *o = a * dv + b * (v - mu) + e;
            }
        }
    }
}

/// The output gradient a convolution's backward pass starts from (N × H × W × C).
#[derive(Debug, Clone, Copy)]
pub enum OutputGrad<'a> {
    /// The values themselves.
    Values(&'a [f32]),
    /// Batch norm's input gradient, from the gradient `d` at its output and the values `y` it
    /// normalised, computed as it is read.
    BatchNorm {
        grad: &'a BatchNormGrad,
        d: &'a [f32],
        y: &'a [f32],
    },
}

impl<'a> OutputGrad<'a> {
    fn len(&self) -> usize {
        match self {
            OutputGrad::Values(v) => v.len(),
            OutputGrad::BatchNorm { d, .. } => d.len(),
        }
    }

    /// The values `range` (whole pixels).
    fn part(&self, range: std::ops::Range<usize>) -> OutputGrad<'a> {
        match *self {
            OutputGrad::Values(v) => OutputGrad::Values(&v[range]),
            OutputGrad::BatchNorm { grad, d, y } => OutputGrad::BatchNorm {
                grad,
                d: &d[range.clone()],
                y: &y[range],
            },
        }
    }

    /// Values `at .. at + out.len()` (whole pixels) into `out`.
    fn write(&self, at: usize, out: &mut [f32]) {
        let range = at..at + out.len();
        match self {
            OutputGrad::Values(v) => out.copy_from_slice(&v[range]),
            OutputGrad::BatchNorm { grad, d, y } => vectorised(
                #[inline(always)]
                || grad.write(&d[range.clone()], &y[range.clone()], out),
            ),
        }
    }

    /// All the values, in parallel chunks of 256 pixels.
    fn values(&self) -> Vec<f32> {
        let mut out = vec![0.0f32; self.len()];
        let chunk = 256
            * match self {
                OutputGrad::Values(_) => 1,
                OutputGrad::BatchNorm { grad, .. } => grad.a.len(),
            };
        out.par_chunks_mut(chunk)
            .enumerate()
            .for_each(|(i, o)| self.write(i * chunk, o));
        out
    }
}

/// Zeroes the gradient `d` wherever the ReLU's output `out` is not positive.
pub fn relu_backward(out: &[f32], d: &mut [f32]) {
    d.par_chunks_mut(1 << 14)
        .zip(out.par_chunks(1 << 14))
        .for_each(|(d, o)| {
            vectorised(
                #[inline(always)]
                || {
                    d.iter_mut()
                        .zip(o)
                        .for_each(|(d, &o)| *d = if o > 0.0 { *d } else { 0.0 })
                },
            )
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
