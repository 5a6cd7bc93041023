//! Where everything goes, as pure functions of the window size and view state: the three
//! canvases of the paper (architecture on top, details in the middle, side on the right),
//! the 7-per-row chain of layer nodes, the grid of filter tiles and hit testing. All
//! coordinates are window pixels with the origin top-left.

/// An axis-aligned rectangle in window pixels.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Rect {
    pub x: f32,
    pub y: f32,
    pub w: f32,
    pub h: f32,
}

impl Rect {
    /// `[x, y, w, h]`, the layout of the renderer's shape and tile instances.
    pub const fn xywh(&self) -> [f32; 4] {
        [self.x, self.y, self.w, self.h]
    }

    pub const fn new(x: f32, y: f32, w: f32, h: f32) -> Self {
        Self { x, y, w, h }
    }
    pub fn contains(&self, p: [f32; 2]) -> bool {
        p[0] >= self.x && p[0] < self.x + self.w && p[1] >= self.y && p[1] < self.y + self.h
    }
    pub fn intersects(&self, o: &Rect) -> bool {
        self.x < o.x + o.w && o.x < self.x + self.w && self.y < o.y + o.h && o.y < self.y + self.h
    }
    pub fn right(&self) -> f32 {
        self.x + self.w
    }
    pub fn bottom(&self) -> f32 {
        self.y + self.h
    }
    pub fn center(&self) -> [f32; 2] {
        [self.x + self.w / 2.0, self.y + self.h / 2.0]
    }
}

/// Nodes per row in the architecture canvas, as in the paper.
pub const NODES_PER_ROW: usize = 7;
/// Side length of a layer node square.
pub const NODE_PX: f32 = 64.0;
/// Vertical distance between node rows (room for the link labels above the links).
pub const ROW_PITCH_PX: f32 = 104.0;
/// Height of the architecture canvas's title bar.
pub const TITLE_PX: f32 = 36.0;
/// Width of the side canvas.
pub const SIDE_PX: f32 = 300.0;
/// Height of the details canvas header (layer name, method buttons).
pub const DETAILS_HEADER_PX: f32 = 56.0;
/// Gap between filter tiles.
pub const TILE_GAP_PX: f32 = 4.0;

/// The three canvases.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Canvases {
    pub arch: Rect,
    pub details: Rect,
    pub side: Rect,
}

/// Splits the window: side canvas on the right at full height, the rest split between the
/// architecture (top: title and 1–4 whole node rows, about 42% of the height) and the details.
pub fn canvases(window_px: [f32; 2]) -> Canvases {
    let [w, h] = window_px;
    let side_w = SIDE_PX.min(w * 0.35);
    let main_w = (w - side_w).max(0.0);
    // As many whole node rows as fit in ~42% of the height (1 to 4).
    let rows = ((h * 0.42 - TITLE_PX - 8.0) / ROW_PITCH_PX)
        .floor()
        .clamp(1.0, 4.0);
    let arch_h = (TITLE_PX + rows * ROW_PITCH_PX + 8.0).min(h * 0.5);
    Canvases {
        arch: Rect::new(0.0, 0.0, main_w, arch_h),
        details: Rect::new(0.0, arch_h, main_w, (h - arch_h).max(0.0)),
        side: Rect::new(main_w, 0.0, side_w, h),
    }
}

/// Zoom range of the architecture chain (1 = the paper's 7 nodes per row; smaller shows more
/// nodes, smaller).
pub const ARCH_ZOOM_RANGE: (f32, f32) = (0.25, 1.0);

/// Where the architecture chain's nodes go at a zoom level (before scrolling): row-major,
/// `round(7 / zoom)` per row, horizontally centred, squares of `64·zoom` px.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ArchGrid {
    /// Top-left of the first node's cell.
    origin_px: [f32; 2],
    pub per_row: usize,
    pub node_px: f32,
    pub pitch_x_px: f32,
    pub row_pitch_px: f32,
}

