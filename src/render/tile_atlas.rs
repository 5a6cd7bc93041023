//! The activation tile atlas: raw `f32` activation maps in an `R32Float` 2-D texture array,
//! with layers added geometrically as needed; filled from the CPU or copied from a GPU buffer
//! (a burn tensor's) without a CPU round trip.
//!
//! Layout: the layers form one linear texel space and tiles are stored row-major back to back
//! (see [`crate::render::packer`]), so a whole `[C, H, W]` tensor is one range and moves in a
//! few copies whatever `W` is. Values are stored unnormalised; the tile shader normalises per
//! tile (see [`crate::render::TileInstance::value_range`]). `R32Float` is not filterable, so
//! the shader reads texels with `textureLoad` (nearest), which is what activation maps want.

use std::sync::atomic::{AtomicU64, Ordering};

use crate::render::packer::{LinearPacker, Span, locate, spans};
use crate::render::{RenderError, Result};
use crate::viz::tile_summary::{summarise, summarise_tiles};
use crate::viz::tiles::tile_range;

/// Largest atlas layer side used, even on devices that allow bigger textures.
pub const MAX_LAYER_SIZE: u32 = 4096;
/// Smallest layer side. Sides are powers of two ≥ 64: a layer row (`4·S` bytes) then meets
/// wgpu's 256-byte `bytes_per_row` alignment for buffer-to-texture copies, and the shader
/// turns linear indices into texel coordinates with shifts and masks.
const MIN_LAYER_SIZE: u32 = 64;

/// `requested` rounded down to a power of two in `64..=max`.
fn layer_side(requested: u32, max: u32) -> u32 {
    let side = requested.clamp(MIN_LAYER_SIZE, max.max(MIN_LAYER_SIZE));
    1 << (31 - side.leading_zeros())
}

/// Source of [`TileAtlas::id`]s.
static NEXT_ATLAS_ID: AtomicU64 = AtomicU64::new(1);

/// Where one tile lives in the atlas: its first texel (`layer`, `origin_px`); the rest follow
/// row-major in the atlas's linear texel order (wrapping to the next row and layer).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TileHandle {
    /// Array layer of the first texel.
    pub layer: u32,
    /// Column and row of the first texel.
    pub origin_px: [u32; 2],
    /// Size of one plane in texels.
    pub size_px: [u32; 2],
    /// Planes stored one after the other: 1 for a map, 3 for an RGB image `[3,H,W]`.
    pub planes: u32,
}

/// Tiles in the atlas, each with the `[min, max]` its shader normalises by: one layer's maps
/// ready to draw.
pub type ReadyTiles = Vec<(TileHandle, [f32; 2])>;

/// Finite `[min, max]` of `values`; `[0, 0]` (drawn black) when none is finite.
pub fn value_range(values: &[f32]) -> [f32; 2] {
    // A vectorised pass (a scalar fold here was 8% of input → tiles).
    tile_range(&summarise(values))
}

/// [`value_range`] of every `per`-long tile of `values`, tiles in parallel.
pub fn value_ranges(values: &[f32], per: usize) -> Vec<[f32; 2]> {
    summarise_tiles(values, per)
        .iter()
        .map(tile_range)
        .collect()
}

/// The atlas texture plus its packer.
#[derive(Debug)]
pub struct TileAtlas {
    id: u64,
    texture: wgpu::Texture,
    view: wgpu::TextureView,
    layer_size: u32,
    /// Layers the texture has (≥ layers the packer uses).
    capacity_layers: u32,
    max_layers: u32,
    packer: LinearPacker,
    /// Bumped whenever the texture is replaced; renderers rebuild bind groups on change.
    generation: u64,
}

impl TileAtlas {
    /// An atlas with layers of `min(4096, max_texture_dimension_2d)` and as many layers as
    /// the device allows (`max_texture_array_layers`), starting with one.
    pub fn new(device: &wgpu::Device) -> Self {
        Self::with_layout(device, MAX_LAYER_SIZE, u32::MAX)
    }

