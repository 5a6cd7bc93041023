//! Where each file of a data directory lives, relative to its root. The writer (`export`) and
//! the reader ([`super::read`]) both build paths here, so the two cannot disagree.
//!
//! ```text
//! architecture.json  scores.json  input.png
//! <method>/<stem>_<n>.png              per-filter tiles, n from 1 (method: forward, gbp, …)
//! gradcam/<stem>.png                   one Grad-CAM map per layer
//! occlusion/class_<c>.png              the class score's occlusion map
//! raw/<folder>/<stem>.npy              unnormalised arrays (folder: a method or gradcam)
//! raw/occlusion/class_<c>.npy
//! ```

use std::path::{Path, PathBuf};

use super::Method;

/// The layer list; written last by an export, so its presence marks a complete directory.
pub const ARCHITECTURE: &str = "architecture.json";
/// Class probabilities and labels.
pub const SCORES: &str = "scores.json";
/// The input as the model saw it (after crop and resize).
pub const INPUT_PICTURE: &str = "input.png";
/// Folder of the Grad-CAM maps (a view, not a per-filter [`Method`]).
pub const GRADCAM: &str = "gradcam";

/// `<root>/<method>/`.
pub fn method_dir(root: &Path, method: Method) -> PathBuf {
    root.join(method.dir_name())
}

/// `<root>/<method>/<stem>_<n>.png` for filter `n` (from 1) of the layer with file stem `stem`.
pub fn tile(root: &Path, method: Method, stem: &str, filter_from_1: usize) -> PathBuf {
    method_dir(root, method).join(format!("{stem}_{filter_from_1}.png"))
}

/// `<root>/gradcam/<stem>.png`.
pub fn gradcam_map(root: &Path, stem: &str) -> PathBuf {
    root.join(GRADCAM).join(format!("{stem}.png"))
}

/// `<root>/occlusion/class_<c>.png`.
pub fn occlusion_class_map(root: &Path, class: usize) -> PathBuf {
    method_dir(root, Method::Occlusion).join(format!("class_{class}.png"))
}

/// `<root>/raw/<folder>/`, `folder` being a method's [`Method::dir_name`] or [`GRADCAM`].
pub fn raw_dir(root: &Path, folder: &str) -> PathBuf {
    root.join("raw").join(folder)
}

/// `<root>/raw/<folder>/<name>.npy` (`name`: a layer's stem, or `class_<c>` for occlusion).
pub fn raw_array(root: &Path, folder: &str, name: &str) -> PathBuf {
    raw_dir(root, folder).join(format!("{name}.npy"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_follow_the_documented_layout() {
        let root = Path::new("d");
        assert_eq!(
            tile(root, Method::Guided, "conv1", 3),
            Path::new("d/gbp/conv1_3.png")
        );
        assert_eq!(gradcam_map(root, "c"), Path::new("d/gradcam/c.png"));
        assert_eq!(
            occlusion_class_map(root, 7),
            Path::new("d/occlusion/class_7.png")
        );
        assert_eq!(
            raw_array(root, "forward", "c"),
            Path::new("d/raw/forward/c.npy")
        );
    }
}
