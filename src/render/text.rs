//! Text through glyphon: queue labels each frame, `prepare` shapes and uploads glyphs,
//! `render` records one draw. Uses only the embedded DejaVu Sans (assets/fonts), so text
//! looks the same on every machine, including CI without system fonts.

use std::collections::HashMap;

use glyphon::{
    Attrs, Buffer, Cache, Color, ColorMode, Family, FontSystem, Metrics, Resolution, Shaping,
    SwashCache, TextArea, TextAtlas, TextBounds, Viewport, fontdb,
};

use crate::render::Result;

/// The embedded UI font (DejaVu Sans 2.37, Bitstream Vera licence; see assets/fonts/).
pub const FONT_DEJAVU_SANS: &[u8] = include_bytes!("../../assets/fonts/DejaVuSans.ttf");
/// Family name of [`FONT_DEJAVU_SANS`].
pub const FONT_FAMILY: &str = "DejaVu Sans";

/// Line height as a multiple of the font size.
const LINE_HEIGHT: f32 = 1.25;

/// One label.
#[derive(Clone, Debug, PartialEq)]
pub struct TextItem {
    /// The text; `\n` starts a new line.
    pub text: String,
    /// Anchor point in pixels (see `anchor`).
    pub pos_px: [f32; 2],
    /// Font size in pixels.
    pub size_px: f32,
    /// sRGB colour, straight alpha.
    pub color: [f32; 4],
    /// Wrap width in pixels; `None` = never wrap.
    pub max_width: Option<f32>,
    /// Which point of the text box sits at `pos_px`: `[0,0]` top-left, `[0.5,0.5]` centre,
    /// `[1,0]` top-right.
    pub anchor: [f32; 2],
    /// Clip rect `x, y, w, h` in pixels; `None` = the whole target.
    pub clip: Option<[f32; 4]>,
}

impl TextItem {
    /// Top-left anchored, unwrapped, unclipped text.
    pub fn new(text: impl Into<String>, pos_px: [f32; 2], size_px: f32, color: [f32; 4]) -> Self {
        Self {
            text: text.into(),
            pos_px,
            size_px,
            color,
            max_width: None,
            anchor: [0.0, 0.0],
            clip: None,
        }
    }

    /// Wraps at `width_px`.
    pub fn with_max_width(mut self, width_px: f32) -> Self {
        self.max_width = Some(width_px);
        self
    }

    /// Places the text box so that its point `anchor` is at `pos_px`.
    pub fn anchored(mut self, anchor: [f32; 2]) -> Self {
        self.anchor = anchor;
        self
    }

    /// Clips to `rect` (`x, y, w, h`).
    pub fn clipped(mut self, rect: [f32; 4]) -> Self {
        self.clip = Some(rect);
        self
    }
}

/// Key of a shaped buffer: text, size and wrap width (as bits).
type BufferKey = (String, u32, Option<u32>);

struct Shaped {
    buffer: Buffer,
    size: [f32; 2],
    used: bool,
}

/// glyphon's font system, caches, atlas and renderer for one target format.
pub struct TextRenderer {
    font_system: FontSystem,
    swash: SwashCache,
    atlas: TextAtlas,
    renderer: glyphon::TextRenderer,
    viewport: Viewport,
    queued: Vec<TextItem>,
    /// Shaped buffers kept while they are drawn every frame.
    shaped: HashMap<BufferKey, Shaped>,
}

impl std::fmt::Debug for TextRenderer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TextRenderer")
            .field("queued", &self.queued.len())
            .field("shaped", &self.shaped.len())
            .finish_non_exhaustive()
    }
}

impl TextRenderer {
    /// Creates the text pipeline for targets of `format`.
    pub fn new(device: &wgpu::Device, queue: &wgpu::Queue, format: wgpu::TextureFormat) -> Self {
        let mut db = fontdb::Database::new();
        db.load_font_data(FONT_DEJAVU_SANS.to_vec());
        db.set_sans_serif_family(FONT_FAMILY);
        db.set_serif_family(FONT_FAMILY);
        db.set_monospace_family(FONT_FAMILY);
        let mut font_system = FontSystem::new_with_locale_and_db("en-US".to_string(), db);
        let cache = Cache::new(device);
        let viewport = Viewport::new(device, &cache);
        // sRGB targets: glyphon linearises our sRGB colours; linear targets take them as is.
        let mode = if format.is_srgb() {
            ColorMode::Accurate
        } else {
            ColorMode::Web
        };
        let mut atlas = TextAtlas::with_color_mode(device, queue, &cache, format, mode);
        let renderer =
            glyphon::TextRenderer::new(&mut atlas, device, wgpu::MultisampleState::default(), None);
        // Warm the shaper so the first real frame does not pay for font loading.
        let _ = Buffer::new(&mut font_system, Metrics::new(12.0, 15.0));
        Self {
            font_system,
            swash: SwashCache::new(),
            atlas,
            renderer,
            viewport,
            queued: Vec::new(),
            shaped: HashMap::new(),
        }
    }

