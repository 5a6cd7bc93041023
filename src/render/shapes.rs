//! Flat shapes for the canvases (filled/outlined/rounded rects, lines, bars, radio buttons,
//! links) drawn as antialiased instanced quads (shaders/shapes.wgsl); two layers — below
//! and above the tiles — share one upload.

use std::mem::size_of;
use std::ops::Range;

use bytemuck::{Pod, Zeroable};

use crate::render::SHADERS;
use crate::render::buffer::InstanceBuffer;
use crate::render::pipeline::{
    Globals, GlobalsUniform, InstancedPipelineDesc, globals_layout_entry, instanced_pipeline,
};
use crate::render::tiles::rect_visible;

/// What a [`ShapeInstance`] draws. Keep in sync with `KIND_*` in shaders/shapes.wgsl.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ShapeKind {
    /// A filled (optionally rounded) rect.
    Fill = 0,
    /// The inside border of a rect, `stroke_px` wide.
    Outline = 1,
    /// A segment `stroke_px` thick (for crisp 1-px lines put the ends on pixel centres, `.5`).
    Line = 2,
}

/// One shape: a filled or outlined (optionally rounded) rect, or a line, in target pixels. A
/// typed description; the renderer turns it into the GPU instance layout.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ShapeInstance {
    /// Rect `x, y, w, h`, or line `x0, y0, x1, y1`, in pixels.
    geom: [f32; 4],
    /// sRGB colour, straight alpha.
    color: [f32; 4],
    kind: ShapeKind,
    /// Outline width or line thickness in pixels.
    stroke_px: f32,
    /// Corner radius of rects in pixels (half the height gives a pill or, square, a circle).
    radius_px: f32,
}

/// One shape as the GPU reads it. Keep in sync with `struct Instance` in shaders/shapes.wgsl
/// (offsets packed as `vertex_attr_array!` does).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Pod, Zeroable)]
struct ShapeGpu {
    geom: [f32; 4],
    color: [f32; 4],
    kind: u32,
    stroke_px: f32,
    radius_px: f32,
}

const _: () = {
    use std::mem::{offset_of, size_of};
    assert!(offset_of!(ShapeGpu, geom) == 0);
    assert!(offset_of!(ShapeGpu, color) == 16);
    assert!(offset_of!(ShapeGpu, kind) == 32);
    assert!(offset_of!(ShapeGpu, stroke_px) == 36);
    assert!(offset_of!(ShapeGpu, radius_px) == 40);
    assert!(size_of::<ShapeGpu>() == 44);
};

impl From<&ShapeInstance> for ShapeGpu {
    fn from(s: &ShapeInstance) -> Self {
        Self {
            geom: s.geom,
            color: s.color,
            kind: s.kind as u32,
            stroke_px: s.stroke_px,
            radius_px: s.radius_px,
        }
    }
}

impl ShapeInstance {
    /// A filled rect `x, y, w, h` (also bars).
    pub fn fill_rect(rect: [f32; 4], color: [f32; 4]) -> Self {
        Self {
            geom: rect,
            color,
            kind: ShapeKind::Fill,
            stroke_px: 0.0,
            radius_px: 0.0,
        }
    }

    /// A rect border of `width_px`, drawn inside `rect`.
    pub fn outline_rect(rect: [f32; 4], width_px: f32, color: [f32; 4]) -> Self {
        Self {
            kind: ShapeKind::Outline,
            stroke_px: width_px,
            ..Self::fill_rect(rect, color)
        }
    }

    /// A line from `from` to `to`, `width_px` thick.
    pub fn line(from: [f32; 2], to: [f32; 2], width_px: f32, color: [f32; 4]) -> Self {
        Self {
            geom: [from[0], from[1], to[0], to[1]],
            color,
            kind: ShapeKind::Line,
            stroke_px: width_px,
            radius_px: 0.0,
        }
    }

    /// A filled circle (radio buttons, nodes).
    pub fn circle(centre: [f32; 2], radius: f32, color: [f32; 4]) -> Self {
        Self::fill_rect(
            [
                centre[0] - radius,
                centre[1] - radius,
                2.0 * radius,
                2.0 * radius,
            ],
            color,
        )
        .rounded(radius)
    }

    /// The same rect with rounded corners.
    pub fn rounded(mut self, radius_px: f32) -> Self {
        self.radius_px = radius_px;
        self
    }

    /// The same shape scaled by `factor` (logical → physical pixels).
    pub(super) fn scaled(mut self, factor: f32) -> Self {
        self.geom = self.geom.map(|x| x * factor);
        self.stroke_px *= factor;
        self.radius_px *= factor;
        self
    }

