//! Vector-Jacobian products of the pointwise, structural and linear ops (the spatial ones are
//! in [`super::vjp_spatial`]), and the per-op dispatch of the reverse pass. Gradients use the
//! layout documented in [`super::backward`]: seed batch on axis 0, forward values broadcast
//! over it.

use burn::tensor::activation::relu;
use burn::tensor::{IndexingUpdateOp, Int, Slice, Tensor, TensorData};

use super::step::{GradientRule, Result, Step, unbroadcast};
use super::vjp_spatial as spatial;
use crate::engine::kernels;
use crate::engine::kernels::reverse::ReluRule;
use crate::engine::ops::{HostValues, RANK, T6, axis6, dims6};
use crate::model::graph::{Op, SliceRange};

/// Gradients of a node's inputs (`None` where none is needed) from those of its outputs.
pub(crate) fn vjp(step: &Step, method: GradientRule, grads: Vec<T6>) -> Result<Vec<Option<T6>>> {
    let op = &step.node.op;
    // Split is the only multi-output op; every other op has exactly one output gradient.
    let mut grads = grads.into_iter();
    let g = grads
        .next()
        .ok_or_else(|| step.unsupported("no output gradient"))?;
    let rest: Vec<T6> = grads.collect();
    if !rest.is_empty() && !matches!(op, Op::Split { .. }) {
        return Err(step.unsupported(format!("{} outputs", rest.len() + 1)));
    }
    let data = |t: T6| -> Result<Vec<Option<T6>>> {
        step.data_input_only()?;
        let mut v = vec![None; step.node.inputs.len()];
        v[0] = Some(t);
        Ok(v)
    };
    match op {
        Op::Relu | Op::Clip { .. } | Op::LeakyRelu { .. } => {
            data(relu_family(step, op, method, g)?)
        }
        Op::Sigmoid => {
            let y = step.output(0)?;
            data(g * (y.clone() * y.neg().add_scalar(1.0)))
        }
        Op::HardSigmoid { alpha, beta } => {
            let a = step.input(0)?.mul_scalar(*alpha).add_scalar(*beta);
            data(g * open_interval(a, 0.0, 1.0).mul_scalar(*alpha))
        }
        Op::HardSwish => {
            // d/dx [x·clamp(x/6 + 1/2, 0, 1)] = x/3 + 1/2 on (−3, 3), 1 above, 0 below.
            let x = step.input(0)?;
            let inside =
                open_interval(x.clone(), -3.0, 3.0) * x.clone().div_scalar(3.0).add_scalar(0.5);
            data(g * (inside + x.greater_equal_elem(3.0).float()))
        }
        Op::Tanh => {
            let y = step.output(0)?;
            data(g * (y.clone() * y).neg().add_scalar(1.0))
        }
        Op::Elu { alpha } => {
            // 1 for x > 0, else y + α (= α·eˣ).
            let pos = step.input(0)?.greater_elem(0.0).float();
            let neg = step.output(0)?.add_scalar(*alpha) * pos.clone().neg().add_scalar(1.0);
            data(g * (pos + neg))
        }
        Op::Softmax { axis, legacy_2d } => data(softmax(step, *axis, *legacy_2d, g)?),
        Op::Identity | Op::Reshape => data(g.reshape(step.gdims(step.in_shape(0))?)),
        Op::Transpose { perm } => {
            let off = RANK - perm.len();
            let mut inverse = [0usize; RANK];
            for (i, slot) in inverse.iter_mut().enumerate() {
                *slot = if i < off {
                    i
                } else {
                    off + perm.iter().position(|&p| p == i - off).unwrap_or(i - off)
                };
            }
            data(g.permute(inverse))
        }
        Op::Pad { pads, .. } => {
            let x = step.gdims(step.in_shape(0))?;
            let off = RANK - pads.len();
            let ranges: Vec<Slice> = (0..RANK)
                .map(|i| {
                    let start = if i < off { 0 } else { pads[i - off].0 };
                    Slice::new(start as isize, Some((start + x[i]) as isize), 1)
                })
                .collect();
            data(g.slice(ranges.as_slice()))
        }
        Op::Slice { ranges } => data(slice(step, ranges, g)?),
        Op::Gather { axis, indices, .. } => {
            let x = step.gdims(step.in_shape(0))?;
            let ax = axis6(*axis, step.in_shape(0).len());
            let mut picked = x;
            picked[ax] = indices.len();
            let zeros = Tensor::zeros(x, step.device());
            data(zeros.select_assign(
                ax,
                index_tensor(indices, step),
                g.reshape(picked),
                IndexingUpdateOp::Add,
            ))
        }
        Op::Concat { axis } => {
            let ax = axis6(*axis, step.out_shape(0).len());
            let mut start = 0;
            (0..step.node.inputs.len())
                .map(|i| {
                    let n = step.in_shape(i).get(*axis).copied().unwrap_or(1);
                    let part = step.wants(i).then(|| g.clone().narrow(ax, start, n));
                    start += n;
                    Ok(part)
                })
                .collect()
        }
        Op::Split { axis, .. } => {
            // The input gradient is the outputs' gradients side by side.
            let parts: Vec<T6> = std::iter::once(g).chain(rest).collect();
            data(Tensor::cat(parts, axis6(*axis, step.in_shape(0).len())))
        }
        Op::Add | Op::Sub | Op::Sum => (0..step.node.inputs.len())
            .map(|i| {
                if !step.wants(i) {
                    return Ok(None);
                }
                let gi = unbroadcast(g.clone(), step.gdims(step.in_shape(i))?);
                Ok(Some(if i == 1 && matches!(op, Op::Sub) {
                    gi.neg()
                } else {
                    gi
                }))
            })
            .collect(),
        Op::Mul | Op::Div => {
            // Fetch only the forward values a wanted gradient needs: the image input itself
            // is not kept, and `image * constant` (normalisation) needs only the constant.
            let (sa, sb) = (step.gdims(step.in_shape(0))?, step.gdims(step.in_shape(1))?);
            let ga = match step.wants(0) {
                true if matches!(op, Op::Mul) => Some(unbroadcast(g.clone() * step.input(1)?, sa)),
                true => Some(unbroadcast(g.clone() / step.input(1)?, sa)),
                false => None,
            };
            let gb = match step.wants(1) {
                true if matches!(op, Op::Mul) => Some(unbroadcast(g * step.input(0)?, sb)),
                // d(a/b)/db = −a/b² = −y/b
                true => Some(unbroadcast(
                    (g * step.output(0)? / step.input(1)?).neg(),
                    sb,
                )),
                false => None,
            };
            Ok(vec![ga, gb])
        }
        Op::Gemm {
            alpha,
            beta,
            trans_a,
            trans_b,
        } => gemm(step, *alpha, *beta, *trans_a, *trans_b, g),
        Op::MatMul => matmul(step, g),
        Op::Conv { window, group } => data(spatial::conv(step, window, *group, g)?),
        Op::ConvTranspose {
            window,
            group,
            output_padding,
        } => data(spatial::conv_transpose(
            step,
            window,
            *group,
            *output_padding,
            g,
        )?),
        Op::MaxPool { window, ceil_mode } => data(spatial::max_pool(step, window, *ceil_mode, g)?),
        Op::AveragePool {
            window,
            ceil_mode,
            count_include_pad,
        } => data(spatial::avg_pool(
            step,
            window,
            *ceil_mode,
            *count_include_pad,
            g,
        )?),
        Op::GlobalAveragePool => data(spatial::global_avg_pool(step, g)?),
        Op::GlobalMaxPool => data(spatial::global_max_pool(step, g)?),
        Op::Lrn {
            size,
            alpha,
            beta,
            bias,
        } => data(spatial::lrn(step, *size, *alpha, *beta, *bias, g)?),
        Op::BatchNorm { epsilon } => data(spatial::batch_norm(step, *epsilon, g)?),
        Op::InstanceNorm { epsilon } => data(spatial::instance_norm(step, *epsilon, g)?),
    }
}

