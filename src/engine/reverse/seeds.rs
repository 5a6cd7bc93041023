//! The seeds a per-filter reverse pass starts from: one-hot channel sums of a layer's output,
//! many seeds over one input ([`channel_seeds`]) or one seed per input of a batch
//! ([`per_input_seeds`]).

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

/// One seed for a batch of `N = channels.len()` inputs through a `[N, C, H, W]` layer:
/// `[1, 1, N, C, H, W]`, sample `k` one-hot on channel `channels[k]`, all ones over `(h, w)`.
/// The samples of a batchable graph never mix, so the one reverse pass gives each input the
/// gradient of its own channel's sum. `None` when a channel is out of range.
pub fn per_input_seeds(
    channels: &[usize],
    (c, h, w): (usize, usize, usize),
    device: &burn::tensor::Device,
) -> Option<T6> {
    let n = channels.len();
    let mut onehot = vec![0f32; n * c];
    for (k, &channel) in channels.iter().enumerate() {
        *onehot.get_mut(k * c + channel).filter(|_| channel < c)? = 1.0;
    }
    Some(
        Tensor::<6>::from_data(TensorData::new(onehot, [1, 1, n, c, 1, 1]), device)
            .expand([1, 1, n, c, h, w]),
    )
}
