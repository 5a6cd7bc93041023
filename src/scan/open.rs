//! A finished scan opened for browsing (`view --scan DIR`, or a scan inside `view --data
//! DIR`): its three documents read and checked against each other, looked up by layer name,
//! and its receptive-field crops decoded on demand with their size bounded before decoding.

use std::path::{Path, PathBuf};

use image::RgbImage;

use super::accumulate::FilterStats;
use super::format::{self, Manifest, TopkEntry, TopkFile};
use super::{Result, ScanError};

/// Largest crop side read back (`scan --crop-size` is far smaller; a larger PNG is not ours).
const MAX_CROP_SIDE_PX: u32 = 2048;
/// Largest crop PNG file read.
const MAX_CROP_BYTES: u64 = 32 << 20;

/// A scan directory, read and checked.
#[derive(Debug, Clone)]
pub struct OpenScan {
    pub root: PathBuf,
    pub manifest: Manifest,
    pub topk: TopkFile,
    /// Per layer of the manifest, per filter.
    pub stats: Vec<Vec<FilterStats>>,
}

impl OpenScan {
    /// Reads `dir/scan.json`, `stats.csv` and `topk.json` and checks that they agree. A
    /// folder of shard directories is refused with the merge command that makes one scan.
    pub fn open(dir: &Path) -> Result<Self> {
        if !dir.join(format::MANIFEST_FILE).is_file() && has_shards(dir) {
            return Err(ScanError::Format {
                path: dir.to_path_buf(),
                reason: format!(
                    "holds shard directories, not one scan; join them first with `convlens scan \
                     merge {} --out MERGED`",
                    dir.display()
                ),
            });
        }
        if !dir.join(format::MANIFEST_FILE).is_file() {
            return Err(ScanError::Format {
                path: dir.to_path_buf(),
                reason: format!(
                    "not a scan directory: it has no {} (`convlens scan` writes one)",
                    format::MANIFEST_FILE
                ),
            });
        }
        let manifest = format::read_manifest(dir)?;
        let stats = format::read_stats_csv(&dir.join(format::STATS_FILE), &manifest.layers)?;
        let topk = format::read_topk(dir)?;
        format::check_topk(dir, &topk, &manifest)?;
        Ok(Self {
            root: dir.to_path_buf(),
            manifest,
            topk,
            stats,
        })
    }

    /// The scan a data directory holds: `DIR/scan/` if it is one, else the first subfolder
    /// (by name) with a `scan.json`.
    pub fn find_in(data_dir: &Path) -> Option<PathBuf> {
        let is_scan = |d: &Path| d.join(format::MANIFEST_FILE).is_file();
        let preferred = data_dir.join("scan");
        if is_scan(&preferred) {
            return Some(preferred);
        }
        let mut dirs: Vec<PathBuf> = std::fs::read_dir(data_dir)
            .ok()?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.is_dir() && is_scan(p))
            .collect();
        dirs.sort();
        dirs.into_iter().next()
    }

    /// Index of the scanned layer named `name`.
    pub fn layer_index(&self, name: &str) -> Option<usize> {
        self.manifest.layers.iter().position(|l| l.name == name)
    }

    /// Images the statistics and top-k cover.
    pub fn image_count(&self) -> usize {
        self.manifest.images.len()
    }

    /// The top entries of filter `filter` (from 0) of scanned layer `layer`, best first.
    pub fn top(&self, layer: usize, filter: usize) -> &[TopkEntry] {
        (self.topk.layers.get(layer))
            .and_then(|l| l.filters.get(filter))
            .map_or(&[], |f| f.top.as_slice())
    }

    /// The path of a scanned image as the scan recorded it.
    pub fn image_path(&self, image: u64) -> Option<&str> {
        let i = usize::try_from(image).ok()?;
        self.manifest.images.get(i).map(String::as_str)
    }

    /// Filters of scanned layer `layer` by mean activation over the dataset, highest first
    /// (ties by filter number).
    pub fn rank_by_mean(&self, layer: usize) -> Vec<usize> {
        let Some(stats) = self.stats.get(layer) else {
            return Vec::new();
        };
        let mut order: Vec<usize> = (0..stats.len()).collect();
        order.sort_by(|&a, &b| stats[b].mean.total_cmp(&stats[a].mean).then(a.cmp(&b)));
        order
    }

    /// Filters of scanned layer `layer` never positive on any scanned image.
    pub fn dead_filters(&self, layer: usize) -> Vec<usize> {
        self.stats.get(layer).map_or_else(Vec::new, |stats| {
            (stats.iter().enumerate())
                .filter(|(_, s)| s.dead())
                .map(|(k, _)| k)
                .collect()
        })
    }

    /// The crop of rank `rank` (from 0) of filter `filter` (from 0) of scanned layer `layer`.
    pub fn crop(&self, layer: usize, filter: usize, rank: usize) -> Result<RgbImage> {
        let stem = (self.manifest.layers.get(layer))
            .map(|l| l.stem.as_str())
            .unwrap_or_default();
        let path = format::example_path(&self.root, stem, filter + 1, rank + 1);
        read_crop(&path)
    }
}

