//! Where tiles live in the atlas (pure, GPU-free): the atlas layers form one linear texel
//! space (texel `i` of a `S`×`S`×`L` array is layer `i / S²`, row `(i mod S²) / S`, column
//! `i mod S`), tiles are stored row-major back to back, and a contiguous range is copied with
//! at most three rectangles per layer it touches.
//!
//! Why linear rather than 2-D shelf packing: a whole activation tensor `[C, H, W]` is one
//! contiguous range, so it reaches the atlas from a GPU buffer (a burn tensor) in a handful of
//! `copy_buffer_to_texture` calls whose `bytes_per_row` is the layer row (`4·S`, a multiple of
//! 256) whatever `W` is — instead of one copy per tile row. The tile shader does the same
//! index arithmetic per texel.

/// A bump allocator over `max_layers` layers of `layer_size²` texels.
#[derive(Clone, Debug)]
pub struct LinearPacker {
    layer_size: u32,
    max_layers: u32,
    next: u64,
}

impl LinearPacker {
    /// An empty packer.
    pub fn new(layer_size: u32, max_layers: u32) -> Self {
        Self {
            layer_size: layer_size.max(1),
            max_layers: max_layers.max(1),
            next: 0,
        }
    }

    /// Texels in one layer.
    pub fn layer_texels(&self) -> u64 {
        u64::from(self.layer_size) * u64::from(self.layer_size)
    }

    /// Texels in all allowed layers.
    pub fn capacity(&self) -> u64 {
        self.layer_texels() * u64::from(self.max_layers)
    }

    /// Texels handed out so far.
    pub fn used(&self) -> u64 {
        self.next
    }

    /// Layers touched by the allocations so far.
    pub fn layers_used(&self) -> u32 {
        self.next.div_ceil(self.layer_texels()) as u32
    }

    /// Forgets every allocation.
    pub fn clear(&mut self) {
        self.next = 0;
    }

    /// Reserves `len` consecutive texels; returns the first one's linear index, or `None`
    /// when `len` is zero or the allowed layers cannot hold it.
    pub fn allocate(&mut self, len: u64) -> Option<u64> {
        if len == 0 || self.next + len > self.capacity() {
            return None;
        }
        let start = self.next;
        self.next += len;
        Some(start)
    }

    /// `(layer, [x, y])` of linear texel `index`.
    pub fn locate(&self, index: u64) -> (u32, [u32; 2]) {
        locate(index, self.layer_size)
    }
}

/// `(layer, [x, y])` of linear texel `index` in layers of side `layer_size`.
pub fn locate(index: u64, layer_size: u32) -> (u32, [u32; 2]) {
    let s = u64::from(layer_size);
    let layer = index / (s * s);
    let rem = index % (s * s);
    (layer as u32, [(rem % s) as u32, (rem / s) as u32])
}

/// One rectangle of a linear range: copy `size` texels from `src_texel` (offset in the range)
/// to `origin` of `layer`; rows of the source are `size[0]` wide except for full-row spans,
/// whose source rows are a whole layer row.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Span {
    /// Offset of the first texel within the range.
    pub src_texel: u64,
    /// Destination layer.
    pub layer: u32,
    /// Destination top-left.
    pub origin: [u32; 2],
    /// Width and height in texels.
    pub size: [u32; 2],
}

/// Splits the linear range `start .. start + len` into rectangles: per layer, a partial first
/// row, a block of full rows, and a partial last row (each only when non-empty).
pub fn spans(start: u64, len: u64, layer_size: u32) -> Vec<Span> {
    let s = u64::from(layer_size);
    let mut out = Vec::new();
    let mut pos = start;
    let end = start + len;
    while pos < end {
        let (layer, [x, y]) = locate(pos, layer_size);
        let row_left = s - u64::from(x);
        let layer_end = (u64::from(layer) + 1) * s * s;
        let take = if x != 0 || end - pos < s {
            // Partial row: from x to the row end or the range end.
            row_left.min(end - pos)
        } else {
            // Full rows, up to the layer end or the last full row of the range.
            let rows = ((end - pos) / s).min((layer_end - pos) / s);
            rows * s
        };
        let size = if x != 0 || take < s {
            [take as u32, 1]
        } else {
            [layer_size, (take / s) as u32]
        };
        out.push(Span {
            src_texel: pos - start,
            layer,
            origin: [x, y],
            size,
        });
        pos += take;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allocations_are_back_to_back_until_full() {
        let mut p = LinearPacker::new(4, 2); // 16 texels per layer, 32 in all
        assert_eq!(p.allocate(6), Some(0));
        assert_eq!(p.allocate(6), Some(6));
        assert_eq!(p.layers_used(), 1);
        assert_eq!(p.allocate(6), Some(12)); // straddles layers 0 and 1
        assert_eq!(p.layers_used(), 2);
        assert_eq!(p.allocate(0), None);
        assert_eq!(p.allocate(15), None, "only 14 texels left");
        assert_eq!(p.allocate(14), Some(18));
        p.clear();
        assert_eq!((p.allocate(1), p.used()), (Some(0), 1));
    }

    #[test]
    fn locate_walks_rows_then_layers() {
        assert_eq!(locate(0, 4), (0, [0, 0]));
        assert_eq!(locate(5, 4), (0, [1, 1]));
        assert_eq!(locate(15, 4), (0, [3, 3]));
        assert_eq!(locate(16, 4), (1, [0, 0]));
        assert_eq!(locate(4096 * 4096 + 4097, 4096), (1, [1, 1]));
    }

    /// Every texel of the range is covered exactly once, in order.
    fn assert_covers(start: u64, len: u64, s: u32) {
        let sp = spans(start, len, s);
        let mut covered = Vec::new();
        for span in &sp {
            assert!(span.size[0] >= 1 && span.size[1] >= 1);
            assert!(span.origin[0] + span.size[0] <= s && span.origin[1] + span.size[1] <= s);
            for r in 0..span.size[1] {
                for c in 0..span.size[0] {
                    let idx = u64::from(span.layer) * u64::from(s * s)
                        + u64::from(span.origin[1] + r) * u64::from(s)
                        + u64::from(span.origin[0] + c);
                    let src = span.src_texel + u64::from(r * span.size[0] + c);
                    assert_eq!(idx, start + src, "{span:?}");
                    covered.push(idx);
                }
            }
        }
        assert_eq!(covered, (start..start + len).collect::<Vec<_>>());
    }

    #[test]
    fn spans_cover_ranges_exactly() {
        for (start, len) in [
            (0, 1),
            (0, 16),
            (3, 2),
            (3, 13),
            (3, 30),
            (5, 64),
            (0, 48),
            (17, 3),
        ] {
            assert_covers(start, len, 4);
        }
        // Mid-row start, several full rows, partial end: three rectangles.
        let sp = spans(3, 2 + 3 * 8 + 5, 8);
        assert_eq!(sp.len(), 3);
        assert_eq!(sp[1].size, [8, 3]);
        // Crossing a layer boundary splits per layer: 10..12 and 12..16 in layer 0, then
        // 16..20 (a full row) and 20..22 in layer 1.
        let sp = spans(10, 12, 4);
        assert_eq!(
            sp.iter().map(|s| (s.layer, s.size)).collect::<Vec<_>>(),
            vec![(0, [2, 1]), (0, [4, 1]), (1, [4, 1]), (1, [2, 1])]
        );
    }
}
