//! The forward 1×1 convolution on the CPU (flex) device: per image, `out [c_out, H·W] =
//! W [c_out, c_in] × x [c_in, H·W] + bias`, the input read in place as its own column matrix.
//! Each image's output rows are split into blocks that run side by side, one sequential
//! `gemm` call per block onto rows that already hold the bias; at the AVX2 level a single
//! column left after whole 16-column blocks (7×7 maps) is summed as dot products instead
//! ([`dot_columns`]), and products on larger maps run a register-blocked kernel that writes
//! each output once ([`register_blocked`], [`takes_register_blocked`]); at the AVX-512 level
//! the 14² and 7² maps run its 8 × 48 block over whole 48-pixel panels and dot products
//! over the few columns left ([`wide_columns`]).
//! Used by
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
use super::matmul::{Product, matmul_strided};
use super::simd::{self, SimdLevel};

mod dot_columns;
#[cfg(target_arch = "x86_64")]
mod register_blocked;

use dot_columns::dot_columns;

/// Below this many multiply-adds per image a block split costs more than it gains.
const SPLIT_FROM_MACS: usize = 1 << 20;

/// Output columns (pixels) the `gemm` crate's AVX2 and AVX-512 kernels compute at once (two
/// registers); a product whose `H·W` is not a multiple of it ends in a block that computes
/// a whole register of columns for the few left over.
const GEMM_COLUMNS: usize = 16;

