//! Shared by the attribution tests and `benches/gbp.rs`: a seeded hash, the kink signature
//! that tells finite differences where they are valid, and the AlexNet-shaped workload (the
//! ONNX zoo's bvlc AlexNet graph, 224×224 input, conv layers of 96, 256, 384, 384 and 256
//! filters, with seeded He-scaled random weights so that about half the ReLU gates are open
//! as in a trained network, and one saved forward pass).
#![allow(dead_code)]

use std::path::PathBuf;
use std::sync::Arc;

use burn::tensor::module::max_pool2d_with_indices;
use burn::tensor::ops::MaxPoolOptions;
use burn::tensor::{Device, Tensor};
use convlens::engine::{Activations, Capture, Engine, NamedInput};
use convlens::model::{ConstTensor, Graph, ImportOptions, Node, Op, load_onnx_file};

/// splitmix64 of `(salt, i)`, mapped to [0, 1).
pub fn unit(salt: u64, i: u64) -> f64 {
    let mut z = (salt << 40 ^ i).wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    (z ^ (z >> 31)) as f64 / 2f64.powi(64)
}

/// Everything that makes the network non-smooth at a point, per node: the gate state of
/// every ReLU-family, ELU, HardSigmoid and HardSwish input, and the switch of every max-pool
/// window and global max. Three points whose signatures agree on a layer's ancestors lie
/// (barring a double crossing) on one smooth piece of that layer, where central differences
/// are valid.
pub fn kink_signature(graph: &Graph, acts: &Activations) -> Vec<Vec<i64>> {
    let band = |t: &[f32], lo: f32, hi: f32| {
        t.iter()
            .map(move |&v| i64::from(v > lo) + i64::from(v >= hi))
            .collect::<Vec<_>>()
    };
    let signature = |node: &Node| {
        let read = || acts.read(&node.inputs[0]).expect("node input kept").data;
        match &node.op {
            Op::Relu | Op::LeakyRelu { .. } | Op::Elu { .. } => band(&read(), 0.0, f32::INFINITY),
            Op::Clip { min, max } => band(&read(), *min, *max),
            Op::HardSwish => band(&read(), -3.0, 3.0),
            Op::HardSigmoid { alpha, beta } => band(&read(), -beta / alpha, (1.0 - beta) / alpha),
            Op::MaxPool { window, ceil_mode } => {
                let s = graph.shapes[&node.inputs[0]].clone();
                let x: Tensor<4> = acts
                    .value(&node.inputs[0])
                    .expect("pool input kept")
                    .clone()
                    .reshape([s[0], s[1], s[2], s[3]]);
                let options = MaxPoolOptions::new(window.kernel)
                    .with_stride(window.strides)
                    .with_padding_pairs(window.pads)
                    .with_dilation(window.dilations)
                    .with_ceil_mode(*ceil_mode);
                let (_, idx) = max_pool2d_with_indices(x, options);
                idx.into_data()
                    .convert::<i64>()
                    .try_to_vec::<i64>()
                    .expect("indices")
            }
            Op::GlobalMaxPool => {
                let t = acts.read(&node.inputs[0]).expect("input kept");
                let plane: usize = t.shape[2..].iter().product();
                t.data
                    .chunks(plane)
                    .map(|p| (0..p.len()).fold(0, |b, i| if p[i] > p[b] { i } else { b }) as i64)
                    .collect()
            }
            _ => Vec::new(),
        }
    };
    graph.nodes.iter().map(signature).collect()
}

/// Seeded uniform values with the variance of N(0, 2/fan_in) (He initialisation).
fn he_uniform(shape: &[usize], seed: u64) -> Vec<f32> {
    let n: usize = shape.iter().product();
    let fan_in: usize = shape.iter().skip(1).product::<usize>().max(1);
    let bound = (6.0 / fan_in as f64).sqrt();
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..n)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            ((state >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0) as f32 * bound as f32
        })
        .collect()
}

/// The engine, its saved forward pass on a fixed input, and the conv layers' node indices.
pub fn alexnet(device: Device) -> (Engine, Activations, Vec<usize>) {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/light/alexnet.onnx");
    let mut graph = load_onnx_file(&path, &ImportOptions::default()).expect("alexnet.onnx imports");
    let weights: Vec<String> = graph
        .nodes
        .iter()
        .flat_map(|n| n.inputs.iter().skip(1).cloned())
        .collect();
    for (i, name) in weights.iter().enumerate() {
        if let Some(t) = graph
            .constants
            .get(name)
            .filter(|t| t.is_float() && t.shape.len() >= 2)
        {
            let shape = t.shape.clone();
            graph.constants.insert(
                name.clone(),
                ConstTensor::f32(shape.clone(), he_uniform(&shape, i as u64 + 1)),
            );
        }
    }
    let graph = Arc::new(graph);
    let engine = Engine::new(Arc::clone(&graph), device);
    let input = graph.image_input().expect("an image input").clone();
    let n: usize = input.shape.iter().product();
    let data: Vec<f32> = (0..n as u64)
        .map(|i| ((i * 2_654_435_761) % 4_294_967_296) as f32 / 4_294_967_296.0 * 2.0 - 1.0)
        .collect();
    let acts = engine
        .forward_inputs(
            &[NamedInput {
                name: input.name,
                shape: input.shape,
                data,
            }],
            &Capture::All,
        )
        .expect("forward");
    let convs = graph
        .nodes
        .iter()
        .enumerate()
        .filter(|(_, n)| n.op.is_conv())
        .map(|(i, _)| i)
        .collect();
    (engine, acts, convs)
}
