//! Interaction as plain data: what is selected, hovered and scrolled, and how input events
//! change it. Pure functions of (state, layout, event), unit-tested without a GPU.

use std::collections::BTreeSet;

use super::layout::{
    ARCH_ZOOM_RANGE, ArchGrid, Canvases, Rect, canvases, clamp_scroll, method_button_rect,
};
use super::levels::LevelTree;
pub use super::model_shape::ModelShape;
use crate::annotations::Mark;
use crate::format::Method;
use crate::render::Colormap;
use crate::viz::gradient_norm::GradientNorm;

/// What the details canvas shows for a layer with filter maps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Panel {
    /// Every filter's tile under [`ViewState::method`].
    #[default]
    Tiles,
    /// Each filter's top-1 crop from a dataset scan (`view --scan`).
    DatasetExamples,
    /// The layer's Grad-CAM of the top class, over the input.
    GradCam,
    /// Parameters and the weight histogram.
    Params,
}

/// The details header's radio buttons: the tile methods, then dataset examples, Grad-CAM
/// and parameters.
pub const BUTTON_COUNT: usize = Method::ALL.len() + 3;

/// The panels after the tile methods' buttons, in button order.
const PANEL_BUTTONS: [Panel; 3] = [Panel::DatasetExamples, Panel::GradCam, Panel::Params];

/// The name a method has on the viewer's buttons and in its header.
pub fn method_label(method: Method) -> &'static str {
    match method {
        Method::Forward => "forward",
        Method::Guided => "guided backprop",
        Method::Deconvnet => "deconvnet",
        Method::Backprop => "backprop",
        Method::Occlusion => "occlusion",
        Method::FeatVis => "feature vis",
    }
}

/// Label of radio button `i`.
pub fn button_label(i: usize) -> &'static str {
    match Method::ALL.get(i) {
        Some(&m) => method_label(m),
        None => match PANEL_BUTTONS.get(i - Method::ALL.len()) {
            Some(Panel::DatasetExamples) => "dataset examples",
            Some(Panel::GradCam) => "Grad-CAM",
            _ => "parameters",
        },
    }
}

/// Short label of radio button `i`, for narrow windows.
pub fn compact_button_label(i: usize) -> &'static str {
    match (Method::ALL.get(i), button_label(i)) {
        (Some(Method::Guided), _) => "GBP",
        (Some(Method::Deconvnet), _) => "deconv",
        (Some(Method::Occlusion), _) => "occl.",
        (Some(Method::FeatVis), _) => "featvis",
        (None, "dataset examples") => "dataset",
        (None, "parameters") => "params",
        (_, label) => label,
    }
}

/// Two clicks on the same tile within this many seconds are a double-click.
pub const DOUBLE_CLICK_S: f64 = 0.4;

/// What a click did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ClickOutcome {
    /// The selected layer or the method changed (the details canvas must be refreshed).
    pub view_changed: bool,
    /// A filter annotation to apply: `(layer, filter from 0, mark or None = clear)`.
    pub annotate: Option<(usize, usize, Option<Mark>)>,
}

/// A click's modifiers and time, as the window reports them.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct ClickInfo {
    /// Seconds since any fixed origin (only differences matter).
    pub time_s: f64,
    pub shift: bool,
}

/// What the pointer is over.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Hover {
    #[default]
    Nothing,
    /// A layer node in the architecture canvas.
    Node(usize),
    /// Filter tile `k` (from 0) of the selected layer.
    Tile(usize),
    /// Method radio button `i` (index into [`Method::ALL`]).
    Method(usize),
    /// Bar `i` of the selected layer's class chart.
    Bar(usize),
}

