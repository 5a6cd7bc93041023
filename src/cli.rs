//! The command line (the binary's edge, where `anyhow` turns every library error into one
//! clear message): argument parsing, model/input resolution shared by the subcommands, and
//! the `info` and `export` commands.

pub mod annotations;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use clap::{Args, Parser, Subcommand};

use crate::engine::{self, Capture, DeviceChoice, Engine};
use crate::export::{self, ExportRequest, LayerSelection, Method};
use crate::model::preprocess::{Fit, load_input};
use crate::model::{LoadedModel, default};

#[derive(Parser, Debug)]
#[command(
    name = "convlens",
    version,
    about = "A native, GPU-accelerated visualiser of convolutional neural networks"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Open the viewer (the default command).
    View(ViewArgs),
    /// Print the architecture: every layer with its type, output shape and parameters.
    Info(InfoArgs),
    /// Run the model on an input and write the paper's data directory.
    Export(ExportArgs),
    /// Per-filter statistics (mean, max, zero fraction, rank, dead) over a folder of images.
    Stats(StatsArgs),
    /// Filter annotations (good/bad marks): where they live, set, export as CSV/JSON.
    Annotations(annotations::AnnotationsArgs),
    /// Measure forward, guided backprop, frame and input-to-tiles times (medians).
    Bench(BenchArgs),
}

#[derive(Args, Debug)]
pub struct BenchArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    /// Input image or .npy tensor (default: the embedded coffee photo).
    #[arg(long)]
    pub input: Option<PathBuf>,
    /// Print exactly one JSON object on stdout instead of the table.
    #[arg(long)]
    pub json: bool,
    /// Timed runs per measurement; the median is reported.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..))]
    pub repeats: u32,
    /// Untimed runs before the timed ones.
    #[arg(long, default_value_t = 1)]
    pub warmup: u32,
    /// Leave out guided backprop of every conv filter (minutes on a CPU).
    #[arg(long)]
    pub skip_gbp: bool,
    /// Also time the forward pass op by op (waiting for the device after each node) and, unless
    /// --skip-gbp, one more guided-backprop run reverse step by step; report where the time
    /// goes, by op type.
    #[arg(long)]
    pub ops: bool,
}

#[derive(Args, Debug)]
pub struct StatsArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    /// Folder of images (or one image); every png/jpg/webp/bmp/tif/gif/npy in it is used.
    #[arg(long)]
    pub inputs: PathBuf,
    /// Output file: `.csv` (one row per filter) or `.json`.
    #[arg(long)]
    pub out: PathBuf,
    /// Layers: `all` (every [1,C,H,W] layer), `conv`, or comma-separated names.
    #[arg(long, default_value = "all")]
    pub layers: String,
}

/// Model choice and preprocessing, shared by every command that runs a model.
#[derive(Args, Debug, Clone, Default)]
pub struct ModelArgs {
    /// ONNX model file; omitted = the embedded EfficientNet-Lite0.
    pub model: Option<PathBuf>,
    /// Model input size HxW in pixels (needed when the model's input size is dynamic).
    #[arg(long, value_name = "HxW", value_parser = parse_hw)]
    pub size: Option<[usize; 2]>,
    /// Per-channel mean in 0..1 pixel units: x = (pixel/255 - mean)/std.
    #[arg(long, value_name = "R,G,B", value_parser = parse_rgb)]
    pub mean: Option<[f32; 3]>,
    /// Per-channel standard deviation in 0..1 pixel units.
    #[arg(long, value_name = "R,G,B", value_parser = parse_rgb)]
    pub std: Option<[f32; 3]>,
    /// How an image of another aspect ratio is fitted to the model's size.
    #[arg(long, value_enum, default_value_t = Fit::Crop)]
    pub fit: Fit,
    /// Compute device: auto uses a real GPU when there is one, else the CPU.
    #[arg(long, value_enum, default_value_t = DeviceChoice::Auto)]
    pub device: DeviceChoice,
}

