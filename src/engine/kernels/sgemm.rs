//! Single-precision matrix multiply for the CPU path's convolutions ([`super::conv`]):
//! a packed, cache-blocked GEMM around one AVX-512 micro-kernel (12 × 32 tile of `C` held in
//! 24 registers), threads splitting the rows of `C`. On this project's 2-core AMD EPYC (Zen 4)
//! it reaches 1.1–2× the GFLOP/s of the `gemm` crate on AlexNet's conv GEMMs (conv1's
//! `[96, 363] × [363, 2916]`: 90 vs 32 GFLOP/s on one thread, ~150 vs ~80 on two; numpy's
//! OpenBLAS: 94 / 177); machines without AVX-512 use the `gemm` crate instead
//! ([`available`]).
//!
//! Blocking follows BLIS: for each `KC`-deep slice of the inner dimension, `B` is packed
//! once into `NR`-wide column panels (shared by all threads) and each thread packs its own
//! `mc` rows of `A` into `MR`-tall row panels; the micro-kernel then runs over every
//! (row panel, column panel) pair, the column panel's `KC × NR` values staying in L1 while
//! the row panels stream from L2. Edges are zero-padded in the packed copies and masked on
//! the stores to `C`.

use rayon::prelude::*;

/// Rows of `C` per micro-tile (broadcast from packed `A`).
const MR: usize = 12;
/// Columns of `C` per micro-tile (two 16-lane vectors of packed `B`).
const NR: usize = 32;
/// Depth of one packed slice of the inner dimension: a `KC × NR` panel of `B` (24 KiB) stays
/// in a 32 KiB L1 (192, 256 and 384 measured within this VM's noise of each other).
const KC: usize = 192;
/// Most rows of `C` one thread packs and multiplies at a time.
const MC_MAX: usize = 384;

/// Whether this CPU runs [`matmul`] (AVX-512F); otherwise callers use the `gemm` crate.
pub fn available() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx512f")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// A read-only matrix view: element `(i, j)` is `data[i · row_stride + j · col_stride]`.
#[derive(Debug, Clone, Copy)]
pub struct MatRef<'a> {
    pub data: &'a [f32],
    pub rows: usize,
    pub cols: usize,
    pub row_stride: usize,
    pub col_stride: usize,
}

impl<'a> MatRef<'a> {
    /// A row-major `[rows, cols]` matrix.
    pub fn row_major(data: &'a [f32], rows: usize, cols: usize) -> Self {
        Self {
            data,
            rows,
            cols,
            row_stride: cols,
            col_stride: 1,
        }
    }

    /// The transpose of a row-major `[cols, rows]` matrix, read as `[rows, cols]`.
    pub fn transposed(data: &'a [f32], rows: usize, cols: usize) -> Self {
        Self {
            data,
            rows,
            cols,
            row_stride: 1,
            col_stride: rows,
        }
    }

    /// Whether every element lies inside `data`.
    fn in_bounds(&self) -> bool {
        self.rows == 0
            || self.cols == 0
            || (self.rows - 1) * self.row_stride + (self.cols - 1) * self.col_stride
                < self.data.len()
    }

    fn at(&self, i: usize, j: usize) -> f32 {
        self.data[i * self.row_stride + j * self.col_stride]
    }
}