/// The viewer's interaction state.
#[derive(Debug, Clone, PartialEq)]
pub struct ViewState {
    /// Selected layer (node index).
    pub selected: usize,
    pub hover: Hover,
    pub arch_scroll_px: f32,
    pub details_scroll_px: f32,
    pub colormap: Colormap,
    /// What the details canvas shows for conv-like layers.
    pub method: Method,
    /// Tiles, Grad-CAM or parameters for layers with filter maps.
    pub panel: Panel,
    pub show_frame_time: bool,
    pub window_px: [f32; 2],
    /// Tile size relative to the fitted grid (1 = all tiles fit the canvas when they can).
    pub tile_zoom: f32,
    /// The layer search being typed (`/`), if any.
    pub search: Option<String>,
    /// Tiles in filter-rank order instead of filter order.
    pub sort_by_rank: bool,
    /// How gradient images are scaled (robust by default; N toggles min-max).
    pub gradient_norm: GradientNorm,
    /// The architecture shows its levels of blocks (see [`crate::ui::levels`]) instead of one
    /// node per layer.
    pub collapsed: bool,
    /// Blocks of the levels opened in place (indices into
    /// [`crate::ui::levels::LevelTree::blocks`]); kept while the architecture shows layers.
    pub open_blocks: BTreeSet<usize>,
    /// Size of the architecture's nodes (1 = the paper's 7 per row; see [`ArchGrid`]).
    pub arch_zoom: f32,
    /// The last click on a tile: `(layer, tile, time_s)`, to tell a double-click.
    last_tile_click: Option<(usize, usize, f64)>,
}

/// Keys the viewer reacts to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Key {
    /// Next layer with feature maps.
    NextLayer,
    /// Previous layer with feature maps.
    PrevLayer,
    /// Cycle the colour map.
    CycleColormap,
    /// Toggle the frame-time readout.
    ToggleFrameTime,
    /// Next visualisation method.
    CycleMethod,
    /// Larger tiles.
    ZoomIn,
    /// Smaller tiles.
    ZoomOut,
    /// Tiles fitted to the canvas again.
    ZoomReset,
    /// Tiles in filter-rank order, or back in filter order.
    ToggleRankSort,
    /// Gradient images centred at zero with outliers clipped, or the paper's min-max.
    ToggleGradientNorm,
    /// One node per block of layers in the architecture, or one per layer.
    ToggleCollapse,
    /// Larger architecture nodes (fewer per row).
    ArchZoomIn,
    /// Smaller architecture nodes (more per row).
    ArchZoomOut,
}

/// Zoom range of the tile grid.
pub const TILE_ZOOM_RANGE: (f32, f32) = (0.25, 16.0);

impl ViewState {
    /// A fresh state with `selected` chosen and scrolled into view.
    pub fn new(selected: usize, window_px: [f32; 2]) -> Self {
        let mut s = Self {
            selected,
            hover: Hover::Nothing,
            arch_scroll_px: 0.0,
            details_scroll_px: 0.0,
            colormap: Colormap::Grey,
            method: Method::Forward,
            panel: Panel::Tiles,
            show_frame_time: false,
            window_px,
            tile_zoom: 1.0,
            search: None,
            sort_by_rank: false,
            gradient_norm: GradientNorm::Robust,
            collapsed: false,
            open_blocks: BTreeSet::new(),
            arch_zoom: 1.0,
            last_tile_click: None,
        };
        s.scroll_arch_to(selected);
        s
    }

    pub fn canvases(&self) -> Canvases {
        canvases(self.window_px)
    }

    /// The area of the details canvas below its header, where tiles go.
    pub fn tile_area(&self) -> Rect {
        let d = self.canvases().details;
        Rect::new(
            d.x,
            d.y + super::layout::DETAILS_HEADER_PX,
            d.w,
            (d.h - super::layout::DETAILS_HEADER_PX).max(0.0),
        )
    }

