//! The inner loop of the direct convolutions ([`super::depthwise`]):
//! a weighted sum of shifted runs of one buffer, `out[i] = bias + Σ_t w[t] · src[offsets[t] +
//! i]`, with the outputs in register-sized blocks across all terms. Callers compile it once
//! per [`super::simd::SimdLevel`] (it is `#[inline(always)]`, so it takes their
//! `#[target_feature]`s).

use std::mem::MaybeUninit;

/// Outputs [`weighted_runs`] accumulates at once: two AVX-512 registers, four AVX2 ones.
pub const RUN_BLOCK: usize = 32;

/// `out[i] = bias + Σ_t weights[t] · src[offsets[t] + i]` for `i` in `0..out.len()`, every
/// output written (`out` need not be initialised). Outputs
/// go in blocks of [`RUN_BLOCK`] held in registers across all terms (one store each), so
/// `src` streams through once rather than once per term. A last, partial block is computed
/// whole when `src` holds [`RUN_BLOCK`] values of slack past every run (its extra values
/// dropped), else one output at a time. `FMA` selects fused multiply-adds (only where the
/// CPU has them: without hardware support `mul_add` is a slow library call).
#[inline(always)]
pub fn weighted_runs<const FMA: bool>(
    out: &mut [MaybeUninit<f32>],
    src: &[f32],
    offsets: &[usize],
    weights: &[f32],
    bias: f32,
) {
    let mut blocks = out.chunks_exact_mut(RUN_BLOCK);
    let mut base = 0;
    for block in &mut blocks {
        block.write_copy_of_slice(&block_sum::<FMA>(src, base, offsets, weights, bias));
        base += RUN_BLOCK;
    }
    let rest = blocks.into_remainder();
    if rest.is_empty() {
        return;
    }
    let last_offset = offsets.iter().copied().max().unwrap_or(0);
    if last_offset + base + RUN_BLOCK <= src.len() {
        let sums = block_sum::<FMA>(src, base, offsets, weights, bias);
        rest.write_copy_of_slice(&sums[..rest.len()]);
    } else {
        for (j, o) in rest.iter_mut().enumerate() {
            let mut acc = bias;
            for (&off, &w) in offsets.iter().zip(weights) {
                acc = mul_add::<FMA>(w, src[off + base + j], acc);
            }
            o.write(acc);
        }
    }
}

/// One block of [`weighted_runs`]: outputs `base..base + RUN_BLOCK`. (Helpers here are
/// `#[inline(always)]` functions, not closures: a closure the compiler keeps out of line is
/// compiled without the caller's `#[target_feature]`s, and `mul_add` there becomes a
/// software library call — 25× slower.)
#[inline(always)]
fn block_sum<const FMA: bool>(
    src: &[f32],
    base: usize,
    offsets: &[usize],
    weights: &[f32],
    bias: f32,
) -> [f32; RUN_BLOCK] {
    let mut acc = [bias; RUN_BLOCK];
    for (&off, &w) in offsets.iter().zip(weights) {
        let run = &src[off + base..][..RUN_BLOCK];
        for (a, &v) in acc.iter_mut().zip(run) {
            *a = mul_add::<FMA>(w, v, *a);
        }
    }
    acc
}

/// `w · v + acc`, fused when `FMA`.
#[inline(always)]
pub(super) fn mul_add<const FMA: bool>(w: f32, v: f32, acc: f32) -> f32 {
    if FMA { w.mul_add(v, acc) } else { acc + w * v }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Against the sum written out, with and without slack, for lengths around the block.
    #[test]
    fn equals_the_sum_by_hand() {
        let src: Vec<f32> = (0..300).map(|i| (i % 13) as f32 - 6.0).collect();
        let (offsets, weights) = ([0usize, 5, 40], [0.5f32, -2.0, 1.25]);
        for len in [1, 31, 32, 33, 64, 70, 300 - 40] {
            let mut out = vec![MaybeUninit::new(f32::NAN); len];
            weighted_runs::<false>(&mut out, &src, &offsets, &weights, 0.25);
            // SAFETY: every slot was initialised (to NaN, then overwritten).
            let out = unsafe { super::super::assume_init_mut(&mut out) };
            for (i, &o) in out.iter().enumerate() {
                let want = 0.25 + 0.5 * src[i] - 2.0 * src[i + 5] + 1.25 * src[i + 40];
                assert_eq!(o, want, "len {len}, output {i}");
            }
        }
    }
}
