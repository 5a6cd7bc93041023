//! Forward kernels of every runtime [`Op`] on burn tensors. Values are carried as rank-6
//! tensors whose logical shape is left-padded with 1s (numpy broadcasting aligns trailing
//! axes, so padding on the left preserves every broadcast); an op that needs a specific rank
//! reshapes (a metadata-only change) using the static shapes from the graph.

use burn::tensor::activation;
use burn::tensor::module::{avg_pool2d, conv_transpose2d, conv2d, max_pool2d};
use burn::tensor::ops::{AvgPoolOptions, ConvOptions, ConvTransposeOptions, MaxPoolOptions};
use burn::tensor::{Device, Int, Slice, Tensor, TensorData};

use crate::model::graph::{Op, SliceRange};

/// Rank every engine value is stored at.
pub const RANK: usize = 6;
/// The engine's tensor type.
pub type T6 = Tensor<RANK>;

/// Left-pads a logical shape to rank 6.
pub fn dims6(shape: &[usize]) -> [usize; RANK] {
    let mut d = [1usize; RANK];
    let off = RANK - shape.len().min(RANK);
    d[off..].copy_from_slice(&shape[shape.len().saturating_sub(RANK)..]);
    d
}

/// Position of logical `axis` of a rank-`rank` value inside the rank-6 tensor.
pub fn axis6(axis: usize, rank: usize) -> usize {
    RANK - rank + axis
}

/// Uploads a CPU float array with a logical shape.
pub fn upload(data: Vec<f32>, shape: &[usize], device: &Device) -> T6 {
    Tensor::from_data(TensorData::new(data, dims6(shape)), device)
}

/// A tensor's `f32` values on the host, row-major, for the host kernels used on the CPU
/// (flex): the flex tensor itself when it is a contiguous `f32` view of its buffer (the usual
/// case: a value the forward pass keeps, a weight the engine holds, read with no copy), else
/// one contiguous copy.
pub enum HostValues {
    /// A flex tensor whose buffer is the values (checked by [`HostValues::of`]).
    InPlace(burn_flex::FlexTensor),
    /// A copy, for views, other layouts and other devices' tensors.
    Copied(Vec<f32>),
}

impl HostValues {
    /// `t`'s values; `Err` names why they could not be read (another dtype, a failed
    /// readback).
    pub fn of<const D: usize>(t: &Tensor<D>) -> Result<Self, String> {
        if let Ok(flex) = t.clone().try_into_primitive::<burn_flex::Flex>()
            && flex.as_slice::<f32>().is_some()
        {
            return Ok(Self::InPlace(flex));
        }
        t.clone()
            .into_data()
            .try_into_vec::<f32>()
            .map(Self::Copied)
            .map_err(|e| format!("{e:?}"))
    }

    pub fn as_slice(&self) -> &[f32] {
        match self {
            // `of` built `InPlace` only after `as_slice` returned the buffer; the tensor is
            // immutable, so it does again (nothing a user or file influences).
            #[allow(clippy::expect_used)]
            Self::InPlace(flex) => flex
                .as_slice::<f32>()
                .expect("HostValues::of checked the flex tensor is a contiguous f32 buffer"),
            Self::Copied(values) => values,
        }
    }
}

fn as4(x: T6, s: &[usize]) -> Tensor<4> {
    x.reshape([s[0], s[1], s[2], s[3]])
}

fn from4(x: Tensor<4>) -> T6 {
    let [n, c, h, w] = x.dims();
    x.reshape([1, 1, n, c, h, w])
}

/// Reshapes a per-channel parameter `[C]` so it broadcasts over axis 1 of a rank-`rank` value.
fn per_channel(p: T6, c: usize, rank: usize) -> T6 {
    let mut d = [1usize; RANK];
    d[axis6(1, rank)] = c;
    p.reshape(d)
}

