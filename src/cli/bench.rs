//! `convlens bench`: its flags, and the run that measures forward, guided backprop, frame,
//! input-to-tiles and feature-vis times ([`crate::bench`]) and prints them as a table or
//! one JSON object.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Result;
use clap::Args;

use super::{ModelArgs, parse_hw};
use crate::model::LoadedModel;

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
    /// Also time one forward pass over this many different inputs at once (per-image time
    /// in the table); 1 leaves it out.
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u16).range(1..))]
    pub batch: u16,
    /// Also time feature visualisation (16 filters of the last conv layer, scaled to 512
    /// steps): `featvis_s_per_filter`.
    #[arg(long)]
    pub featvis: bool,
    /// The image size feature visualisation is timed at (Lucid's 128 px; the model's own
    /// size where it cannot take another).
    #[arg(long, value_name = "HxW", default_value = "128x128", value_parser = parse_hw)]
    pub featvis_size: [usize; 2],
    /// The layer feature visualisation is timed on (default: the last conv layer).
    #[arg(long, value_name = "NAME")]
    pub featvis_layer: Option<String>,
    /// Feature visualisation steps timed (after 2 untimed ones), scaled to 512. A run's early
    /// steps cost more than its average, so a short sample reads high (16 steps: 25% on
    /// EfficientNet-Lite0, 64 within 1% of a whole run); 512 times a whole run.
    #[arg(long, value_name = "N", default_value_t = 64, value_parser = clap::value_parser!(u16).range(1..=4096))]
    pub featvis_steps: u16,
    /// Only the architecture: model file → first frame, and frames while the architecture
    /// scrolls (every layer a node, and in blocks). No compute; for very deep models.
    #[arg(long, conflicts_with_all = ["skip_gbp", "ops", "featvis", "input"])]
    pub arch_only: bool,
}

/// `convlens bench`: the table (or one JSON object with `--json`) on stdout, progress on stderr.
pub fn bench(args: &BenchArgs) -> Result<()> {
    let load_started = std::time::Instant::now();
    let m = args.model.load()?;
    let load_s = load_started.elapsed().as_secs_f64();
    if args.arch_only {
        let ctx = crate::render::GpuContext::headless()?;
        eprintln!("render: {}", ctx.describe());
        let figures = crate::bench::arch::measure(
            &ctx,
            &m.graph,
            Some(load_s),
            crate::bench::FRAME_VIEWPORT,
            &mut |line| eprintln!("{line}"),
        )?;
        if args.json {
            println!("{}", serde_json::to_string_pretty(&figures)?);
        } else {
            print!("{}", figures.table());
        }
        return Ok(());
    }
    let device = args.model.device();
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
        batch: usize::from(args.batch),
        featvis: args.featvis.then(|| featvis_bench(args, &m)),
        load_s: Some(load_s),
    };
    let report = crate::bench::run(&m, &device, &options, &mut |line| eprintln!("{line}"))?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", report.table());
    }
    Ok(())
}

/// `bench --featvis`: the model at `--featvis-size` (its own graph where it cannot take it,
/// with a warning).
fn featvis_bench(args: &BenchArgs, m: &LoadedModel) -> crate::bench::FeatvisBench {
    let resized = ModelArgs {
        size: Some(args.featvis_size),
        ..args.model.clone()
    };
    let layer = args.featvis_layer.clone().or_else(|| {
        (m.graph.nodes.iter().rev())
            .find(|n| n.op.is_conv())
            .map(|n| n.name.clone())
    });
    // The whole model at that size, else the model up to the layer.
    let graph = if m.spec.size_hw == args.featvis_size {
        Arc::clone(&m.graph)
    } else {
        let whole = resized.load_sized(true, None);
        match whole.or_else(|_| resized.load_sized(true, layer.as_deref())) {
            Ok(r) => r.graph,
            Err(e) => {
                eprintln!("warning: featvis at the model's own size: {e:#}");
                Arc::clone(&m.graph)
            }
        }
    };
    crate::bench::FeatvisBench {
        graph,
        layer: args.featvis_layer.clone(),
        steps: usize::from(args.featvis_steps),
    }
}
