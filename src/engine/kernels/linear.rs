//! Fully connected layers (ONNX `Gemm` with constant weights) on the CPU (flex) device:
//! `y = α · x · Wᵀ + β · c` as one dot product per output over a weight row kept contiguous
//! on the host. With one image this is a matrix-vector product bound by reading the weights
//! once (AlexNet's three layers: 58 M weights, 232 MB per forward pass); burn transposed the
//! weight view and ran a general matmul, 26 ms for those three layers. Used by
//! [`crate::engine::Engine`] for Gemm nodes on flex; the usual layout (`transB = 1`, `α = 1`) reads
//! the engine's weight tensor in place, so the weights are not held twice.

use rayon::prelude::*;

use super::simd;
use super::taps::mul_add;
use crate::model::{Graph, Node, Op};

/// Outputs one parallel task computes: one task per output (1000 of 1280 weights for
/// EfficientNet-Lite0's classifier) cost rayon more in splitting than the dot products.
/// With these tasks and the dot products compiled per SIMD level (before: baseline SSE2, no
/// FMA), that classifier in a forward pass, 2-core Intel Xeon (Emerald Rapids): one thread
/// 0.66 → 0.45 ms, two threads 0.39 → 0.18 ms.
const OUTPUTS_PER_TASK: usize = 16;

/// A Gemm node prepared for [`HostLinear::run`]: its sizes, the scaled bias per output, and
/// a `[n, k]` copy of the weights only when the model's do not already have that form.
#[derive(Debug, Clone)]
pub struct HostLinear {
    rows: usize,
    k: usize,
    n: usize,
    /// `[n, k]` rows multiplied by α, made once here when the model stores `[k, n]`
    /// (`transB = 0`) or `α ≠ 1`; `None` when the stored weights are already those rows.
    prepared: Option<Vec<f32>>,
    /// `β · c` per output when `c` is one value or one per output (broadcast over rows).
    bias: Option<Vec<f32>>,
}

impl HostLinear {
    /// `node` as a host linear layer when it is a Gemm without a transposed input whose
    /// weight (and bias, if any) are constants and the bias broadcasts over rows; else
    /// `None` (the backend runs it).
    pub fn plan(graph: &Graph, node: &Node) -> Option<Self> {
        let &Op::Gemm {
            alpha,
            beta,
            trans_a: false,
            trans_b,
        } = &node.op
        else {
            return None;
        };
        let x = graph.shapes.get(node.inputs.first()?)?;
        let w = graph.constants.get(node.inputs.get(1)?)?;
        let (&[rows, k], &[w0, w1]) = (x.as_slice(), w.shape.as_slice()) else {
            return None;
        };
        let (n, wk) = if trans_b { (w0, w1) } else { (w1, w0) };
        if wk != k || node.output_shapes.first()? != &[rows, n] {
            return None;
        }
        let prepared = match (trans_b, alpha == 1.0) {
            (true, true) => None,
            (true, false) => Some(w.to_f32_vec().iter().map(|v| alpha * v).collect()),
            (false, _) => {
                let values = w.to_f32_vec();
                Some(
                    (0..n * k)
                        .map(|i| alpha * values[(i % k) * n + i / k])
                        .collect(),
                )
            }
        };
        let bias = match node.inputs.get(2) {
            None => None,
            Some(name) => {
                let c = graph.constants.get(name)?.to_f32_vec();
                Some(match c.len() {
                    1 => vec![beta * c[0]; n],
                    len if len == n => c.iter().map(|v| beta * v).collect(),
                    _ => return None,
                })
            }
        };
        Some(Self {
            rows,
            k,
            n,
            prepared,
            bias,
        })
    }

