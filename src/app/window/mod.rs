//! The winit window: translates window events into UI state changes, hands new inputs to the
//! compute worker ([`super::worker`]; the newest input wins, the UI never waits for a forward
//! pass), uploads the selected layer's maps when they change, and draws each frame. With
//! `--webcam`, a capture thread feeds the worker camera frames through a [`LiveFeed`] and
//! every finished forward pass arrives here like any other input's.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, Result};
use winit::application::ApplicationHandler;
use winit::dpi::PhysicalSize;
use winit::event::{ElementState, MouseButton, MouseScrollDelta, WindowEvent};
use winit::event_loop::{ActiveEventLoop, EventLoop, EventLoopProxy};
use winit::window::{Window, WindowId};

mod keys;

use super::compute::GradientResult;
use super::live::{Live, open_live};
use super::session::{InputList, Session, Source};
use super::upload::{ViewTiles, append_tiles, upload_view};
use super::worker::{Job, UserEvent, Worker};
use super::{ViewSource, ViewerOptions, initial_layer, new_session};
use crate::format::Method;
use crate::model::LoadedModel;
use crate::render::{FrameCounter, GpuContext, Renderer, SurfaceTarget};
use crate::ui::needs::{Need, view_needs};
use crate::ui::scene::{SceneInputs, build_scene, model_shape};
use crate::ui::state::{ClickInfo, Hover, ViewState};

/// Hovered filters whose dataset crops are appended to the atlas before it is uploaded
/// afresh (each adds k crops; a fresh upload drops them).
const HOVER_APPENDS_BEFORE_REUPLOAD: usize = 256;

/// A physical size in layout (logical) pixels.
fn logical(width: u32, height: u32, scale: f32) -> [f32; 2] {
    let scale = if scale.is_finite() && scale > 0.0 {
        scale
    } else {
        1.0
    };
    [width as f32 / scale, height as f32 / scale]
}

struct Gfx {
    window: Arc<Window>,
    ctx: GpuContext,
    surface: SurfaceTarget,
    renderer: Renderer,
}

struct App {
    session: Session,
    /// How the viewer was started (device choice, method, … for a model dropped later).
    options: ViewerOptions,
    /// For new workers (a model dropped onto the window).
    proxy: EventLoopProxy<UserEvent>,
    inputs: Option<InputList>,
    /// Computes new inputs and gradients (None for a data directory: nothing to compute).
    worker: Option<Worker>,
    gfx: Option<Gfx>,
    state: ViewState,
    /// What the view has in the atlas.
    view: ViewTiles,
    needs_upload: bool,
    /// A filter is hovered with a dataset scan open: append its top-k crops to the atlas.
    hover_crops_wanted: bool,
    /// More of the shown layer's per-filter images arrived: append them to `tiles`.
    tiles_arrived: bool,
    cursor: Option<[f32; 2]>,
    frames: FrameCounter,
    window_px: [u32; 2],
    fatal: Option<anyhow::Error>,
    /// Origin of click times (double-click detection).
    started: Instant,
    shift_held: bool,
    ctrl_held: bool,
    /// Physical pixels per layout pixel (the window's HiDPI scale factor).
    ui_scale: f32,
    /// The GPU context burn already computes on, waiting for the window's surface.
    shared_ctx: Option<GpuContext>,
    /// The webcam, when `--webcam` opened one.
    live: Option<Live>,
}

