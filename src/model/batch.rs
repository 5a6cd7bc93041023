//! Re-deriving a graph for a batch of N images: the importer gives every graph batch 1
//! (`[1, 3, H, W]`, also for models exported with a dynamic batch), and [`Graph::with_batch`]
//! turns that into the same network over `[N, 3, H, W]` for the engine's batched passes
//! (occlusion sweeps, statistics over a folder).
//!
//! The rule is static and conservative: batching is safe when every runtime value carries
//! the batch on axis 0 (its batch-1 shape starts with 1) and no op mixes samples (no
//! concatenation, split, softmax, gather, slice or pad along axis 0, no transpose that moves
//! axis 0, no broadcast that would align axis 0 with another axis). A `Reshape` from
//! `[1, …]` to `[1, …]` keeps each sample's values contiguous, so one hard-coding the batch
//! (`[1, -1]`) or one folded from a `Shape` chain at import time is safe as it is: the
//! batched graph simply has `[N, …]` on both sides. Where the rule fails,
//! [`BatchError::Unsafe`] names the node, and callers fall back to one pass per image.

use super::graph::{Graph, Op, SliceRange};
use super::onnx::MAX_ACTIVATION_ELEMENTS;

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum BatchError {
    #[error("a batch needs at least one image")]
    Empty,
    #[error("graph '{graph}' already has batch {batch}; batch a graph of batch 1")]
    NotBatchOne { graph: String, batch: usize },
    #[error("cannot batch node '{node}' ({op}): {reason}")]
    Unsafe {
        node: String,
        op: &'static str,
        reason: String,
    },
    #[error("a batch of {batch} would need {elements} activation elements, over the limit")]
    TooLarge { batch: usize, elements: u128 },
}

impl Graph {
    /// The number of images one pass takes: axis 0 of the image input.
    pub fn batch_size(&self) -> usize {
        self.image_input()
            .and_then(|i| i.shape.first().copied())
            .unwrap_or(1)
    }

    /// Checks that this batch-1 graph can run `[N, …]` inputs (see the module docs);
    /// `Err` names the first node that mixes samples.
    pub fn check_batchable(&self) -> Result<(), BatchError> {
        if self.batch_size() != 1 {
            return Err(BatchError::NotBatchOne {
                graph: self.name.clone(),
                batch: self.batch_size(),
            });
        }
        for input in &self.inputs {
            if input.shape.first() != Some(&1) {
                return Err(BatchError::Unsafe {
                    node: input.name.clone(),
                    op: "input",
                    reason: format!("its shape {:?} has no batch axis", input.shape),
                });
            }
        }
        for node in &self.nodes {
            let unsafe_because = |reason: String| BatchError::Unsafe {
                node: node.name.clone(),
                op: node.op.type_name(),
                reason,
            };
            let runtime_inputs: Vec<&[usize]> = node
                .inputs
                .iter()
                .filter_map(|name| self.shapes.get(name).map(Vec::as_slice))
                .collect();
            for shape in
                (runtime_inputs.iter().copied()).chain(node.output_shapes.iter().map(Vec::as_slice))
            {
                if shape.first() != Some(&1) {
                    return Err(unsafe_because(format!(
                        "value of shape {shape:?} does not carry the batch on axis 0"
                    )));
                }
            }
            let rank = node.output_shape().len();
            if let Some(reason) = mixes_samples(&node.op, &runtime_inputs, rank) {
                return Err(unsafe_because(reason));
            }
        }
        Ok(())
    }

    /// The same network over `[batch, …]` inputs: every runtime shape gets `batch` on axis 0
    /// and slices keep every sample. Weights are shared data (cloned, not re-read).
    pub fn with_batch(&self, batch: usize) -> Result<Graph, BatchError> {
        if batch == 0 {
            return Err(BatchError::Empty);
        }
        self.check_batchable()?;
        let elements: u128 = self
            .nodes
            .iter()
            .flat_map(|n| &n.output_shapes)
            .map(|s| s.iter().map(|&d| d as u128).product::<u128>())
            .sum::<u128>()
            * batch as u128;
        if elements > MAX_ACTIVATION_ELEMENTS as u128 {
            return Err(BatchError::TooLarge { batch, elements });
        }
        let set_batch = |shape: &mut Vec<usize>| {
            if let Some(d) = shape.first_mut() {
                *d = batch;
            }
        };
        let mut graph = self.clone();
        graph
            .inputs
            .iter_mut()
            .for_each(|i| set_batch(&mut i.shape));
        graph.shapes.values_mut().for_each(set_batch);
        for node in &mut graph.nodes {
            node.output_shapes.iter_mut().for_each(set_batch);
            if let Op::Slice { ranges } = &mut node.op
                && let Some(first) = ranges.first_mut()
            {
                *first = SliceRange {
                    start: 0,
                    step: 1,
                    count: batch,
                };
            }
        }
        Ok(graph)
    }
}

