//! Live camera input (`view --webcam N|NAME`), the first step of the viewer's data flow for a
//! webcam: a capture thread takes frames from the camera through
//! [nokhwa](https://crates.io/crates/nokhwa) (AVFoundation on macOS, Media Foundation on
//! Windows, V4L2 on Linux) as fast as it delivers them and hands each to the worker's
//! [`LiveFeed`], which keeps only the newest; the compute worker converts the frame it takes
//! to RGB (`convert`), preprocesses it like any image (`model::preprocess::image_to_input`)
//! and runs the forward pass, whose maps the window then shows.
//!
//! There is no camera on the development machine or in CI, so capture itself is untested
//! here: the tests cover the pixel conversions, the choice of camera by index or name
//! ([`super::camera_choice`]), listing with no cameras, and opening a camera that does not
//! exist.
//!
//! Where the parts live: this file holds the frame types, the errors and the capture thread;
//! `convert` turns YUYV, NV12, MJPEG, grey and packed RGB/BGR frames into RGB; `device`
//! talks to nokhwa.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use image::RgbImage;
use winit::event_loop::EventLoopProxy;

use super::camera_choice::{CameraListing, WebcamRequest};
use super::worker::{LiveFeed, LivePicture, UserEvent};

mod convert;
mod device;

pub use convert::{
    mjpeg_to_rgb, nv12_to_rgb, packed_to_rgb, with_default_huffman_tables, yuyv_to_rgb,
};

/// Everything that can go wrong between the camera and an RGB picture.
#[derive(Debug, thiserror::Error)]
pub enum WebcamError {
    /// Listing cameras failed (the platform's camera API refused).
    #[error("cannot list cameras: {0}")]
    List(String),
    #[error("{0}")]
    Choice(String),
    /// Opening or starting camera `index` failed; `detail` is the backend's reason.
    #[error("cannot open camera {index}: {detail}")]
    Open { index: u32, detail: String },
    /// Taking a frame failed.
    #[error("camera {index}: {detail}")]
    Frame { index: u32, detail: String },
    #[error("camera {index}: no frame for {seconds} s (is another program using the camera?)")]
    Stalled { index: u32, seconds: u64 },
    #[error("a {format} frame of {width}×{height}: {reason}")]
    BadFrame {
        format: &'static str,
        width: u32,
        height: u32,
        reason: String,
    },
    #[error("cannot decode an MJPEG frame: {0}")]
    Mjpeg(String),
    #[error("cannot start the capture thread: {0}")]
    Thread(std::io::Error),
    #[error("the capture thread of camera {index} ended before the camera opened")]
    ThreadEnded { index: u32 },
}

/// Largest frame side accepted from a camera or an MJPEG header (8K video is 7680 wide).
const MAX_SIDE: u32 = 8192;

/// How a frame's bytes are laid out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameFormat {
    /// Packed 4:2:2, `Y0 U Y1 V` per two pixels; rows `stride` bytes apart (≥ 2 × width).
    Yuyv {
        width: u32,
        height: u32,
        stride: usize,
    },
    /// A Y plane, then interleaved `U V` at half resolution (4:2:0).
    Nv12 { width: u32, height: u32 },
    /// One JPEG image per frame (often without Huffman tables, see [`mjpeg_to_rgb`]).
    Mjpeg { width: u32, height: u32 },
    /// 8-bit grey.
    Gray { width: u32, height: u32 },
    /// Packed 8-bit RGB.
    Rgb { width: u32, height: u32 },
    /// Packed 8-bit BGR.
    Bgr { width: u32, height: u32 },
}

impl std::fmt::Display for FrameFormat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (name, w, h) = match *self {
            Self::Yuyv { width, height, .. } => ("YUYV", width, height),
            Self::Nv12 { width, height } => ("NV12", width, height),
            Self::Mjpeg { width, height } => ("MJPEG", width, height),
            Self::Gray { width, height } => ("grey", width, height),
            Self::Rgb { width, height } => ("RGB", width, height),
            Self::Bgr { width, height } => ("BGR", width, height),
        };
        write!(f, "{name} {w}×{h}")
    }
}

