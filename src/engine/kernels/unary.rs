//! Element-wise activations on the CPU (flex) device: ReLU and Clip (ReLU6) as one parallel
//! pass that writes its output once. Flex ran ReLU6 as `clamp_min` then `clamp_max`, two
//! passes over a fresh buffer each: 5.2–5.8 ms of EfficientNet-Lite0's forward pass for its 33
//! ReLU6 nodes (2-core Intel Xeon, AVX-512), the largest share after the convolutions.

use rayon::prelude::*;

/// Values per parallel task: large enough that a task's work outweighs scheduling it.
const TASK_LEN: usize = 1 << 14;

/// `x` clamped to `[min, max]` (`-∞` / `+∞` leave that side open; ReLU is `[0, +∞]`); NaN
/// stays NaN, as ONNX's Clip and Relu give it.
pub fn clamp(x: &[f32], min: f32, max: f32) -> Vec<f32> {
    let mut out = Vec::with_capacity(x.len());
    out.spare_capacity_mut()[..x.len()]
        .par_chunks_mut(TASK_LEN)
        .zip(x.par_chunks(TASK_LEN))
        .for_each(|(dst, src)| {
            for (d, &v) in dst.iter_mut().zip(src) {
                d.write(clamp_one(v, min, max));
            }
        });
    // SAFETY: the chunks cover the first `x.len()` slots and each was written above.
    unsafe { out.set_len(x.len()) };
    out
}

/// Compare-and-select: keeps NaN (both comparisons are false) and vectorises.
#[inline(always)]
fn clamp_one(v: f32, min: f32, max: f32) -> f32 {
    let v = if v < min { min } else { v };
    if v > max { max } else { v }
}

/// [`clamp`] into `x`'s own buffer: for a value the forward pass no longer needs.
pub fn clamp_in_place(x: &mut [f32], min: f32, max: f32) {
    x.par_chunks_mut(TASK_LEN).for_each(|chunk| {
        for v in chunk.iter_mut() {
            *v = clamp_one(*v, min, max);
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clamps_like_relu6_and_keeps_nan() {
        let x = [
            -3.0,
            -0.0,
            0.5,
            6.0,
            7.5,
            f32::NAN,
            f32::INFINITY,
            f32::NEG_INFINITY,
        ];
        let got = clamp(&x, 0.0, 6.0);
        assert_eq!(&got[..5], &[0.0, -0.0, 0.5, 6.0, 6.0]);
        assert!(got[5].is_nan());
        assert_eq!(&got[6..], &[6.0, 0.0]);
        let mut in_place = x;
        clamp_in_place(&mut in_place, 0.0, 6.0);
        assert_eq!(in_place[..5], got[..5]);
        assert!(in_place[5].is_nan());
        assert_eq!(in_place[6..], got[6..]);
        let relu = clamp(&x, 0.0, f32::INFINITY);
        assert_eq!(relu[6], f32::INFINITY);
        assert_eq!(relu[4], 7.5);
    }

    #[test]
    fn long_inputs_keep_their_order() {
        let x: Vec<f32> = (0..3 * TASK_LEN + 17).map(|i| i as f32 - 1000.0).collect();
        let got = clamp(&x, -5.0, 40_000.0);
        for (i, (&g, &v)) in got.iter().zip(&x).enumerate() {
            assert_eq!(g, v.clamp(-5.0, 40_000.0), "value {i}");
        }
    }
}
