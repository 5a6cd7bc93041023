//! `convlens export`: the paper's data files for one input — tiles per layer and method,
//! Grad-CAM, occlusion maps, optional raw arrays — written through [`crate::export`].

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use clap::Args;

use super::ModelArgs;
use crate::engine::{self, Capture, Engine};
use crate::export::{self, ExportRequest, LayerSelection};
use crate::format::Method;
use crate::model::preprocess::load_input;

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
    /// gradcam (one map per layer for `--class`), occlusion (sliding grey square).
    #[arg(long, default_value = "forward")]
    pub methods: String,
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
}

/// `convlens export`.
pub fn export(args: &ExportArgs) -> Result<()> {
    let wants = |name: &str| args.methods.split(',').any(|m| m.trim() == name);
    let (gradcam, occlusion) = (wants("gradcam"), wants("occlusion"));
    let per_filter: Vec<&str> = args
        .methods
        .split(',')
        .map(str::trim)
        .filter(|m| !matches!(*m, "gradcam" | "occlusion"))
        .collect();
    let mut methods = Method::parse_list(&per_filter.join(","))?;
    methods.dedup();
    if methods.is_empty() && !gradcam && !occlusion {
        bail!("--methods is empty");
    }
    let gradients = gradcam || methods.iter().any(|m| m.gradient().is_some());
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
    // Gradient methods walk back through every layer, so they need all of them kept.
    let capture = if gradients {
        Capture::All
    } else {
        Capture::Layers(selection.names(&m.graph)?)
    };
    let acts = engine.forward(&input, &capture)?;
    let probs = engine::class_probabilities(&m.graph, &acts)?;
    let forward_s = started.elapsed().as_secs_f64();
    let tiles: u64 = layers
        .iter()
        .filter_map(|&i| m.graph.nodes[i].feature_map_dims())
        .map(|(c, _, _)| c as u64)
        .sum::<u64>()
        * methods.len() as u64
        + if gradcam { layers.len() as u64 } else { 0 };
    let bar = indicatif::ProgressBar::new(tiles).with_style(
        indicatif::ProgressStyle::with_template("{msg} [{bar:40}] {pos}/{len} tiles ({eta})")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    bar.set_message(format!("writing {}", args.methods));
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("cannot create {}", args.out.display()))?;
    // `None` for a model whose output is not class scores (a backbone, a feature extractor).
    let class = if probs.is_empty() {
        if gradcam || args.class.is_some() {
            bail!(
                "the model's output is not a class vector (shape {:?}): Grad-CAM and --class \
                 need class scores",
                m.graph
                    .outputs
                    .first()
                    .and_then(|o| m.graph.shapes.get(o))
                    .map(Vec::as_slice)
                    .unwrap_or_default()
            );
        }
        None
    } else {
        Some(match args.class {
            Some(c) if c < probs.len() => c,
            Some(c) => bail!(
                "--class {c} is out of range (the model has {} classes)",
                probs.len()
            ),
            None => crate::viz::stats::top_k(&probs, 1)
                .first()
                .copied()
                .unwrap_or(0),
        })
    };
    let gradcam_class = if gradcam { class } else { None };
    let req = ExportRequest {
        out_dir: &args.out,
        layers: &layers,
        methods: &methods,
        gradcam_class,
        raw: args.raw,
        scores: (&probs, &m.labels),
        picture: input.picture.as_ref(),
    };
    let mut summary = export::export_methods(&engine, &acts, &req, || bar.inc(1))?;
    bar.finish_and_clear();
    if occlusion {
        let hw = [input.shape[2], input.shape[3]];
        let mut spec = engine::methods::occlusion::OcclusionSpec::for_input(hw);
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
            .filter(|&i| m.graph.nodes[i].feature_map_dims().is_some())
            .collect();
        let bar = indicatif::ProgressBar::new(passes).with_style(
            indicatif::ProgressStyle::with_template(
                "occlusion [{bar:40}] {pos}/{len} forward passes ({eta})",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        let maps =
            engine::methods::occlusion::occlusion(&engine, &input, &map_layers, &spec, |_, _| {
                bar.inc(1);
                std::ops::ControlFlow::Continue(())
            })?
            .context("the occlusion sweep stopped")?;
        bar.finish_and_clear();
        let written = export::write_occlusion(&m.graph, &maps, class, &args.out, args.raw)?;
        eprintln!(
            "occlusion: {} squares of {} px at stride {} → {} PNGs",
            passes, spec.size_px, spec.stride_px, written.pngs
        );
        summary.pngs += written.pngs;
        summary.npys += written.npys;
    }
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
