//! Per-tile min-max normalisation (Matlab's `mat2gray`): each `[H, W]` map is scaled so its
//! minimum becomes 0 and its maximum 1; a constant (or non-finite) tile becomes black.

use super::gradient_norm::GradientNorm;
use super::tile_summary::{TileSummary, summarise, summarise_tiles};

/// Min and max over the finite values of a tile; `None` when there are none. One
/// vectorised pass ([`summarise`]).
pub fn finite_range(values: &[f32]) -> Option<(f32, f32)> {
    summarise(values).finite_range()
}

/// Normalises one tile to `[0, 1]`; constant tiles give all zeros, NaN/Inf give 0.
pub fn normalise_tile(values: &[f32]) -> Vec<f32> {
    match finite_range(values) {
        Some((lo, hi)) if hi > lo => {
            let scale = 1.0 / (hi - lo);
            values
                .iter()
                .map(|&v| if v.is_finite() { (v - lo) * scale } else { 0.0 })
                .collect()
        }
        _ => vec![0.0; values.len()],
    }
}

/// Normalises one tile to 8-bit grey (round to nearest).
pub fn tile_to_grey8(values: &[f32]) -> Vec<u8> {
    normalise_tile(values)
        .into_iter()
        .map(|v| (v * 255.0).round().clamp(0.0, 255.0) as u8)
        .collect()
}

/// Brings an RGB gradient image `[3, H, W]` to 8-bit RGB (`[H, W, 3]`) under `norm`, one
/// range for its three planes ([`GradientNorm::range`]).
pub fn rgb_planes_to_rgb8(planes: &[f32], hw: usize, norm: GradientNorm) -> Vec<u8> {
    let range = norm.range(planes);
    let mut out = Vec::with_capacity(3 * hw);
    for i in 0..hw {
        for c in 0..3 {
            let v = planes.get(c * hw + i).copied().unwrap_or(0.0);
            out.push((GradientNorm::unit(range, v) * 255.0).round() as u8);
        }
    }
    out
}

/// Channels of a `[C, H·W]` block whose map is constant on this input (max − min ≤
/// 1e-6 · max(1, |max|), or no finite value): such filters show nothing, and the viewer
/// suggests marking them bad.
pub fn constant_channels(data: &[f32], hw: usize) -> Vec<usize> {
    constant_of(&summarise_tiles(data, hw))
}

/// Channels of a `[C, H·W]` block ordered by mean value, highest first (ties by index;
/// non-finite values count as 0): the paper's filter rank for one input.
pub fn rank_by_mean(data: &[f32], hw: usize) -> Vec<usize> {
    rank_of(&summarise_tiles(data, hw), hw)
}

/// What the viewer needs of one layer's maps on one input, from one pass over them.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MapSummary {
    /// [`constant_channels`].
    pub constant: Vec<usize>,
    /// [`rank_by_mean`].
    pub rank_order: Vec<usize>,
    /// Per channel, the `[min, max]` its tile is drawn with ([`tile_range`]).
    pub ranges: Vec<[f32; 2]>,
}

/// [`constant_channels`], [`rank_by_mean`] and every tile's range from one pass over a
/// `[C, H·W]` block (what the viewer computes for every layer of every input; the atlas
/// upload then reuses the ranges instead of reading the maps again).
pub fn summarise_maps(data: &[f32], hw: usize) -> MapSummary {
    let tiles = summarise_tiles(data, hw);
    MapSummary {
        constant: constant_of(&tiles),
        rank_order: rank_of(&tiles, hw),
        ranges: tiles.iter().map(tile_range).collect(),
    }
}

/// The `[min, max]` a tile is normalised by: its finite values' range, `[0, 0]` (drawn
/// black) when none is finite.
pub fn tile_range(t: &TileSummary) -> [f32; 2] {
    t.finite_range().map_or([0.0, 0.0], |(lo, hi)| [lo, hi])
}

fn constant_of(tiles: &[TileSummary]) -> Vec<usize> {
    (tiles.iter().enumerate())
        .filter(|(_, t)| match t.argmax {
            Some(_) => t.max - t.min <= 1e-6 * t.max.abs().max(1.0),
            None => true, // nothing finite
        })
        .map(|(k, _)| k)
        .collect()
}

