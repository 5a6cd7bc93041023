//! `convlens stats`: per-filter statistics over a folder of images, streamed through the
//! model with running sums only ([`crate::viz::stats`]), written as CSV or JSON.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Result, bail};
use clap::Args;
use rayon::prelude::*;

use super::ModelArgs;
use crate::engine::{Engine, EngineError};
use crate::export::{self, LayerSelection};
use crate::model::preprocess::{InputTensor, load_inputs};
use crate::viz::tile_summary::summarise_forward;

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
    /// Images per forward pass [default: 16 on a GPU, 4 on the CPU]. One pass per image when
    /// the model cannot be batched (it says why).
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..))]
    pub batch: Option<u16>,
}

/// `--batch`'s default on a GPU (see [`StatsArgs::batch`]).
pub const GPU_IMAGES_PER_PASS: usize = 16;

/// `--batch`'s default on the CPU, for `stats` and `scan`: 160 photos through
/// EfficientNet-Lite0, every layer summarised as the pass makes it, took 2.6–2.9 s at 1 per
/// pass, 2.0 s at 4 (133–136 MB peak) and 2.0–2.2 s at 16 (225–230 MB); 2-core AMD EPYC.
pub const CPU_IMAGES_PER_PASS: usize = 4;

/// `engine` with `per_pass` images per forward pass, or itself (saying why once) when the
/// graph cannot be batched. Shared by `stats` and `scan`.
pub(super) fn batched_or_single(engine: Engine, per_pass: usize) -> Result<Engine> {
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
    let per_pass = (args.batch.map(usize::from))
        .unwrap_or(if device.is_gpu {
            GPU_IMAGES_PER_PASS
        } else {
            CPU_IMAGES_PER_PASS
        })
        .min(files.len())
        .max(1);
    let engine = batched_or_single(engine, per_pass)?;
    let bar = indicatif::ProgressBar::new(files.len() as u64).with_style(
        indicatif::ProgressStyle::with_template("{msg} [{bar:40}] {pos}/{len} images ({eta})")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    bar.set_message("statistics");
    let mut skipped = 0usize;
    let mut warn = |file: &std::path::Path, e: &dyn std::fmt::Display| {
        skipped += 1;
        bar.suspend(|| eprintln!("warning: skipped {}: {e:#}", file.display()));
    };
    for chunk in files.chunks(engine.batch_size()) {
        let mut loaded = Vec::with_capacity(chunk.len());
        for (file, result) in chunk.iter().zip(load_inputs(chunk, &m.spec)) {
            match result {
                Ok(input) => loaded.push((file, input)),
                Err(e) => warn(file, &e),
            }
        }
        if loaded.is_empty() {
            bar.inc(chunk.len() as u64);
            continue;
        }
        // A short last pass is padded with copies of its first image (their maps are
        // dropped). Every layer is read before any is added, so a failing pass adds nothing.
        let inputs: Vec<&InputTensor> = (0..engine.batch_size())
            .map(|k| &loaded.get(k).unwrap_or(&loaded[0]).1)
            .collect();
        // Each layer summarised as the pass makes it: per layer [N · C] tiles.
        match summarise_forward(&engine, &inputs, &picked) {
            Ok(tiles) => {
                (acc.par_iter_mut().zip(&tiles)).for_each(|(stats, tiles)| {
                    (tiles.chunks_exact(stats.channels.max(1)))
                        .take(loaded.len())
                        .for_each(|one| stats.add_tiles(one));
                });
            }
            Err(e) => loaded.iter().for_each(|(file, _)| warn(file, &e)),
        }
        bar.inc(chunk.len() as u64);
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
