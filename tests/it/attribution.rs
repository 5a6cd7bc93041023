//! Attribution against independent references: finite differences of the forward pass for
//! backprop (every feature-map layer of the three random-weight models, and the class scores
//! through Gemm/MatMul/Softmax), and PyTorch autograd with guided/deconvnet hooks on a small
//! exported CNN (`scripts/make_attribution_reference.py`), on flex and on wgpu.

use crate::attribution_support;
use crate::common;

use std::sync::Arc;

use attribution_support::kink_signature;
use burn::tensor::{Device, Tensor, TensorData};
use common::{fixture, formula_input};
use convlens::engine::methods::attribution::{GradientRule, attribute_layer};
use convlens::engine::reverse::backward::{ancestors, backward};
use convlens::engine::reverse::step::grad_dims;
use convlens::engine::{Activations, Capture, Engine, NamedInput};
use convlens::model::{Graph, ImportOptions, Op, load_onnx_file};

fn load(rel: &str) -> Arc<Graph> {
    Arc::new(
        load_onnx_file(&fixture(rel), &ImportOptions::default())
            .unwrap_or_else(|e| panic!("{rel}: {e}")),
    )
}

fn run(engine: &Engine, data: &[f32]) -> Activations {
    let input = engine
        .graph()
        .image_input()
        .expect("an image input")
        .clone();
    let named = NamedInput {
        name: input.name,
        shape: input.shape,
        data: data.to_vec(),
    };
    engine
        .forward_inputs(&[named], &Capture::All)
        .expect("forward")
}

/// A sparse direction: uniform values in [-1, 1] on a `side`×`side` patch (all channels) at a
/// position drawn from `salt`, zero elsewhere. Sparse directions move few units, so most
/// of them cross no ReLU or max-pool kink at a small step.
fn patch_direction(shape: &[usize], side: usize, salt: u64) -> Vec<f32> {
    let (c, h, w) = (shape[1], shape[2], shape[3]);
    let hash = |i: u64| attribution_support::unit(salt, i);
    let (py, px) = (
        (hash(u64::MAX) * (h - side + 1) as f64) as usize,
        (hash(u64::MAX - 1) * (w - side + 1) as f64) as usize,
    );
    let mut v = vec![0f32; c * h * w];
    for ch in 0..c {
        for y in py..py + side {
            for x in px..px + side {
                let i = (ch * h + y) * w + x;
                v[i] = (hash(i as u64) * 2.0 - 1.0) as f32;
            }
        }
    }
    v
}

/// `J_k` for every channel `k` of a `[1, C, ...]` value (each element of a 2-D one): sums
/// over the remaining axes in f64, and the same sums of |values| (the scale of f32 rounding).
fn channel_sums(acts: &Activations, value: &str) -> (Vec<f64>, Vec<f64>) {
    let t = acts.read(value).expect("readable");
    let per: usize = t.shape.iter().skip(2).product();
    let sum = |f: fn(f32) -> f64| {
        t.data
            .chunks(per)
            .map(|c| c.iter().map(|&v| f(v)).sum())
            .collect()
    };
    (sum(f64::from), sum(|v| f64::from(v.abs())))
}

fn dot(a: &[f32], b: &[f32]) -> f64 {
    a.iter()
        .zip(b)
        .map(|(&x, &y)| f64::from(x) * f64::from(y))
        .sum()
}

/// Gradients of every class score (last node, one-hot seeds batched over the classes):
/// `[classes, input]`, through Gemm, MatMul, Softmax and the rest of the head.
fn class_score_gradients(engine: &Engine, acts: &Activations) -> Vec<f32> {
    let graph = engine.graph();
    let last = graph.nodes.len() - 1;
    let out_shape = graph.nodes[last].output_shape().to_vec();
    let classes: usize = out_shape.iter().product();
    let dims = grad_dims(classes, &out_shape).expect("rank ≤ 5");
    let mut onehot = vec![0f32; classes * classes];
    for j in 0..classes {
        onehot[j * classes + j] = 1.0;
    }
    let seed = Tensor::<6>::from_data(TensorData::new(onehot, dims), engine.device());
    let g = backward(engine, acts, last, seed, GradientRule::Backprop).expect("reverse pass");
    g.into_data().try_to_vec().expect("f32")
}

