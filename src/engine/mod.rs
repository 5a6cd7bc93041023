//! Running a network with burn: weights uploaded once to the chosen device, then a forward
//! pass that walks the graph in topological order and keeps every requested node output
//! (freeing the others as soon as their last consumer has run). On the CPU (flex) the
//! convolutions, fully connected layers, max-pooling, LRN, ReLU and Clip run as host kernels
//! (`HostOp`) on the tensors' buffers; everything else is burn's.
//!
//! The folder: this file is the forward pass (with [`ops`], one burn op per graph op, and
//! [`device`], which device runs it); [`kernels`] holds the CPU host kernels (pure functions
//! on slices); [`reverse`] carries gradients back from a layer to the input; [`methods`]
//! builds the per-filter views on both passes (gradient images, Grad-CAM, occlusion);
//! [`profile`] times steps for `bench --ops`.

pub mod device;
mod host_op;
pub mod kernels;
pub mod methods;
pub mod ops;
pub mod profile;
pub mod reverse;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use burn::tensor::Device;

pub use device::{ComputeDevice, DeviceChoice};
use host_op::HostOp;
use ops::{T6, dims6, upload};

use crate::model::Graph;
use crate::model::preprocess::InputTensor;

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("the input has shape {got:?}, but model input '{name}' expects {expected:?}")]
    InputShape {
        name: String,
        got: Vec<usize>,
        expected: Vec<usize>,
    },
    #[error("node '{node}' ({op}) failed on the compute device: {detail}")]
    Backend {
        node: String,
        op: String,
        detail: String,
    },
    #[error("reading '{value}' back from the device failed: {detail}")]
    Readback { value: String, detail: String },
    #[error("no layer named '{0}'")]
    UnknownLayer(String),
    #[error(transparent)]
    Batch(#[from] crate::model::BatchError),
    #[error("a batch of {got} inputs was given to an engine that takes {expected} per pass")]
    BatchSize { got: usize, expected: usize },
}

pub type Result<T, E = EngineError> = std::result::Result<T, E>;

/// Which node outputs a forward pass keeps.
#[derive(Debug, Clone)]
pub enum Capture {
    /// Every node's outputs (the viewer's default).
    All,
    /// Only the outputs of these nodes (by layer name) plus the graph outputs.
    Layers(HashSet<String>),
    /// Every output of nodes `0..=index` and the graph inputs, and no node after `index` runs:
    /// what a reverse pass from node `index` needs (feature visualisation runs one per step).
    AllUpTo(usize),
}

/// A network bound to a device with its weights uploaded.
pub struct Engine {
    graph: Arc<Graph>,
    device: Device,
    weights: HashMap<String, T6>,
    /// Whether this engine runs the host kernels ([`kernels`]) where it has them: chosen once,
    /// in [`Engine::new`], for the CPU (flex) device; the forward walk and every reverse step
    /// ask [`Engine::host_kernels`] instead of comparing devices.
    host_kernels: bool,
    /// With host kernels: the nodes they run instead of burn, by node index.
    host_ops: HashMap<usize, HostOp>,
    /// For each value, the index of the last node that reads it.
    last_use: HashMap<String, usize>,
}

/// The outputs of one forward pass, addressable by layer.
pub struct Activations {
    graph: Arc<Graph>,
    values: HashMap<String, T6>,
}

impl Engine {
    /// Uploads the weights every runtime node reads.
    pub fn new(graph: Arc<Graph>, device: Device) -> Self {
        let mut weights = HashMap::new();
        let mut last_use = HashMap::new();
        for (i, node) in graph.nodes.iter().enumerate() {
            for name in &node.inputs {
                last_use.insert(name.clone(), i);
                if let Some(c) = graph.constants.get(name)
                    && !weights.contains_key(name)
                {
                    weights.insert(name.clone(), upload(c.to_f32_vec(), &c.shape, &device));
                }
            }
        }
        let host_kernels = device == Device::flex();
        let host_ops = HostOp::plan_all(&graph, host_kernels);
        Self {
            graph,
            device,
            weights,
            host_kernels,
            host_ops,
            last_use,
        }
    }

