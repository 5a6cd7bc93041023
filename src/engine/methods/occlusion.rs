//! Occlusion sensitivity (Zeiler & Fergus): a square of the input is set to a constant
//! (0 in normalised units, i.e. the mean colour) and slid over the image; at each position the
//! drop of every selected layer's per-channel response `J_k = Σ_{h,w} channel k` and of every
//! class score is recorded. The squares go through the network in batches (one square per
//! sample), capturing only the selected layers.

use std::collections::HashSet;
use std::ops::ControlFlow;

use crate::engine::{Capture, Engine, EngineError, Result};
use crate::model::BatchError;
use crate::model::preprocess::InputTensor;

/// Square size and stride in input pixels, and the fill value (normalised units).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct OcclusionSpec {
    pub size_px: usize,
    pub stride_px: usize,
    pub fill: f32,
}

impl OcclusionSpec {
    /// Default for an `H×W` input: squares of `max(H, W)/8` (at least 1) at half that stride.
    pub fn for_input(hw: [usize; 2]) -> Self {
        let size_px = (hw[0].max(hw[1]) / 8).max(1);
        Self {
            size_px,
            stride_px: (size_px / 2).max(1),
            fill: 0.0,
        }
    }

    /// `[rows, cols]` of square positions over an `H×W` input: the size of each map.
    pub fn grid_hw(&self, input_hw: [usize; 2]) -> [usize; 2] {
        input_hw.map(|len| self.offsets(len).len())
    }

    /// Top-left offsets along an axis of `len` pixels (the last square touches the edge).
    pub fn offsets(&self, len: usize) -> Vec<usize> {
        let size = self.size_px.min(len);
        let mut v: Vec<usize> = (0..=len - size).step_by(self.stride_px.max(1)).collect();
        if v.last() != Some(&(len - size)) {
            v.push(len - size);
        }
        v
    }
}

/// Drops in response, one map per channel: `[C, rows, cols]` row-major, where the grid is the
/// square positions (`rows × cols`).
#[derive(Debug, Clone, PartialEq)]
pub struct OcclusionMaps {
    pub grid_hw: [usize; 2],
    /// `(node index, [C, rows, cols])` for each selected layer.
    pub layers: Vec<(usize, Vec<f32>)>,
    /// `[classes, rows, cols]`: drop of each entry of the graph's first output.
    pub classes: Vec<f32>,
    /// How many squares went through the network per forward pass.
    pub squares_per_pass: usize,
    /// Why the sweep ran one square per pass, when the graph could not be batched.
    pub unbatched: Option<BatchError>,
}

/// Squares per forward pass when the graph can be batched (see [`occlusion`]).
pub const SQUARES_PER_PASS: usize = 8;

/// Per-channel sums of a `[C, ...]` slice (one sample of a value).
fn channel_sums(data: &[f32], channels: usize) -> Vec<f64> {
    let per = data.len() / channels.max(1);
    (0..channels)
        .map(|c| {
            data[c * per..(c + 1) * per]
                .iter()
                .map(|&x| f64::from(x))
                .sum()
        })
        .collect()
}

/// What one pass over a batch measures: for each sample, the per-channel sums of every
/// selected layer and then the class scores (`[sample][layer…, classes][channel]`).
struct Responses {
    capture: Capture,
    /// `(value name, channels)` of each selected layer.
    layers: Vec<(String, usize)>,
}

impl Responses {
    /// One forward pass of `engine` (batch 1 or batched) over `inputs`.
    fn of(&self, engine: &Engine, inputs: &[&InputTensor]) -> Result<Vec<Vec<Vec<f64>>>> {
        let acts = engine.forward_batch(inputs, &self.capture)?;
        let mut per_sample: Vec<Vec<Vec<f64>>> = vec![Vec::new(); inputs.len()];
        for (value, channels) in &self.layers {
            let all = acts.host_values(value)?; // [N, C, H, W], in place on the CPU
            let all = all.as_slice();
            let per = all.len() / inputs.len().max(1);
            for (k, out) in per_sample.iter_mut().enumerate() {
                out.push(channel_sums(&all[k * per..(k + 1) * per], *channels));
            }
        }
        let scores = acts.read_output()?; // [N, classes]
        let per = scores.data.len() / inputs.len().max(1);
        for (k, out) in per_sample.iter_mut().enumerate() {
            out.push(
                scores.data[k * per..(k + 1) * per]
                    .iter()
                    .map(|&x| f64::from(x))
                    .collect(),
            );
        }
        Ok(per_sample)
    }
}

