//! Per-filter attribution images for one layer (the paper's central picture): for every
//! channel of a layer, the gradient image of that channel's summed response with respect to
//! the input, under the backprop, deconvnet or guided-backpropagation rule, computed for all
//! channels by batched reverse passes over a single saved forward pass.
//!
//! # Semantics
//!
//! For layer L (one graph node) with output `[1, C, H, W]` and channel `k`, the objective is
//! `J_k = Σ_{h,w} L(x)[0, k, h, w]` and the image is `∂J_k/∂x`, shape `[Cin, Hin, Win]`
//! (`[3, H, W]` for an RGB network), computed with the [`GradientRule`]'s rule at every ReLU-family
//! node between the input and L (L itself included when it is one), max-pooling through its
//! argmax switches, and every other op through its ordinary gradient. The result is raw
//! (unnormalised) gradients; display normalisation is the renderer's job.
//!
//! # Batching and memory
//!
//! One forward pass is saved ([`Activations`] from `Capture::All`); the C channels go through
//! the reverse pass in chunks of `B` seeds. Seed `j` of the chunk starting at channel `k0` is
//! one-hot on channel `k0 + j` and all ones over `(h, w)`: `[B, 1, 1, C, H, W]`. When L is a
//! group-1 convolution its own step skips the one-hot seeds: channel `k`'s sum reaches L's
//! input only through filter `k`, so the chunk's input gradients are one grouped transposed
//! convolution of ones maps with `B` filters (C× fewer multiply-adds than the one-hot seeds
//! through all C filters; see [`crate::engine::reverse::backward::backward_channel_sums`]). The chunk size
//! is chosen by [`chunk_size`]: the largest gradient tensor of the pass (B × the largest
//! value on L's dependency path, f32) must fit [`GRAD_TENSOR_BUDGET_BYTES`]; about three such
//! tensors are alive at once (incoming, outgoing, a fan-out accumulator), plus the backend's
//! convolution workspace. For AlexNet at 224×224 (largest value: conv1's 96×54×54 output) that
//! is 119 seeds per pass.
//!
//! # One seed per input
//!
//! [`attribute_per_input`] is the other batched mode: an engine built for a batch of N inputs
//! ([`Engine::with_batch`]) and one reverse pass whose seed gives input `k` the objective
//! `J_{c_k}` of its own channel `c_k` (feature visualisation optimises N inputs this way).

use std::ops::{ControlFlow, Range};

use crate::engine::ops::T6;
use crate::engine::reverse::backward::{backward, backward_channel_sums, largest_value_on_path};
use crate::engine::reverse::seeds::per_input_seeds;
pub use crate::engine::reverse::step::{BackwardError, GradientRule, Result};
use crate::engine::{Activations, Engine, HostTensor};

/// Bound on the largest single gradient tensor of a chunk, in bytes (128 MiB).
pub const GRAD_TENSOR_BUDGET_BYTES: usize = 128 << 20;

/// Seeds per reverse pass for `channels` channels of node `layer`:
/// `clamp(budget / (4 bytes × largest value on the path), 1, channels)`.
pub fn chunk_size(engine: &Engine, layer: usize, channels: usize, budget_bytes: usize) -> usize {
    let per_seed = 4 * largest_value_on_path(engine.graph(), layer).max(1);
    (budget_bytes / per_seed).clamp(1, channels.max(1))
}

/// `(C, H, W)` of node `layer`'s `[1, C, H, W]` output, or the error saying why not.
pub fn feature_map_dims(engine: &Engine, layer: usize) -> Result<(usize, usize, usize)> {
    let graph = engine.graph();
    let node = graph.nodes.get(layer).ok_or(BackwardError::LayerIndex {
        index: layer,
        count: graph.nodes.len(),
    })?;
    node.feature_map_dims()
        .ok_or_else(|| BackwardError::NotFeatureMap {
            layer: node.name.clone(),
            shape: node.output_shape().to_vec(),
        })
}

/// Streams the attribution images of every channel of node `layer`, chunk by chunk: `sink`
/// gets each channel range and its input gradients on the device, `[B, 1, 1, Cin, Hin, Win]`
/// (rank-6 layout of [`crate::engine::reverse::step`]), and says whether to go on: after
/// `ControlFlow::Break` no further chunk is computed and that is returned. The stream starts
/// at channel `from_channel` (0 for all; past the last channel, nothing). `chunk` overrides
/// [`chunk_size`]'s choice. Use this to keep images on the GPU, to write them out without
/// holding all of them, or to show them as they finish.
pub fn attribute_layer_chunks(
    engine: &Engine,
    acts: &Activations,
    layer: usize,
    method: GradientRule,
    from_channel: usize,
    chunk: Option<usize>,
    mut sink: impl FnMut(Range<usize>, T6) -> Result<ControlFlow<()>>,
) -> Result<ControlFlow<()>> {
    let dims = feature_map_dims(engine, layer)?;
    let channels = dims.0;
    let step = chunk
        .unwrap_or_else(|| chunk_size(engine, layer, channels, GRAD_TENSOR_BUDGET_BYTES))
        .max(1);
    let mut k0 = from_channel;
    while k0 < channels {
        let range = k0..(k0 + step).min(channels);
        let grads = backward_channel_sums(engine, acts, layer, range.clone(), method)?;
        if sink(range.clone(), grads)?.is_break() {
            return Ok(ControlFlow::Break(()));
        }
        k0 = range.end;
    }
    Ok(ControlFlow::Continue(()))
}

