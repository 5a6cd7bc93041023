//! The depthwise forward pass with channels in vector lanes, for the small and strided planes
//! where [`super::conv_planes`]'s row-at-a-time runs waste most of each register: a task takes
//! one image's group of [`LANES`] channels, transposes their planes into one zero-padded
//! `[rows, cols, LANES]` buffer, computes every output pixel as `kh · kw` full-width
//! multiply-adds (one per tap, all channels of the group at once) and transposes the result
//! back to `[c, ho, wo]`. This is the layout onnxruntime's NCHWc kernels keep between layers;
//! here it lives only inside the kernel, so the engine's tensors stay NCHW.

use std::mem::MaybeUninit;

use rayon::prelude::*;

use super::super::geometry::ConvGeometry;
use super::super::simd::SimdLevel;
use super::super::taps::mul_add;

/// Channels per task, one per lane: one AVX-512 register, two AVX2 ones, four SSE/NEON ones.
pub const LANES: usize = 16;

/// Output pixels along a row computed together, sharing each tap's weight load.
const PIXEL_BLOCK: usize = 4;

/// One value per channel of a group.
type Lanes = [f32; LANES];

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
    let plane_out = g.ho * g.wo;
    let len = g.n * g.c_out * plane_out;
    let mut out = Vec::with_capacity(len);
    let image_len = g.c_out * plane_out;
    if len > 0 {
        out.spare_capacity_mut()[..len]
            .par_chunks_mut(image_len)
            .enumerate()
            .for_each(|(image, image_out)| {
                image_out
                    .par_chunks_mut(LANES * plane_out)
                    .enumerate()
                    .for_each_init(Scratch::default, |scratch, (group, dst)| {
                        let first = group * LANES;
                        let task = Group {
                            x: &x[(image * g.c_in + first) * g.h * g.w..],
                            weight: &weight[first * g.kernel[0] * g.kernel[1]..],
                            bias: bias.map(|b| &b[first..]),
                            channels: dst.len() / plane_out,
                            g,
                        };
                        conv_group(level, &task, scratch, dst);
                    });
            });
    }
    // SAFETY: the image and group chunks cover the first `len` slots, and `conv_group`
    // wrote every slot of its chunk.
    unsafe { out.set_len(len) };
    out
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
    let [rows, cols] = padded_size(g);
    // Lanes past `channels` (a last, short group) are never written back: their values
    // (zeros, or an earlier group's) do not matter.
    let mut bias = [0f32; LANES];
    scratch.taps.clear();
    scratch.taps.resize(kh * kw, [0.0; LANES]);
    for c in 0..task.channels {
        bias[c] = task.bias.map_or(0.0, |b| b[c]);
        for (t, taps) in scratch.taps.iter_mut().enumerate() {
            taps[c] = task.weight[c * kh * kw + t];
        }
    }
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
    from_lanes(level, &scratch.out[..plane_out], dst);
}

/// `planes [channels, len]` (channels ≤ [`LANES`]) transposed into `out [len]` lanes; lanes
/// past `channels` are left as they were. With AVX, 8 × 8 blocks go through registers
/// (eight loads, 24 shuffles, eight stores); the rest one value at a time.
fn to_lanes(level: SimdLevel, planes: &[f32], len: usize, out: &mut [Lanes]) {
    let channels = planes.len() / len.max(1);
    assert!(channels <= LANES && out.len() == len, "to_lanes: sizes");
    let mut done = 0;
    #[cfg(target_arch = "x86_64")]
    if level >= SimdLevel::Avx2Fma {
        // SAFETY: both levels imply AVX (`depthwise_conv2d_at` only passes supported ones).
        done = unsafe { avx::to_lanes(planes, channels, len, out) };
    }
    let _ = level;
    for c in 0..channels {
        let from = if c < done { len / 8 * 8 } else { 0 };
        for (d, &v) in out[from..]
            .iter_mut()
            .zip(&planes[c * len + from..][..len - from])
        {
            d[c] = v;
        }
    }
}

