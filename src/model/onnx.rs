//! ONNX → [`Graph`]: decodes the protobuf, separates weights from runtime inputs, orders
//! nodes topologically, folds constant subgraphs and converts every remaining node into a
//! typed [`Op`](super::Op) with static output shapes. Any op outside the supported set is an
//! error naming the op, the node and the model file.

use std::collections::{HashMap, HashSet};
use std::path::Path;

use onnx_ir::{Message, ModelProto, NodeProto};
use rayon::prelude::*;

use super::consts::{ConstTensor, checked_numel};
use super::fold;
use super::graph::{Graph, GraphInput, Node};
use super::node_ctx::{Attrs, NodeCtx};
use super::op_import::{self, SUPPORTED_OPS};
use super::{ModelError, Result};

/// Refuse models whose activations alone would need more than this many elements.
pub const MAX_ACTIVATION_ELEMENTS: usize = 1 << 34;

/// Choices the file itself may leave open.
#[derive(Debug, Clone, Default)]
pub struct ImportOptions {
    /// `[H, W]` for an input whose spatial dims are symbolic (dynamic).
    pub input_hw: Option<[usize; 2]>,
    /// Also use `input_hw` where the file fixes the spatial size (a fully convolutional
    /// model run at another size, e.g. feature visualisation at 128 px); shapes are then
    /// inferred afresh and a model that cannot take the size fails to import.
    pub resize_fixed: bool,
    /// Stop after the node of this name (as the graph names it): the graph ends there, its
    /// outputs that node's. What comes after it (say a `Reshape` to a fixed flat size) is
    /// neither imported nor checked — for methods that need a layer and what feeds it, at
    /// another input size.
    pub last_node: Option<String>,
}

/// Reads and imports an ONNX file.
pub fn load_onnx_file(path: &Path, options: &ImportOptions) -> Result<Graph> {
    let bytes = std::fs::read(path).map_err(|source| ModelError::Io {
        path: path.display().to_string(),
        error: source,
    })?;
    let stem = path.file_stem().and_then(|s| s.to_str()).unwrap_or("model");
    // The file's buffer becomes the parse's: weights are read where they lie (see `import`).
    let bytes = bytes::Bytes::from(bytes);
    load_shared(&bytes, &path.display().to_string(), stem, options)
}

/// Imports an ONNX model held in memory. `source` names it in messages; `fallback_name`
/// is used when the graph has no name.
pub fn load_onnx_bytes(
    bytes: &[u8],
    source: &str,
    fallback_name: &str,
    options: &ImportOptions,
) -> Result<Graph> {
    let bytes = bytes::Bytes::copy_from_slice(bytes);
    load_shared(&bytes, source, fallback_name, options)
}

/// [`load_onnx_bytes`] of a buffer the parsed model may share.
fn load_shared(
    bytes: &bytes::Bytes,
    source: &str,
    fallback_name: &str,
    options: &ImportOptions,
) -> Result<Graph> {
    // The fingerprint reads every byte one after another (FNV-1a cannot be split): 30–45 ms
    // for an 18 MB model, hashed on a second core while the first one imports (the embedded
    // model's is computed at build time instead: `default::default_graph_with`).
    let (fingerprint, graph) = rayon::join(
        || fingerprint(bytes),
        || import(bytes, source, fallback_name, options),
    );
    Ok(Graph {
        fingerprint,
        ..graph?
    })
}