    /// An atlas with layers of `layer_size` (rounded down to a power of two, 64 at least,
    /// clamped to the device) and at most `max_layers` (clamped to the device and to 2³² texels in all).
    pub fn with_layout(device: &wgpu::Device, layer_size: u32, max_layers: u32) -> Self {
        let limits = device.limits();
        let layer_size = layer_side(layer_size, limits.max_texture_dimension_2d);
        // The shader indexes texels with u32.
        let addressable = ((1u64 << 32) / (u64::from(layer_size) * u64::from(layer_size))) as u32;
        let max_layers = max_layers.clamp(1, limits.max_texture_array_layers.min(addressable));
        let (texture, view) = create_texture(device, layer_size, 1);
        Self {
            id: NEXT_ATLAS_ID.fetch_add(1, Ordering::Relaxed),
            texture,
            view,
            layer_size,
            capacity_layers: 1,
            max_layers,
            packer: LinearPacker::new(layer_size, max_layers),
            generation: 0,
        }
    }

    /// The `texture_2d_array<f32>` view the tile shader reads.
    pub fn view(&self) -> &wgpu::TextureView {
        &self.view
    }

    /// Unique per atlas (renderers key their bind groups on `(id, generation)`).
    pub fn id(&self) -> u64 {
        self.id
    }

    /// Changes whenever [`TileAtlas::view`] is a new texture.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// Side of one layer in texels.
    pub fn layer_size(&self) -> u32 {
        self.layer_size
    }

    /// Layers allocated on the GPU.
    pub fn layers_allocated(&self) -> u32 {
        self.capacity_layers
    }

    /// The most layers this atlas may grow to.
    pub fn max_layers(&self) -> u32 {
        self.max_layers
    }

    /// Texels in use (4 bytes each).
    pub fn texels_used(&self) -> u64 {
        self.packer.used()
    }

    /// Forgets every tile (handles become stale); keeps the texture for reuse.
    pub fn clear(&mut self) {
        self.packer.clear();
    }

    /// Uploads one `width`×`height` map (row-major) and returns where it went.
    pub fn upload(
        &mut self,
        device: &wgpu::Device,
        queue: &wgpu::Queue,
        values: &[f32],
        width: u32,
        height: u32,
    ) -> Result<TileHandle> {
        let handles = self.upload_many(device, queue, values, width, height, 1)?;
        handles
            .into_iter()
            .next()
            .ok_or(RenderError::TileDataLength {
                got: values.len(),
                expected: (width * height) as usize,
                width,
                height,
                count: 1,
            })
    }

    /// Uploads `count` maps of `width`×`height` stored contiguously (`[count, height, width]`,
    /// e.g. all channels of one activation) with at most three `write_texture`s per layer
    /// touched.
    pub fn upload_many(
        &mut self,
        device: &wgpu::Device,
        queue: &wgpu::Queue,
        values: &[f32],
        width: u32,
        height: u32,
        count: u32,
    ) -> Result<Vec<TileHandle>> {
        check_len(values.len(), width, height, count)?;
        let start = self.allocate(device, queue, width, height, count)?;
        for span in spans(start, values.len() as u64, self.layer_size) {
            let from = span.src_texel as usize;
            let len = (span.size[0] * span.size[1]) as usize;
            queue.write_texture(
                texel_target(&self.texture, &span),
                bytemuck::cast_slice(&values[from..from + len]),
                wgpu::TexelCopyBufferLayout {
                    offset: 0,
                    bytes_per_row: Some(span.size[0] * 4),
                    rows_per_image: None,
                },
                extent(&span),
            );
        }
        Ok(self.handles(start, width, height, count, 1))
    }

    /// [`TileAtlas::upload_many`] plus each map's `[min, max]` over its finite values (the
    /// normalisation range the tile shader uses): one activation layer, ready to draw.
    pub fn upload_maps(
        &mut self,
        device: &wgpu::Device,
        queue: &wgpu::Queue,
        values: &[f32],
        width: u32,
        height: u32,
        count: u32,
    ) -> Result<ReadyTiles> {
        self.upload_maps_with_ranges(device, queue, values, [width, height, count], None)
    }

