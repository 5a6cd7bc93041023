//! The stride-2 depthwise forward pass at the AVX-512 level for 3-wide kernels, one plane at
//! a time, read straight from the unpadded input plane: for 16 outputs of a row, each kernel
//! row loads 32 input columns from the block's first and 32 from two columns on (zero-masked
//! where they fall in the padding) and splits them into even and odd columns in registers
//! (`vpermt2ps`), instead of first copying the plane into a padded, column-split buffer as
//! [`super::PaddedLayout`] does. For EfficientNet-Lite0's 96 × 112² layer that copy, reading
//! a 4.8 MB input from L3, was two thirds of the layer's time.

use std::arch::x86_64::*;
use std::mem::MaybeUninit;

use super::super::geometry::{ConvGeometry, columns_inside as columns};
use super::{PREFETCH_ROWS, prefetch_rows, prefetch_rows_for_write};

/// Whether [`plane`] computes `g`: stride 2 both ways, no dilation, a 3-wide kernel. A
/// version with 5-wide kernels too (a third pair of taps) was slower than the
/// channels-in-lanes kernel on EfficientNet-Lite0's. One thread, medians of 55, 2-core Intel
/// Xeon (Emerald Rapids), before → this kernel: 96 × 112² 3×3 (planes) 0.53 → 0.47 ms (input
/// not in cache: 0.66–0.68 → 0.48), 240 × 28² 3×3 (lanes) 0.10 → 0.08; 144 × 56² 5×5 (lanes)
/// 0.29 → 0.31, 672 × 14² 5×5 (lanes) 0.08 → 0.20 (seven outputs a row: nine of each
/// register's 16 lanes idle).
pub(super) fn takes(g: &ConvGeometry) -> bool {
    g.strides == [2, 2] && g.dilations == [1, 1] && g.kernel[1] == 3
}

/// One output plane `dst [ho, wo]` = `bias` + the `taps [kh · kw]` over the input plane
/// `src [h, w]` with `g`'s padding, every output written.
///
/// # Safety
/// The CPU must have AVX-512F; `g` must be one [`takes`] accepts.
#[target_feature(enable = "avx512f,avx2,fma")]
pub(super) unsafe fn plane(
    dst: &mut [MaybeUninit<f32>],
    src: &[f32],
    taps: &[f32],
    bias: f32,
    g: &ConvGeometry,
) {
    let [kh, kw] = g.kernel;
    let [py, px] = g.pads_before;
    assert!(
        takes(g) && src.len() == g.h * g.w && dst.len() == g.ho * g.wo && taps.len() == kh * kw,
        "strided depthwise plane: sizes"
    );
    // Even and odd elements of the 32 values in two registers.
    let even = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
    let odd = _mm512_setr_epi32(1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31);
    let w = g.w as isize;
    // Units of 16 outputs (a row's blocks, row after row), `UNITS` at a time: one FMA chain
    // each, so their latencies overlap (one accumulator alone waited on its last FMA).
    let per_row = g.wo.div_ceil(16);
    let units = g.ho * per_row;
    let bias = _mm512_set1_ps(bias);
    let out = dst.as_mut_ptr().cast::<f32>();
    for u0 in (0..units).step_by(UNITS) {
        let mut acc = [bias; UNITS];
        // Per unit: output row, first output column, and per pair of taps the masks of its
        // two loads (zero where the columns fall in the padding).
        let mut at = [(usize::MAX, 0usize); UNITS];
        let mut masks = [[(0u16, 0u16); PAIRS]; UNITS];
        for (k, (unit_at, unit_masks)) in at.iter_mut().zip(&mut masks).enumerate() {
            let u = u0 + k;
            if u >= units {
                break;
            }
            let (oy, ox0) = (u / per_row, u % per_row * 16);
            *unit_at = (oy, ox0);
            for (pair, m) in unit_masks.iter_mut().enumerate() {
                let start = 2 * ox0 as isize - px as isize + 2 * pair as isize;
                *m = (columns(start, w), columns(start + 16, w));
            }
        }
        // The two input rows the group `PREFETCH_ROWS` output rows on adds.
        let ahead = (2 * (at[0].0 + PREFETCH_ROWS) + kh) as isize - py as isize;
        prefetch_rows(src, g.w, ahead - 2..ahead);
        if at[0].1 == 0 {
            // At a row's first unit, the output row as many rows on, for writing.
            let out_ahead = (at[0].0 + PREFETCH_ROWS) as isize;
            prefetch_rows_for_write(dst, g.wo, out_ahead..out_ahead + 1);
        }
        for ky in 0..kh {
            let tap = |kx: usize| _mm512_set1_ps(taps[ky * kw + kx]);
            let row_taps = [tap(0), tap(1), tap(2)];
            for k in 0..UNITS {
                let (oy, ox0) = at[k];
                let iy = (2 * oy + ky) as isize - py as isize;
                if oy == usize::MAX || iy < 0 || iy >= g.h as isize {
                    continue; // past the last unit, or a padding row (all zeros)
                }
                let first_col = 2 * ox0 as isize - px as isize;
                let row = src.as_ptr().wrapping_offset(iy * w + first_col);
                for (pair, &(m_lo, m_hi)) in masks[k].iter().enumerate() {
                    // SAFETY: the masks keep only columns inside row `iy` of `src`; the
                    // pointers are formed with wrapping arithmetic and touched only there.
                    let (lo, hi) = unsafe {
                        (
                            _mm512_maskz_loadu_ps(m_lo, row.wrapping_add(2 * pair)),
                            _mm512_maskz_loadu_ps(m_hi, row.wrapping_add(2 * pair + 16)),
                        )
                    };
                    let kx = 2 * pair;
                    let e = _mm512_permutex2var_ps(lo, even, hi);
                    acc[k] = _mm512_fmadd_ps(row_taps[kx], e, acc[k]);
                    if kx + 1 < kw {
                        let o = _mm512_permutex2var_ps(lo, odd, hi);
                        acc[k] = _mm512_fmadd_ps(row_taps[kx + 1], o, acc[k]);
                    }
                }
            }
        }
        for (k, &(oy, ox0)) in at.iter().enumerate() {
            if oy == usize::MAX {
                break;
            }
            let keep = (u32::MAX >> (32 - 16.min(g.wo - ox0))) as u16;
            // SAFETY: the kept outputs `ox0..min(ox0 + 16, wo)` of row `oy` lie in `dst`.
            unsafe { _mm512_mask_storeu_ps(out.add(oy * g.wo + ox0), keep, acc[k]) };
        }
    }
}

/// Output units [`plane`] computes side by side.
const UNITS: usize = 4;

/// Pairs of taps per kernel row, each read as one even/odd split of two runs: taps (0, 1)
/// from the run at the window's first column, tap 2 from the run two columns on.
const PAIRS: usize = 2;