/// [`load_onnx_bytes`] without the fingerprint (left empty).
pub(super) fn import(
    bytes: &bytes::Bytes,
    source: &str,
    fallback_name: &str,
    options: &ImportOptions,
) -> Result<Graph> {
    let not_onnx = |detail: String| ModelError::NotOnnx {
        model: source.to_string(),
        detail,
    };
    if bytes.is_empty() {
        return Err(not_onnx("the file is empty".into()));
    }
    // Parsed from a shared buffer, each tensor's `raw_data` is a view into `bytes`, not a
    // copy: the embedded model's 18 MB of weights were copied (and page-faulted in) twice,
    // 10–15 ms of a 70 ms start.
    let model = ModelProto::parse_from_tokio_bytes(bytes)
        .map_err(|e| not_onnx(format!("protobuf decoding failed: {e}")))?;
    let graph = model
        .graph
        .as_ref()
        .ok_or_else(|| not_onnx("it holds no graph".into()))?;
    if graph.node.is_empty() {
        return Err(not_onnx("its graph has no nodes".into()));
    }
    let opset = model
        .opset_import
        .iter()
        .find(|o| o.domain.is_empty() || o.domain == "ai.onnx")
        .map(|o| o.version)
        .unwrap_or(if model.ir_version >= 3 { 0 } else { 1 });
    if opset != 0 && opset < 7 {
        return Err(ModelError::Unsupported {
            what: source.to_string(),
            detail: format!("opset {opset} is older than 7; convert the model to a newer opset"),
        });
    }

    let mut importer = Importer {
        source,
        opset: if opset == 0 { 13 } else { opset },
        constants: HashMap::new(),
        shapes: HashMap::new(),
        nodes: Vec::new(),
        warnings: Vec::new(),
        names: HashSet::new(),
        folded_elements: 0,
    };
    // Decoded side by side (each a fresh copy whose pages fault in one by one: EfficientNet-
    // Lite0's 18 MB took ~15 ms on one core), then kept in file order, the first bad one the
    // error.
    let decoded: Vec<Result<(ConstTensor, usize)>> = (graph.initializer.par_iter())
        .map(|init| {
            let t = ConstTensor::from_proto(init)?;
            let bad = t.non_finite_count();
            Ok((t, bad))
        })
        .collect();
    for (init, t) in graph.initializer.iter().zip(decoded) {
        let (t, bad) = t?;
        importer.note_non_finite(&init.name, bad);
        importer.constants.insert(init.name.clone(), t);
    }
    let mut inputs = Vec::new();
    for vi in &graph.input {
        if importer.constants.contains_key(&vi.name) {
            continue; // an initializer listed as an input is a weight
        }
        let shape = input_shape(vi, options).map_err(|detail| ModelError::Invalid {
            what: format!("{source}: input '{}'", vi.name),
            detail,
        })?;
        importer.shapes.insert(vi.name.clone(), shape.clone());
        inputs.push(GraphInput {
            name: vi.name.clone(),
            shape,
        });
    }
    // Put the image input (the first 4-D one) first.
    if let Some(i) = inputs.iter().position(|i| i.shape.len() == 4) {
        inputs.swap(0, i);
    }

    let mut cut_outputs = None;
    for index in topological_order(&graph.node, &importer, source)? {
        let before = importer.nodes.len();
        importer.import_node(index, &graph.node[index])?;
        if let (Some(last), Some(node)) = (&options.last_node, importer.nodes.get(before))
            && &node.name == last
        {
            cut_outputs = Some(node.outputs.clone());
            break;
        }
    }
    if let Some(last) = &options.last_node
        && cut_outputs.is_none()
    {
        return Err(ModelError::Invalid {
            what: source.to_string(),
            detail: format!("it has no node '{last}' to end the graph at"),
        });
    }
    let outputs: Vec<String> = cut_outputs.unwrap_or_else(|| {
        graph
            .output
            .iter()
            .map(|o| o.name.clone())
            .filter(|n| importer.shapes.contains_key(n) || importer.constants.contains_key(n))
            .collect()
    });
    if outputs.is_empty() {
        return Err(ModelError::Invalid {
            what: source.to_string(),
            detail: "none of the graph outputs is computed by the graph".into(),
        });
    }
    let total: usize = importer
        .nodes
        .iter()
        .flat_map(|n| &n.output_shapes)
        .map(|s| s.iter().product::<usize>())
        .sum();
    if total > MAX_ACTIVATION_ELEMENTS {
        return Err(ModelError::TooLarge {
            what: format!("{source}: all activations together"),
            shape: vec![total as i64],
        });
    }
    let name = if graph.name.trim().is_empty() {
        fallback_name.to_string()
    } else {
        graph.name.clone()
    };
    Ok(Graph {
        name,
        inputs,
        outputs,
        nodes: importer.nodes,
        constants: importer.constants,
        shapes: importer.shapes,
        opset: importer.opset,
        warnings: importer.warnings,
        fingerprint: String::new(),
    })
}

/// FNV-1a (64 bit) of the model file's bytes as 16 hex digits: names the exact model
/// (architecture and weights) in annotation files. Stable across builds and platforms.
pub fn fingerprint(bytes: &[u8]) -> String {
    format!("{:016x}", fnv1a_64(bytes))
}

include!("fnv1a.rs");

