//! Reading a data directory (`convlens view --data DIR`): the files `convlens export` writes
//! — or any program following the format — without a model. `architecture.json` gives the
//! layers, `scores.json` the class probabilities, `input.png` the input, and
//! `<method>/<stem>_<n>.png` the tiles, read one layer at a time when it is shown. Every
//! file is treated as hostile: sizes are bounded before anything is allocated, file stems
//! must be plain names, and nothing outside the directory is read (symlinks pointing out
//! are refused).

use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::engine::HostTensor;
use crate::export::Method;

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
    #[error("{path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} is malformed: {detail}")]
    Malformed { path: String, detail: String },
    #[error("{path} points outside the data directory {root}; refused")]
    Outside { path: String, root: String },
    #[error("{path} is {size} bytes, more than the {limit} a data file may have")]
    TooLarge { path: String, size: u64, limit: u64 },
}

pub type Result<T, E = DataDirError> = std::result::Result<T, E>;

/// One layer as `architecture.json` describes it.
#[derive(Debug, Clone, PartialEq)]
pub struct DataLayer {
    pub name: String,
    pub type_name: String,
    pub output_shape: Vec<usize>,
    /// Names of the layers (or graph inputs) it reads.
    pub inputs: Vec<String>,
    pub params: Value,
    /// File stem of its tiles (a plain name, checked).
    pub stem: String,
}

impl DataLayer {
    /// `(C, H, W)` of a `[1, C, H, W]` output.
    pub fn map_dims(&self) -> Option<(usize, usize, usize)> {
        match self.output_shape.as_slice() {
            [1, c, h, w] => Some((*c, *h, *w)),
            _ => None,
        }
    }
}

/// An opened data directory (tiles are read later, per layer).
#[derive(Debug, Clone)]
pub struct DataDir {
    /// The directory, canonical.
    pub root: PathBuf,
    pub name: String,
    /// The model's fingerprint if the file gives one, else a hash of `architecture.json`.
    pub fingerprint: String,
    /// `[H, W]` of the model input (size of gradient images).
    pub input_hw: [usize; 2],
    pub layers: Vec<DataLayer>,
    pub probabilities: Vec<f32>,
    pub labels: Vec<String>,
    /// `input.png`, if present and readable.
    pub picture: Option<image::RgbImage>,
    /// Problems found while opening that did not stop it.
    pub warnings: Vec<String>,
}

