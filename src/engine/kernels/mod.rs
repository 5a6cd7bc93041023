//! Host (CPU) kernels the engine runs on the flex device in place of flex's own ops, where
//! they are measurably faster: the forward convolution as im2col + GEMM ([`conv`], on the
//! `gemm` crate) or, for depthwise ones, directly ([`depthwise`]), fully connected
//! layers ([`linear`]), max-pooling ([`pool`]), LRN ([`lrn`]), and the reverse pass's input
//! gradients (sparse [`sparse_grad`], direct [`depthwise`], the ReLU rules, max-pool and LRN
//! in [`reverse`]). [`simd`] picks the SIMD level once per process (`CONVLENS_CPU_KERNELS`
//! forces one). Every kernel works on row-major `f32` slices with a
//! [`geometry::ConvGeometry`] or its own geometry struct; none knows about burn tensors or
//! the graph, except the `plan` functions that read a node.

pub mod conv;
pub mod depthwise;
pub mod geometry;
pub mod linear;
pub mod lrn;
pub mod pool;
pub mod reverse;
pub mod simd;
pub mod sparse_grad;
pub mod taps;