    /// Adds a label to this frame.
    pub fn queue(&mut self, item: TextItem) {
        self.queued.push(item);
    }

    /// Width and height in pixels that `text` takes at `size_px` (wrapped at `max_width`),
    /// for layout.
    pub fn measure(&mut self, text: &str, size_px: f32, max_width: Option<f32>) -> [f32; 2] {
        let key = buffer_key(text, size_px, max_width);
        self.shaped_entry(key).size
    }

    /// Shapes the queued labels and uploads their glyphs for a `viewport`-sized target.
    pub fn prepare(
        &mut self,
        device: &wgpu::Device,
        queue: &wgpu::Queue,
        viewport: [u32; 2],
    ) -> Result<()> {
        self.viewport.update(
            queue,
            Resolution {
                width: viewport[0],
                height: viewport[1],
            },
        );
        for s in self.shaped.values_mut() {
            s.used = false;
        }
        let items = std::mem::take(&mut self.queued);
        let mut placed = Vec::with_capacity(items.len());
        for item in &items {
            let key = buffer_key(&item.text, item.size_px, item.max_width);
            let size = self.shaped_entry(key.clone()).size;
            let left = item.pos_px[0] - item.anchor[0] * size[0];
            let top = item.pos_px[1] - item.anchor[1] * size[1];
            let bounds = item
                .clip
                .map_or_else(TextBounds::default, |[x, y, w, h]| TextBounds {
                    left: x.floor() as i32,
                    top: y.floor() as i32,
                    right: (x + w).ceil() as i32,
                    bottom: (y + h).ceil() as i32,
                });
            placed.push((key, left, top, bounds, to_color(item.color)));
        }
        let shaped = &self.shaped;
        let areas = placed.iter().filter_map(|(key, left, top, bounds, color)| {
            shaped.get(key).map(|s| TextArea {
                buffer: &s.buffer,
                left: *left,
                top: *top,
                scale: 1.0,
                bounds: *bounds,
                default_color: *color,
                custom_glyphs: &[],
            })
        });
        self.renderer.prepare(
            device,
            queue,
            &mut self.font_system,
            &mut self.atlas,
            &self.viewport,
            areas,
            &mut self.swash,
        )?;
        self.shaped.retain(|_, s| s.used);
        self.atlas.trim();
        Ok(())
    }

    /// Records the text draw prepared last.
    pub fn render(&self, pass: &mut wgpu::RenderPass<'_>) -> Result<()> {
        self.renderer.render(&self.atlas, &self.viewport, pass)?;
        Ok(())
    }

    /// The shaped buffer for `key`, shaping it on first use; marks it used this frame.
    fn shaped_entry(&mut self, key: BufferKey) -> &mut Shaped {
        let font_system = &mut self.font_system;
        let entry = self
            .shaped
            .entry(key)
            .or_insert_with_key(|(text, size, width)| {
                let size_px = f32::from_bits(*size);
                let mut buffer = Buffer::new(
                    font_system,
                    Metrics::new(size_px, (size_px * LINE_HEIGHT).ceil()),
                );
                buffer.set_size(width.map(f32::from_bits), None);
                buffer.set_text(
                    text,
                    &Attrs::new().family(Family::SansSerif),
                    Shaping::Advanced,
                    None,
                );
                buffer.shape_until_scroll(font_system, false);
                let (w, h) = buffer.layout_runs().fold((0.0f32, 0.0f32), |(w, h), run| {
                    (w.max(run.line_w), h.max(run.line_top + run.line_height))
                });
                Shaped {
                    buffer,
                    size: [w.ceil(), h.ceil()],
                    used: false,
                }
            });
        entry.used = true;
        entry
    }
}

fn buffer_key(text: &str, size_px: f32, max_width: Option<f32>) -> BufferKey {
    (
        text.to_string(),
        size_px.max(1.0).to_bits(),
        max_width.map(|w| w.max(1.0).to_bits()),
    )
}

fn to_color(rgba: [f32; 4]) -> Color {
    let [r, g, b, a] = rgba.map(|c| (c.clamp(0.0, 1.0) * 255.0).round() as u8);
    Color::rgba(r, g, b, a)
}
