//! Live camera input (`view --webcam N`), the first step of the viewer's data flow for a
//! webcam: a capture thread dequeues frames from `/dev/videoN` (V4L2, YUYV or MJPEG) as fast
//! as the camera delivers them and hands each to the worker's [`LiveFeed`], which keeps only
//! the newest; the compute worker converts the frame it takes to RGB (the functions here),
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

use std::borrow::Cow;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use image::RgbImage;
use winit::event_loop::EventLoopProxy;

use super::worker::{LiveFeed, LivePicture, UserEvent};

/// Everything that can go wrong between the camera and an RGB picture.
#[derive(Debug, thiserror::Error)]
pub enum WebcamError {
    #[error("cannot open {path}: {source}")]
    Open {
        path: String,
        source: std::io::Error,
    },
    /// An ioctl (or `poll`, `mmap`) the capture needs failed; `source` has the errno text.
    #[error("{path}: {call} failed: {source}")]
    Call {
        path: String,
        call: &'static str,
        source: std::io::Error,
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

/// BT.601 limited range ("studio swing": Y in 16..=235, Cb/Cr in 16..=240 around 128) to
/// RGB, in the usual 8-bit fixed point: `R = 1.164 (Y−16) + 1.596 (V−128)`,
/// `G = 1.164 (Y−16) − 0.392 (U−128) − 0.813 (V−128)`, `B = 1.164 (Y−16) + 2.017 (U−128)`,
/// each coefficient × 256 and rounded.
fn bt601_limited_to_rgb(y: u8, u: u8, v: u8) -> [u8; 3] {
    let c = 298 * (i32::from(y) - 16);
    let d = i32::from(u) - 128;
    let e = i32::from(v) - 128;
    let clamp = |x: i32| ((x + 128) >> 8).clamp(0, 255) as u8;
    [
        clamp(c + 409 * e),
        clamp(c - 100 * d - 208 * e),
        clamp(c + 516 * d),
    ]
}

/// Converts a packed YUYV (4:2:2) frame to RGB with BT.601 limited-range coefficients.
/// `stride` is the driver's `bytesperline` (≥ 2 × width; padding at the end of each row is
/// skipped). An odd width is refused (two pixels share each U and V); the last row may end
/// right after its pixels.
pub fn yuyv_to_rgb(
    data: &[u8],
    width: u32,
    height: u32,
    stride: usize,
) -> Result<RgbImage, WebcamError> {
    let bad = |reason: String| WebcamError::BadYuyv {
        width,
        height,
        reason,
    };
    if width == 0 || height == 0 {
        return Err(bad("the frame is empty".into()));
    }
    if width > MAX_SIDE || height > MAX_SIDE {
        return Err(bad(format!("larger than {MAX_SIDE} pixels per side")));
    }
    if !width.is_multiple_of(2) {
        return Err(bad(
            "the width is odd, but YUYV stores pixels in pairs sharing U and V".into(),
        ));
    }
    let row = width as usize * 2;
    if stride < row {
        return Err(bad(format!(
            "the row stride of {stride} bytes is shorter than a row ({row} bytes)"
        )));
    }
    let needed = stride
        .checked_mul(height as usize - 1)
        .and_then(|n| n.checked_add(row))
        .unwrap_or(usize::MAX);
    if data.len() < needed {
        return Err(bad(format!(
            "{} bytes, but the frame needs {needed}",
            data.len()
        )));
    }
    let mut rgb = vec![0u8; width as usize * height as usize * 3];
    for (src, dst) in data
        .chunks(stride)
        .zip(rgb.chunks_exact_mut(width as usize * 3))
    {
        for (yuyv, out) in src[..row].chunks_exact(4).zip(dst.chunks_exact_mut(6)) {
            let &[y0, u, y1, v] = yuyv else {
                continue;
            };
            out[..3].copy_from_slice(&bt601_limited_to_rgb(y0, u, v));
            out[3..].copy_from_slice(&bt601_limited_to_rgb(y1, u, v));
        }
    }
    RgbImage::from_raw(width, height, rgb)
        .ok_or_else(|| bad("the RGB buffer has the wrong size".into()))
}

/// Decodes an MJPEG frame (a JPEG image) to RGB. Many UVC cameras leave the Huffman tables
/// out of their frames and rely on the standard ones (JPEG Annex K.3, required by the AVI
/// MJPEG format); such a frame gets those tables inserted before decoding.
pub fn mjpeg_to_rgb(data: &[u8]) -> Result<RgbImage, WebcamError> {
    let jpeg = with_default_huffman_tables(data);
    let mut reader = image::ImageReader::with_format(
        std::io::Cursor::new(jpeg.as_ref()),
        image::ImageFormat::Jpeg,
    );
    let mut limits = image::Limits::default();
    limits.max_image_width = Some(MAX_SIDE);
    limits.max_image_height = Some(MAX_SIDE);
    limits.max_alloc = Some(512 << 20);
    reader.limits(limits);
    Ok(reader.decode().map_err(WebcamError::Mjpeg)?.to_rgb8())
}

/// `jpeg` with the standard Huffman tables inserted after its SOI marker when its first scan
/// starts without any DHT segment; otherwise (tables present, or not a JPEG the walk
/// understands: left to the decoder to report) unchanged.
pub fn with_default_huffman_tables(jpeg: &[u8]) -> Cow<'_, [u8]> {
    if !jpeg.starts_with(&[0xFF, 0xD8]) || !lacks_huffman_tables(jpeg) {
        return Cow::Borrowed(jpeg);
    }
    let mut out = Vec::with_capacity(jpeg.len() + 420);
    out.extend_from_slice(&jpeg[..2]);
    out.extend_from_slice(&default_dht_segment());
    out.extend_from_slice(&jpeg[2..]);
    Cow::Owned(out)
}

/// Whether the marker segments after SOI reach the first scan (SOS) without a DHT.
fn lacks_huffman_tables(jpeg: &[u8]) -> bool {
    let mut i = 2;
    loop {
        // A marker is 0xFF (any number of fill 0xFF bytes) and a code.
        while jpeg.get(i) == Some(&0xFF) && jpeg.get(i + 1) == Some(&0xFF) {
            i += 1;
        }
        let (Some(0xFF), Some(&code)) = (jpeg.get(i), jpeg.get(i + 1)) else {
            return false;
        };
        match code {
            0xC4 => return false,         // DHT
            0xDA => return true,          // SOS with no DHT before it
            0xD9 => return false,         // EOI: no scan at all
            0x01 | 0xD0..=0xD7 => i += 2, // markers without a length
            _ => {
                let Some(&[hi, lo]) = jpeg.get(i + 2..i + 4) else {
                    return false;
                };
                let len = usize::from(u16::from_be_bytes([hi, lo]));
                if len < 2 {
                    return false;
                }
                i += 2 + len;
            }
        }
    }
}

// JPEG Annex K.3, tables K.3–K.6: code counts per length 1..=16, then the symbols.
const DC_LUMA_BITS: [u8; 16] = [0, 1, 5, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0];
const DC_CHROMA_BITS: [u8; 16] = [0, 3, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0];
const DC_VALUES: [u8; 12] = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11];
const AC_LUMA_BITS: [u8; 16] = [0, 2, 1, 3, 3, 2, 4, 3, 5, 5, 4, 4, 0, 0, 1, 0x7D];
const AC_LUMA_VALUES: [u8; 162] = [
    0x01, 0x02, 0x03, 0x00, 0x04, 0x11, 0x05, 0x12, 0x21, 0x31, 0x41, 0x06, 0x13, 0x51, 0x61, 0x07,
    0x22, 0x71, 0x14, 0x32, 0x81, 0x91, 0xA1, 0x08, 0x23, 0x42, 0xB1, 0xC1, 0x15, 0x52, 0xD1, 0xF0,
    0x24, 0x33, 0x62, 0x72, 0x82, 0x09, 0x0A, 0x16, 0x17, 0x18, 0x19, 0x1A, 0x25, 0x26, 0x27, 0x28,
    0x29, 0x2A, 0x34, 0x35, 0x36, 0x37, 0x38, 0x39, 0x3A, 0x43, 0x44, 0x45, 0x46, 0x47, 0x48, 0x49,
    0x4A, 0x53, 0x54, 0x55, 0x56, 0x57, 0x58, 0x59, 0x5A, 0x63, 0x64, 0x65, 0x66, 0x67, 0x68, 0x69,
    0x6A, 0x73, 0x74, 0x75, 0x76, 0x77, 0x78, 0x79, 0x7A, 0x83, 0x84, 0x85, 0x86, 0x87, 0x88, 0x89,
    0x8A, 0x92, 0x93, 0x94, 0x95, 0x96, 0x97, 0x98, 0x99, 0x9A, 0xA2, 0xA3, 0xA4, 0xA5, 0xA6, 0xA7,
    0xA8, 0xA9, 0xAA, 0xB2, 0xB3, 0xB4, 0xB5, 0xB6, 0xB7, 0xB8, 0xB9, 0xBA, 0xC2, 0xC3, 0xC4, 0xC5,
    0xC6, 0xC7, 0xC8, 0xC9, 0xCA, 0xD2, 0xD3, 0xD4, 0xD5, 0xD6, 0xD7, 0xD8, 0xD9, 0xDA, 0xE1, 0xE2,
    0xE3, 0xE4, 0xE5, 0xE6, 0xE7, 0xE8, 0xE9, 0xEA, 0xF1, 0xF2, 0xF3, 0xF4, 0xF5, 0xF6, 0xF7, 0xF8,
    0xF9, 0xFA,
];
const AC_CHROMA_BITS: [u8; 16] = [0, 2, 1, 2, 4, 4, 3, 4, 7, 5, 4, 4, 0, 1, 2, 0x77];
const AC_CHROMA_VALUES: [u8; 162] = [
    0x00, 0x01, 0x02, 0x03, 0x11, 0x04, 0x05, 0x21, 0x31, 0x06, 0x12, 0x41, 0x51, 0x07, 0x61, 0x71,
    0x13, 0x22, 0x32, 0x81, 0x08, 0x14, 0x42, 0x91, 0xA1, 0xB1, 0xC1, 0x09, 0x23, 0x33, 0x52, 0xF0,
    0x15, 0x62, 0x72, 0xD1, 0x0A, 0x16, 0x24, 0x34, 0xE1, 0x25, 0xF1, 0x17, 0x18, 0x19, 0x1A, 0x26,
    0x27, 0x28, 0x29, 0x2A, 0x35, 0x36, 0x37, 0x38, 0x39, 0x3A, 0x43, 0x44, 0x45, 0x46, 0x47, 0x48,
    0x49, 0x4A, 0x53, 0x54, 0x55, 0x56, 0x57, 0x58, 0x59, 0x5A, 0x63, 0x64, 0x65, 0x66, 0x67, 0x68,
    0x69, 0x6A, 0x73, 0x74, 0x75, 0x76, 0x77, 0x78, 0x79, 0x7A, 0x82, 0x83, 0x84, 0x85, 0x86, 0x87,
    0x88, 0x89, 0x8A, 0x92, 0x93, 0x94, 0x95, 0x96, 0x97, 0x98, 0x99, 0x9A, 0xA2, 0xA3, 0xA4, 0xA5,
    0xA6, 0xA7, 0xA8, 0xA9, 0xAA, 0xB2, 0xB3, 0xB4, 0xB5, 0xB6, 0xB7, 0xB8, 0xB9, 0xBA, 0xC2, 0xC3,
    0xC4, 0xC5, 0xC6, 0xC7, 0xC8, 0xC9, 0xCA, 0xD2, 0xD3, 0xD4, 0xD5, 0xD6, 0xD7, 0xD8, 0xD9, 0xDA,
    0xE2, 0xE3, 0xE4, 0xE5, 0xE6, 0xE7, 0xE8, 0xE9, 0xEA, 0xF2, 0xF3, 0xF4, 0xF5, 0xF6, 0xF7, 0xF8,
    0xF9, 0xFA,
];

