//! Every matrix product of the CPU networks goes through [`gemm`]: the SIMD level it runs at
//! and the floating-point work it does are decided and counted here.
//!
//! The `gemm` crate (0.19, feature `x86-v4`) picks its kernels at run time: AVX-512 where the
//! CPU has `avx512f`, else AVX2 + FMA, else scalar; a forced AVX2 ([`crate::util::simd`])
//! takes the AVX2 kernels on any CPU that has them.
//! Results differ between levels in the last bits (different accumulation order), never
//! between thread counts.

use std::sync::atomic::{AtomicU64, Ordering};

static FLOPS: AtomicU64 = AtomicU64::new(0);

/// Floating-point operations (2·m·n·k per product) done by [`gemm`] since the process started,
/// over all threads.
pub fn flops_done() -> u64 {
    FLOPS.load(Ordering::Relaxed)
}

/// One operand of a product: its values and the distance between consecutive rows and between
/// consecutive columns (row-major: (columns, 1); a stored transpose: (1, rows)). Rows may
/// overlap: the shifted-view convolution of [`super::kernels`] reads its patches this way.
#[derive(Debug, Clone, Copy)]
pub(crate) struct View<'a> {
    pub values: &'a [f32],
    pub row_stride: usize,
    pub col_stride: usize,
}

impl<'a> View<'a> {
    /// A `rows` × `cols` matrix stored row-major, or, with `transposed`, the transpose of a
    /// `cols` × `rows` matrix stored row-major.
    fn dense(values: &'a [f32], rows: usize, cols: usize, transposed: bool) -> Self {
        let (row_stride, col_stride) = if transposed { (1, rows) } else { (cols, 1) };
        View {
            values,
            row_stride,
            col_stride,
        }
    }

    /// The same values read as the transpose.
    fn transposed(self) -> Self {
        View {
            values: self.values,
            row_stride: self.col_stride,
            col_stride: self.row_stride,
        }
    }

    /// Panics unless a `rows` × `cols` matrix with these strides lies inside the values.
    fn check(&self, rows: usize, cols: usize, what: &str) {
        if rows > 0 && cols > 0 {
            let last = (rows - 1) * self.row_stride + (cols - 1) * self.col_stride;
            assert!(
                last < self.values.len(),
                "{what}: a {rows} × {cols} view with strides ({}, {}) needs {} values, has {}",
                self.row_stride,
                self.col_stride,
                last + 1,
                self.values.len()
            );
        }
    }
}

/// c (m × n) = a (m × k) · b (k × n), or += with `accumulate`; each operand row-major, or its
/// transpose when the flag is set (a stored k × m, b stored n × k). Single-threaded: callers
/// parallelise over images.
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
    FLOPS.fetch_add(2 * (m * n * k) as u64, Ordering::Relaxed);
    let (a, b) = (View::dense(a, m, k, a_t), View::dense(b, k, n, b_t));
    product((m, n, k), a, b, (c, n), accumulate, gemm::Parallelism::None);
}

/// c (m × n, rows `c_row_stride` apart) = a · b, or += with `accumulate`, for operands given
/// as [`View`]s. Single-threaded. Not counted in [`flops_done`]: a caller whose products
/// include discarded work counts the useful part with [`count_flops`].
pub(crate) fn gemm_views(
    (m, n, k): (usize, usize, usize),
    a: View,
    b: View,
    (c, c_row_stride): (&mut [f32], usize),
    accumulate: bool,
) {
    product(
        (m, n, k),
        a,
        b,
        (c, c_row_stride),
        accumulate,
        gemm::Parallelism::None,
    );
}

/// Adds `flops` floating-point operations to [`flops_done`] (for [`gemm_views`]' callers).
pub(crate) fn count_flops(flops: u64) {
    FLOPS.fetch_add(flops, Ordering::Relaxed);
}

/// [`gemm`] spread over the current rayon pool's threads by the `gemm` crate itself, which splits
/// the output into tiles: every element still sums its k terms in one fixed order (the crate's
/// depth blocking depends on m, n and k only), so the result does not depend on the number of
/// threads (`tests/models.rs` checks a whole MLP step on 1 and 3 threads). For one large product
/// (an MLP layer over a whole batch) instead of many small ones.
#[allow(clippy::too_many_arguments)]
pub(crate) fn gemm_threaded(
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
    FLOPS.fetch_add(2 * (m * n * k) as u64, Ordering::Relaxed);
    let threads = gemm::Parallelism::Rayon(rayon::current_num_threads());
    let (a, b) = (View::dense(a, m, k, a_t), View::dense(b, k, n, b_t));
    product((m, n, k), a, b, (c, n), accumulate, threads);
}

