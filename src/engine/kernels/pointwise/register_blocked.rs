//! The 1×1 convolution's product at the AVX2 + FMA and AVX-512 levels for the shapes
//! [`super::takes_register_blocked`] picks: `out [rows, H·W] = bias + W [rows, c_in] ×
//! x [c_in, H·W]` for one image's block of output rows, each output written once.
//!
//! The shape is a textbook register-blocked GEMM: a block of `MR` filters × `NR` pixels
//! (AVX2: 6 × 16, twelve 8-lane accumulators; AVX-512: 12 × 32, twenty-four 16-lane ones)
//! takes one weight broadcast per filter and `NR / lanes` input loads per input channel.
//! The input is copied once per chunk of pixels into `NR`-pixel panels (`[panel][c_in][NR]`,
//! zero-padded past the last pixel), so each panel is read contiguously by every block of
//! filters; the weights are read in place, `MR` sequential rows at a time, and at the
//! AVX-512 level each block fetches the next block's rows into cache as it goes (in a pass
//! the weights come from L3). An AVX-512 8 × 48 block ([`pointwise_rows_wide`]) covers the
//! small maps (14², 7²) whose pixels the 32-pixel panels would leave partly idle. Every input
//! channel is summed in one go (no blocking over `c_in`), so the accumulators start at the
//! bias and each output is stored once: no bias pass before the product and no read of the
//! output, which the `gemm` crate needs (it adds onto `dst`). One generic body
//! ([`rows_at`]) is compiled into each level's `target_feature` entry point; the
//! levels differ only in their [`Kernel`] block.

use std::arch::x86_64::*;
use std::cell::RefCell;
use std::marker::PhantomData;
use std::mem::MaybeUninit;
use std::ops::Range;

use super::simd::SimdLevel;

/// Input values packed per chunk of pixels: 256 KiB, half of a Zen 3 or Skylake-SP core's
/// L2, so a chunk's panels stay there while every block of filters reads them.
const PACKED_VALUES: usize = 1 << 16;
/// Up to this many filters, panels are read straight from the input (rows `H·W` apart)
/// instead of packed first: each input value is then read by only a few register blocks.
const DIRECT_FROM_X_MAX_ROWS: usize = 48;

thread_local! {
    /// Each thread's packed-input scratch, reused between calls (at most
    /// `PACKED_VALUES + c_in · NR` values).
    static PACKED: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
}

/// Output rows `[rows, hw]` that tasks computing disjoint columns share
/// ([`pointwise_columns`]).
#[derive(Clone, Copy)]
pub(super) struct OutRows<'a> {
    ptr: *mut f32,
    len: usize,
    _rows: PhantomData<&'a mut [MaybeUninit<f32>]>,
}

// SAFETY: an `OutRows` is only written through `pointwise_columns`, whose callers promise
// that no two tasks write the same outputs at once.
unsafe impl Send for OutRows<'_> {}
// SAFETY: as above.
unsafe impl Sync for OutRows<'_> {}

impl<'a> OutRows<'a> {
    pub(super) fn new(out: &'a mut [MaybeUninit<f32>]) -> Self {
        Self {
            ptr: out.as_mut_ptr().cast(),
            len: out.len(),
            _rows: PhantomData,
        }
    }
}

/// `out [rows, hw] = bias + weight [rows, c_in] × x [c_in, hw]` (`rows = weight.len() /
/// c_in`; bias 0 without one), every output written, with `level`'s kernel.
///
/// Panics at the portable level or at a level this CPU lacks ([`SimdLevel::supported`]).
#[cfg(test)]
pub(super) fn pointwise_rows(
    level: SimdLevel,
    out: &mut [MaybeUninit<f32>],
    weight: &[f32],
    bias: Option<&[f32]>,
    x: &[f32],
    shape: [usize; 2],
) {
    // SAFETY: `out` is borrowed exclusively, so no other task writes it.
    unsafe {
        pointwise_columns(
            level,
            OutRows::new(out),
            weight,
            bias,
            x,
            shape,
            0..shape[1],
        );
    }
}

