//! The data directory: the paper's files written from one forward pass —
//! `architecture.json`, `forward/<stem>_<n>.png` (per-filter min-max grey, n from 1),
//! `gbp/`, `deconvnet/`, `backprop/<stem>_<n>.png` (RGB gradient images, per-tile min-max),
//! `gradcam/<stem>.png` (one Grad-CAM map per layer for the chosen class), `input.png` (the
//! input at model resolution), `scores.json` and,
//! with `--raw`, `raw/<method>/<stem>.npy` (forward `[C,H,W]`, gradients `[C,3,H,W]`,
//! Grad-CAM `[H,W]`, unnormalised). Every file is written to a temporary name and renamed into
//! place, so a killed export never leaves a torn file.

use std::collections::HashSet;
use std::path::Path;

use crate::engine::methods::attribution::{self, BackwardError};
use crate::engine::{Activations, Engine, EngineError};
use crate::format::architecture::{Architecture, Scores, layer_stems};
use crate::format::method::{Method, UnknownMethod};
use crate::format::paths;
use crate::model::Graph;
use crate::viz::tiles::{rgb_planes_to_rgb8, tile_to_grey8};

#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error("cannot write {path}: {error}")]
    Io { path: String, error: std::io::Error },
    #[error("cannot encode {path}: {detail}")]
    Encode { path: String, detail: String },
    #[error(transparent)]
    Engine(#[from] EngineError),
    #[error(transparent)]
    Attribution(#[from] BackwardError),
    #[error("no layer named '{name}' (see `convlens info` for the names)")]
    UnknownLayer { name: String },
    #[error(transparent)]
    Method(#[from] UnknownMethod),
}

pub type Result<T, E = ExportError> = std::result::Result<T, E>;

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> ExportError + '_ {
    move |source| ExportError::Io {
        path: path.display().to_string(),
        error: source,
    }
}

/// Writes `bytes` to `path` atomically (see [`crate::atomic_file`]).
pub fn atomic_write(path: &Path, bytes: &[u8], durable: bool) -> Result<()> {
    crate::atomic_file::write_atomic(path, bytes, durable).map_err(io_err(path))
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
            names => Self::Names(
                names
                    .split(',')
                    .map(|n| n.trim().to_string())
                    .filter(|n| !n.is_empty())
                    .collect(),
            ),
        }
    }

    /// Indices of the selected nodes; unknown names are an error.
    pub fn resolve(&self, graph: &Graph) -> Result<Vec<usize>> {
        match self {
            Self::Conv => Ok(graph
                .nodes
                .iter()
                .enumerate()
                .filter(|(_, n)| n.op.is_conv())
                .map(|(i, _)| i)
                .collect()),
            Self::All => Ok(graph.feature_map_layers().map(|(i, _)| i).collect()),
            Self::Names(names) => names
                .iter()
                .map(|name| {
                    graph
                        .node_index(name)
                        .ok_or_else(|| ExportError::UnknownLayer { name: name.clone() })
                })
                .collect(),
        }
    }

    /// The set of layer names, for the engine's capture list.
    pub fn names(&self, graph: &Graph) -> Result<HashSet<String>> {
        Ok(self
            .resolve(graph)?
            .into_iter()
            .map(|i| graph.nodes[i].name.clone())
            .collect())
    }
}

/// What to write.
pub struct ExportRequest<'a> {
    pub out_dir: &'a Path,
    pub layers: &'a [usize],
    pub methods: &'a [Method],
    /// Also write each layer's Grad-CAM map for this class.
    pub gradcam_class: Option<usize>,
    pub raw: bool,
    /// Class probabilities and their labels.
    pub scores: (&'a [f32], &'a [String]),
    /// The input as the model saw it (after crop/resize), written as `input.png`.
    pub picture: Option<&'a image::RgbImage>,
}

/// Counts of what an export wrote.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct ExportSummary {
    pub layers: usize,
    pub pngs: usize,
    pub npys: usize,
}

