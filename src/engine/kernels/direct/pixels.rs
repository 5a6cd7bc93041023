//! The direct forward pass of shallow stride-2 3-wide convolutions (EfficientNet's and
//! MobileNet's RGB stem: 3 → 32 channels, 3×3, stride 2) at the AVX-512 and AVX2 levels with output
//! *pixels* in vector lanes, read straight from the unpadded image and written straight into
//! the `[c_out, ho, wo]` planes. For 16 outputs of a row, each input row a tap row reads is
//! loaded as two 32-column runs (zero-masked in the padding) and split into even and odd
//! columns in registers (`vpermt2ps`, as `depthwise/strided.rs` does): three vectors, one per
//! tap column, each multiplied into 16 output channels' accumulators by a broadcast weight.
//! The channels-in-lanes body of [`super::compute`] instead broadcast one input value per
//! tap into four accumulators (a 4-cycle FMA chain each: half the FMA throughput) and
//! transposed its output back; on EfficientNet-Lite0's stem that was 0.62 ms against
//! onnxruntime's 0.27 (one thread, Emerald Rapids Xeon). Alone, alternated 290 calls, one
//! thread: 0.71 → 0.21 ms. [`conv_group_avx2`] does the same with 8-lane registers at the
//! AVX2 level (8 channels at a time: there are only 16 registers): 0.65 → 0.57 ms, a scan's
//! pass at forced AVX2 −0.07/−0.10 ms of 15.3–15.8.

use std::arch::x86_64::*;
use std::mem::MaybeUninit;

use super::super::geometry::{ConvGeometry, columns_inside};
use super::super::lanes::{LANES, Lanes};

/// The 16-value loads of an input row for 16 outputs, as column offsets from the first
/// column of their window: 32 columns from it (even ones: tap 0; odd ones: tap 1) and 32 from
/// two columns on (even ones: tap 2).
const RUNS: [usize; 4] = [0, 16, 2, 18];

/// Whether [`conv_group`] computes `g`: one group, stride 2 both ways, no dilation, a 3-wide
/// kernel (any height), output rows at least one register wide.
pub(super) fn takes(g: &ConvGeometry) -> bool {
    g.groups == 1
        && g.strides == [2, 2]
        && g.dilations == [1, 1]
        && g.kernel[1] == 3
        && g.wo >= LANES
}

/// Checks a group's slice lengths (`[dst, image, taps]`) against `g` (one [`takes`]
/// accepts) and `channels`; returns the output plane's length.
fn check_sizes(g: &ConvGeometry, [dst, image, taps]: [usize; 3], channels: usize) -> usize {
    let plane_out = g.ho * g.wo;
    assert!(
        takes(g)
            && (1..=LANES).contains(&channels)
            && image == g.c_in * g.h * g.w
            && dst == channels * plane_out
            && taps == g.c_in * g.kernel[0] * 3,
        "direct pixels kernel: sizes"
    );
    plane_out
}

/// For output row `oy`, each tap row (input channel `ci`, kernel row `ky`, numbered
/// `ci · kh + ky`) whose input row lies inside the image, with that row's offset in the
/// image; the others read padding (zeros) and are skipped.
#[inline(always)]
fn input_rows(g: &ConvGeometry, oy: usize) -> impl Iterator<Item = (usize, isize)> + '_ {
    let kh = g.kernel[0];
    let (py, h, w) = (g.pads_before[0] as isize, g.h as isize, g.w as isize);
    (0..g.c_in * kh).filter_map(move |row_of_taps| {
        let (ci, ky) = (row_of_taps / kh, row_of_taps % kh);
        let iy = (2 * oy + ky) as isize - py;
        (0..h)
            .contains(&iy)
            .then_some((row_of_taps, (ci * g.h) as isize * w + iy * w))
    })
}

