//! Vector-Jacobian products of the spatial ops: convolutions, pooling (max-pooling through
//! its argmax switches), LRN and the normalisations. Gradients arrive in the reverse pass's
//! layout (seed batch on rank-6 axis 0, see [`super::backward`]); for a 4-D value
//! `[N, C, H, W]` the seed batch and `N` fold into one batch axis of a `[B·N, C, H, W]`
//! tensor by a metadata-only reshape.

use burn::tensor::module::{avg_pool2d, conv_transpose2d, conv2d, max_pool2d_with_indices};
use burn::tensor::ops::{AvgPoolOptions, ConvOptions, ConvTransposeOptions, MaxPoolOptions};
use burn::tensor::{IndexingUpdateOp, Int, Tensor, TensorData};

use super::step::{Result, Step};
use crate::engine::kernels;
use crate::engine::kernels::conv::InputGradPath;
use crate::engine::ops::{HostValues, RANK, T6, axis6, window_sum};
use crate::model::graph::{PadPair, Window2d};

/// The 4-D shape `[N, C, H, W]` of input (`Some(i)`) or output (`None`), or an error.
fn shape4(step: &Step, input: Option<usize>) -> Result<[usize; 4]> {
    let s = match input {
        Some(i) => step.in_shape(i),
        None => step.out_shape(0),
    };
    match s {
        [n, c, h, w] => Ok([*n, *c, *h, *w]),
        _ => Err(step.unsupported(format!("expected a 4-D value, got shape {s:?}"))),
    }
}

/// `[B, 1, N, C, H, W]` → `[B·N, C, H, W]`.
fn fold(step: &Step, g: T6, s: [usize; 4]) -> Tensor<4> {
    g.reshape([step.batch * s[0], s[1], s[2], s[3]])
}

/// A gradient over the padded canvas a window op read (coordinate 0 = first padding row)
/// to the unpadded input of spatial size `size`: drops the leading padding and keeps `size`
/// rows and columns, zero-filling any trailing ones no window reached.
fn window_to_input(t: Tensor<4>, pads: [PadPair; 2], size: [usize; 2]) -> Tensor<4> {
    let mut t = t;
    for (a, (&(before, _), n)) in pads.iter().zip(size).enumerate() {
        let ax = a + 2;
        let len = t.dims()[ax];
        let keep = len.saturating_sub(before).min(n);
        if keep == n && len == n {
            continue;
        }
        let part = (keep > 0).then(|| t.clone().narrow(ax, before, keep));
        t = if keep == n {
            part.unwrap_or(t)
        } else {
            let mut zd = t.dims();
            zd[ax] = n - keep;
            let zeros = Tensor::zeros(zd, &t.device());
            match part {
                Some(p) => Tensor::cat(vec![p, zeros], ax),
                None => zeros,
            }
        };
    }
    t
}

/// Conv: the input gradient is the transposed convolution of `g` with the same weights,
/// stride, dilation and groups, taken over the padded canvas (no padding, no output padding:
/// the canvas is `(Ho − 1)·s + d·(k − 1) + 1` long) and then cropped to the input, which
/// handles asymmetric pads and trailing rows the forward's floor division skipped.
pub(super) fn conv(step: &Step, window: &Window2d, group: usize, g: T6) -> Result<T6> {
    let (xs, ys) = (shape4(step, Some(0))?, shape4(step, None)?);
    let g = if step.engine.host_kernels() {
        match conv_input_grad_on_host(step, window, group, g, xs, ys)? {
            Ok(gx) => return Ok(gx),
            Err(g) => g,
        }
    } else {
        g
    };
    let w: Tensor<4> = step.input(1)?.reshape(shape4(step, Some(1))?); // [M, C/g, kH, kW]
    let options =
        ConvTransposeOptions::new(window.strides, [0, 0], [0, 0], window.dilations, group);
    let canvas = conv_transpose2d(fold(step, g, ys), w, None, options); // [B·N, C, Hc, Wc]
    let gx = window_to_input(canvas, window.pads, [xs[2], xs[3]]); // [B·N, C, H, W]
    Ok(gx.reshape(step.gdims(&xs)?))
}

