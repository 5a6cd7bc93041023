//! From tensors to pictures, GPU-free: per-tile normalisation of activation maps into
//! 8-bit tiles (the CPU twin of the renderer's shader path, used by exports and tests).

pub mod gradient_norm;
pub mod histogram;
pub mod overlay;
pub mod stats;
pub mod summary_passes;
pub mod tile_summary;
pub mod tiles;
