//! `convlens scan`: statistics and top-k against an independent onnxruntime + numpy
//! reference (`scripts/make_scan_fixtures.py`), receptive fields against perturbation of a
//! linear DAG, shards merged against the single-process scan, resume after kill -9, bad
//! inputs, and memory that does not grow with the number of images.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use convlens::scan::receptive::{Clip, ReceptiveFields};
use serde_json::Value;

use crate::common::{fixture, output_text, run_convlens};

pub const IMAGENET_MEAN: &str = "0.485,0.456,0.406";
pub const IMAGENET_STD: &str = "0.229,0.224,0.225";

/// `convlens scan MODEL --inputs INPUTS --out OUT` plus `extra`; panics with the output on
/// failure.
pub fn scan(model: &str, inputs: &Path, out: &Path, extra: &[&str]) -> String {
    let out = try_scan(model, inputs, out, extra);
    let text = output_text(&out);
    assert!(out.status.success(), "scan failed: {text}");
    text
}

pub fn try_scan(model: &str, inputs: &Path, out: &Path, extra: &[&str]) -> std::process::Output {
    let model = fixture(&format!("mixed/{model}.onnx"));
    let data = tempfile::tempdir().expect("tempdir");
    let mut args = vec![
        "scan",
        model.to_str().expect("utf-8"),
        "--inputs",
        inputs.to_str().expect("utf-8"),
        "--out",
        out.to_str().expect("utf-8"),
        "--mean",
        IMAGENET_MEAN,
        "--std",
        IMAGENET_STD,
        "--device",
        "cpu",
    ];
    args.extend_from_slice(extra);
    run_convlens(data.path(), &args)
}