/// Conv, for objectives that are the sums of output channels `range` (all-ones seeds, one
/// channel each): seed `j` reaches the input only through filter `range.start + j`, so the
/// seeds go as the groups of one transposed convolution, `[1, B, Ho, Wo]` ones with the
/// filters `W[range]` `[B, C, kH, kW]` and `B` groups → `[1, B·C, Hc, Wc]`, instead of
/// `[B, M, Ho, Wo]` one-hot seeds through all `M` filters (`M`× the multiply-adds).
/// Then cropped to the input like [`conv`]. Needs group 1 and a batch of one image.
pub(super) fn conv_channel_sums(
    step: &Step,
    window: &Window2d,
    range: std::ops::Range<usize>,
) -> Result<T6> {
    let (xs, ys) = (shape4(step, Some(0))?, shape4(step, None)?);
    if xs[0] != 1 {
        return Err(step.unsupported(format!("batch of {} images", xs[0])));
    }
    let b = range.len();
    let w: Tensor<4> = step
        .input(1)?
        .reshape(shape4(step, Some(1))?)
        .narrow(0, range.start, b); // [B, C, kH, kW]
    let ones = Tensor::<4>::ones([1, b, ys[2], ys[3]], step.device());
    let options = ConvTransposeOptions::new(window.strides, [0, 0], [0, 0], window.dilations, b);
    let canvas = conv_transpose2d(ones, w, None, options); // [1, B·C, Hc, Wc]
    let gx = window_to_input(canvas, window.pads, [xs[2], xs[3]]); // [1, B·C, H, W]
    Ok(gx.reshape(step.gdims(&xs)?))
}

/// [`conv`] on the CPU, by the host kernel [`kernels::conv::input_grad_path`] picks from the
/// layer's geometry and the gradient's density (guided backprop and deconvnet gate it to its
/// positive values: 10–16% non-zero on AlexNet-shaped networks): sparse
/// ([`kernels::sparse_grad::conv2d_input_grad_sparse`], work follows the non-zeros), GEMM
/// ([`kernels::conv::conv2d_input_grad`]) or direct depthwise
/// ([`kernels::depthwise::depthwise_input_grad`]). `Err(g)` hands the gradient back for flex's
/// transposed convolution, which was faster for dense gradients of thin layers (AlexNet's
/// conv1 — 3 channels, stride 4 — 0.75 s on flex vs 0.85 s by GEMM for 119 seeds).
fn conv_input_grad_on_host(
    step: &Step,
    window: &Window2d,
    group: usize,
    g: T6,
    xs: [usize; 4],
    ys: [usize; 4],
) -> Result<std::result::Result<T6, T6>> {
    let ws = shape4(step, Some(1))?;
    let bn = step.batch * xs[0];
    let x_dims = [bn, xs[1], xs[2], xs[3]];
    let y_dims = [bn, ys[1], ys[2], ys[3]];
    let Some(geometry) = kernels::geometry::ConvGeometry::new(window, group, &x_dims, &ws, &y_dims)
    else {
        return Ok(Err(g));
    };
    let grad = step.to_host(fold(step, g, ys))?; // [B·N, M, Ho, Wo]
    let path = kernels::conv::input_grad_path(&geometry, kernels::sparse_grad::density(&grad));
    if path == InputGradPath::Flex {
        let g = Tensor::<4>::from_data(TensorData::new(grad, y_dims), step.device());
        return Ok(Err(g.reshape(step.gdims(&ys)?)));
    }
    // The weights [M, C/g, kH, kW] are read in place (the engine keeps them; no copy per step).
    let weight = HostValues::of(&step.input(1)?).map_err(|detail| step.readback(detail))?;
    let weight = weight.as_slice();
    let gx = match path {
        InputGradPath::Sparse => {
            kernels::sparse_grad::conv2d_input_grad_sparse(&grad, weight, &geometry)
        }
        InputGradPath::Depthwise => {
            kernels::depthwise::depthwise_input_grad(&grad, weight, &geometry)
                .ok_or_else(|| step.unsupported("depthwise input gradient of this geometry"))?
        }
        InputGradPath::Gemm | InputGradPath::Flex => {
            kernels::conv::conv2d_input_grad(&grad, weight, &geometry)
        }
    }; // [B·N, C, H, W]
    let gx = Tensor::<4>::from_data(TensorData::new(gx, x_dims), step.device());
    Ok(Ok(gx.reshape(step.gdims(&xs)?)))
}

