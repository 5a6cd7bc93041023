//! `convlens bench --json` end to end on a small fixture: one JSON object on stdout with
//! every figure present and sane (no timing thresholds), and the gradient workload equal to
//! the conv filters counted independently from `convlens info --json`.

use crate::common;

use std::process::Command;

use common::fixture;

fn convlens(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_convlens"))
        .args(args)
        .output()
        .expect("binary runs")
}

fn positive(v: &serde_json::Value, key: &str) -> f64 {
    let x = v[key]
        .as_f64()
        .unwrap_or_else(|| panic!("'{key}' is not a number: {v}"));
    assert!(x.is_finite() && x > 0.0, "'{key}' = {x} is not positive");
    x
}

#[test]
fn bench_json_reports_every_figure() {
    let model = fixture("mixed/tiny_alexnet.onnx");
    let model = model.to_str().expect("utf8 path");

    // The conv filters, counted from the architecture: every Conv/ConvTranspose layer with a
    // [1, C, H, W] output contributes C gradient images.
    let info = convlens(&["info", model, "--json"]);
    assert!(info.status.success());
    let arch: serde_json::Value = serde_json::from_slice(&info.stdout).expect("info JSON");
    let layers = arch["layers"].as_array().expect("layers");
    let conv_filters: u64 = layers
        .iter()
        .filter(|l| matches!(l["type"].as_str(), Some("Conv" | "ConvTranspose")))
        .filter_map(|l| match l["output_shape"].as_array()?.as_slice() {
            [n, c, _, _] if n.as_u64() == Some(1) => c.as_u64(),
            _ => None,
        })
        .sum();
    assert_eq!(conv_filters, 16 + 24 + 32, "the fixture changed");

    let out = convlens(&[
        "bench",
        model,
        "--json",
        "--repeats",
        "1",
        "--warmup",
        "0",
        "--device",
        "cpu",
        "--featvis",
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "bench failed: {stderr}");
    let stdout = String::from_utf8(out.stdout).expect("utf8 stdout");
    // Exactly one JSON value on stdout, and it is an object.
    let mut values = serde_json::Deserializer::from_str(&stdout).into_iter::<serde_json::Value>();
    let v = values
        .next()
        .expect("a JSON value")
        .unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {stdout}"));
    assert!(
        values.next().is_none(),
        "more than one JSON value: {stdout}"
    );
    assert!(v.is_object(), "{v}");

    for key in [
        "forward_ms",
        "gbp_all_conv_s",
        "gbp_filters",
        "frame_ms",
        "tiles",
        "input_to_tiles_ms",
        "device",
        "peak_rss_mib",
        "model",
        "repeats",
    ] {
        assert!(v.get(key).is_some(), "key '{key}' missing: {v}");
    }
    positive(&v, "forward_ms");
    // `--batch` defaults to 16: one pass over 16 different inputs.
    assert_eq!(v["batch"].as_u64(), Some(16), "{v}");
    positive(&v, "forward_batch_ms");
    let per_s = v["forward_batch_images_per_s"].as_f64().expect("images/s");
    let ms = v["forward_batch_ms"].as_f64().expect("ms");
    assert!(
        (per_s - 16.0 / (ms * 1e-3)).abs() <= 0.06 + 1e-3 * per_s,
        "{v}"
    );
    positive(&v, "gbp_all_conv_s");
    positive(&v, "featvis_s_per_filter");
    assert_eq!(v["featvis_layer"].as_str(), Some("conv3"), "{v}");
    assert_eq!(v["gbp_filters"].as_u64(), Some(conv_filters), "{v}");
    assert_eq!(v["repeats"].as_u64(), Some(1));
    assert!(
        v["model"]
            .as_str()
            .is_some_and(|m| m.ends_with("tiny_alexnet.onnx"))
    );
    assert!(
        v["device"].as_str().is_some_and(|d| d.contains("cpu")),
        "{v}"
    );
    if cfg!(target_os = "linux") {
        positive(&v, "peak_rss_mib");
    }
    // The rendering figures need a wgpu adapter (Mesa's software Vulkan in CI); without one
    // they are null and a note says so.
    if v["frame_ms"].is_null() {
        assert!(
            v["tiles"].is_null() && v["input_to_tiles_ms"].is_null(),
            "{v}"
        );
        assert!(
            v["notes"].to_string().contains("adapter"),
            "null frame_ms without a note: {v}"
        );
    } else {
        positive(&v, "frame_ms");
        positive(&v, "input_to_tiles_ms");
        // The conv layer with the most filters is conv3 (32 of them), all drawn.
        assert_eq!(v["tiles"].as_u64(), Some(32), "{v}");
        assert_eq!(v["uploaded_tiles"].as_u64(), Some(conv_filters), "{v}");
        // The architecture figures, flattened into the same object.
        assert_eq!(v["arch_layers"].as_u64(), Some(layers.len() as u64), "{v}");
        for key in ["open_to_first_frame_ms", "first_frame_ms", "arch_frame_ms"] {
            positive(&v, key);
        }
        assert!(v["open_to_first_frame_ms"].as_f64() >= v["first_frame_ms"].as_f64());
    }
}

/// `bench --arch-only` on the 12,501-layer residual stack of `scripts/make_deep_model.py`:
/// the architecture figures and nothing computed; the levels are the names' stage → block.
#[test]
fn bench_arch_only_times_a_twelve_thousand_layer_architecture() {
    let model = fixture("deep/residual_12501.onnx");
    let out = convlens(&[
        "bench",
        model.to_str().expect("utf8"),
        "--arch-only",
        "--json",
    ]);
    let text = common::output_text(&out);
    assert!(out.status.success(), "{text}");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("one JSON object");
    assert_eq!(v["arch_layers"].as_u64(), Some(12_501), "{v}");
    // stem/conv, then stage0..stage4.
    assert_eq!(v["arch_top_nodes"].as_u64(), Some(6), "{v}");
    assert_eq!(v["arch_levels"].as_u64(), Some(2), "{v}");
    for key in [
        "open_to_first_frame_ms",
        "first_frame_ms",
        "arch_frame_ms",
        "arch_frame_blocks_ms",
    ] {
        positive(&v, key);
    }
    assert!(v.get("forward_ms").is_none(), "nothing computed: {v}");
}

#[test]
fn bench_rejects_zero_repeats() {
    let out = convlens(&["bench", "--repeats", "0", "--skip-gbp"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("repeats"));
}
