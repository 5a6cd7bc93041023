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
use crate::engine::{Activations, Engine, EngineError, HostTensor};
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
    /// How gradient PNGs are scaled (the paper's min-max, or robust).
    pub gradient_norm: crate::viz::gradient_norm::GradientNorm,
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
///
/// Each (layer, method) pair is computed by [`compute_layer_maps`] and then written by
/// [`write_layer_maps`]; Grad-CAM follows. The caller finishes the directory with
/// [`write_summary_files`] once everything else (e.g. [`write_occlusion`]) is written.
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
        create_dir(&paths::method_dir(out, *m))?;
        if req.raw {
            create_dir(&paths::raw_dir(out, m.dir_name()))?;
        }
    }
    let stems = layer_stems(graph);
    let mut summary = ExportSummary::default();
    for &i in req.layers {
        summary.layers += 1;
        for &method in &methods {
            if let Some(maps) = compute_layer_maps(engine, acts, i, method)? {
                let target = MapTarget {
                    out,
                    method,
                    stem: &stems[i],
                    raw: req.raw,
                    gradient_norm: req.gradient_norm,
                };
                write_layer_maps(&target, &maps, &mut summary, &mut on_tile)?;
            }
        }
    }
    if let Some(class) = req.gradcam_class {
        write_gradcam(engine, acts, req, class, &stems, &mut summary, &mut on_tile)?;
    }
    Ok(summary)
}

/// One method's maps for one layer, computed and not yet written.
#[derive(Debug)]
pub enum LayerMaps {
    /// The layer's output as stored (`[1, C, H, W]` or any other shape); `dims` is
    /// `(C, H, W)` for layers with per-channel maps, which get one PNG per channel.
    Forward {
        output: HostTensor,
        dims: Option<(usize, usize, usize)>,
    },
    /// Per-filter gradient images `[C, planes, H, W]` (planes = 3 for an RGB input).
    Gradient(HostTensor),
}

/// Computes `method`'s maps for layer `layer`; `None` where the method has nothing to show
/// (gradient images of a layer without per-channel maps).
pub fn compute_layer_maps(
    engine: &Engine,
    acts: &Activations,
    layer: usize,
    method: Method,
) -> Result<Option<LayerMaps>> {
    let node = &engine.graph().nodes[layer];
    match method.gradient() {
        None => Ok(Some(LayerMaps::Forward {
            output: acts.read(&node.outputs[0])?,
            dims: node.feature_map_dims(),
        })),
        Some(rule) => {
            // Gradient images exist only for layers with per-channel maps.
            if node.feature_map_dims().is_none() {
                return Ok(None);
            }
            let grads = attribution::attribute_layer(engine, acts, layer, rule, None)?; // [C, 3, H, W]
            Ok(Some(LayerMaps::Gradient(grads)))
        }
    }
}

/// Where one layer's maps of one method go.
pub struct MapTarget<'a> {
    pub out: &'a Path,
    pub method: Method,
    pub stem: &'a str,
    /// Also write the unnormalised array under `raw/`.
    pub raw: bool,
    /// How gradient images are scaled to 8 bits.
    pub gradient_norm: crate::viz::gradient_norm::GradientNorm,
}

/// Writes one layer's maps: a PNG per filter (`<method>/<stem>_<n>.png`, n from 1) and,
/// with `raw`, the array `raw/<method>/<stem>.npy`.
pub fn write_layer_maps(
    target: &MapTarget,
    maps: &LayerMaps,
    summary: &mut ExportSummary,
    on_tile: &mut impl FnMut(),
) -> Result<()> {
    let MapTarget {
        out,
        method,
        stem,
        raw,
        gradient_norm,
    } = *target;
    let tile_path = |k: usize| paths::tile(out, method, stem, k + 1);
    let raw_path = paths::raw_array(out, method.dir_name(), stem);
    match maps {
        LayerMaps::Forward { output, dims } => {
            if let Some((c, h, w)) = *dims {
                for (k, tile) in output.data.chunks_exact(h * w).take(c).enumerate() {
                    write_map_png(&tile_path(k), [h, w], tile)?;
                    summary.pngs += 1;
                    on_tile();
                }
            }
            if raw {
                // Drop the batch axis: forward maps are stored as [C, H, W].
                let shape = match output.shape.split_first() {
                    Some((1, rest)) if !rest.is_empty() => rest,
                    _ => &output.shape[..],
                };
                write_raw(&raw_path, shape, &output.data)?;
                summary.npys += 1;
            }
        }
        LayerMaps::Gradient(grads) => {
            let [_, planes, h, w] =
                <[usize; 4]>::try_from(grads.shape.as_slice()).map_err(|_| {
                    ExportError::Encode {
                        path: raw_path.display().to_string(),
                        detail: format!("gradient shape {:?} is not [C, 3, H, W]", grads.shape),
                    }
                })?;
            for (k, image) in grads.data.chunks_exact(planes * h * w).enumerate() {
                let path = tile_path(k);
                if planes == 3 {
                    write_png_rgb(
                        &path,
                        w as u32,
                        h as u32,
                        &rgb_planes_to_rgb8(image, h * w, gradient_norm),
                    )?;
                } else {
                    write_map_png(&path, [planes * h, w], image)?;
                }
                summary.pngs += 1;
                on_tile();
            }
            if raw {
                write_raw(&raw_path, &grads.shape, &grads.data)?;
                summary.npys += 1;
            }
        }
    }
    Ok(())
}

/// Writes `gradcam/<stem>.png` (and with `raw` the `[H, W]` array) for every selected layer
/// with per-channel maps.
fn write_gradcam(
    engine: &Engine,
    acts: &Activations,
    req: &ExportRequest,
    class: usize,
    stems: &[String],
    summary: &mut ExportSummary,
    on_tile: &mut impl FnMut(),
) -> Result<()> {
    let graph = engine.graph();
    let out = req.out_dir;
    create_dir(&out.join(paths::GRADCAM))?;
    if req.raw {
        create_dir(&paths::raw_dir(out, paths::GRADCAM))?;
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
    Ok(())
}

/// Writes `input.png`, `scores.json` and, last, `architecture.json`: its presence marks a
/// complete directory, so call this after every other file is written.
pub fn write_summary_files(graph: &Graph, req: &ExportRequest) -> Result<()> {
    let out = req.out_dir;
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
    atomic_write(
        &out.join(paths::ARCHITECTURE),
        Architecture::of(graph).to_json_pretty().as_bytes(),
        true,
    )
}

fn create_dir(dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(io_err(dir))
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
    create_dir(&paths::method_dir(out, Method::Occlusion))?;
    if raw {
        create_dir(&paths::raw_dir(out, Method::Occlusion.dir_name()))?;
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
