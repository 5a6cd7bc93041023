//! The running state of a scan: per filter, statistics over images and the top-k images by
//! the filter's spatial maximum. Memory grows with filters × k, never with the number of
//! images. Two states of disjoint image sets merge exactly (top-k) or by Chan et al.'s
//! parallel formulas (mean and variance), which is how shards combine.

use crate::viz::tile_summary::{TileSummary, summarise_tiles};
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

/// Whether an entry of `value` for `image` would enter `top` (sorted best first, at most
/// `k`): checked before the entry is built, since most tiles of a long scan do not.
fn enters_top(top: &[TopEntry], value: f32, image: u64, k: usize) -> bool {
    let probe = TopEntry {
        image,
        value,
        y: 0,
        x: 0,
    };
    k > 0 && (top.len() < k || top.last().is_some_and(|l| probe.ranks_before(l)))
}

/// Inserts `entry` into `top` (sorted best first) keeping at most `k`.
pub fn insert_top(top: &mut Vec<TopEntry>, entry: TopEntry, k: usize) {
    if !enters_top(top, entry.value, entry.image, k) {
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
        let tiles = summarise_tiles(&maps[..count * per_image], h * w);
        self.add_summaries(&tiles, first_image, count, k);
    }

    /// Adds `count` images' tile summaries (`[N ≥ count, C]`, image-major, as
    /// [`crate::viz::tile_summary::summarise_forward`] gives them) as images
    /// `first_image, first_image + 1, …`, in image order.
    pub fn add_summaries(
        &mut self,
        tiles: &[TileSummary],
        first_image: u64,
        count: usize,
        k: usize,
    ) {
        let [c, _, w] = self.shape;
        if c == 0 {
            return;
        }
        for (i, image_tiles) in tiles.chunks_exact(c).take(count).enumerate() {
            let image = first_image + i as u64;
            for ((stats, top), tile) in self.filters.iter_mut().zip(&mut self.top).zip(image_tiles)
            {
                stats.add(tile);
                if let Some(at) = tile.argmax
                    && enters_top(top, tile.max, image, k)
                {
                    let entry = TopEntry {
                        image,
                        value: tile.max,
                        y: (at / w.max(1)) as u32,
                        x: (at % w.max(1)) as u32,
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

#[cfg(test)]
mod tests {
    use super::*;

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
            finite: 4,
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
