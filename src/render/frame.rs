//! One frame: the [`Scene`] the UI fills, the [`Renderer`] that prepares and draws it (shapes,
//! then tiles, then overlay shapes, then text) into a surface, a view or an image, and the
//! [`FrameCounter`] for the on-demand frame-time readout.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use crate::render::{
    GpuContext, OffscreenTarget, RenderError, Result, ShapeInstance, ShapeRenderer, SurfaceFrame,
    SurfaceTarget, TextItem, TextRenderer, TileAtlas, TileInstance, TileRenderer, srgb_to_linear,
};

/// Everything drawn in one frame, as plain data.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Scene {
    /// Background colour (sRGB, alpha ignored).
    pub clear: [f32; 4],
    /// Canvases, bars, links: drawn first.
    pub shapes: Vec<ShapeInstance>,
    /// Activation tiles and pictures (may extend past the viewport; culled).
    pub tiles: Vec<TileInstance>,
    /// Highlights and tooltip backgrounds: drawn over the tiles, under the text.
    pub overlay: Vec<ShapeInstance>,
    /// Labels: drawn last.
    pub text: Vec<TextItem>,
}

impl Scene {
    /// The same scene `factor` times larger: every position, size, stroke, radius, border,
    /// clip and font size scaled. The UI lays out in logical pixels; a window on a HiDPI
    /// display draws `scene.scaled(window.scale_factor())` onto its physical pixels.
    pub fn scaled(mut self, factor: f32) -> Self {
        if (factor - 1.0).abs() < f32::EPSILON {
            return self;
        }
        let s4 = |v: [f32; 4]| v.map(|x| x * factor);
        for shape in self.shapes.iter_mut().chain(self.overlay.iter_mut()) {
            *shape = shape.scaled(factor);
        }
        for tile in &mut self.tiles {
            *tile = tile.scaled(factor);
        }
        for text in &mut self.text {
            text.pos_px = text.pos_px.map(|x| x * factor);
            text.size_px *= factor;
            text.max_width = text.max_width.map(|w| w * factor);
            text.clip = text.clip.map(s4);
        }
        self
    }
}

/// What one `prepare` uploaded.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FrameStats {
    /// Tiles inside the viewport (drawn).
    pub tiles_drawn: usize,
    /// Tiles in the scene.
    pub tiles_total: usize,
    /// Shapes drawn (both layers).
    pub shapes_drawn: usize,
}

/// The long-lived renderers plus the tile atlas, for targets of one format.
#[derive(Debug)]
pub struct Renderer {
    /// Where tiles live; fill it with `atlas.upload…` and reference the handles in tiles.
    pub atlas: TileAtlas,
    tiles: TileRenderer,
    shapes: ShapeRenderer,
    text: TextRenderer,
    format: wgpu::TextureFormat,
    clear: wgpu::Color,
}

impl Renderer {
    /// Renderers for targets of `format` (a surface's format, or
    /// [`OffscreenTarget::DEFAULT_FORMAT`] for screenshots) and an empty default atlas.
    pub fn new(ctx: &GpuContext, format: wgpu::TextureFormat) -> Self {
        Self::with_atlas(ctx, format, TileAtlas::new(&ctx.device))
    }

    /// Same as [`Renderer::new`] with a given atlas (e.g. small layers in tests).
    pub fn with_atlas(ctx: &GpuContext, format: wgpu::TextureFormat, atlas: TileAtlas) -> Self {
        Self {
            atlas,
            tiles: TileRenderer::new(&ctx.device, format),
            shapes: ShapeRenderer::new(&ctx.device, format),
            text: TextRenderer::new(&ctx.device, &ctx.queue, format),
            format,
            clear: wgpu::Color::BLACK,
        }
    }

    /// The target format this renderer draws to.
    pub fn format(&self) -> wgpu::TextureFormat {
        self.format
    }

    /// Text measurement for layout (pixels).
    pub fn measure_text(&mut self, text: &str, size_px: f32, max_width: Option<f32>) -> [f32; 2] {
        self.text.measure(text, size_px, max_width)
    }

