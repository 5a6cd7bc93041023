//! The viewer application: headless screenshots of any view state, and the winit window
//! whose event handler feeds the pure UI state machine, runs forward passes on a worker
//! thread (the newest input wins) and redraws through the renderer; with the `webcam`
//! feature, a capture thread ([`webcam`]) feeds that worker live camera frames.

pub mod camera_choice;
pub mod compute;
pub mod dataset;
pub mod examples;
pub mod fallback;
mod keymap;
mod live;
pub mod scan_source;
pub mod session;
mod upload;
#[cfg(feature = "webcam")]
pub mod webcam;
mod window;
mod worker;

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use crate::engine::{ComputeDevice, DeviceChoice};
use crate::render::{GpuContext, OffscreenTarget, Renderer};
use crate::ui::scene::{SceneInputs, build_scene, selected_grid};
use crate::ui::state::{Hover, ViewState};
pub use session::Session;
pub use window::run_window;

/// What `view --webcam` says in a build without the `webcam` cargo feature.
pub const NO_WEBCAM_SUPPORT: &str = "this convlens was built without webcam support; rebuild with `cargo run --features webcam -- view --webcam`";

/// How the viewer starts.
#[derive(Debug, Clone)]
pub struct ViewerOptions {
    /// Input file or folder (None = the embedded photo).
    pub input: Option<PathBuf>,
    /// Live input from a camera (`--webcam N|NAME`, `--webcam-size`); the window only, and
    /// only in a build with the `webcam` feature (else the notice says so).
    pub webcam: Option<camera_choice::WebcamRequest>,
    /// Layer to select first (by name); default: the first conv layer.
    pub layer: Option<String>,
    /// Filter to show as hovered (from 1), for headless screenshots.
    pub hover: Option<usize>,
    /// Method shown in the details canvas at start.
    pub method: crate::format::Method,
    /// Tiles, Grad-CAM or parameters at start.
    pub panel: crate::ui::state::Panel,
    /// Folder of example images per class (`--examples`).
    pub examples: Option<PathBuf>,
    /// A dataset scan of the model to show beside it (`--scan`); a data directory's own
    /// scan is found without it.
    pub scan: Option<PathBuf>,
    /// Window (or screenshot) size in physical pixels.
    pub window_px: [u32; 2],
    /// Annotation file (None = the model's default location).
    pub annotations: Option<PathBuf>,
    /// Where forward and backward passes run.
    pub device: DeviceChoice,
    /// Show the tiles in filter-rank order at start.
    pub sort_by_rank: bool,
    /// How gradient tiles are scaled at start.
    pub gradient_norm: crate::viz::gradient_norm::GradientNorm,
    /// Show one architecture node per block of layers at start.
    pub collapse_blocks: bool,
    /// Architecture node size at start (see [`crate::ui::layout::ArchGrid`]).
    pub arch_zoom: f32,
    /// Screenshots: physical pixels per layout pixel (2 = a HiDPI display); windows use
    /// the display's own factor.
    pub ui_scale: f32,
    /// Optimisation steps of the "feature vis" method (None = Lucid's 512).
    pub featvis_steps: Option<usize>,
}

/// Models with more layers than this open with their architecture in blocks (G: layers).
pub const AUTO_COLLAPSE_LAYERS: usize = 1000;

impl ViewerOptions {
    /// The view state these options ask for at start: `selected` layer, method, panel, rank
    /// order, blocks and architecture zoom, the selection scrolled into view.
    pub fn initial_state(
        &self,
        vm: &crate::ui::ViewModel,
        selected: usize,
        window_px: [f32; 2],
    ) -> ViewState {
        let mut state = ViewState::new(selected, window_px);
        state.method = self.method;
        state.sort_by_rank = self.sort_by_rank;
        state.gradient_norm = self.gradient_norm;
        state.panel = self.panel;
        // A model too long to scroll through layer by layer opens at its top level.
        state.collapsed = self.collapse_blocks
            || (vm.layers.len() > AUTO_COLLAPSE_LAYERS && !vm.levels.blocks.is_empty());
        state.arch_zoom = self.arch_zoom;
        let shape = crate::ui::scene::model_shape(vm, &state);
        state.scroll_arch_to(shape.item_of(selected));
        state
    }
}

/// The session for a viewer: compute on the renderer's own wgpu device when the choice
/// resolves to a GPU and `ctx` is given (one device, one queue for burn and the renderer),
/// else on the selected device; annotations and the scan opened (a `--scan` that does not
/// open is an error; a data directory's own scan that does not is a notice).
pub fn new_session(
    source: ViewSource,
    options: &ViewerOptions,
    ctx: Option<&GpuContext>,
) -> Result<Session> {
    let model = match source {
        ViewSource::Model(model) => model,
        ViewSource::Data(data) => {
            let found = match &options.scan {
                Some(_) => None,
                None => crate::scan::open::OpenScan::find_in(&data.root),
            };
            let mut session = Session::from_data(*data);
            open_user_files(&mut session, options)?;
            if let Some(dir) = found {
                eprintln!("scan: {}", dir.display());
                if let Err(e) = session.open_scan(&dir) {
                    session.vm.notify(format!("{e:#}"));
                }
            }
            return Ok(session);
        }
    };
    let mut device = crate::engine::device::select(options.device);
    if let Some(warning) = &device.warning {
        eprintln!("warning: {warning}");
    }
    if device.is_gpu
        && let Some(ctx) = ctx
    {
        match ctx.burn_device() {
            Ok(shared) => {
                device = ComputeDevice {
                    device: shared,
                    description: format!(
                        "gpu · {} (burn wgpu on the renderer's device)",
                        ctx.adapter_info.name
                    ),
                    is_gpu: true,
                    warning: None,
                }
            }
            Err(e) => eprintln!("warning: {e}; burn opens its own device"),
        }
    }
    let mut session = Session::new(model, &device);
    if let Some(steps) = options.featvis_steps {
        session.set_featvis_steps(steps);
    }
    open_user_files(&mut session, options)?;
    Ok(session)
}

