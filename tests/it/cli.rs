//! The `convlens` binary end to end: `info`, `export` and their error messages.

use crate::common;

use std::process::Command;

use common::fixture;

/// Runs the binary with a cache folder of its own (feature vis keeps images there).
fn convlens(args: &[&str]) -> std::process::Output {
    let cache = tempfile::tempdir().expect("tempdir");
    convlens_cached(args, cache.path())
}

fn convlens_cached(args: &[&str], cache: &std::path::Path) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_convlens"))
        .env("CONVLENS_CACHE_DIR", cache)
        .args(args)
        .output()
        .expect("binary runs")
}

fn text(out: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[test]
fn info_lists_the_default_architecture() {
    let out = convlens(&["info"]);
    assert!(out.status.success(), "{}", text(&out));
    let s = String::from_utf8_lossy(&out.stdout);
    assert!(s.contains("EfficientNet-Lite0"), "{s}");
    assert!(s.contains("ReLU6") && s.contains("Conv"), "{s}");
    let out = convlens(&["info", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("valid JSON");
    assert_eq!(v["layers"].as_array().map(Vec::len), Some(94));
    assert_eq!(v["layers"][0]["type"], "Conv");
}

#[test]
fn export_writes_the_papers_files() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out_dir = dir.path().join("out");
    let coffee = format!("{}/assets/images/coffee.png", env!("CARGO_MANIFEST_DIR"));
    let layer = "/_conv_stem/Conv";
    let out = convlens(&[
        "export",
        "--input",
        &coffee,
        "--out",
        out_dir.to_str().expect("utf8"),
        "--layers",
        layer,
        "--raw",
        "--device",
        "cpu",
    ]);
    assert!(out.status.success(), "{}", text(&out));
    let arch: serde_json::Value = serde_json::from_slice(
        &std::fs::read(out_dir.join("architecture.json")).expect("architecture.json"),
    )
    .expect("json");
    let first = &arch["layers"][0];
    for key in [
        "name",
        "type",
        "inputs",
        "output_shape",
        "params",
        "onnx_output",
        "file_stem",
    ] {
        assert!(!first[key].is_null(), "layer record lacks '{key}': {first}");
    }
    assert_eq!(first["name"], layer);
    assert_eq!(first["output_shape"], serde_json::json!([1, 32, 112, 112]));
    let stem = first["file_stem"].as_str().expect("stem");
    assert!(!stem.contains('/'));
    for k in [1, 32] {
        let png = image::open(out_dir.join(format!("forward/{stem}_{k}.png")))
            .expect("tile PNG")
            .to_luma8();
        assert_eq!(png.dimensions(), (112, 112));
    }
    assert!(!out_dir.join(format!("forward/{stem}_33.png")).exists());
    let raw =
        convlens::npy::read(&out_dir.join(format!("raw/forward/{stem}.npy"))).expect("raw npy");
    assert_eq!(raw.shape, vec![32, 112, 112]);
    // The PNG is the per-tile min-max of the raw map.
    let tile = &raw.data[..112 * 112];
    let png = image::open(out_dir.join(format!("forward/{stem}_1.png")))
        .expect("png")
        .to_luma8();
    assert_eq!(
        png.as_raw().as_slice(),
        convlens::viz::tiles::tile_to_grey8(tile).as_slice()
    );
    let scores: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out_dir.join("scores.json")).expect("scores"))
            .expect("json");
    let s: Vec<f64> = serde_json::from_value(scores["S"].clone()).expect("S");
    assert_eq!(s.len(), 1000);
    assert!((s.iter().sum::<f64>() - 1.0).abs() < 1e-3);
    let best = s
        .iter()
        .enumerate()
        .max_by(|a, b| a.1.total_cmp(b.1))
        .map(|(i, _)| i)
        .expect("non-empty");
    assert_eq!(scores["labels"][best], "espresso");
}

