//! ConvLens: a native, GPU-accelerated visualiser of convolutional neural networks.
//!
//! Data flow: [`model`] imports an ONNX file (or the embedded EfficientNet-Lite0) into a
//! small graph IR with static shapes, and turns an image into the network's input tensor;
//! [`engine`] uploads the weights to a burn device (wgpu GPU or the flex CPU backend) and
//! runs the forward pass, keeping every layer's output, and the reverse passes behind the
//! gradient views (on the CPU the heavy ops are host kernels: im2col + the `gemm` crate for
//! convolutions, direct kernels with channels in vector lanes for depthwise and shallow ones,
//! sparse convolution gradients, pooling, LRN); [`scan`] runs it over a dataset (every
//! filter's top examples and statistics, sharded); [`viz`] turns activation maps into
//! normalised tiles; [`export`] writes the paper's data directory (architecture, per-filter
//! PNGs, scores, raw arrays). [`render`] draws tiles, shapes and text with wgpu (maps computed
//! on the renderer's own device are copied into its atlas on the GPU); [`ui`] turns
//! the model, the latest results and the interaction state into a scene (pure, no GPU);
//! [`gpu_instance`] opens the wgpu instance both use when no window is involved;
//! [`app`] is the window and its compute worker; [`annotations`] keeps the user's good/bad
//! filter marks, saved atomically ([`atomic_file`]) on every change. [`cli`] is the
//! command-line edge that wires these together, printing an error with its causes as one line
//! (`{:#}`; a library error either shows its cause in its message or chains it, never both).
//! [`bench`] measures how fast each stage is (`convlens bench`). [`format`] is the data
//! directory's format (the method vocabulary, paths, typed JSON documents, the reader), which
//! [`export`] writes and `view --data` reads.

// Nothing a user or a file can influence may unwrap: errors are values (see each module's
// error enum). Tests may unwrap.
#![deny(clippy::unwrap_used, clippy::expect_used)]
#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used))]

pub mod annotations;
pub mod app;
pub mod atomic_file;
pub mod bench;
pub mod cli;
pub mod decode_guard;
pub mod engine;
pub mod export;
pub mod format;
#[doc(hidden)]
pub mod fuzz_cases;
pub mod gpu_instance;
pub mod model;
pub mod npy;
pub mod panic_payload;
pub mod render;
pub mod scan;
pub mod ui;
pub mod viz;
