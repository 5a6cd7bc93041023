//! The reverse pass behind every gradient view: seeds at one layer's output are carried back
//! to the image input (or to any earlier value) over the forward values saved in
//! [`Activations`], applying each op's vector-Jacobian product, with the ReLU-family rule
//! chosen by the attribution [`Method`].
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

use super::ops::{RANK, T6, dims6};
use super::{Activations, Engine, panic_message, profile, vjp};
use crate::model::{Graph, Node};

/// How gradients pass the ReLU family (ReLU, Clip/ReLU6, LeakyReLU); every other op uses its
/// ordinary gradient, and max-pooling always routes through its argmax switches.
///
/// With `x` the node's forward input and `g` the incoming gradient:
///
/// | method    | ReLU, LeakyReLU          | Clip `[min, max]` (ReLU6: `[0, 6]`) |
/// |-----------|--------------------------|-------------------------------------|
/// | Backprop  | `g·1[x>0]` (LeakyReLU: `g·(1[x>0] + α·1[x≤0])`) | `g·1[min<x<max]` |
/// | Deconvnet | `relu(g)` (ignores `x`)  | `relu(g)` (ignores `x`)             |
/// | Guided    | `relu(g)·1[x>0]`         | `relu(g)·1[min<x<max]`              |
///
/// At a kink (`x` exactly 0, `min` or `max`) the gate is closed, as in PyTorch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Method {
    /// The true gradient (Simonyan et al.).
    Backprop,
    /// Zeiler & Fergus's deconvnet: only positive signals pass a ReLU, whatever its input was.
    Deconvnet,
    /// Guided backpropagation (Springenberg et al.): both gates.
    Guided,
}

impl Method {
    pub const ALL: [Method; 3] = [Method::Backprop, Method::Deconvnet, Method::Guided];

    /// Short name used in file paths and on the command line (`backprop`, `deconvnet`, `gbp`).
    pub fn name(self) -> &'static str {
        match self {
            Method::Backprop => "backprop",
            Method::Deconvnet => "deconvnet",
            Method::Guided => "gbp",
        }
    }
}

/// Why a reverse pass could not run. Every variant names the layer or node (and op).
#[derive(Debug, thiserror::Error)]
pub enum BackwardError {
    #[error("layer index {index} is out of range (the graph has {count} nodes)")]
    LayerIndex { index: usize, count: usize },
    #[error("layer '{layer}' has output shape {shape:?}, not a [1, C, H, W] feature map")]
    NotFeatureMap { layer: String, shape: Vec<usize> },
    #[error(
        "seeds for layer '{layer}' have dims {got:?}; expected [B, ...] = {expected:?} with B ≥ 1"
    )]
    SeedShape {
        layer: String,
        got: Vec<usize>,
        expected: Vec<usize>,
    },
    #[error("no value named '{0}' to take the gradient with respect to")]
    UnknownTarget(String),
    /// For an op without a rule. The dispatch over [`crate::model::Op`] is exhaustive, so a new
    /// op must get a rule, or return this, before the crate compiles; today every op has one.
    #[error("no reverse rule (vector-Jacobian product) for op {op} at node '{node}'")]
    NoVjp { node: String, op: String },
    #[error("node '{node}' ({op}): reverse pass unsupported: {detail}")]
    Unsupported {
        node: String,
        op: String,
        detail: String,
    },
    #[error(
        "node '{node}' ({op}): forward value '{value}' was not kept; run the forward pass with Capture::All"
    )]
    MissingValue {
        node: String,
        op: String,
        value: String,
    },
    #[error("node '{node}' ({op}) failed on the compute device during the reverse pass: {detail}")]
    Backend {
        node: String,
        op: String,
        detail: String,
    },
    #[error("reading the gradient of '{value}' back from the device failed: {detail}")]
    Readback { value: String, detail: String },
}

pub type Result<T, E = BackwardError> = std::result::Result<T, E>;

/// Rank-6 dims of the gradient of a value with logical `shape` for `batch` seeds (see the
/// module docs); `None` for rank-6 values, which leave no axis for the batch.
pub fn grad_dims(batch: usize, shape: &[usize]) -> Option<[usize; RANK]> {
    (shape.len() < RANK).then(|| {
        let mut d = dims6(shape);
        d[0] = batch;
        d
    })
}

/// What one node's reverse step sees: its forward values, shapes, and which inputs need a
/// gradient.
pub(crate) struct Step<'a> {
    pub engine: &'a Engine,
    pub acts: &'a Activations,
    pub node: &'a Node,
    /// Seeds in flight (axis 0 of every gradient).
    pub batch: usize,
    /// `wants[i]`: input `i` depends on the target value and needs a gradient.
    pub wants: Vec<bool>,
}

