//! The data directory: the paper's files written from one forward pass —
//! `architecture.json`, `forward/<stem>_<n>.png` (per-filter min-max grey, n from 1),
//! `scores.json` and, with `--raw`, `raw/forward/<stem>.npy`. Every file is written to a
//! temporary name and renamed into place, so a killed export never leaves a torn file.

pub mod architecture;
pub mod stems;

use std::collections::HashSet;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde_json::json;

use crate::engine::{Activations, EngineError};
use crate::model::Graph;
use crate::viz::tiles::tile_to_grey8;
pub use architecture::{architecture_json, layer_stems};

#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error("cannot write {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot encode {path}: {detail}")]
    Encode { path: String, detail: String },
    #[error(transparent)]
    Engine(#[from] EngineError),
    #[error("no layer named '{name}' (see `convlens info` for the names)")]
    UnknownLayer { name: String },
    #[error("method '{0}' is not available yet (forward is; gbp, deconvnet and backprop are tracked in the attribution issue)")]
    MethodUnavailable(String),
    #[error("unknown method '{0}' (expected forward, gbp, deconvnet, backprop)")]
    UnknownMethod(String),
}

pub type Result<T, E = ExportError> = std::result::Result<T, E>;

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> ExportError + '_ {
    move |source| ExportError::Io {
        path: path.display().to_string(),
        source,
    }
}

/// Writes `bytes` to `path` atomically: a temporary file in the same directory, optionally
/// fsynced, then renamed over the target. Readers see the old file or the new one.
pub fn atomic_write(path: &Path, bytes: &[u8], durable: bool) -> Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("file");
    let tmp = dir.join(format!(".{name}.tmp-{}", std::process::id()));
    let write = || -> std::io::Result<()> {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        if durable {
            f.sync_all()?;
        }
        drop(f);
        std::fs::rename(&tmp, path)?;
        if durable && let Ok(d) = std::fs::File::open(dir) {
            let _ = d.sync_all();
        }
        Ok(())
    };
    write().map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        io_err(path)(e)
    })
}

/// Which layers an export writes tiles for.
#[derive(Debug, Clone, PartialEq)]
pub enum LayerSelection {
    /// Convolution layers (the paper's choice).
    Conv,
    /// Every layer with a `[1, C, H, W]` output.
    All,
    /// These layers, by name.
    Names(Vec<String>),
}

impl LayerSelection {
    /// Parses `conv`, `all` or a comma-separated list of names.
    pub fn parse(s: &str) -> Self {
        match s.trim() {
            "conv" => Self::Conv,
            "all" => Self::All,
            names => Self::Names(names.split(',').map(|n| n.trim().to_string()).filter(|n| !n.is_empty()).collect()),
        }
    }

    /// Indices of the selected nodes; unknown names are an error.
    pub fn resolve(&self, graph: &Graph) -> Result<Vec<usize>> {
        match self {
            Self::Conv => Ok(graph.nodes.iter().enumerate().filter(|(_, n)| n.op.is_conv()).map(|(i, _)| i).collect()),
            Self::All => Ok(graph.feature_map_layers().map(|(i, _)| i).collect()),
            Self::Names(names) => names
                .iter()
                .map(|name| graph.node_index(name).ok_or_else(|| ExportError::UnknownLayer { name: name.clone() }))
                .collect(),
        }
    }

    /// The set of layer names, for the engine's capture list.
    pub fn names(&self, graph: &Graph) -> Result<HashSet<String>> {
        Ok(self.resolve(graph)?.into_iter().map(|i| graph.nodes[i].name.clone()).collect())
    }
}

/// The visualisation methods of the paper.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Method {
    Forward,
    Gbp,
    Deconvnet,
    Backprop,
}

impl Method {
    pub fn parse_list(s: &str) -> Result<Vec<Method>> {
        s.split(',')
            .map(str::trim)
            .filter(|m| !m.is_empty())
            .map(|m| match m {
                "forward" => Ok(Method::Forward),
                "gbp" => Ok(Method::Gbp),
                "deconvnet" => Ok(Method::Deconvnet),
                "backprop" => Ok(Method::Backprop),
                other => Err(ExportError::UnknownMethod(other.to_string())),
            })
            .collect()
    }