    /// The same network over batches of `batch` images ([`Graph::with_batch`]), sharing
    /// this engine's uploaded weights (device tensors are reference-counted, not copied).
    /// `Err` when the graph mixes samples somewhere; then run one image per pass.
    pub fn with_batch(&self, batch: usize) -> Result<Engine> {
        let graph = Arc::new(self.graph.with_batch(batch)?);
        let host_ops = HostOp::plan_all(&graph, self.host_kernels);
        Ok(Self {
            graph,
            device: self.device.clone(),
            weights: self.weights.clone(),
            host_kernels: self.host_kernels,
            host_ops,
            last_use: self.last_use.clone(),
        })
    }

    /// How many images one pass takes (1 unless built by [`Engine::with_batch`]).
    pub fn batch_size(&self) -> usize {
        self.graph.batch_size()
    }

    /// Runs the network on exactly [`Engine::batch_size`] image inputs of one shape at
    /// once: every kept value is `[N, …]`, sample `k` being `inputs[k]`'s
    /// ([`HostTensor::sample`] splits them).
    pub fn forward_batch(&self, inputs: &[&InputTensor], capture: &Capture) -> Result<Activations> {
        let input = self.batch_input(inputs)?;
        self.forward_inputs(std::slice::from_ref(&input), capture)
    }

    /// `inputs` (each `[1, …]`, exactly [`Engine::batch_size`] of one shape) stacked into
    /// the graph's image input `[N, …]`.
    fn batch_input(&self, inputs: &[&InputTensor]) -> Result<NamedInput> {
        let expected = self.batch_size();
        if inputs.len() != expected {
            return Err(EngineError::BatchSize {
                got: inputs.len(),
                expected,
            });
        }
        let name = self
            .graph
            .image_input()
            .map(|i| i.name.clone())
            .unwrap_or_default();
        let mut shape = inputs.first().map(|i| i.shape.to_vec()).unwrap_or_default();
        let mut data = Vec::with_capacity(inputs.iter().map(|i| i.data.len()).sum());
        for input in inputs {
            if input.shape[1..] != shape[1..] || input.shape[0] != 1 {
                return Err(EngineError::InputShape {
                    name,
                    got: input.shape.to_vec(),
                    expected: shape,
                });
            }
            data.extend_from_slice(&input.data);
        }
        if let Some(d) = shape.first_mut() {
            *d = expected; // [N, 3, H, W]
        }
        Ok(NamedInput { name, shape, data })
    }

    /// Runs `op` (node `node`'s host kernel) on the node's inputs, read in place; an
    /// element-wise op whose input this pass no longer needs writes into that input's buffer.
    fn run_host_op(&self, op: &HostOp, node: &crate::model::Node, ins: Vec<T6>) -> Result<Vec<T6>> {
        let backend = |detail| EngineError::Backend {
            node: node.name.clone(),
            op: node.onnx_op.clone(),
            detail,
        };
        let mut ins = ins;
        if let Some(out) = op.run_in_place(&mut ins).map_err(backend)? {
            return Ok(vec![out]);
        }
        let out = op.run(&ins).map_err(backend)?;
        Ok(vec![upload(out, &node.output_shapes[0], &self.device)])
    }

    pub fn graph(&self) -> &Arc<Graph> {
        &self.graph
    }

    pub fn device(&self) -> &Device {
        &self.device
    }

    /// Whether the CPU host kernels ([`kernels`]) run this engine's convolutions, pooling,
    /// LRN and reverse steps where they have one (the CPU device), rather than burn's ops.
    pub fn host_kernels(&self) -> bool {
        self.host_kernels
    }

