//! The shape of one 2-D convolution, shared by every conv kernel (forward GEMM, the reverse
//! pass's sparse, GEMM and depthwise input gradients) and by the plan that picks among them.

use crate::model::graph::Window2d;

/// Shapes of one 2-D convolution: input `[n, c_in, h, w]`, weight `[c_out, c_in/groups, kh,
/// kw]`, output `[n, c_out, ho, wo]`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ConvGeometry {
    pub n: usize,
    pub c_in: usize,
    pub h: usize,
    pub w: usize,
    pub c_out: usize,
    pub kernel: [usize; 2],
    pub strides: [usize; 2],
    /// `[top, left]` padding (bottom/right follow from the output size).
    pub pads_before: [usize; 2],
    pub dilations: [usize; 2],
    pub groups: usize,
    pub ho: usize,
    pub wo: usize,
}

impl ConvGeometry {
    /// From the node's window, input shape `[N, C, H, W]`, weight shape and output shape;
    /// `None` when a shape is not 4-D or the channels do not divide into the groups.
    pub fn new(
        window: &Window2d,
        groups: usize,
        x: &[usize],
        weight: &[usize],
        out: &[usize],
    ) -> Option<Self> {
        let (&[n, c_in, h, w], &[c_out, cg, kh, kw], &[_, _, ho, wo]) = (x, weight, out) else {
            return None;
        };
        (groups > 0 && c_in == cg * groups && c_out.is_multiple_of(groups)).then_some(Self {
            n,
            c_in,
            h,
            w,
            c_out,
            kernel: [kh, kw],
            strides: window.strides,
            pads_before: [window.pads[0].0, window.pads[1].0],
            dilations: window.dilations,
            groups,
            ho,
            wo,
        })
    }

    /// Rows of a group's column matrix: `(c_in / groups) · kh · kw`.
    pub fn k(&self) -> usize {
        self.c_in / self.groups * self.kernel[0] * self.kernel[1]
    }

    /// Whether this convolution goes through [`super::conv::conv2d`]'s im2col + GEMM rather
    /// than flex: spatial kernels whose column matrix is at least 27 deep (`c_in/g · kh ·
    /// kw`: an RGB 3×3 first layer and anything deeper), where one big GEMM per group pays
    /// off — AlexNet's 11×11 conv1: 5.5 ms on flex, the whole forward pass 19.0 → 15.7 ms once
    /// it ran here; EfficientNet-Lite0's 3×3 stem (27 deep): 1.5 → 0.8 ms (2-core Intel
    /// Xeon, AVX-512). Pointwise (1×1) convolutions have their own kernel
    /// ([`super::pointwise`]), depthwise ones too ([`super::depthwise`], 9 or 25 deep).
    pub fn suits_gemm(&self) -> bool {
        self.k() >= 27 && self.kernel != [1, 1]
    }

    /// `[rows, cols]` of the input with its padding around it, as far as any output's taps
    /// read (bottom and right padding included, and at least the whole input): the buffer
    /// size of the direct kernels, which copy the input into a zero border once rather than
    /// bounds-check every tap.
    pub fn padded_size(&self) -> [usize; 2] {
        let [kh, kw] = self.kernel;
        let [sy, sx] = self.strides;
        let [dy, dx] = self.dilations;
        let rows =
            ((self.ho.max(1) - 1) * sy + (kh - 1) * dy + 1).max(self.pads_before[0] + self.h);
        let cols =
            ((self.wo.max(1) - 1) * sx + (kw - 1) * dx + 1).max(self.pads_before[1] + self.w);
        [rows, cols]
    }

    /// One filter per channel (`groups = c_in = c_out`, more than one): a depthwise
    /// convolution ([`super::depthwise`]).
    pub fn is_depthwise(&self) -> bool {
        self.groups > 1 && self.groups == self.c_in && self.c_out == self.c_in
    }

    /// A 1×1, stride-1, unpadded convolution: each output pixel mixes the channels of the
    /// same input pixel, so the input is its own column matrix.
    pub fn is_pointwise(&self) -> bool {
        self.kernel == [1, 1]
            && self.strides == [1, 1]
            && self.pads_before == [0, 0]
            && [self.ho, self.wo] == [self.h, self.w]
    }
}

/// A buffer holding inputs in a zero border laid out for one geometry at a time, kept by a
/// thread between calls (the direct and depthwise kernels' padded inputs): every input of one
/// geometry is written to the same interior positions, so the border stays zero until another
/// geometry, whose interior may cover this one's border, takes the buffer and it starts again
/// from zeros.
#[derive(Debug, Default)]
pub struct ZeroBorder<T> {
    values: Vec<T>,
    geometry: Option<ConvGeometry>,
}

impl<T: Clone + Default> ZeroBorder<T> {
    /// The buffer for `g`: `len` zero (`T::default()`) values when it last held another
    /// geometry or none, else as the last input of `g` left it.
    pub fn for_geometry(&mut self, g: &ConvGeometry, len: usize) -> &mut [T] {
        if self.geometry != Some(*g) {
            self.values.clear();
            self.values.resize(len, T::default());
            self.geometry = Some(*g);
        }
        &mut self.values
    }

    /// The values as the last [`ZeroBorder::for_geometry`] left them.
    pub fn values(&self) -> &[T] {
        &self.values
    }
}

/// The lanes `l` of a 16-value load from column `start` of a row `w` wide whose column
/// `start + l` lies in the row (`0..w`): the mask with which the AVX-512 kernels that read
/// unpadded rows (`depthwise/strided.rs`, `depthwise/unpadded.rs`, `direct/pixels.rs`) load
/// zeros in the padding instead.
#[inline(always)]
pub fn columns_inside(start: isize, w: isize) -> u16 {
    let first = (-start).clamp(0, 16) as u32;
    let last = (w - start).clamp(0, 16) as u32;
    if first >= last {
        0
    } else {
        ((u32::MAX >> (32 - (last - first))) << first) as u16
    }
}
