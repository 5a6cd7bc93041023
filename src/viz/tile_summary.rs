//! One pass over one filter's map on one image (a tile): its mean, extremes, first arg-max
//! and `≤ 0` count, vectorised per SIMD level. The per-image step of the dataset statistics:
//! `scan`'s running state ([`crate::scan::accumulate`]) and `stats` ([`super::stats`]).

use rayon::prelude::*;

#[cfg(target_arch = "x86_64")]
use crate::engine::kernels::simd::{self, SimdLevel};
use crate::engine::{Engine, EngineError, kernels, ops::HostValues};
use crate::model::preprocess::InputTensor;

#[cfg(target_arch = "x86_64")]
mod x86;

/// One filter's numbers on one image.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TileSummary {
    /// Mean of the finite values (0 when there are none).
    pub mean: f64,
    pub min: f32,
    pub max: f32,
    /// First position of `max`; `None` when no value is finite.
    pub argmax: Option<usize>,
    pub nonpositive: u64,
    /// Values, and finite values, in the tile.
    pub values: u64,
    pub finite: u64,
}

impl TileSummary {
    /// `(min, max)` of the finite values; `None` when there are none.
    pub fn finite_range(&self) -> Option<(f32, f32)> {
        self.argmax.map(|_| (self.min, self.max))
    }
}

/// Logical lanes of [`summarise`]: value `j` of a tile goes to lane `j % LANES` (the last
/// `len % LANES` values to a scalar tail), and each lane keeps its own sum, extremes, arg-max
/// chunk and `≤ 0` count in a fixed order, so every SIMD level gives bit-identical results.
const LANES: usize = 16;

/// Chunks ([`LANES`] values each) whose values each lane sums in `f32` before adding that
/// partial sum to its `f64` one: the widening to `f64` per value was a third of the
/// instructions of the AVX-512 loop. A lane's partial sum of 16 values carries at most ~1e-6
/// of their magnitude in rounding; every level sums in this order, so the bits still agree.
/// One thread, tiles in L2, 2-core Intel Xeon (Emerald Rapids), ns per value, f64 per value
/// → these blocks: AVX-512 12,544-value tiles 0.142 → 0.108, 196-value ones (AVX2 loop)
/// 0.308 → 0.260; forced AVX2 0.258 → 0.160 and 0.411 → 0.264; portable 1.24 → 0.84. In a
/// scan's pass (summaries after each conv) the change was within noise.
const SUM_BLOCK: usize = 16;

/// Per-lane running state over a tile's whole chunks ([`LANES`] values each): the portable
/// path's, reduced across lanes by [`LaneState::reduce`].
struct LaneState {
    sum: [f64; LANES],
    min: [f32; LANES],
    max: [f32; LANES],
    /// Per lane, the chunk where its max was first seen.
    max_chunk: [u32; LANES],
    nonpositive: [u32; LANES],
}

/// A tile's whole chunks reduced across lanes, in a fixed order so every SIMD level gives
/// the same bits: sums pairwise (lanes `l` and `l + w` for widths 8, 4, 2, 1: a short
/// dependency chain, for the many small 7×7 tiles), minima in the same tree with
/// [`select_min`], the max at its first position.
#[derive(Debug, Clone, Copy)]
struct Reduced {
    sum: f64,
    min: f32,
    /// The value at `argmax`; −∞ when there are no whole chunks.
    max: f32,
    /// The first position of the max (`usize::MAX` when there are no whole chunks).
    argmax: usize,
    nonpositive: u64,
}

/// `a` if `a < b`, else `b` (MINPS's rule: NaN and equal zeros give `b`).
#[inline]
fn select_min(a: f32, b: f32) -> f32 {
    if a < b { a } else { b }
}

impl LaneState {
    /// Before any value: sums and counts 0, extremes ±∞.
    fn fresh() -> Self {
        Self {
            sum: [0.0; LANES],
            min: [f32::INFINITY; LANES],
            max: [f32::NEG_INFINITY; LANES],
            max_chunk: [0; LANES],
            nonpositive: [0; LANES],
        }
    }

    /// The lanes reduced as [`Reduced`] says.
    fn reduce(&self) -> Reduced {
        let (mut sum, mut min) = (self.sum, self.min);
        for width in [8, 4, 2, 1] {
            for l in 0..width {
                sum[l] += sum[l + width];
                min[l] = select_min(min[l + width], min[l]);
            }
        }
        // The first position holding the max: the smallest index over the lanes that reached
        // it (a lane that saw nothing, or only NaN, holds −∞).
        let mut best = (f32::NEG_INFINITY, usize::MAX);
        for l in 0..LANES {
            let at = self.max_chunk[l] as usize * LANES + l;
            let seen = self.max[l] > f32::NEG_INFINITY;
            if seen && (self.max[l] > best.0 || (self.max[l] == best.0 && at < best.1)) {
                best = (self.max[l], at);
            }
        }
        Reduced {
            sum: sum[0],
            min: min[0],
            max: best.0,
            argmax: best.1,
            nonpositive: self.nonpositive.iter().map(|&n| u64::from(n)).sum(),
        }
    }
}

