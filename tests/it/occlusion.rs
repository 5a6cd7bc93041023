//! Occlusion sensitivity against an independent computation: on a linear network (the first
//! Conv of `tiny_alexnet`, bias included), the drop of `J_k` when a square is zeroed equals
//! `Σ_{square} (∂J_k/∂x ⊙ x)`, with the gradient from the reverse pass (backprop rule) — a
//! different code path from the sweep of forward passes.

use crate::common;

use std::sync::Arc;

use common::{fixture, formula_input};
use convlens::engine::methods::attribution::{GradientRule, attribute_layer};
use convlens::engine::methods::occlusion::{OcclusionSpec, occlusion};
use convlens::engine::{Capture, Engine};
use convlens::model::preprocess::InputTensor;
use convlens::model::{ImportOptions, load_onnx_bytes};
use onnx_ir::{Message, ModelProto};

#[test]
fn occlusion_drop_equals_gradient_times_input_on_a_linear_network() {
    let mut model = ModelProto::parse_from_bytes(
        &std::fs::read(fixture("mixed/tiny_alexnet.onnx")).expect("fixture"),
    )
    .expect("parses");
    let graph_proto = model.graph.as_mut().expect("graph");
    graph_proto.node.truncate(1);
    assert_eq!(graph_proto.node[0].op_type, "Conv");
    let out = graph_proto.node[0].output[0].clone();
    graph_proto.output[0].name = out;
    let bytes = model.write_to_bytes().expect("serialise");
    let graph = Arc::new(
        load_onnx_bytes(&bytes, "conv-only", "conv", &ImportOptions::default()).expect("imports"),
    );
    let engine = Engine::new(Arc::clone(&graph), common::cpu());
    let shape = graph.image_input().expect("input").shape.clone();
    let [n, p, h, w] = <[usize; 4]>::try_from(shape.as_slice()).expect("4-D input");
    let input = InputTensor {
        shape: [n, p, h, w],
        data: formula_input(p * h * w),
        picture: None,
    };

    let spec = OcclusionSpec {
        size_px: 8,
        stride_px: 6,
        fill: 0.0,
    };
    let mut passes = Vec::new();
    let maps = occlusion(&engine, &input, &[0], &spec, |done, total| {
        passes.push((done, total));
        std::ops::ControlFlow::Continue(())
    })
    .expect("sweep")
    .expect("not stopped");
    let cells = maps.grid_hw[0] * maps.grid_hw[1];
    assert_eq!(passes, (1..=cells).map(|d| (d, cells)).collect::<Vec<_>>());
    // A receiver that says stop after the second pass gets no third.
    let mut calls = 0;
    let stopped = occlusion(&engine, &input, &[0], &spec, |_, _| {
        calls += 1;
        if calls == 2 {
            std::ops::ControlFlow::Break(())
        } else {
            std::ops::ControlFlow::Continue(())
        }
    })
    .expect("sweep");
    assert!(stopped.is_none() && calls == 2);
    let acts = engine.forward(&input, &Capture::All).expect("forward");
    let grads =
        attribute_layer(&engine, &acts, 0, GradientRule::Backprop, None).expect("gradients"); // [C, 3, H, W]
    let channels = grads.shape[0];
    let (rows, cols) = (spec.offsets(h), spec.offsets(w));
    assert_eq!(maps.grid_hw, [rows.len(), cols.len()]);
    let cells = rows.len() * cols.len();
    let drops = &maps.layers[0].1;
    let mut worst = 0.0f64;
    for k in 0..channels {
        for (r, &y0) in rows.iter().enumerate() {
            for (c, &x0) in cols.iter().enumerate() {
                let mut want = 0.0f64;
                for plane in 0..p {
                    for y in y0..y0 + 8 {
                        for x in x0..x0 + 8 {
                            let i = plane * h * w + y * w + x;
                            want +=
                                f64::from(grads.data[k * p * h * w + i]) * f64::from(input.data[i]);
                        }
                    }
                }
                let got = f64::from(drops[k * cells + r * cols.len() + c]);
                worst = worst.max((got - want).abs() / want.abs().max(1.0));
            }
        }
    }
    assert!(
        worst < 1e-3,
        "occlusion drop vs gradient·input: worst error {worst:.2e}"
    );
}
