//! Pieces shared by the instanced pipelines: the per-frame `Globals` uniform (written only
//! when it changes) and the builder for a "one quad per instance" render pipeline.

use bytemuck::{Pod, Zeroable};

/// Per-target constants. Keep in sync with `struct Globals` in shaders/tiles.wgsl and
/// shaders/shapes.wgsl.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Pod, Zeroable)]
pub(crate) struct Globals {
    /// Target size in pixels.
    pub viewport_px: [f32; 2],
    /// 1 when the target format is `*Srgb` (shaders then convert sRGB colours to linear).
    pub output_srgb: u32,
    pub _pad: u32,
}

// WGSL: vec2<f32> at 0, u32 at 8, padding to the uniform's 16-byte size.
const _: () = {
    use std::mem::{offset_of, size_of};
    assert!(offset_of!(Globals, viewport_px) == 0);
    assert!(offset_of!(Globals, output_srgb) == 8);
    assert!(size_of::<Globals>() == 16);
};

impl Globals {
    pub(crate) fn new(viewport: [u32; 2], format: wgpu::TextureFormat) -> Self {
        Self {
            viewport_px: [viewport[0].max(1) as f32, viewport[1].max(1) as f32],
            output_srgb: u32::from(format.is_srgb()),
            _pad: 0,
        }
    }
}

/// The `Globals` uniform buffer, rewritten only when its value changes.
#[derive(Debug)]
pub(crate) struct GlobalsUniform {
    pub buffer: wgpu::Buffer,
    last: Option<Globals>,
}

impl GlobalsUniform {
    pub(crate) fn new(device: &wgpu::Device, label: &'static str) -> Self {
        Self {
            buffer: device.create_buffer(&wgpu::BufferDescriptor {
                label: Some(label),
                size: std::mem::size_of::<Globals>() as u64,
                usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
                mapped_at_creation: false,
            }),
            last: None,
        }
    }

    /// Writes `value` if it differs from the last write; returns whether it wrote.
    pub(crate) fn set(&mut self, queue: &wgpu::Queue, value: Globals) -> bool {
        if self.last == Some(value) {
            return false;
        }
        queue.write_buffer(&self.buffer, 0, bytemuck::bytes_of(&value));
        self.last = Some(value);
        true
    }
}

/// Layout entry for the `Globals` uniform at `binding`.
pub(crate) fn globals_layout_entry(binding: u32) -> wgpu::BindGroupLayoutEntry {
    wgpu::BindGroupLayoutEntry {
        binding,
        visibility: wgpu::ShaderStages::VERTEX | wgpu::ShaderStages::FRAGMENT,
        ty: wgpu::BindingType::Buffer {
            ty: wgpu::BufferBindingType::Uniform,
            has_dynamic_offset: false,
            min_binding_size: wgpu::BufferSize::new(std::mem::size_of::<Globals>() as u64),
        },
        count: None,
    }
}

/// What differs between the instanced pipelines.
pub(crate) struct InstancedPipelineDesc<'a> {
    pub label: &'static str,
    pub shader_label: &'static str,
    pub shader_source: &'static str,
    pub bind_group_layout: &'a wgpu::BindGroupLayout,
    pub instance_stride: u64,
    pub attributes: &'a [wgpu::VertexAttribute],
    pub format: wgpu::TextureFormat,
    pub blend: Option<wgpu::BlendState>,
}

/// A pipeline drawing a 4-vertex triangle strip per instance (`vs_main`/`fs_main`).
pub(crate) fn instanced_pipeline(
    device: &wgpu::Device,
    desc: &InstancedPipelineDesc<'_>,
) -> wgpu::RenderPipeline {
    let shader = device.create_shader_module(wgpu::ShaderModuleDescriptor {
        label: Some(desc.shader_label),
        source: wgpu::ShaderSource::Wgsl(desc.shader_source.into()),
    });
    let layout = device.create_pipeline_layout(&wgpu::PipelineLayoutDescriptor {
        label: Some(desc.label),
        bind_group_layouts: &[Some(desc.bind_group_layout)],
        immediate_size: 0,
    });
    device.create_render_pipeline(&wgpu::RenderPipelineDescriptor {
        label: Some(desc.label),
        layout: Some(&layout),
        vertex: wgpu::VertexState {
            module: &shader,
            entry_point: Some("vs_main"),
            compilation_options: wgpu::PipelineCompilationOptions::default(),
            buffers: &[Some(wgpu::VertexBufferLayout {
                array_stride: desc.instance_stride,
                step_mode: wgpu::VertexStepMode::Instance,
                attributes: desc.attributes,
            })],
        },
        primitive: wgpu::PrimitiveState {
            topology: wgpu::PrimitiveTopology::TriangleStrip,
            ..Default::default()
        },
        depth_stencil: None,
        multisample: wgpu::MultisampleState::default(),
        fragment: Some(wgpu::FragmentState {
            module: &shader,
            entry_point: Some("fs_main"),
            compilation_options: wgpu::PipelineCompilationOptions::default(),
            targets: &[Some(wgpu::ColorTargetState {
                format: desc.format,
                blend: desc.blend,
                write_mask: wgpu::ColorWrites::ALL,
            })],
        }),
        multiview_mask: None,
        cache: None,
    })
}