/// [`pointwise_rows`] over the columns (pixels) `columns` of every row only: one of the
/// tasks that split a product's pixels between threads.
///
/// # Safety
/// No other task may write these columns of `out` while this one runs.
pub(super) unsafe fn pointwise_columns(
    level: SimdLevel,
    out: OutRows<'_>,
    weight: &[f32],
    bias: Option<&[f32]>,
    x: &[f32],
    shape: [usize; 2],
    columns: Range<usize>,
) {
    assert!(
        level != SimdLevel::Portable && level.supported(),
        "register-blocked 1×1 kernel at the {} level on a CPU without it",
        level.name()
    );
    // SAFETY (each): the CPU supports the level (asserted above), and each level's entry
    // point enables only that level's features.
    unsafe {
        match level {
            SimdLevel::Avx512 => rows_avx512(out, weight, bias, x, shape, columns),
            _ => rows_avx2(out, weight, bias, x, shape, columns),
        }
    }
}

/// [`pointwise_rows`] with the AVX2 + FMA kernel (6 × 16).
///
/// # Safety
/// The CPU must support AVX2 and FMA.
#[target_feature(enable = "avx2,fma")]
unsafe fn rows_avx2(
    out: OutRows<'_>,
    weight: &[f32],
    bias: Option<&[f32]>,
    x: &[f32],
    shape: [usize; 2],
    columns: Range<usize>,
) {
    rows_at::<Avx2>(out, weight, bias, x, shape, columns);
}

/// [`pointwise_rows`] with the AVX-512 kernel (12 × 32).
///
/// # Safety
/// The CPU must support AVX-512F, AVX2 and FMA.
#[target_feature(enable = "avx512f,avx2,fma")]
unsafe fn rows_avx512(
    out: OutRows<'_>,
    weight: &[f32],
    bias: Option<&[f32]>,
    x: &[f32],
    shape: [usize; 2],
    columns: Range<usize>,
) {
    rows_at::<Avx512>(out, weight, bias, x, shape, columns);
}

/// The first `pixels` columns (a multiple of [`Avx512Wide::NR`], at most `hw`) of
/// [`pointwise_rows`]' product with the AVX-512 8 × 48 kernel, for small maps whose pixels
/// are a few more than a multiple of 48 (14²: 4 × 48 + 4, 7²: 48 + 1): the caller computes
/// the other columns. Columns `pixels..hw` of `out` are left as they were.
///
/// Panics on a CPU without AVX-512 ([`SimdLevel::supported`]).
pub(super) fn pointwise_rows_wide(
    out: &mut [MaybeUninit<f32>],
    weight: &[f32],
    bias: Option<&[f32]>,
    x: &[f32],
    shape: [usize; 2],
    pixels: usize,
) {
    assert!(
        SimdLevel::Avx512.supported()
            && pixels <= shape[1]
            && pixels.is_multiple_of(Avx512Wide::NR),
        "8 × 48 1×1 kernel on a CPU without AVX-512 or over {pixels} of {} pixels",
        shape[1]
    );
    // SAFETY: the CPU supports AVX-512 (asserted above).
    unsafe { rows_avx512_wide(out, weight, bias, x, shape, pixels) }
}

/// [`pointwise_rows_wide`]'s `target_feature` entry point.
///
/// # Safety
/// The CPU must support AVX-512F, AVX2 and FMA.
#[target_feature(enable = "avx512f,avx2,fma")]
unsafe fn rows_avx512_wide(
    out: &mut [MaybeUninit<f32>],
    weight: &[f32],
    bias: Option<&[f32]>,
    x: &[f32],
    shape: [usize; 2],
    pixels: usize,
) {
    rows_at::<Avx512Wide>(OutRows::new(out), weight, bias, x, shape, 0..pixels);
}

