//! The tile atlas on a real (software) device: known activations must come back, drawn 1:1,
//! as exactly their per-tile min-max normalisation (and colour maps as their CPU twins);
//! GPU-buffer copies (the zero-copy path for burn tensors) and layer paging up to 100k tiles.

use convlens::render::{
    Colormap, GpuContext, Renderer, Scene, TileAtlas, TileHandle, TileInstance, colormap_srgb,
    value_range,
};
use wgpu::util::DeviceExt;

fn ctx() -> GpuContext {
    GpuContext::headless().unwrap_or_else(|e| {
        panic!("no wgpu adapter (install mesa-vulkan-drivers for lavapipe): {e}")
    })
}

/// Deterministic pseudo-random values in `[-scale, scale)` with an offset per tile.
fn activations(count: usize, len: usize) -> Vec<f32> {
    (0..count * len)
        .map(|i| {
            let u = ((i as u64 * 2_654_435_761) % 4_294_967_296) as f32 / 4_294_967_296.0;
            let tile = (i / len) as f32;
            (u * 2.0 - 1.0) * (1.0 + tile) + tile * 3.0
        })
        .collect()
}

/// Lays `handles` out 1:1 in a grid `cols` wide and renders them into a `format` target.
fn render_grid(
    ctx: &GpuContext,
    renderer: &mut Renderer,
    handles: &[TileHandle],
    ranges: &[[f32; 2]],
    colormap: Colormap,
    cols: u32,
) -> image::RgbaImage {
    let [w, h] = handles[0].size_px;
    let rows = (handles.len() as u32).div_ceil(cols);
    let tiles: Vec<TileInstance> = handles
        .iter()
        .zip(ranges)
        .enumerate()
        .map(|(i, (hd, r))| {
            let (c, rw) = (i as u32 % cols, i as u32 / cols);
            let rect = [(c * w) as f32, (rw * h) as f32, w as f32, h as f32];
            TileInstance::new(rect, *hd, *r, colormap)
        })
        .collect();
    let scene = Scene {
        tiles,
        ..Scene::default()
    };
    renderer
        .render_to_image(ctx, &scene, cols * w, rows * h)
        .unwrap_or_else(|e| panic!("render: {e}"))
}

/// Checks every pixel of the grid against the CPU colour map of its source value.
/// `linear`: the target stores the sRGB values as is (Rgba8Unorm); else sRGB-encoded bytes.
fn check_grid(
    img: &image::RgbaImage,
    values: &[f32],
    size: [u32; 2],
    ranges: &[[f32; 2]],
    colormap: Colormap,
    cols: u32,
    tol: f32,
) {
    let [w, h] = size;
    let mut worst = 0.0f32;
    for (k, range) in ranges.iter().enumerate() {
        let (c, r) = (k as u32 % cols, k as u32 / cols);
        for y in 0..h {
            for x in 0..w {
                let v = values[k * (w * h) as usize + (y * w + x) as usize];
                let want = colormap_srgb(colormap, v, *range);
                let got = img.get_pixel(c * w + x, r * h + y).0;
                for ch in 0..3 {
                    let err = (f32::from(got[ch]) / 255.0 - want[ch]).abs();
                    worst = worst.max(err);
                    assert!(
                        err <= tol,
                        "tile {k} texel ({x},{y}) channel {ch}: got {} want {} (v={v}, range={range:?})",
                        got[ch],
                        want[ch] * 255.0
                    );
                }
            }
        }
    }
    eprintln!(
        "{colormap:?}: worst error {:.5} ({:.2}/255)",
        worst,
        worst * 255.0
    );
}

