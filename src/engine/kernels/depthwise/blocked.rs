//! The depthwise forward pass with channels in vector lanes, for the small and strided planes
//! where [`super::conv_planes`]'s row-at-a-time runs waste most of each register: a task takes
//! one image's group of [`LANES`] channels, transposes their planes into one zero-padded
//! `[rows, cols, LANES]` buffer, computes every output pixel as `kh · kw` full-width
//! multiply-adds (one per tap, all channels of the group at once) and transposes the result
//! back to `[c, ho, wo]`. This is the layout onnxruntime's NCHWc kernels keep between layers;
//! here it lives only inside the kernel, so the engine's tensors stay NCHW.

use std::cell::RefCell;
use std::mem::MaybeUninit;

use super::super::geometry::{ConvGeometry, ZeroBorder};
use super::super::lanes::{LANES, Lanes, by_groups, fma_lanes, from_lanes, pack_filters, to_lanes};
use super::super::simd::SimdLevel;
#[cfg(target_arch = "x86_64")]
use super::prefetch_rows_for_write;
use super::{PREFETCH_ROWS, prefetch_rows};

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
    unsafe { by_groups([g.n, g.c_out, g.ho * g.wo], &SCRATCH, group_task) }
}

thread_local! {
    /// Each thread's [`Scratch`], kept between calls ([`by_groups`] says why).
    static SCRATCH: RefCell<Scratch> = RefCell::new(Scratch::default());
}

/// A thread's reusable buffers: the padded input, the outputs and the taps, all in lanes.
#[derive(Default)]
struct Scratch {
    padded: ZeroBorder<Lanes>,
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
    let padded = scratch.padded.for_geometry(g, rows * cols);
    let [py, px] = g.pads_before;
    // [channels, h, w] → each row's [w] lanes straight into the padded buffer's interior.
    for y in 0..g.h {
        // Each plane's row `PREFETCH_ROWS` on (16 streams: too many for the hardware's).
        let ahead = (y + PREFETCH_ROWS) as isize;
        for plane in x.chunks_exact(plane_in) {
            prefetch_rows(plane, g.w, ahead..ahead + 1);
        }
        let row = &mut padded[(y + py) * cols + px..][..g.w];
        to_lanes(level, &x[y * g.w..], task.channels, plane_in, row);
    }
    scratch.out.resize(plane_out, [0.0; LANES]);
    let pixels = Pixels {
        out: &mut scratch.out[..plane_out],
        padded: scratch.padded.values(),
        taps: &scratch.taps,
        bias,
        cols,
        g,
    };
    // The group's output planes fetched for writing while the arithmetic runs
    // (`prefetch_rows_for_write`: a kept output is a fresh buffer), taken as one row.
    #[cfg(target_arch = "x86_64")]
    prefetch_rows_for_write(dst, dst.len(), 0..1);
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
    #[cfg(target_arch = "x86_64")]
    if level == SimdLevel::Avx512 {
        // SAFETY: `depthwise_conv2d_at` only passes levels the CPU supports.
        unsafe { avx512::compute(pixels) };
        return;
    }
    super::super::simd::run_at_level!(level, compute_body, pixels, Pixels<'_>);
}

/// The body of [`compute`] at the AVX2 and portable levels (and for the AVX-512 level's
/// unusual geometries), compiled once per level (each `Lanes` loop becomes one to four
/// vector operations); `FMA` selects fused multiply-adds. Blocks of [`PIXEL_BLOCK`] outputs
/// along a row, then the row's rest as one block.
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
    let block = GenericBlock {
        padded,
        taps,
        bias,
        cols,
        g,
    };
    for (oy, row_out) in out.chunks_exact_mut(g.wo).enumerate() {
        let mut ox = 0;
        while ox + PIXEL_BLOCK <= g.wo {
            block.outputs::<FMA, PIXEL_BLOCK>(&mut row_out[ox..], [oy, ox]);
            ox += PIXEL_BLOCK;
        }
        let (out, at) = (&mut row_out[ox..], [oy, ox]);
        match g.wo - ox {
            3 => block.outputs::<FMA, 3>(out, at),
            2 => block.outputs::<FMA, 2>(out, at),
            1 => block.outputs::<FMA, 1>(out, at),
            _ => {}
        }
    }
}