/// One captured frame, copied out of the camera's buffer.
#[derive(Debug, Clone)]
pub struct Frame {
    pub format: FrameFormat,
    pub data: Vec<u8>,
}

impl Frame {
    /// The frame as 8-bit RGB.
    pub fn to_rgb(&self) -> Result<RgbImage, WebcamError> {
        use convert::Packing;
        match self.format {
            FrameFormat::Yuyv {
                width,
                height,
                stride,
            } => yuyv_to_rgb(&self.data, width, height, stride),
            FrameFormat::Nv12 { width, height } => nv12_to_rgb(&self.data, width, height),
            FrameFormat::Mjpeg { .. } => mjpeg_to_rgb(&self.data),
            FrameFormat::Gray { width, height } => {
                packed_to_rgb(&self.data, width, height, Packing::Gray)
            }
            FrameFormat::Rgb { width, height } => {
                packed_to_rgb(&self.data, width, height, Packing::Rgb)
            }
            FrameFormat::Bgr { width, height } => {
                packed_to_rgb(&self.data, width, height, Packing::Bgr)
            }
        }
    }
}

/// The cameras the platform reports (an empty list when there are none).
pub fn list_cameras() -> Result<Vec<CameraListing>, WebcamError> {
    device::list()
}

/// The input label the viewer shows for camera `index`: `webcam 0`.
pub fn input_label(index: u32) -> String {
    format!("webcam {index}")
}

/// How often the watchdog looks at the time of the last frame and its stop flag.
const POLL_INTERVAL: Duration = Duration::from_millis(100);

/// After this long without a frame, the notice says so (capture keeps waiting).
const STALL_WARNING: Duration = Duration::from_secs(5);

/// A running capture; dropping it stops the watchdog at once and the capture thread after
/// its next frame (a camera API may block while it waits for one), which closes the camera.
pub struct Capture {
    stop: Arc<AtomicBool>,
    watchdog: Option<JoinHandle<()>>,
    format: FrameFormat,
    index: u32,
}

impl Capture {
    /// The format the camera delivers.
    pub fn format(&self) -> FrameFormat {
        self.format
    }

    /// The camera's index.
    pub fn index(&self) -> u32 {
        self.index
    }
}

impl Drop for Capture {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.watchdog.take() {
            let _ = thread.join();
        }
    }
}

type ErrorSink = Arc<Mutex<Box<dyn FnMut(WebcamError) + Send>>>;