/// Writes the data directory from one forward pass (`acts` must hold every node output when
/// a gradient method is asked for). `on_tile` is called once per written PNG (for progress).
pub fn export_methods(
    engine: &Engine,
    acts: &Activations,
    req: &ExportRequest,
    mut on_tile: impl FnMut(),
) -> Result<ExportSummary> {
    let graph = engine.graph();
    let out = req.out_dir;
    // Occlusion needs its own sweep of forward passes: `write_occlusion` writes it.
    let methods: Vec<Method> = req
        .methods
        .iter()
        .copied()
        .filter(|&m| m != Method::Occlusion)
        .collect();
    for m in &methods {
        let dir = paths::method_dir(out, *m);
        std::fs::create_dir_all(&dir).map_err(io_err(&dir))?;
        if req.raw {
            let raw = paths::raw_dir(out, m.dir_name());
            std::fs::create_dir_all(&raw).map_err(io_err(&raw))?;
        }
    }
    let stems = layer_stems(graph);
    let mut summary = ExportSummary::default();
    for &i in req.layers {
        let node = &graph.nodes[i];
        summary.layers += 1;
        for &method in &methods {
            let raw_path = paths::raw_array(out, method.dir_name(), &stems[i]);
            match method.gradient() {
                None => {
                    let host = acts.read(&node.outputs[0])?;
                    if let Some((c, h, w)) = node.feature_map_dims() {
                        for k in 0..c {
                            let tile = &host.data[k * h * w..(k + 1) * h * w];
                            write_map_png(
                                &paths::tile(out, method, &stems[i], k + 1),
                                [h, w],
                                tile,
                            )?;
                            summary.pngs += 1;
                            on_tile();
                        }
                    }
                    if req.raw {
                        // Drop the batch axis: forward maps are stored as [C, H, W].
                        let shape: Vec<usize> =
                            if host.shape.first() == Some(&1) && host.shape.len() > 1 {
                                host.shape[1..].to_vec()
                            } else {
                                host.shape.clone()
                            };
                        write_raw(&raw_path, &shape, &host.data)?;
                        summary.npys += 1;
                    }
                }
                Some(rule) => {
                    // Gradient images exist only for layers with per-channel maps.
                    if node.feature_map_dims().is_none() {
                        continue;
                    }
                    let grads = attribution::attribute_layer(engine, acts, i, rule, None)?; // [C, 3, H, W]
                    let [c, planes, h, w] = <[usize; 4]>::try_from(grads.shape.as_slice())
                        .map_err(|_| ExportError::Encode {
                            path: raw_path.display().to_string(),
                            detail: format!("gradient shape {:?} is not [C, 3, H, W]", grads.shape),
                        })?;
                    let per = planes * h * w;
                    for k in 0..c {
                        let image = &grads.data[k * per..(k + 1) * per];
                        let path = paths::tile(out, method, &stems[i], k + 1);
                        if planes == 3 {
                            write_png_rgb(
                                &path,
                                w as u32,
                                h as u32,
                                &rgb_planes_to_rgb8(image, h * w),
                            )?;
                        } else {
                            write_map_png(&path, [planes * h, w], image)?;
                        }
                        summary.pngs += 1;
                        on_tile();
                    }
                    if req.raw {
                        write_raw(&raw_path, &grads.shape, &grads.data)?;
                        summary.npys += 1;
                    }
                }
            }
        }
    }
    if let Some(class) = req.gradcam_class {
        let dir = out.join(paths::GRADCAM);
        let raw_gradcam = paths::raw_dir(out, paths::GRADCAM);
        for d in std::iter::once(&dir).chain(req.raw.then_some(&raw_gradcam)) {
            std::fs::create_dir_all(d).map_err(io_err(d))?;
        }
        for &i in req
            .layers
            .iter()
            .filter(|&&i| graph.nodes[i].feature_map_dims().is_some())
        {
            let cam = crate::engine::methods::gradcam::grad_cam(engine, acts, i, class)?; // [H, W]
            let (h, w) = (cam.shape[0], cam.shape[1]);
            write_map_png(&paths::gradcam_map(out, &stems[i]), [h, w], &cam.data)?;
            summary.pngs += 1;
            on_tile();
            if req.raw {
                write_raw(
                    &paths::raw_array(out, paths::GRADCAM, &stems[i]),
                    &cam.shape,
                    &cam.data,
                )?;
                summary.npys += 1;
            }
        }
    }
    if let Some(p) = req.picture {
        write_png_rgb(
            &out.join(paths::INPUT_PICTURE),
            p.width(),
            p.height(),
            p.as_raw(),
        )?;
    }
    let (probabilities, labels) = req.scores;
    let scores = Scores {
        probabilities: probabilities.to_vec(),
        labels: labels.to_vec(),
    };
    atomic_write(
        &out.join(paths::SCORES),
        scores.to_json_pretty().as_bytes(),
        true,
    )?;
    // architecture.json last: its presence marks a complete directory.
    atomic_write(
        &out.join(paths::ARCHITECTURE),
        Architecture::of(graph).to_json_pretty().as_bytes(),
        true,
    )?;
    Ok(summary)
}

