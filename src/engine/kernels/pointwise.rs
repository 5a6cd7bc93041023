//! The forward 1×1 convolution on the CPU (flex) device: per image, `out [c_out, H·W] =
//! W [c_out, c_in] × x [c_in, H·W] + bias`, the input read in place as its own column matrix.
//! Each image's output rows are split into blocks that run side by side, one sequential
//! `gemm` call per block onto rows that already hold the bias. Used by
//! [`super::conv::conv2d`] for [`ConvGeometry::is_pointwise`] geometries.
//!
//! Why not flex's 1×1 path or the `gemm` crate's own threads: on EfficientNet-Lite0's 32
//! pointwise shapes (each product timed alone, median of 30, 2-core Intel Xeon, AVX-512), one
//! sequential `gemm` call ran at 60–75 GMAC/s while `Parallelism::Rayon` over the same
//! product ran at 30–100 GMAC/s, slower on most shapes (its packing and barriers cost more
//! than products of 0.1–0.4 ms gain); flex adds a calloc'd output (a page fault per page)
//! and a separate single-threaded bias pass. The 32 took 11.3–12.2 ms of the forward pass on
//! flex, 7.3–8.3 ms here.

use std::mem::MaybeUninit;

use rayon::prelude::*;

use super::geometry::ConvGeometry;

/// Below this many multiply-adds per image a block split costs more than it gains.
const SPLIT_FROM_MACS: usize = 1 << 20;

/// `x [n, c_in, h, w]` ⊛ `weight [c_out, c_in, 1, 1]` (+ `bias [c_out]`) for a pointwise
/// geometry (`g.is_pointwise()`, `g.groups == 1`): the output `[n, c_out, h, w]`.
pub fn pointwise_conv2d(
    x: &[f32],
    weight: &[f32],
    bias: Option<&[f32]>,
    g: &ConvGeometry,
) -> Vec<f32> {
    let (c_in, c_out, hw) = (g.c_in, g.c_out, g.h * g.w);
    assert!(
        g.is_pointwise() && g.groups == 1,
        "pointwise_conv2d on a {:?} kernel with {} groups",
        g.kernel,
        g.groups
    );
    assert!(
        x.len() == g.n * c_in * hw && weight.len() == c_out * c_in,
        "pointwise_conv2d: x has {} values for [{}, {c_in}, {hw}], weight {} for [{c_out}, {c_in}]",
        x.len(),
        g.n,
        weight.len()
    );
    if let Some(b) = bias {
        assert_eq!(b.len(), c_out, "pointwise_conv2d: bias length");
    }
    if g.n * c_out * hw == 0 || c_in == 0 {
        // Nothing to multiply (a degenerate shape): every output is its bias.
        let mut out = vec![0f32; g.n * c_out * hw];
        if let (Some(b), true) = (bias, hw > 0) {
            for (plane, &v) in out.chunks_mut(hw).zip(b.iter().cycle()) {
                plane.fill(v);
            }
        }
        return out;
    }
    let rows_per_block = rows_per_block(g);
    let mut out = Vec::<f32>::with_capacity(g.n * c_out * hw);
    let spare = &mut out.spare_capacity_mut()[..g.n * c_out * hw];
    spare
        .par_chunks_mut(c_out * hw)
        .zip(x.par_chunks(c_in * hw))
        .for_each(|(image_out, image_x)| {
            // [c_in, H·W]: the 1×1 convolution's column matrix is the image itself.
            image_out
                .par_chunks_mut(rows_per_block * hw)
                .enumerate()
                .for_each(|(block, rows)| {
                    let first = block * rows_per_block;
                    let rows_n = rows.len() / hw;
                    let dst = fill_rows(rows, bias.map(|b| &b[first..first + rows_n]), hw);
                    super::matmul::matmul_onto(
                        dst,
                        true,
                        (&weight[first * c_in..(first + rows_n) * c_in], false),
                        image_x,
                        [rows_n, hw, c_in],
                        gemm::Parallelism::None,
                    );
                });
        });
    // SAFETY: the chunks above cover the first `n · c_out · hw` slots and `fill_rows`
    // wrote every one of them (a panic there unwinds before this line).
    unsafe { out.set_len(g.n * c_out * hw) };
    out
}

