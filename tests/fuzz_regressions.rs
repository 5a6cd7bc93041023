//! Hostile inputs for the loaders the fuzz targets in `fuzz/` exercise: every file in
//! `tests/fixtures/fuzz/onnx_loader/` goes through `load_onnx_bytes`, every file in
//! `tests/fixtures/fuzz/image_loader/` through `load_input` exactly as
//! `fuzz/fuzz_targets/image_loader.rs` feeds it (first byte = set-up, rest = file),
//! `datadir_reader/` through `DataDir::open`, `scan_reader/` through
//! `convlens::fuzz_cases::scan_reader` (a scan directory or a checkpoint).
//!
//! Each must come back as `Ok` or a clean `Err` with a message: no panic (checked with
//! `catch_unwind`), no hang (each case has a deadline) and no huge allocation (the global
//! allocator below refuses any single request above `MAX_ALLOC`, which aborts the test
//! binary with the name of the input being loaded).
//!
//! Minimised fuzzer findings go in those folders next to the handcrafted inputs (made by
//! `fuzz/make_regression_inputs.py`); see `fuzz/README.md`.

use std::alloc::{GlobalAlloc, Layout, System};
use std::io::Write;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use convlens::model::preprocess::{Fit, InputSpec, load_input};
use convlens::model::{ImportOptions, load_onnx_bytes};

/// Largest single allocation a tiny hostile file may cause: 2 GiB, the `malloc` limit the
/// fuzz runs use (`-rss_limit_mb=2048`).
const MAX_ALLOC: usize = 2 << 30;
/// Per-input deadline (the fuzz runs use `-timeout=10` on an optimised build; this is the
/// lightly optimised dev profile).
const DEADLINE: Duration = Duration::from_secs(30);

/// Handcrafted inputs that are invalid and must be refused with an error (not just
/// "no panic"). Fuzzer findings are not listed: after the fix they may load fine.
const MUST_BE_ERR: &[&str] = &[
    "onnx_loader/empty",
    "onnx_loader/truncated_half",
    "onnx_loader/truncated_varint",
    "onnx_loader/garbage_length",
    "onnx_loader/huge_dims_no_data",
    "onnx_loader/huge_dims_4_bytes",
    "onnx_loader/negative_dims",
    "onnx_loader/overflowing_dims",
    "onnx_loader/huge_input",
    "onnx_loader/cycle",
    "onnx_loader/undefined_input",
    "onnx_loader/old_opset",
    "image_loader/empty_png",
    "image_loader/empty_npy",
    "image_loader/png_100000x100000",
    "image_loader/png_zero_size",
    "image_loader/npy_huge_shape",
    "image_loader/npy_overflow_shape",
    "image_loader/npy_v2_huge_header_len",
    "image_loader/npy_truncated_header",
    "image_loader/npy_no_close_paren",
    // Issue 18: `'shape': ), }` sliced [1..0] and panicked.
    "image_loader/npy_shape_close_paren_first",
    "datadir_reader/too_many_channels",
    "datadir_reader/stem_traversal",
    "datadir_reader/negative_shape",
    "datadir_reader/huge_input",
    "datadir_reader/not_json",
    "scan_reader/manifest_not_json",
    "scan_reader/manifest_version_2",
    "scan_reader/stem_traversal",
    "scan_reader/topk_image_out_of_range",
    "scan_reader/stats_missing_filter",
    "scan_reader/stats_count_overflow",
    "scan_reader/huge_filter_count",
    "scan_reader/checkpoint_top_outside_map",
    "scan_reader/checkpoint_more_files_than_inputs",
    "scan_reader/checkpoint_not_json",
];

/// Findings whose fix in `src/` has not landed yet: skipped by the `hostile_*` tests, run
/// by the ignored `open_findings` test. Remove an entry once its fix is in. An allocation
/// over the cap aborts the whole test binary, so run them one at a time:
/// `FUZZ_REGRESSION_ONLY=<name> cargo test --test fuzz_regressions -- --ignored`.
const OPEN_FINDINGS: &[&str] = &[
    // None open. Fixed (2026-11-25), now checked by the main tests:
    // onnx_loader/oom_constantofshape_fuzz_raw, oom_constantofshape_2g6 (fuzzer: 2.6 GB
    // ConstantOfShape), review_oom_range_2p30, review_oom_broadcast_2p32 (folded constants
    // now capped at MAX_FOLDED_ELEMENTS), review_panic_range_empty_start,
    // review_panic_conv_dilation_overflow, review_panic_convtranspose_output_shape,
    // review_panic_convtranspose_stride (strides/dilations/output_shape bounded).
];

struct CappedAlloc;

/// Cases run one at a time (across both tests) so that the allocator can name the input.
static SERIAL: Mutex<()> = Mutex::new(());
static CURRENT_INPUT: Mutex<String> = Mutex::new(String::new());
static REFUSED: AtomicUsize = AtomicUsize::new(0);

