//! The graph IR every other module reads: nodes in topological order, each with a typed op,
//! its input/output value names and the static shapes of its outputs; weights and folded
//! constants live beside it as CPU tensors. A "layer" is one runtime node, as in the paper.

use std::collections::HashMap;

use super::consts::ConstTensor;

/// Padding before and after one spatial axis, in elements.
pub type PadPair = (usize, usize);

/// Window geometry shared by convolutions and pooling (always 2-D: `[height, width]`).
#[derive(Debug, Clone, PartialEq)]
pub struct Window2d {
    pub kernel: [usize; 2],
    pub strides: [usize; 2],
    pub pads: [PadPair; 2],
    pub dilations: [usize; 2],
}

/// What a runtime node computes. Attributes are resolved at import time (defaults applied,
/// negative axes normalised against the logical rank, constant inputs folded in), so the
/// engine never looks at ONNX again.
#[derive(Debug, Clone, PartialEq)]
pub enum Op {
    /// Inputs: x `[N,C,H,W]`, weight `[M,C/group,kH,kW]`, optional bias `[M]`.
    Conv {
        window: Window2d,
        group: usize,
    },
    /// Inputs: x, weight `[C, M/group, kH, kW]`, optional bias. `pads` may be asymmetric.
    ConvTranspose {
        window: Window2d,
        group: usize,
        output_padding: [usize; 2],
    },
    Relu,
    /// ReLU6 and friends: clamp to `[min, max]`.
    Clip {
        min: f32,
        max: f32,
    },
    LeakyRelu {
        alpha: f32,
    },
    Sigmoid,
    HardSigmoid {
        alpha: f32,
        beta: f32,
    },
    HardSwish,
    Tanh,
    Elu {
        alpha: f32,
    },
    MaxPool {
        window: Window2d,
        ceil_mode: bool,
    },
    AveragePool {
        window: Window2d,
        ceil_mode: bool,
        count_include_pad: bool,
    },
    GlobalAveragePool,
    GlobalMaxPool,
    /// Local response normalisation across channels.
    Lrn {
        size: usize,
        alpha: f32,
        beta: f32,
        bias: f32,
    },
    /// Inference-mode batch norm. Inputs: x, scale, bias, mean, var (all `[C]`).
    BatchNorm {
        epsilon: f32,
    },
    /// Inputs: x, scale `[C]`, bias `[C]`.
    InstanceNorm {
        epsilon: f32,
    },
    /// `alpha * A' * B' + beta * C`.
    Gemm {
        alpha: f32,
        beta: f32,
        trans_a: bool,
        trans_b: bool,
    },
    MatMul,
    Add,
    Sub,
    Mul,
    Div,
    /// Variadic broadcasting sum.
    Sum,
    Concat {
        axis: usize,
    },
    /// One output per entry of `sizes`, along `axis`.
    Split {
        axis: usize,
        sizes: Vec<usize>,
    },
    /// Flatten, Reshape, Squeeze and Unsqueeze: the output shape says it all.
    Reshape,
    Transpose {
        perm: Vec<usize>,
    },
    /// Constant-mode padding of every axis: `pads[axis] = (before, after)`.
    Pad {
        pads: Vec<PadPair>,
        value: f32,
    },
    /// Dropout (inference), Identity and float-to-float Cast.
    Identity,
    /// `legacy_2d`: opsets < 13 flatten to 2-D at `axis` and normalise over the tail.
    Softmax {
        axis: usize,
        legacy_2d: bool,
    },
    /// Gather with constant indices along `axis`; `indices_shape` replaces that axis.
    Gather {
        axis: usize,
        indices: Vec<usize>,
        indices_shape: Vec<usize>,
    },
    /// Resolved per-axis `(start, step, count)` (negative steps allowed).
    Slice {
        ranges: Vec<SliceRange>,
    },
}

/// One axis of a resolved Slice: elements `start, start+step, …` (`count` of them).
#[derive(Debug, Clone, PartialEq)]
pub struct SliceRange {
    pub start: usize,
    pub step: i64,
    pub count: usize,
}

