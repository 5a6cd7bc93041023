//! The lane loops of [`super::summarise`] on x86-64: AVX2 for every tile, AVX-512 for large
//! ones, each giving the portable path's bits (the same operations per lane in the same
//! order, and one shared reduction across lanes).

use std::arch::x86_64::*;

use super::{LANES, Reduced, SUM_BLOCK};

/// [`super::lanes_portable`] then [`super::LaneState::reduce`] with AVX2 intrinsics: the
/// same operations per lane in the same order (f32 partial sums over [`SUM_BLOCK`] chunks,
/// each widened exactly to f64 and added), and the same reduction tree in registers, so the
/// results are identical. Reducing in registers
/// instead of through a stored lane state (`summarise_tiles`, 2 threads, medians of six
/// bests of 30, 2-core AMD EPYC Zen 3, AVX2): 18,432 tiles of 7×7 0.52 → 0.31 ms, 10,752
/// of 14×14 0.47 → 0.37 ms, 1,536 of 112² unchanged (3.1–3.2 ms, memory-bound).
#[target_feature(enable = "avx2")]
pub(super) fn reduced_avx2(whole: &[f32]) -> Reduced {
    let zero = _mm256_setzero_ps();
    let mut sum = [_mm256_setzero_pd(); 4];
    let mut min = [_mm256_set1_ps(f32::INFINITY); 2];
    let mut max = [_mm256_set1_ps(f32::NEG_INFINITY); 2];
    let mut max_chunk = [_mm256_setzero_si256(); 2];
    let mut nonpositive = [_mm256_setzero_si256(); 2];
    for (b, block) in whole.chunks(LANES * SUM_BLOCK).enumerate() {
        let mut part = [_mm256_setzero_ps(); 2];
        for (j, chunk) in block.chunks_exact(LANES).enumerate() {
            let index = _mm256_set1_epi32((b * SUM_BLOCK + j) as i32);
            for half in 0..2 {
                // SAFETY: `chunk` holds LANES = 16 values, so both 8-value loads are in bounds.
                let v = unsafe { _mm256_loadu_ps(chunk.as_ptr().add(8 * half)) };
                part[half] = _mm256_add_ps(part[half], v);
                // MINPS/MAXPS return the second operand unless the first is strictly beyond it.
                min[half] = _mm256_min_ps(v, min[half]);
                let greater = _mm256_castps_si256(_mm256_cmp_ps::<_CMP_GT_OQ>(v, max[half]));
                max[half] = _mm256_max_ps(v, max[half]);
                max_chunk[half] = _mm256_blendv_epi8(max_chunk[half], index, greater);
                let le = _mm256_castps_si256(_mm256_cmp_ps::<_CMP_LE_OQ>(v, zero));
                // A true compare is all ones (−1): subtracting it counts.
                nonpositive[half] = _mm256_sub_epi32(nonpositive[half], le);
            }
        }
        for (half, &p) in part.iter().enumerate() {
            let low = _mm256_cvtps_pd(_mm256_castps256_ps128(p));
            let high = _mm256_cvtps_pd(_mm256_extractf128_ps::<1>(p));
            sum[2 * half] = _mm256_add_pd(sum[2 * half], low);
            sum[2 * half + 1] = _mm256_add_pd(sum[2 * half + 1], high);
        }
    }
    let lanes = LaneRegs {
        sum,
        min,
        max,
        max_chunk,
        nonpositive,
    };
    reduce_lane_regs(&lanes, whole)
}

/// A [`super::LaneState`] in AVX2 registers: sums of lanes 0–3, 4–7, 8–11, 12–15; the other
/// fields lanes 0–7 and 8–15.
struct LaneRegs {
    sum: [__m256d; 4],
    min: [__m256; 2],
    max: [__m256; 2],
    max_chunk: [__m256i; 2],
    nonpositive: [__m256i; 2],
}