impl ArchGrid {
    /// The chain in `canvas` at `zoom` (clamped to [`ARCH_ZOOM_RANGE`]).
    pub fn new(canvas: &Rect, zoom: f32) -> Self {
        let zoom = zoom.clamp(ARCH_ZOOM_RANGE.0, ARCH_ZOOM_RANGE.1);
        let per_row = ((NODES_PER_ROW as f32 / zoom).round() as usize).max(1);
        let node_px = (NODE_PX * zoom).round();
        Self {
            origin_px: [canvas.x, canvas.y + TITLE_PX + 28.0 * zoom.max(0.5)],
            per_row,
            node_px,
            pitch_x_px: (canvas.w / per_row as f32).max(node_px + 8.0 * zoom),
            row_pitch_px: (ROW_PITCH_PX * zoom).round(),
        }
    }

    /// Node `index`'s square.
    pub fn node_rect(&self, index: usize) -> Rect {
        let (row, col) = (index / self.per_row, index % self.per_row);
        let x = self.origin_px[0]
            + self.pitch_x_px * col as f32
            + (self.pitch_x_px - self.node_px) / 2.0;
        let y = self.origin_px[1] + self.row_pitch_px * row as f32;
        Rect::new(x, y, self.node_px, self.node_px)
    }

    /// Whether node `index` is the last of its row (the link to the next one wraps).
    pub fn ends_row(&self, index: usize) -> bool {
        (index + 1).is_multiple_of(self.per_row)
    }

    /// The row node `index` is in.
    pub fn row(&self, index: usize) -> usize {
        index / self.per_row
    }

    /// Total content height for `n` nodes (title included).
    pub fn content_height(&self, n: usize) -> f32 {
        self.origin_px[1] + self.row_pitch_px * n.div_ceil(self.per_row) as f32
    }
}

/// Node `index`'s square at zoom 1 (the paper's layout).
pub fn arch_node_rect(canvas: &Rect, index: usize) -> Rect {
    ArchGrid::new(canvas, 1.0).node_rect(index)
}

/// Total content height of the architecture canvas for `n` nodes at zoom 1.
pub fn arch_content_height(n: usize) -> f32 {
    TITLE_PX + 28.0 + ROW_PITCH_PX * n.div_ceil(NODES_PER_ROW) as f32
}

/// The grid of filter tiles in the details canvas.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TileGrid {
    /// Top-left of tile 0 (before scrolling).
    pub origin: [f32; 2],
    pub cols: usize,
    pub tile_px: [f32; 2],
    pub count: usize,
}

impl TileGrid {
    /// Lays out `count` tiles of `map_hw` pixels into `area`: the tile size adapts to the
    /// width so that all tiles fit in as few rows as keep each tile at least `min_px` wide
    /// (and never upscaled beyond 8× or more than 160 px).
    pub fn new(area: &Rect, count: usize, map_hw: [usize; 2], min_px: f32) -> Self {
        let aspect = map_hw[0].max(1) as f32 / map_hw[1].max(1) as f32;
        let max_w = (map_hw[1] as f32 * 8.0).clamp(min_px, 160.0);
        // Largest width in [min_px, max_w] that fits the whole grid in the area, else min_px.
        let mut tile_w = max_w;
        while tile_w > min_px {
            let cols = ((area.w + TILE_GAP_PX) / (tile_w + TILE_GAP_PX))
                .floor()
                .max(1.0) as usize;
            let rows = count.div_ceil(cols);
            if rows as f32 * (tile_w * aspect + TILE_GAP_PX) <= area.h {
                break;
            }
            tile_w -= 1.0;
        }
        let tile_w = tile_w.max(min_px);
        let cols = ((area.w + TILE_GAP_PX) / (tile_w + TILE_GAP_PX))
            .floor()
            .max(1.0) as usize;
        Self {
            origin: [area.x + TILE_GAP_PX, area.y + TILE_GAP_PX],
            cols,
            tile_px: [tile_w, tile_w * aspect],
            count,
        }
    }

    /// [`TileGrid::new`] scaled by `zoom` (1 = fit the area).
    pub fn zoomed(area: &Rect, count: usize, map_hw: [usize; 2], min_px: f32, zoom: f32) -> Self {
        let fitted = Self::new(area, count, map_hw, min_px);
        if (zoom - 1.0).abs() < 1e-3 {
            return fitted;
        }
        fitted.rescaled(area, zoom)
    }

