//! Golden-image tests of the renderer on the default adapter (a software one — Mesa lavapipe —
//! on machines without a GPU). Tiny reference PNGs live in `tests/golden/`; regenerate them
//! with `CONVLENS_UPDATE_GOLDEN=1 cargo test --test it render_golden::` and look at them.

use crate::common;

use common::golden::{EXACT, TEXT, assert_golden};
use convlens::render::{
    Colormap, GpuContext, OffscreenTarget, Renderer, Scene, ShapeInstance, TextItem, TileAtlas,
    TileInstance,
};
use image::RgbaImage;

/// Asserts two pixels agree within `tol` per channel.
fn assert_near(got: [u8; 4], want: [u8; 4], tol: u8, what: &str) {
    let ok = got.iter().zip(want).all(|(g, w)| g.abs_diff(w) <= tol);
    assert!(ok, "{what}: got {got:?}, want {want:?} ± {tol}");
}

fn ctx() -> GpuContext {
    GpuContext::headless().unwrap_or_else(|e| {
        panic!("no wgpu adapter (install mesa-vulkan-drivers for lavapipe): {e}")
    })
}

const TILE: u32 = 8;

/// Nine 8×8 tiles of a ramp `base = (x + 8y) / 63` under different affine maps, so per-tile
/// normalisation makes most of them look alike in grey: tile 4 is constant (black), tile 5 is
/// reversed, tile 8 holds a NaN texel.
fn ramp_tiles() -> (Vec<f32>, Vec<[f32; 2]>) {
    let maps: [(f32, f32); 9] = [
        (0.0, 1.0),
        (-1.0, 2.0),
        (-5.0, 3.0),
        (10.0, 0.5),
        (3.0, 0.0),
        (0.0, -1.0),
        (-2.0, 1.0),
        (100.0, 1000.0),
        (0.0, 1.0),
    ];
    let mut values = Vec::new();
    let mut ranges = Vec::new();
    for (k, (a, b)) in maps.into_iter().enumerate() {
        let tile: Vec<f32> = (0..TILE * TILE)
            .map(|i| {
                if k == 8 && i == 27 {
                    f32::NAN
                } else {
                    a + b * i as f32 / 63.0
                }
            })
            .collect();
        ranges.push(convlens::render::value_range(&tile));
        values.extend(tile);
    }
    (values, ranges)
}

/// A 3×3 grid of 16-px tiles (2× zoom) with 4-px gaps on a dark background; the centre tile
/// has a 1-px highlight border.
fn tiles_scene(renderer: &mut Renderer, ctx: &GpuContext, colormap: Colormap) -> Scene {
    let (values, ranges) = ramp_tiles();
    let handles = renderer
        .atlas
        .upload_many(&ctx.device, &ctx.queue, &values, TILE, TILE, 9)
        .unwrap_or_else(|e| panic!("upload: {e}"));
    let tiles = handles
        .iter()
        .zip(&ranges)
        .enumerate()
        .map(|(k, (h, r))| {
            let (col, row) = ((k % 3) as f32, (k / 3) as f32);
            let t = TileInstance::new(
                [4.0 + col * 20.0, 4.0 + row * 20.0, 16.0, 16.0],
                *h,
                *r,
                colormap,
            );
            if k == 4 {
                t.with_border(1.0, [1.0, 0.8, 0.0, 1.0])
            } else {
                t
            }
        })
        .collect();
    Scene {
        clear: [0.15, 0.15, 0.18, 1.0],
        tiles,
        ..Scene::default()
    }
}

fn render(renderer: &mut Renderer, ctx: &GpuContext, scene: &Scene, w: u32, h: u32) -> RgbaImage {
    renderer
        .render_to_image(ctx, scene, w, h)
        .unwrap_or_else(|e| panic!("render_to_image: {e}"))
}

fn small_renderer(ctx: &GpuContext) -> Renderer {
    let atlas = TileAtlas::with_layout(&ctx.device, 256, 4);
    Renderer::with_atlas(ctx, OffscreenTarget::DEFAULT_FORMAT, atlas)
}