const fn code_count(bits: &[u8; 16]) -> usize {
    let mut n = 0;
    let mut i = 0;
    while i < 16 {
        n += bits[i] as usize;
        i += 1;
    }
    n
}
const _: () = assert!(code_count(&DC_LUMA_BITS) == DC_VALUES.len());
const _: () = assert!(code_count(&DC_CHROMA_BITS) == DC_VALUES.len());
const _: () = assert!(code_count(&AC_LUMA_BITS) == AC_LUMA_VALUES.len());
const _: () = assert!(code_count(&AC_CHROMA_BITS) == AC_CHROMA_VALUES.len());

/// One DHT segment with the four standard tables (DC 0/1, AC 0/1): 420 bytes.
fn default_dht_segment() -> Vec<u8> {
    let tables: [(u8, &[u8; 16], &[u8]); 4] = [
        (0x00, &DC_LUMA_BITS, &DC_VALUES),
        (0x01, &DC_CHROMA_BITS, &DC_VALUES),
        (0x10, &AC_LUMA_BITS, &AC_LUMA_VALUES),
        (0x11, &AC_CHROMA_BITS, &AC_CHROMA_VALUES),
    ];
    let len: usize = 2 + tables
        .iter()
        .map(|(_, b, v)| 1 + b.len() + v.len())
        .sum::<usize>();
    let mut seg = vec![0xFF, 0xC4];
    seg.extend_from_slice(&(len as u16).to_be_bytes());
    for (class_id, bits, values) in tables {
        seg.push(class_id);
        seg.extend_from_slice(bits);
        seg.extend_from_slice(values);
    }
    seg
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

/// The V4L2 capture device, through `libc` ioctls on 64-bit Linux.
#[cfg(all(
    target_os = "linux",
    any(target_arch = "x86_64", target_arch = "aarch64")
))]
mod v4l2 {
    use std::fs::{File, OpenOptions};
    use std::io;
    use std::mem::{offset_of, size_of};
    use std::os::fd::AsRawFd;
    use std::os::unix::fs::OpenOptionsExt;
    use std::path::Path;
    use std::time::Duration;

