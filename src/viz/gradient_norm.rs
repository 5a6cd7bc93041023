//! How a gradient image (`[3, H, W]`, any sign) becomes a picture: the paper's joint min-max
//! (what `export` writes by default), or centred at zero with outliers clipped (what the
//! viewer shows by default): mid-grey is 0, and ±1 is the threshold below which 98% of the
//! image's total |g| lies, exactly Captum's `visualize_image_attr(sign="all",
//! outlier_perc=2)` (`_cumulative_sum_threshold` of |g| at 98%, then `clip(g / t, -1, 1)`).
//! A few extreme pixels no longer decide the scale of the whole tile.

/// A gradient image's normalisation. The default is the viewer's, [`GradientNorm::Robust`];
/// `export` writes [`GradientNorm::MinMax`] (the paper's files) unless asked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum GradientNorm {
    /// Joint min-max over the three planes (the paper's images).
    MinMax,
    /// Centred at zero, scaled by the 98% cumulative-|g| threshold, beyond it clipped.
    #[default]
    Robust,
}

/// Share of the total |g| below the robust threshold (Captum's `100 - outlier_perc`).
pub const ROBUST_MASS: f64 = 0.98;

impl GradientNorm {
    /// `minmax` or `robust`.
    pub fn parse(name: &str) -> Option<Self> {
        match name.trim() {
            "minmax" | "min-max" => Some(Self::MinMax),
            "robust" => Some(Self::Robust),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::MinMax => "minmax",
            Self::Robust => "robust",
        }
    }

    /// The `[lo, hi]` that maps to black..white (values outside are clipped): the finite
    /// min and max, or `[-t, t]` for the robust threshold `t`. A tile with no finite value
    /// or no spread is `[0, 0]` under min-max (black, as the paper's `mat2gray`) and
    /// `[-1, 1]` under robust (mid-grey: its gradient is zero).
    pub fn range(self, values: &[f32]) -> [f32; 2] {
        match self {
            Self::MinMax => match super::tile_summary::summarise(values).finite_range() {
                Some((lo, hi)) if hi > lo => [lo, hi],
                Some((lo, _)) => [lo, lo],
                None => [0.0, 0.0],
            },
            Self::Robust => match robust_threshold(values) {
                Some(t) if t > 0.0 => [-t, t],
                _ => [-1.0, 1.0],
            },
        }
    }

    /// One value in `[0, 1]` under `range` (what the tile shader does; non-finite → 0).
    pub fn unit(range: [f32; 2], v: f32) -> f32 {
        let [lo, hi] = range;
        if !v.is_finite() || hi <= lo {
            return 0.0;
        }
        ((v - lo) / (hi - lo)).clamp(0.0, 1.0)
    }
}

