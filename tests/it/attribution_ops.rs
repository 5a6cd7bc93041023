//! Every op's vector-Jacobian product against central differences, on the ONNX node tests
//! (`tests/fixtures/node/`, the same single-op models the forward conformance uses): the
//! first input is the runtime input, the others become initializers; J = <r, output> for a
//! fixed pseudo-random r, and `<∂J/∂x, v>` from the reverse pass must match
//! `(J(x + εv) − J(x − εv)) / 2ε` along random directions that cross no kink.

use crate::attribution_support;
use crate::common;

use std::collections::BTreeMap;

use std::path::Path;
use std::sync::Arc;

use attribution_support::kink_signature;
use burn::tensor::{Tensor, TensorData};
use common::fixture;
use convlens::engine::methods::attribution::GradientRule;
use convlens::engine::reverse::backward::backward;
use convlens::engine::reverse::step::grad_dims;
use convlens::engine::{Activations, Capture, Engine, NamedInput};
use convlens::model::{ConstTensor, Graph, ImportOptions, load_onnx_bytes};
use onnx_ir::{Message, ModelProto, NodeProto, TensorProto};

/// Uniform values in [-1, 1].
fn noise(n: usize, salt: u64) -> Vec<f32> {
    (0..n as u64)
        .map(|i| (attribution_support::unit(salt, i) * 2.0 - 1.0) as f32)
        .collect()
}

fn read_pb(path: &Path) -> TensorProto {
    TensorProto::parse_from_bytes(&std::fs::read(path).expect("pb readable")).expect("pb parses")
}

/// The node test as a graph with one runtime float input `x` behind an Identity node (the
/// engine does not keep graph inputs, and ReLU, MaxPool … need their input's value), the
/// other inputs as initializers; `None` when the first input is not float.
fn load_node_test(dir: &Path) -> Option<(Arc<Graph>, NamedInput)> {
    let mut model =
        ModelProto::parse_from_bytes(&std::fs::read(dir.join("model.onnx")).ok()?).ok()?;
    let data = dir.join("test_data_set_0");
    let graph = model.graph.as_mut()?;
    let names: Vec<String> = graph.input.iter().map(|i| i.name.clone()).collect();
    let mut runtime = None;
    for (i, name) in names.iter().enumerate() {
        let mut t = read_pb(&data.join(format!("input_{i}.pb")));
        let value = ConstTensor::from_proto(&t).ok()?;
        if i == 0 {
            if !(value.is_float() && t.data_type == 1) {
                return None;
            }
            runtime = Some(NamedInput {
                name: name.clone(),
                shape: value.shape.clone(),
                data: value.to_f32_vec(),
            });
        } else {
            t.name = name.clone();
            graph.initializer.push(t);
        }
    }
    let input = runtime?;
    let inner = format!("{}__identity", input.name);
    for node in graph.node.iter_mut() {
        for i in node.input.iter_mut().filter(|i| **i == input.name) {
            *i = inner.clone();
        }
    }
    let mut identity = NodeProto::new();
    identity.op_type = "Identity".into();
    identity.name = "input_identity".into();
    identity.input = vec![input.name.clone()];
    identity.output = vec![inner];
    graph.node.insert(0, identity);
    let bytes = model.write_to_bytes().ok()?;
    let graph = load_onnx_bytes(
        &bytes,
        &dir.display().to_string(),
        "node",
        &ImportOptions::default(),
    )
    .ok()?;
    Some((Arc::new(graph), input))
}