    use super::{Frame, FrameFormat, MAX_SIDE, WebcamError};

    /// The size asked of the camera: plenty for a model input of a few hundred pixels, and
    /// a mode nearly every webcam has. The driver answers with the nearest it supports.
    const REQUESTED_SIZE: [u32; 2] = [640, 480];

    // --- The kernel's structs (include/uapi/linux/videodev2.h), LP64 layout. ---

    /// `struct v4l2_capability`.
    #[repr(C)]
    pub(super) struct Capability {
        pub driver: [u8; 16],
        pub card: [u8; 32],
        pub bus_info: [u8; 32],
        pub version: u32,
        pub capabilities: u32,
        pub device_caps: u32,
        pub reserved: [u32; 3],
    }

    /// `struct v4l2_pix_format`.
    #[repr(C)]
    #[derive(Clone, Copy)]
    pub(super) struct PixFormat {
        pub width: u32,
        pub height: u32,
        pub pixelformat: u32,
        pub field: u32,
        pub bytesperline: u32,
        pub sizeimage: u32,
        pub colorspace: u32,
        pub priv_: u32,
        pub flags: u32,
        pub ycbcr_enc: u32,
        pub quantization: u32,
        pub xfer_func: u32,
    }

    /// `struct v4l2_format`: `type`, then a 200-byte union aligned to 8 (it holds pointers
    /// in `struct v4l2_window`), of which capture uses `pix`.
    #[repr(C, align(8))]
    pub(super) struct Format {
        pub type_: u32,
        pub _pad: u32,
        pub pix: PixFormat,
        pub _rest_of_union: [u8; 200 - size_of::<PixFormat>()],
    }

    /// `struct v4l2_requestbuffers`.
    #[repr(C)]
    pub(super) struct RequestBuffers {
        pub count: u32,
        pub type_: u32,
        pub memory: u32,
        pub capabilities: u32,
        pub flags: u8,
        pub reserved: [u8; 3],
    }

    /// `struct v4l2_buffer`. `m` is a union whose members all start at its first byte, so its
    /// `offset` member is `m_offset` whatever the byte order.
    #[repr(C)]
    pub(super) struct Buffer {
        pub index: u32,
        pub type_: u32,
        pub bytesused: u32,
        pub flags: u32,
        pub field: u32,
        /// `struct timeval`: `tv_sec`, `tv_usec` (both `long`).
        pub timestamp: [i64; 2],
        /// `struct v4l2_timecode`: 16 bytes.
        pub timecode: [u32; 4],
        pub sequence: u32,
        pub memory: u32,
        pub m_offset: u32,
        pub _m_rest: u32,
        pub length: u32,
        pub reserved2: u32,
        pub request_fd: u32,
        pub _pad: u32,
    }

    // The kernel's sizes and offsets on x86_64 and aarch64 (both LP64), as printed by a C
    // program including <linux/videodev2.h>.
    const _: () = assert!(size_of::<Capability>() == 104);
    const _: () = assert!(offset_of!(Capability, capabilities) == 84);
    const _: () = assert!(offset_of!(Capability, device_caps) == 88);
    const _: () = assert!(size_of::<PixFormat>() == 48);
    const _: () = assert!(offset_of!(PixFormat, bytesperline) == 16);
    const _: () = assert!(size_of::<Format>() == 208);
    const _: () = assert!(offset_of!(Format, pix) == 8);
    const _: () = assert!(size_of::<RequestBuffers>() == 20);
    const _: () = assert!(size_of::<Buffer>() == 88);
    const _: () = assert!(offset_of!(Buffer, bytesused) == 8);
    const _: () = assert!(offset_of!(Buffer, flags) == 12);
    const _: () = assert!(offset_of!(Buffer, timestamp) == 24);
    const _: () = assert!(offset_of!(Buffer, timecode) == 40);
    const _: () = assert!(offset_of!(Buffer, sequence) == 56);
    const _: () = assert!(offset_of!(Buffer, memory) == 60);
    const _: () = assert!(offset_of!(Buffer, m_offset) == 64);
    const _: () = assert!(offset_of!(Buffer, length) == 72);
    const _: () = assert!(offset_of!(Buffer, request_fd) == 80);

