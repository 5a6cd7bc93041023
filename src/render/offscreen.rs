//! An offscreen colour target (RGBA8, sRGB by default) and its read-back into an
//! [`image::RgbaImage`] (copy with 256-byte row padding, map, unpad).

use std::sync::mpsc;

use crate::render::{GpuContext, RenderError, Result};

/// A `width`×`height` texture to render into and read back.
#[derive(Debug)]
pub struct OffscreenTarget {
    texture: wgpu::Texture,
    view: wgpu::TextureView,
    width: u32,
    height: u32,
    format: wgpu::TextureFormat,
}

impl OffscreenTarget {
    /// The default screenshot format: 8-bit RGBA with sRGB encoding (what PNG viewers expect).
    pub const DEFAULT_FORMAT: wgpu::TextureFormat = wgpu::TextureFormat::Rgba8UnormSrgb;

    /// Creates a target; `format` must be one of the 8-bit RGBA/BGRA formats.
    pub fn new(
        ctx: &GpuContext,
        width: u32,
        height: u32,
        format: wgpu::TextureFormat,
    ) -> Result<Self> {
        let max = ctx.max_texture_side();
        if width == 0 || height == 0 || width > max || height > max {
            return Err(RenderError::InvalidSize { width, height, max });
        }
        if bgra_swizzle(format).is_none() {
            return Err(RenderError::UnsupportedFormat(format));
        }
        let texture = ctx.device.create_texture(&wgpu::TextureDescriptor {
            label: Some("offscreen target"),
            size: wgpu::Extent3d {
                width,
                height,
                depth_or_array_layers: 1,
            },
            mip_level_count: 1,
            sample_count: 1,
            dimension: wgpu::TextureDimension::D2,
            format,
            usage: wgpu::TextureUsages::RENDER_ATTACHMENT | wgpu::TextureUsages::COPY_SRC,
            view_formats: &[],
        });
        let view = texture.create_view(&wgpu::TextureViewDescriptor {
            label: Some("offscreen target view"),
            ..Default::default()
        });
        Ok(Self {
            texture,
            view,
            width,
            height,
            format,
        })
    }

    /// The view to use as a colour attachment.
    pub fn view(&self) -> &wgpu::TextureView {
        &self.view
    }

    /// The texture format.
    pub fn format(&self) -> wgpu::TextureFormat {
        self.format
    }

    /// `[width, height]` in pixels.
    pub fn size(&self) -> [u32; 2] {
        [self.width, self.height]
    }

    /// Copies the texture to the CPU (waits for the GPU) as straight RGBA8 bytes in the
    /// texture's own encoding (sRGB bytes for an sRGB format).
    pub fn read_rgba(&self, ctx: &GpuContext) -> Result<image::RgbaImage> {
        let padded_row = padded_bytes_per_row(self.width);
        let buffer = ctx.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("offscreen readback buffer"),
            size: u64::from(padded_row) * u64::from(self.height),
            usage: wgpu::BufferUsages::COPY_DST | wgpu::BufferUsages::MAP_READ,
            mapped_at_creation: false,
        });
        let mut encoder = ctx
            .device
            .create_command_encoder(&wgpu::CommandEncoderDescriptor {
                label: Some("offscreen readback encoder"),
            });
        encoder.copy_texture_to_buffer(
            self.texture.as_image_copy(),
            wgpu::TexelCopyBufferInfo {
                buffer: &buffer,
                layout: wgpu::TexelCopyBufferLayout {
                    offset: 0,
                    bytes_per_row: Some(padded_row),
                    rows_per_image: Some(self.height),
                },
            },
            wgpu::Extent3d {
                width: self.width,
                height: self.height,
                depth_or_array_layers: 1,
            },
        );
        let submission = ctx.queue.submit(Some(encoder.finish()));
        let bytes = map_read(ctx, &buffer, submission)?;
        let mut pixels = unpad_rows(&bytes, self.width, self.height, padded_row);
        if bgra_swizzle(self.format) == Some(true) {
            for px in pixels.chunks_exact_mut(4) {
                px.swap(0, 2);
            }
        }
        let got = pixels.len();
        image::RgbaImage::from_raw(self.width, self.height, pixels).ok_or(
            RenderError::ReadbackSize {
                got,
                width: self.width,
                height: self.height,
            },
        )
    }
}

/// `Some(false)` for RGBA8 formats, `Some(true)` for BGRA8 ones, `None` for anything else.
fn bgra_swizzle(format: wgpu::TextureFormat) -> Option<bool> {
    use wgpu::TextureFormat as F;
    match format {
        F::Rgba8Unorm | F::Rgba8UnormSrgb => Some(false),
        F::Bgra8Unorm | F::Bgra8UnormSrgb => Some(true),
        _ => None,
    }
}

/// Bytes per row of a `width`-pixel RGBA8 image padded to `COPY_BYTES_PER_ROW_ALIGNMENT` (256).
pub fn padded_bytes_per_row(width: u32) -> u32 {
    let unpadded = width * 4;
    unpadded.div_ceil(wgpu::COPY_BYTES_PER_ROW_ALIGNMENT) * wgpu::COPY_BYTES_PER_ROW_ALIGNMENT
}

/// Drops the row padding of a read-back RGBA8 image.
pub fn unpad_rows(bytes: &[u8], width: u32, height: u32, padded_row: u32) -> Vec<u8> {
    let row = width as usize * 4;
    bytes
        .chunks(padded_row as usize)
        .take(height as usize)
        .flat_map(|r| &r[..row.min(r.len())])
        .copied()
        .collect()
}

/// Maps a `MAP_READ` buffer after `submission` finished and copies its bytes out.
pub(crate) fn map_read(
    ctx: &GpuContext,
    buffer: &wgpu::Buffer,
    submission: wgpu::SubmissionIndex,
) -> Result<Vec<u8>> {
    let (tx, rx) = mpsc::channel();
    buffer.map_async(wgpu::MapMode::Read, .., move |res| {
        // The receiver lives until after the poll below; a failed send only means it is gone.
        let _ = tx.send(res);
    });
    ctx.device.poll(wgpu::PollType::Wait {
        submission_index: Some(submission),
        timeout: None,
    })?;
    rx.recv().map_err(|_| RenderError::MapCallbackLost)??;
    let bytes = buffer
        .get_mapped_range(..)
        .map(|view| view.to_vec())
        .map_err(|_| RenderError::MapCallbackLost)?;
    buffer.unmap();
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_are_padded_to_256_bytes_and_unpadded_back() {
        assert_eq!(padded_bytes_per_row(1), 256);
        assert_eq!(padded_bytes_per_row(64), 256);
        assert_eq!(padded_bytes_per_row(65), 512);
        let (w, h, pad) = (2u32, 2u32, 256u32);
        let mut bytes = vec![0u8; (pad * h) as usize];
        bytes[..8].copy_from_slice(&[1, 2, 3, 4, 5, 6, 7, 8]);
        bytes[256..264].copy_from_slice(&[9, 10, 11, 12, 13, 14, 15, 16]);
        assert_eq!(unpad_rows(&bytes, w, h, pad), (1..=16).collect::<Vec<u8>>());
    }
}