/// `1[lo < t < hi]` as floats.
/// The input gradient of a group-1 Conv node for objectives that are the sums of its output
/// channels `range` (see [`spatial::conv_channel_sums`]).
pub(crate) fn conv_channel_sums_input_grad(
    step: &Step,
    range: std::ops::Range<usize>,
) -> Result<T6> {
    match &step.node.op {
        Op::Conv { window, group: 1 } => spatial::conv_channel_sums(step, window, range),
        _ => Err(step.unsupported("channel-sum shortcut needs a group-1 Conv")),
    }
}

fn open_interval(t: T6, lo: f32, hi: f32) -> T6 {
    t.clone().greater_elem(lo).float() * t.lower_elem(hi).float()
}

/// The method's rule at a ReLU, Clip or LeakyReLU node (table at [`GradientRule`]). On the CPU
/// (flex) one host pass ([`kernels::reverse::relu_rule_in_place`]) on the gradient's own buffer.
fn relu_family(step: &Step, op: &Op, method: GradientRule, g: T6) -> Result<T6> {
    if step.engine.host_kernels() {
        let (lo, hi) = match op {
            Op::Clip { min, max } => (*min, *max),
            _ => (0.0, f32::INFINITY),
        };
        let rule = match (method, op) {
            (GradientRule::Deconvnet, _) => ReluRule::Deconvnet,
            (GradientRule::Guided, _) => ReluRule::Guided { open: (lo, hi) },
            (_, Op::LeakyRelu { alpha }) => ReluRule::Backprop {
                open: (lo, hi),
                slope: *alpha,
            },
            _ => ReluRule::Backprop {
                open: (lo, hi),
                slope: 0.0,
            },
        };
        let dims = g.dims();
        let x = HostValues::of(&step.input(0)?).map_err(|detail| step.readback(detail))?;
        // One seed's gradient has the forward value's shape (the layout of `backward`).
        if dims.iter().product::<usize>() == dims[0] * x.as_slice().len() {
            let mut gv = step.to_host(g)?;
            kernels::reverse::relu_rule_in_place(&mut gv, x.as_slice(), rule);
            return Ok(Tensor::from_data(TensorData::new(gv, dims), step.device()));
        }
    }
    if method == GradientRule::Deconvnet {
        return Ok(relu(g));
    }
    let x = step.input(0)?;
    let gate = match op {
        Op::Clip { min, max } => open_interval(x, *min, *max),
        _ => x.greater_elem(0.0).float(),
    };
    Ok(match (method, op) {
        (GradientRule::Guided, _) => relu(g) * gate,
        // LeakyReLU's derivative: 1 above zero, α below.
        (_, Op::LeakyRelu { alpha }) => g * gate.mul_scalar(1.0 - alpha).add_scalar(*alpha),
        _ => g * gate,
    })
}

