//! Values of up to [`LANES`] channels side by side (`[len][LANES]`, one vector per position):
//! the layout of the direct kernels that put channels in vector lanes (the depthwise one for
//! short rows, `depthwise/blocked.rs`, and [`super::direct`] for few-input-channel layers),
//! and the transposes between it and the engine's `[channels, len]` planes.

use std::cell::RefCell;
use std::mem::MaybeUninit;
use std::thread::LocalKey;

use rayon::prelude::*;

use super::simd::SimdLevel;
use super::taps::mul_add;

/// Channels per vector: one AVX-512 register, two AVX2 ones, four SSE/NEON ones.
pub const LANES: usize = 16;

/// One value per channel.
pub type Lanes = [f32; LANES];

/// `acc += w · v`, lane by lane (fused when `FMA`; compiled into the caller's
/// `#[target_feature]`s, where each line is one to four vector operations).
#[inline(always)]
pub fn fma_lanes<const FMA: bool>(acc: &mut Lanes, w: &Lanes, v: &Lanes) {
    for ((a, &w), &v) in acc.iter_mut().zip(w).zip(v) {
        *a = mul_add::<FMA>(w, v, *a);
    }
}

/// `acc += w · v` with one value `v` for every lane (broadcast).
#[inline(always)]
pub fn fma_splat<const FMA: bool>(acc: &mut Lanes, w: &Lanes, v: f32) {
    for (a, &w) in acc.iter_mut().zip(w) {
        *a = mul_add::<FMA>(w, v, *a);
    }
}

/// A group's filters `weight [channels, k]` (channels ≤ [`LANES`]) as `taps [k]` lanes — tap
/// `t`'s weight for each channel — and their `bias` as lanes; lanes past `channels` are zero.
pub fn pack_filters(
    weight: &[f32],
    bias: Option<&[f32]>,
    k: usize,
    taps: &mut Vec<Lanes>,
) -> Lanes {
    taps.clear();
    taps.resize(k, [0.0; LANES]);
    let mut bias_lanes = [0.0; LANES];
    for (c, filter) in weight.chunks_exact(k).enumerate() {
        bias_lanes[c] = bias.map_or(0.0, |b| b[c]);
        for (tap, &w) in taps.iter_mut().zip(filter) {
            tap[c] = w;
        }
    }
    bias_lanes
}

/// The output `[n, channels, plane]` of a kernel that computes [`LANES`] channels at a time:
/// `group_task(scratch, image, group, dst)` runs for every image's groups in parallel (`dst`
/// is `[≤ LANES, plane]`, channels from `group · LANES`), with the running thread's `scratch`
/// (a thread-local of the caller's, kept between calls). A fresh scratch per rayon task (as
/// `for_each_init` makes them) allocated its buffers at every task, and with every thread on
/// one allocator arena (`device::retain_freed_host_memory`) the two threads waited on its
/// lock: 1152 × 7² 3×3 at batch 1 took 0.088 ms on two threads against 0.035 on one. With
/// the thread-locals, EfficientNet-Lite0's forward pass with every layer kept, batch 1, two
/// threads, alternated in one process (2-core Intel Xeon, Emerald Rapids): 6.58 → 5.93 ms.
///
/// # Safety
/// `group_task` must write every slot of its `dst`.
pub unsafe fn by_groups<S: 'static>(
    [n, channels, plane]: [usize; 3],
    scratch: &'static LocalKey<RefCell<S>>,
    group_task: impl Fn(&mut S, usize, usize, &mut [MaybeUninit<f32>]) + Sync + Send,
) -> Vec<f32> {
    let len = n * channels * plane;
    let mut out = Vec::with_capacity(len);
    if len > 0 {
        out.spare_capacity_mut()[..len]
            .par_chunks_mut(channels * plane)
            .enumerate()
            .for_each(|(image, image_out)| {
                image_out
                    .par_chunks_mut(LANES * plane)
                    .enumerate()
                    .for_each(|(group, dst)| {
                        scratch.with_borrow_mut(|s| group_task(s, image, group, dst));
                    });
            });
    }
    // SAFETY: the image and group chunks cover the first `len` slots, and `group_task`
    // wrote every slot of its chunk (the caller's promise).
    unsafe { out.set_len(len) };
    out
}

/// `channels` (≤ [`LANES`]) planes transposed into `out [len]` lanes: channel `c`'s values are
/// `planes[c · stride..][..len]` (`stride = len` for whole planes; a plane's length to take
/// one row of each of `channels` planes). Lanes past `channels` are left as they were. With
/// AVX2, 8 × 8 blocks go through registers (eight loads, 24 shuffles, eight stores; masked
/// loads for a run's last, short block) and the channels past the last multiple of 8 one
/// value at a time. AVX-512 16 × 16 transposes (64 shuffles, all on one port of an Intel
/// core) were no faster in a scan's pass on an Emerald Rapids Xeon (10.54–10.93 against
/// 10.58–11.02 ms, alternated), and slower for `from_lanes` (+0.28 ms).
pub fn to_lanes(
    level: SimdLevel,
    planes: &[f32],
    channels: usize,
    stride: usize,
    out: &mut [Lanes],
) {
    let len = out.len();
    assert_runs_fit("to_lanes", [channels, len, stride], planes.len());
    #[cfg(target_arch = "x86_64")]
    let done = if level >= SimdLevel::Avx2Fma {
        // SAFETY: both levels imply AVX2 (callers only pass levels the CPU supports); the
        // sizes were checked above.
        unsafe { avx::to_lanes(planes, channels, stride, out) }
    } else {
        0
    };
    #[cfg(not(target_arch = "x86_64"))]
    let done = {
        let _ = level;
        0
    };
    for c in done..channels {
        for (d, &v) in out.iter_mut().zip(&planes[c * stride..][..len]) {
            d[c] = v;
        }
    }
}

