//! `convlens bench`: how fast each stage of ConvLens is on this machine and model — the
//! forward pass keeping every layer (one input, and a batch of `--batch` inputs), guided
//! backprop of every conv filter, one frame of the largest conv layer's tiles, a new input
//! file all the way to tiles ready to draw and, with `--featvis`, feature visualisation per
//! filter — as medians over repeated runs, plus the process's peak memory.
//!
//! Every measurement waits for its device to finish: the forward pass ends with
//! [`burn::tensor::Device::sync`], gradient images are read back to the CPU (as `export`
//! does), frames and atlas uploads end with [`GpuContext::wait_idle`]. The rendering
//! measurements need a wgpu adapter (a software one will do); without one they are `None`
//! and a note says why.

use std::path::PathBuf;
use std::time::Instant;

use crate::engine::methods::attribution::{self, BackwardError, GradientRule};
use crate::engine::methods::featvis::{FeatvisError, FeatvisSpec, featvis};
use crate::engine::{Capture, ComputeDevice, Engine, EngineError};
use crate::model::preprocess::InputTensor;
use crate::model::{LoadedModel, ModelError, default};
use crate::render::{AtlasFill, GpuContext, RenderError};

pub mod arch;
mod render;
mod report;

pub use render::grid_cell;
pub use report::{BenchReport, OpTime};

/// A gradient run longer than this is measured once (the whole run is the sample).
pub const GBP_SINGLE_RUN_S: f64 = 10.0;
/// The most tiles the frame measurement draws.
pub const MAX_FRAME_TILES: usize = 10_000;
/// Offscreen frame size (the viewer's default window size).
pub const FRAME_VIEWPORT: [u32; 2] = [1600, 1000];