/// The attribution images of every channel of node `layer` (index into `graph.nodes`) on the
/// CPU: `[C, Cin, Hin, Win]` (`[C, 3, H, W]` for an RGB network), image `k` = `∂J_k/∂x` under
/// `method` (see the module docs). `acts` must come from `engine.forward(.., &Capture::All)`.
/// `chunk`: seeds per reverse pass (default: [`chunk_size`] with
/// [`GRAD_TENSOR_BUDGET_BYTES`]).
pub fn attribute_layer(
    engine: &Engine,
    acts: &Activations,
    layer: usize,
    method: GradientRule,
    chunk: Option<usize>,
) -> Result<HostTensor> {
    let graph = engine.graph();
    let input = graph
        .image_input()
        .map(|i| i.shape.clone())
        .unwrap_or_default();
    let channels = feature_map_dims(engine, layer)?.0;
    let per_image: usize = input.iter().product();
    let mut data = Vec::with_capacity(channels * per_image);
    // This sink never stops the stream, so the flow returned is always `Continue`.
    let _: ControlFlow<()> =
        attribute_layer_chunks(engine, acts, layer, method, 0, chunk, |_, g| {
            data.extend_from_slice(&read_chunk(engine, layer, g)?);
            Ok(ControlFlow::Continue(()))
        })?;
    let mut shape = vec![channels];
    shape.extend(input.iter().skip(1));
    Ok(HostTensor { shape, data })
}

/// One reverse pass over a batch: image `k` is `∂J_{channels[k]}/∂x_k`, the gradient of
/// channel `channels[k]`'s summed response to input `k` under `method`, as `[N, Cin, Hin,
/// Win]` on the CPU. `engine` must be built for a batch of `N = channels.len()` inputs
/// ([`Engine::with_batch`]) and `acts` come from its `forward_batch(.., &Capture::All)`.
pub fn attribute_per_input(
    engine: &Engine,
    acts: &Activations,
    layer: usize,
    channels: &[usize],
    method: GradientRule,
) -> Result<HostTensor> {
    let graph = engine.graph();
    let node = graph.nodes.get(layer).ok_or(BackwardError::LayerIndex {
        index: layer,
        count: graph.nodes.len(),
    })?;
    let not_a_batch_map = || BackwardError::NotFeatureMap {
        layer: node.name.clone(),
        shape: node.output_shape().to_vec(),
    };
    let &[n, c, h, w] = node.output_shape() else {
        return Err(not_a_batch_map());
    };
    let wrong_channels = || BackwardError::PerInputChannels {
        layer: node.name.clone(),
        channels: channels.to_vec(),
        batch: n,
        layer_channels: c,
    };
    if n != channels.len() {
        return Err(wrong_channels());
    }
    let seed = per_input_seeds(channels, (c, h, w), engine.device()).ok_or_else(wrong_channels)?;
    let grads = backward(engine, acts, layer, seed, method)?; // [1, 1, N, Cin, Hin, Win]
    let mut shape = graph
        .image_input()
        .map(|i| i.shape.clone())
        .unwrap_or_default(); // [N, Cin, Hin, Win]
    if shape.first() != Some(&n) {
        shape.insert(0, n);
    }
    Ok(HostTensor {
        shape,
        data: read_chunk(engine, layer, grads)?,
    })
}

/// A chunk of [`attribute_layer_chunks`] read back to the host, row-major
/// (`[B, Cin, Hin, Win]`); the error names the layer.
pub fn read_chunk(engine: &Engine, layer: usize, grads: T6) -> Result<Vec<f32>> {
    grads
        .try_into_data()
        .map_err(|e| format!("{e:?}"))
        .and_then(|d| d.try_into_vec::<f32>().map_err(|e| format!("{e:?}")))
        .map_err(|detail| BackwardError::Readback {
            value: engine
                .graph()
                .nodes
                .get(layer)
                .map_or_else(|| format!("layer {layer}"), |n| n.name.clone()),
            detail,
        })
}
