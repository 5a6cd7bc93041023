//! Receptive fields: which input pixels a unit `(layer, y, x)` depends on, found by carrying
//! the unit's positions backwards through every node between the layer and the image, on
//! every path of the DAG, and taking the bounding box of what reaches the image.
//!
//! A value's "positions" are its last two axes (`[.., H, W]`), kept as one set of rows and
//! one of columns (exact for every op here, which all act on rows and columns separately;
//! paths joined at a node unite their sets). Windows (Conv, ConvTranspose, pooling) map each
//! position to its taps (a strided, dilated window reads every other row); Pad, Slice and
//! Concat/Split along a spatial axis shift; element-wise and channel-wise ops pass positions
//! through (a broadcast axis of size 1 maps to 0); anything that mixes positions (global
//! pooling, InstanceNorm, Reshape or Transpose that move the spatial axes, Gemm, MatMul, a
//! spatial Softmax) depends on its whole input.
//!
//! Two variants: [`Clip::Valid`] drops, at every value, the positions outside it (a tap on
//! padding reads nothing), so the box is exactly the pixels the unit reads (what
//! `topk.json`'s `box` holds; one corner case over-approximates: two paths that each lose a
//! different axis entirely); [`Clip::None`] keeps them, so a unit near the border gets its
//! full theoretical field, partly outside the image (where a crop shows the padding).
//!
//! The sets and their moves (windows, shifts, broadcasts, clipping) are in `region.rs`;
//! this file walks the graph.

use std::cell::Cell;
use std::collections::HashMap;

use crate::model::{Graph, Node, Op};

mod region;

use region::{Positions, Region, Tracked, broadcast, shift_axis};

/// Whether boxes are clipped to each value's extent on the way (see the module doc).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Clip {
    Valid,
    None,
}

/// A box in input pixels, half-open: columns `x0..x1`, rows `y0..y1`. Unclipped boxes may
/// reach outside the image (negative or past its size).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct PixelBox {
    pub x0: i64,
    pub y0: i64,
    pub x1: i64,
    pub y1: i64,
}

impl PixelBox {
    /// `[x0, y0, x1, y1]`, the order `topk.json` stores.
    pub fn to_array(self) -> [i64; 4] {
        [self.x0, self.y0, self.x1, self.y1]
    }

    pub fn from_array([x0, y0, x1, y1]: [i64; 4]) -> Self {
        Self { x0, y0, x1, y1 }
    }

    pub fn width(&self) -> i64 {
        self.x1 - self.x0
    }

    pub fn height(&self) -> i64 {
        self.y1 - self.y0
    }
}

/// Receptive fields of one graph's units. [`ReceptiveFields::layer`] gives one layer's,
/// cached; [`ReceptiveFields::field`] one unit's.
pub struct ReceptiveFields<'g> {
    graph: &'g Graph,
    /// The image input's value.
    input: ValueId,
    /// `[H, W]` of the image input.
    input_hw: [i64; 2],
    /// Each runtime value's shape, by [`ValueId`].
    shapes: Vec<&'g [usize]>,
    /// Per node, its outputs' values (`None`: an output without a shape) and its runtime
    /// inputs' (weights and missing optional inputs left out).
    node_values: Vec<NodeValues>,
}

/// A runtime value (graph input or node output) by number: a propagation keeps its regions
/// in a `Vec` indexed by it rather than a map keyed by name (hashing the names was ~20% of
/// the time).
type ValueId = usize;

/// [`ReceptiveFields::node_values`]' entry for one node.
struct NodeValues {
    outputs: Vec<Option<ValueId>>,
    runtime_inputs: Vec<ValueId>,
}

/// The receptive fields of one layer's units with one [`Clip`], each axis's extent cached
/// per coordinate (a layer has `H + W` of them, against up to `H × W` units). Owned by one
/// task: layers run side by side without sharing a cache (a shared, locked one made
/// `scan`'s top-k boxes for EfficientNet-Lite0 take longer on two cores than all of the
/// layer's fields on one).
pub struct LayerFields<'r, 'g> {
    rf: &'r ReceptiveFields<'g>,
    layer: usize,
    clip: Clip,
    /// Per (axis, coordinate): the extent along that axis alone.
    axes: HashMap<(usize, usize), AxisField>,
    /// Units whose axes could not be followed apart (see [`ReceptiveFields::field`]).
    joint: HashMap<(usize, usize), Option<PixelBox>>,
}

