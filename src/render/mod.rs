//! GPU rendering with wgpu (no app state; burn only through [`burn_bridge`]): device context,
//! targets, the activation tile atlas and its instanced renderer, shapes, text, and the
//! per-frame [`Renderer`] that draws a [`Scene`] into a window surface or an offscreen image.
//!
//! Conventions shared by every sub-module:
//! - Long-lived renderers own pipelines, layouts and buffers; `prepare(device, queue, …)` does all
//!   uploads for a frame and `render(&self, pass)` only records draw commands.
//! - Positions are window pixels, origin top-left, y down.
//! - Colours are **sRGB** (what a colour picker or CSS gives), straight alpha, in `0.0..=1.0`.
//!   Shaders convert to linear only when the target format is an `*Srgb` one, so a value
//!   written as `v` ends up as the byte `round(255 v)` in the target either way.
//! - Every GPU struct is private to its module, `#[repr(C)]` + `bytemuck::Pod`, mirrors a
//!   struct in `shaders/` and has `const` size and offset asserts; the public API takes typed
//!   descriptions (`TileInstance`, `ShapeInstance`) that `prepare` converts.

mod buffer;
pub mod burn_bridge;
pub mod context;
pub mod error;
pub mod frame;
pub mod offscreen;
pub mod packer;
mod pipeline;
pub mod shapes;
pub mod text;
pub mod tile_atlas;
pub mod tiles;

pub use buffer::grown_capacity;
pub use burn_bridge::{AtlasFill, copy_maps, copy_maps_or_upload};
pub use context::{GpuContext, SurfaceFrame, SurfaceTarget};
pub use error::RenderError;
pub use frame::{FrameCounter, FrameStats, Renderer, Scene};
pub use offscreen::OffscreenTarget;
pub use packer::{LinearPacker, Span};
pub use shapes::{ShapeInstance, ShapeKind, ShapeRenderer};
pub use text::{TextItem, TextRenderer};
pub use tile_atlas::{ReadyTiles, TileAtlas, TileHandle, value_range};
pub use tiles::{Colormap, TileInstance, TileRenderer, colormap_srgb, rect_visible, visible_tiles};

/// Result alias for the render module.
pub type Result<T, E = RenderError> = std::result::Result<T, E>;

/// The WGSL sources of every pipeline, by file name (what `shaders/` holds); used by the
/// pipelines themselves and by the shader validation test.
pub const SHADERS: &[(&str, &str)] = &[
    ("tiles.wgsl", include_str!("../../shaders/tiles.wgsl")),
    ("shapes.wgsl", include_str!("../../shaders/shapes.wgsl")),
];

/// Converts one sRGB-encoded channel (`0..=1`) to linear light (the exact piecewise curve).
pub fn srgb_to_linear(c: f32) -> f32 {
    if c <= 0.04045 {
        c / 12.92
    } else {
        ((c + 0.055) / 1.055).powf(2.4)
    }
}

/// Converts one linear-light channel (`0..=1`) to sRGB encoding.
pub fn linear_to_srgb(c: f32) -> f32 {
    if c <= 0.003_130_8 {
        c * 12.92
    } else {
        1.055 * c.powf(1.0 / 2.4) - 0.055
    }
}
