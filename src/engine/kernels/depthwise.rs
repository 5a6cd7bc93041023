//! Depthwise convolutions (one filter per channel: `groups = c_in = c_out`, as in
//! EfficientNet and MobileNet) on the CPU (flex): the forward pass ([`depthwise_conv2d`],
//! run by the engine instead of flex's grouped convolution) here, and the input gradient for
//! the reverse pass (`vjp_spatial`) in `depthwise/grad.rs` ([`depthwise_input_grad`]). Both walk one channel plane at a time, planes in parallel,
//! one kernel tap and a whole output row at a time: for stride 1 that is one contiguous
//! multiply-add per (tap, row), which the compiler vectorises; strided planes are split into
//! column phases (forward: the input; reverse: the input gradient) so that stays true, except
//! the forward stride-2 3×3 planes at the AVX-512 level, which split the columns in registers
//! (`depthwise/strided.rs`), and the stride-1 3-wide ones there, read straight from the
//! unpadded plane with masked loads (`depthwise/unpadded.rs`). In
//! the reverse pass the GEMM path has one output channel per group here (a `[kh·kw, 1]`
//! product per pixel) and the sparse path one value per tap per non-zero; EfficientNet-Lite0's
//! guided backprop of `/_conv_head/Conv` spent 13 s of 40 in those.

use std::cell::RefCell;
use std::mem::MaybeUninit;

use rayon::prelude::*;

use super::geometry::{ConvGeometry, ZeroBorder};
use super::simd::{self, SimdLevel};
use super::taps::{self, RUN_BLOCK};

mod blocked;
mod grad;
#[cfg(target_arch = "x86_64")]
mod strided;
#[cfg(target_arch = "x86_64")]
mod unpadded;
pub use grad::depthwise_input_grad;

/// The depthwise convolution `x [n, c, h, w]` ⊛ `weight [c, 1, kh, kw]` (+ `bias [c]`),
/// row-major `f32`: the output `[n, c, ho, wo]`; `None` unless `g` is depthwise with one
/// filter per channel and the slices have its sizes. Planes run in parallel, at the
/// process's [`simd::active`] level.
pub fn depthwise_conv2d(
    x: &[f32],
    weight: &[f32],
    bias: Option<&[f32]>,
    g: &ConvGeometry,
) -> Option<Vec<f32>> {
    depthwise_conv2d_at(simd::active(), x, weight, bias, g)
}

/// [`depthwise_conv2d`] with the kernels of `level` (which the CPU must support; else the
/// portable ones run).
pub fn depthwise_conv2d_at(
    level: SimdLevel,
    x: &[f32],
    weight: &[f32],
    bias: Option<&[f32]>,
    g: &ConvGeometry,
) -> Option<Vec<f32>> {
    let [kh, kw] = g.kernel;
    let plane_in = g.h * g.w;
    let sizes_agree = x.len() == g.n * g.c_in * plane_in
        && weight.len() == g.c_out * kh * kw
        && bias.is_none_or(|b| b.len() == g.c_out);
    if !g.is_depthwise() || !sizes_agree || kh * kw > MAX_TAPS {
        return None;
    }
    let level = if level.supported() {
        level
    } else {
        SimdLevel::Portable
    };
    if channels_in_lanes(level, g) {
        return Some(blocked::conv_blocked(level, x, weight, bias, g));
    }
    Some(conv_planes(level, x, weight, bias, g))
}