    /// `x [rows, k]` (row-major) → `[rows, n]`; `stored` is the node's weight input as the
    /// model stores it (read only when no prepared copy was made). Outputs run in parallel,
    /// each reading its weight row once for all rows of `x`.
    pub fn run(&self, x: &[f32], stored: &[f32]) -> Vec<f32> {
        let (rows, k, n) = (self.rows, self.k, self.n);
        assert_eq!(x.len(), rows * k, "linear layer input");
        let weight = self.prepared.as_deref().unwrap_or(stored);
        assert_eq!(weight.len(), n * k, "linear layer weight");
        let mut out_t = vec![0f32; n * rows]; // [n, rows]
        if k > 0 && rows > 0 {
            let level = simd::active();
            (out_t.par_chunks_mut(rows * OUTPUTS_PER_TASK))
                .zip(weight.par_chunks(k * OUTPUTS_PER_TASK))
                .enumerate()
                .for_each(|(t, (dst, weight))| {
                    let first = t * OUTPUTS_PER_TASK;
                    let bias = (self.bias.as_deref()).map(|b| &b[first..first + dst.len() / rows]);
                    let task = Outputs {
                        dst,
                        weight,
                        bias,
                        x,
                        rows,
                        k,
                    };
                    simd::run_at_level!(level, outputs_body, task, Outputs<'_>);
                });
        } else if let Some(b) = &self.bias {
            for (j, dst) in out_t.chunks_mut(rows.max(1)).enumerate() {
                dst.fill(b[j]);
            }
        }
        if rows == 1 {
            return out_t;
        }
        (0..rows * n)
            .map(|i| out_t[(i % n) * rows + i / n])
            .collect()
    }
}

/// Values a dot product sums side by side (two AVX2 registers, one AVX-512 one).
const DOT_LANES: usize = 16;

/// `Σ a[i] · b[i]` in [`DOT_LANES`] partial sums (independent chains the compiler keeps in
/// vector registers; a single running sum would serialise every addition), with fused
/// multiply-adds when `FMA` (the caller's `target_feature` must then have them).
#[inline(always)]
pub(super) fn dot<const FMA: bool>(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0f32; DOT_LANES];
    let (a_whole, b_whole) = (a.chunks_exact(DOT_LANES), b.chunks_exact(DOT_LANES));
    // A loop, not a fold: a closure kept out of line would lose the caller's FMA.
    let mut tail = 0f32;
    for (&x, &y) in a_whole.remainder().iter().zip(b_whole.remainder()) {
        tail = mul_add::<FMA>(x, y, tail);
    }
    for (x, y) in a_whole.zip(b_whole) {
        for l in 0..DOT_LANES {
            acc[l] = mul_add::<FMA>(x[l], y[l], acc[l]);
        }
    }
    acc.iter().sum::<f32>() + tail
}

/// One task's outputs of [`HostLinear::run`]: `dst [outputs, rows]`, `weight [outputs, k]`.
struct Outputs<'a> {
    dst: &'a mut [f32],
    weight: &'a [f32],
    bias: Option<&'a [f32]>,
    x: &'a [f32],
    rows: usize,
    k: usize,
}

/// The body of [`HostLinear::run`]'s tasks, compiled once per SIMD level.
#[inline(always)]
fn outputs_body<const FMA: bool>(task: Outputs<'_>) {
    let Outputs {
        dst,
        weight,
        bias,
        x,
        rows,
        k,
    } = task;
    for (j, (dst, w)) in dst.chunks_mut(rows).zip(weight.chunks(k)).enumerate() {
        let b = bias.map_or(0.0, |b| b[j]);
        for (d, x_row) in dst.iter_mut().zip(x.chunks(k)) {
            *d = dot::<FMA>(w, x_row) + b;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dot_matches_a_plain_sum() {
        for len in [0, 1, 15, 16, 17, 100] {
            let a: Vec<f32> = (0..len).map(|i| i as f32 * 0.5 - 3.0).collect();
            let b: Vec<f32> = (0..len).map(|i| (i % 7) as f32 - 2.0).collect();
            let want: f64 = a.iter().zip(&b).map(|(x, y)| *x as f64 * *y as f64).sum();
            for got in [dot::<false>(&a, &b), dot::<true>(&a, &b)] {
                assert!((got as f64 - want).abs() < 1e-3, "length {len}");
            }
        }
    }

    #[test]
    fn two_rows_by_hand() {
        // x [2, 3], W stored [n = 2, k = 3] (transB), α = 2, bias [1, -1] with β = 0.5.
        let layer = HostLinear {
            rows: 2,
            k: 3,
            n: 2,
            prepared: Some([1.0, 0.0, 2.0, 0.0, 1.0, 1.0].map(|v| 2.0 * v).to_vec()),
            bias: Some(vec![0.5, -0.5]),
        };
        let x = [1.0, 2.0, 3.0, -1.0, 0.0, 1.0];
        // Row 0: 2·(1 + 6) + 0.5 = 14.5, 2·(2 + 3) − 0.5 = 9.5; row 1: 2·(−1 + 2) + 0.5 = 2.5,
        // 2·(0 + 1) − 0.5 = 1.5.
        assert_eq!(layer.run(&x, &[]), vec![14.5, 9.5, 2.5, 1.5]);
    }

    #[test]
    fn stored_rows_are_read_in_place() {
        // α = 1, transB: the stored [n = 2, k = 3] weights are the rows; no bias.
        let layer = HostLinear {
            rows: 1,
            k: 3,
            n: 2,
            prepared: None,
            bias: None,
        };
        let stored = [1.0, 0.0, 2.0, 0.0, 1.0, 1.0];
        // 1 + 6 = 7, 2 + 3 = 5.
        assert_eq!(layer.run(&[1.0, 2.0, 3.0], &stored), vec![7.0, 5.0]);
    }
}
