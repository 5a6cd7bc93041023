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
    lhs: (&[f32], bool),
    rhs: &[f32],
    [m, n, k]: [usize; 3],
    parallelism: gemm::Parallelism,
) {
    let product = Product {
        dst_row_stride: n,
        rhs_row_stride: n,
        mnk: [m, n, k],
    };
    matmul_strided(dst, accumulate, lhs, rhs, product, parallelism);
}

/// The shape of a [`matmul_strided`] product: `[m, n, k]`, with `dst` and `rhs` rows
/// `dst_row_stride` and `rhs_row_stride` values apart (≥ `n`: the product may cover only
/// the first `n` columns of wider matrices).
#[derive(Debug, Clone, Copy)]
pub(super) struct Product {
    pub dst_row_stride: usize,
    pub rhs_row_stride: usize,
    pub mnk: [usize; 3],
}

/// [`matmul_onto`] on the first `n` columns of `dst` and `rhs`, whose rows are
/// `product`'s strides apart.
pub(super) fn matmul_strided(
    dst: &mut [f32],
    accumulate: bool,
    (lhs, lhs_transposed): (&[f32], bool),
    rhs: &[f32],
    product: Product,
    parallelism: gemm::Parallelism,
) {
    let [m, n, k] = product.mnk;
    let (dst_rs, rhs_rs) = (product.dst_row_stride, product.rhs_row_stride);
    // The last row of a strided matrix needs only its first `n` values.
    let spans = |rows: usize, stride: usize| rows.checked_sub(1).map_or(0, |r| r * stride + n);
    assert!(
        dst_rs >= n
            && rhs_rs >= n
            && dst.len() >= spans(m, dst_rs)
            && lhs.len() == m * k
            && rhs.len() >= spans(k, rhs_rs),
        "matmul of [{m}, {k}] × [{k}, {n}] (row strides dst {dst_rs}, rhs {rhs_rs}) with lhs {}, \
         rhs {} and dst {} values",
        lhs.len(),
        rhs.len(),
        dst.len()
    );
    if m * n == 0 {
        return;
    }
    // Strides of lhs as [m, k]: (column stride, row stride).
    let (lhs_cs, lhs_rs) = if lhs_transposed { (m, 1) } else { (1, k) };
    // SAFETY: every matrix lies in its slice (lengths checked above against the strides),
    // and `dst` is a unique borrow, so it aliases neither input.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.as_mut_ptr(),
            1,
            dst_rs as isize,
            accumulate,
            lhs.as_ptr(),
            lhs_cs as isize,
            lhs_rs as isize,
            rhs.as_ptr(),
            1,
            rhs_rs as isize,
            if accumulate { 1.0 } else { 0.0 },
            1.0,
            false,
            false,
            false,
            parallelism,
        );
    }
}