#[test]
fn bad_inputs_get_clear_errors() {
    let dir = tempfile::tempdir().expect("tempdir");
    let missing = convlens(&["info", "/nonexistent/model.onnx"]);
    assert!(!missing.status.success());
    assert!(
        text(&missing).contains("/nonexistent/model.onnx"),
        "{}",
        text(&missing)
    );
    // The OS's reason once, not once per error in the chain.
    let os_reason = std::fs::read("/nonexistent/model.onnx")
        .expect_err("the path does not exist")
        .to_string();
    assert_eq!(
        text(&missing).matches(&os_reason).count(),
        1,
        "{}",
        text(&missing)
    );

    let garbage = dir.path().join("garbage.onnx");
    std::fs::write(&garbage, b"\x08\x07this is not protobuf\xff\xff\xff").expect("write");
    let out = convlens(&["info", garbage.to_str().expect("utf8")]);
    assert!(!out.status.success());
    assert!(
        text(&out).contains("not a valid ONNX model"),
        "{}",
        text(&out)
    );

    let not_image = dir.path().join("notes.png");
    std::fs::write(&not_image, b"hello").expect("write");
    let out = convlens(&[
        "export",
        "--input",
        not_image.to_str().expect("utf8"),
        "--out",
        dir.path().join("o").to_str().expect("utf8"),
    ]);
    assert!(!out.status.success());
    assert!(text(&out).contains("notes.png"), "{}", text(&out));

    let out = convlens(&[
        "export",
        "--input",
        "x.png",
        "--out",
        "o",
        "--layers",
        "no_such_layer",
    ]);
    assert!(!out.status.success());
}

#[test]
fn unsupported_op_names_op_node_and_file() {
    // An op outside the supported set, in an otherwise valid model.
    use onnx_ir::{Message, ModelProto};
    let src = std::fs::read(fixture("mixed/tiny_alexnet.onnx")).expect("fixture");
    let mut model = ModelProto::parse_from_bytes(&src).expect("parses");
    let graph = model.graph.as_mut().expect("graph");
    graph.node[1].op_type = "NonMaxSuppression".into();
    let node_name = graph.node[1].name.clone();
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("weird.onnx");
    std::fs::write(&path, model.write_to_bytes().expect("serialise")).expect("write");
    let out = convlens(&["info", path.to_str().expect("utf8")]);
    assert!(!out.status.success());
    let msg = text(&out);
    assert!(
        msg.contains("NonMaxSuppression") && msg.contains(&node_name) && msg.contains("weird.onnx"),
        "{msg}"
    );
}

#[test]
fn stats_aggregate_what_export_writes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let images = format!("{}/assets/images", env!("CARGO_MANIFEST_DIR"));
    let layer = "/_conv_stem/Conv";
    let out = dir.path().join("stats.json");
    let run = convlens(&[
        "stats",
        "--inputs",
        &images,
        "--out",
        out.to_str().expect("utf8"),
        "--layers",
        layer,
        "--device",
        "cpu",
    ]);
    assert!(run.status.success(), "{}", text(&run));
    let v: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&out).expect("stats file")).expect("json");
    assert_eq!(v["images"], 3);
    let filters = v["layers"][0]["filters"].as_array().expect("filters");
    assert_eq!(filters.len(), 32);
    let mut ranks: Vec<u64> = filters
        .iter()
        .map(|f| f["rank"].as_u64().expect("rank"))
        .collect();
    ranks.sort_unstable();
    assert_eq!(ranks, (1..=32).collect::<Vec<_>>());
    // Independent check: the raw maps that `export --raw` writes for each image.
    let (mut mean1, mut max1) = (0.0f64, f32::NEG_INFINITY);
    for name in ["astronaut", "chelsea", "coffee"] {
        let d = dir.path().join(name);
        let img = format!("{images}/{name}.png");
        let e = convlens(&[
            "export",
            "--input",
            &img,
            "--out",
            d.to_str().expect("utf8"),
            "--layers",
            layer,
            "--raw",
            "--device",
            "cpu",
        ]);
        assert!(e.status.success(), "{}", text(&e));
        let raw = convlens::npy::read(&d.join("raw/forward/conv_stem_Conv.npy")).expect("raw");
        let tile = &raw.data[..112 * 112];
        mean1 += tile.iter().map(|&x| f64::from(x)).sum::<f64>() / tile.len() as f64 / 3.0;
        max1 = tile.iter().copied().fold(max1, f32::max);
    }
    let f1 = &filters[0];
    assert!(
        (f1["mean"].as_f64().expect("mean") - mean1).abs() < 1e-6 * mean1.abs().max(1.0),
        "{f1} vs {mean1}"
    );
    assert_eq!(f1["max"].as_f64().expect("max") as f32, max1);
    // Two images per pass (the third pass padded): the same statistics.
    let batched_out = dir.path().join("stats_batched.json");
    let batched = convlens(&[
        "stats",
        "--inputs",
        &images,
        "--out",
        batched_out.to_str().expect("utf8"),
        "--layers",
        layer,
        "--device",
        "cpu",
        "--batch",
        "2",
    ]);
    assert!(batched.status.success(), "{}", text(&batched));
    let b: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&batched_out).expect("stats file")).expect("json");
    assert_eq!(b["images"], 3);
    for (one, two) in filters
        .iter()
        .zip(b["layers"][0]["filters"].as_array().expect("filters"))
    {
        for key in ["mean", "max", "zero_fraction"] {
            let (x, y) = (one[key].as_f64(), two[key].as_f64());
            assert!(
                matches!((x, y), (Some(x), Some(y)) if (x - y).abs() <= 1e-6 * x.abs().max(1.0)),
                "{key}: {one} vs {two}"
            );
        }
    }
}

