//! `convlens bench`: how fast each stage of ConvLens is on this machine and model — the
//! forward pass keeping every layer, guided backprop of every conv filter, one frame of the
//! largest conv layer's tiles, and a new input file all the way to tiles ready to draw —
//! as medians over repeated runs, plus the process's peak memory.
//!
//! Every measurement waits for its device to finish: the forward pass ends with
//! [`burn::tensor::Device::sync`], gradient images are read back to the CPU (as `export`
//! does), frames and atlas uploads end with [`GpuContext::wait_idle`]. The rendering
//! measurements need a wgpu adapter (a software one will do); without one they are `None`
//! and a note says why.

use std::path::PathBuf;
use std::time::Instant;

use serde::Serialize;

use crate::engine::attribution::{self, BackwardError, Method};
use crate::engine::{Capture, ComputeDevice, Engine, EngineError};
use crate::model::preprocess::InputTensor;
use crate::model::{LoadedModel, ModelError, default};
use crate::render::{
    Colormap, GpuContext, OffscreenTarget, RenderError, Renderer, Scene, TileHandle, TileInstance,
};

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
    /// Size of the offscreen frame.
    pub viewport: [u32; 2],
}

/// The measured figures. `None` means "not measured" (see `notes`).
#[derive(Debug, Clone, Serialize)]
pub struct BenchReport {
    pub model: String,
    pub input: String,
    /// The compute device (burn backend and adapter).
    pub device: String,
    /// The wgpu adapter the renderer used.
    pub render_device: Option<String>,
    pub repeats: usize,
    pub warmup: usize,
    /// Forward pass keeping every layer's output, until the device is idle.
    pub forward_ms: f64,
    /// Guided backprop of every filter of every conv layer, images on the host.
    pub gbp_all_conv_s: Option<f64>,
    /// Filters (gradient images) in that workload.
    pub gbp_filters: usize,
    /// Conv layers in that workload.
    pub gbp_layers: usize,
    /// Process CPU time (user + system, all threads) of a gradient run, median; with the
    /// machine otherwise idle, wall time ≈ this / cores used (Linux only).
    pub gbp_cpu_s: Option<f64>,
    /// Timed gradient runs (1 when a run took longer than [`GBP_SINGLE_RUN_S`]).
    pub gbp_repeats: usize,
    /// One offscreen frame (prepare, draw, GPU done) of `tiles` tiles of `frame_layer`.
    pub frame_ms: Option<f64>,
    pub tiles: Option<usize>,
    pub frame_layer: Option<String>,
    pub viewport: [u32; 2],
    /// Input file → decode, preprocess → forward → every conv layer's tiles in the atlas.
    pub input_to_tiles_ms: Option<f64>,
    pub uploaded_tiles: Option<usize>,
    /// Peak resident set of the process (Linux `VmHWM`).
    pub peak_rss_mib: Option<f64>,
    /// Most bytes burn's wgpu allocator held at the sampled points (GPU compute only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub compute_pool_reserved_mib: Option<f64>,
    /// Size of the tile atlas texture after the input→tiles measurement.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub atlas_mib: Option<f64>,
    pub notes: Vec<String>,
}