/// One SIMD level's register block: `MR` filters × `NR` pixels.
trait Kernel {
    /// Filters per register block (broadcast operand).
    const MR: usize;
    /// Pixels per register block (the loaded operand; the width of a panel).
    const NR: usize;
    /// Whether a packed chunk runs blocks of filters outside its panels (each block's `MR`
    /// output rows written as sequential streams while the chunk's panels stay in L2) or
    /// panels outside (each panel read from L1 by every block of filters, every output row
    /// written at once: 96 streams 50 KB apart for 16 → 96 at 112²). One thread, 2-core
    /// Intel Xeon (Emerald Rapids): at the AVX-512 level filters outside were 1.7–2.1× faster
    /// on the 1×1 expansions at 28² to 112²; at the AVX2 level (forced) a whole
    /// EfficientNet-Lite0 pass with summaries took 14.6–15.7 ms with panels outside against
    /// 15.5–16.4 with filters outside in three alternated runs and was within noise in three
    /// more, so AVX2 keeps the order it was measured with on Zen 3 (panels outside).
    const ROWS_OUTSIDE: bool;
    /// One block of `filters` ≤ `MR` filters.
    ///
    /// # Safety
    /// The CPU must support the level's features (the caller's `target_feature`).
    unsafe fn block(filters: usize, block: Block<'_>);
}

/// The body of both entry points, inlined into each one's `target_feature` copy.
#[inline(always)]
fn rows_at<K: Kernel>(
    out: OutRows<'_>,
    weight: &[f32],
    bias: Option<&[f32]>,
    x: &[f32],
    [c_in, hw]: [usize; 2],
    columns: Range<usize>,
) {
    let rows = out.len / hw;
    assert!(
        c_in > 0
            && hw > 0
            && columns.start <= columns.end
            && columns.end <= hw
            && out.len == rows * hw
            && weight.len() == rows * c_in
            && x.len() == c_in * hw
            && bias.is_none_or(|b| b.len() == rows),
        "pointwise_rows: {} outputs, {} weights, {} inputs for [{rows}, {c_in}, {hw}]",
        out.len,
        weight.len(),
        x.len()
    );
    // Taken out of the thread-local and put back after, not borrowed in a closure: a closure
    // is compiled without the caller's target features, so its intrinsics became calls.
    let mut packed = PACKED.take();
    products::<K>(&mut packed, out, weight, bias, x, [c_in, hw], columns);
    PACKED.set(packed);
}

/// [`rows_at`]' work over `columns`, with `packed` as the scratch for copied input panels.
#[inline(always)]
fn products<K: Kernel>(
    packed: &mut Vec<f32>,
    out: OutRows<'_>,
    weight: &[f32],
    bias: Option<&[f32]>,
    x: &[f32],
    [c_in, hw]: [usize; 2],
    columns: Range<usize>,
) {
    let (rows, nr) = (out.len / hw, K::NR);
    let operands = Operands {
        weight,
        bias,
        c_in,
        hw,
    };
    if rows <= DIRECT_FROM_X_MAX_ROWS {
        // Few filters read each pixel: copying the input would cost more than it saves.
        for p0 in columns.clone().step_by(nr) {
            let pixels = nr.min(columns.end - p0);
            let panel = if pixels == nr {
                (&x[p0..], hw)
            } else {
                pack_panels::<K>(packed, x, [c_in, hw], p0, pixels);
                (&packed[..c_in * nr], nr)
            };
            // The first block of filters fetches the next panel's input rows into L2.
            let next = p0 + 2 * nr <= columns.end;
            for r0 in (0..rows).step_by(K::MR) {
                let next_panel = (next && r0 == 0).then(|| &x[p0 + nr..]);
                block_at::<K>(out, &operands, panel, next_panel, r0, (p0, pixels));
            }
        }
        return;
    }
    let chunk_px = (PACKED_VALUES / c_in / nr).max(1) * nr;
    for p0 in columns.clone().step_by(chunk_px) {
        let pixels = chunk_px.min(columns.end - p0);
        pack_panels::<K>(packed, x, [c_in, hw], p0, pixels);
        let panels = pixels.div_ceil(nr);
        let row_blocks = rows.div_ceil(K::MR);
        for i in 0..panels * row_blocks {
            let (panel, block) = if K::ROWS_OUTSIDE {
                (i % panels, i / panels)
            } else {
                (i / row_blocks, i % row_blocks)
            };
            let first_px = p0 + panel * nr;
            let panel_values = &packed[panel * c_in * nr..(panel + 1) * c_in * nr];
            let panel_pixels = nr.min(p0 + pixels - first_px);
            let r0 = block * K::MR;
            block_at::<K>(
                out,
                &operands,
                (panel_values, nr),
                None,
                r0,
                (first_px, panel_pixels),
            );
        }
    }
}

/// What every block of one product shares: the weights `[rows, c_in]`, the biases, and the
/// product's shape.
struct Operands<'a> {
    weight: &'a [f32],
    bias: Option<&'a [f32]>,
    c_in: usize,
    hw: usize,
}

