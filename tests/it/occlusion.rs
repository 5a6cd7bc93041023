//! Occlusion sensitivity against an independent computation: on a linear network (the first
//! Conv of `tiny_alexnet`, bias included), the drop of `J_k` when a square is zeroed equals
//! `Σ_{square} (∂J_k/∂x ⊙ x)`, with the gradient from the reverse pass (backprop rule) — a
//! different code path from the sweep of forward passes.

use crate::common;

use std::sync::Arc;

use common::fixture;
use convlens::engine::methods::attribution::{GradientRule, attribute_layer};
use convlens::engine::methods::occlusion::{
    OcclusionMaps, OcclusionSpec, SQUARES_PER_PASS, occlusion,
};
use convlens::engine::{Capture, Engine};
use convlens::model::preprocess::InputTensor;
use convlens::model::{BatchError, Graph, ImportOptions, load_onnx_bytes};
use onnx_ir::{AttributeProto, AttributeType, Message, ModelProto, NodeProto};

#[test]
fn occlusion_drop_equals_gradient_times_input_on_a_linear_network() {
    let graph = common::first_conv_of_tiny_alexnet();
    let engine = Engine::new(Arc::clone(&graph), common::cpu());
    let input = common::formula_image(&graph);
    let [_, p, h, w] = input.shape;

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
    assert_eq!(
        (maps.squares_per_pass, &maps.unbatched),
        (SQUARES_PER_PASS, &None)
    );
    let want_passes: Vec<(usize, usize)> = (1..=cells.div_ceil(SQUARES_PER_PASS))
        .map(|p| ((p * SQUARES_PER_PASS).min(cells), cells))
        .collect();
    assert_eq!(passes, want_passes);
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

/// `tiny_alexnet`, optionally with a softmax over axis 0 (the batch axis) appended to its
/// output: a graph that must not be batched.
fn tiny_alexnet(softmax_over_batch: bool) -> Arc<Graph> {
    let mut model = ModelProto::parse_from_bytes(
        &std::fs::read(fixture("mixed/tiny_alexnet.onnx")).expect("fixture"),
    )
    .expect("parses");
    if softmax_over_batch {
        let graph_proto = model.graph.as_mut().expect("graph");
        let logits = graph_proto.output[0].name.clone();
        let mut axis = AttributeProto::new();
        axis.name = "axis".into();
        axis.type_ = AttributeType::INT.into();
        axis.i = 0;
        let mut softmax = NodeProto::new();
        softmax.op_type = "Softmax".into();
        softmax.name = "softmax_over_batch".into();
        softmax.input = vec![logits];
        softmax.output = vec!["probs_over_batch".into()];
        softmax.attribute = vec![axis];
        graph_proto.node.push(softmax);
        graph_proto.output[0].name = "probs_over_batch".into();
    }
    let bytes = model.write_to_bytes().expect("serialise");
    Arc::new(
        load_onnx_bytes(&bytes, "tiny_alexnet", "tiny", &ImportOptions::default())
            .expect("imports"),
    )
}

/// The maps of a sweep computed square by square with plain single forward passes: the
/// reference for the batched sweep.
fn square_by_square(
    engine: &Engine,
    input: &InputTensor,
    layers: &[usize],
    spec: &OcclusionSpec,
) -> Vec<Vec<f64>> {
    let graph = engine.graph();
    let responses = |x: &InputTensor| -> Vec<Vec<f64>> {
        let acts = engine.forward(x, &Capture::All).expect("forward");
        let mut out: Vec<Vec<f64>> = layers
            .iter()
            .map(|&i| {
                let value = acts.read(&graph.nodes[i].outputs[0]).expect("layer");
                let channels = value.shape[1];
                let per = value.data.len() / channels;
                (value.data.chunks(per))
                    .map(|c| c.iter().map(|&v| f64::from(v)).sum())
                    .collect()
            })
            .collect();
        out.push(
            (acts.read_output().expect("output").data.iter())
                .map(|&v| f64::from(v))
                .collect(),
        );
        out
    };
    let base = responses(input);
    let [_, planes, h, w] = input.shape;
    let (rows, cols) = (spec.offsets(h), spec.offsets(w));
    let cells = rows.len() * cols.len();
    let mut maps: Vec<Vec<f64>> = base.iter().map(|b| vec![0.0; b.len() * cells]).collect();
    for (r, &y0) in rows.iter().enumerate() {
        for (c, &x0) in cols.iter().enumerate() {
            let mut occluded = input.clone();
            for p in 0..planes {
                for y in y0..(y0 + spec.size_px).min(h) {
                    for x in x0..(x0 + spec.size_px).min(w) {
                        occluded.data[p * h * w + y * w + x] = spec.fill;
                    }
                }
            }
            let got = responses(&occluded);
            for ((map, b), g) in maps.iter_mut().zip(&base).zip(&got) {
                for (k, (bk, gk)) in b.iter().zip(g).enumerate() {
                    map[k * cells + r * cols.len() + c] = bk - gk;
                }
            }
        }
    }
    maps
}

/// Worst `|got − want|` over every map (layers, then classes), relative to the largest
/// `|want|` of each map.
fn worst_difference(maps: &OcclusionMaps, want: &[Vec<f64>]) -> f64 {
    let got = maps.layers.iter().map(|(_, m)| m).chain([&maps.classes]);
    got.zip(want)
        .map(|(got, want)| {
            assert_eq!(got.len(), want.len());
            let scale = want.iter().fold(1e-12f64, |m, v| m.max(v.abs()));
            got.iter()
                .zip(want)
                .fold(0f64, |m, (&g, &w)| m.max((f64::from(g) - w).abs()))
                / scale
        })
        .fold(0.0, f64::max)
}

fn sweep_and_compare(graph: Arc<Graph>) -> OcclusionMaps {
    let engine = Engine::new(Arc::clone(&graph), common::cpu());
    let input = common::formula_image(&graph);
    let layers: Vec<usize> = graph.feature_map_layers().map(|(i, _)| i).collect();
    // 5 px squares at stride 3: a grid whose size is not a multiple of the batch.
    let spec = OcclusionSpec {
        size_px: 5,
        stride_px: 3,
        fill: -0.5,
    };
    let maps = occlusion(&engine, &input, &layers, &spec, |_, _| {
        std::ops::ControlFlow::Continue(())
    })
    .expect("sweep")
    .expect("not stopped");
    let cells = maps.grid_hw[0] * maps.grid_hw[1];
    assert!(cells % SQUARES_PER_PASS != 0, "{cells} squares");
    let worst = worst_difference(&maps, &square_by_square(&engine, &input, &layers, &spec));
    eprintln!(
        "{} squares, {} per pass: worst difference {worst:.2e}",
        cells, maps.squares_per_pass
    );
    assert!(worst <= 1e-5, "sweep vs single passes: {worst:.2e}");
    maps
}

#[test]
fn a_batched_sweep_equals_one_pass_per_square() {
    let maps = sweep_and_compare(tiny_alexnet(false));
    assert_eq!(maps.squares_per_pass, SQUARES_PER_PASS);
    assert_eq!(maps.unbatched, None);
}

#[test]
fn a_graph_that_mixes_samples_sweeps_one_square_per_pass_and_says_why() {
    let maps = sweep_and_compare(tiny_alexnet(true));
    assert_eq!(maps.squares_per_pass, 1);
    let why = maps.unbatched.expect("a reason");
    assert!(
        matches!(&why, BatchError::Unsafe { op: "Softmax", .. }),
        "{why:?}"
    );
    assert!(why.to_string().contains("softmax_over_batch"), "{why}");
}
