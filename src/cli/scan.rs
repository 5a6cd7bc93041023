//! `convlens scan` and `convlens scan merge`: the command-line edge of [`crate::scan`]
//! (flags, the shard from the scheduler's environment, the progress bar).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::{Args, Subcommand};

use super::ModelArgs;
use crate::engine::Engine;
use crate::export::LayerSelection;
use crate::scan::run::{CheckpointEvery, Event, ScanInputs, ScanSpec};
use crate::scan::{inputs, merge, run, shard};

#[derive(Args, Debug)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub struct ScanArgs {
    #[command(subcommand)]
    pub merge: Option<ScanCommand>,
    #[command(flatten)]
    pub model: ModelArgs,
    /// A folder (walked recursively, sorted), a text file with one image path per line
    /// (relative to the file's folder), or one image.
    #[arg(long, required = true)]
    pub inputs: Option<PathBuf>,
    /// Scan directory: scan.json, stats.csv, topk.json, examples/. With a shard, the shard's
    /// directory `shard-IIII-of-NNNN` is made inside it.
    #[arg(long, required = true)]
    pub out: Option<PathBuf>,
    /// Layers: `conv` (every convolution), `all` (every [1,C,H,W] layer) or names.
    #[arg(long, default_value = "conv")]
    pub layers: String,
    /// Images kept per filter.
    #[arg(long, default_value_t = 9, value_parser = clap::value_parser!(u16).range(1..=1000))]
    pub top_k: u16,
    /// Images per step [default: 16]. Per-core passes add a step's images together, the
    /// cores running at most a step (and at least two images each) ahead; batched passes
    /// take them in one pass [default there: 16 on a GPU, 4 on the CPU], or one per pass
    /// when the model cannot be batched (it says why).
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..))]
    pub batch: Option<u16>,
    #[command(flatten)]
    pub passes: super::stats::PassesArgs,
    /// This process's shard `I/N` (I from 0). Default: from the scheduler's environment
    /// (SLURM_ARRAY_TASK_ID/COUNT, JOB_COMPLETION_INDEX, AWS_BATCH_JOB_ARRAY_INDEX,
    /// CLOUD_RUN_TASK_INDEX/COUNT), else the whole list.
    #[arg(long, value_name = "I/N")]
    pub shard: Option<String>,
    /// Shard count where the scheduler gives only an index (Kubernetes, AWS Batch).
    #[arg(long, value_name = "N")]
    pub shards: Option<usize>,
    /// Side of the receptive-field crop PNGs in pixels; 0 writes none.
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u32).range(0..=1024))]
    pub crop_size: u32,
    /// Continue from the last checkpoint in --out (same model, flags and inputs).
    #[arg(long)]
    pub resume: bool,
    /// Also save the state after this many steps (batches) since the last checkpoint.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub checkpoint_every: Option<u32>,
    /// Save the state this many seconds after the last checkpoint (at the end of that step).
    #[arg(long, value_name = "N", default_value_t = run::DEFAULT_CHECKPOINT_SECONDS, value_parser = clap::value_parser!(u32).range(1..))]
    pub checkpoint_seconds: u32,
}

#[derive(Subcommand, Debug)]
pub enum ScanCommand {
    /// Merge shard directories into one scan directory (equal to a single-process scan).
    Merge(MergeArgs),
}

#[derive(Args, Debug)]
pub struct MergeArgs {
    /// Shard directories (`shard-IIII-of-NNNN`), or one folder holding them.
    #[arg(required = true)]
    pub shards: Vec<PathBuf>,
    /// The merged scan directory.
    #[arg(long)]
    pub out: PathBuf,
    /// Merge without the shards that are missing; scan.json lists them.
    #[arg(long)]
    pub allow_missing: bool,
}

pub fn scan_command(args: &ScanArgs) -> Result<()> {
    match &args.merge {
        Some(ScanCommand::Merge(m)) => merge_command(m),
        None => scan(args),
    }
}

