//! The three attribution rules on tiny hand-built graphs whose gradients are worked out by
//! hand below: a max-pool switch, a ReLU6 (Clip 0..6) above and below its gates, LeakyReLU,
//! a fan-out through a residual Add; plus the error paths.

use std::collections::HashMap;
use std::sync::Arc;

use burn::tensor::Device;
use convlens::engine::methods::attribution::{BackwardError, GradientRule, attribute_layer};
use convlens::engine::{Activations, Capture, Engine, NamedInput};
use convlens::model::graph::{GraphInput, Node, Op, Window2d};
use convlens::model::{ConstTensor, Graph};

/// A node named `name` reading `inputs`, writing `<name>_out` of `shape`.
fn node(name: &str, op: Op, inputs: &[&str], shape: &[usize]) -> Node {
    Node {
        name: name.into(),
        onnx_op: op.type_name().into(),
        op,
        inputs: inputs.iter().map(|s| s.to_string()).collect(),
        outputs: vec![format!("{name}_out")],
        output_shapes: vec![shape.to_vec()],
    }
}

fn graph(input: &[usize], nodes: Vec<Node>, constants: Vec<(&str, ConstTensor)>) -> Arc<Graph> {
    let mut shapes: HashMap<String, Vec<usize>> =
        HashMap::from([("x".to_string(), input.to_vec())]);
    for n in &nodes {
        shapes.insert(n.outputs[0].clone(), n.output_shapes[0].clone());
    }
    Arc::new(Graph {
        name: "hand".into(),
        inputs: vec![GraphInput {
            name: "x".into(),
            shape: input.to_vec(),
        }],
        outputs: vec![nodes.last().expect("nodes").outputs[0].clone()],
        nodes,
        constants: constants
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect(),
        shapes,
        opset: 17,
        warnings: Vec::new(),
        fingerprint: String::new(),
    })
}

fn conv1x1() -> Op {
    Op::Conv {
        window: Window2d {
            kernel: [1, 1],
            strides: [1, 1],
            pads: [(0, 0), (0, 0)],
            dilations: [1, 1],
        },
        group: 1,
    }
}

fn forward(engine: &Engine, x: Vec<f32>) -> Activations {
    let shape = engine.graph().inputs[0].shape.clone();
    engine
        .forward_inputs(
            &[NamedInput {
                name: "x".into(),
                shape,
                data: x,
            }],
            &Capture::All,
        )
        .expect("forward")
}

fn assert_close(got: &[f32], want: &[f32], what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    let worst = got
        .iter()
        .zip(want)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0f32, f32::max);
    assert!(worst <= 1e-5, "{what}: got {got:?}, want {want:?}");
}