#[test]
fn export_writes_gradient_methods() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out_dir = dir.path().join("out");
    let model = fixture("mixed/tiny_alexnet.onnx");
    let coffee = format!("{}/assets/images/coffee.png", env!("CARGO_MANIFEST_DIR"));
    let run = convlens(&[
        "export",
        model.to_str().expect("utf8"),
        "--input",
        &coffee,
        "--out",
        out_dir.to_str().expect("utf8"),
        "--methods",
        "forward,gbp,deconvnet,backprop,gradcam,occlusion",
        "--occlusion-size",
        "8",
        "--occlusion-stride",
        "8",
        "--raw",
        "--device",
        "cpu",
    ]);
    assert!(run.status.success(), "{}", text(&run));
    let arch: serde_json::Value = serde_json::from_slice(
        &std::fs::read(out_dir.join("architecture.json")).expect("architecture"),
    )
    .expect("json");
    let conv = arch["layers"]
        .as_array()
        .expect("layers")
        .iter()
        .find(|l| l["type"] == "Conv")
        .expect("a conv layer");
    let stem = conv["file_stem"].as_str().expect("stem");
    let channels = conv["output_shape"][1].as_u64().expect("C") as usize;
    let (h, w) = (
        conv["output_shape"][2].as_u64().expect("H") as usize,
        conv["output_shape"][3].as_u64().expect("W") as usize,
    );
    let cam = convlens::npy::read(&out_dir.join(format!("raw/gradcam/{stem}.npy")))
        .expect("raw Grad-CAM");
    assert_eq!(cam.shape, vec![h, w]);
    assert!(
        cam.data.iter().all(|&v| v >= 0.0),
        "Grad-CAM is a ReLU of the weighted sum"
    );
    assert!(out_dir.join(format!("gradcam/{stem}.png")).exists());
    let occ = convlens::npy::read(&out_dir.join(format!("raw/occlusion/{stem}.npy")))
        .expect("raw occlusion");
    assert_eq!(
        occ.shape,
        vec![channels, 4, 4],
        "8-px squares at stride 8 on 32×32"
    );
    let png = image::open(out_dir.join(format!("occlusion/{stem}_{channels}.png")))
        .expect("occlusion PNG")
        .to_luma8();
    assert_eq!(png.dimensions(), (4, 4));
    for method in ["gbp", "deconvnet", "backprop"] {
        let raw = convlens::npy::read(&out_dir.join(format!("raw/{method}/{stem}.npy")))
            .expect("raw gradients");
        assert_eq!(raw.shape, vec![channels, 3, 32, 32], "{method}");
        for k in [1, channels] {
            let png = image::open(out_dir.join(format!("{method}/{stem}_{k}.png")))
                .expect("png")
                .to_rgb8();
            assert_eq!(png.dimensions(), (32, 32));
            let per = 3 * 32 * 32;
            let want = convlens::viz::tiles::rgb_planes_to_rgb8(
                &raw.data[(k - 1) * per..k * per],
                32 * 32,
                convlens::viz::gradient_norm::GradientNorm::MinMax,
            );
            assert_eq!(
                png.as_raw(),
                &want,
                "{method} filter {k}: PNG is the joint min-max of the raw gradient"
            );
        }
    }
}

