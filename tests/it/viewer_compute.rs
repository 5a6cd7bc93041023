//! The viewer's per-filter images arrive chunk by chunk (`app::compute`): the chunks of a
//! layer, put in place, equal the whole layer computed in one go; a receiver that says stop
//! gets no further chunk; a layer stopped part-way resumes from its first missing filter.
//! Feature visualisations stream the same way, equal the engine's own, and come back from
//! the cache without a single optimisation step.

use crate::common;

use std::ops::ControlFlow;
use std::sync::Arc;

use common::{fixture, formula_input};
use convlens::app::compute::{
    ComputeOptions, Delivery, GradientChunk, compute_gradient_chunks, compute_gradients,
};
use convlens::engine::methods::attribution;
use convlens::engine::methods::featvis::featvis;
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

/// The viewer's options with gradient chunks of `seeds_per_pass`.
fn options(seeds_per_pass: Option<usize>) -> ComputeOptions {
    ComputeOptions {
        seeds_per_pass,
        ..Default::default()
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
        (layer, Method::Guided),
        0,
        &options(Some(2)),
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
    let whole =
        compute_gradients(&engine, &input, (layer, Method::Guided), &options(None)).unwrap();
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
        (layer, method),
        0,
        &options(Some(2)),
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
    let flow = compute_gradient_chunks(
        &engine,
        &input,
        (layer, method),
        2,
        &options(None),
        &mut resume,
    )
    .unwrap();
    assert!(flow.is_continue());
    assert_eq!(starts.first(), Some(&2));
    assert!(partial.is_complete());
    let whole = compute_gradients(&engine, &input, (layer, method), &options(None)).unwrap();
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
        (layer, Method::Occlusion),
        0,
        &options(None),
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
    let whole =
        compute_gradients(&engine, &input, (layer, Method::Occlusion), &options(None)).unwrap();
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
        (layer, Method::Occlusion),
        0,
        &options(None),
        &mut stop,
    )
    .unwrap();
    assert!(flow.is_break());
    assert_eq!(delivered, 1);
}

#[test]
fn feature_vis_streams_in_chunks_and_comes_back_from_the_cache() {
    let (engine, input, layer) = tiny_alexnet();
    let cache = tempfile::tempdir().unwrap();
    let mut options = options(None);
    let featvis_options = &mut options.featvis;
    featvis_options.spec.steps = 6;
    featvis_options.spec.batch = 3;
    featvis_options.cache_root = Some(cache.path().to_path_buf());
    featvis_options.fingerprint = engine.graph().fingerprint.clone();
    let channels = engine.graph().nodes[layer].feature_map_dims().unwrap().0;
    // `stop_after`: how many chunks to take before saying stop.
    let run = |from: usize, stop_after: Option<usize>| {
        let (mut chunks, mut steps) = (Vec::new(), 0);
        let flow = compute_gradient_chunks(
            &engine,
            &input,
            (layer, Method::FeatVis),
            from,
            &options,
            &mut |d| match d {
                Delivery::Chunk(c) => {
                    chunks.push(c);
                    if stop_after == Some(chunks.len()) {
                        ControlFlow::Break(())
                    } else {
                        ControlFlow::Continue(())
                    }
                }
                Delivery::Progress { done, total } => {
                    assert!(done <= total, "{done} of {total}");
                    steps += 1;
                    ControlFlow::Continue(())
                }
                Delivery::Notice(n) => panic!("notice: {n}"),
            },
        )
        .unwrap();
        (flow, chunks, steps)
    };
    // Stopped after the first chunk (the CPU optimises two at once: the second is dropped).
    let (flow, chunks, _) = run(0, Some(1));
    assert!(flow.is_break());
    assert_eq!(chunks.len(), 1);
    assert_eq!(chunks[0].channels, 0..3);
    // Resumed from filter 3 … and the whole layer again: the first chunk without a step.
    let (flow, resumed, steps) = run(3, None);
    assert!(flow.is_continue());
    assert_eq!(
        steps,
        channels.div_ceil(3) * 6 - 6,
        "one progress per step of each chunk"
    );
    assert_eq!(resumed.first().map(|c| c.channels.start), Some(3));
    let (_, again, steps) = run(0, None);
    assert_eq!(steps, 0, "a cached layer is not optimised again");
    let mut whole = again[0].empty_result();
    let resumed_starts: Vec<usize> = resumed.iter().map(|c| c.channels.start).collect();
    assert!(
        resumed_starts.is_sorted(),
        "chunks out of order: {resumed_starts:?}"
    );
    for c in &again {
        assert_eq!(c.method, Method::FeatVis);
        assert!(whole.accept_chunk(c));
    }
    assert!(whole.is_complete());
    assert_eq!(whole.images.shape, [channels, 3, 32, 32]);
    // The engine's own feature vis, computed in one go, is the same picture for every
    // filter (the cache stores float32 exactly, and chunking does not change results).
    let filters: Vec<usize> = (0..channels).collect();
    let mut spec = options.featvis.spec;
    spec.batch = channels;
    let direct = featvis(&engine, layer, &filters, &spec, |_| {}).unwrap();
    let direct: Vec<f32> = direct.iter().flat_map(|i| i.image.clone()).collect();
    let worst = (direct.iter().zip(&whole.images.data))
        .map(|(a, b)| (a - b).abs())
        .fold(0f32, f32::max);
    assert!(worst <= 1e-5, "cached vs direct: {worst}");
    assert!(whole.images.data.iter().all(|v| (0.0..=1.0).contains(v)));
}

#[test]
fn feature_vis_outlives_the_input_and_gradient_images_do_not() {
    let args = convlens::cli::ModelArgs {
        model: Some(fixture("mixed/tiny_alexnet.onnx")),
        ..Default::default()
    };
    let device = convlens::engine::device::select(convlens::engine::DeviceChoice::Cpu);
    let mut session = convlens::app::Session::new(args.load().unwrap(), &device);
    session.compute_options.featvis.cache_root = None;
    session.set_featvis_steps(2);
    session.run_file(None).unwrap();
    let layer = session.vm.map_layers[0];
    session.ensure_gradients(layer, Method::FeatVis).unwrap();
    session.ensure_gradients(layer, Method::Guided).unwrap();
    let old_input = session.result.as_ref().unwrap().input.clone().unwrap();
    let featvis_before = session
        .gradient(layer, Method::FeatVis)
        .unwrap()
        .images
        .clone();
    // A new input: the gradient images go, the feature visualisations stay.
    session.run_file(None).unwrap();
    assert!(session.gradient(layer, Method::Guided).is_none());
    let kept = session.gradient(layer, Method::FeatVis).expect("kept");
    assert_eq!(kept.images.data, featvis_before.data);
    // A chunk computed for the old input still counts for feature vis, not for gradients.
    let channels = featvis_before.shape[0];
    let per: usize = featvis_before.shape[1..].iter().product();
    let second = session.vm.map_layers[1];
    let stale = |method: Method, shape: Vec<usize>| GradientChunk {
        input: Arc::clone(&old_input),
        layer: second,
        method,
        channels: 0..1,
        data: vec![0.5; shape[1..].iter().product()],
        shape,
    };
    let second_channels = session.vm.layers[second].map_dims().unwrap().0;
    assert!(session.accept_chunk(stale(Method::FeatVis, vec![second_channels, 3, 32, 32])));
    assert!(!session.accept_chunk(stale(Method::Guided, vec![second_channels, 3, 32, 32])));
    assert_eq!((channels, per), (featvis_before.shape[0], 3 * 32 * 32));
}