/// ConvTranspose: the forward ran burn's transposed convolution with symmetric padding
/// `p = min(before, after)` and cropped the rest; the gradient re-embeds `g` into that
/// uncropped output and applies the adjoint, a convolution with the same weights, stride,
/// padding `p`, dilation and groups.
pub(super) fn conv_transpose(
    step: &Step,
    window: &Window2d,
    group: usize,
    output_padding: [usize; 2],
    g: T6,
) -> Result<T6> {
    let (xs, ys) = (shape4(step, Some(0))?, shape4(step, None)?);
    let ws = shape4(step, Some(1))?;
    let w: Tensor<4> = step.input(1)?.reshape(ws); // [C, M/g, kH, kW]
    let p = [0, 1].map(|a| window.pads[a].0.min(window.pads[a].1));
    let full = [0, 1].map(|a| {
        ((xs[a + 2] - 1) * window.strides[a]
            + window.dilations[a] * (ws[a + 2] - 1)
            + output_padding[a]
            + 1)
        .saturating_sub(2 * p[a])
    });
    let (top, left) = (window.pads[0].0 - p[0], window.pads[1].0 - p[1]);
    let b = step.batch * ys[0];
    let g4 = fold(step, g, ys); // [B·N, M, Ho, Wo]
    let canvas = if full == [ys[2], ys[3]] {
        g4
    } else {
        Tensor::zeros([b, ys[1], full[0], full[1]], step.device())
            .slice_assign([0..b, 0..ys[1], top..top + ys[2], left..left + ys[3]], g4)
    };
    let options = ConvOptions::new(window.strides, p, window.dilations, group);
    let gx = conv2d(canvas, w, None, options); // [B·N, C, ≥H, ≥W]
    let [_, _, h, w_] = gx.dims();
    let gx = if (h, w_) == (xs[2], xs[3]) {
        gx
    } else {
        gx.slice([0..b, 0..xs[1], 0..xs[2], 0..xs[3]])
    };
    Ok(gx.reshape(step.gdims(&xs)?))
}

/// Routes `g [B, P, L]` (P planes of L outputs) to the input positions `idx [1, P, L]` (flat
/// indices into planes of `plane` elements) picked in the forward, summing where windows
/// overlap: `[B, P, plane]`.
fn route_to_switches(step: &Step, g: Tensor<3>, idx: Tensor<3, Int>, plane: usize) -> Tensor<3> {
    let [b, p, l] = g.dims();
    let zeros = Tensor::<3>::zeros([b, p, plane], step.device());
    zeros.scatter(2, idx.expand([b, p, l]), g, IndexingUpdateOp::Add)
}

/// MaxPool: every output's gradient goes to the input position its max came from (the
/// "switches", recomputed with `max_pool2d_with_indices` on the saved input).
pub(super) fn max_pool(step: &Step, window: &Window2d, ceil_mode: bool, g: T6) -> Result<T6> {
    let (xs, ys) = (shape4(step, Some(0))?, shape4(step, None)?);
    let (planes, outs) = (xs[0] * xs[1], ys[2] * ys[3]);
    if step.engine.host_kernels()
        && let Some(geometry) = kernels::pool::PoolGeometry::new(window, &xs, &ys)
    {
        // The switches from the saved input on the host, then the gradient routed to them.
        let x = HostValues::of(&step.input(0)?).map_err(|detail| step.readback(detail))?;
        let switches = kernels::pool::max_pool_switches(x.as_slice(), &geometry);
        let g = step.to_host(g)?;
        let gx =
            kernels::reverse::max_pool_input_grad(&g, &switches, [planes, outs, xs[2] * xs[3]])
                .ok_or_else(|| step.unsupported("max-pool switches outside their planes"))?;
        let gx = TensorData::new(gx, step.gdims(&xs)?);
        return Ok(Tensor::from_data(gx, step.device()));
    }
    let x: Tensor<4> = step.input(0)?.reshape(xs);
    let options = MaxPoolOptions::new(window.kernel)
        .with_stride(window.strides)
        .with_padding_pairs(window.pads)
        .with_dilation(window.dilations)
        .with_ceil_mode(ceil_mode);
    let (_, idx) = max_pool2d_with_indices(x, options); // [N, C, Ho, Wo], h·W + w of the unpadded input
    if idx.dims() != ys {
        return Err(step.unsupported(format!(
            "switches have dims {:?}, the output {ys:?}",
            idx.dims()
        )));
    }
    let gx = route_to_switches(
        step,
        g.reshape([step.batch, planes, outs]),
        idx.reshape([1, planes, outs]),
        xs[2] * xs[3],
    );
    Ok(gx.reshape(step.gdims(&xs)?))
}

