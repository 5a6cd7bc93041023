//! Unit tests of the interaction state machine: clicks, hovers, keys, search, scrolling and
//! zoom, without a GPU.

use super::super::layout::{ROW_PITCH_PX, TileGrid, arch_node_rect};
use super::*;
use crate::ui::levels::ArchItem;

fn model(grid: Option<&TileGrid>, maps: &[usize]) -> ModelShape {
    ModelShape {
        layers: 20,
        grid: grid.copied(),
        map_layers: maps.to_vec(),
        bars: Vec::new(),
        order: None,
        arch_items: None,
    }
}

#[test]
fn click_on_a_node_selects_it() {
    let mut s = ViewState::new(0, [1400.0, 900.0]);
    let m = model(None, &[0, 2, 4]);
    let r = arch_node_rect(&s.canvases().arch, 3);
    assert_eq!(s.hit(&m, r.center()), Hover::Node(3));
    assert!(
        s.on_click(&m, r.center(), ClickInfo::default())
            .view_changed
    );
    assert_eq!(s.selected, 3);
    assert_eq!(
        s.on_click(&m, r.center(), ClickInfo::default()),
        ClickOutcome::default(),
        "clicking the selected node changes nothing"
    );
    assert_eq!(
        s.on_click(&m, [1.0, 1.0], ClickInfo::default()),
        ClickOutcome::default(),
        "the title bar selects nothing"
    );
}

#[test]
fn hover_finds_tiles_in_the_details_canvas() {
    let s = ViewState::new(0, [1400.0, 900.0]);
    let grid = TileGrid::new(&s.tile_area(), 32, [56, 56], 24.0);
    let m = model(Some(&grid), &[0]);
    let r = grid.tile_rect(5, 0.0);
    assert_eq!(s.hit(&m, r.center()), Hover::Tile(5));
}

#[test]
fn click_double_click_and_shift_click_annotate_tiles() {
    let mut s = ViewState::new(4, [1400.0, 900.0]);
    let grid = TileGrid::new(&s.tile_area(), 32, [56, 56], 24.0);
    let m = model(Some(&grid), &[4]);
    let (t5, t6) = (
        grid.tile_rect(5, 0.0).center(),
        grid.tile_rect(6, 0.0).center(),
    );
    let at = |time_s: f64| ClickInfo {
        time_s,
        shift: false,
    };
    let mark = |o: ClickOutcome| o.annotate;
    assert_eq!(
        mark(s.on_click(&m, t5, at(10.0))),
        Some((4, 5, Some(Mark::Good)))
    );
    // The second click of a double-click turns it bad.
    assert_eq!(
        mark(s.on_click(&m, t5, at(10.25))),
        Some((4, 5, Some(Mark::Bad)))
    );
    // A third quick click starts a new click sequence: good again.
    assert_eq!(
        mark(s.on_click(&m, t5, at(10.4))),
        Some((4, 5, Some(Mark::Good)))
    );
    // Two slow clicks are two single clicks.
    assert_eq!(
        mark(s.on_click(&m, t6, at(20.0))),
        Some((4, 6, Some(Mark::Good)))
    );
    assert_eq!(
        mark(s.on_click(&m, t6, at(20.41))),
        Some((4, 6, Some(Mark::Good)))
    );
    // Quick clicks on two different tiles are two single clicks.
    assert_eq!(
        mark(s.on_click(&m, t5, at(20.5))),
        Some((4, 5, Some(Mark::Good)))
    );
    // A click elsewhere in between breaks a double-click.
    s.on_click(&m, [1.0, 1.0], at(20.6));
    assert_eq!(
        mark(s.on_click(&m, t5, at(20.7))),
        Some((4, 5, Some(Mark::Good)))
    );
    let shift = ClickInfo {
        time_s: 30.0,
        shift: true,
    };
    assert_eq!(mark(s.on_click(&m, t5, shift)), Some((4, 5, None)));
    assert!(!s.on_click(&m, t5, shift).view_changed);
}

#[test]
fn sorted_tiles_hit_the_filter_shown_at_that_position() {
    let mut s = ViewState::new(0, [1400.0, 900.0]);
    let grid = TileGrid::new(&s.tile_area(), 4, [8, 8], 24.0);
    let mut m = model(Some(&grid), &[0]);
    m.order = Some(vec![2, 0, 3, 1]);
    assert_eq!(s.hit(&m, grid.tile_rect(0, 0.0).center()), Hover::Tile(2));
    assert_eq!(s.hit(&m, grid.tile_rect(3, 0.0).center()), Hover::Tile(1));
    s.on_key(&m, Key::ToggleRankSort);
    assert!(s.sort_by_rank);
}

