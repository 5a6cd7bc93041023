//! The details canvas for layers without filter maps, as pure geometry + scene pieces: the
//! softmax "Prob" chart (vertical bars of the classes with p > 0.1, percent axis), the output
//! layer's top-class bars, and a pooling layer's window drawn as a grid of squares with its
//! stride and padding. Bar rectangles double as hover targets (see [`chart_bars`]).

use super::layout::Rect;
use super::state::{Hover, ViewState};
use super::{LayerInfo, PoolInfo, ViewModel};
use crate::render::{Scene, ShapeInstance, TextItem};

const TEXT: [f32; 4] = [0.92, 0.93, 0.95, 1.0];
const DIM: [f32; 4] = [0.62, 0.65, 0.70, 1.0];
const GRID: [f32; 4] = [0.22, 0.24, 0.28, 1.0];
const BAR: [f32; 4] = [0.30, 0.55, 0.90, 1.0];
const BAR_HOVER: [f32; 4] = [0.45, 0.68, 1.0, 1.0];
const ACCENT: [f32; 4] = [1.0, 0.80, 0.25, 1.0];
const SECOND: [f32; 4] = [0.40, 0.75, 1.0, 1.0];
const PAD_FILL: [f32; 4] = [0.16, 0.17, 0.20, 1.0];
const CELL_FILL: [f32; 4] = [0.24, 0.26, 0.31, 1.0];

/// Probability threshold of the Prob chart, as in the paper.
pub const PROB_THRESHOLD: f32 = 0.1;

/// Which chart the selected layer shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Chart {
    /// Softmax layer: vertical bars of the classes with p > 0.1.
    Prob,
    /// The network's last layer: the top classes as horizontal bars.
    Output,
}

/// The chart of the selected layer, if it has one (and probabilities exist).
pub fn chart_of(vm: &ViewModel, layer: usize) -> Option<Chart> {
    let info = vm.layers.get(layer)?;
    if vm.probabilities.is_empty() || info.map_dims().is_some() {
        return None;
    }
    if info.type_name == "Softmax" {
        Some(Chart::Prob)
    } else if layer + 1 == vm.layers.len() {
        Some(Chart::Output)
    } else {
        None
    }
}

/// Classes with `p > threshold`, most probable first (ties by class index).
pub fn classes_above(probabilities: &[f32], threshold: f32) -> Vec<(usize, f32)> {
    let mut v: Vec<(usize, f32)> = probabilities
        .iter()
        .copied()
        .enumerate()
        .filter(|&(_, p)| p > threshold)
        .collect();
    v.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    v
}

/// The classes a chart shows, in drawing order.
pub fn chart_classes(vm: &ViewModel, chart: Chart) -> Vec<(usize, f32)> {
    match chart {
        Chart::Prob => classes_above(&vm.probabilities, PROB_THRESHOLD),
        Chart::Output => vm.top_classes(10),
    }
}

/// Plot area of the Prob chart inside the details area (room for the axis and names).
fn prob_plot(area: &Rect) -> Rect {
    let w = (area.w - 90.0).clamp(0.0, 900.0);
    Rect::new(area.x + 64.0, area.y + 40.0, w, (area.h - 110.0).max(40.0))
}

/// Vertical bars of `n` values in `plot`, left to right; bar height is the value (0..1)
/// times the plot height.
pub fn vertical_bars(plot: &Rect, values: &[f32]) -> Vec<Rect> {
    let n = values.len().max(1) as f32;
    let pitch = (plot.w / n).min(120.0);
    let w = pitch * 0.7;
    values
        .iter()
        .enumerate()
        .map(|(i, &v)| {
            let h = plot.h * v.clamp(0.0, 1.0);
            Rect::new(
                plot.x + i as f32 * pitch + (pitch - w) / 2.0,
                plot.bottom() - h,
                w,
                h,
            )
        })
        .collect()
}

/// Rows of the output chart: `(label rect, bar track rect)` per class.
fn output_rows(area: &Rect, n: usize) -> Vec<(Rect, Rect)> {
    let inner = Rect::new(
        area.x + 12.0,
        area.y + 28.0,
        (area.w - 24.0).min(720.0),
        area.h - 40.0,
    );
    let row = 24.0f32.min(inner.h / n.max(1) as f32);
    let label_w = (inner.w * 0.38).min(220.0);
    let track_w = inner.w - label_w - 60.0;
    (0..n)
        .map(|i| {
            let y = inner.y + i as f32 * row;
            (
                Rect::new(inner.x, y, label_w - 8.0, row),
                Rect::new(inner.x + label_w, y + 3.0, track_w, row - 6.0),
            )
        })
        .collect()
}