/// GlobalMaxPool: the gradient goes to each plane's argmax.
pub(super) fn global_max_pool(step: &Step, g: T6) -> Result<T6> {
    let xs = step.in_shape(0);
    let planes = xs.iter().take(2).product::<usize>();
    let plane: usize = xs.iter().skip(2).product();
    let x: Tensor<3> = step.input(0)?.reshape([1, planes, plane]);
    let gx = route_to_switches(step, g.reshape([step.batch, planes, 1]), x.argmax(2), plane);
    Ok(gx.reshape(step.gdims(xs)?))
}

/// GlobalAveragePool: `g / (H·W)` spread over each plane.
pub(super) fn global_avg_pool(step: &Step, g: T6) -> Result<T6> {
    let xs = step.in_shape(0);
    let plane: usize = xs.iter().skip(2).product();
    Ok(g.div_scalar(plane as f32).expand(step.gdims(xs)?))
}

/// Number of input positions `[o·s − before, o·s − before + k) ∩ [0, n)` for each of `outs`
/// windows along one axis.
fn valid_counts(outs: usize, stride: usize, kernel: usize, before: usize, n: usize) -> Vec<usize> {
    (0..outs)
        .map(|o| {
            let start = (o * stride) as isize - before as isize;
            let (lo, hi) = (start.max(0), (start + kernel as isize).min(n as isize));
            (hi - lo).max(0) as usize
        })
        .collect()
}

/// AveragePool: each output is `(sum of its window's in-image inputs) / divisor`, so the
/// gradient is a transposed all-ones convolution of `g / divisor`. The divisor the forward
/// used (which depends on `count_include_pad`, ceil mode and clipped windows) is read off the
/// forward itself: pooling an all-ones image gives `valid / divisor` per output, and the
/// number of valid positions is counted here.
pub(super) fn avg_pool(
    step: &Step,
    window: &Window2d,
    ceil_mode: bool,
    count_include_pad: bool,
    g: T6,
) -> Result<T6> {
    let (xs, ys) = (shape4(step, Some(0))?, shape4(step, None)?);
    let options = AvgPoolOptions::new(window.kernel)
        .with_stride(window.strides)
        .with_padding_pairs(window.pads)
        .with_count_include_pad(count_include_pad)
        .with_ceil_mode(ceil_mode);
    let frac = avg_pool2d(Tensor::ones([1, 1, xs[2], xs[3]], step.device()), options); // [1, 1, Ho, Wo]
    if frac.dims() != [1, 1, ys[2], ys[3]] {
        return Err(step.unsupported(format!(
            "pooled ones have dims {:?}, the output {ys:?}",
            frac.dims()
        )));
    }
    let rows = valid_counts(
        ys[2],
        window.strides[0],
        window.kernel[0],
        window.pads[0].0,
        xs[2],
    );
    let cols = valid_counts(
        ys[3],
        window.strides[1],
        window.kernel[1],
        window.pads[1].0,
        xs[3],
    );
    let inv: Vec<f32> = rows
        .iter()
        .flat_map(|&r| {
            cols.iter().map(move |&c| {
                if r * c == 0 {
                    0.0
                } else {
                    1.0 / (r * c) as f32
                }
            })
        })
        .collect();
    let inv = Tensor::<4>::from_data(TensorData::new(inv, [1, 1, ys[2], ys[3]]), step.device());
    let per_output = frac * inv; // 1 / divisor, [1, 1, Ho, Wo]
    let g4: Tensor<4> = g.reshape([step.batch * ys[0] * ys[1], 1, ys[2], ys[3]]) * per_output;
    let ones = Tensor::<4>::ones([1, 1, window.kernel[0], window.kernel[1]], step.device());
    let options = ConvTransposeOptions::new(window.strides, [0, 0], [0, 0], [1, 1], 1);
    let canvas = conv_transpose2d(g4, ones, None, options); // [B·N·C, 1, Hc, Wc]
    let gx = window_to_input(canvas, window.pads, [xs[2], xs[3]]);
    Ok(gx.reshape(step.gdims(&xs)?))
}