/// x `[1,1,2,4]` → Conv1x1 (w1 = [+1, −1]: a0 = x, a1 = −x) → ReLU → MaxPool 2×2/2 →
/// Conv1x1 (w2 = [[−1, 1], [−1, 3]]) → Clip(0, 6) = L `[1,2,1,2]`.
///
/// ```text
/// x  = [[ 1, -2,  3,  8],      r0 = relu(x)  = [[1,0,3,8],[0,4,0,2]]
///       [-1,  4, -5,  2]]      r1 = relu(-x) = [[0,2,0,0],[1,0,5,0]]
/// pool: p0 = [4 @ (1,1), 8 @ (0,3)],  p1 = [2 @ (0,1), 5 @ (1,2)]   (value @ switch)
/// c0 = -p0 + p1  = [-2, -3]  (both below ReLU6's gate)
/// c1 = -p0 + 3p1 = [ 2,  7]  (inside, above 6)
/// backward: g_p0 = -(g_c0 + g_c1), g_p1 = g_c0 + 3 g_c1; g_x = g_a0 - g_a1
///
/// channel 0 (seed g_c0 = [1,1]):
///   backprop  Clip gate closed at both → 0
///   guided    relu(1)·0 → 0
///   deconvnet relu(1) = [1,1] → g_p0 = [-1,-1], g_p1 = [1,1] → r0 switches (1,1),(0,3) get -1,
///             r1 switches (0,1),(1,2) get +1 → relu(g): a0 nothing, a1 (0,1),(1,2) = 1
///             → g_x = -g_a1: (0,1) = -1, (1,2) = -1
/// channel 1 (seed g_c1 = [1,1]):
///   backprop  gate [1,0] → g_c1 = [1,0] → g_p0 = [-1,0], g_p1 = [3,0] → r0 (1,1) = -1 (x=4>0
///             passes), r1 (0,1) = 3 (-x=2>0 passes) → g_x: (1,1) = -1, (0,1) = -3
///   guided    same up to the ReLU, where relu(-1) = 0 blocks (1,1) → g_x: (0,1) = -3
///   deconvnet relu(g) = [1,1] (ignores c1 = 7 > 6) → g_p0 = [-1,-1], g_p1 = [3,3] → relu kills
///             the -1s; a1 (0,1) = 3, (1,2) = 3 → g_x: (0,1) = -3, (1,2) = -3
/// ```
fn switch_and_relu6_graph() -> Arc<Graph> {
    let pool = Op::MaxPool {
        window: Window2d {
            kernel: [2, 2],
            strides: [2, 2],
            pads: [(0, 0), (0, 0)],
            dilations: [1, 1],
        },
        ceil_mode: false,
    };
    graph(
        &[1, 1, 2, 4],
        vec![
            node("conv1", conv1x1(), &["x", "w1"], &[1, 2, 2, 4]),
            node("relu", Op::Relu, &["conv1_out"], &[1, 2, 2, 4]),
            node("pool", pool, &["relu_out"], &[1, 2, 1, 2]),
            node("conv2", conv1x1(), &["pool_out", "w2"], &[1, 2, 1, 2]),
            node(
                "relu6",
                Op::Clip { min: 0.0, max: 6.0 },
                &["conv2_out"],
                &[1, 2, 1, 2],
            ),
        ],
        vec![
            ("w1", ConstTensor::f32(vec![2, 1, 1, 1], vec![1.0, -1.0])),
            (
                "w2",
                ConstTensor::f32(vec![2, 2, 1, 1], vec![-1.0, 1.0, -1.0, 3.0]),
            ),
        ],
    )
}

const X: [f32; 8] = [1.0, -2.0, 3.0, 8.0, -1.0, 4.0, -5.0, 2.0];

fn check_switch_and_relu6(device: Device) {
    let engine = Engine::new(switch_and_relu6_graph(), device);
    let acts = forward(&engine, X.to_vec());
    // The forward values the derivation above assumes.
    assert_close(
        &acts.read("conv2_out").expect("conv2").data,
        &[-2.0, -3.0, 2.0, 7.0],
        "c",
    );
    #[rustfmt::skip]
    let cases = [
        (GradientRule::Backprop,  [[0.0, 0.0, 0.0, 0.0,  0.0, 0.0, 0.0, 0.0], [0.0, -3.0, 0.0, 0.0,  0.0, -1.0, 0.0, 0.0]]),
        (GradientRule::Guided,    [[0.0, 0.0, 0.0, 0.0,  0.0, 0.0, 0.0, 0.0], [0.0, -3.0, 0.0, 0.0,  0.0, 0.0, 0.0, 0.0]]),
        (GradientRule::Deconvnet, [[0.0, -1.0, 0.0, 0.0, 0.0, 0.0, -1.0, 0.0], [0.0, -3.0, 0.0, 0.0, 0.0, 0.0, -3.0, 0.0]]),
    ];
    for (method, want) in cases {
        for chunk in [1, 2] {
            let got = attribute_layer(&engine, &acts, 4, method, Some(chunk)).expect("attribution");
            assert_eq!(got.shape, [2, 1, 2, 4]);
            assert_close(
                &got.data,
                &want.concat(),
                &format!("{method:?}, chunk {chunk}"),
            );
        }
    }
}

#[test]
fn max_pool_switch_and_relu6_by_hand_on_flex() {
    check_switch_and_relu6(Device::flex());
}

#[test]
fn max_pool_switch_and_relu6_by_hand_on_wgpu() {
    check_switch_and_relu6(Device::default());
}

