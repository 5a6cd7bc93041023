//! Input gradients of depthwise convolutions (one filter per channel: `groups = c_in =
//! c_out`, as in EfficientNet and MobileNet) on the CPU (flex), for the reverse pass
//! (`vjp_spatial`). Each channel's gradient plane is added back onto its input plane once per
//! kernel tap, a whole output row at a time: for stride 1 that is one contiguous
//! multiply-add per (tap, row), which the compiler vectorises. The GEMM path has one output
//! channel per group here (a `[kh·kw, 1]` product per pixel) and the sparse path one value per
//! tap per non-zero; EfficientNet-Lite0's guided backprop of `/_conv_head/Conv` spent 13 s of
//! 40 in those.

use rayon::prelude::*;

use super::geometry::ConvGeometry;

/// The input gradient `[n, c, h, w]` of a depthwise convolution with geometry `g` for the
/// output gradient `grad [n, c, ho, wo]` and weights `weight [c, 1, kh, kw]` (row-major
/// `f32`); `None` unless `g` is depthwise with one filter per channel. Planes run in
/// parallel.
pub fn depthwise_input_grad(grad: &[f32], weight: &[f32], g: &ConvGeometry) -> Option<Vec<f32>> {
    if g.groups != g.c_in || g.c_out != g.c_in {
        return None;
    }
    let [kh, kw] = g.kernel;
    let (plane_in, plane_out) = (g.h * g.w, g.ho * g.wo);
    if grad.len() != g.n * g.c_out * plane_out || weight.len() != g.c_out * kh * kw {
        return None;
    }
    let mut out = vec![0f32; g.n * g.c_in * plane_in];
    out.par_chunks_mut(plane_in.max(1))
        .enumerate()
        .for_each(|(plane, dst)| {
            let src = &grad[plane * plane_out..][..plane_out];
            let taps = &weight[(plane % g.c_in) * kh * kw..][..kh * kw];
            add_plane_gradient(dst, src, taps, g);
        });
    Some(out)
}

/// Adds one channel's output gradient `src [ho, wo]` onto its input plane `dst [h, w]`
/// through the channel's `taps [kh, kw]`: `dst[oy·sy + ky·dy − py][ox·sx + kx·dx − px] +=
/// taps[ky][kx] · src[oy][ox]`, positions in the padding dropped.
fn add_plane_gradient(dst: &mut [f32], src: &[f32], taps: &[f32], g: &ConvGeometry) {
    if src.iter().all(|v| *v == 0.0) {
        return; // a gated-off channel (common after guided backprop's ReLU gates)
    }
    let [kh, kw] = g.kernel;
    let [sy, sx] = g.strides;
    let [dy, dx] = g.dilations;
    let [py, px] = g.pads_before;
    for ky in 0..kh {
        for kx in 0..kw {
            let tap = taps[ky * kw + kx];
            if tap == 0.0 {
                continue;
            }
            // Output columns whose input column `ox·sx + off_x` lies inside the plane.
            let off_x = (kx * dx) as isize - px as isize;
            let Some(cols) = inside(off_x, sx, g.w, g.wo) else {
                continue;
            };
            for oy in 0..g.ho {
                let iy = (oy * sy + ky * dy) as isize - py as isize;
                if iy < 0 || iy >= g.h as isize {
                    continue;
                }
                let row_in = &mut dst[iy as usize * g.w..][..g.w];
                let row_out = &src[oy * g.wo..][..g.wo][cols.clone()];
                let first = (cols.start as isize * sx as isize + off_x) as usize;
                if sx == 1 {
                    let row_in = &mut row_in[first..first + row_out.len()];
                    for (d, v) in row_in.iter_mut().zip(row_out) {
                        *d += tap * v;
                    }
                } else {
                    for (d, v) in row_in[first..].iter_mut().step_by(sx).zip(row_out) {
                        *d += tap * v;
                    }
                }
            }
        }
    }
}

