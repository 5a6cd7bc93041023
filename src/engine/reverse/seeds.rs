//! The seeds a per-filter reverse pass starts from: one-hot channel sums of a layer's output.

use std::ops::Range;

use burn::tensor::{Tensor, TensorData};

use crate::engine::ops::T6;

/// Seeds for channels `range` of a `[1, C, H, W]` layer: `[B, 1, 1, C, H, W]`, seed `j` one-hot
/// on channel `range.start + j`, all ones over `(h, w)` (the gradient of `J_k`).
pub fn channel_seeds(
    range: Range<usize>,
    (c, h, w): (usize, usize, usize),
    device: &burn::tensor::Device,
) -> T6 {
    let b = range.len();
    let mut onehot = vec![0f32; b * c];
    for (j, k) in range.enumerate() {
        onehot[j * c + k] = 1.0;
    }
    Tensor::<6>::from_data(TensorData::new(onehot, [b, 1, 1, c, 1, 1]), device)
        .expand([b, 1, 1, c, h, w])
}