/// Whether the output rows are too short for [`conv_planes`]' runs, so channels go in vector
/// lanes instead (`depthwise/blocked.rs`): at every level, rows of ≤ 8 outputs and strided
/// rows of ≤ 16; with AVX2 or AVX-512 also strided or 5-wide kernels up to rows of 28. Each
/// depthwise shape of EfficientNet-Lite0 timed both ways (2-core AMD EPYC, Zen 4, medians of
/// 200 alternated calls at batch 1, 30 at batch 16), planes → lanes:
///
/// | shape | AVX-512, 1 | AVX-512, 16 | AVX2, 16 | portable, 16 |
/// | --- | --- | --- | --- | --- |
/// | 672 × 14², 5×5, stride 2 | 0.26 → 0.11 ms | 3.6 → 1.7 | 3.0 → 1.4 | 3.9 → 1.7 |
/// | 1152 × 7², 5×5 | 0.18 → 0.12 | 2.4 → 1.7 | 2.2 → 1.5 | 3.6 → 2.6 |
/// | 240 × 28², 5×5 | 0.22 → 0.16 | 4.0 → 2.7 | 3.8 → 2.7 | 6.9 → 8.2 |
/// | 144 × 56², 5×5, stride 2 | 0.21 → 0.19 | 4.5 → 3.2 | 4.8 → 3.6 | |
/// | 480 × 14², 3×3 | 0.07 → 0.07 | 1.3 → 1.5 | 1.3 → 1.4 | 1.3 → 1.7 |
/// | 96 × 112², 3×3, stride 2 | 0.26 → 0.40 | 7.5 → 7.9 | 8.2 → 8.7 | |
///
/// The portable lanes kernel transposes one value at a time, which costs more than its
/// lanes save except on the shortest rows.
fn channels_in_lanes(level: SimdLevel, g: &ConvGeometry) -> bool {
    // Planes an unpadded-input kernel computes stay planes.
    if unpadded_plane_kernel(level, g).is_some() {
        return false;
    }
    let strided = g.strides[1] > 1;
    let short = g.wo <= 8 || (g.wo <= 16 && strided);
    short || (level >= SimdLevel::Avx2Fma && g.wo <= 28 && (strided || g.kernel[1] >= 5))
}

/// An AVX-512 kernel that computes one of `g`'s planes straight from the unpadded input plane
/// (`dst`, `src`, the plane's taps and bias, `g`; AVX-512F required), for geometries it takes:
/// stride-2 3×3 (`depthwise/strided.rs`) or stride-1 3-wide (`depthwise/unpadded.rs`).
type UnpaddedPlane = unsafe fn(&mut [MaybeUninit<f32>], &[f32], &[f32], f32, &ConvGeometry);