/// Runs one op. `ins` are the node's inputs (data, then weights) with their logical shapes;
/// returns one tensor per output.
pub fn run(
    op: &Op,
    ins: Vec<T6>,
    in_shapes: &[&[usize]],
    out_shapes: &[Vec<usize>],
    device: &Device,
) -> Vec<T6> {
    let out0 = &out_shapes[0];
    let mut ins = ins.into_iter();
    // The importer checked every node's input count; were it wrong, the panic is caught per
    // node by the engine and reported as EngineError::Backend naming the node.
    #[allow(clippy::expect_used)]
    let mut next = || ins.next().expect("input count checked at import");
    let x_shape = in_shapes[0];
    let one = |t: T6| vec![t];
    match op {
        Op::Conv { window, group } => {
            let (x, w) = (next(), next());
            let ws = in_shapes[1];
            let bias = (in_shapes.len() > 2).then(|| next().reshape([ws[0]]));
            let options = ConvOptions::new_with_padding(
                window.strides,
                window.pads,
                window.dilations,
                *group,
            );
            one(from4(conv2d(as4(x, x_shape), as4(w, ws), bias, options)))
        }
        Op::ConvTranspose {
            window,
            group,
            output_padding,
        } => {
            let (x, w) = (next(), next());
            let ws = in_shapes[1];
            let bias = (in_shapes.len() > 2).then(|| next().reshape([out0[1]]));
            // burn takes symmetric padding: run with the smaller side, then crop the rest.
            let pad = [
                window.pads[0].0.min(window.pads[0].1),
                window.pads[1].0.min(window.pads[1].1),
            ];
            let options = ConvTransposeOptions::new(
                window.strides,
                pad,
                *output_padding,
                window.dilations,
                *group,
            );
            let y = conv_transpose2d(as4(x, x_shape), as4(w, ws), bias, options);
            let [_, _, h, w_] = y.dims();
            let (top, left) = (window.pads[0].0 - pad[0], window.pads[1].0 - pad[1]);
            let y = if (h, w_) == (out0[2], out0[3]) {
                y
            } else {
                y.slice([
                    0..out0[0],
                    0..out0[1],
                    top..top + out0[2],
                    left..left + out0[3],
                ])
            };
            one(from4(y))
        }
        Op::Relu => one(activation::relu(next())),
        Op::Clip { min, max } => {
            let x = next();
            let x = if min.is_finite() {
                x.clamp_min(*min)
            } else {
                x
            };
            one(if max.is_finite() {
                x.clamp_max(*max)
            } else {
                x
            })
        }
        Op::LeakyRelu { alpha } => one(activation::leaky_relu(next(), f64::from(*alpha))),
        Op::Sigmoid => one(activation::sigmoid(next())),
        Op::HardSigmoid { alpha, beta } => one(activation::hard_sigmoid(
            next(),
            f64::from(*alpha),
            f64::from(*beta),
        )),
        Op::HardSwish => {
            let x = next();
            one(x.clone() * activation::hard_sigmoid(x, 1.0 / 6.0, 0.5))
        }
        Op::Tanh => one(next().tanh()),
        Op::Elu { alpha } => one(activation::elu(next(), f64::from(*alpha))),
        Op::MaxPool { window, ceil_mode } => {
            let options = MaxPoolOptions::new(window.kernel)
                .with_stride(window.strides)
                .with_padding_pairs(window.pads)
                .with_dilation(window.dilations)
                .with_ceil_mode(*ceil_mode);
            one(from4(max_pool2d(as4(next(), x_shape), options)))
        }
        Op::AveragePool {
            window,
            ceil_mode,
            count_include_pad,
        } => {
            let options = AvgPoolOptions::new(window.kernel)
                .with_stride(window.strides)
                .with_padding_pairs(window.pads)
                .with_count_include_pad(*count_include_pad)
                .with_ceil_mode(*ceil_mode);
            one(from4(avg_pool2d(as4(next(), x_shape), options)))
        }
        Op::GlobalAveragePool | Op::GlobalMaxPool => {
            let s = x_shape;
            let flat: Tensor<3> = next().reshape([s[0], s[1], s[2] * s[3]]);
            let r = if matches!(op, Op::GlobalAveragePool) {
                flat.mean_dim(2)
            } else {
                flat.max_dim(2)
            };
            one(r.reshape(dims6(out0)))
        }
        Op::Lrn {
            size,
            alpha,
            beta,
            bias,
        } => {
            let x = next();
            // Sum of x² over the channel window [c - ⌊(size-1)/2⌋, c + ⌈(size-1)/2⌉],
            // zero-padded, as shifted adds (burn's average pooling over a [1, 1, C, H·W]
            // plane was the slowest op of AlexNet's forward pass).
            let lo = (size - 1) / 2;
            let axis = axis6(1, x_shape.len());
            let base = window_sum(x.clone() * x.clone(), axis, lo, size - 1 - lo)
                .mul_scalar(*alpha / *size as f32)
                .add_scalar(*bias);
            one(x / pow_beta(base, *beta))
        }
        Op::BatchNorm { epsilon } => {
            let rank = x_shape.len();
            let c = x_shape[1];
            let x = next();
            let (scale, bias, mean, var) = (next(), next(), next(), next());
            let inv = per_channel(var, c, rank)
                .add_scalar(*epsilon)
                .sqrt()
                .recip()
                * per_channel(scale, c, rank);
            one((x - per_channel(mean, c, rank)) * inv + per_channel(bias, c, rank))
        }
        Op::InstanceNorm { epsilon } => {
            let s = x_shape;
            let spatial: usize = s[2..].iter().product();
            let (x, scale, bias) = (next(), next(), next());
            let flat: Tensor<3> = x.reshape([s[0], s[1], spatial]);
            let mean = flat.clone().mean_dim(2);
            let centred = flat - mean;
            let var = (centred.clone() * centred.clone()).mean_dim(2);
            let normed = (centred / var.add_scalar(*epsilon).sqrt()).reshape(dims6(s));
            let rank = s.len();
            one(normed * per_channel(scale, s[1], rank) + per_channel(bias, s[1], rank))
        }
        Op::Gemm {
            alpha,
            beta,
            trans_a,
            trans_b,
        } => {
            let (sa, sb) = (in_shapes[0], in_shapes[1]);
            let a: Tensor<2> = next().reshape([sa[0], sa[1]]);
            let b: Tensor<2> = next().reshape([sb[0], sb[1]]);
            let a = if *trans_a { a.transpose() } else { a };
            let b = if *trans_b { b.transpose() } else { b };
            let mut y = a.matmul(b);
            if *alpha != 1.0 {
                y = y.mul_scalar(*alpha);
            }
            let y = y.reshape(dims6(out0));
            one(if in_shapes.len() > 2 {
                let c = next();
                y + if *beta != 1.0 { c.mul_scalar(*beta) } else { c }
            } else {
                y
            })
        }
        Op::MatMul => {
            let (a, b) = (next(), next());
            let sb = in_shapes[1];
            // A 1-D B is a column [K, 1] (a 1-D A is already a row after left-padding).
            let b = if sb.len() == 1 {
                b.reshape(dims6(&[sb[0], 1]))
            } else {
                b
            };
            let (da, db) = (a.dims(), b.dims());
            // Broadcast the batch axes explicitly so both operands agree.
            let mut batch = [1usize; RANK];
            for i in 0..RANK - 2 {
                batch[i] = da[i].max(db[i]);
            }
            let (mut ea, mut eb) = (batch, batch);
            ea[RANK - 2..].copy_from_slice(&da[RANK - 2..]);
            eb[RANK - 2..].copy_from_slice(&db[RANK - 2..]);
            one(a.expand(ea).matmul(b.expand(eb)).reshape(dims6(out0)))
        }
        Op::Add => one(next() + next()),
        Op::Sub => one(next() - next()),
        Op::Mul => one(next() * next()),
        Op::Div => one(next() / next()),
        Op::Sum => {
            let mut acc = next();
            for _ in 1..in_shapes.len() {
                acc = acc + next();
            }
            one(acc.expand(dims6(out0)))
        }
        Op::Concat { axis } => {
            let parts: Vec<T6> = (0..in_shapes.len()).map(|_| next()).collect();
            one(Tensor::cat(parts, axis6(*axis, x_shape.len())))
        }
        Op::Split { axis, sizes } => {
            let x = next();
            let ax = axis6(*axis, x_shape.len());
            let mut start = 0;
            sizes
                .iter()
                .map(|&n| {
                    let part = x.clone().narrow(ax, start, n);
                    start += n;
                    part
                })
                .collect()
        }
        Op::Reshape | Op::Identity => one(next().reshape(dims6(out0))),
        Op::Transpose { perm } => {
            let off = RANK - perm.len();
            let mut full = [0usize; RANK];
            for (i, slot) in full.iter_mut().enumerate() {
                *slot = if i < off { i } else { off + perm[i - off] };
            }
            one(next().permute(full))
        }
        Op::Pad { pads, value } => {
            let x = next();
            let off = RANK - pads.len();
            let ranges: Vec<Slice> = (0..RANK)
                .map(|i| {
                    let (before, _) = if i < off { (0, 0) } else { pads[i - off] };
                    let len = if i < off { 1 } else { x_shape[i - off] };
                    Slice::new(before as isize, Some((before + len) as isize), 1)
                })
                .collect();
            let canvas = Tensor::full(dims6(out0), *value, device);
            one(canvas.slice_assign(ranges.as_slice(), x))
        }
        Op::Softmax { axis, legacy_2d } => {
            let x = next();
            if *legacy_2d {
                let outer: usize = x_shape[..*axis].iter().product();
                let inner: usize = x_shape[*axis..].iter().product();
                let flat: Tensor<2> = x.reshape([outer, inner]);
                one(activation::softmax(flat, 1).reshape(dims6(out0)))
            } else {
                one(activation::softmax(x, axis6(*axis, x_shape.len())))
            }
        }
        Op::Gather { axis, indices, .. } => {
            let idx = index_tensor(indices, device);
            one(next()
                .select(axis6(*axis, x_shape.len()), idx)
                .reshape(dims6(out0)))
        }
        Op::Slice { ranges } => one(slice(next(), ranges, device)),
    }
}

