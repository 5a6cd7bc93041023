//! The running state of a scan: per filter, statistics over images and the top-k images by
//! the filter's spatial maximum. Memory grows with filters × k, never with the number of
//! images. Two states of disjoint image sets merge exactly (top-k) or by Chan et al.'s
//! parallel formulas (mean and variance), which is how shards combine.

use rayon::prelude::*;

use crate::engine::kernels::simd::{self, SimdLevel};
use serde::{Deserialize, Serialize};

/// Running statistics of one filter. Every float is f64, so a checkpoint written as JSON
/// restores it bit for bit (serde_json's `float_roundtrip`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FilterStats {
    /// Images seen.
    pub count: u64,
    /// Mean over images of the per-image spatial mean (Welford).
    pub mean: f64,
    /// Sum of squared deviations of the per-image means from `mean`.
    pub m2: f64,
    /// Smallest and largest value of any image at any position (finite values only).
    pub min: f64,
    pub max: f64,
    /// Values `≤ 0`, and values seen, over all images and positions.
    pub nonpositive: u64,
    pub values: u64,
}

impl Default for FilterStats {
    fn default() -> Self {
        Self {
            count: 0,
            mean: 0.0,
            m2: 0.0,
            min: f64::INFINITY,
            max: f64::NEG_INFINITY,
            nonpositive: 0,
            values: 0,
        }
    }
}

impl FilterStats {
    /// Population standard deviation of the per-image means.
    pub fn std(&self) -> f64 {
        if self.count == 0 {
            0.0
        } else {
            (self.m2 / self.count as f64).max(0.0).sqrt()
        }
    }

    pub fn frac_nonpositive(&self) -> f64 {
        if self.values == 0 {
            0.0
        } else {
            self.nonpositive as f64 / self.values as f64
        }
    }

    /// Never positive on any image.
    pub fn dead(&self) -> bool {
        self.max <= 0.0 || self.count == 0
    }

    fn add(&mut self, tile: &TileSummary) {
        self.count += 1;
        let delta = tile.mean - self.mean;
        self.mean += delta / self.count as f64;
        self.m2 += delta * (tile.mean - self.mean);
        self.min = self.min.min(f64::from(tile.min));
        self.max = self.max.max(f64::from(tile.max));
        self.nonpositive += tile.nonpositive;
        self.values += tile.values;
    }

    /// Chan et al.'s pairwise update: `self` becomes the statistics of both image sets.
    pub fn merge(&mut self, other: &FilterStats) {
        if other.count == 0 {
            return;
        }
        if self.count == 0 {
            *self = other.clone();
            return;
        }
        let (na, nb) = (self.count as f64, other.count as f64);
        let n = na + nb;
        let delta = other.mean - self.mean;
        self.mean += delta * nb / n;
        self.m2 += other.m2 + delta * delta * na * nb / n;
        self.count += other.count;
        self.min = self.min.min(other.min);
        self.max = self.max.max(other.max);
        self.nonpositive += other.nonpositive;
        self.values += other.values;
    }
}

/// One of a filter's top images.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct TopEntry {
    /// Index into the scan's image list.
    pub image: u64,
    /// The filter's spatial maximum on that image.
    pub value: f32,
    /// Where the maximum is in the layer's map (the first, in row-major order, on ties).
    pub y: u32,
    pub x: u32,
}

impl TopEntry {
    /// Higher value first; on equal values the lower image index.
    fn ranks_before(&self, other: &TopEntry) -> bool {
        self.value > other.value || (self.value == other.value && self.image < other.image)
    }
}

/// Inserts `entry` into `top` (sorted best first) keeping at most `k`.
pub fn insert_top(top: &mut Vec<TopEntry>, entry: TopEntry, k: usize) {
    if k == 0 || (top.len() == k && !top.last().is_some_and(|l| entry.ranks_before(l))) {
        return;
    }
    let at = top.partition_point(|e| e.ranks_before(&entry));
    top.insert(at, entry);
    top.truncate(k);
}

/// The scan state of one layer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LayerScan {
    pub name: String,
    /// `[C, H, W]` of one image's maps.
    pub shape: [usize; 3],
    pub filters: Vec<FilterStats>,
    /// Per filter, best first.
    pub top: Vec<Vec<TopEntry>>,
}

impl LayerScan {
    pub fn new(name: impl Into<String>, shape: [usize; 3]) -> Self {
        Self {
            name: name.into(),
            shape,
            filters: vec![FilterStats::default(); shape[0]],
            top: vec![Vec::new(); shape[0]],
        }
    }

