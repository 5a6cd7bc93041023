//! Host kernels for reverse steps that burn would run as several full passes over the seed
//! batch on the CPU (flex): one pass per seed instead. Used by [`crate::engine::reverse`]'s
//! per-op rules on the flex device only; the factors that do not depend on the seeds (LRN's
//! powers, max-pooling's switches) are still computed by burn, once per step.

use rayon::prelude::*;

/// LRN's input gradient for `g` (`[B, N, C, H·W]`, the seed batch over `N` images) from the
/// per-image factors `d_pow = D^(−β)`, `a = x·D^(−β−1)` and `b = (2αβ/size)·x` (each
/// `[N, C, H·W]`): `dx_c = g_c·d_pow_c − b_c·Σ_{j = c − hi}^{c + lo} g_j·a_j` (the mirrored
/// channel window of the reverse pass's LRN step). Seeds run in parallel.
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
        .for_each_init(
            || (Vec::new(), Vec::new()),
            |(ga, spread): &mut (Vec<f32>, Vec<f32>), (k, (dst, g))| {
                let n = k % images.max(1);
                let (d_pow, a, b) = (
                    &d_pow[n * block..][..block],
                    &a[n * block..][..block],
                    &b[n * block..][..block],
                );
                ga.clear();
                ga.extend(g.iter().zip(a).map(|(g, a)| g * a));
                // Row by row (whole rows added, which vectorises), in the same order as
                // the sum per value: `g·d_pow − (Σ_j ga_j)·b`.
                for c in 0..channels {
                    let (start, end) = (c.saturating_sub(hi), (c + lo + 1).min(channels));
                    spread.clear();
                    spread.resize(hw, 0.0);
                    for j in start..end {
                        for (s, v) in spread.iter_mut().zip(&ga[j * hw..][..hw]) {
                            *s += v;
                        }
                    }
                    let row = c * hw..(c + 1) * hw;
                    for ((((o, &gv), &dp), &s), &bv) in (dst[row.clone()].iter_mut())
                        .zip(&g[row.clone()])
                        .zip(&d_pow[row.clone()])
                        .zip(spread.iter())
                        .zip(&b[row])
                    {
                        *o = gv * dp - s * bv;
                    }
                }
            },
        );
    out
}

/// The rule a ReLU-family node applies to the gradient passing it (see
/// [`crate::engine::reverse::step::GradientRule`]): `open` is the interval of inputs where the forward passes
/// its input through (`(0, ∞)` for ReLU and LeakyReLU, `(min, max)` for Clip/ReLU6), `slope`
/// the derivative outside it (LeakyReLU's α, else 0).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ReluRule {
    /// The ordinary gradient: `g` inside, `slope · g` outside.
    Backprop { open: (f32, f32), slope: f32 },
    /// `max(g, 0)` wherever the input was.
    Deconvnet,
    /// `max(g, 0)` inside, 0 outside.
    Guided { open: (f32, f32) },
}

/// Applies `rule` to `g` in place: `g` is the seed batch over one forward value, each seed's
/// gradient as long as `x` (the node's forward input, shared by the seeds). One pass over the
/// batch instead of burn's gate mask, ReLU and product as separate passes with their own
/// allocations. Runs in parallel over blocks of every seed's gradient (feature vis has one
/// seed per input, so one long seed: parallel over seeds alone ran on one core, ~16% of its
/// time); the loops are branch-free so they vectorise.
pub fn relu_rule_in_place(g: &mut [f32], x: &[f32], rule: ReluRule) {
    /// Values per parallel task.
    const BLOCK: usize = 1 << 14;
    if x.is_empty() {
        return;
    }
    g.par_chunks_mut(x.len()).for_each(|g| {
        (g.par_chunks_mut(BLOCK))
            .zip(x.par_chunks(BLOCK))
            .for_each(|(g, x)| apply_relu_rule(g, x, rule))
    });
}

/// [`relu_rule_in_place`] on one block.
fn apply_relu_rule(g: &mut [f32], x: &[f32], rule: ReluRule) {
    let inside = |v: f32, (lo, hi): (f32, f32)| (v > lo) & (v < hi);
    match rule {
        ReluRule::Deconvnet => g.iter_mut().for_each(|v| *v = v.max(0.0)),
        ReluRule::Guided { open } => {
            for (v, &x) in g.iter_mut().zip(x) {
                *v = if inside(x, open) { v.max(0.0) } else { 0.0 };
            }
        }
        ReluRule::Backprop { open, slope } => {
            for (v, &x) in g.iter_mut().zip(x) {
                *v *= if inside(x, open) { 1.0 } else { slope };
            }
        }
    }
}