    /// Plain-old-data kernel structs: integers and arrays of integers only.
    ///
    /// # Safety
    /// Implementors must be valid when all their bytes are zero.
    unsafe trait Zeroed: Sized {
        fn zeroed() -> Self {
            // SAFETY: the implementor guarantees all-zero bytes are a valid value.
            unsafe { std::mem::zeroed() }
        }
    }
    // SAFETY: each holds only integers and arrays of integers.
    unsafe impl Zeroed for Capability {}
    // SAFETY: as above.
    unsafe impl Zeroed for Format {}
    // SAFETY: as above.
    unsafe impl Zeroed for RequestBuffers {}
    // SAFETY: as above.
    unsafe impl Zeroed for Buffer {}

    // --- ioctl numbers: the generic encoding (x86_64 and arm64 both use asm-generic). ---

    const IOC_WRITE: u64 = 1;
    const IOC_READ: u64 = 2;

    const fn ioc(dir: u64, nr: u64, size: usize) -> u64 {
        (dir << 30) | ((size as u64) << 16) | ((b'V' as u64) << 8) | nr
    }

    pub(super) const VIDIOC_QUERYCAP: u64 = ioc(IOC_READ, 0, size_of::<Capability>());
    pub(super) const VIDIOC_S_FMT: u64 = ioc(IOC_READ | IOC_WRITE, 5, size_of::<Format>());
    pub(super) const VIDIOC_REQBUFS: u64 =
        ioc(IOC_READ | IOC_WRITE, 8, size_of::<RequestBuffers>());
    pub(super) const VIDIOC_QUERYBUF: u64 = ioc(IOC_READ | IOC_WRITE, 9, size_of::<Buffer>());
    pub(super) const VIDIOC_QBUF: u64 = ioc(IOC_READ | IOC_WRITE, 15, size_of::<Buffer>());
    pub(super) const VIDIOC_DQBUF: u64 = ioc(IOC_READ | IOC_WRITE, 17, size_of::<Buffer>());
    pub(super) const VIDIOC_STREAMON: u64 = ioc(IOC_WRITE, 18, size_of::<libc::c_int>());
    pub(super) const VIDIOC_STREAMOFF: u64 = ioc(IOC_WRITE, 19, size_of::<libc::c_int>());

    // The values <linux/videodev2.h> gives on x86_64 (printed by a C program).
    const _: () = assert!(VIDIOC_QUERYCAP == 0x8068_5600);
    const _: () = assert!(VIDIOC_S_FMT == 0xC0D0_5605);
    const _: () = assert!(VIDIOC_REQBUFS == 0xC014_5608);
    const _: () = assert!(VIDIOC_QUERYBUF == 0xC058_5609);
    const _: () = assert!(VIDIOC_QBUF == 0xC058_560F);
    const _: () = assert!(VIDIOC_DQBUF == 0xC058_5611);
    const _: () = assert!(VIDIOC_STREAMON == 0x4004_5612);
    const _: () = assert!(VIDIOC_STREAMOFF == 0x4004_5613);

    const BUF_TYPE_VIDEO_CAPTURE: u32 = 1;
    const MEMORY_MMAP: u32 = 1;
    const FIELD_NONE: u32 = 1;
    const CAP_VIDEO_CAPTURE: u32 = 0x0000_0001;
    const CAP_STREAMING: u32 = 0x0400_0000;
    const CAP_DEVICE_CAPS: u32 = 0x8000_0000;
    const BUF_FLAG_ERROR: u32 = 0x0000_0040;

    const fn fourcc(code: &[u8; 4]) -> u32 {
        u32::from_le_bytes(*code)
    }
    pub(super) const PIX_FMT_YUYV: u32 = fourcc(b"YUYV");
    pub(super) const PIX_FMT_MJPEG: u32 = fourcc(b"MJPG");
    pub(super) const PIX_FMT_JPEG: u32 = fourcc(b"JPEG");
    const _: () = assert!(PIX_FMT_YUYV == 0x5659_5559 && PIX_FMT_MJPEG == 0x4750_4A4D);

    /// Frame buffers asked of the driver: enough to keep capturing while one is copied.
    const BUFFER_COUNT: u32 = 4;

    /// A fourcc as text (`YUYV`), for messages.
    pub(super) fn fourcc_text(code: u32) -> String {
        code.to_le_bytes()
            .iter()
            .map(|&b| {
                if b.is_ascii_graphic() || b == b' ' {
                    char::from(b)
                } else {
                    '?'
                }
            })
            .collect()
    }

    fn c_string(bytes: &[u8]) -> String {
        let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
        String::from_utf8_lossy(&bytes[..end]).into_owned()
    }

    /// `ioctl(fd, request, arg)`, retried when a signal interrupts it.
    fn xioctl<T>(fd: libc::c_int, request: u64, arg: &mut T) -> io::Result<()> {
        loop {
            // SAFETY: `request` encodes the size of `T` (checked against the kernel's
            // numbers above), so the kernel reads and writes only within `*arg`, which is a
            // live, exclusive borrow for the duration of the call.
            let r = unsafe { libc::ioctl(fd, request as libc::Ioctl, arg as *mut T) };
            if r != -1 {
                return Ok(());
            }
            let e = io::Error::last_os_error();
            if e.kind() != io::ErrorKind::Interrupted {
                return Err(e);
            }
        }
    }

