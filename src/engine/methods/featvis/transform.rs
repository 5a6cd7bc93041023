//! Lucid's random transforms (Lucent's `standard_transforms`), applied to the image every step
//! so the optimum must survive small shifts, scalings and rotations: pad 12 with grey (0.5),
//! jitter 8, scale by one of {1 + (i − 5)/50 : i = 0…10}, rotate by one of −10…10° (0 five
//! times more likely), jitter 4. ConvLens's engine takes one fixed input size, so the result
//! is resampled to the model's input size; the whole chain is one affine map from the
//! model's pixels to the image's, sampled bilinearly once ([`Warp`]), with its transpose for
//! the gradient.

/// Lucent's `random_scale` choices.
const SCALES: [f32; 11] = [
    0.9, 0.92, 0.94, 0.96, 0.98, 1.0, 1.02, 1.04, 1.06, 1.08, 1.1,
];
const PAD: f32 = 12.0;
const JITTER_FIRST: u64 = 8;
const JITTER_LAST: u64 = 4;
/// Grey, what the padding shows.
const OUTSIDE: f32 = 0.5;

/// One draw of the transforms.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Draw {
    pub jitter_first: [f32; 2],
    pub scale: f32,
    pub degrees: f32,
    pub jitter_last: [f32; 2],
}

impl Draw {
    /// The draw for filter `filter` at step `step` of a run seeded `seed`: a function of
    /// the three only (chunking does not change it).
    pub fn new(seed: u64, filter: usize, step: usize) -> Self {
        let mut state = seed
            ^ (filter as u64).wrapping_mul(0xA24B_AED4_963E_E407)
            ^ (step as u64).wrapping_mul(0x9FB2_1C65_1E98_DF25);
        let mut next = |n: u64| {
            state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = state;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            (z ^ (z >> 31)) % n
        };
        let jitter_first = [next(JITTER_FIRST) as f32, next(JITTER_FIRST) as f32];
        let scale = SCALES[next(SCALES.len() as u64) as usize];
        // list(range(-10, 11)) + 5 * [0]: 26 choices.
        let angle = next(26) as i64;
        let degrees = if angle <= 20 { angle - 10 } else { 0 } as f32;
        let jitter_last = [next(JITTER_LAST) as f32, next(JITTER_LAST) as f32];
        Self {
            jitter_first,
            scale,
            degrees,
            jitter_last,
        }
    }

    /// No transform at all (only the resampling to the model's size).
    pub fn identity() -> Self {
        Self {
            jitter_first: [0.0; 2],
            scale: 1.0,
            degrees: 0.0,
            jitter_last: [0.0; 2],
        }
    }
}

/// Bilinear resampling of `[src_h, src_w]` planes to `[dst_h, dst_w]` through one affine map:
/// per destination pixel, four source taps and weights (a tap outside the source reads
/// [`OUTSIDE`]).
#[derive(Debug, Clone)]
pub struct Warp {
    src_len: usize,
    dst_len: usize,
    /// Per destination pixel: four `(source index, weight)`; index `u32::MAX` = outside.
    taps: Vec<[(u32, f32); 4]>,
}