/// `y ⊙ (g − Σ g·y)` over the softmax axis (or the flattened tail for opset < 13).
fn softmax(step: &Step, axis: usize, legacy_2d: bool, g: T6) -> Result<T6> {
    let y = step.output(0)?;
    let shape = step.in_shape(0);
    let dims = step.gdims(shape)?;
    if legacy_2d {
        let outer: usize = shape[..axis].iter().product();
        let inner: usize = shape[axis..].iter().product();
        let g: Tensor<3> = g.reshape([step.batch, outer, inner]);
        let y: Tensor<3> = y.reshape([1, outer, inner]);
        let dot = (g.clone() * y.clone()).sum_dim(2);
        return Ok((y * (g - dot)).reshape(dims));
    }
    let ax = axis6(axis, shape.len());
    let dot = (g.clone() * y.clone()).sum_dim(ax);
    Ok(y * (g - dot))
}

fn index_tensor(indices: &[usize], step: &Step) -> Tensor<1, Int> {
    let v: Vec<i64> = indices.iter().map(|&i| i as i64).collect();
    Tensor::from_data(TensorData::new(v, [indices.len()]), step.device())
}

/// Undoes the forward's per-axis narrow/select, last axis first: a narrowed axis is padded
/// back with zeros, a strided one scattered into zeros.
fn slice(step: &Step, ranges: &[SliceRange], g: T6) -> Result<T6> {
    let x = step.gdims(step.in_shape(0))?;
    let off = RANK - ranges.len();
    // dims after the forward processed axes 0..i (the forward skips full contiguous axes).
    let mut dims = vec![x];
    for (i, r) in ranges.iter().enumerate() {
        let mut d = dims[i];
        d[off + i] = r.count;
        dims.push(d);
    }
    let mut g = g.reshape(dims[ranges.len()]);
    for (i, r) in ranges.iter().enumerate().rev() {
        let (ax, before) = (off + i, dims[i]);
        if before == dims[i + 1] && r.step == 1 {
            continue;
        }
        let zeros = Tensor::zeros(before, step.device());
        g = if r.step == 1 {
            let ranges: Vec<Slice> = (0..RANK)
                .map(|k| match k == ax {
                    true => Slice::new(r.start as isize, Some((r.start + r.count) as isize), 1),
                    false => Slice::new(0, Some(before[k] as isize), 1),
                })
                .collect();
            zeros.slice_assign(ranges.as_slice(), g)
        } else {
            let idx: Vec<usize> = (0..r.count)
                .map(|k| (r.start as i64 + k as i64 * r.step) as usize)
                .collect();
            zeros.select_assign(ax, index_tensor(&idx, step), g, IndexingUpdateOp::Add)
        };
    }
    Ok(g)
}