/// [`to_lanes`] backwards: the first `dst.len() / src.len()` lanes of `src [len]` into
/// `dst [channels, len]`.
fn from_lanes(level: SimdLevel, src: &[Lanes], dst: &mut [MaybeUninit<f32>]) {
    let len = src.len();
    let channels = dst.len() / len.max(1);
    assert!(
        channels <= LANES && dst.len() == channels * len,
        "from_lanes: sizes"
    );
    let mut done = 0;
    #[cfg(target_arch = "x86_64")]
    if level >= SimdLevel::Avx2Fma {
        // SAFETY: as in `to_lanes`.
        done = unsafe { avx::from_lanes(src, channels, dst) };
    }
    let _ = level;
    for c in 0..channels {
        let from = if c < done { len / 8 * 8 } else { 0 };
        for (d, s) in dst[c * len + from..][..len - from]
            .iter_mut()
            .zip(&src[from..])
        {
            d.write(s[c]);
        }
    }
}

/// The 8 × 8 register transposes of [`to_lanes`] and [`from_lanes`].
#[cfg(target_arch = "x86_64")]
mod avx {
    use std::arch::x86_64::*;
    use std::mem::MaybeUninit;

    use super::{LANES, Lanes};

    /// The eight rows of `r` transposed in place.
    #[inline(always)]
    unsafe fn transpose8(r: &mut [__m256; 8]) {
        // SAFETY: register-only intrinsics; the caller's target features include AVX.
        unsafe {
            let t0 = _mm256_unpacklo_ps(r[0], r[1]);
            let t1 = _mm256_unpackhi_ps(r[0], r[1]);
            let t2 = _mm256_unpacklo_ps(r[2], r[3]);
            let t3 = _mm256_unpackhi_ps(r[2], r[3]);
            let t4 = _mm256_unpacklo_ps(r[4], r[5]);
            let t5 = _mm256_unpackhi_ps(r[4], r[5]);
            let t6 = _mm256_unpacklo_ps(r[6], r[7]);
            let t7 = _mm256_unpackhi_ps(r[6], r[7]);
            let u0 = _mm256_shuffle_ps::<0x44>(t0, t2);
            let u1 = _mm256_shuffle_ps::<0xEE>(t0, t2);
            let u2 = _mm256_shuffle_ps::<0x44>(t1, t3);
            let u3 = _mm256_shuffle_ps::<0xEE>(t1, t3);
            let u4 = _mm256_shuffle_ps::<0x44>(t4, t6);
            let u5 = _mm256_shuffle_ps::<0xEE>(t4, t6);
            let u6 = _mm256_shuffle_ps::<0x44>(t5, t7);
            let u7 = _mm256_shuffle_ps::<0xEE>(t5, t7);
            r[0] = _mm256_permute2f128_ps::<0x20>(u0, u4);
            r[1] = _mm256_permute2f128_ps::<0x20>(u1, u5);
            r[2] = _mm256_permute2f128_ps::<0x20>(u2, u6);
            r[3] = _mm256_permute2f128_ps::<0x20>(u3, u7);
            r[4] = _mm256_permute2f128_ps::<0x31>(u0, u4);
            r[5] = _mm256_permute2f128_ps::<0x31>(u1, u5);
            r[6] = _mm256_permute2f128_ps::<0x31>(u2, u6);
            r[7] = _mm256_permute2f128_ps::<0x31>(u3, u7);
        }
    }