/// The block of filters `r0..r0 + K::MR` (fewer at the end) over one panel of pixels
/// `first_px..first_px + pixels`, read from `panel.0` with input channels `panel.1` values
/// apart.
#[inline(always)]
fn block_at<K: Kernel>(
    out: OutRows<'_>,
    operands: &Operands<'_>,
    (panel, panel_stride): (&[f32], usize),
    next_panel: Option<&[f32]>,
    r0: usize,
    (first_px, pixels): (usize, usize),
) {
    let Operands {
        weight,
        bias,
        c_in,
        hw,
    } = *operands;
    let filters = K::MR.min(out.len / hw - r0);
    let mut init = [0f32; MAX_MR];
    if let Some(b) = bias {
        init[..filters].copy_from_slice(&b[r0..r0 + filters]);
    }
    let next_rows = K::MR.min(out.len / hw - r0 - filters);
    let first = r0 * hw + first_px;
    assert!(first < out.len, "pointwise block past the output");
    let block = Block {
        weight: &weight[r0 * c_in..(r0 + filters) * c_in],
        next_weight: &weight[(r0 + filters) * c_in..(r0 + filters + next_rows) * c_in],
        panel,
        panel_stride,
        next_panel: next_panel.unwrap_or(&[]),
        init,
        c_in,
        // SAFETY: `first` is inside the output (asserted above).
        out: unsafe { out.ptr.add(first) },
        out_len: out.len - first,
        hw,
        pixels,
    };
    // SAFETY: only reached from `rows_avx2` or `rows_avx512`, which enable the level's
    // features and are only called on CPUs that have them (`pointwise_rows` asserts it);
    // each block function checks that `Block`'s slices hold what it reads and writes.
    unsafe { K::block(filters, block) }
}

/// `x [c_in, hw]`'s pixels `p0..p0 + pixels` as `K::NR`-pixel panels `[panel][c_in][NR]`
/// in `packed`, the last one zero-padded.
#[inline(always)]
fn pack_panels<K: Kernel>(
    packed: &mut Vec<f32>,
    x: &[f32],
    [c_in, hw]: [usize; 2],
    p0: usize,
    pixels: usize,
) {
    let nr = K::NR;
    let panels = pixels.div_ceil(nr);
    // Every slot is written below, so a longer buffer from an earlier call is not cleared.
    if packed.len() < panels * c_in * nr {
        packed.resize(panels * c_in * nr, 0.0);
    }
    let full = pixels / nr;
    for (k, row) in x.chunks_exact(hw).enumerate() {
        let row = &row[p0..p0 + pixels];
        for (panel, src) in row.chunks_exact(nr).enumerate() {
            let at = (panel * c_in + k) * nr;
            // `nr` is a constant here: a few vector moves, not a call to memcpy.
            packed[at..at + nr].copy_from_slice(src);
        }
        let tail = &row[full * nr..];
        if !tail.is_empty() {
            let at = (full * c_in + k) * nr;
            packed[at..at + tail.len()].copy_from_slice(tail);
            packed[at + tail.len()..at + nr].fill(0.0);
        }
    }
}

/// The most filters any level's block holds.
const MAX_MR: usize = 12;

/// One register block's operands: `R` filters' weight rows (`[R, c_in]`), a panel (`[c_in,
/// NR]`, input channels `panel_stride` values apart), the filters' biases, and where the
/// outputs go (`out` from the block's first output, rows `hw` apart, `pixels` ≤ `NR` of
/// them).
struct Block<'a> {
    weight: &'a [f32],
    /// The next block's weight rows (`[≤ MR, c_in]`, empty after the last block), fetched
    /// into cache while this one runs.
    next_weight: &'a [f32],
    panel: &'a [f32],
    panel_stride: usize,
    /// The next panel of a product read straight from the input (empty if none), fetched
    /// into L2 while this block runs (the AVX-512 blocks; its rows are `hw` apart, too many
    /// streams for the hardware prefetcher). A scan's pass, one thread, alternated with the
    /// same pass without, 290 passes each (Emerald Rapids Xeon): 0.11–0.17 ms faster of
    /// 11.3–11.7; at forced AVX2 no change, so the AVX2 block does not.
    next_panel: &'a [f32],
    init: [f32; MAX_MR],
    c_in: usize,
    /// The block's first output, `out_len` values before the end of the rows; written by
    /// this block only (`pointwise_columns`' contract).
    out: *mut f32,
    out_len: usize,
    hw: usize,
    pixels: usize,
}