/// The [`UnpaddedPlane`] kernel for `g` at `level`, if one takes it.
fn unpadded_plane_kernel(level: SimdLevel, g: &ConvGeometry) -> Option<UnpaddedPlane> {
    #[cfg(target_arch = "x86_64")]
    if level == SimdLevel::Avx512 {
        if strided::takes(g) {
            return Some(strided::plane);
        }
        if unpadded::takes(g) {
            return Some(unpadded::plane);
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = (level, g);
    None
}

/// How far ahead (in rows of the loop that calls it) the kernels fetch input rows with
/// [`prefetch_rows`]. In a scan's pass (one thread, every conv summarised, alternated with
/// the same pass without, 290 passes each, Emerald Rapids Xeon, AVX-512) the prefetches cut
/// 0.14–0.16 ms from the stride-2 3×3 planes (`depthwise/strided.rs`; 1, 2 and 4 rows ahead
/// alike), 0.22–0.25 ms from the stride-1 3-wide ones (`depthwise/unpadded.rs`) and
/// 0.15–0.17 ms from the lanes transposes (`depthwise/blocked.rs`; forced AVX2 0.06–0.09),
/// of 10.5–11.4 ms: each kernel reads its input, just written by the pointwise layer before
/// and mostly in L3, a few rows at a time from several places.
const PREFETCH_ROWS: usize = 4;

/// Rows `rows` of `plane` (rows `w` long; rows outside the plane skipped) fetched toward L1,
/// one prefetch per 64-byte line. A no-op off x86-64.
#[inline(always)]
fn prefetch_rows(plane: &[f32], w: usize, rows: std::ops::Range<isize>) {
    #[cfg(target_arch = "x86_64")]
    prefetch_lines::<_, { std::arch::x86_64::_MM_HINT_T0 }>(plane, w, rows);
    #[cfg(not(target_arch = "x86_64"))]
    let _ = (plane, w, rows);
}

/// [`prefetch_rows`] of output rows about to be written, fetched for writing (PREFETCHW): in
/// a pass that keeps every layer each output is a fresh buffer last touched a pass earlier,
/// whose lines the stores would otherwise wait for. The stride-2 and unpadded plane kernels
/// fetch their output rows [`PREFETCH_ROWS`] ahead: EfficientNet-Lite0, one thread, passes
/// alternated in one process (150 each, Emerald Rapids): a pass keeping every layer
/// 14.47 → 13.91 and 13.79 → 13.24 ms, the scan's pass 11.78 → 11.32 and 10.95 → 10.82 ms;
/// on two threads the kept pass was unchanged (10.02 and 10.03 ms). The lanes kernels
/// (`depthwise/blocked.rs`) fetch a group's whole output before its arithmetic: then the kept
/// pass 13.04 → 12.42 and 13.52 → 12.91 ms, the scan's 11.08 → 10.87 and 11.08 → 10.78 ms, two
/// threads kept 9.84 → 9.59 ms.
/// Only the x86-64 kernels call it.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
fn prefetch_rows_for_write(plane: &[MaybeUninit<f32>], w: usize, rows: std::ops::Range<isize>) {
    prefetch_lines::<_, { std::arch::x86_64::_MM_HINT_ET0 }>(plane, w, rows);
}

/// One `HINT` prefetch per 64-byte line of rows `rows` of `plane` (4-byte values).
#[cfg(target_arch = "x86_64")]
#[inline(always)]
fn prefetch_lines<T, const HINT: i32>(plane: &[T], w: usize, rows: std::ops::Range<isize>) {
    for iy in rows {
        let Some(row) = usize::try_from(iy)
            .ok()
            .and_then(|iy| plane.get(iy * w..(iy + 1) * w))
        else {
            continue;
        };
        for line in row.chunks(64 / std::mem::size_of::<T>().max(1)) {
            // SAFETY: a prefetch has no architectural effect; the address lies in `row`.
            unsafe { std::arch::x86_64::_mm_prefetch::<HINT>(line.as_ptr().cast()) };
        }
    }
}

thread_local! {
    /// Each thread's buffers for [`conv_planes`], kept between calls.
    static PLANE_SCRATCH: RefCell<PlaneScratch> = RefCell::new(PlaneScratch::default());
}

/// A thread's padded input plane ([`PaddedLayout::fill`]) and stride-1 scratch.
#[derive(Default)]
struct PlaneScratch {
    padded: ZeroBorder<f32>,
    flat: Vec<f32>,
}

/// The planes of [`depthwise_conv2d_at`] (sizes checked there). Without a bias, an all-zero
/// input plane gives a zero output plane without its taps (the reverse pass's gated-off
/// channels).
fn conv_planes(
    level: SimdLevel,
    x: &[f32],
    weight: &[f32],
    bias: Option<&[f32]>,
    g: &ConvGeometry,
) -> Vec<f32> {
    let [kh, kw] = g.kernel;
    let (plane_in, plane_out) = (g.h * g.w, g.ho * g.wo);
    let layout = PaddedLayout::new(g);
    let unpadded_kernel = unpadded_plane_kernel(level, g);
    let len = g.n * g.c_out * plane_out;
    let mut out = Vec::with_capacity(len);
    // Few, long tasks (rayon's own splitting made one per few planes); each thread's padded
    // buffer is kept between planes and calls, its zero border rewritten only for another
    // geometry (zeroing whole planes again was ~7% of EfficientNet-Lite0's forward pass, a
    // fresh buffer per task made both threads wait on the allocator's lock: see
    // `lanes::by_groups`). Each plane is written by its task (a calloc'd output was a
    // one-thread memset; zeroing each plane before the stride-1 path copies over it was ~2%
    // of a scan's samples).
    let planes_per_task = (g.n * g.c_out).div_ceil(4 * rayon::current_num_threads());
    out.spare_capacity_mut()[..len]
        .par_chunks_mut(plane_out.max(1))
        .enumerate()
        .with_min_len(planes_per_task.max(1))
        .for_each(|(plane, dst)| {
            let channel = plane % g.c_in;
            let src = &x[plane * plane_in..][..plane_in];
            if bias.is_none() && src.iter().all(|v| *v == 0.0) {
                super::init_with(dst, 0.0);
                return;
            }
            let taps = &weight[channel * kh * kw..][..kh * kw];
            let bias = bias.map_or(0.0, |b| b[channel]);
            if let Some(kernel) = unpadded_kernel {
                // SAFETY: only given at the AVX-512 level, which `depthwise_conv2d_at`
                // checked the CPU supports, for a geometry the kernel takes.
                unsafe { kernel(dst, src, taps, bias, g) };
                return;
            }
            PLANE_SCRATCH.with_borrow_mut(|scratch| {
                let padded = scratch.padded.for_geometry(g, layout.len());
                layout.fill(level, padded, src, g);
                let plane = Plane {
                    dst,
                    flat: &mut scratch.flat,
                    padded: scratch.padded.values(),
                    taps,
                    bias,
                    layout: &layout,
                    g,
                };
                conv_plane(level, plane);
            });
        });
    // SAFETY: the planes cover the first `len` slots and each was written whole, by
    // `init_with` or by `conv_plane`.
    unsafe { out.set_len(len) };
    out
}

/// One input plane copied with its zero padding around it and, for a horizontal stride
/// `sx > 1`, each row split into `sx` phases (columns `p, p + sx, …`), so every kernel tap
/// reads a contiguous run of a row for a row of outputs.
struct PaddedLayout {
    /// Padded rows.
    rows: usize,
    /// Values per phase of a padded row.
    phase_len: usize,
    /// `sx · phase_len`: values per padded row.
    row_len: usize,
}

impl PaddedLayout {
    fn new(g: &ConvGeometry) -> Self {
        let [rows, cols] = g.padded_size();
        let sx = g.strides[1];
        let phase_len = cols.div_ceil(sx);
        Self {
            rows,
            phase_len,
            row_len: sx * phase_len,
        }
    }

    /// Values of a padded plane: its rows, and a block of slack at the end for `taps_run`'s
    /// last, partial block.
    fn len(&self) -> usize {
        self.rows * self.row_len + RUN_BLOCK
    }

    /// Writes `src [h, w]` into `padded` ([`PaddedLayout::len`] values, this geometry's
    /// [`ZeroBorder`]): every call writes the same positions, so the padding stays zero and
    /// only the values are rewritten (zeroing whole planes again was ~7% of
    /// EfficientNet-Lite0's forward pass).
    fn fill(&self, level: SimdLevel, padded: &mut [f32], src: &[f32], g: &ConvGeometry) {
        assert_eq!(padded.len(), self.len(), "depthwise padded plane length");
        let [py, px] = g.pads_before;
        let sx = g.strides[1];
        for (y, row_in) in src.chunks(g.w).enumerate() {
            let row = &mut padded[(y + py) * self.row_len..][..self.row_len];
            if sx == 1 {
                row[px..px + g.w].copy_from_slice(row_in);
                continue;
            }
            if sx == 2 {
                // Stride 2 (EfficientNet's downsampling layers): padded column `px + x` is
                // phase `(px + x) % 2`, position `(px + x) / 2` there; one pass over the
                // input's column pairs writes both phases.
                let (phase0, phase1) = row.split_at_mut(self.phase_len);
                let (even, odd) = if px % 2 == 0 {
                    (&mut phase0[px / 2..], &mut phase1[px / 2..])
                } else {
                    (&mut phase1[px / 2..], &mut phase0[px / 2 + 1..])
                };
                let pairs = g.w / 2;
                if g.w % 2 == 1 {
                    even[pairs] = row_in[g.w - 1];
                }
                let halves = Halves {
                    pairs: &row_in[..2 * pairs],
                    even,
                    odd,
                };
                simd::run_at_level!(level, split_pairs, halves, Halves<'_>);
                continue;
            }
            for phase in 0..sx {
                // The first padded column of this phase that holds an input value.
                let first = px + (phase + sx - px % sx) % sx;
                let Some(from) = row_in.get(first - px..) else {
                    continue;
                };
                let dst = &mut row[phase * self.phase_len + first / sx..];
                for (d, &v) in dst.iter_mut().zip(from.iter().step_by(sx)) {
                    *d = v;
                }
            }
        }
    }
}

/// A row's column pairs and the two phases they go to: `even[i] = pairs[2i]`, `odd[i] =
/// pairs[2i + 1]`.
struct Halves<'a> {
    pairs: &'a [f32],
    even: &'a mut [f32],
    odd: &'a mut [f32],
}

/// [`Halves`] split, compiled once per level (`FMA` unused): an indexed loop over slices of
/// equal length, which the compiler turns into two-register permutes at AVX2 and AVX-512;
/// the iterator chain it replaced was compiled only for the baseline x86-64 and stayed
/// scalar. EfficientNet-Lite0's 96 × 112² stride-2 layer, one thread, medians of 55 on a
/// 2-core Intel Xeon (Emerald Rapids, AVX-512): 0.611 → 0.575 ms; the split is still about
/// half of that layer's samples, waiting on its 4.8 MB input, which no core's L2 holds.
#[inline(always)]
fn split_pairs<const FMA: bool>(halves: Halves<'_>) {
    let Halves { pairs, even, odd } = halves;
    let n = even.len().min(odd.len()).min(pairs.len() / 2);
    let (pairs, even, odd) = (&pairs[..2 * n], &mut even[..n], &mut odd[..n]);
    for i in 0..n {
        even[i] = pairs[2 * i];
        odd[i] = pairs[2 * i + 1];
    }
}

/// One output plane's work: `dst [ho, wo]` = `bias` + the `taps` over the `padded` input
/// plane (laid out by `layout`), every value written; `flat` is scratch for the stride-1
/// path.
struct Plane<'a> {
    dst: &'a mut [MaybeUninit<f32>],
    flat: &'a mut Vec<f32>,
    padded: &'a [f32],
    taps: &'a [f32],
    bias: f32,
    layout: &'a PaddedLayout,
    g: &'a ConvGeometry,
}

/// Computes `plane` with the kernels of `level` (supported by the CPU:
/// `depthwise_conv2d_at` checks).
fn conv_plane(level: SimdLevel, plane: Plane<'_>) {
    simd::run_at_level!(level, conv_plane_body, plane, Plane<'_>);
}

/// The body of [`conv_plane`], compiled once per level (the compiler vectorises
/// [`taps::weighted_runs`] to the level's width); `FMA` selects fused multiply-adds.
#[inline(always)]
fn conv_plane_body<const FMA: bool>(plane: Plane<'_>) {
    let Plane {
        dst,
        flat,
        padded,
        taps,
        bias,
        layout,
        g,
    } = plane;
    let kw = g.kernel[1];
    let [sy, sx] = g.strides;
    let [dy, dx] = g.dilations;
    let mut offsets = [0usize; MAX_TAPS];
    let offsets = &mut offsets[..taps.len()];
    if [sy, sx] == [1, 1] {
        for (t, off) in offsets.iter_mut().enumerate() {
            *off = (t / kw) * dy * layout.row_len + (t % kw) * dx;
        }
        if g.wo >= taps::RUN_BLOCK {
            // Rows long enough to vectorise: each output row is one run straight into the
            // output. (Through `flat` and a copy, the copies were as many samples as the
            // arithmetic on 32 × 112².)
            for (oy, row_out) in dst.chunks_mut(g.wo).enumerate() {
                let first_row = &padded[oy * layout.row_len..];
                taps::weighted_runs::<FMA>(row_out, first_row, offsets, taps, bias);
            }
            return;
        }
        // Short rows: computed in padded-row coordinates (`oy · row_len + ox`, the columns
        // past `wo` computed and dropped), so one run covers the whole plane (the 7×7 and
        // 14×14 planes of the last blocks have rows too short to vectorise one at a time).
        let flat_len = (g.ho.max(1) - 1) * layout.row_len + g.wo;
        flat.clear();
        flat.reserve(flat_len);
        taps::weighted_runs::<FMA>(
            &mut flat.spare_capacity_mut()[..flat_len],
            padded,
            offsets,
            taps,
            bias,
        );
        // SAFETY: `weighted_runs` wrote all `flat_len` values.
        unsafe { flat.set_len(flat_len) };
        for (row_out, row) in dst.chunks_mut(g.wo).zip(flat.chunks(layout.row_len)) {
            row_out.write_copy_of_slice(&row[..g.wo]);
        }
        return;
    }
    // `weighted_runs` writes every output of a row (no zeroing first).
    for (t, off) in offsets.iter_mut().enumerate() {
        let col = (t % kw) * dx;
        *off = (t / kw) * dy * layout.row_len + (col % sx) * layout.phase_len + col / sx;
    }
    for (oy, row_out) in dst.chunks_mut(g.wo).enumerate() {
        let first_row = &padded[oy * sy * layout.row_len..];
        taps::weighted_runs::<FMA>(row_out, first_row, offsets, taps, bias);
    }
}

/// Most taps (`kh · kw`) a plane kernel takes; larger kernels go through the GEMM path.
pub const MAX_TAPS: usize = 49;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::kernels::conv::conv2d_input_grad;
    use crate::engine::kernels::test_support::{self, values, worst_error};
    use crate::model::graph::Window2d;

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
        test_support::geometry([n, c, c, c], [h, w], kernel, strides, pads, dilations)
    }

    /// Equal to the GEMM + col2im path (itself checked as the convolution's adjoint in
    /// `kernels::conv`) on EfficientNet's depthwise shapes in small: 3×3 and 5×5, stride 1 and 2,
    /// symmetric and asymmetric padding, a dilation, a batch, and a gradient with zeros.
    /// The seventh has more padding before than the kernel reaches (the stride-1 input
    /// gradient cannot be a convolution there and scatters); the last two are stride 2 with
    /// odd and even padding before, even and odd widths.
    const CASES: [Case; 9] = [
        (1, 4, 9, 9, [3, 3], [1, 1], [1, 1, 1, 1], [1, 1]),
        (2, 3, 12, 10, [3, 3], [2, 2], [0, 0, 1, 1], [1, 1]),
        (1, 5, 11, 11, [5, 5], [2, 2], [1, 1, 2, 2], [1, 1]),
        (2, 2, 8, 8, [5, 5], [1, 1], [2, 2, 2, 2], [1, 1]),
        (1, 3, 10, 9, [3, 3], [1, 1], [2, 2, 2, 2], [2, 2]),
        (1, 2, 7, 6, [3, 1], [1, 3], [1, 0, 1, 0], [1, 1]),
        (1, 2, 6, 6, [3, 3], [1, 1], [3, 3, 0, 1], [1, 1]),
        (1, 2, 9, 8, [3, 3], [2, 2], [1, 1, 1, 1], [1, 1]),
        (1, 2, 7, 7, [5, 5], [2, 2], [2, 2, 2, 2], [1, 1]),
    ];

    /// Channel counts and plane lengths for the channels-in-lanes kernel's register
    /// transposes (8-channel blocks, positions in blocks of 8 and a remainder) and its short
    /// last group of 16; rows of 21 and 10 outputs (AVX-512 blocks of 8, 8 and 5; 8 and 2;
    /// other levels 4, 4, 4, 4, 4 and 1; 4, 4 and 2); and rows of
    /// 40 and 70 outputs, which the planes kernel runs one row at a time (whole blocks of
    /// 32 and a last partial one); and a stride-2 3×3 row of 25 outputs (AVX-512: units of
    /// 16 and 9, the last one's second run of columns crossing the input's right edge).
    const WIDE_CASES: [Case; 12] = [
        (1, 3, 9, 50, [3, 3], [2, 2], [1, 1, 1, 1], [1, 1]),
        (2, 19, 9, 9, [3, 3], [1, 1], [1, 1, 1, 1], [1, 1]),
        (1, 24, 14, 14, [5, 5], [2, 2], [2, 2, 2, 2], [1, 1]),
        (1, 32, 7, 7, [5, 5], [1, 1], [2, 2, 2, 2], [1, 1]),
        (2, 8, 6, 11, [3, 3], [2, 1], [0, 1, 1, 1], [1, 1]),
        (1, 17, 4, 21, [5, 5], [1, 1], [2, 2, 2, 2], [1, 1]),
        (1, 18, 5, 10, [5, 5], [1, 1], [2, 2, 2, 2], [1, 1]),
        (1, 3, 5, 40, [3, 3], [1, 1], [1, 1, 1, 1], [1, 1]),
        (2, 2, 6, 70, [5, 5], [1, 1], [2, 2, 2, 2], [1, 1]),
        // Stride-1 3-wide rows for the AVX-512 unpadded kernel: 14 outputs (groups of 8
        // rows, the last of 5), 128 (its widest: 8 units) with uneven padding, 20 of a 1×3.
        (1, 5, 13, 14, [3, 3], [1, 1], [1, 1, 1, 1], [1, 1]),
        (1, 2, 7, 128, [3, 3], [1, 1], [0, 2, 2, 0], [1, 1]),
        (2, 3, 5, 20, [1, 3], [1, 1], [0, 1, 0, 1], [1, 1]),
    ];

    type Kernel = fn(SimdLevel, &[f32], &[f32], Option<&[f32]>, &ConvGeometry) -> Vec<f32>;

    /// Both forward kernels (planes, channels in lanes) equal the convolution's definition,
    /// summed tap by tap in f64 with explicit bounds checks, on every shape (bias included),
    /// at every SIMD level this CPU runs; and so does the dispatch between them.
    #[test]
    fn forward_equals_the_definition() {
        let kernels: [(&str, Kernel); 3] = [
            ("planes", conv_planes),
            ("lanes", blocked::conv_blocked),
            ("dispatch", |level, x, w, b, g| {
                depthwise_conv2d_at(level, x, w, b, g).expect("depthwise")
            }),
        ];
        for (i, case) in CASES.iter().chain(&WIDE_CASES).enumerate() {
            let g = geometry(case);
            let x = values(g.n * g.c_in * g.h * g.w, 3 + i as u64);
            let weight = values(g.c_out * g.kernel[0] * g.kernel[1], 11 + i as u64);
            let bias = values(g.c_out, 23 + i as u64);
            // Every output kept until all are checked, so none can reuse another's freed
            // buffer (an output slot a kernel skipped would hold the right value).
            let runs: Vec<_> = (SimdLevel::supported_levels().into_iter())
                .flat_map(|level| kernels.map(|(name, kernel)| (level, name, kernel)))
                .map(|(level, name, kernel)| {
                    (level, name, kernel(level, &x, &weight, Some(&bias), &g))
                })
                .collect();
            for (level, name, got) in &runs {
                let worst = worst_error(got, &x, &weight, &bias, &g);
                assert!(
                    worst <= 1e-5,
                    "case {i}, {name} at {level:?}: max |Δ| {worst:e}"
                );
            }
        }
    }

    /// Both kernels keep each thread's padded buffer between calls: a geometry whose zero
    /// border another geometry's interior covered (the same 11 × 11 buffer: a 9² input with
    /// a 3×3 kernel and one pixel of padding, stride 1 for the planes kernel and 2 for the
    /// lanes one; then a 7² input with a 5×5 kernel and two) is still computed right. One
    /// thread, so each kernel's calls use the same buffer.
    #[test]
    fn a_kept_padded_buffer_is_rezeroed_for_another_geometry() {
        let narrow = geometry(&(1, 16, 7, 7, [5, 5], [1, 1], [2, 2, 2, 2], [1, 1]));
        let wide = |stride| geometry(&(1, 16, 9, 9, [3, 3], [stride; 2], [1; 4], [1, 1]));
        let kernels: [(&str, Kernel, ConvGeometry); 2] = [
            ("planes", conv_planes, wide(1)),
            ("lanes", blocked::conv_blocked, wide(2)),
        ];
        let pool = rayon::ThreadPoolBuilder::new().num_threads(1).build();
        let pool = pool.expect("a one-thread pool");
        for (name, kernel, wide) in kernels {
            assert_eq!(wide.padded_size(), narrow.padded_size());
            for level in SimdLevel::supported_levels() {
                pool.install(|| {
                    for (i, g) in [wide, narrow].iter().enumerate() {
                        let x = values(g.n * g.c_in * g.h * g.w, 40 + i as u64);
                        let weight = values(g.c_out * g.kernel[0] * g.kernel[1], 50 + i as u64);
                        let bias = values(g.c_out, 60 + i as u64);
                        let got = kernel(level, &x, &weight, Some(&bias), g);
                        let worst = worst_error(&got, &x, &weight, &bias, g);
                        assert!(
                            worst <= 1e-5,
                            "{name}, geometry {i} at {level:?}: {worst:e}"
                        );
                    }
                });
            }
        }
    }

    /// A zero input without bias gives zeros from both kernels (they skip such planes).
    #[test]
    fn zero_planes_give_zeros() {
        let g = geometry(&WIDE_CASES[0]);
        let x = vec![0f32; g.n * g.c_in * g.h * g.w];
        let weight = values(g.c_out * 9, 1);
        for level in SimdLevel::supported_levels() {
            for out in [
                conv_planes(level, &x, &weight, None, &g),
                blocked::conv_blocked(level, &x, &weight, None, &g),
            ] {
                assert_eq!(out.len(), g.n * g.c_out * g.ho * g.wo);
                assert!(out.iter().all(|v| *v == 0.0));
            }
        }
    }

    #[test]
    fn equals_the_gemm_path() {
        for (i, case) in CASES.iter().enumerate() {
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
        assert!(depthwise_conv2d(&grad, &[0.0; 72], None, &grouped).is_none());
        assert!(depthwise_conv2d(&grad, &[0.0; 144], None, &dense).is_none());
    }
}
