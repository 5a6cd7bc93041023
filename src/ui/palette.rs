//! The colours every canvas of the scene uses (RGBA, linear 0–1), in one place so the scene
//! builder and the architecture canvas agree without importing each other.

pub const BG: [f32; 4] = [0.075, 0.082, 0.098, 1.0];
pub const PANEL: [f32; 4] = [0.11, 0.12, 0.14, 1.0];
pub const PANEL_EDGE: [f32; 4] = [0.22, 0.24, 0.28, 1.0];
pub const TEXT: [f32; 4] = [0.92, 0.93, 0.95, 1.0];
pub const DIM: [f32; 4] = [0.62, 0.65, 0.70, 1.0];
pub const ACCENT: [f32; 4] = [1.0, 0.80, 0.25, 1.0];
pub const LINK: [f32; 4] = [0.55, 0.58, 0.64, 1.0];
pub const SKIP: [f32; 4] = [0.85, 0.55, 0.25, 0.55];
/// Fill of a collapsed block of layers.
pub const BLOCK: [f32; 4] = [0.30, 0.33, 0.45, 1.0];
/// Annotation colours, as the paper: blue good, red bad, grey none.
pub const GOOD: [f32; 4] = [0.25, 0.55, 1.0, 1.0];
pub const BAD: [f32; 4] = [0.95, 0.25, 0.22, 1.0];
pub const UNMARKED: [f32; 4] = [0.45, 0.47, 0.52, 1.0];
