//! The rendering half of `convlens bench`: one offscreen frame of the largest conv layer's
//! tiles, and a new input file → every conv layer's tiles in the atlas, through the viewer's
//! own forward step ([`run_forward`]: the pass, every feature map read to the host, the
//! constant channels and rank order). When burn computes on the renderer's own device the
//! tiles go through the zero-copy path ([`crate::render::copy_maps`]) and the readback +
//! upload path is measured beside it.

use std::time::Instant;

use crate::app::compute::{ForwardResult, run_forward};
use crate::bench::{
    BenchError, BenchOptions, MAX_FRAME_TILES, MIB, Result, median, median_of, round,
};
use crate::engine::Engine;
use crate::model::preprocess::InputTensor;
use crate::render::{
    AtlasFill, Colormap, GpuContext, OffscreenTarget, ReadyTiles, Renderer, Scene, TileHandle,
    TileInstance, copy_maps_or_upload,
};

/// What [`measure`] found.
pub(super) struct RenderFigures {
    pub frame_ms: f64,
    pub tiles: usize,
    pub frame_layer: String,
    pub input_to_tiles_ms: f64,
    pub uploaded_tiles: usize,
    pub atlas_fill: AtlasFill,
    pub atlas_fill_ms: f64,
    pub input_to_tiles_upload_ms: Option<f64>,
    pub atlas_fill_upload_ms: Option<f64>,
    pub atlas_mib: f64,
    pub notes: Vec<String>,
}

