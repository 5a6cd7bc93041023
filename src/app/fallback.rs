//! GPU trouble during a pass (device lost, out of memory, a driver error): the work is run
//! again on a CPU engine built from the same graph, and the viewer switches to it and says
//! why, instead of dying or showing nothing.

use std::sync::Arc;

use anyhow::Result;

use crate::engine::Engine;

/// The CPU engine a failed GPU pass switched to, and the GPU's error.
pub struct Fallback {
    pub engine: Arc<Engine>,
    pub reason: String,
}

impl Fallback {
    /// The device line the viewer shows after switching.
    pub fn device_label(&self) -> String {
        "cpu (burn flex) — switched after a GPU error".into()
    }

    /// The notice the viewer shows after switching.
    pub fn notice(&self) -> String {
        format!(
            "The GPU failed ({}); computing on the CPU from now on.",
            self.reason
        )
    }
}

/// Runs `work` on `engine`; when that fails on a GPU engine, runs it once more on a new CPU
/// engine over the same graph. Returns the result and, if it switched, the CPU engine.
pub fn compute_with_fallback<T>(
    engine: &Arc<Engine>,
    on_gpu: bool,
    mut work: impl FnMut(&Engine) -> Result<T>,
) -> (Result<T>, Option<Fallback>) {
    match work(engine) {
        Ok(v) => (Ok(v), None),
        Err(e) if on_gpu => {
            let cpu = Arc::new(Engine::new(
                Arc::clone(engine.graph()),
                burn::tensor::Device::flex(),
            ));
            let result = work(&cpu);
            (
                result,
                Some(Fallback {
                    engine: cpu,
                    reason: format!("{e:#}"),
                }),
            )
        }
        Err(e) => (Err(e), None),
    }
}
