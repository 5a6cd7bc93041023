//! The scan directory's format, version [`SCAN_FORMAT_VERSION`] (the contract is in
//! `../shared/DESIGN.md` and the README): `scan.json` (what was scanned), `stats.csv` (per
//! filter statistics), `topk.json` (per filter top images) and
//! `examples/<stem>/<filter>_<rank>.png` (receptive-field crops). Written by `convlens scan`
//! and `scan merge`; read by `scan merge` and the viewer.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::accumulate::{FilterStats, LayerScan, TopEntry};
use super::{Result, ScanError};

pub const SCAN_FORMAT_VERSION: u32 = 1;
pub const MANIFEST_FILE: &str = "scan.json";
pub const STATS_FILE: &str = "stats.csv";
pub const TOPK_FILE: &str = "topk.json";
pub const EXAMPLES_DIR: &str = "examples";
/// Bounds on what a `scan.json` may claim (far above any real network).
pub const MAX_FILTERS: usize = 1 << 20;
pub const MAX_MAP_SIDE: usize = 1 << 16;
pub const MAX_TOP_K: usize = 100_000;
pub const STATS_HEADER: &str = "layer,filter,count,mean,std,min,max,frac_nonpositive,dead";

/// `scan.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    pub version: u32,
    pub model: ModelId,
    pub layers: Vec<LayerInfo>,
    /// Scanned images in scan order; `topk.json`'s `image` indexes this list.
    pub images: Vec<String>,
    pub skipped: Vec<Skipped>,
    pub top_k: usize,
    /// Everything else that must agree for two scans to merge.
    pub settings: Settings,
    /// Absent in a whole or merged scan.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shard: Option<ShardInfo>,
    /// Shards a merge went without (`--allow-missing`), as `index` values.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub missing_shards: Vec<usize>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelId {
    pub name: String,
    pub fingerprint: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LayerInfo {
    pub name: String,
    /// `[C, H, W]`.
    pub shape: [usize; 3],
    /// Folder of this layer's crops under `examples/`.
    pub stem: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Skipped {
    pub path: String,
    pub reason: String,
}

/// Settings that shape the result (preprocessing, crops) and the input list it came from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Settings {
    /// `[H, W]` the images are brought to.
    pub size: [usize; 2],
    pub mean: [f32; 3],
    pub std: [f32; 3],
    pub fit: String,
    /// Side of the square crop PNGs, in pixels.
    pub crop_size: u32,
    /// Images in the whole input list (before sharding).
    pub inputs_total: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardInfo {
    pub index: usize,
    pub count: usize,
    /// The shard's positions in the whole input list, `first..end`.
    pub first: usize,
    pub end: usize,
}

/// `topk.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TopkFile {
    pub layers: Vec<TopkLayer>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TopkLayer {
    pub name: String,
    pub filters: Vec<TopkFilter>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TopkFilter {
    /// From 1.
    pub filter: usize,
    pub top: Vec<TopkEntry>,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct TopkEntry {
    pub image: u64,
    pub value: f32,
    pub y: u32,
    pub x: u32,
    /// The input pixels the unit reads, half-open `[x0, y0, x1, y1]` in the preprocessed
    /// input; `null` when it reads none (only padding).
    #[serde(rename = "box")]
    pub pixel_box: Option<[i64; 4]>,
}

impl TopkEntry {
    pub fn top_entry(&self) -> TopEntry {
        TopEntry {
            image: self.image,
            value: self.value,
            y: self.y,
            x: self.x,
        }
    }
}

/// `examples/<stem>/<filter>_<rank>.png`, both from 1.
pub fn example_path(root: &Path, stem: &str, filter_from_1: usize, rank_from_1: usize) -> PathBuf {
    root.join(EXAMPLES_DIR)
        .join(stem)
        .join(format!("{filter_from_1}_{rank_from_1}.png"))
}

/// `stats.csv` of these layers.
pub fn stats_csv(layers: &[LayerScan]) -> String {
    let rows: usize = layers.iter().map(|l| l.filters.len()).sum();
    let mut out = String::with_capacity(STATS_HEADER.len() + 1 + 140 * rows);
    out.push_str(STATS_HEADER);
    out.push('\n');
    // zmij and itoa write the shortest digits that read back to the same value, as `Display`
    // does, a few times faster (a scan of every conv layer of EfficientNet-Lite0 writes
    // 21,000 rows of five floats); the spelling differs (`0.0` and `1e-7` where `Display`
    // writes `0` and `0.0000001`; non-finite values alike: `NaN`, `inf`, `-inf`).
    let (mut ints, mut floats) = (itoa::Buffer::new(), zmij::Buffer::new());
    for layer in layers {
        let name = crate::viz::stats::csv_field(&layer.name);
        for (k, f) in layer.filters.iter().enumerate() {
            out.push_str(&name);
            for int in [k as u64 + 1, f.count] {
                out.push(',');
                out.push_str(ints.format(int));
            }
            for float in [f.mean, f.std(), f.min, f.max, f.frac_nonpositive()] {
                out.push(',');
                out.push_str(floats.format(float));
            }
            out.push_str(if f.dead() { ",true\n" } else { ",false\n" });
        }
    }
    out
}

/// Reads `stats.csv` back into per-layer filter statistics (the layers' shapes come from
/// the manifest: `values` per image is `H × W`).
pub fn read_stats_csv(path: &Path, layers: &[LayerInfo]) -> Result<Vec<Vec<FilterStats>>> {
    let text = read_text(path)?;
    let bad = |line: usize, why: &str| ScanError::Format {
        path: path.to_path_buf(),
        reason: format!("line {line}: {why}"),
    };
    let mut lines = text.lines().enumerate();
    match lines.next() {
        Some((_, header)) if header.trim_end() == STATS_HEADER => {}
        _ => return Err(bad(1, &format!("the header must be `{STATS_HEADER}`"))),
    }
    let mut out: Vec<Vec<FilterStats>> = (layers.iter())
        .map(|l| Vec::with_capacity(l.shape[0]))
        .collect();
    for (i, line) in lines {
        let fields = split_csv_line(line).ok_or_else(|| bad(i + 1, "unbalanced quotes"))?;
        let [layer, filter, count, mean, std, min, max, frac, dead] =
            <[String; 9]>::try_from(fields).map_err(|_| bad(i + 1, "expected 9 fields"))?;
        let li = (layers.iter())
            .position(|l| l.name == layer)
            .ok_or_else(|| bad(i + 1, &format!("layer `{layer}` is not in scan.json")))?;
        let num = |s: &str| s.parse::<f64>().map_err(|_| bad(i + 1, "not a number"));
        let filter: usize = filter.parse().map_err(|_| bad(i + 1, "bad filter"))?;
        if filter != out[li].len() + 1 || filter > layers[li].shape[0] {
            return Err(bad(i + 1, "filters must be listed 1, 2, … in order"));
        }
        let count: u64 = count.parse().map_err(|_| bad(i + 1, "bad count"))?;
        let hw = (layers[li].shape[1] as u64).checked_mul(layers[li].shape[2] as u64);
        let values = hw
            .and_then(|hw| hw.checked_mul(count))
            .ok_or_else(|| bad(i + 1, "count × H × W overflows"))?;
        let std = num(&std)?;
        let frac = num(&frac)?;
        if !(0.0..=1.0).contains(&frac) {
            return Err(bad(i + 1, "frac_nonpositive outside 0..1"));
        }
        let _ = dead;
        out[li].push(FilterStats {
            count,
            mean: num(&mean)?,
            m2: std * std * count as f64,
            min: num(&min)?,
            max: num(&max)?,
            nonpositive: (frac * values as f64).round() as u64,
            values,
        });
    }
    for (l, filters) in layers.iter().zip(&out) {
        if filters.len() != l.shape[0] {
            return Err(ScanError::Format {
                path: path.to_path_buf(),
                reason: format!(
                    "layer `{}` has {} filters, stats.csv lists {}",
                    l.name,
                    l.shape[0],
                    filters.len()
                ),
            });
        }
    }
    Ok(out)
}

/// Splits one CSV line (fields quoted when they hold a comma or quote; `""` inside quotes).
fn split_csv_line(line: &str) -> Option<Vec<String>> {
    let mut fields = Vec::new();
    let mut field = String::new();
    let mut quoted = false;
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match (quoted, c) {
            (true, '"') if chars.peek() == Some(&'"') => {
                field.push('"');
                chars.next();
            }
            (true, '"') => quoted = false,
            (false, '"') if field.is_empty() => quoted = true,
            (false, ',') => fields.push(std::mem::take(&mut field)),
            (_, c) => field.push(c),
        }
    }
    if quoted {
        return None;
    }
    fields.push(field);
    Some(fields)
}

/// A scan's `topk.json` must list its manifest's layers and filters (1, 2, … with at most
/// `top_k` entries each) and index only its images.
pub fn check_topk(dir: &Path, topk: &TopkFile, manifest: &Manifest) -> Result<()> {
    let bad = |reason: String| ScanError::Format {
        path: dir.join(TOPK_FILE),
        reason,
    };
    if topk.layers.len() != manifest.layers.len() {
        return Err(bad("its layers differ from scan.json's".into()));
    }
    for (t, l) in topk.layers.iter().zip(&manifest.layers) {
        if t.name != l.name || t.filters.len() != l.shape[0] {
            return Err(bad(format!("layer `{}` does not match scan.json", t.name)));
        }
        for (k, f) in t.filters.iter().enumerate() {
            if f.filter != k + 1 || f.top.len() > manifest.top_k {
                return Err(bad(format!(
                    "layer `{}` filter {}: bad entry",
                    t.name,
                    k + 1
                )));
            }
            if let Some(e) = f
                .top
                .iter()
                .find(|e| e.image as usize >= manifest.images.len())
            {
                return Err(bad(format!(
                    "layer `{}` filter {} names image {}, but the shard has {}",
                    t.name,
                    k + 1,
                    e.image,
                    manifest.images.len()
                )));
            }
        }
    }
    Ok(())
}

pub fn read_manifest(dir: &Path) -> Result<Manifest> {
    let path = dir.join(MANIFEST_FILE);
    let manifest: Manifest = read_json(&path)?;
    if manifest.version != SCAN_FORMAT_VERSION {
        return Err(ScanError::Format {
            path,
            reason: format!(
                "format version {} (this build reads {SCAN_FORMAT_VERSION})",
                manifest.version
            ),
        });
    }
    let consistent = (manifest.layers.iter())
        .all(|l| crate::format::stems::safe_stem(&l.stem) == l.stem && !l.stem.is_empty());
    if !consistent {
        return Err(ScanError::Format {
            path,
            reason: "a layer's example folder is not a plain file name".into(),
        });
    }
    // Sizes a file claims are bounded before anything is allocated by them.
    if let Some(l) = (manifest.layers.iter()).find(|l| {
        let [c, h, w] = l.shape;
        !(1..=MAX_FILTERS).contains(&c) || !(1..=MAX_MAP_SIDE).contains(&h.max(w)) || h * w == 0
    }) {
        return Err(ScanError::Format {
            path,
            reason: format!(
                "layer `{}` has shape {:?} (at most {MAX_FILTERS} filters of maps up to {MAX_MAP_SIDE} px)",
                l.name, l.shape
            ),
        });
    }
    if manifest.top_k > MAX_TOP_K {
        return Err(ScanError::Format {
            path,
            reason: format!("top_k {} is above {MAX_TOP_K}", manifest.top_k),
        });
    }
    Ok(manifest)
}

pub fn read_topk(dir: &Path) -> Result<TopkFile> {
    read_json(&dir.join(TOPK_FILE))
}

fn read_text(path: &Path) -> Result<String> {
    std::fs::read_to_string(path).map_err(|error| ScanError::Io {
        path: path.to_path_buf(),
        error,
    })
}

pub(crate) fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T> {
    let text = read_text(path)?;
    serde_json::from_str(&text).map_err(|e| ScanError::Format {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })
}

#[cfg(test)]
mod tests {

    use super::*;

    #[test]
    fn csv_lines_split_with_quotes() {
        assert_eq!(
            split_csv_line(r#""a,""b""",2,x"#),
            Some(vec!["a,\"b\"".to_string(), "2".into(), "x".into()])
        );
        assert_eq!(split_csv_line(r#""open,1"#), None);
    }
}