    /// [`TileAtlas::upload_maps`] of `[width, height, count]` maps with each map's range
    /// already known (from the pass that summarised them:
    /// [`crate::viz::tiles::summarise_maps`]), so the maps are not read a second time. Ranges
    /// of another length than `count` (or none) are computed here.
    pub fn upload_maps_with_ranges(
        &mut self,
        device: &wgpu::Device,
        queue: &wgpu::Queue,
        values: &[f32],
        [width, height, count]: [u32; 3],
        ranges: Option<&[[f32; 2]]>,
    ) -> Result<ReadyTiles> {
        let handles = self.upload_many(device, queue, values, width, height, count)?;
        let ranges = match ranges {
            Some(r) if r.len() == count as usize => r.to_vec(),
            _ => value_ranges(values, (width as usize * height as usize).max(1)),
        };
        Ok(handles.into_iter().zip(ranges).collect())
    }

    /// [`TileAtlas::upload_rgb_planes_many`] plus each image's `[min, max]` over its three
    /// planes (gradient images are normalised jointly): one layer's gradient images.
    pub fn upload_rgb_images(
        &mut self,
        device: &wgpu::Device,
        queue: &wgpu::Queue,
        planes: &[f32],
        width: u32,
        height: u32,
        count: u32,
    ) -> Result<ReadyTiles> {
        let handles = self.upload_rgb_planes_many(device, queue, planes, width, height, count)?;
        let per = (3 * width as usize * height as usize).max(1);
        let ranges = value_ranges(planes, per);
        Ok(handles.into_iter().zip(ranges).collect())
    }

    /// Uploads an RGB image stored as planes `[3, height, width]` (e.g. a guided-backprop
    /// gradient); draw it with [`crate::render::Colormap::Rgb`].
    pub fn upload_rgb_planes(
        &mut self,
        device: &wgpu::Device,
        queue: &wgpu::Queue,
        planes: &[f32],
        width: u32,
        height: u32,
    ) -> Result<TileHandle> {
        let handles = self.upload_rgb_planes_many(device, queue, planes, width, height, 1)?;
        handles
            .into_iter()
            .next()
            .ok_or(RenderError::TileDataLength {
                got: planes.len(),
                expected: (3 * width * height) as usize,
                width,
                height,
                count: 3,
            })
    }

    /// Uploads `count` RGB images stored as `[count, 3, height, width]` (all channels of one
    /// layer under a backward method) in batched writes.
    pub fn upload_rgb_planes_many(
        &mut self,
        device: &wgpu::Device,
        queue: &wgpu::Queue,
        planes: &[f32],
        width: u32,
        height: u32,
        count: u32,
    ) -> Result<Vec<TileHandle>> {
        check_len(planes.len(), width, height, 3 * count)?;
        let tall = self.upload_many(device, queue, planes, width, 3 * height, count)?;
        Ok(tall
            .into_iter()
            .map(|t| TileHandle {
                size_px: [width, height],
                planes: 3,
                ..t
            })
            .collect())
    }

    /// Uploads an 8-bit picture (the input image) as RGB planes scaled to `0..=1`
    /// (alpha is dropped); draw it with [`crate::render::TileInstance::picture`].
    pub fn upload_rgba8(
        &mut self,
        device: &wgpu::Device,
        queue: &wgpu::Queue,
        image: &image::RgbaImage,
    ) -> Result<TileHandle> {
        let (w, h) = image.dimensions();
        self.upload_8bit(device, queue, image.pixels().map(|p| p.0), w, h)
    }

    /// [`TileAtlas::upload_rgba8`] for an RGB picture (a Grad-CAM overlay, a dataset crop).
    pub fn upload_rgb8(
        &mut self,
        device: &wgpu::Device,
        queue: &wgpu::Queue,
        image: &image::RgbImage,
    ) -> Result<TileHandle> {
        let (w, h) = image.dimensions();
        self.upload_8bit(device, queue, image.pixels().map(|p| p.0), w, h)
    }

    /// The first three channels of `pixels` (row-major, `width × height`) as RGB planes
    /// scaled to `0..=1`.
    fn upload_8bit<const C: usize>(
        &mut self,
        device: &wgpu::Device,
        queue: &wgpu::Queue,
        pixels: impl Iterator<Item = [u8; C]>,
        width: u32,
        height: u32,
    ) -> Result<TileHandle> {
        let n = (width * height) as usize;
        let mut planes = vec![0.0f32; 3 * n];
        for (i, px) in pixels.enumerate().take(n) {
            for (c, &v) in px.iter().take(3).enumerate() {
                planes[c * n + i] = f32::from(v) / 255.0;
            }
        }
        self.upload_rgb_planes(device, queue, &planes, width, height)
    }