#[test]
fn known_activations_come_back_min_max_normalised() {
    let ctx = ctx();
    let (w, h, n) = (16u32, 16u32, 20usize);
    let values = activations(n, (w * h) as usize);
    let ranges: Vec<[f32; 2]> = values.chunks((w * h) as usize).map(value_range).collect();
    // Small layers (64×64 = 16 tiles) force the atlas to grow a second layer mid-upload.
    for format in [
        wgpu::TextureFormat::Rgba8Unorm,
        wgpu::TextureFormat::Rgba8UnormSrgb,
    ] {
        let atlas = TileAtlas::with_layout(&ctx.device, 64, 8);
        let mut renderer = Renderer::with_atlas(&ctx, format, atlas);
        let handles = renderer
            .atlas
            .upload_many(&ctx.device, &ctx.queue, &values, w, h, n as u32)
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(renderer.atlas.layers_allocated(), 2);
        assert_eq!(handles[16].layer, 1);
        for colormap in Colormap::SCALAR {
            let img = render_grid(&ctx, &mut renderer, &handles, &ranges, colormap, 5);
            // Linear target: only 8-bit rounding. sRGB target: encode/decode rounding too.
            let tol = if format.is_srgb() {
                1.5 / 255.0
            } else {
                0.5 / 255.0 + 1e-4
            };
            // The viridis polynomial is evaluated in f32 on both sides.
            let tol = if colormap == Colormap::Viridis {
                tol + 0.5 / 255.0
            } else {
                tol
            };
            check_grid(&img, &values, [w, h], &ranges, colormap, 5, tol);
        }
    }
}

/// The viewer's upload with the ranges of its one summary pass gives the tiles and ranges a
/// plain upload computes itself; ranges of the wrong length are not trusted.
#[test]
fn known_ranges_are_used_and_wrong_lengths_recomputed() {
    let ctx = ctx();
    let (w, h, n) = (8u32, 8u32, 12usize);
    let mut values = activations(n, (w * h) as usize);
    values[5] = f32::NAN;
    let summary = convlens::viz::tiles::summarise_maps(&values, (w * h) as usize);
    let mut atlas = TileAtlas::with_layout(&ctx.device, 64, 8);
    let plain = atlas
        .upload_maps(&ctx.device, &ctx.queue, &values, w, h, n as u32)
        .unwrap_or_else(|e| panic!("{e}"));
    let want: Vec<[f32; 2]> = values.chunks((w * h) as usize).map(value_range).collect();
    assert_eq!(plain.iter().map(|t| t.1).collect::<Vec<_>>(), want);
    for given in [
        Some(summary.ranges.as_slice()),
        Some(&summary.ranges[1..]),
        None,
    ] {
        atlas.clear();
        let ready = atlas
            .upload_maps_with_ranges(&ctx.device, &ctx.queue, &values, [w, h, n as u32], given)
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(ready, plain);
    }
    // A given range is what the tile is drawn with (here deliberately not its own).
    atlas.clear();
    let fixed = vec![[-1.0, 1.0]; n];
    let ready = atlas
        .upload_maps_with_ranges(
            &ctx.device,
            &ctx.queue,
            &values,
            [w, h, n as u32],
            Some(&fixed),
        )
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(ready.iter().all(|t| t.1 == [-1.0, 1.0]));
}

#[test]
fn rgb_planes_are_normalised_jointly() {
    let ctx = ctx();
    let (w, h) = (4u32, 3u32);
    let planes: Vec<f32> = (0..3 * w * h).map(|i| i as f32 * 0.5 - 4.0).collect();
    let range = value_range(&planes);
    let mut renderer = Renderer::with_atlas(
        &ctx,
        wgpu::TextureFormat::Rgba8Unorm,
        TileAtlas::with_layout(&ctx.device, 64, 1),
    );
    let hd = renderer
        .atlas
        .upload_rgb_planes(&ctx.device, &ctx.queue, &planes, w, h)
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!((hd.size_px, hd.planes), ([w, h], 3));
    let img = render_grid(&ctx, &mut renderer, &[hd], &[range], Colormap::Rgb, 1);
    let n = (w * h) as usize;
    for (i, px) in img.pixels().enumerate() {
        for c in 0..3 {
            let want = (planes[c * n + i] - range[0]) / (range[1] - range[0]) * 255.0;
            assert!(
                (f32::from(px.0[c]) - want).abs() <= 0.51,
                "pixel {i} ch {c}: {px:?} vs {want}"
            );
        }
    }
}

