//! The viewer with a dataset scan: `view --scan` draws each filter's top-1 crop as its tile
//! in the dataset's rank order (checked pixel by pixel against the crop PNGs and an order
//! computed here from `stats.csv`), the scene of a hovered filter holds its top-k crops
//! with the values of `topk.json`, dead filters over the dataset are the suggestions, a
//! scan inside a data directory opens by itself, and a scan of another model is refused.

use std::path::{Path, PathBuf};

use convlens::app::Session;
use convlens::render::TileHandle;
use convlens::ui::dataset::DatasetTiles;
use convlens::ui::scene::{SceneInputs, build_scene, selected_grid};
use convlens::ui::state::{Hover, Panel, ViewState};

use crate::common::golden::{Tolerance, assert_golden};
use crate::common::{fixture, output_text, run_convlens};
use crate::scan::{json, scan};

const MODEL: &str = "mixed/tiny_alexnet.onnx";
const LAYER: &str = "conv2";
const WINDOW: [f32; 2] = [1000.0, 700.0];

/// A scan of the 40 fixture images by tiny AlexNet in `dir/scan`.
fn scan_into(dir: &Path) -> PathBuf {
    let out = dir.join("scan");
    scan(
        "tiny_alexnet",
        &fixture("scan/images"),
        &out,
        &["--batch", "3"],
    );
    out
}

/// `convlens view MODEL …` rendered to a PNG; returns the image and the output text.
fn screenshot(dir: &Path, args: &[&str]) -> (image::RgbaImage, String) {
    let shot = dir.join("shot.png");
    let mut all = vec!["view", "--device", "cpu", "--window-size", "1000x700"];
    all.extend_from_slice(args);
    all.extend_from_slice(&["--screenshot", shot.to_str().unwrap()]);
    let out = run_convlens(dir, &all);
    let text = output_text(&out);
    assert!(out.status.success(), "{text}");
    (image::open(&shot).unwrap().to_rgba8(), text)
}

/// `(filter from 0, mean, max)` of `layer` in `stats.csv`, read here without the crate.
fn stats_of(scan: &Path, layer: &str) -> Vec<(usize, f64, f64)> {
    std::fs::read_to_string(scan.join("stats.csv"))
        .unwrap()
        .lines()
        .skip(1)
        .map(|l| l.split(',').collect::<Vec<_>>())
        .filter(|f| f[0] == layer)
        .map(|f| {
            let n: usize = f[1].parse().unwrap();
            (n - 1, f[3].parse().unwrap(), f[6].parse().unwrap())
        })
        .collect()
}

/// A model session on the CPU with the scan opened, as the viewer makes it.
fn session_with(scan: &Path) -> Session {
    let model = convlens::model::LoadedModel::from_file(&fixture(MODEL), None).unwrap();
    let device = convlens::engine::device::select(convlens::engine::DeviceChoice::Cpu);
    let mut session = Session::new(model, &device);
    session.open_scan(scan).unwrap();
    session
}

fn layer_index(session: &Session) -> usize {
    session
        .vm
        .layers
        .iter()
        .position(|l| l.name == LAYER)
        .unwrap()
}

