//! The data directory's two JSON documents as typed structs: [`Architecture`]
//! (`architecture.json`: one [`LayerRecord`] per layer with its name, type, inputs, output
//! shape, parameters, ONNX tensor name and file stem) and [`Scores`] (`scores.json`). Export
//! writes them, the reader ([`super::read`]) parses them back into the same structs, and
//! `convlens info --json` prints an [`Architecture`].
//!
//! Fields are declared in alphabetical order, so the files are byte-identical to those the
//! format's first version wrote with `serde_json::json!` (whose maps are sorted).

use std::collections::HashMap;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::stems::unique_stems;
use crate::model::graph::{Graph, Node, Op, Window2d};

/// `architecture.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Architecture {
    /// The ONNX file's fingerprint (empty for graphs built in code). A reader that finds none
    /// uses a hash of the file itself.
    #[serde(default)]
    pub fingerprint: String,
    /// The image input.
    pub input: Option<InputRecord>,
    pub layers: Vec<LayerRecord>,
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub opset: i64,
    /// Number of weights.
    #[serde(default)]
    pub parameters: u64,
}

/// The model's image input.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InputRecord {
    #[serde(default)]
    pub name: String,
    /// `[N, C, H, W]`.
    pub shape: Vec<usize>,
}

/// One layer (a graph node).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LayerRecord {
    /// Stem of its files: `<method>/<file_stem>_<n>.png` (see [`super::paths`]).
    pub file_stem: String,
    /// Names of the layers it reads, or of graph inputs (weights left out).
    #[serde(default)]
    pub inputs: Vec<String>,
    pub name: String,
    #[serde(default)]
    pub onnx_op: String,
    /// The ONNX tensor name of its (first) output.
    #[serde(default)]
    pub onnx_output: Option<String>,
    pub output_shape: Vec<usize>,
    /// Attributes and weight shapes; keys depend on the op (see [`params`]).
    #[serde(default)]
    pub params: Value,
    /// The layer's op (`Conv`, `MaxPool`, …).
    #[serde(rename = "type", default = "unknown_type")]
    pub type_name: String,
}

fn unknown_type() -> String {
    "?".to_string()
}

impl LayerRecord {
    /// `(C, H, W)` of a `[1, C, H, W]` output.
    pub fn map_dims(&self) -> Option<(usize, usize, usize)> {
        match self.output_shape.as_slice() {
            [1, c, h, w] => Some((*c, *h, *w)),
            _ => None,
        }
    }
}

/// `scores.json`: the class probabilities of the exported input and their labels (both
/// empty for a model whose output is not a class vector).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Scores {
    #[serde(rename = "S")]
    pub probabilities: Vec<f32>,
    #[serde(default)]
    pub labels: Vec<String>,
}

impl Architecture {
    /// The document for `graph`.
    pub fn of(graph: &Graph) -> Self {
        let stems = layer_stems(graph);
        let producer: HashMap<&str, &str> = graph
            .nodes
            .iter()
            .flat_map(|n| n.outputs.iter().map(move |o| (o.as_str(), n.name.as_str())))
            .collect();
        let layers = graph
            .nodes
            .iter()
            .zip(stems)
            .map(|(node, file_stem)| LayerRecord {
                file_stem,
                inputs: node
                    .inputs
                    .iter()
                    .filter(|i| !graph.constants.contains_key(*i))
                    .map(|i| producer.get(i.as_str()).copied().unwrap_or(i.as_str()))
                    .map(str::to_string)
                    .collect(),
                name: node.name.clone(),
                onnx_op: node.onnx_op.clone(),
                onnx_output: node.outputs.first().cloned(),
                output_shape: node.output_shape().to_vec(),
                params: params(graph, node),
                type_name: node.op.type_name().to_string(),
            })
            .collect();
        Self {
            fingerprint: graph.fingerprint.clone(),
            input: graph.image_input().map(|i| InputRecord {
                name: i.name.clone(),
                shape: i.shape.clone(),
            }),
            layers,
            name: graph.name.clone(),
            opset: graph.opset,
            parameters: graph.parameter_count() as u64,
        }
    }

    /// Pretty-printed JSON, as written to `architecture.json`.
    pub fn to_json_pretty(&self) -> String {
        to_json_pretty(self)
    }
}

