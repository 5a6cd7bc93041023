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


# --- scan_reader (byte 0 even: scan.json FF00 stats.csv FF00 topk.json FF00 crop.png;
#     odd: a checkpoint.json) ---------------------------------------------------------------
import json

scan_dir = os.path.join(root, "scan_reader")
os.makedirs(scan_dir, exist_ok=True)
SEP = b"\xff\x00"


def scan_manifest(layers=(("conv", [2, 2, 2], "conv"),), images=("a.png", "b.png"), version=1):
    return {
        "version": version,
        "model": {"name": "m", "fingerprint": "f"},
        "layers": [{"name": n, "shape": s, "stem": st} for n, s, st in layers],
        "images": list(images),
        "skipped": [],
        "top_k": 2,
        "settings": {"size": [4, 4], "mean": [0, 0, 0], "std": [1, 1, 1], "fit": "stretch",
                     "crop_size": 8, "inputs_total": len(images)},
    }


STATS = ("layer,filter,count,mean,std,min,max,frac_nonpositive,dead\n"
         "conv,1,2,0.5,0.1,-1,2,0.25,false\nconv,2,2,-0.5,0.1,-2,-1,1,true\n")


def topk(entries_per_filter=((0, 1), (1,)), image_override=None):
    return {"layers": [{"name": "conv", "filters": [
        {"filter": k + 1, "top": [{"image": image_override if image_override is not None else i,
                                   "value": 1.0, "y": 0, "x": 1, "box": [0, 0, 3, 3]}
                                  for i in ims]}
        for k, ims in enumerate(entries_per_filter)]}]}


def scan_case(manifest, stats=STATS, top=None, png=b""):
    m = manifest if isinstance(manifest, bytes) else json.dumps(manifest).encode()
    t = json.dumps(top if top is not None else topk()).encode()
    return bytes([0]) + m + SEP + stats.encode() + SEP + t + SEP + png


tiny_png = png_header(8, 8)
write(scan_dir, "valid_scan", scan_case(scan_manifest(), png=tiny_png))
write(scan_dir, "manifest_not_json", scan_case(b"{\"version\": 1,"))
write(scan_dir, "manifest_version_2", scan_case(scan_manifest(version=2)))
write(scan_dir, "stem_traversal", scan_case(scan_manifest(layers=(("conv", [2, 2, 2], "../x"),))))
write(scan_dir, "topk_image_out_of_range", scan_case(scan_manifest(), top=topk(image_override=7)))
write(scan_dir, "stats_missing_filter", scan_case(scan_manifest(), stats=STATS.rsplit("conv,2", 1)[0]))
write(scan_dir, "stats_count_overflow", scan_case(
    scan_manifest(layers=(("conv", [2, 4294967296, 4294967296], "conv"),)),
    stats=STATS.replace("conv,1,2,", "conv,1,18446744073709551615,")))
write(scan_dir, "huge_filter_count", scan_case(
    scan_manifest(layers=(("conv", [1 << 40, 2, 2], "conv"),))))
write(scan_dir, "crop_png_100000x100000", scan_case(scan_manifest(), png=png_header(100_000, 100_000)))


def checkpoint(y=0, next_file=2, images=2, top_k=2):
    filt = {"count": 2, "mean": 0.5, "m2": 0.0, "min": -1.0, "max": 2.0, "nonpositive": 1,
            "values": 8}
    return bytes([1]) + json.dumps({
        "key": {"model_fingerprint": "f", "layers": ["conv"],
                "settings": scan_manifest()["settings"], "shard": None, "files": "2:x",
                "top_k": top_k, "batch": 2},
        "next_file": next_file, "images": images, "skipped": [],
        "layers": [{"name": "conv", "shape": [2, 2, 2], "filters": [filt, filt],
                    "top": [[{"image": 1, "value": 2.0, "y": y, "x": 0}], []]}],
    }).encode()


write(scan_dir, "checkpoint_valid", checkpoint())
write(scan_dir, "checkpoint_top_outside_map", checkpoint(y=2))
write(scan_dir, "checkpoint_more_files_than_inputs", checkpoint(next_file=3, images=3))
write(scan_dir, "checkpoint_not_json", bytes([1]) + b"{\"key\"")
print("wrote", len(os.listdir(scan_dir)), "scan_reader inputs")
