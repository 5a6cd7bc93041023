//! The dataset scan's part of the view (`view --scan DIR`): per layer, the filters ranked by
//! their mean over the dataset, the dead ones, and each filter's top examples; and the scene
//! pieces that draw them: the "dataset examples" grid (each filter's top-1 crop as its tile,
//! as Microscope shows a layer) and the side canvas's top-k of a hovered filter. Pure, no
//! GPU: the crops arrive as atlas handles in [`DatasetTiles`].

pub use super::frame::DatasetTiles;
use super::frame::{SceneInputs, tile_border, tile_order};
use super::layout::{Rect, TileGrid};
use super::palette::{ACCENT, DIM, PANEL, TEXT};
use super::state::Hover;
use crate::render::{Scene, ShapeInstance, TextItem, TileInstance};
use crate::scan::open::OpenScan;

/// A scan as the view uses it, matched to the model's layers by name.
#[derive(Debug, Clone, PartialEq)]
pub struct DatasetView {
    /// Where the scan is, for headers.
    pub label: String,
    /// Images the scan covers.
    pub images: usize,
    /// Side of the crops in pixels.
    pub crop_px: u32,
    /// Per model layer (as `ViewModel::layers`): its scan, where it was scanned.
    pub layers: Vec<Option<DatasetLayer>>,
}

/// One scanned layer.
#[derive(Debug, Clone, PartialEq)]
pub struct DatasetLayer {
    /// Index into the scan's own layer list (crops are read by it).
    pub scan_layer: usize,
    /// Filters by mean activation over the dataset, highest first.
    pub rank: Vec<usize>,
    /// Filters never positive on any scanned image.
    pub dead: Vec<usize>,
    /// Per filter, its top examples, best first.
    pub top: Vec<Vec<TopExample>>,
}

/// One of a filter's top dataset examples.
#[derive(Debug, Clone, PartialEq)]
pub struct TopExample {
    /// The filter's spatial maximum on the image.
    pub value: f32,
    /// File name of the image.
    pub image: String,
}

impl DatasetView {
    /// Matches `scan`'s layers to the model's (`(name, channels)` per layer) by name. A
    /// scanned layer whose filter count differs from the model's is left out, and so is one
    /// the model lacks; each such case is described in the returned notes.
    pub fn new<'a>(
        scan: &OpenScan,
        model_layers: impl IntoIterator<Item = (&'a str, Option<usize>)>,
    ) -> (Self, Vec<String>) {
        let mut notes = Vec::new();
        let mut matched = vec![false; scan.manifest.layers.len()];
        let layers = (model_layers.into_iter())
            .map(|(name, channels)| {
                let li = scan.layer_index(name)?;
                matched[li] = true;
                let filters = scan.manifest.layers[li].shape[0];
                if channels != Some(filters) {
                    notes.push(format!(
                        "scan layer `{name}` has {filters} filters, the model's {}",
                        channels.map_or("none".into(), |c| c.to_string())
                    ));
                    return None;
                }
                let top = (0..filters)
                    .map(|k| {
                        (scan.top(li, k).iter())
                            .map(|e| TopExample {
                                value: e.value,
                                image: scan.image_path(e.image).map_or_else(String::new, |p| {
                                    std::path::Path::new(p)
                                        .file_name()
                                        .map_or(p.into(), |f| f.to_string_lossy().into_owned())
                                }),
                            })
                            .collect()
                    })
                    .collect();
                Some(DatasetLayer {
                    scan_layer: li,
                    rank: scan.rank_by_mean(li),
                    dead: scan.dead_filters(li),
                    top,
                })
            })
            .collect();
        let unmatched: Vec<&str> = (scan.manifest.layers.iter().zip(&matched))
            .filter(|(_, m)| !**m)
            .map(|(l, _)| l.name.as_str())
            .collect();
        if !unmatched.is_empty() {
            notes.push(format!(
                "{} scanned layer(s) not in the model: {}",
                unmatched.len(),
                unmatched.join(", ")
            ));
        }
        let view = Self {
            label: scan.root.display().to_string(),
            images: scan.image_count(),
            crop_px: scan.manifest.settings.crop_size,
            layers,
        };
        (view, notes)
    }

    /// The scan of model layer `layer`, if it was scanned.
    pub fn layer(&self, layer: usize) -> Option<&DatasetLayer> {
        self.layers.get(layer)?.as_ref()
    }
}

/// The "dataset examples" grid: each filter's top-1 crop as its tile, bordered as the
/// other methods' tiles are.
pub fn draw_top1_grid(inp: &SceneInputs, grid: &TileGrid, area: &Rect, scene: &mut Scene) {
    let (vm, state) = (inp.vm, inp.state);
    let Some(tiles) = inp.dataset.filter(|t| t.layer == state.selected) else {
        return;
    };
    let order = tile_order(vm, state);
    for pos in grid.visible(area, state.details_scroll_px) {
        let k = order.and_then(|o| o.get(pos).copied()).unwrap_or(pos);
        let r = grid.tile_rect(pos, state.details_scroll_px);
        let Some(Some(handle)) = tiles.top1.get(k) else {
            // No example: an empty frame keeps the grid readable.
            scene
                .shapes
                .push(ShapeInstance::outline_rect(r.xywh(), 1.0, PANEL));
            continue;
        };
        let t = TileInstance::picture(r.xywh(), *handle);
        scene.tiles.push(match tile_border(inp, k) {
            Some((rgba, width_px)) => t.with_border(width_px, rgba),
            None => t,
        });
    }
}