/// Opens the viewer window and runs until it is closed.
pub fn run_window(source: ViewSource, options: ViewerOptions) -> Result<()> {
    let event_loop = EventLoop::<UserEvent>::with_user_event().build().context(
        "cannot start the window system (no display? use --screenshot for headless rendering)",
    )?;
    // With GPU compute, open the device first and give it to burn: the window's surface is
    // made on the same instance and device later.
    let has_model = matches!(source, ViewSource::Model(_));
    let shared_ctx = if has_model && crate::engine::device::select(options.device).is_gpu {
        GpuContext::for_display(Some(Box::new(event_loop.owned_display_handle())))
            .inspect_err(|e| eprintln!("warning: {e}"))
            .ok()
    } else {
        None
    };
    let mut session = new_session(source, &options, shared_ctx.as_ref())?;
    let inputs = options
        .input
        .as_deref()
        .map(InputList::from_path)
        .transpose()?;
    session.run_file(inputs.as_ref().and_then(|l| l.current()))?;
    let selected = initial_layer(&session, options.layer.as_deref())?;
    // The first frame replaces the picture just computed (the embedded photo).
    let live = match &options.webcam {
        Some(request) if session.model().is_some() => {
            let (live, notice) = open_live(request, &event_loop.create_proxy());
            session.vm.notify(notice);
            live
        }
        _ => None,
    };
    let worker = match &session.source {
        Source::Model { engine, model } => Some(Worker::spawn(
            Arc::clone(engine),
            session.on_gpu,
            (model.spec.clone(), session.compute_options.clone()),
            event_loop.create_proxy(),
            live.as_ref().map(|l| Arc::clone(&l.feed)),
        )),
        _ => None,
    };
    let [w, h] = options.window_px;
    let state = options.initial_state(&session.vm, selected, [w as f32, h as f32]);
    let proxy = event_loop.create_proxy();
    let mut app = App {
        session,
        options: options.clone(),
        proxy,
        inputs,
        worker,
        gfx: None,
        state,
        view: ViewTiles::default(),
        needs_upload: true,
        hover_crops_wanted: false,
        tiles_arrived: false,
        cursor: None,
        frames: FrameCounter::new(60),
        window_px: options.window_px,
        fatal: None,
        started: Instant::now(),
        shift_held: false,
        ctrl_held: false,
        ui_scale: 1.0,
        shared_ctx,
        live,
    };
    // A start on a gradient method or with a hovered class asks for its images now.
    app.view_changed();
    event_loop
        .run_app(&mut app)
        .context("the event loop failed")?;
    app.fatal.map_or(Ok(()), Err)
}

impl App {
    /// Hands work to the compute worker; a data directory has none to do.
    fn submit(&mut self, job: Job) {
        match &self.worker {
            Some(w) => w.submit(job),
            None => self.session.vm.notify(
                "a data directory holds the results of one input; open the model to run others",
            ),
        }
    }

    fn redraw(&self) {
        if let Some(g) = &self.gfx {
            g.window.request_redraw();
        }
    }

    /// `ConvLens — <model>`, and the live input's label when there is one.
    fn title(&self) -> String {
        match &self.live {
            Some(live) => format!("ConvLens — {} — {}", self.session.vm.model_name, live.label),
            None => format!("ConvLens — {}", self.session.vm.model_name),
        }
    }

    fn create_gfx(&mut self, event_loop: &ActiveEventLoop) -> Result<()> {
        let attrs = Window::default_attributes()
            .with_title(self.title())
            .with_inner_size(PhysicalSize::new(self.window_px[0], self.window_px[1]));
        let window = Arc::new(
            event_loop
                .create_window(attrs)
                .context("cannot create the window")?,
        );
        let size = window.inner_size();
        self.ui_scale = window.scale_factor() as f32;
        let [w, h] = [size.width.max(1), size.height.max(1)];
        let shared = self.shared_ctx.take().and_then(|ctx| {
            match ctx.surface_for_window(window.clone(), true, w, h) {
                Ok(surface) => Some((ctx, surface)),
                Err(e) => {
                    eprintln!("warning: {e}; rendering on a separate device");
                    None
                }
            }
        });
        let (ctx, surface) = match shared {
            Some(pair) => pair,
            None => GpuContext::for_window(
                window.clone(),
                Some(Box::new(event_loop.owned_display_handle())),
                w,
                h,
            )?,
        };
        let renderer = Renderer::new(&ctx, surface.format());
        self.state
            .on_resize(logical(size.width, size.height, self.ui_scale));
        self.gfx = Some(Gfx {
            window,
            ctx,
            surface,
            renderer,
        });
        self.needs_upload = true;
        Ok(())
    }

