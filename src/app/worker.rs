//! The compute worker of the viewer window: forward passes, per-filter images and Grad-CAM
//! maps run on their own thread, the newest request wins, results (and a switch to the CPU
//! after a GPU failure) come back to the event loop as [`UserEvent`]s. Per-filter images come
//! back chunk by chunk; between two chunks a newer request for other images or another input
//! stops the computation, and a Grad-CAM request runs at once. A live input (the
//! webcam) reaches it through a [`LiveFeed`]: one slot holding only the newest picture,
//! taken whenever the worker has no request from the window, so frames are never queued and
//! the frame rate follows the speed of the forward pass.

use std::ops::ControlFlow;
use std::path::PathBuf;
use std::sync::mpsc::{Receiver, Sender, TryRecvError, channel};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use image::RgbImage;

use winit::event_loop::EventLoopProxy;

use super::compute::{
    CamResult, ComputeOptions, Delivery, ForwardResult, GradientChunk, compute_cam,
    compute_gradient_chunks, run_forward,
};
use super::fallback::{Fallback, compute_with_fallback};
use crate::engine::Engine;
use crate::format::Method;
use crate::model::preprocess::{InputSpec, InputTensor};
use crate::ui::Progress;

/// Messages from the worker to the event loop.
pub(super) enum UserEvent {
    Forward(Result<ForwardResult, String>),
    /// Some filters' images of the layer being computed.
    GradientChunk(GradientChunk),
    /// How far the occlusion sweep of a layer has got.
    Progress(Progress),
    /// Computing a layer's images failed (the chunks that came stay; showing the layer
    /// again resumes after them).
    GradientsFailed(String),
    /// A GPU pass failed; the worker computes on this CPU engine from now on.
    SwitchedToCpu(Fallback),
    Cam(Result<CamResult, String>),
    /// A message for the notice line (e.g. the webcam stopped delivering frames).
    #[cfg_attr(not(feature = "webcam"), allow(dead_code))] // only the webcam sends it
    Notice(String),
}

/// Work for the compute thread.
pub(super) enum Job {
    /// Load and run an input file.
    Input(PathBuf),
    /// Run a picture held in memory (a webcam frame), labelled as the input.
    Picture { picture: RgbImage, label: String },
    /// The live feed has a picture waiting (sent by [`LiveFeed`], never by the window).
    Wake,
    /// The Grad-CAM map of a class for an input.
    Cam {
        input: Arc<InputTensor>,
        layer: usize,
        class: usize,
    },
    /// Every filter's image of a layer for an input, from channel `from_channel` on (the
    /// ones before it were computed by a request this one resumes).
    Gradients {
        input: Arc<InputTensor>,
        layer: usize,
        method: Method,
        from_channel: usize,
    },
}

/// Runs forward and reverse passes off the UI thread; of the jobs queued at once only the
/// newest is computed (the newest input or request wins).
pub(super) struct Worker {
    jobs: Sender<Job>,
}