/// Up to this many left-over columns are computed as dot products ([`dot_columns`]) instead.
/// For one (7×7 maps: 49 = 3 · 16 + 1) `gemm`'s last block does a register's work for one
/// column: 1152 → 192 channels at 7×7 took 230 µs for 48 columns and 300 µs for 49. One
/// thread, best of 9, 2-core AMD EPYC Zen 3 (AVX2): EfficientNet-Lite0's five 7×7 shapes
/// 11–14% faster with the dot product (e.g. 1152 → 320: 514 → 454 µs); its 14×14 ones (4
/// left over of 196) 2–11% slower, so only one column goes this way. Only at
/// [`SimdLevel::Avx2Fma`]: `gemm`'s AVX-512 blocks are another width and this was not
/// measured there, and at the portable level `gemm` still runs its own FMA kernels while the
/// dot products would not.
const DOT_COLUMNS_MAX: usize = 1;

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
    // The same for every block: the columns left to dot products after `gemm`'s blocks.
    let dot = dot_column_count(hw);
    #[cfg(target_arch = "x86_64")]
    let use_register_blocked = takes_register_blocked(c_in, c_out, hw)
        && (simd::active() == SimdLevel::Avx512 || rows_per_block >= c_out);
    // The register-blocked kernel splits an image's pixels instead of its rows: each task
    // then packs only its own pixels.
    #[cfg(target_arch = "x86_64")]
    let column_span = hw
        .div_ceil(c_out.div_ceil(rows_per_block))
        .next_multiple_of(COLUMN_SPAN_MULTIPLE);
    #[cfg(target_arch = "x86_64")]
    let wide_columns = wide_columns(hw);
    let mut out = Vec::<f32>::with_capacity(g.n * c_out * hw);
    let spare = &mut out.spare_capacity_mut()[..g.n * c_out * hw];
    spare
        .par_chunks_mut(c_out * hw)
        .zip(x.par_chunks(c_in * hw))
        .for_each(|(image_out, image_x)| {
            // [c_in, H·W]: the 1×1 convolution's column matrix is the image itself.
            #[cfg(target_arch = "x86_64")]
            if use_register_blocked {
                // `takes_register_blocked` is only true at the AVX2 and AVX-512 levels, which
                // `simd::active` only reports on CPUs that have them.
                let (level, out_rows) = (simd::active(), register_blocked::OutRows::new(image_out));
                (0..hw.div_ceil(column_span))
                    .into_par_iter()
                    .for_each(|task| {
                        let columns = task * column_span..((task + 1) * column_span).min(hw);
                        // SAFETY: the tasks' column ranges are disjoint.
                        unsafe {
                            register_blocked::pointwise_columns(
                                level,
                                out_rows,
                                weight,
                                bias,
                                image_x,
                                [c_in, hw],
                                columns,
                            );
                        }
                    });
                return;
            }
            image_out
                .par_chunks_mut(rows_per_block * hw)
                .enumerate()
                .for_each(|(block, rows)| {
                    let first = block * rows_per_block;
                    let rows_n = rows.len() / hw;
                    let weight_rows = &weight[first * c_in..(first + rows_n) * c_in];
                    let bias_rows = bias.map(|b| &b[first..first + rows_n]);
                    #[cfg(target_arch = "x86_64")]
                    if let Some(main) = wide_columns {
                        register_blocked::pointwise_rows_wide(
                            rows,
                            weight_rows,
                            bias_rows,
                            image_x,
                            [c_in, hw],
                            main,
                        );
                        // The few columns past the kernel's: bias, then dot products.
                        for (r, row) in rows.chunks_mut(hw).enumerate() {
                            super::init_with(&mut row[main..], bias_rows.map_or(0.0, |b| b[r]));
                        }
                        // SAFETY: the kernel wrote columns `..main` of every row, the loop
                        // above the rest.
                        let dst = unsafe { super::assume_init_mut(rows) };
                        dot_columns(dst, weight_rows, image_x, [c_in, hw], main);
                        return;
                    }
                    let dst = fill_rows(rows, bias_rows, hw);
                    let product = Product {
                        dst_row_stride: hw,
                        rhs_row_stride: hw,
                        mnk: [rows_n, hw - dot, c_in],
                    };
                    let lhs = (weight_rows, false);
                    let serial = gemm::Parallelism::None;
                    matmul_strided(dst, true, lhs, image_x, product, serial);
                    if dot > 0 {
                        dot_columns(dst, weight_rows, image_x, [c_in, hw], hw - dot);
                    }
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

/// Whether [`register_blocked`]'s kernels compute this product instead of `gemm`. They write
/// each output once with its bias where `gemm` adds onto rows holding the bias (three
/// passes over the output), which pays where the output is large against the work per
/// output. Where an image's product is split between threads (batch 1 on two threads), the
/// AVX-512 kernel splits its pixels, each task packing only its own (a split of the rows had
/// each task pack the whole input again, and was no faster than `gemm` on two threads). The
/// pixel split, EfficientNet-Lite0's 32 pointwise nodes in a forward pass on two threads,
/// 2-core Intel Xeon (Emerald Rapids): 5.7 → 4.0 ms (16 → 96 at 112²: 0.48 → 0.25 ms); the
/// whole pass with every layer kept, three alternated runs of 280: 10.0–10.4 → 9.2–10.1 ms.
/// At the AVX2 level (forced on that Xeon) the same split made the pass slower than leaving
/// split products to `gemm` (12.8–13.7 against 11.7–12.1 ms), so there a split product still
/// goes to `gemm`.
///
/// - AVX-512: every product on maps of at least [`REGISTER_BLOCKED_AVX512_MIN_HW`] pixels.
///   EfficientNet-Lite0's 32 pointwise nodes in a forward pass, one thread, median of 35
///   passes, three alternated runs, 2-core Intel Xeon (Emerald Rapids): 7.6–7.7 → 6.6–7.0
///   ms, every shape at 28² to 112² faster (16 → 96 at 112²: 0.80 → 0.54 ms; 24 → 144 at
///   56²: 0.34 → 0.24; 24 → 144 at 56², a projection: 0.28 → 0.25); at 14² within noise or
///   slower (672 → 112: 0.26 → 0.29; the 32-pixel panels leave 28 of 224 columns idle) and
///   slower at 7×7, so those stay on `gemm`.
/// - AVX2: on maps of at least [`REGISTER_BLOCKED_MIN_HW`] pixels, for expansions (`c_out ≥
///   c_in`) and narrow inputs (`c_in ≤` [`REGISTER_BLOCKED_NARROW_C_IN`]). The 19 pointwise
///   shapes, one thread, best of 9 with the caches flushed between calls, two alternated runs
///   each, 2-core AMD EPYC Zen 3: faster on all eight shapes the rule picks (24 → 144 at 56²:
///   344–357 → 297–301 µs; 16 → 96 at 112²: 727–773 → 681–698; 112 → 672 at 14²: 350–356 →
///   341), mixed on the 28² and 56² projections and 15–20% slower at 7×7 (where `gemm` plus
///   [`dot_columns`] runs at 42 GMAC/s), so those stay on `gemm`.
#[cfg(target_arch = "x86_64")]
fn takes_register_blocked(c_in: usize, c_out: usize, hw: usize) -> bool {
    match simd::active() {
        SimdLevel::Avx512 => hw >= REGISTER_BLOCKED_AVX512_MIN_HW,
        SimdLevel::Avx2Fma => {
            hw >= REGISTER_BLOCKED_MIN_HW && (c_out >= c_in || c_in <= REGISTER_BLOCKED_NARROW_C_IN)
        }
        SimdLevel::Portable => false,
    }
}

/// The columns [`register_blocked::pointwise_rows_wide`] computes of an `hw`-pixel product
/// (the rest go to [`dot_columns`]), where it takes the product instead of `gemm`: at the
/// AVX-512 level, on maps below [`REGISTER_BLOCKED_AVX512_MIN_HW`] whose pixels are at most
/// [`WIDE_LEFT_MAX`] past a multiple of its 48-pixel panels (14²: 4 · 48 + 4; 7²: 48 + 1).
/// The `gemm` crate packs the weights again at every call; this kernel reads them in place
/// and fetches the next block's rows into cache while it computes (in a pass they come from
/// L3: each weight is read once per image). EfficientNet-Lite0's 32 pointwise nodes in a
/// forward pass with every layer kept, one thread, 2-core Intel Xeon (Emerald Rapids),
/// two alternated runs: 7.2–7.4 → 6.4–6.7 ms (192 → 1152 at 7²: 0.26 → 0.17 ms, 112 → 672
/// at 14²: 0.29 → 0.25; both kernels' prefetch counted). Warm, each product alone: 14² within
/// 3% of `gemm`, 7² 5–20% faster (192 → 1152: 0.183 → 0.144 ms).
#[cfg(target_arch = "x86_64")]
fn wide_columns(hw: usize) -> Option<usize> {
    const NR: usize = 48;
    let main = hw / NR * NR;
    (simd::active() == SimdLevel::Avx512
        && hw < REGISTER_BLOCKED_AVX512_MIN_HW
        && main > 0
        && hw - main <= WIDE_LEFT_MAX)
        .then_some(main)
}

/// Columns past the 48-pixel panels [`wide_columns`] leaves to dot products.
#[cfg(target_arch = "x86_64")]
const WIDE_LEFT_MAX: usize = 4;

/// A task of the register-blocked kernel's pixel split takes a multiple of this many pixels
/// (both levels' panels: 16 and 32), so only the image's last panel is partial.
#[cfg(target_arch = "x86_64")]
const COLUMN_SPAN_MULTIPLE: usize = 32;

/// Smallest map (pixels) [`takes_register_blocked`] picks at the AVX-512 level: 28×28.
#[cfg(target_arch = "x86_64")]
const REGISTER_BLOCKED_AVX512_MIN_HW: usize = 28 * 28;

/// Smallest map (pixels) [`takes_register_blocked`] picks at the AVX2 level: 14×14.
#[cfg(target_arch = "x86_64")]
const REGISTER_BLOCKED_MIN_HW: usize = 14 * 14;

/// Up to this many input channels [`takes_register_blocked`] picks any product.
#[cfg(target_arch = "x86_64")]
const REGISTER_BLOCKED_NARROW_C_IN: usize = 32;

/// How many of the last columns of an `hw`-column product [`dot_columns`] computes: at the
/// AVX2 level, the left-over after whole [`GEMM_COLUMNS`] blocks, when there are whole
/// blocks and at most [`DOT_COLUMNS_MAX`] left over.
fn dot_column_count(hw: usize) -> usize {
    let left = hw % GEMM_COLUMNS;
    if simd::active() == SimdLevel::Avx2Fma && hw > GEMM_COLUMNS && left <= DOT_COLUMNS_MAX {
        left
    } else {
        0
    }
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

    /// Deterministic inputs (`x_len` values), weights `[co, ci]` and biases `[co]`.
    fn operands(x_len: usize, [co, ci]: [usize; 2]) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
        let x = (0..x_len)
            .map(|i| ((i * 37 % 101) as f32 - 50.0) / 25.0)
            .collect();
        let wt = (0..co * ci)
            .map(|i| ((i * 53 % 89) as f32 - 44.0) / 40.0)
            .collect();
        let bias = (0..co).map(|o| o as f32 * 0.25 - 1.0).collect();
        (x, wt, bias)
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
        // Small (one block per image), large enough to split over rows, and a batch; each in
        // the default pool and on one thread (one block per image, as a per-core pass).
        // 7×7 and 1×17 leave one column to `dot_columns` (37 channels: a partial lane block).
        let one_thread = rayon::ThreadPoolBuilder::new()
            .num_threads(1)
            .build()
            .unwrap();
        for (n, ci, co, h, w) in [
            (1, 3, 5, 4, 3),
            (1, 37, 11, 1, 17),
            (1, 40, 33, 32, 32),
            (3, 17, 9, 7, 7),
            (2, 64, 48, 24, 24),
            // Register-blocked at the AVX2 level: a 1-column panel tail with 13 rows (a
            // partial block of filters), a batch with a 4-column tail, and more than 48
            // filters over two packed chunks of pixels (2025 = 1632 + 393).
            (1, 5, 13, 15, 15),
            (2, 24, 50, 14, 14),
            (1, 40, 56, 45, 45),
            // The 8 × 48 kernel at the AVX-512 level: 48 + 1 columns (one to
            // `dot_columns`), 192 + 4 with 21 filters (a partial block), 96 + 4 in a batch;
            // 11 filters over 37 channels (the AVX-512 dot columns: 4 + 4 + 3 filters, a
            // masked last 5 channels).
            (1, 20, 50, 7, 7),
            (1, 37, 11, 7, 7),
            (1, 30, 21, 14, 14),
            (2, 16, 9, 10, 10),
        ] {
            let (x, wt, bias) = operands(n * ci * h * w, [co, ci]);
            let g = geometry(n, ci, co, h, w);
            for (b, alone) in [None, Some(bias.as_slice())]
                .into_iter()
                .flat_map(|b| [(b, false), (b, true)])
            {
                let got = match alone {
                    true => one_thread.install(|| pointwise_conv2d(&x, &wt, b, &g)),
                    false => pointwise_conv2d(&x, &wt, b, &g),
                };
                let want = reference(&x, &wt, b, n, ci, co, h * w);
                let worst = got
                    .iter()
                    .zip(&want)
                    .map(|(a, b)| (a - b).abs())
                    .fold(0f32, f32::max);
                assert!(
                    worst <= 1e-4,
                    "[{n}, {ci}→{co}, {h}×{w}] bias {}, one thread {alone}: worst {worst}",
                    b.is_some()
                );
            }
        }
    }

    /// Both register-blocked kernels at every level this CPU has, and the AVX-512 8 × 48
    /// one, whatever the process's level and rule pick: panels read in place and packed (≤
    /// and > 48 filters), partial blocks of filters and pixels, two packed chunks (one panel
    /// each for 700 channels at 48 pixels), one input channel.
    #[cfg(target_arch = "x86_64")]
    #[test]
    fn register_blocked_kernels_match_loops_at_every_level() {
        let levels: Vec<_> = SimdLevel::supported_levels()
            .into_iter()
            .filter(|&l| l != SimdLevel::Portable)
            .collect();
        for level in levels {
            // (c_in, rows, hw): 225 = 7 · 32 + 1 = 14 · 16 + 1; 2025 pixels of 40 channels
            // are two packed chunks at either width; 13 and 53 filters end in partial blocks.
            for (ci, co, hw) in [
                (700, 50, 52),
                (5, 13, 225),
                (37, 48, 17),
                (1, 7, 40),
                (40, 56, 2025),
                (3, 100, 33),
                (24, 53, 64),
            ] {
                let (x, wt, bias) = operands(ci * hw, [co, ci]);
                for b in [None, Some(bias.as_slice())] {
                    let mut out = vec![MaybeUninit::new(f32::NAN); co * hw];
                    register_blocked::pointwise_rows(level, &mut out, &wt, b, &x, [ci, hw]);
                    // SAFETY: every slot was initialised (to NaN, then overwritten).
                    let got = unsafe { crate::engine::kernels::assume_init_mut(&mut out) };
                    let want = reference(&x, &wt, b, 1, ci, co, hw);
                    let worst =
                        got.iter()
                            .zip(&want)
                            .map(|(a, b)| (a - b).abs())
                            .fold(
                                0f32,
                                |m, d| if d.is_nan() { f32::INFINITY } else { m.max(d) },
                            );
                    assert!(
                        worst <= 1e-4,
                        "{} [{ci}→{co}, {hw} px] bias {}: worst {worst}",
                        level.name(),
                        b.is_some()
                    );
                    if level != SimdLevel::Avx512 || hw < 48 {
                        continue;
                    }
                    // The 8 × 48 kernel: its whole panels written, the columns past them
                    // left alone.
                    let main = hw / 48 * 48;
                    let mut out = vec![MaybeUninit::new(f32::NAN); co * hw];
                    register_blocked::pointwise_rows_wide(&mut out, &wt, b, &x, [ci, hw], main);
                    // SAFETY: as above.
                    let got = unsafe { crate::engine::kernels::assume_init_mut(&mut out) };
                    for (i, (g, w)) in got.iter().zip(&want).enumerate() {
                        let ok = match i % hw < main {
                            true => (g - w).abs() <= 1e-4,
                            false => g.is_nan(),
                        };
                        assert!(ok, "8 × 48 [{ci}→{co}, {hw} px] output {i}: {g} for {w}");
                    }
                }
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
