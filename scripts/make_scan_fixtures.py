#!/usr/bin/env python3
"""Build the `convlens scan` reference fixtures under tests/fixtures/scan/.

Regenerate:
    /root/.cache/convlens-venv/bin/python scripts/make_scan_fixtures.py

(venv: onnx==1.23.2 onnxruntime==1.32.0 numpy scikit-image==0.26.0, see
tests/fixtures/README.md.)  The folder tests/fixtures/scan/ is emptied and
rewritten; two runs on the same machine give identical bytes.

What it writes
--------------
scan/images/a_000.png .. a_031.png, scan/images/sub/b_000.png .. b_007.png
    40 RGB PNGs, exactly 32x32, cut from six photos bundled in the
    scikit-image wheel (skimage/data/*.png; no download).  Each image is a
    crop of 32*f x 32*f source pixels at a seeded random position, f in
    {1, 2, 4, 8}, downscaled by f with an exact block mean
    (floor(sum/f^2 + 0.5)), optionally flipped left-right.  Grey photos
    (camera, coins) are replicated to R=G=B.  The PNGs are written by a
    minimal writer here (IHDR/IDAT/IEND, 8-bit RGB, filter 0, zlib level 9,
    no other chunks).  Scan order = every file under images/ recursively,
    sorted by path compared component-wise (Rust PathBuf order):
    a_000..a_031 then sub/b_000..b_007 (indices 0..39).
scan/sources.json
    Provenance of each image (photo, crop origin, scale, flip).
scan/reference_tiny_alexnet.json, scan/reference_tiny_resnet.json
    Per-filter dataset statistics and top-9 images for every Conv node of
    tests/fixtures/mixed/tiny_{alexnet,resnet}.onnx, from onnxruntime (CPU,
    ORT_DISABLE_ALL, 1 thread, every node output exposed - the approach and
    helpers of scripts/make_conformance_fixtures.py).
    Preprocessing: x = ((p.astype(f32)/255) - mean_f32) / std_f32 per RGB
    channel, NCHW, no resize, mean=[0.485,0.456,0.406], std=[0.229,0.224,0.225].
    Layers: nodes with op_type "Conv" whose first output is 4-D, graph order,
    named by node name.  Per filter k (1-based), over the 40 images:
      count; mean = mean over images of the f64 spatial mean of channel k;
      std = population std of those per-image means; min / max over every
      value; frac_nonpositive = fraction of all values <= 0; dead = max <= 0;
      top = the 9 images with the largest spatial max, value descending, ties
      to the lower image index, each {"image","value","y","x"} with the first
      arg-max in row-major order.
scan/rf_dag.onnx, scan/rf_reference.json
    A small linear DAG (input "input" [1,3,24,24], opset 13, IR 8, weights
    uniform(0.5,1.5) from default_rng(424242), zero biases, no
    nonlinearities): Pad (asymmetric, constant 0) -> Conv k5 s2 dilation 2
    pads [1,2,2,1] -> ConvTranspose k3 s2 pads 1 output_padding 1 ->
    {Conv k3 p1, Conv k1} -> Add -> AveragePool k3 s2 pads 1
    (count_include_pad=0) -> {Conv k1, Conv k3 p1} -> Concat -> Conv k1.
    rf_reference.json: {"model","input_hw","layers":[{"name","op","shape":
    [C,H,W],"boxes","boxes_all_channels"}]}; for every node (all have a 4-D
    output) and every output position (row-major over y, x) of output
    channel 0, the bounding box [x0,y0,x1,y1] (half-open) of the input pixels
    (any of the 3 channels) it depends on, or null when it depends on none
    (the padded border of the Pad output).  "boxes_all_channels" is the same
    for the union over all output channels (differs only for the Concat).
    Found by perturbation in onnxruntime: baseline input all zeros (so every
    output is exactly 0), one input pixel (all 3 channels) set to 1.0 per
    batch item (dynamic-batch copy of the model, 96 per run); an output
    depends on the pixel iff it is > 0.  With positive weights, zero biases,
    zero padding and no cancellation this is the exact structural dependence
    (no underflow: the smallest positive response is asserted > 1e-6).  A
    relative threshold on a random baseline, as first planned, would miss
    deep edge paths whose effect is far below the baseline's float32 ulp.
    The boxes are cross-checked against an independent interval computation
    that counts only taps landing inside the map (exact for dilation: a
    plain clamped [start, end] window gives different boxes at 31..196
    positions per layer here, e.g. the dilated conv only reads even input
    rows/columns, so no box reaches row/column 23).
"""
from __future__ import annotations