/// Every file under `dir`, by relative path.
pub fn files(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<PathBuf, Vec<u8>>) {
        for e in std::fs::read_dir(dir).expect("readable") {
            let p = e.expect("entry").path();
            if p.is_dir() {
                walk(root, &p, out);
            } else {
                let rel = p.strip_prefix(root).expect("under root").to_path_buf();
                out.insert(rel, std::fs::read(&p).expect("readable"));
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(dir, dir, &mut out);
    out
}

/// The 40 fixture images in scan order.
pub fn fixture_images() -> Vec<PathBuf> {
    let mut v = convlens::scan::inputs::list(&fixture("scan/images")).expect("fixtures");
    v.sort();
    v
}

pub fn json(path: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(path).expect("exists")).expect("json")
}

pub fn close(a: f64, b: f64, rel: f64) -> bool {
    (a - b).abs() <= rel * b.abs().max(1.0)
}

/// A merged scan equals the single-process one: every file byte for byte, except
/// `stats.csv`'s numbers, merged by Chan's formulas, within 1e-6 relative.
pub fn assert_same_scan(whole: &Path, merged: &Path) {
    let (a, b) = (files(whole), files(merged));
    assert_eq!(a.keys().collect::<Vec<_>>(), b.keys().collect::<Vec<_>>());
    for (path, bytes) in &a {
        if path.as_os_str() == "stats.csv" {
            continue;
        }
        assert!(
            bytes == &b[path],
            "{} differs after the merge",
            path.display()
        );
    }
    // Statistics: Chan's merge within 1e-6 relative of the single pass.
    let parse = |bytes: &[u8]| -> Vec<Vec<String>> {
        String::from_utf8_lossy(bytes)
            .lines()
            .map(|l| l.split(',').map(str::to_string).collect())
            .collect()
    };
    let (sa, sb) = (
        parse(&a[Path::new("stats.csv")]),
        parse(&b[Path::new("stats.csv")]),
    );
    assert_eq!(sa.len(), sb.len());
    for (ra, rb) in sa.iter().zip(&sb).skip(1) {
        for (x, y) in ra.iter().zip(rb) {
            match (x.parse::<f64>(), y.parse::<f64>()) {
                (Ok(x), Ok(y)) => assert!(close(x, y, 1e-6), "{ra:?} vs {rb:?}"),
                _ => assert_eq!(x, y),
            }
        }
    }
}

#[test]
fn receptive_fields_equal_the_perturbation_reference() {
    let m =
        convlens::model::LoadedModel::from_file(&fixture("scan/rf_dag.onnx"), None).expect("loads");
    let rf = ReceptiveFields::new(&m.graph).expect("image input");
    let reference = json(&fixture("scan/rf_reference.json"));
    let mut checked = 0;
    for layer in reference["layers"].as_array().expect("layers") {
        let name = layer["name"].as_str().expect("name");
        let node = m.graph.node_index(name).expect("layer exists");
        let w = layer["shape"][2].as_u64().expect("W") as usize;
        // The cached fields of the whole layer (what `scan` uses) and, below, one unit's.
        let mut fields = rf.layer(node, Clip::Valid);
        // Any channel of a layer has the same field: compare with the union over channels.
        for (p, expected) in layer["boxes_all_channels"]
            .as_array()
            .expect("boxes")
            .iter()
            .enumerate()
        {
            let (y, x) = (p / w, p % w);
            let got = fields.field(y, x).map(|b| b.to_array());
            assert_eq!(got, rf.field(node, y, x, Clip::Valid).map(|b| b.to_array()));
            let expected: Option<[i64; 4]> = serde_json::from_value(expected.clone()).ok();
            assert_eq!(got, expected, "{name} at (y {y}, x {x})");
            if let Some(e) = expected {
                let wide = rf
                    .field(node, y, x, Clip::None)
                    .expect("unclipped")
                    .to_array();
                assert!(
                    wide[0] <= e[0] && wide[1] <= e[1] && wide[2] >= e[2] && wide[3] >= e[3],
                    "{name} ({y},{x}): the unclipped field {wide:?} must hold {e:?}"
                );
            }
            checked += 1;
        }
    }
    assert!(checked > 2000, "{checked} positions checked");
}

/// Our scan directory against the fixture's reference for `model`.
fn check_against_reference(model: &str, dir: &Path) {
    let reference = json(&fixture(&format!("scan/reference_{model}.json")));
    let manifest = json(&dir.join("scan.json"));
    let topk = json(&dir.join("topk.json"));
    let images: Vec<String> = (manifest["images"].as_array().expect("images").iter())
        .map(|p| p.as_str().expect("path").replace('\\', "/"))
        .collect();
    let expected: Vec<&str> = (reference["images"].as_array().expect("images").iter())
        .map(|p| p.as_str().expect("path"))
        .collect();
    assert_eq!(images.len(), expected.len());
    for (got, want) in images.iter().zip(&expected) {
        assert!(got.ends_with(want), "scan order: {got} vs {want}");
    }
    let csv = std::fs::read_to_string(dir.join("stats.csv")).expect("stats.csv");
    let mut rows = csv.lines();
    assert_eq!(
        rows.next(),
        Some("layer,filter,count,mean,std,min,max,frac_nonpositive,dead")
    );
    let rows: Vec<Vec<&str>> = rows.map(|l| l.split(',').collect()).collect();
    let mut row = 0;
    let ref_layers = reference["layers"].as_array().expect("layers");
    assert_eq!(
        topk["layers"].as_array().expect("layers").len(),
        ref_layers.len()
    );
    for (li, layer) in ref_layers.iter().enumerate() {
        let name = layer["name"].as_str().expect("name");
        assert_eq!(topk["layers"][li]["name"], name);
        for (k, f) in layer["filters"]
            .as_array()
            .expect("filters")
            .iter()
            .enumerate()
        {
            let r = &rows[row];
            row += 1;
            assert_eq!((r[0], r[1]), (name, (k + 1).to_string().as_str()));
            assert_eq!(r[2], f["count"].to_string());
            for (col, key, tol) in [
                (3, "mean", 1e-5),
                (4, "std", 1e-5),
                (5, "min", 1e-5),
                (6, "max", 1e-5),
                (7, "frac_nonpositive", 1e-4),
            ] {
                let got: f64 = r[col].parse().expect("number");
                let want = f[key].as_f64().expect("number");
                assert!(
                    close(got, want, tol),
                    "{name} filter {} {key}: {got} vs {want}",
                    k + 1
                );
            }
            assert_eq!(r[8], f["dead"].to_string());
            let ours = topk["layers"][li]["filters"][k]["top"]
                .as_array()
                .expect("top");
            let theirs = f["top"].as_array().expect("top");
            assert_eq!(ours.len(), theirs.len());
            for (rank, (o, t)) in ours.iter().zip(theirs).enumerate() {
                let at = format!("{name} filter {} rank {}", k + 1, rank + 1);
                for key in ["image", "y", "x"] {
                    assert_eq!(o[key], t[key], "{at}: {key}");
                }
                let (a, b) = (
                    o["value"].as_f64().expect("v"),
                    t["value"].as_f64().expect("v"),
                );
                assert!(close(a, b, 1e-5), "{at}: value {a} vs {b}");
            }
        }
    }
    assert_eq!(
        row,
        rows.len(),
        "stats.csv has one row per reference filter"
    );
}

#[test]
fn scan_equals_the_onnxruntime_reference() {
    // One pass per image on each core (the CPU default), and batched passes.
    for (model, passes) in [
        ("tiny_alexnet", "per-core"),
        ("tiny_resnet", "per-core"),
        ("tiny_alexnet", "batched"),
        ("tiny_resnet", "batched"),
    ] {
        let out = tempfile::tempdir().expect("tempdir");
        let reference = json(&fixture(&format!("scan/reference_{model}.json")));
        let layers: Vec<&str> = (reference["layers"].as_array().expect("layers").iter())
            .map(|l| l["name"].as_str().expect("name"))
            .collect();
        let layers = layers.join(",");
        // 40 images in steps of 3: the last batched pass is padded.
        let flags = [
            "--batch",
            "3",
            "--passes",
            passes,
            "--crop-size",
            "16",
            "--layers",
            &layers,
        ];
        scan(model, &fixture("scan/images"), out.path(), &flags);
        check_against_reference(model, out.path());
        let all = files(out.path());
        let crops = all.keys().filter(|p| p.starts_with("examples")).count();
        let topk = json(&out.path().join("topk.json"));
        let entries: usize = (topk["layers"].as_array().expect("layers").iter())
            .flat_map(|l| l["filters"].as_array().expect("filters"))
            .map(|f| f["top"].as_array().expect("top").len())
            .sum();
        assert_eq!(crops, entries, "{model}: one crop per top entry");
        // Filters that peak at the same field of an image share one crop file, hard-linked.
        #[cfg(unix)]
        {
            use std::os::unix::fs::MetadataExt;
            let linked = (all.keys().filter(|p| p.starts_with("examples")))
                .filter(|p| std::fs::metadata(out.path().join(p)).is_ok_and(|m| m.nlink() > 1))
                .count();
            eprintln!("{model} {passes}: {linked} of {crops} crops are hard links");
            assert!(linked > 0, "{model}: no crop shared by two filters");
        }
        let crop = image::open(out.path().join("examples/conv2/1_1.png").as_path());
        if model == "tiny_alexnet" {
            assert_eq!(crop.expect("crop").width(), 16);
        }
        assert!(
            !all.keys().any(|p| p.to_string_lossy().contains("partial")),
            "no work folder left behind"
        );
    }
}

#[test]
fn shards_merge_into_the_single_process_scan() {
    let images = fixture("scan/images");
    let whole = tempfile::tempdir().expect("tempdir");
    scan("tiny_resnet", &images, whole.path(), &["--crop-size", "12"]);
    let shards = tempfile::tempdir().expect("tempdir");
    for i in 0..3 {
        let shard = format!("{i}/3");
        scan(
            "tiny_resnet",
            &images,
            shards.path(),
            &["--crop-size", "12", "--shard", &shard],
        );
    }
    // A retried task rewrites its shard identically.
    let before = files(&shards.path().join("shard-0001-of-0003"));
    scan(
        "tiny_resnet",
        &images,
        shards.path(),
        &["--crop-size", "12", "--shard", "1/3"],
    );
    assert_eq!(before, files(&shards.path().join("shard-0001-of-0003")));

    let merged = tempfile::tempdir().expect("tempdir");
    let data = tempfile::tempdir().expect("tempdir");
    let out = run_convlens(
        data.path(),
        &[
            "scan",
            "merge",
            shards.path().to_str().expect("utf-8"),
            "--out",
            merged.path().to_str().expect("utf-8"),
        ],
    );
    assert!(out.status.success(), "{}", output_text(&out));
    assert_same_scan(whole.path(), merged.path());
}

#[test]
fn merge_refuses_what_does_not_belong_together() {
    let images = fixture("scan/images");
    let shards = tempfile::tempdir().expect("tempdir");
    let other = tempfile::tempdir().expect("tempdir");
    for i in 0..2 {
        let shard = format!("{i}/3");
        scan(
            "tiny_resnet",
            &images,
            shards.path(),
            &["--crop-size", "0", "--shard", &shard],
        );
    }
    scan(
        "tiny_alexnet",
        &images,
        other.path(),
        &["--crop-size", "0", "--shard", "2/3"],
    );
    let data = tempfile::tempdir().expect("tempdir");
    let merge = |dirs: &[PathBuf], extra: &[&str]| {
        let out = tempfile::tempdir().expect("tempdir");
        let mut args: Vec<String> = vec!["scan".into(), "merge".into()];
        args.extend(dirs.iter().map(|d| d.display().to_string()));
        args.extend(["--out".to_string(), out.path().display().to_string()]);
        args.extend(extra.iter().map(|s| s.to_string()));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let result = run_convlens(data.path(), &args);
        (result.status.success(), output_text(&result), out)
    };
    let s0 = shards.path().join("shard-0000-of-0003");
    let s1 = shards.path().join("shard-0001-of-0003");
    let foreign = other.path().join("shard-0002-of-0003");
    let (ok, text, _) = merge(&[s0.clone(), s1.clone()], &[]);
    assert!(
        !ok && text.contains("shard-0002-of-0003"),
        "names the missing shard: {text}"
    );
    let (ok, text, _) = merge(&[s0.clone(), s1.clone(), foreign], &[]);
    assert!(!ok && text.contains("models"), "another model: {text}");
    let (ok, text, _) = merge(&[s0.clone(), s0.clone()], &[]);
    assert!(!ok && text.contains("twice"), "duplicate: {text}");
    let (ok, text, out) = merge(&[s0, s1], &["--allow-missing"]);
    assert!(ok, "{text}");
    let manifest = json(&out.path().join("scan.json"));
    assert_eq!(manifest["missing_shards"], serde_json::json!([2]));
    assert!(manifest.get("shard").is_none());
}

#[test]
fn a_killed_scan_resumes_to_the_same_result() {
    // 1,600 images: the 40 fixtures forty times, listed in a file (about 3 s here).
    let dir = tempfile::tempdir().expect("tempdir");
    let listed: Vec<String> = (0..40)
        .flat_map(|_| fixture_images())
        .map(|p| p.display().to_string())
        .collect();
    let list = dir.path().join("list.txt");
    std::fs::write(&list, listed.join("\n")).expect("writes");
    let flags = [
        "--batch",
        "2",
        "--checkpoint-every",
        "1",
        "--crop-size",
        "8",
    ];
    let whole = dir.path().join("whole");
    scan("tiny_resnet", &list, &whole, &flags);

    let resumed = dir.path().join("resumed");
    let model = fixture("mixed/tiny_resnet.onnx");
    let mut kills = 0;
    // Deterministic "random" moments, from a fixed LCG.
    let mut seed: u64 = 0x2545_f491_4f6c_dd1d;
    let mut resume: &[&str] = &[];
    loop {
        seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
        let delay_ms = 100 + (seed >> 33) % 600;
        let mut args = vec![
            "scan".to_string(),
            model.display().to_string(),
            "--inputs".into(),
            list.display().to_string(),
            "--out".into(),
            resumed.display().to_string(),
            "--mean".into(),
            IMAGENET_MEAN.into(),
            "--std".into(),
            IMAGENET_STD.into(),
            "--device".into(),
            "cpu".into(),
        ];
        args.extend(flags.iter().chain(resume).map(|s| s.to_string()));
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_convlens"))
            .args(&args)
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("spawns");
        std::thread::sleep(std::time::Duration::from_millis(delay_ms));
        if child.try_wait().expect("waits").is_some() {
            break;
        }
        child.kill().expect("kill -9"); // SIGKILL on Unix
        child.wait().expect("reaped");
        kills += 1;
        resume = &["--resume"];
        assert!(kills < 60, "the scan never finished");
    }
    assert!(
        kills >= 2,
        "killed {kills} times: the test must interrupt the scan"
    );
    let (a, b) = (files(&whole), files(&resumed));
    assert_eq!(a.keys().collect::<Vec<_>>(), b.keys().collect::<Vec<_>>());
    for (path, bytes) in &a {
        assert!(
            bytes == &b[path],
            "{} differs after {kills} kills",
            path.display()
        );
    }
}

#[test]
fn bad_inputs_are_skipped_or_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let images = dir.path().join("images");
    std::fs::create_dir(&images).expect("mkdir");
    for (k, src) in fixture_images().iter().take(3).enumerate() {
        std::fs::copy(src, images.join(format!("{k}.png"))).expect("copies");
    }
    let png = std::fs::read(images.join("0.png")).expect("reads");
    std::fs::write(images.join("0_truncated.png"), &png[..png.len() / 2]).expect("writes");
    std::fs::write(images.join("1_text.jpg"), b"not an image").expect("writes");
    #[cfg(unix)]
    std::os::unix::fs::symlink(&images, images.join("loop")).expect("symlink");
    let out = dir.path().join("out");
    let text = scan("tiny_alexnet", &images, &out, &["--crop-size", "0"]);
    assert!(text.contains("skipped"), "{text}");
    let manifest = json(&out.join("scan.json"));
    assert_eq!(manifest["images"].as_array().expect("images").len(), 3);
    let skipped: Vec<&str> = (manifest["skipped"].as_array().expect("skipped").iter())
        .map(|s| s["path"].as_str().expect("path"))
        .collect();
    assert_eq!(skipped.len(), 2, "{skipped:?}");
    assert!(skipped[0].ends_with("0_truncated.png") && skipped[1].ends_with("1_text.jpg"));
    // Nothing is written outside --out.
    let mut names: Vec<String> = (std::fs::read_dir(dir.path()).expect("dir"))
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names, ["images", "out"]);

    let empty = dir.path().join("empty");
    std::fs::create_dir(&empty).expect("mkdir");
    let r = try_scan("tiny_alexnet", &empty, &out, &[]);
    assert!(!r.status.success() && output_text(&r).contains("no images"));
    let list = dir.path().join("list.txt");
    std::fs::write(&list, "images/0.png\nimages/gone.png\n").expect("writes");
    let r = try_scan("tiny_alexnet", &list, &out, &[]);
    let text = output_text(&r);
    assert!(!r.status.success() && text.contains("gone.png"), "{text}");
    assert!(!text.contains("panicked"), "{text}");
}

