//! Reading a data directory (`convlens view --data DIR`): the files `convlens export` writes
//! — or any program following the format — without a model. `architecture.json` gives the
//! layers, `scores.json` the class probabilities, `input.png` the input, and
//! `<method>/<stem>_<n>.png` the tiles, read one layer at a time when it is shown. Every
//! file is treated as hostile: sizes are bounded before anything is allocated, file stems
//! must be plain names, and nothing outside the directory is read (symlinks pointing out
//! are refused).

use std::path::{Path, PathBuf};

use super::architecture::{Architecture, LayerRecord, Scores};
use super::paths;
use crate::engine::HostTensor;
use crate::format::Method;

/// Largest `architecture.json` / `scores.json` read.
const MAX_JSON_BYTES: u64 = 64 << 20;
/// Largest number of layers, of channels in one layer, and of pixels in one tile.
const MAX_LAYERS: usize = 100_000;
const MAX_CHANNELS: usize = 1 << 16;
const MAX_TILE_PIXELS: usize = 4096 * 4096;
/// Largest number of values one layer's tiles may hold together (1 GiB of f32).
const MAX_LAYER_VALUES: usize = 1 << 28;

#[derive(Debug, thiserror::Error)]
pub enum DataDirError {
    #[error("{path}: {error}")]
    Io { path: String, error: std::io::Error },
    #[error("{path} is malformed: {detail}")]
    Malformed { path: String, detail: String },
    #[error("{path} points outside the data directory {root}; refused")]
    Outside { path: String, root: String },
    #[error("{path} is {size} bytes, more than the {limit} a data file may have")]
    TooLarge { path: String, size: u64, limit: u64 },
}

pub type Result<T, E = DataDirError> = std::result::Result<T, E>;

/// An opened data directory (tiles are read later, per layer).
#[derive(Debug, Clone)]
pub struct DataDir {
    /// The directory, canonical.
    pub root: PathBuf,
    /// `architecture.json`, checked: every file stem a plain name, every map small enough
    /// to show, names at most 4096 characters (the model's 200), an empty name replaced.
    pub architecture: Architecture,
    /// The model's fingerprint if the file gives one, else a hash of `architecture.json`.
    pub fingerprint: String,
    /// `[H, W]` of the model input (size of gradient images).
    pub input_hw: [usize; 2],
    /// `scores.json` (empty when missing or unreadable; a warning says why).
    pub scores: Scores,
    /// `input.png`, if present and readable.
    pub picture: Option<image::RgbImage>,
    /// Problems found while opening that did not stop it.
    pub warnings: Vec<String>,
}

/// Tiles of one layer read from disk, and what was wrong with the rest.
#[derive(Debug, Clone)]
pub struct LayerImages {
    /// `[1, C, H, W]` (forward, grey 0..1), `[C, 3, H, W]` (gradient methods, RGB 0..1) or
    /// `[C, 1, rows, cols]` (occlusion, grey 0..1).
    pub tensor: HostTensor,
    /// Filters (from 0) whose file is missing, unreadable or of the wrong size (left black).
    pub missing: Vec<usize>,
    /// One line per kind of problem, for the viewer's notice.
    pub problems: Vec<String>,
}

fn malformed(path: &Path, detail: impl Into<String>) -> DataDirError {
    DataDirError::Malformed {
        path: path.display().to_string(),
        detail: detail.into(),
    }
}

impl DataDir {
    /// Opens `dir`: reads and checks `architecture.json` (required), `scores.json` and
    /// `input.png` (optional).
    pub fn open(dir: &Path) -> Result<Self> {
        let root = dir.canonicalize().map_err(|source| DataDirError::Io {
            path: dir.display().to_string(),
            error: source,
        })?;
        let arch_path = root.join(paths::ARCHITECTURE);
        let arch_bytes = read_inside(&root, &arch_path, MAX_JSON_BYTES)?;
        let mut arch: Architecture = serde_json::from_slice(&arch_bytes)
            .map_err(|e| malformed(&arch_path, e.to_string()))?;
        if arch.layers.len() > MAX_LAYERS {
            return Err(malformed(
                &arch_path,
                format!("{} layers (at most {MAX_LAYERS})", arch.layers.len()),
            ));
        }
        for (i, layer) in arch.layers.iter_mut().enumerate() {
            check_layer(layer).map_err(|d| malformed(&arch_path, format!("layer {i}: {d}")))?;
        }
        let input_hw = match arch.input.as_ref().map(|i| i.shape.as_slice()) {
            Some(&[_, _, h, w])
                if h > 0 && w > 0 && h.checked_mul(w).is_some_and(|n| n <= MAX_TILE_PIXELS) =>
            {
                [h, w]
            }
            _ => {
                return Err(malformed(
                    &arch_path,
                    "\"input.shape\" is not a valid [N, C, H, W]",
                ));
            }
        };
        arch.name = truncated(&arch.name, 200);
        if arch.name.is_empty() {
            arch.name = "data directory".to_string();
        }
        let fingerprint = Some(arch.fingerprint.as_str())
            .filter(|f| !f.is_empty() && f.len() <= 64 && f.chars().all(|c| c.is_ascii_hexdigit()))
            .map_or_else(
                || crate::model::onnx::fingerprint(&arch_bytes),
                str::to_string,
            );
        let mut warnings = Vec::new();
        let scores = match read_scores(&root) {
            Ok(s) => s,
            Err(e) => {
                warnings.push(format!("no class scores: {e}"));
                Scores::default()
            }
        };
        let picture = match read_png(&root, &root.join(paths::INPUT_PICTURE)) {
            Ok(img) => Some(img.into_rgb8()),
            Err(_) => None,
        };
        Ok(Self {
            root,
            architecture: arch,
            fingerprint,
            input_hw,
            scores,
            picture,
            warnings,
        })
    }