/// Directional derivatives `<∂J_k/∂x, v>` of the engine's backprop against central
/// differences `(J_k(x + εv) − J_k(x − εv)) / 2ε`, for every feature-map layer (J_k: channel
/// sums) and the class scores, over `want` sparse directions that cross no kink. Errors, less
/// an allowance for the f32 rounding of the sums, are relative to the layer's largest
/// derivative. Returns the worst error.
fn finite_difference_check(rel: &str, eps: f32, side: usize, tol: f64, want: usize) -> f64 {
    let graph = load(rel);
    let engine = Engine::new(Arc::clone(&graph), Device::flex());
    let shape = graph.image_input().expect("input").shape.clone();
    let n: usize = shape.iter().product();
    let x = formula_input(n);
    let acts = run(&engine, &x);
    let signature = kink_signature(&graph, &acts);
    // InstanceNorm amplifies f32 rounding past what a difference quotient at this step can
    // resolve (and its own channel sums are constant): layers at or behind one are left to
    // the float64 differences below and to tests/attribution_ops.rs.
    let resolvable = |i: usize| {
        !ancestors(&graph, i)
            .iter()
            .any(|&a| matches!(graph.nodes[a].op, Op::InstanceNorm { .. }))
    };
    let mut checks: Vec<(String, String, Vec<f32>)> = graph
        .feature_map_layers()
        .filter(|(i, _)| resolvable(*i))
        .map(|(i, node)| {
            let g = attribute_layer(&engine, &acts, i, GradientRule::Backprop, None)
                .expect("attribution")
                .data;
            (node.name.clone(), node.outputs[0].clone(), g)
        })
        .collect();
    let scores = graph.outputs[0].clone();
    if resolvable(layer_of(&graph, &scores)) {
        checks.push((
            "class scores".into(),
            scores,
            class_score_gradients(&engine, &acts),
        ));
    }

    let mut clean = vec![0usize; checks.len()];
    let (mut worst, mut worst_raw, mut allowance) = (0.0f64, (0.0f64, String::new()), 0.0f64);
    for salt in 0..200 {
        if clean.iter().all(|&c| c >= want) {
            break;
        }
        let v = patch_direction(&shape, side, salt);
        let shifted = |sign: f32| -> Vec<f32> {
            x.iter()
                .zip(&v)
                .map(|(&a, &d)| a + sign * eps * d)
                .collect()
        };
        let (plus, minus) = (run(&engine, &shifted(1.0)), run(&engine, &shifted(-1.0)));
        let (sig_plus, sig_minus) = (
            kink_signature(&graph, &plus),
            kink_signature(&graph, &minus),
        );
        for (check, (layer, value, g)) in checks.iter().enumerate() {
            let smooth = ancestors(&graph, layer_of(&graph, value))
                .iter()
                .all(|&i| sig_plus[i] == signature[i] && sig_minus[i] == signature[i]);
            if !smooth || clean[check] >= want {
                continue;
            }
            clean[check] += 1;
            let ((jp, _), (jm, _), (_, abs)) = (
                channel_sums(&plus, value),
                channel_sums(&minus, value),
                channel_sums(&acts, value),
            );
            let fd: Vec<f64> = jp
                .iter()
                .zip(&jm)
                .map(|(p, m)| (p - m) / (2.0 * f64::from(eps)))
                .collect();
            let analytic: Vec<f64> = g.chunks(n).map(|img| dot(img, &v)).collect();
            // f32 rounding of the forward sums: about 4 ulp of Σ|L_k|, over 2ε.
            let noise: Vec<f64> = abs.iter().map(|a| a * 2.4e-7 / f64::from(eps)).collect();
            let scale = fd
                .iter()
                .chain(&analytic)
                .fold(1e-12f64, |m, d| m.max(d.abs()));
            let diff: Vec<f64> = (0..fd.len()).map(|k| (fd[k] - analytic[k]).abs()).collect();
            let err = diff
                .iter()
                .zip(&noise)
                .map(|(d, z)| (d - z).max(0.0))
                .fold(0.0, f64::max)
                / scale;
            assert!(
                err <= tol,
                "{rel}: {layer}, direction {salt}: directional derivatives off by {err:.2e} of {scale:.3e} (tolerance {tol:.0e})\n  fd       {fd:.4?}\n  analytic {analytic:.4?}"
            );
            worst = worst.max(err);
            allowance = allowance.max(noise.iter().fold(0.0f64, |m, z| m.max(*z)) / scale);
            let raw = diff.iter().fold(0.0, |m: f64, d| m.max(*d)) / scale;
            if raw > worst_raw.0 {
                worst_raw = (raw, layer.clone());
            }
        }
    }
    for ((layer, ..), c) in checks.iter().zip(&clean) {
        assert!(
            *c >= want,
            "{rel}: {layer}: only {c} of {want} directions avoid every kink"
        );
    }
    eprintln!(
        "{rel}: {} checks × {want} kink-free directions: worst error {worst:.2e} beyond a rounding allowance of ≤ {allowance:.1e}, {:.2e} raw ({})",
        checks.len(),
        worst_raw.0,
        worst_raw.1
    );
    worst
}

