//! Element-wise activations on the CPU (flex) device: ReLU and Clip (ReLU6) as one parallel
//! pass that writes its output once. Flex ran ReLU6 as `clamp_min` then `clamp_max`, two
//! passes over a fresh buffer each: 5.2–5.8 ms of EfficientNet-Lite0's forward pass for its 33
//! ReLU6 nodes (2-core Intel Xeon, AVX-512), the largest share after the convolutions.

use rayon::prelude::*;

/// Values per parallel task: large enough that a task's work outweighs scheduling it.
const TASK_LEN: usize = 1 << 14;

/// `x` clamped to `[min, max]` (`-∞` / `+∞` leave that side open; ReLU is `[0, +∞]`); NaN
/// stays NaN, as ONNX's Clip and Relu give it.
pub fn clamp(x: &[f32], min: f32, max: f32) -> Vec<f32> {
    let mut out = Vec::with_capacity(x.len());
    #[cfg(target_arch = "x86_64")]
    let avx = super::simd::active() != super::simd::SimdLevel::Portable;
    #[cfg(target_arch = "x86_64")]
    let streaming = x.len() >= STREAM_FROM && avx;
    out.spare_capacity_mut()[..x.len()]
        .par_chunks_mut(TASK_LEN)
        .zip(x.par_chunks(TASK_LEN))
        .for_each(|(dst, src)| {
            #[cfg(target_arch = "x86_64")]
            if streaming {
                // SAFETY: the AVX2 levels include AVX (checked above).
                unsafe { clamp_streaming(dst, src, min, max) };
                return;
            } else if avx {
                // SAFETY: as above.
                unsafe { clamp_avx(dst, src, min, max) };
                return;
            }
            for (d, &v) in dst.iter_mut().zip(src) {
                d.write(clamp_one(v, min, max));
            }
        });
    // SAFETY: the chunks cover the first `x.len()` slots and each was written above.
    unsafe { out.set_len(x.len()) };
    out
}

/// Outputs from this many values (16 MB) are written with streaming (non-temporal) stores:
/// input and output together then exceed half of a 32 MB last-level cache, so the output
/// would not stay there for the next node anyway, and ordinary stores would first read every
/// destination line from memory. Only batches reach this size (EfficientNet-Lite0's largest
/// ReLU6 output is 1.2 M values per image): its forward pass at batch 16 with every layer
/// kept, interleaved in one process, medians of 30–40 passes, six runs: 0.15–0.8 ms per image
/// faster (11.8–14.3 → 11.2–14.1 ms; 2-core AMD EPYC Zen 3, AVX2). Streaming from 2 M values
/// as well was no better (three runs: +0.3, −0.1, −0.2 ms).
#[cfg(target_arch = "x86_64")]
const STREAM_FROM: usize = 1 << 22;

/// [`clamp_one`] of `src` into `dst` (same length) with non-temporal stores for the
/// 32-byte-aligned middle, then a store fence so other threads see the values.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx")]
fn clamp_streaming(dst: &mut [std::mem::MaybeUninit<f32>], src: &[f32], min: f32, max: f32) {
    use std::arch::x86_64::*;
    let head = dst.as_ptr().align_offset(32).min(dst.len());
    let body = (dst.len() - head) / 8 * 8;
    for (d, &v) in dst[..head].iter_mut().zip(src) {
        d.write(clamp_one(v, min, max));
    }
    let (lo, hi) = (_mm256_set1_ps(min), _mm256_set1_ps(max));
    for i in (head..head + body).step_by(8) {
        // SAFETY: `i + 8 ≤ head + body ≤ len` for both slices; `dst + i` is 32-byte aligned.
        unsafe {
            let v = _mm256_loadu_ps(src.as_ptr().add(i));
            // MAXPS/MINPS give the second operand for NaN: put `v` second to keep NaN.
            let v = _mm256_max_ps(lo, v);
            let v = _mm256_min_ps(hi, v);
            _mm256_stream_ps(dst.as_mut_ptr().add(i).cast::<f32>(), v);
        }
    }
    for (d, &v) in dst[head + body..].iter_mut().zip(&src[head + body..]) {
        d.write(clamp_one(v, min, max));
    }
    _mm_sfence();
}

/// Compare-and-select: keeps NaN (both comparisons are false) and vectorises.
#[inline(always)]
fn clamp_one(v: f32, min: f32, max: f32) -> f32 {
    let v = if v < min { min } else { v };
    if v > max { max } else { v }
}

