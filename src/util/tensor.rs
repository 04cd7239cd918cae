//! The tensor type shared by the losses and the networks, and the host-side matrix helpers
//! both use.

use dfdx::prelude::{Cpu, HasShape, NoneTape, Tensor};

/// A runtime-shaped matrix (rows × columns) on device `D` with tape `T`.
pub type Matrix<D, T = NoneTape> = Tensor<(usize, usize), f32, D, T>;

/// The elements of a 1-D CPU tensor, borrowed (dfdx's `as_vec` copies). dfdx keeps a CPU
/// tensor's elements in one contiguous buffer; the first and last elements' addresses are
/// checked to be `len − 1` apart, so a tensor laid out otherwise stops here instead of being
/// misread.
pub fn cpu_data(t: &Tensor<(usize,), f32, Cpu>) -> &[f32] {
    let n = t.shape().0;
    if n == 0 {
        return &[];
    }
    let first: *const f32 = &t[[0]];
    assert_contiguous(t, first);
    // SAFETY: n contiguous elements from `first` (checked above), borrowed with `t`.
    unsafe { std::slice::from_raw_parts(first, n) }
}

/// The elements of a 1-D CPU tensor, borrowed mutably (dfdx copies its buffer first when
/// another tensor shares it). Checked like [`cpu_data`].
pub fn cpu_data_mut(t: &mut Tensor<(usize,), f32, Cpu>) -> &mut [f32] {
    let n = t.shape().0;
    if n == 0 {
        return &mut [];
    }
    let first: *mut f32 = &mut t[[0]];
    assert_contiguous(t, first);
    // SAFETY: n contiguous elements from `first` (checked above; `index_mut` made the buffer
    // this tensor's own), borrowed mutably with `t`.
    unsafe { std::slice::from_raw_parts_mut(first, n) }
}

/// Stops unless `t`'s last element sits `len − 1` elements after `first`, its first.
fn assert_contiguous(t: &Tensor<(usize,), f32, Cpu>, first: *const f32) {
    let n = t.shape().0;
    assert_eq!(
        first.wrapping_add(n - 1),
        &t[[n - 1]] as *const f32,
        "a CPU tensor whose elements are not contiguous"
    );
}

/// dst[j·rows + i] += src[i·cols + j]: adds the transpose of the row-major `rows × cols` matrix
/// `src` into the row-major `cols × rows` matrix `dst`, in 16 × 16 tiles (a column-wise pass
/// misses the cache on every value).
pub fn transpose_add(src: &[f32], dst: &mut [f32], rows: usize, cols: usize) {
    assert!(src.len() >= rows * cols && dst.len() >= rows * cols);
    const TILE: usize = 16;
    for i0 in (0..rows).step_by(TILE) {
        for j0 in (0..cols).step_by(TILE) {
            for i in i0..(i0 + TILE).min(rows) {
                for j in j0..(j0 + TILE).min(cols) {
                    dst[j * rows + i] += src[i * cols + j];
                }
            }
        }
    }
}