#[test]
fn export_normalize_robust_centres_gradients_and_clips_outliers() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out_dir = dir.path().join("out");
    let model = fixture("mixed/tiny_alexnet.onnx");
    let coffee = format!("{}/assets/images/coffee.png", env!("CARGO_MANIFEST_DIR"));
    let run = convlens(&[
        "export",
        model.to_str().expect("utf8"),
        "--input",
        &coffee,
        "--out",
        out_dir.to_str().expect("utf8"),
        "--methods",
        "gbp",
        "--layers",
        "conv2",
        "--raw",
        "--normalize",
        "robust",
        "--device",
        "cpu",
    ]);
    assert!(run.status.success(), "{}", text(&run));
    let raw = convlens::npy::read(&out_dir.join("raw/gbp/conv2.npy")).expect("raw gradients");
    let per = 3 * 32 * 32;
    let mut clipped = 0;
    for k in 1..=raw.shape[0] {
        let g = &raw.data[(k - 1) * per..k * per];
        // Captum's threshold written out: sort |g|, cumulative sum, first reaching 98%.
        let mut abs: Vec<f64> = g.iter().map(|v| f64::from(v.abs())).collect();
        abs.sort_by(f64::total_cmp);
        let total: f64 = abs.iter().sum();
        let mut cum = 0.0;
        let t = *abs
            .iter()
            .find(|&&v| {
                cum += v;
                cum >= 0.98 * total
            })
            .expect("a threshold");
        let png = image::open(out_dir.join(format!("gbp/conv2_{k}.png")))
            .expect("png")
            .to_rgb8();
        for (i, px) in png.pixels().enumerate() {
            for c in 0..3 {
                let v = f64::from(g[c * 32 * 32 + i]);
                let want = ((v / t).clamp(-1.0, 1.0) + 1.0) / 2.0 * 255.0;
                clipped += usize::from(v.abs() > t);
                let got = f64::from(px.0[c]);
                assert!(
                    (got - want).abs() <= 1.0,
                    "filter {k} pixel {i} channel {c}: {got} vs {want:.2}"
                );
            }
        }
    }
    assert!(
        clipped > 0,
        "no value beyond the threshold: nothing was clipped"
    );
}

/// `mixed/tiny_alexnet.onnx` cut after its first conv block: a "backbone" whose output is
/// feature maps `[1, C, H, W]`, not class scores.
fn backbone_model(dir: &std::path::Path) -> std::path::PathBuf {
    use onnx_ir::{Message, ModelProto};
    let src = std::fs::read(fixture("mixed/tiny_alexnet.onnx")).expect("fixture");
    let mut model = ModelProto::parse_from_bytes(&src).expect("parses");
    let graph = model.graph.as_mut().expect("graph");
    let relu = graph
        .node
        .iter()
        .position(|n| n.op_type == "Relu")
        .expect("a Relu");
    let out = graph.node[relu].output[0].clone();
    graph.node.truncate(relu + 1);
    graph.output.truncate(1);
    graph.output[0].name = out;
    graph.output[0].type_ = Default::default();
    let path = dir.join("backbone.onnx");
    std::fs::write(&path, model.write_to_bytes().expect("serialise")).expect("write");
    path
}