/// How far ahead (values) [`clamp_avx`] prefetches its output for writing. A kept ReLU6 output
/// is a fresh buffer last touched a whole pass earlier: each line's store waited for its
/// read-for-ownership from L3 (~0.5 ns a value whatever the vector width: the AVX loop alone
/// was no faster than the compiler's SSE2 one). EfficientNet-Lite0 with every layer kept, one
/// thread, its 33 ReLU6 copies (Emerald Rapids, two runs each): 2.90/3.04 → 2.28/2.47 ms; 128
/// to 2048 values ahead alike. Streaming stores for all sizes instead: the copies 1.9 ms, but
/// the convolutions reading them from memory 1.5 ms slower.
#[cfg(target_arch = "x86_64")]
const WRITE_AHEAD: usize = 256;

/// [`clamp_one`] of `src` into `dst` (same length), 8 at a time, each line of `dst` fetched
/// for writing [`WRITE_AHEAD`] values before it is written.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx")]
fn clamp_avx(dst: &mut [std::mem::MaybeUninit<f32>], src: &[f32], min: f32, max: f32) {
    use std::arch::x86_64::*;
    let len = dst.len().min(src.len());
    let body = len / 8 * 8;
    let (lo, hi) = (_mm256_set1_ps(min), _mm256_set1_ps(max));
    for i in (0..body).step_by(8) {
        // SAFETY: `i + 8 ≤ body ≤ len` for both slices.
        unsafe {
            if i % 16 == 0 {
                // A line of `dst` to be written soon, fetched for writing (PREFETCHW; a no-op
                // hint on CPUs without it).
                let ahead = dst.as_ptr().wrapping_add(i + WRITE_AHEAD);
                _mm_prefetch::<{ _MM_HINT_ET0 }>(ahead.cast::<i8>());
            }
            // MAXPS/MINPS give the second operand for NaN: `v` second keeps NaN.
            let v = _mm256_max_ps(lo, _mm256_loadu_ps(src.as_ptr().add(i)));
            _mm256_storeu_ps(dst.as_mut_ptr().add(i).cast::<f32>(), _mm256_min_ps(hi, v));
        }
    }
    for (d, &v) in dst[body..len].iter_mut().zip(&src[body..len]) {
        d.write(clamp_one(v, min, max));
    }
}

/// [`clamp`] into `x`'s own buffer: for a value the forward pass no longer needs. On one
/// thread (a per-core pass of `scan` and `stats`) the loop runs without tasks; with AVX it
/// clamps 8 values per instruction, where the compiler's loop is SSE2's 4: in a one-thread
/// pool, medians of 200, 2-core AMD EPYC Zen 3, 300 K values 47–107 → 22–34 µs, 1.2 M
/// values 183–190 → 93 µs.
pub fn clamp_in_place(x: &mut [f32], min: f32, max: f32) {
    #[cfg(target_arch = "x86_64")]
    let avx = super::simd::active() != super::simd::SimdLevel::Portable;
    let run = |chunk: &mut [f32]| {
        #[cfg(target_arch = "x86_64")]
        if avx {
            // SAFETY: the AVX2 levels include AVX (checked above).
            unsafe { clamp_avx_in_place(chunk, min, max) };
            return;
        }
        for v in chunk.iter_mut() {
            *v = clamp_one(*v, min, max);
        }
    };
    if rayon::current_num_threads() == 1 {
        run(x);
    } else {
        x.par_chunks_mut(TASK_LEN).for_each(run);
    }
}