impl Worker {
    /// Starts the compute thread; with a `feed`, it also runs the feed's newest picture
    /// whenever no request from the window is waiting.
    pub(super) fn spawn(
        engine: Arc<Engine>,
        on_gpu: bool,
        (spec, options): (InputSpec, ComputeOptions),
        proxy: EventLoopProxy<UserEvent>,
        feed: Option<Arc<LiveFeed>>,
    ) -> Self {
        let (jobs, rx): (Sender<Job>, Receiver<Job>) = channel();
        if let Some(feed) = &feed {
            feed.attach(jobs.clone());
        }
        std::thread::Builder::new()
            .name("convlens-compute".into())
            .spawn(move || {
                let (mut engine, mut on_gpu) = (engine, on_gpu);
                // A request that stopped a long computation, to run next.
                let mut waiting: Option<Job> = None;
                while let Some(job) = next_job(&rx, feed.as_deref(), &mut waiting) {
                    let job = match job {
                        Next::Job(job) => job,
                        Next::Live(live) => match (live.decode)() {
                            Ok(picture) => Job::Picture {
                                picture,
                                label: live.label,
                            },
                            Err(e) => {
                                let message = format!("{}: {e}", live.label);
                                if proxy.send_event(UserEvent::Forward(Err(message))).is_err() {
                                    break;
                                }
                                continue;
                            }
                        },
                    };
                    let (event, fallback) = match job {
                        Job::Wake => continue,
                        Job::Input(path) => {
                            let (result, fallback) =
                                compute_with_fallback(&engine, on_gpu, |engine| {
                                    let input = crate::model::preprocess::load_input(&path, &spec)?;
                                    run_forward(engine, &input, path.display().to_string())
                                });
                            (
                                Some(UserEvent::Forward(result.map_err(|e| format!("{e:#}")))),
                                fallback,
                            )
                        }
                        Job::Picture { picture, label } => {
                            let input = crate::model::preprocess::image_to_input(&picture, &spec);
                            drop(picture);
                            let (result, fallback) =
                                compute_with_fallback(&engine, on_gpu, |engine| {
                                    run_forward(engine, &input, label.clone())
                                });
                            (
                                Some(UserEvent::Forward(result.map_err(|e| format!("{e:#}")))),
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
                                Some(UserEvent::Cam(result.map_err(|e| format!("{e:#}")))),
                                fallback,
                            )
                        }
                        Job::Gradients {
                            input,
                            layer,
                            method,
                            from_channel,
                        } => {
                            let request = (&input, layer, method, from_channel);
                            let (result, fallback) =
                                compute_with_fallback(&engine, on_gpu, |engine| {
                                    let channel = (&rx, &proxy);
                                    stream_images(engine, request, &options, channel, &mut waiting)
                                });
                            match result {
                                Ok(_) => (None, fallback),
                                Err(e) => {
                                    (Some(UserEvent::GradientsFailed(format!("{e:#}"))), fallback)
                                }
                            }
                        }
                    };
                    if let Some(event) = event
                        && proxy.send_event(event).is_err()
                    {
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

/// What the compute thread does next: a request from the window, or the live feed's picture.
enum Next {
    Job(Job),
    Live(LivePicture),
}

/// Computes `request`'s images (input, layer, method, first channel) chunk by chunk, sending
/// each chunk (and occlusion progress) to the window and looking at the queue between them
/// ([`between_chunks`]); a request that stops the computation is left in `waiting`.
fn stream_images(
    engine: &Engine,
    (input, layer, method, from_channel): (&Arc<InputTensor>, usize, Method, usize),
    options: &ComputeOptions,
    (rx, proxy): (&Receiver<Job>, &EventLoopProxy<UserEvent>),
    waiting: &mut Option<Job>,
) -> anyhow::Result<ControlFlow<()>> {
    let mut send = |e| proxy.send_event(e).is_ok();
    let mut on_delivery = |d| {
        let event = match d {
            Delivery::Chunk(c) => UserEvent::GradientChunk(c),
            Delivery::Notice(message) => UserEvent::Notice(message),
            Delivery::Progress { done, total } => UserEvent::Progress(Progress {
                layer,
                method,
                done,
                total,
            }),
        };
        if !send(event) {
            return ControlFlow::Break(()); // the window is gone
        }
        between_chunks(engine, rx, &mut send, waiting, (input, layer, method))
    };
    compute_gradient_chunks(
        engine,
        input,
        (layer, method),
        from_channel,
        options,
        &mut on_delivery,
    )
}

/// Between two chunks of a layer's images: takes the requests queued meanwhile. A Grad-CAM
/// request runs at once (one short pass) and the layer goes on; any other request (another
/// layer or method, a new input) stops the layer and is kept in `waiting` to run next — unless
/// a request for this same layer and input came after it (or, during an occlusion sweep,
/// for any layer's occlusion: the sweep computes them all): then nothing waits and the
/// computation goes on.
/// `send` hands an event to the window (`false` once it is gone).
fn between_chunks(
    engine: &Engine,
    rx: &Receiver<Job>,
    send: &mut dyn FnMut(UserEvent) -> bool,
    waiting: &mut Option<Job>,
    (input, layer, method): (&Arc<InputTensor>, usize, Method),
) -> ControlFlow<()> {
    while let Ok(job) = rx.try_recv() {
        match job {
            // The feed's picture waits in its slot; `next_job` looks there.
            Job::Wake => {}
            Job::Cam {
                input,
                layer,
                class,
            } => {
                let cam = compute_cam(engine, &input, layer, class);
                if !send(UserEvent::Cam(cam.map_err(|e| format!("{e:#}")))) {
                    return ControlFlow::Break(());
                }
            }
            // This layer again (for any input when its images do not depend on it), or any
            // layer's occlusion during an occlusion sweep (it computes every layer's maps).
            Job::Gradients {
                input: ref other,
                layer: l,
                method: m,
                ..
            } if (Arc::ptr_eq(other, input) || !m.depends_on_input())
                && m == method
                && (l == layer || m == Method::Occlusion) =>
            {
                *waiting = None
            }
            newer => *waiting = Some(newer),
        }
    }
    if waiting.is_some() {
        ControlFlow::Break(())
    } else {
        ControlFlow::Continue(())
    }
}

/// Waits for work: of `waiting` (a request kept for later) and the requests queued now only
/// the newest counts (wake-ups from the feed are not requests), except that a request
/// followed only by Grad-CAM requests is kept in `waiting` to run after the newest Grad-CAM
/// (hovering a class must not lose the input or layer the user asked for). With no request,
/// the feed's newest picture. `None` once the window is gone.
fn next_job(
    rx: &Receiver<Job>,
    feed: Option<&LiveFeed>,
    waiting: &mut Option<Job>,
) -> Option<Next> {
    let mut job = waiting.take();
    // The newest request that only Grad-CAM requests came after.
    let mut behind_cam: Option<Job> = None;
    loop {
        // Block only when nothing waits: the feed sends a wake-up whenever its slot fills.
        let first = if job.is_some() || feed.is_some_and(LiveFeed::has_picture) {
            match rx.try_recv() {
                Ok(job) => Some(job),
                Err(TryRecvError::Empty) => None,
                Err(TryRecvError::Disconnected) => return None,
            }
        } else {
            Some(rx.recv().ok()?)
        };
        let queued = first
            .into_iter()
            .chain(std::iter::from_fn(|| rx.try_recv().ok()));
        for newer in queued {
            match (&newer, job.take()) {
                (Job::Wake, older) => job = older,
                (Job::Cam { .. }, older) => {
                    if let Some(older) = older.filter(|j| !matches!(j, Job::Cam { .. })) {
                        behind_cam = Some(older);
                    }
                    job = Some(newer);
                }
                (_, _) => {
                    behind_cam = None;
                    job = Some(newer);
                }
            }
        }
        if let Some(job) = job.take() {
            *waiting = behind_cam;
            return Some(Next::Job(job));
        }
        if let Some(live) = feed.and_then(LiveFeed::take) {
            return Some(Next::Live(live));
        }
    }
}

/// A picture from a live source, decoded only if the worker takes it (a camera delivers
/// frames faster than a forward pass runs; the ones replaced are never decoded).
pub(super) struct LivePicture {
    /// The input label (`webcam 0`).
    pub label: String,
    /// Converts the raw frame to RGB; the error becomes the notice.
    pub decode: Box<dyn FnOnce() -> Result<RgbImage, String> + Send>,
}

/// The newest picture of a live source, waiting for the worker: [`LiveFeed::publish`]
/// replaces it (the older one is dropped, never queued) and wakes the worker attached to
/// the feed; the worker takes it when it has nothing else to do.
pub(super) struct LiveFeed {
    state: Mutex<FeedState>,
}

#[derive(Default)]
struct FeedState {
    pending: Option<LivePicture>,
    /// The job channel of the worker that takes the pictures.
    wake: Option<Sender<Job>>,
    paused: bool,
}

// Only the webcam (a cargo feature) feeds it.
#[cfg_attr(not(feature = "webcam"), allow(dead_code))]
impl LiveFeed {
    pub(super) fn new() -> Arc<Self> {
        Arc::new(Self {
            state: Mutex::new(FeedState::default()),
        })
    }

    /// A poisoned lock only means a thread panicked while holding it; the slot is still
    /// consistent (every update is a single assignment).
    fn lock(&self) -> MutexGuard<'_, FeedState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Replaces the waiting picture with `picture`; wakes the worker when the slot was empty
    /// (when it was full, the worker has a wake-up pending already).
    pub(super) fn publish(&self, picture: LivePicture) {
        let mut state = self.lock();
        if state.pending.replace(picture).is_none() && !state.paused {
            wake(&state);
        }
    }

    /// Makes `jobs` the worker that takes the pictures (a new worker replaces the old one,
    /// whose channel then closes).
    fn attach(&self, jobs: Sender<Job>) {
        let mut state = self.lock();
        state.wake = Some(jobs);
        if state.pending.is_some() && !state.paused {
            wake(&state);
        }
    }

    /// Detaches the worker (the live source is gone), so its channel can close.
    pub(super) fn close(&self) {
        let mut state = self.lock();
        state.wake = None;
        state.pending = None;
    }

    /// While paused the worker takes nothing; the newest picture still replaces the older.
    pub(super) fn set_paused(&self, paused: bool) {
        let mut state = self.lock();
        state.paused = paused;
        if !paused && state.pending.is_some() {
            wake(&state);
        }
    }

    fn has_picture(&self) -> bool {
        let state = self.lock();
        state.pending.is_some() && !state.paused
    }

    fn take(&self) -> Option<LivePicture> {
        let mut state = self.lock();
        if state.paused {
            return None;
        }
        state.pending.take()
    }
}

fn wake(state: &FeedState) {
    if let Some(jobs) = &state.wake {
        let _ = jobs.send(Job::Wake);
    }
}

#[cfg(test)]
mod tests;