impl Warp {
    /// The chain of [`Draw`] from a `[src_h, src_w]` image to the model's `[dst_h, dst_w]`
    /// input, or the plain resize for `transforms: None`.
    pub fn new(src_hw: [usize; 2], dst_hw: [usize; 2], transforms: Option<Draw>) -> Self {
        let [sh, sw] = src_hw.map(|v| v as f32);
        let [dh, dw] = dst_hw;
        let mut taps = Vec::with_capacity(dh * dw);
        let t = transforms.unwrap_or(Draw::identity());
        let padded = transforms.map_or(0.0, |_| PAD);
        // Sizes along the chain (x, y): padded, after the first jitter's crop, scaled, after
        // the last jitter's crop (what is resized to the model's input).
        let cut_first = transforms.map_or(0.0, |_| JITTER_FIRST as f32);
        let cut_last = transforms.map_or(0.0, |_| JITTER_LAST as f32);
        let size_1 = [sw + 2.0 * padded - cut_first, sh + 2.0 * padded - cut_first];
        let size_2 = size_1.map(|v| v * t.scale);
        let size_3 = size_2.map(|v| v - cut_last);
        let (sin, cos) = (-t.degrees.to_radians()).sin_cos();
        let centre = size_2.map(|v| v / 2.0);
        for v in 0..dh {
            for u in 0..dw {
                // Continuous coordinates, pixel centres at i + 0.5.
                let q = [
                    (u as f32 + 0.5) * size_3[0] / dw as f32,
                    (v as f32 + 0.5) * size_3[1] / dh as f32,
                ];
                // Undo the last jitter, the rotation about the centre, the scale, the first
                // jitter and the padding.
                let q = [q[0] + t.jitter_last[0], q[1] + t.jitter_last[1]];
                let d = [q[0] - centre[0], q[1] - centre[1]];
                let q = [
                    centre[0] + cos * d[0] - sin * d[1],
                    centre[1] + sin * d[0] + cos * d[1],
                ];
                let q = [q[0] / t.scale, q[1] / t.scale];
                let q = [
                    q[0] + t.jitter_first[0] - padded - 0.5,
                    q[1] + t.jitter_first[1] - padded - 0.5,
                ];
                taps.push(bilinear(q, [sw as usize, sh as usize]));
            }
        }
        Self {
            src_len: src_hw[0] * src_hw[1],
            dst_len: dh * dw,
            taps,
        }
    }

    /// Resamples every plane of `src` (`[planes, src_h, src_w]`).
    pub fn apply(&self, src: &[f32]) -> Vec<f32> {
        let mut out = Vec::with_capacity(src.len() / self.src_len * self.dst_len);
        for plane in src.chunks(self.src_len) {
            out.extend(self.taps.iter().map(|taps| {
                taps.iter()
                    .map(|&(i, w)| w * plane.get(i as usize).copied().unwrap_or(OUTSIDE))
                    .sum::<f32>()
            }));
        }
        out
    }

    /// The transpose of [`Warp::apply`] on a gradient `g` (`[planes, dst_h, dst_w]`): the
    /// gradient with respect to the source planes (the grey outside takes none).
    pub fn transpose(&self, g: &[f32]) -> Vec<f32> {
        let mut out = vec![0f32; g.len() / self.dst_len * self.src_len];
        for (gp, dst) in g.chunks(self.dst_len).zip(out.chunks_mut(self.src_len)) {
            for (taps, &gv) in self.taps.iter().zip(gp) {
                for &(i, w) in taps {
                    if let Some(d) = dst.get_mut(i as usize) {
                        *d += w * gv;
                    }
                }
            }
        }
        out
    }
}

/// The four taps of a bilinear sample at `q` (index space: pixel `i` at `i`) of a `[w, h]`
/// plane; taps outside get index `u32::MAX`.
fn bilinear(q: [f32; 2], [w, h]: [usize; 2]) -> [(u32, f32); 4] {
    let (x0, y0) = (floor(q[0]), floor(q[1]));
    let (fx, fy) = (q[0] - x0, q[1] - y0);
    let index = |x: f32, y: f32| {
        if x >= 0.0 && y >= 0.0 && (x as usize) < w && (y as usize) < h {
            (y as usize * w + x as usize) as u32
        } else {
            u32::MAX
        }
    };
    [
        (index(x0, y0), (1.0 - fx) * (1.0 - fy)),
        (index(x0 + 1.0, y0), fx * (1.0 - fy)),
        (index(x0, y0 + 1.0), (1.0 - fx) * fy),
        (index(x0 + 1.0, y0 + 1.0), fx * fy),
    ]
}