/// [`clamp_one`] of every value of `x`, 8 at a time.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx")]
fn clamp_avx_in_place(x: &mut [f32], min: f32, max: f32) {
    use std::arch::x86_64::*;
    let body = x.len() / 8 * 8;
    let (lo, hi) = (_mm256_set1_ps(min), _mm256_set1_ps(max));
    for i in (0..body).step_by(8) {
        // SAFETY: `i + 8 ≤ body ≤ len`.
        unsafe {
            let p = x.as_mut_ptr().add(i);
            // MAXPS/MINPS give the second operand for NaN: `v` second keeps NaN.
            let v = _mm256_max_ps(lo, _mm256_loadu_ps(p));
            _mm256_storeu_ps(p, _mm256_min_ps(hi, v));
        }
    }
    for v in &mut x[body..] {
        *v = clamp_one(*v, min, max);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clamps_like_relu6_and_keeps_nan() {
        let x = [
            -3.0,
            -0.0,
            0.5,
            6.0,
            7.5,
            f32::NAN,
            f32::INFINITY,
            f32::NEG_INFINITY,
        ];
        let got = clamp(&x, 0.0, 6.0);
        assert_eq!(&got[..5], &[0.0, -0.0, 0.5, 6.0, 6.0]);
        assert!(got[5].is_nan());
        assert_eq!(&got[6..], &[6.0, 0.0]);
        let mut in_place = x;
        clamp_in_place(&mut in_place, 0.0, 6.0);
        assert_eq!(in_place[..5], got[..5]);
        assert!(in_place[5].is_nan());
        assert_eq!(in_place[6..], got[6..]);
        let relu = clamp(&x, 0.0, f32::INFINITY);
        assert_eq!(relu[6], f32::INFINITY);
        assert_eq!(relu[4], 7.5);
    }

    #[test]
    fn in_place_equals_the_copy_on_one_thread_and_many() {
        // NaN, both zeros, infinities and ordinary values, an odd length (a scalar tail).
        let specials = [
            f32::NAN,
            -0.0,
            0.0,
            f32::INFINITY,
            f32::NEG_INFINITY,
            6.0,
            -7.5,
        ];
        let x: Vec<f32> = (0..2 * TASK_LEN + 13)
            .map(|i| match i % 11 {
                k @ 0..=6 => specials[k],
                _ => (i % 97) as f32 / 8.0 - 3.0,
            })
            .collect();
        let expected = clamp(&x, 0.0, 6.0);
        let one = rayon::ThreadPoolBuilder::new()
            .num_threads(1)
            .build()
            .unwrap();
        for on_one_thread in [false, true] {
            let mut got = x.clone();
            if on_one_thread {
                one.install(|| clamp_in_place(&mut got, 0.0, 6.0));
            } else {
                clamp_in_place(&mut got, 0.0, 6.0);
            }
            let bits = |v: &[f32]| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
            assert_eq!(bits(&got), bits(&expected), "one thread: {on_one_thread}");
        }
    }

    #[test]
    fn long_inputs_keep_their_order() {
        let x: Vec<f32> = (0..3 * TASK_LEN + 17).map(|i| i as f32 - 1000.0).collect();
        let got = clamp(&x, -5.0, 40_000.0);
        for (i, (&g, &v)) in got.iter().zip(&x).enumerate() {
            assert_eq!(g, v.clamp(-5.0, 40_000.0), "value {i}");
        }
    }

    /// The streaming path equals the plain one bit for bit (NaN, −0, the bounds) whatever
    /// the destination's alignment and length, and `clamp` takes it on large inputs.
    #[cfg(target_arch = "x86_64")]
    #[test]
    fn streaming_stores_clamp_alike() {
        let values = |n: usize| -> Vec<f32> {
            (0..n)
                .map(|i| match i % 7 {
                    0 => f32::NAN,
                    1 => -0.0,
                    2 => 6.0,
                    k => (i % 1000) as f32 * 0.013 - 3.0 + k as f32,
                })
                .collect()
        };
        let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        if std::arch::is_x86_feature_detected!("avx") {
            let src = values(300);
            for (start, len) in [(0, 300), (1, 77), (3, 8), (5, 0), (7, 40)] {
                let src = &src[start..start + len];
                let mut buf = vec![std::mem::MaybeUninit::<f32>::uninit(); len + 9];
                for offset in 0..8 {
                    let dst = &mut buf[offset..offset + len];
                    // SAFETY: the CPU has AVX (checked above).
                    unsafe { clamp_streaming(dst, src, 0.0, 6.0) };
                    // SAFETY: clamp_streaming wrote every slot of `dst`.
                    let got: Vec<f32> = dst.iter().map(|v| unsafe { v.assume_init() }).collect();
                    let want: Vec<f32> = src.iter().map(|&v| clamp_one(v, 0.0, 6.0)).collect();
                    assert_eq!(
                        bits(&got),
                        bits(&want),
                        "start {start}, len {len}, +{offset}"
                    );
                }
            }
        }
        let large = values(STREAM_FROM + 5);
        let want: Vec<f32> = large.iter().map(|&v| clamp_one(v, 0.0, 6.0)).collect();
        assert_eq!(bits(&clamp(&large[1..], 0.0, 6.0)), bits(&want[1..]));
    }
}
