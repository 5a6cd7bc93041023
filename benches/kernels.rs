//! The CPU path's forward pass and its GEMM: bvlc AlexNet with seeded weights (conv layers
//! and the three fully connected ones, `tests/it/attribution_support/mod.rs`) run forward with
//! every layer kept, as `convlens bench` times `forward_ms`, and the `gemm` crate on the five
//! conv layers' GEMM shapes (`[c_out/g, K] × [K, Ho·Wo]`, per group);
//! EfficientNet-Lite0's depthwise convolutions at every SIMD level the CPU runs; and some of
//! its 1×1 convolutions on one thread (as `scan` runs them, one pass per core), among them
//! the 7×7 ones whose last column `pointwise` sums as dot products at the AVX2 level.
//!
//! Run: `cargo bench --bench kernels`. `scripts/bench_reference.py` puts the forward pass
//! next to onnxruntime's.

#[path = "../tests/it/attribution_support/mod.rs"]
mod attribution_support;

use std::hint::black_box;
use std::time::Duration;

use burn::tensor::Device;
use convlens::engine::kernels::depthwise::depthwise_conv2d_at;
use convlens::engine::kernels::geometry::ConvGeometry;
use convlens::engine::kernels::pointwise::pointwise_conv2d;
use convlens::engine::kernels::simd::SimdLevel;
use convlens::engine::{Capture, NamedInput};
use convlens::model::graph::Window2d;
use criterion::{Criterion, criterion_group, criterion_main};

fn forward(c: &mut Criterion) {
    convlens::engine::device::retain_freed_host_memory();
    let (engine, _, _) = attribution_support::alexnet(Device::flex());
    let input = engine
        .graph()
        .image_input()
        .expect("an image input")
        .clone();
    let n: usize = input.shape.iter().product();
    let named = NamedInput {
        name: input.name,
        shape: input.shape,
        data: (0..n).map(|i| (i % 255) as f32 / 127.0 - 1.0).collect(),
    };
    let mut group = c.benchmark_group("forward_alexnet_flex");
    group
        .sample_size(20)
        .measurement_time(Duration::from_secs(2));
    group.bench_function("every_layer_kept", |b| {
        b.iter(|| {
            black_box(
                engine
                    .forward_inputs(std::slice::from_ref(&named), &Capture::All)
                    .expect("forward"),
            )
        })
    });
    group.finish();
}

fn gemm(c: &mut Criterion) {
    // (c_out/g, K, Ho·Wo, groups) of conv1..conv5 at 224×224.
    let shapes = [
        (96, 363, 2916, 1),
        (128, 1200, 676, 2),
        (384, 2304, 144, 1),
        (192, 1728, 144, 2),
        (128, 1728, 144, 2),
    ];
    let mut group = c.benchmark_group("conv_gemm_alexnet");
    group
        .sample_size(20)
        .measurement_time(Duration::from_secs(1));
    for (layer, &(m, k, n, groups)) in shapes.iter().enumerate() {
        let a: Vec<f32> = (0..m * k).map(|i| (i % 7) as f32 - 3.0).collect();
        let b: Vec<f32> = (0..k * n).map(|i| (i % 5) as f32 - 2.0).collect();
        let mut dst = vec![0f32; m * n];
        group.bench_function(format!("conv{}_gemm_crate", layer + 1), |bench| {
            bench.iter(|| {
                for _ in 0..groups {
                    // SAFETY: dst is [m, n], a [m, k], b [k, n], all row-major and in bounds.
                    unsafe {
                        gemm::gemm(
                            m,
                            n,
                            k,
                            dst.as_mut_ptr(),
                            1,
                            n as isize,
                            false,
                            a.as_ptr(),
                            1,
                            k as isize,
                            b.as_ptr(),
                            1,
                            n as isize,
                            0.0,
                            1.0,
                            false,
                            false,
                            false,
                            gemm::Parallelism::Rayon(0),
                        )
                    }
                }
                black_box(&dst);
            })
        });
    }
    group.finish();
}

/// EfficientNet-Lite0's depthwise convolution shapes (channels, input side, kernel, stride),
/// at every SIMD level this CPU runs (`engine::kernels::simd`).
fn depthwise(c: &mut Criterion) {
    convlens::engine::device::retain_freed_host_memory();
    let shapes = [
        (32, 112, 3, 1),
        (96, 112, 3, 2),
        (144, 56, 5, 2),
        (240, 28, 5, 1),
        (672, 14, 5, 1),
        (1152, 7, 5, 1),
    ];
    let mut group = c.benchmark_group("depthwise_efficientnet");
    group
        .sample_size(20)
        .measurement_time(Duration::from_secs(1));
    for (channels, side, k, stride) in shapes {
        let pad = k / 2;
        let window = Window2d {
            kernel: [k, k],
            strides: [stride, stride],
            pads: [(pad, pad), (pad, pad)],
            dilations: [1, 1],
        };
        let out_side = (side + 2 * pad - k) / stride + 1;
        let Some(g) = ConvGeometry::new(
            &window,
            channels,
            &[1, channels, side, side],
            &[channels, 1, k, k],
            &[1, channels, out_side, out_side],
        ) else {
            continue;
        };
        let x: Vec<f32> = (0..channels * side * side)
            .map(|i| (i % 11) as f32 - 5.0)
            .collect();
        let weight: Vec<f32> = (0..channels * k * k)
            .map(|i| (i % 3) as f32 - 1.0)
            .collect();
        for level in SimdLevel::supported_levels() {
            group.bench_function(
                format!("c{channels}_{side}px_k{k}_s{stride}_{}", level.name()),
                |bench| bench.iter(|| black_box(depthwise_conv2d_at(level, &x, &weight, None, &g))),
            );
        }
    }
    group.finish();
}

/// EfficientNet-Lite0's 1×1 convolutions (c_in, c_out, side) of the 112², 14² and 7² stages
/// through `pointwise_conv2d` with bias, on a one-thread pool (the per-core scan's case).
fn pointwise(c: &mut Criterion) {
    convlens::engine::device::retain_freed_host_memory();
    let one_thread = rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .expect("a one-thread pool");
    let shapes = [
        (16, 96, 112),
        (480, 80, 14),
        (672, 192, 7),
        (1152, 192, 7),
        (1152, 320, 7),
    ];
    let mut group = c.benchmark_group("pointwise_efficientnet_one_thread");
    group
        .sample_size(20)
        .measurement_time(Duration::from_secs(1));
    for (c_in, c_out, side) in shapes {
        let window = Window2d {
            kernel: [1, 1],
            strides: [1, 1],
            pads: [(0, 0), (0, 0)],
            dilations: [1, 1],
        };
        let Some(g) = ConvGeometry::new(
            &window,
            1,
            &[1, c_in, side, side],
            &[c_out, c_in, 1, 1],
            &[1, c_out, side, side],
        ) else {
            continue;
        };
        let x: Vec<f32> = (0..c_in * side * side)
            .map(|i| (i % 11) as f32 - 5.0)
            .collect();
        let weight: Vec<f32> = (0..c_out * c_in).map(|i| (i % 3) as f32 - 1.0).collect();
        let bias: Vec<f32> = (0..c_out).map(|o| o as f32 * 0.25).collect();
        group.bench_function(format!("{c_in}_to_{c_out}_{side}px"), |bench| {
            one_thread.install(|| {
                bench.iter(|| black_box(pointwise_conv2d(&x, &weight, Some(&bias), &g)))
            })
        });
    }
    group.finish();
}

criterion_group!(benches, forward, gemm, depthwise, pointwise);
criterion_main!(benches);
