//! Grad-CAM (Selvaraju et al.) from the saved forward pass: for class `c` and a feature-map
//! layer `A` (`[1, K, H, W]`), `α_k = mean_{h,w} ∂y_c/∂A_k` and the map is
//! `ReLU(Σ_k α_k A_k)`, `[H, W]`, unnormalised. `y_c` is the class score before any final
//! Softmax (the logit), differentiated with the ordinary gradient (backprop rule).

use burn::tensor::{Tensor, TensorData};

use crate::engine::reverse::backward::backward_to;
use crate::engine::reverse::step::{BackwardError, GradientRule, Result, grad_dims};
use crate::engine::{Activations, Engine, HostTensor};
use crate::model::Op;

/// Index of the node whose first output is the class score: the graph's output node, or
/// the input of a final Softmax.
pub fn score_node(engine: &Engine) -> Option<usize> {
    let g = engine.graph();
    let out = g.outputs.first()?;
    let last = g.nodes.iter().rposition(|n| n.outputs.contains(out))?;
    if matches!(g.nodes[last].op, Op::Softmax { .. }) {
        let input = g.nodes[last].inputs.first()?;
        return g.nodes.iter().rposition(|n| n.outputs.contains(input));
    }
    Some(last)
}

/// The Grad-CAM map of `class` at node `layer` (`[1, K, H, W]` output): `[H, W]`.
/// `acts` must come from a `Capture::All` forward pass.
pub fn grad_cam(
    engine: &Engine,
    acts: &Activations,
    layer: usize,
    class: usize,
) -> Result<HostTensor> {
    let g = engine.graph();
    let node = g.nodes.get(layer).ok_or(BackwardError::LayerIndex {
        index: layer,
        count: g.nodes.len(),
    })?;
    let (k, h, w) = node
        .feature_map_dims()
        .ok_or_else(|| BackwardError::NotFeatureMap {
            layer: node.name.clone(),
            shape: node.output_shape().to_vec(),
        })?;
    let score =
        score_node(engine).ok_or_else(|| BackwardError::UnknownTarget("<class score>".into()))?;
    let score_shape = g.nodes[score].output_shape().to_vec();
    let classes: usize = score_shape.iter().product();
    if class >= classes {
        return Err(BackwardError::Unsupported {
            node: g.nodes[score].name.clone(),
            op: g.nodes[score].onnx_op.clone(),
            detail: format!("class {class} is out of range (the model has {classes} outputs)"),
        });
    }
    let dims = grad_dims(1, &score_shape).ok_or_else(|| BackwardError::SeedShape {
        layer: g.nodes[score].name.clone(),
        got: score_shape.clone(),
        expected: score_shape.clone(),
    })?;
    let mut onehot = vec![0f32; classes];
    onehot[class] = 1.0;
    let seed = Tensor::<6>::from_data(TensorData::new(onehot, dims), engine.device());
    let target = &node.outputs[0];
    let grads = backward_to(engine, acts, score, seed, GradientRule::Backprop, target)?; // [1, 1, 1, K, H, W]
    let read = |t: Tensor<6>, what: &str| {
        t.try_into_data()
            .map_err(|e| format!("{e:?}"))
            .and_then(|d| d.try_into_vec::<f32>().map_err(|e| format!("{e:?}")))
            .map_err(|detail| BackwardError::Readback {
                value: what.to_string(),
                detail,
            })
    };
    let grads = read(grads, target)?;
    let activation = acts.read(target).map_err(|e| BackwardError::Readback {
        value: target.clone(),
        detail: e.to_string(),
    })?;
    let hw = h * w;
    let mut cam = vec![0f32; hw];
    for c in 0..k {
        let alpha = grads[c * hw..(c + 1) * hw]
            .iter()
            .map(|&x| f64::from(x))
            .sum::<f64>()
            / hw as f64;
        for (m, &a) in cam.iter_mut().zip(&activation.data[c * hw..(c + 1) * hw]) {
            *m += (alpha * f64::from(a)) as f32;
        }
    }
    cam.iter_mut().for_each(|m| *m = m.max(0.0));
    Ok(HostTensor {
        shape: vec![h, w],
        data: cam,
    })
}
