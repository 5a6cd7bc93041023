//! Per-filter statistics over many inputs (the paper's "Yann" scenario: which filters are
//! useless across a test set), accumulated in a streaming way: memory grows with the number
//! of filters, never with the number of images.
//!
//! Per filter (channel k of a layer's `[1, C, H, W]` output) and per image: the mean over
//! `H×W`, the max, and the fraction of values `≤ 0` (what a ReLU would zero). Over images:
//! the mean of the means, the max of the maxes, the mean zero fraction; `dead` means no
//! positive activation on any image; `rank` orders the filters of a layer by mean activation
//! (1 = highest).

use serde::Serialize;

use super::tile_summary::TileSummary;

/// Running statistics of one layer.
#[derive(Debug, Clone, PartialEq)]
pub struct LayerStats {
    pub name: String,
    pub channels: usize,
    images: usize,
    sum_of_means: Vec<f64>,
    max: Vec<f32>,
    sum_of_zero_fractions: Vec<f64>,
}

/// One filter's aggregated statistics.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FilterSummary {
    /// Filter number, from 1 (as in the export files).
    pub filter: usize,
    pub mean: f64,
    pub max: f32,
    pub zero_fraction: f64,
    /// 1 = highest mean activation in its layer.
    pub rank: usize,
    pub dead: bool,
}

impl LayerStats {
    pub fn new(name: impl Into<String>, channels: usize) -> Self {
        Self {
            name: name.into(),
            channels,
            images: 0,
            sum_of_means: vec![0.0; channels],
            max: vec![f32::NEG_INFINITY; channels],
            sum_of_zero_fractions: vec![0.0; channels],
        }
    }

    pub fn images(&self) -> usize {
        self.images
    }

    /// Adds one image's `[C, H×W]` maps (row-major, channel-major). Non-finite values are
    /// ignored in the mean and max. Each tile is one vectorised pass
    /// ([`super::tile_summary::summarise`]).
    pub fn add(&mut self, maps: &[f32]) {
        let c = self.channels;
        if c == 0 || !maps.len().is_multiple_of(c) {
            return;
        }
        let hw = maps.len() / c;
        let tiles: Vec<TileSummary> = (maps.chunks_exact(hw.max(1)).take(c))
            .map(super::tile_summary::summarise)
            .collect();
        self.add_tiles(&tiles);
    }

    /// Adds one image's tile summaries, one per channel in channel order (as
    /// [`super::tile_summary::summarise_forward`] gives them).
    pub fn add_tiles(&mut self, tiles: &[TileSummary]) {
        if tiles.len() != self.channels {
            return;
        }
        for (k, t) in tiles.iter().enumerate() {
            self.sum_of_means[k] += t.mean;
            if t.argmax.is_some() {
                self.max[k] = self.max[k].max(t.max);
            }
            self.sum_of_zero_fractions[k] += t.nonpositive as f64 / t.values.max(1) as f64;
        }
        self.images += 1;
    }

    /// The per-filter summary, in filter order.
    pub fn summary(&self) -> Vec<FilterSummary> {
        let n = self.images.max(1) as f64;
        let means: Vec<f64> = self.sum_of_means.iter().map(|s| s / n).collect();
        let mut order: Vec<usize> = (0..self.channels).collect();
        order.sort_by(|&a, &b| means[b].total_cmp(&means[a]).then(a.cmp(&b)));
        let mut rank = vec![0usize; self.channels];
        for (r, &k) in order.iter().enumerate() {
            rank[k] = r + 1;
        }
        (0..self.channels)
            .map(|k| FilterSummary {
                filter: k + 1,
                mean: means[k],
                max: self.max[k],
                zero_fraction: self.sum_of_zero_fractions[k] / n,
                rank: rank[k],
                dead: self.images > 0 && self.max[k] <= 0.0,
            })
            .collect()
    }
}

/// CSV with one row per filter: `layer,filter,mean,max,zero_fraction,rank,dead`.
pub fn to_csv(layers: &[LayerStats]) -> String {
    let mut out = String::from("layer,filter,mean,max,zero_fraction,rank,dead\n");
    for l in layers {
        let name = csv_field(&l.name);
        for f in l.summary() {
            out.push_str(&format!(
                "{name},{},{},{},{},{},{}\n",
                f.filter, f.mean, f.max, f.zero_fraction, f.rank, f.dead
            ));
        }
    }
    out
}

/// JSON: `{"images": N, "layers": [{"name", "filters": [FilterSummary…]}]}`.
pub fn to_json(layers: &[LayerStats]) -> serde_json::Value {
    serde_json::json!({
        "images": layers.first().map_or(0, LayerStats::images),
        "layers": layers.iter().map(|l| serde_json::json!({"name": l.name, "filters": l.summary()})).collect::<Vec<_>>(),
    })
}

/// Quotes a CSV field when it holds a comma, quote or newline.
pub(crate) fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

/// Indices of the `k` largest values, largest first.
pub fn top_k(values: &[f32], k: usize) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..values.len()).collect();
    idx.sort_by(|&a, &b| values[b].total_cmp(&values[a]));
    idx.truncate(k);
    idx
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statistics_over_two_images_by_hand() {
        // 3 filters of 2×2; image 1 and image 2.
        let mut s = LayerStats::new("conv1", 3);
        s.add(&[
            1.0, 2.0, 3.0, 2.0, /* k2 */ -1.0, -2.0, 0.0, -4.0, /* k3 */ 0.0, 0.0, 4.0,
            0.0,
        ]);
        s.add(&[
            3.0, 2.0, 1.0, 2.0, /* k2 */ -1.0, -1.0, -1.0, -1.0, /* k3 */ 0.0, 0.0, 0.0,
            8.0,
        ]);
        let f = s.summary();
        assert_eq!(f[0].mean, 2.0);
        assert_eq!(f[0].max, 3.0);
        assert_eq!(f[0].zero_fraction, 0.0);
        assert!(!f[0].dead);
        // k2: means -1.75 and -1 → -1.375; never positive → dead; all values ≤ 0.
        assert_eq!(f[1].mean, -1.375);
        assert!(f[1].dead);
        assert_eq!(f[1].zero_fraction, 1.0);
        // k3: means 1 and 2 → 1.5; 3 of 4 values ≤ 0 in both.
        assert_eq!(f[2].mean, 1.5);
        assert_eq!(f[2].zero_fraction, 0.75);
        assert_eq!((f[0].rank, f[2].rank, f[1].rank), (1, 2, 3));
    }

    #[test]
    fn csv_has_one_row_per_filter_and_quotes_names() {
        let mut s = LayerStats::new("a,b", 2);
        s.add(&[1.0, -1.0]);
        let csv = to_csv(&[s]);
        let lines: Vec<&str> = csv.lines().collect();
        assert_eq!(lines.len(), 3);
        assert!(
            lines[1].starts_with("\"a,b\",1,1,1,0,1,false"),
            "{}",
            lines[1]
        );
        assert!(lines[2].ends_with(",true"));
    }
}
