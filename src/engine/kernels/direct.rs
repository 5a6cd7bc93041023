//! The forward convolution of layers with few inputs per output (`K = c_in · kh · kw` up to
//! [`MAX_K`], one group): a network's first layer on an RGB image, such as EfficientNet's 3×3
//! stride-2 stem (K = 27). Run by [`super::conv::conv2d`] instead of im2col + GEMM, whose
//! column matrix is as large as the output for such layers and whose GEMM is too shallow to
//! reach speed. Here output channels go in vector lanes ([`super::lanes`]): a task takes one
//! image's group of [`LANES`] output channels, copies the image into a zero border once, and
//! computes each output pixel as `K` multiply-adds of a broadcast input value by a vector of
//! weights, in bands of rows that are transposed back to `[c_out, ho, wo]` while in cache.
//! At the AVX2 and AVX-512 levels, stride-2 3-wide layers (the stem) run `direct/pixels.rs`
//! instead, with output pixels in lanes and no transposes.

use std::cell::RefCell;
use std::mem::MaybeUninit;
use std::sync::atomic::{AtomicU64, Ordering};

use super::geometry::{ConvGeometry, ZeroBorder};
use super::lanes::{LANES, Lanes, by_groups, fma_splat, from_lanes, pack_filters};
use super::simd::SimdLevel;

#[cfg(target_arch = "x86_64")]
mod pixels;

/// Deepest column (`c_in · kh · kw`) computed here; deeper layers go to the GEMM.
pub const MAX_K: usize = 64;

/// Output pixels along a row computed together, sharing each tap's weight load.
const PIXEL_BLOCK: usize = 4;

/// Output rows computed before they are transposed out (a band's lanes stay in L1/L2).
const BAND_ROWS: usize = 4;

/// `x [n, c_in, h, w]` ⊛ `weight [c_out, c_in, kh, kw]` (+ `bias [c_out]`) at `level` (else
/// the portable kernels), row-major `f32`: the output `[n, c_out, ho, wo]`; `None` unless
/// `g` has one group, a spatial kernel and `K` ≤ [`MAX_K`], and the slices have its sizes.
pub fn direct_conv2d(
    level: SimdLevel,
    x: &[f32],
    weight: &[f32],
    bias: Option<&[f32]>,
    g: &ConvGeometry,
) -> Option<Vec<f32>> {
    let k = g.k();
    let sizes_agree = x.len() == g.n * g.c_in * g.h * g.w
        && weight.len() == g.c_out * k
        && bias.is_none_or(|b| b.len() == g.c_out);
    if g.groups != 1 || k > MAX_K || g.kernel == [1, 1] || !sizes_agree {
        return None;
    }
    let level = if level.supported() {
        level
    } else {
        SimdLevel::Portable
    };
    let image_len = g.c_in * g.h * g.w;
    #[cfg(target_arch = "x86_64")]
    if level >= SimdLevel::Avx2Fma && pixels::takes(g) {
        let group_task = |taps: &mut Vec<Lanes>, image: usize, group: usize, dst: &mut [_]| {
            let channels = dst.len() / (g.ho * g.wo);
            let first = group * LANES;
            let bias = pack_filters(
                &weight[first * k..][..channels * k],
                bias.map(|b| &b[first..][..channels]),
                k,
                taps,
            );
            let image = &x[image * image_len..][..image_len];
            // SAFETY: the CPU has the level's features (it is supported, checked above) and
            // `pixels` takes `g`.
            unsafe {
                match level {
                    SimdLevel::Avx512 => pixels::conv_group(dst, image, taps, &bias, channels, g),
                    _ => pixels::conv_group_avx2(dst, image, taps, &bias, channels, g),
                }
            };
        };
        // SAFETY: both pixels kernels write every slot of their `dst`.
        return Some(unsafe { by_groups([g.n, g.c_out, g.ho * g.wo], &TAPS, group_task) });
    }
    let call = CALLS.fetch_add(1, Ordering::Relaxed);
    let group_task = |scratch: &mut Scratch, image: usize, group: usize, dst: &mut [_]| {
        let channels = dst.len() / (g.ho * g.wo);
        let first = group * LANES;
        scratch.load(&x[image * image_len..][..image_len], (call, image), g);
        scratch.bias = pack_filters(
            &weight[first * k..][..channels * k],
            bias.map(|b| &b[first..][..channels]),
            k,
            &mut scratch.taps,
        );
        conv_group(level, scratch, channels, g, dst);
    };
    // SAFETY: `conv_group` writes every slot of its `dst`, band by band.
    Some(unsafe { by_groups([g.n, g.c_out, g.ho * g.wo], &SCRATCH, group_task) })
}

