//! Running a network with burn: weights uploaded once to the chosen device, then a forward
//! pass that walks the graph in topological order and keeps every requested node output
//! (freeing the others as soon as their last consumer has run), or hands each node's output
//! to an observer as it is made and keeps none ([`Engine::forward_batch_observed`]). On the
//! CPU (flex) the convolutions, fully connected layers, max-pooling, LRN, ReLU and Clip run
//! as host kernels (`HostOp`) on the tensors' buffers; everything else is burn's.
//!
//! The folder: this file is the forward pass (with [`ops`], one burn op per graph op,
//! [`device`], which device runs it, and [`Activations`], what a pass keeps and how it
//! reaches the host); [`kernels`] holds the CPU host kernels (pure functions
//! on slices); [`reverse`] carries gradients back from a layer to the input; [`methods`]
//! builds the per-filter views on both passes (gradient images, Grad-CAM, occlusion);
//! [`profile`] times steps for `bench --ops`.

mod activations;
mod awake;
pub mod device;
mod host_op;
pub mod kernels;
pub mod methods;
mod observe;
pub mod ops;
pub mod profile;
pub mod reverse;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use burn::tensor::Device;
use rayon::prelude::*;

pub use activations::{
    Activations, HostMap, HostTensor, class_probabilities, output_is_class_vector, output_summary,
    softmax,
};
pub use device::{ComputeDevice, DeviceChoice};
use host_op::HostOp;
pub use observe::NodeOutputs;
use observe::{ClampAfter, plan_clamps};
use ops::{T6, upload};

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
    /// Nothing, and no node after `index` runs: an observed pass
    /// ([`Engine::forward_batch_observed`]) that needs no node past its last observed one.
    NothingAfter(usize),
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
    /// With host kernels: the clamp node that alone reads a node's output, by the producing
    /// node's index, for an observer to apply ([`NodeOutputs::clamp_while`]).
    clamp_after: HashMap<usize, ClampAfter>,
}

impl Engine {
    /// Uploads the weights every runtime node reads.
    pub fn new(graph: Arc<Graph>, device: Device) -> Self {
        let mut read = HashMap::new();
        let mut last_use = HashMap::new();
        for (i, node) in graph.nodes.iter().enumerate() {
            for name in &node.inputs {
                last_use.insert(name.clone(), i);
                if let Some(c) = graph.constants.get(name) {
                    read.insert(name.as_str(), c);
                }
            }
        }
        // Copied side by side: on flex each upload is a fresh copy whose pages fault in one by
        // one (EfficientNet-Lite0's 18 MB: a fifth of a one-image `scan` process on one core).
        let weights = (read.into_par_iter())
            .map(|(name, c)| (name.to_string(), upload(c.to_f32_vec(), &c.shape, &device)))
            .collect();
        let host_kernels = device == Device::flex();
        let host_ops = HostOp::plan_all(&graph, host_kernels);
        let clamp_after = plan_clamps(&graph, &host_ops);
        Self {
            graph,
            device,
            weights,
            host_kernels,
            host_ops,
            last_use,
            clamp_after,
        }
    }

