//! The activation tile atlas: raw `f32` activation maps in an `R32Float` 2-D texture array,
//! shelf-packed, with layers added geometrically as needed (uploads from the CPU, or copies
//! from a GPU buffer such as a burn tensor's, without a CPU round trip).
//!
//! Values are stored unnormalised; the tile shader normalises per tile (see
//! [`crate::render::TileInstance::value_range`]). `R32Float` is not filterable, so the shader
//! reads texels with `textureLoad` (nearest), which is what activation maps want anyway.

use std::sync::atomic::{AtomicU64, Ordering};

use crate::render::packer::{Placement, ShelfPacker};
use crate::render::{RenderError, Result};

/// Largest atlas layer side used, even on devices that allow bigger textures.
pub const MAX_LAYER_SIZE: u32 = 4096;

/// Source of [`TileAtlas::id`]s.
static NEXT_ATLAS_ID: AtomicU64 = AtomicU64::new(1);

/// Where one tile lives in the atlas.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TileHandle {
    /// Array layer.
    pub layer: u32,
    /// Top-left texel of the first plane.
    pub origin_px: [u32; 2],
    /// Size of one plane in texels.
    pub size_px: [u32; 2],
    /// Planes stacked vertically below each other: 1 for a map, 3 for an RGB image `[3,H,W]`.
    pub planes: u32,
}

/// Finite `[min, max]` of `values`; `[0, 0]` (drawn black) when none is finite.
pub fn value_range(values: &[f32]) -> [f32; 2] {
    values
        .iter()
        .copied()
        .filter(|v| v.is_finite())
        .fold(None, |acc: Option<[f32; 2]>, v| match acc {
            None => Some([v, v]),
            Some([lo, hi]) => Some([lo.min(v), hi.max(v)]),
        })
        .unwrap_or([0.0, 0.0])
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
    packer: ShelfPacker,
    /// Bumped whenever the texture is replaced; renderers rebuild bind groups on change.
    generation: u64,
    /// Reused interleaving buffer for batched uploads.
    staging: Vec<f32>,
}

impl TileAtlas {
    /// An atlas with layers of `min(4096, max_texture_dimension_2d)` and as many layers as
    /// the device allows (`max_texture_array_layers`), starting with one.
    pub fn new(device: &wgpu::Device) -> Self {
        Self::with_layout(device, MAX_LAYER_SIZE, u32::MAX)
    }

    /// An atlas with layers of `layer_size` (clamped to the device) and at most `max_layers`.
    pub fn with_layout(device: &wgpu::Device, layer_size: u32, max_layers: u32) -> Self {
        let limits = device.limits();
        let layer_size = layer_size.clamp(1, limits.max_texture_dimension_2d);
        let max_layers = max_layers.clamp(1, limits.max_texture_array_layers);
        let (texture, view) = create_texture(device, layer_size, 1);
        Self {
            id: NEXT_ATLAS_ID.fetch_add(1, Ordering::Relaxed),
            texture,
            view,
            layer_size,
            capacity_layers: 1,
            max_layers,
            packer: ShelfPacker::new(layer_size, max_layers),
            generation: 0,
            staging: Vec::new(),
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
        handles.into_iter().next().ok_or(RenderError::TileDataLength {
            got: values.len(),
            expected: (width * height) as usize,
            width,
            height,
            count: 1,
        })
    }

    /// Uploads `count` maps of `width`×`height` stored contiguously (`[count, height, width]`,
    /// e.g. all channels of one activation). Tiles that land side by side on a shelf are sent
    /// in one `write_texture`, so a layer with thousands of channels costs a few calls.
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
        let placements = self.allocate(device, queue, width, height, count)?;
        let tile_len = (width * height) as usize;
        let mut start = 0;
        while start < placements.len() {
            // A run: consecutive tiles on one shelf, left to right.
            let mut end = start + 1;
            while end < placements.len() && continues(&placements[end - 1], &placements[end], width)
            {
                end += 1;
            }
            let run = end - start;
            self.staging.clear();
            self.staging.reserve(run * tile_len);
            for row in 0..height as usize {
                for t in start..end {
                    let base = t * tile_len + row * width as usize;
                    self.staging
                        .extend_from_slice(&values[base..base + width as usize]);
                }
            }
            let p = placements[start];
            write_region(
                queue,
                &self.texture,
                p,
                [width * run as u32, height],
                &self.staging,
            );
            start = end;
        }
        Ok(placements
            .into_iter()
            .map(|p| handle(p, [width, height], 1))
            .collect())
    }