fn index_tensor(indices: &[usize], device: &Device) -> Tensor<1, Int> {
    let v: Vec<i64> = indices.iter().map(|&i| i as i64).collect();
    Tensor::from_data(TensorData::new(v, [indices.len()]), device)
}

/// Slice with arbitrary (also negative) steps: contiguous axes are narrowed, strided ones
/// gathered with an explicit index list.
fn slice(mut x: T6, ranges: &[SliceRange], device: &Device) -> T6 {
    let off = RANK - ranges.len();
    for (i, r) in ranges.iter().enumerate() {
        let ax = off + i;
        if r.step == 1 {
            if r.start != 0 || r.count != x.dims()[ax] {
                x = x.narrow(ax, r.start, r.count);
            }
        } else {
            let idx: Vec<usize> = (0..r.count)
                .map(|k| (r.start as i64 + k as i64 * r.step) as usize)
                .collect();
            x = x.select(ax, index_tensor(&idx, device));
        }
    }
    x
}

/// `Σ_{j = c − before}^{c + after} t_j` along `axis` (zero outside), as shifted adds.
pub(crate) fn window_sum(t: T6, axis: usize, before: usize, after: usize) -> T6 {
    let n = t.dims()[axis];
    let zeros = |k: usize| {
        let mut d = t.dims();
        d[axis] = k;
        Tensor::<RANK>::zeros(d, &t.device())
    };
    let padded = Tensor::cat(vec![zeros(before), t.clone(), zeros(after)], axis);
    (1..=before + after).fold(padded.clone().narrow(axis, 0, n), |acc, o| {
        acc + padded.clone().narrow(axis, o, n)
    })
}

/// `base^beta` for LRN, with square roots for the usual exponents (0.75 in AlexNet and
/// GoogLeNet, 0.5, 1) instead of a general power per element.
fn pow_beta(base: T6, beta: f32) -> T6 {
    if beta == 1.0 {
        base
    } else if beta == 0.5 {
        base.sqrt()
    } else if beta == 0.75 {
        let root = base.sqrt();
        root.clone() * root.sqrt()
    } else {
        base.powf_scalar(beta)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes_pad_on_the_left() {
        assert_eq!(dims6(&[1, 3, 4, 5]), [1, 1, 1, 3, 4, 5]);
        assert_eq!(dims6(&[]), [1; 6]);
        assert_eq!(axis6(1, 4), 3);
    }
}