/// Tiles of one layer read from disk, and what was wrong with the rest.
#[derive(Debug, Clone)]
pub struct LayerImages {
    /// `[1, C, H, W]` (forward, grey 0..1) or `[C, 3, H, W]` (gradient methods, RGB 0..1).
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
            source,
        })?;
        let arch_path = root.join("architecture.json");
        let arch_bytes = read_inside(&root, &arch_path, MAX_JSON_BYTES)?;
        let arch: Value = serde_json::from_slice(&arch_bytes)
            .map_err(|e| malformed(&arch_path, e.to_string()))?;
        let layers_json = arch
            .get("layers")
            .and_then(Value::as_array)
            .ok_or_else(|| malformed(&arch_path, "no \"layers\" array"))?;
        if layers_json.len() > MAX_LAYERS {
            return Err(malformed(
                &arch_path,
                format!("{} layers (at most {MAX_LAYERS})", layers_json.len()),
            ));
        }
        let layers = layers_json
            .iter()
            .enumerate()
            .map(|(i, l)| {
                parse_layer(l).map_err(|d| malformed(&arch_path, format!("layer {i}: {d}")))
            })
            .collect::<Result<Vec<_>>>()?;
        let input_hw = match arch
            .pointer("/input/shape")
            .and_then(Value::as_array)
            .map(|s| s.iter().map(Value::as_u64).collect::<Option<Vec<u64>>>())
        {
            Some(Some(s))
                if s.len() == 4
                    && s[2] > 0
                    && s[3] > 0
                    && s[2] * s[3] <= MAX_TILE_PIXELS as u64 =>
            {
                [s[2] as usize, s[3] as usize]
            }
            _ => {
                return Err(malformed(
                    &arch_path,
                    "\"input.shape\" is not a valid [N, C, H, W]",
                ));
            }
        };
        let name = arch
            .get("name")
            .and_then(Value::as_str)
            .unwrap_or("data directory")
            .chars()
            .take(200)
            .collect();
        let fingerprint = arch
            .get("fingerprint")
            .and_then(Value::as_str)
            .filter(|f| !f.is_empty() && f.len() <= 64 && f.chars().all(|c| c.is_ascii_hexdigit()))
            .map_or_else(
                || crate::model::onnx::fingerprint(&arch_bytes),
                str::to_string,
            );
        let mut warnings = Vec::new();
        let (probabilities, labels) = match read_scores(&root) {
            Ok(s) => s,
            Err(e) => {
                warnings.push(format!("no class scores: {e}"));
                (Vec::new(), Vec::new())
            }
        };
        let picture = match read_png(&root, &root.join("input.png")) {
            Ok(img) => Some(img.to_rgb8()),
            Err(_) => None,
        };
        Ok(Self {
            root,
            name,
            fingerprint,
            input_hw,
            layers,
            probabilities,
            labels,
            picture,
            warnings,
        })
    }

    /// The tiles of `layer` under `method`, or `None` when the directory has no such
    /// images for that layer (no file of it exists). Missing or bad single files are left
    /// black and listed.
    pub fn layer_images(&self, layer: usize, method: Method) -> Result<Option<LayerImages>> {
        let Some(l) = self.layers.get(layer) else {
            return Ok(None);
        };
        let Some((c, h, w)) = l.map_dims() else {
            return Ok(None);
        };
        let dir = self.root.join(method.dir_name());
        let (planes, [th, tw]) = match method {
            Method::Forward => (1, [h, w]),
            // Occlusion grids depend on the export's square and stride: take the size of
            // the first tile that reads.
            Method::Occlusion => {
                let first = (0..c).find_map(|k| {
                    read_png(&self.root, &dir.join(format!("{}_{}.png", l.stem, k + 1))).ok()
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
                &self.root.join("architecture.json"),
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
            let path = dir.join(format!("{}_{}.png", l.stem, k + 1));
            let img = match read_png(&self.root, &path) {
                Ok(img) => img,
                Err(DataDirError::Io { source, .. })
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
        let shape = if planes == 1 {
            vec![1, c, th, tw]
        } else {
            vec![c, 3, th, tw]
        };
        Ok(Some(LayerImages {
            tensor: HostTensor { shape, data },
            missing,
            problems,
        }))
    }
}

fn parse_layer(l: &Value) -> std::result::Result<DataLayer, String> {
    let text = |k: &str| {
        l.get(k)
            .and_then(Value::as_str)
            .map(|s| s.chars().take(4096).collect::<String>())
            .ok_or(format!("no \"{k}\" string"))
    };
    let name = text("name")?;
    let stem = text("file_stem")?;
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
    let output_shape = l
        .get("output_shape")
        .and_then(Value::as_array)
        .and_then(|s| {
            s.iter()
                .map(|d| d.as_u64().filter(|&d| d <= 1 << 31).map(|d| d as usize))
                .collect::<Option<Vec<usize>>>()
        })
        .ok_or(format!("'{name}': \"output_shape\" is not a list of sizes"))?;
    if let [1, c, h, w] = output_shape.as_slice()
        && (*c > MAX_CHANNELS || h.saturating_mul(*w) > MAX_TILE_PIXELS)
    {
        return Err(format!(
            "'{name}': output {output_shape:?} is too large to show"
        ));
    }
    let inputs = l
        .get("inputs")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default();
    Ok(DataLayer {
        name,
        type_name: text("type").unwrap_or_else(|_| "?".into()),
        output_shape,
        inputs,
        params: l.get("params").cloned().unwrap_or(Value::Null),
        stem,
    })
}

fn read_scores(root: &Path) -> Result<(Vec<f32>, Vec<String>)> {
    let path = root.join("scores.json");
    let bytes = read_inside(root, &path, MAX_JSON_BYTES)?;
    let v: Value = serde_json::from_slice(&bytes).map_err(|e| malformed(&path, e.to_string()))?;
    let probs: Vec<f32> = v
        .get("S")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .map(|x| x.as_f64().unwrap_or(f64::NAN) as f32)
                .collect()
        })
        .ok_or_else(|| malformed(&path, "no \"S\" array"))?;
    let labels = v
        .get("labels")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .map(|x| x.as_str().unwrap_or("").to_string())
                .collect()
        })
        .unwrap_or_default();
    Ok((probs, labels))
}

/// `path` (inside `root`) resolved through any symlinks; refused when it ends up outside.
fn resolve_inside(root: &Path, path: &Path) -> Result<PathBuf> {
    let real = path.canonicalize().map_err(|source| DataDirError::Io {
        path: path.display().to_string(),
        source,
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
        source,
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
        let layer = |stem: &str| serde_json::json!({"name": "x", "file_stem": stem, "output_shape": [1, 2, 3, 3]});
        assert!(parse_layer(&layer("conv1")).is_ok());
        for bad in ["../x", "a/b", "a\\b", ".hidden", "", "c:d", "x\0y"] {
            assert!(parse_layer(&layer(bad)).is_err(), "{bad:?} accepted");
        }
        let huge =
            serde_json::json!({"name": "x", "file_stem": "x", "output_shape": [1, 1 << 20, 3, 3]});
        assert!(parse_layer(&huge).is_err());
    }
}
