//! The columns of a 1×1 product left past a register-blocked or `gemm` kernel's panels
//! (a map's last 1–4 pixels: 7² = 48 + 1, 14² = 4 · 48 + 4) as dot products of each filter
//! with each column: portable per SIMD level, and four filters at a time at AVX-512.

#[cfg(target_arch = "x86_64")]
use std::arch::x86_64::*;

use super::simd;

/// Adds `weight [rows, c_in] × x [c_in, hw]`'s columns `first..hw` onto `dst [rows, hw]`, one
/// dot product per output over a copy of each column made contiguous, at the process's
/// SIMD level.
pub(super) fn dot_columns(
    dst: &mut [f32],
    weight: &[f32],
    x: &[f32],
    [c_in, hw]: [usize; 2],
    first: usize,
) {
    // [hw - first, c_in]: the columns as rows.
    let mut columns = Vec::with_capacity((hw - first) * c_in);
    for p in first..hw {
        columns.extend(x.iter().skip(p).step_by(hw));
    }
    let task = DotColumns {
        dst,
        weight,
        columns: &columns,
        c_in,
        hw,
        first,
    };
    #[cfg(target_arch = "x86_64")]
    if simd::active() == simd::SimdLevel::Avx512 {
        // SAFETY: `simd::active` only reports AVX-512 on CPUs that have it.
        unsafe { avx512(task) };
        return;
    }
    simd::run_at_level!(simd::active(), portable, task, DotColumns<'_>);
}

/// [`dot_columns`]' operands: `columns [hw - first, c_in]`.
struct DotColumns<'a> {
    dst: &'a mut [f32],
    weight: &'a [f32],
    columns: &'a [f32],
    c_in: usize,
    hw: usize,
    first: usize,
}

/// [`dot_columns`]' arithmetic, one dot product per output, compiled once per SIMD level.
#[inline(always)]
fn portable<const FMA: bool>(task: DotColumns<'_>) {
    let DotColumns {
        dst,
        weight,
        columns,
        c_in,
        hw,
        first,
    } = task;
    for (row, w) in dst.chunks_exact_mut(hw).zip(weight.chunks_exact(c_in)) {
        for (out, column) in row[first..].iter_mut().zip(columns.chunks_exact(c_in)) {
            *out += super::super::linear::dot::<FMA>(w, column);
        }
    }
}

/// [`dot_columns`] at the AVX-512 level: four filters at a time, one accumulator
/// register each (four independent FMA chains; the portable dot product's single register
/// was one 4-cycle chain per output), each column vector loaded once for the four, the last
/// `c_in % 16` values through masked loads. The 1–4 columns past the 8 × 48 kernel's on 7²
/// and 14² maps: a scan's pass, one thread, alternated with the portable dot products in
/// one process (Emerald Rapids): −0.16 ms of 10.8–11.0 (twice).
///
/// # Safety
/// The CPU must have AVX-512F.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx2,fma")]
unsafe fn avx512(task: DotColumns<'_>) {
    let DotColumns {
        dst,
        weight,
        columns,
        c_in,
        hw,
        first,
    } = task;
    let rows = weight.len().checked_div(c_in).unwrap_or(0);
    assert!(
        dst.len() >= rows * hw && columns.len() == (hw - first) * c_in,
        "pointwise dot columns: sizes"
    );
    for r0 in (0..rows).step_by(4) {
        let w = &weight[r0 * c_in..];
        for (p, column) in (first..hw).zip(columns.chunks_exact(c_in)) {
            // SAFETY: AVX-512F is enabled here; the rows and the column hold `c_in` values.
            let sums = unsafe {
                match rows - r0 {
                    1 => dots_avx512::<1>(w, column, c_in),
                    2 => dots_avx512::<2>(w, column, c_in),
                    3 => dots_avx512::<3>(w, column, c_in),
                    _ => dots_avx512::<4>(w, column, c_in),
                }
            };
            for (r, sum) in sums.iter().enumerate().take(4.min(rows - r0)) {
                dst[(r0 + r) * hw + p] += sum;
            }
        }
    }
}

/// The dot products of the first `N` rows of `weight` (`c_in` values each) with `column`
/// (lanes past `N` zero).
///
/// # Safety
/// AVX-512F must be enabled by the caller; `weight` must hold `N · c_in` values and
/// `column` `c_in`.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
unsafe fn dots_avx512<const N: usize>(weight: &[f32], column: &[f32], c_in: usize) -> [f32; 4] {
    assert!(
        weight.len() >= N * c_in && column.len() == c_in,
        "pointwise dots: sizes"
    );
    let (w, col) = (weight.as_ptr(), column.as_ptr());
    let tail = c_in % 16;
    let whole = c_in - tail;
    // SAFETY: the reads stay inside the `N` rows and the column (checked above); the masked
    // loads read only the last `tail` values; AVX-512F is enabled by the caller.
    unsafe {
        let mut acc = [_mm512_setzero_ps(); N];
        for k in (0..whole).step_by(16) {
            let x = _mm512_loadu_ps(col.add(k));
            for (r, a) in acc.iter_mut().enumerate() {
                *a = _mm512_fmadd_ps(_mm512_loadu_ps(w.add(r * c_in + k)), x, *a);
            }
        }
        if tail > 0 {
            let keep = ((1u32 << tail) - 1) as u16;
            let x = _mm512_maskz_loadu_ps(keep, col.add(whole));
            for (r, a) in acc.iter_mut().enumerate() {
                let wv = _mm512_maskz_loadu_ps(keep, w.add(r * c_in + whole));
                *a = _mm512_fmadd_ps(wv, x, *a);
            }
        }
        let mut sums = [0f32; 4];
        for (sum, a) in sums.iter_mut().zip(&acc) {
            *sum = _mm512_reduce_add_ps(*a);
        }
        sums
    }
}