fn layer_of(graph: &Graph, value: &str) -> usize {
    graph
        .nodes
        .iter()
        .position(|n| n.outputs.iter().any(|o| o == value))
        .expect("a node output")
}

#[test]
fn backprop_matches_finite_differences_tiny_alexnet() {
    finite_difference_check("mixed/tiny_alexnet.onnx", 1e-2, 2, 5e-3, 4);
}

#[test]
fn backprop_matches_finite_differences_tiny_resnet() {
    finite_difference_check("mixed/tiny_resnet.onnx", 1e-2, 2, 5e-3, 4);
}

#[test]
fn backprop_matches_finite_differences_tiny_shapechain() {
    finite_difference_check("mixed/tiny_shapechain.onnx", 1e-2, 2, 5e-3, 4);
}

/// Backprop against float64 central differences (`fd64.json`, step 1e-6, the models' weights
/// in float64 through onnx's numpy reference evaluator): directional derivatives of every
/// feature map's channel sums and of the class scores along dense directions. Errors are
/// relative to the layer's largest derivative. InstanceNorm outputs are left out: their
/// channel sums are constant, so both sides are rounding. Returns the worst error and where.
fn float64_reference_check(model: &str, tol: f64) -> (f64, String) {
    let all: serde_json::Value = serde_json::from_slice(
        &std::fs::read(fixture("attribution/fd64.json")).expect("fd64.json"),
    )
    .expect("json");
    let reference = &all[model];
    let graph = load(&format!("mixed/{model}"));
    let engine = Engine::new(Arc::clone(&graph), Device::flex());
    let n: usize = graph.image_input().expect("input").shape.iter().product();
    let acts = run(&engine, &formula_input(n));
    let salts: Vec<u64> = serde_json::from_value(reference["salts"].clone()).expect("salts");
    let values: std::collections::BTreeMap<String, Vec<Vec<f64>>> =
        serde_json::from_value(reference["values"].clone()).expect("values");
    let mut worst = (0.0f64, String::new());
    for (value, per_salt) in &values {
        let layer = layer_of(&graph, value);
        // A layer is a node's first output; InstanceNorm is left out (see above).
        if graph.nodes[layer].outputs[0] != *value
            || matches!(graph.nodes[layer].op, Op::InstanceNorm { .. })
        {
            continue;
        }
        let grads = match graph.nodes[layer].feature_map_dims() {
            Some(_) => {
                attribute_layer(&engine, &acts, layer, GradientRule::Backprop, None)
                    .expect("attribution")
                    .data
            }
            None => class_score_gradients(&engine, &acts),
        };
        for (salt, want) in salts.iter().zip(per_salt) {
            let v: Vec<f32> = (0..n as u64)
                .map(|i| (attribution_support::unit(*salt, i) * 2.0 - 1.0) as f32)
                .collect();
            let got: Vec<f64> = grads.chunks(n).map(|img| dot(img, &v)).collect();
            assert_eq!(got.len(), want.len(), "{model}: {value}: channel count");
            let scale = want.iter().fold(1e-12f64, |m, d| m.max(d.abs()));
            let err = got
                .iter()
                .zip(want)
                .map(|(g, w)| (g - w).abs())
                .fold(0.0, f64::max)
                / scale;
            assert!(
                err <= tol,
                "{model}: {value}, direction {salt}: off by {err:.2e} (tolerance {tol:.0e})\n  got  {got:.6?}\n  want {want:.6?}"
            );
            if err >= worst.0 {
                worst = (err, value.clone());
            }
        }
    }
    worst
}

#[test]
fn backprop_matches_float64_finite_differences() {
    for model in [
        "tiny_alexnet.onnx",
        "tiny_resnet.onnx",
        "tiny_shapechain.onnx",
    ] {
        let (err, at) = float64_reference_check(model, 1e-4);
        eprintln!("{model}: worst relative error against float64 differences {err:.2e} ({at})");
    }
}

/// Worst per-image cosine similarity and relative norm error against the PyTorch reference.
struct Agreement {
    images: usize,
    /// Images that are exactly zero in the float64 reference (and here).
    zero: usize,
    min_cos: f64,
    max_norm_err: f64,
}

