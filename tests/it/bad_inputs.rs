//! The bad-input matrix: every hostile or odd file a researcher may open gets a clear
//! message and a non-zero exit (CLI) or an in-app notice (viewer) — never a panic, a hang or
//! unbounded memory. Cases already covered elsewhere: unsupported op (tests/cli.rs), missing
//! file and non-image input (tests/cli.rs, tests/inputs.rs), 1×1/grey/RGBA/16-bit images
//! (tests/inputs.rs), hostile layer names (export::stems unit tests), loader fuzz findings
//! (tests/fuzz_regressions.rs).

use crate::common;

use std::process::{Command, Output, Stdio};

use common::{fixture, output_text, run_convlens};
use onnx_ir::{Message, ModelProto};

fn convlens(args: &[&str]) -> Output {
    run_convlens(&std::env::temp_dir().join("convlens-bad-inputs"), args)
}

fn text(out: &Output) -> String {
    output_text(out)
}

/// Fails with a message containing `expected`, without panicking.
fn assert_refused(out: &Output, expected: &str, what: &str) {
    let t = text(out);
    assert!(!out.status.success(), "{what}: succeeded\n{t}");
    assert!(!t.contains("panicked"), "{what}: panicked\n{t}");
    assert!(
        t.contains(expected),
        "{what}: expected '{expected}' in\n{t}"
    );
}

fn tiny_alexnet() -> ModelProto {
    let src = std::fs::read(fixture("mixed/tiny_alexnet.onnx")).unwrap();
    ModelProto::parse_from_bytes(&src).unwrap()
}

#[test]
fn broken_onnx_files_are_refused_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let good = std::fs::read(fixture("mixed/tiny_alexnet.onnx")).unwrap();
    // Random bytes from a fixed LCG (reproducible).
    let mut x = 0x2545_f491_4f6c_dd1du64;
    let random: Vec<u8> = (0..4096)
        .map(|_| {
            x = x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
            (x >> 56) as u8
        })
        .collect();
    for (name, bytes, expected) in [
        ("empty.onnx", Vec::new(), "the file is empty"),
        (
            "truncated.onnx",
            good[..good.len() / 2].to_vec(),
            "not a valid ONNX model",
        ),
        ("random.onnx", random, "not a valid ONNX model"),
    ] {
        let path = dir.path().join(name);
        std::fs::write(&path, bytes).unwrap();
        assert_refused(&convlens(&["info", path.to_str().unwrap()]), expected, name);
    }
}

#[test]
fn a_tensor_claiming_a_trillion_elements_is_refused_before_allocating() {
    let mut model = tiny_alexnet();
    let graph = model.graph.as_mut().unwrap();
    let weight = graph
        .initializer
        .iter_mut()
        .find(|t| t.dims.len() == 4)
        .unwrap();
    let name = weight.name.clone();
    weight.dims = vec![1_000_000, 1_000_000, 1, 1];
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("huge_claim.onnx");
    std::fs::write(&path, model.write_to_bytes().unwrap()).unwrap();
    let out = convlens(&["info", path.to_str().unwrap()]);
    assert_refused(&out, &name, "10^12-element tensor");
    let t = text(&out);
    assert!(
        t.contains("too large") || t.contains("does not match"),
        "{t}"
    );
}

