//! The architecture half of `convlens bench`: how long a model file takes to reach the
//! viewer's first frame, and frames of the architecture canvas while it scrolls — every
//! layer a node (the worst case) and in blocks ([`crate::ui::levels`]). Offscreen, on the
//! renderer's device; every frame is built, prepared, drawn and waited for like the window's.

use std::time::Instant;

use serde::Serialize;

use crate::annotations::Annotations;
use crate::bench::{Result, median, round};
use crate::model::Graph;
use crate::render::{GpuContext, OffscreenTarget, Renderer};
use crate::ui::ViewModel;
use crate::ui::scene::{SceneInputs, build_scene, model_shape};
use crate::ui::state::ViewState;

/// Scroll steps timed per mode (each one row of nodes, bouncing at the ends).
pub const ARCH_FRAMES: usize = 60;

/// What [`measure`] found.
#[derive(Debug, Clone, Serialize)]
pub struct ArchFigures {
    /// Layers in the model (the architecture's nodes with every layer shown).
    pub arch_layers: usize,
    /// Nodes of the top level in blocks, and how many levels there are below it.
    pub arch_top_nodes: usize,
    pub arch_levels: usize,
    /// Model file read and parsed (the CLI's load, when it was timed) + view model + a new
    /// renderer + the first frame, GPU done: what the viewer does before its first frame
    /// (the forward pass runs after it, in the worker).
    pub open_to_first_frame_ms: Option<f64>,
    /// The view-model + renderer + first-frame part of that.
    pub first_frame_ms: f64,
    /// One frame while the architecture scrolls by a row, every layer a node (median of
    /// [`ARCH_FRAMES`]).
    pub arch_frame_ms: f64,
    /// The same with the architecture in blocks, top level (median of [`ARCH_FRAMES`]).
    pub arch_frame_blocks_ms: f64,
}

/// Times the first frame and the scrolling frames of `graph`'s architecture at `viewport`;
/// `load_s` is how long loading the model took, when the caller timed it.
pub fn measure(
    ctx: &GpuContext,
    graph: &Graph,
    load_s: Option<f64>,
    viewport: [u32; 2],
    progress: &mut dyn FnMut(&str),
) -> Result<ArchFigures> {
    progress(&format!(
        "architecture: first frame and {ARCH_FRAMES} scrolling frames of {} layers",
        graph.nodes.len()
    ));
    let window_px = [viewport[0] as f32, viewport[1] as f32];
    let target = OffscreenTarget::new(
        ctx,
        viewport[0],
        viewport[1],
        OffscreenTarget::DEFAULT_FORMAT,
    )?;
    let annotations = Annotations::new(graph.name.clone(), "bench");

    let started = Instant::now();
    let vm = ViewModel::from_graph(graph, Vec::new(), "bench".into());
    let mut state = ViewState::new(0, window_px);
    state.collapsed = vm.layers.len() > crate::app::AUTO_COLLAPSE_LAYERS;
    let mut renderer = Renderer::new(ctx, OffscreenTarget::DEFAULT_FORMAT);
    let frame = |renderer: &mut Renderer, state: &ViewState| -> Result<()> {
        let scene = build_scene(&SceneInputs {
            vm: &vm,
            state,
            tiles: None,
            picture: None,
            frame_ms: None,
            annotations: &annotations,
            suggested_bad: &[],
            cam: None,
            example: None,
            dataset: None,
        });
        renderer.draw_to_view(ctx, &scene, target.view(), viewport)?;
        ctx.wait_idle()?;
        Ok(())
    };
    frame(&mut renderer, &state)?;
    let first_frame_s = started.elapsed().as_secs_f64();

    let mut scrolling = |collapsed: bool| -> Result<f64> {
        let mut state = ViewState::new(0, window_px);
        state.collapsed = collapsed;
        let arch = state.canvases().arch;
        let inside = [arch.x + 10.0, arch.bottom() - 10.0];
        let mut down = true;
        let mut samples = Vec::with_capacity(ARCH_FRAMES);
        // One untimed frame first: glyphs of the new labels, buffer growth.
        for i in 0..=ARCH_FRAMES {
            let t = Instant::now();
            // What the window does per wheel event: the model's shape for hit testing, the
            // scroll, then a frame.
            let shape = model_shape(&vm, &state);
            let before = state.arch_scroll_px;
            let pitch = state.arch_grid().row_pitch_px;
            state.on_scroll(&shape, inside, if down { pitch } else { -pitch });
            if state.arch_scroll_px == before {
                down = !down;
            }
            frame(&mut renderer, &state)?;
            if i > 0 {
                samples.push(t.elapsed().as_secs_f64());
            }
        }
        Ok(median(&mut samples))
    };
    let flat_s = scrolling(false)?;
    let blocks_s = scrolling(true)?;
    let top = vm.levels.items(&Default::default()).len();
    Ok(ArchFigures {
        arch_layers: vm.layers.len(),
        arch_top_nodes: top,
        arch_levels: vm.levels.depth(),
        open_to_first_frame_ms: load_s.map(|s| round((s + first_frame_s) * 1e3, 1)),
        first_frame_ms: round(first_frame_s * 1e3, 1),
        arch_frame_ms: round(flat_s * 1e3, 3),
        arch_frame_blocks_ms: round(blocks_s * 1e3, 3),
    })
}

impl ArchFigures {
    /// The human-readable lines of these figures.
    pub fn table(&self) -> String {
        let mut out = format!(
            "architecture: {} layers; in blocks {} top-level nodes, {} levels of blocks\n",
            self.arch_layers, self.arch_top_nodes, self.arch_levels
        );
        if let Some(ms) = self.open_to_first_frame_ms {
            out.push_str(&format!(
                "open → first frame   {ms:>9.1} ms (view model + renderer + frame: {:.1} ms)\n",
                self.first_frame_ms
            ));
        } else {
            out.push_str(&format!(
                "first frame          {:>9.1} ms (view model + renderer + frame)\n",
                self.first_frame_ms
            ));
        }
        out.push_str(&format!(
            "arch frame, layers   {:>9.3} ms (scrolling, median of {ARCH_FRAMES})\n\
             arch frame, blocks   {:>9.3} ms\n",
            self.arch_frame_ms, self.arch_frame_blocks_ms
        ));
        out
    }
}
