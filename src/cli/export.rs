//! `convlens export`: the paper's data files for one input — tiles per layer and method,
//! Grad-CAM, occlusion maps, optional raw arrays — written through [`crate::export`].

use crate::viz::gradient_norm::GradientNorm;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use clap::Args;

use super::ModelArgs;
use crate::engine::methods::featvis::FeatvisSpec;
use crate::engine::methods::occlusion::{OcclusionSpec, occlusion};
use crate::engine::{self, Capture, Engine};
use crate::export::{self, ExportRequest, LayerSelection};
use crate::format::Method;
use crate::model::Graph;
use crate::model::preprocess::{InputTensor, load_input};

#[derive(Args, Debug)]
pub struct ExportArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    /// Input image or .npy tensor `[1,3,H,W]`/`[3,H,W]`.
    #[arg(long)]
    pub input: PathBuf,
    /// Output directory (created if missing).
    #[arg(long)]
    pub out: PathBuf,
    /// Comma-separated methods: forward, gbp (guided backpropagation), deconvnet, backprop,
    /// gradcam (one map per layer for `--class`), occlusion (sliding grey square), featvis
    /// (feature visualisation, Lucid's recipe: the same for every input, kept in the cache
    /// the viewer and `convlens featvis` share).
    #[arg(long, default_value = "forward")]
    pub methods: String,
    /// Optimisation steps of featvis.
    #[arg(long, value_name = "N", default_value_t = 512, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub featvis_steps: u32,
    /// Class for Grad-CAM and occlusion (index into the model's outputs); default: top-1.
    #[arg(long)]
    pub class: Option<usize>,
    /// Occlusion square size in input pixels (default: max(H, W)/8).
    #[arg(long, value_name = "PX")]
    pub occlusion_size: Option<usize>,
    /// Occlusion stride in input pixels (default: half the square).
    #[arg(long, value_name = "PX")]
    pub occlusion_stride: Option<usize>,
    /// Layers to write tiles for: `conv`, `all` (every [1,C,H,W] layer) or comma-separated names.
    #[arg(long, default_value = "conv")]
    pub layers: String,
    /// Also write unnormalised float32 arrays under raw/<method>/<stem>.npy.
    #[arg(long)]
    pub raw: bool,
    /// How gradient PNGs (gbp, deconvnet, backprop) are scaled: minmax (the paper's joint
    /// min-max, default) or robust (0 at mid-grey, ±1 at the 98% cumulative-|g| threshold,
    /// beyond it clipped: Captum's outlier_perc=2; what the viewer shows by default).
    #[arg(long, value_name = "minmax|robust", default_value = "minmax", value_parser = parse_norm)]
    pub normalize: GradientNorm,
}

/// The `--methods` list split into the per-filter methods and the two whole-layer ones.
struct MethodChoice {
    /// Per-filter methods computed from the forward pass (not occlusion or featvis).
    per_filter: Vec<Method>,
    gradcam: bool,
    occlusion: bool,
    featvis: bool,
}

impl MethodChoice {
    fn parse(list: &str) -> Result<Self> {
        let names: Vec<&str> = list.split(',').map(str::trim).collect();
        let wants = |name: &str| names.contains(&name);
        let (gradcam, occlusion) = (wants("gradcam"), wants("occlusion"));
        let per_filter: Vec<&str> = names
            .iter()
            .copied()
            .filter(|m| !matches!(*m, "gradcam" | "occlusion"))
            .collect();
        let mut per_filter = Method::parse_list(&per_filter.join(","))?;
        let featvis = per_filter.contains(&Method::FeatVis);
        per_filter.retain(|&m| m != Method::FeatVis);
        per_filter.dedup();
        if per_filter.is_empty() && !gradcam && !occlusion && !featvis {
            bail!("--methods is empty");
        }
        Ok(Self {
            per_filter,
            gradcam,
            occlusion,
            featvis,
        })
    }

    /// Gradient methods walk back through every layer, so they need all of them kept.
    fn needs_every_layer(&self) -> bool {
        self.gradcam || self.per_filter.iter().any(|m| m.gradient().is_some())
    }
}

