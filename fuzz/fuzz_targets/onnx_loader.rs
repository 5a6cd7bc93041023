//! Arbitrary bytes → `load_onnx_bytes`. The import must return `Ok` or a clean `Err`:
//! no panic, no hang, no allocation sized by an unchecked claim in the file.
#![no_main]

use convlens::model::{ImportOptions, load_onnx_bytes};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // Once with static shapes only, once with a small size for symbolic H/W inputs
    // (so dynamic-input models get past input_shape and into the node importers).
    for input_hw in [None, Some([8, 8])] {
        let options = ImportOptions {
            input_hw,
            ..Default::default()
        };
        if let Err(e) = load_onnx_bytes(data, "fuzz.onnx", "fuzz", &options) {
            // Formatting the error must not panic either.
            let _ = e.to_string();
        }
    }
});
