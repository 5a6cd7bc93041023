//! Conformance of whole models against onnxruntime: the nine ONNX "light" zoo models
//! (AlexNet … ShuffleNet) and small random-weight models, every intermediate tensor
//! compared with the reference stored by `scripts/make_conformance_fixtures.py`.
//! Tolerance: max |error| relative to the reference tensor's max |value| ≤ 1e-4 on the CPU
//! (flex) and ≤ 1e-3 on wgpu; tensor sums must agree to the same relative precision.

use crate::common;

use std::collections::HashMap;
use std::sync::Arc;

use burn::tensor::Device;
use common::{
    LIGHT_MODELS as LIGHT, MIXED_MODELS as MIXED, fixture, formula_input, max_abs, scaled_error,
};
use convlens::engine::{Capture, Engine, NamedInput};
use convlens::model::{ImportOptions, load_onnx_file};
use serde_json::Value;

struct Report {
    tensors: usize,
    worst: f32,
    worst_name: String,
}

/// Runs `<dir>/<name>.onnx` on the formula input and compares with `<name>.ref.json`.
fn check_model(dir: &str, name: &str, device: Device, tol: f32) -> Report {
    let model = fixture(&format!("{dir}/{name}.onnx"));
    let reference: Value = serde_json::from_slice(
        &std::fs::read(fixture(&format!("{dir}/{name}.ref.json"))).expect("ref.json exists"),
    )
    .expect("ref.json parses");
    let graph = Arc::new(
        load_onnx_file(&model, &ImportOptions::default())
            .unwrap_or_else(|e| panic!("{name}: import failed: {e}")),
    );
    let input_name = reference["input_name"]
        .as_str()
        .expect("input_name")
        .to_string();
    let shape: Vec<usize> =
        serde_json::from_value(reference["input_shape"].clone()).expect("input_shape");
    let data = formula_input(shape.iter().product());
    let engine = Engine::new(Arc::clone(&graph), device);
    let acts = engine
        .forward_inputs(
            &[NamedInput {
                name: input_name,
                shape,
                data,
            }],
            &Capture::All,
        )
        .unwrap_or_else(|e| panic!("{name}: forward failed: {e}"));
    let computed: HashMap<&str, ()> = graph
        .nodes
        .iter()
        .flat_map(|n| n.outputs.iter().map(|o| (o.as_str(), ())))
        .collect();

    let mut report = Report {
        tensors: 0,
        worst: 0.0,
        worst_name: String::new(),
    };
    for t in reference["tensors"].as_array().expect("tensors") {
        if t["dtype"] != "float32" {
            continue;
        }
        let tname = t["name"].as_str().expect("name");
        if !computed.contains_key(tname) && !graph.constants.contains_key(tname) {
            // Only outputs that ConvLens folded away entirely may be missing (e.g. Dropout masks).
            assert!(
                t["op"] == "Dropout" || t["op"] == "Constant",
                "{name}: tensor '{tname}' ({}) was not computed",
                t["op"]
            );
            continue;
        }
        let host = acts.read(tname).or_else(|_| {
            let c = &graph.constants[tname];
            Ok::<_, ()>(convlens::engine::HostTensor {
                shape: c.shape.clone(),
                data: c.to_f32_vec(),
            })
        });
        let host = host.expect("value readable");
        let want_shape: Vec<usize> = serde_json::from_value(t["shape"].clone()).expect("shape");
        assert_eq!(host.shape, want_shape, "{name}: shape of '{tname}'");
        let scale = t["max_abs"].as_f64().expect("max_abs") as f32;
        let err = if let Some(values) = t["values"].as_array() {
            let want: Vec<f32> = values
                .iter()
                .map(|v| v.as_f64().unwrap_or(f64::NAN) as f32)
                .collect();
            scaled_error(&host.data, &want, scale)
        } else {
            let samples = t["samples"].as_array().expect("values or samples");
            let (got, want): (Vec<f32>, Vec<f32>) = samples
                .iter()
                .map(|s| {
                    (
                        host.data[s[0].as_u64().expect("index") as usize],
                        s[1].as_f64().unwrap_or(f64::NAN) as f32,
                    )
                })
                .unzip();
            let sample_err = scaled_error(&got, &want, scale);
            // The sum over all elements checks the ones not sampled.
            let sum: f64 = host.data.iter().map(|&x| f64::from(x)).sum();
            let abs_sum = t["abs_sum"].as_f64().expect("abs_sum").max(1e-12);
            let sum_err = ((sum - t["sum"].as_f64().expect("sum")).abs() / abs_sum) as f32;
            sample_err.max(sum_err)
        };
        assert!(
            err <= tol,
            "{name}: '{tname}' ({}) differs from onnxruntime by {err:.3e} (tolerance {tol:.0e}); max_abs {:.3e}",
            t["op"],
            max_abs(&host.data)
        );
        report.tensors += 1;
        if err > report.worst {
            report.worst = err;
            report.worst_name = tname.to_string();
        }
    }
    assert!(report.tensors > 0, "{name}: nothing compared");
    eprintln!(
        "{dir}/{name}: {} tensors, worst scaled error {:.2e} at '{}'",
        report.tensors, report.worst, report.worst_name
    );
    report
}

#[test]
fn light_zoo_models_match_onnxruntime_on_cpu() {
    for name in LIGHT {
        check_model("light", name, common::cpu(), 1e-4);
    }
}

#[test]
fn random_weight_models_match_onnxruntime_on_cpu() {
    for name in MIXED {
        check_model("mixed", name, common::cpu(), 1e-4);
    }
}

#[test]
fn models_match_onnxruntime_on_wgpu() {
    let device = common::wgpu();
    for name in MIXED {
        check_model("mixed", name, device.clone(), 1e-3);
    }
    for name in ["squeezenet", "shufflenet"] {
        check_model("light", name, device.clone(), 1e-3);
    }
}