thread_local! {
    /// Each thread's taps for the [`pixels`] kernels, kept between calls ([`by_groups`] says
    /// why).
    static TAPS: RefCell<Vec<Lanes>> = const { RefCell::new(Vec::new()) };
    /// Each thread's [`Scratch`], kept between calls.
    static SCRATCH: RefCell<Scratch> = RefCell::new(Scratch::default());
}

/// Numbers the calls of [`direct_conv2d`], so that a thread's [`Scratch`] knows which
/// call's image it holds.
static CALLS: AtomicU64 = AtomicU64::new(0);

/// A thread's reusable buffers.
#[derive(Default)]
struct Scratch {
    /// `[c_in, rows, cols]`: the image in its zero border ([`ConvGeometry::padded_size`]).
    padded: ZeroBorder<f32>,
    /// Which call's image `padded` holds (`(call, image)`: a thread's next group of the same
    /// image reuses it; a call has one geometry).
    image: Option<(u64, usize)>,
    /// `[K]` lanes: tap `(ci, ky, kx)`'s weight for each channel of the group.
    taps: Vec<Lanes>,
    bias: Lanes,
    /// `[BAND_ROWS · wo]` lanes: a band of outputs.
    band: Vec<Lanes>,
}

impl Scratch {
    /// Copies image `image` (`x [c_in, h, w]`) into `padded`, unless it is there already.
    fn load(&mut self, x: &[f32], image: (u64, usize), g: &ConvGeometry) {
        let [rows, cols] = g.padded_size();
        if self.image == Some(image) {
            return;
        }
        // Only the interior is rewritten (`ZeroBorder`).
        let padded = self.padded.for_geometry(g, g.c_in * rows * cols);
        let [py, px] = g.pads_before;
        for (plane, padded) in x
            .chunks_exact(g.h * g.w)
            .zip(padded.chunks_exact_mut(rows * cols))
        {
            for (y, row) in plane.chunks_exact(g.w).enumerate() {
                padded[(y + py) * cols + px..][..g.w].copy_from_slice(row);
            }
        }
        self.image = Some(image);
    }
}

/// Fills `dst` (`[channels, ho, wo]`) from the scratch's image and taps, band by band.
fn conv_group(
    level: SimdLevel,
    scratch: &mut Scratch,
    channels: usize,
    g: &ConvGeometry,
    dst: &mut [MaybeUninit<f32>],
) {
    let plane_out = g.ho * g.wo;
    let Scratch {
        padded,
        taps,
        bias,
        band,
        ..
    } = scratch;
    for first_row in (0..g.ho).step_by(BAND_ROWS) {
        let rows = BAND_ROWS.min(g.ho - first_row);
        band.resize(rows * g.wo, [0.0; LANES]);
        let rows_out = Band {
            out: &mut band[..rows * g.wo],
            first_row,
            padded: padded.values(),
            taps,
            bias: *bias,
            g,
        };
        compute(level, rows_out);
        from_lanes(
            level,
            &band[..rows * g.wo],
            channels,
            &mut dst[first_row * g.wo..],
            plane_out,
        );
    }
}