#[test]
fn gpu_buffer_copies_land_like_cpu_uploads() {
    let ctx = ctx();
    // 7 wide: rows are not 256-byte aligned (row-by-row copies); 64 wide: one copy per tile.
    for (w, h, n) in [(7u32, 5u32, 6usize), (64, 2, 3)] {
        let values = activations(n, (w * h) as usize);
        let ranges: Vec<[f32; 2]> = values.chunks((w * h) as usize).map(value_range).collect();
        // Put the tensor at an offset, as a view into a bigger burn buffer would be.
        let mut contents = vec![0.0f32; 3];
        contents.extend(&values);
        let buffer = ctx
            .device
            .create_buffer_init(&wgpu::util::BufferInitDescriptor {
                label: Some("test activation buffer"),
                contents: bytemuck::cast_slice(&contents),
                usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC,
            });
        let mut renderer = Renderer::with_atlas(
            &ctx,
            wgpu::TextureFormat::Rgba8Unorm,
            TileAtlas::with_layout(&ctx.device, 128, 2),
        );
        let handles = renderer
            .atlas
            .copy_from_buffer(&ctx.device, &ctx.queue, &buffer, 12, w, h, n as u32)
            .unwrap_or_else(|e| panic!("{e}"));
        let img = render_grid(&ctx, &mut renderer, &handles, &ranges, Colormap::Grey, 3);
        check_grid(
            &img,
            &values,
            [w, h],
            &ranges,
            Colormap::Grey,
            3,
            0.5 / 255.0 + 1e-4,
        );
        // Out-of-range and misaligned copies are errors, not panics.
        let too_long = renderer.atlas.copy_from_buffer(
            &ctx.device,
            &ctx.queue,
            &buffer,
            12,
            w,
            h,
            n as u32 + 1,
        );
        assert!(too_long.is_err());
        let misaligned =
            renderer
                .atlas
                .copy_from_buffer(&ctx.device, &ctx.queue, &buffer, 2, w, h, 1);
        assert!(misaligned.is_err());
    }
}

#[test]
fn bad_uploads_are_errors() {
    let ctx = ctx();
    // One 64×64 layer: room for exactly 16 tiles of 16×16.
    let mut atlas = TileAtlas::with_layout(&ctx.device, 64, 1);
    let (d, q) = (&ctx.device, &ctx.queue);
    let err = atlas
        .upload(d, q, &[0.0; 5], 2, 2)
        .err()
        .map(|e| e.to_string());
    assert!(
        err.is_some_and(|e| e.contains("5 values")),
        "length mismatch"
    );
    assert!(atlas.upload(d, q, &[], 0, 0).is_err(), "empty tile");
    // A tile wider than a layer row is fine: tiles wrap in the linear layout.
    assert!(atlas.upload(d, q, &[0.0; 100], 100, 1).is_ok());
    atlas.clear();
    for _ in 0..16 {
        assert!(atlas.upload(d, q, &[0.0; 256], 16, 16).is_ok());
    }
    let full = atlas
        .upload(d, q, &[0.0; 256], 16, 16)
        .err()
        .map(|e| e.to_string());
    assert!(full.is_some_and(|e| e.contains("atlas full")), "17th tile");
    atlas.clear();
    assert!(
        atlas.upload(d, q, &[0.0; 256], 16, 16).is_ok(),
        "clear() frees the space"
    );
}

