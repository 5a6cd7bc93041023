//! Static shape arithmetic shared by import-time shape inference and constant folding:
//! broadcasting, reshape targets, slices, gathers, transposes and windowed ops (conv/pool).
//! Every function returns a message on bad input instead of panicking.

use super::graph::{PadPair, SliceRange, Window2d};

pub type ShapeResult<T> = std::result::Result<T, String>;

/// Normalises a possibly negative axis against `rank` (ONNX convention).
pub fn norm_axis(axis: i64, rank: usize) -> ShapeResult<usize> {
    let r = rank as i64;
    let a = if axis < 0 { axis + r } else { axis };
    if (0..r).contains(&a) {
        Ok(a as usize)
    } else {
        Err(format!("axis {axis} is out of range for rank {rank}"))
    }
}

/// Numpy-style broadcast of several shapes.
pub fn broadcast_shapes(shapes: &[&[usize]]) -> ShapeResult<Vec<usize>> {
    let rank = shapes.iter().map(|s| s.len()).max().unwrap_or(0);
    let mut out = vec![1usize; rank];
    for s in shapes {
        let offset = rank - s.len();
        for (i, &d) in s.iter().enumerate() {
            let o = &mut out[offset + i];
            if *o == 1 {
                *o = d;
            } else if d != 1 && d != *o {
                return Err(format!("shapes {shapes:?} cannot be broadcast together"));
            }
        }
    }
    Ok(out)
}

/// Target shape of an ONNX Reshape (`0` copies the input dim unless `allowzero`, `-1` infers).
pub fn reshape_target(input: &[usize], spec: &[i64], allowzero: bool) -> ShapeResult<Vec<usize>> {
    let total: usize = input.iter().product();
    let mut out = Vec::with_capacity(spec.len());
    let mut infer_at = None;
    for (i, &d) in spec.iter().enumerate() {
        match d {
            -1 if infer_at.is_none() => {
                infer_at = Some(i);
                out.push(1);
            }
            0 if !allowzero => out.push(*input.get(i).ok_or_else(|| {
                format!("reshape spec {spec:?} copies dim {i} that {input:?} lacks")
            })?),
            d if d >= 0 => out.push(d as usize),
            _ => return Err(format!("invalid reshape spec {spec:?}")),
        }
    }
    // Dims come from the file: their product may overflow (a fuzzed Reshape to
    // [2^32, 2^32, …] panicked here with overflow checks on).
    let known = (out.iter())
        .try_fold(1usize, |acc, &d| acc.checked_mul(d))
        .ok_or_else(|| format!("reshape spec {spec:?} has more elements than fit in memory"))?;
    if let Some(i) = infer_at {
        if known == 0 || !total.is_multiple_of(known) {
            return Err(format!("cannot reshape {input:?} to {spec:?}"));
        }
        out[i] = total / known;
    } else if known != total {
        return Err(format!(
            "cannot reshape {input:?} ({total} elements) to {spec:?}"
        ));
    }
    Ok(out)
}

/// Flatten to 2-D at `axis`.
pub fn flatten_shape(input: &[usize], axis: i64) -> ShapeResult<Vec<usize>> {
    let a = if axis == input.len() as i64 {
        input.len()
    } else {
        norm_axis(axis, input.len().max(1))?
    };
    Ok(vec![
        input[..a].iter().product(),
        input[a..].iter().product(),
    ])
}

/// Squeeze the given axes (all size-1 axes when `axes` is empty).
pub fn squeeze_shape(input: &[usize], axes: &[i64]) -> ShapeResult<Vec<usize>> {
    let axes: Vec<usize> = axes
        .iter()
        .map(|&a| norm_axis(a, input.len()))
        .collect::<ShapeResult<_>>()?;
    let mut out = Vec::new();
    for (i, &d) in input.iter().enumerate() {
        let squeeze = if axes.is_empty() {
            d == 1
        } else {
            axes.contains(&i)
        };
        if squeeze && d != 1 {
            return Err(format!("cannot squeeze axis {i} of size {d}"));
        }
        if !squeeze {
            out.push(d);
        }
    }
    Ok(out)
}

/// Insert size-1 axes at the given positions of the output.
pub fn unsqueeze_shape(input: &[usize], axes: &[i64]) -> ShapeResult<Vec<usize>> {
    let rank = input.len() + axes.len();
    let mut axes: Vec<usize> = axes
        .iter()
        .map(|&a| norm_axis(a, rank))
        .collect::<ShapeResult<_>>()?;
    axes.sort_unstable();
    if axes.windows(2).any(|w| w[0] == w[1]) {
        return Err(format!("repeated unsqueeze axes {axes:?}"));
    }
    let mut rest = input.iter();
    Ok((0..rank)
        .map(|i| {
            if axes.contains(&i) {
                1
            } else {
                *rest.next().unwrap_or(&1)
            }
        })
        .collect())
}

