//! `convlens stats`: per-filter statistics over a folder of images, streamed through the
//! model with running sums only ([`crate::viz::stats`]), written as CSV or JSON.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Result, bail};
use clap::Args;

use super::ModelArgs;
use crate::engine::{Engine, EngineError};
use crate::export::{self, LayerSelection};
use crate::viz::summary_passes::{ImageOutcome, PassMode, SummaryPasses};

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
    /// Images per step [default: 16]. Per-core passes add a step's images together, the
    /// cores running at most a step (and at least two images each) ahead; batched passes
    /// take them in one pass [default there: 16 on a GPU, 4 on the CPU], or one per pass
    /// when the model cannot be batched (it says why).
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..))]
    pub batch: Option<u16>,
    #[command(flatten)]
    pub passes: PassesArgs,
}

/// `--passes`, shared by `stats` and `scan`.
#[derive(Args, Debug, Clone, Copy)]
pub struct PassesArgs {
    /// How images go through the engine: `auto` runs one single-threaded pass per image on
    /// each core on the CPU (faster there; see README) and batched passes on a GPU.
    #[arg(long, value_enum, default_value_t = Passes::Auto)]
    pub passes: Passes,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Passes {
    /// Per core on the CPU, batched on a GPU.
    Auto,
    /// One single-threaded pass per image, one on each core at once (CPU only).
    PerCore,
    /// One pass over `--batch` images, each kernel split over the cores.
    Batched,
}

/// `--batch`'s default on a GPU (see [`StatsArgs::batch`]).
pub const GPU_IMAGES_PER_PASS: usize = 16;

/// `--batch`'s default for batched passes on the CPU (`--passes batched`), for `stats` and
/// `scan`: 160 photos through
/// EfficientNet-Lite0, every layer summarised as the pass makes it, took 2.6–2.9 s at 1 per
/// pass, 2.0 s at 4 (133–136 MB peak) and 2.0–2.2 s at 16 (225–230 MB); 2-core AMD EPYC.
pub const CPU_IMAGES_PER_PASS: usize = 4;

/// Images per step of per-core passes (`--batch`'s default there): added together, and
/// how far ahead of the oldest image not yet added the cores may run.
pub const PER_CORE_STEP: usize = 16;

/// `engine` set up for `--passes` and `--batch` over `images` images, and the images per
/// step. Shared by `stats` and `scan`.
pub(super) fn summary_passes(
    engine: Engine,
    is_gpu: bool,
    batch: Option<u16>,
    passes: Passes,
    images: usize,
) -> Result<(SummaryPasses, usize)> {
    let per_core = match passes {
        Passes::Auto => engine.host_kernels() && engine.batch_size() == 1,
        Passes::PerCore => {
            anyhow::ensure!(
                engine.host_kernels(),
                "--passes per-core runs the CPU kernels; use it with --device cpu"
            );
            true
        }
        Passes::Batched => false,
    };
    if per_core {
        let step = batch.map_or(PER_CORE_STEP, usize::from);
        let cores = rayon::current_num_threads();
        let passes = SummaryPasses::per_core(engine, cores)?;
        return Ok((passes, step.min(images).max(1)));
    }
    let per_pass = (batch.map(usize::from))
        .unwrap_or(if is_gpu {
            GPU_IMAGES_PER_PASS
        } else {
            CPU_IMAGES_PER_PASS
        })
        .min(images)
        .max(1);
    let engine = batched_or_single(engine, per_pass)?;
    let step = engine.batch_size();
    Ok((SummaryPasses::batched(engine), step))
}

/// How [`summary_passes`] runs, for the first line a command prints.
pub(super) fn describe(passes: &SummaryPasses) -> String {
    match passes.mode() {
        PassMode::PerCore => format!(
            "one pass per image on each of {} cores",
            passes.passes_at_once()
        ),
        PassMode::Batched => format!("{} per pass", passes.images_per_pass()),
    }
}

/// `engine` with `per_pass` images per forward pass, or itself (saying why once) when the
/// graph cannot be batched.
fn batched_or_single(engine: Engine, per_pass: usize) -> Result<Engine> {
    if per_pass <= 1 {
        return Ok(engine);
    }
    match engine.with_batch(per_pass) {
        Ok(batched) => Ok(batched),
        Err(EngineError::Batch(why)) => {
            eprintln!("note: one image per forward pass ({why})");
            Ok(engine)
        }
        Err(e) => Err(e.into()),
    }
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
    let device = args.model.device();
    eprintln!(
        "model: {}, {} images, {} layers, device: {}",
        m.graph.name,
        files.len(),
        picked.len(),
        device.description
    );
    let engine = Engine::new(Arc::clone(&m.graph), device.device.clone());
    let (passes, step) = summary_passes(
        engine,
        device.is_gpu,
        args.batch,
        args.passes.passes,
        files.len(),
    )?;
    eprintln!("{}", describe(&passes));
    let bar = indicatif::ProgressBar::new(files.len() as u64).with_style(
        indicatif::ProgressStyle::with_template("{msg} [{bar:40}] {pos}/{len} images ({eta})")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    bar.set_message("statistics");
    let mut skipped = 0usize;
    // Each image's tiles are added (in file order) while the cores run the next ones.
    let ahead = passes.look_ahead(step);
    let added: Result<(), std::convert::Infallible> =
        passes.run_ordered(&files, &m.spec, &picked, ahead, &mut |j, outcome| {
            match outcome {
                ImageOutcome::Summarised(tiles) => {
                    (acc.iter_mut().zip(&tiles)).for_each(|(stats, tiles)| stats.add_tiles(tiles))
                }
                ImageOutcome::Skipped(why) => {
                    skipped += 1;
                    bar.suspend(|| eprintln!("warning: skipped {}: {why}", files[j].display()));
                }
            }
            bar.inc(1);
            Ok(())
        });
    let Ok(()) = added;
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