#[test]
fn tiles_in_each_colormap_match_goldens() {
    let ctx = ctx();
    for (name, colormap) in [
        ("tiles_grey", Colormap::Grey),
        ("tiles_diverging", Colormap::Diverging),
        ("tiles_viridis", Colormap::Viridis),
    ] {
        let mut renderer = small_renderer(&ctx);
        let scene = tiles_scene(&mut renderer, &ctx, colormap);
        let img = render(&mut renderer, &ctx, &scene, 64, 64);
        assert_golden(name, &img, EXACT);
    }
}

#[test]
fn grey_tiles_are_normalised_per_tile() {
    // Independent of the golden: tiles 0 and 7 hold very different values but the same ramp,
    // so they must look identical; tile 4 (constant) must be black; tile 5 is tile 0 mirrored.
    let ctx = ctx();
    let mut renderer = small_renderer(&ctx);
    let scene = tiles_scene(&mut renderer, &ctx, Colormap::Grey);
    let img = render(&mut renderer, &ctx, &scene, 64, 64);
    let px = |k: u32, x: u32, y: u32| img.get_pixel(4 + (k % 3) * 20 + x, 4 + (k / 3) * 20 + y).0;
    for y in 0..16 {
        for x in 0..16 {
            assert_near(px(7, x, y), px(0, x, y), 1, &format!("tile 7 at {x},{y}"));
            assert_near(
                px(5, 15 - x, 15 - y),
                px(0, x, y),
                1,
                &format!("tile 5 at {x},{y}"),
            );
        }
    }
    for y in 1..15 {
        for x in 1..15 {
            assert_eq!(px(4, x, y), [0, 0, 0, 255], "constant tile must be black");
        }
    }
    assert_eq!(px(0, 0, 0), [0, 0, 0, 255], "minimum is black");
    assert_eq!(px(0, 15, 15), [255, 255, 255, 255], "maximum is white");
}

fn shapes_scene() -> Scene {
    let white = [1.0, 1.0, 1.0, 1.0];
    Scene {
        clear: [0.1, 0.1, 0.12, 1.0],
        shapes: vec![
            ShapeInstance::fill_rect([4.0, 4.0, 30.0, 20.0], [0.2, 0.45, 0.9, 1.0]),
            ShapeInstance::outline_rect([40.0, 4.0, 30.0, 20.0], 2.0, white),
            ShapeInstance::line([4.5, 60.5], [90.5, 30.5], 1.5, [0.95, 0.3, 0.2, 1.0]),
            ShapeInstance::circle([82.0, 12.0], 7.0, [0.3, 0.8, 0.4, 1.0]),
            ShapeInstance::fill_rect([4.0, 34.0, 40.0, 12.0], [0.9, 0.9, 0.3, 1.0]).rounded(6.0),
        ],
        overlay: vec![ShapeInstance::fill_rect(
            [20.0, 14.0, 30.0, 26.0],
            [1.0, 1.0, 1.0, 0.5],
        )],
        ..Scene::default()
    }
}

#[test]
fn shapes_match_golden() {
    let ctx = ctx();
    let mut renderer = small_renderer(&ctx);
    let img = render(&mut renderer, &ctx, &shapes_scene(), 96, 64);
    // Spot checks that do not depend on the golden.
    let bg = *img.get_pixel(60, 60);
    assert_near(
        img.get_pixel(10, 10).0,
        [51, 115, 230, 255],
        1,
        "filled rect colour (sRGB bytes)",
    );
    assert_near(
        img.get_pixel(40, 10).0,
        [255, 255, 255, 255],
        1,
        "outline left edge",
    );
    assert_eq!(img.get_pixel(55, 10), &bg, "outline interior is background");
    assert_ne!(img.get_pixel(82, 12), &bg, "circle centre");
    assert_golden("shapes", &img, EXACT);
}

#[test]
fn text_renders_inside_its_box_and_matches_golden() {
    let ctx = ctx();
    let mut renderer = small_renderer(&ctx);
    let scene = Scene {
        clear: [0.0, 0.0, 0.0, 1.0],
        text: vec![TextItem::new(
            "Conv 3x3",
            [6.0, 4.0],
            16.0,
            [1.0, 1.0, 1.0, 1.0],
        )],
        ..Scene::default()
    };
    let size = renderer.measure_text("Conv 3x3", 16.0, None);
    assert!(
        size[0] > 40.0 && size[0] < 90.0 && size[1] >= 16.0,
        "measured {size:?}"
    );
    let img = render(&mut renderer, &ctx, &scene, 96, 32);
    let (mut inside, mut outside) = (0, 0);
    for (x, y, p) in img.enumerate_pixels() {
        if p.0[0] > 40 {
            let in_box = (4..=6 + size[0] as u32 + 2).contains(&x)
                && (2..=4 + size[1] as u32 + 2).contains(&y);
            if in_box { inside += 1 } else { outside += 1 }
        }
    }
    assert!(
        inside > 60,
        "only {inside} lit pixels where the text should be"
    );
    assert_eq!(outside, 0, "lit pixels outside the text box");
    assert_golden("text", &img, TEXT);
}

