//! Host (CPU) kernels the engine runs on the flex device in place of flex's own ops, where
//! they are measurably faster: the forward convolution as im2col + GEMM ([`conv`], on the
//! `gemm` crate), for 1×1 ones as row blocks of GEMMs ([`pointwise`]), for depthwise ones
//! directly ([`depthwise`]), fully connected layers ([`linear`]), max-pooling ([`pool`]),
//! LRN ([`lrn`]), ReLU and Clip ([`unary`]), and the reverse pass's input
//! gradients (sparse [`sparse_grad`], direct [`depthwise`], the ReLU rules, max-pool and LRN
//! in [`reverse`]). [`simd`] picks the SIMD level once per process (`CONVLENS_CPU_KERNELS`
//! forces one). Every kernel works on row-major `f32` slices with a
//! [`geometry::ConvGeometry`] or its own geometry struct; none knows about burn tensors or
//! the graph, except the `plan` functions that read a node.

pub mod conv;
pub mod depthwise;
pub mod direct;
pub mod geometry;
pub mod lanes;
pub mod linear;
pub mod lrn;
mod matmul;
pub mod pointwise;
pub mod pool;
pub mod reverse;
pub mod simd;
pub mod sparse_grad;
pub mod taps;
#[cfg(test)]
mod test_support;
pub mod unary;

/// `len` zeros for a kernel that adds into its output (`+=`, scatter), written out rather
/// than `vec![0.0; len]`: calloc'd memory starts as the shared zero page, so the first
/// `+=` on each page (a read, then a write) takes a copy-on-write fault plus a TLB
/// shootdown to every thread of the process; writing the zeros first faults each page in
/// once, without the shootdown. Feature vis of EfficientNet-Lite0 (2 chunks at once,
/// 2-core Intel Xeon): the depthwise input gradient's faults were ~20% of the time.
pub fn zeros_to_accumulate(len: usize) -> Vec<f32> {
    let mut out = Vec::with_capacity(len);
    // `black_box`: keep the allocator call and the memset from folding into a calloc.
    std::hint::black_box(&mut out).resize(len, 0.0);
    out
}

/// `buf` written with `value` throughout, as initialised values: how a kernel that fills a
/// fresh output in parallel tasks initialises each task's part where it is about to write it
/// (in cache, on every core) rather than zeroing the whole output on one thread first.
pub fn init_with(buf: &mut [std::mem::MaybeUninit<f32>], value: f32) -> &mut [f32] {
    for v in buf.iter_mut() {
        v.write(value);
    }
    // SAFETY: every element was written just above.
    unsafe { assume_init_mut(buf) }
}

/// `buf` as the initialised values it holds (what `<[MaybeUninit<T>]>::assume_init_mut`
/// will be once stable): the one cast of this kind in the kernels.
///
/// # Safety
/// Every element of `buf` must have been written.
pub unsafe fn assume_init_mut(buf: &mut [std::mem::MaybeUninit<f32>]) -> &mut [f32] {
    // SAFETY: `MaybeUninit<f32>` has `f32`'s layout, and the caller vouches that every
    // element is initialised.
    unsafe { &mut *(std::ptr::from_mut::<[std::mem::MaybeUninit<f32>]>(buf) as *mut [f32]) }
}
