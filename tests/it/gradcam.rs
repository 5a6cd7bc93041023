//! Grad-CAM against its closed form: for a network that ends in
//! feature map A → GlobalAvgPool → Flatten → Linear (EfficientNet-Lite0), `∂y_c/∂A_k[h,w]`
//! is `W[c,k] / (H·W)`, so Grad-CAM at A must equal `ReLU(Σ_k W[c,k]/(H·W) · A_k)` computed
//! straight from the Linear layer's weights (the CAM identity of the Grad-CAM paper).

use crate::common;

use std::sync::Arc;

use convlens::engine::methods::gradcam::{grad_cam, score_node};
use convlens::engine::{Capture, Engine};
use convlens::model::Op;
use convlens::model::default::{default_graph, default_input, default_input_spec};

#[test]
fn grad_cam_equals_the_cam_closed_form_before_global_pooling() {
    let graph = Arc::new(default_graph().expect("default model"));
    let engine = Engine::new(Arc::clone(&graph), common::cpu());
    let input = default_input(&default_input_spec()).expect("coffee");
    let acts = engine.forward(&input, &Capture::All).expect("forward");

    let gap = graph
        .nodes
        .iter()
        .position(|n| matches!(n.op, Op::GlobalAveragePool))
        .expect("a GAP node");
    let a_name = &graph.nodes[gap].inputs[0];
    let layer = graph
        .nodes
        .iter()
        .position(|n| &n.outputs[0] == a_name)
        .expect("producer of A");
    let fc = score_node(&engine).expect("score node");
    let Op::Gemm { trans_b, alpha, .. } = graph.nodes[fc].op else {
        panic!("the score comes from a Linear layer")
    };
    let w = &graph.constants[&graph.nodes[fc].inputs[1]];
    let (k, h, wd) = graph.nodes[layer].feature_map_dims().expect("[1,K,H,W]");
    let v = w.to_f32_vec();
    let weight = |c: usize, j: usize| -> f64 {
        f64::from(if trans_b {
            v[c * k + j]
        } else {
            v[j * w.shape[1] + c]
        }) * f64::from(alpha)
    };
    let a = acts.read(a_name).expect("A").data;
    let class = 967; // espresso, the top-1 class of coffee.png
    let cam = grad_cam(&engine, &acts, layer, class).expect("grad-cam");
    assert_eq!(cam.shape, vec![h, wd]);
    let hw = h * wd;
    let want: Vec<f32> = (0..hw)
        .map(|p| {
            (0..k)
                .map(|j| weight(class, j) / hw as f64 * f64::from(a[j * hw + p]))
                .sum::<f64>()
                .max(0.0) as f32
        })
        .collect();
    let scale = common::max_abs(&want);
    assert!(scale > 0.0, "the espresso map is not empty");
    let err = common::scaled_error(&cam.data, &want, scale);
    assert!(
        err < 1e-4,
        "Grad-CAM differs from the closed form by {err:.2e} (scaled)"
    );
}