/// The class under the pointer in the selected layer's chart, if any.
pub fn hovered_class(vm: &ViewModel, state: &ViewState) -> Option<usize> {
    let Hover::Bar(i) = state.hover else {
        return None;
    };
    let chart = chart_of(vm, state.selected)?;
    chart_classes(vm, chart).get(i).map(|c| c.0)
}

/// Hover targets of the selected layer's chart, in the order of [`chart_classes`].
pub fn chart_bars(vm: &ViewModel, state: &ViewState) -> Vec<Rect> {
    let Some(chart) = chart_of(vm, state.selected) else {
        return Vec::new();
    };
    let classes = chart_classes(vm, chart);
    let area = state.tile_area();
    match chart {
        Chart::Prob => {
            let plot = prob_plot(&area);
            let pitch_rects = vertical_bars(&plot, &vec![1.0; classes.len()]);
            // The whole column is the target, not only the (maybe tiny) bar.
            pitch_rects
        }
        Chart::Output => output_rows(&area, classes.len())
            .into_iter()
            .map(|(label, track)| Rect::new(label.x, label.y, track.right() - label.x, label.h))
            .collect(),
    }
}

/// Draws the chart of the selected layer into the details area.
pub fn draw_chart(vm: &ViewModel, state: &ViewState, chart: Chart, scene: &mut Scene) {
    let area = state.tile_area();
    let classes = chart_classes(vm, chart);
    let hovered = match state.hover {
        Hover::Bar(i) => Some(i),
        _ => None,
    };
    match chart {
        Chart::Prob => {
            scene.text.push(TextItem::new(
                "Prob: classes with p > 0.1, most probable first",
                [area.x + 12.0, area.y + 6.0],
                13.0,
                DIM,
            ));
            let plot = prob_plot(&area);
            // Percent axis with grid lines.
            for pct in [0, 25, 50, 75, 100] {
                let y = plot.bottom() - plot.h * pct as f32 / 100.0;
                scene.shapes.push(ShapeInstance::line(
                    [plot.x, y],
                    [plot.right(), y],
                    1.0,
                    GRID,
                ));
                scene.text.push(
                    TextItem::new(format!("{pct}%"), [plot.x - 8.0, y], 11.0, DIM)
                        .anchored([1.0, 0.5]),
                );
            }
            if classes.is_empty() {
                let top = vm.top_classes(1);
                let msg = match top.first() {
                    Some(&(c, p)) => format!(
                        "no class has p > 0.1 (the most probable is {} at {:.1}%)",
                        vm.label(c),
                        p * 100.0
                    ),
                    None => "no probabilities".into(),
                };
                scene.text.push(TextItem::new(
                    msg,
                    [plot.x + 12.0, plot.y + 12.0],
                    13.0,
                    TEXT,
                ));
                return;
            }
            let values: Vec<f32> = classes.iter().map(|c| c.1).collect();
            let columns = vertical_bars(&plot, &vec![1.0; classes.len()]);
            for (i, (r, &(class, p))) in vertical_bars(&plot, &values)
                .iter()
                .zip(&classes)
                .enumerate()
            {
                let fill = if hovered == Some(i) { BAR_HOVER } else { BAR };
                scene
                    .shapes
                    .push(ShapeInstance::fill_rect([r.x, r.y, r.w, r.h], fill));
                scene.text.push(
                    TextItem::new(
                        format!("{:.1}%", p * 100.0),
                        [r.center()[0], r.y - 4.0],
                        11.0,
                        TEXT,
                    )
                    .anchored([0.5, 1.0]),
                );
                let col = columns[i];
                scene.text.push(
                    TextItem::new(
                        vm.label(class),
                        [col.center()[0], plot.bottom() + 6.0],
                        11.0,
                        TEXT,
                    )
                    .anchored([0.5, 0.0])
                    .with_max_width(col.w / 0.7),
                );
            }
            if let Some(i) = hovered
                && let (Some(&(class, p)), Some(col)) = (classes.get(i), columns.get(i))
            {
                let name = vm.label(class);
                let text = if name == format!("class {class}") {
                    format!("{name} · p = {:.2}%", p * 100.0)
                } else {
                    format!("{name} · class {class} · p = {:.2}%", p * 100.0)
                };
                tooltip(text, [col.right() + 6.0, plot.y + 8.0], scene);
            }
        }
        Chart::Output => {
            scene.text.push(TextItem::new(
                "Output: the 10 most probable classes · hover one for its Grad-CAM over the input",
                [area.x + 12.0, area.y + 4.0],
                13.0,
                DIM,
            ));
            for (i, ((label, track), &(class, p))) in output_rows(&area, classes.len())
                .into_iter()
                .zip(&classes)
                .enumerate()
            {
                scene.text.push(
                    TextItem::new(
                        vm.label(class),
                        [label.right(), label.center()[1]],
                        12.0,
                        TEXT,
                    )
                    .anchored([1.0, 0.5])
                    .with_max_width(label.w),
                );
                scene.shapes.push(ShapeInstance::fill_rect(
                    [track.x, track.y, track.w, track.h],
                    CELL_FILL,
                ));
                let fill = if hovered == Some(i) { BAR_HOVER } else { BAR };
                scene.shapes.push(ShapeInstance::fill_rect(
                    [track.x, track.y, track.w * p.clamp(0.0, 1.0), track.h],
                    fill,
                ));
                scene.text.push(
                    TextItem::new(
                        format!("{:.1}%", p * 100.0),
                        [track.right() + 6.0, track.center()[1]],
                        12.0,
                        DIM,
                    )
                    .anchored([0.0, 0.5]),
                );
                if hovered == Some(i) {
                    let text = format!("class {class} · p = {:.3}%", p * 100.0);
                    let w = tooltip_width(&text);
                    // Inside the track's right end: over shapes only, never over other text.
                    let x = (track.right() - w - 4.0).max(track.x);
                    tooltip(text, [x, track.center()[1] - 12.0], scene);
                }
            }
        }
    }
}

