//! The live camera input of the window (`--webcam`): the feed the compute worker takes its
//! frames from, the capture thread behind it, and pausing. In a build without the `webcam`
//! feature, opening one only explains why there is none.

use std::sync::Arc;

use winit::event_loop::EventLoopProxy;

use super::worker::{LiveFeed, UserEvent};

/// The live camera input (`--webcam`): the feed the worker takes its frames from, and the
/// capture thread (stopped, and the device closed, on drop).
// Never built without the `webcam` feature.
#[cfg_attr(not(feature = "webcam"), allow(dead_code))]
pub(super) struct Live {
    pub(super) feed: Arc<LiveFeed>,
    /// `webcam 0`.
    pub(super) label: String,
    paused: bool,
    #[cfg(feature = "webcam")]
    _capture: super::webcam::Capture,
}

impl Drop for Live {
    fn drop(&mut self) {
        self.feed.close();
    }
}

/// Starts the camera `request` names for the window; when that fails (or this build has no
/// webcam support) the viewer goes on with its other input and the notice says why.
pub(super) fn open_live(
    request: &super::camera_choice::WebcamRequest,
    proxy: &EventLoopProxy<UserEvent>,
) -> (Option<Live>, String) {
    #[cfg(feature = "webcam")]
    {
        let feed = LiveFeed::new();
        match super::webcam::start_feed(request, Arc::clone(&feed), proxy.clone()) {
            Ok(capture) => {
                let label = super::webcam::input_label(capture.index());
                let notice = format!(
                    "{label} ({}): waiting for the first frame… (Space pauses)",
                    capture.format()
                );
                let live = Live {
                    feed,
                    label,
                    paused: false,
                    _capture: capture,
                };
                (Some(live), notice)
            }
            Err(e) => (
                None,
                format!("webcam: {e}; showing the embedded photo instead"),
            ),
        }
    }
    #[cfg(not(feature = "webcam"))]
    {
        let _ = (request, proxy);
        (None, super::NO_WEBCAM_SUPPORT.to_string())
    }
}

impl Live {
    /// Stops taking camera frames (the last result stays) or resumes; returns the notice to
    /// show (`None` once resumed).
    pub(super) fn toggle_pause(&mut self) -> Option<String> {
        self.paused = !self.paused;
        self.feed.set_paused(self.paused);
        self.pause_notice()
    }

    /// The notice while paused.
    pub(super) fn pause_notice(&self) -> Option<String> {
        self.paused
            .then(|| format!("{} paused (Space resumes)", self.label))
    }
}
