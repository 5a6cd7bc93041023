//! The depthwise forward pass with channels in vector lanes, for the small and strided planes
//! where [`super::conv_planes`]'s row-at-a-time runs waste most of each register: a task takes
//! one image's group of [`LANES`] channels, transposes their planes into one zero-padded
//! `[rows, cols, LANES]` buffer, computes every output pixel as `kh · kw` full-width
//! multiply-adds (one per tap, all channels of the group at once) and transposes the result
//! back to `[c, ho, wo]`. This is the layout onnxruntime's NCHWc kernels keep between layers;
//! here it lives only inside the kernel, so the engine's tensors stay NCHW.

use std::mem::MaybeUninit;

use super::super::geometry::ConvGeometry;
use super::super::lanes::{LANES, Lanes, by_groups, fma_lanes, from_lanes, pack_filters, to_lanes};
use super::super::simd::SimdLevel;

/// Output pixels along a row computed together, sharing each tap's weight load.
const PIXEL_BLOCK: usize = 4;

/// `x [n, c, h, w]` ⊛ `weight [c, 1, kh, kw]` (+ `bias [c]`) for a depthwise `g` (checked by
/// the caller, with the slices' sizes), at `level` (supported by the CPU): the output
/// `[n, c, ho, wo]`.
pub(super) fn conv_blocked(
    level: SimdLevel,
    x: &[f32],
    weight: &[f32],
    bias: Option<&[f32]>,
    g: &ConvGeometry,
) -> Vec<f32> {
    let group_task = |scratch: &mut Scratch, image: usize, group: usize, dst: &mut [_]| {
        let first = group * LANES;
        let task = Group {
            x: &x[(image * g.c_in + first) * g.h * g.w..],
            weight: &weight[first * g.kernel[0] * g.kernel[1]..],
            bias: bias.map(|b| &b[first..]),
            channels: dst.len() / (g.ho * g.wo),
            g,
        };
        conv_group(level, &task, scratch, dst);
    };
    // SAFETY: `conv_group` writes every slot of its `dst`.
    unsafe { by_groups([g.n, g.c_out, g.ho * g.wo], group_task) }
}

/// A task's reusable buffers: the padded input, the outputs and the taps, all in lanes.
#[derive(Default)]
struct Scratch {
    padded: Vec<Lanes>,
    out: Vec<Lanes>,
    taps: Vec<Lanes>,
}

/// One task's inputs: `channels` (≤ [`LANES`]) consecutive channels of one image, each slice
/// starting at the group's first channel.
struct Group<'a> {
    x: &'a [f32],
    weight: &'a [f32],
    bias: Option<&'a [f32]>,
    channels: usize,
    g: &'a ConvGeometry,
}

/// Fills `dst` (`[channels, ho, wo]`) with the group's output, at `level`.
fn conv_group(
    level: SimdLevel,
    task: &Group<'_>,
    scratch: &mut Scratch,
    dst: &mut [MaybeUninit<f32>],
) {
    let g = task.g;
    let [kh, kw] = g.kernel;
    let (plane_in, plane_out) = (g.h * g.w, g.ho * g.wo);
    let x = &task.x[..task.channels * plane_in];
    if task.bias.is_none() && x.iter().all(|v| *v == 0.0) {
        // Gated-off channels of a reverse pass: zero in, zero out.
        super::super::init_with(dst, 0.0);
        return;
    }
    let [rows, cols] = g.padded_size();
    // Lanes past `channels` (a last, short group) are never written back: their values
    // (zeros, or an earlier group's) do not matter.
    let bias = pack_filters(
        &task.weight[..task.channels * kh * kw],
        task.bias.map(|b| &b[..task.channels]),
        kh * kw,
        &mut scratch.taps,
    );
    // Every call with this geometry writes the same interior positions, so a buffer of the
    // right size from an earlier group still has zero padding.
    if scratch.padded.len() != rows * cols {
        scratch.padded.clear();
        scratch.padded.resize(rows * cols, [0.0; LANES]);
    }
    // [channels, h·w] → [h·w] lanes, then each row into the padded buffer's interior.
    scratch.out.resize(plane_in.max(plane_out), [0.0; LANES]);
    to_lanes(level, x, plane_in, &mut scratch.out[..plane_in]);
    let [py, px] = g.pads_before;
    for (y, row_in) in scratch.out[..plane_in].chunks_exact(g.w).enumerate() {
        scratch.padded[(y + py) * cols + px..][..g.w].copy_from_slice(row_in);
    }
    let pixels = Pixels {
        out: &mut scratch.out[..plane_out],
        padded: &scratch.padded,
        taps: &scratch.taps,
        bias,
        cols,
        g,
    };
    compute(level, pixels);
    from_lanes(
        level,
        &scratch.out[..plane_out],
        task.channels,
        dst,
        plane_out,
    );
}

