//! The set algebra a receptive-field propagation carries from node to node: positions along
//! one axis ([`Positions`]), a value's region ([`Region`]: rows × columns, or all of it),
//! and the moves an op makes on them (windows, shifts, broadcasts, clipping to a value).
//!
//! Sets stay exact (a strided, dilated window reads every other position, and only taps
//! that land inside a value count), but the common case, a run of consecutive positions, is
//! kept as its two ends: a window whose stride is at most its extent maps a run to a run,
//! and so do shifts and clipping, so following a unit through EfficientNet-Lite0 builds and
//! sorts no list (with every set as a sorted list, those allocations and sorts were most of
//! the receptive fields' time: all axis extents of its 49 conv layers, one thread, 32–40 →
//! 7.6 ms).

/// Positions along one axis, sorted and distinct. Canonical: a non-empty set without gaps
/// is always a [`Positions::Run`], so equal sets compare equal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Positions {
    /// `first..=last`, with `first <= last`.
    Run(i64, i64),
    /// Any other set (empty, or with gaps), sorted and distinct.
    Scattered(Vec<i64>),
}

impl Positions {
    pub(super) fn one(p: i64) -> Self {
        Self::Run(p, p)
    }

    /// From a sorted, distinct list.
    fn from_sorted(v: Vec<i64>) -> Self {
        match (v.first(), v.last()) {
            (Some(&first), Some(&last)) if (last - first) as usize + 1 == v.len() => {
                Self::Run(first, last)
            }
            _ => Self::Scattered(v),
        }
    }

    fn from_unsorted(mut v: Vec<i64>) -> Self {
        v.sort_unstable();
        v.dedup();
        Self::from_sorted(v)
    }

    /// The positions in increasing order.
    pub(super) fn iter(&self) -> impl Iterator<Item = i64> + '_ {
        let (run, list) = match self {
            Self::Run(first, last) => (Some(*first..=*last), &[][..]),
            Self::Scattered(v) => (None, v.as_slice()),
        };
        run.into_iter().flatten().chain(list.iter().copied())
    }

    /// The smallest and largest position; `None` for the empty set.
    pub(super) fn bounds(&self) -> Option<(i64, i64)> {
        match self {
            Self::Run(first, last) => Some((*first, *last)),
            Self::Scattered(v) => v.first().copied().zip(v.last().copied()),
        }
    }

    pub(super) fn is_empty(&self) -> bool {
        matches!(self, Self::Scattered(v) if v.is_empty())
    }

    pub(super) fn union(&self, other: &Positions) -> Positions {
        match (self, other) {
            (Self::Run(a, b), Self::Run(c, d)) if *a <= d + 1 && *c <= b + 1 => {
                Self::Run(*a.min(c), *b.max(d))
            }
            _ => {
                let mut merged: Vec<i64> = self.iter().chain(other.iter()).collect();
                merged.sort_unstable();
                merged.dedup();
                Self::from_sorted(merged)
            }
        }
    }

    /// Each position `p` replaced by the positions `f(p, out)` pushes.
    pub(super) fn map(&self, f: impl Fn(i64, &mut Vec<i64>)) -> Positions {
        let mut out = Vec::new();
        for p in self.iter() {
            f(p, &mut out);
        }
        Self::from_unsorted(out)
    }

    pub(super) fn shift(&self, by: i64) -> Positions {
        match self {
            Self::Run(first, last) => Self::Run(first + by, last + by),
            Self::Scattered(v) => Self::Scattered(v.iter().map(|p| p + by).collect()),
        }
    }

    /// `p ↦ start + step · p` (a Slice).
    pub(super) fn affine(&self, start: i64, step: i64) -> Positions {
        match step {
            1 => self.shift(start),
            _ => self.map(|p, out| out.push(start + step * p)),
        }
    }

    /// The taps of a window over these output positions: output `o` reads
    /// `o · stride − before + j · dilation` for `j` in `0..kernel`.
    pub(super) fn window(&self, stride: i64, before: i64, kernel: i64, dilation: i64) -> Positions {
        match *self {
            // Consecutive outputs' windows touch when the stride is at most the kernel.
            Self::Run(first, last)
                if dilation == 1 && kernel >= 1 && (stride <= kernel || first == last) =>
            {
                Self::Run(first * stride - before, last * stride - before + kernel - 1)
            }
            _ => self.map(|o, out| {
                let base = o * stride - before;
                out.extend((0..kernel).map(|j| base + j * dilation));
            }),
        }
    }

    /// The positions inside `0..size`.
    pub(super) fn within(&self, size: i64) -> Positions {
        match *self {
            Self::Run(first, last) => {
                let (first, last) = (first.max(0), last.min(size - 1));
                if first <= last {
                    Self::Run(first, last)
                } else {
                    Self::Scattered(Vec::new())
                }
            }
            Self::Scattered(ref v) => Self::from_sorted(
                v.iter()
                    .copied()
                    .filter(|p| (0..size).contains(p))
                    .collect(),
            ),
        }
    }
}

/// What part of a value a unit depends on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Region {
    /// Every position.
    Full,
    /// `[rows, cols]` of the last two axes.
    Box([Positions; 2]),
}

impl Region {
    pub(super) fn union(&self, other: &Region) -> Region {
        match (self, other) {
            (Region::Box([a, b]), Region::Box([c, d])) => Region::Box([a.union(c), b.union(d)]),
            _ => Region::Full,
        }
    }
}