    fn draw(&mut self) -> Result<()> {
        let Some(g) = self.gfx.as_mut() else {
            return Ok(());
        };
        if self.needs_upload {
            self.view = upload_view(&mut g.renderer, &g.ctx, &mut self.session, &self.state)?;
            self.needs_upload = false;
            self.tiles_arrived = false;
        } else if self.hover_crops_wanted {
            self.hover_crops_wanted = false;
            if let Some(tiles) = self.view.dataset.as_mut() {
                super::dataset::append_hovered(
                    &mut g.renderer,
                    &g.ctx,
                    &mut self.session,
                    &self.state,
                    tiles,
                )?;
                // Each hover appends; start the atlas afresh now and then.
                tiles.hovers_appended += 1;
                if tiles.hovers_appended > HOVER_APPENDS_BEFORE_REUPLOAD {
                    self.needs_upload = true;
                    g.window.request_redraw();
                }
            }
        }
        if self.tiles_arrived && !self.needs_upload {
            self.tiles_arrived = false;
            let appended = match self.view.tiles.as_mut() {
                Some(tiles) => append_tiles(&mut g.renderer, &g.ctx, &self.session, tiles)?,
                None => false,
            };
            if !appended {
                self.needs_upload = true;
                g.window.request_redraw();
            }
        }
        self.frames.tick(Instant::now());
        let scene = build_scene(&SceneInputs {
            vm: &self.session.vm,
            state: &self.state,
            tiles: self.view.tiles.as_ref(),
            picture: self.view.picture,
            frame_ms: self.frames.mean_ms(),
            annotations: &self.session.annotations.annotations,
            suggested_bad: &self.session.suggested_bad(self.state.selected),
            cam: self.view.cam.as_ref().map(|(h, c)| (*h, c.as_str())),
            example: self.view.example,
            dataset: self.view.dataset.as_ref(),
        });
        if g.renderer
            .draw_to_surface(&g.ctx, &mut g.surface, &scene.scaled(self.ui_scale))?
            .is_none()
            || self.state.show_frame_time
        {
            g.window.request_redraw();
        }
        Ok(())
    }

    /// Replaces the session with a model dropped onto the window (its own annotations, the
    /// embedded photo as input, a new worker). A model that fails to load leaves the current
    /// one in place and says why.
    fn open_model(&mut self, path: &std::path::Path) {
        let model = match LoadedModel::from_file(path, None) {
            Ok(m) => m,
            Err(e) => {
                self.session.vm.notify(format!("{e}"));
                return;
            }
        };
        let mut options = self.options.clone();
        // --annotations and --scan named the first model's files.
        options.annotations = None;
        options.scan = None;
        let mut session = match new_session(ViewSource::Model(model), &options, None) {
            Ok(s) => s,
            Err(e) => {
                self.session.vm.notify(format!("{}: {e:#}", path.display()));
                return;
            }
        };
        if let Err(e) = session.run_file(None) {
            self.session.vm.notify(format!("{}: {e:#}", path.display()));
            return;
        }
        self.worker = match &session.source {
            Source::Model { engine, model } => Some(Worker::spawn(
                Arc::clone(engine),
                session.on_gpu,
                (model.spec.clone(), session.compute_options.clone()),
                self.proxy.clone(),
                // The webcam goes on feeding the new model (at its own input size).
                self.live.as_ref().map(|l| Arc::clone(&l.feed)),
            )),
            _ => None,
        };
        let selected = initial_layer(&session, None).unwrap_or(0);
        let window_px = self.state.window_px;
        self.state = ViewState::new(selected, window_px);
        self.state.method = Method::Forward;
        self.inputs = None;
        self.session = session;
        if let Some(g) = &self.gfx {
            g.window.set_title(&self.title());
        }
        self.needs_upload = true;
    }

