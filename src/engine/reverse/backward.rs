//! The reverse pass behind every gradient view: seeds at one layer's output are carried back
//! to the image input (or to any earlier value) over the forward values saved in
//! [`Activations`], applying each op's vector-Jacobian product, with the ReLU-family rule
//! chosen by the attribution [`GradientRule`].
//!
//! # Gradient layout
//!
//! A forward value of logical shape `S` (rank ≤ 5) lives on the device as `dims6(S)`, whose
//! axis 0 is always 1. Its gradient for a batch of `B` seeds has the rank-6 dims
//! [`grad_dims`]`(B, S)` = `[B, dims6(S)[1..]]`: **the seed batch is axis 0 of the rank-6
//! tensor**, the value's own layout fills axes 1..6 unchanged. A 4-D value `[1, C, H, W]`
//! (`[1, 1, 1, C, H, W]`) has gradients `[B, 1, 1, C, H, W]`. Because forward values have a 1
//! on axis 0, every mask or factor taken from them (`x > 0`, `σ(x)(1 − σ(x))`, BN scales)
//! broadcasts over the seed batch with no copy; ops that need a 4-D batch (convolutions,
//! pooling) fold `B × N` into their batch axis by a metadata-only reshape. Values of rank 6
//! have no free axis and are rejected ([`BackwardError::Unsupported`]).
//!
//! # Traversal
//!
//! Nodes are visited in reverse topological order from the seeded layer down to the target
//! value's producer. A node is processed only when one of its outputs received a gradient
//! (so nodes the layer does not depend on are skipped), and only inputs that depend on the
//! target value get one (weights and side branches are never differentiated). Where a value
//! fans out (residual adds, concats, splits, channel shuffles) the contributions are summed.
//!
//! The forward values come from [`Activations`] (run with `Capture::All`) and weights from the
//! [`Engine`]. `Capture::All` keeps node outputs but not the graph's input, so an op applied
//! directly to the image whose gradient needs the image's value (a ReLU or max-pool as the
//! very first node) reports [`BackwardError::MissingValue`]; convolutions, affine
//! normalisation (`(x − mean) / std`) and the like need only their weights.

use std::collections::{HashMap, HashSet};

use burn::tensor::Tensor;

use super::step::{BackwardError, GradientRule, Result, Step, grad_dims};
use super::{seeds, vjp};
use crate::engine::awake::on_pool_awake;
use crate::engine::ops::T6;
use crate::engine::{Activations, Engine, panic_message, profile};
use crate::model::{Graph, Node};

/// Values that depend on `source` (itself included), by forward propagation over the graph.
fn dependents(graph: &Graph, source: &str) -> HashSet<String> {
    let mut set = HashSet::from([source.to_string()]);
    for node in &graph.nodes {
        if node.inputs.iter().any(|i| set.contains(i)) {
            set.extend(node.outputs.iter().cloned());
        }
    }
    set
}

/// Indices of the nodes `layer` depends on (itself included).
pub fn ancestors(graph: &Graph, layer: usize) -> HashSet<usize> {
    let mut needed: HashSet<&str> = HashSet::new();
    let mut out = HashSet::new();
    for (i, node) in graph.nodes.iter().enumerate().take(layer + 1).rev() {
        if i == layer || node.outputs.iter().any(|o| needed.contains(o.as_str())) {
            out.insert(i);
            needed.extend(node.inputs.iter().map(String::as_str));
        }
    }
    out
}

/// Elements of the largest value the reverse pass from `layer` to the image touches (node
/// outputs on its dependency path and the image input): the per-seed size of the largest
/// gradient tensor.
pub fn largest_value_on_path(graph: &Graph, layer: usize) -> usize {
    let input = graph
        .image_input()
        .map(|i| i.shape.iter().product())
        .unwrap_or(0);
    ancestors(graph, layer)
        .into_iter()
        .flat_map(|i| graph.nodes[i].output_shapes.iter())
        .map(|s| s.iter().product::<usize>())
        .fold(input, usize::max)
}

/// Carries `seed` (the gradient of node `layer`'s first output, dims
/// [`grad_dims`]`(B, shape)`) back to the graph's image input; returns its gradient
/// `[B, 1, 1, C, H, W]` for a `[1, C, H, W]` image.
pub fn backward(
    engine: &Engine,
    acts: &Activations,
    layer: usize,
    seed: T6,
    method: GradientRule,
) -> Result<T6> {
    let input = engine
        .graph()
        .image_input()
        .map(|i| i.name.clone())
        .unwrap_or_default();
    backward_to(engine, acts, layer, seed, method, &input)
}

/// Like [`backward`], but to any value `target` computed before `layer` (e.g. a conv layer's
/// output for Grad-CAM). A target the layer does not depend on gets a zero gradient.
pub fn backward_to(
    engine: &Engine,
    acts: &Activations,
    layer: usize,
    seed: T6,
    method: GradientRule,
    target: &str,
) -> Result<T6> {
    if engine.host_kernels() && rayon::current_thread_index().is_none() {
        // On a worker, with the pool's others kept awake ([`on_pool_awake`]), as the
        // forward pass runs.
        return on_pool_awake(|| backward_to(engine, acts, layer, seed, method, target));
    }
    let graph = engine.graph();
    let count = graph.nodes.len();
    let node = graph.nodes.get(layer).ok_or(BackwardError::LayerIndex {
        index: layer,
        count,
    })?;
    let batch = seed.dims()[0];
    let expected = grad_dims(batch, node.output_shape());
    if batch == 0 || expected != Some(seed.dims()) {
        return Err(BackwardError::SeedShape {
            layer: node.name.clone(),
            got: seed.dims().to_vec(),
            expected: expected.map(|d| d.to_vec()).unwrap_or_default(),
        });
    }
    let first = node
        .outputs
        .first()
        .ok_or_else(|| BackwardError::NotFeatureMap {
            layer: node.name.clone(),
            shape: Vec::new(),
        })?;
    carry(engine, acts, layer, first, seed, method, target)
}