/// `convlens export`.
pub fn export(args: &ExportArgs) -> Result<()> {
    let choice = MethodChoice::parse(&args.methods)?;
    let m = args.model.load()?;
    let selection = LayerSelection::parse(&args.layers);
    let layers = selection.resolve(&m.graph)?;
    let input = load_input(&args.input, &m.spec)?;
    let device = args.model.device();
    eprintln!(
        "model: {} ({} layers), device: {}",
        m.graph.name,
        m.graph.nodes.len(),
        device.description
    );
    let started = Instant::now();
    let engine = Engine::new(Arc::clone(&m.graph), device.device.clone());
    let capture = if choice.needs_every_layer() {
        Capture::All
    } else {
        Capture::Layers(selection.names(&m.graph)?)
    };
    let acts = engine.forward(&input, &capture)?;
    let probs = engine::class_probabilities(&m.graph, &acts)?;
    let forward_s = started.elapsed().as_secs_f64();
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("cannot create {}", args.out.display()))?;
    let class = chosen_class(&m.graph, &probs, args.class, choice.gradcam)?;
    let req = ExportRequest {
        out_dir: &args.out,
        layers: &layers,
        methods: &choice.per_filter,
        gradcam_class: if choice.gradcam { class } else { None },
        raw: args.raw,
        gradient_norm: args.normalize,
        scores: (&probs, &m.labels),
        picture: input.picture.as_ref(),
    };
    let tiles: u64 = layers
        .iter()
        .filter_map(|&i| m.graph.nodes[i].feature_map_dims())
        .map(|(c, _, _)| c as u64)
        .sum::<u64>()
        * choice.per_filter.len() as u64
        + if choice.gradcam {
            layers.len() as u64
        } else {
            0
        };
    let bar = progress_bar(tiles, "{msg} [{bar:40}] {pos}/{len} tiles ({eta})");
    bar.set_message(format!("writing {}", args.methods));
    let mut summary = export::export_methods(&engine, &acts, &req, || bar.inc(1))?;
    bar.finish_and_clear();
    if choice.occlusion {
        let written = export_occlusion(args, &engine, &input, &layers, class)?;
        summary.pngs += written.pngs;
        summary.npys += written.npys;
    }
    if choice.featvis {
        summary.pngs += export_featvis(args, &m, &engine, &layers)?;
    }
    // Last: architecture.json marks the directory complete.
    export::write_summary_files(&m.graph, &req)?;
    let top: Vec<String> = if probs.is_empty() {
        vec![format!("none ({})", engine::output_summary(&acts)?)]
    } else {
        crate::viz::stats::top_k(&probs, 5)
            .iter()
            .map(|&i| {
                format!(
                    "{} {:.3}",
                    m.labels.get(i).map(String::as_str).unwrap_or("?"),
                    probs[i]
                )
            })
            .collect()
    };
    eprintln!(
        "wrote {} layers, {} PNGs, {} .npy to {} (forward {:.2} s, total {:.2} s); top-5: {}",
        summary.layers,
        summary.pngs,
        summary.npys,
        args.out.display(),
        forward_s,
        started.elapsed().as_secs_f64(),
        top.join(", ")
    );
    Ok(())
}

fn progress_bar(len: u64, template: &str) -> indicatif::ProgressBar {
    indicatif::ProgressBar::new(len).with_style(
        indicatif::ProgressStyle::with_template(template)
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    )
}

/// The class for Grad-CAM and occlusion: `--class` if given and in range, else the top-1;
/// `None` for a model whose output is not class scores (a backbone, a feature extractor),
/// which is an error only when Grad-CAM or `--class` asks for one.
fn chosen_class(
    graph: &Graph,
    probs: &[f32],
    requested: Option<usize>,
    gradcam: bool,
) -> Result<Option<usize>> {
    if probs.is_empty() {
        if gradcam || requested.is_some() {
            bail!(
                "the model's output is not a class vector (shape {:?}): Grad-CAM and --class \
                 need class scores",
                graph
                    .outputs
                    .first()
                    .and_then(|o| graph.shapes.get(o))
                    .map(Vec::as_slice)
                    .unwrap_or_default()
            );
        }
        return Ok(None);
    }
    Ok(Some(match requested {
        Some(c) if c < probs.len() => c,
        Some(c) => bail!(
            "--class {c} is out of range (the model has {} classes)",
            probs.len()
        ),
        None => crate::viz::stats::top_k(probs, 1)
            .first()
            .copied()
            .unwrap_or(0),
    }))
}

