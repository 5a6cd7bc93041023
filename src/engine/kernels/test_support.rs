//! What the kernels' unit tests share: deterministic values, a geometry from plain numbers,
//! and the convolution's definition summed in f64 with explicit bounds checks (the
//! independent reference the direct and depthwise kernels are checked against).

use super::geometry::ConvGeometry;
use crate::model::graph::Window2d;

/// `n` values in [-1, 1), a different sequence per `salt`.
pub fn values(n: usize, salt: u64) -> Vec<f32> {
    (0..n as u64)
        .map(|i| (((i + salt) * 2_654_435_761) % 1000) as f32 / 500.0 - 1.0)
        .collect()
}

/// The geometry of `x [n, c_in, h, w]` ⊛ `[c_out, c_in / groups, kernel]` with `strides`,
/// `pads` `[top, left, bottom, right]` and `dilations`; the output size follows.
pub fn geometry(
    [n, c_in, c_out, groups]: [usize; 4],
    [h, w]: [usize; 2],
    kernel: [usize; 2],
    strides: [usize; 2],
    pads: [usize; 4],
    dilations: [usize; 2],
) -> ConvGeometry {
    let window = Window2d {
        kernel,
        strides,
        pads: [(pads[0], pads[2]), (pads[1], pads[3])],
        dilations,
    };
    let out =
        |len: usize, k: usize, s: usize, d: usize, p: usize| (len + p - d * (k - 1) - 1) / s + 1;
    let ho = out(h, kernel[0], strides[0], dilations[0], pads[0] + pads[2]);
    let wo = out(w, kernel[1], strides[1], dilations[1], pads[1] + pads[3]);
    ConvGeometry::new(
        &window,
        groups,
        &[n, c_in, h, w],
        &[c_out, c_in / groups, kernel[0], kernel[1]],
        &[n, c_out, ho, wo],
    )
    .expect("valid geometry")
}

/// Largest |got − definition| over the output `got` (`[n, c_out, ho, wo]`) of `g`, grouped
/// or not, with `bias`.
pub fn worst_error(got: &[f32], x: &[f32], weight: &[f32], bias: &[f32], g: &ConvGeometry) -> f64 {
    let [kh, kw] = g.kernel;
    let (cg_in, cg_out) = (g.c_in / g.groups, g.c_out / g.groups);
    let mut worst = 0f64;
    for (plane, out) in got.chunks(g.ho * g.wo).enumerate() {
        let (b, o) = (plane / g.c_out, plane % g.c_out);
        let first_in = o / cg_out * cg_in;
        for oy in 0..g.ho {
            for ox in 0..g.wo {
                let mut want = f64::from(bias[o]);
                for ci in 0..cg_in {
                    for ky in 0..kh {
                        for kx in 0..kw {
                            let iy = (oy * g.strides[0] + ky * g.dilations[0]) as isize
                                - g.pads_before[0] as isize;
                            let ix = (ox * g.strides[1] + kx * g.dilations[1]) as isize
                                - g.pads_before[1] as isize;
                            if (0..g.h as isize).contains(&iy) && (0..g.w as isize).contains(&ix) {
                                let w = weight[((o * cg_in + ci) * kh + ky) * kw + kx];
                                let v = x[((b * g.c_in + first_in + ci) * g.h + iy as usize) * g.w
                                    + ix as usize];
                                want += f64::from(w) * f64::from(v);
                            }
                        }
                    }
                }
                worst = worst.max((f64::from(out[oy * g.wo + ox]) - want).abs());
            }
        }
    }
    worst
}