    /// Which thing is at `p`.
    pub fn hit(&self, model: &ModelShape, p: [f32; 2]) -> Hover {
        let c = self.canvases();
        if c.arch.contains(p) {
            // A collapsed block is hovered as its first layer.
            return (self.arch_item_at(model, p))
                .map_or(Hover::Nothing, |i| Hover::Node(model.first_layer(i)));
        }
        if let Some(i) =
            (0..BUTTON_COUNT).find(|&i| method_button_rect(&c.details, i, BUTTON_COUNT).contains(p))
        {
            return Hover::Method(i);
        }
        if let Some(i) = model.bars.iter().position(|r| r.contains(p)) {
            return Hover::Bar(i);
        }
        if self.tile_area().contains(p)
            && let Some(grid) = &model.grid
            && let Some(k) = grid.tile_at(p, self.details_scroll_px)
        {
            // Positions map to filters through the rank order when sorted.
            let filter = model
                .order
                .as_ref()
                .and_then(|o| o.get(k).copied())
                .unwrap_or(k);
            return Hover::Tile(filter);
        }
        Hover::Nothing
    }

    /// The architecture node at `p` (window pixels), if any.
    fn arch_item_at(&self, model: &ModelShape, p: [f32; 2]) -> Option<usize> {
        if !self.canvases().arch.contains(p) {
            return None;
        }
        let q = [p[0], p[1] + self.arch_scroll_px];
        let grid = self.arch_grid();
        (0..model.arch_count()).find(|&i| grid.node_rect(i).contains(q))
    }

    pub fn on_cursor(&mut self, model: &ModelShape, p: [f32; 2]) {
        self.hover = self.hit(model, p);
    }

    pub fn on_cursor_left(&mut self) {
        self.hover = Hover::Nothing;
    }

    /// A click opens the closed block under the pointer in place, selects the layer or the
    /// method under it, or annotates the filter tile under it: click = good, a second click
    /// on the same tile within [`DOUBLE_CLICK_S`] (a double-click) = bad, shift+click =
    /// clear.
    pub fn on_click(&mut self, model: &ModelShape, p: [f32; 2], click: ClickInfo) -> ClickOutcome {
        if let Some(block) = (self.arch_item_at(model, p)).and_then(|i| model.block_of(i)) {
            self.open_blocks.insert(block);
            self.last_tile_click = None;
            return ClickOutcome {
                view_changed: false,
                annotate: None,
            };
        }
        let hit = self.hit(model, p);
        let previous = self.last_tile_click.take();
        match hit {
            Hover::Node(i) if i != self.selected => {
                self.select(i);
                ClickOutcome {
                    view_changed: true,
                    annotate: None,
                }
            }
            Hover::Method(i) if i != self.active_button() => {
                self.press_button(i);
                ClickOutcome {
                    view_changed: true,
                    annotate: None,
                }
            }
            Hover::Tile(k) => {
                let mark = if click.shift {
                    None
                } else {
                    let double = previous.is_some_and(|(layer, tile, t)| {
                        layer == self.selected
                            && tile == k
                            && (0.0..=DOUBLE_CLICK_S).contains(&(click.time_s - t))
                    });
                    // A double-click is bad; its first click had already marked it good.
                    if !double {
                        self.last_tile_click = Some((self.selected, k, click.time_s));
                    }
                    Some(if double { Mark::Bad } else { Mark::Good })
                };
                ClickOutcome {
                    view_changed: false,
                    annotate: Some((self.selected, k, mark)),
                }
            }
            _ => ClickOutcome::default(),
        }
    }

    fn select(&mut self, i: usize) {
        self.selected = i;
        self.details_scroll_px = 0.0;
        self.hover = Hover::Nothing;
    }

    /// Scrolls the canvas under the pointer by `dy_px` (positive = content moves up).
    pub fn on_scroll(&mut self, model: &ModelShape, p: [f32; 2], dy_px: f32) {
        let c = self.canvases();
        if c.arch.contains(p) {
            // The architecture scrolls by whole rows of nodes.
            let grid = self.arch_grid();
            let pitch = grid.row_pitch_px;
            let content = grid.content_height(model.arch_count());
            let wanted = clamp_scroll(self.arch_scroll_px + dy_px, content, c.arch.h);
            let max_rows = (clamp_scroll(f32::MAX, content, c.arch.h) / pitch).ceil();
            let rows = if dy_px > 0.0 {
                (wanted / pitch).ceil()
            } else {
                (wanted / pitch).floor()
            };
            self.arch_scroll_px = rows.clamp(0.0, max_rows) * pitch;
        } else if c.details.contains(p)
            && let Some(grid) = &model.grid
        {
            self.details_scroll_px = clamp_scroll(
                self.details_scroll_px + dy_px,
                grid.height(),
                self.tile_area().h,
            );
        }
        self.on_cursor(model, p);
    }

