//! `view --data DIR`: a data directory written by `convlens export` opens without the model
//! and shows the same tiles; hostile or damaged directories (missing files, wrong sizes, a
//! malformed architecture.json, symlinks pointing outside, file stems with path separators)
//! give clear messages and never read outside the directory.

use crate::common;

use std::path::Path;
use std::process::Output;

use common::{fixture, output_text, run_convlens};
use convlens::format::Method;
use convlens::format::architecture::{Architecture, Scores};
use convlens::format::read::{DataDir, DataDirError};

fn convlens(args: &[&str]) -> Output {
    run_convlens(&std::env::temp_dir().join("convlens-datadir-test"), args)
}

fn text(out: &Output) -> String {
    output_text(out)
}

/// Exports tiny_alexnet (forward + gbp, every map layer) into `dir`.
fn export(dir: &Path) {
    let out = convlens(&[
        "export",
        fixture("mixed/tiny_alexnet.onnx").to_str().unwrap(),
        "--input",
        fixture("../../assets/images/coffee.png").to_str().unwrap(),
        "--out",
        dir.to_str().unwrap(),
        "--methods",
        "forward,gbp",
        "--layers",
        "all",
        "--raw",
    ]);
    assert!(out.status.success(), "{}", text(&out));
}

/// Export, then read back: the reader's typed documents equal the ones the writer built
/// from the model and the forward pass.
#[test]
fn an_exported_directory_reads_back_into_equal_documents() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("exp");
    export(&dir);
    let data = DataDir::open(&dir).unwrap();
    let graph =
        convlens::model::load_onnx_file(&fixture("mixed/tiny_alexnet.onnx"), &Default::default())
            .unwrap();
    let written = Architecture::of(&graph);
    assert_eq!(data.architecture, written);
    assert!(
        written
            .layers
            .iter()
            .any(|l| l.params.get("kernel_size").is_some())
    );
    // The file is the document, byte for byte.
    let text = std::fs::read_to_string(dir.join("architecture.json")).unwrap();
    assert_eq!(text, written.to_json_pretty());
    // scores.json: ten probabilities summing to 1 and the embedded labels of a 10-way output.
    let scores: Scores =
        serde_json::from_str(&std::fs::read_to_string(dir.join("scores.json")).unwrap()).unwrap();
    assert_eq!(data.scores, scores);
    assert_eq!(scores.probabilities.len(), 10);
    let sum: f32 = scores.probabilities.iter().sum();
    assert!((sum - 1.0).abs() < 1e-4, "{sum}");
}

#[test]
fn an_export_opens_without_the_model_and_matches_its_arrays() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("exp");
    export(&dir);
    let data = DataDir::open(&dir).unwrap();
    assert_eq!(data.architecture.name, "tiny_alexnet");
    assert_eq!(data.architecture.layers.len(), 15);
    assert_eq!(data.input_hw, [32, 32]);
    assert_eq!(data.scores.probabilities.len(), 10);
    assert!(data.picture.is_some(), "input.png");
    assert!(data.warnings.is_empty(), "{:?}", data.warnings);
    // The model's fingerprint travels with the export, so annotations are shared.
    let graph =
        convlens::model::load_onnx_file(&fixture("mixed/tiny_alexnet.onnx"), &Default::default())
            .unwrap();
    assert_eq!(data.fingerprint, graph.fingerprint);

    // conv1's forward tiles equal the exported raw maps after per-tile min-max (to 8 bits).
    let images = data.layer_images(0, Method::Forward).unwrap().unwrap();
    assert!(images.missing.is_empty() && images.problems.is_empty());
    assert_eq!(images.tensor.shape, vec![1, 16, 16, 16]);
    let raw = convlens::npy::read(&dir.join("raw/forward/conv1.npy")).unwrap();
    for (k, (tile, map)) in images
        .tensor
        .data
        .chunks(256)
        .zip(raw.data.chunks(256))
        .enumerate()
    {
        let want = convlens::viz::tiles::normalise_tile(map);
        let worst = tile
            .iter()
            .zip(&want)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0f32, f32::max);
        assert!(worst <= 0.5 / 255.0 + 1e-6, "filter {k}: {worst}");
    }
    let gbp = data.layer_images(7, Method::Guided).unwrap().unwrap();
    assert_eq!(gbp.tensor.shape, vec![32, 3, 32, 32]);
    assert!(
        data.layer_images(7, Method::Deconvnet).unwrap().is_none(),
        "not exported"
    );

    let shot = tmp.path().join("shot.png");
    let out = convlens(&[
        "view",
        "--data",
        dir.to_str().unwrap(),
        "--layer",
        "conv3",
        "--method",
        "gbp",
        "--hover",
        "2",
        "--window-size",
        "800x500",
        "--screenshot",
        shot.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("34 tiles"),
        "32 tiles, the hover and the input: {}",
        text(&out)
    );
}