const MIB: f64 = (1u64 << 20) as f64;

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
    let engine = Engine::new(std::sync::Arc::clone(graph), device.device.clone());
    let sync = || {
        engine
            .device()
            .sync()
            .map_err(|e| BenchError::Sync(e.to_string()))
    };
    let mut pool_max: Option<u64> = None;
    let mut sample_pool = || {
        if device.is_gpu
            && let Some(usage) = device.device.memory_pool_usage()
        {
            pool_max = Some(pool_max.unwrap_or(0).max(usage.bytes_reserved));
        }
    };
    let mut notes = Vec::new();

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

    let gbp_filters: usize = convs.iter().map(|&(_, (c, _, _))| c).sum();
    let (gbp_all_conv_s, gbp_cpu_s, gbp_repeats) = if options.skip_gbp {
        notes.push("guided backprop skipped (--skip-gbp)".to_string());
        (None, None, 0)
    } else {
        let acts = engine.forward(&input, &Capture::All)?;
        sync()?;
        let mut run_gbp = |mut verbose: Option<&mut dyn FnMut(&str)>| -> Result<(f64, f64)> {
            let (started, cpu) = (Instant::now(), process_cpu_s());
            for (n, &(i, (c, _, _))) in convs.iter().enumerate() {
                attribution::attribute_layer(&engine, &acts, i, Method::Guided, None)?;
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
        device: device.description.clone(),
        render_device: None,
        repeats: options.repeats,
        warmup: options.warmup,
        forward_ms: round(forward_s * 1e3, 3),
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
        peak_rss_mib: None,
        compute_pool_reserved_mib: None,
        atlas_mib: None,
        notes,
    };

    match GpuContext::headless() {
        Err(e) => report.notes.push(format!(
            "no wgpu adapter ({e}): frame_ms and input_to_tiles_ms not measured"
        )),
        Ok(ctx) => {
            report.render_device = Some(ctx.describe());
            let mut renderer = Renderer::new(&ctx, OffscreenTarget::DEFAULT_FORMAT);

            // The frame: the conv layer with the most filters (the first of equals).
            let (layer, (c, h, w)) = convs
                .iter()
                .copied()
                .fold(convs[0], |best, x| if x.1.0 > best.1.0 { x } else { best });
            let shown = c.min(MAX_FRAME_TILES);
            progress(&format!(
                "frame: {shown} tiles of {} at {}x{}",
                graph.nodes[layer].name, options.viewport[0], options.viewport[1]
            ));
            let acts = engine.forward(&input, &Capture::All)?;
            let map = acts.read(&graph.nodes[layer].outputs[0])?;
            drop(acts);
            let data = &map.data[..shown * h * w];
            let tiles = renderer.atlas.upload_maps(
                &ctx.device,
                &ctx.queue,
                data,
                w as u32,
                h as u32,
                shown as u32,
            )?;
            let scene = grid_scene(&tiles, options.viewport);
            ctx.queue.submit([]);
            ctx.wait_idle()?;
            let target = OffscreenTarget::new(
                &ctx,
                options.viewport[0],
                options.viewport[1],
                OffscreenTarget::DEFAULT_FORMAT,
            )?;
            let (frame_s, stats) = median_of(options.warmup, options.repeats, || {
                let stats = renderer.draw_to_view(&ctx, &scene, target.view(), options.viewport)?;
                ctx.wait_idle()?;
                Ok(stats)
            })?;
            report.frame_ms = Some(round(frame_s * 1e3, 3));
            report.tiles = Some(stats.tiles_drawn);
            report.frame_layer = Some(graph.nodes[layer].name.clone());
            if stats.tiles_drawn != shown {
                report.notes.push(format!(
                    "frame: {} of {shown} tiles were inside the viewport",
                    stats.tiles_drawn
                ));
            }

            progress(&format!(
                "input → tiles of all {} conv layers: {} warm-up + {} timed runs",
                convs.len(),
                options.warmup,
                options.repeats
            ));
            let (to_tiles_s, uploaded) = median_of(options.warmup, options.repeats, || {
                let input = read_input()?;
                let acts = engine.forward(&input, &Capture::All)?;
                renderer.atlas.clear();
                let mut ready: Vec<(TileHandle, [f32; 2])> = Vec::with_capacity(gbp_filters);
                for &(i, (c, h, w)) in &convs {
                    let map = acts.read(&graph.nodes[i].outputs[0])?;
                    ready.extend(renderer.atlas.upload_maps(
                        &ctx.device,
                        &ctx.queue,
                        &map.data,
                        w as u32,
                        h as u32,
                        c as u32,
                    )?);
                }
                ctx.queue.submit([]);
                ctx.wait_idle()?;
                Ok(ready.len())
            })?;
            sample_pool();
            report.input_to_tiles_ms = Some(round(to_tiles_s * 1e3, 3));
            report.uploaded_tiles = Some(uploaded);
            let side = f64::from(renderer.atlas.layer_size());
            report.atlas_mib =
                Some(f64::from(renderer.atlas.layers_allocated()) * side * side * 4.0 / MIB);
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

/// The largest square cell (with a 1-px gap) that fits `n` tiles in `viewport` in rows.
pub fn grid_cell(n: usize, viewport: [u32; 2]) -> (f32, usize) {
    let [vw, vh] = [viewport[0] as usize, viewport[1] as usize];
    let n = n.max(1);
    let mut cell = (((vw * vh) as f64 / n as f64).sqrt().floor() as usize).max(2);
    loop {
        let cols = (vw / cell).max(1);
        if cell <= 2 || n.div_ceil(cols) * cell <= vh {
            return (cell as f32, cols);
        }
        cell -= 1;
    }
}

/// Tiles in a grid of the largest cells that fit them all, grey colour map (the viewer's).
fn grid_scene(uploaded: &[(TileHandle, [f32; 2])], viewport: [u32; 2]) -> Scene {
    let (cell, cols) = grid_cell(uploaded.len(), viewport);
    let tiles = uploaded
        .iter()
        .enumerate()
        .map(|(i, (h, r))| {
            let (x, y) = ((i % cols) as f32 * cell, (i / cols) as f32 * cell);
            TileInstance::new([x, y, cell - 1.0, cell - 1.0], *h, *r, Colormap::Grey)
        })
        .collect();
    Scene {
        tiles,
        ..Scene::default()
    }
}

/// A value with 3–4 significant digits (no more than the timer noise allows).
fn figure(v: f64) -> String {
    match v.abs() {
        a if a >= 100.0 => format!("{v:.0}"),
        a if a >= 10.0 => format!("{v:.1}"),
        a if a >= 1.0 => format!("{v:.2}"),
        _ => format!("{v:.3}"),
    }
}

/// `x` rounded to `digits` decimals (timer noise is far above that).
fn round(x: f64, digits: i32) -> f64 {
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

impl BenchReport {
    /// The human-readable report: an aligned table with units, then the notes.
    pub fn table(&self) -> String {
        let ms = |v: Option<f64>| v.map_or("–".to_string(), figure);
        let n = |measured: bool, k: usize| {
            if measured {
                k.to_string()
            } else {
                String::new()
            }
        };
        let mut rows: Vec<[String; 5]> = vec![
            [
                "forward, every layer kept".into(),
                figure(self.forward_ms),
                "ms".into(),
                self.repeats.to_string(),
                String::new(),
            ],
            [
                "GBP, every conv filter".into(),
                ms(self.gbp_all_conv_s),
                "s".into(),
                n(self.gbp_all_conv_s.is_some(), self.gbp_repeats),
                format!(
                    "{} filters in {} conv layers, images on the host",
                    self.gbp_filters, self.gbp_layers
                ),
            ],
            [
                "GBP, process CPU time".into(),
                ms(self.gbp_cpu_s),
                "s".into(),
                n(self.gbp_cpu_s.is_some(), self.gbp_repeats),
                "user + system, all threads".into(),
            ],
            [
                "frame".into(),
                ms(self.frame_ms),
                "ms".into(),
                n(self.frame_ms.is_some(), self.repeats),
                match (self.tiles, &self.frame_layer) {
                    (Some(t), Some(l)) => format!(
                        "{t} tiles of {l}, {}x{} offscreen",
                        self.viewport[0], self.viewport[1]
                    ),
                    _ => String::new(),
                },
            ],
            [
                "input file → tiles".into(),
                ms(self.input_to_tiles_ms),
                "ms".into(),
                n(self.input_to_tiles_ms.is_some(), self.repeats),
                self.uploaded_tiles
                    .map(|t| {
                        format!("decode, preprocess, forward, {t} conv tiles uploaded + ranges")
                    })
                    .unwrap_or_default(),
            ],
            [
                "peak RSS".into(),
                self.peak_rss_mib.map_or("–".into(), |v| format!("{v:.0}")),
                "MiB".into(),
                String::new(),
                "VmHWM of the whole process".into(),
            ],
        ];
        if let Some(v) = self.compute_pool_reserved_mib {
            rows.push([
                "burn wgpu pool, max reserved".into(),
                format!("{v:.0}"),
                "MiB".into(),
                String::new(),
                "sampled after forward and GBP".into(),
            ]);
        }
        if let Some(v) = self.atlas_mib {
            rows.push([
                "tile atlas texture".into(),
                format!("{v:.0}"),
                "MiB".into(),
                String::new(),
                "R32Float layers allocated".into(),
            ]);
        }
        let width = |k: usize| rows.iter().map(|r| r[k].chars().count()).max().unwrap_or(0);
        let (w0, w1, w2, w3) = (
            width(0).max(7),
            width(1).max(5),
            width(2).max(4),
            width(3).max(1),
        );
        let mut out = format!(
            "model   {}\ninput   {}\ndevice  {}\nrender  {}\n\n",
            self.model,
            self.input,
            self.device,
            self.render_device.as_deref().unwrap_or("none")
        );
        out += &format!(
            "{:<w0$}  {:>w1$}  {:<w2$}  {:>w3$}  {}\n",
            "measure", "value", "unit", "n", "what"
        );
        for r in &rows {
            let line = format!(
                "{:<w0$}  {:>w1$}  {:<w2$}  {:>w3$}  {}",
                r[0], r[1], r[2], r[3], r[4]
            );
            out += line.trim_end();
            out.push('\n');
        }
        out += &format!(
            "\nmedians over n timed runs after {} warm-up run(s)\n",
            self.warmup
        );
        for note in &self.notes {
            out += &format!("note: {note}\n");
        }
        out
    }
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

    #[test]
    fn grid_cells_fit_every_tile_in_the_viewport() {
        for n in [1usize, 7, 96, 1280, 10_000] {
            let (cell, cols) = grid_cell(n, FRAME_VIEWPORT);
            assert!(cols as f32 * cell <= FRAME_VIEWPORT[0] as f32, "{n}");
            assert!(
                n.div_ceil(cols) as f32 * cell <= FRAME_VIEWPORT[1] as f32,
                "{n}: {cell} px × {cols} columns"
            );
        }
        assert_eq!(grid_cell(1, [100, 50]).0, 50.0);
    }

    #[test]
    fn the_table_names_units_and_missing_figures() {
        let report = BenchReport {
            model: "m".into(),
            input: "i".into(),
            device: "cpu".into(),
            render_device: None,
            repeats: 3,
            warmup: 1,
            forward_ms: 12.34,
            gbp_all_conv_s: None,
            gbp_filters: 72,
            gbp_layers: 3,
            gbp_cpu_s: None,
            gbp_repeats: 0,
            frame_ms: None,
            tiles: None,
            frame_layer: None,
            viewport: FRAME_VIEWPORT,
            input_to_tiles_ms: None,
            uploaded_tiles: None,
            peak_rss_mib: Some(100.0),
            compute_pool_reserved_mib: None,
            atlas_mib: None,
            notes: vec!["no adapter".into()],
        };
        let t = report.table();
        assert!(
            t.contains("12.3") && t.contains(" ms ") && t.contains("MiB"),
            "{t}"
        );
        assert!(t.contains("note: no adapter"), "{t}");
        let json = serde_json::to_value(&report).expect("serialises");
        assert!(json["frame_ms"].is_null() && json.get("atlas_mib").is_none());
    }
}
