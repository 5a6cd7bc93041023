//! The kernels' one door to the `gemm` crate: row-major products with their slice lengths
//! checked, so the unsafe call stays in bounds. Used by the im2col convolutions
//! ([`super::conv`]) and the 1×1 ones ([`super::pointwise`]).

/// `dst [m, n] = lhs [m, k] × rhs [k, n]`, all row-major; with `lhs.1` set, `lhs.0` is the
/// row-major `[k, m]` matrix read transposed. The `gemm` crate with `parallelism` — the one
/// place the kernels call into `gemm`: the slice lengths are checked here, so the unsafe
/// call stays in bounds.
pub(super) fn matmul(
    dst: &mut [f32],
    lhs: (&[f32], bool),
    rhs: &[f32],
    mnk: [usize; 3],
    parallelism: gemm::Parallelism,
) {
    matmul_onto(dst, false, lhs, rhs, mnk, parallelism);
}

/// [`matmul`] that adds the product onto `dst`'s values when `accumulate` is set
/// (`dst += lhs × rhs`; a bias written there first costs no pass of its own).
pub(super) fn matmul_onto(
    dst: &mut [f32],
    accumulate: bool,
    (lhs, lhs_transposed): (&[f32], bool),
    rhs: &[f32],
    [m, n, k]: [usize; 3],
    parallelism: gemm::Parallelism,
) {
    assert!(
        dst.len() == m * n && lhs.len() == m * k && rhs.len() == k * n,
        "matmul of [{m}, {k}] × [{k}, {n}] with lhs {}, rhs {} and dst {} values",
        lhs.len(),
        rhs.len(),
        dst.len()
    );
    // Strides of lhs as [m, k]: (column stride, row stride).
    let (lhs_cs, lhs_rs) = if lhs_transposed { (m, 1) } else { (1, k) };
    // SAFETY: every matrix lies in its slice (lengths checked above, strides from the same
    // shapes), and `dst` is a unique borrow, so it aliases neither input.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.as_mut_ptr(),
            1,
            n as isize,
            accumulate,
            lhs.as_ptr(),
            lhs_cs as isize,
            lhs_rs as isize,
            rhs.as_ptr(),
            1,
            n as isize,
            if accumulate { 1.0 } else { 0.0 },
            1.0,
            false,
            false,
            false,
            parallelism,
        );
    }
}