/// Tiles whose rows wrap across atlas rows and layers still read back exactly.
#[test]
fn tiles_straddling_rows_and_layers_read_back() {
    let ctx = ctx();
    let (w, h, n) = (13u32, 11u32, 40usize); // 143 texels: never row-aligned in 64-wide rows
    let values = activations(n, (w * h) as usize);
    let ranges: Vec<[f32; 2]> = values.chunks((w * h) as usize).map(value_range).collect();
    let mut renderer = Renderer::with_atlas(
        &ctx,
        wgpu::TextureFormat::Rgba8Unorm,
        TileAtlas::with_layout(&ctx.device, 64, 4),
    );
    // Offset the start so the batch begins mid-row.
    renderer
        .atlas
        .upload(&ctx.device, &ctx.queue, &[0.0; 5], 5, 1)
        .unwrap_or_else(|e| panic!("{e}"));
    let handles = renderer
        .atlas
        .upload_many(&ctx.device, &ctx.queue, &values, w, h, n as u32)
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        renderer.atlas.layers_allocated(),
        2,
        "5 + 40·143 texels span two 4096-texel layers"
    );
    let img = render_grid(&ctx, &mut renderer, &handles, &ranges, Colormap::Grey, 8);
    check_grid(
        &img,
        &values,
        [w, h],
        &ranges,
        Colormap::Grey,
        8,
        0.5 / 255.0 + 1e-4,
    );
}

/// 100,000 tiles through small atlas layers (paging over ~19 layers), drawn in one frame at
/// 2×2 pixels each; every tile is checked to show its own data.
#[test]
fn hundred_thousand_tiles_page_through_layers() {
    let ctx = ctx();
    let (w, h, n) = (7u32, 7u32, 100_000u32);
    let atlas = TileAtlas::with_layout(&ctx.device, 512, 64);
    let mut renderer = Renderer::with_atlas(&ctx, wgpu::TextureFormat::Rgba8Unorm, atlas);
    // Tile i holds i·100 + (x + 7y) (exact in f32): sampling another tile's data would clamp
    // to 0 or 255.
    let values: Vec<f32> = (0..n as usize * 49)
        .map(|j| (j / 49) as f32 * 100.0 + (j % 49) as f32)
        .collect();
    let mut handles = Vec::new();
    for chunk in values.chunks(10_000 * 49) {
        let count = (chunk.len() / 49) as u32;
        handles.extend(
            renderer
                .atlas
                .upload_many(&ctx.device, &ctx.queue, chunk, w, h, count)
                .unwrap_or_else(|e| panic!("{e}")),
        );
    }
    let layers = renderer.atlas.layers_allocated();
    assert!(
        layers >= 19,
        "expected paging over many layers, got {layers}"
    );
    // Range per tile: [i·100, i·100 + 48 + i mod 50] encodes i into the brightness.
    let range = |i: u32| {
        let lo = i as f32 * 100.0;
        [lo, lo + 48.0 + (i % 50) as f32]
    };
    let cols = 320u32;
    let tiles: Vec<TileInstance> = handles
        .iter()
        .enumerate()
        .map(|(i, hd)| {
            let (c, r) = (i as u32 % cols, i as u32 / cols);
            let rect = [(c * 2) as f32, (r * 2) as f32, 2.0, 2.0];
            TileInstance::new(rect, *hd, range(i as u32), Colormap::Grey)
        })
        .collect();
    let scene = Scene {
        tiles,
        ..Scene::default()
    };
    let rows = n.div_ceil(cols);
    let img = renderer
        .render_to_image(&ctx, &scene, cols * 2, rows * 2)
        .unwrap_or_else(|e| panic!("{e}"));
    for i in 0..n {
        let (c, r) = (i % cols, i / cols);
        // Pixel (1,1) of a 2-px tile samples texel (5,5): value i·100 + 40.
        let got = f32::from(img.get_pixel(c * 2 + 1, r * 2 + 1).0[0]);
        let [lo, hi] = range(i);
        let want = 40.0 / (hi - lo) * 255.0;
        assert!(
            (got - want).abs() <= 1.0,
            "tile {i}: got {got}, want {want}"
        );
    }
}

