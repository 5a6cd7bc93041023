//! The step from a session to the renderer: clears the tile atlas and puts the selected
//! layer's maps (forward, on the GPU without a readback when burn computed them on the
//! renderer's device) or per-filter images, the input picture and the hovered class's
//! pictures into it ([`upload_view`]), or appends per-filter images as they arrive.

use anyhow::{Context, Result};

use super::compute::GradientResult;
use super::session::Session;
use crate::format::Method;
use crate::render::{GpuContext, ReadyTiles, Renderer, TileAtlas, TileHandle};
use crate::ui::scene::LayerTiles;
use crate::ui::state::ViewState;
use crate::viz::gradient_norm::GradientNorm;

/// What one view of a session has in the tile atlas.
#[derive(Default)]
pub struct ViewTiles {
    /// The input picture.
    pub picture: Option<TileHandle>,
    /// The selected layer's tiles under the shown method.
    pub tiles: Option<LayerTiles>,
    /// The hovered class's example image (`--examples`).
    pub example: Option<TileHandle>,
    /// The hovered class's Grad-CAM over the input, with its caption.
    pub cam: Option<(TileHandle, String)>,
    /// Crops of the open dataset scan for the selected layer.
    pub dataset: Option<crate::ui::dataset::DatasetTiles>,
}

/// Clears the atlas and uploads everything `state` shows of `session`: the input picture,
/// the selected layer's tiles (read from a data directory first if needed), and the hovered
/// class's example image and Grad-CAM when those are at hand (nothing is computed here).
pub fn upload_view(
    renderer: &mut Renderer,
    ctx: &GpuContext,
    session: &mut Session,
    state: &ViewState,
) -> Result<ViewTiles> {
    session.ensure_layer(state.selected, state.method);
    let (picture, tiles) = upload_layer(renderer, ctx, session, state.selected, state.method)?;
    let example = match session.hovered_example(state) {
        Some(img) => Some(renderer.atlas.upload_rgb8(&ctx.device, &ctx.queue, &img)?),
        None => None,
    };
    let cam = match crate::ui::scene::wanted_cam(&session.vm, state)
        .and_then(|(layer, class)| session.cam_picture(layer, class))
    {
        Some((img, caption)) => Some((
            renderer.atlas.upload_rgb8(&ctx.device, &ctx.queue, &img)?,
            caption,
        )),
        None => None,
    };
    let dataset = super::dataset::upload_dataset(renderer, ctx, session, state)?;
    Ok(ViewTiles {
        picture,
        tiles,
        example,
        cam,
        dataset,
    })
}

/// Clears the atlas and uploads the input picture and every channel of `layer` as `method`
/// shows it (nothing for a gradient method not computed yet).
fn upload_layer(
    renderer: &mut Renderer,
    ctx: &GpuContext,
    session: &Session,
    layer: usize,
    method: Method,
) -> Result<(Option<TileHandle>, Option<LayerTiles>)> {
    renderer.atlas.clear();
    let Some(result) = &session.result else {
        return Ok((None, None));
    };
    let picture = match &result.picture {
        Some(p) => Some(renderer.atlas.upload_rgb8(&ctx.device, &ctx.queue, p)?),
        None => None,
    };
    if method != Method::Forward {
        let Some(g) = session.gradient(layer, method) else {
            return Ok((picture, None));
        };
        let [channels, _, h, w] = image_dims(g)?;
        // While the images arrive chunk by chunk, the computed ones so far.
        let (tiles, robust) = upload_images(renderer, ctx, g, 0..g.filled.min(channels))?;
        return Ok((
            picture,
            Some(LayerTiles {
                layer,
                method,
                map_hw: [h, w],
                channels,
                tiles,
                robust,
            }),
        ));
    }
    let Some(Some(map)) = result.maps.get(layer) else {
        return Ok((picture, None));
    };
    let [_, c, h, w] =
        <[usize; 4]>::try_from(map.shape.as_slice()).context("feature map is not [1, C, H, W]")?;
    // Zero-copy when burn computed this map on the renderer's own device.
    let on_device = result.device_maps.get(layer).cloned().flatten();
    // (copy_maps refuses a tensor on any other device before doing any work.)
    let copied =
        on_device.and_then(|maps| crate::render::copy_maps(&mut renderer.atlas, ctx, maps).ok());
    let tiles = match copied {
        Some(tiles) => tiles,
        None => renderer.atlas.upload_maps_with_ranges(
            &ctx.device,
            &ctx.queue,
            map.data(),
            [w as u32, h as u32, c as u32],
            result.tile_ranges.get(layer).map(Vec::as_slice),
        )?,
    };
    Ok((
        picture,
        Some(LayerTiles {
            layer,
            method: Method::Forward,
            map_hw: [h, w],
            channels: c,
            tiles,
            robust: Vec::new(),
        }),
    ))
}

