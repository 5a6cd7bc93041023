//! The embedded default: EfficientNet-Lite0 with its ImageNet weights, the 1000 class names
//! and three public-domain photos, compiled into the binary so `convlens` works offline
//! from any working directory. Provenance: `assets/model/PROVENANCE.md`.

use super::preprocess::{Fit, InputSpec, InputTensor, load_input_bytes};
use super::{Graph, ImportOptions, Result};

/// `assets/model/efficientnet_lite0.onnx` (converted by `scripts/convert_default_model.py`).
pub const DEFAULT_MODEL_ONNX: &[u8] = include_bytes!("../../assets/model/efficientnet_lite0.onnx");
/// [`super::onnx::fingerprint`] of [`DEFAULT_MODEL_ONNX`], computed by `build.rs`: hashing
/// the 18 MB at every start took 30–45 ms, the longest step of loading the model.
pub const DEFAULT_MODEL_FINGERPRINT: &str = env!("CONVLENS_DEFAULT_MODEL_FINGERPRINT");
/// Display name of the default model.
pub const DEFAULT_MODEL_NAME: &str = "EfficientNet-Lite0 (ImageNet)";
/// One ImageNet class name per line, in class-index order.
pub const IMAGENET_LABELS: &str = include_str!("../../assets/labels/imagenet_classes.txt");

/// The shipped sample photos: `(file name, PNG bytes)`; the first is the default input.
pub const SAMPLE_IMAGES: &[(&str, &[u8])] = &[
    (
        "coffee.png",
        include_bytes!("../../assets/images/coffee.png"),
    ),
    (
        "chelsea.png",
        include_bytes!("../../assets/images/chelsea.png"),
    ),
    (
        "astronaut.png",
        include_bytes!("../../assets/images/astronaut.png"),
    ),
];

/// Parses the embedded default model.
pub fn default_graph() -> Result<Graph> {
    default_graph_with(&ImportOptions::default())
}

/// The embedded model imported with `options` (e.g. at another input size).
pub fn default_graph_with(options: &ImportOptions) -> Result<Graph> {
    let mut g = super::onnx::import(
        &bytes::Bytes::from_static(DEFAULT_MODEL_ONNX),
        "<embedded efficientnet_lite0.onnx>",
        "efficientnet_lite0",
        options,
    )?;
    g.name = DEFAULT_MODEL_NAME.to_string();
    g.fingerprint = DEFAULT_MODEL_FINGERPRINT.to_string();
    Ok(g)
}

/// EfficientNet-Lite's preprocessing: 224×224, `(pixel/255 - 0.498) / 0.502`.
pub fn default_input_spec() -> InputSpec {
    InputSpec {
        size_hw: [224, 224],
        mean: [0.498; 3],
        std: [0.502; 3],
        fit: Fit::Crop,
    }
}

/// The ImageNet class names.
pub fn imagenet_labels() -> Vec<String> {
    IMAGENET_LABELS.lines().map(str::to_string).collect()
}

/// Class names for a model with `classes` outputs: ImageNet's for 1000, else `class N`.
pub fn labels_for(classes: usize) -> Vec<String> {
    if classes == 1000 {
        imagenet_labels()
    } else {
        (0..classes).map(|i| format!("class {i}")).collect()
    }
}

/// The default input (coffee.png) prepared with `spec`.
pub fn default_input(spec: &InputSpec) -> Result<InputTensor> {
    let (name, bytes) = SAMPLE_IMAGES[0];
    load_input_bytes(bytes, name, spec)
}

/// Loads the input file, or the embedded photo when none is given.
pub fn input_or_default(path: Option<&std::path::Path>, spec: &InputSpec) -> Result<InputTensor> {
    match path {
        Some(p) => super::preprocess::load_input(p, spec),
        None => default_input(spec),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_assets_are_complete() {
        let labels = imagenet_labels();
        assert_eq!(labels.len(), 1000);
        assert_eq!(labels[967], "espresso");
        let g = default_graph().expect("the embedded model imports");
        assert_eq!(
            g.image_input().map(|i| i.shape.clone()),
            Some(vec![1, 3, 224, 224])
        );
        assert_eq!(g.nodes.iter().filter(|n| n.op.is_conv()).count(), 49);
        // The "same"-padding plumbing was folded away at conversion: only real layers remain.
        assert!(g.nodes.iter().all(|n| !matches!(
            n.onnx_op.as_str(),
            "Pad" | "Shape" | "Gather" | "Slice" | "Concat"
        )));
    }

    #[test]
    fn the_build_time_fingerprint_is_the_embedded_model_s() {
        // FNV-1a's published 64-bit vectors: "" and "a".
        assert_eq!(super::super::onnx::fingerprint(b""), "cbf29ce484222325");
        assert_eq!(super::super::onnx::fingerprint(b"a"), "af63dc4c8601ec8c");
        assert_eq!(
            default_graph().map(|g| g.fingerprint).ok().as_deref(),
            Some(super::super::onnx::fingerprint(DEFAULT_MODEL_ONNX).as_str())
        );
    }
}