impl Block<'_> {
    /// Panics unless the block's slices hold what an `r` × `nr` block reads and writes.
    #[inline(always)]
    fn check(&self, r: usize, nr: usize) {
        let c_in = self.c_in;
        assert!(
            r <= MAX_MR
                && self.weight.len() == r * c_in
                && self.panel.len() >= (c_in - 1) * self.panel_stride + nr
                && self.pixels <= nr
                && self.out_len >= (r - 1) * self.hw + self.pixels,
            "pointwise block out of bounds"
        );
    }
}

/// AVX2 + FMA: 6 filters × 16 pixels, twelve 8-lane accumulators; one weight broadcast per
/// filter and two input loads per input channel.
struct Avx2;

impl Kernel for Avx2 {
    const MR: usize = 6;
    const NR: usize = 16;
    const ROWS_OUTSIDE: bool = false;

    #[inline(always)]
    unsafe fn block(filters: usize, block: Block<'_>) {
        // SAFETY (each): the caller's `target_feature` has AVX2 and FMA.
        unsafe {
            match filters {
                6 => avx2_block::<6>(block),
                5 => avx2_block::<5>(block),
                4 => avx2_block::<4>(block),
                3 => avx2_block::<3>(block),
                2 => avx2_block::<2>(block),
                _ => avx2_block::<1>(block),
            }
        }
    }
}

/// `R` × 16 outputs: the bias plus `c_in` rank-1 updates, then one store per output.
#[inline(always)]
unsafe fn avx2_block<const R: usize>(b: Block<'_>) {
    b.check(R, 16);
    let c_in = b.c_in;
    let w = b.weight.as_ptr();
    let (panel, stride) = (b.panel.as_ptr(), b.panel_stride);
    // SAFETY: every read below is inside `weight` ([R, c_in]) or `panel` ([c_in, 16]) and
    // every write inside `out` (lengths checked above); AVX2 and FMA are enabled by the
    // caller's `target_feature`.
    unsafe {
        let mut acc = [[_mm256_setzero_ps(); 2]; R];
        for (r, a) in acc.iter_mut().enumerate() {
            let v = _mm256_set1_ps(b.init[r]);
            *a = [v, v];
        }
        for k in 0..c_in {
            let x0 = _mm256_loadu_ps(panel.add(k * stride));
            let x1 = _mm256_loadu_ps(panel.add(k * stride + 8));
            for (r, a) in acc.iter_mut().enumerate() {
                let wv = _mm256_broadcast_ss(&*w.add(r * c_in + k));
                a[0] = _mm256_fmadd_ps(wv, x0, a[0]);
                a[1] = _mm256_fmadd_ps(wv, x1, a[1]);
            }
        }
        let out = b.out;
        for (r, a) in acc.iter().enumerate() {
            let dst = out.add(r * b.hw);
            if b.pixels == 16 {
                _mm256_storeu_ps(dst, a[0]);
                _mm256_storeu_ps(dst.add(8), a[1]);
            } else {
                let mut row = [0f32; 16];
                _mm256_storeu_ps(row.as_mut_ptr(), a[0]);
                _mm256_storeu_ps(row.as_mut_ptr().add(8), a[1]);
                std::ptr::copy_nonoverlapping(row.as_ptr(), dst, b.pixels);
            }
        }
    }
}

/// `avx512_block::<R, V>` for `R = filters`, one of the listed counts, else 1.
macro_rules! avx512_blocks {
    ($filters:expr, $block:expr, $v:literal, [$($r:literal),+]) => {
        match $filters {
            $($r => avx512_block::<$r, $v>($block),)+
            _ => avx512_block::<1, $v>($block),
        }
    };
}

/// AVX-512: 12 filters × 32 pixels, twenty-four 16-lane accumulators of the 32 registers;
/// a partial block of pixels is stored through masks.
struct Avx512;