#[derive(Args, Debug, Default)]
pub struct ViewArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    /// Input image, .npy tensor, or a folder of them (←/→ step through it). Default: the
    /// embedded coffee photo.
    #[arg(long)]
    pub input: Option<PathBuf>,
    /// Render one frame offscreen to this PNG and exit (no display needed).
    #[arg(long, value_name = "OUT.png")]
    pub screenshot: Option<PathBuf>,
    /// Window (and screenshot) size WxH in pixels. (`--size` is the model input size.)
    #[arg(long, value_name = "WxH", value_parser = parse_hw, default_value = "1600x1000")]
    pub window_size: [usize; 2],
    /// Layer to select at start (default: the first convolution).
    #[arg(long)]
    pub layer: Option<String>,
    /// What the details canvas shows: forward, gbp, deconvnet, backprop or occlusion tiles, the layer's
    /// gradcam (top class), or its params.
    #[arg(long, default_value = "forward")]
    pub method: String,
    /// Show filter N (from 1) of the selected layer as hovered (for screenshots).
    #[arg(long, value_name = "N")]
    pub hover: Option<usize>,
    /// Annotation file to load and save (default: one per model under the data directory,
    /// see `convlens annotations path`).
    #[arg(long, value_name = "FILE.json")]
    pub annotations: Option<PathBuf>,
    /// Folder of example images per class: `DIR/<label>/…`, `DIR/<class index>/…` or
    /// `DIR/<label>.jpg`; the example of a hovered class is shown beside its Grad-CAM.
    #[arg(long, value_name = "DIR")]
    pub examples: Option<PathBuf>,
    /// Screenshot scale: physical pixels per layout pixel (2 renders as on a HiDPI display).
    #[arg(long, value_name = "F", default_value_t = 1.0, value_parser = parse_ui_scale)]
    pub ui_scale: f32,
    /// Show the tiles sorted by filter rank (mean activation on the input, highest first).
    #[arg(long)]
    pub sort_by_rank: bool,
    /// Show one architecture node per block of layers (G toggles it in the window).
    #[arg(long)]
    pub collapse_blocks: bool,
    /// Size of the architecture's nodes: 1 = the paper's 7 per row, 0.5 = 14 smaller ones
    /// per row, down to 0.25 ([ and ] or Ctrl+wheel over the architecture in the window).
    #[arg(long, value_name = "F", default_value_t = 1.0, value_parser = parse_arch_zoom)]
    pub arch_zoom: f32,
    /// Open a data directory written by `convlens export` (or any program following its
    /// format) instead of running a model.
    #[arg(long, value_name = "DIR", conflicts_with_all = ["model", "input"])]
    pub data: Option<PathBuf>,
    /// Live input from camera N (/dev/videoN on Linux, V4L2; default 0): every frame the
    /// model has time for updates the tiles. Needs a build with `--features webcam`. Give
    /// MODEL before it (`view model.onnx --webcam`), or N (`--webcam 0 model.onnx`).
    #[arg(
        long,
        value_name = "N",
        num_args = 0..=1,
        default_missing_value = "0",
        conflicts_with_all = ["input", "data", "screenshot"]
    )]
    pub webcam: Option<u32>,
}

#[derive(Args, Debug)]
pub struct InfoArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    /// Print the architecture as JSON (the `architecture.json` format).
    #[arg(long)]
    pub json: bool,
}

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

fn parse_hw(s: &str) -> Result<[usize; 2], String> {
    let (h, w) = s
        .split_once(['x', 'X'])
        .ok_or("expected two sizes like 224x224")?;
    let p = |v: &str| {
        v.trim()
            .parse::<usize>()
            .ok()
            .filter(|&n| (1..=16384).contains(&n))
            .ok_or(format!("'{v}' is not a size in 1..=16384"))
    };
    Ok([p(h)?, p(w)?])
}

fn parse_ui_scale(s: &str) -> Result<f32, String> {
    match s.parse::<f32>() {
        Ok(v) if (0.5..=4.0).contains(&v) => Ok(v),
        _ => Err("expected a scale between 0.5 and 4".into()),
    }
}

fn parse_arch_zoom(s: &str) -> Result<f32, String> {
    let (lo, hi) = crate::ui::layout::ARCH_ZOOM_RANGE;
    match s.parse::<f32>() {
        Ok(v) if (lo..=hi).contains(&v) => Ok(v),
        _ => Err(format!("expected a zoom between {lo} and {hi}")),
    }
}

fn parse_rgb(s: &str) -> Result<[f32; 3], String> {
    let v: Vec<f32> = s
        .split(',')
        .map(|x| {
            x.trim()
                .parse::<f32>()
                .map_err(|_| format!("'{x}' is not a number"))
        })
        .collect::<Result<_, _>>()?;
    match v.as_slice() {
        [r, g, b] if v.iter().all(|x| x.is_finite()) => Ok([*r, *g, *b]),
        _ => Err("expected three finite numbers R,G,B".into()),
    }
}