#[test]
fn damaged_directories_get_clear_messages() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("exp");
    export(&dir);

    // Missing and wrong-sized tiles are left black and counted; the rest still shows.
    std::fs::remove_file(dir.join("forward/conv1_3.png")).unwrap();
    std::fs::copy(
        dir.join("forward/pool1_1.png"),
        dir.join("forward/conv1_4.png"),
    )
    .unwrap();
    std::fs::write(dir.join("forward/conv1_5.png"), b"not a png").unwrap();
    let data = DataDir::open(&dir).unwrap();
    let images = data.layer_images(0, Method::Forward).unwrap().unwrap();
    assert_eq!(images.missing, vec![2, 3, 4]);
    let problems = images.problems.join("; ");
    assert!(
        problems.contains("1 of 16 forward tiles missing")
            && problems.contains("not 16×16")
            && problems.contains("unreadable"),
        "{problems}"
    );

    // A tile that is a symlink to a file outside the directory is refused.
    let secret = tmp.path().join("secret.png");
    std::fs::copy(dir.join("forward/conv1_1.png"), &secret).unwrap();
    std::fs::remove_file(dir.join("forward/conv1_1.png")).unwrap();
    #[cfg(unix)]
    std::os::unix::fs::symlink(&secret, dir.join("forward/conv1_1.png")).unwrap();
    #[cfg(unix)]
    {
        let images = data.layer_images(0, Method::Forward).unwrap().unwrap();
        assert!(images.missing.contains(&0));
        assert!(
            images.problems.join(";").contains("outside the directory"),
            "{:?}",
            images.problems
        );
    }

    // architecture.json itself pointing outside.
    #[cfg(unix)]
    {
        let other = tmp.path().join("other");
        std::fs::create_dir_all(&other).unwrap();
        std::os::unix::fs::symlink(
            dir.join("architecture.json"),
            other.join("architecture.json"),
        )
        .unwrap();
        let e = DataDir::open(&other).unwrap_err();
        assert!(matches!(e, DataDirError::Outside { .. }), "{e}");
    }

    // Malformed architecture.json: the CLI names the file and the problem.
    let arch = dir.join("architecture.json");
    let good = std::fs::read_to_string(&arch).unwrap();
    for (bad, expected) in [
        ("{".to_string(), "architecture.json is malformed"),
        (
            "{\"layers\": 3}".to_string(),
            "invalid type: integer `3`, expected a sequence",
        ),
        (
            good.replacen(
                "\"file_stem\": \"conv1\"",
                "\"file_stem\": \"../../etc/passwd\"",
                1,
            ),
            "not a plain file name",
        ),
        (
            good.replacen("\"file_stem\": \"conv1\"", "\"file_stem\": \"a\\\\b\"", 1),
            "not a plain file name",
        ),
        (
            good.replacen(
                "\"shape\": [\n      1,\n      3,\n      32,\n      32\n    ]",
                "\"shape\": [1]",
                1,
            ),
            "input.shape",
        ),
    ] {
        std::fs::write(&arch, &bad).unwrap();
        let out = convlens(&[
            "view",
            "--data",
            dir.to_str().unwrap(),
            "--screenshot",
            tmp.path().join("x.png").to_str().unwrap(),
        ]);
        assert!(!out.status.success(), "accepted: {bad:.80}");
        assert!(text(&out).contains(expected), "{expected}: {}", text(&out));
        assert!(!text(&out).contains("panicked"), "{}", text(&out));
    }
    std::fs::write(&arch, &good).unwrap();

    // A missing directory, and --data together with a model.
    let out = convlens(&[
        "view",
        "--data",
        "/nonexistent/dir",
        "--screenshot",
        "x.png",
    ]);
    assert!(
        !out.status.success() && text(&out).contains("/nonexistent/dir"),
        "{}",
        text(&out)
    );
    let out = convlens(&["view", "model.onnx", "--data", dir.to_str().unwrap()]);
    assert!(
        !out.status.success() && text(&out).contains("cannot be used with"),
        "{}",
        text(&out)
    );
}

/// Tile sizes come from the results: an export made with `--occlusion-size 8
/// --occlusion-stride 8` has 4×4 occlusion maps, not the viewer's own 15×15 sweep over a
/// 32×32 input, and the view lays its tiles out at the grid it read. What to read is what
/// `view_needs` asks for.
#[test]
fn occlusion_tiles_take_their_grid_from_the_exported_maps() {
    use convlens::ui::needs::{Need, view_needs};
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("occ");
    let out = convlens(&[
        "export",
        fixture("mixed/tiny_alexnet.onnx").to_str().unwrap(),
        "--input",
        fixture("../../assets/images/coffee.png").to_str().unwrap(),
        "--out",
        dir.to_str().unwrap(),
        "--methods",
        "occlusion",
        "--occlusion-size",
        "8",
        "--occlusion-stride",
        "8",
        "--layers",
        "conv1",
    ]);
    assert!(out.status.success(), "{}", text(&out));
    let data = DataDir::open(&dir).unwrap();
    let conv1 = data
        .architecture
        .layers
        .iter()
        .position(|l| l.name == "conv1")
        .unwrap();
    let mut session = convlens::app::Session::from_data(data);
    assert_eq!(
        session.vm.occlusion_hw,
        [15, 15],
        "the default sweep's grid"
    );

    let mut state = convlens::ui::state::ViewState::new(conv1, [1280.0, 800.0]);
    state.method = Method::Occlusion;
    let needs = view_needs(&session.vm, &state);
    assert_eq!(
        needs,
        [Need::FilterImages {
            layer: conv1,
            method: Method::Occlusion
        }]
    );
    for need in needs {
        session.fulfil(need).unwrap();
    }
    let maps = session.gradient(conv1, Method::Occlusion).unwrap();
    assert_eq!(&maps.images.shape[1..], [1, 4, 4]);
    assert_eq!(session.vm.occlusion_hw, [4, 4]);
    assert_eq!(
        convlens::ui::scene::tile_hw(&session.vm, Method::Occlusion, [1, 1]),
        [4, 4]
    );
    // Forward needs nothing computed (the maps come with the forward pass).
    state.method = Method::Forward;
    assert!(view_needs(&session.vm, &state).is_empty());
}
