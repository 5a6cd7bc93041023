//! The forward convolution on the CPU (flex) device: im2col into one `[K, Ho·Wo]` column
//! matrix per image and group, then a single multithreaded GEMM from the `gemm` crate (its
//! FMA kernels where the CPU has FMA, else scalar ones; it chooses at run time). On
//! AlexNet-shaped layers this is several times faster than flex's tiled convolution, which
//! runs many small GEMMs. Used by [`crate::engine::Engine`] for spatial convolutions with
//! deep column matrices and, through [`super::depthwise`] and [`super::pointwise`], for
//! depthwise and 1×1 ones. It reads the engine's weight tensors in
//! place. The same GEMM gives the reverse pass its dense input gradients
//! ([`conv2d_input_grad`]).
//!
//! The project had its own AVX-512 GEMM here until the dependencies were built without debug
//! assertions (issue 14); since then the `gemm` crate is faster on every AlexNet conv shape
//! (criterion, 2-core AMD EPYC Zen 4: conv1 0.98 vs 1.37 ms, conv5 0.77 vs 3.07 ms) and the
//! micro-kernel went.

use rayon::prelude::*;

use super::geometry::ConvGeometry;
use super::matmul::{matmul, matmul_onto};

use crate::model::{Graph, Node, Op};

/// `node`'s geometry when it is a Conv with constant weights (and bias) whose geometry
/// [`ConvGeometry::suits_gemm`] or is depthwise: the engine then runs it with [`conv2d`] on
/// its weight tensors; else `None` (the backend runs it).
pub fn plan(graph: &Graph, node: &Node) -> Option<ConvGeometry> {
    let Op::Conv { window, group } = &node.op else {
        return None;
    };
    let weight = graph.constants.get(node.inputs.get(1)?)?;
    if let Some(bias) = node.inputs.get(2) {
        graph.constants.get(bias)?;
    }
    let x = graph.shapes.get(node.inputs.first()?)?;
    let out = node.output_shapes.first()?;
    let geometry = ConvGeometry::new(window, *group, x, &weight.shape, out)?;
    let pointwise = geometry.is_pointwise() && geometry.groups == 1;
    (geometry.suits_gemm() || geometry.is_depthwise() || pointwise).then_some(geometry)
}

/// `x [n, c_in, h, w]` ⊛ `weight [c_out, c_in/g, kh, kw]` (+ `bias [c_out]`), row-major
/// `f32`: the output `[n, c_out, ho, wo]`. Depthwise geometries go to
/// [`super::depthwise::depthwise_conv2d`], 1×1 ones to [`super::pointwise`], and shallow
/// ones (K ≤ [`super::direct::MAX_K`]) at the AVX2 and AVX-512 levels to
/// [`super::direct::direct_conv2d`]: EfficientNet-Lite0's stem (3 → 32, 3×3 stride 2 at
/// 224²), medians of 200 alternated calls on a 2-core AMD EPYC (Zen 4): 0.37–0.39 → 0.25
/// ms at batch 1, 6.6–6.8 → 4.6–4.8 ms at batch 16, at both levels. At the portable level
/// (SSE2, no FMA) the direct kernel was slower (0.36 → 0.54 ms), so the GEMM stays.
pub fn conv2d(x: &[f32], weight: &[f32], bias: Option<&[f32]>, g: &ConvGeometry) -> Vec<f32> {
    if let Some(out) = super::depthwise::depthwise_conv2d(x, weight, bias, g) {
        return out;
    }
    if g.is_pointwise() && g.groups == 1 {
        return super::pointwise::pointwise_conv2d(x, weight, bias, g);
    }
    let level = super::simd::active();
    if level >= super::simd::SimdLevel::Avx2Fma
        && let Some(out) = super::direct::direct_conv2d(level, x, weight, bias, g)
    {
        return out;
    }
    let (k, cols_n) = (g.k(), g.ho * g.wo);
    let (cg_in, cg_out) = (g.c_in / g.groups, g.c_out / g.groups);
    let image_len = g.c_out * cols_n;
    let mut out = vec![0f32; g.n * image_len];
    if image_len == 0 {
        return out;
    }
    let pointwise = g.is_pointwise();
    // One image: its rows start as the bias, then each group's product is added on.
    let image = |b: usize, dst_image: &mut [f32], cols: &mut Vec<f32>, parallelism| {
        if let Some(bias) = bias {
            for (plane, &value) in dst_image.chunks_mut(cols_n).zip(bias) {
                plane.fill(value);
            }
        }
        for grp in 0..g.groups {
            let x_group = &x[(b * g.c_in + grp * cg_in) * g.h * g.w..][..cg_in * g.h * g.w];
            // [K, Ho·Wo]: a 1×1 stride-1 convolution reads the input as it is.
            let rhs: &[f32] = if pointwise {
                x_group
            } else {
                cols.resize(k * cols_n, 0.0);
                im2col(x_group, cg_in, g, cols);
                cols
            };
            let lhs = &weight[grp * cg_out * k..][..cg_out * k]; // [cg_out, K]
            let dst = &mut dst_image[grp * cg_out * cols_n..][..cg_out * cols_n];
            let mnk = [cg_out, cols_n, k];
            matmul_onto(dst, bias.is_some(), (lhs, false), rhs, mnk, parallelism);
        }
    };
    if g.n >= rayon::current_num_threads() {
        // Images side by side, one sequential GEMM each: the `gemm` crate's own threads
        // cost more than they gain on one image's product at feature vis's 128 px.
        (out.par_chunks_mut(image_len).enumerate()).for_each_init(Vec::new, |cols, (b, dst)| {
            image(b, dst, cols, gemm::Parallelism::None);
        });
    } else {
        let mut cols = Vec::new();
        for (b, dst) in out.chunks_mut(image_len).enumerate() {
            image(b, dst, &mut cols, gemm::Parallelism::Rayon(0));
        }
    }
    out
}

