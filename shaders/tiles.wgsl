// Activation tiles: one instanced draw; each instance is a quad showing one atlas region with
// per-tile min-max normalisation and a colour map.
// Keep in sync with src/render/tiles.rs (TileInstance, attribute locations, Colormap values)
// and src/render/pipeline.rs (Globals).

struct Globals {
    viewport_px: vec2<f32>,
    // 1 when the target is *Srgb: colours here are sRGB and get converted to linear on output.
    output_srgb: u32,
    _pad: u32,
};

@group(0) @binding(0) var<uniform> globals: Globals;
// Raw f32 activations (R32Float, not filterable: read with textureLoad). The layers form one
// linear texel space (index = layer·S² + row·S + column) and each tile is stored row-major
// from its first texel on (see src/render/packer.rs).
@group(0) @binding(1) var atlas: texture_2d_array<f32>;

const COLORMAP_GREY: u32 = 0u;
const COLORMAP_DIVERGING: u32 = 1u;
const COLORMAP_VIRIDIS: u32 = 2u;
const COLORMAP_RGB: u32 = 3u;

struct Instance {
    @location(0) rect_px: vec4<f32>,      // x, y, w, h in target pixels
    @location(1) value_range: vec2<f32>,  // min, max
    @location(2) origin_px: vec2<u32>,    // column, row of the tile's first texel
    @location(3) size_px: vec2<u32>,      // tile size in texels (one plane)
    @location(4) layer: u32,              // layer of the first texel
    @location(5) colormap: u32,
    @location(6) border_rgba: vec4<f32>,  // sRGB, alpha mixes over the tile
    @location(7) border_px: f32,
};

struct VsOut {
    @builtin(position) position: vec4<f32>,
    @location(0) local_px: vec2<f32>,
    @location(1) @interpolate(flat) rect_size: vec2<f32>,
    @location(2) @interpolate(flat) value_range: vec2<f32>,
    @location(3) @interpolate(flat) size_px: vec2<u32>,
    // Linear index of the tile's first texel, and the colour map.
    @location(4) @interpolate(flat) base_colormap: vec2<u32>,
    @location(5) @interpolate(flat) border_rgba: vec4<f32>,
    @location(6) @interpolate(flat) border_px: f32,
};

@vertex
fn vs_main(@builtin(vertex_index) vertex: u32, inst: Instance) -> VsOut {
    // Triangle strip corners: (0,0) (1,0) (0,1) (1,1).
    let corner = vec2<f32>(f32(vertex & 1u), f32(vertex >> 1u));
    let local = corner * inst.rect_px.zw;
    let px = inst.rect_px.xy + local;
    let ndc = vec2<f32>(
        px.x / globals.viewport_px.x * 2.0 - 1.0,
        1.0 - px.y / globals.viewport_px.y * 2.0,
    );
    var out: VsOut;
    out.position = vec4<f32>(ndc, 0.0, 1.0);
    out.local_px = local;
    out.rect_size = inst.rect_px.zw;
    out.value_range = inst.value_range;
    let side = textureDimensions(atlas).x;
    let base = (inst.layer * side + inst.origin_px.y) * side + inst.origin_px.x;
    out.size_px = inst.size_px;
    out.base_colormap = vec2<u32>(base, inst.colormap);
    out.border_rgba = inst.border_rgba;
    out.border_px = inst.border_px;
    return out;
}

fn is_finite(v: f32) -> bool {
    return (bitcast<u32>(v) & 0x7f800000u) != 0x7f800000u;
}

// mat2gray: (v - min) / (max - min), clamped; non-finite values count as min.
fn normalise(v: f32, range: vec2<f32>) -> f32 {
    if !is_finite(v) {
        return 0.0;
    }
    return clamp((v - range.x) / (range.y - range.x), 0.0, 1.0);
}

