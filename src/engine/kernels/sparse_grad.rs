//! Convolution input gradients for *sparse* output gradients, on the CPU (flex). In guided
//! backprop and deconvnet the gradient reaching a convolution has passed a ReLU gate that
//! keeps only positive values (and, for guided backprop, only where the forward value was
//! positive): on AlexNet-shaped networks 10–16% of its values are non-zero, and a one-hot
//! seed has `1/C`. A dense GEMM multiplies all the zeros; here each non-zero output gradient
//! `v` at `(co, oy, ox)` adds `v · W[co]` onto the input positions its window covers, so the
//! work is proportional to the non-zeros. The reverse pass (`vjp_spatial`) picks this path
//! from the measured density ([`super::conv::input_grad_path`]).
//!
//! Layout: the weights are permuted once per call to `[c_out, kh, kw, c_in/g]` and each
//! image's gradient accumulates channels-last per group, `[g, h, w, c_in/g]`, so one kernel
//! row of one output gradient (`kw` taps × the group's channels) is one contiguous
//! multiply-add of `kw · c_in/g` values when the dilation is 1. The image is transposed back
//! to `[c_in, h, w]` at the end.

use rayon::prelude::*;

use super::geometry::ConvGeometry;
#[cfg(target_arch = "x86_64")]
use super::simd::{self, SimdLevel};

/// Highest fraction of non-zero output gradients for which [`conv2d_input_grad_sparse`]
/// beats the dense GEMM path; measured on AlexNet-shaped layers (1×1 and depthwise layers
/// have lower limits: [`super::conv::input_grad_path`]).
pub const MAX_DENSITY: f64 = 0.35;

/// Fraction of non-zero values in `grad` (0 for an empty slice): exact for short gradients,
/// else from every 8th block of 1024 values — it only picks a kernel (the kernels agree up to
/// summation order), and a full count was 3.5% of EfficientNet-Lite0's feature vis.
pub fn density(grad: &[f32]) -> f64 {
    const BLOCK: usize = 1024;
    const EVERY: usize = 8;
    let count = |c: &[f32]| c.iter().map(|v| usize::from(*v != 0.0)).sum::<usize>();
    if grad.len() < BLOCK * EVERY * 16 {
        return count(grad) as f64 / grad.len().max(1) as f64;
    }
    let (nonzero, seen) = (grad.par_chunks(BLOCK).step_by(EVERY))
        .map(|c| (count(c), c.len()))
        .reduce(|| (0, 0), |a, b| (a.0 + b.0, a.1 + b.1));
    nonzero as f64 / seen.max(1) as f64
}

/// The input gradient `[n, c_in, h, w]` of a convolution with geometry `g`, for the output
/// gradient `grad [n, c_out, ho, wo]` and weights `weight [c_out, c_in/g, kh, kw]` (row-major
/// `f32`). Equal to [`super::conv::conv2d_input_grad`] up to summation order; images run
/// in parallel.
pub fn conv2d_input_grad_sparse(grad: &[f32], weight: &[f32], g: &ConvGeometry) -> Vec<f32> {
    let cg_in = g.c_in / g.groups;
    let [kh, kw] = g.kernel;
    assert!(
        grad.len() == g.n * g.c_out * g.ho * g.wo && weight.len() == g.c_out * cg_in * kh * kw,
        "sparse conv input gradient: {} gradient and {} weight values for {g:?}",
        grad.len(),
        weight.len()
    );
    // [c_out, cg_in, kh, kw] → [c_out, kh, kw, cg_in]
    let mut taps = vec![0f32; weight.len()];
    for co in 0..g.c_out {
        for ci in 0..cg_in {
            for k in 0..kh * kw {
                taps[(co * kh * kw + k) * cg_in + ci] = weight[(co * cg_in + ci) * kh * kw + k];
            }
        }
    }
    let plane_in = g.c_in * g.h * g.w;
    let plane_out = g.c_out * g.ho * g.wo;
    let mut out = super::zeros_to_accumulate(g.n * plane_in);
    if plane_in == 0 {
        return out;
    }
    out.par_chunks_mut(plane_in)
        .zip(grad.par_chunks(plane_out.max(1)))
        .for_each_init(Vec::new, |acc: &mut Vec<f32>, (dst, grad)| {
            acc.clear();
            acc.resize(plane_in, 0.0); // [groups, h, w, cg_in]
            scatter_image(acc, grad, &taps, g);
            // [groups, h, w, cg_in] → [c_in, h, w]
            let hw = g.h * g.w;
            for grp in 0..g.groups {
                let acc = &acc[grp * hw * cg_in..][..hw * cg_in];
                for ci in 0..cg_in {
                    let row = &mut dst[(grp * cg_in + ci) * hw..][..hw];
                    for (p, d) in row.iter_mut().enumerate() {
                        *d = acc[p * cg_in + ci];
                    }
                }
            }
        });
    out
}