    /// Uploads everything `scene` needs for a `viewport`-sized target.
    pub fn prepare(
        &mut self,
        ctx: &GpuContext,
        scene: &Scene,
        viewport: [u32; 2],
    ) -> Result<FrameStats> {
        let (device, queue) = (&ctx.device, &ctx.queue);
        let shapes_drawn =
            self.shapes
                .prepare(device, queue, &scene.shapes, &scene.overlay, viewport);
        let tiles_drawn = self
            .tiles
            .prepare(device, queue, &self.atlas, &scene.tiles, viewport);
        for item in &scene.text {
            self.text.queue(item.clone());
        }
        self.text.prepare(device, queue, viewport)?;
        self.clear = clear_color(scene.clear, self.format);
        Ok(FrameStats {
            tiles_drawn,
            tiles_total: scene.tiles.len(),
            shapes_drawn,
        })
    }

    /// Records the prepared frame: shapes, tiles, overlay shapes, text.
    pub fn render(&self, pass: &mut wgpu::RenderPass<'_>) -> Result<()> {
        self.shapes.render_below(pass);
        self.tiles.render(pass);
        self.shapes.render_above(pass);
        self.text.render(pass)
    }

    /// Prepares `scene`, then clears `view` (of `size`) and draws into it; submits.
    pub fn draw_to_view(
        &mut self,
        ctx: &GpuContext,
        scene: &Scene,
        view: &wgpu::TextureView,
        size: [u32; 2],
    ) -> Result<FrameStats> {
        let stats = self.prepare(ctx, scene, size)?;
        let mut encoder = ctx
            .device
            .create_command_encoder(&wgpu::CommandEncoderDescriptor {
                label: Some("frame encoder"),
            });
        {
            let mut pass = encoder.begin_render_pass(&wgpu::RenderPassDescriptor {
                label: Some("frame pass"),
                color_attachments: &[Some(wgpu::RenderPassColorAttachment {
                    view,
                    depth_slice: None,
                    resolve_target: None,
                    ops: wgpu::Operations {
                        load: wgpu::LoadOp::Clear(self.clear),
                        store: wgpu::StoreOp::Store,
                    },
                })],
                depth_stencil_attachment: None,
                timestamp_writes: None,
                occlusion_query_set: None,
                multiview_mask: None,
            });
            self.render(&mut pass)?;
        }
        ctx.queue.submit(Some(encoder.finish()));
        Ok(stats)
    }

    /// Draws `scene` into the window; `Ok(None)` when the frame was skipped (minimised,
    /// occluded, surface just reconfigured — request another redraw).
    pub fn draw_to_surface(
        &mut self,
        ctx: &GpuContext,
        surface: &mut SurfaceTarget,
        scene: &Scene,
    ) -> Result<Option<FrameStats>> {
        let SurfaceFrame::Ready(frame) = surface.acquire(ctx)? else {
            return Ok(None);
        };
        // The renderer must have been built for `surface.format()`.
        let view = frame.texture.create_view(&wgpu::TextureViewDescriptor {
            label: Some("surface frame view"),
            ..Default::default()
        });
        let stats = self.draw_to_view(ctx, scene, &view, surface.size())?;
        ctx.queue.present(frame);
        Ok(Some(stats))
    }

    /// Renders `scene` offscreen at `width`×`height` and reads it back (headless screenshots).
    /// wgpu validation errors come back as [`RenderError::Validation`] instead of panicking.
    pub fn render_to_image(
        &mut self,
        ctx: &GpuContext,
        scene: &Scene,
        width: u32,
        height: u32,
    ) -> Result<image::RgbaImage> {
        let target = OffscreenTarget::new(ctx, width, height, self.format)?;
        let scope = ctx.device.push_error_scope(wgpu::ErrorFilter::Validation);
        let drawn = self.draw_to_view(ctx, scene, target.view(), [width, height]);
        if let Some(err) = pollster::block_on(scope.pop()) {
            return Err(RenderError::Validation {
                during: "render_to_image",
                message: err.to_string(),
            });
        }
        drawn?;
        target.read_rgba(ctx)
    }
}

/// The clear colour for a target: sRGB input, linearised for `*Srgb` formats.
fn clear_color(srgb: [f32; 4], format: wgpu::TextureFormat) -> wgpu::Color {
    let f = |c: f32| {
        let c = c.clamp(0.0, 1.0);
        f64::from(if format.is_srgb() {
            srgb_to_linear(c)
        } else {
            c
        })
    };
    wgpu::Color {
        r: f(srgb[0]),
        g: f(srgb[1]),
        b: f(srgb[2]),
        a: 1.0,
    }
}

