//! The passes the viewer runs, on the compute worker ([`super::worker`]) or synchronously
//! for screenshots: a forward pass read back per layer, every filter's image of one layer —
//! delivered chunk by chunk, so the window shows tiles as they finish and a newer request can
//! stop the rest — and Grad-CAM maps.

use std::ops::{ControlFlow, Range};
use std::sync::Arc;

use anyhow::{Context, Result};
use image::RgbImage;
use rayon::prelude::*;

use crate::engine::methods::attribution;
use crate::engine::methods::featvis::cache::{CachedEvent, FeatvisCache, featvis_cached};
use crate::engine::methods::featvis::{FeatvisEvent, FeatvisSpec};
use crate::engine::{self, Capture, Engine, HostMap, HostTensor};
use crate::format::Method;
use crate::model::preprocess::InputTensor;
use crate::viz::tiles::{MapSummary, summarise_maps};

/// What one forward pass produced, on the CPU.
pub struct ForwardResult {
    /// First output of every layer with per-channel maps, by node index (on the CPU the
    /// engine's own buffers, read in place).
    pub maps: Vec<Option<HostMap>>,
    /// Class probabilities; empty when the model's output is not a class vector.
    pub probabilities: Vec<f32>,
    /// The output's shape and value range when it is not a class vector (shown instead of
    /// the class chart).
    pub output_summary: Option<String>,
    pub picture: Option<RgbImage>,
    pub label: String,
    /// The input itself, for computing gradient images on demand (None for a data directory).
    pub input: Option<Arc<InputTensor>>,
    /// Per layer (by node index): channels whose map is constant on this input.
    pub constant_channels: Vec<Vec<usize>>,
    /// Per layer: channels by mean activation on this input, highest first (filter rank).
    pub rank_order: Vec<Vec<usize>>,
    /// Per layer: each channel's tile range on this input (`[min, max]` of its finite
    /// values), for the atlas upload ([`crate::render::TileAtlas::upload_maps_with_ranges`]).
    pub tile_ranges: Vec<Vec<[f32; 2]>>,
    /// When computed on a wgpu device: the same maps as device tensors `[C, H, W]` (handles
    /// to burn's buffers, no copy), so a renderer sharing that device copies them into the
    /// atlas on the GPU ([`crate::render::copy_maps`]). Empty on the CPU.
    pub device_maps: Vec<Option<burn::tensor::Tensor<3>>>,
}

/// Every filter's image of one layer under a method: `[C, planes, H, W]` (3 planes for
/// gradient images, 1 for occlusion maps). While the window still receives it chunk by chunk,
/// only the first `filled` channels hold images (the rest are zeros).
pub struct GradientResult {
    pub layer: usize,
    pub method: Method,
    pub images: HostTensor,
    /// Channels computed so far, from channel 0.
    pub filled: usize,
}

impl GradientResult {
    /// A result with every channel computed.
    pub fn complete(layer: usize, method: Method, images: HostTensor) -> Self {
        let filled = images.shape.first().copied().unwrap_or(0);
        Self {
            layer,
            method,
            images,
            filled,
        }
    }

    /// Channels of the layer (computed or not).
    pub fn channels(&self) -> usize {
        self.images.shape.first().copied().unwrap_or(0)
    }

    pub fn is_complete(&self) -> bool {
        self.filled >= self.channels()
    }

    /// Copies `chunk`'s images into place (a chunk of another layer, method or size is
    /// refused: `false`). `filled` grows only over channels that continue it from 0, so a
    /// chunk after a gap is stored but not counted.
    pub fn accept_chunk(&mut self, chunk: &GradientChunk) -> bool {
        let (start, end) = (chunk.channels.start, chunk.channels.end);
        let Some((&channels, rest)) = chunk.shape.split_first() else {
            return false;
        };
        let per_channel: usize = rest.iter().product();
        if (self.layer, self.method) != (chunk.layer, chunk.method)
            || self.images.shape != chunk.shape
            || start > end
            || end > channels
            || chunk.data.len() != (end - start) * per_channel
        {
            return false;
        }
        self.images.data[start * per_channel..end * per_channel].copy_from_slice(&chunk.data);
        if start <= self.filled {
            self.filled = self.filled.max(end);
        }
        true
    }
}

