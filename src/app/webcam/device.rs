//! The camera itself, through nokhwa (AVFoundation, Media Foundation, V4L2): listing,
//! opening one at a requested size, and its frames copied out as [`Frame`]s.

use nokhwa::utils::{
    ApiBackend, CameraIndex, FrameFormat as CameraFormat, RequestedFormat, RequestedFormatType,
    Resolution,
};

use super::super::camera_choice::{self, CameraListing, CameraSelector};
use super::{Frame, FrameFormat, WebcamError};

/// The formats `convert` turns into RGB, the only ones asked of a camera.
const CONVERTIBLE: [CameraFormat; 6] = [
    CameraFormat::MJPEG,
    CameraFormat::YUYV,
    CameraFormat::NV12,
    CameraFormat::GRAY,
    CameraFormat::RAWRGB,
    CameraFormat::RAWBGR,
];

/// On macOS the user must grant camera access first (AVFoundation asks once); elsewhere
/// nothing to do.
fn ask_for_access() {
    #[cfg(target_os = "macos")]
    if !nokhwa::nokhwa_check() {
        let (tx, rx) = std::sync::mpsc::channel();
        nokhwa::nokhwa_initialize(move |granted| {
            let _ = tx.send(granted);
        });
        let _ = rx.recv_timeout(std::time::Duration::from_secs(30));
    }
}

/// The cameras the platform reports.
pub(super) fn list() -> Result<Vec<CameraListing>, WebcamError> {
    ask_for_access();
    let infos = nokhwa::query(ApiBackend::Auto).map_err(|e| WebcamError::List(e.to_string()))?;
    Ok(infos
        .iter()
        .filter_map(|info| {
            Some(CameraListing {
                index: info.index().as_index().ok()?,
                name: info.human_name(),
                description: info.description().to_string(),
            })
        })
        .collect())
}

/// The index of the camera `selector` names (a name is looked up in [`list`]).
pub(super) fn resolve(selector: &CameraSelector) -> Result<u32, WebcamError> {
    match selector {
        CameraSelector::Index(index) => Ok(*index),
        CameraSelector::Name(_) => {
            camera_choice::choose(selector, &list()?).map_err(WebcamError::Choice)
        }
    }
}

/// An open camera with its stream running (stopped and closed on drop, by nokhwa).
pub(super) struct Camera {
    camera: nokhwa::Camera,
    index: u32,
}

impl Camera {
    /// Opens camera `index` at `size_px` (`[width, height]`, its highest frame rate there),
    /// or at its highest frame rate, in a format `convert` takes, and starts the stream.
    pub(super) fn open(index: u32, size_px: Option<[u32; 2]>) -> Result<Self, WebcamError> {
        ask_for_access();
        let requested = match size_px {
            Some([w, h]) => RequestedFormatType::HighestResolution(Resolution::new(w, h)),
            None => RequestedFormatType::AbsoluteHighestFrameRate,
        };
        let failed = |e: nokhwa::NokhwaError| WebcamError::Open {
            index,
            detail: e.to_string(),
        };
        let format = RequestedFormat::with_formats(requested, &CONVERTIBLE);
        let mut camera = nokhwa::Camera::new(CameraIndex::Index(index), format).map_err(failed)?;
        camera.open_stream().map_err(failed)?;
        Ok(Self { camera, index })
    }

    /// The format frames come in.
    pub(super) fn format(&self) -> FrameFormat {
        let r = self.camera.resolution();
        frame_format(self.camera.frame_format(), r.width(), r.height(), None)
    }

    /// The next frame (waits for it).
    pub(super) fn next_frame(&mut self) -> Result<Frame, WebcamError> {
        let buffer = self.camera.frame().map_err(|e| WebcamError::Frame {
            index: self.index,
            detail: e.to_string(),
        })?;
        let r = buffer.resolution();
        let data = buffer.buffer().to_vec();
        let format = frame_format(
            buffer.source_frame_format(),
            r.width(),
            r.height(),
            Some(data.len()),
        );
        Ok(Frame { format, data })
    }
}

/// The frame format of a camera format; a YUYV row's stride comes from the frame's length
/// where it divides evenly into rows of at least `2 × width` bytes.
pub(super) fn frame_format(
    format: CameraFormat,
    width: u32,
    height: u32,
    len: Option<usize>,
) -> FrameFormat {
    match format {
        CameraFormat::YUYV => {
            let row = 2 * width as usize;
            let stride = match len {
                Some(len) if height > 0 && len % height as usize == 0 => {
                    (len / height as usize).max(row)
                }
                _ => row,
            };
            FrameFormat::Yuyv {
                width,
                height,
                stride,
            }
        }
        CameraFormat::MJPEG => FrameFormat::Mjpeg { width, height },
        CameraFormat::NV12 => FrameFormat::Nv12 { width, height },
        CameraFormat::GRAY => FrameFormat::Gray { width, height },
        CameraFormat::RAWRGB => FrameFormat::Rgb { width, height },
        CameraFormat::RAWBGR => FrameFormat::Bgr { width, height },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn camera_formats_map_to_frame_formats() {
        // YUYV rows padded to 1536 bytes (640 px need 1280) are read with that stride.
        let padded = frame_format(CameraFormat::YUYV, 640, 480, Some(1536 * 480));
        assert_eq!(
            padded,
            FrameFormat::Yuyv {
                width: 640,
                height: 480,
                stride: 1536
            }
        );
        // A length that does not divide into rows leaves the plain stride.
        let odd = frame_format(CameraFormat::YUYV, 640, 480, Some(1280 * 480 + 7));
        assert!(matches!(odd, FrameFormat::Yuyv { stride: 1280, .. }));
        assert_eq!(
            frame_format(CameraFormat::NV12, 4, 2, None),
            FrameFormat::Nv12 {
                width: 4,
                height: 2
            }
        );
        assert_eq!(
            frame_format(CameraFormat::RAWBGR, 4, 2, None).to_string(),
            "BGR 4×2"
        );
    }
}