/// x `[1,1,1,3]` = [2, −3, 0.5] → Identity → LeakyReLU(α = 0.1) = L1; then a residual
/// fan-out `s = L1 + x` reaching the input by two paths. For J = Σ L1:
///   backprop  [1, 0.1, 1]   (α below zero)
///   deconvnet [1, 1, 1]     (relu(1) everywhere)
///   guided    [1, 0, 1]     (x > 0 gate)
/// For J = Σ s the direct path adds 1 everywhere: [2, 1.1, 2], [2, 2, 2], [2, 1, 2].
#[test]
fn leaky_relu_and_residual_fan_out_by_hand() {
    let engine = Engine::new(leaky_residual_graph(), Device::flex());
    let acts = forward(&engine, vec![2.0, -3.0, 0.5]);
    let want = [
        (GradientRule::Backprop, [1.0, 0.1, 1.0]),
        (GradientRule::Deconvnet, [1.0, 1.0, 1.0]),
        (GradientRule::Guided, [1.0, 0.0, 1.0]),
    ];
    for (method, w) in want {
        let leaky = attribute_layer(&engine, &acts, 1, method, None).expect("attribution");
        assert_close(&leaky.data, &w, &format!("{method:?} at the LeakyReLU"));
        let sum = attribute_layer(&engine, &acts, 2, method, None).expect("attribution");
        let w2: Vec<f32> = w.iter().map(|v| v + 1.0).collect();
        assert_close(&sum.data, &w2, &format!("{method:?} at the residual add"));
    }
}

fn leaky_residual_graph() -> Arc<Graph> {
    graph(
        &[1, 1, 1, 3],
        vec![
            node("id", Op::Identity, &["x"], &[1, 1, 1, 3]),
            node(
                "leaky",
                Op::LeakyRelu { alpha: 0.1 },
                &["id_out"],
                &[1, 1, 1, 3],
            ),
            node("add", Op::Add, &["leaky_out", "id_out"], &[1, 1, 1, 3]),
        ],
        Vec::new(),
    )
}

#[test]
fn errors_name_the_layer_node_and_op() {
    let engine = Engine::new(leaky_residual_graph(), Device::flex());
    let acts = forward(&engine, vec![2.0, -3.0, 0.5]);
    let err =
        attribute_layer(&engine, &acts, 7, GradientRule::Guided, None).expect_err("no node 7");
    assert!(
        matches!(err, BackwardError::LayerIndex { index: 7, count: 3 }),
        "{err}"
    );

    // Values the reverse pass needs were not kept by the forward pass.
    let shape = engine.graph().inputs[0].shape.clone();
    let only_add = Capture::Layers(["add".to_string()].into());
    let sparse = engine
        .forward_inputs(
            &[NamedInput {
                name: "x".into(),
                shape,
                data: vec![2.0, -3.0, 0.5],
            }],
            &only_add,
        )
        .expect("forward");
    let err = attribute_layer(&engine, &sparse, 2, GradientRule::Backprop, None)
        .expect_err("id_out was dropped");
    assert!(
        matches!(&err, BackwardError::MissingValue { node, value, .. } if node == "leaky" && value == "id_out"),
        "{err}"
    );
    assert!(err.to_string().contains("Capture::All"), "{err}");

    // Not a [1, C, H, W] feature map.
    let flat = graph(
        &[1, 1, 1, 3],
        vec![node("flat", Op::Reshape, &["x"], &[1, 3])],
        Vec::new(),
    );
    let engine = Engine::new(flat, Device::flex());
    let acts = forward(&engine, vec![1.0, 2.0, 3.0]);
    let err =
        attribute_layer(&engine, &acts, 0, GradientRule::Guided, None).expect_err("2-D output");
    assert!(
        matches!(&err, BackwardError::NotFeatureMap { layer, .. } if layer == "flat"),
        "{err}"
    );

    // A convolution whose weights depend on the image: only data inputs are differentiated.
    let g = graph(
        &[1, 1, 1, 1],
        vec![
            node("id", Op::Identity, &["x"], &[1, 1, 1, 1]),
            node("conv", conv1x1(), &["id_out", "id_out"], &[1, 1, 1, 1]),
        ],
        Vec::new(),
    );
    let engine = Engine::new(g, Device::flex());
    let acts = forward(&engine, vec![3.0]);
    let err = attribute_layer(&engine, &acts, 1, GradientRule::Backprop, None)
        .expect_err("runtime weight");
    assert!(
        matches!(&err, BackwardError::Unsupported { node, op, .. } if node == "conv" && op == "Conv"),
        "{err}"
    );
}