    /// Returns whether the selection changed.
    pub fn on_key(&mut self, model: &ModelShape, key: Key) -> bool {
        match key {
            Key::NextLayer | Key::PrevLayer => {
                let layers = &model.map_layers;
                let pos = layers.iter().position(|&l| l >= self.selected);
                let next = match (key, pos) {
                    (Key::NextLayer, Some(p)) if layers[p] == self.selected => layers.get(p + 1),
                    (Key::NextLayer, Some(p)) => layers.get(p),
                    (Key::PrevLayer, Some(p)) => p.checked_sub(1).and_then(|q| layers.get(q)),
                    (Key::PrevLayer, None) => layers.last(),
                    _ => None,
                };
                match next {
                    Some(&n) => {
                        self.select(n);
                        self.scroll_arch_to(model.item_of(n));
                        true
                    }
                    None => false,
                }
            }
            Key::CycleColormap => {
                let maps = Colormap::SCALAR;
                let i = maps.iter().position(|&m| m == self.colormap).unwrap_or(0);
                self.colormap = maps[(i + 1) % maps.len()];
                false
            }
            Key::ToggleFrameTime => {
                self.show_frame_time = !self.show_frame_time;
                false
            }
            Key::ToggleRankSort => {
                self.sort_by_rank = !self.sort_by_rank;
                false
            }
            Key::ToggleGradientNorm => {
                self.gradient_norm = match self.gradient_norm {
                    GradientNorm::Robust => GradientNorm::MinMax,
                    GradientNorm::MinMax => GradientNorm::Robust,
                };
                false
            }
            Key::ToggleCollapse => {
                // Rows change meaning: start at the top; the caller scrolls to the selection
                // with the new shape ([`ViewState::scroll_arch_to`]).
                self.collapsed = !self.collapsed;
                self.arch_scroll_px = 0.0;
                false
            }
            Key::ZoomIn | Key::ZoomOut | Key::ZoomReset => {
                let zoom = match key {
                    Key::ZoomIn => self.tile_zoom * 1.25,
                    Key::ZoomOut => self.tile_zoom / 1.25,
                    _ => 1.0,
                };
                self.zoom_tiles(model, zoom);
                false
            }
            Key::CycleMethod => {
                self.press_button((self.active_button() + 1) % BUTTON_COUNT);
                true
            }
            Key::ArchZoomIn | Key::ArchZoomOut => {
                let f = if key == Key::ArchZoomIn { 1.25 } else { 0.8 };
                self.zoom_arch(model, self.arch_zoom * f);
                false
            }
        }
    }

    /// The architecture chain's geometry at the current zoom.
    pub fn arch_grid(&self) -> ArchGrid {
        ArchGrid::new(&self.canvases().arch, self.arch_zoom)
    }

    /// Sets the architecture zoom (clamped; within 2% of 1 snaps to 1), keeping the middle
    /// node of the top row in view at the top (so repeated zooms do not drift).
    pub fn zoom_arch(&mut self, model: &ModelShape, zoom: f32) {
        let old = self.arch_grid();
        let first_in_view = (self.arch_scroll_px / old.row_pitch_px).round() as usize * old.per_row
            + old.per_row / 2;
        let zoom = zoom.clamp(ARCH_ZOOM_RANGE.0, ARCH_ZOOM_RANGE.1);
        self.arch_zoom = if (zoom - 1.0).abs() < 0.02 { 1.0 } else { zoom };
        let new = self.arch_grid();
        let max = clamp_scroll(
            f32::MAX,
            new.content_height(model.arch_count()),
            self.canvases().arch.h,
        );
        let max_rows = (max / new.row_pitch_px).ceil();
        self.arch_scroll_px =
            (new.row(first_in_view.min(model.arch_count().saturating_sub(1))) as f32).min(max_rows)
                * new.row_pitch_px;
    }