    /// The device tensor of a weight or folded constant a node reads (rank 6, logical shape
    /// left-padded with 1s).
    pub fn weight(&self, name: &str) -> Option<&T6> {
        self.weights.get(name)
    }

    /// Runs the network on an image input, keeping the node outputs `capture` asks for.
    pub fn forward(&self, input: &InputTensor, capture: &Capture) -> Result<Activations> {
        self.forward_inputs(std::slice::from_ref(&self.image_input(input)), capture)
    }

    /// `input` as the value of the graph's image input.
    fn image_input(&self, input: &InputTensor) -> NamedInput {
        NamedInput {
            name: self
                .graph
                .image_input()
                .map(|i| i.name.clone())
                .unwrap_or_default(),
            shape: input.shape.to_vec(),
            data: input.data.clone(),
        }
    }

    /// Runs the network with a value for every runtime input of the graph.
    pub fn forward_inputs(&self, inputs: &[NamedInput], capture: &Capture) -> Result<Activations> {
        self.run_nodes(inputs, capture, None, &mut |_, _| Ok(()))
    }

    /// [`Engine::forward_batch`] that hands each node's outputs to `observe` (with the
    /// node's index) as soon as the node has run, and keeps only the graph outputs: a
    /// streaming consumer (the dataset scan, `stats`) summarises a layer while it is fresh in
    /// cache, and the pass frees it after its last consumer, or — a Clip or ReLU after it —
    /// clamps it in place, instead of holding every layer to the end. An `Err` from
    /// `observe` stops the pass.
    pub fn forward_batch_observed(
        &self,
        inputs: &[&InputTensor],
        observe: &mut dyn FnMut(usize, &[T6]) -> Result<()>,
    ) -> Result<Activations> {
        let input = self.batch_input(inputs)?;
        let capture = Capture::Layers(HashSet::new());
        self.run_nodes(std::slice::from_ref(&input), &capture, None, observe)
    }

    /// [`Engine::forward`] that waits for the device after every node and returns each
    /// node's seconds (for `convlens bench --ops`: where the forward time goes). Slower than
    /// a plain forward pass on a GPU, where nodes otherwise overlap.
    pub fn forward_timed(&self, input: &InputTensor) -> Result<(Activations, Vec<f64>)> {
        let named = self.image_input(input);
        let mut seconds = vec![0.0; self.graph.nodes.len()];
        let acts = self.run_nodes(
            std::slice::from_ref(&named),
            &Capture::All,
            Some(&mut seconds),
            &mut |_, _| Ok(()),
        )?;
        Ok((acts, seconds))
    }