/// Runs the occlusion sweep. `layers` must have `[1, C, H, W]` outputs; `on_pass(done,
/// total)` is called after every forward pass with the squares done so far (for progress)
/// and may stop the sweep with `ControlFlow::Break`: then `None`.
///
/// The squares go through the network [`SQUARES_PER_PASS`] at a time when the graph can be
/// batched ([`Engine::with_batch`]; the last pass is padded with copies); otherwise one per
/// pass, and the maps say why in [`OcclusionMaps::unbatched`].
pub fn occlusion(
    engine: &Engine,
    input: &InputTensor,
    layers: &[usize],
    spec: &OcclusionSpec,
    mut on_pass: impl FnMut(usize, usize) -> ControlFlow<()>,
) -> Result<Option<OcclusionMaps>> {
    let graph = engine.graph();
    let [_, planes, h, w] = input.shape;
    let names: HashSet<String> = layers
        .iter()
        .map(|&i| graph.nodes[i].name.clone())
        .collect();
    let layer_values: Vec<(String, usize)> = layers
        .iter()
        .map(|&i| {
            let node = &graph.nodes[i];
            (
                node.outputs[0].clone(),
                node.feature_map_dims().map_or(1, |d| d.0),
            )
        })
        .collect();
    let (rows, cols) = (spec.offsets(h), spec.offsets(w));
    let cells = rows.len() * cols.len();
    let wanted = SQUARES_PER_PASS.min(cells);
    let (batched, unbatched) = match engine.batch_size() {
        1 if wanted > 1 => match engine.with_batch(wanted) {
            Ok(batched) => (Some(batched), None),
            Err(EngineError::Batch(why)) => (None, Some(why)),
            Err(e) => return Err(e),
        },
        _ => (None, None),
    };
    let responses = Responses {
        capture: Capture::Layers(names),
        layers: layer_values,
    };
    let base = responses.of(engine, &[input])?.swap_remove(0);
    let runner = batched.as_ref().unwrap_or(engine);
    let per_pass = runner.batch_size();
    let mut maps: Vec<Vec<f32>> = base.iter().map(|b| vec![0f32; b.len() * cells]).collect();
    let size = spec.size_px.min(h).min(w);
    let occlude = |cell: usize| {
        let (y0, x0) = (rows[cell / cols.len()], cols[cell % cols.len()]);
        let mut occluded = InputTensor {
            shape: input.shape,
            data: input.data.clone(),
            picture: None,
        };
        for p in 0..planes {
            for y in y0..(y0 + size).min(h) {
                let row = p * h * w + y * w;
                occluded.data[row + x0..row + (x0 + size).min(w)].fill(spec.fill);
            }
        }
        occluded
    };
    for first in (0..cells).step_by(per_pass) {
        let batch: Vec<InputTensor> = (first..first + per_pass)
            .map(|cell| occlude(cell.min(cells - 1)))
            .collect();
        let got = responses.of(runner, &batch.iter().collect::<Vec<_>>())?;
        for (cell, got) in (first..cells).zip(&got) {
            for ((map, b), g) in maps.iter_mut().zip(&base).zip(got) {
                for (k, (bk, gk)) in b.iter().zip(g).enumerate() {
                    map[k * cells + cell] = (bk - gk) as f32;
                }
            }
        }
        if on_pass((first + per_pass).min(cells), cells).is_break() {
            return Ok(None);
        }
    }
    let classes = maps.pop().unwrap_or_default();
    Ok(Some(OcclusionMaps {
        grid_hw: [rows.len(), cols.len()],
        layers: layers.iter().copied().zip(maps).collect(),
        classes,
        squares_per_pass: per_pass,
        unbatched,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_cover_the_image_edge() {
        let s = OcclusionSpec {
            size_px: 4,
            stride_px: 3,
            fill: 0.0,
        };
        assert_eq!(s.offsets(10), vec![0, 3, 6]);
        assert_eq!(s.offsets(11), vec![0, 3, 6, 7]);
        assert_eq!(
            OcclusionSpec::for_input([224, 224]),
            OcclusionSpec {
                size_px: 28,
                stride_px: 14,
                fill: 0.0
            }
        );
        assert_eq!(
            s.offsets(2),
            vec![0],
            "a square larger than the image covers it once"
        );
    }
}
