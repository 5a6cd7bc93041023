//! Live camera input (`view --webcam N`), the first step of the viewer's data flow for a
//! webcam: a capture thread dequeues frames from `/dev/videoN` (V4L2, YUYV or MJPEG) as fast
//! as the camera delivers them and hands each to the worker's [`LiveFeed`], which keeps only
//! the newest; the compute worker converts the frame it takes to RGB (`convert`),
//! preprocesses it like any image (`model::preprocess::image_to_input`) and runs the forward
//! pass, whose maps the window then shows.
//!
//! Capture talks to the kernel directly through `libc`: `VIDIOC_QUERYCAP`, `VIDIOC_S_FMT`,
//! `VIDIOC_REQBUFS`/`QUERYBUF`/`QBUF`/`DQBUF` with `mmap`ed buffers, `VIDIOC_STREAMON`/
//! `STREAMOFF`. (The `v4l` crate's `v4l2-sys-mit` runs bindgen at build time and so needs
//! libclang, which a default machine lacks.) The struct layouts are those of 64-bit Linux and
//! are checked against the kernel's sizes at compile time; other targets get a clear error.
//!
//! There is no camera on the development machine or in CI, so capture itself is untested
//! here: the tests cover the pixel conversions, the ioctl numbers and layouts, and the error
//! paths that need no camera (a missing device, a file that is not a V4L2 device).
//!
//! Where the parts live: this file holds the frame types, the errors and the capture thread;
//! `convert` turns YUYV and MJPEG frames into RGB; `v4l2` is the Linux capture device (the
//! ioctls and the kernel's struct layouts). Other targets get a stub `Camera` here that
//! refuses to open.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use image::RgbImage;
use winit::event_loop::EventLoopProxy;

use super::worker::{LiveFeed, LivePicture, UserEvent};

mod convert;

pub use convert::{mjpeg_to_rgb, with_default_huffman_tables, yuyv_to_rgb};

/// Everything that can go wrong between the camera and an RGB picture.
#[derive(Debug, thiserror::Error)]
pub enum WebcamError {
    #[error("cannot open {path}: {error}")]
    Open { path: String, error: std::io::Error },
    /// An ioctl (or `poll`, `mmap`) the capture needs failed; `source` has the errno text.
    #[error("{path}: {call} failed: {error}")]
    Call {
        path: String,
        call: &'static str,
        error: std::io::Error,
    },
    #[error(
        "{path} ({card}, driver {driver}) cannot capture video with streaming I/O; a camera \
         often has a second node for metadata, try another index"
    )]
    NotACamera {
        path: String,
        driver: String,
        card: String,
    },
    #[error("{path} offers neither YUYV nor MJPEG (it proposed {offered})")]
    UnsupportedFormat { path: String, offered: String },
    #[error("{path}: the driver chose an unusable format: {reason}")]
    BadFormat { path: String, reason: String },
    #[error("{path}: the driver gave no capture buffers")]
    NoBuffers { path: String },
    #[error("{path}: the driver returned buffer {index}, but only {count} were mapped")]
    BadBuffer {
        path: String,
        index: u32,
        count: usize,
    },
    #[error("{path}: no frame for {seconds} s (is another program using the camera?)")]
    Stalled { path: String, seconds: u64 },
    #[error("a YUYV frame of {width}×{height}: {reason}")]
    BadYuyv {
        width: u32,
        height: u32,
        reason: String,
    },
    #[error("cannot decode an MJPEG frame: {0}")]
    Mjpeg(image::ImageError),
    #[error("webcam capture is only implemented on Linux (V4L2)")]
    Unsupported,
    #[error(
        "webcam capture on Linux is implemented for x86_64 and aarch64 (the V4L2 structs' \
         layouts), not {arch}"
    )]
    UnsupportedArch { arch: &'static str },
    #[error("cannot start the capture thread: {0}")]
    Thread(std::io::Error),
}

/// Largest frame side accepted from a driver or an MJPEG header (8K video is 7680 wide).
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
    /// One JPEG image per frame (often without Huffman tables, see [`mjpeg_to_rgb`]).
    Mjpeg { width: u32, height: u32 },
}

impl std::fmt::Display for FrameFormat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Yuyv { width, height, .. } => write!(f, "YUYV {width}×{height}"),
            Self::Mjpeg { width, height } => write!(f, "MJPEG {width}×{height}"),
        }
    }
}

/// One captured frame, copied out of the driver's buffer.
#[derive(Debug, Clone)]
pub struct Frame {
    pub format: FrameFormat,
    pub data: Vec<u8>,
}

impl Frame {
    /// The frame as 8-bit RGB.
    pub fn to_rgb(&self) -> Result<RgbImage, WebcamError> {
        match self.format {
            FrameFormat::Yuyv {
                width,
                height,
                stride,
            } => yuyv_to_rgb(&self.data, width, height, stride),
            FrameFormat::Mjpeg { .. } => mjpeg_to_rgb(&self.data),
        }
    }
}

/// `/dev/videoN`.
pub fn device_path(index: u32) -> PathBuf {
    PathBuf::from(format!("/dev/video{index}"))
}