impl LayerFields<'_, '_> {
    /// [`ReceptiveFields::field`] of unit `(y, x)` of this layer.
    pub fn field(&mut self, y: usize, x: usize) -> Option<PixelBox> {
        let rows = self.axis_field(0, y);
        let cols = self.axis_field(1, x);
        if rows.lost || cols.lost {
            let (rf, layer, clip) = (self.rf, self.layer, self.clip);
            return *(self.joint)
                .entry((y, x))
                .or_insert_with(|| rf.joint_field(layer, y, x, clip));
        }
        let ((y0, y1), (x0, x1)) = (rows.extent?, cols.extent?);
        Some(PixelBox {
            x0,
            y0,
            x1: x1 + 1,
            y1: y1 + 1,
        })
    }

    /// Axis `axis` (0 rows, 1 columns) of the field of coordinate `at`, cached.
    fn axis_field(&mut self, axis: usize, at: usize) -> AxisField {
        let (rf, layer, clip) = (self.rf, self.layer, self.clip);
        *(self.axes)
            .entry((axis, at))
            .or_insert_with(|| rf.axis_field(layer, axis, at, clip))
    }
}

/// One axis of a field, followed alone: the inclusive extent reached in the input (`None`:
/// none), and whether some path lost every position on the way (then the other axis of
/// that path must not count, and the two axes are followed together instead).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct AxisField {
    extent: Option<(i64, i64)>,
    lost: bool,
}

impl<'g> ReceptiveFields<'g> {
    /// `None` when the graph has no 4-D image input.
    pub fn new(graph: &'g Graph) -> Option<Self> {
        let input = graph.image_input()?;
        let [_, _, h, w] = <[usize; 4]>::try_from(input.shape.as_slice()).ok()?;
        // Values numbered in graph order: the graph's inputs, then each node's outputs.
        let mut ids: HashMap<&str, ValueId> = HashMap::new();
        let mut shapes = Vec::new();
        let names = (graph.inputs.iter().map(|i| i.name.as_str())).chain(
            graph
                .nodes
                .iter()
                .flat_map(|n| n.outputs.iter().map(String::as_str)),
        );
        for name in names {
            if let Some(shape) = graph.shapes.get(name)
                && !ids.contains_key(name)
            {
                ids.insert(name, shapes.len());
                shapes.push(shape.as_slice());
            }
        }
        let node_values = (graph.nodes.iter())
            .map(|node| NodeValues {
                outputs: node
                    .outputs
                    .iter()
                    .map(|o| ids.get(o.as_str()).copied())
                    .collect(),
                runtime_inputs: (node.inputs.iter())
                    .filter(|name| !name.is_empty() && !graph.constants.contains_key(*name))
                    .filter_map(|name| ids.get(name.as_str()).copied())
                    .collect(),
            })
            .collect();
        Some(Self {
            graph,
            input: *ids.get(input.name.as_str())?,
            input_hw: [h as i64, w as i64],
            shapes,
            node_values,
        })
    }

    /// The fields of node `layer`'s units, computed as asked for and cached.
    pub fn layer(&self, layer: usize, clip: Clip) -> LayerFields<'_, 'g> {
        LayerFields {
            rf: self,
            layer,
            clip,
            axes: HashMap::new(),
            joint: HashMap::new(),
        }
    }

    /// The input pixels unit `(y, x)` of node `layer`'s first output depends on, or `None`
    /// when it depends on none (a position that only reads padding). Any channel of a layer
    /// has the same field. Nothing is cached: for many units of a layer, use
    /// [`ReceptiveFields::layer`].
    ///
    /// Rows and columns are followed separately; only where a path loses every position of
    /// one axis are both followed together, which is exact.
    pub fn field(&self, layer: usize, y: usize, x: usize, clip: Clip) -> Option<PixelBox> {
        self.layer(layer, clip).field(y, x)
    }

    /// The field of unit `(y, x)` with rows and columns followed together.
    fn joint_field(&self, layer: usize, y: usize, x: usize, clip: Clip) -> Option<PixelBox> {
        let start = Region::Box([Positions::one(y as i64), Positions::one(x as i64)]);
        let (region, _) = self.propagate(layer, start, clip, [true, true])?;
        let [h, w] = self.input_hw;
        match region {
            Region::Full => Some(PixelBox {
                x0: 0,
                y0: 0,
                x1: w,
                y1: h,
            }),
            Region::Box([rows, cols]) => {
                let ((y0, y1), (x0, x1)) = (rows.bounds()?, cols.bounds()?);
                Some(PixelBox {
                    x0,
                    y0,
                    x1: x1 + 1,
                    y1: y1 + 1,
                })
            }
        }
    }