/// Output rows per block: all of an image's rows when it is small or there are at least as
/// many images as threads, else about one block per thread (images × blocks ≥ threads).
fn rows_per_block(g: &ConvGeometry) -> usize {
    let threads = rayon::current_num_threads();
    let macs = g.c_out * g.c_in * g.h * g.w;
    if g.n >= threads || macs < SPLIT_FROM_MACS {
        return g.c_out.max(1);
    }
    let blocks = threads.div_ceil(g.n).min(g.c_out).max(1);
    g.c_out.div_ceil(blocks)
}

/// Writes each row of `rows` (`[r, hw]`) with its bias (0 without one) and returns the rows
/// as initialised values.
fn fill_rows<'a>(
    rows: &'a mut [MaybeUninit<f32>],
    bias: Option<&[f32]>,
    hw: usize,
) -> &'a mut [f32] {
    for (r, row) in rows.chunks_mut(hw).enumerate() {
        super::init_with(row, bias.map_or(0.0, |b| b[r]));
    }
    // SAFETY: every row was initialised just above.
    unsafe { super::assume_init_mut(rows) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::graph::Window2d;

    /// Hand-written loops: out[b, o, p] = bias[o] + Σ_i w[o, i] · x[b, i, p].
    fn reference(
        x: &[f32],
        w: &[f32],
        bias: Option<&[f32]>,
        n: usize,
        ci: usize,
        co: usize,
        hw: usize,
    ) -> Vec<f32> {
        let mut out = vec![0f32; n * co * hw];
        for b in 0..n {
            for o in 0..co {
                for p in 0..hw {
                    let mut acc = f64::from(bias.map_or(0.0, |bias| bias[o]));
                    for i in 0..ci {
                        acc += f64::from(w[o * ci + i]) * f64::from(x[(b * ci + i) * hw + p]);
                    }
                    out[(b * co + o) * hw + p] = acc as f32;
                }
            }
        }
        out
    }

    fn geometry(n: usize, ci: usize, co: usize, h: usize, w: usize) -> ConvGeometry {
        let window = Window2d {
            kernel: [1, 1],
            strides: [1, 1],
            pads: [(0, 0), (0, 0)],
            dilations: [1, 1],
        };
        ConvGeometry::new(&window, 1, &[n, ci, h, w], &[co, ci, 1, 1], &[n, co, h, w]).unwrap()
    }

    #[test]
    fn matches_loops_split_or_not() {
        // Small (one block per image), large enough to split over rows, and a batch.
        for (n, ci, co, h, w) in [
            (1, 3, 5, 4, 3),
            (1, 40, 33, 32, 32),
            (3, 17, 9, 7, 7),
            (2, 64, 48, 24, 24),
        ] {
            let x: Vec<f32> = (0..n * ci * h * w)
                .map(|i| ((i * 37 % 101) as f32 - 50.0) / 25.0)
                .collect();
            let wt: Vec<f32> = (0..co * ci)
                .map(|i| ((i * 53 % 89) as f32 - 44.0) / 40.0)
                .collect();
            let bias: Vec<f32> = (0..co).map(|o| o as f32 * 0.25 - 1.0).collect();
            let g = geometry(n, ci, co, h, w);
            for b in [None, Some(bias.as_slice())] {
                let got = pointwise_conv2d(&x, &wt, b, &g);
                let want = reference(&x, &wt, b, n, ci, co, h * w);
                let worst = got
                    .iter()
                    .zip(&want)
                    .map(|(a, b)| (a - b).abs())
                    .fold(0f32, f32::max);
                assert!(
                    worst <= 1e-4,
                    "[{n}, {ci}→{co}, {h}×{w}] bias {}: worst {worst}",
                    b.is_some()
                );
            }
        }
    }

    /// Empty shapes give empty (or bias-only) outputs instead of a zero chunk size panic.
    #[test]
    fn degenerate_shapes() {
        assert!(pointwise_conv2d(&[], &[0.0; 6], None, &geometry(1, 3, 2, 0, 4)).is_empty());
        let no_inputs = pointwise_conv2d(&[], &[], Some(&[1.5, -2.0]), &geometry(1, 0, 2, 1, 2));
        assert_eq!(no_inputs, vec![1.5, 1.5, -2.0, -2.0]);
    }

    #[test]
    fn splits_rows_only_when_it_pays() {
        let threads = rayon::current_num_threads();
        assert_eq!(rows_per_block(&geometry(1, 3, 5, 4, 3)), 5);
        let big = geometry(1, 64, 96, 64, 64);
        assert_eq!(rows_per_block(&big), 96usize.div_ceil(threads));
        assert_eq!(rows_per_block(&geometry(threads, 64, 96, 64, 64)), 96);
    }
}
