#!/usr/bin/env python3
"""Writes the handcrafted hostile inputs of tests/fuzz_regressions.rs into
tests/fixtures/fuzz/{onnx_loader,image_loader}/ (minimised fuzzer findings are copied there
by hand, next to these). Needs onnx, numpy (the /root/.cache/convlens-venv has them).

image_loader files use the fuzz target's layout: one selector byte, then the file.
"""
import os
import struct
import zlib

import numpy as np
import onnx
from onnx import TensorProto, helper

root = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "fixtures", "fuzz")
onnx_dir = os.path.join(root, "onnx_loader")
img_dir = os.path.join(root, "image_loader")
os.makedirs(onnx_dir, exist_ok=True)
os.makedirs(img_dir, exist_ok=True)


def write(d, name, data):
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def model(nodes, inputs, outputs, inits=(), opset=13):
    g = helper.make_graph(nodes, "g", inputs, outputs, initializer=list(inits))
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])
    m.ir_version = 8
    return m.SerializeToString()


x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])
y = helper.make_tensor_value_info("y", TensorProto.FLOAT, None)
relu = helper.make_node("Relu", ["x"], ["y"])
valid = model([relu], [x], [y])

# --- onnx_loader -------------------------------------------------------------------------
write(onnx_dir, "empty", b"")
write(onnx_dir, "truncated_half", valid[: len(valid) // 2])
write(onnx_dir, "truncated_varint", b"\x08\xff\xff\xff")  # ir_version varint cut short
write(onnx_dir, "garbage_length", b"\x3a\xff\xff\xff\xff\x0f")  # graph field, 4 GiB length

# An initializer whose dims claim 10^12 elements, with no data and with 4 bytes of data.
for name, raw in [("huge_dims_no_data", None), ("huge_dims_4_bytes", b"\0\0\0\0")]:
    t = TensorProto()
    t.name, t.data_type = "w", TensorProto.FLOAT
    t.dims.extend([1_000_000, 1_000_000])
    if raw is not None:
        t.raw_data = raw
    add = helper.make_node("Add", ["x", "w"], ["y"])
    write(onnx_dir, name, model([add], [x], [y], [t]))

# Negative and overflowing dims.
t = TensorProto(name="w", data_type=TensorProto.FLOAT, dims=[-1, 4], float_data=[0.0] * 4)
write(onnx_dir, "negative_dims", model([helper.make_node("Add", ["x", "w"], ["y"])], [x], [y], [t]))
t = TensorProto(name="w", data_type=TensorProto.FLOAT, dims=[1 << 62, 1 << 62, 4])
write(onnx_dir, "overflowing_dims", model([helper.make_node("Add", ["x", "w"], ["y"])], [x], [y], [t]))

# A graph input claiming 10^12 elements.
big = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 1_000_000, 1_000_000])
write(onnx_dir, "huge_input", model([relu], [big], [y]))

# Graph with a cycle, and a node reading an undefined value.
write(onnx_dir, "cycle", model([helper.make_node("Add", ["x", "b"], ["a"]),
                                helper.make_node("Relu", ["a"], ["b"]),
                                helper.make_node("Relu", ["b"], ["y"])], [x], [y]))
write(onnx_dir, "undefined_input", model([helper.make_node("Relu", ["nope"], ["y"])], [x], [y]))
write(onnx_dir, "old_opset", model([relu], [x], [y], opset=1))

# --- findings (open until fixed in src/: listed in OPEN_FINDINGS of the test) -------------
def i64(name, v):
    return helper.make_tensor(name, TensorProto.INT64, [len(v)] if isinstance(v, list) else [], v if isinstance(v, list) else [v])


def f32(name, dims, v):
    return helper.make_tensor(name, TensorProto.FLOAT, dims, v)


# Fuzzer OOM, hand-minimised: squeezenet's `fire8/squeeze1x1_w_0__SHAPE` mutated to
# [64, 384, 1, 26369] → ConstantOfShape allocates 648M f32 (2.6 GB) at fold.rs:60.
cos = helper.make_node("ConstantOfShape", ["s"], ["c"])
write(onnx_dir, "oom_constantofshape_2g6", model(
    [cos, helper.make_node("Add", ["x", "c"], ["y"])], [x], [y], [i64("s", [64, 384, 1, 26369])]))