#[test]
fn nan_and_inf_weights_warn_and_keep_going() {
    let mut model = tiny_alexnet();
    let graph = model.graph.as_mut().unwrap();
    let weight = graph
        .initializer
        .iter_mut()
        .find(|t| t.dims.len() == 4)
        .unwrap();
    let name = weight.name.clone();
    // Weights may be stored as float_data or raw_data.
    if weight.float_data.is_empty() {
        let mut raw = weight.raw_data.to_vec();
        raw[0..4].copy_from_slice(&f32::NAN.to_le_bytes());
        raw[4..8].copy_from_slice(&f32::INFINITY.to_le_bytes());
        weight.raw_data = raw.into();
    } else {
        weight.float_data[0] = f32::NAN;
        weight.float_data[1] = f32::INFINITY;
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nan_weights.onnx");
    std::fs::write(&path, model.write_to_bytes().unwrap()).unwrap();
    let out_dir = dir.path().join("out");
    let out = convlens(&[
        "export",
        path.to_str().unwrap(),
        "--out",
        out_dir.to_str().unwrap(),
        "--input",
        fixture("../../assets/images/coffee.png").to_str().unwrap(),
    ]);
    let t = text(&out);
    assert!(out.status.success(), "{t}");
    assert!(
        t.contains("warning") && t.contains(&name) && t.to_lowercase().contains("nan"),
        "{t}"
    );
    assert!(out_dir.join("architecture.json").exists());
}

#[test]
fn a_20000_square_image_is_refused_without_decoding_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("huge.png");
    // A valid PNG header and IHDR claiming 20000×20000, then a tiny (corrupt) body: only the
    // header may be read before refusing.
    let png = png_header(20_000, 20_000);
    std::fs::write(&path, &png).unwrap();
    let out = convlens(&[
        "export",
        "--input",
        path.to_str().unwrap(),
        "--out",
        dir.path().join("o").to_str().unwrap(),
    ]);
    assert_refused(&out, "20000×20000", "20000×20000 image");
    assert!(text(&out).contains("megapixels"), "{}", text(&out));
}

/// The PNG signature and an IHDR chunk (8-bit grey) for `w`×`h`, then an empty IDAT and IEND.
fn png_header(w: u32, h: u32) -> Vec<u8> {
    fn crc32(bytes: &[u8]) -> u32 {
        let mut c = 0xffff_ffffu32;
        for &b in bytes {
            c ^= u32::from(b);
            for _ in 0..8 {
                c = if c & 1 != 0 {
                    0xedb8_8320 ^ (c >> 1)
                } else {
                    c >> 1
                };
            }
        }
        !c
    }
    let chunk = |kind: &[u8; 4], data: &[u8]| {
        let mut v = (data.len() as u32).to_be_bytes().to_vec();
        let body: Vec<u8> = kind.iter().chain(data).copied().collect();
        v.extend(&body);
        v.extend(crc32(&body).to_be_bytes());
        v
    };
    let mut ihdr = w.to_be_bytes().to_vec();
    ihdr.extend(h.to_be_bytes());
    ihdr.extend([8, 0, 0, 0, 0]); // depth 8, grey, deflate, adaptive filter, no interlace
    let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
    png.extend(chunk(b"IHDR", &ihdr));
    png.extend(chunk(b"IDAT", &[]));
    png.extend(chunk(b"IEND", &[]));
    png
}

#[test]
fn a_model_without_filter_maps_still_opens_in_the_viewer() {
    let model = fixture("bad/no_maps.onnx");
    let dir = tempfile::tempdir().unwrap();
    let shot = dir.path().join("shot.png");
    let out = convlens(&[
        "view",
        model.to_str().unwrap(),
        "--window-size",
        "800x500",
        "--screenshot",
        shot.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(shot.exists());
    // The notice the viewer shows (the screenshot draws it in the side canvas).
    let args = convlens::cli::ModelArgs {
        model: Some(model),
        ..Default::default()
    };
    let device = convlens::engine::device::select(convlens::engine::DeviceChoice::Cpu);
    let mut session = convlens::app::Session::new(args.load().unwrap(), &device);
    session.run_file(None).unwrap();
    let notice = session.vm.notice().unwrap_or_default().to_string();
    assert!(
        notice.contains("no layers with per-channel maps"),
        "{notice}"
    );
    assert_eq!(session.vm.probabilities.len(), 10);
}

#[test]
fn a_closed_stdout_ends_quietly() {
    // `convlens info | head -1`: the reader goes away; no panic message, no hang.
    let mut child = Command::new(env!("CARGO_BIN_EXE_convlens"))
        .arg("info")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!err.contains("panicked"), "{err}");
}
