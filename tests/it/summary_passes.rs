//! `SummaryPasses`: one single-threaded pass per image on each core gives what one batched
//! pass gives (the tiles of every layer, ≤ 1e-5 relative; arg-max positions and counts
//! exactly), whatever the number of cores (bit for bit), with unreadable files skipped in
//! place, on the random-weight models and the scan fixture photos.

use std::sync::Arc;

use convlens::engine::Engine;
use convlens::model::preprocess::InputSpec;
use convlens::model::{ImportOptions, load_onnx_file};
use convlens::viz::summary_passes::{ImageOutcome, PassMode, SummaryPasses};
use convlens::viz::tile_summary::TileSummary;

use crate::common::{MIXED_MODELS, cpu, fixture};
use crate::scan::fixture_images;

fn tiles(outcome: &ImageOutcome) -> &[Vec<TileSummary>] {
    match outcome {
        ImageOutcome::Summarised(t) => t,
        ImageOutcome::Skipped(why) => panic!("skipped: {why}"),
    }
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-5 * a.abs().max(b.abs()).max(1e-3)
}

#[test]
fn per_core_passes_equal_a_batched_pass() {
    let dir = tempfile::tempdir().expect("tempdir");
    let broken = dir.path().join("broken.png");
    std::fs::write(&broken, b"\x89PNG\r\n\x1a\nnot really").expect("writes");
    // Nine photos with an unreadable file in the middle.
    let mut files = fixture_images()[..9].to_vec();
    files.insert(4, broken);
    for model in MIXED_MODELS {
        let graph = Arc::new(
            load_onnx_file(
                &fixture(&format!("mixed/{model}.onnx")),
                &ImportOptions::default(),
            )
            .expect("imports"),
        );
        let input = graph.image_input().expect("image input");
        let spec = InputSpec::imagenet([input.shape[2], input.shape[3]]);
        // Every node with per-channel maps.
        let layers: Vec<usize> = (graph.nodes.iter().enumerate())
            .filter(|(_, n)| n.feature_map_dims().is_some())
            .map(|(i, _)| i)
            .collect();
        assert!(layers.len() >= 2, "{model}: {} layers", layers.len());
        let engine = Engine::new(Arc::clone(&graph), cpu());
        let batched = SummaryPasses::batched(engine.with_batch(4).expect("batches"));
        assert_eq!(batched.mode(), PassMode::Batched);
        let expected = batched.run(&files, &spec, &layers);
        let mut per_core_runs = Vec::new();
        for cores in [1, 3] {
            let passes = SummaryPasses::per_core(engine.with_batch(1).expect("one"), cores)
                .expect("threads start");
            assert_eq!(passes.mode(), PassMode::PerCore);
            let got = passes.run(&files, &spec, &layers);
            assert_eq!(got.len(), files.len());
            for (k, (g, e)) in got.iter().zip(&expected).enumerate() {
                if k == 4 {
                    for o in [g, e] {
                        let ImageOutcome::Skipped(why) = o else {
                            panic!("{model}: the broken file was summarised")
                        };
                        assert!(why.contains("broken.png"), "{model}: reason {why}");
                    }
                    continue;
                }
                for (l, (gl, el)) in tiles(g).iter().zip(tiles(e)).enumerate() {
                    assert_eq!(gl.len(), el.len(), "{model} image {k} layer {l}");
                    for (gt, et) in gl.iter().zip(el) {
                        assert!(
                            close(gt.mean, et.mean)
                                && close(gt.max.into(), et.max.into())
                                && close(gt.min.into(), et.min.into()),
                            "{model} image {k} layer {l}: {gt:?} vs {et:?}"
                        );
                        assert_eq!(
                            (gt.argmax, gt.nonpositive, gt.values, gt.finite),
                            (et.argmax, et.nonpositive, et.values, et.finite),
                            "{model} image {k} layer {l}"
                        );
                    }
                }
            }
            per_core_runs.push(got);
        }
        assert_eq!(
            per_core_runs[0], per_core_runs[1],
            "{model}: 1 and 3 cores differ"
        );
    }
}

/// `run_ordered` hands outcomes over in file order however far ahead the cores may run
/// (here one file: every core waits for the consumer), and an error from the consumer
/// stops the passes and comes back.
#[test]
fn ordered_outcomes_and_a_consumer_that_stops() {
    let graph = Arc::new(
        load_onnx_file(
            &fixture("mixed/tiny_resnet.onnx"),
            &ImportOptions::default(),
        )
        .expect("imports"),
    );
    let input = graph.image_input().expect("image input");
    let spec = InputSpec::imagenet([input.shape[2], input.shape[3]]);
    let layers = vec![0, 1];
    let files = fixture_images()[..12].to_vec();
    let passes =
        SummaryPasses::per_core(Engine::new(Arc::clone(&graph), cpu()), 3).expect("threads start");
    let all = passes.run(&files, &spec, &layers);
    for ahead in [1, 4] {
        let mut seen = Vec::new();
        let done: Result<(), String> =
            passes.run_ordered(&files, &spec, &layers, ahead, &mut |i, o| {
                seen.push((i, o));
                Ok(())
            });
        assert_eq!(done, Ok(()));
        let (order, outcomes): (Vec<usize>, Vec<ImageOutcome>) = seen.into_iter().unzip();
        assert_eq!(order, (0..files.len()).collect::<Vec<_>>(), "ahead {ahead}");
        assert_eq!(outcomes, all, "ahead {ahead}");
    }
    let mut calls = 0;
    let stopped: Result<(), String> = passes.run_ordered(&files, &spec, &layers, 2, &mut |i, _| {
        calls += 1;
        if i == 3 {
            Err("full disk".into())
        } else {
            Ok(())
        }
    });
    assert_eq!(stopped, Err("full disk".to_string()));
    assert_eq!(calls, 4, "nothing is handed over after the error");
}
