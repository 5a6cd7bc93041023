//! Conversion of the windowed 2-D ops (Conv, ConvTranspose, MaxPool, AveragePool): kernel,
//! strides, dilations, explicit or `auto_pad` padding, ConvTranspose's `output_shape`, and
//! the shape checks between input, weight and groups.

use super::graph::{Op, PadPair, Window2d};
use super::node_ctx::{Built, NodeCtx, R};
use super::shape::{same_padding, window_out_hw};

pub(super) fn rank4(s: &[usize]) -> R<[usize; 4]> {
    <[usize; 4]>::try_from(s).map_err(|_| {
        format!(
            "expects a 4-D [N,C,H,W] input, got shape {s:?} (only 2-D spatial ops are supported)"
        )
    })
}

/// Positive ints from an attribute of exactly `n` entries, or a default.
fn pos_ints(ctx: &NodeCtx, name: &str, n: usize, default: usize) -> R<Vec<usize>> {
    match ctx.attrs.ints(name) {
        None => Ok(vec![default; n]),
        // Bounded like pads, so window arithmetic cannot overflow.
        Some(v) if v.len() == n && v.iter().all(|&x| (1..=1 << 20).contains(&x)) => {
            Ok(v.iter().map(|&x| x as usize).collect())
        }
        Some(v) => Err(format!(
            "attribute '{name}' = {v:?} must hold {n} values in 1..=1048576"
        )),
    }
}

/// Kernel/stride/pad/dilation of a 2-D windowed op over `hw`, with auto_pad resolved.
fn window(ctx: &NodeCtx, hw: [usize; 2], kernel: [usize; 2]) -> R<Window2d> {
    let strides = pos_ints(ctx, "strides", 2, 1)?;
    let dilations = pos_ints(ctx, "dilations", 2, 1)?;
    let auto_pad = ctx.attrs.string("auto_pad").unwrap_or_default();
    let pads: [PadPair; 2] = match auto_pad.as_str() {
        "SAME_UPPER" | "SAME_LOWER" => {
            let upper = auto_pad == "SAME_UPPER";
            [0, 1].map(|i| same_padding(hw[i], kernel[i], strides[i], dilations[i], upper))
        }
        "VALID" => [(0, 0); 2],
        "" | "NOTSET" => match ctx.attrs.ints("pads") {
            None => [(0, 0); 2],
            Some(p) if p.len() == 4 && p.iter().all(|&v| (0..1 << 20).contains(&v)) => [
                (p[0] as usize, p[2] as usize),
                (p[1] as usize, p[3] as usize),
            ],
            Some(p) => return Err(format!("pads {p:?} must hold 4 non-negative values")),
        },
        other => return Err(format!("unknown auto_pad '{other}'")),
    };
    Ok(Window2d {
        kernel,
        strides: [strides[0], strides[1]],
        pads,
        dilations: [dilations[0], dilations[1]],
    })
}