    fn run_nodes(
        &self,
        inputs: &[NamedInput],
        capture: &Capture,
        mut timings: Option<&mut Vec<f64>>,
        observe: &mut dyn FnMut(usize, &[T6]) -> Result<()>,
    ) -> Result<Activations> {
        let graph = &self.graph;
        let mut values: HashMap<String, T6> = HashMap::new();
        for expected in &graph.inputs {
            let given = inputs.iter().find(|i| i.name == expected.name);
            match given {
                Some(i)
                    if i.shape == expected.shape
                        && i.data.len() == i.shape.iter().product::<usize>() =>
                {
                    values.insert(
                        i.name.clone(),
                        upload(i.data.clone(), &i.shape, &self.device),
                    );
                }
                _ => {
                    return Err(EngineError::InputShape {
                        name: expected.name.clone(),
                        got: given.map(|i| i.shape.clone()).unwrap_or_default(),
                        expected: expected.shape.clone(),
                    });
                }
            }
        }
        let keep: HashSet<&str> = match capture {
            // Every node output and the graph inputs (reverse passes through a first ReLU or
            // pooling need the input value).
            Capture::All => graph
                .nodes
                .iter()
                .flat_map(|n| n.outputs.iter().map(String::as_str))
                .chain(graph.inputs.iter().map(|i| i.name.as_str()))
                .collect(),
            Capture::Layers(names) => graph
                .nodes
                .iter()
                .filter(|n| names.contains(&n.name))
                .flat_map(|n| n.outputs.iter().map(String::as_str))
                .chain(graph.outputs.iter().map(String::as_str))
                .collect(),
            Capture::AllUpTo(last) => (graph.nodes.iter().take(last + 1))
                .flat_map(|n| n.outputs.iter().map(String::as_str))
                .chain(graph.inputs.iter().map(|i| i.name.as_str()))
                .collect(),
        };
        let last_node = match capture {
            Capture::AllUpTo(last) => *last,
            _ => usize::MAX,
        };
        for (i, node) in graph
            .nodes
            .iter()
            .enumerate()
            .take_while(|&(i, _)| i <= last_node)
        {
            let started = std::time::Instant::now();
            let mut ins = Vec::with_capacity(node.inputs.len());
            let mut in_shapes: Vec<&[usize]> = Vec::with_capacity(node.inputs.len());
            for name in &node.inputs {
                // A value this node reads last, once, and nobody keeps is handed over rather
                // than shared, so an element-wise op may write into its buffer.
                let last_read = self.last_use.get(name) == Some(&i)
                    && !keep.contains(name.as_str())
                    && node.inputs.iter().filter(|n| *n == name).count() == 1;
                let value = if last_read {
                    values.remove(name)
                } else {
                    values.get(name).cloned()
                };
                let t = value
                    .or_else(|| self.weights.get(name).cloned())
                    .ok_or_else(|| EngineError::Backend {
                        node: node.name.clone(),
                        op: node.onnx_op.clone(),
                        detail: format!("input '{name}' was not computed"),
                    })?;
                ins.push(t);
                in_shapes.push(self.shape_of(name));
            }
            let outs = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                match self.host_ops.get(&i) {
                    Some(op) => self.run_host_op(op, node, ins),
                    None => Ok(ops::run(
                        &node.op,
                        ins,
                        &in_shapes,
                        &node.output_shapes,
                        &self.device,
                    )),
                }
            }))
            .map_err(|panic| EngineError::Backend {
                node: node.name.clone(),
                op: node.onnx_op.clone(),
                detail: panic_message(&panic),
            })??;
            observe(i, &outs)?;
            for (name, t) in node.outputs.iter().zip(outs) {
                values.insert(name.clone(), t);
            }
            if let Some(seconds) = timings.as_deref_mut() {
                self.device.sync().map_err(|e| EngineError::Backend {
                    node: node.name.clone(),
                    op: node.onnx_op.clone(),
                    detail: format!("waiting for the device: {e}"),
                })?;
                seconds[i] = started.elapsed().as_secs_f64();
            }
            // Free values whose last consumer just ran, unless they are kept.
            for name in &node.inputs {
                if self.last_use.get(name) == Some(&i) && !keep.contains(name.as_str()) {
                    values.remove(name);
                }
            }
            for name in &node.outputs {
                if !self.last_use.contains_key(name) && !keep.contains(name.as_str()) {
                    values.remove(name);
                }
            }
        }
        values.retain(|name, _| keep.contains(name.as_str()));
        Ok(Activations {
            graph: Arc::clone(graph),
            values,
        })
    }

    /// Logical shape of a runtime value or constant (empty when unknown).
    pub fn shape_of(&self, name: &str) -> &[usize] {
        self.graph
            .shapes
            .get(name)
            .or_else(|| self.graph.constants.get(name).map(|c| &c.shape))
            .map(Vec::as_slice)
            .unwrap_or(&[])
    }
}

/// A value for one runtime input of the graph.
#[derive(Debug, Clone)]
pub struct NamedInput {
    pub name: String,
    pub shape: Vec<usize>,
    pub data: Vec<f32>,
}

