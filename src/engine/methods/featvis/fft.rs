//! Lucid's FFT image parameterisation (Lucent's `fft_image`, decay power 1): the optimised
//! parameters are a half spectrum per plane, `[H, W/2 + 1]` complex values stored as
//! `[re, im]` pairs; the image is `irfft2(scale · X, norm = "ortho") / 4`, with
//! `scale = 1 / max(|f|, 1 / max(H, W))` damping high frequencies (the 1/f spectrum of
//! natural images). [`FftImage::image`] is the map, [`FftImage::adjoint`] its transpose
//! (what the gradient goes through), both per plane on the host.

use std::sync::Arc;

use rustfft::num_complex::Complex32;
use rustfft::{Fft, FftPlanner};

/// Lucid's "magic" divisor of the image (it reduces saturation).
const MAGIC: f32 = 4.0;

/// The spectrum → image map for `[H, W]` planes.
pub struct FftImage {
    h: usize,
    w: usize,
    /// Columns of the half spectrum, `W/2 + 1`.
    wf: usize,
    /// Per half-spectrum entry: `scale / magic` (the linear factor before the inverse FFT).
    gain: Vec<f32>,
    row_inverse: Arc<dyn Fft<f32>>,
    row_forward: Arc<dyn Fft<f32>>,
    col_inverse: Arc<dyn Fft<f32>>,
    col_forward: Arc<dyn Fft<f32>>,
}

impl FftImage {
    pub fn new(h: usize, w: usize) -> Self {
        let wf = w / 2 + 1;
        let floor = 1.0 / h.max(w) as f32;
        let mut gain = Vec::with_capacity(h * wf);
        for k in 0..h {
            // numpy's fftfreq: 0, 1, …, then negative frequencies.
            let fy = if k <= (h - 1) / 2 {
                k as f32
            } else {
                k as f32 - h as f32
            } / h as f32;
            for l in 0..wf {
                let fx = l as f32 / w as f32;
                let f = (fx * fx + fy * fy).sqrt();
                gain.push(1.0 / f.max(floor) / MAGIC);
            }
        }
        let mut planner = FftPlanner::new();
        Self {
            h,
            w,
            wf,
            gain,
            row_inverse: planner.plan_fft_inverse(w),
            row_forward: planner.plan_fft_forward(w),
            col_inverse: planner.plan_fft_inverse(h),
            col_forward: planner.plan_fft_forward(h),
        }
    }

    /// Parameters per plane: `H · (W/2 + 1)` complex values as `[re, im]`.
    pub fn params_per_plane(&self) -> usize {
        2 * self.h * self.wf
    }

    /// The image planes (`[planes, H, W]`) of half spectra `params` (`[planes, H, W/2+1, 2]`).
    pub fn image(&self, params: &[f32]) -> Vec<f32> {
        let (h, w, wf) = (self.h, self.w, self.wf);
        let norm = 1.0 / ((h * w) as f32).sqrt();
        let mut out = Vec::with_capacity(params.len() / self.params_per_plane() * h * w);
        let mut column = vec![Complex32::default(); h];
        let mut half = vec![Complex32::default(); h * wf];
        let mut row = vec![Complex32::default(); w];
        for plane in params.chunks(self.params_per_plane()) {
            for (i, (pair, &g)) in plane.chunks(2).zip(&self.gain).enumerate() {
                half[i] = Complex32::new(pair[0] * g, pair[1] * g);
            }
            // Inverse along H, column by column.
            along_columns(&mut half, wf, &*self.col_inverse, &mut column);
            // Inverse along W from the Hermitian half, real part (the imaginary parts of
            // the DC and Nyquist columns drop out, as in numpy's irfft).
            for n in 0..h {
                let z = &half[n * wf..(n + 1) * wf];
                row[..wf].copy_from_slice(z);
                for l in wf..w {
                    row[l] = z[w - l].conj();
                }
                self.row_inverse.process(&mut row);
                out.extend(row.iter().map(|c| c.re * norm));
            }
        }
        out
    }

    /// The transpose of [`FftImage::image`]: the gradient with respect to the parameters of
    /// a gradient `g` with respect to the image planes.
    pub fn adjoint(&self, g: &[f32]) -> Vec<f32> {
        let (h, w, wf) = (self.h, self.w, self.wf);
        let norm = 1.0 / ((h * w) as f32).sqrt();
        let mut out = Vec::with_capacity(g.len() / (h * w) * self.params_per_plane());
        let mut row = vec![Complex32::default(); w];
        let mut column = vec![Complex32::default(); h];
        let mut half = vec![Complex32::default(); h * wf];
        for plane in g.chunks(h * w) {
            // The forward real FFT, kept to the half spectrum.
            for n in 0..h {
                for (c, &v) in row.iter_mut().zip(&plane[n * w..(n + 1) * w]) {
                    *c = Complex32::new(v, 0.0);
                }
                self.row_forward.process(&mut row);
                half[n * wf..(n + 1) * wf].copy_from_slice(&row[..wf]);
            }
            along_columns(&mut half, wf, &*self.col_forward, &mut column);
            // x = Σ c_l (Re X cos θ − Im X sin θ) / √(HW), c_l = 1 for the DC and Nyquist
            // columns, 2 between: so ∂/∂Re X = c_l Re G / √(HW), ∂/∂Im X = c_l Im G / √(HW).
            for (i, (z, &gain)) in half.iter().zip(&self.gain).enumerate() {
                let l = i % wf;
                let twice = l != 0 && !(w.is_multiple_of(2) && l == w / 2);
                let c = if twice { 2.0 } else { 1.0 } * norm * gain;
                out.push(z.re * c);
                out.push(z.im * c);
            }
        }
        out
    }
}

