//! Constant folding at import: nodes whose inputs are all known (weights, `Constant`,
//! `Shape` of a statically shaped value, …) are evaluated here on the CPU, so exporter
//! plumbing such as Shape→Gather→Concat→Reshape chains never reaches the engine or the
//! architecture view.

use super::consts::{ConstData, ConstTensor, checked_numel, dims_from_i64};
use super::node_ctx::NodeCtx;
use super::shape::{
    broadcast_shapes, flatten_shape, gather_shape, gather_source_indices, norm_axis,
    reshape_target, slice_source_indices, squeeze_shape, strides_of, transpose_source_indices,
    unsqueeze_shape,
};

/// Ops that can be folded when all their inputs are constants.
pub fn is_foldable(op_type: &str) -> bool {
    matches!(
        op_type,
        "Constant"
            | "ConstantOfShape"
            | "Shape"
            | "Size"
            | "Identity"
            | "Dropout"
            | "Cast"
            | "Reshape"
            | "Flatten"
            | "Squeeze"
            | "Unsqueeze"
            | "Concat"
            | "Gather"
            | "Slice"
            | "Transpose"
            | "Add"
            | "Sub"
            | "Mul"
            | "Div"
            | "Neg"
            | "Sqrt"
            | "Range"
            | "Equal"
            | "Where"
    )
}

/// Most elements one folded constant may have (1 GiB as int64, 512 MiB as f32). Folding
/// computes values the file does not store (ConstantOfShape, Range, broadcasting, Gather),
/// so a few bytes of ONNX could otherwise ask for any amount of memory. Large enough for
/// weights made by ConstantOfShape (VGG's fc6 is 102.8 M elements); the importer also caps
/// the total of all folded constants ([`MAX_FOLDED_TOTAL`]).
pub const MAX_FOLDED_ELEMENTS: usize = 1 << 27;

/// Most elements all folded constants of one model may have together.
pub const MAX_FOLDED_TOTAL: usize = 1 << 29;

/// The element count of a folded result of `shape`, or why it is refused.
fn folded_len(shape: &[usize], what: &str) -> Result<usize, String> {
    match checked_numel(shape) {
        Some(n) if n <= MAX_FOLDED_ELEMENTS => Ok(n),
        _ => Err(format!(
            "folding {what} would create a constant of shape {shape:?} (at most {MAX_FOLDED_ELEMENTS} elements)"
        )),
    }
}