    /// One `mmap`ed driver buffer; unmapped on drop.
    struct Mapping {
        ptr: *mut libc::c_void,
        len: usize,
    }

    // SAFETY: the mapping is owned by one `Camera` and only read by the thread that holds it.
    unsafe impl Send for Mapping {}

    impl Mapping {
        /// The buffer's bytes. Call only while the buffer is dequeued (the driver does not
        /// write into it until it is queued again).
        fn bytes(&self) -> &[u8] {
            // SAFETY: `ptr` is a live mapping of `len` readable bytes for as long as `self`.
            unsafe { std::slice::from_raw_parts(self.ptr.cast::<u8>(), self.len) }
        }
    }

    impl Drop for Mapping {
        fn drop(&mut self) {
            // SAFETY: `ptr`/`len` are exactly what mmap returned; nothing borrows the bytes
            // any more (`bytes()` borrows `self`).
            unsafe {
                libc::munmap(self.ptr, self.len);
            }
        }
    }

    /// An open, streaming V4L2 capture device. Dropping it turns streaming off, unmaps and
    /// releases the buffers, and closes the device.
    pub(super) struct Camera {
        file: File,
        pub(super) path: String,
        pub(super) format: FrameFormat,
        buffers: Vec<Mapping>,
        requested: bool,
        streaming: bool,
    }

    impl Camera {
        /// Opens `path`, checks it can capture with streaming I/O, negotiates YUYV (else
        /// MJPEG) near 640×480, maps the driver's buffers and starts streaming.
        pub(super) fn open(path: &Path) -> Result<Self, WebcamError> {
            let path_text = path.display().to_string();
            let file = OpenOptions::new()
                .read(true)
                .write(true)
                .custom_flags(libc::O_NONBLOCK)
                .open(path)
                .map_err(|source| WebcamError::Open {
                    path: path_text.clone(),
                    source,
                })?;
            let mut camera = Self {
                file,
                path: path_text,
                format: FrameFormat::Mjpeg {
                    width: 0,
                    height: 0,
                },
                buffers: Vec::new(),
                requested: false,
                streaming: false,
            };
            camera.check_capabilities()?;
            camera.format = camera.negotiate_format()?;
            camera.map_buffers()?;
            let mut kind = BUF_TYPE_VIDEO_CAPTURE as libc::c_int;
            camera.ioctl("VIDIOC_STREAMON", VIDIOC_STREAMON, &mut kind)?;
            camera.streaming = true;
            Ok(camera)
        }

        fn ioctl<T>(
            &self,
            call: &'static str,
            request: u64,
            arg: &mut T,
        ) -> Result<(), WebcamError> {
            xioctl(self.file.as_raw_fd(), request, arg).map_err(|source| self.error(call, source))
        }

        fn error(&self, call: &'static str, source: io::Error) -> WebcamError {
            WebcamError::Call {
                path: self.path.clone(),
                call,
                source,
            }
        }

        fn check_capabilities(&self) -> Result<(), WebcamError> {
            let mut cap = Capability::zeroed();
            self.ioctl("VIDIOC_QUERYCAP", VIDIOC_QUERYCAP, &mut cap)?;
            let caps = if cap.capabilities & CAP_DEVICE_CAPS != 0 {
                cap.device_caps
            } else {
                cap.capabilities
            };
            if caps & CAP_VIDEO_CAPTURE == 0 || caps & CAP_STREAMING == 0 {
                return Err(WebcamError::NotACamera {
                    path: self.path.clone(),
                    driver: c_string(&cap.driver),
                    card: c_string(&cap.card),
                });
            }
            Ok(())
        }

        /// `VIDIOC_S_FMT` with `fourcc` at the requested size; returns what the driver chose.
        fn set_format(&self, fourcc: u32) -> Result<PixFormat, WebcamError> {
            let mut format = Format::zeroed();
            format.type_ = BUF_TYPE_VIDEO_CAPTURE;
            format.pix.width = REQUESTED_SIZE[0];
            format.pix.height = REQUESTED_SIZE[1];
            format.pix.pixelformat = fourcc;
            format.pix.field = FIELD_NONE;
            self.ioctl("VIDIOC_S_FMT", VIDIOC_S_FMT, &mut format)?;
            Ok(format.pix)
        }

        /// YUYV if the driver takes it, else MJPEG (a driver answers an unsupported request
        /// with a format of its own choice).
        fn negotiate_format(&self) -> Result<FrameFormat, WebcamError> {
            let mut pix = self.set_format(PIX_FMT_YUYV)?;
            if pix.pixelformat != PIX_FMT_YUYV {
                pix = self.set_format(PIX_FMT_MJPEG)?;
            }
            frame_format(&pix).map_err(|e| match e {
                FormatProblem::Unsupported(code) => WebcamError::UnsupportedFormat {
                    path: self.path.clone(),
                    offered: fourcc_text(code),
                },
                FormatProblem::Bad(reason) => WebcamError::BadFormat {
                    path: self.path.clone(),
                    reason,
                },
            })
        }