/// The images of some of a layer's filters, as one reverse pass delivers them.
pub struct GradientChunk {
    /// The input they were computed for (the window drops chunks of an older input).
    pub input: Arc<InputTensor>,
    pub layer: usize,
    pub method: Method,
    /// `[C, planes, H, W]` of the whole layer.
    pub shape: Vec<usize>,
    /// The channels in this chunk.
    pub channels: Range<usize>,
    /// Their images, `[channels.len(), planes, H, W]` row-major.
    pub data: Vec<f32>,
}

impl GradientChunk {
    /// A zero-filled result of the chunk's layer and shape, nothing computed yet.
    pub fn empty_result(&self) -> GradientResult {
        GradientResult {
            layer: self.layer,
            method: self.method,
            images: HostTensor {
                shape: self.shape.clone(),
                data: vec![0.0; self.shape.iter().product()],
            },
            filled: 0,
        }
    }
}

/// The Grad-CAM map of one class at the last layer with feature maps: `[H, W]`.
pub struct CamResult {
    pub class: usize,
    pub layer: usize,
    pub cam: HostTensor,
}

/// Grad-CAM of `class` at `layer` (one forward pass keeping every layer, one reverse pass
/// from the class score).
pub fn compute_cam(
    engine: &Engine,
    input: &InputTensor,
    layer: usize,
    class: usize,
) -> Result<CamResult> {
    let acts = engine.forward(input, &Capture::All)?;
    let cam = crate::engine::methods::gradcam::grad_cam(engine, &acts, layer, class)?;
    Ok(CamResult { class, layer, cam })
}

/// How the viewer computes per-filter images, beyond the method itself.
#[derive(Debug, Clone, PartialEq)]
pub struct ComputeOptions {
    /// Overrides the chunk size of gradient methods ([`attribution::chunk_size`]'s memory
    /// bound by default).
    pub seeds_per_pass: Option<usize>,
    pub featvis: FeatvisSetup,
}

/// The viewer's feature visualisations: the recipe, and where finished images are kept.
#[derive(Debug, Clone, PartialEq)]
pub struct FeatvisSetup {
    /// Lucid's recipe for the model's preprocessing; its batch is the viewer's chunk.
    pub spec: FeatvisSpec,
    /// The cache root ([`crate::engine::methods::featvis::cache::default_root`]); `None`
    /// keeps nothing.
    pub cache_root: Option<std::path::PathBuf>,
    /// The model's fingerprint, which keys the cache.
    pub fingerprint: String,
}

impl Default for ComputeOptions {
    /// ImageNet preprocessing, no cache, chunks of 4 filters.
    fn default() -> Self {
        let imagenet = crate::model::preprocess::InputSpec::imagenet([224, 224]);
        let mut spec = FeatvisSpec::lucid(imagenet.mean, imagenet.std);
        spec.batch = 4;
        Self {
            seeds_per_pass: None,
            featvis: FeatvisSetup {
                spec,
                cache_root: None,
                fingerprint: String::new(),
            },
        }
    }
}

/// What a computation of a layer's images hands its receiver as it goes.
pub enum Delivery {
    /// Some filters' images.
    Chunk(GradientChunk),
    /// The occlusion sweep's progress: `done` of `total` occluded squares (its maps
    /// come as one chunk at the end).
    Progress { done: usize, total: usize },
    /// Something the user should know about how it is computed (e.g. an occlusion sweep that
    /// cannot batch its squares).
    Notice(String),
}