/// LRN, `y_c = x_c · D_c^(−β)` with `D_c = bias + (α/size)·Σ_{j ∈ win(c)} x_j²` and
/// `win(c) = [c − lo, c + hi]`, `lo = ⌊(size−1)/2⌋`, `hi = size − 1 − lo`. Its full gradient:
///
/// `dx_i = g_i·D_i^(−β) − (2αβ/size)·x_i·Σ_{c : i ∈ win(c)} g_c·x_c·D_c^(−β−1)`,
///
/// where `i ∈ win(c)` ⇔ `c ∈ [i − hi, i + lo]`: the same channel window, mirrored.
pub(super) fn lrn(step: &Step, size: usize, alpha: f32, beta: f32, bias: f32, g: T6) -> Result<T6> {
    let s = shape4(step, Some(0))?;
    let axis = axis6(1, 4);
    let (lo, hi) = ((size - 1) / 2, size - 1 - (size - 1) / 2);
    let x = step.input(0)?; // [1, 1, N, C, H, W]
    if step.engine.host_kernels() {
        // The factors in one pass over the input, then one pass per seed, on the host,
        // instead of burn's ~10 passes over the seed batch.
        let hw = s[2] * s[3];
        let geometry = kernels::lrn::LrnGeometry {
            images: s[0],
            channels: s[1],
            plane: hw,
            size,
            alpha,
            beta,
            bias,
        };
        // The forward input read in place (a copy cost as much as the factors).
        let xv = HostValues::of(&x).map_err(|detail| step.readback(detail))?;
        let [dv, av, bv] = kernels::lrn::lrn_factors(xv.as_slice(), &geometry);
        let gv = step.to_host(g)?;
        let dx = kernels::reverse::lrn_input_grad(&gv, [&dv, &av, &bv], [s[0], s[1], hw], [hi, lo]);
        return Ok(Tensor::from_data(
            TensorData::new(dx, step.gdims(&s)?),
            step.device(),
        ));
    }
    let d = window_sum(x.clone() * x.clone(), axis, lo, hi)
        .mul_scalar(alpha / size as f32)
        .add_scalar(bias);
    // Batch-1 factors first, so that few ops touch the seed batch.
    let d_pow = d.clone().powf_scalar(-beta); // D^(−β)
    let a = x.clone() * d_pow.clone() / d; // x·D^(−β−1)
    let b = x.mul_scalar(2.0 * alpha * beta / size as f32);
    let spread = window_sum(g.clone() * a, axis, hi, lo); // [B, 1, N, C, H, W]
    if spread.dims() != step.gdims(&s)? {
        return Err(step.unsupported(format!("window sum has dims {:?}", spread.dims())));
    }
    Ok(g * d_pow - spread * b)
}

/// Reshapes a per-channel parameter `[C]` to broadcast over axis 1 of a rank-`rank` value.
fn channel_axis(p: T6, c: usize, rank: usize) -> T6 {
    let mut d = [1usize; RANK];
    d[axis6(1, rank)] = c;
    p.reshape(d)
}

/// Inference BatchNorm is per-channel affine: `g · scale / sqrt(var + ε)`.
pub(super) fn batch_norm(step: &Step, epsilon: f32, g: T6) -> Result<T6> {
    let xs = step.in_shape(0);
    let (rank, c) = (xs.len(), xs.get(1).copied().unwrap_or(1));
    let factor = step.input(4)?.add_scalar(epsilon).sqrt().recip() * step.input(1)?;
    Ok(g * channel_axis(factor, c, rank))
}

/// InstanceNorm over each plane's `S` positions, `x̂ = (x − μ)/σ`, `y = γ·x̂ + β`:
/// `dx = (γ/σ)·(g − mean(g) − x̂·mean(g·x̂))`.
pub(super) fn instance_norm(step: &Step, epsilon: f32, g: T6) -> Result<T6> {
    let xs = step.in_shape(0);
    if xs.len() < 3 {
        return Err(step.unsupported(format!("input of shape {xs:?}")));
    }
    let (n, c, spatial) = (xs[0], xs[1], xs[2..].iter().product::<usize>());
    let x: Tensor<4> = step.input(0)?.reshape([1, n, c, spatial]);
    let centred = x.clone() - x.mean_dim(3);
    let inv_std = (centred.clone() * centred.clone())
        .mean_dim(3)
        .add_scalar(epsilon)
        .sqrt()
        .recip(); // [1, N, C, 1]
    let xhat = centred * inv_std.clone();
    let gamma: Tensor<4> = step.input(1)?.reshape([1, 1, c, 1]);
    let g: Tensor<4> = g.reshape([step.batch, n, c, spatial]);
    let mean_g = g.clone().mean_dim(3);
    let mean_gx = (g.clone() * xhat.clone()).mean_dim(3);
    let gx = (g - mean_g - xhat * mean_gx) * inv_std * gamma;
    Ok(gx.reshape(step.gdims(xs)?))
}