/// Writes an occlusion sweep: `occlusion/<stem>_<n>.png` (drop of filter n's summed response
/// per square position, min-max grey), `occlusion/class_<c>.png` for class `class` (none for
/// a model without class scores), and with
/// `raw` the arrays `raw/occlusion/<stem>.npy` `[C, rows, cols]` and
/// `raw/occlusion/class_<c>.npy` `[rows, cols]`.
pub fn write_occlusion(
    graph: &Graph,
    maps: &crate::engine::methods::occlusion::OcclusionMaps,
    class: Option<usize>,
    out: &Path,
    raw: bool,
) -> Result<ExportSummary> {
    let dir = paths::method_dir(out, Method::Occlusion);
    std::fs::create_dir_all(&dir).map_err(io_err(&dir))?;
    let raw_dir = paths::raw_dir(out, Method::Occlusion.dir_name());
    if raw {
        std::fs::create_dir_all(&raw_dir).map_err(io_err(&raw_dir))?;
    }
    let stems = layer_stems(graph);
    let [rows, cols] = maps.grid_hw;
    let cells = rows * cols;
    let mut summary = ExportSummary::default();
    for (i, drops) in &maps.layers {
        summary.layers += 1;
        for (k, map) in drops.chunks(cells).enumerate() {
            write_map_png(
                &paths::tile(out, Method::Occlusion, &stems[*i], k + 1),
                [rows, cols],
                map,
            )?;
            summary.pngs += 1;
        }
        if raw {
            write_raw(
                &paths::raw_array(out, Method::Occlusion.dir_name(), &stems[*i]),
                &[drops.len() / cells.max(1), rows, cols],
                drops,
            )?;
            summary.npys += 1;
        }
    }
    if let Some(class) = class
        && let Some(map) = maps.classes.chunks(cells).nth(class)
    {
        write_map_png(&paths::occlusion_class_map(out, class), [rows, cols], map)?;
        summary.pngs += 1;
        if raw {
            write_raw(
                &paths::raw_array(out, Method::Occlusion.dir_name(), &format!("class_{class}")),
                &[rows, cols],
                map,
            )?;
            summary.npys += 1;
        }
    }
    Ok(summary)
}

/// Writes one scalar map `[h, w]` as a per-tile min-max grey PNG.
fn write_map_png(path: &Path, [h, w]: [usize; 2], map: &[f32]) -> Result<()> {
    write_png_grey(path, w as u32, h as u32, &tile_to_grey8(map))
}

/// Writes an unnormalised float32 array (not fsynced: the JSON manifest written last is).
fn write_raw(path: &Path, shape: &[usize], data: &[f32]) -> Result<()> {
    atomic_write(path, &crate::npy::to_bytes(shape, data), false)
}

/// Encodes and atomically writes an 8-bit grey PNG.
pub fn write_png_grey(path: &Path, w: u32, h: u32, pixels: &[u8]) -> Result<()> {
    write_png(path, w, h, pixels, image::ExtendedColorType::L8)
}

/// Encodes and atomically writes an 8-bit RGB PNG.
pub fn write_png_rgb(path: &Path, w: u32, h: u32, pixels: &[u8]) -> Result<()> {
    write_png(path, w, h, pixels, image::ExtendedColorType::Rgb8)
}

fn write_png(
    path: &Path,
    w: u32,
    h: u32,
    pixels: &[u8],
    color: image::ExtendedColorType,
) -> Result<()> {
    let mut bytes = Vec::new();
    image::ImageEncoder::write_image(
        image::codecs::png::PngEncoder::new(&mut bytes),
        pixels,
        w,
        h,
        color,
    )
    .map_err(|e| ExportError::Encode {
        path: path.display().to_string(),
        detail: e.to_string(),
    })?;
    atomic_write(path, &bytes, false)
}