/// Every filter's image of `layer` under `method`, delivered to `on_delivery` as it is
/// computed: for gradient methods one forward pass keeping every layer, then one chunk per
/// batched reverse pass (`[B, 3, H, W]` each); for occlusion the sweep of forward passes with
/// the grey square — progress after each — and then one chunk of every channel's
/// `[1, rows, cols]` map for `layer` *and for every other layer with feature maps* (each
/// pass computes them all anyway: EfficientNet-Lite0's sweep took ~1.4× as long for all 92
/// layers as for one in the viewer), `layer` first. Gradient methods start at channel `from_channel`
/// (resuming a layer stopped part-way); occlusion always sweeps every channel.
/// Feature visualisations come chunk by chunk of `options.featvis`' batch, from its cache
/// where it has them, with progress after each step ([`featvis_chunks`]).
/// `on_delivery` returns `ControlFlow::Break` to stop before the next pass (a newer request
/// made this one moot); that is returned.
pub fn compute_gradient_chunks(
    engine: &Engine,
    input: &Arc<InputTensor>,
    (layer, method): (usize, Method),
    from_channel: usize,
    options: &ComputeOptions,
    on_delivery: &mut dyn FnMut(Delivery) -> ControlFlow<()>,
) -> Result<ControlFlow<()>> {
    let chunk = |shape: Vec<usize>, channels: Range<usize>, data: Vec<f32>| GradientChunk {
        input: Arc::clone(input),
        layer,
        method,
        shape,
        channels,
        data,
    };
    if method == Method::Occlusion {
        let graph = engine.graph();
        let others = graph
            .feature_map_layers()
            .map(|(i, _)| i)
            .filter(|&i| i != layer);
        let layers: Vec<usize> = std::iter::once(layer).chain(others).collect();
        return occlusion_chunks(engine, input, &layers, on_delivery);
    }
    if method == Method::FeatVis {
        return featvis_chunks(
            engine,
            input,
            layer,
            from_channel,
            &options.featvis,
            on_delivery,
        );
    }
    let rule = method
        .gradient()
        .context("forward is not a gradient method")?;
    let channels = attribution::feature_map_dims(engine, layer)?.0;
    let mut shape = vec![channels];
    shape.extend(input.shape.iter().skip(1));
    let acts = engine.forward(input, &Capture::All)?;
    let flow = attribution::attribute_layer_chunks(
        engine,
        &acts,
        layer,
        rule,
        from_channel,
        options.seeds_per_pass,
        |range, g| {
            let data = attribution::read_chunk(engine, layer, g)?;
            Ok(on_delivery(Delivery::Chunk(chunk(
                shape.clone(),
                range,
                data,
            ))))
        },
    )?;
    Ok(flow)
}

/// The occlusion sweep over `layers` (`[1, C, H, W]` outputs): progress after each pass, then
/// one chunk of every channel's `[1, rows, cols]` map per layer, in `layers`' order.
fn occlusion_chunks(
    engine: &Engine,
    input: &Arc<InputTensor>,
    layers: &[usize],
    on_delivery: &mut dyn FnMut(Delivery) -> ControlFlow<()>,
) -> Result<ControlFlow<()>> {
    let hw = [input.shape[2], input.shape[3]];
    let spec = engine::methods::occlusion::OcclusionSpec::for_input(hw);
    let progress = |done, total| on_delivery(Delivery::Progress { done, total });
    let Some(maps) = engine::methods::occlusion::occlusion(engine, input, layers, &spec, progress)?
    else {
        return Ok(ControlFlow::Break(()));
    };
    if let Some(why) = &maps.unbatched
        && on_delivery(Delivery::Notice(format!(
            "occlusion: one square per forward pass ({why})"
        )))
        .is_break()
    {
        return Ok(ControlFlow::Break(()));
    }
    let [rows, cols] = maps.grid_hw;
    anyhow::ensure!(
        maps.layers.len() == layers.len(),
        "the occlusion sweep returned maps for {} of {} layers",
        maps.layers.len(),
        layers.len()
    );
    for (layer, data) in maps.layers {
        let channels = data.len() / (rows * cols).max(1);
        let chunk = GradientChunk {
            input: Arc::clone(input),
            layer,
            method: Method::Occlusion,
            shape: vec![channels, 1, rows, cols],
            channels: 0..channels,
            data,
        };
        if on_delivery(Delivery::Chunk(chunk)).is_break() {
            return Ok(ControlFlow::Break(()));
        }
    }
    Ok(ControlFlow::Continue(()))
}

