//! Per-op conversion of an ONNX node into a typed [`Op`] with its runtime inputs and
//! static output shapes: attribute defaults per opset, auto_pad, constant operands folded
//! into attributes, and every shape precondition the engine relies on checked here.

use super::fold::{gather_params, reshape_like_shape};
use super::graph::Op;
use super::node_ctx::{Built, NodeCtx, R};
use super::op_window::{conv, pool, rank4};
use super::shape::{broadcast_shapes, gather_shape, norm_axis};

/// Every op the importer accepts (foldable-only ops included), for error messages.
pub const SUPPORTED_OPS: &str = "Conv, ConvTranspose, Relu, Clip, LeakyRelu, Sigmoid, HardSigmoid, \
HardSwish, Tanh, Elu, MaxPool, AveragePool, GlobalAveragePool, GlobalMaxPool, LRN, \
BatchNormalization, InstanceNormalization, Gemm, MatMul, Add, Sum, Sub, Mul, Div, Concat, Split, \
Flatten, Reshape, Transpose, Squeeze, Unsqueeze, Pad, Dropout, Identity, Softmax, Constant, \
ConstantOfShape, Shape, Gather, Slice, Cast (+ Size, Range, Neg, Sqrt, Equal, Where on constants)";

/// Converts one node; `Ok(None)` means the op is not supported at all.
pub fn build(ctx: &NodeCtx) -> R<Option<Built>> {
    let x = || ctx.required_input(0).map(str::to_string);
    let unary = |op: Op| -> R<Option<Built>> {
        Ok(Some(Built {
            op,
            inputs: vec![x()?],
            output_shapes: vec![ctx.shape(0)?.to_vec()],
        }))
    };
    let a = &ctx.attrs;
    match ctx.op_type() {
        "Conv" => conv(ctx, false).map(Some),
        "ConvTranspose" => conv(ctx, true).map(Some),
        "Relu" => unary(Op::Relu),
        "Clip" => {
            let (mut min, mut max) = (f32::NEG_INFINITY, f32::INFINITY);
            if ctx.opset < 11 {
                min = a.float("min").unwrap_or(min);
                max = a.float("max").unwrap_or(max);
            } else {
                for (i, slot) in [(1, &mut min), (2, &mut max)] {
                    if ctx.input(i).is_some() {
                        *slot = ctx
                            .konst(i)?
                            .scalar_f32()
                            .ok_or("Clip bounds must be scalars")?;
                    }
                }
            }
            unary(Op::Clip { min, max })
        }
        "LeakyRelu" => unary(Op::LeakyRelu {
            alpha: a.float("alpha").unwrap_or(0.01),
        }),
        "Sigmoid" => unary(Op::Sigmoid),
        "HardSigmoid" => unary(Op::HardSigmoid {
            alpha: a.float("alpha").unwrap_or(0.2),
            beta: a.float("beta").unwrap_or(0.5),
        }),
        "HardSwish" => unary(Op::HardSwish),
        "Tanh" => unary(Op::Tanh),
        "Elu" => unary(Op::Elu {
            alpha: a.float("alpha").unwrap_or(1.0),
        }),
        "Relu6" => unary(Op::Clip { min: 0.0, max: 6.0 }),
        "Dropout" | "Identity" => unary(Op::Identity),
        "Cast" => match a.int("to") {
            Some(1) | Some(10) | Some(11) | Some(16) => unary(Op::Identity),
            Some(t) => Err(format!(
                "casting a runtime tensor to {} is not supported (only float tensors flow through the engine)",
                super::consts::dtype_name(t as i32)
            )),
            None => Err("Cast without 'to'".into()),
        },
        "MaxPool" | "AveragePool" => pool(ctx).map(Some),
        "GlobalAveragePool" | "GlobalMaxPool" => {
            let s = rank4(ctx.shape(0)?)?;
            let op = if ctx.op_type() == "GlobalAveragePool" {
                Op::GlobalAveragePool
            } else {
                Op::GlobalMaxPool
            };
            Ok(Some(Built {
                op,
                inputs: vec![x()?],
                output_shapes: vec![vec![s[0], s[1], 1, 1]],
            }))
        }
        "LRN" => {
            rank4(ctx.shape(0)?)?;
            let size = a.int("size").ok_or("LRN without 'size'")?;
            if size < 1 {
                return Err(format!("LRN size {size} must be positive"));
            }
            unary(Op::Lrn {
                size: size as usize,
                alpha: a.float("alpha").unwrap_or(1e-4),
                beta: a.float("beta").unwrap_or(0.75),
                bias: a.float("bias").unwrap_or(1.0),
            })
        }
        "BatchNormalization" | "InstanceNormalization" => {
            let s = ctx.shape(0)?;
            if s.len() < 2 {
                return Err(format!("input of rank {} needs a channel axis", s.len()));
            }
            let params = if ctx.op_type() == "BatchNormalization" {
                5
            } else {
                3
            };
            let mut inputs = vec![x()?];
            for i in 1..params {
                if ctx.shape(i)? != [s[1]] {
                    return Err(format!(
                        "parameter {i} has shape {:?}, expected [{}]",
                        ctx.shape(i)?,
                        s[1]
                    ));
                }
                inputs.push(ctx.required_input(i)?.to_string());
            }
            let epsilon = a.float("epsilon").unwrap_or(1e-5);
            let op = if params == 5 {
                Op::BatchNorm { epsilon }
            } else {
                Op::InstanceNorm { epsilon }
            };
            Ok(Some(Built {
                op,
                inputs,
                output_shapes: vec![s.to_vec()],
            }))
        }
        "Gemm" => gemm(ctx).map(Some),
        "MatMul" => {
            let (sa, sb) = (ctx.shape(0)?, ctx.shape(1)?);
            if sa.is_empty() || sb.is_empty() {
                return Err("MatMul of scalars".into());
            }
            // numpy semantics: a 1-D A is a row [1, K], a 1-D B a column [K, 1]; the
            // inserted axis is dropped from the result.
            let a2: Vec<usize> = if sa.len() == 1 {
                vec![1, sa[0]]
            } else {
                sa.to_vec()
            };
            let b2: Vec<usize> = if sb.len() == 1 {
                vec![sb[0], 1]
            } else {
                sb.to_vec()
            };
            let (m, k) = (a2[a2.len() - 2], a2[a2.len() - 1]);
            let (k2, n) = (b2[b2.len() - 2], b2[b2.len() - 1]);
            if k != k2 {
                return Err(format!("MatMul shapes {sa:?} and {sb:?} do not agree"));
            }
            let mut out = broadcast_shapes(&[&a2[..a2.len() - 2], &b2[..b2.len() - 2]])?;
            if sa.len() > 1 {
                out.push(m);
            }
            if sb.len() > 1 {
                out.push(n);
            }
            Ok(Some(Built {
                op: Op::MatMul,
                inputs: vec![x()?, ctx.required_input(1)?.to_string()],
                output_shapes: vec![out],
            }))
        }
        "Add" | "Sub" | "Mul" | "Div" | "Sum" => {
            let op = match ctx.op_type() {
                "Add" => Op::Add,
                "Sub" => Op::Sub,
                "Mul" => Op::Mul,
                "Div" => Op::Div,
                _ => Op::Sum,
            };
            let n = if op == Op::Sum { ctx.input_count() } else { 2 };
            if n == 0 {
                return Err("Sum of nothing".into());
            }
            let shapes: Vec<&[usize]> = (0..n).map(|i| ctx.shape(i)).collect::<R<_>>()?;
            let inputs = (0..n)
                .map(|i| ctx.required_input(i).map(str::to_string))
                .collect::<R<_>>()?;
            Ok(Some(Built {
                op,
                inputs,
                output_shapes: vec![broadcast_shapes(&shapes)?],
            }))
        }
        "Concat" => {
            let first = ctx.shape(0)?;
            let axis = norm_axis(a.int("axis").ok_or("Concat without 'axis'")?, first.len())?;
            let mut out = first.to_vec();
            out[axis] = 0;
            let mut inputs = Vec::new();
            for i in 0..ctx.input_count() {
                let s = ctx.shape(i)?;
                if s.len() != first.len()
                    || s.iter()
                        .enumerate()
                        .any(|(d, &v)| d != axis && v != first[d])
                {
                    return Err(format!(
                        "Concat input shapes {first:?} and {s:?} differ off axis {axis}"
                    ));
                }
                out[axis] += s[axis];
                inputs.push(ctx.required_input(i)?.to_string());
            }
            Ok(Some(Built {
                op: Op::Concat { axis },
                inputs,
                output_shapes: vec![out],
            }))
        }
        "Split" => split(ctx).map(Some),
        "Flatten" | "Reshape" | "Squeeze" | "Unsqueeze" => {
            let shape = reshape_like_shape(ctx, ctx.shape(0)?)?;
            Ok(Some(Built {
                op: Op::Reshape,
                inputs: vec![x()?],
                output_shapes: vec![shape],
            }))
        }
        "Transpose" => {
            let s = ctx.shape(0)?;
            let perm = ctx.transpose_perm(s.len())?;
            let out = perm.iter().map(|&p| s[p]).collect();
            Ok(Some(Built {
                op: Op::Transpose { perm },
                inputs: vec![x()?],
                output_shapes: vec![out],
            }))
        }
        "Pad" => pad(ctx).map(Some),
        "Softmax" => {
            let s = ctx.shape(0)?;
            let legacy_2d = ctx.opset < 13;
            let axis = norm_axis(
                a.int("axis").unwrap_or(if legacy_2d { 1 } else { -1 }),
                s.len(),
            )?;
            unary(Op::Softmax { axis, legacy_2d })
        }
        "Gather" => {
            let s = ctx.shape(0)?;
            let (axis, indices, indices_shape) = gather_params(ctx, s)?;
            let out = gather_shape(s, axis, &indices_shape);
            Ok(Some(Built {
                op: Op::Gather {
                    axis,
                    indices,
                    indices_shape,
                },
                inputs: vec![x()?],
                output_shapes: vec![out],
            }))
        }
        "Slice" => {
            let ranges = ctx.slice_ranges(ctx.shape(0)?)?;
            let out = ranges.iter().map(|r| r.count).collect();
            Ok(Some(Built {
                op: Op::Slice { ranges },
                inputs: vec![x()?],
                output_shapes: vec![out],
            }))
        }
        _ => Ok(None),
    }
}