    /// Copies `count` maps of `width`×`height` f32 from a GPU buffer (`[count, height, width]`
    /// starting at byte `offset`, a multiple of 4 — e.g. a burn tensor's storage; the buffer
    /// needs `COPY_SRC`) into the atlas without touching the CPU: at most three
    /// `copy_buffer_to_texture`s per layer touched, whatever `width` is. Submits its own
    /// command buffer: flush the producer's queue (burn's stream) first.
    #[allow(clippy::too_many_arguments)]
    pub fn copy_from_buffer(
        &mut self,
        device: &wgpu::Device,
        queue: &wgpu::Queue,
        buffer: &wgpu::Buffer,
        offset: u64,
        width: u32,
        height: u32,
        count: u32,
    ) -> Result<Vec<TileHandle>> {
        let texels = u64::from(width) * u64::from(height) * u64::from(count);
        let len = texels * 4;
        if !offset.is_multiple_of(4) || offset.saturating_add(len) > buffer.size() {
            return Err(RenderError::BufferRange {
                offset,
                len,
                size: buffer.size(),
            });
        }
        let start = self.allocate(device, queue, width, height, count)?;
        let mut encoder = device.create_command_encoder(&wgpu::CommandEncoderDescriptor {
            label: Some("tile atlas buffer copy encoder"),
        });
        for span in spans(start, texels, self.layer_size) {
            encoder.copy_buffer_to_texture(
                wgpu::TexelCopyBufferInfo {
                    buffer,
                    layout: wgpu::TexelCopyBufferLayout {
                        offset: offset + span.src_texel * 4,
                        // Full-row spans: 4·layer_size bytes, a multiple of 256.
                        bytes_per_row: (span.size[1] > 1).then_some(span.size[0] * 4),
                        rows_per_image: None,
                    },
                },
                texel_target(&self.texture, &span),
                extent(&span),
            );
        }
        queue.submit(Some(encoder.finish()));
        Ok(self.handles(start, width, height, count, 1))
    }

    /// Handles of `count` consecutive tiles of `planes` planes starting at texel `start`.
    fn handles(
        &self,
        start: u64,
        width: u32,
        height: u32,
        count: u32,
        planes: u32,
    ) -> Vec<TileHandle> {
        let stride = u64::from(width) * u64::from(height) * u64::from(planes);
        (0..u64::from(count))
            .map(|i| {
                let (layer, origin_px) = locate(start + i * stride, self.layer_size);
                TileHandle {
                    layer,
                    origin_px,
                    size_px: [width, height],
                    planes,
                }
            })
            .collect()
    }

    /// Reserves room for `count` tiles, growing the texture when new layers are touched;
    /// returns the first texel's linear index.
    fn allocate(
        &mut self,
        device: &wgpu::Device,
        queue: &wgpu::Queue,
        width: u32,
        height: u32,
        count: u32,
    ) -> Result<u64> {
        if width == 0 || height == 0 || count == 0 {
            return Err(RenderError::EmptyTile {
                width,
                height,
                count,
            });
        }
        let len = u64::from(width) * u64::from(height) * u64::from(count);
        let start = self.packer.allocate(len).ok_or(RenderError::AtlasFull {
            layers: self.max_layers,
            layer_size: self.layer_size,
            used: self.packer.used(),
            wanted: len,
        })?;
        self.ensure_layers(device, queue, self.packer.layers_used());
        Ok(start)
    }