/// Why a benchmark could not run.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    #[error(transparent)]
    Model(#[from] ModelError),
    #[error(transparent)]
    Engine(#[from] EngineError),
    #[error(transparent)]
    Backward(#[from] BackwardError),
    #[error(transparent)]
    Render(#[from] RenderError),
    #[error("waiting for the compute device failed: {0}")]
    Sync(String),
    #[error("--repeats must be at least 1")]
    NoRepeats,
    #[error("the model has no convolution layer with a [1, C, H, W] output")]
    NoConvLayers,
    #[error(transparent)]
    Featvis(#[from] FeatvisError),
    #[error("--featvis-layer {0}: the model has no such layer")]
    NoSuchLayer(String),
    /// The viewer's own forward step ([`crate::app::compute::run_forward`]) failed.
    #[error("the viewer's forward pass: {0}")]
    Viewer(String),
}

pub type Result<T, E = BenchError> = std::result::Result<T, E>;

/// What to measure and how often.
#[derive(Debug, Clone)]
pub struct BenchOptions {
    /// Shown as the report's `model`.
    pub model_name: String,
    /// Input file; `None` = the embedded coffee photo (decoded from memory).
    pub input: Option<PathBuf>,
    /// Timed runs per measurement (at least 1); the median is reported.
    pub repeats: usize,
    /// Untimed runs before the timed ones.
    pub warmup: usize,
    /// Leave out the guided-backprop measurement.
    pub skip_gbp: bool,
    /// Time the forward pass node by node too ([`BenchReport::forward_ops`]), and one more
    /// guided-backprop run step by step ([`BenchReport::gbp_ops`]).
    pub ops: bool,
    /// Size of the offscreen frame.
    pub viewport: [u32; 2],
    /// Inputs per pass for the batched forward measurement; 1 leaves it out.
    pub batch: usize,
    /// Also time feature visualisation ([`BenchReport::featvis_s_per_filter`]).
    pub featvis: Option<FeatvisBench>,
    /// How long loading the model took, when the caller timed it (for
    /// [`arch::ArchFigures::open_to_first_frame_ms`]).
    pub load_s: Option<f64>,
}

/// What the feature-visualisation measurement optimises.
#[derive(Debug, Clone)]
pub struct FeatvisBench {
    /// The model's graph at the size the images are optimised at (Lucid's 128 px where the
    /// model takes it, else its own size).
    pub graph: std::sync::Arc<crate::model::Graph>,
    /// The layer (default: the last conv layer).
    pub layer: Option<String>,
    /// Steps timed (after [`FEATVIS_WARM_UP_STEPS`] untimed ones), scaled to
    /// [`FEATVIS_STEPS`].
    pub steps: usize,
}

/// Filters of the feature-visualisation measurement.
pub const FEATVIS_FILTERS: usize = 16;
/// The step count `featvis_s_per_filter` is given for (Lucid's default).
pub const FEATVIS_STEPS: usize = 512;
/// Untimed steps before the measured ones (buffers' first page faults, thread start).
pub const FEATVIS_WARM_UP_STEPS: usize = 2;

pub(crate) const MIB: f64 = (1u64 << 20) as f64;

/// Runs every measurement on `model`; `progress` gets one line per step (for stderr).
pub fn run(
    model: &LoadedModel,
    device: &ComputeDevice,
    options: &BenchOptions,
    progress: &mut dyn FnMut(&str),
) -> Result<BenchReport> {
    if options.repeats == 0 {
        return Err(BenchError::NoRepeats);
    }
    let graph = &model.graph;
    let convs = conv_layers(model);
    if convs.is_empty() {
        return Err(BenchError::NoConvLayers);
    }
    let read_input = || -> Result<InputTensor> {
        Ok(default::input_or_default(
            options.input.as_deref(),
            &model.spec,
        )?)
    };
    let input = read_input()?;
    // On a GPU, compute on the renderer's own device so tiles can take the zero-copy path.
    let gpu = GpuContext::headless();
    let mut notes = Vec::new();
    let (compute_device, device_description) = match (&gpu, device.is_gpu) {
        (Ok(ctx), true) => match ctx.burn_device() {
            Ok(shared) => (
                shared,
                format!("{} (shared with the renderer)", device.description),
            ),
            Err(e) => {
                notes.push(format!("burn could not share the renderer's device: {e}"));
                (device.device.clone(), device.description.clone())
            }
        },
        _ => (device.device.clone(), device.description.clone()),
    };
    let engine = Engine::new(std::sync::Arc::clone(graph), compute_device);
    let sync = || {
        engine
            .device()
            .sync()
            .map_err(|e| BenchError::Sync(e.to_string()))
    };
    let mut pool_max: Option<u64> = None;
    let mut sample_pool = || {
        if device.is_gpu
            && let Some(usage) = engine.device().memory_pool_usage()
        {
            pool_max = Some(pool_max.unwrap_or(0).max(usage.bytes_reserved));
        }
    };

    progress(&format!(
        "forward pass, every layer kept: {} warm-up + {} timed runs",
        options.warmup, options.repeats
    ));
    let (forward_s, _) = median_of(options.warmup, options.repeats, || {
        let acts = engine.forward(&input, &Capture::All)?;
        sync()?;
        Ok(acts)
    })?;
    sample_pool();
    let forward_batch_ms = forward_batch(&engine, &input, options, &sync, progress, &mut notes)?;
    sample_pool();
    let (featvis_s_per_filter, featvis_layer) = match &options.featvis {
        Some(fv) => featvis_per_filter(fv, model, device, progress, &mut notes)?,
        None => (None, None),
    };
    let forward_ops = if options.ops {
        progress("forward pass op by op (device synchronised after each node)");
        forward_by_op(&engine, &input, options)?
    } else {
        Vec::new()
    };

    let gbp_filters: usize = convs.iter().map(|&(_, (c, _, _))| c).sum();
    let mut gbp_ops = Vec::new();
    let (gbp_all_conv_s, gbp_cpu_s, gbp_repeats) = if options.skip_gbp {
        notes.push("guided backprop skipped (--skip-gbp)".to_string());
        (None, None, 0)
    } else {
        let acts = engine.forward(&input, &Capture::All)?;
        sync()?;
        let mut run_gbp = |mut verbose: Option<&mut dyn FnMut(&str)>| -> Result<(f64, f64)> {
            let (started, cpu) = (Instant::now(), process_cpu_s());
            for (n, &(i, (c, _, _))) in convs.iter().enumerate() {
                attribution::attribute_layer(&engine, &acts, i, GradientRule::Guided, None)?;
                if let Some(progress) = verbose.as_mut() {
                    progress(&format!(
                        "  gbp layer {}/{} {} ({c} filters), {:.1} s so far",
                        n + 1,
                        convs.len(),
                        graph.nodes[i].name,
                        started.elapsed().as_secs_f64()
                    ));
                }
            }
            sample_pool();
            let cpu = cpu.zip(process_cpu_s()).map_or(f64::NAN, |(a, b)| b - a);
            Ok((started.elapsed().as_secs_f64(), cpu))
        };
        progress(&format!(
            "guided backprop of {gbp_filters} filters in {} conv layers (first run)",
            convs.len()
        ));
        let first = run_gbp(Some(&mut *progress))?;
        let mut samples = Vec::new();
        if first.0 > GBP_SINGLE_RUN_S {
            notes.push(format!(
                "gbp: one run only (n=1, it took {:.1} s > {GBP_SINGLE_RUN_S} s); \
                 it includes first-run warm-up",
                first.0
            ));
            samples.push(first);
        } else {
            if options.warmup == 0 {
                samples.push(first);
            }
            for _ in 1..options.warmup {
                run_gbp(None)?;
            }
            while samples.len() < options.repeats {
                progress(&format!(
                    "guided backprop, timed run {}/{}",
                    samples.len() + 1,
                    options.repeats
                ));
                samples.push(run_gbp(None)?);
            }
        }
        if options.ops {
            progress("guided backprop once more, timed by reverse op");
            let profile = crate::engine::profile::ReverseProfile::start();
            run_gbp(None)?;
            gbp_ops = profile
                .finish()
                .into_iter()
                .map(|(op, nodes, s)| OpTime {
                    op,
                    nodes,
                    ms: round(s * 1e3, 1),
                })
                .collect();
        }
        let mut wall: Vec<f64> = samples.iter().map(|s| s.0).collect();
        let mut cpu: Vec<f64> = samples.iter().map(|s| s.1).collect();
        let cpu = cpu
            .iter()
            .all(|c| c.is_finite())
            .then(|| round(median(&mut cpu), 2));
        (Some(round(median(&mut wall), 4)), cpu, samples.len())
    };

    let mut report = BenchReport {
        model: options.model_name.clone(),
        input: options.input.as_ref().map_or_else(
            || format!("{} (embedded)", default::SAMPLE_IMAGES[0].0),
            |p| p.display().to_string(),
        ),
        device: device_description,
        render_device: None,
        cpu_kernels: crate::engine::device::cpu_kernel_path(),
        repeats: options.repeats,
        warmup: options.warmup,
        forward_ms: round(forward_s * 1e3, 3),
        batch: options.batch,
        forward_batch_ms,
        featvis_s_per_filter,
        featvis_layer,
        forward_batch_images_per_s: forward_batch_ms
            .map(|ms| round(options.batch as f64 / (ms * 1e-3).max(1e-9), 1)),
        gbp_all_conv_s,
        gbp_filters,
        gbp_layers: convs.len(),
        gbp_cpu_s,
        gbp_repeats,
        frame_ms: None,
        tiles: None,
        frame_layer: None,
        viewport: options.viewport,
        input_to_tiles_ms: None,
        uploaded_tiles: None,
        atlas_fill: None,
        atlas_fill_ms: None,
        input_to_tiles_upload_ms: None,
        atlas_fill_upload_ms: None,
        forward_ops,
        gbp_ops,
        peak_rss_mib: None,
        compute_pool_reserved_mib: None,
        atlas_mib: None,
        arch: None,
        notes,
    };
    match gpu {
        Err(e) => report.notes.push(format!(
            "no wgpu adapter ({e}): frame_ms and input_to_tiles_ms not measured"
        )),
        Ok(ctx) => {
            report.render_device = Some(ctx.describe());
            let r = render::measure(&ctx, &engine, &convs, options, &read_input, progress)?;
            sample_pool();
            report.frame_ms = Some(r.frame_ms);
            report.tiles = Some(r.tiles);
            report.frame_layer = Some(r.frame_layer);
            report.input_to_tiles_ms = Some(r.input_to_tiles_ms);
            report.uploaded_tiles = Some(r.uploaded_tiles);
            report.atlas_fill = Some(
                match r.atlas_fill {
                    AtlasFill::ZeroCopy => "zero-copy",
                    AtlasFill::Upload => "upload",
                }
                .to_string(),
            );
            report.atlas_fill_ms = Some(r.atlas_fill_ms);
            report.input_to_tiles_upload_ms = r.input_to_tiles_upload_ms;
            report.atlas_fill_upload_ms = r.atlas_fill_upload_ms;
            report.atlas_mib = Some(r.atlas_mib);
            report.notes.extend(r.notes);
            report.arch = Some(arch::measure(
                &ctx,
                &model.graph,
                options.load_s,
                options.viewport,
                progress,
            )?);
        }
    }
    report.compute_pool_reserved_mib = pool_max.map(|b| round(b as f64 / MIB, 1));
    report.peak_rss_mib = peak_rss_mib().map(|v| round(v, 1));
    if report.peak_rss_mib.is_none() {
        report
            .notes
            .push("peak RSS unknown (needs Linux /proc/self/status)".to_string());
    }
    Ok(report)
}

/// One forward pass over `options.batch` different inputs (the input at decreasing
/// contrast), every layer kept: median milliseconds, or `None` (with a note) when the model
/// cannot be batched or `--batch` is 1.
fn forward_batch(
    engine: &Engine,
    input: &InputTensor,
    options: &BenchOptions,
    sync: &dyn Fn() -> Result<()>,
    progress: &mut dyn FnMut(&str),
    notes: &mut Vec<String>,
) -> Result<Option<f64>> {
    if options.batch <= 1 {
        return Ok(None);
    }
    match engine.with_batch(options.batch) {
        Ok(batched) => {
            progress(&format!(
                "forward pass over {} inputs at once, every layer kept",
                options.batch
            ));
            // Different inputs: the input at decreasing contrast.
            let inputs: Vec<InputTensor> = (0..options.batch)
                .map(|k| InputTensor {
                    shape: input.shape,
                    data: (input.data.iter())
                        .map(|&v| v * (1.0 - 0.5 * k as f32 / options.batch as f32))
                        .collect(),
                    picture: None,
                })
                .collect();
            let inputs: Vec<&InputTensor> = inputs.iter().collect();
            let (batch_s, _) = median_of(options.warmup, options.repeats, || {
                let acts = batched.forward_batch(&inputs, &Capture::All)?;
                sync()?;
                Ok(acts)
            })?;
            Ok(Some(round(batch_s * 1e3, 3)))
        }
        Err(EngineError::Batch(why)) => {
            notes.push(format!("batched forward not measured: {why}"));
            Ok(None)
        }
        Err(e) => Err(e.into()),
    }
}

/// Feature visualisation of `fv`'s layer: seconds per filter at [`FEATVIS_STEPS`] steps
/// (measured over [`FeatvisBench::steps`] and scaled), and the layer's name. On the CPU the
/// filters go in chunks of 8, optimised side by side as `featvis` does; on a GPU in one.
fn featvis_per_filter(
    fv: &FeatvisBench,
    model: &LoadedModel,
    device: &ComputeDevice,
    progress: &mut dyn FnMut(&str),
    notes: &mut Vec<String>,
) -> Result<(Option<f64>, Option<String>)> {
    let graph = &fv.graph;
    let engine = Engine::new(std::sync::Arc::clone(graph), device.device.clone());
    let layer = match &fv.layer {
        Some(name) => graph
            .nodes
            .iter()
            .position(|n| &n.name == name)
            .ok_or_else(|| BenchError::NoSuchLayer(name.clone()))?,
        None => (graph.nodes.iter().enumerate())
            .rfind(|(_, n)| n.op.is_conv())
            .map(|(i, _)| i)
            .ok_or(BenchError::NoConvLayers)?,
    };
    let channels = graph.nodes[layer]
        .feature_map_dims()
        .map_or(0, |(c, _, _)| c);
    let steps = fv.steps.max(1);
    let filters: Vec<usize> = (0..FEATVIS_FILTERS.min(channels)).collect();
    progress(&format!(
        "feature visualisation: {} filters of {} x {steps} steps",
        filters.len(),
        graph.nodes[layer].name
    ));
    let mut spec = FeatvisSpec::lucid(model.spec.mean, model.spec.std);
    spec.steps = steps;
    spec.batch = if device.is_gpu { filters.len() } else { 8 };
    // Two untimed steps first: the first steps of a run take their buffers' pages and start
    // the chunk threads, which a 512-step run amortises and a 16-step sample would not.
    let warm_up = FeatvisSpec {
        steps: FEATVIS_WARM_UP_STEPS,
        ..spec
    };
    featvis(&engine, layer, &filters, &warm_up, |_| {})?;
    let started = Instant::now();
    featvis(&engine, layer, &filters, &spec, |_| {})?;
    let per_step_filter = started.elapsed().as_secs_f64() / (steps * filters.len()).max(1) as f64;
    let (h, w) = match graph.image_input().map(|i| i.shape.as_slice()) {
        Some(&[_, _, h, w]) => (h, w),
        _ => (0, 0),
    };
    notes.push(format!(
        "featvis: {} filters x {steps} steps of {} at {h}x{w}, {} per pass, measured after \
         {FEATVIS_WARM_UP_STEPS} untimed steps, scaled to {FEATVIS_STEPS} steps",
        filters.len(),
        graph.nodes[layer].name,
        spec.batch
    ));
    Ok((
        Some(round(per_step_filter * FEATVIS_STEPS as f64, 2)),
        Some(graph.nodes[layer].name.clone()),
    ))
}

/// Median seconds of every node over `repeats` timed forward passes, summed by op type,
/// largest first.
fn forward_by_op(
    engine: &Engine,
    input: &InputTensor,
    options: &BenchOptions,
) -> Result<Vec<OpTime>> {
    let graph = engine.graph();
    for _ in 0..options.warmup {
        engine.forward_timed(input)?;
    }
    let mut samples = vec![Vec::new(); graph.nodes.len()];
    for _ in 0..options.repeats {
        let (_, seconds) = engine.forward_timed(input)?;
        for (s, t) in samples.iter_mut().zip(seconds) {
            s.push(t);
        }
    }
    let mut by_op: Vec<OpTime> = Vec::new();
    for (node, mut s) in graph.nodes.iter().zip(samples) {
        let ms = median(&mut s) * 1e3;
        let op = node.op.type_name();
        match by_op.iter_mut().find(|o| o.op == op) {
            Some(o) => {
                o.ms += ms;
                o.nodes += 1;
            }
            None => by_op.push(OpTime {
                op: op.to_string(),
                nodes: 1,
                ms,
            }),
        }
    }
    for o in &mut by_op {
        o.ms = round(o.ms, 3);
    }
    by_op.sort_by(|a, b| b.ms.total_cmp(&a.ms));
    Ok(by_op)
}

/// Conv-like layers with per-channel maps and their `(C, H, W)`, in graph order.
pub fn conv_layers(model: &LoadedModel) -> Vec<(usize, (usize, usize, usize))> {
    model
        .graph
        .nodes
        .iter()
        .enumerate()
        .filter(|(_, n)| n.op.is_conv())
        .filter_map(|(i, n)| n.feature_map_dims().map(|d| (i, d)))
        .collect()
}

/// Runs `f` `warmup` times untimed, then `repeats` times timed; the median seconds and the
/// last timed run's result.
pub fn median_of<T>(
    warmup: usize,
    repeats: usize,
    mut f: impl FnMut() -> Result<T>,
) -> Result<(f64, T)> {
    for _ in 0..warmup {
        f()?;
    }
    let mut samples = Vec::with_capacity(repeats);
    let mut last = None;
    for _ in 0..repeats.max(1) {
        let started = Instant::now();
        let out = f()?;
        samples.push(started.elapsed().as_secs_f64());
        last = Some(out);
    }
    let last = last.ok_or(BenchError::NoRepeats)?;
    Ok((median(&mut samples), last))
}

/// The median (mean of the two middle values for an even count; 0 for none).
pub fn median(samples: &mut [f64]) -> f64 {
    samples.sort_by(f64::total_cmp);
    match samples.len() {
        0 => 0.0,
        n if n % 2 == 1 => samples[n / 2],
        n => (samples[n / 2 - 1] + samples[n / 2]) / 2.0,
    }
}

/// `x` rounded to `digits` decimals (timer noise is far above that).
pub(crate) fn round(x: f64, digits: i32) -> f64 {
    let scale = 10f64.powi(digits);
    (x * scale).round() / scale
}

/// CPU time (user + system, all threads) this process has used, in seconds, where `/proc`
/// has it (`/proc/self/stat` counts in USER_HZ = 100 ticks per second).
pub fn process_cpu_s() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the parenthesised command name start at field 3 (state); utime and stime
    // are fields 14 and 15.
    let rest: Vec<&str> = stat
        .get(stat.rfind(')')? + 1..)?
        .split_whitespace()
        .collect();
    let ticks = rest.get(11)?.parse::<f64>().ok()? + rest.get(12)?.parse::<f64>().ok()?;
    Some(ticks / 100.0)
}

/// Peak resident set size of this process in MiB (`VmHWM`), where `/proc` has it.
pub fn peak_rss_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_of_odd_and_even_counts() {
        assert_eq!(median(&mut [3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&mut [4.0, 1.0, 3.0, 2.0]), 2.5);
        assert_eq!(median(&mut []), 0.0);
    }

    #[test]
    #[cfg(target_os = "linux")]
    fn process_figures_come_from_proc() {
        let cpu = process_cpu_s().expect("/proc/self/stat");
        let busy = (0..5_000_000u64).fold(0u64, |a, i| a.wrapping_add(i * i));
        std::hint::black_box(busy);
        assert!(cpu >= 0.0 && process_cpu_s().is_some_and(|later| later >= cpu));
        assert!(peak_rss_mib().is_some_and(|m| m > 1.0));
    }
}
