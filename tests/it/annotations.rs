//! Filter annotations through the binary: `annotations set/export/path`, the viewer loading
//! them into a screenshot, clear errors for bad requests, and a kill -9 at a random moment
//! of a stream of saves leaving a whole file every time.

use crate::common;

use std::path::Path;
use std::process::{Command, Output};

use common::{output_text, run_convlens};

fn convlens(data_dir: &Path, args: &[&str]) -> Output {
    run_convlens(data_dir, args)
}

fn text(out: &Output) -> String {
    output_text(out)
}

const STEM: &str = "/_conv_stem/Conv";

#[test]
fn set_export_and_path_use_one_file_per_model() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let out = convlens(&data, &["annotations", "path"]);
    assert!(out.status.success(), "{}", text(&out));
    let path = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert!(
        path.starts_with(data.join("annotations").to_str().unwrap()) && path.ends_with(".json"),
        "{path}"
    );
    for (filters, mark) in [("1,3,5", "good"), ("2", "bad"), ("3", "clear")] {
        let out = convlens(
            &data,
            &[
                "annotations",
                "set",
                "--layer",
                STEM,
                "--filter",
                filters,
                "--mark",
                mark,
            ],
        );
        assert!(out.status.success(), "{}", text(&out));
    }
    let csv = dir.path().join("a.csv");
    let out = convlens(
        &data,
        &["annotations", "export", "--out", csv.to_str().unwrap()],
    );
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(
        std::fs::read_to_string(&csv).unwrap(),
        format!("layer,filter,mark\n{STEM},1,good\n{STEM},2,bad\n{STEM},5,good\n")
    );
    let json = dir.path().join("a.json");
    convlens(
        &data,
        &["annotations", "export", "--out", json.to_str().unwrap()],
    );
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert_eq!(v["layers"][STEM]["good"], serde_json::json!([1, 5]));
    assert_eq!(v["layers"][STEM]["bad"], serde_json::json!([2]));
    assert_eq!(v["model"], "EfficientNet-Lite0 (ImageNet)");
    // The saved file is the exported JSON.
    assert_eq!(
        std::fs::read_to_string(&path).unwrap(),
        std::fs::read_to_string(&json).unwrap()
    );
}

#[test]
fn bad_requests_are_refused_with_a_reason() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path();
    for (args, expected) in [
        (
            vec![
                "annotations",
                "set",
                "--layer",
                "nope",
                "--filter",
                "1",
                "--mark",
                "good",
            ],
            "no layer named 'nope'",
        ),
        (
            vec![
                "annotations",
                "set",
                "--layer",
                STEM,
                "--filter",
                "33",
                "--mark",
                "good",
            ],
            "has filters 1..=32",
        ),
        (
            vec![
                "annotations",
                "set",
                "--layer",
                STEM,
                "--filter",
                "1",
                "--mark",
                "meh",
            ],
            "unknown mark 'meh'",
        ),
        (
            vec!["annotations", "export", "--out", "x.txt"],
            "expected a .csv or .json",
        ),
    ] {
        let out = convlens(data, &args);
        assert!(!out.status.success(), "{args:?} succeeded");
        assert!(text(&out).contains(expected), "{args:?}: {}", text(&out));
        assert!(!text(&out).contains("panicked"), "{}", text(&out));
    }
    // A file of another model is never overwritten.
    let other = data.join("other.json");
    let foreign = r#"{"format":"convlens-annotations/1","model":"x","fingerprint":"0000000000000000","layers":{}}"#;
    std::fs::write(&other, foreign).unwrap();
    let out = convlens(
        data,
        &[
            "annotations",
            "set",
            "--annotations",
            other.to_str().unwrap(),
            "--layer",
            STEM,
            "--filter",
            "1",
            "--mark",
            "good",
        ],
    );
    assert!(
        text(&out).contains("belongs to another model"),
        "{}",
        text(&out)
    );
    assert_eq!(std::fs::read_to_string(&other).unwrap(), foreign);
}

/// Pixel at window coordinates `p` of an RGBA screenshot.
fn pixel(img: &image::RgbaImage, p: [f32; 2]) -> [u8; 3] {
    let px = img.get_pixel(p[0] as u32, p[1] as u32).0;
    [px[0], px[1], px[2]]
}