    /// Axis `axis` (0 rows, 1 columns) of the field of coordinate `at` of `layer`.
    fn axis_field(&self, layer: usize, axis: usize, at: usize, clip: Clip) -> AxisField {
        let mut start = [Positions::one(0), Positions::one(0)];
        start[axis] = Positions::one(at as i64);
        let mut tracked = [false, false];
        tracked[axis] = true;
        let (region, lost) = match self.propagate(layer, Region::Box(start), clip, tracked) {
            Some((region, lost)) => (Some(region), lost),
            None => (None, true),
        };
        let size = self.input_hw[axis];
        let extent = match region {
            None => None,
            Some(Region::Full) => Some((0, size - 1)),
            Some(Region::Box(b)) => b[axis].bounds(),
        };
        AxisField { extent, lost }
    }

    /// Carries `start` (a region of `layer`'s first output) back to the image input: the
    /// region reached there (`None`: nothing) and whether some path lost all its positions.
    fn propagate(
        &self,
        layer: usize,
        start: Region,
        clip: Clip,
        tracked: Tracked,
    ) -> Option<(Region, bool)> {
        let start_value = *self.node_values.get(layer)?.outputs.first()?;
        let lost = Cell::new(false);
        let mut regions: Vec<Option<Region>> = vec![None; self.shapes.len()];
        regions[start_value?] = Some(start);
        for (index, node) in self.graph.nodes[..=layer].iter().enumerate().rev() {
            let outs: Vec<Option<&Region>> = (self.node_values[index].outputs.iter())
                .map(|o| o.and_then(|id| regions[id].as_ref()))
                .collect();
            if outs.iter().all(Option::is_none) {
                continue;
            }
            let step = Step {
                clip,
                tracked,
                lost: &lost,
            };
            for (id, region) in self.input_regions(index, node, &outs, &step) {
                regions[id] = Some(match regions[id].take() {
                    Some(old) => old.union(&region),
                    None => region,
                });
            }
        }
        let region = regions[self.input].take();
        if region.is_none() {
            lost.set(true);
        }
        Some((region?, lost.get()))
    }

    /// The regions of `node`'s runtime inputs that its outputs' regions `outs` depend on
    /// (empty regions are dropped).
    fn input_regions(
        &self,
        index: usize,
        node: &Node,
        outs: &[Option<&Region>],
        step: &Step,
    ) -> Vec<(ValueId, Region)> {
        let runtime = self.node_values[index].runtime_inputs.as_slice();
        let out_shape = node.output_shape();
        // Split is the one multi-output op: each output is a slice of the input.
        if let Op::Split { axis, sizes } = &node.op {
            let Some(&input) = runtime.first() else {
                return Vec::new();
            };
            let mut joined: Option<Region> = None;
            let mut offset = 0i64;
            for (k, out) in outs.iter().enumerate() {
                let rank = node.output_shapes.get(k).map_or(0, Vec::len);
                if let Some(region) = out {
                    let shifted = shift_axis(region, *axis, rank, offset);
                    joined = Some(joined.map_or(shifted.clone(), |j| j.union(&shifted)));
                }
                offset += sizes.get(k).copied().unwrap_or(0) as i64;
            }
            return joined
                .and_then(|r| self.clipped(input, r, step))
                .map(|r| vec![(input, r)])
                .unwrap_or_default();
        }
        let Some(out) = outs.first().copied().flatten() else {
            return Vec::new();
        };
        let Region::Box(b) = out else {
            return runtime.iter().map(|&n| (n, Region::Full)).collect();
        };
        let per_axis = |f: &dyn Fn(usize, &Positions) -> Positions| {
            Region::Box([0, 1].map(|a| {
                if step.tracked[a] {
                    f(a, &b[a])
                } else {
                    b[a].clone()
                }
            }))
        };
        let mapped: Vec<(ValueId, Region)> = match &node.op {
            Op::Conv { window, .. }
            | Op::MaxPool { window, .. }
            | Op::AveragePool { window, .. } => first(
                runtime,
                per_axis(&|a, outputs| {
                    outputs.window(
                        window.strides[a] as i64,
                        window.pads[a].0 as i64,
                        window.kernel[a] as i64,
                        window.dilations[a] as i64,
                    )
                }),
            ),
            // Output o = i·s − before + j·d for the taps j in 0..k.
            Op::ConvTranspose { window, .. } => first(
                runtime,
                per_axis(&|a, outputs| {
                    let s = window.strides[a] as i64;
                    let d = window.dilations[a] as i64;
                    outputs.map(|o, v| {
                        for j in 0..window.kernel[a] as i64 {
                            let t = o + window.pads[a].0 as i64 - j * d;
                            if t.rem_euclid(s) == 0 {
                                v.push(t.div_euclid(s));
                            }
                        }
                    })
                }),
            ),
            Op::Pad { pads, .. } => {
                let before = |a: usize| {
                    (pads.len() + a)
                        .checked_sub(2)
                        .and_then(|axis| pads.get(axis))
                        .map_or(0, |p| p.0 as i64)
                };
                first(runtime, per_axis(&|a, outputs| outputs.shift(-before(a))))
            }
            Op::Slice { ranges } => {
                let range = |a: usize| {
                    (ranges.len() + a)
                        .checked_sub(2)
                        .and_then(|i| ranges.get(i))
                };
                first(
                    runtime,
                    per_axis(&|a, outputs| match range(a) {
                        Some(r) => outputs.affine(r.start as i64, r.step),
                        None => outputs.clone(),
                    }),
                )
            }
            Op::Concat { axis } => {
                let mut offset = 0i64;
                let mut mapped = Vec::new();
                for &value in runtime {
                    let shape = self.shapes[value];
                    mapped.push((value, shift_axis(out, *axis, out_shape.len(), -offset)));
                    offset += shape.get(*axis).copied().unwrap_or(0) as i64;
                }
                mapped
            }
            op if passes_positions(op, node, self.graph) => runtime
                .iter()
                .map(|&value| {
                    let region = broadcast(b, self.shapes[value], out_shape, step.tracked);
                    (value, region)
                })
                .collect(),
            _ => runtime.iter().map(|&n| (n, Region::Full)).collect(),
        };
        mapped
            .into_iter()
            .filter_map(|(value, region)| Some((value, self.clipped(value, region, step)?)))
            .collect()
    }