/// Sums, extremes, the arg-max and the ≤ 0 count of one tile, lane by lane ([`LANES`]),
/// with AVX2 intrinsics where the CPU has them, AVX-512 ones for large tiles at that level
/// ([`x86::AVX512_FROM_VALUES`]), and plain Rust elsewhere. The plain loop alone, compiled per level, had
/// stayed scalar (no vector f64 sums or arg-max selects) and took a quarter of a 160-image
/// EfficientNet-Lite0 scan's CPU time (`perf`, 2-core AMD EPYC Zen 3, AVX2); with the
/// intrinsics, per 18,432 tiles of 7×7 0.70 → 0.42 ms, per 1,536 of 112² 9.0 → 2.8 ms.
pub fn summarise(tile: &[f32]) -> TileSummary {
    let full = tile.len() / LANES * LANES;
    let (whole, rest) = tile.split_at(full);
    #[cfg(target_arch = "x86_64")]
    let reduced = match simd::active() {
        // SAFETY: `simd::active` only names levels the CPU supports.
        SimdLevel::Avx512 if whole.len() >= x86::AVX512_FROM_VALUES => unsafe {
            x86::reduced_avx512(whole)
        },
        // SAFETY: as above; the AVX-512 level includes AVX2.
        SimdLevel::Avx512 | SimdLevel::Avx2Fma => unsafe { x86::reduced_avx2(whole) },
        SimdLevel::Portable => lanes_portable(whole).reduce(),
    };
    #[cfg(not(target_arch = "x86_64"))]
    let reduced = lanes_portable(whole).reduce();
    finish(tile, &reduced, rest)
}

/// The lane state over `whole` (a multiple of [`LANES`] values), in plain Rust.
fn lanes_portable(whole: &[f32]) -> LaneState {
    let mut st = LaneState::fresh();
    // Comparisons as selects: NaN compares false, so it is skipped (as MINPS/MAXPS and the
    // ordered compares of the AVX2 path do); f32::min/max's NaN rules differ.
    for (b, block) in whole.chunks(LANES * SUM_BLOCK).enumerate() {
        let mut part = [0f32; LANES];
        for (j, chunk) in block.chunks_exact(LANES).enumerate() {
            let i = b * SUM_BLOCK + j;
            for (l, &v) in chunk.iter().enumerate() {
                part[l] += v;
                st.min[l] = if v < st.min[l] { v } else { st.min[l] };
                let greater = v > st.max[l];
                st.max[l] = if greater { v } else { st.max[l] };
                st.max_chunk[l] = if greater { i as u32 } else { st.max_chunk[l] };
                st.nonpositive[l] += u32::from(v <= 0.0);
            }
        }
        for (sum, &part) in st.sum.iter_mut().zip(&part) {
            *sum += f64::from(part);
        }
    }
    st
}

/// The tile's summary from its whole chunks, reduced, and the `rest` after them.
fn finish(tile: &[f32], reduced: &Reduced, rest: &[f32]) -> TileSummary {
    let full = tile.len() - rest.len();
    let mut rest_max = (f32::NEG_INFINITY, usize::MAX);
    let mut tail = (0f64, f32::INFINITY, 0u32);
    for (l, &v) in rest.iter().enumerate() {
        tail.0 += f64::from(v);
        tail.1 = if v < tail.1 { v } else { tail.1 };
        if v > rest_max.0 {
            rest_max = (v, full + l);
        }
        tail.2 += u32::from(v <= 0.0);
    }
    let total = reduced.sum + tail.0;
    let nonpositive = reduced.nonpositive + u64::from(tail.2);
    let values = tile.len() as u64;
    if !total.is_finite() {
        return summarise_finite(tile, nonpositive, values);
    }
    // Every value here is finite; the whole chunks' positions come first, so they win ties.
    let best = if reduced.argmax != usize::MAX && reduced.max >= rest_max.0 {
        (reduced.max, reduced.argmax)
    } else {
        rest_max
    };
    TileSummary {
        mean: if tile.is_empty() {
            0.0
        } else {
            total / tile.len() as f64
        },
        min: select_min(tail.1, reduced.min),
        max: best.0,
        argmax: (best.1 != usize::MAX).then_some(best.1),
        nonpositive,
        values,
        finite: values,
    }
}

