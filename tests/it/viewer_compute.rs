//! The viewer's per-filter images arrive chunk by chunk (`app::compute`): the chunks of a
//! layer, put in place, equal the whole layer computed in one go; a receiver that says stop
//! gets no further chunk; a layer stopped part-way resumes from its first missing filter.

use crate::common;

use std::ops::ControlFlow;
use std::sync::Arc;

use common::{fixture, formula_input};
use convlens::app::compute::{Delivery, GradientChunk, compute_gradient_chunks, compute_gradients};
use convlens::engine::methods::attribution;
use convlens::engine::{Capture, Engine};
use convlens::format::Method;
use convlens::model::preprocess::InputTensor;
use convlens::model::{ImportOptions, load_onnx_file};

/// Gradient methods deliver images only.
fn chunk(d: Delivery) -> GradientChunk {
    match d {
        Delivery::Chunk(c) => c,
        Delivery::Progress { .. } | Delivery::Notice(_) => {
            panic!("progress or a notice from a gradient method")
        }
    }
}

fn tiny_alexnet() -> (Engine, Arc<InputTensor>, usize) {
    let graph = Arc::new(
        load_onnx_file(
            &fixture("mixed/tiny_alexnet.onnx"),
            &ImportOptions::default(),
        )
        .unwrap(),
    );
    let shape: [usize; 4] = graph.inputs[0].shape.clone().try_into().unwrap();
    let input = Arc::new(InputTensor {
        shape,
        data: formula_input(shape.iter().product()),
        picture: None,
    });
    // The deepest conv layer: its reverse passes cross every layer below it.
    let layer = (graph.nodes.iter().enumerate())
        .rfind(|(_, n)| n.onnx_op == "Conv")
        .map(|(i, _)| i)
        .unwrap();
    let engine = Engine::new(graph, burn::tensor::Device::flex());
    (engine, input, layer)
}

#[test]
fn chunks_put_in_place_equal_the_whole_layer() {
    let (engine, input, layer) = tiny_alexnet();
    let acts = engine.forward(&input, &Capture::All).unwrap();
    let rule = Method::Guided.gradient().unwrap();
    // The reference: every channel in one call, with the engine's own chunk size.
    let want = attribution::attribute_layer(&engine, &acts, layer, rule, None).unwrap();
    let channels = want.shape[0];
    assert!(channels > 4, "the layer needs several chunks of 2");

    let mut ranges = Vec::new();
    let mut result = None;
    let mut on_chunk = |d: Delivery| {
        let c = chunk(d);
        ranges.push(c.channels.clone());
        let r = result.get_or_insert_with(|| c.empty_result());
        assert!(r.accept_chunk(&c), "chunk {:?} refused", c.channels);
        ControlFlow::Continue(())
    };
    let flow = compute_gradient_chunks(
        &engine,
        &input,
        layer,
        Method::Guided,
        0,
        Some(2),
        &mut on_chunk,
    )
    .unwrap();
    assert!(flow.is_continue());
    let expected: Vec<_> = (0..channels)
        .step_by(2)
        .map(|k| k..(k + 2).min(channels))
        .collect();
    assert_eq!(ranges, expected);
    let result = result.unwrap();
    assert!(result.is_complete());
    assert_eq!(result.images.shape, want.shape);
    let scale = want
        .data
        .iter()
        .fold(0f32, |m, v| m.max(v.abs()))
        .max(1e-12);
    let worst = (result.images.data.iter())
        .zip(&want.data)
        .fold(0f32, |m, (a, b)| m.max((a - b).abs()));
    assert!(
        worst / scale <= 1e-5,
        "chunks of 2 differ from one pass: {:.2e}",
        worst / scale
    );

    // The all-at-once helper (screenshots) assembles the same.
    let whole = compute_gradients(&engine, &input, layer, Method::Guided).unwrap();
    assert_eq!(whole.filled, channels);
    assert_eq!(whole.images.shape, want.shape);
}