#[test]
fn the_examples_grid_shows_top1_crops_in_dataset_rank_order() {
    let dir = tempfile::tempdir().unwrap();
    let scan_dir = scan_into(dir.path());
    let model = fixture(MODEL);
    let (img, _) = screenshot(
        dir.path(),
        &[
            model.to_str().unwrap(),
            "--scan",
            scan_dir.to_str().unwrap(),
            "--layer",
            LAYER,
            "--method",
            "examples",
            "--sort-by-rank",
            "--hover",
            "3",
        ],
    );
    // The order the grid must show: mean over the dataset, highest first, ties by number.
    let mut order = stats_of(&scan_dir, LAYER);
    assert_eq!(order.len(), 24);
    order.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    let session = session_with(&scan_dir);
    let mut state = ViewState::new(layer_index(&session), WINDOW);
    state.panel = Panel::DatasetExamples;
    state.sort_by_rank = true;
    let grid = selected_grid(&session.vm, &state).unwrap();
    for (pos, &(filter, _, _)) in order.iter().enumerate().take(8) {
        let crop = image::open(
            scan_dir
                .join("examples")
                .join(LAYER)
                .join(format!("{}_1.png", filter + 1)),
        )
        .unwrap()
        .to_rgb8();
        let r = grid.tile_rect(pos, 0.0);
        // Sample a 5×5 lattice inside the tile (away from the border and pixel edges); each
        // sample must match the crop pixel it maps to, or a neighbour (sampling may round).
        for (i, j) in (0..5).flat_map(|i| (0..5).map(move |j| (i, j))) {
            let (fx, fy) = (0.15 + 0.175 * i as f32, 0.15 + 0.175 * j as f32);
            let got = img
                .get_pixel((r.x + fx * r.w) as u32, (r.y + fy * r.h) as u32)
                .0;
            let (cx, cy) = (
                (fx * crop.width() as f32) as i64,
                (fy * crop.height() as f32) as i64,
            );
            let near = (-1..=1).flat_map(|dy| (-1..=1).map(move |dx| (cx + dx, cy + dy)));
            let matches = near
                .filter(|&(x, y)| {
                    (0..crop.width() as i64).contains(&x) && (0..crop.height() as i64).contains(&y)
                })
                .any(|(x, y)| {
                    let want = crop.get_pixel(x as u32, y as u32).0;
                    (0..3).all(|c| (i32::from(got[c]) - i32::from(want[c])).abs() <= 6)
                });
            assert!(
                matches,
                "grid position {pos} (filter {}) at ({fx:.2}, {fy:.2}): {got:?} is not its crop",
                filter + 1
            );
        }
    }
    // The whole frame, to catch what the samples miss.
    assert_golden(
        "view_scan_examples_conv2",
        &img,
        Tolerance {
            per_channel: 24,
            outlier_fraction: 0.01,
        },
    );
}

/// Distinct fake atlas handles (the scene only places them).
fn handle(i: u32) -> TileHandle {
    TileHandle {
        layer: 0,
        origin_px: [i, 0],
        size_px: [64, 64],
        planes: 3,
    }
}