impl ModelArgs {
    /// Loads the model (file or embedded default) and resolves its input spec.
    pub fn load(&self) -> Result<LoadedModel> {
        let mut m = match &self.model {
            None => LoadedModel {
                graph: Arc::new(
                    default::default_graph()
                        .context("the embedded default model failed to load")?,
                ),
                spec: default::default_input_spec(),
                labels: default::imagenet_labels(),
                is_default: true,
            },
            Some(path) => LoadedModel::from_file(path, self.size)?,
        };
        for w in &m.graph.warnings {
            eprintln!("warning: {w}");
        }
        let spec = &mut m.spec;
        if let Some(size) = self.size
            && size != spec.size_hw
        {
            bail!(
                "--size {}x{} differs from the model's fixed input size {}x{}",
                size[0],
                size[1],
                spec.size_hw[0],
                spec.size_hw[1]
            );
        }
        spec.mean = self.mean.unwrap_or(spec.mean);
        spec.std = self.std.unwrap_or(spec.std);
        if spec.std.contains(&0.0) {
            bail!("--std must not contain 0");
        }
        spec.fit = self.fit;
        Ok(m)
    }
}

/// `convlens info`.
pub fn info(args: &InfoArgs) -> Result<()> {
    let m = args.model.load()?;
    let g = &m.graph;
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&export::architecture_json(g))?
        );
        return Ok(());
    }
    let input = g
        .image_input()
        .map(|i| format!("{} {:?}", i.name, i.shape))
        .unwrap_or_default();
    println!(
        "{} — {} layers, {} parameters, opset {}, input {input}",
        g.name,
        g.nodes.len(),
        g.parameter_count(),
        g.opset
    );
    println!(
        "keeping every activation needs {:.1} MiB; {} layers have per-channel maps",
        g.activation_bytes() as f64 / (1 << 20) as f64,
        g.feature_map_layers().count()
    );
    println!(
        "{:>4}  {:<14} {:<22} {:>12}  name",
        "#", "type", "output", "params"
    );
    for (i, n) in g.nodes.iter().enumerate() {
        let params: usize = n
            .inputs
            .iter()
            .filter_map(|x| g.constants.get(x))
            .map(|c| c.numel())
            .sum();
        println!(
            "{:>4}  {:<14} {:<22} {:>12}  {}",
            i,
            n.op.type_name(),
            format!("{:?}", n.output_shape()),
            params,
            n.name
        );
    }
    Ok(())
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
    let device = engine::device::select(args.model.device);
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
    let class = match args.class {
        Some(c) if c < probs.len() => c,
        Some(c) => bail!(
            "--class {c} is out of range (the model has {} classes)",
            probs.len()
        ),
        None => engine::top_k(&probs, 1).first().copied().unwrap_or(0),
    };
    let gradcam_class = gradcam.then_some(class);
    let req = ExportRequest {
        out_dir: &args.out,
        layers: &layers,
        methods: &methods,
        gradcam_class,
        raw: args.raw,
        scores: (&probs, &m.labels),
        picture: input.picture.as_ref(),
    };
    let summary = export::export_methods(&engine, &acts, &req, || bar.inc(1))?;
    bar.finish_and_clear();
    if occlusion {
        let hw = [input.shape[2], input.shape[3]];
        let mut spec = engine::occlusion::OcclusionSpec::for_input(hw);
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
            engine::occlusion::occlusion(&engine, &input, &map_layers, &spec, || bar.inc(1))?;
        bar.finish_and_clear();
        let written = export::write_occlusion(&m.graph, &maps, class, &args.out, args.raw)?;
        eprintln!(
            "occlusion: {} squares of {} px at stride {} → {} PNGs",
            passes, spec.size_px, spec.stride_px, written.pngs
        );
    }
    let top: Vec<String> = engine::top_k(&probs, 5)
        .iter()
        .map(|&i| {
            format!(
                "{} {:.3}",
                m.labels.get(i).map(String::as_str).unwrap_or("?"),
                probs[i]
            )
        })
        .collect();
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

/// `--webcam` needs a build with the `webcam` cargo feature; without it, say how to get one.
fn check_webcam_support(webcam: Option<u32>) -> Result<()> {
    if webcam.is_some() && !cfg!(feature = "webcam") {
        bail!("{}", crate::app::NO_WEBCAM_SUPPORT);
    }
    Ok(())
}

