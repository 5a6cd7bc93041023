//! Feature visualisation by optimisation (Olah et al. 2017): for each selected filter of a
//! layer, the input that maximises the filter's response, found by gradient ascent from
//! seeded noise. All filters of a chunk are optimised together: one batched forward pass
//! ([`Engine::with_batch`]) and one reverse pass with one seed per input
//! ([`crate::engine::reverse::seeds`]) per step.
//!
//! Parameterisation, Lucid's recipe: the image is `sigmoid(C · F(p))` for parameters `p` (`F`
//! the FFT parameterisation of [`fft`], or the identity for plain pixels; `C` Lucid's colour
//! decorrelation), randomly padded, jittered, scaled and rotated every step ([`transform`]),
//! then the model's own mean/std; Adam on `p`. [`Parameterisation::L2Ball`] is the textbook
//! setting for checks: the input itself, projected onto an L2 ball after each plain gradient
//! step. Every map is applied and transposed on the host; the network's part of the gradient
//! is the engine's batched reverse pass.

pub mod cache;
pub mod fft;
mod stream;
pub mod transform;

pub use stream::{FeatvisEvent, featvis, featvis_stream};

use std::ops::ControlFlow;

use burn::tensor::{Tensor, TensorData};
use rayon::prelude::*;

use crate::engine::methods::attribution::{BackwardError, GradientRule, read_chunk};
use crate::engine::ops::T6;
use crate::engine::reverse::backward::backward;
use crate::engine::{Capture, Engine, EngineError};
use crate::model::preprocess::InputTensor;

/// What a filter's score is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Objective {
    /// The mean over `(h, w)` of the filter's map.
    Channel,
    /// The centre unit of the filter's map (`(H/2, W/2)`).
    Neuron,
}

/// How the optimised parameters become the model's input.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Parameterisation {
    /// `x = (T(sigmoid(C · F(p))) − mean) / std` per plane, Adam on `p`, where `C` is Lucid's
    /// colour decorrelation ([`COLOUR_CORRELATION`], so steps in `p` move along the
    /// principal colour axes of ImageNet) or, without `decorrelate`, the identity; `F` the
    /// FFT parameterisation ([`fft::FftImage`]) or, without `fft`, the identity; `T` a new
    /// random draw of Lucid's transforms every step ([`transform::Warp`]) or, without
    /// `transforms`, the identity.
    Pixel {
        mean: [f32; 3],
        std: [f32; 3],
        decorrelate: bool,
        fft: bool,
        transforms: bool,
    },
    /// `x = p` with `‖p‖₂ ≤ radius` (projected after each step), plain gradient ascent with
    /// step `lr`: the optimum of a linear objective is its gradient scaled to the radius.
    L2Ball { radius: f32 },
}

/// The optimisation's settings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FeatvisSpec {
    pub steps: usize,
    pub lr: f32,
    pub objective: Objective,
    pub param: Parameterisation,
    /// Seeds the initial noise: filter `k`'s start depends only on `(seed, k)`, not on the
    /// chunk it runs in.
    pub seed: u64,
    /// Filters optimised together (the batch of each pass).
    pub batch: usize,
}

impl FeatvisSpec {
    /// Lucid's default recipe (512 steps of Adam at 0.05 on the channel objective, FFT
    /// parameterisation, decorrelated colours, the standard transforms, seed 0) for a model
    /// whose input is `(pixel − mean) / std`; 16 filters per pass.
    pub fn lucid(mean: [f32; 3], std: [f32; 3]) -> Self {
        Self {
            steps: 512,
            lr: 0.05,
            objective: Objective::Channel,
            param: Parameterisation::Pixel {
                mean,
                std,
                decorrelate: true,
                fft: true,
                transforms: true,
            },
            seed: 0,
            batch: 16,
        }
    }

    /// Every setting that changes the images, as text (the batch does not: a filter's
    /// result is the same in any chunk). Names a cache entry ([`cache::FeatvisCache`]).
    pub fn result_key(&self, input_hw: [usize; 2]) -> String {
        format!(
            "featvis v1; steps {}; lr {:?}; objective {:?}; {:?}; seed {}; input {}x{}",
            self.steps, self.lr, self.objective, self.param, self.seed, input_hw[0], input_hw[1]
        )
    }
}

