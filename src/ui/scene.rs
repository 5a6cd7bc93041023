//! The scene builder: view model + interaction state + the tiles already in the atlas →
//! one [`Scene`] (shapes, tiles, overlay, text). Pure: the same inputs give the same scene.
//! The architecture canvas is drawn by [`super::arch_canvas`].
//! Draw order: canvas backgrounds, then tiles, then the overlay (architecture canvas and the
//! details header, which cover tiles scrolled under them), then text.

use super::frame::tile_border;
pub use super::frame::{LayerTiles, SceneInputs, tile_order};
use super::layout::{DETAILS_HEADER_PX, FULL_LABEL_BUTTON_PX, Rect, TileGrid, method_button_rect};
use super::palette::{ACCENT, BG, DIM, PANEL, PANEL_EDGE, TEXT};
use super::state::{
    BUTTON_COUNT, Hover, ModelShape, Panel, ViewState, button_label, compact_button_label,
    method_label,
};
use super::{LayerInfo, ViewModel};
use crate::format::Method;
use crate::render::{Scene, ShapeInstance, TextItem, TileHandle, TileInstance};
use crate::viz::gradient_norm::GradientNorm;

/// Smallest tile edge in the details grid.
pub const MIN_TILE_PX: f32 = 28.0;

/// The tile grid of the selected layer (also used for hit testing).
pub fn selected_grid(vm: &ViewModel, state: &ViewState) -> Option<TileGrid> {
    let layer = vm.layers.get(state.selected)?;
    let (c, h, w) = layer.map_dims()?;
    let hw = match state.panel {
        // Pooling layers show their window.
        _ if layer.pool.is_some() => return None,
        // Gradient images have the input's size.
        Panel::Tiles => tile_hw(vm, state.method, [h, w]),
        Panel::DatasetExamples => {
            let dataset = vm.dataset.as_ref()?;
            dataset.layer(state.selected)?;
            [dataset.crop_px as usize; 2]
        }
        // Grad-CAM and parameters have no grid.
        Panel::GradCam | Panel::Params => return None,
    };
    Some(TileGrid::zoomed(
        &state.tile_area(),
        c,
        hw,
        MIN_TILE_PX,
        state.tile_zoom,
    ))
}

/// What the interaction state machine needs to know about the model and the current view.
pub fn model_shape(vm: &ViewModel, state: &ViewState) -> ModelShape {
    ModelShape {
        layers: vm.layers.len(),
        grid: selected_grid(vm, state),
        map_layers: vm.map_layers.clone(),
        bars: super::charts::chart_bars(vm, state),
        order: tile_order(vm, state).map(<[usize]>::to_vec),
        arch_items: state.collapsed.then(|| vm.levels.items(&state.open_blocks)),
    }
}

/// `[H, W]` of one tile of a layer whose maps are `map_hw` under `method`: the map itself,
/// the input for gradient images, the occlusion grid for occlusion maps (as the results say).
pub fn tile_hw(vm: &ViewModel, method: Method, map_hw: [usize; 2]) -> [usize; 2] {
    match method {
        Method::Forward => map_hw,
        Method::Occlusion => vm.occlusion_hw,
        _ => vm.input_hw,
    }
}

/// The Grad-CAM the view needs now, as `(layer, class)`: the hovered class of a chart at
/// the model's Grad-CAM layer, or the top class at the selected layer in the Grad-CAM panel.
pub fn wanted_cam(vm: &ViewModel, state: &ViewState) -> Option<(usize, usize)> {
    if let Some(class) = super::charts::hovered_class(vm, state) {
        return Some((vm.cam_layer?, class));
    }
    let layer = vm.layers.get(state.selected)?;
    if state.panel != Panel::GradCam || layer.pool.is_some() || vm.cam_layer.is_none() {
        return None;
    }
    let (_, h, w) = layer.map_dims()?;
    (h * w > 1).then_some(())?;
    let (class, _) = *vm.top_classes(1).first()?;
    Some((state.selected, class))
}