/// One value's `f32`s on the host with its logical shape: on the CPU (flex) the engine's own
/// buffer, read in place ([`Activations::host_map`]); else, or from files, a copy.
pub struct HostMap {
    pub shape: Vec<usize>,
    pub values: ops::HostValues,
}

impl HostMap {
    /// The values, row-major in `shape`.
    pub fn data(&self) -> &[f32] {
        self.values.as_slice()
    }
}

impl From<HostTensor> for HostMap {
    fn from(t: HostTensor) -> Self {
        Self {
            shape: t.shape,
            values: ops::HostValues::Copied(t.data),
        }
    }
}

/// A CPU copy of one value.
#[derive(Debug, Clone)]
pub struct HostTensor {
    pub shape: Vec<usize>,
    pub data: Vec<f32>,
}

impl HostTensor {
    /// Sample `k` of a batched value `[N, …]`, as `[1, …]` (what a batch-1 pass gives);
    /// `None` when `k` is out of range.
    pub fn sample(&self, k: usize) -> Option<HostTensor> {
        let (&n, rest) = self.shape.split_first()?;
        if k >= n {
            return None;
        }
        let per = rest.iter().product::<usize>();
        let mut shape = self.shape.clone();
        shape[0] = 1;
        Some(HostTensor {
            shape,
            data: self.data.get(k * per..(k + 1) * per)?.to_vec(),
        })
    }
}

impl Activations {
    /// The device tensor of a value (rank 6, logical shape left-padded with 1s).
    pub fn value(&self, name: &str) -> Option<&T6> {
        self.values.get(name)
    }

    /// The graph these activations belong to.
    pub fn graph(&self) -> &Arc<Graph> {
        &self.graph
    }

    /// A `[1, C, H, W]` value as a `[C, H, W]` device tensor (no copy: the same buffer, for
    /// the zero-copy path into the tile atlas).
    pub fn maps(&self, name: &str) -> Result<burn::tensor::Tensor<3>> {
        let t = self
            .values
            .get(name)
            .ok_or_else(|| EngineError::UnknownLayer(name.to_string()))?;
        match self.graph.shapes.get(name).map(Vec::as_slice) {
            Some(&[1, c, h, w]) => Ok(t.clone().reshape([c, h, w])),
            other => Err(EngineError::Readback {
                value: name.to_string(),
                detail: format!("not a [1, C, H, W] map: shape {other:?}"),
            }),
        }
    }

    /// Reads a value back to the CPU with its logical shape.
    pub fn read(&self, name: &str) -> Result<HostTensor> {
        let Some(t) = self.values.get(name) else {
            // A graph output may be a folded constant.
            let c = self
                .graph
                .constants
                .get(name)
                .ok_or_else(|| EngineError::UnknownLayer(name.to_string()))?;
            return Ok(HostTensor {
                shape: c.shape.clone(),
                data: c.to_f32_vec(),
            });
        };
        let shape = self.graph.shapes.get(name).cloned().unwrap_or_default();
        debug_assert_eq!(t.dims(), dims6(&shape));
        let readback = |detail: String| EngineError::Readback {
            value: name.to_string(),
            detail,
        };
        // One copy (device → host data); `try_into_vec` then reuses that allocation.
        let data = (t.clone().try_into_data())
            .map_err(|e| readback(format!("{e:?}")))?
            .try_into_vec::<f32>()
            .map_err(|e| readback(format!("{e:?}")))?;
        Ok(HostTensor { shape, data })
    }

    /// A value's `f32` values on the host, row-major in its logical shape: on the CPU (flex)
    /// the kept buffer itself, read in place; else one copy, as [`Activations::read`]. What
    /// a consumer that only reads uses (the dataset scan: a batch's every conv layer, where
    /// the copies and their fresh pages were most of the scan's time).
    pub fn host_values(&self, name: &str) -> Result<ops::HostValues> {
        match self.values.get(name) {
            Some(t) => ops::HostValues::of(t).map_err(|detail| EngineError::Readback {
                value: name.to_string(),
                detail,
            }),
            None => self.read(name).map(|h| ops::HostValues::Copied(h.data)),
        }
    }