/// The output positions `o` in `0..out_len` whose input position `o·stride + offset` lies in
/// `0..in_len`; `None` when there are none.
fn inside(
    offset: isize,
    stride: usize,
    in_len: usize,
    out_len: usize,
) -> Option<std::ops::Range<usize>> {
    let s = stride as isize;
    // Smallest o with o·s + offset ≥ 0, largest with o·s + offset ≤ in_len − 1.
    let lo = if offset >= 0 {
        0
    } else {
        (-offset + s - 1) / s
    };
    let hi = (in_len as isize - 1 - offset).div_euclid(s) + 1;
    let (lo, hi) = (lo.max(0) as usize, hi.clamp(0, out_len as isize) as usize);
    (lo < hi).then_some(lo..hi)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::kernels::conv::conv2d_input_grad;
    use crate::model::graph::Window2d;

    fn values(n: usize, salt: u64) -> Vec<f32> {
        (0..n as u64)
            .map(|i| (((i + salt) * 2_654_435_761) % 1000) as f32 / 500.0 - 1.0)
            .collect()
    }

    /// `(n, c, h, w, kernel, strides, pads [top, left, bottom, right], dilations)`.
    type Case = (
        usize,
        usize,
        usize,
        usize,
        [usize; 2],
        [usize; 2],
        [usize; 4],
        [usize; 2],
    );

    fn geometry(&(n, c, h, w, kernel, strides, pads, dilations): &Case) -> ConvGeometry {
        let window = Window2d {
            kernel,
            strides,
            pads: [(pads[0], pads[2]), (pads[1], pads[3])],
            dilations,
        };
        let out = |len: usize, k: usize, s: usize, d: usize, p: usize| {
            (len + p - d * (k - 1) - 1) / s + 1
        };
        let ho = out(h, kernel[0], strides[0], dilations[0], pads[0] + pads[2]);
        let wo = out(w, kernel[1], strides[1], dilations[1], pads[1] + pads[3]);
        ConvGeometry::new(
            &window,
            c,
            &[n, c, h, w],
            &[c, 1, kernel[0], kernel[1]],
            &[n, c, ho, wo],
        )
        .expect("valid geometry")
    }

    /// Equal to the GEMM + col2im path (itself checked as the convolution's adjoint in
    /// `kernels::conv`) on EfficientNet's depthwise shapes in small: 3×3 and 5×5, stride 1 and 2,
    /// symmetric and asymmetric padding, a dilation, a batch, and a gradient with zeros.
    #[test]
    fn equals_the_gemm_path() {
        let cases: [Case; 6] = [
            (1, 4, 9, 9, [3, 3], [1, 1], [1, 1, 1, 1], [1, 1]),
            (2, 3, 12, 10, [3, 3], [2, 2], [0, 0, 1, 1], [1, 1]),
            (1, 5, 11, 11, [5, 5], [2, 2], [1, 1, 2, 2], [1, 1]),
            (2, 2, 8, 8, [5, 5], [1, 1], [2, 2, 2, 2], [1, 1]),
            (1, 3, 10, 9, [3, 3], [1, 1], [2, 2, 2, 2], [2, 2]),
            (1, 2, 7, 6, [3, 1], [1, 3], [1, 0, 1, 0], [1, 1]),
        ];
        for (i, case) in cases.iter().enumerate() {
            let g = geometry(case);
            let mut grad = values(g.n * g.c_out * g.ho * g.wo, 5 + i as u64);
            // Gate off every third value and one whole plane, as a ReLU gate would.
            grad.iter_mut().step_by(3).for_each(|v| *v = 0.0);
            grad[..g.ho * g.wo].fill(0.0);
            let weight = values(g.c_out * g.kernel[0] * g.kernel[1], 17 + i as u64);
            let want = conv2d_input_grad(&grad, &weight, &g);
            let got = depthwise_input_grad(&grad, &weight, &g).expect("depthwise");
            let worst = got
                .iter()
                .zip(&want)
                .fold(0f32, |m, (a, b)| m.max((a - b).abs()));
            assert!(worst <= 1e-5, "case {i}: max |Δ| {worst:e}");
        }
    }

    #[test]
    fn only_depthwise_geometries_are_taken() {
        let window = Window2d {
            kernel: [3, 3],
            strides: [1, 1],
            pads: [(1, 1), (1, 1)],
            dilations: [1, 1],
        };
        // Grouped but two filters per group, and ungrouped.
        let grouped =
            ConvGeometry::new(&window, 2, &[1, 4, 5, 5], &[4, 2, 3, 3], &[1, 4, 5, 5]).unwrap();
        let dense =
            ConvGeometry::new(&window, 1, &[1, 4, 5, 5], &[4, 4, 3, 3], &[1, 4, 5, 5]).unwrap();
        let grad = vec![1.0; 100];
        assert!(depthwise_input_grad(&grad, &[0.0; 72], &grouped).is_none());
        assert!(depthwise_input_grad(&grad, &[0.0; 144], &dense).is_none());
    }

    #[test]
    fn inside_ranges_by_hand() {
        // Stride 1, offset −1 over 5 inputs and 5 outputs: o = 1..5 reads 0..4.
        assert_eq!(inside(-1, 1, 5, 5), Some(1..5));
        // Stride 2, offset 1, 8 inputs, 4 outputs: 1, 3, 5, 7 → o = 0..4.
        assert_eq!(inside(1, 2, 8, 4), Some(0..4));
        // Stride 2, offset −3: o·2 − 3 ≥ 0 from o = 2.
        assert_eq!(inside(-3, 2, 8, 6), Some(2..6));
        assert_eq!(inside(9, 1, 8, 4), None);
    }
}