    /// With [`Clip::Valid`], the region without the positions outside `value` (`None` when
    /// a followed axis has nothing left, which marks the step's path as lost); with
    /// [`Clip::None`], the region itself.
    fn clipped(&self, value: ValueId, region: Region, step: &Step) -> Option<Region> {
        let Region::Box(b) = region else {
            return Some(region);
        };
        if step.clip == Clip::None {
            return Some(Region::Box(b));
        }
        let shape = self.shapes[value];
        let n = shape.len();
        if n < 2 {
            return Some(Region::Full);
        }
        let kept = [0, 1].map(|a| {
            if !step.tracked[a] {
                return b[a].clone();
            }
            let size = shape[n - 2 + a] as i64;
            b[a].within(size)
        });
        if kept.iter().any(Positions::is_empty) {
            step.lost.set(true);
            return None;
        }
        Some(Region::Box(kept))
    }
}

/// How one propagation treats positions: the clipping, the followed axes, and where a lost
/// path is recorded.
struct Step<'a> {
    clip: Clip,
    tracked: Tracked,
    lost: &'a Cell<bool>,
}

/// The op's first runtime input gets `region`.
fn first(runtime: &[ValueId], region: Region) -> Vec<(ValueId, Region)> {
    runtime
        .first()
        .map(|&n| vec![(n, region)])
        .unwrap_or_default()
}

/// Whether output position `(y, x)` reads only input position `(y, x)` (modulo broadcast):
/// element-wise ops, and ops that mix channels or batch but not positions.
fn passes_positions(op: &Op, node: &Node, graph: &Graph) -> bool {
    let keeps_trailing = || {
        let out = node.output_shape();
        let Some(input) = node.inputs.first().and_then(|i| graph.shapes.get(i)) else {
            return false;
        };
        out.len() >= 3 && input.len() >= 3 && out[out.len() - 2..] == input[input.len() - 2..]
    };
    let rank = node.output_shape().len();
    match op {
        Op::Relu
        | Op::Clip { .. }
        | Op::LeakyRelu { .. }
        | Op::Sigmoid
        | Op::HardSigmoid { .. }
        | Op::HardSwish
        | Op::Tanh
        | Op::Elu { .. }
        | Op::Lrn { .. }
        | Op::BatchNorm { .. }
        | Op::Add
        | Op::Sub
        | Op::Mul
        | Op::Div
        | Op::Sum
        | Op::Identity => true,
        Op::Softmax { axis, legacy_2d } => !legacy_2d && *axis + 2 < rank,
        Op::Reshape => keeps_trailing(),
        Op::Transpose { perm } => {
            let n = perm.len();
            n >= 3 && perm[n - 2] == n - 2 && perm[n - 1] == n - 1
        }
        Op::Gather { axis, .. } => *axis + 2 < rank && keeps_trailing(),
        _ => false,
    }
}