    /// Sets the tile zoom (clamped), keeping the same fraction of the grid scrolled past.
    pub fn zoom_tiles(&mut self, model: &ModelShape, zoom: f32) {
        let zoom = zoom.clamp(TILE_ZOOM_RANGE.0, TILE_ZOOM_RANGE.1);
        if let Some(old) = model.grid {
            let fraction = self.details_scroll_px / old.height().max(1.0);
            let new = old.rescaled(&self.tile_area(), zoom / self.tile_zoom);
            self.details_scroll_px =
                clamp_scroll(fraction * new.height(), new.height(), self.tile_area().h);
        }
        self.tile_zoom = zoom;
    }

    /// The radio button showing what the details canvas shows now.
    pub fn active_button(&self) -> usize {
        match self.panel {
            Panel::Tiles => Method::ALL
                .iter()
                .position(|&m| m == self.method)
                .unwrap_or(0),
            panel => {
                Method::ALL.len() + PANEL_BUTTONS.iter().position(|&p| p == panel).unwrap_or(0)
            }
        }
    }

    fn press_button(&mut self, i: usize) {
        match Method::ALL.get(i) {
            Some(&m) => {
                self.method = m;
                self.panel = Panel::Tiles;
            }
            None => {
                let panel = PANEL_BUTTONS.get(i - Method::ALL.len());
                self.panel = panel.copied().unwrap_or(Panel::Params);
            }
        }
    }

    /// Closes the innermost open block around the hovered node (else the selected layer);
    /// returns the block closed.
    pub fn close_block(&mut self, levels: &LevelTree) -> Option<usize> {
        if !self.collapsed {
            return None;
        }
        let layer = match self.hover {
            Hover::Node(i) => i,
            _ => self.selected,
        };
        let block = levels.innermost_open(layer, &self.open_blocks)?;
        self.open_blocks.remove(&block);
        self.hover = Hover::Nothing;
        Some(block)
    }

    /// Opens every block around layer `i`, so that a collapsed architecture shows it.
    pub fn reveal(&mut self, levels: &LevelTree, i: usize) {
        if self.collapsed {
            self.open_blocks.extend(levels.path_to(i));
        }
    }

    /// Selects layer `i` and scrolls the architecture to it (search results, jumps).
    /// Returns whether the selection changed.
    pub fn jump_to(&mut self, model: &ModelShape, i: usize) -> bool {
        if i == self.selected {
            return false;
        }
        self.select(i);
        self.scroll_arch_to(model.item_of(i));
        true
    }

    /// Scrolls the architecture canvas so node `i` (a layer, or a block when collapsed) is
    /// visible.
    pub fn scroll_arch_to(&mut self, i: usize) {
        let arch = self.canvases().arch;
        let grid = self.arch_grid();
        let r = grid.node_rect(i);
        if r.y - self.arch_scroll_px < arch.y + super::layout::TITLE_PX
            || r.bottom() - self.arch_scroll_px > arch.bottom()
        {
            self.arch_scroll_px = grid.row(i) as f32 * grid.row_pitch_px;
        }
    }

    pub fn on_resize(&mut self, window_px: [f32; 2]) {
        self.window_px = window_px;
    }
}

/// The first layer at or after `start` (wrapping around) whose name contains `query`,
/// ignoring case; `None` for an empty query or no match.
pub fn find_layer<'a>(
    names: impl IntoIterator<Item = &'a str>,
    query: &str,
    start: usize,
) -> Option<usize> {
    let query = query.trim().to_lowercase();
    if query.is_empty() {
        return None;
    }
    let hits: Vec<usize> = names
        .into_iter()
        .enumerate()
        .filter(|(_, n)| n.to_lowercase().contains(&query))
        .map(|(i, _)| i)
        .collect();
    hits.iter()
        .copied()
        .find(|&i| i >= start)
        .or_else(|| hits.first().copied())
}

#[cfg(test)]
mod tests;
