//! Image decoding guarded against the decoders' own panics: zune-jpeg (the `image` crate's
//! JPEG decoder) `assert!`s on some malformed files (a fuzz finding: "input.len() * 2 <=
//! scratch_space.len()" in its AVX2 upsampler). Every place that decodes a file or frame a
//! user supplies goes through [`decode`], which turns such a panic into an error and keeps
//! its message off stderr.

use std::cell::Cell;
use std::panic::AssertUnwindSafe;
use std::sync::Once;

use image::{DynamicImage, ImageReader};

thread_local! {
    /// Set while this thread decodes: a panic then prints nothing (it becomes an error).
    static QUIET: Cell<bool> = const { Cell::new(false) };
}

static QUIET_HOOK: Once = Once::new();

/// Decodes `reader`'s image; a decoder panic becomes `Err` with its message.
pub fn decode<R: std::io::BufRead + std::io::Seek>(
    reader: ImageReader<R>,
) -> Result<DynamicImage, String> {
    QUIET_HOOK.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if !QUIET.with(Cell::get) {
                previous(info);
            }
        }));
    });
    QUIET.with(|q| q.set(true));
    let result = std::panic::catch_unwind(AssertUnwindSafe(|| reader.decode()));
    QUIET.with(|q| q.set(false));
    match result {
        Ok(decoded) => decoded.map_err(|e| e.to_string()),
        Err(panic) => Err(format!(
            "the decoder failed on this file ({})",
            crate::panic_payload::panic_message(&panic, "no message")
        )),
    }
}