/// Evaluates a foldable node; returns one tensor per output.
pub fn fold(ctx: &NodeCtx) -> Result<Vec<ConstTensor>, String> {
    let op = ctx.op_type();
    let one = |t: ConstTensor| Ok(vec![t]);
    match op {
        "Constant" => one(constant_value(ctx)?),
        "ConstantOfShape" => {
            let shape = dims_from_i64(&ctx.const_ints(0)?, "ConstantOfShape output")
                .map_err(|e| e.to_string())?;
            let n = folded_len(&shape, "ConstantOfShape")?;
            let value = match ctx.attrs.tensor("value") {
                Some(t) => ConstTensor::from_proto(t).map_err(|e| e.to_string())?,
                None => ConstTensor::f32(vec![1], vec![0.0]),
            };
            let data = match value.data {
                ConstData::F32(v) => ConstData::F32(vec![v.first().copied().unwrap_or(0.0); n]),
                ConstData::I64(v) => ConstData::I64(vec![v.first().copied().unwrap_or(0); n]),
            };
            one(ConstTensor { shape, data })
        }
        "Shape" => {
            let shape = ctx.shape(0)?;
            let rank = shape.len() as i64;
            let clampi = |v: i64| (if v < 0 { v + rank } else { v }).clamp(0, rank) as usize;
            let start = clampi(ctx.attrs.int("start").unwrap_or(0));
            let end = clampi(ctx.attrs.int("end").unwrap_or(rank));
            let dims: Vec<i64> = shape[start..end.max(start)]
                .iter()
                .map(|&d| d as i64)
                .collect();
            one(ConstTensor::i64(vec![dims.len()], dims))
        }
        "Size" => {
            let n = ctx.shape(0)?.iter().product::<usize>() as i64;
            one(ConstTensor::i64(vec![], vec![n]))
        }
        "Identity" | "Dropout" => one(ctx.konst(0)?.clone()),
        "Cast" => {
            let t = ctx.konst(0)?;
            let to = ctx.attrs.int("to").ok_or("Cast without 'to'")?;
            let data = match to {
                1 | 10 | 11 | 16 => ConstData::F32(t.to_f32_vec()),
                9 => ConstData::I64(
                    t.to_f32_vec()
                        .iter()
                        .map(|&x| i64::from(x != 0.0))
                        .collect(),
                ),
                _ => ConstData::I64(t.to_i64_vec()),
            };
            one(ConstTensor {
                shape: t.shape.clone(),
                data,
            })
        }
        "Reshape" | "Flatten" | "Squeeze" | "Unsqueeze" => {
            let t = ctx.konst(0)?;
            let shape = reshape_like_shape(ctx, &t.shape)?;
            one(ConstTensor {
                shape,
                data: t.data.clone(),
            })
        }
        "Concat" => {
            let parts: Vec<&ConstTensor> = (0..ctx.input_count())
                .map(|i| ctx.konst(i))
                .collect::<Result<_, _>>()?;
            one(concat(
                &parts,
                ctx.attrs.int("axis").ok_or("Concat without 'axis'")?,
            )?)
        }
        "Gather" => {
            let t = ctx.konst(0)?;
            let (axis, indices, indices_shape) = gather_params(ctx, &t.shape)?;
            folded_len(&gather_shape(&t.shape, axis, &indices_shape), "Gather")?;
            let flat = gather_source_indices(&t.shape, axis, &indices);
            one(t.select_flat(gather_shape(&t.shape, axis, &indices_shape), &flat))
        }
        "Slice" => {
            let t = ctx.konst(0)?;
            let ranges = ctx.slice_ranges(&t.shape)?;
            let (shape, flat) = slice_source_indices(&t.shape, &ranges);
            one(t.select_flat(shape, &flat))
        }
        "Transpose" => {
            let t = ctx.konst(0)?;
            let perm = ctx.transpose_perm(t.shape.len())?;
            let (shape, flat) = transpose_source_indices(&t.shape, &perm);
            one(t.select_flat(shape, &flat))
        }
        "Add" | "Sub" | "Mul" | "Div" | "Equal" => one(binary(op, ctx.konst(0)?, ctx.konst(1)?)?),
        "Neg" | "Sqrt" => {
            let t = ctx.konst(0)?;
            let data = match (&t.data, op) {
                (ConstData::F32(v), "Neg") => ConstData::F32(v.iter().map(|x| -x).collect()),
                (ConstData::F32(v), _) => ConstData::F32(v.iter().map(|x| x.sqrt()).collect()),
                (ConstData::I64(v), "Neg") => {
                    ConstData::I64(v.iter().map(|x| x.wrapping_neg()).collect())
                }
                (ConstData::I64(_), _) => return Err("Sqrt of integers".into()),
            };
            one(ConstTensor {
                shape: t.shape.clone(),
                data,
            })
        }
        "Range" => {
            let (start, limit, delta) = (ctx.konst(0)?, ctx.konst(1)?, ctx.konst(2)?);
            let scalar = |t: &ConstTensor, what: &str| {
                t.to_f32_vec()
                    .first()
                    .map(|&v| f64::from(v))
                    .ok_or(format!("Range {what} is empty"))
            };
            let (s, l, d) = (
                scalar(start, "start")?,
                scalar(limit, "limit")?,
                scalar(delta, "delta")?,
            );
            if d == 0.0 {
                return Err("Range with delta 0".into());
            }
            let steps = ((l - s) / d).ceil().max(0.0);
            if !steps.is_finite() || steps > MAX_FOLDED_ELEMENTS as f64 {
                return Err(format!(
                    "Range of {steps} values (at most {MAX_FOLDED_ELEMENTS})"
                ));
            }
            let n = steps as usize;
            let t = if start.is_float() {
                ConstTensor::f32(vec![n], (0..n).map(|i| (s + i as f64 * d) as f32).collect())
            } else {
                ConstTensor::i64(vec![n], (0..n).map(|i| (s + i as f64 * d) as i64).collect())
            };
            one(t)
        }
        "Where" => {
            let (c, a, b) = (ctx.konst(0)?, ctx.konst(1)?, ctx.konst(2)?);
            let shape = broadcast_shapes(&[&c.shape, &a.shape, &b.shape])?;
            folded_len(&shape, "Where")?;
            let (ci, ai, bi) = (
                broadcast_index(&c.shape, &shape),
                broadcast_index(&a.shape, &shape),
                broadcast_index(&b.shape, &shape),
            );
            let cond = c.to_i64_vec();
            let pick = |v: &ConstData, w: &ConstData| -> ConstData {
                match (v, w) {
                    (ConstData::I64(x), ConstData::I64(y)) => ConstData::I64(
                        (0..ci.len())
                            .map(|k| if cond[ci[k]] != 0 { x[ai[k]] } else { y[bi[k]] })
                            .collect(),
                    ),
                    _ => {
                        let (x, y) = (a.to_f32_vec(), b.to_f32_vec());
                        ConstData::F32(
                            (0..ci.len())
                                .map(|k| if cond[ci[k]] != 0 { x[ai[k]] } else { y[bi[k]] })
                                .collect(),
                        )
                    }
                }
            };
            one(ConstTensor {
                shape,
                data: pick(&a.data, &b.data),
            })
        }
        other => Err(format!("{other} cannot be folded")),
    }
}