/// Rolling mean of the last N frame times.
#[derive(Clone, Debug)]
pub struct FrameCounter {
    window: usize,
    samples_ms: VecDeque<f64>,
    sum_ms: f64,
    last_tick: Option<Instant>,
}

impl FrameCounter {
    /// A counter averaging over the last `window` frames (at least 1).
    pub fn new(window: usize) -> Self {
        Self {
            window: window.max(1),
            samples_ms: VecDeque::with_capacity(window.max(1)),
            sum_ms: 0.0,
            last_tick: None,
        }
    }

    /// Records one frame time.
    pub fn record(&mut self, frame: Duration) {
        self.record_ms(frame.as_secs_f64() * 1e3);
    }

    /// Records one frame time in milliseconds (negative or non-finite values are ignored).
    pub fn record_ms(&mut self, ms: f64) {
        if !ms.is_finite() || ms < 0.0 {
            return;
        }
        if self.samples_ms.len() == self.window
            && let Some(old) = self.samples_ms.pop_front()
        {
            self.sum_ms -= old;
        }
        self.samples_ms.push_back(ms);
        self.sum_ms += ms;
    }

    /// Marks a frame boundary at `now`; records the time since the previous tick.
    pub fn tick(&mut self, now: Instant) {
        if let Some(prev) = self.last_tick {
            self.record(now.saturating_duration_since(prev));
        }
        self.last_tick = Some(now);
    }

    /// Mean frame time in ms over the window; `None` before the first sample.
    pub fn mean_ms(&self) -> Option<f64> {
        (!self.samples_ms.is_empty()).then(|| self.sum_ms / self.samples_ms.len() as f64)
    }

    /// Frames per second implied by [`FrameCounter::mean_ms`].
    pub fn fps(&self) -> Option<f64> {
        self.mean_ms().filter(|&ms| ms > 0.0).map(|ms| 1e3 / ms)
    }

    /// Samples currently averaged.
    pub fn len(&self) -> usize {
        self.samples_ms.len()
    }

    /// True before the first sample.
    pub fn is_empty(&self) -> bool {
        self.samples_ms.is_empty()
    }

    /// A short readout such as `16.7 ms (60 fps)`.
    pub fn label(&self) -> String {
        match (self.mean_ms(), self.fps()) {
            (Some(ms), Some(fps)) => format!("{ms:.1} ms ({fps:.0} fps)"),
            (Some(ms), None) => format!("{ms:.1} ms"),
            _ => "– ms".to_string(),
        }
    }
}

impl Default for FrameCounter {
    fn default() -> Self {
        Self::new(60)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frame_counter_is_a_rolling_mean() {
        let mut fc = FrameCounter::new(3);
        assert_eq!(fc.mean_ms(), None);
        assert_eq!(fc.label(), "– ms");
        fc.record_ms(10.0);
        fc.record_ms(20.0);
        assert_eq!(fc.mean_ms(), Some(15.0));
        fc.record_ms(30.0);
        fc.record_ms(40.0); // drops 10
        assert_eq!(fc.len(), 3);
        assert_eq!(fc.mean_ms(), Some(30.0));
        fc.record_ms(f64::NAN);
        fc.record_ms(-1.0);
        assert_eq!(fc.mean_ms(), Some(30.0));
        assert_eq!(fc.label(), "30.0 ms (33 fps)");
    }

    #[test]
    fn ticks_measure_the_time_between_frames() {
        let mut fc = FrameCounter::new(10);
        let t0 = Instant::now();
        fc.tick(t0);
        assert!(fc.is_empty());
        fc.tick(t0 + Duration::from_millis(16));
        fc.tick(t0 + Duration::from_millis(36));
        let mean = fc.mean_ms().unwrap_or_default();
        assert!((mean - 18.0).abs() < 1e-9, "{mean}");
    }

    #[test]
    fn clear_colour_is_linearised_for_srgb_targets() {
        let c = clear_color([0.5, 0.0, 1.0, 1.0], wgpu::TextureFormat::Rgba8UnormSrgb);
        assert!((c.r - 0.214).abs() < 1e-3 && c.g == 0.0 && (c.b - 1.0).abs() < 1e-9);
        let c = clear_color([0.5, 0.0, 1.0, 1.0], wgpu::TextureFormat::Rgba8Unorm);
        assert!((c.r - 0.5).abs() < 1e-9);
    }
}