/// The arithmetic of one band: `out [rows · wo]` lanes for output rows from `first_row`.
struct Band<'a> {
    out: &'a mut [Lanes],
    first_row: usize,
    padded: &'a [f32],
    taps: &'a [Lanes],
    bias: Lanes,
    g: &'a ConvGeometry,
}

/// Computes `band` with the kernels of `level` (supported by the CPU: `direct_conv2d`
/// checks).
fn compute(level: SimdLevel, band: Band<'_>) {
    super::simd::run_at_level!(level, compute_body, band, Band<'_>);
}

/// The body of [`compute`], compiled once per level; `FMA` selects fused multiply-adds.
#[inline(always)]
fn compute_body<const FMA: bool>(band: Band<'_>) {
    let Band {
        out,
        first_row,
        padded,
        taps,
        bias,
        g,
    } = band;
    let [kh, kw] = g.kernel;
    let [sy, sx] = g.strides;
    let [dy, dx] = g.dilations;
    let [rows, cols] = g.padded_size();
    for (r, row_out) in out.chunks_exact_mut(g.wo).enumerate() {
        let oy = first_row + r;
        let mut blocks = row_out.chunks_exact_mut(PIXEL_BLOCK);
        let mut ox = 0;
        for block in &mut blocks {
            let mut acc = [bias; PIXEL_BLOCK];
            for (ci, plane) in padded.chunks_exact(rows * cols).enumerate() {
                for ky in 0..kh {
                    let row = &plane[(oy * sy + ky * dy) * cols..];
                    let taps = &taps[(ci * kh + ky) * kw..][..kw];
                    for (kx, w) in taps.iter().enumerate() {
                        for (j, a) in acc.iter_mut().enumerate() {
                            fma_splat::<FMA>(a, w, row[(ox + j) * sx + kx * dx]);
                        }
                    }
                }
            }
            block.copy_from_slice(&acc);
            ox += PIXEL_BLOCK;
        }
        for (j, o) in blocks.into_remainder().iter_mut().enumerate() {
            let mut acc = bias;
            for (ci, plane) in padded.chunks_exact(rows * cols).enumerate() {
                for ky in 0..kh {
                    let row = &plane[(oy * sy + ky * dy) * cols..];
                    let taps = &taps[(ci * kh + ky) * kw..][..kw];
                    for (kx, w) in taps.iter().enumerate() {
                        fma_splat::<FMA>(&mut acc, w, row[(ox + j) * sx + kx * dx]);
                    }
                }
            }
            *o = acc;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::kernels::test_support::{self, values, worst_error};

    /// `(n, c_in, c_out, h, w, kernel, strides, pads [top, left, bottom, right], dilations)`.
    type Case = (
        usize,
        usize,
        usize,
        usize,
        usize,
        [usize; 2],
        [usize; 2],
        [usize; 4],
        [usize; 2],
    );

    fn geometry(&(n, c_in, c_out, h, w, kernel, strides, pads, dilations): &Case) -> ConvGeometry {
        test_support::geometry(
            [n, c_in, c_out, 1],
            [h, w],
            kernel,
            strides,
            pads,
            dilations,
        )
    }

    /// EfficientNet's stem in small (3×3 stride 2, TF-style asymmetric padding), more output
    /// channels than one group with a short last group, rows not a multiple of the pixel
    /// block or the band, a dilation, a batch, and a 1-channel 5×5; then two that the pixels
    /// kernels (AVX2, AVX-512) take (rows of 17 and 33 outputs: a last, short register; a
    /// short last channel group; a 5-high kernel; padding on every side).
    const CASES: [Case; 7] = [
        (1, 3, 32, 15, 15, [3, 3], [2, 2], [0, 0, 1, 1], [1, 1]),
        (2, 3, 21, 9, 11, [3, 3], [1, 1], [1, 1, 1, 1], [1, 1]),
        (1, 2, 8, 13, 10, [3, 3], [1, 2], [2, 1, 2, 1], [2, 2]),
        (3, 1, 16, 12, 12, [5, 5], [2, 2], [2, 2, 2, 2], [1, 1]),
        (1, 4, 17, 7, 6, [3, 1], [1, 1], [1, 0, 1, 0], [1, 1]),
        (2, 3, 20, 37, 35, [3, 3], [2, 2], [0, 0, 1, 1], [1, 1]),
        (1, 2, 7, 21, 66, [5, 3], [2, 2], [2, 1, 2, 1], [1, 1]),
    ];

    /// Equals the convolution's definition, summed in f64 with explicit bounds checks, at
    /// every SIMD level this CPU runs.
    #[test]
    fn equals_the_definition() {
        for (i, case) in CASES.iter().enumerate() {
            let g = geometry(case);
            #[cfg(target_arch = "x86_64")]
            assert_eq!(pixels::takes(&g), i >= 5, "case {i}");
            let x = values(g.n * g.c_in * g.h * g.w, 3 + i as u64);
            let weight = values(g.c_out * g.k(), 11 + i as u64);
            let bias = values(g.c_out, 23 + i as u64);
            // Every level's output kept until all are checked, so none can reuse another's
            // freed buffer (an output slot a kernel skipped would hold the right value).
            let levels = SimdLevel::supported_levels();
            let outputs: Vec<Vec<f32>> = (levels.iter())
                .map(|&level| direct_conv2d(level, &x, &weight, Some(&bias), &g).expect("direct"))
                .collect();
            for (level, got) in levels.iter().zip(&outputs) {
                let worst = worst_error(got, &x, &weight, &bias, &g);
                assert!(worst <= 1e-5, "case {i} at {level:?}: max |Δ| {worst:e}");
            }
        }
    }

    /// Each thread keeps its padded image between calls: a second call on another input of
    /// the same geometry (the next pass's image 0) reads its own input, and another geometry
    /// gets a fresh zero border. One thread, at the portable level (the kernel that keeps
    /// the image), so every call uses the same buffer.
    #[test]
    fn a_kept_image_is_not_reused_by_the_next_call() {
        let g = geometry(&CASES[0]);
        let other = geometry(&(1, 3, 21, 6, 7, [3, 3], [2, 2], [1, 1, 1, 1], [1, 1]));
        let pool = rayon::ThreadPoolBuilder::new().num_threads(1).build();
        let pool = pool.expect("a one-thread pool");
        pool.install(|| {
            for (i, g) in [g, g, other, g].iter().enumerate() {
                let x = values(g.n * g.c_in * g.h * g.w, 70 + i as u64);
                let weight = values(g.c_out * g.k(), 80);
                let bias = values(g.c_out, 90);
                let got = direct_conv2d(SimdLevel::Portable, &x, &weight, Some(&bias), g);
                let worst = worst_error(&got.expect("direct"), &x, &weight, &bias, g);
                assert!(worst <= 1e-5, "call {i}: max |Δ| {worst:e}");
            }
        });
    }

    #[test]
    fn only_shallow_ungrouped_spatial_layers_are_taken() {
        let g = geometry(&(1, 8, 16, 9, 9, [3, 3], [1, 1], [1, 1, 1, 1], [1, 1])); // K = 72
        let x = vec![0.0; 8 * 81];
        assert!(direct_conv2d(SimdLevel::Portable, &x, &vec![0.0; 16 * 72], None, &g).is_none());
        let g = geometry(&(1, 8, 16, 9, 9, [1, 1], [1, 1], [0, 0, 0, 0], [1, 1]));
        assert!(direct_conv2d(SimdLevel::Portable, &x, &vec![0.0; 16 * 8], None, &g).is_none());
        let g = geometry(&(1, 3, 4, 9, 9, [3, 3], [1, 1], [1, 1, 1, 1], [1, 1]));
        let short = vec![0.0; 10];
        assert!(direct_conv2d(SimdLevel::Portable, &short, &vec![0.0; 4 * 27], None, &g).is_none());
    }
}
