//! A batch of N inputs through one pass equals N single passes: every node output of every
//! sample, on the conformance models (the nine "light" zoo models and the random-weight
//! ones) on flex, and on the random-weight models plus SqueezeNet and ShuffleNet on wgpu.
//! Tolerance: max |batched − single| ≤ 1e-5 × the single pass's max |value| per tensor.
//! The reverse pass with one seed per input of a batch is checked the same way against
//! single-input attribution images.

use std::sync::Arc;

use burn::tensor::Device;
use convlens::engine::{Capture, Engine, NamedInput};
use convlens::model::{BatchError, ImportOptions, load_onnx_file};

use crate::common::{
    self, LIGHT_MODELS as LIGHT, MIXED_MODELS as MIXED, fixture, formula_input, max_abs,
};

/// Sample `k` of a batch: the formula input, shifted and rescaled so samples differ.
fn sample_input(numel: usize, k: usize) -> Vec<f32> {
    let mut data = formula_input(numel);
    data.rotate_left((k * 977) % numel.max(1));
    let scale = 1.0 + 0.25 * k as f32;
    data.iter_mut()
        .for_each(|v| *v = *v * scale - 0.1 * k as f32);
    data
}

/// Runs `<dir>/<name>.onnx` on `batch` different inputs in one pass and one at a time;
/// returns the number of tensors compared and the worst scaled difference.
fn check_batch(dir: &str, name: &str, device: Device, batch: usize) -> (usize, f32) {
    let graph = Arc::new(
        load_onnx_file(
            &fixture(&format!("{dir}/{name}.onnx")),
            &ImportOptions::default(),
        )
        .unwrap_or_else(|e| panic!("{name}: import failed: {e}")),
    );
    let single = Engine::new(Arc::clone(&graph), device);
    let batched = single
        .with_batch(batch)
        .unwrap_or_else(|e| panic!("{name}: not batchable: {e}"));
    assert_eq!(batched.batch_size(), batch);
    let input = &graph.inputs[0];
    let numel: usize = input.shape.iter().product();
    let samples: Vec<Vec<f32>> = (0..batch).map(|k| sample_input(numel, k)).collect();
    let mut shape = input.shape.clone();
    shape[0] = batch;
    let batch_acts = batched
        .forward_inputs(
            &[NamedInput {
                name: input.name.clone(),
                shape,
                data: samples.concat(),
            }],
            &Capture::All,
        )
        .unwrap_or_else(|e| panic!("{name}: batched forward failed: {e}"));
    let (mut compared, mut worst) = (0, 0f32);
    for (k, data) in samples.into_iter().enumerate() {
        let acts = single
            .forward_inputs(
                &[NamedInput {
                    name: input.name.clone(),
                    shape: input.shape.clone(),
                    data,
                }],
                &Capture::All,
            )
            .unwrap_or_else(|e| panic!("{name}: single forward failed: {e}"));
        for node in &graph.nodes {
            for value in &node.outputs {
                let want = acts.read(value).expect("single value");
                let got = batch_acts
                    .read(value)
                    .expect("batched value")
                    .sample(k)
                    .expect("sample in range");
                assert_eq!(got.shape, want.shape, "{name}: shape of '{value}'");
                let scale = max_abs(&want.data).max(1e-12);
                let diff = got
                    .data
                    .iter()
                    .zip(&want.data)
                    .map(|(a, b)| (a - b).abs())
                    .fold(0f32, f32::max)
                    / scale;
                assert!(
                    diff <= 1e-5,
                    "{name}: sample {k} of '{value}' ({}) differs from its single pass by \
                     {diff:.2e} of its max |value| (tolerance 1e-5)",
                    node.onnx_op
                );
                compared += 1;
                worst = worst.max(diff);
            }
        }
    }
    eprintln!("{dir}/{name}: batch {batch}, {compared} tensors, worst {worst:.2e}");
    (compared, worst)
}

#[test]
fn a_batch_equals_single_passes_on_every_conformance_model_on_cpu() {
    for name in MIXED {
        assert!(check_batch("mixed", name, common::cpu(), 3).0 > 0);
    }
    for name in LIGHT {
        assert!(check_batch("light", name, common::cpu(), 2).0 > 0);
    }
}

#[test]
fn a_batch_equals_single_passes_on_wgpu() {
    let device = common::wgpu();
    for name in MIXED {
        assert!(check_batch("mixed", name, device.clone(), 3).0 > 0);
    }
    for name in ["squeezenet", "shufflenet"] {
        assert!(check_batch("light", name, device.clone(), 2).0 > 0);
    }
}