#[test]
fn burn_tensors_copy_into_the_atlas_on_the_shared_device() {
    use burn::tensor::{Tensor, TensorData};
    use convlens::render::burn_bridge::map_ranges;
    use convlens::render::{AtlasFill, copy_maps, copy_maps_or_upload};

    let ctx = ctx();
    let shared = ctx
        .burn_device()
        .expect("burn accepts the renderer's device");
    // 9 maps of 7×5; then maps 2..8 as a view at an offset into the same buffer, as a layer's
    // slice of a bigger tensor would be.
    let (n, h, w) = (9usize, 5usize, 7usize);
    let values = activations(n, h * w);
    let all = Tensor::<3>::from_data(TensorData::new(values.clone(), [n, h, w]), &shared);
    for (maps, first, count) in [(all.clone(), 0, n), (all.clone().narrow(0, 2, 6), 2, 6)] {
        let expected = &values[first * h * w..(first + count) * h * w];
        let mut renderer = Renderer::with_atlas(
            &ctx,
            wgpu::TextureFormat::Rgba8Unorm,
            TileAtlas::with_layout(&ctx.device, 128, 2),
        );
        let tiles = copy_maps(&mut renderer.atlas, &ctx, maps).unwrap_or_else(|e| panic!("{e}"));
        let (handles, ranges): (Vec<TileHandle>, Vec<[f32; 2]>) = tiles.into_iter().unzip();
        let cpu_ranges: Vec<[f32; 2]> = expected.chunks(h * w).map(value_range).collect();
        assert_eq!(ranges, cpu_ranges, "ranges computed on the GPU");
        let img = render_grid(&ctx, &mut renderer, &handles, &ranges, Colormap::Grey, 3);
        let size = [w as u32, h as u32];
        check_grid(
            &img,
            expected,
            size,
            &ranges,
            Colormap::Grey,
            3,
            0.5 / 255.0 + 1e-4,
        );
    }

    // Ranges skip NaN and infinities like the CPU's; a map without finite values is [0, 0].
    let mut odd = values[..3 * h * w].to_vec();
    odd[3] = f32::NAN;
    odd[h * w + 4] = f32::NEG_INFINITY;
    odd[2 * h * w..].fill(f32::INFINITY);
    let odd_maps = Tensor::<3>::from_data(TensorData::new(odd.clone(), [3, h, w]), &shared);
    let cpu: Vec<[f32; 2]> = odd.chunks(h * w).map(value_range).collect();
    assert_eq!(map_ranges(&odd_maps).unwrap(), cpu);
    assert_eq!(cpu[2], [0.0, 0.0]);

    // A transposed view is not row-major: no zero-copy; the fallback reads it back and
    // uploads it, tiles shaped like the view.
    let mut atlas = TileAtlas::with_layout(&ctx.device, 128, 2);
    let transposed = all.clone().swap_dims(1, 2);
    assert!(copy_maps(&mut atlas, &ctx, transposed.clone()).is_err());
    let (tiles, how) = copy_maps_or_upload(&mut atlas, &ctx, transposed).unwrap();
    assert_eq!((tiles.len(), how), (n, AtlasFill::Upload));
    assert_eq!(tiles[0].0.size_px, [h as u32, w as u32]);

    // A tensor on another device (flex) is uploaded from the CPU.
    let flex = burn::tensor::Device::flex();
    let on_cpu = Tensor::<3>::from_data(TensorData::new(values.clone(), [n, h, w]), &flex);
    assert!(copy_maps(&mut atlas, &ctx, on_cpu.clone()).is_err());
    let (tiles, how) = copy_maps_or_upload(&mut atlas, &ctx, on_cpu).unwrap();
    assert_eq!((tiles.len(), how), (n, AtlasFill::Upload));
    let (_, how) = copy_maps_or_upload(&mut atlas, &ctx, all).unwrap();
    assert_eq!(how, AtlasFill::ZeroCopy);
}
