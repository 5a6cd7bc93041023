//! Records the commit HEAD named when the binary was built (for `convlens --version`); "unknown"
//! outside a git checkout (e.g. a crate downloaded from a registry). Also fingerprints the
//! embedded default model once, here, instead of at every start.

use std::process::Command;

fn main() {
    let rev = Command::new("git")
        .args(["rev-parse", "--short=10", "HEAD"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "unknown".to_string());
    println!("cargo:rustc-env=CONVLENS_GIT_REV={rev}");
    // A new commit moves HEAD's branch ref; rebuild then (and only then).
    println!("cargo:rerun-if-changed=.git/HEAD");
    if let Ok(head) = std::fs::read_to_string(".git/HEAD")
        && let Some(branch) = head.trim().strip_prefix("ref: ")
    {
        println!("cargo:rerun-if-changed=.git/{branch}");
    }
    println!("cargo:rerun-if-changed=.git/packed-refs");
    default_model_fingerprint();
}

include!("src/model/fnv1a.rs");

/// `CONVLENS_DEFAULT_MODEL_FINGERPRINT`: `model::onnx::fingerprint` of the embedded model.
fn default_model_fingerprint() {
    const MODEL: &str = "assets/model/efficientnet_lite0.onnx";
    println!("cargo:rerun-if-changed={MODEL}");
    println!("cargo:rerun-if-changed=src/model/fnv1a.rs");
    let bytes = std::fs::read(MODEL).unwrap_or_else(|e| panic!("reading {MODEL}: {e}"));
    let hash = fnv1a_64(&bytes);
    println!("cargo:rustc-env=CONVLENS_DEFAULT_MODEL_FINGERPRINT={hash:016x}");
}