/// `Ok(worst raw relative error)`, `Err(reason)` when the test does not apply or fails.
fn check(dir: &Path) -> Result<f64, String> {
    let (graph, input) = load_node_test(dir).ok_or("no float runtime input or not importable")?;
    let engine = Engine::new(Arc::clone(&graph), common::cpu());
    let run = |data: Vec<f32>| {
        let x = NamedInput {
            data,
            ..input.clone()
        };
        engine
            .forward_inputs(std::slice::from_ref(&x), &Capture::All)
            .map_err(|e| e.to_string())
    };
    let acts = run(input.data.clone())?;
    let out = graph.outputs.first().ok_or("no output")?;
    let layer = graph
        .nodes
        .iter()
        .position(|n| n.outputs.first() == Some(out))
        .ok_or("output not a node's first output")?;
    let out_shape = graph.nodes[layer].output_shape().to_vec();
    let dims = grad_dims(1, &out_shape).ok_or("output of rank 6")?;
    let m: usize = out_shape.iter().product();
    let r = noise(m, 7);
    let seed = Tensor::<6>::from_data(TensorData::new(r.clone(), dims), engine.device());
    let grad = backward(&engine, &acts, layer, seed, GradientRule::Backprop)
        .map_err(|e| format!("reverse pass: {e}"))?;
    let grad: Vec<f32> = grad
        .into_data()
        .try_to_vec()
        .map_err(|e| format!("{e:?}"))?;
    let objective = |a: &Activations| -> f64 {
        let y = a.read(out).expect("output").data;
        y.iter()
            .zip(&r)
            .map(|(&y, &r)| f64::from(y) * f64::from(r))
            .sum()
    };
    let abs_objective: f64 = acts
        .read(out)
        .map_err(|e| e.to_string())?
        .data
        .iter()
        .zip(&r)
        .map(|(y, r)| f64::from((y * r).abs()))
        .sum();
    let signature = kink_signature(&graph, &acts);
    let n = input.data.len();
    let eps = 1e-3f32;
    let (mut clean, mut worst) = (0, 0.0f64);
    for salt in 0..40u64 {
        if clean == 3 {
            break;
        }
        let v = noise(n, 100 + salt);
        let shifted = |s: f32| {
            input
                .data
                .iter()
                .zip(&v)
                .map(|(&x, &d)| x + s * eps * d)
                .collect::<Vec<f32>>()
        };
        let (xp, xm) = (shifted(1.0), shifted(-1.0));
        // The step actually taken: large inputs (1e4 in test_softmax_large_number) round it.
        let step: Vec<f64> = xp
            .iter()
            .zip(&xm)
            .map(|(&p, &m)| (f64::from(p) - f64::from(m)) / (2.0 * f64::from(eps)))
            .collect();
        let (plus, minus) = (run(xp)?, run(xm)?);
        if kink_signature(&graph, &plus) != signature || kink_signature(&graph, &minus) != signature
        {
            continue;
        }
        clean += 1;
        let fd = (objective(&plus) - objective(&minus)) / (2.0 * f64::from(eps));
        let analytic: f64 = grad
            .iter()
            .zip(&step)
            .map(|(&g, &d)| f64::from(g) * d)
            .sum();
        let size: f64 = grad
            .iter()
            .zip(&step)
            .map(|(&g, &d)| (f64::from(g) * d).abs())
            .sum();
        // f32 rounding of the objective (about 4 ulp of Σ|r·y|) over 2ε.
        let rounding = abs_objective * 2.4e-7 / f64::from(eps);
        let err = ((fd - analytic).abs() - rounding).max(0.0) / size.max(1e-12);
        if err > 2e-3 {
            return Err(format!(
                "MISMATCH: fd {fd:.6e}, analytic {analytic:.6e}, relative error {err:.2e} (direction {salt})"
            ));
        }
        worst = worst.max((fd - analytic).abs() / size.max(1e-12));
    }
    if clean == 0 {
        Err("every direction crossed a kink".into())
    } else {
        Ok(worst)
    }
}

#[test]
fn every_op_vjp_matches_finite_differences_on_the_onnx_node_tests() {
    let root = fixture("node");
    let mut dirs: Vec<_> = std::fs::read_dir(&root)
        .expect("node fixtures")
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.is_dir())
        .collect();
    dirs.sort();
    let (mut checked, mut worst, mut mismatches) =
        (BTreeMap::new(), (0.0f64, String::new()), Vec::new());
    let mut skipped = Vec::new();
    for dir in &dirs {
        let name = dir
            .file_name()
            .map(|s| s.to_string_lossy().to_string())
            .unwrap_or_default();
        match check(dir) {
            Ok(err) => {
                if err >= worst.0 {
                    worst = (err, name.clone());
                }
                let op = load_node_test(dir)
                    .and_then(|(g, _)| g.nodes.last().map(|n| n.op.type_name()))
                    .unwrap_or("?");
                *checked.entry(op).or_insert(0usize) += 1;
            }
            Err(e) if e.starts_with("MISMATCH") || e.starts_with("reverse pass") => {
                mismatches.push(format!("{name}: {e}"))
            }
            Err(e) => skipped.push(format!("{name}: {e}")),
        }
    }
    eprintln!(
        "checked {} node tests over ops {checked:?}; worst raw relative error {:.2e} ({})",
        checked.values().sum::<usize>(),
        worst.0,
        worst.1
    );
    eprintln!("skipped {}:\n  {}", skipped.len(), skipped.join("\n  "));
    // A runner that skips everything proves nothing: 186 of the 208 fixtures ran when this
    // floor was set (the rest are ops without a reverse rule or without a smooth point).
    let ran = checked.values().sum::<usize>();
    assert!(
        ran >= 180 && checked.len() >= 30,
        "only {ran} node tests over {} ops ran; skipped {}:\n  {}",
        checked.len(),
        skipped.len(),
        skipped.join("\n  ")
    );
    assert!(
        mismatches.is_empty(),
        "{} node tests disagree:\n  {}",
        mismatches.len(),
        mismatches.join("\n  ")
    );
}