import hashlib
import json
import shutil
import struct
import sys
import zlib
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import skimage
import skimage.data
from onnx import TensorProto, helper, numpy_helper, shape_inference

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "scripts"))
from make_conformance_fixtures import expose_all_outputs, session  # noqa: E402

OUT = REPO / "tests" / "fixtures" / "scan"
MIXED = REPO / "tests" / "fixtures" / "mixed"
MODELS = ["tiny_alexnet.onnx", "tiny_resnet.onnx"]

MEAN = [0.485, 0.456, 0.406]
STD = [0.229, 0.224, 0.225]
TOP_K = 9
N_A, N_B = 32, 8
SIZE = 32
IMAGE_SEED = 20240613  # picked from 100 seeds: every relative gap between adjacent top-k maxima (ranks 1..10)
#                        and between a top map's max and its runner-up position is >= 6.8e-5

# photo name -> (skimage.data function, bundled file name, licence note from its docstring)
PHOTOS = {
    "astronaut": ("astronaut", "astronaut.png"),
    "chelsea": ("chelsea", "chelsea.png"),
    "coffee": ("coffee", "coffee.png"),
    "immunohistochemistry": ("immunohistochemistry", "ihc.png"),
    "camera": ("camera", "camera.png"),
    "coins": ("coins", "coins.png"),
}
EXPECTED_VERSIONS = {"onnx": "1.23.2", "onnxruntime": "1.32.0", "skimage": "0.26.0"}


# ----------------------------------------------------------------------------
# images
# ----------------------------------------------------------------------------

def png_bytes(img: np.ndarray) -> bytes:
    """Minimal deterministic 8-bit RGB PNG (filter 0 on every row, zlib 9)."""
    h, w, c = img.shape
    assert c == 3 and img.dtype == np.uint8

    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)

    raw = b"".join(b"\x00" + img[y].tobytes() for y in range(h))
    return (b"\x89PNG\r\n\x1a\n"
            + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(raw, 9))
            + chunk(b"IEND", b""))


def load_photos() -> dict:
    data_dir = Path(skimage.data.__file__).resolve().parent
    photos = {}
    for name, (fn, fname) in PHOTOS.items():
        assert (data_dir / fname).is_file(), f"{fname} not bundled"
        a = np.asarray(getattr(skimage.data, fn)())
        assert a.dtype == np.uint8, (name, a.dtype)
        if a.ndim == 2:
            a = np.repeat(a[:, :, None], 3, axis=2)
        assert a.ndim == 3 and a.shape[2] == 3, (name, a.shape)
        photos[name] = np.ascontiguousarray(a)
    return photos


def make_images(photos: dict, seed: int = IMAGE_SEED):
    """Returns [(relative path, uint8 [32,32,3], provenance dict)] in scan order."""
    rng = np.random.default_rng(seed)
    names = list(PHOTOS)
    scales = [1, 2, 4, 8]
    out = []
    seen = set()
    rels = [f"images/a_{i:03d}.png" for i in range(N_A)] + [f"images/sub/b_{i:03d}.png" for i in range(N_B)]
    for i, rel in enumerate(rels):
        photo = names[i % len(names)]
        src = photos[photo]
        h, w, _ = src.shape
        while True:
            f = scales[int(rng.integers(0, len(scales)))]
            s = SIZE * f
            if s > min(h, w):
                continue
            y0 = int(rng.integers(0, h - s + 1))
            x0 = int(rng.integers(0, w - s + 1))
            flip = bool(rng.random() < 0.35)
            crop = src[y0:y0 + s, x0:x0 + s].astype(np.int64)
            sums = crop.reshape(SIZE, f, SIZE, f, 3).sum(axis=(1, 3))
            img = np.floor(sums / float(f * f) + 0.5).astype(np.uint8)  # exact: f*f is a power of 2
            if flip:
                img = img[:, ::-1]
            img = np.ascontiguousarray(img)
            # skip flat crops (sky, background) so that the maps vary
            if img.astype(np.float64).std() < 12.0:
                continue
            key = img.tobytes()
            if key in seen:
                continue
            seen.add(key)
            break
        out.append((rel, img, {"image": rel, "photo": photo, "y0": y0, "x0": x0,
                               "size": s, "scale": f, "flip_lr": flip}))
    # the order must be the component-wise path order
    assert [r for r, _, _ in out] == sorted((r for r, _, _ in out), key=lambda p: Path(p).parts)
    return out