#[test]
fn an_output_that_is_not_class_scores_gets_no_classes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let model = backbone_model(dir.path());
    let model = model.to_str().expect("utf8");
    let image = format!("{}/assets/images/coffee.png", env!("CARGO_MANIFEST_DIR"));
    let out_dir = dir.path().join("out");
    let out_dir = out_dir.to_str().expect("utf8");
    let base = [
        "export", model, "--input", &image, "--out", out_dir, "--device", "cpu",
    ];

    let run = convlens(&[&base[..], &["--methods", "forward"]].concat());
    assert!(run.status.success(), "{}", text(&run));
    let msg = text(&run);
    assert!(msg.contains("top-5: none (output [1, "), "{msg}");
    let scores: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(dir.path().join("out/scores.json")).expect("scores.json"),
    )
    .expect("JSON");
    assert_eq!(scores["S"].as_array().map(Vec::len), Some(0), "{scores}");

    for extra in [&["--methods", "gradcam"][..], &["--class", "3"][..]] {
        let run = convlens(&[&base[..], extra].concat());
        assert!(!run.status.success(), "{extra:?}");
        assert!(text(&run).contains("not a class vector"), "{}", text(&run));
    }
    // Labels name classes; a backbone has none.
    let labels = dir.path().join("labels.txt");
    std::fs::write(&labels, "a\nb\n").expect("write");
    let run = convlens(&["info", model, "--labels", labels.to_str().expect("utf8")]);
    assert!(!run.status.success());
    assert!(text(&run).contains("not a class vector"), "{}", text(&run));
}

#[test]
fn labels_come_from_a_file_and_must_match_the_classes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let model = fixture("mixed/tiny_alexnet.onnx");
    let model = model.to_str().expect("utf8");
    let image = format!("{}/assets/images/coffee.png", env!("CARGO_MANIFEST_DIR"));
    let classes = {
        let run = convlens(&["info", model, "--json"]);
        let v: serde_json::Value = serde_json::from_slice(&run.stdout).expect("JSON");
        let shape = v["layers"]
            .as_array()
            .and_then(|l| l.last())
            .expect("layers")["output_shape"]
            .clone();
        shape
            .as_array()
            .expect("shape")
            .iter()
            .map(|d| d.as_u64().expect("dim") as usize)
            .product::<usize>()
    };
    let labels = dir.path().join("labels.txt");
    let names: Vec<String> = (0..classes).map(|i| format!("thing {i}")).collect();
    std::fs::write(&labels, names.join("\n") + "\n").expect("write");
    let out_dir = dir.path().join("out");
    let run = convlens(&[
        "export",
        model,
        "--input",
        &image,
        "--out",
        out_dir.to_str().expect("utf8"),
        "--methods",
        "forward",
        "--device",
        "cpu",
        "--labels",
        labels.to_str().expect("utf8"),
    ]);
    assert!(run.status.success(), "{}", text(&run));
    let scores: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(out_dir.join("scores.json")).expect("scores.json"),
    )
    .expect("JSON");
    assert_eq!(
        scores["labels"][classes - 1],
        format!("thing {}", classes - 1)
    );
    assert!(text(&run).contains("top-5: thing "), "{}", text(&run));

    std::fs::write(&labels, "only one\n").expect("write");
    let run = convlens(&["info", model, "--labels", labels.to_str().expect("utf8")]);
    assert!(!run.status.success());
    assert!(
        text(&run).contains(&format!("has 1 labels, the model has {classes} classes")),
        "{}",
        text(&run)
    );
}

#[test]
fn version_names_revision_kernels_and_adapter_without_noise() {
    // No desktop session: Mesa's Vulkan device_select layer used to print
    // "error: XDG_RUNTIME_DIR is invalid or not set in the environment." twice per probe.
    let out = Command::new(env!("CARGO_BIN_EXE_convlens"))
        .arg("--version")
        .env_remove("XDG_RUNTIME_DIR")
        .env_remove("WAYLAND_DISPLAY")
        .env_remove("NODEVICE_SELECT")
        .output()
        .expect("binary runs");
    assert!(out.status.success(), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.starts_with(&format!("convlens {} (git ", env!("CARGO_PKG_VERSION"))),
        "{stdout}"
    );
    for line in ["features: ", "CPU kernels: ", "GPU adapter: "] {
        assert!(stdout.contains(line), "{stdout}");
    }
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "",
        "stderr must be empty"
    );
}