    pub fn dir_name(self) -> &'static str {
        match self {
            Method::Forward => "forward",
            Method::Gbp => "gbp",
            Method::Deconvnet => "deconvnet",
            Method::Backprop => "backprop",
        }
    }
}

/// What to write.
pub struct ExportRequest<'a> {
    pub out_dir: &'a Path,
    pub layers: &'a [usize],
    pub raw: bool,
    /// Class probabilities and their labels.
    pub scores: (&'a [f32], &'a [String]),
}

/// Counts of what an export wrote.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct ExportSummary {
    pub layers: usize,
    pub pngs: usize,
    pub npys: usize,
}

/// Writes the forward-method data directory from one forward pass. `on_tile` is called
/// once per written PNG (for progress).
pub fn export_forward(graph: &Graph, acts: &Activations, req: &ExportRequest, mut on_tile: impl FnMut()) -> Result<ExportSummary> {
    let out = req.out_dir;
    let forward_dir = out.join(Method::Forward.dir_name());
    std::fs::create_dir_all(&forward_dir).map_err(io_err(&forward_dir))?;
    let raw_dir = out.join("raw").join(Method::Forward.dir_name());
    if req.raw {
        std::fs::create_dir_all(&raw_dir).map_err(io_err(&raw_dir))?;
    }
    let stems = layer_stems(graph);
    let mut summary = ExportSummary::default();
    for &i in req.layers {
        let node = &graph.nodes[i];
        let host = acts.read(&node.outputs[0])?;
        summary.layers += 1;
        if let Some((c, h, w)) = node.feature_map_dims() {
            for k in 0..c {
                let tile = &host.data[k * h * w..(k + 1) * h * w];
                let path = tile_path(out, Method::Forward, &stems[i], k + 1);
                write_png_grey(&path, w as u32, h as u32, &tile_to_grey8(tile))?;
                summary.pngs += 1;
                on_tile();
            }
        }
        if req.raw {
            // Drop the batch axis: forward maps are stored as [C, H, W].
            let shape: Vec<usize> = if host.shape.first() == Some(&1) && host.shape.len() > 1 { host.shape[1..].to_vec() } else { host.shape.clone() };
            let path = raw_dir.join(format!("{}.npy", stems[i]));
            atomic_write(&path, &crate::npy::to_bytes(&shape, &host.data), false)?;
            summary.npys += 1;
        }
    }
    let (probs, labels) = req.scores;
    let scores = json!({"S": probs, "labels": labels});
    atomic_write(&out.join("scores.json"), to_pretty(&scores).as_bytes(), true)?;
    // architecture.json last: its presence marks a complete directory.
    atomic_write(&out.join("architecture.json"), to_pretty(&architecture_json(graph)).as_bytes(), true)?;
    Ok(summary)
}

fn to_pretty(v: &serde_json::Value) -> String {
    serde_json::to_string_pretty(v).unwrap_or_else(|_| v.to_string())
}

/// Encodes and atomically writes an 8-bit grey PNG.
pub fn write_png_grey(path: &Path, w: u32, h: u32, pixels: &[u8]) -> Result<()> {
    write_png(path, w, h, pixels, image::ExtendedColorType::L8)
}

/// Encodes and atomically writes an 8-bit RGB PNG.
pub fn write_png_rgb(path: &Path, w: u32, h: u32, pixels: &[u8]) -> Result<()> {
    write_png(path, w, h, pixels, image::ExtendedColorType::Rgb8)
}

fn write_png(path: &Path, w: u32, h: u32, pixels: &[u8], color: image::ExtendedColorType) -> Result<()> {
    let mut bytes = Vec::new();
    image::ImageEncoder::write_image(image::codecs::png::PngEncoder::new(&mut bytes), pixels, w, h, color).map_err(|e| ExportError::Encode {
        path: path.display().to_string(),
        detail: e.to_string(),
    })?;
    atomic_write(path, &bytes, false)
}

/// `DIR/forward/<stem>_<n>.png` for layer `stem`, filter `n` (from 1).
pub fn tile_path(dir: &Path, method: Method, stem: &str, filter_from_1: usize) -> PathBuf {
    dir.join(method.dir_name()).join(format!("{stem}_{filter_from_1}.png"))
}