#[test]
fn the_default_model_batches_and_a_wrong_batch_is_refused() {
    let graph = Arc::new(convlens::model::default::default_graph().expect("default model"));
    let engine = Engine::new(Arc::clone(&graph), common::cpu());
    let batched = engine.with_batch(4).expect("EfficientNet-Lite0 batches");
    assert_eq!(batched.graph().inputs[0].shape, vec![4, 3, 224, 224]);
    let spec = convlens::model::default::default_input_spec();
    let input = convlens::model::default::default_input(&spec).expect("default input");
    let err = batched
        .forward_batch(&[&input, &input], &Capture::Layers(Default::default()))
        .err()
        .expect("two inputs for a batch of four");
    assert!(err.to_string().contains("batch of 2"), "{err}");
    assert!(matches!(
        engine.with_batch(0).err(),
        Some(convlens::engine::EngineError::Batch(BatchError::Empty))
    ));
}

/// One seed per input: a reverse pass over a batch of 3 different inputs, input `k` seeded on
/// its own channel, equals the single-input attribution image of that channel, under every
/// rule (≤ 1e-5 of the image's max |value|), on flex and on lavapipe.
#[test]
fn one_seed_per_input_equals_single_input_attribution() {
    for name in ["tiny_alexnet", "tiny_resnet"] {
        check_per_input(name, common::cpu());
    }
    check_per_input("tiny_alexnet", common::wgpu());
}

fn check_per_input(name: &str, device: Device) {
    use convlens::engine::methods::attribution::{
        GradientRule, attribute_layer, attribute_per_input,
    };
    use convlens::model::preprocess::InputTensor;
    let graph = Arc::new(
        load_onnx_file(
            &fixture(&format!("mixed/{name}.onnx")),
            &ImportOptions::default(),
        )
        .expect("imports"),
    );
    let single = Engine::new(Arc::clone(&graph), device);
    let batched = single.with_batch(3).expect("batchable");
    let input = &graph.inputs[0];
    let [_, p, h, w] = <[usize; 4]>::try_from(input.shape.as_slice()).expect("4-D input");
    let inputs: Vec<InputTensor> = (0..3)
        .map(|k| InputTensor {
            shape: [1, p, h, w],
            data: sample_input(p * h * w, k),
            picture: None,
        })
        .collect();
    let refs: Vec<&InputTensor> = inputs.iter().collect();
    let batch_acts = batched
        .forward_batch(&refs, &Capture::All)
        .expect("forward");
    // The last layer with feature maps, channels 0, C/2 and C-1.
    let (layer, node) = graph.feature_map_layers().last().expect("a feature map");
    let c = node.output_shape()[1];
    let channels = [0, c / 2, c - 1];
    for rule in [
        GradientRule::Backprop,
        GradientRule::Guided,
        GradientRule::Deconvnet,
    ] {
        let got = attribute_per_input(&batched, &batch_acts, layer, &channels, rule)
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(got.shape, vec![3, p, h, w]);
        let mut worst = 0f32;
        for (k, x) in inputs.iter().enumerate() {
            let acts = single.forward(x, &Capture::All).expect("forward");
            let all = attribute_layer(&single, &acts, layer, rule, None).expect("images");
            let per = p * h * w;
            let want = &all.data[channels[k] * per..][..per];
            let scale = max_abs(want).max(1e-12);
            let diff = (got.data[k * per..][..per].iter().zip(want))
                .map(|(a, b)| (a - b).abs())
                .fold(0f32, f32::max);
            worst = worst.max(diff / scale);
        }
        eprintln!("{name} {rule:?}: one seed per input, worst {worst:.2e}");
        assert!(worst <= 1e-5, "{name} {rule:?}: {worst:.2e}");
    }
    // A channel list that does not fit the batch or the layer is refused.
    for wrong in [&[0usize, 1][..], &[0, 1, c]] {
        let err = attribute_per_input(&batched, &batch_acts, layer, wrong, GradientRule::Guided)
            .expect_err("refused");
        assert!(err.to_string().contains("one channel per input"), "{err}");
    }
}