/// Runs the occlusion sweep over the selected layers with per-channel maps and writes it.
fn export_occlusion(
    args: &ExportArgs,
    engine: &Engine,
    input: &InputTensor,
    layers: &[usize],
    class: Option<usize>,
) -> Result<export::ExportSummary> {
    let graph = engine.graph();
    let hw = [input.shape[2], input.shape[3]];
    let mut spec = OcclusionSpec::for_input(hw);
    spec.size_px = args.occlusion_size.unwrap_or(spec.size_px);
    spec.stride_px = args.occlusion_stride.unwrap_or((spec.size_px / 2).max(1));
    anyhow::ensure!(
        spec.size_px >= 1 && spec.stride_px >= 1,
        "--occlusion-size and --occlusion-stride must be at least 1"
    );
    let passes = (spec.offsets(hw[0]).len() * spec.offsets(hw[1]).len()) as u64;
    let map_layers: Vec<usize> = layers
        .iter()
        .copied()
        .filter(|&i| graph.nodes[i].feature_map_dims().is_some())
        .collect();
    let bar = progress_bar(passes, "occlusion [{bar:40}] {pos}/{len} squares ({eta})");
    let maps = occlusion(engine, input, &map_layers, &spec, |done, _| {
        bar.set_position(done as u64);
        std::ops::ControlFlow::Continue(())
    })?
    .context("the occlusion sweep stopped")?;
    bar.finish_and_clear();
    if let Some(why) = &maps.unbatched {
        eprintln!("occlusion: one square per forward pass ({why})");
    }
    let written = export::write_occlusion(graph, &maps, class, &args.out, args.raw)?;
    eprintln!(
        "occlusion: {} squares of {} px at stride {}, {} per forward pass → {} PNGs",
        passes, spec.size_px, spec.stride_px, maps.squares_per_pass, written.pngs
    );
    Ok(written)
}

/// Feature visualisations of every filter of the selected layers with per-channel maps,
/// into `featvis/`; returns the PNGs written.
fn export_featvis(
    args: &ExportArgs,
    m: &crate::model::LoadedModel,
    engine: &Engine,
    layers: &[usize],
) -> Result<usize> {
    let mut spec = FeatvisSpec::lucid(m.spec.mean, m.spec.std);
    spec.steps = args.featvis_steps as usize;
    spec.batch = 8;
    let cache = super::featvis::user_cache(&m.graph, &spec)?;
    let dir = crate::format::paths::method_dir(&args.out, Method::FeatVis);
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let stems = crate::format::architecture::layer_stems(&m.graph);
    let started = Instant::now();
    let (mut written, mut computed) = (0, 0);
    for &layer in layers {
        let Some((channels, _, _)) = m.graph.nodes[layer].feature_map_dims() else {
            continue;
        };
        let run = super::featvis::LayerRun {
            engine,
            cache: cache.as_ref(),
            layer,
            stem: &stems[layer],
            spec: &spec,
        };
        let filters: Vec<usize> = (0..channels).collect();
        let (images, optimised) = run.write(&filters, &dir)?;
        written += images.len();
        computed += optimised;
    }
    eprintln!(
        "featvis: {written} PNGs ({computed} optimised at {} steps in {:.1} s, {} from the cache {})",
        spec.steps,
        started.elapsed().as_secs_f64(),
        written - computed,
        cache
            .map(|c| c.dir().display().to_string())
            .unwrap_or_default()
    );
    Ok(written)
}

/// `--normalize minmax|robust`.
pub(crate) fn parse_norm(s: &str) -> Result<GradientNorm, String> {
    GradientNorm::parse(s).ok_or_else(|| format!("'{s}': expected minmax or robust"))
}