/// Resolves ONNX Slice parameters into per-axis ranges (all axes, untouched ones full).
pub fn slice_ranges(
    input: &[usize],
    starts: &[i64],
    ends: &[i64],
    axes: Option<&[i64]>,
    steps: Option<&[i64]>,
) -> ShapeResult<Vec<SliceRange>> {
    let mut ranges: Vec<SliceRange> = input
        .iter()
        .map(|&d| SliceRange {
            start: 0,
            step: 1,
            count: d,
        })
        .collect();
    if starts.len() != ends.len() {
        return Err("slice starts and ends differ in length".into());
    }
    for i in 0..starts.len() {
        let axis = match axes {
            Some(a) => norm_axis(*a.get(i).ok_or("slice axes too short")?, input.len())?,
            None => i,
        };
        let dim = *input.get(axis).ok_or("slice axis out of range")? as i64;
        let step = steps.and_then(|s| s.get(i).copied()).unwrap_or(1);
        if step == 0 {
            return Err("slice step 0".into());
        }
        let clamp = |v: i64, lo: i64, hi: i64| v.max(lo).min(hi);
        let fix = |v: i64| if v < 0 { v.saturating_add(dim) } else { v };
        let (start, end) = if step > 0 {
            (clamp(fix(starts[i]), 0, dim), clamp(fix(ends[i]), 0, dim))
        } else {
            (
                clamp(fix(starts[i]), -1, dim - 1),
                clamp(fix(ends[i]), -1, dim - 1),
            )
        };
        let count = if step > 0 {
            if end > start {
                (end - start + step - 1) / step
            } else {
                0
            }
        } else if start > end {
            (start - end + (-step) - 1) / (-step)
        } else {
            0
        };
        ranges[axis] = SliceRange {
            start: start.max(0) as usize,
            step,
            count: count as usize,
        };
    }
    Ok(ranges)
}

/// Row-major strides of a shape.
pub fn strides_of(shape: &[usize]) -> Vec<usize> {
    let mut strides = vec![1usize; shape.len()];
    for i in (0..shape.len().saturating_sub(1)).rev() {
        strides[i] = strides[i + 1] * shape[i + 1];
    }
    strides
}

/// Calls `f(out_index)` for every multi-index of `shape` in row-major order.
pub fn for_each_index(shape: &[usize], mut f: impl FnMut(&[usize])) {
    if shape.contains(&0) {
        return;
    }
    let mut idx = vec![0usize; shape.len()];
    loop {
        f(&idx);
        let mut axis = shape.len();
        loop {
            if axis == 0 {
                return;
            }
            axis -= 1;
            idx[axis] += 1;
            if idx[axis] < shape[axis] {
                break;
            }
            idx[axis] = 0;
        }
    }
}

/// Flat source indices of a slice, in output order.
pub fn slice_source_indices(input: &[usize], ranges: &[SliceRange]) -> (Vec<usize>, Vec<usize>) {
    let out_shape: Vec<usize> = ranges.iter().map(|r| r.count).collect();
    let strides = strides_of(input);
    let mut flat = Vec::with_capacity(out_shape.iter().product());
    for_each_index(&out_shape, |idx| {
        let src: i64 = idx
            .iter()
            .zip(ranges)
            .zip(&strides)
            .map(|((&i, r), &s)| (r.start as i64 + i as i64 * r.step) * s as i64)
            .sum();
        flat.push(src as usize);
    });
    (out_shape, flat)
}

/// Output shape and flat source indices of a transpose.
pub fn transpose_source_indices(input: &[usize], perm: &[usize]) -> (Vec<usize>, Vec<usize>) {
    let out_shape: Vec<usize> = perm.iter().map(|&p| input[p]).collect();
    let strides = strides_of(input);
    let mut flat = Vec::with_capacity(out_shape.iter().product());
    for_each_index(&out_shape, |idx| {
        flat.push(idx.iter().zip(perm).map(|(&i, &p)| i * strides[p]).sum());
    });
    (out_shape, flat)
}

/// Output shape of a Gather along `axis` with an index tensor of `indices_shape`.
pub fn gather_shape(input: &[usize], axis: usize, indices_shape: &[usize]) -> Vec<usize> {
    let mut out = input[..axis].to_vec();
    out.extend_from_slice(indices_shape);
    out.extend_from_slice(&input[axis + 1..]);
    out
}

/// Flat source indices of a gather (indices already normalised to `0..input[axis]`).
pub fn gather_source_indices(input: &[usize], axis: usize, indices: &[usize]) -> Vec<usize> {
    let outer: usize = input[..axis].iter().product();
    let inner: usize = input[axis + 1..].iter().product();
    let mut flat = Vec::with_capacity(outer * indices.len() * inner);
    for o in 0..outer {
        for &g in indices {
            let base = (o * input[axis] + g) * inner;
            flat.extend(base..base + inner);
        }
    }
    flat
}