        fn map_buffers(&mut self) -> Result<(), WebcamError> {
            let mut req = RequestBuffers::zeroed();
            req.count = BUFFER_COUNT;
            req.type_ = BUF_TYPE_VIDEO_CAPTURE;
            req.memory = MEMORY_MMAP;
            self.ioctl("VIDIOC_REQBUFS", VIDIOC_REQBUFS, &mut req)?;
            self.requested = true;
            if req.count == 0 {
                return Err(WebcamError::NoBuffers {
                    path: self.path.clone(),
                });
            }
            for index in 0..req.count {
                let mut buf = self.buffer(index);
                self.ioctl("VIDIOC_QUERYBUF", VIDIOC_QUERYBUF, &mut buf)?;
                let len = buf.length as usize;
                // SAFETY: a fresh shared mapping of the driver's buffer at the offset it gave;
                // the result is checked before use and unmapped by `Mapping::drop`.
                let ptr = unsafe {
                    libc::mmap(
                        std::ptr::null_mut(),
                        len,
                        libc::PROT_READ | libc::PROT_WRITE,
                        libc::MAP_SHARED,
                        self.file.as_raw_fd(),
                        libc::off_t::from(buf.m_offset),
                    )
                };
                if ptr == libc::MAP_FAILED {
                    return Err(self.error("mmap", io::Error::last_os_error()));
                }
                self.buffers.push(Mapping { ptr, len });
            }
            for index in 0..req.count {
                let mut buf = self.buffer(index);
                self.ioctl("VIDIOC_QBUF", VIDIOC_QBUF, &mut buf)?;
            }
            Ok(())
        }

        fn buffer(&self, index: u32) -> Buffer {
            let mut buf = Buffer::zeroed();
            buf.index = index;
            buf.type_ = BUF_TYPE_VIDEO_CAPTURE;
            buf.memory = MEMORY_MMAP;
            buf
        }

