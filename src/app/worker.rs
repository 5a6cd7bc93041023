//! The compute worker of the viewer window: forward passes, per-filter images and Grad-CAM
//! maps run on their own thread, the newest request wins, results (and a switch to the CPU
//! after a GPU failure) come back to the event loop as [`UserEvent`]s. A live input (the
//! webcam) reaches it through a [`LiveFeed`]: one slot holding only the newest picture,
//! taken whenever the worker has no request from the window, so frames are never queued and
//! the frame rate follows the speed of the forward pass.

use std::path::PathBuf;
use std::sync::mpsc::{Receiver, Sender, TryRecvError, channel};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use image::RgbImage;

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
    /// Starts the compute thread; with a `feed`, it also runs the feed's newest picture
    /// whenever no request from the window is waiting.
    pub(super) fn spawn(
        engine: Arc<Engine>,
        on_gpu: bool,
        spec: InputSpec,
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
                while let Some(job) = next_job(&rx, feed.as_deref()) {
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
                                UserEvent::Forward(result.map_err(|e| format!("{e:#}"))),
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

/// What the compute thread does next: a request from the window, or the live feed's picture.
enum Next {
    Job(Job),
    Live(LivePicture),
}

/// Waits for work: of the requests queued now only the newest counts (wake-ups from the feed
/// are not requests); with none, the feed's newest picture. `None` once the window is gone.
fn next_job(rx: &Receiver<Job>, feed: Option<&LiveFeed>) -> Option<Next> {
    loop {
        // Block only when no picture waits: the feed sends a wake-up whenever its slot fills.
        let first = if feed.is_some_and(LiveFeed::has_picture) {
            match rx.try_recv() {
                Ok(job) => Some(job),
                Err(TryRecvError::Empty) => None,
                Err(TryRecvError::Disconnected) => return None,
            }
        } else {
            Some(rx.recv().ok()?)
        };
        let mut job = first.filter(|j| !matches!(j, Job::Wake));
        while let Ok(newer) = rx.try_recv() {
            if !matches!(newer, Job::Wake) {
                job = Some(newer);
            }
        }
        if let Some(job) = job {
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
    /// The input label (`webcam /dev/video0`).
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
mod tests {
    use super::*;

    fn picture(label: &str, value: u8) -> LivePicture {
        tracked(label, value, &Arc::new(()))
    }

    /// A picture holding a clone of `token`, so the test can count the pictures alive.
    fn tracked(label: &str, value: u8, token: &Arc<()>) -> LivePicture {
        let token = Arc::clone(token);
        LivePicture {
            label: label.into(),
            decode: Box::new(move || {
                drop(token);
                Ok(RgbImage::from_pixel(2, 2, image::Rgb([value; 3])))
            }),
        }
    }

    fn next_label(rx: &Receiver<Job>, feed: &LiveFeed) -> String {
        match next_job(rx, Some(feed)) {
            Some(Next::Live(p)) => {
                let img = (p.decode)().unwrap();
                format!("{} {}", p.label, img.get_pixel(0, 0)[0])
            }
            Some(Next::Job(Job::Input(path))) => format!("input {}", path.display()),
            Some(Next::Job(_)) => "other job".into(),
            None => "closed".into(),
        }
    }

    #[test]
    fn the_feed_keeps_only_the_newest_picture_and_wakes_once() {
        let feed = LiveFeed::new();
        let (tx, rx) = channel();
        feed.attach(tx);
        let token = Arc::new(());
        for value in 1..=3 {
            feed.publish(tracked("cam", value, &token));
        }
        // The two older pictures were dropped, not queued: only the newest holds the token.
        assert_eq!(Arc::strong_count(&token), 2);
        // One wake-up for the empty → full change, none for the replacements.
        assert_eq!(rx.try_iter().count(), 1);
        feed.publish(picture("cam", 4));
        assert_eq!(next_label(&rx, &feed), "cam 4");
        assert!(feed.take().is_none());
    }

    #[test]
    fn window_requests_go_before_live_pictures() {
        let feed = LiveFeed::new();
        let (tx, rx) = channel();
        feed.attach(tx.clone());
        feed.publish(picture("cam", 7));
        tx.send(Job::Input("a.png".into())).unwrap();
        tx.send(Job::Input("b.png".into())).unwrap();
        // The newest request wins over the older one and over the waiting picture …
        assert_eq!(next_label(&rx, &feed), "input b.png");
        // … which is taken next, although its wake-up was consumed with the requests.
        assert_eq!(next_label(&rx, &feed), "cam 7");
    }

    #[test]
    fn a_paused_feed_gives_nothing_until_resumed() {
        let feed = LiveFeed::new();
        let (tx, rx) = channel();
        feed.attach(tx);
        feed.set_paused(true);
        feed.publish(picture("cam", 1));
        feed.publish(picture("cam", 2));
        assert!(!feed.has_picture());
        assert!(feed.take().is_none());
        assert_eq!(rx.try_iter().count(), 0);
        feed.set_paused(false);
        assert_eq!(next_label(&rx, &feed), "cam 2");
    }

    #[test]
    fn a_new_worker_takes_over_the_feed_and_the_old_channel_closes() {
        let feed = LiveFeed::new();
        let (old_tx, old_rx) = channel();
        feed.attach(old_tx);
        feed.publish(picture("cam", 1));
        let (new_tx, new_rx) = channel();
        feed.attach(new_tx);
        // The old worker's channel has no sender left once the feed let go of it.
        let _ = old_rx.try_iter().count();
        assert!(matches!(old_rx.try_recv(), Err(TryRecvError::Disconnected)));
        assert_eq!(next_label(&new_rx, &feed), "cam 1");
        feed.close();
        assert!(matches!(new_rx.try_recv(), Err(TryRecvError::Disconnected)));
        assert_eq!(next_label(&new_rx, &feed), "closed");
    }
}
