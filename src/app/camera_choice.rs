//! Which camera `view --webcam` opens and how `convlens cameras` lists them: the user's
//! choice (an index or part of a name, and a frame size) matched against the cameras the
//! platform reports. Pure, so it is tested in every build; the capture itself is
//! [`super::webcam`] (the `webcam` feature).

/// A camera as `--webcam` names it: its index, or part of its name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CameraSelector {
    Index(u32),
    /// Matched case-insensitively against the cameras' names.
    Name(String),
}

/// What `--webcam` and `--webcam-size` ask for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebcamRequest {
    pub camera: CameraSelector,
    /// Frame size in pixels `[width, height]`; `None`: the camera's highest frame rate.
    pub size_px: Option<[u32; 2]>,
}

/// One camera the platform reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CameraListing {
    pub index: u32,
    pub name: String,
    /// The backend's description (e.g. the device path or driver).
    pub description: String,
}

/// `--webcam`'s value: a number is an index, anything else part of a name. A model file is
/// refused (clap would otherwise take `view --webcam model.onnx` as a camera name).
pub fn parse_selector(value: &str) -> Result<CameraSelector, String> {
    let value = value.trim();
    if value.is_empty() {
        return Err("an empty camera name".into());
    }
    if value.starts_with('-') {
        return Err(format!(
            "'{value}' is neither a camera index (0, 1, …) nor a name"
        ));
    }
    if value.to_ascii_lowercase().ends_with(".onnx") {
        return Err(format!(
            "'{value}' is a model file, not a camera: give MODEL before --webcam \
             (`view {value} --webcam`)"
        ));
    }
    Ok(match value.parse::<u32>() {
        Ok(index) => CameraSelector::Index(index),
        Err(_) => CameraSelector::Name(value.to_string()),
    })
}

/// The index of the camera `selector` names among `cameras`. An index is taken as given
/// (a platform may open cameras it does not list); a name must match exactly one camera's
/// name (case-insensitive, part of it).
pub fn choose(selector: &CameraSelector, cameras: &[CameraListing]) -> Result<u32, String> {
    let wanted = match selector {
        CameraSelector::Index(index) => return Ok(*index),
        CameraSelector::Name(name) => name.to_lowercase(),
    };
    let matches: Vec<&CameraListing> = cameras
        .iter()
        .filter(|c| c.name.to_lowercase().contains(&wanted))
        .collect();
    match matches.as_slice() {
        [one] => Ok(one.index),
        [] => Err(format!(
            "no camera's name contains '{wanted}'; {}",
            match cameras.len() {
                0 => "no cameras were found".to_string(),
                _ => format!("the cameras are: {}", names(cameras)),
            }
        )),
        several => Err(format!(
            "'{wanted}' matches {} cameras ({}); give more of the name or an index",
            several.len(),
            several
                .iter()
                .map(|c| format!("{} {}", c.index, c.name))
                .collect::<Vec<_>>()
                .join(", ")
        )),
    }
}

fn names(cameras: &[CameraListing]) -> String {
    (cameras.iter())
        .map(|c| format!("{} {}", c.index, c.name))
        .collect::<Vec<_>>()
        .join(", ")
}

/// `convlens cameras`' table: one line per camera, or why there is none.
pub fn listing_text(cameras: &[CameraListing]) -> String {
    if cameras.is_empty() {
        return "no cameras found (a camera in use by another program may be hidden; on \
                Linux, check that /dev/video* exists and is readable)\n"
            .into();
    }
    let mut text = String::from("index  name  (description)\n");
    for c in cameras {
        text.push_str(&format!(
            "{:>5}  {}  ({})\n",
            c.index, c.name, c.description
        ));
    }
    text.push_str("open one with `convlens view --webcam INDEX|NAME [--webcam-size WxH]`\n");
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cam(index: u32, name: &str) -> CameraListing {
        CameraListing {
            index,
            name: name.into(),
            description: format!("/dev/video{index}"),
        }
    }

    #[test]
    fn selectors_parse_and_model_files_are_refused() {
        assert_eq!(parse_selector("2"), Ok(CameraSelector::Index(2)));
        assert_eq!(
            parse_selector(" FaceTime HD "),
            Ok(CameraSelector::Name("FaceTime HD".into()))
        );
        assert!(parse_selector("").is_err());
        let err = parse_selector("resnet.ONNX").unwrap_err();
        assert!(err.contains("give MODEL before --webcam"), "{err}");
    }

    #[test]
    fn names_match_one_camera_or_say_why_not() {
        let cameras = [
            cam(0, "Integrated Webcam"),
            cam(2, "Logitech C920"),
            cam(4, "Logitech Brio"),
        ];
        assert_eq!(choose(&CameraSelector::Index(7), &cameras), Ok(7));
        assert_eq!(
            choose(&CameraSelector::Name("c920".into()), &cameras),
            Ok(2)
        );
        assert_eq!(
            choose(&CameraSelector::Name("INTEGRATED".into()), &cameras),
            Ok(0)
        );
        let several = choose(&CameraSelector::Name("logitech".into()), &cameras).unwrap_err();
        assert!(
            several.contains("matches 2 cameras (2 Logitech C920, 4 Logitech Brio)"),
            "{several}"
        );
        let none = choose(&CameraSelector::Name("kinect".into()), &cameras).unwrap_err();
        assert!(
            none.contains("the cameras are: 0 Integrated Webcam"),
            "{none}"
        );
        let empty = choose(&CameraSelector::Name("any".into()), &[]).unwrap_err();
        assert!(empty.contains("no cameras were found"), "{empty}");
    }

    #[test]
    fn the_listing_says_when_there_are_no_cameras() {
        assert!(listing_text(&[]).starts_with("no cameras found"));
        let text = listing_text(&[cam(0, "Integrated Webcam")]);
        assert!(
            text.contains("    0  Integrated Webcam  (/dev/video0)"),
            "{text}"
        );
    }
}