/// Moves a region by `offset` along `axis` of a rank-`rank` value, when that axis is one
/// of the last two (other axes carry no positions).
pub(super) fn shift_axis(region: &Region, axis: usize, rank: usize, offset: i64) -> Region {
    match region {
        Region::Box(b) if rank >= 2 && axis + 2 >= rank => {
            let mut b = b.clone();
            let a = axis + 2 - rank;
            b[a] = b[a].shift(offset);
            Region::Box(b)
        }
        other => other.clone(),
    }
}

/// Which of `[rows, cols]` a propagation follows; the other keeps its start position.
pub(super) type Tracked = [bool; 2];

/// The region of a (possibly broadcast) input of shape `input` for output box `b` of an
/// output of shape `out`: axes aligned from the right; a size-1 axis maps to position 0.
pub(super) fn broadcast(
    b: &[Positions; 2],
    input: &[usize],
    out: &[usize],
    tracked: Tracked,
) -> Region {
    let (n, m) = (input.len(), out.len());
    if n < 2 || m < 2 {
        return Region::Full;
    }
    let mut mapped = b.clone();
    for a in 0..2 {
        let (i, o) = (input[n - 2 + a], out[m - 2 + a]);
        if i == o || !tracked[a] {
            continue;
        }
        if i == 1 {
            mapped[a] = Positions::one(0);
        } else {
            return Region::Full;
        }
    }
    Region::Box(mapped)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pos(v: &[i64]) -> Positions {
        Positions::from_unsorted(v.to_vec())
    }

    /// The set a window reaches, by its definition.
    fn window_by_definition(
        outputs: &[i64],
        stride: i64,
        before: i64,
        kernel: i64,
        dilation: i64,
    ) -> Vec<i64> {
        let mut v: Vec<i64> = (outputs.iter())
            .flat_map(|o| (0..kernel).map(move |j| o * stride - before + j * dilation))
            .collect();
        v.sort_unstable();
        v.dedup();
        v
    }

    #[test]
    fn sets_without_gaps_are_runs() {
        assert_eq!(pos(&[3, 1, 2, 2]), Positions::Run(1, 3));
        assert_eq!(pos(&[1, 3]), Positions::Scattered(vec![1, 3]));
        assert_eq!(pos(&[]), Positions::Scattered(vec![]));
        assert!(pos(&[]).is_empty() && !pos(&[0]).is_empty());
        assert_eq!(pos(&[4, 2]).bounds(), Some((2, 4)));
        assert_eq!(pos(&[]).bounds(), None);
    }

    #[test]
    fn windows_match_their_definition() {
        let starts: [&[i64]; 5] = [&[0], &[5], &[2, 3, 4], &[0, 2, 3], &[1, 7]];
        for outputs in starts {
            for (stride, before, kernel, dilation) in [
                (1, 1, 3, 1),
                (2, 1, 3, 1),
                (2, 0, 2, 1),
                (3, 0, 2, 1),
                (4, 2, 11, 1),
                (1, 2, 3, 2),
                (2, 0, 1, 1),
                (1, 0, 0, 1),
            ] {
                let got = pos(outputs).window(stride, before, kernel, dilation);
                let want = window_by_definition(outputs, stride, before, kernel, dilation);
                assert_eq!(
                    got.iter().collect::<Vec<_>>(),
                    want,
                    "{outputs:?} stride {stride} before {before} kernel {kernel} dilation {dilation}"
                );
                assert_eq!(got, pos(&want), "canonical form");
            }
        }
    }

    #[test]
    fn shifts_slices_and_clips() {
        assert_eq!(pos(&[1, 2]).shift(-3), pos(&[-2, -1]));
        assert_eq!(pos(&[1, 4]).shift(2), pos(&[3, 6]));
        assert_eq!(pos(&[0, 1, 2]).affine(5, 2), pos(&[5, 7, 9]));
        assert_eq!(pos(&[0, 1]).affine(4, -1), pos(&[3, 4]));
        assert_eq!(pos(&[-2, -1, 0, 1]).within(1), pos(&[0]));
        assert_eq!(pos(&[-2, -1]).within(4), pos(&[]));
        assert_eq!(pos(&[-1, 1, 3, 5]).within(4), pos(&[1, 3]));
        assert_eq!(pos(&[-1, 2, 3, 5]).within(4), Positions::Run(2, 3));
    }

    #[test]
    fn union_merges_positions() {
        assert_eq!(pos(&[0, 1]).union(&pos(&[2, 3])), Positions::Run(0, 3));
        assert_eq!(pos(&[0, 1]).union(&pos(&[3])), pos(&[0, 1, 3]));
        assert_eq!(pos(&[0, 2]).union(&pos(&[1])), Positions::Run(0, 2));
        let a = Region::Box([pos(&[0, 1]), pos(&[5, 6])]);
        let b = Region::Box([pos(&[1, 4]), pos(&[2])]);
        assert_eq!(a.union(&b), Region::Box([pos(&[0, 1, 4]), pos(&[2, 5, 6])]));
        assert_eq!(a.union(&Region::Full), Region::Full);
    }

    #[test]
    fn broadcast_maps_size_one_axes_to_zero() {
        let b = [pos(&[2, 3]), pos(&[4])];
        assert_eq!(
            broadcast(&b, &[1, 8, 1, 1], &[1, 8, 6, 6], [true, true]),
            Region::Box([pos(&[0]), pos(&[0])])
        );
        assert_eq!(
            broadcast(&b, &[1, 8, 6, 6], &[1, 8, 6, 6], [true, true]),
            Region::Box(b.clone())
        );
        assert_eq!(
            broadcast(&b, &[8], &[1, 8, 6, 6], [true, true]),
            Region::Full
        );
    }
}