#[test]
fn the_viewer_draws_saved_marks_as_tile_borders() {
    use convlens::cli::ModelArgs;
    use convlens::ui::scene::selected_grid;
    use convlens::ui::state::ViewState;

    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("marks.json");
    let f = file.to_str().unwrap();
    for (filter, mark) in [("1", "good"), ("2", "bad")] {
        let out = convlens(
            dir.path(),
            &[
                "annotations",
                "set",
                "--annotations",
                f,
                "--layer",
                STEM,
                "--filter",
                filter,
                "--mark",
                mark,
            ],
        );
        assert!(out.status.success(), "{}", text(&out));
    }
    let shot = dir.path().join("shot.png");
    let out = convlens(
        dir.path(),
        &[
            "view",
            "--annotations",
            f,
            "--window-size",
            "1000x700",
            "--screenshot",
            shot.to_str().unwrap(),
        ],
    );
    assert!(out.status.success(), "{}", text(&out));
    let img = image::open(&shot).unwrap().to_rgba8();
    // Where the tiles are, from the same pure layout the viewer uses.
    let model = ModelArgs::default().load().unwrap();
    let device = convlens::engine::device::select(convlens::engine::DeviceChoice::Cpu);
    let session = convlens::app::Session::new(model, &device);
    let state = ViewState::new(0, [1000.0, 700.0]);
    let grid = selected_grid(&session.vm, &state).unwrap();
    let border = |k: usize| {
        let r = grid.tile_rect(k, 0.0);
        pixel(&img, [r.x + 1.0, r.center()[1]])
    };
    let (good, bad, plain) = (border(0), border(1), border(2));
    assert!(
        good[2] > 200 && good[0] < 120,
        "tile 1 border {good:?} is not blue"
    );
    assert!(
        bad[0] > 200 && bad[2] < 120,
        "tile 2 border {bad:?} is not red"
    );
    assert!(
        plain != good && plain != bad,
        "tile 3 has no mark: {plain:?}"
    );
}

/// Child mode for the kill test: save marks in a loop until killed.
#[test]
#[ignore = "helper process of kill_9_during_saves_never_tears_the_file"]
fn save_loop() {
    let Some(path) = std::env::var_os("CONVLENS_SAVE_LOOP") else {
        return;
    };
    let mut store =
        convlens::annotations::AnnotationStore::open(Path::new(&path), "m", "f").unwrap();
    for i in 0usize.. {
        // Growing files: a torn write would show as truncated JSON.
        let mark = if i % 2 == 0 {
            convlens::annotations::Mark::Good
        } else {
            convlens::annotations::Mark::Bad
        };
        store
            .set(&format!("layer{}", i % 50), i % 997, Some(mark))
            .unwrap();
    }
}

#[test]
fn kill_9_during_saves_never_tears_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("marks.json");
    let mut seen_sizes = std::collections::BTreeSet::new();
    // This module's path in the test binary (`annotations`), without the crate name.
    let module = module_path!().split_once("::").map_or("", |(_, m)| m);
    let save_loop = format!("{module}::save_loop");
    for round in 0..12u64 {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args(["--exact", save_loop.as_str(), "--ignored", "--nocapture"])
            .env("CONVLENS_SAVE_LOOP", &path)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        // Kill at a different moment each round.
        std::thread::sleep(std::time::Duration::from_millis(150 + 37 * round));
        child.kill().unwrap(); // SIGKILL on Unix
        child.wait().unwrap();
        if let Ok(text) = std::fs::read_to_string(&path) {
            convlens::annotations::Annotations::from_json(&text, "marks.json")
                .unwrap_or_else(|e| panic!("round {round}: torn file: {e}\n{text}"));
            seen_sizes.insert(text.len());
        }
        // Reopening cleans up a killed writer's temporary file.
        convlens::annotations::AnnotationStore::open(&path, "m", "f").unwrap();
        let leftovers = std::fs::read_dir(dir.path()).unwrap().count();
        assert_eq!(leftovers, 1, "round {round}: temporary files left");
    }
    assert!(
        seen_sizes.len() > 1,
        "the writer never got to save: {seen_sizes:?}"
    );
}
