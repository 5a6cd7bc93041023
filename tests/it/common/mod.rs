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
