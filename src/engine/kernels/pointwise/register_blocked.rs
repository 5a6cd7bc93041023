//! The 1×1 convolution's product at the AVX2 + FMA level for the shapes
//! [`super::takes_register_blocked`] picks: `out [rows, H·W] = bias + W [rows, c_in] ×
//! x [c_in, H·W]` for one image's block of output rows, each output written once.
//!
//! The shape is a textbook register-blocked GEMM: a 6 × 16 block of outputs (6 filters × 16
//! pixels, twelve 8-lane accumulators) takes one weight broadcast per filter and two input
//! loads per input channel. The input is copied once per chunk of pixels into 16-pixel
//! panels (`[panel][c_in][16]`, zero-padded past the last pixel), so each panel is read
//! contiguously by every block of filters; the weights are read in place, six sequential
//! rows at a time. Every input channel is summed in one go (no blocking over `c_in`), so the
//! accumulators start at the bias and each output is stored once: no bias pass before the
//! product and no read of the output, which the `gemm` crate needs (it adds onto `dst`).

use std::arch::x86_64::*;
use std::cell::RefCell;
use std::mem::MaybeUninit;

/// Filters per register block (broadcast operand).
const MR: usize = 6;
/// Pixels per register block: two 8-lane registers.
const NR: usize = 16;
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

/// `out [rows, hw] = bias + weight [rows, c_in] × x [c_in, hw]` (`rows = weight.len() /
/// c_in`; bias 0 without one), every output written.
///
/// # Safety
/// The CPU must support AVX2 and FMA.
#[target_feature(enable = "avx2,fma")]
pub(super) unsafe fn pointwise_rows(
    out: &mut [MaybeUninit<f32>],
    weight: &[f32],
    bias: Option<&[f32]>,
    x: &[f32],
    [c_in, hw]: [usize; 2],
) {
    let rows = out.len() / hw;
    assert!(
        c_in > 0
            && hw > 0
            && out.len() == rows * hw
            && weight.len() == rows * c_in
            && x.len() == c_in * hw
            && bias.is_none_or(|b| b.len() == rows),
        "pointwise_rows: {} outputs, {} weights, {} inputs for [{rows}, {c_in}, {hw}]",
        out.len(),
        weight.len(),
        x.len()
    );
    PACKED.with_borrow_mut(|packed| {
        if rows <= DIRECT_FROM_X_MAX_ROWS {
            // Few filters read each pixel: copying the input would cost more than it saves.
            for p0 in (0..hw).step_by(NR) {
                let pixels = NR.min(hw - p0);
                let (panel, stride) = if pixels == NR {
                    (&x[p0..], hw)
                } else {
                    pack_panels(packed, x, [c_in, hw], p0, pixels);
                    (&packed[..c_in * NR], NR)
                };
                row_blocks(out, weight, bias, (panel, stride), [c_in, hw], p0, pixels);
            }
            return;
        }
        let chunk_px = (PACKED_VALUES / c_in / NR).max(1) * NR;
        for p0 in (0..hw).step_by(chunk_px) {
            let pixels = chunk_px.min(hw - p0);
            pack_panels(packed, x, [c_in, hw], p0, pixels);
            for panel in 0..pixels.div_ceil(NR) {
                let first_px = p0 + panel * NR;
                let panel_values = &packed[panel * c_in * NR..(panel + 1) * c_in * NR];
                row_blocks(
                    out,
                    weight,
                    bias,
                    (panel_values, NR),
                    [c_in, hw],
                    first_px,
                    NR.min(p0 + pixels - first_px),
                );
            }
        }
    });
}