/// Why a feature visualisation could not run.
#[derive(Debug, thiserror::Error)]
pub enum FeatvisError {
    #[error(transparent)]
    Engine(#[from] EngineError),
    #[error(transparent)]
    Backward(#[from] BackwardError),
    #[error("layer {layer} has output shape {shape:?}, not a [1, C, H, W] feature map")]
    NotFeatureMap { layer: String, shape: Vec<usize> },
    #[error("filter {filter} is out of range: layer {layer} has {channels} filters")]
    Filter {
        layer: String,
        filter: usize,
        channels: usize,
    },
    #[error("the model's input is {0:?}, not one [1, 3, H, W] image")]
    Input(Vec<usize>),
}

pub type Result<T, E = FeatvisError> = std::result::Result<T, E>;

/// One filter's result.
#[derive(Debug, Clone, PartialEq)]
pub struct FeatvisImage {
    pub filter: usize,
    /// `[3, H, W]` in [0, 1] for [`Parameterisation::Pixel`]; the input itself otherwise.
    pub image: Vec<f32>,
    /// The objective at steps `0, every, 2·every, …` and after the last step.
    pub objective: Vec<(usize, f32)>,
}

/// Every how many steps the objective is recorded.
pub const RECORD_EVERY: usize = 32;

/// One evaluation for a batch of parameters `p` (one set per filter of `filters`): each
/// filter's objective and its gradient with respect to its own parameters (through
/// [`Parameterisation`]; the random transforms are those of `step` of a run seeded `seed`).
/// `batched` is the engine for a batch of `filters.len()`.
#[allow(clippy::too_many_arguments)]
pub fn objective_and_gradient(
    batched: &Engine,
    layer: usize,
    filters: &[usize],
    p: &[f32],
    objective: Objective,
    param: Parameterisation,
    step: usize,
    seed: u64,
) -> Result<(Vec<f32>, Vec<f32>)> {
    let hw = input_hw(batched)?;
    let pipeline = Pipeline::new(param, hw);
    pipeline.objective_and_gradient(batched, layer, filters, p, objective, step, seed)
}

/// `[H, W]` of the model's one `[1, 3, H, W]` (or batched `[N, 3, H, W]`) image input.
fn input_hw(engine: &Engine) -> Result<[usize; 2]> {
    let input_shape = (engine.graph().image_input())
        .map(|i| i.shape.clone())
        .unwrap_or_default();
    match input_shape.as_slice() {
        &[_, 3, h, w] => Ok([h, w]),
        _ => Err(FeatvisError::Input(input_shape)),
    }
}

/// The parameterisation for one input size, its FFT planned once.
struct Pipeline {
    param: Parameterisation,
    hw: [usize; 2],
    fft: Option<fft::FftImage>,
}

impl Pipeline {
    fn new(param: Parameterisation, hw: [usize; 2]) -> Self {
        let fft = match param {
            Parameterisation::Pixel { fft: true, .. } => Some(fft::FftImage::new(hw[0], hw[1])),
            _ => None,
        };
        Self { param, hw, fft }
    }

    /// Parameters per filter.
    fn len(&self) -> usize {
        match &self.fft {
            Some(f) => 3 * f.params_per_plane(),
            None => 3 * self.hw[0] * self.hw[1],
        }
    }

    /// `C · F(p)`: the image before its sigmoid, `[N, 3, H, W]`.
    fn logits(&self, p: &[f32], decorrelate: bool) -> Vec<f32> {
        let v = match &self.fft {
            Some(f) => f.image(p),
            None => p.to_vec(),
        };
        colours(&v, decorrelate, self.hw[0] * self.hw[1], false)
    }

    /// The picture of parameters `p`: `sigmoid(C · F(p))` in [0, 1], or the input itself.
    fn picture(&self, p: &[f32]) -> Vec<f32> {
        match self.param {
            Parameterisation::Pixel { decorrelate, .. } => self
                .logits(p, decorrelate)
                .into_iter()
                .map(sigmoid)
                .collect(),
            Parameterisation::L2Ball { .. } => p.to_vec(),
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn objective_and_gradient(
        &self,
        batched: &Engine,
        layer: usize,
        filters: &[usize],
        p: &[f32],
        objective: Objective,
        step: usize,
        seed: u64,
    ) -> Result<(Vec<f32>, Vec<f32>)> {
        let node = &batched.graph().nodes[layer];
        let (_, channels, mh, mw) = match node.output_shape() {
            &[n, c, h, w] => (n, c, h, w),
            other => {
                return Err(FeatvisError::NotFeatureMap {
                    layer: node.name.clone(),
                    shape: other.to_vec(),
                });
            }
        };
        let [h, w] = self.hw;
        let (per, plane_len) = (3 * h * w, h * w);
        // The image of each filter, transformed, then the model's preprocessing.
        let (x, pictures, warps) = match self.param {
            Parameterisation::Pixel {
                mean,
                std,
                transforms,
                ..
            } => {
                // Image by image in parallel (FFT, colours, sigmoid, warp, preprocessing).
                let per_image: Vec<(Vec<f32>, Option<transform::Warp>, Vec<f32>)> = (p
                    .par_chunks(self.len()))
                .zip(filters.par_iter())
                .map(|(params, &f)| {
                    let picture = self.picture(params);
                    let draw = transform::Draw::new(seed, f, step);
                    let warp =
                        transforms.then(|| transform::Warp::new(self.hw, self.hw, Some(draw)));
                    let shown = match &warp {
                        Some(warp) => warp.apply(&picture),
                        None => picture.clone(),
                    };
                    let x = (shown.iter().enumerate())
                        .map(|(i, &v)| {
                            let c = i / plane_len;
                            (v - mean[c]) / std[c]
                        })
                        .collect();
                    (picture, warp, x)
                })
                .collect();
                let (mut pictures, mut warps, mut x) = (Vec::new(), Vec::new(), Vec::new());
                for (picture, warp, shown) in per_image {
                    pictures.extend(picture);
                    warps.push(warp);
                    x.extend(shown);
                }
                (x, pictures, warps)
            }
            Parameterisation::L2Ball { .. } => (p.to_vec(), Vec::new(), Vec::new()),
        };
        let inputs: Vec<InputTensor> = (x.chunks(per))
            .map(|d| InputTensor {
                shape: [1, 3, h, w],
                data: d.to_vec(),
                picture: None,
            })
            .collect();
        let refs: Vec<&InputTensor> = inputs.iter().collect();
        let acts = batched.forward_batch(&refs, &Capture::AllUpTo(layer))?;
        let maps = acts.read(&node.outputs[0])?; // [N, C, H', W']
        let values = (filters.iter().enumerate())
            .map(|(k, &f)| {
                let plane = &maps.data[(k * channels + f) * mh * mw..][..mh * mw];
                match objective {
                    Objective::Channel => plane.iter().sum::<f32>() / (mh * mw) as f32,
                    Objective::Neuron => plane[(mh / 2) * mw + mw / 2],
                }
            })
            .collect();
        let seed_t = objective_seed(filters, (channels, mh, mw), objective, batched);
        let grads = backward(batched, &acts, layer, seed_t, GradientRule::Backprop)?;
        let gx = read_chunk(batched, layer, grads)?; // [N, 3, H, W]
        let gp = match self.param {
            // Back through the preprocessing (1 / std), the transforms (their transpose),
            // the sigmoid (s (1 − s)), the colours (Cᵀ) and the FFT (its transpose).
            Parameterisation::Pixel {
                std, decorrelate, ..
            } => {
                // Image by image in parallel.
                let per_image: Vec<Vec<f32>> = (gx.par_chunks(per))
                    .zip(warps.par_iter())
                    .zip(pictures.par_chunks(per))
                    .map(|((g, warp), image)| {
                        let g_t: Vec<f32> = (g.iter().enumerate())
                            .map(|(i, &v)| v / std[i / plane_len])
                            .collect();
                        let g_image = match warp {
                            Some(warp) => warp.transpose(&g_t),
                            None => g_t,
                        };
                        let g_u: Vec<f32> = (g_image.iter().zip(image))
                            .map(|(&g, &s)| g * s * (1.0 - s))
                            .collect();
                        let g_v = colours(&g_u, decorrelate, plane_len, true);
                        match &self.fft {
                            Some(f) => f.adjoint(&g_v),
                            None => g_v,
                        }
                    })
                    .collect();
                per_image.concat()
            }
            Parameterisation::L2Ball { .. } => gx,
        };
        Ok((values, gp))
    }
}

/// One chunk's optimisation; `None` when `on_step` stopped it.
fn optimise_chunk(
    batched: &Engine,
    layer: usize,
    filters: &[usize],
    spec: &FeatvisSpec,
    on_step: &mut dyn FnMut(usize) -> ControlFlow<()>,
) -> Result<Option<Vec<FeatvisImage>>> {
    let n = filters.len();
    let pipeline = Pipeline::new(spec.param, input_hw(batched)?);
    let per = pipeline.len();
    // Parameters, one set per filter, seeded by (seed, filter).
    let mut p: Vec<f32> = filters
        .iter()
        .flat_map(|&f| noise(spec.seed, f as u64, per, 0.01))
        .collect();
    let mut adam = Adam::new(p.len(), spec.lr);
    let mut history: Vec<Vec<(usize, f32)>> = vec![Vec::new(); n];
    for step in 0..=spec.steps {
        let (values, gp) = pipeline.objective_and_gradient(
            batched,
            layer,
            filters,
            &p,
            spec.objective,
            step,
            spec.seed,
        )?;
        if step % RECORD_EVERY == 0 || step == spec.steps {
            for (trace, value) in history.iter_mut().zip(values) {
                trace.push((step, value));
            }
        }
        if step == spec.steps {
            break; // the last evaluation only records (its gradient goes unused)
        }
        if on_step(step + 1).is_break() {
            return Ok(None);
        }
        match spec.param {
            Parameterisation::Pixel { .. } => adam.ascend(&mut p, &gp),
            Parameterisation::L2Ball { radius } => {
                for (pi, g) in p.iter_mut().zip(&gp) {
                    *pi += spec.lr * g;
                }
                for image in p.chunks_mut(per) {
                    let norm = image.iter().map(|v| v * v).sum::<f32>().sqrt();
                    if norm > radius {
                        image.iter_mut().for_each(|v| *v *= radius / norm);
                    }
                }
            }
        }
    }
    let shown = pipeline.picture(&p);
    let [h, w] = pipeline.hw;
    Ok(Some(
        (filters.iter().zip(shown.chunks(3 * h * w)).zip(history))
            .map(|((&filter, image), objective)| FeatvisImage {
                filter,
                image: image.to_vec(),
                objective,
            })
            .collect(),
    ))
}

/// `[1, 1, N, C, H', W']`: sample `k`'s gradient of its objective with respect to the layer.
fn objective_seed(
    filters: &[usize],
    (c, h, w): (usize, usize, usize),
    objective: Objective,
    engine: &Engine,
) -> T6 {
    let n = filters.len();
    let mut seed = vec![0f32; n * c * h * w];
    for (k, &f) in filters.iter().enumerate() {
        let plane = &mut seed[(k * c + f) * h * w..][..h * w];
        match objective {
            Objective::Channel => plane.fill(1.0 / (h * w) as f32),
            Objective::Neuron => plane[(h / 2) * w + w / 2] = 1.0,
        }
    }
    Tensor::<6>::from_data(TensorData::new(seed, [1, 1, n, c, h, w]), engine.device())
}

/// Lucid's `color_correlation_svd_sqrt` (the square root of ImageNet's colour covariance),
/// divided by its largest column norm, as Lucid does: row `c` gives RGB channel `c` from the
/// three decorrelated channels.
pub const COLOUR_CORRELATION: [[f32; 3]; 3] = {
    const M: [[f32; 3]; 3] = [[0.26, 0.09, 0.02], [0.27, 0.00, -0.05], [0.27, -0.09, 0.03]];
    // Column norms: ‖(0.26, 0.27, 0.27)‖ = 0.461952 is the largest (a unit test checks).
    const NORM: f32 = 0.461_952;
    [
        [M[0][0] / NORM, M[0][1] / NORM, M[0][2] / NORM],
        [M[1][0] / NORM, M[1][1] / NORM, M[1][2] / NORM],
        [M[2][0] / NORM, M[2][1] / NORM, M[2][2] / NORM],
    ]
};

/// Per pixel of each `[3, plane_len]` image in `values`: `C · v` (or `Cᵀ · v` with
/// `transpose`), `C` = [`COLOUR_CORRELATION`]; the values unchanged without `decorrelate`.
fn colours(values: &[f32], decorrelate: bool, plane_len: usize, transpose: bool) -> Vec<f32> {
    if !decorrelate {
        return values.to_vec();
    }
    let m = |r: usize, c: usize| {
        if transpose {
            COLOUR_CORRELATION[c][r]
        } else {
            COLOUR_CORRELATION[r][c]
        }
    };
    let mut out = vec![0f32; values.len()];
    for (image, dst) in values
        .chunks(3 * plane_len)
        .zip(out.chunks_mut(3 * plane_len))
    {
        for i in 0..plane_len {
            let v = [image[i], image[plane_len + i], image[2 * plane_len + i]];
            for r in 0..3 {
                dst[r * plane_len + i] = m(r, 0) * v[0] + m(r, 1) * v[1] + m(r, 2) * v[2];
            }
        }
    }
    out
}

fn sigmoid(v: f32) -> f32 {
    1.0 / (1.0 + (-v).exp())
}

/// Adam (Kingma & Ba) for ascent, β = (0.9, 0.999), ε = 1e-8.
struct Adam {
    lr: f32,
    m: Vec<f32>,
    v: Vec<f32>,
    t: i32,
}

impl Adam {
    fn new(len: usize, lr: f32) -> Self {
        Self {
            lr,
            m: vec![0.0; len],
            v: vec![0.0; len],
            t: 0,
        }
    }

    fn ascend(&mut self, p: &mut [f32], g: &[f32]) {
        const B1: f32 = 0.9;
        const B2: f32 = 0.999;
        self.t += 1;
        let (c1, c2) = (1.0 - B1.powi(self.t), 1.0 - B2.powi(self.t));
        for (((pi, &gi), mi), vi) in p.iter_mut().zip(g).zip(&mut self.m).zip(&mut self.v) {
            *mi = B1 * *mi + (1.0 - B1) * gi;
            *vi = B2 * *vi + (1.0 - B2) * gi * gi;
            *pi += self.lr * (*mi / c1) / ((*vi / c2).sqrt() + 1e-8);
        }
    }
}

/// `len` values of seeded Gaussian noise with standard deviation `sd` (splitmix64 +
/// Box–Muller), a function of `(seed, stream)` only.
fn noise(seed: u64, stream: u64, len: usize, sd: f32) -> Vec<f32> {
    let mut state = seed ^ stream.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    let mut next = move || {
        state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        ((z ^ (z >> 31)) >> 11) as f64 / (1u64 << 53) as f64
    };
    (0..len)
        .map(|_| {
            let (u1, u2) = (next().max(f64::MIN_POSITIVE), next());
            ((-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()) as f32 * sd
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_colour_matrix_has_unit_largest_column_and_colours_transpose() {
        let norms: Vec<f32> = (0..3)
            .map(|c| {
                (0..3)
                    .map(|r| COLOUR_CORRELATION[r][c].powi(2))
                    .sum::<f32>()
                    .sqrt()
            })
            .collect();
        let largest = norms.iter().fold(0f32, |m, &n| m.max(n));
        assert!((largest - 1.0).abs() < 1e-5, "{norms:?}");
        // ⟨C·a, b⟩ = ⟨a, Cᵀ·b⟩ over two 2-pixel images.
        let a: Vec<f32> = (0..12).map(|i| (i as f32 * 0.37).sin()).collect();
        let b: Vec<f32> = (0..12).map(|i| (i as f32 * 0.73).cos()).collect();
        let dot = |x: &[f32], y: &[f32]| x.iter().zip(y).map(|(p, q)| p * q).sum::<f32>();
        let left = dot(&colours(&a, true, 2, false), &b);
        let right = dot(&a, &colours(&b, true, 2, true));
        assert!((left - right).abs() < 1e-5, "{left} vs {right}");
        assert_eq!(colours(&a, false, 2, false), a);
    }

    #[test]
    fn noise_depends_on_seed_and_stream_only() {
        assert_eq!(noise(1, 2, 5, 0.01), noise(1, 2, 5, 0.01));
        assert_ne!(noise(1, 2, 5, 0.01), noise(1, 3, 5, 0.01));
        let big = noise(9, 0, 20_000, 1.0);
        let mean = big.iter().sum::<f32>() / big.len() as f32;
        let var = big.iter().map(|v| (v - mean).powi(2)).sum::<f32>() / big.len() as f32;
        assert!(
            mean.abs() < 0.03 && (var - 1.0).abs() < 0.05,
            "{mean} {var}"
        );
    }
}