#[test]
fn featvis_writes_images_and_a_trace_that_climbs() {
    let dir = tempfile::tempdir().expect("tempdir");
    let model = fixture("mixed/tiny_alexnet.onnx");
    let run = convlens(&[
        "featvis",
        model.to_str().expect("utf8"),
        "--layers",
        "conv2",
        "--filters",
        "1-2,5",
        "--steps",
        "40",
        "--batch",
        "2",
        "--out",
        dir.path().to_str().expect("utf8"),
        "--device",
        "cpu",
    ]);
    assert!(run.status.success(), "{}", text(&run));
    let doc: serde_json::Value = serde_json::from_slice(
        &std::fs::read(dir.path().join("featvis.json")).expect("featvis.json"),
    )
    .expect("json");
    let filters = doc["layers"][0]["filters"].as_array().expect("filters");
    let numbers: Vec<u64> = filters
        .iter()
        .map(|f| f["filter"].as_u64().expect("n"))
        .collect();
    assert_eq!(numbers, vec![1, 2, 5]);
    for f in filters {
        let png = dir.path().join(f["png"].as_str().expect("png"));
        let img = image::open(&png).expect("a PNG").to_rgb8();
        assert_eq!(img.dimensions(), (32, 32), "{}", png.display());
        let trace = f["trace"].as_array().expect("trace");
        let first = trace[0][1].as_f64().expect("first");
        let last = f["objective"].as_f64().expect("final");
        assert!(last > first, "filter {f}: {first} → {last}");
    }
    let bad = convlens(&[
        "featvis",
        model.to_str().expect("utf8"),
        "--layers",
        "conv2",
        "--filters",
        "0",
        "--out",
        dir.path().to_str().expect("utf8"),
    ]);
    assert!(
        !bad.status.success() && text(&bad).contains("from 1"),
        "{}",
        text(&bad)
    );
    // --size: another image size. The model's classifier flattens a fixed 800 values, so
    // only the graph up to conv2 can take 48×48; that is all feature vis needs.
    let resized = dir.path().join("resized");
    let run = convlens(&[
        "featvis",
        model.to_str().expect("utf8"),
        "--layers",
        "conv2",
        "--filters",
        "1",
        "--steps",
        "4",
        "--size",
        "48x48",
        "--out",
        resized.to_str().expect("utf8"),
    ]);
    assert!(run.status.success(), "{}", text(&run));
    let img = image::open(resized.join("featvis/conv2_1.png")).expect("a PNG");
    assert_eq!((img.width(), img.height()), (48, 48));
    // Elsewhere --size of a fixed-size model is still refused.
    let info = convlens(&["info", model.to_str().expect("utf8"), "--size", "48x48"]);
    assert!(!info.status.success(), "{}", text(&info));
}

/// Mean RGB of the pixels of `img` inside `[x, y, w, h]` (in pixels).
fn mean_rgb(img: &image::RgbaImage, [x, y, w, h]: [u32; 4]) -> [f64; 3] {
    let mut sum = [0f64; 3];
    for yy in y..y + h {
        for xx in x..x + w {
            let p = img.get_pixel(xx, yy);
            (0..3).for_each(|c| sum[c] += f64::from(p[c]));
        }
    }
    sum.map(|s| s / f64::from(w * h))
}