    /// Axis-aligned bounds `x, y, w, h` including the antialiasing margin.
    pub fn bounds(&self) -> [f32; 4] {
        let [a, b, c, d] = self.geom;
        if self.kind == ShapeKind::Line {
            let m = self.stroke_px * 0.5 + 1.0;
            let (x0, x1) = (a.min(c) - m, a.max(c) + m);
            let (y0, y1) = (b.min(d) - m, b.max(d) + m);
            [x0, y0, x1 - x0, y1 - y0]
        } else {
            [a - 1.0, b - 1.0, c + 2.0, d + 2.0]
        }
    }
}

/// Draws two lists of [`ShapeInstance`]s (below and above the tiles) from one buffer.
#[derive(Debug)]
pub struct ShapeRenderer {
    pipeline: wgpu::RenderPipeline,
    bind_group: wgpu::BindGroup,
    globals: GlobalsUniform,
    instances: InstanceBuffer,
    visible: Vec<ShapeGpu>,
    below: Range<u32>,
    above: Range<u32>,
    format: wgpu::TextureFormat,
}

impl ShapeRenderer {
    /// Builds the pipeline for targets of `format` (alpha blended).
    pub fn new(device: &wgpu::Device, format: wgpu::TextureFormat) -> Self {
        let layout = device.create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor {
            label: Some("shapes bind group layout"),
            entries: &[globals_layout_entry(0)],
        });
        let attributes = wgpu::vertex_attr_array![
            0 => Float32x4, 1 => Float32x4, 2 => Uint32, 3 => Float32, 4 => Float32
        ];
        let pipeline = instanced_pipeline(
            device,
            &InstancedPipelineDesc {
                label: "shapes pipeline",
                shader_label: "shapes shader",
                shader_source: SHADERS[1].1,
                bind_group_layout: &layout,
                instance_stride: size_of::<ShapeGpu>() as u64,
                attributes: &attributes,
                format,
                blend: Some(wgpu::BlendState::ALPHA_BLENDING),
            },
        );
        let globals = GlobalsUniform::new(device, "shapes globals");
        let bind_group = device.create_bind_group(&wgpu::BindGroupDescriptor {
            label: Some("shapes bind group"),
            layout: &layout,
            entries: &[wgpu::BindGroupEntry {
                binding: 0,
                resource: globals.buffer.as_entire_binding(),
            }],
        });
        Self {
            pipeline,
            bind_group,
            globals,
            instances: InstanceBuffer::new(device, "shapes instances"),
            visible: Vec::new(),
            below: 0..0,
            above: 0..0,
            format,
        }
    }

    /// Uploads the visible shapes of both layers; returns how many will be drawn.
    pub fn prepare(
        &mut self,
        device: &wgpu::Device,
        queue: &wgpu::Queue,
        below: &[ShapeInstance],
        above: &[ShapeInstance],
        viewport: [u32; 2],
    ) -> usize {
        self.globals.set(queue, Globals::new(viewport, self.format));
        let vp = [viewport[0] as f32, viewport[1] as f32];
        self.visible.clear();
        self.visible.extend(
            below
                .iter()
                .filter(|s| rect_visible(s.bounds(), vp))
                .map(ShapeGpu::from),
        );
        let split = self.visible.len() as u32;
        self.visible.extend(
            above
                .iter()
                .filter(|s| rect_visible(s.bounds(), vp))
                .map(ShapeGpu::from),
        );
        let end = self.visible.len() as u32;
        self.below = 0..split;
        self.above = split..end;
        self.instances
            .upload(device, queue, bytemuck::cast_slice(&self.visible));
        self.visible.len()
    }

    /// Records the shapes drawn below the tiles.
    pub fn render_below(&self, pass: &mut wgpu::RenderPass<'_>) {
        self.draw(pass, self.below.clone());
    }

    /// Records the shapes drawn above the tiles (and below text).
    pub fn render_above(&self, pass: &mut wgpu::RenderPass<'_>) {
        self.draw(pass, self.above.clone());
    }

    fn draw(&self, pass: &mut wgpu::RenderPass<'_>, range: Range<u32>) {
        if range.is_empty() {
            return;
        }
        pass.set_pipeline(&self.pipeline);
        pass.set_bind_group(0, &self.bind_group, &[]);
        pass.set_vertex_buffer(0, self.instances.slice());
        pass.draw(0..4, range);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds_cover_lines_in_any_direction() {
        let l = ShapeInstance::line([10.0, 20.0], [4.0, 2.0], 2.0, [1.0; 4]);
        assert_eq!(l.bounds(), [2.0, 0.0, 10.0, 22.0]);
        let r = ShapeInstance::fill_rect([1.0, 2.0, 3.0, 4.0], [1.0; 4]);
        assert_eq!(r.bounds(), [0.0, 1.0, 5.0, 6.0]);
        assert!(!rect_visible(
            ShapeInstance::fill_rect([-20.0, 0.0, 10.0, 10.0], [1.0; 4]).bounds(),
            [100.0, 100.0]
        ));
    }
}