/// The feature visualisations of `layer`'s filters from `from_channel` on, as
/// `[C, 3, H, W]` chunks of `setup.spec.batch` filters (each a picture in [0, 1] at the
/// model's input size), read from the cache where it has them and stored there when
/// computed; progress (in filter-steps, a cached filter counting as done) after each
/// step. `input` only tags the chunks: the images do not depend on it.
fn featvis_chunks(
    engine: &Engine,
    input: &Arc<InputTensor>,
    layer: usize,
    from_channel: usize,
    setup: &FeatvisSetup,
    on_delivery: &mut dyn FnMut(Delivery) -> ControlFlow<()>,
) -> Result<ControlFlow<()>> {
    let graph = engine.graph();
    let node = graph.nodes.get(layer).context("no such layer")?;
    let (channels, _, _) = node
        .feature_map_dims()
        .with_context(|| format!("layer {} has no filter maps", node.name))?;
    let [h, w] = match graph.image_input().map(|i| i.shape.as_slice()) {
        Some(&[1, 3, h, w]) => [h, w],
        other => anyhow::bail!("feature vis needs one [1, 3, H, W] image input, not {other:?}"),
    };
    let stems = crate::format::architecture::layer_stems(graph);
    let cache = (setup.cache_root.as_ref())
        .map(|root| FeatvisCache::new(root, &setup.fingerprint, &setup.spec, [h, w]));
    let filters: Vec<usize> = (from_channel..channels).collect();
    let (mut filters_done, mut warned) = (0, false);
    // First filter of each chunk being optimised → its steps × filters so far (chunks
    // optimised at once report their steps interleaved).
    let mut in_flight = std::collections::BTreeMap::new();
    let steps = setup.spec.steps.max(1);
    let total = filters.len() * steps;
    let flow = featvis_cached(
        engine,
        cache.as_ref(),
        (layer, &stems[layer]),
        &filters,
        &setup.spec,
        &mut |event| match event {
            CachedEvent::Featvis(FeatvisEvent::Step { filters, step, .. }) => {
                in_flight.insert(filters[0], step * filters.len());
                on_delivery(Delivery::Progress {
                    done: filters_done * steps + in_flight.values().sum::<usize>(),
                    total,
                })
            }
            CachedEvent::Featvis(FeatvisEvent::Chunk(images)) => {
                filters_done += images.len();
                for image in images {
                    in_flight.remove(&image.filter);
                }
                let first = images.first().map_or(from_channel, |i| i.filter);
                let data: Vec<f32> = images
                    .iter()
                    .flat_map(|i| i.image.iter().copied())
                    .collect();
                on_delivery(Delivery::Chunk(GradientChunk {
                    input: Arc::clone(input),
                    layer,
                    method: Method::FeatVis,
                    shape: vec![channels, 3, h, w],
                    channels: first..first + images.len(),
                    data,
                }))
            }
            CachedEvent::CacheFailed(e) if !warned => {
                warned = true;
                let dir = cache.as_ref().map(|c| c.dir().display().to_string());
                on_delivery(Delivery::Notice(format!(
                    "feature vis: cannot keep images in {}: {e}",
                    dir.unwrap_or_default()
                )))
            }
            CachedEvent::CacheFailed(_) => ControlFlow::Continue(()),
        },
    )?;
    Ok(flow)
}

/// Every filter's image of `layer` under `method` at once (see
/// [`compute_gradient_chunks`]; an occlusion sweep of this layer only), for screenshots and
/// tests.
pub fn compute_gradients(
    engine: &Engine,
    input: &Arc<InputTensor>,
    (layer, method): (usize, Method),
    options: &ComputeOptions,
) -> Result<GradientResult> {
    let mut result: Option<GradientResult> = None;
    let mut refused = false;
    let mut collect = |d: Delivery| {
        // An occlusion sweep delivers the other layers' maps too.
        if let Delivery::Chunk(c) = d
            && c.layer == layer
        {
            let r = result.get_or_insert_with(|| c.empty_result());
            refused |= !r.accept_chunk(&c);
        }
        ControlFlow::Continue(())
    };
    // `collect` never stops the stream. Occlusion sweeps this layer only.
    let _: ControlFlow<()> = if method == Method::Occlusion {
        occlusion_chunks(engine, input, &[layer], &mut collect)?
    } else {
        compute_gradient_chunks(engine, input, (layer, method), 0, options, &mut collect)?
    };
    let result = result.context("the layer has no filters")?;
    anyhow::ensure!(
        !refused && result.is_complete(),
        "per-filter images of {} came back incomplete",
        engine
            .graph()
            .nodes
            .get(layer)
            .map_or("the layer", |n| n.name.as_str())
    );
    Ok(result)
}

