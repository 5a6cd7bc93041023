//! Local response normalisation's forward pass on the CPU (flex) device, one pass per image
//! on the host: `y_c = x_c / (bias + α/size · Σ_{j = c − lo}^{c + hi} x_j²)^β` with the
//! channel window `lo = ⌊(size − 1)/2⌋`, `hi = size − 1 − lo` (zero outside the channels).
//! burn ran it as shifted sums of padded copies, several passes over the tensor (1.1 ms of
//! AlexNet's forward pass). Used by [`crate::engine::Engine`] for LRN nodes on flex; the reverse
//! step is [`super::reverse::lrn_input_grad`].

use rayon::prelude::*;

/// The parameters and shape of one LRN node: input `[n, c, hw]` (any trailing spatial size).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LrnGeometry {
    pub images: usize,
    pub channels: usize,
    pub plane: usize,
    pub size: usize,
    pub alpha: f32,
    pub beta: f32,
    pub bias: f32,
}

/// LRN over `x` (`[images, channels, plane]`, row-major): the same shape.
pub fn lrn(x: &[f32], g: &LrnGeometry) -> Vec<f32> {
    let (c, hw) = (g.channels, g.plane);
    assert_eq!(x.len(), g.images * c * hw, "LRN input for {g:?}");
    let mut out = vec![0f32; x.len()];
    if c == 0 || hw == 0 || g.size == 0 {
        return out;
    }
    let scale = g.alpha / g.size as f32;
    // Rows of one image in parallel: each output row sums its window's squared input rows.
    out.par_chunks_mut(hw)
        .enumerate()
        .for_each_init(Vec::new, |sum: &mut Vec<f32>, (row, dst)| {
            let x_row = window_squares(x, g, row, sum);
            for ((d, s), v) in dst.iter_mut().zip(sum.iter()).zip(x_row) {
                *d = v / pow_beta(g.bias + scale * s, g.beta);
            }
        });
    out
}

/// LRN's per-image factors for its reverse step ([`super::reverse::lrn_input_grad`]), from
/// the forward input `x` (`[images, channels, plane]`): `[D^(−β), x·D^(−β−1), (2αβ/size)·x]`
/// with `D = bias + α/size · Σ_window x²`, each the shape of `x`. One pass per channel row
/// (burn took a padded window sum, a `powf` and four products over the whole batch: feature
/// vis of AlexNet conv5 spent half its reverse pass in LRN).
pub fn lrn_factors(x: &[f32], g: &LrnGeometry) -> [Vec<f32>; 3] {
    let (c, hw) = (g.channels, g.plane);
    assert_eq!(x.len(), g.images * c * hw, "LRN input for {g:?}");
    let len = x.len();
    if c == 0 || hw == 0 || g.size == 0 {
        return [vec![1.0; len], vec![0.0; len], vec![0.0; len]];
    }
    let scale = g.alpha / g.size as f32;
    let b_scale = 2.0 * g.alpha * g.beta / g.size as f32;
    // Each value written once below, without zeros first (a memset per buffer).
    let (mut d_pow, mut a, mut b) = (
        Vec::with_capacity(len),
        Vec::with_capacity(len),
        Vec::with_capacity(len),
    );
    let rows = (d_pow.spare_capacity_mut()[..len].par_chunks_mut(hw))
        .zip(a.spare_capacity_mut()[..len].par_chunks_mut(hw))
        .zip(b.spare_capacity_mut()[..len].par_chunks_mut(hw));
    rows.enumerate()
        .for_each_init(Vec::new, |sum: &mut Vec<f32>, (row, ((d_pow, a), b))| {
            let x_row = window_squares(x, g, row, sum);
            for ((((dp, av), bv), s), &v) in (d_pow.iter_mut().zip(a.iter_mut()))
                .zip(b.iter_mut())
                .zip(sum.iter())
                .zip(x_row)
            {
                let d = g.bias + scale * s;
                let d_pow = 1.0 / pow_beta(d, g.beta);
                dp.write(d_pow);
                av.write(v * d_pow / d);
                bv.write(b_scale * v);
            }
        });
    // SAFETY: the rows cover the first `len` slots of each vector and wrote every one.
    unsafe {
        d_pow.set_len(len);
        a.set_len(len);
        b.set_len(len);
    }
    [d_pow, a, b]
}