    /// The pointer moved onto or off a class bar: show that class's Grad-CAM over the input
    /// (computed on the worker when missing) or the plain input again.
    fn hover_changed(&mut self) {
        if self.session.vm.dataset.is_some() && matches!(self.state.hover, Hover::Tile(_)) {
            self.hover_crops_wanted = true;
        }
        let cams: Vec<Need> = view_needs(&self.session.vm, &self.state)
            .into_iter()
            .filter(|n| matches!(n, Need::Cam { .. }))
            .collect();
        if !cams.is_empty() || self.view.cam.is_some() {
            cams.into_iter().for_each(|need| self.request(need));
            self.needs_upload = true;
        }
    }

    /// Asks the worker for what the view needs, unless the session has it: a Grad-CAM map,
    /// or per-filter images that are missing or were stopped part-way (then from the first
    /// missing filter).
    fn request(&mut self, need: Need) {
        let Some(input) = self.session.result.as_ref().and_then(|r| r.input.clone()) else {
            return;
        };
        match need {
            Need::Cam { layer, class } => {
                if self.session.cam(layer, class).is_none() && self.worker.is_some() {
                    self.submit(Job::Cam {
                        input,
                        layer,
                        class,
                    });
                }
            }
            Need::FilterImages { layer, method } => {
                let have = self.session.gradient(layer, method);
                if !have.is_some_and(GradientResult::is_complete) {
                    let from_channel = have.map_or(0, |g| g.filled);
                    self.submit(Job::Gradients {
                        input,
                        layer,
                        method,
                        from_channel,
                    });
                }
            }
        }
    }

    /// The selected layer or method changed: re-upload, and ask for what the view needs.
    fn view_changed(&mut self) {
        self.needs_upload = true;
        for need in view_needs(&self.session.vm, &self.state) {
            self.request(need);
        }
    }
}

impl ApplicationHandler<UserEvent> for App {
    fn resumed(&mut self, event_loop: &ActiveEventLoop) {
        if self.gfx.is_none()
            && let Err(e) = self.create_gfx(event_loop)
        {
            self.fatal = Some(e);
            event_loop.exit();
        }
        self.redraw();
    }

    fn user_event(&mut self, _event_loop: &ActiveEventLoop, event: UserEvent) {
        match event {
            UserEvent::Forward(Ok(result)) => {
                self.session.accept(result);
                // The frame taken just before a pause arrives after it: keep saying paused.
                if let Some(notice) = self.live.as_ref().and_then(Live::pause_notice) {
                    self.session.vm.notify(notice);
                }
                self.view_changed();
            }
            UserEvent::Progress(progress) => self.session.vm.progress = Some(progress),
            UserEvent::GradientChunk(chunk) => {
                let key = (chunk.layer, chunk.method);
                let shown = key == (self.state.selected, self.state.method);
                if self.session.accept_chunk(chunk) && shown {
                    // Appended to the tiles already shown, or (the first chunk) uploaded.
                    let continues =
                        (self.view.tiles.as_ref()).is_some_and(|t| (t.layer, t.method) == key);
                    if continues {
                        self.tiles_arrived = true;
                    } else {
                        self.needs_upload = true;
                    }
                }
            }
            UserEvent::Cam(Ok(cam)) => {
                self.session.accept_cam(cam);
                self.needs_upload = true;
            }
            UserEvent::SwitchedToCpu(fallback) => self.session.switch_to(fallback),
            UserEvent::Notice(message) => self.session.vm.notify(message),
            // A layer whose images failed part-way keeps what came; showing it again resumes.
            UserEvent::Forward(Err(message))
            | UserEvent::GradientsFailed(message)
            | UserEvent::Cam(Err(message)) => self.session.vm.notify(message),
        }
        self.redraw();
    }