# Found by review while the fuzzers ran (same classes of bug):
# Range over int64 0..2^30 → 8 GiB (fold.rs Range: n is checked against MAX_CONST_ELEMENTS only).
rng_node = helper.make_node("Range", ["a", "b", "d"], ["r"])
write(onnx_dir, "review_oom_range_2p30", model(
    [rng_node, helper.make_node("Add", ["x", "r"], ["y"])], [x], [y],
    [i64("a", 0), i64("b", 1 << 30), i64("d", 1)]))
# Constant Add broadcasting [65536, 1] + [1, 65536] → 2^32 indices (32 GiB) in fold.rs binary().
write(onnx_dir, "review_oom_broadcast_2p32", model(
    [helper.make_node("ConstantOfShape", ["sa"], ["a"]), helper.make_node("ConstantOfShape", ["sb"], ["b"]),
     helper.make_node("Add", ["a", "b"], ["c"]), helper.make_node("Add", ["x", "c"], ["y"])], [x], [y],
    [i64("sa", [65536, 1]), i64("sb", [1, 65536])]))
# Range whose start is an empty tensor → index out of bounds at fold.rs:154.
write(onnx_dir, "review_panic_range_empty_start", model(
    [rng_node, helper.make_node("Add", ["x", "r"], ["y"])], [x], [y],
    [f32("a", [0], []), f32("b", [1], [4.0]), f32("d", [1], [1.0])]))
# Conv with dilation i64::MAX and a 4x4 kernel → multiply overflow at shape.rs:280.
w4 = f32("W", [2, 3, 4, 4], [0.0] * 96)
write(onnx_dir, "review_panic_conv_dilation_overflow", model(
    [helper.make_node("Conv", ["x", "W"], ["y"], dilations=[(1 << 63) - 1, 1])], [x], [y], [w4]))
# ConvTranspose with output_shape i64::MIN → subtract overflow at op_window.rs:127.
wt = f32("W", [3, 2, 3, 3], [0.0] * 54)
write(onnx_dir, "review_panic_convtranspose_output_shape", model(
    [helper.make_node("ConvTranspose", ["x", "W"], ["y"], output_shape=[-(1 << 63), -(1 << 63)])], [x], [y], [wt]))
# ConvTranspose with stride 2^62 → multiply overflow in the output size (op_window.rs).
write(onnx_dir, "review_panic_convtranspose_stride", model(
    [helper.make_node("ConvTranspose", ["x", "W"], ["y"], strides=[1 << 62, 1])], [x], [y], [wt]))

# --- image_loader (selector byte: ext = b % 7 (png jpg webp bmp tif gif npy), fit, size) ----
def png_header(w, h):
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    ihdr = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)  # 8-bit RGB
    idat = zlib.compress(b"\0" * 64)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


write(img_dir, "empty_png", bytes([0]))
write(img_dir, "empty_npy", bytes([6]))
write(img_dir, "png_100000x100000", bytes([0]) + png_header(100_000, 100_000))
write(img_dir, "png_zero_size", bytes([7]) + png_header(0, 0))
write(img_dir, "png_1x100000_pad", bytes([14]) + png_header(1, 100_000))


def npy_header(shape_txt, descr="<f4", version=1):
    h = "{'descr': '%s', 'fortran_order': False, 'shape': %s, }" % (descr, shape_txt)
    h += " " * ((64 - (10 + len(h) + 1) % 64) % 64) + "\n"
    n = len(h).to_bytes(2 if version == 1 else 4, "little")
    return b"\x93NUMPY" + bytes([version, 0]) + n + h.encode()


write(img_dir, "npy_huge_shape", bytes([6]) + npy_header("(1, 3, 1000000, 1000000)") + b"\0" * 16)
write(img_dir, "npy_overflow_shape", bytes([6]) + npy_header("(18446744073709551615, 3)"))
write(img_dir, "npy_v2_huge_header_len", bytes([6]) + b"\x93NUMPY\x02\x00\xff\xff\xff\xff{")
write(img_dir, "npy_truncated_header", bytes([6]) + npy_header("(1, 3, 4, 6)")[:30])
write(img_dir, "npy_no_close_paren", bytes([6]) + npy_header("(1, 3, 4, 6"))
print("wrote", len(os.listdir(onnx_dir)), "onnx and", len(os.listdir(img_dir)), "image inputs")