/// [`to_lanes`] backwards: the first `channels` lanes of `src [len]` into `dst`, channel `c`
/// at `dst[c · stride..][..len]` (`stride = len` for whole planes; a plane's length to write
/// a band of rows into each of `channels` planes), in the same blocks as [`to_lanes`].
pub fn from_lanes(
    level: SimdLevel,
    src: &[Lanes],
    channels: usize,
    dst: &mut [MaybeUninit<f32>],
    stride: usize,
) {
    let len = src.len();
    assert_runs_fit("from_lanes", [channels, len, stride], dst.len());
    #[cfg(target_arch = "x86_64")]
    let done = if level >= SimdLevel::Avx2Fma {
        // SAFETY: as in `to_lanes`; the sizes were checked above.
        unsafe { avx::from_lanes(src, channels, dst, stride) }
    } else {
        0
    };
    #[cfg(not(target_arch = "x86_64"))]
    let done = {
        let _ = level;
        0
    };
    for c in 0..channels {
        let from = if c < done { len / 8 * 8 } else { 0 };
        for (d, s) in dst[c * stride + from..][..len - from]
            .iter_mut()
            .zip(&src[from..])
        {
            d.write(s[c]);
        }
    }
}

/// Panics unless `channels` (≤ [`LANES`]) runs of `len` values, `stride` apart, fit in
/// `slots` values (`what` names the caller).
fn assert_runs_fit(what: &str, [channels, len, stride]: [usize; 3], slots: usize) {
    assert!(
        channels <= LANES
            && len <= stride
            && (channels == 0 || slots >= (channels - 1) * stride + len),
        "{what}: {channels} channels of {len} values at stride {stride} in {slots} slots"
    );
}

/// The 8 × 8 register transposes of [`to_lanes`] and [`from_lanes`] (AVX2 and AVX-512 levels).
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

    /// `to_lanes` for the first `channels / 8 * 8` channels, in 8 × 8 blocks (the last,
    /// short one of the run through masked loads); returns how many channels it wrote.
    ///
    /// # Safety
    /// The CPU must have AVX2; `planes` must hold `channels` runs of `out.len()` values at
    /// `stride` (`to_lanes` checks).
    #[target_feature(enable = "avx,avx2")]
    pub(super) unsafe fn to_lanes(
        planes: &[f32],
        channels: usize,
        stride: usize,
        out: &mut [Lanes],
    ) -> usize {
        let len = out.len();
        let full = channels / 8 * 8;
        let src = planes.as_ptr();
        let lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
        for c0 in (0..full).step_by(8) {
            for i0 in (0..len).step_by(8) {
                let n = (len - i0).min(8);
                let keep = _mm256_cmpgt_epi32(_mm256_set1_epi32(n as i32), lane);
                let mut r = [_mm256_setzero_ps(); 8];
                for (k, reg) in r.iter_mut().enumerate() {
                    // SAFETY: the kept values `(c0 + k) · stride + i0..+ n` lie in `planes`
                    // (checked by the caller); masked-off lanes are not read.
                    *reg = unsafe { _mm256_maskload_ps(src.add((c0 + k) * stride + i0), keep) };
                }
                // SAFETY: AVX is enabled on this function.
                unsafe { transpose8(&mut r) };
                for (lanes, reg) in out[i0..i0 + n].iter_mut().zip(&r) {
                    let lanes = &mut lanes[c0..c0 + 8];
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
        stride: usize,
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
                    let row = &mut dst[(c0 + j) * stride + i0..][..8];
                    // SAFETY: `row` has room for the eight values written (`MaybeUninit<f32>`
                    // has `f32`'s layout).
                    unsafe { _mm256_storeu_ps(row.as_mut_ptr().cast::<f32>(), *reg) };
                }
            }
        }
        full
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Both transposes at every level the CPU has, against the definition: every channel
    /// count up to a full group, runs shorter than, equal to and past one or two register
    /// blocks, planes at a stride longer than the run (a row of each plane); `from_lanes`
    /// leaves every slot outside its runs alone.
    #[test]
    fn transposes_match_definition_at_every_level() {
        for level in SimdLevel::supported_levels() {
            for channels in [0, 1, 7, 8, 9, 15, 16] {
                for len in [1, 5, 8, 15, 16, 17, 31, 33, 56] {
                    let stride = len + 3;
                    let planes: Vec<f32> = (0..channels.max(1) * stride)
                        .map(|i| i as f32 * 0.5 - 7.0)
                        .collect();
                    let mut lanes = vec![[f32::NAN; LANES]; len];
                    to_lanes(level, &planes, channels, stride, &mut lanes);
                    for (i, l) in lanes.iter().enumerate() {
                        for (c, &v) in l.iter().enumerate().take(channels) {
                            assert_eq!(v, planes[c * stride + i], "{level:?} {channels} {len}");
                        }
                    }
                    let mut back = vec![MaybeUninit::new(f32::NAN); channels.max(1) * stride];
                    from_lanes(level, &lanes, channels, &mut back, stride);
                    for (slot, v) in back.iter().enumerate() {
                        // SAFETY: every slot was initialised (NaN or written).
                        let v = unsafe { v.assume_init() };
                        let (c, i) = (slot / stride, slot % stride);
                        if c < channels && i < len {
                            assert_eq!(v, planes[slot], "{level:?} {channels} {len} at {slot}");
                        } else {
                            assert!(
                                v.is_nan(),
                                "{level:?} {channels} {len}: slot {slot} written"
                            );
                        }
                    }
                }
            }
        }
    }
}