/// [`super::LaneState::reduce`] of lanes held in registers, with `whole` the values they saw (for
/// the max's value at its position).
#[target_feature(enable = "avx2")]
#[inline]
fn reduce_lane_regs(lanes: &LaneRegs, whole: &[f32]) -> Reduced {
    let LaneRegs {
        sum,
        min,
        max,
        max_chunk,
        nonpositive,
    } = lanes;
    // Sums: registers hold lanes 0–3, 4–7, 8–11, 12–15; widths 8, 4, 2, 1 as in `reduce`.
    let s = _mm256_add_pd(_mm256_add_pd(sum[0], sum[2]), _mm256_add_pd(sum[1], sum[3]));
    let s = _mm_add_pd(_mm256_castpd256_pd128(s), _mm256_extractf128_pd::<1>(s));
    let s = _mm_cvtsd_f64(_mm_add_sd(s, _mm_unpackhi_pd(s, s)));
    // Minima: `select_min(upper, lower)` is MINPS(upper, lower).
    let m = _mm256_min_ps(min[1], min[0]);
    let m = _mm_min_ps(_mm256_extractf128_ps::<1>(m), _mm256_castps256_ps128(m));
    let m = _mm_min_ps(_mm_movehl_ps(m, m), m);
    let m = _mm_cvtss_f32(_mm_min_ss(_mm_shuffle_ps::<0b01>(m, m), m));
    // The max (its zero's sign aside, which the position settles), then the smallest
    // position among the lanes holding it.
    let top = _mm256_max_ps(max[0], max[1]);
    let top = _mm_max_ps(_mm256_castps256_ps128(top), _mm256_extractf128_ps::<1>(top));
    let top = _mm_max_ps(top, _mm_movehl_ps(top, top));
    let top = _mm256_set1_ps(_mm_cvtss_f32(_mm_max_ss(
        top,
        _mm_shuffle_ps::<0b01>(top, top),
    )));
    let none = _mm256_set1_epi32(-1); // u32::MAX
    let lane = [
        _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7),
        _mm256_setr_epi32(8, 9, 10, 11, 12, 13, 14, 15),
    ];
    let mut first = none;
    for half in 0..2 {
        let holds = _mm256_castps_si256(_mm256_and_ps(
            _mm256_cmp_ps::<_CMP_EQ_OQ>(max[half], top),
            _mm256_cmp_ps::<_CMP_GT_OQ>(max[half], _mm256_set1_ps(f32::NEG_INFINITY)),
        ));
        // chunk · 16 + lane (positions fit u32: a tile is one feature map).
        let at = _mm256_add_epi32(_mm256_slli_epi32::<4>(max_chunk[half]), lane[half]);
        first = _mm256_min_epu32(first, _mm256_blendv_epi8(none, at, holds));
    }
    let first = _mm_min_epu32(
        _mm256_castsi256_si128(first),
        _mm256_extracti128_si256::<1>(first),
    );
    let first = _mm_min_epu32(first, _mm_shuffle_epi32::<0b1110>(first));
    let first = _mm_min_epu32(first, _mm_shuffle_epi32::<0b01>(first));
    let first = _mm_cvtsi128_si32(first) as u32;
    let counts = _mm256_add_epi32(nonpositive[0], nonpositive[1]);
    let mut count_lanes = [0u32; 8];
    // SAFETY: 8 u32 lanes into an 8-lane array.
    unsafe { _mm256_storeu_si256(count_lanes.as_mut_ptr().cast::<__m256i>(), counts) };
    let (max, argmax) = match first {
        u32::MAX => (f32::NEG_INFINITY, usize::MAX),
        at => (whole[at as usize], at as usize),
    };
    Reduced {
        sum: s,
        min: m,
        max,
        argmax,
        nonpositive: count_lanes.iter().map(|&n| u64::from(n)).sum(),
    }
}

/// [`reduced_avx2`] with AVX-512 registers: one register is a whole chunk of 16 lanes, half
/// the instructions per value, the same
/// operations per lane in the same order and the same reduction (the registers split into
/// [`LaneRegs`] at the end), so the results are identical again.
#[target_feature(enable = "avx512f,avx2")]
pub(super) fn reduced_avx512(whole: &[f32]) -> Reduced {
    let zero = _mm512_setzero_ps();
    // Sums of lanes 0–7 and 8–15.
    let mut sum = [_mm512_setzero_pd(); 2];
    let mut min = _mm512_set1_ps(f32::INFINITY);
    let mut max = _mm512_set1_ps(f32::NEG_INFINITY);
    let mut max_chunk = _mm512_setzero_si512();
    let mut nonpositive = _mm512_setzero_si512();
    let one = _mm512_set1_epi32(1);
    for (b, block) in whole.chunks(LANES * SUM_BLOCK).enumerate() {
        let mut part = _mm512_setzero_ps();
        for (j, chunk) in block.chunks_exact(LANES).enumerate() {
            let i = b * SUM_BLOCK + j;
            // SAFETY: `chunk` holds LANES = 16 values.
            let v = unsafe { _mm512_loadu_ps(chunk.as_ptr()) };
            part = _mm512_add_ps(part, v);
            // MINPS/MAXPS return the second operand unless the first is strictly beyond it.
            min = _mm512_min_ps(v, min);
            let greater = _mm512_cmp_ps_mask::<_CMP_GT_OQ>(v, max);
            max = _mm512_max_ps(v, max);
            max_chunk = _mm512_mask_mov_epi32(max_chunk, greater, _mm512_set1_epi32(i as i32));
            let le = _mm512_cmp_ps_mask::<_CMP_LE_OQ>(v, zero);
            nonpositive = _mm512_mask_add_epi32(nonpositive, le, nonpositive, one);
        }
        let low = _mm512_cvtps_pd(_mm512_castps512_ps256(part));
        let high = _mm512_cvtps_pd(_mm256_castpd_ps(_mm512_extractf64x4_pd::<1>(
            _mm512_castps_pd(part),
        )));
        sum[0] = _mm512_add_pd(sum[0], low);
        sum[1] = _mm512_add_pd(sum[1], high);
    }
    let halves_ps = |r: __m512| {
        [
            _mm512_castps512_ps256(r),
            _mm256_castpd_ps(_mm512_extractf64x4_pd::<1>(_mm512_castps_pd(r))),
        ]
    };
    let halves_si = |r: __m512i| [_mm512_castsi512_si256(r), _mm512_extracti64x4_epi64::<1>(r)];
    let lanes = LaneRegs {
        sum: [
            _mm512_castpd512_pd256(sum[0]),
            _mm512_extractf64x4_pd::<1>(sum[0]),
            _mm512_castpd512_pd256(sum[1]),
            _mm512_extractf64x4_pd::<1>(sum[1]),
        ],
        min: halves_ps(min),
        max: halves_ps(max),
        max_chunk: halves_si(max_chunk),
        nonpositive: halves_si(nonpositive),
    };
    reduce_lane_regs(&lanes, whole)
}

/// Tiles of at least this many values take [`reduced_avx512`] at the AVX-512 level; on
/// smaller ones its wider reduction at the end costs more than its loop saves. One thread,
/// tiles in L2, 2-core Intel Xeon (Emerald Rapids): 12,544-value tiles 0.163–0.168 →
/// 0.132–0.136 ns per value, 3,136-value ones likewise, 196-value ones 0.25 both ways, 49-value
/// ones 0.42 → 0.47.
pub(super) const AVX512_FROM_VALUES: usize = 32 * LANES;
