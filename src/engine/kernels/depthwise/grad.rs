//! The input gradient of a depthwise convolution on the CPU (flex), for the reverse pass
//! (`vjp_spatial`): stride 1 as a forward depthwise convolution with the taps reversed,
//! strided planes by adding each tap's runs into column-phase scratch rows, then
//! interleaving them into the plane.

use rayon::prelude::*;

use super::super::geometry::ConvGeometry;
use super::super::simd::{self, SimdLevel};
use super::super::taps;
use super::depthwise_conv2d_at;

/// The input gradient `[n, c, h, w]` of a depthwise convolution with geometry `g` for the
/// output gradient `grad [n, c, ho, wo]` and weights `weight [c, 1, kh, kw]` (row-major
/// `f32`); `None` unless `g` is depthwise with one filter per channel. Planes run in
/// parallel.
pub fn depthwise_input_grad(grad: &[f32], weight: &[f32], g: &ConvGeometry) -> Option<Vec<f32>> {
    if !g.is_depthwise() {
        return None;
    }
    let [kh, kw] = g.kernel;
    let (plane_in, plane_out) = (g.h * g.w, g.ho * g.wo);
    if grad.len() != g.n * g.c_out * plane_out || weight.len() != g.c_out * kh * kw {
        return None;
    }
    if g.strides == [1, 1]
        && let Some(out) = input_grad_as_convolution(grad, weight, g)
    {
        return Some(out);
    }
    // Strided: each task adds its planes' taps into phase-split scratch rows, then
    // interleaves them into the plane (which it writes whole, so nothing is zeroed first).
    let level = simd::active();
    let len = g.n * g.c_in * plane_in;
    let mut out = Vec::with_capacity(len);
    let planes_per_task = (g.n * g.c_in).div_ceil(4 * rayon::current_num_threads());
    out.spare_capacity_mut()[..len]
        .par_chunks_mut(plane_in.max(1))
        .enumerate()
        .with_min_len(planes_per_task.max(1))
        .for_each_init(Vec::new, |phases, (plane, dst)| {
            let src = &grad[plane * plane_out..][..plane_out];
            if src.iter().all(|v| *v == 0.0) {
                // A gated-off channel (common after guided backprop's ReLU gates).
                super::super::init_with(dst, 0.0);
                return;
            }
            let taps = &weight[(plane % g.c_in) * kh * kw..][..kh * kw];
            add_plane_gradient(level, phases, src, taps, g);
            interleave_phases(dst, phases, g);
        });
    // SAFETY: the planes cover the first `len` slots and each task wrote all of its plane.
    unsafe { out.set_len(len) };
    Some(out)
}

/// The input gradient of a stride-1 depthwise convolution as a forward one (whose kernel
/// holds whole output blocks in registers, where the scatter below adds each tap's row
/// onto the input row by row): `gx[i] = Σ_t w[t] · gy[i + p − t·d]` is the convolution of
/// `gy` with the taps reversed and `(k − 1)·d − p` padding before. `None` when the padding
/// before exceeds the kernel's reach (that padding would be negative).
fn input_grad_as_convolution(grad: &[f32], weight: &[f32], g: &ConvGeometry) -> Option<Vec<f32>> {
    let [kh, kw] = g.kernel;
    let reach = [(kh - 1) * g.dilations[0], (kw - 1) * g.dilations[1]];
    let adjoint = ConvGeometry {
        c_in: g.c_out,
        h: g.ho,
        w: g.wo,
        c_out: g.c_in,
        pads_before: [
            reach[0].checked_sub(g.pads_before[0])?,
            reach[1].checked_sub(g.pads_before[1])?,
        ],
        ho: g.h,
        wo: g.w,
        ..*g
    };
    let reversed: Vec<f32> = (weight.chunks(kh * kw))
        .flat_map(|taps| taps.iter().rev().copied())
        .collect();
    depthwise_conv2d_at(simd::active(), grad, &reversed, None, &adjoint)
}

/// Columns of one phase-split input row: a row of `w` columns split into `sx` phases
/// (columns `p, p + sx, …`), each `w.div_ceil(sx)` long, the phases of a row side by side.
fn phase_len(g: &ConvGeometry) -> usize {
    g.w.div_ceil(g.strides[1])
}

