//! The architecture canvas of the paper: the chain of layer nodes, 7 per row, the output
//! size above each link, skip connections behind the nodes, the stacked annotation bar on conv
//! nodes, collapsed blocks, the layer search box and node tooltips. Part of the scene builder
//! ([`super::scene::build_scene`]); pure like it.

use super::layout::Rect;
use super::levels::ArchItem;
use super::palette::{
    ACCENT, BAD, BG, BLOCK, DIM, GOOD, LINK, PANEL, PANEL_EDGE, SKIP, TEXT, UNMARKED,
};
use super::state::Hover;
use super::state::ViewState;
use super::{LayerInfo, ViewModel};
use crate::annotations::Annotations;
use crate::render::{Scene, ShapeInstance, TextItem};

/// Node fill colour by layer type.
fn node_colour(layer: &LayerInfo) -> [f32; 4] {
    match layer.type_name.as_str() {
        "Conv" | "ConvTranspose" => [0.20, 0.38, 0.70, 1.0],
        "ReLU" | "ReLU6" | "Clip" | "LeakyReLU" | "ELU" | "Sigmoid" | "HardSigmoid"
        | "HardSwish" | "Tanh" => [0.18, 0.50, 0.36, 1.0],
        "MaxPool" | "AvgPool" | "GlobalAvgPool" | "GlobalMaxPool" => [0.72, 0.47, 0.16, 1.0],
        "Add" | "Sum" | "Concat" | "Mul" | "Sub" | "Div" | "Split" => [0.47, 0.34, 0.62, 1.0],
        "Linear" | "MatMul" => [0.66, 0.26, 0.32, 1.0],
        "Softmax" => [0.66, 0.26, 0.52, 1.0],
        _ => [0.35, 0.37, 0.41, 1.0],
    }
}