#[test]
fn featvis_fills_the_cache_that_export_and_the_viewer_read() {
    use convlens::ui::scene::selected_grid;
    use convlens::ui::state::ViewState;
    let dir = tempfile::tempdir().expect("tempdir");
    let cache = dir.path().join("cache");
    let model = fixture("mixed/tiny_alexnet.onnx");
    let model = model.to_str().expect("utf8");
    let featvis_out = dir.path().join("featvis");
    let run = convlens_cached(
        &[
            "featvis",
            model,
            "--layers",
            "conv2",
            "--steps",
            "8",
            "--batch",
            "4",
            "--out",
            featvis_out.to_str().expect("utf8"),
            "--device",
            "cpu",
        ],
        &cache,
    );
    assert!(run.status.success(), "{}", text(&run));
    assert!(text(&run).contains(" from the cache"), "{}", text(&run));
    let graph = convlens::model::load_onnx_file(
        std::path::Path::new(model),
        &convlens::model::ImportOptions::default(),
    )
    .expect("model");
    let layer = graph
        .nodes
        .iter()
        .position(|n| n.name == "conv2")
        .expect("conv2");
    let channels = graph.nodes[layer].feature_map_dims().expect("maps").0;
    // export reads every filter from the cache: nothing optimised, the same PNGs.
    let coffee = format!("{}/assets/images/coffee.png", env!("CARGO_MANIFEST_DIR"));
    // `export` of conv2 with `methods` and `steps` into `out`, sharing the cache.
    let export = |methods: &str, steps: &str, out: &std::path::Path| {
        let out = out.to_str().expect("utf8");
        convlens_cached(
            &[
                "export",
                model,
                "--input",
                &coffee,
                "--layers",
                "conv2",
                "--methods",
                methods,
                "--featvis-steps",
                steps,
                "--out",
                out,
                "--device",
                "cpu",
            ],
            &cache,
        )
    };
    let data = dir.path().join("data");
    let run = export("forward,featvis", "8", &data);
    assert!(run.status.success(), "{}", text(&run));
    let said = text(&run);
    assert!(
        said.contains(&format!("featvis: {channels} PNGs (0 optimised")),
        "{said}"
    );
    for n in 1..=channels {
        let name = format!("featvis/conv2_{n}.png");
        let a = std::fs::read(featvis_out.join(&name)).expect("featvis PNG");
        let b = std::fs::read(data.join(&name)).expect("exported PNG");
        assert_eq!(a, b, "{name}");
    }
    // Another step count is another cache entry: computed, not read.
    let run = export("featvis", "3", &dir.path().join("data3"));
    assert!(run.status.success(), "{}", text(&run));
    assert!(text(&run).contains(&format!("featvis: {channels} PNGs ({channels} optimised")));
    // The viewer's "feature vis" tiles are those images.
    let shot = dir.path().join("shot.png");
    let run = convlens_cached(
        &[
            "view",
            model,
            "--layer",
            "conv2",
            "--method",
            "featvis",
            "--featvis-steps",
            "8",
            "--window-size",
            "1000x700",
            "--device",
            "cpu",
            "--screenshot",
            shot.to_str().expect("utf8"),
        ],
        &cache,
    );
    assert!(run.status.success(), "{}", text(&run));
    let img = image::open(&shot).expect("screenshot").to_rgba8();
    let device = convlens::engine::device::select(convlens::engine::DeviceChoice::Cpu);
    let args = convlens::cli::ModelArgs {
        model: Some(model.into()),
        ..Default::default()
    };
    let session = convlens::app::Session::new(args.load().expect("model"), &device);
    let mut state = ViewState::new(layer, [1000.0, 700.0]);
    state.method = convlens::format::Method::FeatVis;
    let grid = selected_grid(&session.vm, &state).expect("grid");
    for k in [0, channels - 1] {
        let r = grid.tile_rect(k, 0.0);
        let inner = [r.x + 3.0, r.y + 3.0, r.w - 6.0, r.h - 6.0].map(|v| v.round() as u32);
        let shown = mean_rgb(&img, inner);
        let png = image::open(featvis_out.join(format!("featvis/conv2_{}.png", k + 1)))
            .expect("png")
            .to_rgba8();
        let (w, h) = png.dimensions();
        let want = mean_rgb(&png, [0, 0, w, h]);
        let worst = (0..3)
            .map(|c| (shown[c] - want[c]).abs())
            .fold(0.0, f64::max);
        assert!(worst < 8.0, "tile {k}: shown {shown:?}, image {want:?}");
    }
}