/// Adds one channel's output gradient `src [ho, wo]`, through the channel's `taps [kh, kw]`,
/// onto `phases`, its input plane `[h, w]` phase-split by column (see [`phase_len`]; reset
/// here): `dst[oy·sy + ky·dy − py][ox·sx + kx·dx − px] += taps[ky][kx] · src[oy][ox]`,
/// positions in the padding dropped. Split by phase, each tap adds a contiguous run of an
/// output row onto a contiguous run of one phase (where the plain plane would take every
/// `sx`-th column, which does not vectorise), at `level`'s width.
fn add_plane_gradient(
    level: SimdLevel,
    phases: &mut Vec<f32>,
    src: &[f32],
    taps: &[f32],
    g: &ConvGeometry,
) {
    phases.clear();
    phases.resize(g.h * g.strides[1] * phase_len(g), 0.0);
    #[cfg(target_arch = "x86_64")]
    match level {
        // SAFETY (both): `simd::active` only returns levels the CPU supports.
        SimdLevel::Avx512 => return unsafe { add_plane_gradient_avx512(phases, src, taps, g) },
        SimdLevel::Avx2Fma => return unsafe { add_plane_gradient_avx2(phases, src, taps, g) },
        SimdLevel::Portable => {}
    }
    let _ = level;
    add_plane_gradient_body::<false>(phases, src, taps, g);
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,fma")]
fn add_plane_gradient_avx512(phases: &mut [f32], src: &[f32], taps: &[f32], g: &ConvGeometry) {
    add_plane_gradient_body::<true>(phases, src, taps, g);
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn add_plane_gradient_avx2(phases: &mut [f32], src: &[f32], taps: &[f32], g: &ConvGeometry) {
    add_plane_gradient_body::<true>(phases, src, taps, g);
}

/// The body of [`add_plane_gradient`], compiled once per level; `FMA` selects fused
/// multiply-adds.
#[inline(always)]
fn add_plane_gradient_body<const FMA: bool>(
    phases: &mut [f32],
    src: &[f32],
    taps: &[f32],
    g: &ConvGeometry,
) {
    let [kh, kw] = g.kernel;
    let [sy, sx] = g.strides;
    let [dy, dx] = g.dilations;
    let [py, px] = g.pads_before;
    let run = phase_len(g);
    for ky in 0..kh {
        for kx in 0..kw {
            let tap = taps[ky * kw + kx];
            if tap == 0.0 {
                continue;
            }
            // Output columns whose input column `ox·sx + off_x` lies inside the plane; that
            // column is in phase `off_x mod sx`, at `ox + ⌊off_x / sx⌋` within it.
            let off_x = (kx * dx) as isize - px as isize;
            let Some(cols) = inside(off_x, sx, g.w, g.wo) else {
                continue;
            };
            let phase = off_x.rem_euclid(sx as isize) as usize;
            let first = (cols.start as isize + off_x.div_euclid(sx as isize)) as usize;
            for oy in 0..g.ho {
                let iy = (oy * sy + ky * dy) as isize - py as isize;
                if iy < 0 || iy >= g.h as isize {
                    continue;
                }
                let row_out = &src[oy * g.wo..][..g.wo][cols.clone()];
                let row_in = &mut phases[(iy as usize * sx + phase) * run..][..run];
                let row_in = &mut row_in[first..first + row_out.len()];
                for (d, v) in row_in.iter_mut().zip(row_out) {
                    *d = taps::mul_add::<FMA>(tap, *v, *d);
                }
            }
        }
    }
}

/// Writes the phase-split plane `phases` ([`add_plane_gradient`]) into `dst [h, w]`.
fn interleave_phases(dst: &mut [std::mem::MaybeUninit<f32>], phases: &[f32], g: &ConvGeometry) {
    let (sx, run) = (g.strides[1], phase_len(g));
    for (row_out, row) in dst.chunks_mut(g.w).zip(phases.chunks(sx * run)) {
        if sx == 2 {
            // Column pairs (the common stride), which the compiler vectorises.
            let (even, odd) = row.split_at(run);
            let mut pairs = row_out.chunks_exact_mut(2);
            for ((pair, &e), &o) in (&mut pairs).zip(even).zip(odd) {
                pair[0].write(e);
                pair[1].write(o);
            }
            if let [last] = pairs.into_remainder() {
                last.write(even[run - 1]);
            }
            continue;
        }
        for (p, phase) in row.chunks(run).enumerate() {
            for (d, v) in row_out[p..].iter_mut().step_by(sx).zip(phase) {
                d.write(*v);
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