/// The input gradient of [`conv2d`] (its adjoint): `grad [n, c_out, ho, wo]` → `[n, c_in, h,
/// w]`. Per image and group, one GEMM `Wᵀ [K, c_out/g] × grad [c_out/g, ho·wo]` gives the
/// column matrix, which col2im adds back onto the input positions each window read (padding
/// dropped). Images run in parallel, each thread reusing its column buffer; with fewer images
/// than threads the GEMM itself is parallel.
pub fn conv2d_input_grad(grad: &[f32], weight: &[f32], g: &ConvGeometry) -> Vec<f32> {
    let (k, cols_n) = (g.k(), g.ho * g.wo);
    let (cg_in, cg_out) = (g.c_in / g.groups, g.c_out / g.groups);
    let plane_in = g.c_in * g.h * g.w;
    let mut out = super::zeros_to_accumulate(g.n * plane_in);
    let parallel_gemm = g.n < rayon::current_num_threads();
    let parallelism = if parallel_gemm {
        gemm::Parallelism::Rayon(0)
    } else {
        gemm::Parallelism::None
    };
    // A 1×1 stride-1 convolution's column matrix is the input gradient itself.
    let pointwise = g.is_pointwise();
    out.par_chunks_mut(plane_in).enumerate().for_each_init(
        Vec::new,
        |cols: &mut Vec<f32>, (b, dst_image)| {
            for grp in 0..g.groups {
                let lhs = &weight[grp * cg_out * k..][..cg_out * k]; // [cg_out, K], read as Wᵀ
                let rhs = &grad[(b * g.c_out + grp * cg_out) * cols_n..][..cg_out * cols_n];
                let dst = &mut dst_image[grp * cg_in * g.h * g.w..][..cg_in * g.h * g.w];
                if pointwise {
                    matmul(dst, (lhs, true), rhs, [k, cols_n, cg_out], parallelism);
                } else {
                    cols.resize(k * cols_n, 0.0);
                    matmul(cols, (lhs, true), rhs, [k, cols_n, cg_out], parallelism);
                    col2im_add(cols, g, dst);
                }
            }
        },
    );
    out
}

/// Which host kernel computes a convolution's input gradient in the reverse pass on flex.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InputGradPath {
    /// [`super::sparse_grad::conv2d_input_grad_sparse`]: work follows the non-zeros.
    Sparse,
    /// [`conv2d_input_grad`]: one GEMM per image and group, then col2im.
    Gemm,
    /// [`super::depthwise::depthwise_input_grad`]: one multiply-add per tap and row.
    Depthwise,
    /// Flex's transposed convolution (RGB-input and other thin layers).
    Flex,
}