impl Kernel for Avx512 {
    const MR: usize = 12;
    const NR: usize = 32;
    const ROWS_OUTSIDE: bool = true;

    #[inline(always)]
    unsafe fn block(filters: usize, block: Block<'_>) {
        // SAFETY (each): the caller's `target_feature` has AVX-512F.
        unsafe { avx512_blocks!(filters, block, 2, [12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2]) }
    }
}

/// `R` × `16 · V` outputs: the bias plus `c_in` rank-1 updates, then one (masked) store
/// per output register.
#[inline(always)]
unsafe fn avx512_block<const R: usize, const V: usize>(b: Block<'_>) {
    b.check(R, 16 * V);
    let c_in = b.c_in;
    let w = b.weight.as_ptr();
    let (panel, stride) = (b.panel.as_ptr(), b.panel_stride);
    // SAFETY: as in `avx2_block`, with AVX-512F enabled by the caller; the masked stores
    // write only the first `pixels` outputs of each row.
    unsafe {
        let mut acc = [[_mm512_setzero_ps(); V]; R];
        for (r, a) in acc.iter_mut().enumerate() {
            *a = [_mm512_set1_ps(b.init[r]); V];
        }
        // The block's outputs fetched for writing while its `c_in` rank-1 updates run: a
        // kept layer's output is a fresh buffer, whose every store otherwise waited for its
        // line from L3. EfficientNet-Lite0, alternated in one process (Emerald Rapids Xeon):
        // every layer kept, batch 1, 5.90–6.22 → 5.82–6.11 ms on two threads and 10.57 →
        // 10.31 on one; the scan's pass (nothing kept) 0–2% faster.
        for r in 0..R {
            for v in (0..V).take_while(|v| 16 * v < b.pixels) {
                _mm_prefetch::<{ _MM_HINT_ET0 }>(b.out.add(r * b.hw + 16 * v).cast::<i8>());
            }
        }
        let (next, next_rows) = (b.next_weight.as_ptr(), b.next_weight.len() / c_in);
        let next_panel =
            (b.next_panel.len() >= (c_in - 1) * stride + 16 * V).then_some(b.next_panel.as_ptr());
        for k in 0..c_in {
            if k.is_multiple_of(16) {
                for r in 0..next_rows {
                    _mm_prefetch::<_MM_HINT_T0>(next.add(r * c_in + k).cast());
                }
            }
            if let Some(next_panel) = next_panel {
                for v in 0..V {
                    _mm_prefetch::<_MM_HINT_T1>(next_panel.add(k * stride + 16 * v).cast());
                }
            }
            let mut xs = [_mm512_setzero_ps(); V];
            for (v, x) in xs.iter_mut().enumerate() {
                *x = _mm512_loadu_ps(panel.add(k * stride + 16 * v));
            }
            for (r, a) in acc.iter_mut().enumerate() {
                let wv = _mm512_set1_ps(*w.add(r * c_in + k));
                for (a, &x) in a.iter_mut().zip(&xs) {
                    *a = _mm512_fmadd_ps(wv, x, *a);
                }
            }
        }
        let out = b.out;
        for (r, a) in acc.iter().enumerate() {
            let dst = out.add(r * b.hw);
            for (v, &a) in a.iter().enumerate() {
                let dst = dst.add(16 * v);
                match b.pixels.saturating_sub(16 * v) {
                    0 => {}
                    16.. => _mm512_storeu_ps(dst, a),
                    // Bit i of the mask keeps pixel i of this register.
                    n => _mm512_mask_storeu_ps(dst, (1u16 << n) - 1, a),
                }
            }
        }
    }
}

/// AVX-512 for small maps: 8 filters × 48 pixels, twenty-four 16-lane accumulators, three
/// input loads and eight broadcasts per input channel ([`pointwise_rows_wide`]).
struct Avx512Wide;

impl Kernel for Avx512Wide {
    const MR: usize = 8;
    const NR: usize = 48;
    const ROWS_OUTSIDE: bool = true;

    #[inline(always)]
    unsafe fn block(filters: usize, block: Block<'_>) {
        // SAFETY (each): the caller's `target_feature` has AVX-512F.
        unsafe { avx512_blocks!(filters, block, 3, [8, 7, 6, 5, 4, 3, 2]) }
    }
}