fn tooltip_width(text: &str) -> f32 {
    7.0 * text.chars().count() as f32 + 16.0
}

fn tooltip(text: String, pos: [f32; 2], scene: &mut Scene) {
    let w = tooltip_width(&text);
    scene.overlay.push(
        ShapeInstance::fill_rect([pos[0], pos[1], w, 24.0], [0.05, 0.05, 0.06, 0.95]).rounded(4.0),
    );
    scene
        .overlay
        .push(ShapeInstance::outline_rect([pos[0], pos[1], w, 24.0], 1.0, ACCENT).rounded(4.0));
    scene
        .text
        .push(TextItem::new(text, [pos[0] + 8.0, pos[1] + 12.0], 12.0, TEXT).anchored([0.0, 0.5]));
}

/// A weight histogram in `plot`: one bar per bin, heights relative to the fullest bin, the
/// value range under the axis.
pub fn draw_histogram(h: &crate::viz::histogram::Histogram, plot: &Rect, scene: &mut Scene) {
    if plot.w < 40.0 || plot.h < 40.0 {
        return;
    }
    scene.text.push(TextItem::new(
        format!("weight histogram ({} values)", h.total()),
        [plot.x, plot.y - 26.0],
        13.0,
        DIM,
    ));
    let peak = h.counts.iter().copied().max().unwrap_or(1).max(1) as f32;
    let bin_w = plot.w / h.counts.len().max(1) as f32;
    for (i, &c) in h.counts.iter().enumerate() {
        let bar_h = plot.h * c as f32 / peak;
        scene.shapes.push(ShapeInstance::fill_rect(
            [
                plot.x + i as f32 * bin_w,
                plot.bottom() - bar_h,
                (bin_w - 1.0).max(1.0),
                bar_h,
            ],
            BAR,
        ));
    }
    scene.shapes.push(ShapeInstance::line(
        [plot.x, plot.bottom()],
        [plot.right(), plot.bottom()],
        1.0,
        GRID,
    ));
    for (value, x, anchor) in [(h.range[0], plot.x, 0.0), (h.range[1], plot.right(), 1.0)] {
        scene.text.push(
            TextItem::new(format!("{value:.3}"), [x, plot.bottom() + 6.0], 11.0, DIM)
                .anchored([anchor, 0.0]),
        );
    }
}

/// Grid cells of the pooling diagram: how many input cells (including padding) to show on
/// one axis: the first window, two more strides, capped.
pub fn pool_diagram_cells(kernel: usize, stride: usize, pad_before: usize) -> usize {
    (pad_before + kernel + 2 * stride).clamp(1, 16)
}