fn refuse(size: usize) {
    if REFUSED.fetch_add(1, Ordering::SeqCst) == 0 {
        let name = CURRENT_INPUT
            .try_lock()
            .map(|s| s.clone())
            .unwrap_or_default();
        let _ = writeln!(
            std::io::stderr(),
            "fuzz_regressions: input {name:?} asked for one allocation of {size} bytes \
             (limit {MAX_ALLOC}); the loader must refuse such sizes before allocating"
        );
    }
}

// SAFETY: forwards to the system allocator; only refuses (returns null for) oversized
// requests, which the GlobalAlloc contract allows.
unsafe impl GlobalAlloc for CappedAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if layout.size() > MAX_ALLOC {
            refuse(layout.size());
            return std::ptr::null_mut();
        }
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if layout.size() > MAX_ALLOC {
            refuse(layout.size());
            return std::ptr::null_mut();
        }
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if new_size > MAX_ALLOC {
            refuse(new_size);
            return std::ptr::null_mut();
        }
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: CappedAlloc = CappedAlloc;

fn fixtures(target: &str) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/fuzz")
        .join(target);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()))
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    assert!(!files.is_empty(), "{} holds no inputs", dir.display());
    files
}

fn key(target: &str, path: &Path) -> String {
    format!("{target}/{}", path.file_name().unwrap().to_string_lossy())
}

/// What one loader call did: `Ok(true)` loaded, `Ok(false)` clean error, `Err` = bug.
type Outcome = Result<bool, String>;

fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "(non-string panic payload)".into())
}

/// Runs `f` on its own thread under `catch_unwind` with a deadline.
fn guarded(name: &str, f: impl FnOnce() -> Outcome + Send + 'static) -> Outcome {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    *CURRENT_INPUT.lock().unwrap_or_else(|e| e.into_inner()) = name.to_string();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let r = catch_unwind(AssertUnwindSafe(f));
        let _ = tx.send(r.unwrap_or_else(|p| Err(format!("panicked: {}", panic_message(&*p)))));
    });
    rx.recv_timeout(DEADLINE)
        .unwrap_or_else(|_| Err(format!("no answer within {DEADLINE:?} (hang?)")))
}

fn check_result<T, E: std::fmt::Display>(r: Result<T, E>) -> Outcome {
    match r {
        Ok(_) => Ok(true),
        Err(e) if e.to_string().trim().is_empty() => Err("error with an empty message".into()),
        Err(_) => Ok(false),
    }
}

fn run_onnx(path: &Path) -> Outcome {
    let bytes = std::fs::read(path).expect("read fixture");
    // As the fuzz target: static shapes only, then with a size for symbolic H/W.
    let mut loaded = false;
    for input_hw in [None, Some([8, 8])] {
        let bytes = bytes.clone();
        let name = format!("{} (input_hw {input_hw:?})", path.display());
        loaded |= guarded(&name, move || {
            let options = ImportOptions {
                input_hw,
                ..Default::default()
            };
            check_result(load_onnx_bytes(&bytes, "fuzz.onnx", "fuzz", &options))
        })
        .map_err(|e| format!("input_hw {input_hw:?}: {e}"))?;
    }
    Ok(loaded)
}

/// The image_loader fuzz target's decoding of its input (keep the two in sync).
fn run_image(path: &Path, scratch: &Path) -> Outcome {
    const EXTS: [&str; 7] = ["png", "jpg", "webp", "bmp", "tif", "gif", "npy"];
    let data = std::fs::read(path).expect("read fixture");
    let Some((&b0, body)) = data.split_first() else {
        return Ok(false);
    };
    let ext = EXTS[usize::from(b0 % 7)];
    let fit = [Fit::Crop, Fit::Stretch, Fit::Pad][usize::from((b0 / 7) % 3)];
    let size_hw = if (b0 / 21) % 2 == 0 { [32, 32] } else { [4, 6] };
    let spec = InputSpec {
        fit,
        ..InputSpec::imagenet(size_hw)
    };
    let file = scratch.join(format!(
        "{}.{ext}",
        path.file_name().unwrap().to_string_lossy()
    ));
    std::fs::write(&file, body).expect("write scratch input");
    guarded(&path.display().to_string(), move || {
        match load_input(&file, &spec) {
            Ok(t) if t.shape != [1, 3, size_hw[0], size_hw[1]] => {
                Err(format!("loaded with shape {:?}", t.shape))
            }
            Ok(t) if t.data.len() != 3 * size_hw[0] * size_hw[1] => Err(format!(
                "loaded {} values for shape {:?}",
                t.data.len(),
                t.shape
            )),
            r => check_result(r),
        }
    })
}

