//! The nodes a forward pass on the CPU (flex) runs as host kernels ([`super::kernels`])
//! instead of burn's ops: which ones, planned once per engine, and running one on its
//! inputs read in place.

use std::collections::HashMap;

use super::kernels;
use super::ops::{HostValues, T6};
use crate::model::Graph;

/// A node the CPU (flex) path runs with a host kernel instead of burn's: convolutions with
/// deep column matrices, 1×1 and depthwise ones ([`kernels::conv`]), fully connected layers
/// ([`kernels::linear`]), 2-D max-pooling ([`kernels::pool`]), LRN ([`kernels::lrn`]), ReLU
/// and Clip ([`kernels::unary`]).
pub(super) enum HostOp {
    Conv(kernels::geometry::ConvGeometry),
    Linear(kernels::linear::HostLinear),
    MaxPool(kernels::pool::PoolGeometry),
    Lrn(kernels::lrn::LrnGeometry),
    /// ReLU and Clip (ReLU6): clamp to `[min, max]` ([`kernels::unary`]).
    Clamp {
        min: f32,
        max: f32,
    },
}

impl HostOp {
    /// The host kernel of every node that has one, by node index; none without
    /// `host_kernels` (burn runs every node).
    pub(super) fn plan_all(graph: &Graph, host_kernels: bool) -> HashMap<usize, HostOp> {
        if !host_kernels {
            return HashMap::new();
        }
        (graph.nodes.iter().enumerate())
            .filter_map(|(i, node)| HostOp::plan(graph, node).map(|op| (i, op)))
            .collect()
    }

    fn plan(graph: &Graph, node: &crate::model::Node) -> Option<Self> {
        if let Some(conv) = kernels::conv::plan(graph, node) {
            return Some(Self::Conv(conv));
        }
        if let Some(linear) = kernels::linear::HostLinear::plan(graph, node) {
            return Some(Self::Linear(linear));
        }
        let x = graph.shapes.get(node.inputs.first()?)?;
        match &node.op {
            crate::model::Op::Relu => Some(Self::Clamp {
                min: 0.0,
                max: f32::INFINITY,
            }),
            &crate::model::Op::Clip { min, max } => Some(Self::Clamp { min, max }),
            crate::model::Op::MaxPool { window, .. } => {
                kernels::pool::PoolGeometry::new(window, x, node.output_shapes.first()?)
                    .map(Self::MaxPool)
            }
            &crate::model::Op::Lrn {
                size,
                alpha,
                beta,
                bias,
            } if x.len() >= 3 => Some(Self::Lrn(kernels::lrn::LrnGeometry {
                images: x[0],
                channels: x[1],
                plane: x[2..].iter().product(),
                size,
                alpha,
                beta,
                bias,
            })),
            _ => None,
        }
    }

    /// The node's output written into its input's buffer, where the op is element-wise
    /// (Clamp) and the forward pass handed over its only reference to that input (its last
    /// read, not kept): `Some`, with the input taken out of `ins`; else `None` and `ins`
    /// untouched, for [`HostOp::run`]. Saves the output allocation and keeps the working
    /// set in cache: EfficientNet-Lite0's 33 ReLU6 nodes each follow a convolution whose
    /// output nothing else reads unless the pass keeps it.
    pub(super) fn run_in_place(&self, ins: &mut Vec<T6>) -> Result<Option<T6>, String> {
        let &Self::Clamp { min, max } = self else {
            return Ok(None);
        };
        if ins.len() != 1 {
            return Ok(None);
        }
        let Some(x) = ins.pop() else {
            return Ok(None);
        };
        match mutate_f32(x, |values| kernels::unary::clamp_in_place(values, min, max))
            .map_err(|e| format!("reading input 0: {e}"))?
        {
            Mutated::Done(out, ()) => Ok(Some(out)),
            // Shared after all: back, unchanged, for a copy out.
            Mutated::Shared(x) => {
                ins.push(x);
                Ok(None)
            }
        }
    }

    /// The node's output (row-major) for its inputs `ins` (data first, then the weight and
    /// bias tensors the engine holds), all read in place on flex. `Err` says which input
    /// could not be read.
    pub(super) fn run(&self, ins: &[T6]) -> std::result::Result<Vec<f32>, String> {
        let read = |i: usize| -> std::result::Result<HostValues, String> {
            let t = ins.get(i).ok_or_else(|| format!("input {i} is missing"))?;
            HostValues::of(t).map_err(|e| format!("reading input {i}: {e}"))
        };
        let x = read(0)?;
        let x = x.as_slice();
        Ok(match self {
            Self::Conv(geometry) => {
                let weight = read(1)?;
                let bias = if ins.len() > 2 { Some(read(2)?) } else { None };
                let bias = bias.as_ref().map(HostValues::as_slice);
                kernels::conv::conv2d(x, weight.as_slice(), bias, geometry)
            }
            Self::Linear(linear) => linear.run(x, read(1)?.as_slice()),
            Self::MaxPool(geometry) => kernels::pool::max_pool2d(x, geometry),
            Self::Lrn(geometry) => kernels::lrn::lrn(x, geometry),
            &Self::Clamp { min, max } => kernels::unary::clamp(x, min, max),
        })
    }
}

/// What [`mutate_f32`] did.
pub(super) enum Mutated<R> {
    /// `f` ran on the values; the tensor, changed in place, and `f`'s result.
    Done(T6, R),
    /// Not contiguous `f32` host values held by this tensor alone: the tensor, unchanged.
    Shared(T6),
}

/// Runs `f` on `t`'s values in place, where `t` is a contiguous `f32` flex tensor whose buffer
/// nothing else holds. `Err` only if flex refuses a tensor that it had just accepted.
pub(super) fn mutate_f32<R>(t: T6, f: impl FnOnce(&mut [f32]) -> R) -> Result<Mutated<R>, String> {
    let host_f32 = t
        .clone()
        .try_into_primitive::<burn_flex::Flex>()
        .is_ok_and(|flex| flex.is_contiguous() && flex.as_slice::<f32>().is_some());
    // The probe above held a second reference only while it ran.
    if !host_f32 {
        return Ok(Mutated::Shared(t));
    }
    let mut flex = t
        .try_into_primitive::<burn_flex::Flex>()
        .map_err(|e| format!("{e:?}"))?;
    let range = flex.layout().contiguous_offsets();
    if let (Some((start, end)), Some(values)) = (range, flex.try_storage_mut::<f32>()) {
        let result = f(&mut values[start..end]);
        return Ok(Mutated::Done(
            T6::from_primitive::<burn_flex::Flex>(flex),
            result,
        ));
    }
    Ok(Mutated::Shared(T6::from_primitive::<burn_flex::Flex>(flex)))
}