/// The slow path for tiles with NaN or infinities: statistics of the finite values only.
fn summarise_finite(tile: &[f32], nonpositive: u64, values: u64) -> TileSummary {
    let finite = || tile.iter().copied().filter(|v| v.is_finite());
    let n = finite().count();
    let max = finite().fold(f32::NEG_INFINITY, f32::max);
    TileSummary {
        mean: if n == 0 {
            0.0
        } else {
            finite().map(f64::from).sum::<f64>() / n as f64
        },
        min: finite().fold(f32::INFINITY, f32::min),
        max,
        argmax: if n == 0 {
            None
        } else {
            tile.iter().position(|&v| v == max)
        },
        nonpositive,
        values,
        finite: n as u64,
    }
}

/// Values a parallel task summarises at least: rayon otherwise makes one task per tile, and
/// for EfficientNet-Lite0's 7×7 tiles the tasks cost more than the tiles (its 42,512 tiles,
/// 13.1 M values: 7.2 ms in parallel, 3.9 ms on one thread, 2.2 ms in tasks of this size;
/// 2-core AMD EPYC).
const VALUES_PER_TASK: usize = 1 << 14;

/// [`summarise`] of every `tile_len`-long tile of `data` (a `[…, H·W]` block), in order,
/// tiles in parallel in tasks of at least [`VALUES_PER_TASK`] values.
pub fn summarise_tiles(data: &[f32], tile_len: usize) -> Vec<TileSummary> {
    if tile_len == 0 {
        return Vec::new();
    }
    data.par_chunks_exact(tile_len)
        .with_min_len((VALUES_PER_TASK / tile_len).max(1))
        .map(summarise)
        .collect()
}

/// One batched forward pass over `inputs` that summarises the outputs of the nodes `layers`
/// (node indices; each output `[N, C, …]`) as the pass produces them, tiles in parallel:
/// per layer, `[N · C]` summaries, image-major. The pass keeps no layer to its end and stops
/// after the last of `layers` ([`Engine::forward_batch_observed`]), so memory and cache hold
/// one layer at a time whatever the number of layers. `Err` if the pass fails: then nothing
/// was summarised.
pub fn summarise_forward(
    engine: &Engine,
    inputs: &[&InputTensor],
    layers: &[usize],
) -> Result<Vec<Vec<TileSummary>>, EngineError> {
    let graph = std::sync::Arc::clone(engine.graph());
    let mut summaries: Vec<Vec<TileSummary>> = vec![Vec::new(); layers.len()];
    let Some(&through) = layers.iter().max() else {
        return Ok(summaries);
    };
    engine.forward_batch_observed(inputs, through, &mut |node, outputs| {
        let mut slots = (layers.iter().enumerate()).filter(|&(_, &l)| l == node);
        let Some((slot, _)) = slots.next() else {
            return Ok(());
        };
        let Some(name) = graph.nodes[node].outputs.first() else {
            return Ok(());
        };
        // [N, C, H, W]: one tile per (image, channel).
        let tile_len = graph
            .shapes
            .get(name)
            .map_or(1, |s| s.iter().skip(2).product());
        // The ReLU or Clip after the layer, applied tile by tile right after each tile's
        // summary (the tile still in cache), where the pass offers it.
        let clamped = outputs.clamp_while(|values, min, max| {
            summarise_tiles_then_clamp(values, tile_len, min, max)
        })?;
        summaries[slot] = match clamped {
            Some(tiles) => tiles,
            None => {
                let Some(output) = outputs.tensors().first() else {
                    return Ok(());
                };
                let values = HostValues::of(output).map_err(|detail| EngineError::Readback {
                    value: name.clone(),
                    detail,
                })?;
                summarise_tiles(values.as_slice(), tile_len)
            }
        };
        // The same layer asked for twice.
        for (again, _) in slots {
            summaries[again] = summaries[slot].clone();
        }
        Ok(())
    })?;
    Ok(summaries)
}