/// Runs `fft` on every column of the row-major `[H, wf]` array `half` in place (`column`:
/// scratch of length H).
fn along_columns(half: &mut [Complex32], wf: usize, fft: &dyn Fft<f32>, column: &mut [Complex32]) {
    for l in 0..wf {
        for (k, c) in column.iter_mut().enumerate() {
            *c = half[k * wf + l];
        }
        fft.process(column);
        for (k, c) in column.iter().enumerate() {
            half[k * wf + l] = *c;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pseudo(n: usize, k: f32) -> Vec<f32> {
        (0..n).map(|i| ((i as f32 + 0.5) * k).sin()).collect()
    }

    /// numpy's `irfftn(X, s=(H, W), norm="ortho")` written out as its sum: the half
    /// spectrum extended by Hermitian symmetry along W (the DC and Nyquist columns' imaginary
    /// parts dropped), a direct inverse DFT.
    fn direct(params: &[f32], h: usize, w: usize, gain: &[f32]) -> Vec<f32> {
        let wf = w / 2 + 1;
        let x = |k: usize, l: usize| {
            let i = k * wf + l;
            (params[2 * i] * gain[i], params[2 * i + 1] * gain[i])
        };
        let mut out = vec![0f32; h * w];
        for n in 0..h {
            for m in 0..w {
                let mut sum = 0f64;
                for k in 0..h {
                    for l in 0..wf {
                        let (re, im) = x(k, l);
                        let c = if l == 0 || (w.is_multiple_of(2) && l == w / 2) {
                            1.0
                        } else {
                            2.0
                        };
                        let theta = std::f64::consts::TAU
                            * (k as f64 * n as f64 / h as f64 + l as f64 * m as f64 / w as f64);
                        sum += c * (f64::from(re) * theta.cos() - f64::from(im) * theta.sin());
                    }
                }
                out[n * w + m] = (sum / ((h * w) as f64).sqrt()) as f32;
            }
        }
        out
    }

    #[test]
    fn the_image_is_numpys_ortho_irfft_of_the_scaled_spectrum() {
        for (h, w) in [(4, 4), (5, 6), (6, 7), (3, 1)] {
            let f = FftImage::new(h, w);
            let p = pseudo(2 * f.params_per_plane(), 0.77);
            let got = f.image(&p);
            let per = f.params_per_plane();
            for plane in 0..2 {
                let want = direct(&p[plane * per..(plane + 1) * per], h, w, &f.gain);
                let have = &got[plane * h * w..(plane + 1) * h * w];
                for (a, b) in have.iter().zip(&want) {
                    assert!(
                        (a - b).abs() < 1e-4 * (1.0 + b.abs()),
                        "{h}x{w}: {a} vs {b}"
                    );
                }
            }
        }
    }

    #[test]
    fn the_adjoint_is_the_transpose() {
        // ⟨A p, g⟩ = ⟨p, Aᵀ g⟩ for random p, g, at even and odd sizes.
        for (h, w) in [(8, 8), (7, 9), (16, 12)] {
            let f = FftImage::new(h, w);
            let p = pseudo(3 * f.params_per_plane(), 0.31);
            let g = pseudo(3 * h * w, 0.53);
            let dot = |a: &[f32], b: &[f32]| -> f64 {
                a.iter()
                    .zip(b)
                    .map(|(x, y)| f64::from(*x) * f64::from(*y))
                    .sum()
            };
            let left = dot(&f.image(&p), &g);
            let right = dot(&p, &f.adjoint(&g));
            assert!(
                (left - right).abs() < 1e-4 * left.abs().max(1.0),
                "{h}x{w}: {left} vs {right}"
            );
        }
    }

    #[test]
    fn low_frequencies_weigh_more() {
        // Lucid's scale: 1 / max(|f|, 1 / max(H, W)), over the magic 4.
        let f = FftImage::new(8, 8);
        assert_eq!(f.gain[0], 8.0 / 4.0, "DC at the floor 1/8");
        assert_eq!(f.gain[1], 8.0 / 4.0, "|f| = 1/8");
        assert!((f.gain[4] - 2.0 / 4.0).abs() < 1e-6, "|f| = 1/2 (Nyquist)");
        // Row k = 5 is frequency −3/8.
        assert!((f.gain[5 * 5] - (8.0 / 3.0) / 4.0).abs() < 1e-5);
    }
}