fn gemm(ctx: &NodeCtx) -> R<Built> {
    let a = &ctx.attrs;
    let (sa, sb) = (ctx.shape(0)?, ctx.shape(1)?);
    if sa.len() != 2 || sb.len() != 2 {
        return Err(format!("Gemm needs 2-D operands, got {sa:?} and {sb:?}"));
    }
    let (trans_a, trans_b) = (
        a.int("transA").unwrap_or(0) != 0,
        a.int("transB").unwrap_or(0) != 0,
    );
    let (m, k) = if trans_a {
        (sa[1], sa[0])
    } else {
        (sa[0], sa[1])
    };
    let (k2, n) = if trans_b {
        (sb[1], sb[0])
    } else {
        (sb[0], sb[1])
    };
    if k != k2 {
        return Err(format!(
            "Gemm shapes {sa:?} and {sb:?} do not agree (transA={trans_a}, transB={trans_b})"
        ));
    }
    let mut inputs = vec![
        ctx.required_input(0)?.to_string(),
        ctx.required_input(1)?.to_string(),
    ];
    if let Some(c) = ctx.input(2) {
        broadcast_shapes(&[ctx.shape(2)?, &[m, n]]).map_err(|_| {
            format!(
                "Gemm C of shape {:?} does not broadcast to [{m}, {n}]",
                ctx.shape(2)
            )
        })?;
        inputs.push(c.to_string());
    }
    Ok(Built {
        op: Op::Gemm {
            alpha: a.float("alpha").unwrap_or(1.0),
            beta: a.float("beta").unwrap_or(1.0),
            trans_a,
            trans_b,
        },
        inputs,
        output_shapes: vec![vec![m, n]],
    })
}