/// [`summarise_tiles`] of `data`, each tile then clamped to `[min, max]` in place
/// ([`kernels::unary::clamp_in_place`]) while it is still in cache: the summaries are those of
/// the values before the clamp.
fn summarise_tiles_then_clamp(
    data: &mut [f32],
    tile_len: usize,
    min: f32,
    max: f32,
) -> Vec<TileSummary> {
    if tile_len == 0 {
        kernels::unary::clamp_in_place(data, min, max);
        return Vec::new();
    }
    let tiles = data.len() / tile_len;
    let (whole, rest) = data.split_at_mut(tiles * tile_len);
    kernels::unary::clamp_in_place(rest, min, max);
    whole
        .par_chunks_exact_mut(tile_len)
        .with_min_len((VALUES_PER_TASK / tile_len).max(1))
        .map(|tile| {
            let summary = summarise(tile);
            kernels::unary::clamp_in_place(tile, min, max);
            summary
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_of_a_small_tile_by_hand() {
        let t = summarise(&[1.0, -2.0, 0.0, 4.0, 4.0, 0.5, -1.0, 3.0, 2.0, -0.5]);
        assert_eq!(t.mean, 11.0 / 10.0);
        assert_eq!((t.min, t.max, t.argmax), (-2.0, 4.0, Some(3)));
        // Ties across lanes and chunks: the first position wins, in the tail too.
        let mut v = vec![0.0f32; 37];
        (v[29], v[13], v[21]) = (5.0, 5.0, 5.0);
        assert_eq!(summarise(&v).argmax, Some(13));
        v[36] = 6.0;
        assert_eq!((summarise(&v).argmax, summarise(&v).max), (Some(36), 6.0));
        assert_eq!((t.nonpositive, t.values), (4, 10));
        let empty = summarise(&[]);
        assert_eq!((empty.argmax, empty.values, empty.finite), (None, 0, 0));
        let nan = summarise(&[f32::NAN, 2.0, f32::INFINITY, -1.0]);
        assert_eq!(
            (nan.mean, nan.min, nan.max, nan.argmax),
            (0.5, -1.0, 2.0, Some(1))
        );
    }

    /// Values with repeats (ties for the max across lanes and chunks), zeros of both signs
    /// and negatives.
    fn tile_values(len: usize, salt: usize) -> Vec<f32> {
        (0..len)
            .map(|j| match (j * 7919 + salt * 31) % 23 {
                0 => -0.0,
                1 => 0.0,
                k => (k as f32 - 11.0) * 0.37 + ((j * 13) % 5) as f32 * 0.01,
            })
            .collect()
    }

    #[test]
    fn matches_the_definition_on_every_length() {
        for len in [1, 15, 16, 17, 31, 49, 196, 255, 256, 257, 1000, 3136, 5000] {
            let v = tile_values(len, len);
            let t = summarise(&v);
            let max = v.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            let mean = v.iter().map(|&x| f64::from(x)).sum::<f64>() / len as f64;
            // Within SUM_BLOCK's bound: lanes sum 16 values in f32 before f64.
            let magnitude = v.iter().map(|&x| f64::from(x.abs())).sum::<f64>() / len as f64;
            assert!(
                (t.mean - mean).abs() <= 1e-6 * magnitude,
                "{len}: {} vs {mean}",
                t.mean
            );
            assert_eq!(t.min, v.iter().copied().fold(f32::INFINITY, f32::min));
            assert_eq!(t.max, max);
            assert_eq!(t.argmax, v.iter().position(|&x| x == max), "{len}");
            let nonpositive = v.iter().filter(|&&x| x <= 0.0).count() as u64;
            assert_eq!(
                (t.nonpositive, t.values, t.finite),
                (nonpositive, len as u64, len as u64)
            );
        }
    }

    /// The AVX2 and AVX-512 paths and the portable one agree bit for bit (the scan's results
    /// must not depend on the CPU), zeros of both signs, NaN and infinities included.
    #[cfg(target_arch = "x86_64")]
    #[test]
    fn simd_lanes_equal_the_portable_ones() {
        if !SimdLevel::Avx2Fma.supported() {
            return;
        }
        let signed_zeros: Vec<f32> = (0..64)
            .map(|j| match j % 3 {
                0 => -0.0,
                1 => 0.0,
                _ => -1.5,
            })
            .collect();
        let mut odd: Vec<f32> = tile_values(96, 5);
        (odd[3], odd[40], odd[77]) = (f32::NAN, f32::INFINITY, f32::NEG_INFINITY);
        let cases = [0, 16, 48, 784, 12544].map(|len| tile_values(len, 3));
        for v in cases.iter().chain([&signed_zeros, &odd]) {
            let portable = lanes_portable(v).reduce();
            // SAFETY: the CPU has AVX2 (checked above).
            let avx2 = unsafe { x86::reduced_avx2(v) };
            let bits = |r: &Reduced| {
                (
                    r.sum.to_bits(),
                    r.min.to_bits(),
                    r.max.to_bits(),
                    r.argmax,
                    r.nonpositive,
                )
            };
            assert_eq!(bits(&portable), bits(&avx2), "{} values", v.len());
            if SimdLevel::Avx512.supported() {
                // SAFETY: the CPU has AVX-512F (checked just above).
                let avx512 = unsafe { x86::reduced_avx512(v) };
                assert_eq!(
                    bits(&portable),
                    bits(&avx512),
                    "AVX-512, {} values",
                    v.len()
                );
            }
        }
    }
}