/// Static input shape from the declared type; symbolic batch → 1, symbolic H/W → options.
fn input_shape(
    vi: &onnx_ir::ValueInfoProto,
    options: &ImportOptions,
) -> std::result::Result<Vec<usize>, String> {
    let ty = vi.type_.as_ref().ok_or("no type declared")?;
    let tensor = ty.tensor_type();
    let elem = tensor.elem_type;
    if elem != 1 && elem != 0 {
        return Err(format!(
            "element type {} is not float32",
            super::consts::dtype_name(elem)
        ));
    }
    let dims = &tensor.shape.as_ref().ok_or("no shape declared")?.dim;
    let rank = dims.len();
    let mut shape = Vec::with_capacity(rank);
    for (i, d) in dims.iter().enumerate() {
        let resized = (rank == 4 && i >= 2 && options.resize_fixed)
            .then_some(options.input_hw)
            .flatten();
        let v = if let Some(hw) = resized {
            hw[i - 2]
        } else if d.has_dim_value() && d.dim_value() > 0 {
            d.dim_value() as usize
        } else if i == 0 {
            1
        } else if rank == 4 && i >= 2 {
            options
                .input_hw
                .map(|hw| hw[i - 2])
                .ok_or("spatial size is dynamic; pass --size HxW")?
        } else {
            return Err(format!("dimension {i} is dynamic"));
        };
        shape.push(v);
    }
    match checked_numel(&shape) {
        Some(n) if n <= 1 << 31 => Ok(shape),
        _ => Err(format!("shape {shape:?} is too large")),
    }
}

/// Kahn's algorithm over value names; errors on cycles or undefined inputs.
fn topological_order(nodes: &[NodeProto], importer: &Importer, source: &str) -> Result<Vec<usize>> {
    let mut producer: HashMap<&str, usize> = HashMap::new();
    for (i, n) in nodes.iter().enumerate() {
        for o in n.output.iter().filter(|o| !o.is_empty()) {
            producer.insert(o.as_str(), i);
        }
    }
    let mut indegree = vec![0usize; nodes.len()];
    let mut consumers: Vec<Vec<usize>> = vec![Vec::new(); nodes.len()];
    for (i, n) in nodes.iter().enumerate() {
        for input in n.input.iter().filter(|s| !s.is_empty()) {
            if let Some(&p) = producer.get(input.as_str()) {
                indegree[i] += 1;
                consumers[p].push(i);
            } else if !importer.constants.contains_key(input)
                && !importer.shapes.contains_key(input)
            {
                return Err(ModelError::Node {
                    model: source.to_string(),
                    node: display_name(n, i),
                    op: n.op_type.clone(),
                    detail: format!(
                        "input '{input}' is not produced by any node, weight or graph input"
                    ),
                });
            }
        }
    }
    let mut ready: std::collections::VecDeque<usize> =
        (0..nodes.len()).filter(|&i| indegree[i] == 0).collect();
    let mut order = Vec::with_capacity(nodes.len());
    while let Some(i) = ready.pop_front() {
        order.push(i);
        for &c in &consumers[i] {
            indegree[c] -= 1;
            if indegree[c] == 0 {
                ready.push_back(c);
            }
        }
    }
    if order.len() != nodes.len() {
        return Err(ModelError::Invalid {
            what: source.to_string(),
            detail: "the graph has a cycle".into(),
        });
    }
    Ok(order)
}

fn display_name(n: &NodeProto, index: usize) -> String {
    if n.name.trim().is_empty() {
        format!("{}_{index}", n.op_type)
    } else {
        n.name.clone()
    }
}

struct Importer<'a> {
    source: &'a str,
    opset: i64,
    constants: HashMap<String, ConstTensor>,
    shapes: HashMap<String, Vec<usize>>,
    nodes: Vec<Node>,
    warnings: Vec<String>,
    names: HashSet<String>,
    /// Elements of all constants made by folding so far (capped at MAX_FOLDED_TOTAL).
    folded_elements: usize,
}