    fn window_event(&mut self, event_loop: &ActiveEventLoop, _id: WindowId, event: WindowEvent) {
        let shape = model_shape(&self.session.vm, &self.state);
        match event {
            WindowEvent::CloseRequested => event_loop.exit(),
            WindowEvent::Resized(size) => {
                if let Some(g) = self.gfx.as_mut() {
                    g.surface.resize(&g.ctx, size.width, size.height);
                }
                if size.width > 0 && size.height > 0 {
                    self.state
                        .on_resize(logical(size.width, size.height, self.ui_scale));
                }
                self.redraw();
            }
            WindowEvent::CursorMoved { position, .. } => {
                let p = [
                    position.x as f32 / self.ui_scale,
                    position.y as f32 / self.ui_scale,
                ];
                self.cursor = Some(p);
                let before = self.state.hover;
                self.state.on_cursor(&shape, p);
                if self.state.hover != before {
                    self.hover_changed();
                    self.redraw();
                }
            }
            WindowEvent::CursorLeft { .. } => {
                self.cursor = None;
                self.state.on_cursor_left();
                self.redraw();
            }
            WindowEvent::MouseInput {
                state: ElementState::Pressed,
                button: MouseButton::Left,
                ..
            } => {
                if let Some(p) = self.cursor {
                    let click = ClickInfo {
                        time_s: self.started.elapsed().as_secs_f64(),
                        shift: self.shift_held,
                    };
                    let outcome = self.state.on_click(&shape, p, click);
                    if let Some((layer, filter, mark)) = outcome.annotate {
                        self.session.annotate(layer, filter, mark);
                    }
                    if outcome.view_changed {
                        self.view_changed();
                    }
                    // Also after a block opened in place.
                    self.redraw();
                }
            }
            WindowEvent::ScaleFactorChanged { scale_factor, .. } => {
                self.ui_scale = scale_factor as f32;
                if let Some(g) = &self.gfx {
                    let size = g.window.inner_size();
                    self.state
                        .on_resize(logical(size.width, size.height, self.ui_scale));
                }
                self.redraw();
            }
            WindowEvent::ModifiersChanged(modifiers) => {
                self.shift_held = modifiers.state().shift_key();
                self.ctrl_held = modifiers.state().control_key();
            }
            WindowEvent::MouseWheel { delta, .. } => {
                let dy = match delta {
                    MouseScrollDelta::LineDelta(_, y) => -y * 60.0,
                    MouseScrollDelta::PixelDelta(p) => -p.y as f32,
                };
                if let Some(p) = self.cursor {
                    if self.ctrl_held && self.state.canvases().arch.contains(p) {
                        // Ctrl+wheel over the architecture sizes its nodes (up = larger).
                        let zoom = self.state.arch_zoom * 1.1f32.powf(-dy / 60.0);
                        self.state.zoom_arch(&shape, zoom);
                    } else if self.ctrl_held {
                        // Ctrl+wheel elsewhere zooms the tiles (wheel up = larger).
                        let zoom = self.state.tile_zoom * 1.1f32.powf(-dy / 60.0);
                        self.state.zoom_tiles(&shape, zoom);
                    } else {
                        self.state.on_scroll(&shape, p, dy);
                    }
                    self.redraw();
                }
            }
            WindowEvent::KeyboardInput { event, .. } if event.state == ElementState::Pressed => {
                let quit = self.on_key(&event.logical_key);
                if quit {
                    event_loop.exit();
                }
            }
            WindowEvent::DroppedFile(path) => {
                if path
                    .extension()
                    .and_then(|e| e.to_str())
                    .is_some_and(|e| e.eq_ignore_ascii_case("onnx"))
                {
                    self.open_model(&path);
                } else {
                    match InputList::from_path(&path) {
                        Ok(list) => {
                            if let Some(first) = list.current().map(PathBuf::from) {
                                self.session
                                    .vm
                                    .notify(format!("computing {}…", first.display()));
                                self.submit(Job::Input(first));
                            }
                            self.inputs = Some(list);
                        }
                        Err(e) => self.session.vm.notify(format!("{e:#}")),
                    }
                }
                self.redraw();
            }
            WindowEvent::RedrawRequested => {
                if let Err(e) = self.draw() {
                    self.fatal = Some(e);
                    event_loop.exit();
                }
            }
            _ => {}
        }
    }
}