/// Every block of filters over one panel of 16 pixels (`first_px..first_px + pixels`), read
/// from `panel.0` with input channels `panel.1` values apart.
#[inline(always)]
fn row_blocks(
    out: &mut [MaybeUninit<f32>],
    weight: &[f32],
    bias: Option<&[f32]>,
    (panel, panel_stride): (&[f32], usize),
    [c_in, hw]: [usize; 2],
    first_px: usize,
    pixels: usize,
) {
    let rows = out.len() / hw;
    for r0 in (0..rows).step_by(MR) {
        let filters = MR.min(rows - r0);
        let mut init = [0f32; MR];
        if let Some(b) = bias {
            init[..filters].copy_from_slice(&b[r0..r0 + filters]);
        }
        let block = Block {
            weight: &weight[r0 * c_in..(r0 + filters) * c_in],
            panel,
            panel_stride,
            init,
            c_in,
            out: &mut out[r0 * hw + first_px..],
            hw,
            pixels,
        };
        // SAFETY (each): only reached from `pointwise_rows`, whose caller promises AVX2
        // and FMA; `block_of` checks that `Block`'s slices hold what it reads and writes.
        unsafe {
            match filters {
                6 => block_of::<6>(block),
                5 => block_of::<5>(block),
                4 => block_of::<4>(block),
                3 => block_of::<3>(block),
                2 => block_of::<2>(block),
                _ => block_of::<1>(block),
            }
        }
    }
}

/// `x [c_in, hw]`'s pixels `p0..p0 + pixels` as 16-pixel panels `[panel][c_in][16]` in
/// `packed`, the last one zero-padded.
fn pack_panels(packed: &mut Vec<f32>, x: &[f32], [c_in, hw]: [usize; 2], p0: usize, pixels: usize) {
    let panels = pixels.div_ceil(NR);
    // Every slot is written below, so a longer buffer from an earlier call is not cleared.
    if packed.len() < panels * c_in * NR {
        packed.resize(panels * c_in * NR, 0.0);
    }
    let full = pixels / NR;
    for (k, row) in x.chunks_exact(hw).enumerate() {
        let row = &row[p0..p0 + pixels];
        for (panel, src) in row.chunks_exact(NR).enumerate() {
            let at = (panel * c_in + k) * NR;
            // A fixed-size copy: two vector moves, not a call to memcpy (both slices hold
            // NR values, so the conversions always succeed).
            let dst = <&mut [f32; NR]>::try_from(&mut packed[at..at + NR]);
            if let (Ok(dst), Ok(src)) = (dst, <&[f32; NR]>::try_from(src)) {
                *dst = *src;
            }
        }
        let tail = &row[full * NR..];
        if !tail.is_empty() {
            let at = (full * c_in + k) * NR;
            packed[at..at + tail.len()].copy_from_slice(tail);
            packed[at + tail.len()..at + NR].fill(0.0);
        }
    }
}

/// One register block's operands: `R` filters' weight rows (`[R, c_in]`), a packed panel
/// (`[c_in, 16]`), the filters' biases, and where the outputs go (`out` from the block's
/// first output, rows `hw` apart, `pixels` ≤ 16 of them).
struct Block<'a> {
    weight: &'a [f32],
    panel: &'a [f32],
    panel_stride: usize,
    init: [f32; MR],
    c_in: usize,
    out: &'a mut [MaybeUninit<f32>],
    hw: usize,
    pixels: usize,
}

/// `R` × 16 outputs: the bias plus `c_in` rank-1 updates, then one store per output.
#[inline(always)]
unsafe fn block_of<const R: usize>(b: Block<'_>) {
    let c_in = b.c_in;
    assert!(
        R <= MR
            && b.weight.len() == R * c_in
            && b.panel.len() >= (c_in - 1) * b.panel_stride + NR
            && b.pixels <= NR
            && b.out.len() >= (R - 1) * b.hw + b.pixels,
        "pointwise block out of bounds"
    );
    let w = b.weight.as_ptr();
    let (panel, stride) = (b.panel.as_ptr(), b.panel_stride);
    // SAFETY: every read below is inside `weight` ([R, c_in]) or `panel` ([c_in, 16]) and
    // every write inside `out` (lengths asserted above); AVX2 and FMA are enabled by the
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
        let out = b.out.as_mut_ptr().cast::<f32>();
        for (r, a) in acc.iter().enumerate() {
            let dst = out.add(r * b.hw);
            if b.pixels == NR {
                _mm256_storeu_ps(dst, a[0]);
                _mm256_storeu_ps(dst.add(8), a[1]);
            } else {
                let mut row = [0f32; NR];
                _mm256_storeu_ps(row.as_mut_ptr(), a[0]);
                _mm256_storeu_ps(row.as_mut_ptr().add(8), a[1]);
                std::ptr::copy_nonoverlapping(row.as_ptr(), dst, b.pixels);
            }
        }
    }
}