fn split(ctx: &NodeCtx) -> R<Built> {
    let s = ctx.shape(0)?;
    let axis = norm_axis(ctx.attrs.int("axis").unwrap_or(0), s.len())?;
    let outputs = ctx.proto.output.len();
    let sizes: Vec<usize> = if let Some(v) = ctx.attrs.ints("split") {
        v.iter()
            .map(|&x| usize::try_from(x).map_err(|_| "negative split size".to_string()))
            .collect::<R<_>>()?
    } else if ctx.input(1).is_some() {
        ctx.const_ints(1)?
            .iter()
            .map(|&x| usize::try_from(x).map_err(|_| "negative split size".to_string()))
            .collect::<R<_>>()?
    } else {
        let parts = ctx
            .attrs
            .int("num_outputs")
            .map(|n| n as usize)
            .unwrap_or(outputs);
        if parts == 0 {
            return Err("Split into zero parts".into());
        }
        let chunk = s[axis].div_ceil(parts);
        (0..parts)
            .map(|i| chunk.min(s[axis].saturating_sub(i * chunk)))
            .collect()
    };
    if sizes.iter().sum::<usize>() != s[axis] || sizes.len() != outputs {
        return Err(format!(
            "split sizes {sizes:?} do not cover axis {axis} of {s:?} with {outputs} outputs"
        ));
    }
    let output_shapes = sizes
        .iter()
        .map(|&n| {
            let mut o = s.to_vec();
            o[axis] = n;
            o
        })
        .collect();
    Ok(Built {
        op: Op::Split { axis, sizes },
        inputs: vec![ctx.required_input(0)?.to_string()],
        output_shapes,
    })
}