/// An observed pass (`Engine::forward_batch_observed`: each node's outputs handed to the
/// observer as the node runs, nothing kept, a ReLU or Clip clamping its input in place where
/// nothing else reads it) sees exactly the values that a pass keeping every layer holds;
/// equality both ways also shows that no clamp wrote into a kept value. EfficientNet-Lite0
/// (33 Conv → Clip pairs) and two conformance models on flex, a batch of 2; tiny_resnet on
/// wgpu (lavapipe), where every value is read back.
#[test]
fn an_observed_pass_sees_what_a_kept_pass_keeps() {
    let default = Arc::new(convlens::model::default::default_graph().expect("default model"));
    assert!(check_observed("efficientnet_lite0", default, common::cpu()) > 90);
    for (dir, name, device) in [
        ("light", "squeezenet", common::cpu()),
        ("mixed", "tiny_resnet", common::cpu()),
        ("mixed", "tiny_resnet", common::wgpu()),
    ] {
        let graph = load_onnx_file(
            &fixture(&format!("{dir}/{name}.onnx")),
            &ImportOptions::default(),
        )
        .unwrap_or_else(|e| panic!("{name}: import failed: {e}"));
        assert!(check_observed(name, Arc::new(graph), device) > 5);
    }
}

/// Compares an observed and a kept pass of `graph` over two inputs; returns the number of
/// values compared.
fn check_observed(name: &str, graph: Arc<convlens::model::Graph>, device: Device) -> usize {
    use convlens::engine::ops::HostValues;
    use convlens::model::preprocess::InputTensor;
    let engine = Engine::new(Arc::clone(&graph), device)
        .with_batch(2)
        .unwrap_or_else(|e| panic!("{name}: not batchable: {e}"));
    let shape: [usize; 4] = graph.inputs[0]
        .shape
        .clone()
        .try_into()
        .unwrap_or_else(|s| panic!("{name}: input {s:?} is not [1, C, H, W]"));
    let numel: usize = shape.iter().product();
    let inputs: Vec<InputTensor> = (0..2)
        .map(|k| InputTensor {
            shape,
            data: sample_input(numel, k),
            picture: None,
        })
        .collect();
    let refs: Vec<&InputTensor> = inputs.iter().collect();
    let kept = engine
        .forward_batch(&refs, &Capture::All)
        .unwrap_or_else(|e| panic!("{name}: kept pass failed: {e}"));
    let mut compared = 0;
    let last = engine.graph().nodes.len() - 1;
    // Twice: once leaving every clamp to its node, once applying each clamp the pass offers
    // in the observer (`NodeOutputs::clamp_while`), which must see the values before it and
    // leave the clamp node's output as the kept pass has it.
    for apply_clamps in [false, true] {
        let mut applied = 0;
        engine
            .forward_batch_observed(&refs, last, &mut |i, outputs| {
                let node = &engine.graph().nodes[i];
                for (value, t) in node.outputs.iter().zip(outputs.tensors()) {
                    let Ok(seen) = HostValues::of(t) else {
                        continue; // not f32 (shapes, indices): nothing a layer shows
                    };
                    let want = kept.read(value).expect("kept value");
                    assert!(
                        seen.as_slice() == want.data.as_slice(),
                        "{name}: '{value}' ({}) as observed differs from the kept pass",
                        node.onnx_op
                    );
                    compared += 1;
                }
                if apply_clamps {
                    let want = kept.read(&node.outputs[0]).expect("kept value");
                    let clamped = outputs.clamp_while(|values, min, max| {
                        assert!(
                            values == want.data.as_slice(),
                            "{name}: node {i} before its clamp"
                        );
                        convlens::engine::kernels::unary::clamp_in_place(values, min, max);
                    })?;
                    applied += usize::from(clamped.is_some());
                }
                Ok(())
            })
            .unwrap_or_else(|e| panic!("{name}: observed pass failed: {e}"));
        let on_host = engine.host_kernels();
        eprintln!("{name}: {applied} clamps applied by the observer (host kernels: {on_host})");
        if apply_clamps && on_host {
            assert!(applied > 0, "{name}: no clamp was offered to the observer");
        }
        if !on_host {
            assert_eq!(applied, 0, "{name}: a clamp offered off the host kernels");
        }
    }
    // A pass through a middle node runs nothing after it.
    let (through, mut seen) = (last / 2, Vec::new());
    engine
        .forward_batch_observed(&refs, through, &mut |i, _| {
            seen.push(i);
            Ok(())
        })
        .unwrap_or_else(|e| panic!("{name}: observed pass failed: {e}"));
    assert_eq!(seen, (0..=through).collect::<Vec<_>>(), "{name}");
    eprintln!("{name}: {compared} values observed as kept");
    compared
}