/// `[C, planes, H, W]` of a layer's per-filter images.
fn image_dims(g: &GradientResult) -> Result<[usize; 4]> {
    <[usize; 4]>::try_from(g.images.shape.as_slice())
        .context("per-filter images are not [C, planes, H, W]")
}

/// Uploads the images of channels `range` of `g` into the atlas: the tiles with their
/// min-max ranges and, for RGB gradient images, their robust ranges (computed in parallel;
/// [`GradientNorm::Robust`]).
fn upload_images(
    renderer: &mut Renderer,
    ctx: &GpuContext,
    g: &GradientResult,
    range: std::ops::Range<usize>,
) -> Result<(ReadyTiles, Vec<[f32; 2]>)> {
    let [_, planes, h, w] = image_dims(g)?;
    let upload = match planes {
        // Gradient images: RGB planes, normalised jointly.
        3 => TileAtlas::upload_rgb_images,
        // Occlusion maps: one grey map per filter.
        1 => TileAtlas::upload_maps,
        _ => anyhow::bail!("per-filter images of shape {:?}", g.images.shape),
    };
    let per = planes * h * w;
    let values = g
        .images
        .data
        .get(range.start * per..range.end * per)
        .context("per-filter images shorter than their shape")?;
    let tiles = upload(
        &mut renderer.atlas,
        &ctx.device,
        &ctx.queue,
        values,
        w as u32,
        h as u32,
        range.len() as u32,
    )?;
    if g.method == Method::FeatVis {
        // Pictures in [0, 1], shown as they are (no per-tile stretch).
        let tiles = tiles.into_iter().map(|(handle, _)| (handle, [0.0, 1.0]));
        return Ok((tiles.collect(), Vec::new()));
    }
    let robust = if planes == 3 {
        use rayon::prelude::*;
        (values.par_chunks(per))
            .map(|image| GradientNorm::Robust.range(image))
            .collect()
    } else {
        Vec::new()
    };
    Ok((tiles, robust))
}

/// Uploads the per-filter images that arrived since `tiles` was made (the next channels of
/// the same layer and method) and appends them, leaving the atlas's other tiles in place: a
/// layer arriving in chunks costs one upload of each image instead of a fresh upload of every
/// image so far per chunk (EfficientNet-Lite0's conv_head: ~48 chunks, ~0.4 s of the UI
/// thread each by the end). `false` when `tiles` does not continue the session's images; the
/// caller then uploads the layer afresh ([`upload_layer`]).
pub fn append_tiles(
    renderer: &mut Renderer,
    ctx: &GpuContext,
    session: &Session,
    tiles: &mut LayerTiles,
) -> Result<bool> {
    let Some(g) = session.gradient(tiles.layer, tiles.method) else {
        return Ok(false);
    };
    let [channels, _, h, w] = image_dims(g)?;
    let (from, to) = (tiles.tiles.len(), g.filled.min(channels));
    if [h, w] != tiles.map_hw || channels != tiles.channels || to < from {
        return Ok(false);
    }
    if to > from {
        let (new, robust) = upload_images(renderer, ctx, g, from..to)?;
        tiles.tiles.extend(new);
        tiles.robust.extend(robust);
    }
    Ok(true)
}
