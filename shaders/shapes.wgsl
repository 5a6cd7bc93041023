// Flat shapes for the canvases: filled and outlined (optionally rounded) rects, and lines as
// rotated quads; one instanced draw, antialiased with signed distances.
// Keep in sync with src/render/shapes.rs (ShapeInstance, ShapeKind) and
// src/render/pipeline.rs (Globals).

struct Globals {
    viewport_px: vec2<f32>,
    output_srgb: u32,
    _pad: u32,
};

@group(0) @binding(0) var<uniform> globals: Globals;

const KIND_FILL: u32 = 0u;
const KIND_OUTLINE: u32 = 1u;
const KIND_LINE: u32 = 2u;

struct Instance {
    @location(0) geom: vec4<f32>,   // rect: x, y, w, h; line: x0, y0, x1, y1 (pixels)
    @location(1) color: vec4<f32>,  // sRGB, straight alpha
    @location(2) kind: u32,
    @location(3) stroke_px: f32,    // outline width / line thickness
    @location(4) radius_px: f32,    // corner radius of rects
};

struct VsOut {
    @builtin(position) position: vec4<f32>,
    // rect: pixel offset from the rect centre; line: (distance along, distance across).
    @location(0) local: vec2<f32>,
    @location(1) @interpolate(flat) color: vec4<f32>,
    // rect: half size; line: (length, unused).
    @location(2) @interpolate(flat) extent: vec2<f32>,
    @location(3) @interpolate(flat) kind: u32,
    @location(4) @interpolate(flat) stroke_radius: vec2<f32>,
};

// Antialiasing margin around every shape, in pixels.
const MARGIN: f32 = 1.0;

fn to_ndc(px: vec2<f32>) -> vec4<f32> {
    return vec4<f32>(
        px.x / globals.viewport_px.x * 2.0 - 1.0,
        1.0 - px.y / globals.viewport_px.y * 2.0,
        0.0,
        1.0,
    );
}

@vertex
fn vs_main(@builtin(vertex_index) vertex: u32, inst: Instance) -> VsOut {
    let corner = vec2<f32>(f32(vertex & 1u), f32(vertex >> 1u));
    var out: VsOut;
    out.color = inst.color;
    out.kind = inst.kind;
    out.stroke_radius = vec2<f32>(inst.stroke_px, inst.radius_px);
    if inst.kind == KIND_LINE {
        let p0 = inst.geom.xy;
        let d = inst.geom.zw - p0;
        let len = length(d);
        var dir = vec2<f32>(1.0, 0.0);
        if len > 0.0 {
            dir = d / len;
        }
        let normal = vec2<f32>(-dir.y, dir.x);
        let half = inst.stroke_px * 0.5 + MARGIN;
        let along = mix(-MARGIN, len + MARGIN, corner.x);
        let across = mix(-half, half, corner.y);
        out.position = to_ndc(p0 + dir * along + normal * across);
        out.local = vec2<f32>(along, across);
        out.extent = vec2<f32>(len, 0.0);
    } else {
        let half = inst.geom.zw * 0.5;
        let centre = inst.geom.xy + half;
        let offset = (corner * 2.0 - 1.0) * (half + MARGIN);
        out.position = to_ndc(centre + offset);
        out.local = offset;
        out.extent = half;
    }
    return out;
}

// Signed distance to a rounded box of half size `half` and corner radius `r`.
fn rounded_box(p: vec2<f32>, half: vec2<f32>, r: f32) -> f32 {
    let radius = min(r, min(half.x, half.y));
    let q = abs(p) - half + vec2<f32>(radius);
    return length(max(q, vec2<f32>(0.0))) + min(max(q.x, q.y), 0.0) - radius;
}

fn srgb_to_linear(c: vec3<f32>) -> vec3<f32> {
    let lo = c / 12.92;
    let hi = pow((c + vec3<f32>(0.055)) / 1.055, vec3<f32>(2.4));
    return select(hi, lo, c <= vec3<f32>(0.04045));
}

@fragment
fn fs_main(in: VsOut) -> @location(0) vec4<f32> {
    let stroke = in.stroke_radius.x;
    var coverage = 0.0;
    if in.kind == KIND_LINE {
        let across = clamp(stroke * 0.5 + 0.5 - abs(in.local.y), 0.0, 1.0);
        let along = clamp(min(in.local.x, in.extent.x - in.local.x) + 0.5, 0.0, 1.0);
        coverage = across * along;
    } else {
        let d = rounded_box(in.local, in.extent, in.stroke_radius.y);
        if in.kind == KIND_OUTLINE {
            let ring = abs(d + stroke * 0.5) - stroke * 0.5;
            coverage = clamp(0.5 - ring, 0.0, 1.0);
        } else {
            coverage = clamp(0.5 - d, 0.0, 1.0);
        }
    }
    if coverage <= 0.0 {
        discard;
    }
    var rgb = in.color.rgb;
    if globals.output_srgb == 1u {
        rgb = srgb_to_linear(rgb);
    }
    return vec4<f32>(rgb, in.color.a * coverage);
}