/// The frame and input → tiles measurements on `ctx` (`convs`: conv layers and `(C, H, W)`).
pub(super) fn measure(
    ctx: &GpuContext,
    engine: &Engine,
    convs: &[(usize, (usize, usize, usize))],
    options: &BenchOptions,
    read_input: &dyn Fn() -> Result<InputTensor>,
    progress: &mut dyn FnMut(&str),
) -> Result<RenderFigures> {
    let graph = engine.graph();
    let mut notes = Vec::new();
    let mut renderer = Renderer::new(ctx, OffscreenTarget::DEFAULT_FORMAT);

    // The frame: the conv layer with the most filters (the first of equals).
    let (layer, (c, _, _)) = convs
        .iter()
        .copied()
        .fold(convs[0], |best, x| if x.1.0 > best.1.0 { x } else { best });
    let shown = c.min(MAX_FRAME_TILES);
    progress(&format!(
        "frame: {shown} tiles of {} at {}x{}",
        graph.nodes[layer].name, options.viewport[0], options.viewport[1]
    ));
    let result = viewer_forward(engine, &read_input()?)?;
    let (tiles, _) = fill_layers(&mut renderer, ctx, &result, &[(layer, shown)], Path::Device)?;
    drop(result);
    let scene = grid_scene(&tiles, options.viewport);
    ctx.queue.submit([]);
    ctx.wait_idle()?;
    let target = OffscreenTarget::new(
        ctx,
        options.viewport[0],
        options.viewport[1],
        OffscreenTarget::DEFAULT_FORMAT,
    )?;
    let (frame_s, stats) = median_of(options.warmup, options.repeats, || {
        let stats = renderer.draw_to_view(ctx, &scene, target.view(), options.viewport)?;
        ctx.wait_idle()?;
        Ok(stats)
    })?;
    if stats.tiles_drawn != shown {
        notes.push(format!(
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
    let layers: Vec<(usize, usize)> = convs.iter().map(|&(i, (c, _, _))| (i, c)).collect();
    // One input → tiles run: its seconds, the atlas fill's seconds (after the forward pass
    // has finished on the device), the tiles and how they got there.
    let mut to_tiles = |path: Path| -> Result<(f64, f64, usize, AtlasFill)> {
        let started = Instant::now();
        let result = viewer_forward(engine, &read_input()?)?;
        engine
            .device()
            .sync()
            .map_err(|e| BenchError::Sync(e.to_string()))?;
        let fill_started = Instant::now();
        renderer.atlas.clear();
        let (ready, fill) = fill_layers(&mut renderer, ctx, &result, &layers, path)?;
        ctx.queue.submit([]);
        ctx.wait_idle()?;
        let fill_s = fill_started.elapsed().as_secs_f64();
        Ok((started.elapsed().as_secs_f64(), fill_s, ready.len(), fill))
    };
    let (_, _, uploaded, fill) = to_tiles(Path::Device)?;
    // With zero-copy, both paths are measured in alternation after the same warm-up (burn's
    // autotuning and caches favour whichever runs later otherwise).
    let compare = fill == AtlasFill::ZeroCopy;
    if compare {
        progress("… alternating with a readback + upload of the same tiles, for comparison");
    }
    // [total, fill] samples of each path.
    let (mut device_s, mut upload_s) = ([Vec::new(), Vec::new()], [Vec::new(), Vec::new()]);
    for round_ in 0..options.warmup + options.repeats {
        let timed = round_ >= options.warmup;
        let paths = if compare {
            &[Path::Device, Path::Upload][..]
        } else {
            &[Path::Device][..]
        };
        for &path in paths {
            let (total, fill_s, _, _) = to_tiles(path)?;
            let into = if path == Path::Device {
                &mut device_s
            } else {
                &mut upload_s
            };
            if timed {
                into[0].push(total);
                into[1].push(fill_s);
            }
        }
    }
    let ms = |v: &mut Vec<f64>| round(median(v) * 1e3, 3);
    let (to_tiles_ms, fill_ms) = (ms(&mut device_s[0]), ms(&mut device_s[1]));
    let upload = compare.then(|| (ms(&mut upload_s[0]), ms(&mut upload_s[1])));
    let side = f64::from(renderer.atlas.layer_size());
    Ok(RenderFigures {
        frame_ms: round(frame_s * 1e3, 3),
        tiles: stats.tiles_drawn,
        frame_layer: graph.nodes[layer].name.clone(),
        input_to_tiles_ms: to_tiles_ms,
        uploaded_tiles: uploaded,
        atlas_fill: fill,
        atlas_fill_ms: fill_ms,
        input_to_tiles_upload_ms: upload.map(|u| u.0),
        atlas_fill_upload_ms: upload.map(|u| u.1),
        atlas_mib: f64::from(renderer.atlas.layers_allocated()) * side * side * 4.0 / MIB,
        notes,
    })
}

/// Which way [`fill_layers`] moves the maps.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Path {
    /// Zero-copy when the tensor is on the renderer's device, else upload.
    Device,
    /// Always read back and upload.
    Upload,
}

/// The viewer's forward step on `input` ([`run_forward`]).
fn viewer_forward(engine: &Engine, input: &InputTensor) -> Result<ForwardResult> {
    run_forward(engine, input, String::new()).map_err(|e| BenchError::Viewer(format!("{e:#}")))
}

/// The first `count` maps of each `(layer, count)` into the atlas: every tile with its range,
/// and how the last layer got there.
fn fill_layers(
    renderer: &mut Renderer,
    ctx: &GpuContext,
    result: &ForwardResult,
    layers: &[(usize, usize)],
    path: Path,
) -> Result<(ReadyTiles, AtlasFill)> {
    let mut ready = Vec::new();
    let mut fill = AtlasFill::Upload;
    for &(i, count) in layers {
        let on_device = result.device_maps.get(i).cloned().flatten();
        if let (Path::Device, Some(maps)) = (path, on_device) {
            let (tiles, how) =
                copy_maps_or_upload(&mut renderer.atlas, ctx, maps.narrow(0, 0, count))?;
            ready.extend(tiles);
            fill = how;
            continue;
        }
        let Some(Some(map)) = result.maps.get(i) else {
            continue;
        };
        let &[_, _, h, w] = map.shape.as_slice() else {
            continue;
        };
        let ranges = result.tile_ranges.get(i).and_then(|r| r.get(..count));
        ready.extend(renderer.atlas.upload_maps_with_ranges(
            &ctx.device,
            &ctx.queue,
            &map.data()[..count * h * w],
            [w as u32, h as u32, count as u32],
            ranges,
        )?);
        fill = AtlasFill::Upload;
    }
    Ok((ready, fill))
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::FRAME_VIEWPORT;

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
}
