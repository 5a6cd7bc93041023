//! Weight histograms for the details canvas of fully connected layers: equal-width bins
//! over the finite values' range.

/// Counts of `values` in `bins` equal-width bins over `[min, max]` of the finite values
/// (the maximum falls in the last bin); non-finite values are skipped. `None` when there is
/// no finite value or no bin.
#[derive(Debug, Clone, PartialEq)]
pub struct Histogram {
    pub counts: Vec<u32>,
    /// `[min, max]` of the finite values.
    pub range: [f32; 2],
}

impl Histogram {
    pub fn of(values: &[f32], bins: usize) -> Option<Self> {
        if bins == 0 {
            return None;
        }
        let (lo, hi) = crate::viz::tiles::finite_range(values)?;
        let mut counts = vec![0u32; bins];
        let width = (hi - lo) / bins as f32;
        for &v in values.iter().filter(|v| v.is_finite()) {
            let i = if width > 0.0 {
                (((v - lo) / width) as usize).min(bins - 1)
            } else {
                0
            };
            counts[i] = counts[i].saturating_add(1);
        }
        Some(Self {
            counts,
            range: [lo, hi],
        })
    }

    pub fn total(&self) -> u64 {
        self.counts.iter().map(|&c| u64::from(c)).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bins_cover_the_range_and_skip_non_finite_values() {
        let h = Histogram::of(&[0.0, 0.1, 0.5, 0.99, 1.0, f32::NAN, f32::INFINITY], 4).unwrap();
        assert_eq!(h.range, [0.0, 1.0]);
        assert_eq!(h.counts, vec![2, 0, 1, 2]);
        assert_eq!(h.total(), 5);
        assert_eq!(
            Histogram::of(&[3.0, 3.0], 5).unwrap().counts,
            vec![2, 0, 0, 0, 0]
        );
        assert!(Histogram::of(&[f32::NAN], 4).is_none());
        assert!(Histogram::of(&[1.0], 0).is_none());
    }
}