/// `c [m, n] = a [m, k] × b [k, n]` with `c` row-major, `b` row-major (`[k, n]`, contiguous
/// rows) and `a` any [`MatRef`]. Uses every rayon thread. Panics when a shape disagrees (a
/// bug in the caller, not user input) or when called without [`available`].
pub fn matmul(c: &mut [f32], a: MatRef<'_>, b: &[f32], n: usize) {
    let (m, k) = (a.rows, a.cols);
    assert!(
        c.len() == m * n && b.len() == k * n && a.in_bounds(),
        "sgemm: c {} values for [{m}, {n}], b {} for [{k}, {n}], a {:?}",
        c.len(),
        b.len(),
        (a.rows, a.cols, a.row_stride, a.col_stride, a.data.len())
    );
    assert!(available(), "sgemm::matmul needs AVX-512F");
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        c.fill(0.0);
        return;
    }
    let panels_n = n.div_ceil(NR);
    let threads = rayon::current_num_threads().max(1);
    // Row blocks: at least one per thread when there are enough rows, at most MC_MAX.
    let mc = m.div_ceil(threads).div_ceil(MR).max(1) * MR;
    let mc = mc.min(MC_MAX);
    let mut b_packed = vec![0f32; panels_n * KC * NR];
    for k0 in (0..k).step_by(KC) {
        let kc = KC.min(k - k0);
        pack_b(&mut b_packed, b, n, k0, kc);
        let b_packed = &b_packed[..];
        c.par_chunks_mut(mc * n).enumerate().for_each_init(
            Vec::new,
            |a_packed: &mut Vec<f32>, (block, c_rows)| {
                let (i0, rows) = (block * mc, c_rows.len() / n);
                let panels_m = rows.div_ceil(MR);
                a_packed.resize(panels_m * kc * MR, 0.0);
                pack_a(a_packed, &a, i0, rows, k0, kc);
                for jp in 0..panels_n {
                    let j0 = jp * NR;
                    let cols = NR.min(n - j0);
                    let b_panel = &b_packed[jp * KC * NR..][..kc * NR];
                    for ip in 0..panels_m {
                        let r0 = ip * MR;
                        let tile_rows = MR.min(rows - r0);
                        let a_panel = &a_packed[ip * kc * MR..][..kc * MR];
                        let c_tile = &mut c_rows[r0 * n + j0..];
                        tile(a_panel, b_panel, c_tile, n, [tile_rows, cols], k0 > 0);
                    }
                }
            },
        );
    }
}

/// Packs rows `k0..k0 + kc` of row-major `b [k, n]` into `NR`-wide panels, each `[kc, NR]`,
/// zero beyond column `n`.
fn pack_b(dst: &mut [f32], b: &[f32], n: usize, k0: usize, kc: usize) {
    dst.par_chunks_mut(KC * NR)
        .enumerate()
        .for_each(|(jp, panel)| {
            let j0 = jp * NR;
            let cols = NR.min(n - j0);
            for p in 0..kc {
                let src = &b[(k0 + p) * n + j0..][..cols];
                let row = &mut panel[p * NR..][..NR];
                row[..cols].copy_from_slice(src);
                row[cols..].fill(0.0);
            }
        });
}

/// Packs rows `i0..i0 + rows`, columns `k0..k0 + kc` of `a` into `MR`-tall panels, each
/// `[kc, MR]`, zero beyond the last row.
fn pack_a(dst: &mut [f32], a: &MatRef<'_>, i0: usize, rows: usize, k0: usize, kc: usize) {
    for (ip, panel) in dst.chunks_mut(kc * MR).enumerate() {
        let r0 = ip * MR;
        let live = MR.min(rows - r0);
        if a.col_stride == 1 {
            // Row-major A: read each row's contiguous run, scatter into the panel.
            for r in 0..MR {
                if r < live {
                    let row = &a.data[(i0 + r0 + r) * a.row_stride + k0..][..kc];
                    for (p, v) in row.iter().enumerate() {
                        panel[p * MR + r] = *v;
                    }
                } else {
                    for p in 0..kc {
                        panel[p * MR + r] = 0.0;
                    }
                }
            }
        } else {
            for p in 0..kc {
                let out = &mut panel[p * MR..][..MR];
                for (r, v) in out.iter_mut().enumerate() {
                    *v = if r < live {
                        a.at(i0 + r0 + r, k0 + p)
                    } else {
                        0.0
                    };
                }
            }
        }
    }
}

/// One micro-tile: `c[r, j] (+)= Σ_p a_panel[p, r] · b_panel[p, j]` for `r < rows`, `j <
/// cols`; `c` starts at the tile's first element, rows `ldc` apart.
fn tile(
    a_panel: &[f32],
    b_panel: &[f32],
    c: &mut [f32],
    ldc: usize,
    [rows, cols]: [usize; 2],
    accumulate: bool,
) {
    let kc = a_panel.len() / MR;
    assert!(
        b_panel.len() == kc * NR
            && rows <= MR
            && cols <= NR
            && rows > 0
            && c.len() >= (rows - 1) * ldc + cols,
        "sgemm tile out of bounds"
    );
    #[cfg(target_arch = "x86_64")]
    // SAFETY: `matmul` checked AVX-512F; the panels hold kc·MR and kc·NR values and `c`
    // covers every (row < rows, column < cols) the kernel touches (asserted above).
    unsafe {
        kernel_avx512(
            kc,
            a_panel.as_ptr(),
            b_panel.as_ptr(),
            c.as_mut_ptr(),
            ldc,
            rows,
            cols,
            accumulate,
        );
    }
}