        /// The next frame, or `None` when none came within `timeout` (or the driver flagged
        /// it as corrupt). The buffer goes back to the driver before this returns.
        pub(super) fn next_frame(
            &mut self,
            timeout: Duration,
        ) -> Result<Option<Frame>, WebcamError> {
            let mut pfd = libc::pollfd {
                fd: self.file.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            };
            let ms = libc::c_int::try_from(timeout.as_millis()).unwrap_or(libc::c_int::MAX);
            // SAFETY: one valid pollfd, exclusively borrowed for the call.
            let ready = unsafe { libc::poll(&mut pfd, 1, ms) };
            if ready < 0 {
                let e = io::Error::last_os_error();
                if e.kind() == io::ErrorKind::Interrupted {
                    return Ok(None);
                }
                return Err(self.error("poll", e));
            }
            if ready == 0 {
                return Ok(None);
            }
            let mut buf = self.buffer(0);
            match xioctl(self.file.as_raw_fd(), VIDIOC_DQBUF, &mut buf) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    if pfd.revents & (libc::POLLERR | libc::POLLHUP | libc::POLLNVAL) != 0 {
                        // Nothing to dequeue although poll reported an error: the device
                        // is gone or stopped streaming.
                        return Err(self.error(
                            "poll",
                            io::Error::other("the device reported an error (POLLERR/POLLHUP)"),
                        ));
                    }
                    return Ok(None);
                }
                Err(e) => return Err(self.error("VIDIOC_DQBUF", e)),
            }
            let Some(mapping) = self.buffers.get(buf.index as usize) else {
                return Err(WebcamError::BadBuffer {
                    path: self.path.clone(),
                    index: buf.index,
                    count: self.buffers.len(),
                });
            };
            let frame = (buf.flags & BUF_FLAG_ERROR == 0).then(|| {
                let bytes = mapping.bytes();
                let used = match buf.bytesused as usize {
                    0 => bytes.len(),
                    n => n.min(bytes.len()),
                };
                Frame {
                    format: self.format,
                    data: bytes[..used].to_vec(),
                }
            });
            let mut again = self.buffer(buf.index);
            self.ioctl("VIDIOC_QBUF", VIDIOC_QBUF, &mut again)?;
            Ok(frame)
        }
    }

    impl Drop for Camera {
        fn drop(&mut self) {
            if self.streaming {
                let mut kind = BUF_TYPE_VIDEO_CAPTURE as libc::c_int;
                let _ = xioctl(self.file.as_raw_fd(), VIDIOC_STREAMOFF, &mut kind);
            }
            self.buffers.clear(); // munmap each
            if self.requested {
                // Count 0 frees the driver's buffers (possible only once they are unmapped).
                let mut req = RequestBuffers::zeroed();
                req.type_ = BUF_TYPE_VIDEO_CAPTURE;
                req.memory = MEMORY_MMAP;
                let _ = xioctl(self.file.as_raw_fd(), VIDIOC_REQBUFS, &mut req);
            }
            // `file` closes when the fields drop.
        }
    }

    /// Why a driver's format cannot be used.
    #[derive(Debug, PartialEq)]
    pub(super) enum FormatProblem {
        /// Neither YUYV nor MJPEG: the fourcc it offered.
        Unsupported(u32),
        Bad(String),
    }

    /// The frame layout for the format a driver chose.
    pub(super) fn frame_format(pix: &PixFormat) -> Result<FrameFormat, FormatProblem> {
        let (width, height) = (pix.width, pix.height);
        if width == 0 || height == 0 || width > MAX_SIDE || height > MAX_SIDE {
            return Err(FormatProblem::Bad(format!("a frame of {width}×{height}")));
        }
        match pix.pixelformat {
            PIX_FMT_YUYV => {
                if !width.is_multiple_of(2) {
                    return Err(FormatProblem::Bad(format!(
                        "YUYV with an odd width ({width})"
                    )));
                }
                let row = width as usize * 2;
                // 0 means the driver left it to us: rows are packed.
                let stride = match pix.bytesperline as usize {
                    0 => row,
                    s if s >= row => s,
                    s => {
                        return Err(FormatProblem::Bad(format!(
                            "YUYV rows of {s} bytes for {width} pixels"
                        )));
                    }
                };
                Ok(FrameFormat::Yuyv {
                    width,
                    height,
                    stride,
                })
            }
            PIX_FMT_MJPEG | PIX_FMT_JPEG => Ok(FrameFormat::Mjpeg { width, height }),
            other => Err(FormatProblem::Unsupported(other)),
        }
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        fn pix(fourcc: u32, width: u32, height: u32, bytesperline: u32) -> PixFormat {
            let mut f = Format::zeroed();
            f.pix.pixelformat = fourcc;
            f.pix.width = width;
            f.pix.height = height;
            f.pix.bytesperline = bytesperline;
            f.pix
        }

        #[test]
        fn driver_formats_map_to_frame_layouts() {
            assert_eq!(
                frame_format(&pix(PIX_FMT_YUYV, 640, 480, 0)),
                Ok(FrameFormat::Yuyv {
                    width: 640,
                    height: 480,
                    stride: 1280
                })
            );
            assert_eq!(
                frame_format(&pix(PIX_FMT_YUYV, 640, 480, 1344)),
                Ok(FrameFormat::Yuyv {
                    width: 640,
                    height: 480,
                    stride: 1344
                })
            );
            assert_eq!(
                frame_format(&pix(PIX_FMT_MJPEG, 1280, 720, 0)),
                Ok(FrameFormat::Mjpeg {
                    width: 1280,
                    height: 720
                })
            );
            assert!(matches!(
                frame_format(&pix(PIX_FMT_YUYV, 641, 480, 0)),
                Err(FormatProblem::Bad(_))
            ));
            assert!(matches!(
                frame_format(&pix(PIX_FMT_YUYV, 640, 480, 1000)),
                Err(FormatProblem::Bad(_))
            ));
            assert!(matches!(
                frame_format(&pix(PIX_FMT_YUYV, 0, 480, 0)),
                Err(FormatProblem::Bad(_))
            ));
            let nv12 = fourcc(b"NV12");
            assert_eq!(
                frame_format(&pix(nv12, 640, 480, 0)),
                Err(FormatProblem::Unsupported(nv12))
            );
            assert_eq!(fourcc_text(nv12), "NV12");
            assert_eq!(fourcc_text(0x0000_0001), "????");
        }

        #[test]
        fn a_file_that_is_not_a_v4l2_device_is_refused_at_querycap() {
            for path in ["/dev/null".into(), std::env::temp_dir()] {
                let file = if path.is_dir() {
                    let f = path.join(format!("convlens-webcam-{}", std::process::id()));
                    std::fs::write(&f, b"not a camera").unwrap();
                    f
                } else {
                    path
                };
                let err = Camera::open(&file).err().unwrap();
                assert!(
                    matches!(
                        &err,
                        WebcamError::Call { call: "VIDIOC_QUERYCAP", source, .. }
                            if source.raw_os_error() == Some(libc::ENOTTY)
                    ),
                    "{err}"
                );
                assert!(err.to_string().contains(&file.display().to_string()));
                if file.starts_with(std::env::temp_dir()) {
                    let _ = std::fs::remove_file(&file);
                }
            }
        }
    }
}

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

    /// One YUYV macropixel (two pixels sharing U and V) per call, as a 2×1 frame.
    fn pair(y0: u8, u: u8, y1: u8, v: u8) -> [[u8; 3]; 2] {
        let img = yuyv_to_rgb(&[y0, u, y1, v], 2, 1, 4).unwrap();
        [img.get_pixel(0, 0).0, img.get_pixel(1, 0).0]
    }

    #[test]
    fn yuyv_black_white_and_grey_are_exact() {
        // Y = 16 is black and Y = 235 white in limited range; U = V = 128 has no colour.
        assert_eq!(pair(16, 128, 235, 128), [[0, 0, 0], [255, 255, 255]]);
        // Below 16 and above 235 clip. 298·(126−16) = 32780; (32780+128)>>8 = 128.
        assert_eq!(pair(0, 128, 255, 128), [[0, 0, 0], [255, 255, 255]]);
        assert_eq!(pair(126, 128, 126, 128)[0], [128, 128, 128]);
    }

    #[test]
    fn yuyv_primaries_match_hand_computed_bt601() {
        // Pure red in BT.601 limited range: Y = 16 + 65.481 = 81, Cb = 128 − 37.797 = 90,
        // Cr = 128 + 112 = 240. With C = 298·65 = 19370, D = −38, E = 112:
        //   R = (19370 + 409·112 + 128) >> 8 = 65306 >> 8 = 255
        //   G = (19370 + 3800 − 23296 + 128) >> 8 = 2 >> 8 = 0
        //   B = (19370 − 19608 + 128) >> 8 = −110 >> 8 → 0
        assert_eq!(pair(81, 90, 81, 240)[0], [255, 0, 0]);
        // Green: Y = 16 + 128.553 = 145, Cb = 128 − 74.203 = 54, Cr = 128 − 93.786 = 34.
        // C = 298·129 = 38442, D = −74, E = −94:
        //   R = (38442 − 38446 + 128) >> 8 = 0
        //   G = (38442 + 7400 + 19552 + 128) >> 8 = 65522 >> 8 = 255
        //   B = (38442 − 38184 + 128) >> 8 = 386 >> 8 = 1 (the rounding of Y, Cb, Cr)
        assert_eq!(pair(145, 54, 145, 34)[0], [0, 255, 1]);
        // Blue: Y = 16 + 24.966 = 41, Cb = 240, Cr = 128 − 18.214 = 110.
        // C = 7450, D = 112, E = −18:
        //   R = (7450 − 7362 + 128) >> 8 = 0
        //   G = (7450 − 11200 + 3744 + 128) >> 8 = 122 >> 8 = 0
        //   B = (7450 + 57792 + 128) >> 8 = 65370 >> 8 = 255
        assert_eq!(pair(41, 240, 41, 110)[0], [0, 0, 255]);
        // The two pixels of a pair share U and V but keep their own Y.
        assert_eq!(pair(16, 128, 235, 128)[1], [255, 255, 255]);
    }

    #[test]
    fn yuyv_rows_skip_the_stride_padding() {
        // 2×2 frame, rows 8 bytes apart (4 bytes of pixels, 4 of padding); the last row
        // ends right after its pixels.
        let data = [
            16, 128, 235, 128, 9, 9, 9, 9, //
            235, 128, 16, 128,
        ];
        let img = yuyv_to_rgb(&data, 2, 2, 8).unwrap();
        assert_eq!(img.get_pixel(0, 0).0, [0, 0, 0]);
        assert_eq!(img.get_pixel(1, 0).0, [255, 255, 255]);
        assert_eq!(img.get_pixel(0, 1).0, [255, 255, 255]);
        assert_eq!(img.get_pixel(1, 1).0, [0, 0, 0]);
        // An odd height is fine (4:2:2 halves only the horizontal chroma resolution).
        assert_eq!(
            yuyv_to_rgb(&data[..4], 2, 1, 8).unwrap().dimensions(),
            (2, 1)
        );
    }

    #[test]
    fn bad_yuyv_frames_are_refused_with_a_reason() {
        let data = [128u8; 64];
        let reason = |r: Result<RgbImage, WebcamError>| match r {
            Err(WebcamError::BadYuyv { reason, .. }) => reason,
            other => panic!("expected BadYuyv, got {other:?}"),
        };
        assert!(reason(yuyv_to_rgb(&data, 3, 2, 6)).contains("odd"));
        assert!(reason(yuyv_to_rgb(&data, 0, 2, 0)).contains("empty"));
        assert!(reason(yuyv_to_rgb(&data, 4, 2, 6)).contains("stride"));
        // 4×4 packed needs 32 bytes; with a 12-byte stride 3·12 + 8 = 44.
        assert!(reason(yuyv_to_rgb(&data[..40], 4, 4, 12)).contains("needs 44"));
        assert!(yuyv_to_rgb(&data[..44], 4, 4, 12).is_ok());
        let err = yuyv_to_rgb(&data, 3, 2, 6).unwrap_err().to_string();
        assert!(
            err.starts_with("a YUYV frame of 3×2: the width is odd"),
            "{err}"
        );
    }

    /// A JPEG from `image`'s encoder (which writes the standard Annex K tables).
    fn test_jpeg() -> (RgbImage, Vec<u8>) {
        let img = RgbImage::from_fn(48, 32, |x, y| {
            image::Rgb([(x * 5) as u8, (y * 7) as u8, ((x + y) * 3) as u8])
        });
        let mut bytes = Vec::new();
        image::codecs::jpeg::JpegEncoder::new_with_quality(&mut bytes, 90)
            .encode_image(&img)
            .unwrap();
        (img, bytes)
    }

    /// `jpeg` with every DHT segment before the first scan removed, as many UVC cameras
    /// send their MJPEG frames.
    fn strip_huffman_tables(jpeg: &[u8]) -> Vec<u8> {
        let mut out = jpeg[..2].to_vec();
        let mut i = 2;
        while jpeg[i] == 0xFF && jpeg[i + 1] != 0xDA {
            let len = usize::from(u16::from_be_bytes([jpeg[i + 2], jpeg[i + 3]]));
            if jpeg[i + 1] != 0xC4 {
                out.extend_from_slice(&jpeg[i..i + 2 + len]);
            }
            i += 2 + len;
        }
        out.extend_from_slice(&jpeg[i..]);
        out
    }

    #[test]
    fn mjpeg_frames_decode_to_rgb() {
        let (img, jpeg) = test_jpeg();
        let rgb = mjpeg_to_rgb(&jpeg).unwrap();
        assert_eq!(rgb.dimensions(), img.dimensions());
        // Lossy, but close to the original everywhere.
        let worst = rgb
            .as_raw()
            .iter()
            .zip(img.as_raw())
            .map(|(a, b)| a.abs_diff(*b))
            .max()
            .unwrap();
        assert!(worst < 40, "max difference {worst}");
        // With tables present, the frame is passed through untouched.
        assert!(matches!(
            with_default_huffman_tables(&jpeg),
            Cow::Borrowed(_)
        ));
    }

    #[test]
    fn mjpeg_frames_without_huffman_tables_get_the_standard_ones() {
        let (_, jpeg) = test_jpeg();
        let stripped = strip_huffman_tables(&jpeg);
        assert!(stripped.len() < jpeg.len());
        assert!(!stripped.windows(2).any(|w| w == [0xFF, 0xC4]));
        // The decoder alone cannot read such a frame …
        assert!(image::load_from_memory_with_format(&stripped, image::ImageFormat::Jpeg).is_err());
        // … with the standard tables inserted it decodes to exactly the original's pixels.
        assert_eq!(
            mjpeg_to_rgb(&stripped).unwrap(),
            mjpeg_to_rgb(&jpeg).unwrap()
        );
        let seg = default_dht_segment();
        assert_eq!(seg.len(), 420);
        assert_eq!(&seg[..4], &[0xFF, 0xC4, 0x01, 0xA2]);
    }

    #[test]
    fn broken_mjpeg_frames_are_errors_not_panics() {
        let (_, jpeg) = test_jpeg();
        for bad in [
            &[][..],
            &[0xFF, 0xD8][..],
            &[0xFF, 0xD8, 0xFF, 0xDA][..],
            &b"not a jpeg at all"[..],
            &jpeg[..jpeg.len() / 3],
        ] {
            let err = mjpeg_to_rgb(bad).unwrap_err();
            assert!(matches!(err, WebcamError::Mjpeg(_)), "{err}");
            assert!(err.to_string().starts_with("cannot decode an MJPEG frame"));
        }
    }

    #[test]
    fn frames_convert_by_their_format() {
        let frame = Frame {
            format: FrameFormat::Yuyv {
                width: 2,
                height: 1,
                stride: 4,
            },
            data: vec![16, 128, 235, 128],
        };
        assert_eq!(frame.to_rgb().unwrap().get_pixel(1, 0).0, [255, 255, 255]);
        assert_eq!(frame.format.to_string(), "YUYV 2×1");
        let (img, jpeg) = test_jpeg();
        let frame = Frame {
            format: FrameFormat::Mjpeg {
                width: 48,
                height: 32,
            },
            data: jpeg,
        };
        assert_eq!(frame.to_rgb().unwrap().dimensions(), img.dimensions());
    }

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