/// What every block of [`compute_body`] reads.
struct GenericBlock<'a> {
    padded: &'a [Lanes],
    taps: &'a [Lanes],
    bias: Lanes,
    cols: usize,
    g: &'a ConvGeometry,
}

impl GenericBlock<'_> {
    /// `N` outputs of row `oy` from column `ox` into `out[..N]`.
    #[inline(always)]
    fn outputs<const FMA: bool, const N: usize>(&self, out: &mut [Lanes], [oy, ox]: [usize; 2]) {
        let g = self.g;
        let [kh, kw] = g.kernel;
        let [sy, sx] = g.strides;
        let [dy, dx] = g.dilations;
        let mut acc = [self.bias; N];
        for ky in 0..kh {
            let row = &self.padded[(oy * sy + ky * dy) * self.cols..];
            let taps = &self.taps[ky * kw..][..kw];
            // EfficientNet's kernels with the row's taps known at compile time: each input
            // vector the block reads is loaded once for all the taps that use it.
            match (kw, sx, dx) {
                (3, 1, 1) => block_row::<FMA, 3, 1, N>(&mut acc, row, ox, taps),
                (5, 1, 1) => block_row::<FMA, 5, 1, N>(&mut acc, row, ox, taps),
                (3, 2, 1) => block_row::<FMA, 3, 2, N>(&mut acc, row, ox, taps),
                (5, 2, 1) => block_row::<FMA, 5, 2, N>(&mut acc, row, ox, taps),
                _ => {
                    for (kx, w) in taps.iter().enumerate() {
                        for (j, a) in acc.iter_mut().enumerate() {
                            fma_lanes::<FMA>(a, w, &row[(ox + j) * sx + kx * dx]);
                        }
                    }
                }
            }
        }
        out[..N].copy_from_slice(&acc);
    }
}

/// One kernel row's taps (`KW` of them, stride `SX`, no dilation) added onto a block of `N`
/// outputs from `ox`: the inputs it reads are one window of the padded row.
#[inline(always)]
fn block_row<const FMA: bool, const KW: usize, const SX: usize, const N: usize>(
    acc: &mut [Lanes; N],
    row: &[Lanes],
    ox: usize,
    taps: &[Lanes],
) {
    let window = &row[ox * SX..][..(N - 1) * SX + KW];
    let taps = &taps[..KW];
    for (kx, w) in taps.iter().enumerate() {
        for (j, a) in acc.iter_mut().enumerate() {
            fma_lanes::<FMA>(a, w, &window[j * SX + kx]);
        }
    }
}

/// [`compute`] at the AVX-512 level with explicit registers: blocks of
/// [`avx512::PIXEL_BLOCK`] outputs along a row, one accumulator register each. The generic
/// body's four accumulators (`[f32; 16]` arrays; eight such arrays, tried earlier, spilled)
/// were one FMA chain per accumulator with a 4-cycle latency, so half the FMA throughput at
/// best.
#[cfg(target_arch = "x86_64")]
mod avx512 {
    use std::arch::x86_64::*;

    use super::super::super::lanes::LANES;
    use super::Pixels;

    /// Output pixels along a row computed together: eight accumulators, enough independent
    /// FMA chains to cover the latency of two FMA ports.
    pub(super) const PIXEL_BLOCK: usize = 8;