impl Op {
    /// Short human name of the op, as shown in the architecture view.
    pub fn type_name(&self) -> &'static str {
        match self {
            Op::Conv { .. } => "Conv",
            Op::ConvTranspose { .. } => "ConvTranspose",
            Op::Relu => "ReLU",
            Op::Clip { min, max } if *min == 0.0 && *max == 6.0 => "ReLU6",
            Op::Clip { .. } => "Clip",
            Op::LeakyRelu { .. } => "LeakyReLU",
            Op::Sigmoid => "Sigmoid",
            Op::HardSigmoid { .. } => "HardSigmoid",
            Op::HardSwish => "HardSwish",
            Op::Tanh => "Tanh",
            Op::Elu { .. } => "ELU",
            Op::MaxPool { .. } => "MaxPool",
            Op::AveragePool { .. } => "AvgPool",
            Op::GlobalAveragePool => "GlobalAvgPool",
            Op::GlobalMaxPool => "GlobalMaxPool",
            Op::Lrn { .. } => "LRN",
            Op::BatchNorm { .. } => "BatchNorm",
            Op::InstanceNorm { .. } => "InstanceNorm",
            Op::Gemm { .. } => "Linear",
            Op::MatMul => "MatMul",
            Op::Add => "Add",
            Op::Sub => "Sub",
            Op::Mul => "Mul",
            Op::Div => "Div",
            Op::Sum => "Sum",
            Op::Concat { .. } => "Concat",
            Op::Split { .. } => "Split",
            Op::Reshape => "Reshape",
            Op::Transpose { .. } => "Transpose",
            Op::Pad { .. } => "Pad",
            Op::Identity => "Identity",
            Op::Softmax { .. } => "Softmax",
            Op::Gather { .. } => "Gather",
            Op::Slice { .. } => "Slice",
        }
    }

    /// Conv-like layers: the ones whose filters the paper visualises.
    pub fn is_conv(&self) -> bool {
        matches!(self, Op::Conv { .. } | Op::ConvTranspose { .. })
    }

    /// The ReLU family, where the attribution rules (backprop/deconvnet/guided) differ.
    pub fn is_relu_family(&self) -> bool {
        matches!(self, Op::Relu | Op::Clip { .. } | Op::LeakyRelu { .. })
    }
}

/// One runtime node: a layer.
#[derive(Debug, Clone)]
pub struct Node {
    /// Unique human name: the ONNX node name, else `<OpType>_<index>`.
    pub name: String,
    /// The ONNX `op_type` this node came from (Flatten, Squeeze, … keep their name here).
    pub onnx_op: String,
    pub op: Op,
    /// Value names read, in ONNX order; constants are looked up in [`Graph::constants`].
    pub inputs: Vec<String>,
    /// Value names written (ONNX tensor names).
    pub outputs: Vec<String>,
    /// Static shape of each output.
    pub output_shapes: Vec<Vec<usize>>,
}

impl Node {
    /// The first output's shape, which is what a layer "shows".
    pub fn output_shape(&self) -> &[usize] {
        self.output_shapes.first().map(Vec::as_slice).unwrap_or(&[])
    }

    /// `Some((C, H, W))` when the first output is a 4-D `[1, C, H, W]` feature map.
    pub fn feature_map_dims(&self) -> Option<(usize, usize, usize)> {
        match self.output_shape() {
            [1, c, h, w] => Some((*c, *h, *w)),
            _ => None,
        }
    }
}

/// A runtime input of the graph (the image).
#[derive(Debug, Clone)]
pub struct GraphInput {
    pub name: String,
    pub shape: Vec<usize>,
}

/// A whole network, ready to run.
#[derive(Debug, Clone)]
pub struct Graph {
    pub name: String,
    pub inputs: Vec<GraphInput>,
    /// Output value names.
    pub outputs: Vec<String>,
    /// Runtime nodes in topological order.
    pub nodes: Vec<Node>,
    /// Weights and folded constants by value name.
    pub constants: HashMap<String, ConstTensor>,
    /// Static shape of every runtime value (inputs and node outputs).
    pub shapes: HashMap<String, Vec<usize>>,
    /// Opset of the default ONNX domain.
    pub opset: i64,
    /// Non-fatal findings made while importing (e.g. NaN weights).
    pub warnings: Vec<String>,
    /// Fingerprint of the ONNX file ([`crate::model::onnx::fingerprint`]); empty for graphs
    /// built in code.
    pub fingerprint: String,
}

impl Graph {
    /// The first runtime input (the image), which every CNN here has.
    pub fn image_input(&self) -> Option<&GraphInput> {
        self.inputs.first()
    }

    pub fn node_index(&self, name: &str) -> Option<usize> {
        self.nodes.iter().position(|n| n.name == name)
    }

    /// Layers that produce per-channel feature maps `[1, C, H, W]`.
    pub fn feature_map_layers(&self) -> impl Iterator<Item = (usize, &Node)> {
        self.nodes
            .iter()
            .enumerate()
            .filter(|(_, n)| n.feature_map_dims().is_some())
    }

    /// Total parameter count (elements of all float constants read by runtime nodes).
    pub fn parameter_count(&self) -> usize {
        let mut seen = std::collections::HashSet::new();
        self.nodes
            .iter()
            .flat_map(|n| n.inputs.iter())
            .filter(|name| seen.insert(name.as_str()))
            .filter_map(|name| self.constants.get(name))
            .map(ConstTensor::numel)
            .sum()
    }

    /// Bytes needed to keep every node's output at once (f32).
    pub fn activation_bytes(&self) -> u64 {
        self.nodes
            .iter()
            .flat_map(|n| n.output_shapes.iter())
            .map(|s| s.iter().product::<usize>() as u64 * 4)
            .sum()
    }
}