/// The header's notes on rank order and suggested-bad filters, shared by every grid.
fn rank_and_dead_hint(inp: &SceneInputs) -> String {
    let (vm, state) = (inp.vm, inp.state);
    let rank = vm.rank_order(state.selected);
    let mut hint = match (tile_order(vm, state), rank) {
        (Some(_), Some((_, true))) => " · sorted by mean over the dataset (S: filter order)",
        (Some(_), _) => " · sorted by rank (S: filter order)",
        (None, Some(_)) => " · S sorts by rank",
        (None, None) => "",
    }
    .to_string();
    if !inp.suggested_bad.is_empty() {
        let what = if rank.is_some_and(|(_, dataset)| dataset) {
            "dead over the dataset"
        } else {
            "constant"
        };
        hint.push_str(&format!(
            " · {} {what}: B marks them bad",
            inp.suggested_bad.len()
        ));
    }
    hint
}

/// Builds the frame.
pub fn build_scene(inp: &SceneInputs) -> Scene {
    let mut scene = Scene {
        clear: BG,
        ..Default::default()
    };
    let c = inp.state.canvases();
    scene
        .shapes
        .push(ShapeInstance::fill_rect(c.details.xywh(), BG));
    scene
        .shapes
        .push(ShapeInstance::fill_rect(c.side.xywh(), PANEL));
    scene.shapes.push(ShapeInstance::line(
        [c.side.x, 0.0],
        [c.side.x, c.side.h],
        1.0,
        PANEL_EDGE,
    ));
    details(inp, &mut scene);
    super::arch_canvas::architecture(inp.vm, inp.state, inp.annotations, &mut scene);
    super::side_canvas::side(inp, &mut scene);
    if inp.state.show_frame_time
        && let Some(ms) = inp.frame_ms
    {
        scene.text.push(
            TextItem::new(
                format!("{ms:.2} ms/frame"),
                [c.side.x - 8.0, c.details.bottom() - 8.0],
                13.0,
                ACCENT,
            )
            .anchored([1.0, 1.0]),
        );
    }
    scene
}

