//! The instanced tile renderer: every visible activation tile (and RGB image) in ONE draw,
//! each instance a quad that reads its atlas region and applies per-tile min-max
//! normalisation and a colour map on the GPU (shaders/tiles.wgsl).

use std::mem::size_of;

use bytemuck::{Pod, Zeroable};

use crate::render::buffer::InstanceBuffer;
use crate::render::pipeline::{
    Globals, GlobalsUniform, InstancedPipelineDesc, globals_layout_entry, instanced_pipeline,
};
use crate::render::{SHADERS, TileAtlas, TileHandle};

/// How a tile's normalised values become colours. Keep in sync with `COLORMAP_*` in
/// shaders/tiles.wgsl.
#[repr(u32)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Colormap {
    /// Black (min) to white (max), as Matlab's `mat2gray`.
    #[default]
    Grey = 0,
    /// Signed: 0 is mid-grey, negative blue, positive red, scaled by `max(|min|, |max|)`.
    Diverging = 1,
    /// Perceptual (viridis, polynomial fit).
    Viridis = 2,
    /// Three planes stacked vertically (`[3,H,W]`) as R, G, B, normalised jointly.
    Rgb = 3,
}

impl Colormap {
    /// All single-channel maps, for UI pickers.
    pub const SCALAR: [Colormap; 3] = [Colormap::Grey, Colormap::Diverging, Colormap::Viridis];
}

/// One tile on screen: where (`rect_px`, target pixels), which atlas texels (`handle`), how
/// its values map to colours (`value_range`, `colormap`), and an optional border. A typed
/// description; the renderer turns it into the GPU instance layout.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct TileInstance {
    rect_px: [f32; 4],
    handle: TileHandle,
    value_range: [f32; 2],
    colormap: Colormap,
    border_px: f32,
    border_rgba: [f32; 4],
}

impl TileInstance {
    /// A tile showing `handle` in `rect_px` (`x, y, w, h`) with the normalisation range
    /// `[min, max]` (mapped to black..white; `max <= min` draws the tile black) and map.
    pub fn new(
        rect_px: [f32; 4],
        handle: TileHandle,
        value_range: [f32; 2],
        colormap: Colormap,
    ) -> Self {
        Self {
            rect_px,
            handle,
            value_range,
            colormap,
            border_px: 0.0,
            border_rgba: [0.0; 4],
        }
    }

    /// An 8-bit picture uploaded with [`TileAtlas::upload_rgba8`] (values already in `0..=1`).
    pub fn picture(rect_px: [f32; 4], handle: TileHandle) -> Self {
        Self::new(rect_px, handle, [0.0, 1.0], Colormap::Rgb)
    }

    /// The same tile with a border of `width_px` (drawn inside the rect; 0 for none) in
    /// `rgba` (sRGB; alpha mixes it over the tile).
    pub fn with_border(mut self, width_px: f32, rgba: [f32; 4]) -> Self {
        self.border_px = width_px;
        self.border_rgba = rgba;
        self
    }

    /// `x, y, w, h` in target pixels.
    pub fn rect_px(&self) -> [f32; 4] {
        self.rect_px
    }

    /// Which atlas tile it shows.
    pub fn handle(&self) -> TileHandle {
        self.handle
    }

    /// The border: width in pixels and sRGB colour.
    pub fn border(&self) -> (f32, [f32; 4]) {
        (self.border_px, self.border_rgba)
    }

    /// The same tile with its rect and border scaled by `factor` (logical → physical pixels).
    pub(super) fn scaled(mut self, factor: f32) -> Self {
        self.rect_px = self.rect_px.map(|x| x * factor);
        self.border_px *= factor;
        self
    }
}

/// One tile as the GPU reads it. Keep in sync with `struct Instance` in shaders/tiles.wgsl
/// (field order = attribute locations 0..=7, offsets packed as `vertex_attr_array!` does).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Pod, Zeroable)]
struct TileGpu {
    rect_px: [f32; 4],
    value_range: [f32; 2],
    origin_px: [u32; 2],
    size_px: [u32; 2],
    layer: u32,
    colormap: u32,
    border_rgba: [f32; 4],
    border_px: f32,
}

const _: () = {
    use std::mem::{offset_of, size_of};
    assert!(offset_of!(TileGpu, rect_px) == 0);
    assert!(offset_of!(TileGpu, value_range) == 16);
    assert!(offset_of!(TileGpu, origin_px) == 24);
    assert!(offset_of!(TileGpu, size_px) == 32);
    assert!(offset_of!(TileGpu, layer) == 40);
    assert!(offset_of!(TileGpu, colormap) == 44);
    assert!(offset_of!(TileGpu, border_rgba) == 48);
    assert!(offset_of!(TileGpu, border_px) == 64);
    assert!(size_of::<TileGpu>() == 68);
};