#[test]
fn layers_compose_in_order_and_pictures_draw() {
    let ctx = ctx();
    let mut renderer = small_renderer(&ctx);
    // An 8×8 picture: red increases to the right, green downwards, blue constant.
    let picture = RgbaImage::from_fn(8, 8, |x, y| {
        image::Rgba([(x * 36) as u8, (y * 36) as u8, 128, 255])
    });
    let pic = renderer
        .atlas
        .upload_rgba8(&ctx.device, &ctx.queue, &picture)
        .unwrap_or_else(|e| panic!("{e}"));
    let (values, ranges) = ramp_tiles();
    let tile = renderer
        .atlas
        .upload(&ctx.device, &ctx.queue, &values[..64], 8, 8)
        .unwrap_or_else(|e| panic!("{e}"));
    let scene = Scene {
        clear: [0.2, 0.2, 0.2, 1.0],
        shapes: vec![ShapeInstance::fill_rect(
            [2.0, 2.0, 92.0, 44.0],
            [0.9, 0.9, 0.9, 1.0],
        )],
        tiles: vec![
            TileInstance::picture([6.0, 6.0, 32.0, 32.0], pic),
            TileInstance::new([44.0, 6.0, 32.0, 32.0], tile, ranges[0], Colormap::Viridis),
            // Entirely off-screen: culled.
            TileInstance::new([500.0, 6.0, 32.0, 32.0], tile, ranges[0], Colormap::Grey),
        ],
        overlay: vec![ShapeInstance::outline_rect(
            [43.0, 5.0, 34.0, 34.0],
            1.0,
            [1.0, 0.0, 0.0, 1.0],
        )],
        text: vec![
            TextItem::new("conv1", [48.0, 50.0], 11.0, [1.0, 1.0, 1.0, 1.0]).anchored([0.5, 0.0]),
        ],
    };
    let stats = renderer
        .prepare(&ctx, &scene, [96, 64])
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!((stats.tiles_drawn, stats.tiles_total), (2, 3));
    let img = render(&mut renderer, &ctx, &scene, 96, 64);
    // Picture pixels are the source bytes (4× zoom, nearest).
    assert_near(
        img.get_pixel(6 + 4 * 5 + 1, 6 + 4 * 2 + 1).0,
        [180, 72, 128, 255],
        1,
        "picture",
    );
    // The overlay outline is drawn over the canvas.
    assert_near(
        img.get_pixel(43, 20).0,
        [255, 0, 0, 255],
        1,
        "overlay outline",
    );
    assert_golden("composite", &img, TEXT);
}

#[test]
fn a_scaled_scene_is_the_same_picture_at_twice_the_pixels() {
    // HiDPI: the UI lays out in logical pixels and the window draws `scene.scaled(2.0)`.
    let ctx = ctx();
    let mut renderer = small_renderer(&ctx);
    let one = render(&mut renderer, &ctx, &shapes_scene(), 96, 64);
    let two = render(&mut renderer, &ctx, &shapes_scene().scaled(2.0), 192, 128);
    let mut compared = 0;
    for y in 1..63 {
        for x in 1..95 {
            // Only where the 1× picture is flat around the pixel (edges are antialiased
            // differently at the two scales).
            let p = one.get_pixel(x, y).0;
            let flat =
                (y - 1..=y + 1).all(|yy| (x - 1..=x + 1).all(|xx| one.get_pixel(xx, yy).0 == p));
            if flat {
                assert_near(two.get_pixel(2 * x, 2 * y).0, p, 2, &format!("({x}, {y})"));
                compared += 1;
            }
        }
    }
    assert!(compared > 3000, "compared only {compared} pixels");
}
