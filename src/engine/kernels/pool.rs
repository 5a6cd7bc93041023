//! 2-D max-pooling on the CPU (flex) device, one pass over each plane on the host: flex's
//! pooling took 1.4 ms for AlexNet's first pool (96 planes of 54×54), this about a tenth.
//! Used by [`crate::engine::Engine`]'s forward pass for MaxPool nodes on flex; the reverse pass
//! routes gradients through the switches separately ([`super::reverse`]).

use rayon::prelude::*;

use crate::model::graph::Window2d;

/// Shapes of one max-pooling: input `[n, c, h, w]`, output `[n, c, ho, wo]` (the output size
/// carries the ceil/floor choice; windows reaching past the input or into the padding only
/// see the input positions they cover).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PoolGeometry {
    pub planes: usize,
    pub h: usize,
    pub w: usize,
    pub kernel: [usize; 2],
    pub strides: [usize; 2],
    /// `[top, left]` padding.
    pub pads_before: [usize; 2],
    pub dilations: [usize; 2],
    pub ho: usize,
    pub wo: usize,
}

impl PoolGeometry {
    /// From the node's window and its 4-D input and output shapes; `None` for other ranks,
    /// a zero kernel, stride or dilation, or an output whose batch/channels differ.
    pub fn new(window: &Window2d, x: &[usize], out: &[usize]) -> Option<Self> {
        let (&[n, c, h, w], &[n2, c2, ho, wo]) = (x, out) else {
            return None;
        };
        let positive = |v: [usize; 2]| v.iter().all(|&d| d > 0);
        (n == n2
            && c == c2
            && positive(window.kernel)
            && positive(window.strides)
            && positive(window.dilations))
        .then_some(Self {
            planes: n * c,
            h,
            w,
            kernel: window.kernel,
            strides: window.strides,
            pads_before: [window.pads[0].0, window.pads[1].0],
            dilations: window.dilations,
            ho,
            wo,
        })
    }
}

/// The max over each window of `x` (`[n, c, h, w]`, row-major): `[n, c, ho, wo]`. A NaN in
/// a window makes its maximum NaN; a window that covers no input position gives −∞.
pub fn max_pool2d(x: &[f32], g: &PoolGeometry) -> Vec<f32> {
    per_window(
        x,
        g,
        f32::NEG_INFINITY,
        |src, row_taps, col_taps, nan_free| {
            let mut m = f32::NEG_INFINITY;
            for &iy in row_taps {
                let row = &src[iy * g.w..][..g.w];
                for &ix in col_taps {
                    let v = row[ix];
                    // NaN-free planes (all but broken ones) take a branch-free max per tap.
                    if nan_free {
                        m = if v > m { v } else { m };
                    } else if v > m || v.is_nan() && !m.is_nan() {
                        m = v;
                    }
                }
            }
            m
        },
    )
}

/// One value per output window of `x` (`[planes, h, w]`): `window(plane, rows, columns,
/// nan_free)` with the input rows and columns the window covers and whether its plane is
/// free of NaN; `empty` everywhere when a plane or the output is empty. Planes in parallel.
fn per_window<T: Copy + Send + Sync>(
    x: &[f32],
    g: &PoolGeometry,
    empty: T,
    window: impl Fn(&[f32], &[usize], &[usize], bool) -> T + Sync,
) -> Vec<T> {
    let (plane_in, plane_out) = (g.h * g.w, g.ho * g.wo);
    assert_eq!(x.len(), g.planes * plane_in, "max-pool input for {g:?}");
    let mut out = vec![empty; g.planes * plane_out];
    if plane_out == 0 || plane_in == 0 {
        return out;
    }
    let (rows, cols) = (window_taps(g, 0), window_taps(g, 1));
    out.par_chunks_mut(plane_out)
        .zip(x.par_chunks(plane_in))
        .for_each(|(dst, src)| {
            let nan_free = !src.iter().fold(false, |any, v| any | v.is_nan());
            for (dst_row, row_taps) in dst.chunks_mut(g.wo).zip(&rows) {
                for (d, col_taps) in dst_row.iter_mut().zip(&cols) {
                    *d = window(src, row_taps, col_taps, nan_free);
                }
            }
        });
    out
}

