//! What an observed forward pass ([`super::Engine::forward_batch_observed`]) hands its
//! observer after each node: the node's outputs ([`NodeOutputs`]) and, where the next node
//! is a ReLU or Clip that reads only this output, the chance to apply that clamp in the
//! observer's own pass over the values ([`NodeOutputs::clamp_while`]); the engine then skips
//! the clamp node. A streaming consumer (`scan`, `stats`) reads every conv output once for
//! its statistics, and the clamp would read and write it again: for EfficientNet-Lite0's
//! 4.8 MB expansion at 112² that second pass came from L3, not from the core's cache.

use std::collections::HashMap;

use super::host_op::{HostOp, Mutated, mutate_f32};
use super::ops::T6;
use super::{EngineError, Result};
use crate::model::{Graph, Node};

/// The clamp node that alone reads a node's output 0, as planned by [`plan_clamps`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct ClampAfter {
    /// The clamp node's index.
    pub node: usize,
    pub min: f32,
    pub max: f32,
}

/// For each node whose output 0 is read by exactly one node, a host-kernel clamp
/// ([`HostOp::Clamp`]) with that output as its only input, and is no graph output: that
/// clamp, by the producing node's index.
pub(super) fn plan_clamps(
    graph: &Graph,
    host_ops: &HashMap<usize, HostOp>,
) -> HashMap<usize, ClampAfter> {
    let mut readers: HashMap<&str, usize> = HashMap::new();
    for node in &graph.nodes {
        for name in &node.inputs {
            *readers.entry(name.as_str()).or_default() += 1;
        }
    }
    let producer: HashMap<&str, usize> = (graph.nodes.iter().enumerate())
        .filter_map(|(i, n)| n.outputs.first().map(|o| (o.as_str(), i)))
        .collect();
    let mut plan = HashMap::new();
    for (&j, op) in host_ops {
        let &HostOp::Clamp { min, max } = op else {
            continue;
        };
        let Some([input]) = graph.nodes.get(j).map(|n| n.inputs.as_slice()) else {
            continue;
        };
        let sole_reader = readers.get(input.as_str()) == Some(&1);
        let graph_output = graph.outputs.iter().any(|o| o == input);
        if let (true, false, Some(&i)) = (sole_reader, graph_output, producer.get(input.as_str()))
            && i < j
        {
            plan.insert(i, ClampAfter { node: j, min, max });
        }
    }
    plan
}

/// One node's outputs in an observed pass.
pub struct NodeOutputs<'a> {
    outputs: &'a mut Vec<T6>,
    node: &'a Node,
    /// The clamp that follows output 0, where the observer may apply it.
    clamp: Option<ClampAfter>,
    clamped: bool,
}

impl<'a> NodeOutputs<'a> {
    pub(super) fn new(outputs: &'a mut Vec<T6>, node: &'a Node, clamp: Option<ClampAfter>) -> Self {
        Self {
            outputs,
            node,
            clamp,
            clamped: false,
        }
    }

    /// The node's outputs, in the graph's order.
    pub fn tensors(&self) -> &[T6] {
        self.outputs
    }

    /// Where the next node clamps output 0 and nothing else reads it (and the values sit in
    /// host memory, unshared): `f` gets output 0's values, to read, and the clamp's
    /// `(min, max)`, and must leave every value `v` as [`crate::engine::kernels::unary`]'s
    /// clamp of it; the engine then skips that clamp node. `Ok(None)` (nothing called)
    /// elsewhere, or a second time.
    pub fn clamp_while<R>(
        &mut self,
        f: impl FnOnce(&mut [f32], f32, f32) -> R,
    ) -> Result<Option<R>> {
        let Some(clamp) = self
            .clamp
            .filter(|_| !self.clamped && !self.outputs.is_empty())
        else {
            return Ok(None);
        };
        let first = self.outputs.remove(0);
        let mutated = mutate_f32(first, |values| f(values, clamp.min, clamp.max));
        let (back, result) = match mutated {
            Ok(Mutated::Done(t, r)) => (t, Some(r)),
            Ok(Mutated::Shared(t)) => (t, None),
            Err(detail) => {
                return Err(EngineError::Backend {
                    node: self.node.name.clone(),
                    op: self.node.onnx_op.clone(),
                    detail: format!("output 0 for the observer: {detail}"),
                });
            }
        };
        self.outputs.insert(0, back);
        self.clamped = result.is_some();
        Ok(result)
    }

    /// The clamp node the observer applied ([`NodeOutputs::clamp_while`]), for the pass to
    /// skip.
    pub(super) fn applied_clamp(&self) -> Option<usize> {
        self.clamp.filter(|_| self.clamped).map(|c| c.node)
    }
}