/// `convlens view`: the window, or one offscreen frame with `--screenshot`.
pub fn view(args: &ViewArgs) -> Result<()> {
    use crate::ui::state::Panel;
    check_webcam_support(args.webcam)?;
    let (method, panel) = match args.method.trim() {
        "gradcam" => (Method::Forward, Panel::GradCam),
        "params" | "parameters" => (Method::Forward, Panel::Params),
        m => match Method::parse_list(m).ok().as_deref() {
            Some([m]) => (*m, Panel::Tiles),
            _ => bail!(
                "--method takes one of forward, gbp, deconvnet, backprop, occlusion, gradcam, params"
            ),
        },
    };
    let source = match &args.data {
        Some(dir) => crate::app::ViewSource::Data(Box::new(crate::datadir::DataDir::open(dir)?)),
        None => crate::app::ViewSource::Model(args.model.load()?),
    };
    let options = crate::app::ViewerOptions {
        input: args.input.clone(),
        webcam: args.webcam,
        layer: args.layer.clone(),
        hover: args.hover,
        method,
        window_px: [args.window_size[0] as u32, args.window_size[1] as u32],
        annotations: args.annotations.clone(),
        device: args.model.device,
        sort_by_rank: args.sort_by_rank,
        collapse_blocks: args.collapse_blocks,
        arch_zoom: args.arch_zoom,
        ui_scale: args.ui_scale,
        panel,
        examples: args.examples.clone(),
    };
    match &args.screenshot {
        Some(out) => crate::app::screenshot(source, &options, out),
        None => crate::app::run_window(source, options),
    }
}

/// `convlens bench`: the table (or one JSON object with `--json`) on stdout, progress on stderr.
pub fn bench(args: &BenchArgs) -> Result<()> {
    let m = args.model.load()?;
    let device = engine::device::select(args.model.device);
    let model_name = match &args.model.model {
        Some(path) => path.display().to_string(),
        None => m.graph.name.clone(),
    };
    eprintln!("model: {model_name}, device: {}", device.description);
    let options = crate::bench::BenchOptions {
        model_name,
        input: args.input.clone(),
        repeats: args.repeats as usize,
        warmup: args.warmup as usize,
        skip_gbp: args.skip_gbp,
        ops: args.ops,
        viewport: crate::bench::FRAME_VIEWPORT,
    };
    let report = crate::bench::run(&m, &device, &options, &mut |line| eprintln!("{line}"))?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", report.table());
    }
    Ok(())
}

