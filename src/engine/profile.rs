//! Opt-in timing of the reverse pass by op type (`convlens bench --ops`): while a
//! [`ReverseProfile`] is alive, every reverse step taken by [`super::reverse`] waits for the
//! device and adds its wall time under its op's name. Off, it costs one atomic load per step.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use burn::tensor::Device;

static RECORDING: AtomicBool = AtomicBool::new(false);
/// `(op, steps, seconds)`, in first-seen order.
static TOTALS: Mutex<Vec<(String, usize, f64)>> = Mutex::new(Vec::new());

/// Records reverse-step times from [`ReverseProfile::start`] until [`ReverseProfile::finish`]
/// (or drop). One profile at a time per process; a second `start` restarts the sums.
#[derive(Debug)]
pub struct ReverseProfile(());

impl ReverseProfile {
    pub fn start() -> Self {
        if let Ok(mut totals) = TOTALS.lock() {
            totals.clear();
        }
        RECORDING.store(true, Ordering::SeqCst);
        Self(())
    }

    /// Stops recording; `(op, steps, seconds)` by op type, largest time first.
    pub fn finish(self) -> Vec<(String, usize, f64)> {
        RECORDING.store(false, Ordering::SeqCst);
        let mut totals = TOTALS.lock().map(|t| t.clone()).unwrap_or_default();
        totals.sort_by(|a, b| b.2.total_cmp(&a.2));
        totals
    }
}

impl Drop for ReverseProfile {
    fn drop(&mut self) {
        RECORDING.store(false, Ordering::SeqCst);
    }
}

/// Runs `step`; while a profile records, waits for `device` after it and adds the time
/// under `op`.
pub(crate) fn timed<T>(op: &str, device: &Device, step: impl FnOnce() -> T) -> T {
    if !RECORDING.load(Ordering::Relaxed) {
        return step();
    }
    let started = Instant::now();
    let out = step();
    // A failed wait only makes this sample less exact; the step's own result stands.
    let _ = device.sync();
    let seconds = started.elapsed().as_secs_f64();
    if let Ok(mut totals) = TOTALS.lock() {
        match totals.iter_mut().find(|t| t.0 == op) {
            Some(t) => {
                t.1 += 1;
                t.2 += seconds;
            }
            None => totals.push((op.to_string(), 1, seconds)),
        }
    }
    out
}
