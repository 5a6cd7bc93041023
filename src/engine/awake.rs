//! Where a pass over the graph runs on the CPU: on one of rayon's workers, with the pool's
//! other workers kept awake until the pass ends ([`on_pool_awake`]), so each kernel's
//! parallel loop finds them ready instead of waking them from sleep at every node.
//!
//! Why: a rayon worker with nothing to do spins a few dozen rounds, then sleeps on a futex.
//! Between the nodes of a pass (the walk's own bookkeeping, a small node run on one thread)
//! that happens often, and the next node's parallel loop then waits for a wake-up (a system
//! call, and on a virtual machine an interrupt to a halted virtual CPU) before the second
//! thread helps. EfficientNet-Lite0 with every layer kept, batch 1, two threads, alternated
//! in one process (2-core Intel Xeon, Emerald Rapids; six runs of 200 each): 7.6–8.2 →
//! 6.7–7.7 ms. A scan's passes (one image per core, each on a one-thread pool:
//! `viz::summary_passes`) have no other worker to keep awake and run as before. The reverse
//! passes (`reverse::backward`) run the same way: guided backprop of every conv filter,
//! alternated, AlexNet-shaped 5.08–5.09 → 4.97–5.00 s, EfficientNet-Lite0 199 → 185 s (one
//! pair); the pollers' spinning shows as CPU time (AlexNet-shaped 8.6 → 9.6 CPU-seconds).

use std::sync::atomic::{AtomicBool, Ordering};

/// Runs `pass` on a worker of rayon's global pool while the pool's other workers wait for
/// its work by polling (they run any job the pass shares, and otherwise yield the CPU to
/// other threads with `sched_yield`, as rayon's own idle loop does before it sleeps). Called
/// from inside the pool, `pass` simply runs: the caller's pass already owns the workers.
///
/// A poller runs whatever job the pool offers it, another caller's too, and the pass returns
/// only once its pollers have: beside a long job started from another thread, a short pass
/// may wait for that job. ConvLens runs one engine pass at a time per pool (the viewer's
/// compute thread, the CLI commands; the scan's passes have their own one-thread pools).
pub(super) fn on_pool_awake<R: Send>(pass: impl FnOnce() -> R + Send) -> R {
    if rayon::current_thread_index().is_some() {
        return pass();
    }
    let done = AtomicBool::new(false);
    rayon::scope(|scope| {
        let walker = rayon::current_thread_index();
        for _ in 1..rayon::current_num_threads() {
            let done = &done;
            scope.spawn(move |_| {
                // The walker itself may pick this job up while it waits for its own work;
                // it must not poll for a pass that only it can finish.
                if rayon::current_thread_index() == walker {
                    return;
                }
                while !done.load(Ordering::Acquire) {
                    if rayon::yield_now() != Some(rayon::Yield::Executed) {
                        std::thread::yield_now();
                    }
                }
            });
        }
        // Set on return and on a panic alike, so the pollers end and the scope can finish.
        let _finished = SetOnDrop(&done);
        pass()
    })
}

/// Sets its flag when dropped.
struct SetOnDrop<'a>(&'a AtomicBool);

impl Drop for SetOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rayon::prelude::*;

    /// From outside the pool (as the engine's callers are), the pass runs on a worker of
    /// the global pool, its parallel loops complete with the pollers present, and the
    /// pollers end with it (the call returns).
    #[test]
    fn a_pass_runs_on_a_worker_and_its_parallel_work_completes() {
        for _ in 0..20 {
            let (sum, on_worker) = on_pool_awake(|| {
                let sum: u64 = (0..100_000u64).into_par_iter().sum();
                (sum, rayon::current_thread_index().is_some())
            });
            assert_eq!(sum, 100_000 * 99_999 / 2);
            assert!(on_worker, "the pass ran off the pool");
        }
    }

    /// A panicking pass ends the pollers and reaches the caller as a panic (no hang).
    #[test]
    fn a_panicking_pass_releases_the_pollers() {
        let caught = std::panic::catch_unwind(|| on_pool_awake(|| panic!("a failing pass")));
        assert!(caught.is_err());
        assert_eq!(on_pool_awake(|| 7), 7);
    }
}
