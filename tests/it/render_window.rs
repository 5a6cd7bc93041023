//! The window path: a winit window, its surface configured by `GpuContext::for_window`, frames
//! presented, a minimise (0×0 resize) skipping frames and a resize recovering. Needs an X
//! display, so it is ignored by default; run it with
//! `xvfb-run -a cargo test --test it -- --ignored render_window::`.
#![cfg(target_os = "linux")]

use std::sync::Arc;

use convlens::render::{GpuContext, Renderer, Scene, ShapeInstance, TextItem};
use winit::application::ApplicationHandler;
use winit::dpi::PhysicalSize;
use winit::event::WindowEvent;
use winit::event_loop::{ActiveEventLoop, EventLoop};
use winit::platform::x11::EventLoopBuilderExtX11;
use winit::window::{Window, WindowId};

#[derive(Default)]
struct App {
    outcome: Option<Result<String, String>>,
}

impl App {
    fn run(&mut self, event_loop: &ActiveEventLoop) -> Result<String, String> {
        let attrs = Window::default_attributes()
            .with_title("convlens render_window test")
            .with_inner_size(PhysicalSize::new(320u32, 200u32));
        let window = Arc::new(event_loop.create_window(attrs).map_err(|e| e.to_string())?);
        let size = window.inner_size();
        let display = Box::new(event_loop.owned_display_handle());
        let (ctx, mut surface) =
            GpuContext::for_window(window.clone(), Some(display), size.width, size.height)
                .map_err(|e| e.to_string())?;
        let mut renderer = Renderer::new(&ctx, surface.format());
        let scene = Scene {
            clear: [0.1, 0.1, 0.12, 1.0],
            shapes: vec![ShapeInstance::fill_rect(
                [10.0, 10.0, 100.0, 50.0],
                [0.2, 0.5, 0.9, 1.0],
            )],
            text: vec![TextItem::new("ConvLens", [12.0, 70.0], 14.0, [1.0; 4])],
            ..Scene::default()
        };
        let mut presented = 0;
        for _ in 0..10 {
            if renderer
                .draw_to_surface(&ctx, &mut surface, &scene)
                .map_err(|e| e.to_string())?
                .is_some()
            {
                presented += 1;
            }
        }
        if presented == 0 {
            return Err("no frame was presented".into());
        }
        // Minimised: frames are skipped, nothing is configured at 0×0.
        surface.resize(&ctx, 0, 0);
        let skipped = renderer
            .draw_to_surface(&ctx, &mut surface, &scene)
            .map_err(|e| e.to_string())?;
        if skipped.is_some() || !surface.is_minimised() {
            return Err("a minimised window still drew".into());
        }
        // Restored at a new size.
        surface.resize(&ctx, 200, 120);
        let mut after = 0;
        for _ in 0..5 {
            if renderer
                .draw_to_surface(&ctx, &mut surface, &scene)
                .map_err(|e| e.to_string())?
                .is_some()
            {
                after += 1;
            }
        }
        if after == 0 || surface.size() != [200, 120] {
            return Err(format!("no frame after resize (size {:?})", surface.size()));
        }
        Ok(format!(
            "{} presented {presented}+{after} frames in {:?}",
            ctx.describe(),
            surface.format()
        ))
    }
}

impl ApplicationHandler for App {
    fn resumed(&mut self, event_loop: &ActiveEventLoop) {
        if self.outcome.is_none() {
            self.outcome = Some(self.run(event_loop));
            event_loop.exit();
        }
    }

    fn window_event(&mut self, _: &ActiveEventLoop, _: WindowId, _: WindowEvent) {}
}

#[test]
#[ignore = "needs an X display: xvfb-run -a cargo test --test it -- --ignored render_window::"]
fn window_surface_presents_resizes_and_minimises() {
    let event_loop = EventLoop::builder()
        .with_any_thread(true)
        .build()
        .unwrap_or_else(|e| panic!("no display for winit: {e}"));
    let mut app = App::default();
    event_loop
        .run_app(&mut app)
        .unwrap_or_else(|e| panic!("event loop: {e}"));
    match app.outcome {
        Some(Ok(report)) => eprintln!("{report}"),
        Some(Err(e)) => panic!("{e}"),
        None => panic!("the event loop never resumed"),
    }
}