/// `v.floor()` for `|v| < 2³¹` (coordinates here), inlined: x86-64's baseline has no
/// rounding instruction, so `f32::floor` is a libm call per tap (a warp is built per image
/// and step; those calls were ~1% of feature vis).
#[inline(always)]
fn floor(v: f32) -> f32 {
    let t = v as i32 as f32;
    if t > v { t - 1.0 } else { t }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn floor_matches_the_library() {
        for v in [
            -3.5f32, -3.0, -0.25, -0.0, 0.0, 0.25, 1.0, 1.999, 127.5, -1e6, 1e6,
        ] {
            assert_eq!(floor(v), v.floor(), "{v}");
        }
    }

    #[test]
    fn without_transforms_at_the_same_size_it_is_the_identity() {
        let src: Vec<f32> = (0..2 * 6 * 5).map(|i| i as f32 * 0.1).collect();
        let warp = Warp::new([6, 5], [6, 5], None);
        let out = warp.apply(&src);
        for (a, b) in out.iter().zip(&src) {
            assert!((a - b).abs() < 1e-6, "{a} vs {b}");
        }
    }

    #[test]
    fn a_pure_jitter_shifts_and_pads_with_grey() {
        // Pad 12, shift by (3, 5) then (1, 2), scale 1, no rotation: the model's pixel
        // (u, v) shows the image's (u + 4 − 12 … ) — a translation by (−8, −5) of a 30×30
        // crop, resized to 30×30 (the crop is 40 − 8 − 4 = 28 wide for a 20-wide image: not
        // the same size, so check one case by hand instead).
        let draw = Draw {
            jitter_first: [3.0, 5.0],
            scale: 1.0,
            degrees: 0.0,
            jitter_last: [1.0, 2.0],
        };
        // src 20×20 → padded 44 → crop 36 → scale 1 → crop 32: resized to dst 32×32 is 1:1.
        let src: Vec<f32> = (0..400)
            .map(|i| (i % 20) as f32 + 100.0 * (i / 20) as f32)
            .collect();
        let warp = Warp::new([20, 20], [32, 32], Some(draw));
        let out = warp.apply(&src);
        // Destination (u, v) reads source (u + 1 + 3 − 12, v + 2 + 5 − 12) = (u − 8, v − 5).
        for (u, v) in [(8usize, 5usize), (20, 10), (27, 24)] {
            let want = (u - 8) as f32 + 100.0 * (v - 5) as f32;
            assert!((out[v * 32 + u] - want).abs() < 1e-3, "({u}, {v})");
        }
        assert_eq!(out[0], OUTSIDE, "the padding is grey");
    }

    #[test]
    fn the_transpose_is_the_adjoint_and_draws_repeat() {
        let draw = Draw::new(7, 3, 11);
        assert_eq!(draw, Draw::new(7, 3, 11));
        assert_ne!(Draw::new(7, 3, 11), Draw::new(7, 3, 12));
        let warp = Warp::new(
            [17, 19],
            [24, 24],
            Some(Draw {
                degrees: 7.0,
                ..draw
            }),
        );
        // ⟨W s, g⟩ − (constant part) = ⟨s, Wᵀ g⟩: the grey outside is affine, so compare
        // against apply(s) − apply(0).
        let s: Vec<f32> = (0..3 * 17 * 19).map(|i| (i as f32 * 0.61).sin()).collect();
        let g: Vec<f32> = (0..3 * 24 * 24).map(|i| (i as f32 * 0.29).cos()).collect();
        let base = warp.apply(&vec![0.0; s.len()]);
        let ws: Vec<f32> = warp
            .apply(&s)
            .iter()
            .zip(&base)
            .map(|(a, b)| a - b)
            .collect();
        let dot = |a: &[f32], b: &[f32]| -> f64 {
            a.iter()
                .zip(b)
                .map(|(x, y)| f64::from(*x) * f64::from(*y))
                .sum()
        };
        let (left, right) = (dot(&ws, &g), dot(&s, &warp.transpose(&g)));
        assert!(
            (left - right).abs() < 1e-3 * left.abs().max(1.0),
            "{left} vs {right}"
        );
        // Scales and angles come from Lucent's lists.
        for step in 0..200 {
            let d = Draw::new(1, 0, step);
            assert!(SCALES.contains(&d.scale) && d.degrees.abs() <= 10.0);
            assert!(d.jitter_first.iter().all(|&j| (0.0..8.0).contains(&j)));
            assert!(d.jitter_last.iter().all(|&j| (0.0..4.0).contains(&j)));
        }
    }
}