pub(super) fn conv(ctx: &NodeCtx, transpose: bool) -> R<Built> {
    let xs = rank4(ctx.shape(0)?)?;
    let ws = rank4(
        ctx.shape(1)
            .map_err(|_| "convolution weight is missing".to_string())?,
    )?;
    let group = ctx.attrs.int("group").unwrap_or(1);
    if group < 1 {
        return Err(format!("group {group} must be positive"));
    }
    let group = group as usize;
    let kernel = [ws[2], ws[3]];
    if let Some(k) = ctx.attrs.ints("kernel_shape")
        && k != [ws[2] as i64, ws[3] as i64]
    {
        return Err(format!(
            "kernel_shape {k:?} disagrees with the weight shape {ws:?}"
        ));
    }
    if kernel.contains(&0) {
        return Err(format!("weight shape {ws:?} has an empty kernel"));
    }
    let mut win = window(ctx, [xs[2], xs[3]], kernel)?;
    let auto_pad = ctx.attrs.string("auto_pad").unwrap_or_default();
    let out_channels = if transpose { ws[1] * group } else { ws[0] };
    let (in_ok, out_ok) = if transpose {
        (xs[1] == ws[0], ws[0] % group == 0)
    } else {
        (xs[1] == ws[1] * group, ws[0] % group == 0)
    };
    if !in_ok || !out_ok {
        return Err(format!(
            "input {xs:?}, weight {ws:?} and group {group} do not agree"
        ));
    }
    let mut inputs = vec![
        ctx.required_input(0)?.to_string(),
        ctx.required_input(1)?.to_string(),
    ];
    if let Some(b) = ctx.input(2) {
        if ctx.shape(2)? != [out_channels] {
            return Err(format!(
                "bias shape {:?} should be [{out_channels}]",
                ctx.shape(2)?
            ));
        }
        inputs.push(b.to_string());
    }
    let hw = if transpose {
        let mut output_padding = pos_or_zero(ctx, "output_padding")?;
        // With output_shape (or SAME auto_pad) the pads follow from the requested size
        // (ONNX spec): total = stride·(in-1) + output_padding + (k-1)·dilation + 1 - out.
        let target: Option<Vec<i64>> = match ctx.attrs.ints("output_shape") {
            Some(t) if t.iter().all(|&v| (1..=1 << 31).contains(&v)) => {
                Some(t[t.len().saturating_sub(2)..].to_vec())
            }
            Some(t) => return Err(format!("output_shape {t:?} must hold sizes in 1..=2^31")),
            None if auto_pad.starts_with("SAME") => Some(
                (0..2)
                    .map(|i| (xs[2 + i] * win.strides[i]) as i64)
                    .collect(),
            ),
            None => None,
        };
        if let Some(target) = target {
            for i in 0..2 {
                let full = win.strides[i] * (xs[2 + i] - 1)
                    + output_padding[i]
                    + (kernel[i] - 1) * win.dilations[i]
                    + 1;
                let total = full as i64 - target.get(i).copied().unwrap_or(0);
                if total < 0 {
                    // A larger output than the stride produces: extra rows/columns at the end.
                    output_padding[i] += total.unsigned_abs() as usize;
                    win.pads[i] = (0, 0);
                    continue;
                }
                let total = total as usize;
                win.pads[i] = if auto_pad == "SAME_UPPER" {
                    (total / 2, total - total / 2)
                } else {
                    (total - total / 2, total / 2)
                };
            }
        }
        let mut hw = [0; 2];
        for i in 0..2 {
            let full = win.strides[i] * (xs[2 + i] - 1)
                + output_padding[i]
                + (kernel[i] - 1) * win.dilations[i]
                + 1;
            hw[i] = full
                .checked_sub(win.pads[i].0 + win.pads[i].1)
                .filter(|&v| v > 0)
                .ok_or("pads remove the whole output")?;
        }
        let op = Op::ConvTranspose {
            window: win,
            group,
            output_padding,
        };
        return Ok(Built {
            op,
            inputs,
            output_shapes: vec![vec![xs[0], out_channels, hw[0], hw[1]]],
        });
    } else {
        window_out_hw([xs[2], xs[3]], &win, false)?
    };
    Ok(Built {
        op: Op::Conv { window: win, group },
        inputs,
        output_shapes: vec![vec![xs[0], out_channels, hw[0], hw[1]]],
    })
}

fn pos_or_zero(ctx: &NodeCtx, name: &str) -> R<[usize; 2]> {
    match ctx.attrs.ints(name) {
        None => Ok([0, 0]),
        Some(v) if v.len() == 2 && v.iter().all(|&x| (0..1 << 20).contains(&x)) => {
            Ok([v[0] as usize, v[1] as usize])
        }
        Some(v) => Err(format!(
            "attribute '{name}' = {v:?} must hold 2 non-negative values"
        )),
    }
}

pub(super) fn pool(ctx: &NodeCtx) -> R<Built> {
    let xs = rank4(ctx.shape(0)?)?;
    let k = pos_ints(ctx, "kernel_shape", 2, 0)?;
    if ctx.attrs.ints("kernel_shape").is_none() {
        return Err("pooling without kernel_shape".into());
    }
    let win = window(ctx, [xs[2], xs[3]], [k[0], k[1]])?;
    let ceil_mode = ctx.attrs.int("ceil_mode").unwrap_or(0) != 0;
    if ctx.proto.output.iter().skip(1).any(|o| !o.is_empty()) {
        return Err("MaxPool's indices output is not supported".into());
    }
    let hw = window_out_hw([xs[2], xs[3]], &win, ceil_mode)?;
    let op = if ctx.op_type() == "MaxPool" {
        if ctx.attrs.int("storage_order").unwrap_or(0) != 0 {
            return Err("storage_order=1 is not supported".into());
        }
        Op::MaxPool {
            window: win,
            ceil_mode,
        }
    } else {
        if win.dilations != [1, 1] {
            return Err("dilated average pooling is not supported".into());
        }
        let count_include_pad = ctx.attrs.int("count_include_pad").unwrap_or(0) != 0;
        Op::AveragePool {
            window: win,
            ceil_mode,
            count_include_pad,
        }
    };
    Ok(Built {
        op,
        inputs: vec![ctx.required_input(0)?.to_string()],
        output_shapes: vec![vec![xs[0], xs[1], hw[0], hw[1]]],
    })
}