/// Max-pooling's input gradient: each output gradient of `g` (`[B, P, L]`: the seed batch
/// over `P` planes of `L` outputs) goes to the input position `switches[p·L + o]` (a flat
/// index into a plane of `plane` inputs) its maximum came from, summed where windows
/// overlap: `[B, P, plane]`. Zero gradients (most of them, behind a ReLU gate) are skipped.
/// `None` when a switch lies outside its plane or the lengths disagree.
pub fn max_pool_input_grad(
    g: &[f32],
    switches: &[i64],
    [planes, outs, plane]: [usize; 3],
) -> Option<Vec<f32>> {
    let valid = switches.len() == planes * outs
        && g.len().is_multiple_of((planes * outs).max(1))
        && switches
            .iter()
            .all(|&i| usize::try_from(i).is_ok_and(|i| i < plane));
    if !valid {
        return None;
    }
    let batch = g.len() / (planes * outs).max(1);
    let mut out = super::zeros_to_accumulate(batch * planes * plane);
    if plane == 0 || outs == 0 {
        return Some(out);
    }
    out.par_chunks_mut(plane)
        .zip(g.par_chunks(outs))
        .enumerate()
        .for_each(|(k, (dst, g))| {
            let switches = &switches[(k % planes) * outs..][..outs];
            for (&v, &at) in g.iter().zip(switches) {
                if v != 0.0 {
                    dst[at as usize] += v;
                }
            }
        });
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_seeds_split_into_blocks_give_the_same_result() {
        // Two seeds of 2.5 blocks each (the blocks and the seeds' ends must line up with x).
        let len = (5 << 14) / 2 + 3;
        let x: Vec<f32> = (0..len).map(|i| (i % 17) as f32 - 5.0).collect();
        let g: Vec<f32> = (0..2 * len).map(|i| ((i * 7) % 13) as f32 - 6.0).collect();
        let rule = ReluRule::Backprop {
            open: (0.0, 6.0),
            slope: 0.25,
        };
        let mut fast = g.clone();
        relu_rule_in_place(&mut fast, &x, rule);
        for (i, (&f, &v)) in fast.iter().zip(&g).enumerate() {
            let xi = x[i % len];
            let want = if xi > 0.0 && xi < 6.0 { v } else { v * 0.25 };
            assert_eq!(f, want, "value {i}");
        }
    }

    #[test]
    fn relu_rules_by_hand() {
        // Two seeds over x = [-1, 0.5, 7]; ReLU6's open interval (0, 6).
        let x = [-1.0, 0.5, 7.0];
        let g = [2.0, -3.0, 4.0, -5.0, 6.0, 7.0];
        let run = |rule| {
            let mut g = g;
            relu_rule_in_place(&mut g, &x, rule);
            g
        };
        let relu6 = (0.0, 6.0);
        assert_eq!(run(ReluRule::Deconvnet), [2.0, 0.0, 4.0, 0.0, 6.0, 7.0]);
        assert_eq!(
            run(ReluRule::Guided { open: relu6 }),
            [0.0, 0.0, 0.0, 0.0, 6.0, 0.0]
        );
        let backprop = ReluRule::Backprop {
            open: relu6,
            slope: 0.0,
        };
        assert_eq!(run(backprop), [0.0, -3.0, 0.0, 0.0, 6.0, 0.0]);
        // LeakyReLU (α = 0.1): open above 0, slope α below.
        let leaky = ReluRule::Backprop {
            open: (0.0, f32::INFINITY),
            slope: 0.1,
        };
        let got = run(leaky);
        let want = [0.2, -3.0, 4.0, -0.5, 6.0, 7.0];
        assert!(
            got.iter().zip(want).all(|(a, b)| (a - b).abs() < 1e-6),
            "{got:?}"
        );
    }

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

    #[test]
    fn max_pool_gradient_by_hand() {
        // Two planes of 4 inputs, 2 outputs each; plane 0's outputs share input 1 (overlapping
        // windows), plane 1's come from inputs 0 and 3. Two seeds.
        let switches = [1, 1, 0, 3];
        let g = [1.0, 2.0, 3.0, 4.0, 0.5, 0.0, 0.0, -1.0];
        let got = max_pool_input_grad(&g, &switches, [2, 2, 4]);
        let want = [
            [0.0, 3.0, 0.0, 0.0, 3.0, 0.0, 0.0, 4.0],
            [0.0, 0.5, 0.0, 0.0, 0.0, 0.0, 0.0, -1.0],
        ]
        .concat();
        assert_eq!(got, Some(want));
        // A switch outside its plane is refused, not a panic.
        assert_eq!(max_pool_input_grad(&g, &[1, 4, 0, 3], [2, 2, 4]), None);
        assert_eq!(max_pool_input_grad(&g, &[1, -1, 0, 3], [2, 2, 4]), None);
    }
}