/// Why `op` would mix the samples of a batch, if it would. `inputs` are the shapes of the
/// node's runtime inputs (weights excluded), `rank` the output's rank.
fn mixes_samples(op: &Op, inputs: &[&[usize]], rank: usize) -> Option<String> {
    let along_batch = |what: &str| Some(format!("{what} along axis 0, the batch axis"));
    match op {
        Op::Concat { axis: 0 } => along_batch("concatenates"),
        Op::Split { axis: 0, .. } => along_batch("splits"),
        Op::Gather { axis: 0, .. } => along_batch("gathers"),
        Op::Softmax { axis: 0, .. } => along_batch("normalises"),
        Op::Transpose { perm } if perm.first() != Some(&0) => {
            Some(format!("permutation {perm:?} moves the batch axis"))
        }
        Op::Pad { pads, .. } if pads.first().is_some_and(|&p| p != (0, 0)) => along_batch("pads"),
        Op::Slice { ranges } if ranges.first().is_some_and(|r| r.start != 0 || r.count != 1) => {
            along_batch("slices")
        }
        Op::Gemm { trans_a: true, .. } => Some("transposes its batched input".into()),
        // 2-D MatMul contracts axis 0 of its second operand: only a weight may sit there.
        Op::MatMul if inputs.len() > 1 && rank <= 2 => {
            Some("multiplies two runtime matrices".into())
        }
        Op::Add | Op::Sub | Op::Mul | Op::Div | Op::Sum | Op::MatMul
            if inputs.iter().any(|s| s.len() != rank) =>
        {
            Some("broadcasts a batched value of lower rank".into())
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;
    use crate::model::graph::{GraphInput, Node};

    fn node(name: &str, op: Op, inputs: &[&str], output: &str, shape: &[usize]) -> Node {
        Node {
            name: name.into(),
            onnx_op: op.type_name().into(),
            op,
            inputs: inputs.iter().map(|s| s.to_string()).collect(),
            outputs: vec![output.into()],
            output_shapes: vec![shape.to_vec()],
        }
    }

    fn graph(nodes: Vec<Node>) -> Graph {
        let mut shapes = HashMap::from([("x".to_string(), vec![1, 4, 2, 2])]);
        for n in &nodes {
            shapes.insert(n.outputs[0].clone(), n.output_shapes[0].clone());
        }
        Graph {
            name: "g".into(),
            inputs: vec![GraphInput {
                name: "x".into(),
                shape: vec![1, 4, 2, 2],
            }],
            outputs: vec![
                nodes
                    .last()
                    .map(|n| n.outputs[0].clone())
                    .unwrap_or_default(),
            ],
            nodes,
            constants: HashMap::new(),
            shapes,
            opset: 13,
            warnings: Vec::new(),
            fingerprint: String::new(),
        }
    }

    #[test]
    fn a_per_sample_chain_gets_the_batch_on_every_shape() {
        let g = graph(vec![
            node("relu", Op::Relu, &["x"], "r", &[1, 4, 2, 2]),
            node("flat", Op::Reshape, &["r"], "f", &[1, 16]),
            node(
                "cut",
                Op::Slice {
                    ranges: vec![
                        SliceRange {
                            start: 0,
                            step: 1,
                            count: 1,
                        },
                        SliceRange {
                            start: 2,
                            step: 1,
                            count: 8,
                        },
                    ],
                },
                &["f"],
                "s",
                &[1, 8],
            ),
        ]);
        let b = g.with_batch(5).expect("batchable");
        assert_eq!(b.batch_size(), 5);
        assert_eq!(b.shapes["f"], vec![5, 16]);
        assert_eq!(b.nodes[2].output_shapes[0], vec![5, 8]);
        let Op::Slice { ranges } = &b.nodes[2].op else {
            panic!("still a slice")
        };
        assert_eq!(
            (ranges[0].count, ranges[1].start, ranges[1].count),
            (5, 2, 8)
        );
        assert!(matches!(g.with_batch(0), Err(BatchError::Empty)));
    }

    #[test]
    fn ops_that_mix_samples_are_named() {
        let cases = [
            node(
                "cat",
                Op::Concat { axis: 0 },
                &["x", "x"],
                "c",
                &[2, 4, 2, 2],
            ),
            node(
                "t",
                Op::Transpose {
                    perm: vec![1, 0, 2, 3],
                },
                &["x"],
                "t",
                &[4, 1, 2, 2],
            ),
            node("flat", Op::Reshape, &["x"], "f", &[16]),
            node(
                "soft",
                Op::Softmax {
                    axis: 0,
                    legacy_2d: false,
                },
                &["x"],
                "s",
                &[1, 4, 2, 2],
            ),
        ];
        for case in cases {
            let name = case.name.clone();
            match graph(vec![case]).with_batch(3) {
                Err(BatchError::Unsafe { node, .. }) => assert_eq!(node, name),
                other => panic!("{name}: expected Unsafe, got {other:?}"),
            }
        }
    }
}