/// The 12 × 32 micro-kernel. Safety: AVX-512F present; `a` readable for `kc · MR` values,
/// `b` for `kc · NR`; `c + r · ldc + j` writable for `r < rows`, `j < cols`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
#[allow(clippy::too_many_arguments)]
unsafe fn kernel_avx512(
    kc: usize,
    a: *const f32,
    b: *const f32,
    c: *mut f32,
    ldc: usize,
    rows: usize,
    cols: usize,
    accumulate: bool,
) {
    use std::arch::x86_64::*;
    let mut acc = [[_mm512_setzero_ps(); 2]; MR];
    let (mut a_p, mut b_p) = (a, b);
    for _ in 0..kc {
        // SAFETY: fewer than kc steps taken, so NR values at b_p and MR at a_p remain.
        let (b0, b1) = unsafe { (_mm512_loadu_ps(b_p), _mm512_loadu_ps(b_p.wrapping_add(16))) };
        for (r, acc_r) in acc.iter_mut().enumerate() {
            // SAFETY: r < MR values remain at a_p (see above).
            let a_r = _mm512_set1_ps(unsafe { *a_p.wrapping_add(r) });
            acc_r[0] = _mm512_fmadd_ps(a_r, b0, acc_r[0]);
            acc_r[1] = _mm512_fmadd_ps(a_r, b1, acc_r[1]);
        }
        a_p = a_p.wrapping_add(MR);
        b_p = b_p.wrapping_add(NR);
    }
    let lanes = |from: usize| -> __mmask16 {
        let live = cols.saturating_sub(from).min(16);
        ((1u32 << live) - 1) as __mmask16
    };
    let (m0, m1) = (lanes(0), lanes(16));
    for (r, acc_r) in acc.iter().enumerate() {
        if r < rows {
            // SAFETY: row r < rows; the masks keep the lanes to columns < cols.
            unsafe {
                let row = c.wrapping_add(r * ldc);
                let (mut v0, mut v1) = (acc_r[0], acc_r[1]);
                if accumulate {
                    v0 = _mm512_add_ps(v0, _mm512_maskz_loadu_ps(m0, row));
                    v1 = _mm512_add_ps(v1, _mm512_maskz_loadu_ps(m1, row.wrapping_add(16)));
                }
                _mm512_mask_storeu_ps(row, m0, v0);
                _mm512_mask_storeu_ps(row.wrapping_add(16), m1, v1);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn value(i: usize, s: usize) -> f32 {
        ((i * 7919 + s * 104_729) % 2003) as f32 / 1001.0 - 1.0
    }

    /// Against a plain triple loop in f64, over shapes with every kind of edge (rows and
    /// columns not multiples of the tile, depth over one KC slice, tiny and empty inner
    /// dimensions) and both layouts of `a`.
    #[test]
    fn matches_a_triple_loop() {
        if !available() {
            eprintln!("no AVX-512F here: sgemm is not used, nothing to test");
            return;
        }
        for &(m, n, k) in &[
            (1, 1, 1),
            (12, 32, 7),
            (13, 33, 300),
            (96, 100, 363),
            (5, 70, 600),
            (40, 3, 2),
            (25, 17, 0),
        ] {
            let a: Vec<f32> = (0..m * k).map(|i| value(i, 1)).collect();
            let b: Vec<f32> = (0..k * n).map(|i| value(i, 2)).collect();
            let want: Vec<f64> = (0..m * n)
                .map(|ij| {
                    let (i, j) = (ij / n, ij % n);
                    (0..k)
                        .map(|p| a[i * k + p] as f64 * b[p * n + j] as f64)
                        .sum()
                })
                .collect();
            let mut c = vec![f32::NAN; m * n];
            matmul(&mut c, MatRef::row_major(&a, m, k), &b, n);
            // The same product with a stored transposed: [k, m] read as [m, k].
            let at: Vec<f32> = (0..k * m).map(|pi| a[(pi % m) * k + pi / m]).collect();
            let mut ct = vec![f32::NAN; m * n];
            matmul(&mut ct, MatRef::transposed(&at, m, k), &b, n);
            for (idx, w) in want.iter().enumerate() {
                let tol = 1e-5 * (k as f64).max(1.0);
                assert!(
                    (c[idx] as f64 - w).abs() <= tol && (ct[idx] as f64 - w).abs() <= tol,
                    "[{m}, {n}, {k}] at {idx}: {} / {} vs {w}",
                    c[idx],
                    ct[idx]
                );
            }
        }
    }
}