/// `Y = α·A'·B' + β·C` with `A' = A` or `Aᵀ` (same for B): `dA' = α·g·B'ᵀ`, `dB' = α·A'ᵀ·g`,
/// `dC = β·g` summed over C's broadcast axes.
fn gemm(
    step: &Step,
    alpha: f32,
    beta: f32,
    trans_a: bool,
    trans_b: bool,
    g: T6,
) -> Result<Vec<Option<T6>>> {
    let (sa, sb) = (step.in_shape(0), step.in_shape(1));
    let ([m, n], [_, _], [_, _]) = (step.out_shape(0), sa, sb) else {
        return Err(step.unsupported(format!("operands {sa:?} × {sb:?} are not matrices")));
    };
    let (m, n) = (*m, *n);
    let bsz = step.batch;
    let g: Tensor<3> = g.reshape([bsz, m, n]);
    let ga = g.clone().mul_scalar(alpha);
    // The forward operands as A' [M, K] and B' [K, N], expanded over the seed batch.
    let operand = |i: usize, s: &[usize], trans: bool| -> Result<Tensor<3>> {
        let t: Tensor<3> = step.input(i)?.reshape([1, s[0], s[1]]);
        let t = if trans { t.swap_dims(1, 2) } else { t };
        let [_, r, c] = t.dims();
        Ok(t.expand([bsz, r, c]))
    };
    let mut out = vec![None; step.node.inputs.len()];
    if step.wants(0) {
        let da = ga.clone().matmul(operand(1, sb, trans_b)?.swap_dims(1, 2)); // [B, M, K]
        let da = if trans_a { da.swap_dims(1, 2) } else { da };
        out[0] = Some(da.reshape(step.gdims(sa)?));
    }
    if step.wants(1) {
        let db = operand(0, sa, trans_a)?.swap_dims(1, 2).matmul(ga); // [B, K, N]
        let db = if trans_b { db.swap_dims(1, 2) } else { db };
        out[1] = Some(db.reshape(step.gdims(sb)?));
    }
    if step.wants(2) {
        let gc: T6 = g.mul_scalar(beta).reshape(step.gdims(&[m, n])?);
        out[2] = Some(unbroadcast(gc, step.gdims(step.in_shape(2))?));
    }
    Ok(out)
}

/// Batched `Y = A·B` with numpy broadcasting (a 1-D B is a column `[K, 1]`, a 1-D A a row):
/// `dA = g·Bᵀ`, `dB = Aᵀ·g`, each summed over the batch axes it was broadcast along.
fn matmul(step: &Step, g: T6) -> Result<Vec<Option<T6>>> {
    let (sa, sb) = (step.in_shape(0), step.in_shape(1));
    let b_shape = if sb.len() == 1 {
        vec![sb[0], 1]
    } else {
        sb.to_vec()
    };
    let (da, db) = (dims6(sa), dims6(&b_shape));
    // The forward product's rank-6 dims, then with the seed batch on axis 0.
    let mut prod = [1usize; RANK];
    for i in 0..RANK - 2 {
        prod[i] = da[i].max(db[i]);
    }
    prod[RANK - 2] = da[RANK - 2];
    prod[RANK - 1] = db[RANK - 1];
    prod[0] = step.batch;
    let g = g.reshape(prod);
    let expand = |t: T6, rows: usize, cols: usize| {
        let mut d = prod;
        d[RANK - 2] = rows;
        d[RANK - 1] = cols;
        t.expand(d)
    };
    let mut out = vec![None; step.node.inputs.len()];
    if step.wants(0) {
        let bt = step.input(1)?.reshape(db).swap_dims(RANK - 2, RANK - 1);
        let grad = g.clone().matmul(expand(bt, db[RANK - 1], db[RANK - 2]));
        out[0] = Some(unbroadcast(grad, step.gdims(sa)?));
    }
    if step.wants(1) {
        let at = step.input(0)?.swap_dims(RANK - 2, RANK - 1);
        let grad = expand(at, da[RANK - 1], da[RANK - 2]).matmul(g);
        let grad = unbroadcast(grad, step.gdims(&b_shape)?);
        out[1] = Some(grad.reshape(step.gdims(sb)?));
    }
    Ok(out)
}