impl From<&TileInstance> for TileGpu {
    fn from(t: &TileInstance) -> Self {
        Self {
            rect_px: t.rect_px,
            value_range: t.value_range,
            origin_px: t.handle.origin_px,
            size_px: t.handle.size_px,
            layer: t.handle.layer,
            colormap: t.colormap as u32,
            border_rgba: t.border_rgba,
            border_px: t.border_px,
        }
    }
}

/// Whether a rect `x, y, w, h` has area and overlaps the `width`×`height` viewport.
pub fn rect_visible(rect: [f32; 4], viewport: [f32; 2]) -> bool {
    let [x, y, w, h] = rect;
    w > 0.0 && h > 0.0 && x < viewport[0] && y < viewport[1] && x + w > 0.0 && y + h > 0.0
}

/// The tiles that can cover at least one pixel of the viewport (the only ones that cost GPU work).
pub fn visible_tiles(
    tiles: &[TileInstance],
    viewport: [u32; 2],
) -> impl Iterator<Item = &TileInstance> {
    let vp = [viewport[0] as f32, viewport[1] as f32];
    tiles.iter().filter(move |t| rect_visible(t.rect_px, vp))
}

/// CPU twin of the shader's colour maps: the sRGB colour of value `v` in a tile with
/// `range` (for tests and CPU exports).
pub fn colormap_srgb(colormap: Colormap, v: f32, range: [f32; 2]) -> [f32; 3] {
    let [lo, hi] = range;
    if hi <= lo {
        return [0.0; 3];
    }
    let t = if v.is_finite() {
        ((v - lo) / (hi - lo)).clamp(0.0, 1.0)
    } else {
        0.0
    };
    match colormap {
        Colormap::Grey | Colormap::Rgb => [t; 3],
        Colormap::Viridis => viridis(t),
        Colormap::Diverging => {
            let scale = lo.abs().max(hi.abs());
            let s = if v.is_finite() && scale > 0.0 {
                (v / scale).clamp(-1.0, 1.0)
            } else {
                0.0
            };
            let end = if s >= 0.0 {
                [0.85, 0.08, 0.08]
            } else {
                [0.08, 0.25, 0.85]
            };
            end.map(|e| 0.5 + (e - 0.5) * s.abs())
        }
    }
}

fn viridis(t: f32) -> [f32; 3] {
    const C: [[f32; 3]; 7] = [
        [0.277_727_33, 0.005_407_344_5, 0.334_099_8],
        [0.105_093_04, 1.404_613_5, 1.384_590_2],
        [-0.330_861_83, 0.214_847_56, 0.095_095_16],
        [-4.634_230_5, -5.799_101, -19.332_441],
        [6.228_27, 14.179_933, 56.690_55],
        [4.776_385, -13.745_145, -65.353_03],
        [-5.435_456, 4.645_852_6, 26.312_435],
    ];
    std::array::from_fn(|i| {
        C.iter()
            .rev()
            .fold(0.0, |acc, c| acc * t + c[i])
            .clamp(0.0, 1.0)
    })
}

/// Draws [`TileInstance`]s from one [`TileAtlas`] in a single instanced draw.
#[derive(Debug)]
pub struct TileRenderer {
    pipeline: wgpu::RenderPipeline,
    layout: wgpu::BindGroupLayout,
    globals: GlobalsUniform,
    /// Bind group and the atlas (id, generation) it was built for.
    bind_group: Option<((u64, u64), wgpu::BindGroup)>,
    instances: InstanceBuffer,
    visible: Vec<TileGpu>,
    count: u32,
    format: wgpu::TextureFormat,
}