/// `dst [channels, ho, wo]` = `bias` + the `taps [c_in · kh · 3]` (lanes: each tap's weight
/// for the group's channels, [`super::super::lanes::pack_filters`]) over `image [c_in, h, w]`
/// with `g`'s padding, every output written.
///
/// # Safety
/// The CPU must have AVX-512F; `g` must be one [`takes`] accepts.
#[target_feature(enable = "avx512f,avx2,fma")]
pub(super) unsafe fn conv_group(
    dst: &mut [MaybeUninit<f32>],
    image: &[f32],
    taps: &[Lanes],
    bias: &Lanes,
    channels: usize,
    g: &ConvGeometry,
) {
    let plane_out = check_sizes(g, [dst.len(), image.len(), taps.len()], channels);
    // Even and odd elements of the 32 values in two registers.
    let even = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
    let odd = _mm512_setr_epi32(1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31);
    let (px, w) = (g.pads_before[1] as isize, g.w as isize);
    let out = dst.as_mut_ptr().cast::<f32>();
    let taps = taps.as_ptr().cast::<f32>();
    let mut bias_regs = [_mm512_setzero_ps(); LANES];
    for (reg, &b) in bias_regs.iter_mut().zip(bias) {
        *reg = _mm512_set1_ps(b);
    }
    for oy in 0..g.ho {
        for ox0 in (0..g.wo).step_by(LANES) {
            // Input columns from `first_col`: taps 0 and 1 from the run there, tap 2 from the
            // run two columns on; the masks keep the columns inside the row.
            let first_col = 2 * ox0 as isize - px;
            let mut masks = [0u16; 4];
            for (mask, &at) in masks.iter_mut().zip(&RUNS) {
                *mask = columns_inside(first_col + at as isize, w);
            }
            let mut acc = bias_regs;
            for (row_of_taps, row_start) in input_rows(g, oy) {
                let row = image.as_ptr().wrapping_offset(row_start + first_col);
                let mut runs = [_mm512_setzero_ps(); 4];
                for ((run, &at), &mask) in runs.iter_mut().zip(&RUNS).zip(&masks) {
                    // SAFETY: the masks keep only columns inside row `iy` of plane `ci` of
                    // `image`; the pointers are formed with wrapping arithmetic and touched
                    // only there.
                    *run = unsafe { _mm512_maskz_loadu_ps(mask, row.wrapping_add(at)) };
                }
                let columns = [
                    _mm512_permutex2var_ps(runs[0], even, runs[1]),
                    _mm512_permutex2var_ps(runs[0], odd, runs[1]),
                    _mm512_permutex2var_ps(runs[2], even, runs[3]),
                ];
                // SAFETY: taps (ci, ky, 0..3) of `taps` ([c_in · kh · 3] lanes, checked).
                let row_taps = unsafe { taps.add(row_of_taps * 3 * LANES) };
                for (kx, v) in columns.iter().enumerate() {
                    for (c, a) in acc.iter_mut().enumerate() {
                        // SAFETY: lane `c` of tap `kx` of this row's taps.
                        let weight = unsafe { *row_taps.add(kx * LANES + c) };
                        *a = _mm512_fmadd_ps(_mm512_set1_ps(weight), *v, *a);
                    }
                }
            }
            let keep = (u32::MAX >> (32 - LANES.min(g.wo - ox0))) as u16;
            for (c, a) in acc.iter().enumerate() {
                if c < channels {
                    // SAFETY: the kept outputs `ox0..min(ox0 + 16, wo)` of row `oy` of plane
                    // `c` lie in `dst` (`channels` planes, checked).
                    unsafe {
                        _mm512_mask_storeu_ps(out.add(c * plane_out + oy * g.wo + ox0), keep, *a)
                    };
                }
            }
        }
    }
}