/// A pooling layer's window over its input, as the paper draws it: input cells (padding
/// darker), the first window position (yellow) and the next one along the width (blue).
pub fn draw_pool_window(layer: &LayerInfo, pool: &PoolInfo, area: &Rect, scene: &mut Scene) {
    let [kh, kw] = pool.kernel;
    let [sh, sw] = pool.strides;
    let [top, left, bottom, right] = pool.pads;
    let rows = pool_diagram_cells(kh, sh, top);
    let cols = pool_diagram_cells(kw, sw, left);
    let cell = ((area.h - 150.0) / rows as f32)
        .min((area.w * 0.5) / cols as f32)
        .clamp(10.0, 36.0);
    let origin = [area.x + 24.0, area.y + 48.0];
    scene.text.push(TextItem::new(
        format!(
            "{} pooling window over its input (one channel; every channel alike)",
            pool.kind
        ),
        [area.x + 12.0, area.y + 8.0],
        13.0,
        DIM,
    ));
    for r in 0..rows {
        for c in 0..cols {
            let padding = r < top || c < left;
            let x = origin[0] + c as f32 * cell;
            let y = origin[1] + r as f32 * cell;
            let fill = if padding { PAD_FILL } else { CELL_FILL };
            scene.shapes.push(ShapeInstance::fill_rect(
                [x + 1.0, y + 1.0, cell - 2.0, cell - 2.0],
                fill,
            ));
        }
    }
    let window = |dx_cells: usize, colour: [f32; 4], width: f32, scene: &mut Scene| {
        let (h, w) = (
            ((kh - 1) * pool.dilations[0] + 1) as f32,
            ((kw - 1) * pool.dilations[1] + 1) as f32,
        );
        let x = origin[0] + dx_cells as f32 * cell;
        scene.shapes.push(ShapeInstance::outline_rect(
            [x, origin[1], w * cell, h * cell],
            width,
            colour,
        ));
    };
    window(0, ACCENT, 3.0, scene);
    if sw < cols {
        window(sw, SECOND, 2.0, scene);
    }
    let text_x = origin[0] + cols as f32 * cell + 32.0;
    let (c, h, w) = layer.map_dims().unwrap_or((0, 0, 0));
    let lines = [
        format!("kernel {kh}×{kw}"),
        format!("stride {sh}×{sw}  (blue: the next window along the width)"),
        format!("padding top {top}, left {left}, bottom {bottom}, right {right}  (dark cells)"),
        format!("dilation {}×{}", pool.dilations[0], pool.dilations[1]),
        pool.extra.clone(),
        format!(
            "input {}×{}×{} → output {c}×{h}×{w}",
            pool.input_chw[0], pool.input_chw[1], pool.input_chw[2]
        ),
    ];
    for (i, line) in lines.iter().filter(|l| !l.is_empty()).enumerate() {
        scene.text.push(TextItem::new(
            line.clone(),
            [text_x, origin[1] + i as f32 * 22.0],
            13.0,
            if i == 0 { TEXT } else { DIM },
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prob_chart_keeps_classes_above_a_tenth_sorted() {
        let p = [0.05, 0.3, 0.1, 0.45, 0.1000001, 0.0];
        assert_eq!(
            classes_above(&p, PROB_THRESHOLD),
            vec![(3, 0.45), (1, 0.3), (4, 0.1000001)]
        );
        assert!(
            classes_above(&[0.1; 10], PROB_THRESHOLD).is_empty(),
            "p = 0.1 is not > 0.1"
        );
    }

    #[test]
    fn vertical_bars_stand_on_the_axis_with_height_in_percent() {
        let plot = Rect::new(100.0, 50.0, 300.0, 200.0);
        let bars = vertical_bars(&plot, &[1.0, 0.5, 0.25]);
        assert_eq!(bars.len(), 3);
        for b in &bars {
            assert_eq!(b.bottom(), plot.bottom());
        }
        assert_eq!(bars[0].h, 200.0);
        assert_eq!(bars[1].h, 100.0);
        assert!(bars[0].right() < bars[1].x && bars[1].right() < bars[2].x);
        assert!(bars[2].right() <= plot.right());
    }

    #[test]
    fn pool_diagram_shows_two_strides_past_the_first_window() {
        assert_eq!(pool_diagram_cells(3, 2, 0), 7);
        assert_eq!(pool_diagram_cells(3, 2, 1), 8);
        assert_eq!(pool_diagram_cells(11, 4, 2), 16, "capped");
    }
}
