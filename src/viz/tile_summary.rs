//! One pass over one filter's map on one image (a tile): its mean, extremes, first arg-max
//! and `≤ 0` count, vectorised per SIMD level. The per-image step of the dataset statistics:
//! `scan`'s running state ([`crate::scan::accumulate`]) and `stats` ([`super::stats`]).

use rayon::prelude::*;

use crate::engine::kernels::simd::{self, SimdLevel};
use crate::engine::{Engine, EngineError, ops::HostValues};
use crate::model::preprocess::InputTensor;

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

/// Sums, extremes, the arg-max and the ≤ 0 count of one tile, in eight lanes (a fixed
/// order, so the result does not depend on threads, batch size or SIMD level), compiled per
/// SIMD level like the engine's kernels.
pub fn summarise(tile: &[f32]) -> TileSummary {
    #[cfg(target_arch = "x86_64")]
    match simd::active() {
        // SAFETY (both): `simd::active` only names levels the CPU supports.
        SimdLevel::Avx512 => return unsafe { summarise_avx512(tile) },
        SimdLevel::Avx2Fma => return unsafe { summarise_avx2(tile) },
        SimdLevel::Portable => {}
    }
    summarise_body(tile)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx2,fma")]
fn summarise_avx512(tile: &[f32]) -> TileSummary {
    summarise_body(tile)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn summarise_avx2(tile: &[f32]) -> TileSummary {
    summarise_body(tile)
}

#[inline(always)]
fn summarise_body(tile: &[f32]) -> TileSummary {
    const LANES: usize = 8;
    let mut sum = [0f64; LANES];
    let mut min = [f32::INFINITY; LANES];
    let mut max = [f32::NEG_INFINITY; LANES];
    // Per lane, the chunk where its max was first seen.
    let mut max_chunk = [0u32; LANES];
    let mut nonpositive = [0u32; LANES];
    let chunks = tile.chunks_exact(LANES);
    let rest = chunks.remainder();
    // Comparisons as selects (NaN compares false, so it is skipped), which vectorise to
    // plain compare-and-blend; f32::min/max's NaN rules do not.
    for (i, chunk) in chunks.enumerate() {
        for l in 0..LANES {
            let v = chunk[l];
            sum[l] += f64::from(v);
            min[l] = if v < min[l] { v } else { min[l] };
            let greater = v > max[l];
            max[l] = if greater { v } else { max[l] };
            max_chunk[l] = if greater { i as u32 } else { max_chunk[l] };
            nonpositive[l] += u32::from(v <= 0.0);
        }
    }
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
    let total: f64 = sum.iter().sum::<f64>() + tail.0;
    let nonpositive = nonpositive.iter().map(|&n| u64::from(n)).sum::<u64>() + u64::from(tail.2);
    let values = tile.len() as u64;
    if !total.is_finite() {
        return summarise_finite(tile, nonpositive, values);
    }
    let min = min.iter().copied().fold(tail.1, f32::min);
    // The first position holding the max: the smallest index over lanes that reached it.
    let mut best = rest_max;
    for l in 0..LANES {
        let at = max_chunk[l] as usize * LANES + l;
        // (A lane that saw no value holds −∞: every value here is finite.)
        let seen = max[l] > f32::NEG_INFINITY;
        if seen && (max[l] > best.0 || (max[l] == best.0 && at < best.1)) {
            best = (max[l], at);
        }
    }
    TileSummary {
        mean: if tile.is_empty() {
            0.0
        } else {
            total / tile.len() as f64
        },
        min,
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
/// per layer, `[N · C]` summaries, image-major. The pass keeps no layer to its end
/// ([`Engine::forward_batch_observed`]), so memory and cache hold one layer at a time
/// whatever the number of layers. `Err` if the pass fails: then nothing was summarised.
pub fn summarise_forward(
    engine: &Engine,
    inputs: &[&InputTensor],
    layers: &[usize],
) -> Result<Vec<Vec<TileSummary>>, EngineError> {
    let graph = std::sync::Arc::clone(engine.graph());
    let mut summaries: Vec<Vec<TileSummary>> = vec![Vec::new(); layers.len()];
    engine.forward_batch_observed(inputs, &mut |node, outputs| {
        for (slot, _) in (layers.iter().enumerate()).filter(|&(_, &l)| l == node) {
            let (Some(output), Some(name)) = (outputs.first(), graph.nodes[node].outputs.first())
            else {
                continue;
            };
            let values = HostValues::of(output).map_err(|detail| EngineError::Readback {
                value: name.clone(),
                detail,
            })?;
            // [N, C, H, W]: one tile per (image, channel).
            let tile_len = graph
                .shapes
                .get(name)
                .map_or(1, |s| s.iter().skip(2).product());
            summaries[slot] = summarise_tiles(values.as_slice(), tile_len);
        }
        Ok(())
    })?;
    Ok(summaries)
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
}