impl TileRenderer {
    /// Builds the pipeline for targets of `format`.
    pub fn new(device: &wgpu::Device, format: wgpu::TextureFormat) -> Self {
        let layout = device.create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor {
            label: Some("tiles bind group layout"),
            entries: &[
                globals_layout_entry(0),
                wgpu::BindGroupLayoutEntry {
                    binding: 1,
                    visibility: wgpu::ShaderStages::VERTEX | wgpu::ShaderStages::FRAGMENT,
                    ty: wgpu::BindingType::Texture {
                        sample_type: wgpu::TextureSampleType::Float { filterable: false },
                        view_dimension: wgpu::TextureViewDimension::D2Array,
                        multisampled: false,
                    },
                    count: None,
                },
            ],
        });
        let attributes = wgpu::vertex_attr_array![
            0 => Float32x4, 1 => Float32x2, 2 => Uint32x2, 3 => Uint32x2,
            4 => Uint32, 5 => Uint32, 6 => Float32x4, 7 => Float32
        ];
        let pipeline = instanced_pipeline(
            device,
            &InstancedPipelineDesc {
                label: "tiles pipeline",
                shader_label: "tiles shader",
                shader_source: SHADERS[0].1,
                bind_group_layout: &layout,
                instance_stride: size_of::<TileGpu>() as u64,
                attributes: &attributes,
                format,
                blend: None,
            },
        );
        Self {
            pipeline,
            layout,
            globals: GlobalsUniform::new(device, "tiles globals"),
            bind_group: None,
            instances: InstanceBuffer::new(device, "tiles instances"),
            visible: Vec::new(),
            count: 0,
            format,
        }
    }

    /// Uploads the visible subset of `tiles` for a `viewport`-sized target; returns how many
    /// will be drawn.
    pub fn prepare(
        &mut self,
        device: &wgpu::Device,
        queue: &wgpu::Queue,
        atlas: &TileAtlas,
        tiles: &[TileInstance],
        viewport: [u32; 2],
    ) -> usize {
        self.globals.set(queue, Globals::new(viewport, self.format));
        let key = (atlas.id(), atlas.generation());
        if self.bind_group.as_ref().is_none_or(|(k, _)| *k != key) {
            let bind_group = device.create_bind_group(&wgpu::BindGroupDescriptor {
                label: Some("tiles bind group"),
                layout: &self.layout,
                entries: &[
                    wgpu::BindGroupEntry {
                        binding: 0,
                        resource: self.globals.buffer.as_entire_binding(),
                    },
                    wgpu::BindGroupEntry {
                        binding: 1,
                        resource: wgpu::BindingResource::TextureView(atlas.view()),
                    },
                ],
            });
            self.bind_group = Some((key, bind_group));
        }
        self.visible.clear();
        self.visible
            .extend(visible_tiles(tiles, viewport).map(TileGpu::from));
        self.instances
            .upload(device, queue, bytemuck::cast_slice(&self.visible));
        self.count = self.visible.len() as u32;
        self.visible.len()
    }

    /// Records the draw of everything prepared.
    pub fn render(&self, pass: &mut wgpu::RenderPass<'_>) {
        let Some((_, bind_group)) = &self.bind_group else {
            return;
        };
        if self.count == 0 {
            return;
        }
        pass.set_pipeline(&self.pipeline);
        pass.set_bind_group(0, bind_group, &[]);
        pass.set_vertex_buffer(0, self.instances.slice());
        pass.draw(0..4, 0..self.count);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn culling_keeps_only_tiles_touching_the_viewport() {
        let h = TileHandle {
            layer: 0,
            origin_px: [0, 0],
            size_px: [4, 4],
            planes: 1,
        };
        let at =
            |x: f32, y: f32, w: f32| TileInstance::new([x, y, w, w], h, [0.0, 1.0], Colormap::Grey);
        let tiles = [
            at(0.0, 0.0, 10.0),    // inside
            at(-9.0, -9.0, 10.0),  // one pixel overlaps the corner
            at(-10.0, 0.0, 10.0),  // touches the left edge only: invisible
            at(100.0, 50.0, 10.0), // right of a 100-wide viewport
            at(95.0, 45.0, 10.0),  // partly inside
            at(20.0, 20.0, 0.0),   // empty
            at(20.0, 60.0, 10.0),  // below a 50-high viewport... starts at 60: invisible
        ];
        let seen: Vec<usize> = visible_tiles(&tiles, [100, 50])
            .map(|t| {
                tiles
                    .iter()
                    .position(|u| std::ptr::eq(u, t))
                    .unwrap_or(usize::MAX)
            })
            .collect();
        assert_eq!(seen, vec![0, 1, 4]);
    }

    #[test]
    fn cpu_colormaps_match_their_definitions() {
        assert_eq!(colormap_srgb(Colormap::Grey, 3.0, [1.0, 5.0]), [0.5; 3]);
        assert_eq!(colormap_srgb(Colormap::Grey, 3.0, [5.0, 5.0]), [0.0; 3]);
        assert_eq!(
            colormap_srgb(Colormap::Grey, f32::NAN, [0.0, 1.0]),
            [0.0; 3]
        );
        assert_eq!(
            colormap_srgb(Colormap::Diverging, 0.0, [-2.0, 1.0]),
            [0.5; 3]
        );
        let red = colormap_srgb(Colormap::Diverging, 2.0, [-1.0, 2.0]);
        let blue = colormap_srgb(Colormap::Diverging, -2.0, [-2.0, 1.0]);
        assert!(red[0] > 0.8 && red[2] < 0.1 && blue[2] > 0.8 && blue[0] < 0.1);
        // viridis end points (matplotlib: #440154 and #fde725).
        let v0 = colormap_srgb(Colormap::Viridis, 0.0, [0.0, 1.0]);
        let v1 = colormap_srgb(Colormap::Viridis, 1.0, [0.0, 1.0]);
        for (got, want) in v0.iter().zip([0x44, 0x01, 0x54]) {
            assert!((got - want as f32 / 255.0).abs() < 0.02, "{v0:?}");
        }
        for (got, want) in v1.iter().zip([0xfd, 0xe7, 0x25]) {
            assert!((got - want as f32 / 255.0).abs() < 0.03, "{v1:?}");
        }
    }
}