    /// Uploads an RGB image stored as planes `[3, height, width]` (e.g. a guided-backprop
    /// gradient); draw it with [`crate::render::Colormap::Rgb`]. The planes are stacked
    /// vertically, so the atlas region is `width`×`3·height`.
    pub fn upload_rgb_planes(
        &mut self,
        device: &wgpu::Device,
        queue: &wgpu::Queue,
        planes: &[f32],
        width: u32,
        height: u32,
    ) -> Result<TileHandle> {
        let handles = self.upload_rgb_planes_many(device, queue, planes, width, height, 1)?;
        handles.into_iter().next().ok_or(RenderError::TileDataLength {
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
        let n = (w * h) as usize;
        let mut planes = vec![0.0f32; 3 * n];
        for (i, px) in image.pixels().enumerate() {
            for c in 0..3 {
                planes[c * n + i] = f32::from(px.0[c]) / 255.0;
            }
        }
        self.upload_rgb_planes(device, queue, &planes, w, h)
    }

    /// Copies `count` maps of `width`×`height` f32 from a GPU buffer (`[count, height, width]`
    /// starting at byte `offset`, e.g. a burn tensor's storage; the buffer needs `COPY_SRC`)
    /// into the atlas without touching the CPU. Submits its own command buffer: flush the
    /// producer's queue (burn's stream) first. Rows of 64 texels or a multiple of 64 go in one
    /// copy per tile; other widths are copied row by row (256-byte row alignment).
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
        let row_bytes = u64::from(width) * 4;
        let tile_bytes = row_bytes * u64::from(height);
        let len = tile_bytes * u64::from(count);
        if !offset.is_multiple_of(4) || offset.saturating_add(len) > buffer.size() {
            return Err(RenderError::BufferRange {
                offset,
                len,
                size: buffer.size(),
            });
        }
        let placements = self.allocate(device, queue, width, height, count)?;
        let mut encoder = device.create_command_encoder(&wgpu::CommandEncoderDescriptor {
            label: Some("tile atlas buffer copy encoder"),
        });
        let aligned = row_bytes.is_multiple_of(u64::from(wgpu::COPY_BYTES_PER_ROW_ALIGNMENT));
        for (i, p) in placements.iter().enumerate() {
            let tile_offset = offset + i as u64 * tile_bytes;
            // (row offset, rows) per copy: the whole tile when aligned, else one row at a time.
            let copies: Vec<(u32, u32)> = if aligned {
                vec![(0, height)]
            } else {
                (0..height).map(|r| (r, 1)).collect()
            };
            for (row, rows) in copies {
                encoder.copy_buffer_to_texture(
                    wgpu::TexelCopyBufferInfo {
                        buffer,
                        layout: wgpu::TexelCopyBufferLayout {
                            offset: tile_offset + u64::from(row) * row_bytes,
                            bytes_per_row: (rows > 1).then_some(width * 4),
                            rows_per_image: None,
                        },
                    },
                    texel_target(&self.texture, *p, row),
                    wgpu::Extent3d {
                        width,
                        height: rows,
                        depth_or_array_layers: 1,
                    },
                );
            }
        }
        queue.submit(Some(encoder.finish()));
        Ok(placements
            .into_iter()
            .map(|p| handle(p, [width, height], 1))
            .collect())
    }

    /// Places `count` tiles, growing the texture when the packer opens new layers.
    fn allocate(
        &mut self,
        device: &wgpu::Device,
        queue: &wgpu::Queue,
        width: u32,
        height: u32,
        count: u32,
    ) -> Result<Vec<Placement>> {
        if !self.packer.fits_layer(width, height) {
            return Err(RenderError::TileTooLarge {
                width,
                height,
                layer_size: self.layer_size,
            });
        }
        let mut out = Vec::with_capacity(count as usize);
        for _ in 0..count {
            let p = self
                .packer
                .allocate(width, height)
                .ok_or(RenderError::AtlasFull {
                    layers: self.packer.layers_used(),
                    layer_size: self.layer_size,
                    width,
                    height,
                })?;
            out.push(p);
        }
        self.ensure_layers(device, queue, self.packer.layers_used());
        Ok(out)
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

/// Whether `b` sits directly right of `a` on the same shelf.
fn continues(a: &Placement, b: &Placement, width: u32) -> bool {
    a.layer == b.layer && a.origin[1] == b.origin[1] && a.origin[0] + width == b.origin[0]
}

fn handle(p: Placement, size_px: [u32; 2], planes: u32) -> TileHandle {
    TileHandle {
        layer: p.layer,
        origin_px: p.origin,
        size_px,
        planes,
    }
}

fn texel_target(texture: &wgpu::Texture, p: Placement, row: u32) -> wgpu::TexelCopyTextureInfo<'_> {
    wgpu::TexelCopyTextureInfo {
        texture,
        mip_level: 0,
        origin: wgpu::Origin3d {
            x: p.origin[0],
            y: p.origin[1] + row,
            z: p.layer,
        },
        aspect: wgpu::TextureAspect::All,
    }
}

fn write_region(
    queue: &wgpu::Queue,
    texture: &wgpu::Texture,
    p: Placement,
    size: [u32; 2],
    data: &[f32],
) {
    queue.write_texture(
        texel_target(texture, p, 0),
        bytemuck::cast_slice(data),
        wgpu::TexelCopyBufferLayout {
            offset: 0,
            bytes_per_row: Some(size[0] * 4),
            rows_per_image: Some(size[1]),
        },
        wgpu::Extent3d {
            width: size[0],
            height: size[1],
            depth_or_array_layers: 1,
        },
    );
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
    fn layers_double_up_to_the_cap() {
        assert_eq!(grown_layers(1, 2, 256), 2);
        assert_eq!(grown_layers(2, 3, 256), 4);
        assert_eq!(grown_layers(4, 9, 256), 16);
        assert_eq!(grown_layers(128, 129, 200), 200);
        assert_eq!(grown_layers(1, 1, 1), 1);
    }

    #[test]
    fn runs_are_detected_on_one_shelf_only() {
        let a = Placement { layer: 0, origin: [0, 0] };
        let b = Placement { layer: 0, origin: [7, 0] };
        let c = Placement { layer: 0, origin: [0, 7] };
        let d = Placement { layer: 1, origin: [14, 0] };
        assert!(continues(&a, &b, 7));
        assert!(!continues(&b, &c, 7));
        assert!(!continues(&b, &d, 7));
    }
}