/// The smallest |g| such that the |g| up to and including it (in sorted order) sum to at
/// least [`ROBUST_MASS`] of the total (Captum's `_cumulative_sum_threshold`), over the
/// finite values; `None` when there are none. Linear time: a selection that only descends
/// into the half holding the threshold.
pub fn robust_threshold(values: &[f32]) -> Option<f32> {
    let mut abs: Vec<f32> = (values.iter())
        .filter(|v| v.is_finite())
        .map(|v| v.abs())
        .collect();
    if abs.is_empty() {
        return None;
    }
    let total: f64 = abs.iter().map(|&v| f64::from(v)).sum();
    let target = total * ROBUST_MASS;
    // `below`: the sum of everything sorted before `rest`.
    let (mut rest, mut below) = (&mut abs[..], 0.0f64);
    loop {
        let mid = rest.len() / 2;
        let (left, pivot, right) = rest.select_nth_unstable_by(mid, f32::total_cmp);
        let left_sum: f64 = left.iter().map(|&v| f64::from(v)).sum();
        if below + left_sum >= target && !left.is_empty() {
            rest = left;
        } else if below + left_sum + f64::from(*pivot) >= target || right.is_empty() {
            return Some(*pivot);
        } else {
            below += left_sum + f64::from(*pivot);
            rest = right;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Captum's formula as written: sort, cumulative sum, first index reaching 98%.
    fn captum_threshold(values: &[f32]) -> f32 {
        let mut v: Vec<f64> = values.iter().map(|v| f64::from(v.abs())).collect();
        v.sort_by(f64::total_cmp);
        let mut cum = 0.0;
        let total: f64 = v.iter().sum();
        for &x in &v {
            cum += x;
            if cum >= total * ROBUST_MASS {
                return x as f32;
            }
        }
        v[v.len() - 1] as f32
    }

    #[test]
    fn the_threshold_is_captums_cumulative_sum_threshold() {
        // Hand-computed: |g| = 1, 2, 3, 44 → cumulative 1, 3, 6, 50; 98% of 50 is 49 → 44.
        assert_eq!(robust_threshold(&[3.0, -44.0, 1.0, -2.0]), Some(44.0));
        // 1 … 100: cumulative k(k+1)/2 ≥ 0.98 · 5050 = 4949 first at k = 99.
        let ramp: Vec<f32> = (1..=100).map(|v| v as f32).collect();
        assert_eq!(robust_threshold(&ramp), Some(99.0));
        // Random tiles (heavy-tailed, with ties and zeros) against the literal formula.
        let mut seed = 0x9e37_79b9_u32;
        for n in [1usize, 2, 3, 17, 1000, 150_528] {
            let values: Vec<f32> = (0..n)
                .map(|_| {
                    seed ^= seed << 13;
                    seed ^= seed >> 17;
                    seed ^= seed << 5;
                    let u = (seed >> 8) as f32 / (1u32 << 24) as f32;
                    let v = (u - 0.5) / (1.02 - u).powi(3);
                    if seed.is_multiple_of(7) {
                        0.0
                    } else {
                        (v * 100.0).round() / 100.0
                    }
                })
                .collect();
            let got = robust_threshold(&values).unwrap();
            let want = captum_threshold(&values);
            assert!(
                (got - want).abs() <= 1e-6 * want.abs().max(1.0),
                "n = {n}: {got} vs {want}"
            );
        }
        assert_eq!(robust_threshold(&[f32::NAN, f32::INFINITY]), None);
    }

    #[test]
    fn ranges_and_units() {
        let g = [-4.0, 0.0, 1.0, 100.0];
        // Min-max: the extremes; robust: ±100 (it holds more than 2% of the mass itself).
        assert_eq!(GradientNorm::MinMax.range(&g), [-4.0, 100.0]);
        assert_eq!(GradientNorm::Robust.range(&g), [-100.0, 100.0]);
        // Zero is mid-grey under robust; an empty or flat tile too.
        assert_eq!(GradientNorm::unit([-100.0, 100.0], 0.0), 0.5);
        assert_eq!(GradientNorm::Robust.range(&[0.0; 4]), [-1.0, 1.0]);
        assert_eq!(GradientNorm::MinMax.range(&[2.0; 4]), [2.0, 2.0]);
        assert_eq!(GradientNorm::unit([2.0, 2.0], 2.0), 0.0);
        // Beyond the threshold values clip.
        let many: Vec<f32> = std::iter::repeat_n(1.0, 99).chain([1000.0]).collect();
        let r = GradientNorm::Robust.range(&many);
        assert_eq!(r, [-1000.0, 1000.0]);
        let spread: Vec<f32> = (0..10_000)
            .map(|i| if i == 0 { 50.0 } else { 1.0 })
            .collect();
        let r = GradientNorm::Robust.range(&spread);
        assert_eq!(r, [-1.0, 1.0]);
        assert_eq!(GradientNorm::unit(r, 50.0), 1.0);
        assert_eq!(GradientNorm::parse("robust"), Some(GradientNorm::Robust));
        assert_eq!(GradientNorm::parse("min-max"), Some(GradientNorm::MinMax));
        assert_eq!(GradientNorm::parse("x"), None);
    }
}
