//! Per-op conformance against the ONNX package's own node tests (`onnx/backend/test/data/
//! node/*`, copied under `tests/fixtures/node/`): each test's model runs on its stored
//! inputs and must reproduce its stored outputs (scaled error ≤ 1e-4 on the CPU).
//! The first input stays a runtime input; the others (weights, axes, bounds, indices)
//! become initializers, which is how real CNNs carry them.

use crate::common;

use std::sync::Arc;

use common::{fixture, scaled_error};
use convlens::engine::{Capture, Engine, NamedInput};
use convlens::model::{ConstTensor, ImportOptions, load_onnx_bytes};
use onnx_ir::{Message, ModelProto, TensorProto};

fn read_pb(path: &std::path::Path) -> TensorProto {
    TensorProto::parse_from_bytes(&std::fs::read(path).expect("pb readable")).expect("pb parses")
}

/// Runs one node test; returns the worst scaled error.
fn run_node_test(dir: &std::path::Path) -> Result<f32, String> {
    let mut model = ModelProto::parse_from_bytes(
        &std::fs::read(dir.join("model.onnx")).map_err(|e| e.to_string())?,
    )
    .map_err(|e| e.to_string())?;
    let data_dir = dir.join("test_data_set_0");
    let graph_proto = model.graph.as_mut().ok_or("no graph")?;
    let input_names: Vec<String> = graph_proto.input.iter().map(|i| i.name.clone()).collect();
    let mut runtime = Vec::new();
    for (i, name) in input_names.iter().enumerate() {
        let mut t = read_pb(&data_dir.join(format!("input_{i}.pb")));
        let value = ConstTensor::from_proto(&t).map_err(|e| e.to_string())?;
        if i == 0 && value.is_float() && t.data_type == 1 {
            runtime.push(NamedInput {
                name: name.clone(),
                shape: value.shape.clone(),
                data: value.to_f32_vec(),
            });
        } else {
            t.name = name.clone();
            graph_proto.initializer.push(t);
        }
    }
    let bytes = model.write_to_bytes().map_err(|e| e.to_string())?;
    let graph = Arc::new(
        load_onnx_bytes(
            &bytes,
            &dir.display().to_string(),
            "node",
            &ImportOptions::default(),
        )
        .map_err(|e| e.to_string())?,
    );
    let engine = Engine::new(Arc::clone(&graph), common::cpu());
    let acts = engine
        .forward_inputs(&runtime, &Capture::All)
        .map_err(|e| e.to_string())?;
    let mut worst = 0.0f32;
    for (k, out_name) in graph.outputs.iter().enumerate() {
        let want = ConstTensor::from_proto(&read_pb(&data_dir.join(format!("output_{k}.pb"))))
            .map_err(|e| e.to_string())?;
        let got = acts.read(out_name).map_err(|e| e.to_string())?;
        if got.shape != want.shape {
            return Err(format!(
                "output {k} shape {:?}, expected {:?}",
                got.shape, want.shape
            ));
        }
        let expected = want.to_f32_vec();
        let scale = common::max_abs(&expected).max(1.0);
        worst = worst.max(scaled_error(&got.data, &expected, scale));
    }
    Ok(worst)
}

/// Node tests outside what ConvLens supports, each of which must fail with a clear error
/// naming the op (never a panic or a wrong answer): dilated average pooling and
/// zero-element tensors, neither of which occurs in CNNs.
const EXPECTED_UNSUPPORTED: [(&str, &str); 5] = [
    ("test_averagepool_2d_dilations", "dilated average pooling"),
    ("test_reshape_allowzero_reordered", "Reshape"),
    ("test_slice_start_out_of_bounds", "empty"),
    ("test_split_zero_size_splits_opset13", "Split"),
    ("test_split_zero_size_splits_opset18", "Split"),
];

#[test]
fn onnx_node_tests_pass() {
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(fixture("node/INDEX.json")).expect("INDEX.json"))
            .expect("INDEX parses");
    let tests = index.as_array().expect("array");
    let mut failures = Vec::new();
    let mut worst = (0.0f32, String::new());
    for t in tests {
        let name = t["test"].as_str().expect("test name");
        let result = run_node_test(&fixture(&format!("node/{name}")));
        if let Some((_, why)) = EXPECTED_UNSUPPORTED.iter().find(|(n, _)| *n == name) {
            match result {
                Err(e) if e.contains(why) => continue,
                other => failures.push(format!(
                    "{name}: expected a clear '{why}' error, got {other:?}"
                )),
            }
            continue;
        }
        match result {
            Ok(err) if err <= 1e-4 => {
                if err > worst.0 {
                    worst = (err, name.to_string());
                }
            }
            Ok(err) => failures.push(format!("{name}: scaled error {err:.3e}")),
            Err(e) => failures.push(format!("{name}: {e}")),
        }
    }
    eprintln!(
        "{} node tests, worst scaled error {:.2e} ({})",
        tests.len(),
        worst.0,
        worst.1
    );
    assert!(
        failures.is_empty(),
        "{} of {} node tests failed:\n{}",
        failures.len(),
        tests.len(),
        failures.join("\n")
    );
}