/// The reverse pass proper: `seed` is the gradient of `value`, an output of node `from`;
/// nodes `from` down to the target's producer pass it on.
fn carry(
    engine: &Engine,
    acts: &Activations,
    from: usize,
    value: &str,
    seed: T6,
    method: GradientRule,
    target: &str,
) -> Result<T6> {
    let graph = engine.graph();
    let batch = seed.dims()[0];
    let target_dims = graph
        .shapes
        .get(target)
        .and_then(|s| grad_dims(batch, s))
        .ok_or_else(|| BackwardError::UnknownTarget(target.to_string()))?;
    if value == target {
        return Ok(seed);
    }
    // Nodes at or before the target's producer cannot carry gradient to it.
    let stop = producer(graph, target).map_or(0, |p| p + 1);
    let live = dependents(graph, target);
    let mut grads: HashMap<String, T6> = HashMap::from([(value.to_string(), seed)]);

    for i in (stop..=from).rev() {
        let node = &graph.nodes[i];
        if !node.outputs.iter().any(|o| grads.contains_key(o)) {
            continue;
        }
        let step = Step {
            engine,
            acts,
            node,
            batch,
            wants: node.inputs.iter().map(|n| live.contains(n)).collect(),
        };
        let mut out_grads = Vec::with_capacity(node.outputs.len());
        for (k, name) in node.outputs.iter().enumerate() {
            out_grads.push(match grads.remove(name) {
                Some(g) => g,
                None => Tensor::zeros(step.gdims(step.out_shape(k))?, step.device()),
            });
        }
        let in_grads = profile::timed(node.op.type_name(), engine.device(), || {
            guarded(node, || vjp::vjp(&step, method, out_grads))
        })?;
        for (name, g) in node.inputs.iter().zip(in_grads) {
            let Some(g) = g else { continue };
            if !live.contains(name) {
                continue;
            }
            let g = match grads.remove(name) {
                Some(acc) => acc + g,
                None => g,
            };
            grads.insert(name.clone(), g);
        }
    }
    Ok(grads
        .remove(target)
        .unwrap_or_else(|| Tensor::zeros(target_dims, engine.device())))
}

/// The attribution images of channels `range` of node `layer` (objective: each channel's
/// sum, see [`crate::engine::methods::attribution`]) carried to the image input: `[B, 1, 1, C, H, W]`.
///
/// When the layer is a group-1 convolution of one image whose input depends on the image and
/// whose weights do not, its own step is taken without one-hot seeds
/// (`vjp::conv_channel_sums_input_grad`: one transposed convolution per channel, M× fewer
/// multiply-adds than carrying `[B, M, H, W]` one-hot seeds); the reverse pass continues
/// from the layer's input. Otherwise the seeds go through [`backward`].
pub fn backward_channel_sums(
    engine: &Engine,
    acts: &Activations,
    layer: usize,
    range: std::ops::Range<usize>,
    method: GradientRule,
) -> Result<T6> {
    if engine.host_kernels() && rayon::current_thread_index().is_none() {
        return on_pool_awake(|| backward_channel_sums(engine, acts, layer, range, method));
    }
    let graph = engine.graph();
    let target = graph
        .image_input()
        .map(|i| i.name.clone())
        .unwrap_or_default();
    let node = graph.nodes.get(layer).ok_or(BackwardError::LayerIndex {
        index: layer,
        count: graph.nodes.len(),
    })?;
    let live = dependents(graph, &target);
    let shortcut = matches!(node.op, crate::model::Op::Conv { group: 1, .. })
        && node.inputs.len() >= 2
        && live.contains(&node.inputs[0])
        && engine.weight(&node.inputs[1]).is_some()
        && engine.shape_of(&node.inputs[0]).first() == Some(&1);
    if !shortcut {
        let dims = node
            .feature_map_dims()
            .ok_or_else(|| BackwardError::NotFeatureMap {
                layer: node.name.clone(),
                shape: node.output_shape().to_vec(),
            })?;
        let seeds = seeds::channel_seeds(range, dims, engine.device());
        return backward(engine, acts, layer, seeds, method);
    }
    let step = Step {
        engine,
        acts,
        node,
        batch: range.len(),
        wants: node.inputs.iter().map(|n| live.contains(n)).collect(),
    };
    let input_grad = profile::timed("Conv (channel sums)", engine.device(), || {
        guarded(node, || vjp::conv_channel_sums_input_grad(&step, range))
    })?;
    let x = &node.inputs[0];
    // The reverse pass goes on from x's producer (none when the conv reads the image, which
    // is then the target itself).
    let from = producer(graph, x).unwrap_or(0);
    carry(engine, acts, from, x, input_grad, method, &target)
}

/// Index of the node that computes `value`, if any.
fn producer(graph: &Graph, value: &str) -> Option<usize> {
    graph
        .nodes
        .iter()
        .position(|n| n.outputs.iter().any(|o| o == value))
}

/// Runs `step` (a reverse step of `node`), turning a backend panic into
/// [`BackwardError::Backend`] naming the node.
fn guarded<T>(node: &Node, step: impl FnOnce() -> Result<T>) -> Result<T> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(step)).map_err(|panic| {
        BackwardError::Backend {
            node: node.name.clone(),
            op: node.onnx_op.clone(),
            detail: panic_message(&panic),
        }
    })?
}
