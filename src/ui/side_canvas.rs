//! The side canvas: the input picture (or a hovered class's Grad-CAM over it), the selected
//! layer, a hovered filter enlarged with its rank and its dataset examples, the top classes
//! (or what the output is when it is not a class vector) and the notice. Part of the scene
//! builder ([`super::scene::build_scene`]); pure.

use super::ViewModel;
use super::frame::SceneInputs;
use super::layout::Rect;
use super::palette::{ACCENT, DIM, PANEL, TEXT};
use super::state::Hover;
use crate::render::{Scene, ShapeInstance, TextItem, TileInstance};

/// Horizontal probability bars with class names, percent scale.
fn bars(vm: &ViewModel, classes: &[(usize, f32)], area: Rect, scene: &mut Scene) {
    let row = 24.0f32.min(area.h / classes.len().max(1) as f32);
    let label_w = (area.w * 0.38).min(220.0);
    let bar_w = area.w - label_w - 60.0;
    for (i, &(class, p)) in classes.iter().enumerate() {
        let y = area.y + i as f32 * row;
        scene.text.push(
            TextItem::new(
                vm.label(class),
                [area.x + label_w - 8.0, y + row / 2.0],
                12.0,
                TEXT,
            )
            .anchored([1.0, 0.5])
            .with_max_width(label_w),
        );
        scene.shapes.push(ShapeInstance::fill_rect(
            [area.x + label_w, y + 3.0, bar_w, row - 6.0],
            PANEL,
        ));
        scene.shapes.push(ShapeInstance::fill_rect(
            [
                area.x + label_w,
                y + 3.0,
                bar_w * p.clamp(0.0, 1.0),
                row - 6.0,
            ],
            [0.30, 0.55, 0.90, 1.0],
        ));
        scene.text.push(
            TextItem::new(
                format!("{:.1}%", p * 100.0),
                [area.x + label_w + bar_w + 6.0, y + row / 2.0],
                12.0,
                DIM,
            )
            .anchored([0.0, 0.5]),
        );
    }
}

pub(super) fn side(inp: &SceneInputs, scene: &mut Scene) {
    let (vm, state) = (inp.vm, inp.state);
    let s = state.canvases().side;
    let margin = 14.0;
    // Input picture and enlarged tile share what the texts and the top-5 bars leave.
    let w = s.w - 2.0 * margin;
    // A hovered filter's dataset examples take their share of the height first.
    let top_k_h = match (state.hover, &vm.dataset) {
        (Hover::Tile(k), Some(d)) => d
            .layer(state.selected)
            .and_then(|l| l.top.get(k))
            .map_or(0.0, |top| super::dataset::top_k_height(top.len(), w) + 12.0),
        _ => 0.0,
    };
    let pic_w = w.min(((s.h - 330.0 - top_k_h) / 2.0).max(64.0));
    let mut y = s.y + 12.0;
    scene
        .text
        .push(TextItem::new("Input", [s.x + margin, y], 14.0, TEXT));
    y += 22.0;
    // With a class hovered in a chart, its Grad-CAM over the input takes the input's place.
    let hovering_class = super::charts::hovered_class(vm, state).is_some();
    let (pic, caption, colour) = match inp.cam {
        Some((cam, caption)) if hovering_class => (Some(cam), caption.to_string(), ACCENT),
        _ => (inp.picture, vm.input_label.clone(), DIM),
    };
    if let Some(pic) = pic {
        let h = pic_w * pic.size_px[1] as f32 / pic.size_px[0].max(1) as f32;
        scene
            .tiles
            .push(TileInstance::picture([s.x + margin, y, pic_w, h], pic));
        y += h + 6.0;
    }
    scene
        .text
        .push(TextItem::new(caption, [s.x + margin, y], 11.0, colour).with_max_width(w));
    y += 24.0;
    if let Some(layer) = vm.layers.get(state.selected) {
        scene.text.push(
            TextItem::new(
                format!("Layer: {}", layer.name),
                [s.x + margin, y],
                13.0,
                TEXT,
            )
            .with_max_width(w),
        );
        y += 40.0;
    }
    if let (Some(example), Some(class)) = (inp.example, super::charts::hovered_class(vm, state)) {
        scene.text.push(
            TextItem::new(
                format!("example of {}", vm.label(class)),
                [s.x + margin, y],
                13.0,
                ACCENT,
            )
            .with_max_width(w),
        );
        y += 20.0;
        let aspect = example.size_px[1] as f32 / example.size_px[0].max(1) as f32;
        let h = pic_w * aspect;
        scene
            .tiles
            .push(TileInstance::picture([s.x + margin, y, pic_w, h], example));
        y += h + 12.0;
    }
    if let (Hover::Tile(k), Some(tiles)) = (state.hover, inp.tiles)
        && let Some((handle, range)) = tiles.tile(k, state.gradient_norm)
    {
        let name = vm
            .layers
            .get(state.selected)
            .map_or("", |l| l.name.as_str());
        let rank = vm.rank_order(state.selected);
        let from_dataset = rank.is_some_and(|(_, dataset)| dataset);
        let mut mark = match inp.annotations.mark(name, k) {
            Some(m) => format!(" · marked {}", m.label()),
            None if inp.suggested_bad.contains(&k) && from_dataset => {
                " · dead on the dataset".into()
            }
            None if inp.suggested_bad.contains(&k) => " · constant on this input".into(),
            None => String::new(),
        };
        if let Some((order, _)) = rank
            && let Some(position) = order.iter().position(|&f| f == k)
        {
            let of = if from_dataset { " by dataset mean" } else { "" };
            mark = format!(" · rank {} of {}{of}{mark}", position + 1, order.len());
        }
        let caption = format!("filter {}{mark}", k + 1);
        // About 7 px per character at 13 px: one line or two.
        let lines = (caption.chars().count() as f32 * 7.0 / w)
            .ceil()
            .clamp(1.0, 2.0);
        scene.text.push(
            TextItem::new(caption, [s.x + margin, y], 13.0, ACCENT)
                .with_max_width(w)
                .clipped([s.x, y, s.w, lines * 18.0]),
        );
        y += 2.0 + lines * 18.0;
        let h = pic_w * tiles.map_hw[0] as f32 / tiles.map_hw[1].max(1) as f32;
        scene.tiles.push(TileInstance::new(
            [s.x + margin, y, pic_w, h],
            handle,
            range,
            tiles.colormap(state.colormap),
        ));
        y += h + 12.0;
    }
    y = super::dataset::draw_hovered_top_k(inp, s.x + margin, y, w, scene);
    if top_k_h > 0.0 {
        y += 12.0;
    }
    if !vm.probabilities.is_empty() {
        scene
            .text
            .push(TextItem::new("Top classes", [s.x + margin, y], 13.0, TEXT));
        y += 20.0;
        let area = Rect::new(s.x + margin, y, w, 5.0 * 22.0);
        bars(vm, &vm.top_classes(5), area, scene);
        y += area.h + 8.0;
    } else if let Some(summary) = &vm.output_summary {
        scene.text.push(TextItem::new(
            "Output (not class scores)",
            [s.x + margin, y],
            13.0,
            TEXT,
        ));
        y += 20.0;
        scene
            .text
            .push(TextItem::new(summary.clone(), [s.x + margin, y], 12.0, TEXT).with_max_width(w));
        y += 36.0;
    }
    if let Some(notice) = &vm.notice {
        scene
            .text
            .push(TextItem::new(notice.clone(), [s.x + margin, y], 12.0, ACCENT).with_max_width(w));
    }
}