/// The product behind [`gemm`], [`gemm_views`] and [`gemm_threaded`], split over threads as
/// `parallelism` says.
fn product(
    (m, n, k): (usize, usize, usize),
    a: View,
    b: View,
    (c, c_row_stride): (&mut [f32], usize),
    accumulate: bool,
    parallelism: gemm::Parallelism,
) {
    a.check(m, k, "left operand");
    b.check(k, n, "right operand");
    assert!(n <= c_row_stride || m <= 1, "output rows overlap");
    assert!(
        m == 0 || n == 0 || (m - 1) * c_row_stride + n <= c.len(),
        "output: {m} × {n} with rows {c_row_stride} apart does not fit in {} values",
        c.len()
    );
    // The crate's kernels run down the output's columns: `gemm::gemm` computes a row-major
    // output as its transpose, cᵀ = bᵀ · aᵀ (column-major). Its forced-AVX2 entry point
    // ([`avx2_gemm`]) skips that step and would copy the left operand into packed panels on
    // every call (a fifth of an AVX2 ResNet step), so it is done here, for every level, in
    // exactly the crate's own way.
    let transpose = c_row_stride > 1;
    let (m, n, a, b, c_col_stride, c_row_stride) = if transpose {
        (n, m, b.transposed(), a.transposed(), c_row_stride, 1)
    } else {
        (m, n, a, b, 1, c_row_stride)
    };
    // SAFETY: the views' checks and the assert above keep every matrix inside its slice, and
    // the output's rows do not overlap; the AVX2 path is only taken after `set_simd` found avx2
    // and fma on this CPU.
    unsafe {
        chosen_product()(
            m,
            n,
            k,
            c.as_mut_ptr(),
            c_col_stride as isize,
            c_row_stride as isize,
            accumulate,
            a.values.as_ptr(),
            a.col_stride as isize,
            a.row_stride as isize,
            b.values.as_ptr(),
            b.col_stride as isize,
            b.row_stride as isize,
            1.0,
            1.0,
            false,
            false,
            false,
            parallelism,
        );
    }
}

/// The product at the level [`crate::util::simd::set_simd`] chose.
fn chosen_product() -> Product {
    #[cfg(target_arch = "x86_64")]
    if crate::util::simd::avx2_forced() {
        return avx2_gemm;
    }
    gemm::gemm::<f32>
}

/// GFLOP/s of one `size`³ product (row-major, no accumulation) spread over the current rayon
/// pool's threads at the chosen level: the sgemm peak that `icm bench --sgemm` compares a
/// training step's products with. The best of `reps` timings after one warm-up.
pub fn sgemm_gflops(size: usize, reps: usize) -> f64 {
    let a: Vec<f32> = (0..size * size).map(|i| (i % 7) as f32 * 0.1).collect();
    let b = a.clone();
    let mut c = vec![0.0f32; size * size];
    let threads = rayon::current_num_threads();
    let mut best = f64::INFINITY;
    for rep in 0..=reps {
        let start = std::time::Instant::now();
        // SAFETY: three size × size row-major matrices.
        unsafe {
            chosen_product()(
                size,
                size,
                size,
                c.as_mut_ptr(),
                1,
                size as isize,
                false,
                a.as_ptr(),
                1,
                size as isize,
                b.as_ptr(),
                1,
                size as isize,
                1.0,
                1.0,
                false,
                false,
                false,
                gemm::Parallelism::Rayon(threads),
            );
        }
        if rep > 0 {
            best = best.min(start.elapsed().as_secs_f64());
        }
    }
    std::hint::black_box(&c);
    2.0 * (size as f64).powi(3) / best / 1e9
}

/// The signature of the `gemm` crate's f32 product.
type Product = unsafe fn(
    usize,
    usize,
    usize,
    *mut f32,
    isize,
    isize,
    bool,
    *const f32,
    isize,
    isize,
    *const f32,
    isize,
    isize,
    f32,
    f32,
    bool,
    bool,
    bool,
    gemm::Parallelism,
);

/// The `gemm` crate's AVX2 + FMA f32 product, called directly (its own dispatch would pick
/// AVX-512): the same driver and microkernels it uses for x86-64-v3 CPUs.
#[allow(clippy::too_many_arguments)]
#[cfg(target_arch = "x86_64")]
unsafe fn avx2_gemm(
    m: usize,
    n: usize,
    k: usize,
    dst: *mut f32,
    dst_cs: isize,
    dst_rs: isize,
    read_dst: bool,
    lhs: *const f32,
    lhs_cs: isize,
    lhs_rs: isize,
    rhs: *const f32,
    rhs_cs: isize,
    rhs_rs: isize,
    alpha: f32,
    beta: f32,
    conj_dst: bool,
    conj_lhs: bool,
    conj_rhs: bool,
    parallelism: gemm::Parallelism,
) {
    use gemm_common::simd::{MixedSimd, V3};
    use gemm_f32::microkernel::fma::f32::{H_M, H_N, H_UKR, MR_DIV_N, NR, UKR};
    const N: usize = 8;
    let simd = <V3 as MixedSimd<f32, f32, f32, f32>>::try_new().expect("checked by set_simd");
    gemm_common::gemm::gemm_basic_generic::<_, f32, N, { MR_DIV_N * N }, NR, MR_DIV_N, H_M, H_N>(
        simd,
        m,
        n,
        k,
        dst,
        dst_cs,
        dst_rs,
        read_dst,
        lhs,
        lhs_cs,
        lhs_rs,
        rhs,
        rhs_cs,
        rhs_rs,
        alpha,
        beta,
        conj_dst,
        conj_lhs,
        conj_rhs,
        |a, b, c| a * b + c,
        &UKR,
        &H_UKR,
        false,
        parallelism,
    );
}