/// The input label the viewer shows for camera `index`: `webcam /dev/video0`.
pub fn input_label(index: u32) -> String {
    format!("webcam {}", device_path(index).display())
}

/// How often the capture thread looks at its stop flag while no frame comes.
const POLL_INTERVAL: Duration = Duration::from_millis(100);

/// After this long without a frame, the notice says so (capture keeps waiting).
const STALL_WARNING: Duration = Duration::from_secs(5);

/// A running capture thread; dropping it stops the thread and waits for it (at most one
/// poll interval), which turns streaming off, unmaps the buffers and closes the device.
pub struct Capture {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    format: FrameFormat,
}

impl Capture {
    /// The format the camera delivers.
    pub fn format(&self) -> FrameFormat {
        self.format
    }
}

impl Drop for Capture {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Opens camera `index` (`/dev/videoN`) here, so a missing or unusable device is an error
/// at once, then captures on a thread: every frame goes to `on_frame`; an error ends the
/// thread after `on_error`, and a camera silent for a few seconds gets one `on_error`
/// ([`WebcamError::Stalled`]) while capture keeps waiting.
pub fn start(
    index: u32,
    on_frame: impl FnMut(Frame) + Send + 'static,
    on_error: impl FnMut(WebcamError) + Send + 'static,
) -> Result<Capture, WebcamError> {
    let camera = open(index)?;
    let format = camera.format;
    let stop = Arc::new(AtomicBool::new(false));
    let thread = std::thread::Builder::new()
        .name("convlens-webcam".into())
        .spawn({
            let stop = Arc::clone(&stop);
            move || capture_loop(camera, &stop, on_frame, on_error)
        })
        .map_err(WebcamError::Thread)?;
    Ok(Capture {
        stop,
        thread: Some(thread),
        format,
    })
}

/// Starts camera `index` for the viewer: each frame replaces the one waiting in `feed`
/// (converted to RGB on the worker, only if it takes it); capture errors become the notice.
pub(super) fn start_feed(
    index: u32,
    feed: Arc<LiveFeed>,
    proxy: EventLoopProxy<UserEvent>,
) -> Result<Capture, WebcamError> {
    let label = input_label(index);
    start(
        index,
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

fn capture_loop(
    mut camera: Camera,
    stop: &AtomicBool,
    mut on_frame: impl FnMut(Frame),
    mut on_error: impl FnMut(WebcamError),
) {
    let mut last_frame = Instant::now();
    let mut warned = false;
    while !stop.load(Ordering::Relaxed) {
        match camera.next_frame(POLL_INTERVAL) {
            Ok(Some(frame)) => {
                last_frame = Instant::now();
                warned = false;
                on_frame(frame);
            }
            Ok(None) => {
                if !warned && last_frame.elapsed() >= STALL_WARNING {
                    warned = true;
                    on_error(WebcamError::Stalled {
                        path: camera.path.clone(),
                        seconds: STALL_WARNING.as_secs(),
                    });
                }
            }
            Err(e) => {
                on_error(e);
                break;
            }
        }
    }
    // `camera` drops here: streaming off, buffers unmapped, device closed.
}

/// Opens and starts camera `index`.
fn open(index: u32) -> Result<Camera, WebcamError> {
    Camera::open(&device_path(index))
}

#[cfg(all(
    target_os = "linux",
    any(target_arch = "x86_64", target_arch = "aarch64")
))]
use v4l2::Camera;

#[cfg(all(
    target_os = "linux",
    any(target_arch = "x86_64", target_arch = "aarch64")
))]
mod v4l2;

/// Other targets: the same interface, refusing to open.
#[cfg(not(all(
    target_os = "linux",
    any(target_arch = "x86_64", target_arch = "aarch64")
)))]
struct Camera {
    path: String,
    format: FrameFormat,
}

#[cfg(not(all(
    target_os = "linux",
    any(target_arch = "x86_64", target_arch = "aarch64")
)))]
impl Camera {
    fn open(_path: &std::path::Path) -> Result<Self, WebcamError> {
        if cfg!(target_os = "linux") {
            Err(WebcamError::UnsupportedArch {
                arch: std::env::consts::ARCH,
            })
        } else {
            Err(WebcamError::Unsupported)
        }
    }

    fn next_frame(&mut self, _timeout: Duration) -> Result<Option<Frame>, WebcamError> {
        Err(WebcamError::Unsupported)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// No camera exists on the development machine or in CI: this checks only that a
    /// missing device is a clear error (not a panic), on every platform.
    #[test]
    fn a_missing_device_is_a_clear_error() {
        assert_eq!(input_label(0), "webcam /dev/video0");
        let result = start(99, |_| {}, |_| {});
        let err = result.err().unwrap();
        let text = err.to_string();
        if cfg!(all(
            target_os = "linux",
            any(target_arch = "x86_64", target_arch = "aarch64")
        )) {
            assert!(
                matches!(&err, WebcamError::Open { path, .. } if path == "/dev/video99"),
                "{err:?}"
            );
            assert!(text.starts_with("cannot open /dev/video99: "), "{text}");
        } else if !cfg!(target_os = "linux") {
            assert_eq!(text, "webcam capture is only implemented on Linux (V4L2)");
        }
    }
}