impl Scores {
    /// Pretty-printed JSON, as written to `scores.json`.
    pub fn to_json_pretty(&self) -> String {
        to_json_pretty(self)
    }
}

/// Serialising these structs cannot fail (string keys, no maps with other keys); should it
/// ever, the error is written in place of the document rather than a panic.
fn to_json_pretty(value: &impl Serialize) -> String {
    serde_json::to_string_pretty(value)
        .unwrap_or_else(|e| format!("{{\"error\": \"cannot serialise: {e}\"}}"))
}

/// The file stem of every layer, in graph order (same as in `architecture.json`).
pub fn layer_stems(graph: &Graph) -> Vec<String> {
    unique_stems(graph.nodes.iter().map(|n| n.name.as_str()))
}

fn window(w: &Window2d) -> Value {
    json!({
        "kernel_size": w.kernel,
        "stride": w.strides,
        "padding": [w.pads[0].0, w.pads[1].0, w.pads[0].1, w.pads[1].1],
        "dilation": w.dilations,
    })
}

fn merge(mut a: Value, b: Value) -> Value {
    if let (Some(a), Value::Object(b)) = (a.as_object_mut(), b) {
        a.extend(b);
    }
    a
}

/// Layer parameters: attributes plus the shapes and count of the weights it reads.
pub fn params(graph: &Graph, node: &Node) -> Value {
    let weight_shapes: Vec<&Vec<usize>> = node
        .inputs
        .iter()
        .filter_map(|i| graph.constants.get(i))
        .map(|c| &c.shape)
        .collect();
    let count: usize = node
        .inputs
        .iter()
        .filter_map(|i| graph.constants.get(i))
        .map(|c| c.numel())
        .sum();
    let attrs = match &node.op {
        Op::Conv { window: w, group } => merge(
            window(w),
            json!({"groups": group, "out_channels": node.output_shape().get(1), "in_channels": graph.shapes.get(&node.inputs[0]).and_then(|s| s.get(1))}),
        ),
        Op::ConvTranspose {
            window: w,
            group,
            output_padding,
        } => merge(
            window(w),
            json!({"groups": group, "output_padding": output_padding}),
        ),
        Op::MaxPool {
            window: w,
            ceil_mode,
        } => merge(window(w), json!({"ceil_mode": ceil_mode})),
        Op::AveragePool {
            window: w,
            ceil_mode,
            count_include_pad,
        } => merge(
            window(w),
            json!({"ceil_mode": ceil_mode, "count_include_pad": count_include_pad}),
        ),
        Op::Clip { min, max } => json!({"min": min, "max": max}),
        Op::LeakyRelu { alpha } | Op::Elu { alpha } => json!({"alpha": alpha}),
        Op::HardSigmoid { alpha, beta } => json!({"alpha": alpha, "beta": beta}),
        Op::Lrn {
            size,
            alpha,
            beta,
            bias,
        } => json!({"size": size, "alpha": alpha, "beta": beta, "bias": bias}),
        Op::BatchNorm { epsilon } | Op::InstanceNorm { epsilon } => json!({"epsilon": epsilon}),
        Op::Gemm {
            alpha,
            beta,
            trans_a,
            trans_b,
        } => json!({"alpha": alpha, "beta": beta, "trans_a": trans_a, "trans_b": trans_b}),
        Op::Concat { axis } => json!({"axis": axis}),
        Op::Split { axis, sizes } => json!({"axis": axis, "sizes": sizes}),
        Op::Transpose { perm } => json!({"perm": perm}),
        Op::Pad { pads, value } => json!({"pads": pads, "value": value}),
        Op::Softmax { axis, .. } => json!({"axis": axis}),
        Op::Gather { axis, indices, .. } => json!({"axis": axis, "indices": indices.len()}),
        Op::Slice { ranges } => {
            json!({"ranges": ranges.iter().map(|r| [r.start as i64, r.step, r.count as i64]).collect::<Vec<_>>()})
        }
        _ => json!({}),
    };
    if weight_shapes.is_empty() {
        attrs
    } else {
        merge(
            attrs,
            json!({"weight_shapes": weight_shapes, "parameters": count}),
        )
    }
}