// Polynomial fit of matplotlib's viridis (sRGB), t in [0, 1].
fn viridis(t: f32) -> vec3<f32> {
    let c0 = vec3<f32>(0.2777273272234177, 0.005407344544966578, 0.3340998053353061);
    let c1 = vec3<f32>(0.1050930431085774, 1.404613529898575, 1.384590162594685);
    let c2 = vec3<f32>(-0.3308618287255563, 0.214847559468213, 0.09509516302823659);
    let c3 = vec3<f32>(-4.634230498983486, -5.799100973351585, -19.33244095627987);
    let c4 = vec3<f32>(6.228269936347081, 14.17993336680509, 56.69055260068105);
    let c5 = vec3<f32>(4.776384997670288, -13.74514537774601, -65.35303263337234);
    let c6 = vec3<f32>(-5.435455855934631, 4.645852612178535, 26.3124352495832);
    let rgb = c0 + t * (c1 + t * (c2 + t * (c3 + t * (c4 + t * (c5 + t * c6)))));
    return clamp(rgb, vec3<f32>(0.0), vec3<f32>(1.0));
}

// Signed map: 0 is mid-grey, negative towards blue, positive towards red, scaled by
// max(|min|, |max|) so that equal magnitudes get equal saturation.
fn diverging(v: f32, range: vec2<f32>) -> vec3<f32> {
    let mid = vec3<f32>(0.5, 0.5, 0.5);
    let scale = max(abs(range.x), abs(range.y));
    var t = 0.0;
    if is_finite(v) && scale > 0.0 {
        t = clamp(v / scale, -1.0, 1.0);
    }
    if t >= 0.0 {
        return mix(mid, vec3<f32>(0.85, 0.08, 0.08), t);
    }
    return mix(mid, vec3<f32>(0.08, 0.25, 0.85), -t);
}

fn srgb_to_linear(c: vec3<f32>) -> vec3<f32> {
    let lo = c / 12.92;
    let hi = pow((c + vec3<f32>(0.055)) / 1.055, vec3<f32>(2.4));
    return select(hi, lo, c <= vec3<f32>(0.04045));
}

// Texel `index` of the atlas's linear texel space. Layer sides are powers of two, so the
// divisions are shifts and masks.
fn load(index: u32) -> f32 {
    let side = textureDimensions(atlas).x;
    let shift = countTrailingZeros(side);
    let layer = index >> (2u * shift);
    let column = index & (side - 1u);
    let row = (index >> shift) & (side - 1u);
    return textureLoad(atlas, vec2<u32>(column, row), layer, 0).r;
}

@fragment
fn fs_main(in: VsOut) -> @location(0) vec4<f32> {
    let size = in.size_px;
    // Nearest texel under this pixel (pixel centres map into the tile's texel grid).
    let uv = clamp(in.local_px / in.rect_size, vec2<f32>(0.0), vec2<f32>(1.0));
    let cell = min(vec2<u32>(floor(uv * vec2<f32>(size))), size - vec2<u32>(1u));
    let index = in.base_colormap.x + cell.y * size.x + cell.x;
    let colormap = in.base_colormap.y;
    let range = in.value_range;

    var rgb = vec3<f32>(0.0);
    if range.y > range.x {
        if colormap == COLORMAP_RGB {
            let plane = size.x * size.y;
            rgb = vec3<f32>(
                normalise(load(index), range),
                normalise(load(index + plane), range),
                normalise(load(index + 2u * plane), range),
            );
        } else {
            let v = load(index);
            if colormap == COLORMAP_DIVERGING {
                rgb = diverging(v, range);
            } else if colormap == COLORMAP_VIRIDIS {
                rgb = viridis(normalise(v, range));
            } else {
                rgb = vec3<f32>(normalise(v, range));
            }
        }
    }

    // Border drawn inside the rect, mixed over the tile by its alpha.
    let inset = min(in.local_px, in.rect_size - in.local_px);
    let edge = min(inset.x, inset.y);
    if in.border_px > 0.0 && edge < in.border_px {
        rgb = mix(rgb, in.border_rgba.rgb, in.border_rgba.a);
    }

    if globals.output_srgb == 1u {
        rgb = srgb_to_linear(rgb);
    }
    return vec4<f32>(rgb, 1.0);
}