    /// Whole 8-channel, 8-position blocks of `to_lanes`; returns how many of the first
    /// channels it wrote (for positions below `len / 8 * 8`).
    ///
    /// # Safety
    /// The CPU must have AVX.
    #[target_feature(enable = "avx")]
    pub(super) unsafe fn to_lanes(
        planes: &[f32],
        channels: usize,
        len: usize,
        out: &mut [Lanes],
    ) -> usize {
        let full = channels / 8 * 8;
        for c0 in (0..full).step_by(8) {
            for i0 in (0..len / 8 * 8).step_by(8) {
                let mut r = [_mm256_setzero_ps(); 8];
                for (k, reg) in r.iter_mut().enumerate() {
                    let row = &planes[(c0 + k) * len + i0..][..8];
                    // SAFETY: `row` holds the eight values read.
                    *reg = unsafe { _mm256_loadu_ps(row.as_ptr()) };
                }
                // SAFETY: AVX is enabled on this function.
                unsafe { transpose8(&mut r) };
                for (j, reg) in r.iter().enumerate() {
                    let lanes = &mut out[i0 + j][c0..c0 + 8];
                    // SAFETY: `lanes` has room for the eight values written.
                    unsafe { _mm256_storeu_ps(lanes.as_mut_ptr(), *reg) };
                }
            }
        }
        full
    }

    /// Whole blocks of `from_lanes`, as [`to_lanes`].
    ///
    /// # Safety
    /// The CPU must have AVX.
    #[target_feature(enable = "avx")]
    pub(super) unsafe fn from_lanes(
        src: &[Lanes],
        channels: usize,
        dst: &mut [MaybeUninit<f32>],
    ) -> usize {
        let len = src.len();
        let full = channels.min(LANES) / 8 * 8;
        for c0 in (0..full).step_by(8) {
            for i0 in (0..len / 8 * 8).step_by(8) {
                let mut r = [_mm256_setzero_ps(); 8];
                for (k, reg) in r.iter_mut().enumerate() {
                    let lanes = &src[i0 + k][c0..c0 + 8];
                    // SAFETY: `lanes` holds the eight values read.
                    *reg = unsafe { _mm256_loadu_ps(lanes.as_ptr()) };
                }
                // SAFETY: AVX is enabled on this function.
                unsafe { transpose8(&mut r) };
                for (j, reg) in r.iter().enumerate() {
                    let row = &mut dst[(c0 + j) * len + i0..][..8];
                    // SAFETY: `row` has room for the eight values written (`MaybeUninit<f32>`
                    // has `f32`'s layout).
                    unsafe { _mm256_storeu_ps(row.as_mut_ptr().cast::<f32>(), *reg) };
                }
            }
        }
        full
    }
}

/// `[rows, cols]` of the padded input: every position any output's taps read.
fn padded_size(g: &ConvGeometry) -> [usize; 2] {
    let [kh, kw] = g.kernel;
    let [sy, sx] = g.strides;
    let [dy, dx] = g.dilations;
    let rows = ((g.ho.max(1) - 1) * sy + (kh - 1) * dy + 1).max(g.pads_before[0] + g.h);
    let cols = ((g.wo.max(1) - 1) * sx + (kw - 1) * dx + 1).max(g.pads_before[1] + g.w);
    [rows, cols]
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

fn compute(level: SimdLevel, pixels: Pixels<'_>) {
    #[cfg(target_arch = "x86_64")]
    match level {
        // SAFETY (both): `depthwise_conv2d_at` only passes levels the CPU supports.
        SimdLevel::Avx512 => return unsafe { compute_avx512(pixels) },
        SimdLevel::Avx2Fma => return unsafe { compute_avx2(pixels) },
        SimdLevel::Portable => {}
    }
    let _ = level;
    compute_body::<false>(pixels);
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,fma")]
fn compute_avx512(pixels: Pixels<'_>) {
    compute_body::<true>(pixels);
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn compute_avx2(pixels: Pixels<'_>) {
    compute_body::<true>(pixels);
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
                for kx in 0..kw {
                    let w = &taps[ky * kw + kx];
                    for (j, a) in acc.iter_mut().enumerate() {
                        fma_lanes::<FMA>(a, w, &row[(ox + j) * sx + kx * dx]);
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

/// `acc += w · v`, lane by lane.
#[inline(always)]
fn fma_lanes<const FMA: bool>(acc: &mut Lanes, w: &Lanes, v: &Lanes) {
    for ((a, &w), &v) in acc.iter_mut().zip(w).zip(v) {
        *a = mul_add::<FMA>(w, v, *a);
    }
}