/// One image: every non-zero of `grad [c_out, ho, wo]` adds its weighted taps into `acc
/// [groups, h, w, cg_in]`. Uses AVX2 + FMA from the [`SimdLevel::Avx2Fma`] level up.
fn scatter_image(acc: &mut [f32], grad: &[f32], taps: &[f32], g: &ConvGeometry) {
    #[cfg(target_arch = "x86_64")]
    if simd::active() >= SimdLevel::Avx2Fma {
        // SAFETY: `simd::active` only returns levels the CPU supports, and every level from
        // Avx2Fma up has the features `scatter_image_avx2` is compiled for.
        unsafe { scatter_image_avx2(acc, grad, taps, g) };
        return;
    }
    scatter_image_with::<false>(acc, grad, taps, g);
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn scatter_image_avx2(acc: &mut [f32], grad: &[f32], taps: &[f32], g: &ConvGeometry) {
    scatter_image_with::<true>(acc, grad, taps, g);
}

/// The body of [`scatter_image`]; `FMA` selects fused multiply-adds (only where the CPU has
/// them: without hardware support `mul_add` is a slow library call).
#[inline(always)]
fn scatter_image_with<const FMA: bool>(
    acc: &mut [f32],
    grad: &[f32],
    taps: &[f32],
    g: &ConvGeometry,
) {
    let cg_in = g.c_in / g.groups;
    let cg_out = g.c_out / g.groups;
    let [kh, kw] = g.kernel;
    let [sh, sw] = g.strides;
    let [dh, dw] = g.dilations;
    let [pt, pl] = g.pads_before;
    let row_len = g.w * cg_in;
    let group_len = g.h * row_len;
    for co in 0..g.c_out {
        let w_co = &taps[co * kh * kw * cg_in..][..kh * kw * cg_in]; // [kh, kw, cg_in]
        let acc_group = &mut acc[co / cg_out * group_len..][..group_len]; // [h, w, cg_in]
        let plane = &grad[co * g.ho * g.wo..][..g.ho * g.wo];
        for (p, &v) in plane.iter().enumerate() {
            if v == 0.0 {
                continue;
            }
            let (oy, ox) = (p / g.wo, p % g.wo);
            // Taps kx whose input column ix = ox·sw + kx·dw − pl lies in [0, w).
            let x0 = ox * sw;
            let kx_lo = pl.saturating_sub(x0).div_ceil(dw.max(1));
            let kx_hi = kw.min((g.w + pl).saturating_sub(x0).div_ceil(dw.max(1)));
            if kx_lo >= kx_hi {
                continue;
            }
            let ix_lo = x0 + kx_lo * dw - pl;
            for ky in 0..kh {
                let Some(iy) = (oy * sh + ky * dh).checked_sub(pt) else {
                    continue;
                };
                if iy >= g.h {
                    break;
                }
                let w_row = &w_co[ky * kw * cg_in..][..kw * cg_in]; // [kw, cg_in]
                let acc_row = &mut acc_group[iy * row_len..][..row_len]; // [w, cg_in]
                if dw == 1 {
                    let n = (kx_hi - kx_lo) * cg_in;
                    axpy::<FMA>(
                        &mut acc_row[ix_lo * cg_in..][..n],
                        v,
                        &w_row[kx_lo * cg_in..][..n],
                    );
                } else {
                    for (j, kx) in (kx_lo..kx_hi).enumerate() {
                        axpy::<FMA>(
                            &mut acc_row[(ix_lo + j * dw) * cg_in..][..cg_in],
                            v,
                            &w_row[kx * cg_in..][..cg_in],
                        );
                    }
                }
            }
        }
    }
}

/// `dst += a · src`.
#[inline(always)]
fn axpy<const FMA: bool>(dst: &mut [f32], a: f32, src: &[f32]) {
    for (d, s) in dst.iter_mut().zip(src) {
        *d = if FMA { s.mul_add(a, *d) } else { *d + a * s };
    }
}

#[cfg(test)]
mod tests {
    use super::super::conv::conv2d_input_grad;
    use super::super::geometry::ConvGeometry;
    use super::*;

    /// A deterministic pseudo-random value in [-1, 1) for index `i` and stream `s`.
    fn hash(i: usize, s: u64) -> f32 {
        let mut x = (i as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ s;
        x ^= x >> 29;
        x = x.wrapping_mul(0xBF58_476D_1CE4_E5B9);
        x ^= x >> 32;
        (x % 2_000_001) as f32 / 1_000_000.0 - 1.0
    }

    fn geometry(
        [n, c_in, h, w, c_out]: [usize; 5],
        kernel: [usize; 2],
        strides: [usize; 2],
        pads_before: [usize; 2],
        dilations: [usize; 2],
        groups: usize,
        [ho, wo]: [usize; 2],
    ) -> ConvGeometry {
        ConvGeometry {
            n,
            c_in,
            h,
            w,
            c_out,
            kernel,
            strides,
            pads_before,
            dilations,
            groups,
            ho,
            wo,
        }
    }

    /// The sparse kernel equals the dense GEMM + col2im path (itself checked against the
    /// forward convolution by the adjoint identity in `kernels::conv`) on gradients with ~15% and
    /// 100% non-zeros, over strides, asymmetric pads, dilation, groups and an RGB first layer.
    #[test]
    fn sparse_input_gradient_equals_the_dense_one() {
        let cases = [
            // AlexNet conv1-like: 3 channels, 11×11, stride 4, no padding.
            geometry(
                [2, 3, 23, 23, 8],
                [11, 11],
                [4, 4],
                [0, 0],
                [1, 1],
                1,
                [4, 4],
            ),
            // 3×3 pad 1 with 2 groups.
            geometry([3, 8, 7, 6, 12], [3, 3], [1, 1], [1, 1], [1, 1], 2, [7, 6]),
            // 5×5 pad 2, stride 2, asymmetric (only top/left pads given; output smaller).
            geometry([1, 6, 9, 8, 4], [5, 5], [2, 2], [2, 1], [1, 1], 1, [4, 3]),
            // Dilated 3×3.
            geometry([2, 5, 10, 9, 6], [3, 3], [1, 1], [2, 2], [2, 2], 1, [10, 9]),
            // Depthwise 3×3 stride 2 and a pointwise 1×1.
            geometry([2, 6, 8, 8, 6], [3, 3], [2, 2], [1, 1], [1, 1], 6, [4, 4]),
            geometry([2, 7, 5, 4, 9], [1, 1], [1, 1], [0, 0], [1, 1], 1, [5, 4]),
        ];
        for (case, g) in cases.iter().enumerate() {
            let weight: Vec<f32> = (0..g.c_out * g.c_in / g.groups * g.kernel[0] * g.kernel[1])
                .map(|i| hash(i, 7))
                .collect();
            for keep in [0.15f32, 1.0] {
                let grad: Vec<f32> = (0..g.n * g.c_out * g.ho * g.wo)
                    .map(|i| {
                        let v = hash(i, 3);
                        if (hash(i, 11) + 1.0) / 2.0 < keep {
                            v
                        } else {
                            0.0
                        }
                    })
                    .collect();
                let want = conv2d_input_grad(&grad, &weight, g);
                let got = conv2d_input_grad_sparse(&grad, &weight, g);
                assert_eq!(got.len(), want.len());
                let scale = want.iter().fold(0f32, |m, v| m.max(v.abs())).max(1e-3);
                for (i, (a, b)) in got.iter().zip(&want).enumerate() {
                    assert!(
                        (a - b).abs() <= 1e-5 * scale,
                        "case {case}, keep {keep}, value {i}: sparse {a} vs dense {b}"
                    );
                }
                if keep < 1.0 {
                    let d = density(&grad);
                    assert!((0.1..0.2).contains(&d), "case {case}: density {d}");
                }
            }
        }
    }

    /// Exact on short gradients; on long ones the sampled estimate of a gradient whose
    /// non-zero share varies slowly (ReLU-gated planes) is within a few percent.
    #[test]
    fn density_exact_then_sampled() {
        assert_eq!(density(&[]), 0.0);
        assert_eq!(density(&[0.0, 1.0, -2.0, 0.0]), 0.5);
        // Planes of 3136 values, every third plane zero, the rest a quarter non-zero.
        let grad: Vec<f32> = (0..144 * 3136)
            .map(|i| {
                let plane = i / 3136;
                if plane % 3 == 0 || i % 4 != 0 {
                    0.0
                } else {
                    1.0
                }
            })
            .collect();
        let exact = grad.iter().filter(|v| **v != 0.0).count() as f64 / grad.len() as f64;
        let estimate = density(&grad);
        assert!((estimate - exact).abs() < 0.02, "{estimate} vs {exact}");
    }

    /// One non-zero by hand: 1 input channel, 2×2 kernel, stride 2, pad 1 on a 3×3 input;
    /// output gradient 1 at output (1, 1) covers input rows/columns 1..3 with taps
    /// (0,0)..(1,1) → the weights land at input (1..2, 1..2).
    #[test]
    fn one_nonzero_lands_on_its_window() {
        let g = geometry([1, 1, 3, 3, 1], [2, 2], [2, 2], [1, 1], [1, 1], 1, [2, 2]);
        let grad = [0.0, 0.0, 0.0, 2.0];
        let weight = [1.0, 2.0, 3.0, 4.0];
        let got = conv2d_input_grad_sparse(&grad, &weight, &g);
        assert_eq!(got, vec![0.0, 0.0, 0.0, 0.0, 2.0, 4.0, 0.0, 6.0, 8.0]);
        // Output (0, 0) only reaches input (0, 0), through tap (1, 1).
        let got = conv2d_input_grad_sparse(&[1.0, 0.0, 0.0, 0.0], &weight, &g);
        assert_eq!(got, vec![4.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0]);
    }
}
