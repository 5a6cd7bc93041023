//! The V4L2 capture device, through `libc` ioctls on 64-bit Linux: the kernel's struct
//! layouts (checked at compile time), the ioctl numbers and the streaming `Camera`.

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
pub(super) const VIDIOC_REQBUFS: u64 = ioc(IOC_READ | IOC_WRITE, 8, size_of::<RequestBuffers>());
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
                error: source,
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

    fn ioctl<T>(&self, call: &'static str, request: u64, arg: &mut T) -> Result<(), WebcamError> {
        xioctl(self.file.as_raw_fd(), request, arg).map_err(|source| self.error(call, source))
    }

    fn error(&self, call: &'static str, source: io::Error) -> WebcamError {
        WebcamError::Call {
            path: self.path.clone(),
            call,
            error: source,
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
    pub(super) fn next_frame(&mut self, timeout: Duration) -> Result<Option<Frame>, WebcamError> {
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
                    WebcamError::Call { call: "VIDIOC_QUERYCAP", error: source, .. }
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