#[test]
fn a_hovered_filter_shows_its_top_k_crops_and_values_in_rank_order() {
    let dir = tempfile::tempdir().unwrap();
    let scan_dir = scan_into(dir.path());
    let session = session_with(&scan_dir);
    let layer = layer_index(&session);
    let filter = 4;
    let mut state = ViewState::new(layer, WINDOW);
    state.hover = Hover::Tile(filter);
    let crops: Vec<TileHandle> = (0..9).map(|r| handle(100 + r)).collect();
    let tiles = DatasetTiles {
        layer,
        top1: Vec::new(),
        hovered: Some((filter, crops.iter().copied().map(Some).collect())),
        hovers_appended: 1,
    };
    let scene = build_scene(&SceneInputs {
        vm: &session.vm,
        state: &state,
        tiles: None,
        picture: None,
        frame_ms: None,
        annotations: &session.annotations.annotations,
        suggested_bad: &[],
        cam: None,
        example: None,
        dataset: Some(&tiles),
    });
    // The crops in rank order, left to right and top to bottom, in the side canvas.
    let drawn: Vec<_> = (scene.tiles.iter())
        .filter(|t| crops.contains(&t.handle()))
        .collect();
    assert_eq!(drawn.len(), 9);
    for (rank, t) in drawn.iter().enumerate() {
        assert_eq!(t.handle(), crops[rank]);
        let [x, y, ..] = t.rect_px();
        assert!(
            x >= state.canvases().side.x,
            "crop {rank} outside the side canvas"
        );
        if rank % 3 != 0 {
            assert!(x > drawn[rank - 1].rect_px()[0] && y == drawn[rank - 1].rect_px()[1]);
        }
    }
    // Each crop's value as topk.json has it, under it.
    let topk = json(&scan_dir.join("topk.json"));
    let entries = topk["layers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["name"] == LAYER)
        .unwrap()["filters"][filter]["top"]
        .as_array()
        .unwrap()
        .clone();
    assert_eq!(entries.len(), 9);
    for (rank, e) in entries.iter().enumerate() {
        let want = format!("{:.3}", e["value"].as_f64().unwrap());
        let [x, y, w, h] = drawn[rank].rect_px();
        let caption = scene.text.iter().find(|t| {
            t.text == want
                && (t.pos_px[0] - (x + w / 2.0)).abs() < 1.0
                && (y..y + h + 4.0).contains(&t.pos_px[1])
        });
        assert!(caption.is_some(), "no caption {want} under crop {rank}");
    }
}

#[test]
fn dead_filters_over_the_dataset_are_the_suggestions() {
    let dir = tempfile::tempdir().unwrap();
    let scan_dir = scan_into(dir.path());
    // Make filters 2 and 7 of conv2 never positive, as a dead filter's row reads.
    let csv = std::fs::read_to_string(scan_dir.join("stats.csv")).unwrap();
    let edited: String = csv
        .lines()
        .map(|l| {
            let mut f: Vec<String> = l.split(',').map(String::from).collect();
            if f[0] == LAYER && (f[1] == "2" || f[1] == "7") {
                (f[5], f[6], f[8]) = ("-1".into(), "0".into(), "true".into());
            }
            f.join(",") + "\n"
        })
        .collect();
    std::fs::write(scan_dir.join("stats.csv"), edited).unwrap();
    let dead: Vec<usize> = (stats_of(&scan_dir, LAYER).into_iter())
        .filter(|s| s.2 <= 0.0)
        .map(|s| s.0)
        .collect();
    assert_eq!(dead, vec![1, 6]);
    let mut session = session_with(&scan_dir);
    session.run_file(None).unwrap();
    let layer = layer_index(&session);
    assert_eq!(session.suggested_bad(layer), dead);
    // B accepts them; the suggestions are then gone.
    assert_eq!(session.accept_dead_suggestions(layer), 2);
    assert!(session.suggested_bad(layer).is_empty());
    // The header says where the suggestions come from.
    let mut state = ViewState::new(layer, WINDOW);
    state.panel = Panel::DatasetExamples;
    let scene = build_scene(&SceneInputs {
        vm: &session.vm,
        state: &state,
        tiles: None,
        picture: None,
        frame_ms: None,
        annotations: &session.annotations.annotations,
        suggested_bad: &dead,
        cam: None,
        example: None,
        dataset: None,
    });
    assert!(
        scene
            .text
            .iter()
            .any(|t| t.text.contains("2 dead over the dataset: B marks them bad")),
        "no dead-filter hint"
    );
}

#[test]
fn a_data_directory_opens_its_own_scan() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let model = fixture(MODEL);
    let image = fixture("scan/images/a_000.png");
    let out = run_convlens(
        dir.path(),
        &[
            "export",
            model.to_str().unwrap(),
            "--input",
            image.to_str().unwrap(),
            "--out",
            data.to_str().unwrap(),
        ],
    );
    assert!(out.status.success(), "{}", output_text(&out));
    let scan_dir = scan_into(&data);
    let args = [
        "--data",
        data.to_str().unwrap(),
        "--layer",
        LAYER,
        "--hover",
        "2",
    ];
    let (with_scan, text) = screenshot(dir.path(), &args);
    assert!(
        text.contains(&format!("scan: {}", scan_dir.display())),
        "{text}"
    );
    // Without the scan the side canvas has no crops: the two frames differ there.
    std::fs::rename(&scan_dir, dir.path().join("elsewhere")).unwrap();
    let (without, text) = screenshot(dir.path(), &args);
    assert!(!text.contains("scan:"), "{text}");
    let side_x = ViewState::new(0, WINDOW).canvases().side.x as u32;
    let differing = (side_x..1000)
        .flat_map(|x| (0..700).map(move |y| (x, y)))
        .filter(|&(x, y)| with_scan.get_pixel(x, y) != without.get_pixel(x, y))
        .count();
    assert!(differing > 5_000, "only {differing} side pixels differ");
}

#[test]
fn scans_of_another_model_or_unmerged_shards_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let scan_dir = scan_into(dir.path());
    let other = fixture("mixed/tiny_resnet.onnx");
    let shot = dir.path().join("x.png");
    let view = |model: &Path, scan: &Path| {
        output_text(&run_convlens(
            dir.path(),
            &[
                "view",
                model.to_str().unwrap(),
                "--device",
                "cpu",
                "--scan",
                scan.to_str().unwrap(),
                "--screenshot",
                shot.to_str().unwrap(),
            ],
        ))
    };
    let text = view(&other, &scan_dir);
    assert!(
        text.contains("is a scan of model `tiny_alexnet`") && text.contains("not of `tiny_resnet`"),
        "{text}"
    );
    let shards = dir.path().join("sharded");
    std::fs::create_dir_all(shards.join("shard-0000-of-0002")).unwrap();
    let text = view(&fixture(MODEL), &shards);
    assert!(text.contains("convlens scan merge"), "{text}");
    assert!(!shot.exists(), "a refused scan still wrote a screenshot");
}