def read_png(path: Path) -> np.ndarray:
    from PIL import Image
    with Image.open(path) as im:
        assert im.mode == "RGB" and im.size == (SIZE, SIZE), (path, im.mode, im.size)
        return np.asarray(im).copy()


# ----------------------------------------------------------------------------
# scan reference
# ----------------------------------------------------------------------------

def preprocess(img: np.ndarray) -> np.ndarray:
    mean = np.array(MEAN, np.float32)
    std = np.array(STD, np.float32)
    x = ((img.astype(np.float32) / np.float32(255.0)) - mean) / std  # HWC
    assert x.dtype == np.float32
    return np.ascontiguousarray(x.transpose(2, 0, 1)[None])


def conv_layers(model: onnx.ModelProto):
    return [(n.name, n.output[0]) for n in model.graph.node if n.op_type == "Conv"]


def scan_model(model_file: str, images: list, stats: dict) -> str:
    model = onnx.load(str(MIXED / model_file))
    exposed, _ = expose_all_outputs(model)
    sess = session(exposed)
    plain = session(model)
    in_name = sess.get_inputs()[0].name
    layers = conv_layers(model)
    assert len({n for n, _ in layers}) == len(layers)
    names = [o for _, o in layers]
    maps = {o: [] for o in names}
    for _, img, _ in images:
        x = preprocess(img)
        res = sess.run(names + [o.name for o in model.graph.output], {in_name: x})
        for o, r in zip(names, res):
            maps[o].append(r)
        for o, r, p in zip(model.graph.output, res[len(names):], plain.run(None, {in_name: x})):
            assert np.array_equal(r, p), o.name
    layer_json = []
    ties = {"top_adjacent_lt_1e-5": 0, "top_boundary_9_10_lt_1e-5": 0, "argmax_position_lt_1e-5": 0,
            "exact_zero_values": 0, "nonzero_values_abs_le_1e-5": 0, "dead_filters": 0}
    min_gap = (np.inf, None)
    min_arg_gap = (np.inf, None)
    for (lname, o) in layers:
        arr = np.stack([m[0] for m in maps[o]])  # [N, C, H, W] float32
        if arr.ndim != 4:
            continue
        n, c, h, w = arr.shape
        filters = []
        for k in range(c):
            ch = arr[:, k]                                   # [N,H,W] f32
            per_img_mean = ch.astype(np.float64).reshape(n, -1).mean(axis=1)
            mean = float(per_img_mean.mean())
            std = float(np.sqrt(((per_img_mean - mean) ** 2).mean()))
            mx = float(ch.max())
            flat = ch.reshape(n, -1)
            img_max = flat.max(axis=1)                       # f32
            arg = flat.argmax(axis=1)                        # first in row-major order
            order = sorted(range(n), key=lambda i: (-float(img_max[i]), i))
            top = [{"image": int(i), "value": float(img_max[i]),
                    "y": int(arg[i] // w), "x": int(arg[i] % w)} for i in order[:TOP_K]]
            filters.append({
                "filter": k + 1, "count": n, "mean": mean, "std": std,
                "min": float(ch.min()), "max": mx,
                "frac_nonpositive": float(np.count_nonzero(ch <= 0) / ch.size),
                "dead": bool(mx <= 0), "top": top,
            })
            # near-tie bookkeeping
            vals = [float(img_max[i]) for i in order]
            for j in range(min(TOP_K, n - 1)):
                a, b = vals[j], vals[j + 1]
                rel = abs(a - b) / max(abs(a), abs(b), 1e-30)
                if rel < min_gap[0]:
                    min_gap = (rel, f"{lname} filter {k + 1} ranks {j + 1}/{j + 2}")
                if rel < 1e-5:
                    ties["top_adjacent_lt_1e-5" if j < TOP_K - 1 else "top_boundary_9_10_lt_1e-5"] += 1
            for i in order[:TOP_K]:
                v = flat[i].astype(np.float64)
                m = v[arg[i]]
                rel = (m - np.delete(v, arg[i]).max()) / max(abs(m), 1e-30)
                if rel < min_arg_gap[0]:
                    min_arg_gap = (rel, f"{lname} filter {k + 1} image {i}")
                ties["argmax_position_lt_1e-5"] += int(rel < 1e-5)
            ties["exact_zero_values"] += int(np.count_nonzero(ch == 0))
            ties["nonzero_values_abs_le_1e-5"] += int(np.count_nonzero((np.abs(ch) <= 1e-5) & (ch != 0)))
            ties["dead_filters"] += int(mx <= 0)
        layer_json.append({"name": lname, "shape": [c, h, w], "filters": filters})
    stats[model_file] = {"layers": [(l["name"], l["shape"]) for l in layer_json], "near_ties": ties,
                         "smallest_relative_gap_in_top": [min_gap[0], min_gap[1]],
                         "smallest_relative_argmax_gap": [float(min_arg_gap[0]), min_arg_gap[1]]}

    # one filter per line
    lines = ['{"model": ' + json.dumps(model_file) + ",",
             ' "mean": ' + json.dumps(MEAN) + ",",
             ' "std": ' + json.dumps(STD) + ",",
             ' "images": ' + json.dumps([r for r, _, _ in images]) + ",",
             ' "layers": [']
    for li, layer in enumerate(layer_json):
        lines.append('  {"name": ' + json.dumps(layer["name"]) + ', "shape": ' + json.dumps(layer["shape"])
                     + ', "filters": [')
        fl = ["   " + json.dumps(f, allow_nan=False) for f in layer["filters"]]
        lines.append(",\n".join(fl))
        lines.append("  ]}" + ("," if li + 1 < len(layer_json) else ""))
    lines.append(" ]}")
    text = "\n".join(lines) + "\n"
    assert json.loads(text)["layers"] == json.loads(json.dumps(layer_json))
    return text


# ----------------------------------------------------------------------------
# receptive-field DAG
# ----------------------------------------------------------------------------

class Lin:
    """Linear DAG builder; records spatial geometry for the interval check."""

    def __init__(self, seed: int):
        self.rng = np.random.default_rng(seed)
        self.nodes, self.inits, self.geo, self.ch = [], [], {}, {"input": 3}

    def w(self, name, shape):
        self.inits.append(numpy_helper.from_array(self.rng.uniform(0.5, 1.5, size=shape).astype(np.float32), name))
        return name

    def zeros(self, name, n):
        self.inits.append(numpy_helper.from_array(np.zeros(n, np.float32), name))
        return name

    def add(self, op, name, inputs, geo, c_out, **attrs):
        out = f"{name}_out"
        self.nodes.append(helper.make_node(op, inputs, [out], name=name, **attrs))
        self.geo[out] = geo
        self.ch[out] = c_out
        return out

    def conv(self, name, x, c_out, k, s=1, pads=(0, 0, 0, 0), d=1):
        c_in = self.ch[x]
        ins = [x, self.w(f"{name}.weight", [c_out, c_in, k, k]), self.zeros(f"{name}.bias", c_out)]
        return self.add("Conv", name, ins, ("win", x, k, s, pads, d), c_out,
                        kernel_shape=[k, k], strides=[s, s], pads=list(pads), dilations=[d, d])


def rf_model():
    """Order chosen so the receptive fields stay smaller than the 24x24 input
    (large kernels where the accumulated stride is 1)."""
    b = Lin(seed=424242)
    x = "input"
    # Pad pads are [x1_begin, x2_begin, ..., x1_end, ...]; conv pads are [top, left, bottom, right]
    b.inits.append(numpy_helper.from_array(np.array([0, 0, 1, 2, 0, 0, 2, 1], np.int64), "pad_in.pads"))
    h = b.add("Pad", "pad_in", [x, "pad_in.pads"], ("pad", x, (1, 2, 2, 1)), 3, mode="constant")  # [3,27,27]
    # dilation 2 right after the Pad: some edge taps fall on padded (null) or
    # skipped positions, so the exact box differs from a clamped [start, end] span
    h = b.conv("conv_k5s2d2", h, 4, 5, 2, (1, 2, 2, 1), d=2)                         # [4,11,11]
    ct_ins = [h, b.w("deconv_k3s2.weight", [4, 3, 3, 3]), b.zeros("deconv_k3s2.bias", 3)]
    h = b.add("ConvTranspose", "deconv_k3s2", ct_ins, ("tconv", h, 3, 2, (1, 1, 1, 1), 1), 3,
              kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1], output_padding=[1, 1])  # [3,22,22]
    a = b.conv("branch_a_k3", h, 3, 3, 1, (1, 1, 1, 1))                              # [3,22,22]
    c = b.conv("branch_b_k1", h, 3, 1)                                              # [3,22,22]
    h = b.add("Add", "add_ab", [a, c], ("sum", [a, c]), 3)                           # [3,22,22]
    h = b.add("AveragePool", "avgpool_k3s2", [h], ("win", h, 3, 2, (1, 1, 1, 1), 1), 3,
              kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1], count_include_pad=0)  # [3,11,11]
    p = b.conv("branch_c_k1", h, 2, 1)                                              # [2,11,11]
    q = b.conv("branch_d_k3", h, 2, 3, 1, (1, 1, 1, 1))                              # [2,11,11]
    h = b.add("Concat", "concat_cd", [p, q], ("cat", [p, q]), 4, axis=1)             # [4,11,11]
    h8 = b.conv("conv_out_k1", h, 2, 1)                                             # [2,11,11]
    g = helper.make_graph(b.nodes, "rf_dag",
                          [helper.make_tensor_value_info(x, TensorProto.FLOAT, [1, 3, 24, 24])],
                          [helper.make_tensor_value_info(h8, TensorProto.FLOAT, None)], initializer=b.inits)
    m = helper.make_model(g, producer_name="convlens-fixtures", producer_version="1",
                          opset_imports=[helper.make_opsetid("", 13)])
    m.ir_version = 8
    inf = shape_inference.infer_shapes(m, strict_mode=True)
    del m.graph.output[:]
    m.graph.output.extend(inf.graph.output)
    onnx.checker.check_model(m, full_check=True)
    return m, b.geo


def interval_boxes(geo, shapes, out, hin, win):
    """Independent structural RF: per axis, hull of the input indices each output
    index depends on (None if none).  Returns (rows[H] , cols[W]) lists of (lo, hi) or None."""
    cache = {}

    def axis(name, ax):  # ax 0 = rows (H), 1 = cols (W)
        key = (name, ax)
        if key in cache:
            return cache[key]
        if name == "input":
            n = hin if ax == 0 else win
            r = [(i, i) for i in range(n)]
            cache[key] = r
            return r
        g = geo[name]
        n_out = shapes[name][2 + ax]
        kind = g[0]
        res = []
        if kind in ("sum", "cat"):
            parts = [axis(s, ax) for s in g[1]]
            for i in range(n_out):
                ivs = [p[i] for p in parts if p[i] is not None]
                res.append((min(v[0] for v in ivs), max(v[1] for v in ivs)) if ivs else None)
        elif kind == "pad":
            src = axis(g[1], ax)
            before = g[2][0] if ax == 0 else g[2][1]
            for i in range(n_out):
                j = i - before
                res.append(src[j] if 0 <= j < len(src) else None)
        elif kind in ("win", "tconv"):
            _, src_name, k, s, pads, d = g
            src = axis(src_name, ax)
            before = pads[0] if ax == 0 else pads[1]
            for i in range(n_out):
                taps = []
                for t in range(k):
                    if kind == "win":
                        j = i * s - before + t * d
                        if 0 <= j < len(src):
                            taps.append(j)
                    else:  # ConvTranspose: out i = j*s - before + t*d
                        num = i + before - t * d
                        if num % s == 0 and 0 <= num // s < len(src):
                            taps.append(num // s)
                ivs = [src[j] for j in taps if src[j] is not None]
                res.append((min(v[0] for v in ivs), max(v[1] for v in ivs)) if ivs else None)
        else:
            raise ValueError(kind)
        cache[key] = res
        return res

    rows, cols = axis(out, 0), axis(out, 1)
    return [[None if rows[y] is None or cols[x] is None else
             [cols[x][0], rows[y][0], cols[x][1] + 1, rows[y][1] + 1]
             for x in range(len(cols))] for y in range(len(rows))]


def rf_reference(model: onnx.ModelProto, geo, stats: dict) -> str:
    hin = win = 24
    dyn = onnx.ModelProto()
    dyn.CopyFrom(model)
    dim0 = dyn.graph.input[0].type.tensor_type.shape.dim[0]
    dim0.Clear()
    dim0.dim_param = "N"
    del dyn.graph.output[:]
    outs = [n.output[0] for n in model.graph.node]
    for o in outs:
        dyn.graph.output.append(helper.make_tensor_value_info(o, TensorProto.FLOAT, None))
    sess = session(dyn)
    npix = hin * win
    dep = {}   # out -> bool [npix, C, H, W]
    chunk = 96
    min_pos = np.inf   # smallest positive response (underflow margin)
    for s0 in range(0, npix, chunk):
        idx = np.arange(s0, min(npix, s0 + chunk))
        x = np.zeros((len(idx), 3, hin, win), np.float32)
        x[np.arange(len(idx)), :, idx // win, idx % win] = 1.0
        for o, r in zip(outs, sess.run(outs, {"input": x})):
            assert np.all(r >= 0), o
            dep.setdefault(o, []).append(r > 0)
            if np.any(r > 0):
                min_pos = min(min_pos, float(r[r > 0].min()))
    base = sess.run(outs, {"input": np.zeros((1, 3, hin, win), np.float32)})
    assert all(np.all(r == 0) for r in base)
    shapes = {}
    layers = []
    for node, o in zip(model.graph.node, outs):
        d = np.concatenate(dep[o])            # [npix, C, H, W]
        if d.ndim != 4:
            continue
        _, c, h, w = d.shape
        shapes[o] = (1, c, h, w)

        def boxes_of(mask):  # mask [npix, H, W]
            out = []
            for y in range(h):
                for xx in range(w):
                    pix = np.nonzero(mask[:, y, xx])[0]
                    if pix.size == 0:
                        out.append(None)
                        continue
                    py, px = pix // win, pix % win
                    out.append([int(px.min()), int(py.min()), int(px.max()) + 1, int(py.max()) + 1])
            return out

        b0 = boxes_of(d[:, 0])
        ball = boxes_of(d.any(axis=1))
        expect = [bx for row in interval_boxes(geo, shapes, o, hin, win) for bx in row]
        if node.op_type != "Concat":
            assert b0 == expect, (node.name, "interval check failed")
        assert ball == expect, (node.name, "interval check (all channels) failed")
        layers.append({"name": node.name, "op": node.op_type, "shape": [c, h, w], "boxes": b0,
                       "boxes_all_channels": ball})
    assert min_pos > 1e-6, min_pos
    stats["rf"] = {"layers": [(l["name"], l["op"], l["shape"], sum(b is None for b in l["boxes"]))
                              for l in layers],
                   "smallest_positive_response": min_pos,
                   "concat_channel0_differs": [l["name"] for l in layers if l["boxes"] != l["boxes_all_channels"]]}
    lines = ['{"model": "rf_dag.onnx", "input_hw": [24, 24],', ' "layers": [']
    for i, l in enumerate(layers):
        lines.append("  " + json.dumps(l) + ("," if i + 1 < len(layers) else ""))
    lines.append(" ]}")
    return "\n".join(lines) + "\n"


# ----------------------------------------------------------------------------

def main() -> int:
    vers = {"onnx": onnx.__version__, "onnxruntime": ort.__version__, "skimage": skimage.__version__}
    if vers != EXPECTED_VERSIONS and "--any-version" not in sys.argv[1:]:
        print(f"expected {EXPECTED_VERSIONS}, found {vers} (use --any-version)", file=sys.stderr)
        return 2
    print(f"onnx {onnx.__version__}, onnxruntime {ort.__version__}, numpy {np.__version__}, "
          f"scikit-image {skimage.__version__}, zlib {zlib.ZLIB_RUNTIME_VERSION}")
    if OUT.exists():
        shutil.rmtree(OUT)
    (OUT / "images" / "sub").mkdir(parents=True)

    images = make_images(load_photos())
    for rel, img, _ in images:
        p = OUT / rel
        p.write_bytes(png_bytes(img))
        assert np.array_equal(read_png(p), img), rel
    (OUT / "sources.json").write_text(
        "[\n" + ",\n".join(json.dumps(s) for _, _, s in images) + "\n]\n")

    stats = {}
    for mf in MODELS:
        text = scan_model(mf, images, stats)
        (OUT / f"reference_{Path(mf).stem}.json").write_text(text)

    model, geo = rf_model()
    onnx.save(model, str(OUT / "rf_dag.onnx"))
    (OUT / "rf_reference.json").write_text(rf_reference(model, geo, stats))

    print(json.dumps(stats))
    for mf in MODELS:
        for key in ("smallest_relative_gap_in_top", "smallest_relative_argmax_gap"):
            gap = stats[mf][key]
            if gap[0] < 1e-5:
                print(f"WARNING: {mf}: {key} {gap[0]:.3g} at {gap[1]}", file=sys.stderr)
    total = 0
    for f in sorted(OUT.rglob("*")):
        if f.is_file():
            total += f.stat().st_size
            print(f"{hashlib.sha256(f.read_bytes()).hexdigest()[:16]}  {f.stat().st_size:7d}  {f.relative_to(OUT)}")
    print(f"total {total} bytes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