/// The input-gradient kernel for geometry `g` and an output gradient whose fraction
/// `density` of values is non-zero. Measured per layer, 2 cores, AVX-512:
/// - spatial kernels with ≥ 8 channels per group on both sides: sparse up to
///   [`super::sparse_grad::MAX_DENSITY`] (AlexNet-shaped layers), else GEMM;
/// - 1×1 kernels (EfficientNet-Lite0, guided backprop of `/_conv_head/Conv`): GEMM above 8%
///   non-zeros — 24→144 channels at 56×56 with 22%: 1.0 s vs 3.1 s sparse; 192→1152 at 7×7
///   with 6.8%: sparse 0.54 s vs 1.10 s — and dense ones 1.5–2× faster than on flex;
/// - depthwise: the direct kernel for 3×3 (2–4× faster than sparse at 13–34% non-zeros, 3×
///   flex), and for 5×5 with ≥ 15% non-zeros (feature vis of EfficientNet-Lite0's block 8,
///   where the stride-2 5×5 gradients are dense: 3% faster than sparse); sparse for sparser
///   5×5 ones;
/// - the rest: sparse up to `MAX_DENSITY`, else flex.
pub fn input_grad_path(g: &ConvGeometry, density: f64) -> InputGradPath {
    let (cg_in, cg_out) = (g.c_in / g.groups, g.c_out / g.groups);
    if g.is_depthwise() {
        let direct = g.kernel[0] * g.kernel[1] <= 9 || density >= 0.15;
        return if direct {
            InputGradPath::Depthwise
        } else {
            InputGradPath::Sparse
        };
    }
    let gemm_fits = cg_in >= 8 && cg_out >= 8;
    let sparse_up_to = if g.kernel == [1, 1] && gemm_fits {
        0.08
    } else {
        super::sparse_grad::MAX_DENSITY
    };
    match (density <= sparse_up_to, gemm_fits) {
        (true, _) => InputGradPath::Sparse,
        (false, true) => InputGradPath::Gemm,
        (false, false) => InputGradPath::Flex,
    }
}

/// Adds each row of `cols` (`[c · kh · kw, ho · wo]`) onto the input positions its window
/// offset reads in `dst` (`[c, h, w]`); positions in the padding are dropped.
fn col2im_add(cols: &[f32], g: &ConvGeometry, dst: &mut [f32]) {
    let [kh, kw] = g.kernel;
    let wo = g.wo;
    for (row, src) in cols.chunks(g.ho * wo).enumerate() {
        let (ch, ky, kx) = (row / (kh * kw), row / kw % kh, row % kw);
        let plane = &mut dst[ch * g.h * g.w..][..g.h * g.w];
        let dy = (ky * g.dilations[0]) as isize - g.pads_before[0] as isize;
        let dx = (kx * g.dilations[1]) as isize - g.pads_before[1] as isize;
        for (oy, line) in src.chunks(wo).enumerate() {
            let iy = (oy * g.strides[0]) as isize + dy;
            if iy < 0 || iy >= g.h as isize {
                continue;
            }
            let target = &mut plane[iy as usize * g.w..][..g.w];
            if g.strides[1] == 1 {
                let first = ((-dx).max(0) as usize).min(wo);
                let last = (g.w as isize - dx).clamp(first as isize, wo as isize) as usize;
                let start = (first as isize + dx).max(0) as usize;
                for (t, v) in target[start..].iter_mut().zip(&line[first..last]) {
                    *t += v;
                }
            } else {
                for (ox, v) in line.iter().enumerate() {
                    let ix = (ox * g.strides[1]) as isize + dx;
                    if ix >= 0 && ix < g.w as isize {
                        target[ix as usize] += v;
                    }
                }
            }
        }
    }
}

