//! Arbitrary bytes → a data directory → `DataDir::open` and `layer_images` for every layer
//! and method (what `view --data DIR` reads).
//!
//! The input is split at the first `0xFF 0x00` pair (or its end): the first part is
//! `architecture.json`, the second a PNG written as tile 1 of the first layer under
//! `forward/` and `gbp/` (its stem as the file name when the JSON gives a plain one).
#![no_main]

use std::path::PathBuf;
use std::sync::OnceLock;

use convlens::format::read::DataDir;
use convlens::format::Method;
use libfuzzer_sys::fuzz_target;

fn scratch_dir() -> &'static PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("convlens-fuzz-dd-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("create scratch dir");
        dir
    })
}

fuzz_target!(|data: &[u8]| {
    let split = data
        .windows(2)
        .position(|w| w == [0xFF, 0x00])
        .unwrap_or(data.len());
    let (arch, rest) = data.split_at(split);
    let png = rest.get(2..).unwrap_or(&[]);
    let dir = scratch_dir();
    let _ = std::fs::remove_dir_all(dir);
    for sub in ["forward", "gbp"] {
        std::fs::create_dir_all(dir.join(sub)).expect("scratch subdir");
    }
    std::fs::write(dir.join("architecture.json"), arch).expect("write architecture.json");
    // The first layer's stem, if the JSON names a plain one, so the tile is found.
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
        std::fs::write(dir.join(sub).join(format!("{stem}_1.png")), png).expect("write tile");
    }
    let Ok(d) = DataDir::open(dir) else {
        return;
    };
    for layer in 0..d.architecture.layers.len().min(8) {
        for method in [Method::Forward, Method::Guided] {
            if let Ok(Some(images)) = d.layer_images(layer, method) {
                let n: usize = images.tensor.shape.iter().product();
                assert_eq!(n, images.tensor.data.len());
            }
        }
    }
});