#[test]
fn n_toggles_gradient_scaling_without_recomputing() {
    use crate::viz::gradient_norm::GradientNorm;
    let mut s = ViewState::new(0, [1400.0, 900.0]);
    let m = model(None, &[0]);
    assert_eq!(
        s.gradient_norm,
        GradientNorm::Robust,
        "the viewer's default"
    );
    // Only the drawing changes: the ranges of both are kept with the tiles.
    assert!(!s.on_key(&m, Key::ToggleGradientNorm));
    assert_eq!(s.gradient_norm, GradientNorm::MinMax);
    assert!(!s.on_key(&m, Key::ToggleGradientNorm));
    assert_eq!(s.gradient_norm, GradientNorm::Robust);
}

#[test]
fn keys_step_through_feature_map_layers() {
    let mut s = ViewState::new(1, [1400.0, 900.0]);
    let maps = [0, 2, 4];
    let m = model(None, &maps);
    assert!(s.on_key(&m, Key::NextLayer));
    assert_eq!(s.selected, 2);
    assert!(s.on_key(&m, Key::NextLayer));
    assert_eq!(s.selected, 4);
    assert!(!s.on_key(&m, Key::NextLayer), "no layer after the last");
    assert!(s.on_key(&m, Key::PrevLayer));
    assert_eq!(s.selected, 2);
    s.on_key(&m, Key::CycleColormap);
    assert_eq!(s.colormap, Colormap::Diverging);
    assert!(s.on_key(&m, Key::CycleMethod));
    assert_eq!(s.method, Method::Guided);
}

#[test]
fn method_buttons_are_radio_buttons() {
    let mut s = ViewState::new(0, [1400.0, 900.0]);
    let m = model(None, &[0]);
    let r = method_button_rect(&s.canvases().details, 2, BUTTON_COUNT);
    assert_eq!(s.hit(&m, r.center()), Hover::Method(2));
    assert!(
        s.on_click(&m, r.center(), ClickInfo::default())
            .view_changed
    );
    assert_eq!(s.method, Method::Deconvnet);
    assert!(
        !s.on_click(&m, r.center(), ClickInfo::default())
            .view_changed,
        "clicking the active method changes nothing"
    );
    // Dataset examples, Grad-CAM and parameters are buttons after the tile methods.
    let examples_button = Method::ALL.len();
    let examples = method_button_rect(&s.canvases().details, examples_button, BUTTON_COUNT);
    assert!(
        s.on_click(&m, examples.center(), ClickInfo::default())
            .view_changed
    );
    assert_eq!(
        (s.panel, s.active_button()),
        (Panel::DatasetExamples, examples_button)
    );
    s.on_key(&m, Key::CycleMethod);
    assert_eq!(
        (s.panel, s.active_button()),
        (Panel::GradCam, examples_button + 1)
    );
    s.on_key(&m, Key::CycleMethod);
    assert_eq!(s.panel, Panel::Params);
    s.on_key(&m, Key::CycleMethod);
    assert_eq!((s.panel, s.method), (Panel::Tiles, Method::Forward));
    assert_eq!(button_label(examples_button), "dataset examples");
    assert_eq!(button_label(examples_button + 1), "Grad-CAM");
    assert_eq!(button_label(examples_button + 2), "parameters");
    assert_eq!(button_label(4), "occlusion");
}

#[test]
fn architecture_scrolls_by_whole_rows() {
    let mut s = ViewState::new(0, [1400.0, 900.0]);
    let m = ModelShape {
        layers: 94,
        grid: None,
        map_layers: Vec::new(),
        bars: vec![Rect::new(0.0, 800.0, 50.0, 50.0)],
        order: None,
        arch_items: None,
    };
    assert_eq!(s.hit(&m, [10.0, 810.0]), Hover::Bar(0));
    let p = s.canvases().arch.center();
    s.on_scroll(&m, p, 10.0);
    assert_eq!(s.arch_scroll_px, ROW_PITCH_PX);
    s.on_scroll(&m, p, 1e9);
    let last_row_top = arch_node_rect(&s.canvases().arch, 93).y - s.arch_scroll_px;
    assert!(
        last_row_top >= s.canvases().arch.y,
        "the last row stays reachable"
    );
    assert_eq!(s.arch_scroll_px % ROW_PITCH_PX, 0.0);
    s.on_scroll(&m, p, -10.0);
    s.on_scroll(&m, p, -1e9);
    assert_eq!(s.arch_scroll_px, 0.0);
}