/// The details header's line for the "dataset examples" grid.
pub fn grid_hint(dataset: &DatasetView, layer: &DatasetLayer) -> String {
    let with = layer.top.iter().filter(|t| !t.is_empty()).count();
    format!(
        "dataset examples · each filter's top-1 receptive-field crop over {} images (scan {}) · {with} of {} filters have one",
        dataset.images,
        dataset.label,
        layer.top.len()
    )
}

/// What the "dataset examples" panel says when it has no grid to show.
pub fn no_grid_message(dataset: Option<&DatasetView>) -> String {
    match dataset {
        None => {
            "no dataset scan is open: run `convlens scan MODEL --inputs IMAGES --out SCAN`, then \
                 `convlens view MODEL --scan SCAN`"
                .into()
        }
        Some(d) => format!(
            "this layer is not in the scan {} (`convlens scan --layers` chooses the layers)",
            d.label
        ),
    }
}

/// Height of the side canvas's top-k block for `count` examples at `width_px`.
pub fn top_k_height(count: usize, width_px: f32) -> f32 {
    let rows = count.div_ceil(TOP_K_COLUMNS) as f32;
    HEADER_PX + rows * (cell_px(width_px) + CAPTION_PX)
}

const TOP_K_COLUMNS: usize = 3;
/// One line of the block's two-line header.
const LINE_PX: f32 = 17.0;
const HEADER_PX: f32 = 2.0 * LINE_PX + 4.0;
const CAPTION_PX: f32 = 16.0;
const GAP_PX: f32 = 6.0;

fn cell_px(width_px: f32) -> f32 {
    ((width_px - GAP_PX * (TOP_K_COLUMNS as f32 - 1.0)) / TOP_K_COLUMNS as f32).max(16.0)
}

/// The hovered filter's top-k dataset examples in the side canvas, from `[x, y]` in a
/// column `width_px` wide; returns the `y` below the block (unchanged when there is nothing
/// to show).
pub fn draw_hovered_top_k(
    inp: &SceneInputs,
    x: f32,
    y: f32,
    width_px: f32,
    scene: &mut Scene,
) -> f32 {
    let (vm, state) = (inp.vm, inp.state);
    let (Hover::Tile(k), Some(dataset)) = (state.hover, &vm.dataset) else {
        return y;
    };
    let Some(top) = dataset.layer(state.selected).and_then(|l| l.top.get(k)) else {
        return y;
    };
    let handles = inp
        .dataset
        .filter(|t| t.layer == state.selected)
        .and_then(|t| t.hovered.as_ref())
        .filter(|(filter, _)| *filter == k)
        .map(|(_, h)| h.as_slice())
        .unwrap_or_default();
    let (title, best) = match top.first() {
        Some(best) => (
            format!("dataset top {} of {} images", top.len(), dataset.images),
            format!("best: {}", best.image),
        ),
        None => (
            "no dataset example".to_string(),
            "(never the largest on a scanned image)".to_string(),
        ),
    };
    for (i, (text, size, colour)) in [(title, 12.0, TEXT), (best, 11.0, DIM)]
        .into_iter()
        .enumerate()
    {
        let line_y = y + i as f32 * LINE_PX;
        scene.text.push(
            TextItem::new(text, [x, line_y], size, colour).clipped([x, line_y, width_px, LINE_PX]),
        );
    }
    let cell = cell_px(width_px);
    for (rank, example) in top.iter().enumerate() {
        let (row, col) = (rank / TOP_K_COLUMNS, rank % TOP_K_COLUMNS);
        let cx = x + col as f32 * (cell + GAP_PX);
        let cy = y + HEADER_PX + row as f32 * (cell + CAPTION_PX);
        let rect = [cx, cy, cell, cell - 2.0];
        match handles.get(rank).copied().flatten() {
            Some(h) => {
                let tile = TileInstance::picture(rect, h);
                scene.tiles.push(if rank == 0 {
                    tile.with_border(2.0, ACCENT)
                } else {
                    tile
                });
            }
            None => scene
                .shapes
                .push(ShapeInstance::outline_rect(rect, 1.0, PANEL)),
        }
        scene.text.push(
            TextItem::new(
                format!("{:.3}", example.value),
                [cx + cell / 2.0, cy + cell - 1.0],
                10.5,
                DIM,
            )
            .anchored([0.5, 0.0]),
        );
    }
    y + top_k_height(top.len(), width_px)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_top_k_block_is_as_tall_as_its_rows() {
        // 9 examples: two header lines, three rows of cells a third of the width (less the
        // gaps) plus captions.
        let w = 270.0;
        let cell = (w - 12.0) / 3.0;
        assert!((top_k_height(9, w) - (38.0 + 3.0 * (cell + 16.0))).abs() < 1e-3);
        assert!((top_k_height(4, w) - (38.0 + 2.0 * (cell + 16.0))).abs() < 1e-3);
        assert_eq!(top_k_height(0, w), 38.0);
    }
}