    /// Grows the texture (doubling, up to `max_layers`) to at least `needed` layers, copying
    /// the existing layers over on the GPU.
    fn ensure_layers(&mut self, device: &wgpu::Device, queue: &wgpu::Queue, needed: u32) {
        if needed <= self.capacity_layers {
            return;
        }
        let layers = grown_layers(self.capacity_layers, needed, self.max_layers);
        let (texture, view) = create_texture(device, self.layer_size, layers);
        let mut encoder = device.create_command_encoder(&wgpu::CommandEncoderDescriptor {
            label: Some("tile atlas grow encoder"),
        });
        encoder.copy_texture_to_texture(
            self.texture.as_image_copy(),
            texture.as_image_copy(),
            wgpu::Extent3d {
                width: self.layer_size,
                height: self.layer_size,
                depth_or_array_layers: self.capacity_layers,
            },
        );
        // Earlier `write_texture`s to the old texture run first: queue writes are flushed at the
        // start of the next submission.
        queue.submit(Some(encoder.finish()));
        self.texture = texture;
        self.view = view;
        self.capacity_layers = layers;
        self.generation += 1;
    }
}

/// Layer count after growing from `current` to hold `needed`: doubling, capped at `max`.
pub fn grown_layers(current: u32, needed: u32, max: u32) -> u32 {
    let mut layers = current.max(1);
    while layers < needed {
        layers = layers.saturating_mul(2);
    }
    layers.min(max).max(needed.min(max))
}

fn check_len(got: usize, width: u32, height: u32, count: u32) -> Result<()> {
    let expected = width as usize * height as usize * count as usize;
    if got == expected {
        Ok(())
    } else {
        Err(RenderError::TileDataLength {
            got,
            expected,
            width,
            height,
            count,
        })
    }
}

fn texel_target<'a>(texture: &'a wgpu::Texture, span: &Span) -> wgpu::TexelCopyTextureInfo<'a> {
    wgpu::TexelCopyTextureInfo {
        texture,
        mip_level: 0,
        origin: wgpu::Origin3d {
            x: span.origin[0],
            y: span.origin[1],
            z: span.layer,
        },
        aspect: wgpu::TextureAspect::All,
    }
}

fn extent(span: &Span) -> wgpu::Extent3d {
    wgpu::Extent3d {
        width: span.size[0],
        height: span.size[1],
        depth_or_array_layers: 1,
    }
}

fn create_texture(
    device: &wgpu::Device,
    layer_size: u32,
    layers: u32,
) -> (wgpu::Texture, wgpu::TextureView) {
    let texture = device.create_texture(&wgpu::TextureDescriptor {
        label: Some("tile atlas (R32Float array)"),
        size: wgpu::Extent3d {
            width: layer_size,
            height: layer_size,
            depth_or_array_layers: layers,
        },
        mip_level_count: 1,
        sample_count: 1,
        dimension: wgpu::TextureDimension::D2,
        format: wgpu::TextureFormat::R32Float,
        usage: wgpu::TextureUsages::TEXTURE_BINDING
            | wgpu::TextureUsages::COPY_DST
            | wgpu::TextureUsages::COPY_SRC,
        view_formats: &[],
    });
    let view = texture.create_view(&wgpu::TextureViewDescriptor {
        label: Some("tile atlas view"),
        dimension: Some(wgpu::TextureViewDimension::D2Array),
        ..Default::default()
    });
    (texture, view)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn value_range_ignores_non_finite() {
        assert_eq!(value_range(&[2.0, -1.0, 5.0]), [-1.0, 5.0]);
        assert_eq!(value_range(&[f32::NAN, 3.0, f32::INFINITY]), [3.0, 3.0]);
        assert_eq!(value_range(&[f32::NAN]), [0.0, 0.0]);
        assert_eq!(value_range(&[]), [0.0, 0.0]);
    }

    #[test]
    fn layer_sides_are_powers_of_two_from_64() {
        assert_eq!(layer_side(4096, 16384), 4096);
        assert_eq!(layer_side(4096, 2048), 2048);
        assert_eq!(layer_side(3000, 16384), 2048);
        assert_eq!(layer_side(1, 16384), 64);
        assert_eq!(layer_side(100, 16384), 64);
    }

    #[test]
    fn layers_double_up_to_the_cap() {
        assert_eq!(grown_layers(1, 2, 256), 2);
        assert_eq!(grown_layers(2, 3, 256), 4);
        assert_eq!(grown_layers(4, 9, 256), 16);
        assert_eq!(grown_layers(128, 129, 200), 200);
        assert_eq!(grown_layers(1, 1, 1), 1);
    }
}