/// The arithmetic of one group: `out [ho · wo]` from `padded [rows, cols]`, in lanes.
struct Pixels<'a> {
    out: &'a mut [Lanes],
    padded: &'a [Lanes],
    taps: &'a [Lanes],
    bias: Lanes,
    cols: usize,
    g: &'a ConvGeometry,
}

/// Computes `pixels` with the kernels of `level` (supported by the CPU:
/// `depthwise_conv2d_at` checks).
fn compute(level: SimdLevel, pixels: Pixels<'_>) {
    super::super::simd::run_at_level!(level, compute_body, pixels, Pixels<'_>);
}

/// The body of [`compute`], compiled once per level (each `Lanes` loop becomes one to four
/// vector operations); `FMA` selects fused multiply-adds.
#[inline(always)]
fn compute_body<const FMA: bool>(pixels: Pixels<'_>) {
    let Pixels {
        out,
        padded,
        taps,
        bias,
        cols,
        g,
    } = pixels;
    let [kh, kw] = g.kernel;
    let [sy, sx] = g.strides;
    let [dy, dx] = g.dilations;
    for (oy, row_out) in out.chunks_exact_mut(g.wo).enumerate() {
        let mut blocks = row_out.chunks_exact_mut(PIXEL_BLOCK);
        let mut ox = 0;
        for block in &mut blocks {
            let mut acc = [bias; PIXEL_BLOCK];
            for ky in 0..kh {
                let row = &padded[(oy * sy + ky * dy) * cols..];
                let taps = &taps[ky * kw..][..kw];
                // EfficientNet's kernels with the row's taps known at compile time: each input
                // vector the block reads is loaded once for all the taps that use it.
                match (kw, sx, dx) {
                    (3, 1, 1) => block_row::<FMA, 3, 1>(&mut acc, row, ox, taps),
                    (5, 1, 1) => block_row::<FMA, 5, 1>(&mut acc, row, ox, taps),
                    (3, 2, 1) => block_row::<FMA, 3, 2>(&mut acc, row, ox, taps),
                    (5, 2, 1) => block_row::<FMA, 5, 2>(&mut acc, row, ox, taps),
                    _ => {
                        for (kx, w) in taps.iter().enumerate() {
                            for (j, a) in acc.iter_mut().enumerate() {
                                fma_lanes::<FMA>(a, w, &row[(ox + j) * sx + kx * dx]);
                            }
                        }
                    }
                }
            }
            block.copy_from_slice(&acc);
            ox += PIXEL_BLOCK;
        }
        for (j, o) in blocks.into_remainder().iter_mut().enumerate() {
            let mut acc = bias;
            for ky in 0..kh {
                let row = &padded[(oy * sy + ky * dy) * cols..];
                for kx in 0..kw {
                    fma_lanes::<FMA>(&mut acc, &taps[ky * kw + kx], &row[(ox + j) * sx + kx * dx]);
                }
            }
            *o = acc;
        }
    }
}

/// One kernel row's taps (`KW` of them, stride `SX`, no dilation) added onto a block of
/// outputs from `ox`: the inputs it reads are one window of the padded row.
#[inline(always)]
fn block_row<const FMA: bool, const KW: usize, const SX: usize>(
    acc: &mut [Lanes; PIXEL_BLOCK],
    row: &[Lanes],
    ox: usize,
    taps: &[Lanes],
) {
    let window = &row[ox * SX..][..(PIXEL_BLOCK - 1) * SX + KW];
    let taps = &taps[..KW];
    for (kx, w) in taps.iter().enumerate() {
        for (j, a) in acc.iter_mut().enumerate() {
            fma_lanes::<FMA>(a, w, &window[j * SX + kx]);
        }
    }
}
