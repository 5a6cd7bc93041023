//! The compute worker of the viewer window: forward passes, per-filter images and Grad-CAM
//! maps run on their own thread, the newest request wins, results (and a switch to the CPU
//! after a GPU failure) come back to the event loop as [`UserEvent`]s.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::mpsc::{Receiver, Sender, channel};

use winit::event_loop::EventLoopProxy;

use super::fallback::{Fallback, compute_with_fallback};
use super::session::{
    CamResult, ForwardResult, GradientResult, compute_cam, compute_gradients, run_forward,
};
use crate::engine::Engine;
use crate::export::Method;
use crate::model::preprocess::{InputSpec, InputTensor};

/// Messages from the worker to the event loop.
pub(super) enum UserEvent {
    Forward(Result<ForwardResult, String>),
    Gradients(Result<GradientResult, String>),
    /// A GPU pass failed; the worker computes on this CPU engine from now on.
    SwitchedToCpu(Fallback),
    Cam(Result<CamResult, String>),
}

/// Work for the compute thread.
pub(super) enum Job {
    /// Load and run an input file.
    Input(PathBuf),
    /// The Grad-CAM map of a class for an input.
    Cam {
        input: Arc<InputTensor>,
        layer: usize,
        class: usize,
    },
    /// Gradient images of every filter of a layer for an input.
    Gradients {
        input: Arc<InputTensor>,
        layer: usize,
        method: Method,
    },
}

/// Runs forward and reverse passes off the UI thread; of the jobs queued at once only the
/// newest is computed (the newest input or request wins).
pub(super) struct Worker {
    jobs: Sender<Job>,
}

impl Worker {
    pub(super) fn spawn(
        engine: Arc<Engine>,
        on_gpu: bool,
        spec: InputSpec,
        proxy: EventLoopProxy<UserEvent>,
    ) -> Self {
        let (jobs, rx): (Sender<Job>, Receiver<Job>) = channel();
        std::thread::Builder::new()
            .name("convlens-compute".into())
            .spawn(move || {
                let (mut engine, mut on_gpu) = (engine, on_gpu);
                while let Ok(mut job) = rx.recv() {
                    while let Ok(newer) = rx.try_recv() {
                        job = newer;
                    }
                    let (event, fallback) = match job {
                        Job::Input(path) => {
                            let (result, fallback) =
                                compute_with_fallback(&engine, on_gpu, |engine| {
                                    let input = crate::model::preprocess::load_input(&path, &spec)?;
                                    run_forward(engine, &input, path.display().to_string())
                                });
                            (
                                UserEvent::Forward(result.map_err(|e| format!("{e:#}"))),
                                fallback,
                            )
                        }
                        Job::Cam {
                            input,
                            layer,
                            class,
                        } => {
                            let (result, fallback) =
                                compute_with_fallback(&engine, on_gpu, |engine| {
                                    compute_cam(engine, &input, layer, class)
                                });
                            (
                                UserEvent::Cam(result.map_err(|e| format!("{e:#}"))),
                                fallback,
                            )
                        }
                        Job::Gradients {
                            input,
                            layer,
                            method,
                        } => {
                            let (result, fallback) =
                                compute_with_fallback(&engine, on_gpu, |engine| {
                                    compute_gradients(engine, &input, layer, method)
                                });
                            (
                                UserEvent::Gradients(result.map_err(|e| format!("{e:#}"))),
                                fallback,
                            )
                        }
                    };
                    if proxy.send_event(event).is_err() {
                        break; // the window is gone
                    }
                    // After the result, so the notice about the switch is not cleared by it.
                    if let Some(f) = fallback {
                        engine = Arc::clone(&f.engine);
                        on_gpu = false;
                        if proxy.send_event(UserEvent::SwitchedToCpu(f)).is_err() {
                            break;
                        }
                    }
                }
            })
            .ok();
        Self { jobs }
    }

    pub(super) fn submit(&self, job: Job) {
        let _ = self.jobs.send(job);
    }
}