    /// The same network over batches of `batch` images ([`Graph::with_batch`]), sharing
    /// this engine's uploaded weights (device tensors are reference-counted, not copied).
    /// `Err` when the graph mixes samples somewhere; then run one image per pass.
    pub fn with_batch(&self, batch: usize) -> Result<Engine> {
        let graph = Arc::new(self.graph.with_batch(batch)?);
        let host_ops = HostOp::plan_all(&graph, self.host_kernels);
        let clamp_after = plan_clamps(&graph, &host_ops);
        Ok(Self {
            graph,
            device: self.device.clone(),
            weights: self.weights.clone(),
            host_kernels: self.host_kernels,
            host_ops,
            last_use: self.last_use.clone(),
            clamp_after,
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

    /// [`Engine::forward_batch`] through node `through` (nodes after it do not run: a
    /// classifier head after the last layer of interest), handing each node's outputs to
    /// `observe` (with the node's index) as soon as the node has run, and keeping nothing:
    /// a streaming consumer (the dataset scan, `stats`) summarises a layer while it is fresh
    /// in cache, and the pass frees it after its last consumer, or — a Clip or ReLU after it
    /// — clamps it in place, instead of holding every layer to the end; `observe` may apply
    /// that clamp itself while it reads ([`NodeOutputs::clamp_while`]). An `Err` from
    /// `observe` stops the pass.
    pub fn forward_batch_observed(
        &self,
        inputs: &[&InputTensor],
        through: usize,
        observe: &mut (dyn FnMut(usize, &mut NodeOutputs<'_>) -> Result<()> + Send),
    ) -> Result<()> {
        let input = self.batch_input(inputs)?;
        let capture = Capture::NothingAfter(through);
        self.run_nodes(std::slice::from_ref(&input), &capture, None, observe)?;
        Ok(())
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

    /// Walks the graph (see [`Engine::walk_nodes`]). With the host kernels, the walk itself
    /// runs on one of rayon's workers: each kernel's parallel loop then starts from inside
    /// the pool (the other worker steals its half, often while still spinning from the last
    /// node) instead of being injected from outside, which put the calling thread to sleep
    /// and woke it again at every one of the ~90 nodes of EfficientNet-Lite0 (~3 context
    /// switches per node). Forward with every layer kept, 200 passes of each interleaved,
    /// 2-core AMD EPYC (Zen 4, AVX-512): median 10.1 ms on a worker vs 11.2 ms from the
    /// caller's thread at batch 1; 162 vs 167 ms at batch 16. The pool's other workers are
    /// kept polling for the walk's work until it ends ([`awake`]), not left to fall asleep
    /// between nodes.
    fn run_nodes(
        &self,
        inputs: &[NamedInput],
        capture: &Capture,
        timings: Option<&mut Vec<f64>>,
        observe: &mut (dyn FnMut(usize, &mut NodeOutputs<'_>) -> Result<()> + Send),
    ) -> Result<Activations> {
        if self.host_kernels {
            awake::on_pool_awake(|| self.walk_nodes(inputs, capture, timings, observe))
        } else {
            self.walk_nodes(inputs, capture, timings, observe)
        }
    }

    fn walk_nodes(
        &self,
        inputs: &[NamedInput],
        capture: &Capture,
        mut timings: Option<&mut Vec<f64>>,
        observe: &mut (dyn FnMut(usize, &mut NodeOutputs<'_>) -> Result<()> + Send),
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
            Capture::NothingAfter(_) => HashSet::new(),
        };
        let last_node = match capture {
            Capture::AllUpTo(last) | Capture::NothingAfter(last) => *last,
            _ => usize::MAX,
        };
        // Observed passes keep nothing, so an observer may apply the clamp after a node
        // (`NodeOutputs::clamp_while`); the clamp nodes it applied, to skip.
        let offer_clamps = matches!(capture, Capture::NothingAfter(_));
        let mut applied_clamps: HashSet<usize> = HashSet::new();
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
            let mut outs = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                match self.host_ops.get(&i) {
                    // Its only input was clamped by the observer of the node before.
                    Some(_) if applied_clamps.remove(&i) => Ok(ins),
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
            let clamp = (self.clamp_after.get(&i).copied()).filter(|_| offer_clamps);
            let mut observed = NodeOutputs::new(&mut outs, node, clamp);
            observe(i, &mut observed)?;
            if let Some(j) = observed.applied_clamp() {
                applied_clamps.insert(j);
            }
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

/// A backend panic's message, for the error that names the node.
pub(crate) fn panic_message(panic: &Box<dyn std::any::Any + Send>) -> String {
    crate::panic_payload::panic_message(panic, "the backend panicked")
}
