//! What every reverse step shares: the gradient rule ([`GradientRule`]), the reverse pass's errors,
//! the rank-6 gradient layout ([`grad_dims`], `unbroadcast`) and `Step`, one node's view of
//! its forward values. The graph walk ([`super::backward`]) and the per-op rules
//! (`vjp`, `vjp_spatial`) both build on it, and on nothing of each other's.

use burn::tensor::Tensor;

use crate::engine::ops::{RANK, T6, dims6};
use crate::engine::{Activations, Engine};
use crate::model::Node;

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
pub enum GradientRule {
    /// The true gradient (Simonyan et al.).
    Backprop,
    /// Zeiler & Fergus's deconvnet: only positive signals pass a ReLU, whatever its input was.
    Deconvnet,
    /// Guided backpropagation (Springenberg et al.): both gates.
    Guided,
}

impl GradientRule {
    pub const ALL: [GradientRule; 3] = [
        GradientRule::Backprop,
        GradientRule::Deconvnet,
        GradientRule::Guided,
    ];

    /// Short name used in file paths and on the command line (`backprop`, `deconvnet`, `gbp`).
    pub fn name(self) -> &'static str {
        match self {
            GradientRule::Backprop => "backprop",
            GradientRule::Deconvnet => "deconvnet",
            GradientRule::Guided => "gbp",
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
    #[error(
        "one channel per input: got channels {channels:?} for a batch of {batch} through \
         layer '{layer}' ({layer_channels} channels)"
    )]
    PerInputChannels {
        layer: String,
        channels: Vec<usize>,
        batch: usize,
        layer_channels: usize,
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
