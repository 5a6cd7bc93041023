//! Arbitrary bytes → a temp file → `load_input` (image decoders, RGB conversion,
//! crop/stretch/pad resize, normalisation; or the `.npy` reader).
//!
//! Byte 0 picks the set-up, the rest is the file:
//!   * `b0 % 7`        → extension: png, jpg, webp, bmp, tif, gif, npy (only `.npy` changes
//!                       the code path; images are sniffed by content)
//!   * `(b0 / 7) % 3`  → fit: crop, stretch, pad
//!   * `(b0 / 21) % 2` → model size: 32×32 or 4×6
#![no_main]

use std::path::PathBuf;
use std::sync::OnceLock;

use convlens::model::preprocess::{Fit, InputSpec, load_input};
use libfuzzer_sys::fuzz_target;

const EXTS: [&str; 7] = ["png", "jpg", "webp", "bmp", "tif", "gif", "npy"];

fn scratch_dir() -> &'static PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("convlens-fuzz-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("create scratch dir");
        dir
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((&b0, body)) = data.split_first() else {
        return;
    };
    let ext = EXTS[usize::from(b0 % 7)];
    let fit = [Fit::Crop, Fit::Stretch, Fit::Pad][usize::from((b0 / 7) % 3)];
    let size_hw = if (b0 / 21) % 2 == 0 { [32, 32] } else { [4, 6] };
    let spec = InputSpec {
        fit,
        ..InputSpec::imagenet(size_hw)
    };
    let path = scratch_dir().join(format!("input.{ext}"));
    std::fs::write(&path, body).expect("write scratch input");
    match load_input(&path, &spec) {
        Ok(t) => {
            let [n, c, h, w] = t.shape;
            assert_eq!([n, c, h, w], [1, 3, size_hw[0], size_hw[1]]);
            assert_eq!(t.data.len(), 3 * h * w);
        }
        Err(e) => {
            let _ = e.to_string();
        }
    }
});