/// Every channel of the reference layers of `attribution/<name>.onnx` (`small_cnn`: its three
/// conv layers; `small_mobile`: a depthwise and a pointwise layer of a MobileNet-like
/// network), all three methods, against the float64 PyTorch autograd (+ hooks) images of
/// `scripts/make_attribution_reference.py`.
fn pytorch_reference_check(name: &str, device: Device, min_cos: f64, norm_tol: f64) -> Agreement {
    let meta: serde_json::Value = serde_json::from_slice(
        &std::fs::read(fixture(&format!("attribution/{name}.json"))).expect("reference json"),
    )
    .expect("valid json");
    let graph = load(&format!("attribution/{name}.onnx"));
    let input_shape: Vec<usize> = (meta["input_shape"].as_array().expect("input shape"))
        .iter()
        .map(|d| d.as_u64().expect("dim") as usize)
        .collect();
    let engine = Engine::new(Arc::clone(&graph), device);
    let n: usize = graph.image_input().expect("input").shape.iter().product();
    let acts = run(&engine, &formula_input(n));
    let mut agreement = Agreement {
        images: 0,
        zero: 0,
        min_cos: 1.0,
        max_norm_err: 0.0,
    };
    for (key, method) in [
        ("backprop", GradientRule::Backprop),
        ("deconvnet", GradientRule::Deconvnet),
        ("guided", GradientRule::Guided),
    ] {
        let file = meta["methods"][key].as_str().expect("method file");
        let reference =
            convlens::npy::read(&fixture(&format!("attribution/{file}"))).expect("reference npy");
        let norms = meta["norms"][key].as_array().expect("norms");
        for layer in meta["layers"].as_array().expect("layers") {
            let name = layer["onnx_node"].as_str().expect("node name");
            let row = layer["row"].as_u64().expect("row") as usize;
            let index = graph
                .node_index(name)
                .unwrap_or_else(|| panic!("no node {name}"));
            // A small chunk so that several reverse passes per layer are exercised.
            let got = attribute_layer(&engine, &acts, index, method, Some(3)).expect("attribution");
            let mut want_shape = vec![layer["channels"].as_u64().expect("channels") as usize];
            want_shape.extend(&input_shape[1..]);
            assert_eq!(got.shape, want_shape);
            for (k, img) in got.data.chunks(n).enumerate() {
                let want = &reference.data[(row + k) * n..(row + k + 1) * n];
                let (ng, nw) = (dot(img, img).sqrt(), dot(want, want).sqrt());
                let norm64 = norms[row + k].as_f64().expect("norm");
                if norm64 == 0.0 {
                    // Every path to the input gated off (guided backprop's double gate).
                    assert!(
                        ng == 0.0,
                        "{key} {name} channel {k}: want zero, norm {ng:e}"
                    );
                    agreement.images += 1;
                    agreement.zero += 1;
                    continue;
                }
                assert!(
                    nw > 1e-9,
                    "{key} {name} channel {k}: the reference image is zero"
                );
                let cos = dot(img, want) / (ng * nw).max(1e-30);
                let norm_err = (ng - norm64).abs() / norm64;
                assert!(
                    cos >= min_cos && norm_err <= norm_tol,
                    "{key} {name} channel {k}: cosine {cos:.6} (min {min_cos}), norm {ng:.6e} vs {norm64:.6e} (rel err {norm_err:.2e}, tol {norm_tol:.0e})"
                );
                agreement.images += 1;
                agreement.min_cos = agreement.min_cos.min(cos);
                agreement.max_norm_err = agreement.max_norm_err.max(norm_err);
            }
        }
    }
    agreement
}

#[test]
fn all_methods_match_pytorch_autograd_with_hooks_on_flex() {
    let a = pytorch_reference_check("small_cnn", Device::flex(), 0.999, 1e-3);
    eprintln!(
        "flex: {} images, min cosine {:.7}, max relative norm error {:.2e}",
        a.images, a.min_cos, a.max_norm_err
    );
    assert_eq!((a.images, a.zero), (3 * 24, 0));
}

/// The depthwise (3×3 and 5×5, strides 1 and 2) and pointwise layers take other host kernels
/// in the reverse pass on flex (`kernels::conv::input_grad_path`).
#[test]
fn depthwise_and_pointwise_layers_match_pytorch_on_flex() {
    let a = pytorch_reference_check("small_mobile", Device::flex(), 0.999, 1e-3);
    eprintln!(
        "flex, small_mobile: {} images, min cosine {:.7}, max relative norm error {:.2e}",
        a.images, a.min_cos, a.max_norm_err
    );
    assert_eq!(a.images, 3 * (48 + 16));
    // Two of dw2's guided-backprop images are zero on this input; the rest carry signal.
    assert!(a.zero <= 2, "{} zero images", a.zero);
}

