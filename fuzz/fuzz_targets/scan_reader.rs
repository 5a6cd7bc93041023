//! Arbitrary bytes → a scan directory (`view --scan DIR`) or a scan checkpoint (`scan
//! --resume`): see `convlens::fuzz_cases::scan_reader` for how the bytes are laid out (the
//! regression test replays kept inputs through the same function).
#![no_main]

use std::path::PathBuf;
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;

fn scratch_dir() -> &'static PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| std::env::temp_dir().join(format!("convlens-fuzz-scan-{}", std::process::id())))
}

fuzz_target!(|data: &[u8]| {
    let _ = convlens::fuzz_cases::scan_reader(data, scratch_dir());
});