fn rank_of(tiles: &[TileSummary], hw: usize) -> Vec<usize> {
    // The mean with non-finite values as 0: the finite values' mean, scaled by their share.
    let means: Vec<f64> = (tiles.iter())
        .map(|t| t.mean * t.finite as f64 / hw.max(1) as f64)
        .collect();
    let mut order: Vec<usize> = (0..means.len()).collect();
    order.sort_by(|&a, &b| means[b].total_cmp(&means[a]).then(a.cmp(&b)));
    order
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rank_orders_filters_by_mean_activation() {
        let data = [
            1.0,
            1.0,
            /* */ 5.0,
            3.0,
            /* */ -2.0,
            0.0,
            /* */ 4.0,
            4.0,
            /* */ f32::NAN,
            2.0,
        ];
        // Means 1, 4, -1, 4, 1 (NaN counts as 0): ties keep filter order.
        assert_eq!(rank_by_mean(&data, 2), vec![1, 3, 0, 4, 2]);
        assert!(rank_by_mean(&data, 0).is_empty());
    }

    #[test]
    fn constant_channels_are_found() {
        let data = [
            0.0,
            0.0,
            0.0,
            0.0, // dead ReLU output
            1.0,
            2.0,
            3.0,
            4.0, // live
            5.0,
            5.0,
            5.0,
            5.0, // constant = bias only
            f32::NAN,
            f32::NAN,
            f32::NAN,
            f32::NAN, // nothing finite
            0.0,
            0.0,
            0.0,
            1e-3, // tiny but real response
        ];
        assert_eq!(constant_channels(&data, 4), vec![0, 2, 3]);
        assert!(constant_channels(&data, 0).is_empty());
    }

    /// One pass gives what the three separate ones give, and each tile's drawn range:
    /// hand-computed on tiles with a NaN, an infinity and nothing finite.
    #[test]
    fn one_summary_pass_gives_constants_rank_and_ranges() {
        let data = [
            3.0,
            -1.0, // mean 1, range [-1, 3]
            f32::NAN,
            2.0, // mean 1 (NaN as 0), range [2, 2]
            f32::NAN,
            f32::NAN, // nothing finite: [0, 0], constant
            f32::INFINITY,
            4.0, // range over the finite values: [4, 4]
            7.0,
            7.0, // constant 7
        ];
        let s = summarise_maps(&data, 2);
        assert_eq!(s.constant, constant_channels(&data, 2));
        assert_eq!(s.constant, vec![1, 2, 3, 4]);
        assert_eq!(s.rank_order, rank_by_mean(&data, 2));
        assert_eq!(s.rank_order, vec![4, 3, 0, 1, 2]);
        assert_eq!(
            s.ranges,
            vec![[-1.0, 3.0], [2.0, 2.0], [0.0, 0.0], [4.0, 4.0], [7.0, 7.0]]
        );
        assert_eq!(summarise_maps(&[], 4), MapSummary::default());
    }

    #[test]
    fn min_max_matches_mat2gray() {
        assert_eq!(normalise_tile(&[2.0, 4.0, 3.0]), vec![0.0, 1.0, 0.5]);
        assert_eq!(tile_to_grey8(&[-1.0, 1.0, 0.0]), vec![0, 255, 128]);
    }

    #[test]
    fn constant_and_non_finite_tiles_are_black() {
        assert_eq!(normalise_tile(&[5.0; 4]), vec![0.0; 4]);
        assert_eq!(normalise_tile(&[f32::NAN, 1.0, 3.0]), vec![0.0, 0.0, 1.0]);
        assert_eq!(normalise_tile(&[f32::NAN; 2]), vec![0.0; 2]);
    }

    #[test]
    fn rgb_is_normalised_jointly_and_interleaved() {
        // R plane [0, 1], G plane [2, 3], B plane [4, 4] over hw = 2.
        let rgb = rgb_planes_to_rgb8(&[0.0, 1.0, 2.0, 3.0, 4.0, 4.0], 2, GradientNorm::MinMax);
        assert_eq!(rgb, vec![0, 128, 255, 64, 191, 255]);
        // Robust: |g| 0 1 2 3 4 4 sums to 14, 98% is reached at 4, so ±4; 0 is mid-grey.
        let rgb = rgb_planes_to_rgb8(&[0.0, 1.0, 2.0, 3.0, 4.0, -4.0], 2, GradientNorm::Robust);
        assert_eq!(rgb, vec![128, 191, 255, 159, 223, 0]);
    }
}