    /// The tiles of `layer` under `method`, or `None` when the directory has no such
    /// images for that layer (no file of it exists). Missing or bad single files are left
    /// black and listed.
    pub fn layer_images(&self, layer: usize, method: Method) -> Result<Option<LayerImages>> {
        let Some(l) = self.architecture.layers.get(layer) else {
            return Ok(None);
        };
        let Some((c, h, w)) = l.map_dims() else {
            return Ok(None);
        };
        let (planes, [th, tw]) = match method {
            Method::Forward => (1, [h, w]),
            // Occlusion grids depend on the export's square and stride: take the size of
            // the first tile that reads.
            Method::Occlusion => {
                let first = (0..c).find_map(|k| {
                    read_png(
                        &self.root,
                        &paths::tile(&self.root, method, &l.file_stem, k + 1),
                    )
                    .ok()
                });
                match first {
                    Some(img) => (1, [img.height() as usize, img.width() as usize]),
                    None => return Ok(None),
                }
            }
            _ => (3, self.input_hw),
        };
        let per = planes * th * tw;
        if c.checked_mul(per).is_none_or(|n| n > MAX_LAYER_VALUES) {
            return Err(malformed(
                &self.root.join(paths::ARCHITECTURE),
                format!(
                    "layer '{}': {c} tiles of {th}×{tw} are too many to read",
                    l.name
                ),
            ));
        }
        // Allocated at the first tile that reads: a directory claiming a huge layer but
        // holding no files costs nothing.
        let mut data: Vec<f32> = Vec::new();
        let (mut missing, mut wrong_size, mut unreadable, mut outside) = (vec![], 0, 0, 0);
        let mut any = false;
        for k in 0..c {
            let path = paths::tile(&self.root, method, &l.file_stem, k + 1);
            let img = match read_png(&self.root, &path) {
                Ok(img) => img,
                Err(DataDirError::Io { error: source, .. })
                    if source.kind() == std::io::ErrorKind::NotFound =>
                {
                    missing.push(k);
                    continue;
                }
                Err(DataDirError::Outside { .. }) => {
                    outside += 1;
                    missing.push(k);
                    continue;
                }
                Err(_) => {
                    any = true;
                    unreadable += 1;
                    missing.push(k);
                    continue;
                }
            };
            any = true;
            if (img.height() as usize, img.width() as usize) != (th, tw) {
                wrong_size += 1;
                missing.push(k);
                continue;
            }
            if data.is_empty() {
                data = vec![0.0f32; c * per];
            }
            let out = &mut data[k * per..(k + 1) * per];
            if planes == 1 {
                for (o, p) in out.iter_mut().zip(img.to_luma8().pixels()) {
                    *o = f32::from(p.0[0]) / 255.0;
                }
            } else {
                let rgb = img.to_rgb8();
                for (i, p) in rgb.pixels().enumerate() {
                    for ch in 0..3 {
                        out[ch * th * tw + i] = f32::from(p.0[ch]) / 255.0;
                    }
                }
            }
        }
        if !any && outside == 0 {
            return Ok(None);
        }
        if data.is_empty() {
            // Files exist but none decoded: every tile is black.
            data = vec![0.0f32; c * per];
        }
        let mut problems = Vec::new();
        let absent = missing.len() - wrong_size - unreadable - outside;
        for (n, what) in [
            (absent, "missing".to_string()),
            (wrong_size, format!("not {th}×{tw}")),
            (unreadable, "unreadable".to_string()),
            (
                outside,
                "links pointing outside the directory (refused)".to_string(),
            ),
        ] {
            if n > 0 {
                problems.push(format!(
                    "{}: {n} of {c} {} tiles {what}",
                    l.name,
                    method.dir_name()
                ));
            }
        }
        // Forward maps are the layer's output; per-filter images are `[C, planes, H, W]`.
        let shape = if method == Method::Forward {
            vec![1, c, th, tw]
        } else {
            vec![c, planes, th, tw]
        };
        Ok(Some(LayerImages {
            tensor: HostTensor { shape, data },
            missing,
            problems,
        }))
    }
}