/// The files the user points the viewer at beside the model: the annotation file, the
/// folder of class examples and a dataset scan.
fn open_user_files(session: &mut Session, options: &ViewerOptions) -> Result<()> {
    session.examples = examples::Examples::new(options.examples.clone());
    session.open_annotations(options.annotations.as_deref());
    if let Some(path) = session.annotations.path() {
        eprintln!("annotations: {}", path.display());
    }
    if let Some(dir) = &options.scan {
        session.open_scan(dir)?;
    }
    Ok(())
}

/// What the viewer shows: a model it runs, or a data directory written earlier.
pub enum ViewSource {
    Model(crate::model::LoadedModel),
    Data(Box<crate::format::read::DataDir>),
}

/// The layer selected at start: the named one, else the first conv layer, else layer 0.
pub fn initial_layer(session: &Session, name: Option<&str>) -> Result<usize> {
    let layers = &session.vm.layers;
    match name {
        Some(n) => layers
            .iter()
            .position(|l| l.name == n)
            .with_context(|| format!("no layer named '{n}' (see `convlens info`)")),
        None => Ok(layers.iter().position(|l| l.is_conv).unwrap_or(0)),
    }
}

/// Renders one frame of the viewer offscreen and writes it to `out` (PNG).
pub fn screenshot(source: ViewSource, options: &ViewerOptions, out: &Path) -> Result<()> {
    let ctx = GpuContext::headless().context("no wgpu adapter for offscreen rendering (install Mesa's mesa-vulkan-drivers for a software one)")?;
    let session = &mut new_session(source, options, Some(&ctx))?;
    let first = options
        .input
        .as_deref()
        .map(session::InputList::from_path)
        .transpose()?;
    session.run_file(first.as_ref().and_then(|l| l.current()))?;
    let selected = initial_layer(session, options.layer.as_deref())?;
    let mut renderer = Renderer::new(&ctx, OffscreenTarget::DEFAULT_FORMAT);
    let [w, h] = options.window_px;
    let scale = options.ui_scale;
    let mut state =
        options.initial_state(&session.vm, selected, [w as f32 / scale, h as f32 / scale]);
    let bars = crate::ui::charts::chart_bars(&session.vm, &state);
    if let Some(k) = options.hover
        && !bars.is_empty()
    {
        anyhow::ensure!(
            (1..=bars.len()).contains(&k),
            "--hover {k}: the chart has {} bars (numbered from 1)",
            bars.len()
        );
        state.hover = Hover::Bar(k - 1);
    } else if let Some(k) = options.hover {
        let channels = session
            .vm
            .layers
            .get(selected)
            .and_then(|l| l.map_dims())
            .map_or(0, |d| d.0);
        anyhow::ensure!(
            (1..=channels).contains(&k),
            "--hover {k}: the layer has {channels} filters (numbered from 1)"
        );
        state.hover = Hover::Tile(k - 1);
        // Scroll the hovered tile into view.
        if let Some(grid) = selected_grid(&session.vm, &state) {
            let pos = crate::ui::scene::tile_order(&session.vm, &state)
                .and_then(|o| o.iter().position(|&f| f == k - 1))
                .unwrap_or(k - 1);
            let r = grid.tile_rect(pos, 0.0);
            let area = state.tile_area();
            if r.bottom() > area.bottom() {
                state.details_scroll_px = r.bottom() - area.bottom() + 8.0;
            }
        }
    }
    for need in crate::ui::needs::view_needs(&session.vm, &state) {
        session.fulfil(need)?;
    }
    let view = upload::upload_view(&mut renderer, &ctx, session, &state)?;
    let scene = build_scene(&SceneInputs {
        vm: &session.vm,
        state: &state,
        tiles: view.tiles.as_ref(),
        picture: view.picture,
        frame_ms: None,
        annotations: &session.annotations.annotations,
        suggested_bad: &session.suggested_bad(selected),
        cam: view.cam.as_ref().map(|(h, c)| (*h, c.as_str())),
        example: view.example,
        dataset: view.dataset.as_ref(),
    });
    let tiles_drawn = scene.tiles.len();
    let image = renderer.render_to_image(&ctx, &scene.scaled(scale), w, h)?;
    image
        .save(out)
        .with_context(|| format!("cannot write {}", out.display()))?;
    eprintln!(
        "wrote {} ({w}×{h}, {} tiles, adapter {})",
        out.display(),
        tiles_drawn,
        ctx.describe()
    );
    Ok(())
}