    /// # Safety
    /// The CPU must have AVX-512F.
    #[target_feature(enable = "avx512f,avx2,fma")]
    pub(super) unsafe fn compute(pixels: Pixels<'_>) {
        let g = pixels.g;
        let ([kh, kw], [sy, sx]) = (g.kernel, g.strides);
        let fast = g.dilations == [1, 1] && matches!((kw, sx), (3, 1) | (5, 1) | (3, 2) | (5, 2));
        if !fast {
            super::compute_body::<true>(pixels);
            return;
        }
        let (out, padded, taps) = (pixels.out, pixels.padded, pixels.taps);
        let (bias, cols) = (pixels.bias, pixels.cols);
        let rows = padded.len() / cols.max(1);
        assert!(
            taps.len() >= kh * kw
                && out.len() >= g.ho * g.wo
                && (g.ho == 0 || (g.ho - 1) * sy + kh <= rows)
                && (g.wo == 0 || (g.wo - 1) * sx + kw <= cols),
            "depthwise lanes block out of bounds"
        );
        let (padded, taps) = (padded.as_ptr().cast::<f32>(), taps.as_ptr().cast::<f32>());
        // SAFETY: every read is inside `padded` ([rows, cols] lanes: rows `oy · sy + ky <
        // rows`, columns `ox · sx + kx < cols`, asserted above) or `taps` ([kh · kw] lanes),
        // every write inside `out`; AVX-512F is enabled on this function.
        unsafe {
            let bias = _mm512_loadu_ps(bias.as_ptr());
            let block = Block {
                padded,
                taps,
                bias,
                cols,
                kernel: [kh, kw],
                strides: [sy, sx],
            };
            for (oy, row_out) in out.chunks_exact_mut(g.wo).take(g.ho).enumerate() {
                let mut ox = 0;
                while ox + PIXEL_BLOCK <= g.wo {
                    block.outputs::<PIXEL_BLOCK>(&mut row_out[ox..], [oy, ox]);
                    ox += PIXEL_BLOCK;
                }
                // The rest as one block (7 × 7 maps: the whole row), so as many FMA chains
                // overlap as there are outputs.
                let (out, at) = (&mut row_out[ox..], [oy, ox]);
                match g.wo - ox {
                    7 => block.outputs::<7>(out, at),
                    6 => block.outputs::<6>(out, at),
                    5 => block.outputs::<5>(out, at),
                    4 => block.outputs::<4>(out, at),
                    3 => block.outputs::<3>(out, at),
                    2 => block.outputs::<2>(out, at),
                    1 => block.outputs::<1>(out, at),
                    _ => {}
                }
            }
        }
    }

    /// What every block of outputs reads: the padded input and the taps (lanes, as
    /// pointers checked by [`compute`]), the bias, and the geometry (no dilation).
    struct Block {
        padded: *const f32,
        taps: *const f32,
        bias: __m512,
        cols: usize,
        kernel: [usize; 2],
        strides: [usize; 2],
    }

    impl Block {
        /// `N` outputs of row `oy` from column `ox` into `out[..N]`.
        ///
        /// # Safety
        /// Their windows must lie inside the padded input (checked by [`compute`]).
        #[inline(always)]
        unsafe fn outputs<const N: usize>(&self, out: &mut [[f32; LANES]], [oy, ox]: [usize; 2]) {
            let ([kh, kw], [sy, sx]) = (self.kernel, self.strides);
            let mut acc = [self.bias; N];
            // SAFETY: rows `oy · sy + ky` and columns from `ox · sx` over the window lie in
            // the padded input, by the caller; AVX-512F is enabled in the caller.
            unsafe {
                for ky in 0..kh {
                    let row = self
                        .padded
                        .add(((oy * sy + ky) * self.cols + ox * sx) * LANES);
                    let taps = self.taps.add(ky * kw * LANES);
                    match (kw, sx) {
                        (3, 1) => block_row::<3, 1, N>(&mut acc, row, taps),
                        (5, 1) => block_row::<5, 1, N>(&mut acc, row, taps),
                        (3, 2) => block_row::<3, 2, N>(&mut acc, row, taps),
                        _ => block_row::<5, 2, N>(&mut acc, row, taps),
                    }
                }
                for (o, a) in out[..N].iter_mut().zip(&acc) {
                    _mm512_storeu_ps(o.as_mut_ptr(), *a);
                }
            }
        }
    }

    /// One kernel row's `KW` taps (stride `SX`) onto a block of outputs whose window starts
    /// at `row` (lanes), the taps at `taps`.
    #[inline(always)]
    unsafe fn block_row<const KW: usize, const SX: usize, const N: usize>(
        acc: &mut [__m512; N],
        row: *const f32,
        taps: *const f32,
    ) {
        // SAFETY: the caller's bounds cover the window `(N - 1) · SX + KW` lanes
        // from `row` and `KW` taps; AVX-512F is enabled in the caller.
        unsafe {
            for kx in 0..KW {
                let w = _mm512_loadu_ps(taps.add(kx * LANES));
                for (j, a) in acc.iter_mut().enumerate() {
                    let v = _mm512_loadu_ps(row.add((j * SX + kx) * LANES));
                    *a = _mm512_fmadd_ps(w, v, *a);
                }
            }
        }
    }
}