    /// Adds `count` images' maps, `[N ≥ count, C, H, W]` row-major, as images
    /// `first_image, first_image + 1, …` (samples past `count` are batch padding). Tiles are
    /// summarised in parallel, then added in image order, so the result does not depend on
    /// the batch size or the threads.
    pub fn add_images(&mut self, maps: &[f32], first_image: u64, count: usize, k: usize) {
        let [c, h, w] = self.shape;
        let per_image = c * h * w;
        if per_image == 0 || maps.len() < count * per_image {
            return;
        }
        let tiles: Vec<TileSummary> = maps[..count * per_image]
            .par_chunks_exact(h * w)
            .map(summarise)
            .collect();
        for (i, image_tiles) in tiles.chunks_exact(c).enumerate() {
            let image = first_image + i as u64;
            for ((stats, top), tile) in self.filters.iter_mut().zip(&mut self.top).zip(image_tiles)
            {
                stats.add(tile);
                if let Some(at) = tile.argmax {
                    let entry = TopEntry {
                        image,
                        value: tile.max,
                        y: (at / w) as u32,
                        x: (at % w) as u32,
                    };
                    insert_top(top, entry, k);
                }
            }
        }
    }

    /// Merges another layer state over a disjoint set of images (image indices already in
    /// one numbering).
    pub fn merge(&mut self, other: &LayerScan, k: usize) {
        for (a, b) in self.filters.iter_mut().zip(&other.filters) {
            a.merge(b);
        }
        for (a, b) in self.top.iter_mut().zip(&other.top) {
            for &e in b {
                insert_top(a, e, k);
            }
        }
    }
}

/// One filter's numbers on one image.
#[derive(Debug, Clone, Copy, PartialEq)]
struct TileSummary {
    /// Mean of the finite values (0 when there are none).
    mean: f64,
    min: f32,
    max: f32,
    /// First position of `max`; `None` when no value is finite.
    argmax: Option<usize>,
    nonpositive: u64,
    values: u64,
}

/// Sums, extremes, the arg-max and the ≤ 0 count of one tile, in eight lanes (a fixed
/// order, so the result does not depend on threads, batch size or SIMD level), compiled per
/// SIMD level like the engine's kernels.
fn summarise(tile: &[f32]) -> TileSummary {
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
        if max[l] > best.0 || (max[l] == best.0 && at < best.1) {
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
    }
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
        let nan = summarise(&[f32::NAN, 2.0, f32::INFINITY, -1.0]);
        assert_eq!(
            (nan.mean, nan.min, nan.max, nan.argmax),
            (0.5, -1.0, 2.0, Some(1))
        );
    }

    #[test]
    fn top_k_keeps_the_best_and_breaks_ties_by_image() {
        let mut top = Vec::new();
        for (image, value) in [(0, 1.0), (1, 3.0), (2, 2.0), (3, 3.0), (4, 0.5), (5, 2.0)] {
            let e = TopEntry {
                image,
                value,
                y: 0,
                x: 0,
            };
            insert_top(&mut top, e, 3);
        }
        let got: Vec<(u64, f32)> = top.iter().map(|e| (e.image, e.value)).collect();
        assert_eq!(got, vec![(1, 3.0), (3, 3.0), (2, 2.0)]);
    }

    #[test]
    fn merged_statistics_equal_one_pass() {
        let means = [0.5, -1.25, 3.0, 2.0, 7.5, -0.125, 1.0];
        let tile = |m: f64| TileSummary {
            mean: m,
            min: m as f32 - 1.0,
            max: m as f32 + 1.0,
            argmax: Some(0),
            nonpositive: u64::from(m <= 0.0),
            values: 4,
        };
        let mut whole = FilterStats::default();
        means.iter().for_each(|&m| whole.add(&tile(m)));
        let (mut a, mut b) = (FilterStats::default(), FilterStats::default());
        means[..3].iter().for_each(|&m| a.add(&tile(m)));
        means[3..].iter().for_each(|&m| b.add(&tile(m)));
        a.merge(&b);
        let mean = means.iter().sum::<f64>() / 7.0;
        let var = means.iter().map(|m| (m - mean).powi(2)).sum::<f64>() / 7.0;
        for s in [&whole, &a] {
            assert!((s.mean - mean).abs() < 1e-12);
            assert!((s.std() - var.sqrt()).abs() < 1e-12);
            assert_eq!((s.count, s.min, s.max, s.nonpositive), (7, -2.25, 8.5, 2));
        }
    }
}