    /// The same tiles `factor` times as wide (between 8 px and the area's width), columns
    /// reflowed to the area.
    pub fn rescaled(&self, area: &Rect, factor: f32) -> Self {
        let aspect = self.tile_px[1] / self.tile_px[0].max(1e-3);
        let max_w = (area.w - 2.0 * TILE_GAP_PX).max(8.0);
        let tile_w = (self.tile_px[0] * factor).clamp(8.0, max_w);
        let cols = ((area.w + TILE_GAP_PX) / (tile_w + TILE_GAP_PX))
            .floor()
            .max(1.0) as usize;
        Self {
            cols,
            tile_px: [tile_w, tile_w * aspect],
            ..*self
        }
    }

    pub fn rows(&self) -> usize {
        self.count.div_ceil(self.cols.max(1))
    }

    /// Content height of the grid.
    pub fn height(&self) -> f32 {
        self.rows() as f32 * (self.tile_px[1] + TILE_GAP_PX) + TILE_GAP_PX
    }

    /// Rectangle of tile `k`, shifted up by `scroll_px`.
    pub fn tile_rect(&self, k: usize, scroll_px: f32) -> Rect {
        let (row, col) = (k / self.cols.max(1), k % self.cols.max(1));
        Rect::new(
            self.origin[0] + col as f32 * (self.tile_px[0] + TILE_GAP_PX),
            self.origin[1] + row as f32 * (self.tile_px[1] + TILE_GAP_PX) - scroll_px,
            self.tile_px[0],
            self.tile_px[1],
        )
    }

    /// The tile under `p`, if any (gaps hit nothing).
    pub fn tile_at(&self, p: [f32; 2], scroll_px: f32) -> Option<usize> {
        let x = p[0] - self.origin[0];
        let y = p[1] - self.origin[1] + scroll_px;
        if x < 0.0 || y < 0.0 {
            return None;
        }
        let pitch = [self.tile_px[0] + TILE_GAP_PX, self.tile_px[1] + TILE_GAP_PX];
        let (col, row) = ((x / pitch[0]) as usize, (y / pitch[1]) as usize);
        let inside = x - col as f32 * pitch[0] < self.tile_px[0]
            && y - row as f32 * pitch[1] < self.tile_px[1];
        let k = row * self.cols + col;
        (inside && col < self.cols && k < self.count).then_some(k)
    }

    /// Indices of the tiles that intersect `view` (only these cost work).
    pub fn visible(&self, view: &Rect, scroll_px: f32) -> std::ops::Range<usize> {
        let pitch_y = self.tile_px[1] + TILE_GAP_PX;
        let top = ((view.y - self.origin[1] + scroll_px) / pitch_y)
            .floor()
            .max(0.0) as usize;
        let bottom = ((view.bottom() - self.origin[1] + scroll_px) / pitch_y)
            .ceil()
            .max(0.0) as usize;
        (top * self.cols).min(self.count)..(bottom * self.cols).min(self.count)
    }
}

/// Width of one method radio button in the details header.
pub const METHOD_BUTTON_PX: [f32; 2] = [118.0, 22.0];

/// Narrowest method button; below [`FULL_LABEL_BUTTON_PX`] buttons show short labels.
pub const COMPACT_BUTTON_PX: f32 = 56.0;
/// Narrowest method button that shows its full label.
pub const FULL_LABEL_BUTTON_PX: f32 = 96.0;

/// Rectangle of method button `i` (right-aligned in the details header).
/// Buttons narrow (down to [`COMPACT_BUTTON_PX`], short labels below
/// [`FULL_LABEL_BUTTON_PX`]) so that together they take at most 58% of the header: the rest
/// is the layer's title (`/_blocks.2/_project_conv/Conv · Conv · 24×56×56` needs ~360 px).
pub fn method_button_rect(details: &Rect, i: usize, count: usize) -> Rect {
    let gap = 6.0;
    let n = count.max(1) as f32;
    let fit = (details.w * 0.58 - (n - 1.0) * gap) / n;
    let w = fit.clamp(COMPACT_BUTTON_PX, METHOD_BUTTON_PX[0]);
    let total = n * (w + gap) - gap;
    let x0 = details.right() - 12.0 - total;
    Rect::new(
        x0 + i as f32 * (w + gap),
        details.y + 6.0,
        w,
        METHOD_BUTTON_PX[1],
    )
}