#[test]
fn all_methods_match_pytorch_autograd_with_hooks_on_wgpu() {
    let a = pytorch_reference_check("small_cnn", common::wgpu(), 0.999, 1e-2);
    eprintln!(
        "wgpu: {} images, min cosine {:.7}, max relative norm error {:.2e}",
        a.images, a.min_cos, a.max_norm_err
    );
}

/// Wall time of GBP for every filter of every conv layer of the AlexNet-shaped workload of
/// `benches/gbp.rs` (one forward pass, then batched reverse passes). Run with
/// `cargo test --test it attribution::gbp_timing -- --ignored --nocapture`
/// (`CONVLENS_BENCH_DEVICE=wgpu` for burn's wgpu device; `CONVLENS_CHUNK=n` to force a chunk).
#[test]
#[ignore = "timing, minutes on a CPU"]
fn gbp_timing_alexnet_all_conv_layers() {
    let device = match std::env::var("CONVLENS_BENCH_DEVICE").as_deref() {
        Ok("wgpu") => common::wgpu(),
        _ => Device::flex(),
    };
    let chunk = std::env::var("CONVLENS_CHUNK")
        .ok()
        .and_then(|s| s.parse().ok());
    let start = std::time::Instant::now();
    let (engine, acts, convs) = attribution_support::alexnet(device);
    eprintln!("forward pass: {:.2?}", start.elapsed());
    let mut total = std::time::Duration::ZERO;
    for i in convs {
        let t = std::time::Instant::now();
        let images = attribute_layer(&engine, &acts, i, GradientRule::Guided, chunk).expect("gbp");
        let dt = t.elapsed();
        total += dt;
        let node = &engine.graph().nodes[i];
        let c = images.shape[0];
        let auto = convlens::engine::methods::attribution::chunk_size(
            &engine,
            i,
            c,
            convlens::engine::methods::attribution::GRAD_TENSOR_BUDGET_BYTES,
        );
        eprintln!(
            "{:>4} {c:>3} filters, chunk {:>3}: {dt:.2?}",
            node.name,
            chunk.unwrap_or(auto)
        );
    }
    eprintln!("GBP of all conv filters: {total:.2?}");
}

/// The channel-sum shortcut at a group-1 conv layer (its own step as one grouped transposed
/// convolution, `backward_channel_sums`) gives what one-hot seeds through `backward` give, for
/// every conv layer of the random-weight models (strided, padded asymmetrically, dilated,
/// grouped — the grouped ones take the seeded path) and every method.
#[test]
fn the_channel_sum_shortcut_equals_one_hot_seeds() {
    use convlens::engine::reverse::backward::backward_channel_sums;
    use convlens::engine::reverse::seeds::channel_seeds;
    for model in ["mixed/tiny_alexnet.onnx", "mixed/tiny_resnet.onnx"] {
        let graph = load(model);
        let engine = Engine::new(Arc::clone(&graph), Device::flex());
        let n: usize = graph.image_input().expect("input").shape.iter().product();
        let acts = run(&engine, &formula_input(n));
        let mut checked = 0;
        for (i, node) in graph.nodes.iter().enumerate() {
            let (Op::Conv { .. }, Some(dims)) = (&node.op, node.feature_map_dims()) else {
                continue;
            };
            let range = 1..dims.0.min(4);
            for method in [
                GradientRule::Backprop,
                GradientRule::Deconvnet,
                GradientRule::Guided,
            ] {
                let fast = backward_channel_sums(&engine, &acts, i, range.clone(), method)
                    .unwrap_or_else(|e| panic!("{}: {e}", node.name));
                let seeds = channel_seeds(range.clone(), dims, engine.device());
                let slow = backward(&engine, &acts, i, seeds, method).expect("seeded");
                assert_eq!(fast.dims(), slow.dims(), "{}", node.name);
                let (a, b) = (
                    fast.into_data().try_to_vec::<f32>().unwrap(),
                    slow.into_data().try_to_vec::<f32>().unwrap(),
                );
                let scale = b.iter().fold(0f32, |m, v| m.max(v.abs())).max(1e-12);
                let worst = a
                    .iter()
                    .zip(&b)
                    .fold(0f32, |m, (x, y)| m.max((x - y).abs()));
                assert!(
                    worst <= 1e-5 * scale,
                    "{model} {} {method:?}: max |Δ| {worst:.3e} (scale {scale:.3e})",
                    node.name
                );
            }
            checked += 1;
        }
        assert!(checked >= 2, "{model}: {checked} conv layers checked");
    }
}