impl Step<'_> {
    pub fn device(&self) -> &burn::tensor::Device {
        self.engine.device()
    }

    fn value(&self, name: &str) -> Result<T6> {
        self.acts
            .value(name)
            .or_else(|| self.engine.weight(name))
            .cloned()
            .ok_or_else(|| BackwardError::MissingValue {
                node: self.node.name.clone(),
                op: self.node.onnx_op.clone(),
                value: name.to_string(),
            })
    }

    /// Forward value of input `i` (a runtime value or a weight), `dims6` layout.
    pub fn input(&self, i: usize) -> Result<T6> {
        let name = self
            .node
            .inputs
            .get(i)
            .ok_or_else(|| self.unsupported(format!("no input {i}")))?;
        self.value(name)
    }

    /// Forward value of output `i`, `dims6` layout.
    pub fn output(&self, i: usize) -> Result<T6> {
        let name = self
            .node
            .outputs
            .get(i)
            .ok_or_else(|| self.unsupported(format!("no output {i}")))?;
        self.value(name)
    }

    /// Logical shape of input `i` (empty if there is none).
    pub fn in_shape(&self, i: usize) -> &[usize] {
        self.node
            .inputs
            .get(i)
            .map_or(&[], |name| self.engine.shape_of(name))
    }

    pub fn out_shape(&self, i: usize) -> &[usize] {
        self.node
            .output_shapes
            .get(i)
            .map(Vec::as_slice)
            .unwrap_or(&[])
    }

    pub fn wants(&self, i: usize) -> bool {
        self.wants.get(i).copied().unwrap_or(false)
    }

    /// [`grad_dims`] for this step's batch, as an error on rank-6 values.
    pub fn gdims(&self, shape: &[usize]) -> Result<[usize; RANK]> {
        grad_dims(self.batch, shape).ok_or_else(|| {
            self.unsupported(format!(
                "value of rank {} (at most 5 is supported)",
                shape.len()
            ))
        })
    }

    /// A value of this step could not be read to the host (for a host kernel).
    pub fn readback(&self, detail: impl Into<String>) -> BackwardError {
        BackwardError::Readback {
            value: self.node.name.clone(),
            detail: detail.into(),
        }
    }

    /// A tensor's values on the host, row-major (for the host kernels used on flex). Moved,
    /// not cloned: flex hands over a uniquely owned buffer without a copy.
    pub fn to_host<const D: usize>(&self, t: Tensor<D>) -> Result<Vec<f32>> {
        t.into_data()
            .try_into_vec::<f32>()
            .map_err(|e| self.readback(format!("{e:?}")))
    }

    pub fn unsupported(&self, detail: impl Into<String>) -> BackwardError {
        BackwardError::Unsupported {
            node: self.node.name.clone(),
            op: self.node.onnx_op.clone(),
            detail: detail.into(),
        }
    }

    /// For ops differentiated only with respect to their data input (input 0).
    pub fn data_input_only(&self) -> Result<()> {
        match (1..self.node.inputs.len()).find(|&i| self.wants(i)) {
            Some(i) => Err(self.unsupported(format!(
                "input {i} ('{}') depends on the image, but only the data input is differentiated",
                self.node.inputs[i]
            ))),
            None => Ok(()),
        }
    }
}

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
    method: Method,
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
    method: Method,
    target: &str,
) -> Result<T6> {
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
    method: Method,
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
/// sum, see [`super::attribution`]) carried to the image input: `[B, 1, 1, C, H, W]`.
///
/// When the layer is a group-1 convolution of one image whose input depends on the image and
/// whose weights do not, its own step is taken without one-hot seeds
/// ([`vjp::conv_channel_sums_input_grad`]: one transposed convolution per channel, M× fewer
/// multiply-adds than carrying `[B, M, H, W]` one-hot seeds); the reverse pass continues
/// from the layer's input. Otherwise the seeds go through [`backward`].
pub fn backward_channel_sums(
    engine: &Engine,
    acts: &Activations,
    layer: usize,
    range: std::ops::Range<usize>,
    method: Method,
) -> Result<T6> {
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
        let seeds = super::attribution::channel_seeds(range, dims, engine.device());
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

/// Sums a gradient over the axes a forward broadcast expanded, giving it the rank-6 `dims`
/// (seed batch on axis 0) of the operand it flows to.
pub(crate) fn unbroadcast(g: T6, dims: [usize; RANK]) -> T6 {
    let mut g = g;
    let have = g.dims();
    for ax in 1..RANK {
        if dims[ax] == 1 && have[ax] != 1 {
            g = g.sum_dim(ax);
        }
    }
    if g.dims() == dims { g } else { g.reshape(dims) }
}