fn details(inp: &SceneInputs, scene: &mut Scene) {
    let (vm, state) = (inp.vm, inp.state);
    let d = state.canvases().details;
    let Some(layer) = vm.layers.get(state.selected) else {
        return;
    };
    let header = Rect::new(d.x, d.y, d.w, DETAILS_HEADER_PX);
    scene
        .overlay
        .push(ShapeInstance::fill_rect(header.xywh(), BG));
    let title_w = (method_button_rect(&header, 0, BUTTON_COUNT).x - d.x - 24.0).max(80.0);
    scene.text.push(
        TextItem::new(
            format!(
                "{}  ·  {}  ·  {}",
                layer.name,
                layer.type_name,
                layer.size_label()
            ),
            [d.x + 12.0, d.y + 8.0],
            15.0,
            TEXT,
        )
        .clipped([d.x, d.y, title_w, 28.0]),
    );
    let area = state.tile_area();
    if layer.map_dims().is_some() && layer.pool.is_none() {
        method_buttons(state, &header, scene);
    }
    if state.panel == Panel::DatasetExamples && layer.pool.is_none() && layer.map_dims().is_some() {
        dataset_examples(inp, &header, &area, scene);
        return;
    }
    match (
        selected_grid(vm, state),
        inp.tiles
            .filter(|t| t.layer == state.selected && t.method == state.method),
    ) {
        (Some(grid), Some(tiles)) => {
            let what = match state.method {
                Method::Forward => {
                    format!("forward activation · colour map: {:?} (C)", state.colormap)
                }
                Method::Occlusion => {
                    "drop of each filter's summed response as a grey square slides over the input"
                        .to_string()
                }
                Method::FeatVis => {
                    "feature visualisation: the image each filter's mean response is highest \
                     for (Lucid's recipe; no input)"
                        .to_string()
                }
                m => format!(
                    "{} of each filter's summed response w.r.t. the input · {}",
                    method_label(m),
                    match state.gradient_norm {
                        GradientNorm::Robust => "0 at mid-grey, top 2% of |g| clipped (N: min-max)",
                        GradientNorm::MinMax => "min-max per tile (N: centred at 0)",
                    }
                ),
            };
            let (good, bad) = inp.annotations.counts(&layer.name);
            let count = match tiles.tiles.len() {
                done if done < tiles.channels => {
                    format!("{done} of {} filters so far, computing…", tiles.channels)
                }
                done => format!("{done} filters"),
            };
            let mut hint = format!(
                "{what} · {count} (good {good}, bad {bad}) · click good, double-click bad, shift+click clear"
            );
            hint.push_str(&rank_and_dead_hint(inp));
            scene.text.push(
                TextItem::new(hint, [d.x + 12.0, d.y + 32.0], 12.0, DIM).clipped(header.xywh()),
            );
            let order = tile_order(vm, state);
            for pos in grid.visible(&area, state.details_scroll_px) {
                let k = order.and_then(|o| o.get(pos).copied()).unwrap_or(pos);
                let Some((handle, range)) = tiles.tile(k, state.gradient_norm) else {
                    continue;
                };
                let r = grid.tile_rect(pos, state.details_scroll_px);
                let t = TileInstance::new(r.xywh(), handle, range, tiles.colormap(state.colormap));
                scene.tiles.push(match tile_border(inp, k) {
                    Some((rgba, width_px)) => t.with_border(width_px, rgba),
                    None => t,
                });
            }
        }
        (Some(_), None) => {
            let what = if state.method == Method::Forward {
                "computing…".to_string()
            } else {
                let mut what =
                    format!("computing {} for every filter…", method_label(state.method));
                // An occlusion sweep computes every layer's maps at once.
                let covers = |p: &crate::ui::Progress| {
                    p.method == state.method
                        && (p.layer == state.selected || p.method == Method::Occlusion)
                };
                if let Some(p) = vm.progress.filter(covers) {
                    what.push_str(&match p.method {
                        Method::FeatVis => {
                            format!(" {:.0}%", 100.0 * p.done as f64 / p.total.max(1) as f64)
                        }
                        _ => format!(" {} of {} passes", p.done, p.total),
                    });
                }
                what
            };
            scene
                .text
                .push(TextItem::new(what, [d.x + 12.0, d.y + 32.0], 12.0, DIM));
        }
        (None, _) => non_map_details(vm, layer, state, inp.cam, &area, scene),
    }
}

/// The "dataset examples" panel: the grid of top-1 crops with its header line, or why there
/// is none.
fn dataset_examples(inp: &SceneInputs, header: &Rect, area: &Rect, scene: &mut Scene) {
    let (vm, state) = (inp.vm, inp.state);
    let scanned = (vm.dataset.as_ref()).and_then(|d| Some((d, d.layer(state.selected)?)));
    let (Some(grid), Some((dataset, layer))) = (selected_grid(vm, state), scanned) else {
        let msg = super::dataset::no_grid_message(vm.dataset.as_ref());
        scene.text.push(
            TextItem::new(msg, [area.x + 12.0, area.y + 8.0], 13.0, DIM)
                .with_max_width(area.w - 24.0),
        );
        return;
    };
    let mut hint = super::dataset::grid_hint(dataset, layer);
    hint.push_str(&rank_and_dead_hint(inp));
    scene.text.push(
        TextItem::new(hint, [header.x + 12.0, header.y + 32.0], 12.0, DIM).clipped(header.xywh()),
    );
    super::dataset::draw_top1_grid(inp, &grid, area, scene);
}