/// Whether `dir` has `shard-…` subfolders (the `--out` of sharded scans before a merge).
fn has_shards(dir: &Path) -> bool {
    std::fs::read_dir(dir).is_ok_and(|entries| {
        entries
            .filter_map(|e| e.ok())
            .any(|e| e.file_name().to_string_lossy().starts_with("shard-") && e.path().is_dir())
    })
}

/// Decodes a crop PNG, refusing a large file or image before decoding it.
fn read_crop(path: &Path) -> Result<RgbImage> {
    let bad = |reason: String| ScanError::Format {
        path: path.to_path_buf(),
        reason,
    };
    let size = std::fs::metadata(path).map_err(super::io_err(path))?.len();
    if size > MAX_CROP_BYTES {
        return Err(bad(format!("a crop of {size} bytes is too large")));
    }
    let bytes = std::fs::read(path).map_err(super::io_err(path))?;
    let reader = || {
        let mut r =
            image::ImageReader::with_format(std::io::Cursor::new(&bytes), image::ImageFormat::Png);
        let mut limits = image::Limits::default();
        limits.max_image_width = Some(MAX_CROP_SIDE_PX);
        limits.max_image_height = Some(MAX_CROP_SIDE_PX);
        limits.max_alloc = Some(64 << 20);
        r.limits(limits);
        r
    };
    let image = reader().decode().map_err(|e| bad(e.to_string()))?;
    Ok(image.into_rgb8())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scan::format::{LayerInfo, ModelId, Settings, TopkFilter, TopkLayer};

    fn stats(mean: f64, max: f64) -> FilterStats {
        FilterStats {
            count: 4,
            mean,
            m2: 0.0,
            min: -1.0,
            max,
            nonpositive: 1,
            values: 16,
        }
    }

    fn scan() -> OpenScan {
        let layer = LayerInfo {
            name: "conv".into(),
            shape: [3, 2, 2],
            stem: "conv".into(),
        };
        let entry = TopkEntry {
            image: 1,
            value: 2.0,
            y: 0,
            x: 1,
            pixel_box: Some([0, 0, 3, 3]),
        };
        OpenScan {
            root: PathBuf::from("/nonexistent"),
            manifest: Manifest {
                version: format::SCAN_FORMAT_VERSION,
                model: ModelId {
                    name: "m".into(),
                    fingerprint: "f".into(),
                },
                layers: vec![layer],
                images: vec!["a.png".into(), "b.png".into()],
                skipped: Vec::new(),
                top_k: 1,
                settings: Settings {
                    size: [4, 4],
                    mean: [0.0; 3],
                    std: [1.0; 3],
                    fit: "stretch".into(),
                    crop_size: 8,
                    inputs_total: 2,
                },
                shard: None,
                missing_shards: Vec::new(),
            },
            topk: TopkFile {
                layers: vec![TopkLayer {
                    name: "conv".into(),
                    filters: (1..=3)
                        .map(|filter| TopkFilter {
                            filter,
                            top: vec![entry],
                        })
                        .collect(),
                }],
            },
            stats: vec![vec![stats(0.5, 1.0), stats(0.0, 0.0), stats(0.5, 3.0)]],
        }
    }

    #[test]
    fn ranks_by_dataset_mean_and_lists_dead_filters() {
        let s = scan();
        // Filters 0 and 2 tie on the mean: the lower number first.
        assert_eq!(s.rank_by_mean(0), vec![0, 2, 1]);
        assert_eq!(s.dead_filters(0), vec![1]);
        assert_eq!(s.layer_index("conv"), Some(0));
        assert_eq!(s.layer_index("fc"), None);
        assert_eq!(s.top(0, 2).len(), 1);
        assert!(s.top(0, 3).is_empty() && s.top(1, 0).is_empty());
        assert_eq!(s.image_path(1), Some("b.png"));
        assert_eq!(s.image_path(2), None);
    }

    #[test]
    fn crops_are_bounded_and_errors_name_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("big.png");
        RgbImage::new(MAX_CROP_SIDE_PX + 1, 1).save(&path).unwrap();
        let err = read_crop(&path).unwrap_err().to_string();
        assert!(err.contains("big.png"), "{err}");
        let ok = dir.path().join("ok.png");
        RgbImage::from_pixel(3, 2, image::Rgb([1, 2, 3]))
            .save(&ok)
            .unwrap();
        assert_eq!(read_crop(&ok).unwrap().get_pixel(2, 1).0, [1, 2, 3]);
        let missing = scan().crop(0, 0, 0).unwrap_err().to_string();
        assert!(missing.contains("1_1.png"), "{missing}");
    }

    #[test]
    fn a_folder_of_shards_is_refused_with_the_merge_command() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("shard-0000-of-0002")).unwrap();
        let err = OpenScan::open(dir.path()).unwrap_err().to_string();
        assert!(err.contains("convlens scan merge"), "{err}");
        assert_eq!(OpenScan::find_in(dir.path()), None);
    }
}