impl Importer<'_> {
    /// Warns of a weight holding `bad` NaN or infinite values.
    fn note_non_finite(&mut self, name: &str, bad: usize) {
        if bad > 0 {
            self.warnings
                .push(format!("weight '{name}' holds {bad} NaN/Inf values"));
        }
    }

    fn import_node(&mut self, index: usize, proto: &NodeProto) -> Result<()> {
        let name = self.unique_name(display_name(proto, index));
        let node_err = |detail: String| ModelError::Node {
            model: self.source.to_string(),
            node: name.clone(),
            op: proto.op_type.clone(),
            detail,
        };
        if !(proto.domain.is_empty() || proto.domain == "ai.onnx") {
            return Err(ModelError::UnsupportedOp {
                model: self.source.to_string(),
                node: name,
                op: format!("{}::{}", proto.domain, proto.op_type),
                supported: SUPPORTED_OPS,
            });
        }
        let ctx = NodeCtx {
            proto,
            attrs: Attrs(&proto.attribute),
            opset: self.opset,
            constants: &self.constants,
            shapes: &self.shapes,
        };
        let all_const = proto
            .input
            .iter()
            .filter(|s| !s.is_empty())
            .all(|s| self.constants.contains_key(s));
        let shape_only = matches!(proto.op_type.as_str(), "Shape" | "Size" | "Constant");
        if fold::is_foldable(&proto.op_type) && (all_const || shape_only) {
            let values = fold::fold(&ctx).map_err(node_err)?;
            self.folded_elements = values
                .iter()
                .fold(self.folded_elements, |sum, t| sum.saturating_add(t.numel()));
            if self.folded_elements > fold::MAX_FOLDED_TOTAL {
                return Err(node_err(format!(
                    "folded constants would hold more than {} elements in all",
                    fold::MAX_FOLDED_TOTAL
                )));
            }
            for (out, t) in proto.output.iter().zip(values) {
                self.note_non_finite(out, t.non_finite_count());
                self.constants.insert(out.clone(), t);
            }
            return Ok(());
        }
        let built = match op_import::build(&ctx) {
            Ok(Some(b)) => b,
            Ok(None) => {
                return Err(ModelError::UnsupportedOp {
                    model: self.source.to_string(),
                    node: name,
                    op: proto.op_type.clone(),
                    supported: SUPPORTED_OPS,
                });
            }
            Err(detail) => return Err(node_err(detail)),
        };
        let outputs: Vec<String> = proto
            .output
            .iter()
            .take(built.output_shapes.len())
            .cloned()
            .collect();
        for (out, shape) in outputs.iter().zip(&built.output_shapes) {
            match checked_numel(shape) {
                Some(0) => {
                    return Err(node_err(format!(
                        "output shape {shape:?} is empty; empty tensors are not supported"
                    )));
                }
                Some(n) if n <= MAX_ACTIVATION_ELEMENTS => {}
                _ => return Err(node_err(format!("output shape {shape:?} is too large"))),
            }
            self.shapes.insert(out.clone(), shape.clone());
        }
        self.names.insert(name.clone());
        self.nodes.push(Node {
            name,
            onnx_op: proto.op_type.clone(),
            op: built.op,
            inputs: built.inputs,
            outputs,
            output_shapes: built.output_shapes,
        });
        Ok(())
    }

    fn unique_name(&self, base: String) -> String {
        if !self.names.contains(&base) {
            return base;
        }
        (2..)
            .map(|k| format!("{base}_{k}"))
            .find(|n| !self.names.contains(n))
            .unwrap_or(base)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The tiny ResNet fixture's protobuf, and the names of its float initializers held as
    /// raw bytes (file order).
    fn fixture() -> (ModelProto, Vec<String>) {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/mixed/tiny_resnet.onnx"
        );
        let bytes = std::fs::read(path).expect("the fixture is readable");
        let model = ModelProto::parse_from_bytes(&bytes).expect("the fixture parses");
        let names = (model.graph.initializer.iter())
            .filter(|t| t.data_type == 1 && t.raw_data.len() >= 8)
            .map(|t| t.name.clone())
            .collect();
        (model, names)
    }

    /// An initializer's name and a change to its raw bytes.
    type Edit<'a> = (&'a str, &'a dyn Fn(&mut Vec<u8>));

    /// `model` with each `(name, edit)` applied to that initializer's raw bytes, imported.
    fn import_edited(mut model: ModelProto, edits: &[Edit<'_>]) -> Result<Graph> {
        for init in model.graph.mut_or_insert_default().initializer.iter_mut() {
            for (name, edit) in edits {
                if init.name == *name {
                    let mut raw = init.raw_data.to_vec();
                    edit(&mut raw);
                    init.raw_data = bytes::Bytes::from(raw);
                }
            }
        }
        let bytes = model.write_to_bytes().expect("serialises");
        load_onnx_bytes(&bytes, "edited", "edited", &ImportOptions::default())
    }

    #[test]
    fn non_finite_weights_warn_and_the_first_bad_weight_in_file_order_is_the_error() {
        let (model, names) = fixture();
        let [first, .., last] = names.as_slice() else {
            panic!("the fixture has two float initializers: {names:?}");
        };
        let nan_and_inf: &dyn Fn(&mut Vec<u8>) = &|raw| {
            raw[..4].copy_from_slice(&f32::NAN.to_le_bytes());
            raw[4..8].copy_from_slice(&f32::INFINITY.to_le_bytes());
        };
        let graph = import_edited(model.clone(), &[(last, nan_and_inf)]).expect("imports");
        assert_eq!(
            graph.warnings,
            vec![format!("weight '{last}' holds 2 NaN/Inf values")]
        );
        // Both truncated: decoded side by side, the error still names the first.
        let truncate: &dyn Fn(&mut Vec<u8>) = &|raw| {
            raw.pop();
        };
        let err = import_edited(model, &[(first, truncate), (last, truncate)])
            .expect_err("a truncated weight is refused")
            .to_string();
        assert!(
            err.contains(&format!("'{first}'")) && !err.contains(&format!("'{last}'")),
            "{err}"
        );
    }
}