    /// [`Activations::host_values`] with the value's logical shape.
    pub fn host_map(&self, name: &str) -> Result<HostMap> {
        let shape = match self.values.get(name) {
            Some(_) => self.graph.shapes.get(name).cloned().unwrap_or_default(),
            None => return self.read(name).map(HostMap::from),
        };
        Ok(HostMap {
            shape,
            values: self.host_values(name)?,
        })
    }

    /// Reads the first output of the named layer.
    pub fn read_layer(&self, layer: &str) -> Result<HostTensor> {
        let node = self
            .graph
            .nodes
            .iter()
            .find(|n| n.name == layer)
            .ok_or_else(|| EngineError::UnknownLayer(layer.to_string()))?;
        self.read(&node.outputs[0])
    }

    /// The graph's first output on the CPU.
    pub fn read_output(&self) -> Result<HostTensor> {
        let name = self
            .graph
            .outputs
            .first()
            .ok_or_else(|| EngineError::UnknownLayer("<graph output>".into()))?;
        self.read(name)
    }
}

pub(crate) fn panic_message(panic: &Box<dyn std::any::Any + Send>) -> String {
    panic
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_else(|| "the backend panicked".into())
}

/// Softmax probabilities for a logits vector (numerically stable).
pub fn softmax(logits: &[f32]) -> Vec<f32> {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let exps: Vec<f64> = logits.iter().map(|&x| f64::from(x - max).exp()).collect();
    let sum: f64 = exps.iter().sum();
    exps.iter().map(|&e| (e / sum) as f32).collect()
}

/// Whether the graph's first output holds class scores: it comes from a Softmax, or it has one
/// axis longer than 1 (`[K]`, `[1, K]`, `[1, K, 1, 1]`). A backbone's feature maps
/// (`[1, 16, 8, 8]`) are not class scores, however many values they have.
pub fn output_is_class_vector(graph: &Graph) -> bool {
    let Some(out) = graph.outputs.first() else {
        return false;
    };
    if ends_in_softmax(graph) {
        return true;
    }
    graph
        .shapes
        .get(out)
        .is_some_and(|s| s.iter().filter(|&&d| d > 1).count() == 1)
}

fn ends_in_softmax(graph: &Graph) -> bool {
    graph
        .nodes
        .iter()
        .rev()
        .find(|n| graph.outputs.first().is_some_and(|o| n.outputs.contains(o)))
        .is_some_and(|n| matches!(n.op, crate::model::Op::Softmax { .. }))
}

/// Class probabilities of a forward pass: the output through softmax unless the graph
/// already ends in a Softmax node; empty when the output is not a class vector
/// ([`output_is_class_vector`]).
pub fn class_probabilities(graph: &Graph, acts: &Activations) -> Result<Vec<f32>> {
    if !output_is_class_vector(graph) {
        return Ok(Vec::new());
    }
    let out = acts.read_output()?;
    Ok(if ends_in_softmax(graph) {
        out.data
    } else {
        softmax(&out.data)
    })
}

/// One line on the graph's first output for models whose output is not class scores: its
/// shape and value range, e.g. `output [1, 16, 8, 8]: min -1.2, mean 0.031, max 4.5`.
pub fn output_summary(acts: &Activations) -> Result<String> {
    let out = acts.read_output()?;
    let (mut min, mut max, mut sum) = (f32::INFINITY, f32::NEG_INFINITY, 0f64);
    for &v in &out.data {
        min = min.min(v);
        max = max.max(v);
        sum += f64::from(v);
    }
    let mean = sum / out.data.len().max(1) as f64;
    Ok(format!(
        "output {:?}: min {min:.4}, mean {mean:.4}, max {max:.4}",
        out.shape
    ))
}