/// [`conv_group`] at the AVX2 level: units of 8 outputs, 8 channels at a time (the 16
/// registers hold 8 accumulators, the three tap columns and the loads), even and odd columns
/// split with a shuffle and a cross-lane permute.
///
/// # Safety
/// The CPU must have AVX2 and FMA; `g` must be one [`takes`] accepts.
#[target_feature(enable = "avx2,fma")]
pub(super) unsafe fn conv_group_avx2(
    dst: &mut [MaybeUninit<f32>],
    image: &[f32],
    taps: &[Lanes],
    bias: &Lanes,
    channels: usize,
    g: &ConvGeometry,
) {
    let plane_out = check_sizes(g, [dst.len(), image.len(), taps.len()], channels);
    let (px, w) = (g.pads_before[1] as isize, g.w as isize);
    let out = dst.as_mut_ptr().cast::<f32>();
    let taps = taps.as_ptr().cast::<f32>();
    // Lane `l`'s bit of a `columns_inside` mask, to turn its low 8 bits into a load mask.
    let bit = _mm256_setr_epi32(1, 2, 4, 8, 16, 32, 64, 128);
    let lane_mask = |bits: u16| {
        let b = _mm256_and_si256(_mm256_set1_epi32(i32::from(bits & 0xff)), bit);
        _mm256_cmpeq_epi32(b, bit)
    };
    for c0 in (0..channels).step_by(8) {
        let mut bias_regs = [_mm256_setzero_ps(); 8];
        for (reg, &b) in bias_regs.iter_mut().zip(&bias[c0..]) {
            *reg = _mm256_set1_ps(b);
        }
        for oy in 0..g.ho {
            for ox0 in (0..g.wo).step_by(8) {
                // As in `conv_group`, with runs of 8: columns from the window's first (even:
                // tap 0, odd: tap 1) and from two on (even: tap 2).
                let first_col = 2 * ox0 as isize - px;
                let mut masks = [_mm256_setzero_si256(); 4];
                for (mask, &at) in masks.iter_mut().zip(&RUNS_AVX2) {
                    *mask = lane_mask(columns_inside(first_col + at as isize, w));
                }
                let mut acc = bias_regs;
                for (row_of_taps, row_start) in input_rows(g, oy) {
                    let row = image.as_ptr().wrapping_offset(row_start + first_col);
                    let mut runs = [_mm256_setzero_ps(); 4];
                    for ((run, &at), &mask) in runs.iter_mut().zip(&RUNS_AVX2).zip(&masks) {
                        // SAFETY: as in `conv_group`: the masks keep only columns inside
                        // row `iy` of plane `ci`.
                        *run = unsafe { _mm256_maskload_ps(row.wrapping_add(at), mask) };
                    }
                    let split = |lo: __m256, hi: __m256, odd: bool| {
                        let pairs = if odd {
                            _mm256_shuffle_ps::<0xDD>(lo, hi)
                        } else {
                            _mm256_shuffle_ps::<0x88>(lo, hi)
                        };
                        // 64-bit elements (0, 2, 1, 3): lo's four, then hi's.
                        _mm256_castpd_ps(_mm256_permute4x64_pd::<0xD8>(_mm256_castps_pd(pairs)))
                    };
                    let columns = [
                        split(runs[0], runs[1], false),
                        split(runs[0], runs[1], true),
                        split(runs[2], runs[3], false),
                    ];
                    // SAFETY: taps (ci, ky, 0..3) of `taps` ([c_in · kh · 3] lanes, checked),
                    // lanes `c0..c0 + 8` of 16.
                    let row_taps = unsafe { taps.add(row_of_taps * 3 * LANES + c0) };
                    for (kx, v) in columns.iter().enumerate() {
                        for (c, a) in acc.iter_mut().enumerate() {
                            // SAFETY: lane `c0 + c` (< 16) of tap `kx` of this row's taps.
                            let weight = unsafe { *row_taps.add(kx * LANES + c) };
                            *a = _mm256_fmadd_ps(_mm256_set1_ps(weight), *v, *a);
                        }
                    }
                }
                let keep = lane_mask((1u16 << 8.min(g.wo - ox0)) - 1);
                for (c, a) in acc.iter().enumerate() {
                    if c0 + c < channels {
                        // SAFETY: the kept outputs `ox0..min(ox0 + 8, wo)` of row `oy` of
                        // plane `c0 + c` lie in `dst` (`channels` planes, checked).
                        unsafe {
                            _mm256_maskstore_ps(
                                out.add((c0 + c) * plane_out + oy * g.wo + ox0),
                                keep,
                                *a,
                            );
                        }
                    }
                }
            }
        }
    }
}

/// [`RUNS`] for 8 outputs.
const RUNS_AVX2: [usize; 4] = [0, 8, 2, 10];