#[test]
fn zoom_keys_scale_tiles_and_keep_the_scroll_position() {
    let mut s = ViewState::new(0, [1400.0, 900.0]);
    let grid = TileGrid::new(&s.tile_area(), 2000, [7, 7], 24.0);
    let m = model(Some(&grid), &[0]);
    s.details_scroll_px = grid.height() / 2.0;
    s.on_key(&m, Key::ZoomIn);
    assert_eq!(s.tile_zoom, 1.25);
    let zoomed = grid.rescaled(&s.tile_area(), 1.25);
    let fraction = s.details_scroll_px / zoomed.height();
    assert!((fraction - 0.5).abs() < 0.01, "{fraction}");
    for _ in 0..100 {
        s.on_key(&m, Key::ZoomIn);
    }
    assert_eq!(s.tile_zoom, TILE_ZOOM_RANGE.1);
    s.on_key(&m, Key::ZoomReset);
    assert_eq!(s.tile_zoom, 1.0);
}

#[test]
fn search_finds_layers_by_name_and_wraps() {
    let names = [
        "stem.conv",
        "block1.conv1",
        "block1.add",
        "block2.conv",
        "fc",
    ];
    assert_eq!(find_layer(names, "CONV", 0), Some(0));
    assert_eq!(find_layer(names, "conv", 1), Some(1));
    assert_eq!(find_layer(names, "conv", 4), Some(0), "wraps around");
    assert_eq!(find_layer(names, "add", 0), Some(2));
    assert_eq!(find_layer(names, "nope", 0), None);
    assert_eq!(find_layer(names, "  ", 0), None);
    let mut s = ViewState::new(0, [1400.0, 900.0]);
    let m = ModelShape {
        layers: 94,
        grid: None,
        map_layers: Vec::new(),
        bars: Vec::new(),
        order: None,
        arch_items: None,
    };
    assert!(s.jump_to(&m, 93));
    assert!(!s.jump_to(&m, 93));
    let r = arch_node_rect(&s.canvases().arch, 93);
    assert!(
        r.y - s.arch_scroll_px >= s.canvases().arch.y,
        "scrolled to the found layer"
    );
}

#[test]
fn collapsed_blocks_are_hit_as_their_first_layer_and_open_on_click() {
    let mut s = ViewState::new(0, [1400.0, 900.0]);
    let m = ModelShape {
        layers: 10,
        grid: None,
        map_layers: Vec::new(),
        bars: Vec::new(),
        order: None,
        arch_items: Some(vec![
            ArchItem::layer(0),
            ArchItem {
                layers: 1..4,
                block: Some(0),
            },
            ArchItem {
                layers: 4..10,
                block: Some(1),
            },
        ]),
    };
    assert_eq!(m.arch_count(), 3);
    assert_eq!((m.item_of(0), m.item_of(3), m.item_of(9)), (0, 1, 2));
    assert_eq!(
        (m.block_of(0), m.block_of(2), m.block_of(3)),
        (None, Some(1), None)
    );
    let block = arch_node_rect(&s.canvases().arch, 2);
    assert_eq!(s.hit(&m, block.center()), Hover::Node(4));
    // A click opens the block in place; the selection stays.
    let outcome = s.on_click(&m, block.center(), ClickInfo::default());
    assert_eq!(outcome, ClickOutcome::default());
    assert_eq!(
        (
            s.selected,
            s.open_blocks.iter().copied().collect::<Vec<_>>()
        ),
        (0, vec![1])
    );
    let past = arch_node_rect(&s.canvases().arch, 3);
    assert_eq!(s.hit(&m, past.center()), Hover::Nothing, "only 3 nodes");
    s.on_key(&m, Key::ToggleCollapse);
    assert!(s.collapsed);
}