/// Row `row` (image `row / c`, channel `row % c`) of `x`: fills `sum` with the squares of its
/// channel window summed (`Σ_{j = ch − lo}^{ch + hi} x_j²`, channels outside dropped) and
/// returns the row's own values.
fn window_squares<'a>(x: &'a [f32], g: &LrnGeometry, row: usize, sum: &mut Vec<f32>) -> &'a [f32] {
    let (c, hw) = (g.channels, g.plane);
    let (lo, hi) = ((g.size - 1) / 2, g.size - 1 - (g.size - 1) / 2);
    let (image, ch) = (row / c, row % c);
    let x_image = &x[image * c * hw..][..c * hw];
    sum.clear();
    sum.resize(hw, 0.0);
    for j in ch.saturating_sub(lo)..(ch + hi + 1).min(c) {
        for (s, v) in sum.iter_mut().zip(&x_image[j * hw..][..hw]) {
            *s += v * v;
        }
    }
    &x_image[ch * hw..][..hw]
}

/// `base^beta`, by square roots for the usual exponents (0.75 in AlexNet and GoogLeNet, 0.5,
/// 1) — the same choices as the burn path in [`super::ops`].
#[inline(always)]
fn pow_beta(base: f32, beta: f32) -> f32 {
    if beta == 1.0 {
        base
    } else if beta == 0.5 {
        base.sqrt()
    } else if beta == 0.75 {
        let root = base.sqrt();
        root * root.sqrt()
    } else {
        base.powf(beta)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Against the formulas in f64, with an even window and β = 0.75 and 0.6 (the
    /// square-root and `powf` paths).
    #[test]
    fn reverse_factors_by_formula() {
        let x: Vec<f32> = (0..2 * 5 * 3)
            .map(|i| ((i * 7 % 11) as f32 - 5.0) / 3.0)
            .collect();
        for beta in [0.75f32, 0.6] {
            let g = LrnGeometry {
                images: 2,
                channels: 5,
                plane: 3,
                size: 4,
                alpha: 0.5,
                beta,
                bias: 1.5,
            };
            let [d_pow, a, b] = lrn_factors(&x, &g);
            for image in 0..2 {
                for ch in 0..5usize {
                    for p in 0..3 {
                        let at = (image * 5 + ch) * 3 + p;
                        let s: f64 = (ch.saturating_sub(1)..(ch + 3).min(5))
                            .map(|j| f64::from(x[(image * 5 + j) * 3 + p]).powi(2))
                            .sum();
                        let d = 1.5 + 0.5 / 4.0 * s;
                        let (v, beta) = (f64::from(x[at]), f64::from(beta));
                        let want = [
                            d.powf(-beta),
                            v * d.powf(-beta - 1.0),
                            2.0 * 0.5 * beta / 4.0 * v,
                        ];
                        for (got, want) in [d_pow[at], a[at], b[at]].into_iter().zip(want) {
                            assert!(
                                (f64::from(got) - want).abs() < 1e-6,
                                "β {beta} at {at}: {got} vs {want}"
                            );
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn lrn_by_hand() {
        // 1 image, 3 channels of 2 positions, size 3 (lo = hi = 1), α = 3 (scale 1), β = 0.5,
        // bias 1: channel 0 sums x0² + x1², channel 1 all three, channel 2 x1² + x2².
        let x = [1.0, 2.0, 2.0, 0.0, 3.0, 1.0];
        let g = LrnGeometry {
            images: 1,
            channels: 3,
            plane: 2,
            size: 3,
            alpha: 3.0,
            beta: 0.5,
            bias: 1.0,
        };
        let got = lrn(&x, &g);
        let want = [
            1.0 / (1.0f32 + 1.0 + 4.0).sqrt(),
            2.0 / (1.0f32 + 4.0 + 0.0).sqrt(),
            2.0 / (1.0f32 + 1.0 + 4.0 + 9.0).sqrt(),
            0.0,
            3.0 / (1.0f32 + 4.0 + 9.0).sqrt(),
            1.0 / (1.0f32 + 0.0 + 1.0).sqrt(),
        ];
        for (a, b) in got.iter().zip(want) {
            assert!((a - b).abs() < 1e-6, "{got:?} vs {want:?}");
        }
        // β = 0.75 and an even size (lo = 1, hi = 2) against the plain formula.
        let g = LrnGeometry {
            size: 4,
            beta: 0.75,
            ..g
        };
        let got = lrn(&x, &g);
        let sq = |c: usize, p: usize| x[c * 2 + p] * x[c * 2 + p];
        for ch in 0..3usize {
            for p in 0..2 {
                let s: f32 = (ch.saturating_sub(1)..(ch + 3).min(3))
                    .map(|j| sq(j, p))
                    .sum();
                let want = x[ch * 2 + p] / (1.0f32 + 0.75 * s).powf(0.75);
                assert!((got[ch * 2 + p] - want).abs() < 1e-6);
            }
        }
    }
}