/// Runs the engine on one input and reads back every feature map.
pub fn run_forward(engine: &Engine, input: &InputTensor, label: String) -> Result<ForwardResult> {
    let graph = engine.graph();
    let acts = engine.forward(input, &Capture::All)?;
    let mut maps: Vec<Option<HostMap>> = (0..graph.nodes.len()).map(|_| None).collect();
    let on_wgpu = !engine.host_kernels();
    let mut device_maps = vec![None; graph.nodes.len()];
    for (i, node) in graph.feature_map_layers() {
        if on_wgpu {
            device_maps[i] = acts.maps(&node.outputs[0]).ok();
        }
        maps[i] = Some(acts.host_map(&node.outputs[0])?);
    }
    // Every layer's constant channels and rank order in one parallel pass over all layers:
    // one per layer woke the idle threads 92 times per input (EfficientNet-Lite0: 7.2 ms of
    // thread wake-ups and 3.9 ms of work, now 2.5 ms in all; 2-core AMD EPYC).
    // Their tile ranges come from the same pass, so the atlas upload need not read the maps
    // again (3.4–4.2 ms of input → tiles; 2-core AMD EPYC Zen 3, AVX2).
    let summaries: Vec<MapSummary> = maps
        .par_iter()
        .map(|map| match map {
            // [1, C, H, W]
            Some(map) => summarise_maps(map.data(), map.shape.iter().skip(2).product()),
            None => MapSummary::default(),
        })
        .collect();
    let (mut constant, mut rank_order, mut tile_ranges) = (Vec::new(), Vec::new(), Vec::new());
    for s in summaries {
        constant.push(s.constant);
        rank_order.push(s.rank_order);
        tile_ranges.push(s.ranges);
    }
    let probabilities = engine::class_probabilities(graph, &acts)?;
    let output_summary = if probabilities.is_empty() {
        Some(engine::output_summary(&acts)?)
    } else {
        None
    };
    Ok(ForwardResult {
        maps,
        probabilities,
        output_summary,
        picture: input.picture.clone(),
        label,
        input: Some(Arc::new(input.clone())),
        constant_channels: constant,
        rank_order,
        tile_ranges,
        device_maps,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunk(channels: Range<usize>, data: Vec<f32>) -> GradientChunk {
        GradientChunk {
            input: Arc::new(InputTensor {
                shape: [1, 1, 1, 2],
                data: vec![0.0; 2],
                picture: None,
            }),
            layer: 3,
            method: Method::Guided,
            shape: vec![3, 1, 1, 2],
            channels,
            data,
        }
    }

    #[test]
    fn chunks_fill_their_channels_and_mismatches_are_refused() {
        let first = chunk(0..2, vec![1.0, 2.0, 3.0, 4.0]);
        let mut r = first.empty_result();
        assert_eq!((r.filled, r.channels(), r.is_complete()), (0, 3, false));
        assert!(r.accept_chunk(&first));
        assert_eq!(r.filled, 2);
        assert_eq!(r.images.data, [1.0, 2.0, 3.0, 4.0, 0.0, 0.0]);
        // Wrong length, beyond the layer, another method: refused, nothing written.
        assert!(!r.accept_chunk(&chunk(2..3, vec![9.0])));
        assert!(!r.accept_chunk(&chunk(2..4, vec![9.0; 4])));
        let mut other = chunk(2..3, vec![9.0, 9.0]);
        other.method = Method::Backprop;
        assert!(!r.accept_chunk(&other));
        assert_eq!(r.images.data, [1.0, 2.0, 3.0, 4.0, 0.0, 0.0]);
        assert!(r.accept_chunk(&chunk(2..3, vec![5.0, 6.0])));
        assert!(r.is_complete());
        // A chunk after a gap is stored but does not count as filled.
        let mut gap = first.empty_result();
        assert!(gap.accept_chunk(&chunk(2..3, vec![5.0, 6.0])));
        assert_eq!(gap.filled, 0);
        assert!(gap.accept_chunk(&first));
        assert_eq!(gap.filled, 2);
        assert_eq!(gap.images.data, [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
        assert_eq!(r.images.data, [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
    }
}