#[test]
fn a_layer_stopped_part_way_resumes_where_it_stopped() {
    let (engine, input, layer) = tiny_alexnet();
    // Stopped after the first chunk of 2 …
    let mut partial = None;
    let mut stop_after_one = |d: Delivery| {
        let c = chunk(d);
        let r = partial.get_or_insert_with(|| c.empty_result());
        assert!(r.accept_chunk(&c));
        ControlFlow::Break(())
    };
    let method = Method::Deconvnet;
    let flow = compute_gradient_chunks(
        &engine,
        &input,
        layer,
        method,
        0,
        Some(2),
        &mut stop_after_one,
    )
    .unwrap();
    assert!(flow.is_break());
    let mut partial = partial.unwrap();
    assert_eq!(partial.filled, 2);
    assert!(!partial.is_complete());
    // … then resumed from channel 2 with the default chunk size.
    let mut starts = Vec::new();
    let mut resume = |d: Delivery| {
        let c = chunk(d);
        starts.push(c.channels.start);
        assert!(partial.accept_chunk(&c));
        ControlFlow::Continue(())
    };
    let flow =
        compute_gradient_chunks(&engine, &input, layer, method, 2, None, &mut resume).unwrap();
    assert!(flow.is_continue());
    assert_eq!(starts.first(), Some(&2));
    assert!(partial.is_complete());
    let whole = compute_gradients(&engine, &input, layer, method).unwrap();
    let scale = whole
        .images
        .data
        .iter()
        .fold(0f32, |m, v| m.max(v.abs()))
        .max(1e-12);
    let worst = (partial.images.data.iter())
        .zip(&whole.images.data)
        .fold(0f32, |m, (a, b)| m.max((a - b).abs()));
    assert!(
        worst / scale <= 1e-5,
        "resumed images differ: {:.2e}",
        worst / scale
    );
}

#[test]
fn occlusion_reports_its_passes_then_delivers_every_layer() {
    let (engine, input, layer) = tiny_alexnet();
    let (mut passes, mut chunks, mut first_maps) = (Vec::new(), Vec::new(), None);
    let mut on_delivery = |d: Delivery| {
        match d {
            Delivery::Progress { done, total } => passes.push((done, total)),
            Delivery::Notice(n) => panic!("tiny AlexNet batches its squares, yet: {n}"),
            Delivery::Chunk(c) => {
                chunks.push((c.layer, c.channels.clone(), c.shape.clone()));
                first_maps.get_or_insert(c.data);
            }
        }
        ControlFlow::Continue(())
    };
    let flow = compute_gradient_chunks(
        &engine,
        &input,
        layer,
        Method::Occlusion,
        0,
        None,
        &mut on_delivery,
    )
    .unwrap();
    assert!(flow.is_continue());
    let total = passes.last().unwrap().1;
    // One report per pass of `SQUARES_PER_PASS` squares, the last one capped at the total.
    let per_pass = convlens::engine::methods::occlusion::SQUARES_PER_PASS;
    let want_passes: Vec<(usize, usize)> = (1..=total.div_ceil(per_pass))
        .map(|p| ((p * per_pass).min(total), total))
        .collect();
    assert_eq!(passes, want_passes);
    // The requested layer first, then every other layer with feature maps, each whole.
    let mut want: Vec<usize> = engine
        .graph()
        .feature_map_layers()
        .map(|(i, _)| i)
        .collect();
    want.retain(|&i| i != layer);
    want.insert(0, layer);
    let got: Vec<usize> = chunks.iter().map(|c| c.0).collect();
    assert_eq!(got, want);
    for (l, channels, shape) in &chunks {
        let c = engine.graph().nodes[*l].feature_map_dims().unwrap().0;
        assert_eq!((channels.clone(), shape[0]), (0..c, c));
        assert_eq!(shape[2] * shape[3], total, "one pass per grid cell");
    }
    // The all-at-once helper sweeps the requested layer only, to the same maps.
    let whole = compute_gradients(&engine, &input, layer, Method::Occlusion).unwrap();
    assert_eq!((whole.layer, &whole.images.shape), (layer, &chunks[0].2));
    assert_eq!(Some(whole.images.data), first_maps);

    // Stopped at the first pass: no maps.
    let mut delivered = 0;
    let mut stop = |_: Delivery| {
        delivered += 1;
        ControlFlow::Break(())
    };
    let flow = compute_gradient_chunks(
        &engine,
        &input,
        layer,
        Method::Occlusion,
        0,
        None,
        &mut stop,
    )
    .unwrap();
    assert!(flow.is_break());
    assert_eq!(delivered, 1);
}