/// Fills `cols` (`[c · kh · kw, ho · wo]`) with the windows of `x` (`[c, h, w]`), zero where a
/// window reaches into the padding. Rows are filled in parallel.
fn im2col(x: &[f32], c: usize, g: &ConvGeometry, cols: &mut [f32]) {
    let [kh, kw] = g.kernel;
    let (ho, wo) = (g.ho, g.wo);
    debug_assert_eq!(cols.len(), c * kh * kw * ho * wo);
    cols.par_chunks_mut(ho * wo)
        .enumerate()
        .for_each(|(row, dst)| {
            let (ch, ky, kx) = (row / (kh * kw), row / kw % kh, row % kw);
            let plane = &x[ch * g.h * g.w..][..g.h * g.w];
            let dy = (ky * g.dilations[0]) as isize - g.pads_before[0] as isize;
            let dx = (kx * g.dilations[1]) as isize - g.pads_before[1] as isize;
            for (oy, line) in dst.chunks_mut(wo).enumerate() {
                let iy = (oy * g.strides[0]) as isize + dy;
                if iy < 0 || iy >= g.h as isize {
                    line.fill(0.0);
                    continue;
                }
                let src = &plane[iy as usize * g.w..][..g.w];
                if g.strides[1] == 1 {
                    // Contiguous: the in-bounds middle is one copy.
                    let first = ((-dx).max(0) as usize).min(wo);
                    let last = (g.w as isize - dx).clamp(first as isize, wo as isize) as usize;
                    line[..first].fill(0.0);
                    if last > first {
                        let start = (first as isize + dx) as usize;
                        line[first..last].copy_from_slice(&src[start..start + (last - first)]);
                    }
                    line[last..].fill(0.0);
                } else {
                    for (ox, v) in line.iter_mut().enumerate() {
                        let ix = (ox * g.strides[1]) as isize + dx;
                        *v = if ix < 0 || ix >= g.w as isize {
                            0.0
                        } else {
                            src[ix as usize]
                        };
                    }
                }
            }
        });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::graph::Window2d;

    /// The definition, one multiply-add at a time.
    fn naive(x: &[f32], weight: &[f32], bias: Option<&[f32]>, g: &ConvGeometry) -> Vec<f32> {
        let (cg_in, cg_out) = (g.c_in / g.groups, g.c_out / g.groups);
        let mut out = vec![0f32; g.n * g.c_out * g.ho * g.wo];
        for b in 0..g.n {
            for o in 0..g.c_out {
                let grp = o / cg_out;
                for oy in 0..g.ho {
                    for ox in 0..g.wo {
                        let mut acc = bias.map_or(0.0, |bs| bs[o]);
                        for ci in 0..cg_in {
                            for ky in 0..g.kernel[0] {
                                for kx in 0..g.kernel[1] {
                                    let iy = (oy * g.strides[0] + ky * g.dilations[0]) as isize
                                        - g.pads_before[0] as isize;
                                    let ix = (ox * g.strides[1] + kx * g.dilations[1]) as isize
                                        - g.pads_before[1] as isize;
                                    if iy < 0 || ix < 0 || iy >= g.h as isize || ix >= g.w as isize
                                    {
                                        continue;
                                    }
                                    let c = grp * cg_in + ci;
                                    acc += x[((b * g.c_in + c) * g.h + iy as usize) * g.w
                                        + ix as usize]
                                        * weight[((o * cg_in + ci) * g.kernel[0] + ky)
                                            * g.kernel[1]
                                            + kx];
                                }
                            }
                        }
                        out[((b * g.c_out + o) * g.ho + oy) * g.wo + ox] = acc;
                    }
                }
            }
        }
        out
    }

    fn values(n: usize, salt: u64) -> Vec<f32> {
        (0..n as u64)
            .map(|i| (((i + salt) * 2_654_435_761) % 1000) as f32 / 500.0 - 1.0)
            .collect()
    }

    /// Geometries covering strides, asymmetric pads, dilation, groups, 1×1 and a batch:
    /// `(n, c_in, h, w, c_out, kernel, strides, pads [top, left, bottom, right], dilations,
    /// groups)`, each with its weight shape.
    fn geometries() -> Vec<(ConvGeometry, [usize; 4])> {
        let cases = [
            (1, 3, 13, 11, 5, [3, 3], [1, 1], [1, 1, 1, 1], [1, 1], 1),
            (2, 4, 12, 12, 6, [5, 3], [2, 3], [2, 0, 1, 2], [1, 1], 2),
            (2, 8, 9, 10, 4, [3, 3], [1, 1], [2, 2, 2, 2], [2, 2], 1),
            (1, 6, 7, 7, 9, [1, 1], [1, 1], [0, 0, 0, 0], [1, 1], 3),
            (1, 3, 23, 23, 4, [11, 11], [4, 4], [2, 2, 2, 2], [1, 1], 1),
            (2, 2, 5, 5, 3, [1, 1], [2, 2], [0, 0, 0, 0], [1, 1], 1),
            (1, 4, 7, 7, 8, [3, 3], [1, 1], [0, 0, 0, 0], [1, 1], 1),
        ];
        let out_len = |len: usize, k: usize, s: usize, d: usize, p: usize| {
            (len + p - d * (k - 1) - 1) / s + 1
        };
        cases
            .iter()
            .map(
                |&(n, c_in, h, w, c_out, kernel, strides, pads, dilations, groups)| {
                    let window = Window2d {
                        kernel,
                        strides,
                        pads: [(pads[0], pads[2]), (pads[1], pads[3])],
                        dilations,
                    };
                    let ho = out_len(h, kernel[0], strides[0], dilations[0], pads[0] + pads[2]);
                    let wo = out_len(w, kernel[1], strides[1], dilations[1], pads[1] + pads[3]);
                    let ws = [c_out, c_in / groups, kernel[0], kernel[1]];
                    let g = ConvGeometry::new(
                        &window,
                        groups,
                        &[n, c_in, h, w],
                        &ws,
                        &[n, c_out, ho, wo],
                    )
                    .expect("valid geometry");
                    (g, ws)
                },
            )
            .collect()
    }

    #[test]
    fn matches_the_definition_for_strides_pads_dilations_and_groups() {
        for (i, (g, ws)) in geometries().iter().enumerate() {
            let x = values(g.n * g.c_in * g.h * g.w, i as u64);
            let wt = values(ws.iter().product(), 7 + i as u64);
            let bias = values(g.c_out, 99);
            let got = conv2d(&x, &wt, Some(&bias), g);
            let want = naive(&x, &wt, Some(&bias), g);
            let worst = got
                .iter()
                .zip(&want)
                .fold(0f32, |m, (a, b)| m.max((a - b).abs()));
            assert!(worst < 1e-4, "case {i}: max |Δ| {worst:e}");
        }
    }

    /// The input gradient is the adjoint of the convolution: ⟨conv(x), g⟩ = ⟨x, ∇(g)⟩ for any
    /// x and g (no bias), checked in f64 on every geometry.
    #[test]
    fn the_input_gradient_is_the_adjoint() {
        let dot = |a: &[f32], b: &[f32]| -> f64 {
            a.iter()
                .zip(b)
                .map(|(p, q)| f64::from(*p) * f64::from(*q))
                .sum()
        };
        for (i, (g, ws)) in geometries().iter().enumerate() {
            let x = values(g.n * g.c_in * g.h * g.w, 3 + i as u64);
            let wt = values(ws.iter().product(), 11 + i as u64);
            let gy = values(g.n * g.c_out * g.ho * g.wo, 29 + i as u64);
            let y = naive(&x, &wt, None, g);
            let gx = conv2d_input_grad(&gy, &wt, g);
            let (lhs, rhs) = (dot(&y, &gy), dot(&x, &gx));
            assert!(
                (lhs - rhs).abs() <= 1e-4 * lhs.abs().max(1.0),
                "case {i}: ⟨conv x, g⟩ = {lhs}, ⟨x, ∇g⟩ = {rhs}"
            );
        }
    }

    #[test]
    fn input_gradient_paths_follow_the_measurements() {
        let geometry = |c_in, c_out, kernel: [usize; 2], stride, groups| {
            let window = Window2d {
                kernel,
                strides: [stride; 2],
                pads: [(0, 0), (0, 0)],
                dilations: [1, 1],
            };
            let out = (28 - kernel[0]) / stride + 1;
            let ws = [c_out, c_in / groups, kernel[0], kernel[1]];
            ConvGeometry::new(
                &window,
                groups,
                &[1, c_in, 28, 28],
                &ws,
                &[1, c_out, out, out],
            )
            .expect("valid geometry")
        };
        use InputGradPath::*;
        let alex_conv2 = geometry(48, 128, [5, 5], 1, 1);
        assert_eq!(input_grad_path(&alex_conv2, 0.15), Sparse);
        assert_eq!(input_grad_path(&alex_conv2, 0.5), Gemm);
        let pointwise = geometry(24, 144, [1, 1], 1, 1);
        assert_eq!(input_grad_path(&pointwise, 0.05), Sparse);
        assert_eq!(input_grad_path(&pointwise, 0.2), Gemm);
        let dw3 = geometry(96, 96, [3, 3], 2, 96);
        assert_eq!(input_grad_path(&dw3, 0.05), Depthwise);
        let dw5 = geometry(240, 240, [5, 5], 1, 240);
        assert_eq!(input_grad_path(&dw5, 0.1), Sparse);
        assert_eq!(input_grad_path(&dw5, 0.2), Depthwise);
        let dw5_stride2 = geometry(144, 144, [5, 5], 2, 144);
        assert_eq!(input_grad_path(&dw5_stride2, 0.1), Sparse);
        assert_eq!(input_grad_path(&dw5_stride2, 0.3), Depthwise);
        let rgb = geometry(3, 64, [3, 3], 1, 1);
        assert_eq!(input_grad_path(&rgb, 0.2), Sparse);
        assert_eq!(input_grad_path(&rgb, 0.9), Flex);
    }

    #[test]
    fn bad_geometry_is_refused() {
        let window = Window2d {
            kernel: [3, 3],
            strides: [1, 1],
            pads: [(0, 0), (0, 0)],
            dilations: [1, 1],
        };
        assert!(
            ConvGeometry::new(&window, 2, &[1, 3, 8, 8], &[4, 1, 3, 3], &[1, 4, 6, 6]).is_none()
        );
        assert!(ConvGeometry::new(&window, 1, &[3, 8, 8], &[4, 3, 3, 3], &[1, 4, 6, 6]).is_none());
    }
}