/// Opens the camera `request` names (on the capture thread: some platforms' camera objects
/// must stay on the thread that made them; an unusable camera is an error here at once),
/// then captures: every frame goes to `on_frame`; an error ends capture after `on_error`,
/// and a camera silent for a few seconds gets one `on_error` ([`WebcamError::Stalled`])
/// while capture keeps waiting.
pub fn start(
    request: &WebcamRequest,
    mut on_frame: impl FnMut(Frame) + Send + 'static,
    on_error: impl FnMut(WebcamError) + Send + 'static,
) -> Result<Capture, WebcamError> {
    let index = device::resolve(&request.camera)?;
    let size_px = request.size_px;
    let stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    // Milliseconds after `started` of the last frame.
    let last_frame_ms = Arc::new(AtomicU64::new(0));
    let on_error: ErrorSink = Arc::new(Mutex::new(Box::new(on_error)));
    let report = |sink: &ErrorSink, e: WebcamError| {
        if let Ok(mut f) = sink.lock() {
            f(e);
        }
    };
    let (opened_tx, opened_rx) = mpsc::sync_channel::<Result<FrameFormat, WebcamError>>(1);
    std::thread::Builder::new()
        .name("convlens-webcam".into())
        .spawn({
            let (stop, last_frame_ms, on_error) = (
                Arc::clone(&stop),
                Arc::clone(&last_frame_ms),
                Arc::clone(&on_error),
            );
            move || {
                let mut camera = match device::Camera::open(index, size_px) {
                    Ok(camera) => {
                        let _ = opened_tx.send(Ok(camera.format()));
                        camera
                    }
                    Err(e) => {
                        let _ = opened_tx.send(Err(e));
                        return;
                    }
                };
                while !stop.load(Ordering::Relaxed) {
                    match camera.next_frame() {
                        Ok(frame) => {
                            let ms = started.elapsed().as_millis() as u64;
                            last_frame_ms.store(ms, Ordering::Relaxed);
                            on_frame(frame);
                        }
                        Err(e) => {
                            report(&on_error, e);
                            break;
                        }
                    }
                }
                // `camera` drops here: the stream stops and the device closes.
            }
        })
        .map_err(WebcamError::Thread)?;
    let format = opened_rx
        .recv()
        .map_err(|_| WebcamError::ThreadEnded { index })??;
    let watchdog = std::thread::Builder::new()
        .name("convlens-webcam-watch".into())
        .spawn({
            let (stop, last_frame_ms) = (Arc::clone(&stop), Arc::clone(&last_frame_ms));
            move || {
                let mut warned_at = None;
                while !stop.load(Ordering::Relaxed) {
                    std::thread::sleep(POLL_INTERVAL);
                    let last = last_frame_ms.load(Ordering::Relaxed);
                    let silent = started
                        .elapsed()
                        .saturating_sub(Duration::from_millis(last));
                    if silent >= STALL_WARNING && warned_at != Some(last) {
                        warned_at = Some(last);
                        let seconds = STALL_WARNING.as_secs();
                        report(&on_error, WebcamError::Stalled { index, seconds });
                    }
                }
            }
        })
        .map_err(WebcamError::Thread)?;
    Ok(Capture {
        stop,
        watchdog: Some(watchdog),
        format,
        index,
    })
}

/// Starts the camera `request` names for the viewer: each frame replaces the one waiting in
/// `feed` (converted to RGB on the worker, only if it takes it); capture errors become the
/// notice.
pub(super) fn start_feed(
    request: &WebcamRequest,
    feed: Arc<LiveFeed>,
    proxy: EventLoopProxy<UserEvent>,
) -> Result<Capture, WebcamError> {
    let label = match request.camera {
        super::camera_choice::CameraSelector::Index(i) => input_label(i),
        super::camera_choice::CameraSelector::Name(ref name) => format!("webcam {name}"),
    };
    start(
        request,
        move |frame| {
            feed.publish(LivePicture {
                label: label.clone(),
                decode: Box::new(move || frame.to_rgb().map_err(|e| e.to_string())),
            });
        },
        move |e| {
            let _ = proxy.send_event(UserEvent::Notice(format!("webcam: {e}")));
        },
    )
}

#[cfg(test)]
mod tests {
    use super::super::camera_choice::CameraSelector;
    use super::*;

    /// No camera exists on the development machine or in CI: listing gives a list (empty
    /// here) or a clear error, and a camera that does not exist is a clear error, not a
    /// panic or a hang.
    #[test]
    fn a_missing_camera_is_a_clear_error() {
        assert_eq!(input_label(0), "webcam 0");
        match list_cameras() {
            Ok(cameras) => assert!(cameras.iter().all(|c| c.index != 99)),
            Err(e) => assert!(e.to_string().starts_with("cannot list cameras: "), "{e}"),
        }
        let request = WebcamRequest {
            camera: CameraSelector::Index(99),
            size_px: None,
        };
        let err = start(&request, |_| {}, |_| {}).err().expect("no camera 99");
        assert!(
            matches!(&err, WebcamError::Open { index: 99, .. }),
            "{err:?}"
        );
        assert!(
            err.to_string().starts_with("cannot open camera 99: "),
            "{err}"
        );
        let by_name = WebcamRequest {
            camera: CameraSelector::Name("no such camera anywhere".into()),
            size_px: None,
        };
        let err = start(&by_name, |_| {}, |_| {}).err().expect("no such name");
        assert!(
            err.to_string().contains("no camera's name contains"),
            "{err}"
        );
    }
}
