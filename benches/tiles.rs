//! Tile rendering speed: prepare + draw + GPU completion of N tiles offscreen (N = 1k, 10k,
//! 100k, all visible; and 100k zoomed in so most are culled), and filling the atlas from the
//! CPU (`upload_many`) versus from a GPU buffer (`copy_from_buffer`, the burn zero-copy path).
//!
//! Run: `cargo bench --bench tiles` (needs `[[bench]] name = "tiles" harness = false`).
//! On a machine without a GPU this measures Mesa lavapipe.

use std::hint::black_box;
use std::time::Duration;

use convlens::render::{
    Colormap, GpuContext, OffscreenTarget, Renderer, Scene, TileHandle, TileInstance, value_range,
};
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use wgpu::util::DeviceExt;

const VIEW: [u32; 2] = [1280, 800];
/// Feature-map side of the benched tiles (EfficientNet-Lite0 has 7, 14, 28, 56, 112).
const SIDE: u32 = 14;

fn values(n: usize) -> Vec<f32> {
    (0..n * (SIDE * SIDE) as usize)
        .map(|i| ((i as u64 * 2_654_435_761) % 65_536) as f32 / 65_536.0 - 0.5)
        .collect()
}

/// Tiles in a grid of `cell`-pixel squares, `cols` wide.
fn grid(handles: &[TileHandle], ranges: &[[f32; 2]], cell: f32, cols: usize) -> Vec<TileInstance> {
    handles
        .iter()
        .zip(ranges)
        .enumerate()
        .map(|(i, (h, r))| {
            let (c, row) = ((i % cols) as f32, (i / cols) as f32);
            TileInstance::new(
                [c * cell, row * cell, cell - 1.0, cell - 1.0],
                *h,
                *r,
                Colormap::Viridis,
            )
        })
        .collect()
}

fn setup(ctx: &GpuContext, n: usize) -> (Renderer, Vec<TileHandle>, Vec<[f32; 2]>) {
    let mut renderer = Renderer::new(ctx, OffscreenTarget::DEFAULT_FORMAT);
    let data = values(n);
    let ranges = data
        .chunks((SIDE * SIDE) as usize)
        .map(value_range)
        .collect();
    let handles = renderer
        .atlas
        .upload_many(&ctx.device, &ctx.queue, &data, SIDE, SIDE, n as u32)
        .unwrap_or_else(|e| panic!("upload: {e}"));
    (renderer, handles, ranges)
}

fn frame(c: &mut Criterion) {
    let ctx = GpuContext::headless().unwrap_or_else(|e| panic!("no adapter: {e}"));
    eprintln!("adapter: {}", ctx.describe());
    let target = OffscreenTarget::new(&ctx, VIEW[0], VIEW[1], OffscreenTarget::DEFAULT_FORMAT)
        .unwrap_or_else(|e| panic!("{e}"));
    let mut group = c.benchmark_group("tiles/frame");
    group
        .sample_size(20)
        .measurement_time(Duration::from_secs(8));
    for n in [1_000usize, 10_000, 100_000] {
        let (mut renderer, handles, ranges) = setup(&ctx, n);
        // Largest square cell that fits all n tiles in the view.
        let cell = ((VIEW[0] * VIEW[1]) as f32 / n as f32)
            .sqrt()
            .floor()
            .max(2.0);
        let cols = (VIEW[0] as f32 / cell) as usize;
        let scene = Scene {
            tiles: grid(&handles, &ranges, cell, cols),
            ..Scene::default()
        };
        group.throughput(Throughput::Elements(n as u64));
        // Without drawing: culling + instance upload (submitted and waited for).
        group.bench_with_input(BenchmarkId::new("prepare_upload", n), &scene, |b, scene| {
            b.iter(|| {
                let stats = renderer.prepare(&ctx, scene, VIEW);
                ctx.queue.submit([]);
                let _ = ctx.wait_idle();
                black_box(stats)
            })
        });
        group.bench_with_input(BenchmarkId::new("all_visible", n), &scene, |b, scene| {
            b.iter(|| {
                let stats = renderer.draw_to_view(&ctx, scene, target.view(), VIEW);
                let _ = ctx.wait_idle();
                black_box(stats)
            })
        });
        if n == 100_000 {
            // Zoomed in: 24-px tiles, so about 1.8k of the 100k are on screen.
            let zoomed = Scene {
                tiles: grid(&handles, &ranges, 24.0, 316),
                ..Scene::default()
            };
            group.bench_with_input(BenchmarkId::new("zoomed_culled", n), &zoomed, |b, scene| {
                b.iter(|| {
                    let stats = renderer.draw_to_view(&ctx, scene, target.view(), VIEW);
                    let _ = ctx.wait_idle();
                    black_box(stats)
                })
            });
        }
    }
    group.finish();
}

