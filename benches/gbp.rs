//! Guided backpropagation of every filter of every conv layer of an AlexNet-shaped network
//! (96 + 256 + 384 + 384 + 256 = 1376 filters at 224×224; the paper needed 920 s for this):
//! one saved forward pass, batched reverse passes with the default chunk rule, images read
//! back to the CPU. The workload is `tests/it/attribution_support/mod.rs`.
//!
//! Run: `cargo bench --bench gbp` (needs `[[bench]] name = "gbp" harness = false`);
//! `CONVLENS_BENCH_DEVICE=wgpu` measures burn's wgpu device (Mesa lavapipe without a GPU).
//! The PyTorch counterpart is `scripts/bench_gbp_reference.py`.

#[path = "../tests/it/attribution_support/mod.rs"]
mod attribution_support;

use std::hint::black_box;
use std::time::Duration;

use burn::tensor::Device;
use convlens::engine::methods::attribution::{GradientRule, attribute_layer};
use criterion::{Criterion, criterion_group, criterion_main};

fn bench(c: &mut Criterion) {
    // As the binary does: large freed tensors stay in the heap instead of fresh page faults.
    convlens::engine::device::retain_freed_host_memory();
    let (device, label) = match std::env::var("CONVLENS_BENCH_DEVICE").as_deref() {
        Ok("wgpu") => (Device::default(), "wgpu"),
        _ => (Device::flex(), "flex"),
    };
    let (engine, acts, convs) = attribution_support::alexnet(device);
    let mut group = c.benchmark_group(format!("gbp_alexnet_{label}"));
    group
        .sample_size(10)
        .warm_up_time(Duration::from_millis(1))
        .measurement_time(Duration::from_secs(1));
    for i in convs {
        let node = &engine.graph().nodes[i];
        group.bench_function(
            format!("{}_{}_filters", node.name, node.output_shape()[1]),
            |b| {
                b.iter(|| {
                    black_box(
                        attribute_layer(&engine, &acts, i, GradientRule::Guided, None)
                            .expect("gbp"),
                    )
                })
            },
        );
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