/// Draws the architecture canvas: title, the chain of nodes (one per layer, or per block when
/// collapsed) with output sizes on the links, skip connections, annotation bars, the search
/// box and the hovered node's tooltip.
pub(super) fn architecture(
    vm: &ViewModel,
    state: &ViewState,
    annotations: &Annotations,
    scene: &mut Scene,
) {
    let arch = state.canvases().arch;
    let clip = arch.xywh();
    scene.overlay.push(ShapeInstance::fill_rect(clip, PANEL));
    scene.overlay.push(ShapeInstance::line(
        [arch.x, arch.bottom()],
        [arch.right(), arch.bottom()],
        1.0,
        PANEL_EDGE,
    ));
    let mut title = format!("{} — {} layers", vm.model_name, vm.layers.len());
    if state.collapsed && !vm.levels.blocks.is_empty() {
        title.push_str(" · in blocks: click opens, U closes, G all layers");
    }
    // The title takes what it needs (about 0.55 em per character); the device label gets the
    // rest of the bar and is cut on the left rather than drawn over the title.
    let title_w = 0.55 * 16.0 * title.chars().count() as f32 + 24.0;
    scene
        .text
        .push(TextItem::new(title, [arch.x + 12.0, arch.y + 9.0], 16.0, TEXT).clipped(clip));
    let device_clip = [
        arch.x + title_w,
        arch.y,
        (arch.w - title_w).max(0.0),
        super::layout::TITLE_PX,
    ];
    scene.text.push(
        TextItem::new(
            format!("device: {}", vm.device),
            [arch.right() - 12.0, arch.y + 11.0],
            12.0,
            DIM,
        )
        .anchored([1.0, 0.0])
        .clipped(device_clip),
    );
    let grid = state.arch_grid();
    // Below this node size the output sizes and type names are left out (tooltips have them).
    let labelled = grid.node_px >= 40.0;
    let scrolled = |i: usize| {
        let mut r = grid.node_rect(i);
        r.y -= state.arch_scroll_px;
        r
    };
    let body = Rect::new(
        arch.x,
        arch.y + super::layout::TITLE_PX,
        arch.w,
        arch.h - super::layout::TITLE_PX,
    );
    let body_clip = body.xywh();
    // Only whole nodes are drawn (the canvas scrolls by rows), so nothing spills out of it.
    let visible =
        |r: &Rect| r.y >= body.y && r.bottom() + 20.0 * grid.node_px / 64.0 <= body.bottom();
    // Node squares go on top of every link, so skip connections pass behind nodes.
    let mut nodes = Vec::new();
    // One node per layer, or per closed block of layers when collapsed.
    let items: Vec<ArchItem> = if state.collapsed {
        vm.levels.items(&state.open_blocks)
    } else {
        (0..vm.layers.len()).map(ArchItem::layer).collect()
    };
    let mut item_of = vec![0usize; vm.layers.len()];
    for (i, item) in items.iter().enumerate() {
        for l in item.layers.clone() {
            item_of[l] = i;
        }
    }
    for (i, item) in items.iter().enumerate() {
        let range = &item.layers;
        let r = scrolled(i);
        let Some(layer) = vm.layers.get(range.end.saturating_sub(1)) else {
            continue;
        };
        if !visible(&r) {
            continue;
        }
        // The chain link to the next node, with the output size above it.
        if i + 1 < items.len() && visible(&scrolled(i + 1)) {
            let n = scrolled(i + 1);
            let label = layer.size_label();
            if !grid.ends_row(i) {
                let y = r.center()[1];
                scene
                    .overlay
                    .push(ShapeInstance::line([r.right(), y], [n.x, y], 1.5, LINK));

                let mid = (r.right() + n.x) / 2.0;
                // Above the link when it fits in the gap between the nodes (shrunk, never
                // wrapped); else above the nodes' top edge, where the whole pitch is free.
                let chars = label.chars().count().max(1) as f32;
                // The gap between the nodes plus a little overlap onto the link's ends, but never
                // onto the nodes of a zoomed-out chain (node sides under 64 px).
                let slack = if grid.node_px >= 64.0 { 6.0 } else { -4.0 };
                let gap = n.x - r.right() + slack;
                let font = (gap / (0.62 * chars)).min(10.5);
                let (pos, font) = if font >= 8.5 {
                    ([mid, y - 6.0], font)
                } else {
                    let pitch = n.center()[0] - r.center()[0];
                    ([mid, r.y - 3.0], (pitch / (0.62 * chars)).clamp(7.0, 10.0))
                };
                if labelled {
                    scene.text.push(
                        TextItem::new(label, pos, font, DIM)
                            .anchored([0.5, 1.0])
                            .clipped(body_clip),
                    );
                }
            } else {
                // Wrap to the next row: down, across, down.
                let mid_y = r.bottom() + (n.y - r.bottom()) * 0.45;
                scene.overlay.push(ShapeInstance::line(
                    [r.center()[0], r.bottom()],
                    [r.center()[0], mid_y],
                    1.5,
                    LINK,
                ));
                scene.overlay.push(ShapeInstance::line(
                    [r.center()[0], mid_y],
                    [n.center()[0], mid_y],
                    1.5,
                    LINK,
                ));
                scene.overlay.push(ShapeInstance::line(
                    [n.center()[0], mid_y],
                    [n.center()[0], n.y],
                    1.5,
                    LINK,
                ));
                // Left of the down-stroke: the row's last node is at the canvas's right edge.
                if labelled {
                    scene.text.push(
                        TextItem::new(label, [r.center()[0] - 6.0, r.bottom() + 2.0], 10.5, DIM)
                            .anchored([1.0, 0.0])
                            .clipped(body_clip),
                    );
                }
            }
        }
        // Skip connections: inputs that do not come from the previous node.
        let mut sources: Vec<usize> = range
            .clone()
            .flat_map(|l| vm.layers[l].producers.iter().map(|&p| item_of[p]))
            .filter(|&j| j + 1 != i && j != i && visible(&scrolled(j)))
            .collect();
        sources.sort_unstable();
        sources.dedup();
        for j in sources {
            let from = scrolled(j);
            scene.overlay.push(ShapeInstance::line(
                [from.center()[0] + 8.0, from.bottom()],
                [r.center()[0] - 8.0, r.y],
                1.0,
                SKIP,
            ));
        }
        let selected = range.contains(&state.selected);
        let hovered = matches!(state.hover, Hover::Node(h) if range.contains(&h));
        let block = item.block.is_some();
        let mut fill = if block { BLOCK } else { node_colour(layer) };
        if hovered {
            fill = [fill[0] * 1.25, fill[1] * 1.25, fill[2] * 1.25, 1.0];
        }
        nodes.push(ShapeInstance::fill_rect(r.xywh(), fill).rounded(6.0));
        if selected || hovered {
            let (w, col) = if selected { (3.0, ACCENT) } else { (1.5, TEXT) };
            nodes.push(ShapeInstance::outline_rect(r.xywh(), w, col).rounded(6.0));
        }
        // The type name (or block name and size) shrinks to fit rather than wrapping.
        let text = if block {
            format!("{}\n×{}", block_name(vm, item), range.len())
        } else {
            layer.type_name.clone()
        };
        let longest = text
            .lines()
            .map(|l| l.chars().count())
            .max()
            .unwrap_or(1)
            .max(1) as f32;
        let font = ((grid.node_px - 8.0) / (0.62 * longest)).clamp(7.5, 11.5);
        if labelled {
            scene.text.push(
                TextItem::new(text, r.center(), font, TEXT)
                    .anchored([0.5, 0.5])
                    .with_max_width(grid.node_px - 2.0)
                    .clipped(body_clip),
            );
        }
        // The stacked annotation bar over the node's conv layers.
        let [mut good, mut bad, mut channels] = [0usize; 3];
        for l in range.clone() {
            let layer = &vm.layers[l];
            if layer.is_conv
                && let Some((c, _, _)) = layer.map_dims()
            {
                let (g, b) = annotations.counts(&layer.name);
                (good, bad, channels) = (good + g, bad + b, channels + c);
            }
        }
        if channels > 0 {
            annotation_bar(
                &r,
                [good, bad, channels.saturating_sub(good + bad)],
                &mut nodes,
            );
        }
    }
    scene.overlay.extend(nodes);
    if let Some(query) = &state.search {
        let matches = vm
            .layers
            .iter()
            .filter(|l| {
                !query.trim().is_empty()
                    && l.name.to_lowercase().contains(&query.trim().to_lowercase())
            })
            .count();
        let box_r = [arch.x + arch.w * 0.35, arch.y + 6.0, arch.w * 0.4, 24.0];
        scene
            .overlay
            .push(ShapeInstance::fill_rect(box_r, BG).rounded(4.0));
        scene
            .overlay
            .push(ShapeInstance::outline_rect(box_r, 1.5, ACCENT).rounded(4.0));
        scene.text.push(
            TextItem::new(
                format!("/ {query}▏  {matches} matches · Tab next · Enter done"),
                [box_r[0] + 8.0, box_r[1] + 12.0],
                12.5,
                TEXT,
            )
            .anchored([0.0, 0.5])
            .clipped(box_r),
        );
    }
    if let Hover::Node(i) = state.hover
        && let Some(layer) = vm.layers.get(i)
        && let Some(&at) = item_of.get(i)
        && let Some(item) = items.get(at).filter(|item| item.block.is_some())
    {
        let r = scrolled(at);
        let last = &vm.layers[item.layers.end - 1];
        let mut tip = format!(
            "{}: {} layers\n{} … {}\nclick opens it in place",
            block_name(vm, item),
            item.layers.len(),
            layer.name,
            last.name
        );
        if state
            .open_blocks
            .iter()
            .any(|&b| vm.levels.blocks[b].layers.contains(&i))
        {
            tip.push_str(" · U closes the block around it");
        }
        scene
            .text
            .push(TextItem::new(tip, [r.x, r.bottom() + 16.0], 12.0, ACCENT).clipped(body_clip));
    } else if let Hover::Node(i) = state.hover
        && let Some(layer) = vm.layers.get(i)
    {
        let r = scrolled(item_of.get(i).copied().unwrap_or(i));
        let mut tip = format!(
            "{}\n{} · {}",
            layer.name,
            layer.type_name,
            layer.size_label()
        );
        // Inside open blocks: where it sits, and how to close them.
        if state.collapsed {
            let path: Vec<&str> = (vm.levels.path_to(i).into_iter())
                .map(|b| vm.levels.blocks[b].name.as_str())
                .collect();
            if !path.is_empty() {
                tip.push_str(&format!("\nin {} · U closes", path.join(" › ")));
            }
        }
        if layer.is_conv
            && let Some((c, _, _)) = layer.map_dims()
        {
            let (good, bad) = annotations.counts(&layer.name);
            let none = c.saturating_sub(good + bad);
            tip.push_str(&format!("\ngood {good} · bad {bad} · unmarked {none}"));
        }
        scene
            .text
            .push(TextItem::new(tip, [r.x, r.bottom() + 16.0], 12.0, ACCENT).clipped(body_clip));
    }
}

/// The paper's stacked annotation bar along the bottom of a conv node: blue good, red bad,
/// grey unmarked, widths proportional to the counts `[good, bad, none]`.
fn annotation_bar(node: &Rect, counts: [usize; 3], shapes: &mut Vec<ShapeInstance>) {
    let total = counts.iter().sum::<usize>().max(1) as f32;
    // 5 px high and inset 5 px at full size, scaled down with the node.
    let k = (node.w / 64.0).clamp(0.4, 1.0);
    let bar = Rect::new(
        node.x + 5.0 * k,
        node.bottom() - 10.0 * k,
        node.w - 10.0 * k,
        5.0 * k,
    );
    let mut x = bar.x;
    for (n, colour) in counts.into_iter().zip([GOOD, BAD, UNMARKED]) {
        let w = bar.w * n as f32 / total;
        if w > 0.0 {
            shapes.push(ShapeInstance::fill_rect([x, bar.y, w, bar.h], colour));
        }
        x += w;
    }
}

/// The label of a block node: its block's name.
fn block_name<'a>(vm: &'a ViewModel, item: &ArchItem) -> &'a str {
    (item.block)
        .and_then(|b| vm.levels.blocks.get(b))
        .map_or("block", |b| b.name.as_str())
}