/// For each output row (`axis` 0) or column (1), the input rows or columns its window
/// covers: `o·s + k·d − pad` inside the input.
fn window_taps(g: &PoolGeometry, axis: usize) -> Vec<Vec<usize>> {
    let (outs, size) = if axis == 0 { (g.ho, g.h) } else { (g.wo, g.w) };
    (0..outs)
        .map(|o| {
            (0..g.kernel[axis])
                .filter_map(|k| {
                    (o * g.strides[axis] + k * g.dilations[axis])
                        .checked_sub(g.pads_before[axis])
                        .filter(|&i| i < size)
                })
                .collect()
        })
        .collect()
}

/// The "switches" of [`max_pool2d`] for the reverse pass: per output, the flat index `iy·w +
/// ix` in its plane of the input its maximum came from — the first maximum in the window's
/// row-major order, a NaN taking precedence (as PyTorch's and burn's `max_pool2d_with_indices`
/// choose); `−1` for a window that covers no input. One pass per plane on the host (burn's
/// indices, then their conversion to `i64`, cost feature vis of AlexNet 4 ms per step).
pub fn max_pool_switches(x: &[f32], g: &PoolGeometry) -> Vec<i64> {
    per_window(x, g, -1, |src, row_taps, col_taps, _| {
        let (mut m, mut at) = (f32::NEG_INFINITY, -1i64);
        for &iy in row_taps {
            for &ix in col_taps {
                let v = src[iy * g.w + ix];
                if at < 0 || v > m || v.is_nan() && !m.is_nan() {
                    (m, at) = (v, (iy * g.w + ix) as i64);
                }
            }
        }
        at
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn geometry(
        [planes, h, w]: [usize; 3],
        kernel: [usize; 2],
        strides: [usize; 2],
        pads_before: [usize; 2],
        dilations: [usize; 2],
        [ho, wo]: [usize; 2],
    ) -> PoolGeometry {
        PoolGeometry {
            planes,
            h,
            w,
            kernel,
            strides,
            pads_before,
            dilations,
            ho,
            wo,
        }
    }

    /// Where the maxima came from: ties go to the first position in row-major order (the
    /// zeros behind a ReLU), a NaN wins its window, padding is never chosen.
    #[test]
    fn switches_by_hand() {
        // 1 plane 3×4, 2×2 windows, stride 2, pad 1 top/left, output 2×3 (as below).
        #[rustfmt::skip]
        let x = [
            0.0, 0.0, 5.0, 5.0, //
            0.0, 2.0, f32::NAN, 1.0, //
            3.0, 3.0, 0.0, 0.0,
        ];
        let g = geometry([1, 3, 4], [2, 2], [2, 2], [1, 1], [1, 1], [2, 3]);
        // Windows: rows {0} / {1, 2}, columns {0} / {1, 2} / {3}.
        let want = [0, 2, 3, 8, 6, 7];
        assert_eq!(max_pool_switches(&x, &g), want);
        // The maxima at the switches are the forward pass's (NaN included).
        let maxima = max_pool2d(&x, &g);
        for (m, &at) in maxima.iter().zip(&want) {
            let v = x[at as usize];
            assert!(
                v == *m || v.is_nan() && m.is_nan(),
                "{v} at {at} vs max {m}"
            );
        }
    }

    #[test]
    fn windows_by_hand() {
        // 1 plane 3×4, 2×2 windows, stride 2, pad 1 top/left, ceil-sized output 2×3:
        // the top-left window sees only x[0][0], the last column's window only x[..][3].
        let x = [
            1.0, 2.0, 3.0, 4.0, //
            5.0, 6.0, 7.0, 8.0, //
            9.0, 10.0, 11.0, 12.0,
        ];
        let g = geometry([1, 3, 4], [2, 2], [2, 2], [1, 1], [1, 1], [2, 3]);
        assert_eq!(max_pool2d(&x, &g), vec![1.0, 3.0, 4.0, 9.0, 11.0, 12.0]);
        // Dilation 2, no padding: each 2×2 window spans 3×3 input positions.
        let g = geometry([1, 3, 4], [2, 2], [1, 1], [0, 0], [2, 2], [1, 2]);
        assert_eq!(max_pool2d(&x, &g), vec![11.0, 12.0]);
        // NaN propagates; a second plane is independent.
        let mut x2 = x.to_vec();
        x2[5] = f32::NAN;
        x2.extend(x.iter().map(|v| -v));
        let g = geometry([2, 3, 4], [2, 2], [2, 2], [0, 0], [1, 1], [1, 2]);
        let got = max_pool2d(&x2, &g);
        assert!(got[0].is_nan());
        assert_eq!(&got[1..], &[8.0, -1.0, -3.0]);
    }
}
