//! What one frame is built from: the selected layer's tiles and a scan's crops as they sit in
//! the atlas, the [`SceneInputs`] bundle the scene builders take, and the per-tile rules every
//! grid shares (rank order, borders). The builders ([`super::scene`], [`super::side_canvas`],
//! [`super::dataset`]) read these; none of them is imported here.

use super::ViewModel;
use super::palette::{ACCENT, BAD, GOOD};
use super::state::{Hover, ViewState};
use crate::annotations::{Annotations, Mark};
use crate::format::Method;
use crate::render::{Colormap, TileHandle};
use crate::viz::gradient_norm::GradientNorm;

/// Border of a filter suggested bad (constant on this input) but not marked.
const SUGGESTED: [f32; 4] = [0.95, 0.25, 0.22, 0.45];

/// The selected layer's tiles as uploaded to the atlas: handle and `[min, max]` per channel.
#[derive(Debug, Clone, PartialEq)]
pub struct LayerTiles {
    pub layer: usize,
    /// Which method's images these are.
    pub method: Method,
    /// `[H, W]` of each map.
    pub map_hw: [usize; 2],
    /// Channels of the layer; more than `tiles` while per-filter images are still arriving.
    pub channels: usize,
    /// Channel `k`'s tile, for the first `tiles.len()` channels, with its min-max range.
    pub tiles: Vec<(TileHandle, [f32; 2])>,
    /// For gradient images, each tile's robust range ([`GradientNorm::Robust`]), as many as
    /// `tiles`; empty for maps.
    pub robust: Vec<[f32; 2]>,
}

impl LayerTiles {
    /// Tile `k` and the range it is drawn with under `norm` (maps always use min-max).
    pub fn tile(&self, k: usize, norm: GradientNorm) -> Option<(TileHandle, [f32; 2])> {
        let &(handle, min_max) = self.tiles.get(k)?;
        let range = match (norm, self.robust.get(k)) {
            (GradientNorm::Robust, Some(&robust)) => robust,
            _ => min_max,
        };
        Some((handle, range))
    }

    /// Gradient images are RGB (normalised jointly over their planes); maps use the chosen map.
    pub fn colormap(&self, chosen: Colormap) -> Colormap {
        if self.method.rgb_images() {
            Colormap::Rgb
        } else {
            chosen
        }
    }
}

/// The crops of the selected layer in the atlas.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DatasetTiles {
    /// The model layer they belong to.
    pub layer: usize,
    /// Per filter, its top-1 crop (uploaded only while the "dataset examples" grid shows;
    /// `None` where a filter has no example or its crop could not be read).
    pub top1: Vec<Option<TileHandle>>,
    /// A hovered filter and its top-k crops, best first.
    pub hovered: Option<(usize, Vec<Option<TileHandle>>)>,
    /// Hovered filters whose crops were appended to the atlas since it was last cleared.
    pub hovers_appended: usize,
}

/// Everything one frame is built from.
pub struct SceneInputs<'a> {
    pub vm: &'a ViewModel,
    pub state: &'a ViewState,
    pub tiles: Option<&'a LayerTiles>,
    /// The input picture in the atlas.
    pub picture: Option<TileHandle>,
    /// Mean frame time to show when the readout is on.
    pub frame_ms: Option<f64>,
    /// The user's filter marks.
    pub annotations: &'a Annotations,
    /// Unmarked filters of the selected layer suggested bad (constant on this input).
    pub suggested_bad: &'a [usize],
    /// The input with the hovered class's Grad-CAM over it, and its caption.
    pub cam: Option<(TileHandle, &'a str)>,
    /// An example image of the hovered class (`--examples`).
    pub example: Option<TileHandle>,
    /// Dataset-scan crops of the selected layer (`--scan`).
    pub dataset: Option<&'a DatasetTiles>,
}

/// Which filter each grid position shows when the tiles are sorted by rank (None: filter
/// order, or no rank known for the selected layer). A dataset scan's rank comes first
/// ([`ViewModel::rank_order`]).
pub fn tile_order<'a>(vm: &'a ViewModel, state: &ViewState) -> Option<&'a [usize]> {
    let (order, _) = vm.rank_order(state.selected)?;
    let channels = vm.layers.get(state.selected)?.map_dims()?.0;
    (state.sort_by_rank && order.len() == channels).then_some(order)
}

/// The border of filter `k`'s tile in the selected layer: hovered, marked, or suggested bad.
pub fn tile_border(inp: &SceneInputs, k: usize) -> Option<([f32; 4], f32)> {
    let name = inp.vm.layers.get(inp.state.selected)?.name.as_str();
    if inp.state.hover == Hover::Tile(k) {
        return Some((ACCENT, 2.0));
    }
    match inp.annotations.mark(name, k) {
        Some(Mark::Good) => Some((GOOD, 3.0)),
        Some(Mark::Bad) => Some((BAD, 3.0)),
        None if inp.suggested_bad.contains(&k) => Some((SUGGESTED, 1.5)),
        None => None,
    }
}