/// The method radio buttons, right-aligned in the details header.
fn method_buttons(state: &ViewState, header: &Rect, scene: &mut Scene) {
    for i in 0..BUTTON_COUNT {
        let r = method_button_rect(header, i, BUTTON_COUNT);
        let active = i == state.active_button();
        let fill = if active {
            [0.25, 0.42, 0.72, 1.0]
        } else {
            PANEL
        };
        scene
            .overlay
            .push(ShapeInstance::fill_rect(r.xywh(), fill).rounded(4.0));
        let edge = if state.hover == Hover::Method(i) {
            ACCENT
        } else {
            PANEL_EDGE
        };
        scene
            .overlay
            .push(ShapeInstance::outline_rect(r.xywh(), 1.0, edge).rounded(4.0));
        scene.text.push(
            TextItem::new(
                if r.w < FULL_LABEL_BUTTON_PX {
                    compact_button_label(i)
                } else {
                    button_label(i)
                },
                r.center(),
                if r.w < 110.0 { 10.0 } else { 11.5 },
                if active { TEXT } else { DIM },
            )
            .anchored([0.5, 0.5]),
        );
    }
}

/// Details of a layer without a tile grid: the pooling window, the class charts of the
/// softmax and output layers, parameters as text otherwise.
fn non_map_details(
    vm: &ViewModel,
    layer: &LayerInfo,
    state: &ViewState,
    cam: Option<(TileHandle, &str)>,
    area: &Rect,
    scene: &mut Scene,
) {
    if let Some(pool) = &layer.pool {
        super::charts::draw_pool_window(layer, pool, area, scene);
    } else if layer.map_dims().is_some() && state.panel == Panel::GradCam {
        layer_grad_cam(vm, cam, area, scene);
    } else if let Some(chart) = super::charts::chart_of(vm, state.selected) {
        super::charts::draw_chart(vm, state, chart, scene);
    } else {
        let text = if layer.params_text.is_empty() {
            "no parameters".to_string()
        } else {
            layer.params_text.clone()
        };
        let text_w = if layer.weights.is_some() {
            (area.w * 0.4).max(200.0)
        } else {
            area.w - 24.0
        };
        scene.text.push(
            TextItem::new(text, [area.x + 12.0, area.y + 8.0], 13.0, TEXT)
                .with_max_width(text_w)
                .clipped(area.xywh()),
        );
        if let Some(h) = &layer.weights {
            let x = area.x + 24.0 + text_w;
            let plot = Rect::new(
                x,
                area.y + 40.0,
                (area.right() - x - 24.0).max(0.0),
                (area.h - 90.0).clamp(0.0, 300.0),
            );
            super::charts::draw_histogram(h, &plot, scene);
        }
    }
}

/// The selected layer's Grad-CAM of the most probable class, over the input, as large as
/// the area allows.
fn layer_grad_cam(vm: &ViewModel, cam: Option<(TileHandle, &str)>, area: &Rect, scene: &mut Scene) {
    let top = vm.top_classes(1).first().map(|&(c, _)| vm.label(c));
    let Some((pic, caption)) = cam else {
        let msg = match (vm.cam_layer, top) {
            (None, _) => "Grad-CAM needs the model (this is a data directory)".to_string(),
            (_, Some(class)) => format!("computing the Grad-CAM of {class} at this layer…"),
            (_, None) => "no class scores yet".to_string(),
        };
        scene
            .text
            .push(TextItem::new(msg, [area.x + 12.0, area.y + 8.0], 13.0, DIM));
        return;
    };
    scene.text.push(TextItem::new(
        format!("{caption} at this layer (ReLU of the gradient-weighted sum of its maps)"),
        [area.x + 12.0, area.y + 8.0],
        13.0,
        DIM,
    ));
    let side = (area.h - 48.0).min(area.w - 24.0).max(32.0);
    scene.tiles.push(TileInstance::picture(
        [area.x + 12.0, area.y + 32.0, side, side],
        pic,
    ));
}
