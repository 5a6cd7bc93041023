//! The stride-1 depthwise forward pass at the AVX-512 level for 3-wide kernels, one plane at
//! a time, read straight from the unpadded input plane: each tap of a kernel row loads
//! the 16 input columns under 16 outputs of a row (zero-masked where they fall in the
//! padding), so neither a padded copy of the plane ([`super::PaddedLayout`]) nor a transpose
//! of 16 planes into vector lanes (`depthwise/blocked.rs`) is made first. Outputs go in units
//! of 16 along a row, up to [`UNITS`] units (of one or more rows) side by side, each its own
//! chain of multiply-adds.

use std::arch::x86_64::*;
use std::mem::MaybeUninit;

use super::super::geometry::{ConvGeometry, columns_inside as columns};
use super::{PREFETCH_ROWS, prefetch_rows, prefetch_rows_for_write};

/// Tallest kernel [`plane`] takes.
const MAX_KH: usize = 5;

/// Output units (16 outputs of a row each) computed side by side: eight independent chains
/// of multiply-adds cover the FMA latency of both ports.
const UNITS: usize = 8;

/// Narrowest output row [`takes`] accepts: below it most of each unit's lanes would idle
/// (7×7 maps stay with channels in lanes).
const MIN_WO: usize = 12;

/// Widest output row [`takes`] accepts: [`UNITS`] units.
const MAX_WO: usize = 16 * UNITS;

/// Whether [`plane`] computes `g`: stride 1 and no dilation both ways, a kernel 3 wide (up to
/// [`MAX_KH`] tall), rows of [`MIN_WO`] to [`MAX_WO`] outputs. A scan's pass over
/// EfficientNet-Lite0 (one thread, summaries included, 290 passes each way alternated in one
/// process, 2-core Intel Xeon, Emerald Rapids), the padded-copy planes kernel → this one for
/// its 3×3 stride-1 layers (32 × 112², 144 × 56², 480 × 14², 1152 × 7² stays in lanes):
/// 11.32 → 11.08 and 11.42 → 11.18 ms. A 5-wide version too was within noise over the pass
/// and slower than channels in lanes on the 5×5 layers at 14² (672 × 14²: 0.23 → 0.25 ms), so
/// those stay there.
pub(super) fn takes(g: &ConvGeometry) -> bool {
    g.strides == [1, 1]
        && g.dilations == [1, 1]
        && g.kernel[0] <= MAX_KH
        && g.kernel[1] == KW
        && (MIN_WO..=MAX_WO).contains(&g.wo)
}

/// The kernel width [`plane`] takes.
const KW: usize = 3;

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
    assert!(
        takes(g) && src.len() == g.h * g.w && dst.len() == g.ho * g.wo && taps.len() == kh * kw,
        "unpadded depthwise plane: sizes"
    );
    // Each output row's units together (several rows where a row has fewer than `UNITS`),
    // the load masks made once per plane (they depend only on the column).
    let [py, px] = g.pads_before;
    let (h, w) = (g.h as isize, g.w as isize);
    let per_row = g.wo.div_ceil(16);
    let rows_per_group = (UNITS / per_row).max(1);
    // Per unit of a row and tap column: the lanes whose input column lies in the row.
    let mut masks = [[0u16; KW]; UNITS];
    for (v, unit_masks) in masks.iter_mut().enumerate().take(per_row) {
        for (kx, m) in unit_masks.iter_mut().enumerate() {
            *m = columns((16 * v + kx) as isize - px as isize, w);
        }
    }
    // Per unit of a row, the outputs it stores.
    let mut keep = [0u16; UNITS];
    for (v, k) in keep.iter_mut().enumerate().take(per_row) {
        *k = (u32::MAX >> (32 - 16.min(g.wo - 16 * v))) as u16;
    }
    let bias = _mm512_set1_ps(bias);
    let out = dst.as_mut_ptr().cast::<f32>();
    for oy0 in (0..g.ho).step_by(rows_per_group) {
        let rows = rows_per_group.min(g.ho - oy0);
        let mut acc = [bias; UNITS];
        // The input rows the group `PREFETCH_ROWS` output rows on adds.
        let ahead = (oy0 + PREFETCH_ROWS + kh - 1) as isize - py as isize;
        prefetch_rows(src, g.w, ahead..ahead + rows as isize);
        // And the output rows as many rows on, for writing.
        let out_ahead = (oy0 + PREFETCH_ROWS) as isize;
        prefetch_rows_for_write(dst, g.wo, out_ahead..out_ahead + rows as isize);
        for ky in 0..kh {
            let mut row_taps = [_mm512_setzero_ps(); KW];
            for (kx, t) in row_taps.iter_mut().enumerate() {
                *t = _mm512_set1_ps(taps[ky * KW + kx]);
            }
            for r in 0..rows {
                let iy = (oy0 + r + ky) as isize - py as isize;
                if iy < 0 || iy >= h {
                    continue; // a padding row (all zeros)
                }
                let row = src.as_ptr().wrapping_offset(iy * w - px as isize);
                for v in 0..per_row {
                    // In a register for the row's taps (the array is indexed at run time).
                    let mut a = acc[r * per_row + v];
                    for kx in 0..KW {
                        // SAFETY: the mask keeps only columns inside row `iy` of `src`; the
                        // pointer is formed with wrapping arithmetic and touched only there.
                        let x = unsafe {
                            _mm512_maskz_loadu_ps(masks[v][kx], row.wrapping_add(16 * v + kx))
                        };
                        a = _mm512_fmadd_ps(row_taps[kx], x, a);
                    }
                    acc[r * per_row + v] = a;
                }
            }
        }
        for r in 0..rows {
            for v in 0..per_row {
                // SAFETY: the kept outputs of unit `v` of row `oy0 + r` lie in `dst`.
                unsafe {
                    _mm512_mask_storeu_ps(
                        out.add((oy0 + r) * g.wo + 16 * v),
                        keep[v],
                        acc[r * per_row + v],
                    );
                }
            }
        }
    }
}
