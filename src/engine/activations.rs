//! The outputs of a forward pass, addressable by layer ([`Activations`]), and how they reach
//! the host: in place on the CPU ([`HostMap`]), or as copies ([`HostTensor`]); plus the
//! class probabilities or a one-line summary of the graph's output.

use std::collections::HashMap;
use std::sync::Arc;

use super::ops::{self, T6, dims6};
use super::{EngineError, Result};
use crate::model::Graph;

/// The outputs of one forward pass, addressable by layer.
pub struct Activations {
    pub(super) graph: Arc<Graph>,
    pub(super) values: HashMap<String, T6>,
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
