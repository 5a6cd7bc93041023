//! Occlusion sensitivity (Zeiler & Fergus): a square of the input is set to a constant
//! (0 in normalised units, i.e. the mean colour) and slid over the image; at each position the
//! drop of every selected layer's per-channel response `J_k = Σ_{h,w} channel k` and of every
//! class score is recorded. One forward pass per position (the engine's shapes are static,
//! batch 1), capturing only the selected layers.

use std::collections::HashSet;
use std::ops::ControlFlow;

use crate::engine::{Capture, Engine, Result};
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
}

/// Per-channel sums of a `[1, C, ...]` value.
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

/// Runs the occlusion sweep. `layers` must have `[1, C, H, W]` outputs; `on_pass(done,
/// total)` is called after every occluded forward pass (for progress) and may stop the sweep
/// with `ControlFlow::Break`: then `None`.
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
    let capture = Capture::Layers(names);
    let channels: Vec<usize> = layers
        .iter()
        .map(|&i| graph.nodes[i].feature_map_dims().map_or(1, |d| d.0))
        .collect();
    // Responses (per-channel sums per layer, then the class scores) for one input.
    let respond = |x: &InputTensor| -> Result<Vec<Vec<f64>>> {
        let acts = engine.forward(x, &capture)?;
        let mut out = Vec::with_capacity(layers.len() + 1);
        for (&i, &c) in layers.iter().zip(&channels) {
            out.push(channel_sums(
                &acts.read(&graph.nodes[i].outputs[0])?.data,
                c,
            ));
        }
        out.push(
            acts.read_output()?
                .data
                .iter()
                .map(|&x| f64::from(x))
                .collect(),
        );
        Ok(out)
    };
    let base = respond(input)?;
    let (rows, cols) = (spec.offsets(h), spec.offsets(w));
    let cells = rows.len() * cols.len();
    let mut maps: Vec<Vec<f32>> = base.iter().map(|b| vec![0f32; b.len() * cells]).collect();
    let size = spec.size_px.min(h).min(w);
    let mut occluded = input.clone();
    occluded.picture = None;
    for (r, &y0) in rows.iter().enumerate() {
        for (c, &x0) in cols.iter().enumerate() {
            occluded.data.copy_from_slice(&input.data);
            for p in 0..planes {
                for y in y0..(y0 + size).min(h) {
                    let row = p * h * w + y * w;
                    occluded.data[row + x0..row + (x0 + size).min(w)].fill(spec.fill);
                }
            }
            let got = respond(&occluded)?;
            let cell = r * cols.len() + c;
            for ((map, b), g) in maps.iter_mut().zip(&base).zip(&got) {
                for (k, (bk, gk)) in b.iter().zip(g).enumerate() {
                    map[k * cells + cell] = (bk - gk) as f32;
                }
            }
            if on_pass(cell + 1, cells).is_break() {
                return Ok(None);
            }
        }
    }
    let classes = maps.pop().unwrap_or_default();
    Ok(Some(OcclusionMaps {
        grid_hw: [rows.len(), cols.len()],
        layers: layers.iter().copied().zip(maps).collect(),
        classes,
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