/// Output size of one windowed axis (conv or pooling), PyTorch/ONNX rules; with
/// `ceil_mode` a last window that would start inside the end padding is dropped.
pub fn window_out_len(
    input: usize,
    kernel: usize,
    stride: usize,
    pad: PadPair,
    dilation: usize,
    ceil_mode: bool,
) -> ShapeResult<usize> {
    let effective = dilation * (kernel - 1) + 1;
    let padded = input + pad.0 + pad.1;
    if padded < effective {
        return Err(format!(
            "window of {effective} (kernel {kernel}, dilation {dilation}) does not fit input {input} with pads {pad:?}"
        ));
    }
    let span = padded - effective;
    let mut out = if ceil_mode {
        span.div_ceil(stride) + 1
    } else {
        span / stride + 1
    };
    if ceil_mode && (out - 1) * stride >= input + pad.0 {
        out -= 1;
    }
    Ok(out)
}

/// Output `[H, W]` of a 2-D window over `[H, W]`.
pub fn window_out_hw(hw: [usize; 2], w: &Window2d, ceil_mode: bool) -> ShapeResult<[usize; 2]> {
    Ok([
        window_out_len(
            hw[0],
            w.kernel[0],
            w.strides[0],
            w.pads[0],
            w.dilations[0],
            ceil_mode,
        )?,
        window_out_len(
            hw[1],
            w.kernel[1],
            w.strides[1],
            w.pads[1],
            w.dilations[1],
            ceil_mode,
        )?,
    ])
}

/// ONNX `auto_pad` SAME_UPPER / SAME_LOWER padding for one axis.
pub fn same_padding(
    input: usize,
    kernel: usize,
    stride: usize,
    dilation: usize,
    upper: bool,
) -> PadPair {
    let out = input.div_ceil(stride);
    let effective = dilation * (kernel - 1) + 1;
    let total = ((out.saturating_sub(1)) * stride + effective).saturating_sub(input);
    if upper {
        (total / 2, total - total / 2)
    } else {
        (total - total / 2, total / 2)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn broadcast_follows_numpy() {
        assert_eq!(
            broadcast_shapes(&[&[1, 3, 4, 4], &[3, 1, 1]]).unwrap(),
            vec![1, 3, 4, 4]
        );
        assert_eq!(broadcast_shapes(&[&[2, 1], &[1, 5]]).unwrap(), vec![2, 5]);
        assert!(broadcast_shapes(&[&[2, 3], &[4, 3]]).is_err());
    }

    #[test]
    fn reshape_handles_zero_and_minus_one() {
        assert_eq!(
            reshape_target(&[1, 256, 6, 6], &[0, -1], false).unwrap(),
            vec![1, 9216]
        );
        assert!(reshape_target(&[2, 3], &[3, 0], true).is_err());
        assert!(reshape_target(&[2, 3], &[4, -1], false).is_err());
        // Dims whose product overflows are an error, not a panic (a fuzz finding).
        let huge = 1i64 << 32;
        let err = reshape_target(&[2, 3], &[huge, huge, -1], false).unwrap_err();
        assert!(err.contains("more elements than fit"), "{err}");
    }

    #[test]
    fn slice_matches_numpy() {
        // x[1:-1:2] on a length-7 axis → indices 1, 3, 5.
        let r = slice_ranges(&[7], &[1], &[-1], None, Some(&[2])).unwrap();
        assert_eq!(slice_source_indices(&[7], &r).1, vec![1, 3, 5]);
        // x[::-1] (start -1, end -INT_MAX).
        let r = slice_ranges(&[4], &[-1], &[i64::MIN], None, Some(&[-1])).unwrap();
        assert_eq!(slice_source_indices(&[4], &r).1, vec![3, 2, 1, 0]);
    }

    #[test]
    fn transpose_and_gather_indices() {
        let (shape, flat) = transpose_source_indices(&[2, 3], &[1, 0]);
        assert_eq!(shape, vec![3, 2]);
        assert_eq!(flat, vec![0, 3, 1, 4, 2, 5]);
        assert_eq!(gather_source_indices(&[2, 3], 1, &[2, 0]), vec![2, 0, 5, 3]);
    }

    #[test]
    fn pooling_sizes_follow_onnx_ceil_rule() {
        // AlexNet pool1: 55 → 27 (k3 s2).
        assert_eq!(window_out_len(55, 3, 2, (0, 0), 1, false).unwrap(), 27);
        // GoogLeNet pool: 112, k3 s2 ceil → 56.
        assert_eq!(window_out_len(112, 3, 2, (0, 0), 1, true).unwrap(), 56);
        // ceil would start the last window inside the padding: dropped.
        assert_eq!(window_out_len(5, 2, 2, (1, 1), 1, true).unwrap(), 3);
        assert_eq!(same_padding(224, 3, 2, 1, true), (0, 1));
    }
}
