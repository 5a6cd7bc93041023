//! Shared helpers for the integration tests: fixture paths, the deterministic input the
//! reference scripts also use, devices, and the one tolerance rule every numeric
//! comparison goes through.
#![allow(dead_code)]

pub mod golden;

use std::path::PathBuf;

use burn::tensor::Device;

/// `tests/fixtures/<rel>`.
pub fn fixture(rel: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(rel)
}

/// The nine ONNX "light" zoo models of `tests/fixtures/light/`.
pub const LIGHT_MODELS: [&str; 9] = [
    "alexnet",
    "zfnet512",
    "vgg19",
    "squeezenet",
    "resnet50",
    "inception_v1",
    "inception_v2",
    "densenet121",
    "shufflenet",
];
/// The random-weight models of `tests/fixtures/mixed/`.
pub const MIXED_MODELS: [&str; 3] = ["tiny_alexnet", "tiny_resnet", "tiny_shapechain"];

/// `tiny_alexnet` cut after its first node (a Conv with bias): a linear network, whose
/// closed forms the occlusion and feature-visualisation tests check.
pub fn first_conv_of_tiny_alexnet() -> std::sync::Arc<convlens::model::Graph> {
    use onnx_ir::{Message, ModelProto};
    let mut model = ModelProto::parse_from_bytes(
        &std::fs::read(fixture("mixed/tiny_alexnet.onnx")).expect("fixture"),
    )
    .expect("parses");
    let graph = model.graph.as_mut().expect("graph");
    graph.node.truncate(1);
    assert_eq!(graph.node[0].op_type, "Conv");
    graph.output[0].name = graph.node[0].output[0].clone();
    let bytes = model.write_to_bytes().expect("serialise");
    std::sync::Arc::new(
        convlens::model::load_onnx_bytes(
            &bytes,
            "conv-only",
            "conv",
            &convlens::model::ImportOptions::default(),
        )
        .expect("imports"),
    )
}

/// The graph's image input filled with [`formula_input`].
pub fn formula_image(graph: &convlens::model::Graph) -> convlens::model::preprocess::InputTensor {
    let shape = graph.image_input().expect("input").shape.clone();
    let [n, p, h, w] = <[usize; 4]>::try_from(shape.as_slice()).expect("4-D input");
    convlens::model::preprocess::InputTensor {
        shape: [n, p, h, w],
        data: formula_input(p * h * w),
        picture: None,
    }
}

/// The input both `scripts/make_conformance_fixtures.py` and these tests generate:
/// `u = ((i * 2654435761) mod 2^32) / 2^32; x = f32(2u - 1)` over the flat index `i`.
pub fn formula_input(n: usize) -> Vec<f32> {
    (0..n as u64)
        .map(|i| {
            let u = ((i * 2_654_435_761) % 4_294_967_296) as f64 / 4_294_967_296.0;
            (u * 2.0 - 1.0) as f32
        })
        .collect()
}

/// Runs the `convlens` binary with `args`, annotations kept under `data_dir` (never the
/// user's own data directory).
pub fn run_convlens(data_dir: &std::path::Path, args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_convlens"))
        .env("CONVLENS_DATA_DIR", data_dir)
        .env("CONVLENS_CACHE_DIR", data_dir.join("cache"))
        .args(args)
        .output()
        .expect("the convlens binary runs")
}

/// stdout and stderr of a finished process, as text.
pub fn output_text(out: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// The flex CPU device.
pub fn cpu() -> Device {
    Device::flex()
}

/// burn's wgpu device on whatever adapter exists (Mesa lavapipe in CI). Panics with a
/// clear message when wgpu finds no adapter at all, since CI must exercise this path.
pub fn wgpu() -> Device {
    assert!(
        convlens::engine::device::adapter_summary().is_some(),
        "wgpu found no adapter: install Mesa's software Vulkan (Debian: mesa-vulkan-drivers)"
    );
    Device::default()
}

/// Error of `actual` against `expected`, relative to the reference tensor's scale:
/// `max_i |a_i - e_i| / max(max_j |e_j|, 1e-6)`.
pub fn scaled_error(actual: &[f32], expected: &[f32], scale: f32) -> f32 {
    assert_eq!(actual.len(), expected.len(), "element count differs");
    let worst = actual
        .iter()
        .zip(expected)
        .map(|(a, e)| {
            if a.is_nan() != e.is_nan() {
                f32::INFINITY
            } else if a.is_nan() {
                0.0
            } else {
                (a - e).abs()
            }
        })
        .fold(0.0f32, f32::max);
    worst / scale.max(1e-6)
}

/// Max absolute value of a slice.
pub fn max_abs(v: &[f32]) -> f32 {
    v.iter()
        .map(|x| x.abs())
        .filter(|x| x.is_finite())
        .fold(0.0, f32::max)
}
