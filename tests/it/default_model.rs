//! The embedded EfficientNet-Lite0 against onnxruntime on the same ONNX file
//! (`tests/fixtures/default_model/reference.json`, made by
//! `scripts/make_default_model_reference.py`): identical top-5 on the reference's own
//! preprocessed tensors, and the whole pipeline from the shipped photos (decode → crop →
//! resize → normalise → forward) classifies coffee.png as "espresso".

use crate::common;

use std::sync::Arc;

use common::fixture;
use convlens::engine::{self, Capture, Engine};
use convlens::model::default::{SAMPLE_IMAGES, default_graph, default_input_spec, imagenet_labels};
use convlens::model::preprocess::{InputTensor, load_input_bytes};
use serde_json::Value;

fn reference() -> Value {
    serde_json::from_slice(
        &std::fs::read(fixture("default_model/reference.json")).expect("reference.json"),
    )
    .expect("parses")
}

/// The reference's top-5 as `(class, probability)`.
fn reference_top5(r: &Value) -> Vec<(usize, f32)> {
    r["top5"]
        .as_array()
        .expect("top5")
        .iter()
        .map(|e| {
            (
                e[0].as_u64().expect("class") as usize,
                e[1].as_f64().expect("p") as f32,
            )
        })
        .collect()
}

fn probabilities(engine: &Engine, input: &InputTensor) -> Vec<f32> {
    let acts = engine
        .forward(input, &Capture::Layers(Default::default()))
        .expect("forward");
    engine::class_probabilities(engine.graph(), &acts).expect("probabilities")
}

#[test]
fn top5_equals_onnxruntime_on_reference_tensors() {
    let graph = Arc::new(default_graph().expect("default model"));
    let engine = Engine::new(graph, common::cpu());
    let reference = reference();
    for (image, r) in reference["images"].as_object().expect("images") {
        let arr = convlens::npy::read(&fixture(&format!(
            "default_model/{}",
            r["input_npy"].as_str().expect("npy")
        )))
        .expect("npy");
        let input = InputTensor {
            shape: [1, 3, 224, 224],
            data: arr.data,
            picture: None,
        };
        let probs = probabilities(&engine, &input);
        let top5 = convlens::viz::stats::top_k(&probs, 5);
        let want = reference_top5(r);
        assert_eq!(
            top5,
            want.iter().map(|w| w.0).collect::<Vec<_>>(),
            "{image}: top-5 classes"
        );
        for (class, p) in want {
            assert!(
                (probs[class] - p).abs() <= 1e-4,
                "{image}: class {class} p={} vs onnxruntime {p}",
                probs[class]
            );
        }
    }
}

#[test]
fn shipped_photos_through_the_whole_pipeline() {
    let graph = Arc::new(default_graph().expect("default model"));
    let engine = Engine::new(graph, common::cpu());
    let labels = imagenet_labels();
    let spec = default_input_spec();
    let reference = reference();
    for (name, bytes) in SAMPLE_IMAGES {
        let stem = name.trim_end_matches(".png");
        let input = load_input_bytes(bytes, name, &spec).expect("decodes");
        // Our crop + bilinear resize (`model::resize`, Pillow's algorithm) against Pillow's
        // own `crop(...).resize((224, 224), Image.BILINEAR)`: the same pixels, so the same
        // normalised values up to f32 rounding.
        let py =
            convlens::npy::read(&fixture(&format!("default_model/{stem}_input.npy"))).expect("npy");
        assert_eq!(input.data.len(), py.data.len(), "{name}: input size");
        let worst = (input.data.iter().zip(&py.data))
            .map(|(a, b)| (a - b).abs())
            .fold(0f32, f32::max);
        assert!(
            worst <= 1e-6,
            "{name}: preprocessing differs from Pillow's by up to {worst} (normalised units)"
        );
        let probs = probabilities(&engine, &input);
        let top5: Vec<usize> = convlens::viz::stats::top_k(&probs, 5);
        let want: Vec<usize> = reference_top5(&reference["images"][stem])
            .iter()
            .map(|w| w.0)
            .collect();
        eprintln!(
            "{name}: max |Δ| vs Pillow {worst:.1e}; top-5 {:?}",
            top5.iter()
                .map(|&i| (&labels[i], probs[i]))
                .collect::<Vec<_>>()
        );
        assert_eq!(
            top5[0], want[0],
            "{name}: top-1 differs from onnxruntime on PIL's preprocessing"
        );
        if stem == "coffee" {
            assert_eq!(labels[top5[0]], "espresso");
        }
    }
}

#[test]
fn wgpu_agrees_with_onnxruntime_on_the_default_model() {
    let graph = Arc::new(default_graph().expect("default model"));
    let engine = Engine::new(graph, common::wgpu());
    let r = &reference()["images"]["coffee"];
    let arr = convlens::npy::read(&fixture("default_model/coffee_input.npy")).expect("npy");
    let probs = probabilities(
        &engine,
        &InputTensor {
            shape: [1, 3, 224, 224],
            data: arr.data,
            picture: None,
        },
    );
    let want = reference_top5(r);
    assert_eq!(
        convlens::viz::stats::top_k(&probs, 5),
        want.iter().map(|w| w.0).collect::<Vec<_>>()
    );
    for (class, p) in want {
        assert!(
            (probs[class] - p).abs() <= 1e-3,
            "class {class}: wgpu p={} vs onnxruntime {p}",
            probs[class]
        );
    }
}
