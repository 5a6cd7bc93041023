//! What an op converter sees of one ONNX node while the graph is imported: its attributes
//! ([`Attrs`]), its inputs' constants and static shapes ([`NodeCtx`]), and what it returns
//! ([`Built`]). The importer ([`super::onnx`]) builds a `NodeCtx` per node; the converters
//! ([`super::op_import`], [`super::op_window`]) and constant folding ([`super::fold`]) read it.

use std::collections::HashMap;

use onnx_ir::{AttributeProto, NodeProto, TensorProto};

use super::consts::ConstTensor;
use super::graph::{Op, SliceRange};
use super::shape::{norm_axis, slice_ranges};

/// A converted runtime node.
pub struct Built {
    pub op: Op,
    /// Value names the engine reads (data first, then weights).
    pub inputs: Vec<String>,
    pub output_shapes: Vec<Vec<usize>>,
}

pub(super) type R<T> = Result<T, String>;

/// A node's attributes, looked up by name.
pub struct Attrs<'a>(pub(super) &'a [AttributeProto]);

impl<'a> Attrs<'a> {
    fn get(&self, name: &str) -> Option<&'a AttributeProto> {
        self.0.iter().find(|a| a.name == name)
    }
    pub fn int(&self, name: &str) -> Option<i64> {
        self.get(name).map(|a| a.i)
    }
    pub fn float(&self, name: &str) -> Option<f32> {
        self.get(name).map(|a| a.f)
    }
    pub fn ints(&self, name: &str) -> Option<&'a [i64]> {
        self.get(name).map(|a| a.ints.as_slice())
    }
    pub fn floats(&self, name: &str) -> Option<&'a [f32]> {
        self.get(name).map(|a| a.floats.as_slice())
    }
    pub fn string(&self, name: &str) -> Option<String> {
        self.get(name)
            .map(|a| String::from_utf8_lossy(&a.s).into_owned())
    }
    pub fn tensor(&self, name: &str) -> Option<&'a TensorProto> {
        self.get(name).and_then(|a| a.t.as_ref())
    }
}

/// Everything an op converter may ask about one node.
pub struct NodeCtx<'a> {
    pub proto: &'a NodeProto,
    pub attrs: Attrs<'a>,
    pub opset: i64,
    pub(super) constants: &'a HashMap<String, ConstTensor>,
    pub(super) shapes: &'a HashMap<String, Vec<usize>>,
}

impl NodeCtx<'_> {
    pub fn op_type(&self) -> &str {
        &self.proto.op_type
    }

    pub fn input_count(&self) -> usize {
        self.proto.input.len()
    }

    /// Name of input `i`, `None` when absent or empty (optional input skipped).
    pub fn input(&self, i: usize) -> Option<&str> {
        self.proto
            .input
            .get(i)
            .map(String::as_str)
            .filter(|s| !s.is_empty())
    }

    pub fn required_input(&self, i: usize) -> Result<&str, String> {
        self.input(i).ok_or_else(|| format!("input {i} is missing"))
    }

    /// Static shape of input `i` (runtime value or constant).
    pub fn shape(&self, i: usize) -> Result<&[usize], String> {
        let name = self.required_input(i)?;
        self.shapes
            .get(name)
            .map(Vec::as_slice)
            .or_else(|| self.constants.get(name).map(|c| c.shape.as_slice()))
            .ok_or_else(|| format!("input '{name}' has no known shape"))
    }

    pub fn konst(&self, i: usize) -> Result<&ConstTensor, String> {
        let name = self.required_input(i)?;
        self.constants
            .get(name)
            .ok_or_else(|| format!("input '{name}' must be a constant"))
    }

    pub fn const_ints(&self, i: usize) -> Result<Vec<i64>, String> {
        Ok(self.konst(i)?.to_i64_vec())
    }

    /// Axes given as an attribute (old opsets) or as constant input `i` (new opsets).
    pub fn axes_attr_or_input(&self, i: usize) -> Result<Option<Vec<i64>>, String> {
        if let Some(a) = self.attrs.ints("axes") {
            return Ok(Some(a.to_vec()));
        }
        if self.input(i).is_some() {
            return Ok(Some(self.const_ints(i)?));
        }
        Ok(None)
    }

    /// Resolved Slice ranges for input 0 of `shape` (attributes before opset 10, inputs after).
    pub fn slice_ranges(&self, shape: &[usize]) -> Result<Vec<SliceRange>, String> {
        if self.opset < 10 || self.input(1).is_none() {
            let starts = self.attrs.ints("starts").ok_or("Slice without starts")?;
            let ends = self.attrs.ints("ends").ok_or("Slice without ends")?;
            return slice_ranges(shape, starts, ends, self.attrs.ints("axes"), None);
        }
        let starts = self.const_ints(1)?;
        let ends = self.const_ints(2)?;
        let axes = self.input(3).map(|_| self.const_ints(3)).transpose()?;
        let steps = self.input(4).map(|_| self.const_ints(4)).transpose()?;
        slice_ranges(shape, &starts, &ends, axes.as_deref(), steps.as_deref())
    }

    /// Transpose permutation (default: reversed axes), validated.
    pub fn transpose_perm(&self, rank: usize) -> Result<Vec<usize>, String> {
        let perm: Vec<usize> = match self.attrs.ints("perm") {
            Some(p) => p
                .iter()
                .map(|&a| norm_axis(a, rank))
                .collect::<Result<_, _>>()?,
            None => (0..rank).rev().collect(),
        };
        let mut sorted = perm.clone();
        sorted.sort_unstable();
        if sorted != (0..rank).collect::<Vec<_>>() {
            return Err(format!("perm {perm:?} is not a permutation of {rank} axes"));
        }
        Ok(perm)
    }
}