/// `convlens stats`: streams the images through the model, keeping only running sums.
pub fn stats(args: &StatsArgs) -> Result<()> {
    let json = match args.out.extension().and_then(|e| e.to_str()) {
        Some("json") => true,
        Some("csv") => false,
        _ => bail!("--out must end in .csv or .json"),
    };
    let m = args.model.load()?;
    let selection = LayerSelection::parse(&args.layers);
    let layers = selection.resolve(&m.graph)?;
    let mut acc: Vec<crate::viz::stats::LayerStats> = Vec::new();
    let mut picked = Vec::new();
    for &i in &layers {
        let node = &m.graph.nodes[i];
        match node.feature_map_dims() {
            Some((c, _, _)) => {
                acc.push(crate::viz::stats::LayerStats::new(node.name.clone(), c));
                picked.push(i);
            }
            None => eprintln!(
                "note: layer '{}' has no per-channel maps ({:?}); skipped",
                node.name,
                node.output_shape()
            ),
        }
    }
    anyhow::ensure!(
        !picked.is_empty(),
        "none of the selected layers has per-channel maps"
    );
    let files = crate::model::preprocess::list_inputs(&args.inputs)?;
    let device = engine::device::select(args.model.device);
    eprintln!(
        "model: {}, {} images, {} layers, device: {}",
        m.graph.name,
        files.len(),
        picked.len(),
        device.description
    );
    let engine = Engine::new(Arc::clone(&m.graph), device.device.clone());
    let capture = Capture::Layers(selection.names(&m.graph)?);
    let bar = indicatif::ProgressBar::new(files.len() as u64).with_style(
        indicatif::ProgressStyle::with_template("{msg} [{bar:40}] {pos}/{len} images ({eta})")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    bar.set_message("statistics");
    let mut skipped = 0usize;
    for file in &files {
        // Read every layer first, so a failing image adds to no layer at all.
        let run = || -> Result<Vec<Vec<f32>>> {
            let input = load_input(file, &m.spec)?;
            let acts = engine.forward(&input, &capture)?;
            picked
                .iter()
                .map(|&i| Ok(acts.read(&m.graph.nodes[i].outputs[0])?.data))
                .collect()
        };
        match run() {
            Ok(maps) => acc
                .iter_mut()
                .zip(&maps)
                .for_each(|(stats, map)| stats.add(map)),
            Err(e) => {
                skipped += 1;
                bar.suspend(|| eprintln!("warning: skipped {}: {e:#}", file.display()));
            }
        }
        bar.inc(1);
    }
    bar.finish_and_clear();
    anyhow::ensure!(skipped < files.len(), "no image could be processed");
    let text = if json {
        serde_json::to_string_pretty(&crate::viz::stats::to_json(&acc))?
    } else {
        crate::viz::stats::to_csv(&acc)
    };
    export::atomic_write(&args.out, text.as_bytes(), true)?;
    let dead: usize = acc
        .iter()
        .map(|l| l.summary().iter().filter(|f| f.dead).count())
        .sum();
    let total: usize = acc.iter().map(|l| l.channels).sum();
    eprintln!(
        "wrote {} ({} images, {skipped} skipped; {dead} of {total} filters dead)",
        args.out.display(),
        files.len() - skipped
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flag_parsers_reject_nonsense() {
        assert_eq!(parse_hw("224x200"), Ok([224, 200]));
        assert!(parse_hw("0x5").is_err());
        assert!(parse_hw("224").is_err());
        assert_eq!(parse_rgb("0.5, 0.4,0.3"), Ok([0.5, 0.4, 0.3]));
        assert!(parse_rgb("1,2").is_err());
        assert!(parse_rgb("1,2,nan").is_err());
    }

    fn parse_view(args: &[&str]) -> Result<ViewArgs, clap::Error> {
        let argv = ["convlens", "view"].iter().chain(args);
        match Cli::try_parse_from(argv)?.command {
            Some(Command::View(v)) => Ok(v),
            other => panic!("not a view command: {other:?}"),
        }
    }

    #[test]
    fn webcam_takes_an_optional_camera_index() {
        assert_eq!(parse_view(&[]).unwrap().webcam, None);
        assert_eq!(parse_view(&["--webcam"]).unwrap().webcam, Some(0));
        assert_eq!(parse_view(&["--webcam", "2"]).unwrap().webcam, Some(2));
        assert_eq!(parse_view(&["--webcam=1"]).unwrap().webcam, Some(1));
        let v = parse_view(&["m.onnx", "--webcam"]).unwrap();
        assert_eq!((v.model.model, v.webcam), (Some("m.onnx".into()), Some(0)));
        let v = parse_view(&["--webcam", "3", "m.onnx", "--layer", "conv1"]).unwrap();
        assert_eq!((v.model.model, v.webcam), (Some("m.onnx".into()), Some(3)));
        let v = parse_view(&["--webcam", "--layer", "conv1"]).unwrap();
        assert_eq!((v.webcam, v.layer.as_deref()), (Some(0), Some("conv1")));
        assert!(parse_view(&["--webcam", "-1"]).is_err());
    }

    #[test]
    fn webcam_conflicts_with_other_inputs_and_screenshots() {
        for other in [
            &["--input", "a.png"][..],
            &["--data", "dir"][..],
            &["--screenshot", "out.png"][..],
        ] {
            let args: Vec<&str> = ["--webcam"].iter().chain(other).copied().collect();
            let err = parse_view(&args).err().unwrap();
            assert_eq!(
                err.kind(),
                clap::error::ErrorKind::ArgumentConflict,
                "{args:?}"
            );
            // Either order.
            let args: Vec<&str> = other.iter().chain(&["--webcam"]).copied().collect();
            assert!(parse_view(&args).is_err(), "{args:?}");
        }
    }

    #[test]
    fn webcam_without_the_feature_says_how_to_get_it() {
        assert!(check_webcam_support(None).is_ok());
        let result = check_webcam_support(Some(0));
        if cfg!(feature = "webcam") {
            assert!(result.is_ok());
        } else {
            let message = result.unwrap_err().to_string();
            assert_eq!(
                message,
                "this convlens was built without webcam support; rebuild with \
                 `cargo run --features webcam -- view --webcam`"
            );
            // `view` refuses before loading any model or opening a window.
            let args = ViewArgs {
                webcam: Some(0),
                model: ModelArgs {
                    model: Some("/nonexistent/model.onnx".into()),
                    ..Default::default()
                },
                ..Default::default()
            };
            assert_eq!(view(&args).unwrap_err().to_string(), message);
        }
    }
}
