//! Golden screenshots of the viewer's views, rendered headless exactly as a user would with
//! `convlens view … --screenshot` (CPU compute, software rendering): an AlexNet-shaped
//! model's first conv layer (forward), its last conv layer under guided backprop with a
//! hovered filter, the softmax "Prob" chart, a pooling layer's window, and a ResNet-shaped
//! model's architecture with its skip connections. Regenerate with
//! `CONVLENS_UPDATE_GOLDEN=1 cargo test --test it view_golden::` and look at the PNGs.

use crate::common;

use std::process::Command;

use common::fixture;
use common::golden::{Tolerance, assert_golden};

/// Whole frames: text and gradient images may differ slightly between rasterisers.
const VIEW: Tolerance = Tolerance {
    per_channel: 24,
    outlier_fraction: 0.01,
};

fn screenshot(model: &str, extra: &[&str]) -> image::RgbaImage {
    screenshot_sized(model, "900x560", extra)
}

fn screenshot_sized(model: &str, size: &str, extra: &[&str]) -> image::RgbaImage {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("view.png");
    let result = Command::new(env!("CARGO_BIN_EXE_convlens"))
        .arg("view")
        .arg(fixture(model))
        .args(["--device", "cpu", "--window-size", size, "--screenshot"])
        .arg(&out)
        .args(extra)
        // Annotations from the user's own data directory must not leak into the goldens.
        .env("CONVLENS_DATA_DIR", dir.path())
        .output()
        .unwrap();
    assert!(
        result.status.success(),
        "{}",
        String::from_utf8_lossy(&result.stderr)
    );
    image::open(&out).unwrap().to_rgba8()
}

#[test]
fn alexnet_conv1_forward() {
    let img = screenshot("mixed/tiny_alexnet.onnx", &["--layer", "conv1"]);
    assert_golden("view_alexnet_conv1_forward", &img, VIEW);
}

#[test]
fn alexnet_last_conv_gbp_with_hover() {
    let img = screenshot(
        "mixed/tiny_alexnet.onnx",
        &["--layer", "conv3", "--method", "gbp", "--hover", "5"],
    );
    assert_golden("view_alexnet_conv3_gbp_hover5", &img, VIEW);
}

#[test]
fn alexnet_prob_chart() {
    let img = screenshot(
        "mixed/tiny_alexnet.onnx",
        &["--layer", "prob", "--hover", "1"],
    );
    assert_golden("view_alexnet_prob", &img, VIEW);
}

#[test]
fn alexnet_pooling_window() {
    let img = screenshot("mixed/tiny_alexnet.onnx", &["--layer", "pool1"]);
    assert_golden("view_alexnet_pool1", &img, VIEW);
}

#[test]
fn resnet_architecture() {
    // Tall enough for three rows of nodes: the residual block, the split/concat branches.
    let img = screenshot_sized(
        "mixed/tiny_resnet.onnx",
        "1000x900",
        &["--layer", "block1.add"],
    );
    assert_golden("view_resnet_architecture", &img, VIEW);
}

#[test]
fn resnet_architecture_collapsed_into_blocks() {
    let img = screenshot_sized(
        "mixed/tiny_resnet.onnx",
        "1000x700",
        &["--layer", "block1.add", "--collapse-blocks"],
    );
    assert_golden("view_resnet_collapsed", &img, VIEW);
}