/// The datadir_reader fuzz target's use of its input (keep the two in sync): JSON before
/// the first `FF 00`, a PNG after it as tile 1 of the first layer (forward and gbp).
fn run_datadir(path: &Path, scratch: &Path) -> Outcome {
    let data = std::fs::read(path).expect("read fixture");
    let split = data
        .windows(2)
        .position(|w| w == [0xFF, 0x00])
        .unwrap_or(data.len());
    let (arch, rest) = data.split_at(split);
    let png = rest.get(2..).unwrap_or(&[]).to_vec();
    let dir = scratch.join(path.file_name().unwrap());
    for sub in ["forward", "gbp"] {
        std::fs::create_dir_all(dir.join(sub)).expect("scratch dir");
    }
    std::fs::write(dir.join("architecture.json"), arch).expect("write json");
    let stem = serde_json::from_slice::<serde_json::Value>(arch)
        .ok()
        .and_then(|v| {
            v.pointer("/layers/0/file_stem")?
                .as_str()
                .map(str::to_string)
        })
        .filter(|s| {
            !s.is_empty()
                && s.len() < 100
                && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        })
        .unwrap_or_else(|| "conv1".into());
    for sub in ["forward", "gbp"] {
        std::fs::write(dir.join(sub).join(format!("{stem}_1.png")), &png).expect("write tile");
    }
    guarded(&path.display().to_string(), move || {
        let d = match convlens::format::read::DataDir::open(&dir) {
            Ok(d) => d,
            Err(e) => return check_result::<(), _>(Err(e)),
        };
        for layer in 0..d.architecture.layers.len().min(8) {
            for method in [
                convlens::format::Method::Forward,
                convlens::format::Method::Guided,
            ] {
                if let Ok(Some(images)) = d.layer_images(layer, method) {
                    let n: usize = images.tensor.shape.iter().product();
                    if n != images.tensor.data.len() {
                        return Err(format!(
                            "{n} values claimed, {} held",
                            images.tensor.data.len()
                        ));
                    }
                }
            }
        }
        Ok(true)
    })
}

fn run_all(target: &str, open: bool) {
    let scratch = tempfile::tempdir().expect("tempdir");
    let mut failures = Vec::new();
    let mut count = 0;
    // FUZZ_REGRESSION_ONLY=<substring>: run only the inputs whose `target/name` contains it.
    let only = std::env::var("FUZZ_REGRESSION_ONLY").ok();
    for path in fixtures(target) {
        let key = key(target, &path);
        if OPEN_FINDINGS.contains(&key.as_str()) != open
            || only.as_deref().is_some_and(|o| !key.contains(o))
        {
            continue;
        }
        count += 1;
        let outcome = match target {
            "onnx_loader" => run_onnx(&path),
            "datadir_reader" => run_datadir(&path, scratch.path()),
            "scan_reader" => {
                let data = std::fs::read(&path).expect("read fixture");
                let dir = scratch.path().join(path.file_name().expect("file name"));
                guarded(&path.display().to_string(), move || {
                    convlens::fuzz_cases::scan_reader(&data, &dir)
                })
            }
            _ => run_image(&path, scratch.path()),
        };
        match outcome {
            Ok(true) if MUST_BE_ERR.contains(&key.as_str()) => {
                failures.push(format!("{key}: loaded, but it must be refused"));
            }
            Ok(_) => {}
            Err(e) => failures.push(format!("{key}: {e}")),
        }
    }
    assert!(
        open || only.is_some() || count > 0,
        "no {target} inputs ran"
    );
    assert!(
        failures.is_empty(),
        "{} of {count} {target} inputs misbehaved:\n  {}",
        failures.len(),
        failures.join("\n  ")
    );
}

#[test]
fn hostile_onnx_inputs_load_or_fail_cleanly() {
    run_all("onnx_loader", false);
}

#[test]
fn hostile_image_inputs_load_or_fail_cleanly() {
    run_all("image_loader", false);
}

#[test]
fn hostile_data_directories_load_or_fail_cleanly() {
    run_all("datadir_reader", false);
}

#[test]
fn hostile_scan_directories_and_checkpoints_load_or_fail_cleanly() {
    run_all("scan_reader", false);
    // The well-formed ones beside them are accepted (so the refusals are not of everything).
    let scratch = tempfile::tempdir().expect("tempdir");
    for name in ["valid_scan", "checkpoint_valid", "crop_png_100000x100000"] {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/fuzz/scan_reader")
            .join(name);
        let data = std::fs::read(&path).expect("read fixture");
        assert_eq!(
            convlens::fuzz_cases::scan_reader(&data, scratch.path()),
            Ok(true),
            "{name} was refused"
        );
    }
}

#[test]
#[ignore = "fuzzer findings whose fix has not landed (OPEN_FINDINGS)"]
fn open_findings() {
    run_all("onnx_loader", true);
    run_all("image_loader", true);
}

#[test]
fn must_be_err_names_exist() {
    for key in MUST_BE_ERR.iter().chain(OPEN_FINDINGS) {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/fuzz")
            .join(key);
        assert!(
            path.is_file(),
            "{key} is listed but {} is missing",
            path.display()
        );
    }
}