#[test]
fn blocks_open_in_place_close_from_inside_and_open_for_a_search_hit() {
    use crate::ui::blocks::tests::layer;
    use crate::ui::levels::LevelTree;
    // Two stages of three two-layer blocks: `stageS/blockB/{conv,relu}`.
    let mut layers = Vec::new();
    for st in 0..2 {
        for b in 0..3 {
            for op in ["conv", "relu"] {
                let p: Vec<usize> = layers.len().checked_sub(1).into_iter().collect();
                layers.push(layer(&format!("stage{st}/block{b}/{op}"), "Conv", &p));
            }
        }
    }
    let levels = LevelTree::of(&layers);
    let mut s = ViewState::new(0, [1400.0, 900.0]);
    s.on_key(&model(None, &[]), Key::ToggleCollapse);
    let shape = |s: &ViewState| ModelShape {
        layers: layers.len(),
        grid: None,
        map_layers: Vec::new(),
        bars: Vec::new(),
        order: None,
        arch_items: Some(levels.items(&s.open_blocks)),
    };
    assert_eq!(shape(&s).arch_count(), 2, "the two stages");
    // Click stage1, then its block 2: six nodes, the last two the layers 10 and 11.
    let arch = s.canvases().arch;
    let at = |i| arch_node_rect(&arch, i).center();
    s.on_click(&shape(&s), at(1), ClickInfo::default());
    assert_eq!(shape(&s).arch_count(), 4);
    s.on_click(&shape(&s), at(3), ClickInfo::default());
    let m = shape(&s);
    assert_eq!(m.arch_count(), 5);
    assert_eq!(m.first_layer(4), 11);
    // U with layer 11 hovered closes block 2, then stage 1; nothing more to close.
    s.on_cursor(&m, at(4));
    assert_eq!(s.hover, Hover::Node(11));
    assert!(s.close_block(&levels).is_some());
    assert_eq!(shape(&s).arch_count(), 4);
    s.hover = Hover::Node(11);
    assert!(s.close_block(&levels).is_some());
    assert_eq!(shape(&s).arch_count(), 2);
    s.hover = Hover::Node(11);
    assert_eq!(s.close_block(&levels), None);
    // A search hit inside closed blocks opens them.
    s.reveal(&levels, 9);
    let m = shape(&s);
    assert_eq!(m.arch_count(), 2 - 1 + 3 - 1 + 2);
    assert_eq!(m.first_layer(m.item_of(9)), 9);
}

#[test]
fn scrolling_is_bounded_by_content() {
    let mut s = ViewState::new(0, [1400.0, 900.0]);
    let grid = TileGrid::new(&s.tile_area(), 2000, [7, 7], 24.0);
    let m = model(Some(&grid), &[0]);
    let p = s.tile_area().center();
    s.on_scroll(&m, p, 1e9);
    assert_eq!(s.details_scroll_px, grid.height() - s.tile_area().h);
    s.on_scroll(&m, p, -1e9);
    assert_eq!(s.details_scroll_px, 0.0);
}

#[test]
fn zooming_the_architecture_out_fits_more_nodes_and_keeps_hits_right() {
    let mut s = ViewState::new(0, [1400.0, 900.0]);
    let m = ModelShape {
        layers: 300,
        grid: None,
        map_layers: Vec::new(),
        bars: Vec::new(),
        order: None,
        arch_items: None,
    };
    // Scrolled to row 5 at full size (nodes 35..41 at the top).
    s.on_scroll(&m, s.canvases().arch.center(), 5.0 * ROW_PITCH_PX);
    assert_eq!(s.arch_scroll_px, 5.0 * ROW_PITCH_PX);
    s.on_key(&m, Key::ArchZoomOut);
    s.on_key(&m, Key::ArchZoomOut);
    s.on_key(&m, Key::ArchZoomOut);
    let grid = s.arch_grid();
    assert!((s.arch_zoom - 0.512).abs() < 1e-3, "{}", s.arch_zoom);
    assert_eq!(grid.per_row, 14);
    assert_eq!(grid.node_px, 33.0);
    // The row holding node 35 is now at the top.
    assert_eq!(s.arch_scroll_px, grid.row(35) as f32 * grid.row_pitch_px);
    // Hit testing follows the zoom: every node's centre hits that node.
    for i in [35usize, 40, 50, 60] {
        let mut c = grid.node_rect(i).center();
        c[1] -= s.arch_scroll_px;
        if s.canvases().arch.contains(c) {
            assert_eq!(s.hit(&m, c), Hover::Node(i), "node {i}");
        }
    }
    // Clamped at both ends; back to the paper's layout at 1.
    for _ in 0..20 {
        s.on_key(&m, Key::ArchZoomOut);
    }
    assert_eq!(s.arch_zoom, ARCH_ZOOM_RANGE.0);
    assert_eq!(s.arch_grid().per_row, 28);
    for _ in 0..20 {
        s.on_key(&m, Key::ArchZoomIn);
    }
    assert_eq!(s.arch_zoom, 1.0);
    assert_eq!(
        s.arch_grid().node_rect(8),
        arch_node_rect(&s.canvases().arch, 8)
    );
}
