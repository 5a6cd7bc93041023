//! The architecture summary: one JSON record per layer (name, type, inputs, output shape,
//! parameters, ONNX tensor name, file stem). Written as `architecture.json` by exports and
//! printed by `convlens info --json`.

use std::collections::HashMap;

use serde_json::{Value, json};

use super::stems::unique_stems;
use crate::model::graph::{Graph, Node, Op, Window2d};

/// The whole `architecture.json` document.
pub fn architecture_json(graph: &Graph) -> Value {
    let stems = unique_stems(graph.nodes.iter().map(|n| n.name.as_str()));
    let producer: HashMap<&str, &str> = graph
        .nodes
        .iter()
        .flat_map(|n| n.outputs.iter().map(move |o| (o.as_str(), n.name.as_str())))
        .collect();
    let layers: Vec<Value> = graph
        .nodes
        .iter()
        .zip(&stems)
        .map(|(node, stem)| {
            let inputs: Vec<&str> = node
                .inputs
                .iter()
                .filter(|i| !graph.constants.contains_key(*i))
                .map(|i| producer.get(i.as_str()).copied().unwrap_or(i.as_str()))
                .collect();
            json!({
                "name": node.name,
                "type": node.op.type_name(),
                "onnx_op": node.onnx_op,
                "inputs": inputs,
                "output_shape": node.output_shape(),
                "params": params(graph, node),
                "onnx_output": node.outputs.first(),
                "file_stem": stem,
            })
        })
        .collect();
    json!({
        "name": graph.name,
        "fingerprint": graph.fingerprint,
        "input": graph.image_input().map(|i| json!({"name": i.name, "shape": i.shape})),
        "opset": graph.opset,
        "parameters": graph.parameter_count(),
        "layers": layers,
    })
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