#[test]
fn memory_does_not_grow_with_the_number_of_images() {
    let dir = tempfile::tempdir().expect("tempdir");
    let images = fixture_images();
    let mut peaks = Vec::new();
    for n in [500usize, 5000] {
        let list = dir.path().join(format!("list{n}.txt"));
        let lines: Vec<String> = (images.iter().cycle().take(n))
            .map(|p| p.display().to_string())
            .collect();
        std::fs::write(&list, lines.join("\n")).expect("writes");
        let out = dir.path().join(format!("out{n}"));
        // The least of five runs: allocator and thread noise only ever adds (one pass per
        // image on each core puts each core's working set in its own malloc arena; peaks of
        // one list moved 18.9–20.0 MiB from run to run, against ~1 MiB of paths that 5,000
        // images add to 500).
        let peak = (0..5)
            .map(|_| {
                let text = scan(
                    "tiny_alexnet",
                    &list,
                    &out,
                    &["--batch", "8", "--crop-size", "0"],
                );
                text.split("peak memory ")
                    .nth(1)
                    .and_then(|t| t.split(' ').next())
                    .and_then(|v| v.parse::<f64>().ok())
                    .unwrap_or_else(|| panic!("no peak memory in: {text}"))
            })
            .fold(f64::INFINITY, f64::min);
        peaks.push(peak);
    }
    let growth = peaks[1] / peaks[0] - 1.0;
    assert!(
        growth < 0.10,
        "peak RSS {peaks:?} MiB: grew {:.1}%",
        growth * 100.0
    );
}
