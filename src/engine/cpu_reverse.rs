//! Host kernels for reverse steps that burn would run as several full passes over the seed
//! batch on the CPU (flex): one pass per seed instead. Used by [`super::vjp_spatial`] on the
//! flex device only; the factors that do not depend on the seeds are still computed by burn.

use rayon::prelude::*;

/// LRN's input gradient for `g` (`[B, N, C, H·W]`, the seed batch over `N` images) from the
/// per-image factors `d_pow = D^(−β)`, `a = x·D^(−β−1)` and `b = (2αβ/size)·x` (each
/// `[N, C, H·W]`): `dx_c = g_c·d_pow_c − b_c·Σ_{j = c − hi}^{c + lo} g_j·a_j` (the mirrored
/// channel window of [`super::vjp_spatial::lrn`]). Seeds run in parallel.
pub fn lrn_input_grad(
    g: &[f32],
    [d_pow, a, b]: [&[f32]; 3],
    [images, channels, hw]: [usize; 3],
    [hi, lo]: [usize; 2],
) -> Vec<f32> {
    let block = channels * hw;
    let mut out = vec![0f32; g.len()];
    out.par_chunks_mut(block)
        .zip(g.par_chunks(block))
        .enumerate()
        .for_each_init(Vec::new, |ga: &mut Vec<f32>, (k, (dst, g))| {
            let n = k % images.max(1);
            let (d_pow, a, b) = (
                &d_pow[n * block..][..block],
                &a[n * block..][..block],
                &b[n * block..][..block],
            );
            ga.clear();
            ga.extend(g.iter().zip(a).map(|(g, a)| g * a));
            for c in 0..channels {
                let (start, end) = (c.saturating_sub(hi), (c + lo + 1).min(channels));
                let row = c * hw..(c + 1) * hw;
                let out_row = &mut dst[row.clone()];
                for (i, o) in out_row.iter_mut().enumerate() {
                    let spread: f32 = (start..end).map(|j| ga[j * hw + i]).sum();
                    let at = row.start + i;
                    *o = g[at] * d_pow[at] - spread * b[at];
                }
            }
        });
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lrn_gradient_by_hand() {
        // One seed, one image, 3 channels of 1 position, window size 3 (hi = lo = 1).
        let g = [1.0, 2.0, 3.0];
        let (d_pow, a, b) = ([0.5, 0.25, 2.0], [1.0, -1.0, 0.5], [0.1, 0.2, 0.3]);
        let got = lrn_input_grad(&g, [&d_pow, &a, &b], [1, 3, 1], [1, 1]);
        // ga = [1, -2, 1.5]; windows: c0: ga0+ga1 = -1; c1: all = 0.5; c2: ga1+ga2 = -0.5.
        // c0: 1·0.5 − (−1)·0.1.
        let want = [0.5 + 0.1, 2.0 * 0.25 - 0.5 * 0.2, 3.0 * 2.0 - (-0.5) * 0.3];
        for (x, y) in got.iter().zip(want) {
            assert!((x - y).abs() < 1e-6, "{got:?} vs {want:?}");
        }
        // Two seeds over two images reuse each image's factors.
        let g2 = [1.0, 2.0, 3.0, 1.0, 2.0, 3.0, 0.0, 0.0, 0.0, 1.0, 2.0, 3.0];
        let f = |v: [f32; 3]| [v, v].concat();
        let got = lrn_input_grad(&g2, [&f(d_pow), &f(a), &f(b)], [2, 3, 1], [1, 1]);
        assert_eq!(&got[..3], &got[3..6]);
        assert_eq!(&got[6..9], &[0.0, 0.0, 0.0]);
        assert_eq!(&got[9..], &got[..3]);
    }
}