/// Output shape of the reshape family (Reshape, Flatten, Squeeze, Unsqueeze).
pub fn reshape_like_shape(ctx: &NodeCtx, input: &[usize]) -> Result<Vec<usize>, String> {
    match ctx.op_type() {
        "Reshape" => {
            let spec = ctx.const_ints(1)?;
            reshape_target(input, &spec, ctx.attrs.int("allowzero").unwrap_or(0) != 0)
        }
        "Flatten" => flatten_shape(input, ctx.attrs.int("axis").unwrap_or(1)),
        "Squeeze" => squeeze_shape(input, &ctx.axes_attr_or_input(1)?.unwrap_or_default()),
        "Unsqueeze" => {
            let axes = ctx.axes_attr_or_input(1)?.ok_or("Unsqueeze without axes")?;
            unsqueeze_shape(input, &axes)
        }
        other => Err(format!("{other} is not a reshape")),
    }
}

/// Gather's axis and its constant indices (normalised, bounds-checked) and their shape.
pub fn gather_params(
    ctx: &NodeCtx,
    input: &[usize],
) -> Result<(usize, Vec<usize>, Vec<usize>), String> {
    let axis = norm_axis(ctx.attrs.int("axis").unwrap_or(0), input.len())?;
    let idx = ctx
        .konst(1)
        .map_err(|_| "Gather indices must be constant".to_string())?;
    let dim = input[axis] as i64;
    let indices = idx
        .to_i64_vec()
        .into_iter()
        .map(|i| {
            let j = if i < 0 { i + dim } else { i };
            if (0..dim).contains(&j) {
                Ok(j as usize)
            } else {
                Err(format!("gather index {i} out of range for size {dim}"))
            }
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok((axis, indices, idx.shape.clone()))
}

/// The value of a `Constant` node from whichever attribute carries it.
fn constant_value(ctx: &NodeCtx) -> Result<ConstTensor, String> {
    let a = &ctx.attrs;
    if let Some(t) = a.tensor("value") {
        return ConstTensor::from_proto(t).map_err(|e| e.to_string());
    }
    if let Some(f) = a.float("value_float") {
        return Ok(ConstTensor::f32(vec![], vec![f]));
    }
    if let Some(v) = a.floats("value_floats") {
        return Ok(ConstTensor::f32(vec![v.len()], v.to_vec()));
    }
    if let Some(i) = a.int("value_int") {
        return Ok(ConstTensor::i64(vec![], vec![i]));
    }
    if let Some(v) = a.ints("value_ints") {
        return Ok(ConstTensor::i64(vec![v.len()], v.to_vec()));
    }
    Err("Constant without a supported value attribute (sparse and string constants are not supported)".into())
}

fn concat(parts: &[&ConstTensor], axis: i64) -> Result<ConstTensor, String> {
    let first = parts.first().ok_or("Concat of nothing")?;
    let rank = first.shape.len();
    let axis = norm_axis(axis, rank.max(1))?;
    let mut shape = first.shape.clone();
    if rank == 0 {
        return Err("Concat of scalars".into());
    }
    shape[axis] = 0;
    for p in parts {
        if p.shape.len() != rank
            || p.shape
                .iter()
                .enumerate()
                .any(|(i, &d)| i != axis && d != first.shape[i])
        {
            return Err(format!(
                "Concat shapes differ: {:?} vs {:?}",
                first.shape, p.shape
            ));
        }
        shape[axis] += p.shape[axis];
    }
    let outer: usize = shape[..axis].iter().product();
    let float = parts.iter().any(|p| p.is_float());
    let chunks: Vec<usize> = parts
        .iter()
        .map(|p| p.shape[axis..].iter().product())
        .collect();
    let (fv, iv): (Vec<Vec<f32>>, Vec<Vec<i64>>) = if float {
        (parts.iter().map(|p| p.to_f32_vec()).collect(), Vec::new())
    } else {
        (Vec::new(), parts.iter().map(|p| p.to_i64_vec()).collect())
    };
    let mut f = Vec::new();
    let mut i = Vec::new();
    for o in 0..outer {
        for (k, &chunk) in chunks.iter().enumerate() {
            if float {
                f.extend_from_slice(&fv[k][o * chunk..(o + 1) * chunk]);
            } else {
                i.extend_from_slice(&iv[k][o * chunk..(o + 1) * chunk]);
            }
        }
    }
    Ok(if float {
        ConstTensor::f32(shape, f)
    } else {
        ConstTensor::i64(shape, i)
    })
}

/// For each element of `out_shape`, the flat index of the broadcast source of `shape`.
fn broadcast_index(shape: &[usize], out_shape: &[usize]) -> Vec<usize> {
    let offset = out_shape.len() - shape.len();
    let strides = strides_of(shape);
    let mut flat = Vec::with_capacity(out_shape.iter().product());
    super::shape::for_each_index(out_shape, |idx| {
        flat.push(
            shape
                .iter()
                .enumerate()
                .map(|(i, &d)| {
                    if d == 1 {
                        0
                    } else {
                        idx[offset + i] * strides[i]
                    }
                })
                .sum(),
        );
    });
    flat
}

fn binary(op: &str, a: &ConstTensor, b: &ConstTensor) -> Result<ConstTensor, String> {
    let shape = broadcast_shapes(&[&a.shape, &b.shape])?;
    folded_len(&shape, op)?;
    let (ai, bi) = (
        broadcast_index(&a.shape, &shape),
        broadcast_index(&b.shape, &shape),
    );
    if a.is_float() || b.is_float() {
        let (x, y) = (a.to_f32_vec(), b.to_f32_vec());
        let f = |p: f32, q: f32| match op {
            "Add" => p + q,
            "Sub" => p - q,
            "Mul" => p * q,
            "Div" => p / q,
            _ => f32::from(u8::from(p == q)),
        };
        let v: Vec<f32> = ai.iter().zip(&bi).map(|(&i, &j)| f(x[i], y[j])).collect();
        if op == "Equal" {
            return Ok(ConstTensor::i64(
                shape,
                v.iter().map(|&x| x as i64).collect(),
            ));
        }
        Ok(ConstTensor::f32(shape, v))
    } else {
        let (x, y) = (a.to_i64_vec(), b.to_i64_vec());
        let f = |p: i64, q: i64| -> Result<i64, String> {
            Ok(match op {
                "Add" => p.wrapping_add(q),
                "Sub" => p.wrapping_sub(q),
                "Mul" => p.wrapping_mul(q),
                "Div" => p.checked_div(q).ok_or("integer division by zero")?,
                _ => i64::from(p == q),
            })
        };
        let v = ai
            .iter()
            .zip(&bi)
            .map(|(&i, &j)| f(x[i], y[j]))
            .collect::<Result<_, _>>()?;
        Ok(ConstTensor::i64(shape, v))
    }
}