/// The first `max_chars` characters of `text`.
fn truncated(text: &str, max_chars: usize) -> String {
    text.chars().take(max_chars).collect()
}

/// Checks one layer of a read `architecture.json` (names are shortened in place): its file
/// stem must be a plain file name, its maps small enough to show.
fn check_layer(layer: &mut LayerRecord) -> std::result::Result<(), String> {
    layer.name = truncated(&layer.name, 4096);
    layer.type_name = truncated(&layer.type_name, 4096);
    let (name, stem) = (&layer.name, &layer.file_stem);
    let plain = !stem.is_empty()
        && stem.len() <= 255
        && !stem.starts_with('.')
        && stem
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if !plain {
        return Err(format!(
            "file_stem {stem:?} of '{name}' is not a plain file name ([A-Za-z0-9._-], not starting with '.')"
        ));
    }
    let shape = &layer.output_shape;
    if shape.iter().any(|&d| d > 1 << 31) {
        return Err(format!(
            "'{name}': \"output_shape\" {shape:?} has a size over 2^31"
        ));
    }
    if let [1, c, h, w] = shape.as_slice()
        && (*c > MAX_CHANNELS || h.saturating_mul(*w) > MAX_TILE_PIXELS)
    {
        return Err(format!("'{name}': output {shape:?} is too large to show"));
    }
    Ok(())
}

fn read_scores(root: &Path) -> Result<Scores> {
    let path = root.join(paths::SCORES);
    let bytes = read_inside(root, &path, MAX_JSON_BYTES)?;
    serde_json::from_slice(&bytes).map_err(|e| malformed(&path, e.to_string()))
}

/// `path` (inside `root`) resolved through any symlinks; refused when it ends up outside.
fn resolve_inside(root: &Path, path: &Path) -> Result<PathBuf> {
    let real = path.canonicalize().map_err(|source| DataDirError::Io {
        path: path.display().to_string(),
        error: source,
    })?;
    if !real.starts_with(root) {
        return Err(DataDirError::Outside {
            path: path.display().to_string(),
            root: root.display().to_string(),
        });
    }
    Ok(real)
}

/// Reads a file inside `root` of at most `limit` bytes.
fn read_inside(root: &Path, path: &Path, limit: u64) -> Result<Vec<u8>> {
    let real = resolve_inside(root, path)?;
    let io = |source| DataDirError::Io {
        path: path.display().to_string(),
        error: source,
    };
    let size = std::fs::metadata(&real).map_err(io)?.len();
    if size > limit {
        return Err(DataDirError::TooLarge {
            path: path.display().to_string(),
            size,
            limit,
        });
    }
    std::fs::read(&real).map_err(io)
}

/// Decodes a PNG inside `root`, refusing more than [`MAX_TILE_PIXELS`] before decoding.
fn read_png(root: &Path, path: &Path) -> Result<image::DynamicImage> {
    let bytes = read_inside(root, path, 64 << 20)?;
    let bad = |e: image::ImageError| malformed(path, e.to_string());
    let reader = || {
        let mut r =
            image::ImageReader::with_format(std::io::Cursor::new(&bytes), image::ImageFormat::Png);
        let mut limits = image::Limits::default();
        limits.max_alloc = Some(256 << 20);
        r.limits(limits);
        r
    };
    let (w, h) = reader().into_dimensions().map_err(bad)?;
    if (w as usize).saturating_mul(h as usize) > MAX_TILE_PIXELS {
        return Err(malformed(path, format!("a {w}×{h} tile is too large")));
    }
    reader().decode().map_err(bad)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stems_must_be_plain_names() {
        let layer = |stem: &str| LayerRecord {
            file_stem: stem.to_string(),
            inputs: Vec::new(),
            name: "x".into(),
            onnx_op: String::new(),
            onnx_output: None,
            output_shape: vec![1, 2, 3, 3],
            params: serde_json::Value::Null,
            type_name: "Conv".into(),
        };
        assert!(check_layer(&mut layer("conv1")).is_ok());
        for bad in ["../x", "a/b", "a\\b", ".hidden", "", "c:d", "x\0y"] {
            assert!(check_layer(&mut layer(bad)).is_err(), "{bad:?} accepted");
        }
        let mut huge = layer("x");
        huge.output_shape = vec![1, 1 << 20, 3, 3];
        assert!(check_layer(&mut huge).is_err());
        let mut wide = layer("x");
        wide.output_shape = vec![1, 1, usize::MAX, 2];
        assert!(check_layer(&mut wide).is_err());
    }
}