fn atlas_fill(c: &mut Criterion) {
    let ctx = GpuContext::headless().unwrap_or_else(|e| panic!("no adapter: {e}"));
    let mut group = c.benchmark_group("tiles/atlas_fill");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(6));
    for n in [1_000usize, 10_000] {
        let data = values(n);
        let mut renderer = Renderer::new(&ctx, OffscreenTarget::DEFAULT_FORMAT);
        group.throughput(Throughput::Bytes((data.len() * 4) as u64));
        group.bench_with_input(BenchmarkId::new("cpu_upload", n), &data, |b, data| {
            b.iter(|| {
                renderer.atlas.clear();
                let h =
                    renderer
                        .atlas
                        .upload_many(&ctx.device, &ctx.queue, data, SIDE, SIDE, n as u32);
                ctx.queue.submit([]);
                let _ = ctx.wait_idle();
                black_box(h.map(|h| h.len()))
            })
        });
        let buffer = ctx
            .device
            .create_buffer_init(&wgpu::util::BufferInitDescriptor {
                label: Some("bench activation buffer"),
                contents: bytemuck::cast_slice(&data),
                usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC,
            });
        group.bench_with_input(
            BenchmarkId::new("gpu_buffer_copy", n),
            &buffer,
            |b, buffer| {
                b.iter(|| {
                    renderer.atlas.clear();
                    let h = renderer.atlas.copy_from_buffer(
                        &ctx.device,
                        &ctx.queue,
                        buffer,
                        0,
                        SIDE,
                        SIDE,
                        n as u32,
                    );
                    let _ = ctx.wait_idle();
                    black_box(h.map(|h| h.len()))
                })
            },
        );
    }
    group.finish();
}

/// Ranges of a layer's gradient images as the viewer computes them beside the upload: min-max
/// and the robust threshold (`GradientNorm::Robust`, a linear-time selection per image), 112
/// RGB 224×224 images (EfficientNet-Lite0's `/_blocks.10/_project_conv/Conv`), images in
/// parallel as `app::upload` does.
fn gradient_norm(c: &mut Criterion) {
    use convlens::viz::gradient_norm::GradientNorm;
    use rayon::prelude::*;
    let per = 3 * 224 * 224;
    let images: Vec<f32> = (0..112 * per)
        .map(|i| {
            let u = ((i as u64 * 2_654_435_761) % 65_536) as f32 / 65_536.0 - 0.5;
            // Heavy tails, like gradients: most values small, a few large.
            u * u * u * 8.0
        })
        .collect();
    let mut group = c.benchmark_group("tiles/gradient_norm_112x3x224x224");
    group.sample_size(10);
    for norm in [GradientNorm::MinMax, GradientNorm::Robust] {
        group.bench_function(norm.name(), |b| {
            b.iter(|| {
                let ranges: Vec<[f32; 2]> =
                    images.par_chunks(per).map(|im| norm.range(im)).collect();
                black_box(ranges)
            })
        });
    }
    group.finish();
}

criterion_group!(benches, frame, atlas_fill, gradient_norm);
criterion_main!(benches);
