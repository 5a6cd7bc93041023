//! The views built on the engine's passes, one image (or map) per filter of a layer:
//! per-filter gradient images ([`attribution`], the paper's central picture), Grad-CAM
//! ([`gradcam`]), occlusion sensitivity ([`occlusion`]) and feature visualisation by
//! optimisation ([`featvis`]). Each drives [`super::Engine`]'s
//! forward pass and [`super::reverse`]'s reverse pass; none knows about the UI or files.

pub mod attribution;
pub mod featvis;
pub mod gradcam;
pub mod occlusion;