fn scan(args: &ScanArgs) -> Result<()> {
    let (Some(inputs_arg), Some(out)) = (&args.inputs, &args.out) else {
        anyhow::bail!("--inputs and --out are required");
    };
    let resolved = shard::resolve(args.shard.as_deref(), args.shards, |k| {
        std::env::var(k).ok()
    })?;
    let m = args.model.load()?;
    let layers: Vec<usize> = (LayerSelection::parse(&args.layers).resolve(&m.graph)?)
        .into_iter()
        .filter(|&i| {
            let node = &m.graph.nodes[i];
            let ok = node.feature_map_dims().is_some();
            if !ok {
                eprintln!(
                    "note: layer '{}' has no per-channel maps ({:?}); skipped",
                    node.name,
                    node.output_shape()
                );
            }
            ok
        })
        .collect();
    anyhow::ensure!(
        !layers.is_empty(),
        "none of the selected layers has [1, C, H, W] maps"
    );
    let all = inputs::list(inputs_arg)?;
    let device = args.model.device();
    let scan_inputs = ScanInputs {
        shard: resolved.as_ref().map(|r| r.shard),
        all,
    };
    let mine = match scan_inputs.shard {
        Some(s) => s.range(scan_inputs.all.len()).len(),
        None => scan_inputs.all.len(),
    };
    let engine = Engine::new(Arc::clone(&m.graph), device.device.clone());
    let (passes, step) =
        super::stats::summary_passes(engine, device.is_gpu, args.batch, args.passes.passes, mine)?;
    eprintln!(
        "model: {}, {mine} of {} images{}, {} layers, {}, device: {}",
        m.graph.name,
        scan_inputs.all.len(),
        resolved.as_ref().map_or(String::new(), |r| format!(
            " (shard {}/{} from {})",
            r.shard.index, r.shard.count, r.source
        )),
        layers.len(),
        super::stats::describe(&passes),
        device.description
    );
    let spec = ScanSpec {
        graph: Arc::clone(&m.graph),
        input_spec: m.spec.clone(),
        layers,
        top_k: usize::from(args.top_k),
        crop_size: args.crop_size,
        step,
        checkpoint_every: CheckpointEvery {
            steps: args.checkpoint_every.map(|n| n as usize),
            interval: Duration::from_secs(u64::from(args.checkpoint_seconds)),
        },
    };
    let bar = indicatif::ProgressBar::new(mine as u64).with_style(
        indicatif::ProgressStyle::with_template(
            "{msg} [{bar:40}] {pos}/{len} ({per_sec}, ETA {eta})",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    bar.set_message("scan");
    let mut skipped = 0usize;
    let mut on = |event: Event| match event {
        Event::Progress { done, total } => {
            bar.set_length(total as u64);
            bar.set_position(done as u64);
        }
        Event::Skipped { path, reason } => {
            skipped += 1;
            bar.suspend(|| eprintln!("warning: skipped {}: {reason}", path.display()));
        }
        Event::Crops { done, total } => {
            if done == 0 {
                bar.reset();
                bar.set_message("crops");
                bar.set_length(total as u64);
            }
            bar.set_position(done as u64);
        }
    };
    let dir = run::run(&spec, &passes, &scan_inputs, out, args.resume, &mut on)
        .with_context(|| format!("scan into {}", out.display()))?;
    bar.finish_and_clear();
    let peak =
        crate::bench::peak_rss_mib().map_or(String::new(), |m| format!("; peak memory {m:.1} MiB"));
    eprintln!(
        "wrote {} ({} images scanned, {skipped} skipped{peak})",
        dir.display(),
        mine - skipped
    );
    Ok(())
}

fn merge_command(args: &MergeArgs) -> Result<()> {
    // One folder holding shard directories stands for all of them.
    let dirs: Vec<PathBuf> = match args.shards.as_slice() {
        [one] if !one.join(crate::scan::format::MANIFEST_FILE).exists() && one.is_dir() => {
            let mut found: Vec<PathBuf> = std::fs::read_dir(one)
                .with_context(|| format!("reading {}", one.display()))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| {
                    p.file_name()
                        .and_then(|n| n.to_str())
                        .is_some_and(|n| n.starts_with("shard-"))
                        && p.is_dir()
                })
                .collect();
            found.sort();
            anyhow::ensure!(
                !found.is_empty(),
                "{} holds no shard-IIII-of-NNNN directories",
                one.display()
            );
            found
        }
        many => many.to_vec(),
    };
    let summary = merge::merge(&dirs, &args.out, args.allow_missing)?;
    eprintln!(
        "merged {} shards ({} images) into {}{}",
        summary.shards,
        summary.images,
        args.out.display(),
        if summary.missing.is_empty() {
            String::new()
        } else {
            format!("; missing shards {:?}", summary.missing)
        }
    );
    Ok(())
}