/// Clamps a scroll offset to `[0, content - viewport]`.
pub fn clamp_scroll(scroll_px: f32, content_px: f32, viewport_px: f32) -> f32 {
    scroll_px.clamp(0.0, (content_px - viewport_px).max(0.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canvases_tile_the_window() {
        let c = canvases([1600.0, 1000.0]);
        assert_eq!(c.side.right(), 1600.0);
        assert_eq!(c.arch.w + c.side.w, 1600.0);
        assert_eq!(c.details.y, c.arch.bottom());
        assert_eq!(c.details.bottom(), 1000.0);
    }

    #[test]
    fn nodes_wrap_seven_per_row() {
        let c = Rect::new(0.0, 0.0, 700.0, 300.0);
        let r6 = arch_node_rect(&c, 6);
        let r7 = arch_node_rect(&c, 7);
        assert!(r7.y > r6.y, "node 7 starts a new row");
        assert_eq!(r7.x, arch_node_rect(&c, 0).x);
        assert_eq!(arch_node_rect(&c, 13).y, r7.y);
        assert_eq!(arch_content_height(14), arch_content_height(8));
    }

    #[test]
    fn tile_grid_hit_testing_and_visibility() {
        let area = Rect::new(0.0, 100.0, 400.0, 300.0);
        let g = TileGrid::new(&area, 64, [13, 13], 24.0);
        assert!(
            g.rows() as f32 * (g.tile_px[1] + TILE_GAP_PX) <= 300.0 + 1.0,
            "64 tiles fit: {g:?}"
        );
        for k in [0, 7, 63] {
            let r = g.tile_rect(k, 0.0);
            assert_eq!(g.tile_at(r.center(), 0.0), Some(k));
        }
        // A gap hits nothing; past the last tile hits nothing.
        let r0 = g.tile_rect(0, 0.0);
        assert_eq!(
            g.tile_at([r0.right() + TILE_GAP_PX / 2.0, r0.center()[1]], 0.0),
            None
        );
        // Scrolling moves the hit target.
        let row_pitch = g.tile_rect(g.cols, 0.0).y - r0.y;
        assert_eq!(
            g.tile_at(r0.center(), row_pitch),
            Some(g.cols),
            "scrolled by one row"
        );
        assert_eq!(
            g.tile_at(r0.center(), -row_pitch),
            None,
            "row above the grid"
        );
        let many = TileGrid::new(&area, 1000, [7, 7], 24.0);
        let vis = many.visible(&area, 0.0);
        assert!(
            vis.start == 0 && vis.end < 1000 && vis.end >= many.cols,
            "{vis:?}"
        );
    }

    #[test]
    fn zoom_scales_tiles_and_reflows_columns() {
        let area = Rect::new(0.0, 0.0, 800.0, 600.0);
        let fit = TileGrid::new(&area, 256, [13, 13], 24.0);
        assert_eq!(TileGrid::zoomed(&area, 256, [13, 13], 24.0, 1.0), fit);
        let big = TileGrid::zoomed(&area, 256, [13, 13], 24.0, 2.0);
        assert_eq!(big.tile_px[0], fit.tile_px[0] * 2.0);
        assert!(big.cols < fit.cols && big.height() > fit.height());
        let small = TileGrid::zoomed(&area, 256, [13, 13], 24.0, 0.01);
        assert_eq!(small.tile_px[0], 8.0, "never below 8 px");
        let huge = TileGrid::zoomed(&area, 256, [13, 13], 24.0, 1e6);
        assert_eq!(huge.cols, 1);
        assert!(huge.tile_px[0] <= area.w);
        // Hit testing still agrees with the rectangles.
        let r = big.tile_rect(big.cols + 1, 0.0);
        assert_eq!(big.tile_at(r.center(), 0.0), Some(big.cols + 1));
    }

    #[test]
    fn scroll_is_clamped() {
        assert_eq!(clamp_scroll(-5.0, 100.0, 50.0), 0.0);
        assert_eq!(clamp_scroll(80.0, 100.0, 50.0), 50.0);
        assert_eq!(clamp_scroll(10.0, 40.0, 50.0), 0.0);
    }
}