fn pad(ctx: &NodeCtx) -> R<Built> {
    let s = ctx.shape(0)?;
    let mode = ctx
        .attrs
        .string("mode")
        .unwrap_or_else(|| "constant".into());
    if mode != "constant" {
        return Err(format!(
            "Pad mode '{mode}' is not supported (only 'constant')"
        ));
    }
    let (raw, value, axes): (Vec<i64>, f32, Option<Vec<i64>>) = if ctx.opset < 11 {
        (
            ctx.attrs.ints("pads").ok_or("Pad without pads")?.to_vec(),
            ctx.attrs.float("value").unwrap_or(0.0),
            None,
        )
    } else {
        let value = if ctx.input(2).is_some() {
            ctx.konst(2)?
                .scalar_f32()
                .ok_or("constant_value must be a scalar")?
        } else {
            0.0
        };
        let axes = ctx.input(3).map(|_| ctx.const_ints(3)).transpose()?;
        (ctx.const_ints(1)?, value, axes)
    };
    let axes: Vec<usize> = match axes {
        Some(a) => a.iter().map(|&x| norm_axis(x, s.len())).collect::<R<_>>()?,
        None => (0..s.len()).collect(),
    };
    if raw.len() != 2 * axes.len() {
        return Err(format!("pads {raw:?} do not match {} axes", axes.len()));
    }
    if raw.iter().any(|&p| !(0..1 << 20).contains(&p)) {
        return Err(format!(
            "pads {raw:?}: negative or huge pads are not supported"
        ));
    }
    let mut pads = vec![(0usize, 0usize); s.len()];
    for (i, &ax) in axes.iter().enumerate() {
        pads[ax] = (raw[i] as usize, raw[i + axes.len()] as usize);
    }
    let out = s.iter().zip(&pads).map(|(&d, p)| d + p.0 + p.1).collect();
    Ok(Built {
        op: Op::Pad { pads, value },
        inputs: vec![ctx.required_input(0)?.to_string()],
        output_shapes: vec![out],
    })
}
