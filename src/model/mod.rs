//! What a network is: the graph IR, ONNX import (with constant folding and static shape
//! inference), the embedded default model and the input pipeline that turns images or
//! `.npy` files into the network's input tensor.

pub mod batch;
pub mod consts;
pub mod default;
mod fold;
pub mod graph;
mod node_ctx;
pub mod onnx;
mod op_import;
mod op_window;
pub mod preprocess;
pub mod resize;
pub mod shape;

pub use batch::BatchError;
pub use consts::{ConstData, ConstTensor};
pub use graph::{Graph, GraphInput, Node, Op};
pub use onnx::{ImportOptions, load_onnx_bytes, load_onnx_file};

/// A loaded model with the preprocessing and class names that go with it.
pub struct LoadedModel {
    pub graph: std::sync::Arc<Graph>,
    pub spec: preprocess::InputSpec,
    pub labels: Vec<String>,
    pub is_default: bool,
}

impl LoadedModel {
    /// An ONNX file with ImageNet preprocessing at the model's own input size (`input_hw`
    /// for models whose size is dynamic) and ImageNet labels when it has 1000 classes.
    pub fn from_file(path: &std::path::Path, input_hw: Option<[usize; 2]>) -> Result<Self> {
        let options = ImportOptions {
            input_hw,
            ..Default::default()
        };
        Self::from_file_with(path, &options)
    }

    /// [`LoadedModel::from_file`] with any [`ImportOptions`].
    pub fn from_file_with(path: &std::path::Path, options: &ImportOptions) -> Result<Self> {
        let graph = load_onnx_file(path, options)?;
        let hw = graph
            .image_input()
            .and_then(|i| match i.shape.as_slice() {
                [_, 3, h, w] => Some([*h, *w]),
                _ => None,
            })
            .ok_or_else(|| {
                ModelError::invalid(
                    path.display().to_string(),
                    "the model's first input is not an RGB image [N,3,H,W]",
                )
            })?;
        let classes = graph
            .outputs
            .first()
            .and_then(|o| graph.shapes.get(o))
            .map(|s| s.iter().product())
            .unwrap_or(0);
        Ok(Self {
            graph: std::sync::Arc::new(graph),
            spec: preprocess::InputSpec::imagenet(hw),
            labels: default::labels_for(classes),
            is_default: false,
        })
    }
}

/// Everything that can go wrong while reading a model or an input.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error("cannot read {path}: {error}")]
    Io { path: String, error: std::io::Error },
    #[error("{model} is not a valid ONNX model: {detail}")]
    NotOnnx { model: String, detail: String },
    #[error(
        "{model}: node '{node}' uses op '{op}', which ConvLens does not support (supported: {supported})"
    )]
    UnsupportedOp {
        model: String,
        node: String,
        op: String,
        supported: &'static str,
    },
    #[error("{model}: node '{node}' ({op}): {detail}")]
    Node {
        model: String,
        node: String,
        op: String,
        detail: String,
    },
    #[error("{what}: unsupported: {detail}")]
    Unsupported { what: String, detail: String },
    #[error("{what} is invalid: {detail}")]
    Invalid { what: String, detail: String },
    #[error("{what} claims shape {shape:?}, which is too large to allocate")]
    TooLarge { what: String, shape: Vec<i64> },
    #[error("input {path}: {detail}")]
    Input { path: String, detail: String },
}

impl ModelError {
    pub fn invalid(what: impl Into<String>, detail: impl Into<String>) -> Self {
        Self::Invalid {
            what: what.into(),
            detail: detail.into(),
        }
    }

    pub fn input(path: impl std::fmt::Display, detail: impl Into<String>) -> Self {
        Self::Input {
            path: path.to_string(),
            detail: detail.into(),
        }
    }
}

pub type Result<T, E = ModelError> = std::result::Result<T, E>;
