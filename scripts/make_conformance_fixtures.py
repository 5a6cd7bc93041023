#!/usr/bin/env python3
"""Build the ONNX-engine conformance fixtures under tests/fixtures/{light,mixed,node}.

Purpose
-------
ConvLens' ONNX engine is checked against onnxruntime (ORT) on three kinds of
fixture, all produced by this one script:

  light/  The nine "light" model-zoo graphs shipped inside the `onnx` Python
          package (onnx/backend/test/data/light/light_*.onnx: AlexNet, ZFNet-512,
          VGG19, SqueezeNet, ResNet-50, Inception v1/v2, DenseNet-121,
          ShuffleNet; opset 9, IR 3, every weight a ConstantOfShape node).
          Each .onnx is copied byte for byte as <short>.onnx and gets a
          <short>.ref.json with ORT's value of EVERY node output.
  mixed/  Three small hand-built graphs with seeded random weights (so that
          channels differ, unlike the light models): tiny_alexnet,
          tiny_resnet, tiny_shapechain.  <name>.onnx + <name>.ref.json.
  node/   ONNX backend node tests (model.onnx + test_data_set_0/*.pb) for the
          operator subset ConvLens implements, plus node/INDEX.json.

Reference run (light/ and mixed/)
---------------------------------
* Input: the graph's one data input (the graph input that is not an
  initializer).  For flat row-major index i:
      u = ((i * 2654435761) % 2**32) / 2**32   (exact integers, then float64)
      x[i] = float32(2*u - 1)
  The Rust test regenerates it, so no input file is written.
* onnxruntime, CPUExecutionProvider, graph optimisations disabled
  (ORT_DISABLE_ALL), 1 intra-op thread, every non-empty node output added
  as a graph output (types from onnx.shape_inference).
* <x>.ref.json: {"model","input_name","input_shape","input_formula",
  "tensors":[{name,node,op,node_index,dtype,shape,max_abs,sum,abs_sum,
  values|samples}, ... in graph.node order], "outputs":[graph outputs]}.
  "values" (all values, flattened row-major) when numel <= 2048, otherwise
  "samples": [[flat_index, value], ...] at 256 indices drawn by
  np.random.default_rng(0).choice(numel, 256, replace=False) (a fresh
  generator per tensor), sorted.  sum/abs_sum are float64 sums of the
  values; float32 values are written as the shortest decimal that parses back
  to the same float32.  To keep each file under 400 KB (DenseNet has 1746
  node outputs) the budget is lowered per model when needed: first for
  tensors that do not depend on the data input (weights made by
  ConstantOfShape etc.), then for the rest, along the ladder
  (values if numel<=V else K samples) = (2048,256) (1024,128) (512,64)
  (256,32) (128,16) (64,8) (32,4) (16,2) (4,1) (0,1).  The k samples are
  then drawn with the same rule (default_rng(0).choice(numel, k)).  A
  consumer should simply use whichever of "values"/"samples" is present.
  The level each file got is printed by this script and listed in
  tests/fixtures/README.md.
* light/: the shipped light_<name>_output_0.pb was produced by onnx's backend
  test runner (onnx.backend.test.runner.Runner.generate_dummy_data with
  random=False: x = arange(n).reshape(shape) / n as float32).  This script
  runs ORT on that input and asserts the match with the runner's rtol/atol.

Node tests (node/)
------------------
The onnx 1.23.2 wheel and sdist on PyPI do NOT contain
onnx/backend/test/data/node.  The files are therefore produced from the test
case definitions that the package does ship (onnx.backend.test.case.node;
each export is run after np.random.seed(0)), serialised exactly as onnx's own
`backend-test-tools generate-data` does (model.onnx =
TestCase.model.SerializeToString(), input_j.pb / output_j.pb =
numpy_helper.from_array(arr, graph.input/output[j].name)).  This is the
generator that produced the upstream data/node folder.  Every copied test is
also run through ORT and compared with its expected outputs.

Versions used
-------------
Python 3.11, onnx 1.23.2, onnxruntime 1.32.0, numpy 2.4.6 (the venv at
/root/.cache/convlens-venv, deliberately outside the repo).  The script
refuses other onnx versions unless --any-version is given (other versions
ship different light models / node tests).  ORT results may differ in the
last bits on another CPU (different MLAS kernels): compare with tolerances.

Rerun
-----
    python -m venv /root/.cache/convlens-venv   # once
    /root/.cache/convlens-venv/bin/pip install onnx==1.23.2 onnxruntime==1.32.0 numpy
    /root/.cache/convlens-venv/bin/python scripts/make_conformance_fixtures.py
    # options: --parts light,mixed,node   --out tests/fixtures
It rewrites only tests/fixtures/{light,mixed,node}/ (each folder is emptied
first).  Running it twice gives identical files on the same machine.
"""
from __future__ import annotations

import argparse
import copy
import json
import math
import shutil
import sys
import warnings
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper, shape_inference

REPO = Path(__file__).resolve().parent.parent
ONNX_DIR = Path(onnx.__file__).resolve().parent
LIGHT_SRC = ONNX_DIR / "backend" / "test" / "data" / "light"

EXPECTED_VERSIONS = {"onnx": "1.23.2", "onnxruntime": "1.32.0"}

INPUT_FORMULA = "u=((i*2654435761)%2^32)/2^32; x=f32(2u-1)"
MAX_REF_BYTES = 400_000
# (values if numel <= V, else K samples); first entry is the nominal format.
LEVELS = [(2048, 256), (1024, 128), (512, 64), (256, 32), (128, 16), (64, 8),
          (32, 4), (16, 2), (4, 1), (0, 1)]

# short name -> (file stem in onnx/backend/test/data/light, rtol, atol of the
# onnx backend model test: onnx/backend/test/case/model/__init__.py)
LIGHT_MODELS = {
    "alexnet": ("bvlc_alexnet", 1e-3, 1e-7),
    "zfnet512": ("zfnet512", 1e-3, 1e-7),
    "vgg19": ("vgg19", 1e-3, 1e-7),
    "squeezenet": ("squeezenet", 1e-3, 1e-7),
    "resnet50": ("resnet50", 1e-3, 1e-7),
    "inception_v1": ("inception_v1", 1e-3, 1e-7),
    "inception_v2": ("inception_v2", 1e-3, 1e-7),
    "densenet121": ("densenet121", 2e-3, 1e-7),
    "shufflenet": ("shufflenet", 1e-3, 1e-7),
}


# ----------------------------------------------------------------------------
# helpers
# ----------------------------------------------------------------------------

def det_input(shape) -> np.ndarray:
    """u = ((i*2654435761) % 2^32) / 2^32 ; x = float32(2u - 1), row-major i."""
    n = int(np.prod(shape, dtype=np.int64))
    assert n * 2654435761 < 2**64
    i = np.arange(n, dtype=np.uint64)
    h = (i * np.uint64(2654435761)) % np.uint64(2**32)
    u = h.astype(np.float64) / 4294967296.0
    x = (u * 2.0 - 1.0).astype(np.float32).reshape(shape)
    # spot-check against the literal Python-int formula
    for k in (0, 1, 2, n // 3, n - 1):
        uu = ((k * 2654435761) % 4294967296) / 4294967296.0
        assert x.reshape(-1)[k] == np.float32(uu * 2.0 - 1.0)
    return x


def session(model: onnx.ModelProto) -> ort.InferenceSession:
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    so.intra_op_num_threads = 1
    so.inter_op_num_threads = 1
    so.log_severity_level = 3
    return ort.InferenceSession(model.SerializeToString(), so,
                                providers=["CPUExecutionProvider"])


def f32_num(v) -> float:
    """Shortest decimal that round-trips the float32 value, as a Python float."""
    f = np.float32(v)
    if not np.isfinite(f):
        raise ValueError(f"non-finite value {f}")
    out = float(str(f))
    assert np.float32(out) == f and math.copysign(1.0, out) == math.copysign(1.0, float(f))
    return out


def num(v, dtype: np.dtype):
    if dtype == np.float32:
        return f32_num(v)
    if np.issubdtype(dtype, np.integer):
        return int(v)
    if dtype == np.bool_:
        return bool(v)
    f = float(v)
    assert math.isfinite(f)
    return f


def data_input_of(model: onnx.ModelProto):
    inits = {t.name for t in model.graph.initializer}
    produced = {o for n in model.graph.node for o in n.output}
    cands = [i for i in model.graph.input if i.name not in inits and i.name not in produced]
    assert len(cands) == 1, [c.name for c in cands]
    vi = cands[0]
    shape = [d.dim_value for d in vi.type.tensor_type.shape.dim]
    assert all(s > 0 for s in shape), shape
    assert vi.type.tensor_type.elem_type == TensorProto.FLOAT
    return vi.name, shape


def expose_all_outputs(model: onnx.ModelProto):
    """Copy of `model` with every non-empty node output as a graph output.
    Returns (model, names typed by the schema fallback)."""
    m = copy.deepcopy(model)
    untyped = []
    inferred = shape_inference.infer_shapes(m)
    types = {}
    for v in list(inferred.graph.input) + list(inferred.graph.value_info) + list(inferred.graph.output):
        types[v.name] = v
    present = {o.name for o in m.graph.output}
    for node in m.graph.node:
        for o in node.output:
            if not o or o in present:
                continue
            vi = types.get(o)
            if vi is None or not vi.type.tensor_type.elem_type:
                # shape inference leaves some outputs untyped (e.g. the mask of
                # Dropout-7, typed "T" like its input): take the elem type from
                # the input that shares the output's type variable, no shape.
                elem = _elem_type_from_schema(m, node, list(node.output).index(o), types)
                if elem is None:
                    raise RuntimeError(f"shape inference gave no type for {o!r}")
                vi = helper.make_tensor_value_info(o, elem, None)
                untyped.append(o)
            m.graph.output.append(copy.deepcopy(vi))
            present.add(o)
    return m, untyped


def _elem_type_from_schema(model, node, out_idx, types):
    opset = next(o.version for o in model.opset_import if o.domain in ("", "ai.onnx"))
    schema = onnx.defs.get_schema(node.op_type, opset, node.domain)
    tvar = schema.outputs[min(out_idx, len(schema.outputs) - 1)].type_str
    for i, formal in enumerate(schema.inputs):
        if formal.type_str == tvar and i < len(node.input) and node.input[i] in types:
            et = types[node.input[i]].type.tensor_type.elem_type
            if et:
                return et
    return None


def depends_on(model: onnx.ModelProto, root: str) -> set:
    dep = {root}
    for node in model.graph.node:
        if any(i in dep for i in node.input if i):
            dep.update(o for o in node.output if o)
    return dep


def payload(arr: np.ndarray, level):
    vmax, k = level
    flat = arr.reshape(-1)
    n = flat.size
    if n <= vmax:
        return "values", [num(v, arr.dtype) for v in flat]
    rng = np.random.default_rng(0)
    idx = np.sort(rng.choice(n, size=min(k, n), replace=False))
    return "samples", [[int(i), num(flat[i], arr.dtype)] for i in idx]


def tensor_json(base: dict, arr: np.ndarray, level) -> str:
    d = dict(base)
    key, val = payload(arr, level)
    d[key] = val
    return json.dumps(d, separators=(",", ":"), allow_nan=False)


def reference(model: onnx.ModelProto, model_file: str, out_json: Path, label: str):
    """Run ORT with every node output exposed; write the ref JSON. Returns the
    final graph outputs and a summary dict."""
    name, shape = data_input_of(model)
    x = det_input(shape)

    exposed, untyped = expose_all_outputs(model)
    sess = session(exposed)
    ort_inputs = [i.name for i in sess.get_inputs()]
    assert ort_inputs == [name], (ort_inputs, name)
    out_names = [o.name for o in exposed.graph.output]
    results = dict(zip(out_names, sess.run(out_names, {name: x})))

    # exposing outputs must not change the model's own outputs
    plain = session(model).run(None, {name: x})
    for o, p in zip(model.graph.output, plain):
        assert np.array_equal(results[o.name], p, equal_nan=True), o.name

    dep = depends_on(model, name)
    entries = []  # (is_data_dependent, base, arr)
    for idx, node in enumerate(model.graph.node):
        for o in node.output:
            if not o:
                continue
            arr = np.asarray(results[o])
            a64 = arr.astype(np.float64)
            base = {
                "name": o, "node": node.name, "op": node.op_type, "node_index": idx,
                "dtype": arr.dtype.name, "shape": list(arr.shape),
                "max_abs": float(np.abs(a64).max()) if arr.size else 0.0,
                "sum": float(a64.sum()), "abs_sum": float(np.abs(a64).sum()),
            }
            if arr.dtype == np.float32:
                base["max_abs"] = f32_num(np.abs(arr).max()) if arr.size else 0.0
            entries.append((o in dep, base, arr))

    cache = {}

    def size_at(i, level):
        key = (i, level)
        if key not in cache:
            cache[key] = len(tensor_json(entries[i][1], entries[i][2], level)) + 2
        return cache[key]

    head = json.dumps({"model": model_file, "input_name": name, "input_shape": shape,
                       "input_formula": INPUT_FORMULA}, separators=(",", ":"))[:-1]
    tail = ',"outputs":' + json.dumps([o.name for o in model.graph.output]) + "}\n"
    fixed = len(head) + len(',"tensors":[\n') + len("]") + len(tail)
    chosen = None
    for di, dl in enumerate(LEVELS):
        for cl in LEVELS[di:]:
            total = fixed + sum(size_at(i, dl if e[0] else cl) for i, e in enumerate(entries))
            if total < MAX_REF_BYTES:
                chosen = (dl, cl)
                break
        if chosen:
            break
    if chosen is None:
        raise RuntimeError(f"{label}: cannot fit ref json under {MAX_REF_BYTES} bytes")
    dl, cl = chosen
    lines = [tensor_json(b, a, dl if d else cl) for d, b, a in entries]
    text = head + ',"tensors":[\n' + ",\n".join(lines) + "\n]" + tail
    json.loads(text)  # sanity
    out_json.write_text(text)
    summary = {
        "label": label, "input": name, "shape": shape, "tensors": len(entries),
        "data_dependent": sum(1 for e in entries if e[0]),
        "level_data": dl, "level_const": cl, "bytes": len(text),
        "typed_without_shape_inference": untyped,
    }
    return {o.name: results[o.name] for o in model.graph.output}, summary


def check_model_graph_inputs(model: onnx.ModelProto) -> dict:
    inits = {t.name for t in model.graph.initializer}
    produced = {o for n in model.graph.node for o in n.output}
    ins = [i.name for i in model.graph.input]
    return {
        "graph_inputs": len(ins),
        "inputs_that_are_initializers": sum(1 for i in ins if i in inits),
        "inputs_that_are_node_outputs": [i for i in ins if i in produced],
        "initializers_not_in_inputs": sorted(inits - set(ins)),
    }


# ----------------------------------------------------------------------------
# A. light models
# ----------------------------------------------------------------------------

def make_light(out: Path) -> list:
    dst = out / "light"
    reset_dir(dst)
    report = []
    for short, (stem, rtol, atol) in LIGHT_MODELS.items():
        src = LIGHT_SRC / f"light_{stem}.onnx"
        shutil.copyfile(src, dst / f"{short}.onnx")
        model = onnx.load(str(src))
        onnx.checker.check_model(model)
        info = check_model_graph_inputs(model)
        outs, summ = reference(model, f"{short}.onnx", dst / f"{short}.ref.json", short)
        summ.update(info)
        summ["opset"] = model.opset_import[0].version
        summ["ir_version"] = model.ir_version

        # shipped expected output: produced by onnx's backend runner from
        # x = arange(n).reshape(shape)/n (Runner.generate_dummy_data, random=False)
        name, shape = data_input_of(model)
        n = int(np.prod(shape))
        x_runner = (np.arange(n).reshape(shape) / n).astype(np.float32)
        got = session(model).run(None, {name: x_runner})
        exp_pb = LIGHT_SRC / f"light_{stem}_output_0.pb"
        expected = numpy_helper.to_array(onnx.load_tensor(str(exp_pb)))
        np.testing.assert_allclose(got[0], expected, rtol=rtol, atol=atol)
        summ["output_0_pb"] = {
            "match": True, "max_abs_diff": float(np.abs(got[0].astype(np.float64) - expected).max()),
            "expected_is_constant": bool(np.all(expected == expected.reshape(-1)[0])),
            "det_input_output_also_matches": bool(np.allclose(
                outs[model.graph.output[0].name], expected, rtol=rtol, atol=atol)),
        }
        report.append(summ)
        print(f"[light] {short}: {json.dumps(summ)}")
    return report


# ----------------------------------------------------------------------------
# B. small random-weight models
# ----------------------------------------------------------------------------

class Builder:
    def __init__(self, seed: int):
        self.rng = np.random.default_rng(seed)
        self.nodes = []
        self.inits = []
        self.names = set()

    def const(self, name: str, arr) -> str:
        arr = np.asarray(arr)
        self.inits.append(numpy_helper.from_array(arr, name))
        return name

    def weight(self, name: str, shape, fan_in: int | None = None, std: float | None = None) -> str:
        if std is None:
            fan_in = fan_in or int(np.prod(shape[1:]))
            std = float(np.clip(math.sqrt(2.0 / fan_in), 0.1, 0.3))
        return self.const(name, (self.rng.standard_normal(shape) * std).astype(np.float32))

    def bias(self, name: str, n: int, std: float = 0.1) -> str:
        return self.const(name, (self.rng.standard_normal(n) * std).astype(np.float32))

    def uniform(self, name: str, shape, lo: float, hi: float) -> str:
        return self.const(name, self.rng.uniform(lo, hi, size=shape).astype(np.float32))

    def node(self, op: str, name: str, inputs, n_out: int = 1, **attrs):
        assert name not in self.names, name
        self.names.add(name)
        outs = [f"{name}_out"] if n_out == 1 else [f"{name}_out{i}" for i in range(n_out)]
        self.nodes.append(helper.make_node(op, list(inputs), outs, name=name, **attrs))
        return outs[0] if n_out == 1 else outs

    def bn(self, name: str, x: str, c: int, eps: float = 1e-5) -> str:
        s = self.uniform(f"{name}.scale", [c], 0.5, 1.5)
        b = self.bias(f"{name}.bias", c)
        m = self.bias(f"{name}.mean", c)
        v = self.uniform(f"{name}.var", [c], 0.5, 1.5)
        return self.node("BatchNormalization", name, [x, s, b, m, v], epsilon=eps)

    def model(self, graph_name: str, x_name: str, x_shape, outputs, opset: int) -> onnx.ModelProto:
        g = helper.make_graph(
            self.nodes, graph_name,
            [helper.make_tensor_value_info(x_name, TensorProto.FLOAT, x_shape)],
            [helper.make_tensor_value_info(o, TensorProto.FLOAT, None) for o in outputs],
            initializer=self.inits)
        m = helper.make_model(g, producer_name="convlens-fixtures", producer_version="1",
                              opset_imports=[helper.make_opsetid("", opset)])
        m.ir_version = 8
        # give the outputs their inferred shapes
        inf = shape_inference.infer_shapes(m, strict_mode=True)
        del m.graph.output[:]
        m.graph.output.extend(inf.graph.output)
        onnx.checker.check_model(m, full_check=True)
        return m


def tiny_alexnet() -> onnx.ModelProto:
    b = Builder(seed=101)
    x = "input"
    h = b.node("Conv", "conv1", [x, b.weight("conv1.weight", [16, 3, 5, 5]), b.bias("conv1.bias", 16)],
               kernel_shape=[5, 5], strides=[2, 2], pads=[1, 2, 2, 1])            # [1,16,16,16]
    h = b.node("Relu", "relu1", [h])
    h = b.node("LRN", "lrn1", [h], size=5, alpha=0.02, beta=0.75, bias=2.0)
    h = b.node("MaxPool", "pool1", [h], kernel_shape=[3, 3], strides=[2, 2], ceil_mode=1)  # [1,16,8,8]
    # conv2 uses a larger std (0.5) so that some outputs exceed 6 and ReLU6's upper clamp is exercised
    h = b.node("Conv", "conv2", [h, b.weight("conv2.weight", [24, 8, 3, 3], std=0.5), b.bias("conv2.bias", 24)],
               kernel_shape=[3, 3], group=2, dilations=[2, 2], pads=[2, 2, 2, 2])  # [1,24,8,8]
    h = b.node("Clip", "relu6_2", [h, b.const("relu6_2.min", np.array(0.0, np.float32)),
                                   b.const("relu6_2.max", np.array(6.0, np.float32))])
    h = b.node("AveragePool", "pool2", [h], kernel_shape=[3, 3], strides=[1, 1], pads=[1, 1, 1, 1],
               count_include_pad=0)                                                  # [1,24,8,8]
    h = b.node("Conv", "conv3", [h, b.weight("conv3.weight", [32, 24, 3, 3]), b.bias("conv3.bias", 32)],
               kernel_shape=[3, 3], pads=[1, 1, 1, 1])                               # [1,32,8,8]
    h = b.node("LeakyRelu", "lrelu3", [h], alpha=0.1)
    h = b.node("AveragePool", "pool3", [h], kernel_shape=[2, 2], strides=[2, 2], pads=[1, 1, 1, 1],
               count_include_pad=1)                                                  # [1,32,5,5]
    h = b.node("Flatten", "flatten", [h], axis=1)                                    # [1,800]
    h = b.node("Gemm", "fc1", [h, b.weight("fc1.weight", [64, 800]), b.bias("fc1.bias", 64)], transB=1)
    h = b.node("Relu", "relu_fc1", [h])
    h = b.node("Gemm", "fc2", [h, b.weight("fc2.weight", [64, 10], std=0.1), b.bias("fc2.bias", 10)])
    h = b.node("Softmax", "prob", [h], axis=-1)
    return b.model("tiny_alexnet", x, [1, 3, 32, 32], [h], opset=13)


def tiny_resnet() -> onnx.ModelProto:
    # opset 14: HardSwish does not exist before opset 14.
    b = Builder(seed=202)
    x = "input"
    i64 = lambda name, v: b.const(name, np.array(v, np.int64))  # noqa: E731
    # stem
    h = b.node("Conv", "stem.conv", [x, b.weight("stem.conv.weight", [16, 3, 3, 3])],
               kernel_shape=[3, 3], pads=[1, 1, 1, 1])                               # [1,16,32,32]
    h = b.bn("stem.bn", h, 16)
    h = b.node("Relu", "stem.relu", [h])
    stem = b.node("MaxPool", "stem.pool", [h], kernel_shape=[2, 2], strides=[2, 2])  # [1,16,16,16]
    # residual block
    h = b.node("Conv", "block1.conv1", [stem, b.weight("block1.conv1.weight", [16, 16, 3, 3])],
               kernel_shape=[3, 3], pads=[1, 1, 1, 1])
    h = b.bn("block1.bn1", h, 16)
    h = b.node("Relu", "block1.relu1", [h])
    h = b.node("Conv", "block1.conv2", [h, b.weight("block1.conv2.weight", [16, 16, 3, 3]),
                                        b.bias("block1.conv2.bias", 16)],
               kernel_shape=[3, 3], pads=[1, 1, 1, 1])
    h = b.bn("block1.bn2", h, 16)
    h = b.node("Add", "block1.add", [h, stem])
    block1 = b.node("Relu", "block1.relu_out", [h])
    # two-branch block + concat + channel shuffle
    a = b.node("Conv", "block2.pw_a", [block1, b.weight("block2.pw_a.weight", [8, 16, 1, 1]),
                                       b.bias("block2.pw_a.bias", 8)], kernel_shape=[1, 1])
    a = b.node("HardSwish", "block2.hswish_a", [a])
    d = b.node("Conv", "block2.dw", [block1, b.weight("block2.dw.weight", [16, 1, 3, 3], std=0.3)],
               kernel_shape=[3, 3], pads=[1, 1, 1, 1], group=16)
    d = b.bn("block2.dw_bn", d, 16)
    d = b.node("Conv", "block2.pw_b", [d, b.weight("block2.pw_b.weight", [8, 16, 1, 1])], kernel_shape=[1, 1])
    d = b.node("Elu", "block2.elu_b", [d], alpha=1.0)
    h = b.node("Concat", "block2.concat", [a, d], axis=1)                            # [1,16,16,16]
    h = b.node("Reshape", "block2.shuffle_split", [h, i64("block2.shuffle_shape5d", [1, 2, 8, 16, 16])])
    h = b.node("Transpose", "block2.shuffle_transpose", [h], perm=[0, 2, 1, 3, 4])
    h = b.node("Reshape", "block2.shuffle_merge", [h, i64("block2.shuffle_shape4d", [1, 16, 16, 16])])
    # per-channel affine with broadcasting, instance norm, tanh
    h = b.node("Mul", "block3.mul", [h, b.uniform("block3.scale", [1, 16, 1, 1], 0.5, 1.5)])
    h = b.node("Sub", "block3.sub", [h, b.const("block3.mean", (b.rng.standard_normal([1, 16, 1, 1]) * 0.2)
                                                .astype(np.float32))])
    h = b.node("Div", "block3.div", [h, b.uniform("block3.std", [1, 16, 1, 1], 0.5, 1.5)])
    h = b.node("InstanceNormalization", "block3.instnorm",
               [h, b.uniform("block3.instnorm.scale", [16], 0.5, 1.5), b.bias("block3.instnorm.bias", 16)],
               epsilon=1e-5)
    h = b.node("Tanh", "block3.tanh", [h])
    # split / gate / concat
    s0, s1 = b.node("Split", "block4.split", [h, i64("block4.split_sizes", [6, 10])], n_out=2, axis=1)
    s0 = b.node("Sigmoid", "block4.sigmoid", [s0])
    s1 = b.node("HardSigmoid", "block4.hsigmoid", [s1], alpha=0.6, beta=0.5)  # saturates at both ends on tanh input
    block4 = b.node("Concat", "block4.concat", [s0, s1], axis=1)                     # [1,16,16,16]
    # pad + strided conv + dropout/identity
    h = b.node("Pad", "block5.pad", [block4, i64("block5.pads", [0, 0, 1, 1, 0, 0, 1, 1]),
                                     b.const("block5.pad_value", np.array(0.25, np.float32))], mode="constant")
    h = b.node("Conv", "block5.conv", [h, b.weight("block5.conv.weight", [32, 16, 3, 3]),
                                       b.bias("block5.conv.bias", 32)],
               kernel_shape=[3, 3], strides=[2, 2])                                  # [1,32,8,8]
    h = b.bn("block5.bn", h, 32)
    h = b.node("Relu", "block5.relu", [h])
    h = b.node("Dropout", "block5.dropout", [h])
    h = b.node("Identity", "block5.identity", [h])
    # upsample and merge three tensors
    h = b.node("ConvTranspose", "block6.deconv", [h, b.weight("block6.deconv.weight", [32, 16, 3, 3], fan_in=32 * 9 // 4),
                                                  b.bias("block6.deconv.bias", 16)],
               kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1], output_padding=[1, 1])  # [1,16,16,16]
    h = b.node("Sum", "block6.sum", [h, block4, block1])
    feat = b.node("Relu", "block6.relu", [h])
    # squeeze-excitation: GlobalMaxPool -> Squeeze -> MatMul -> Relu -> MatMul -> Sigmoid -> Unsqueeze -> Mul
    h = b.node("GlobalMaxPool", "se.gmp", [feat])                                   # [1,16,1,1]
    h = b.node("Squeeze", "se.squeeze", [h, i64("se.squeeze_axes", [2, 3])])        # [1,16]
    h = b.node("MatMul", "se.fc1", [h, b.weight("se.fc1.weight", [16, 4], fan_in=16)])
    h = b.node("Relu", "se.relu", [h])
    h = b.node("MatMul", "se.fc2", [h, b.weight("se.fc2.weight", [4, 16], fan_in=4)])
    h = b.node("Sigmoid", "se.gate", [h])
    h = b.node("Unsqueeze", "se.unsqueeze", [h, i64("se.unsqueeze_axes", [2, 3])])  # [1,16,1,1]
    h = b.node("Mul", "se.scale", [feat, h])
    # head
    h = b.node("GlobalAveragePool", "head.gap", [h])                                # [1,16,1,1]
    h = b.node("Reshape", "head.flatten", [h, i64("head.flatten_shape", [0, -1])])  # [1,16]
    h = b.node("MatMul", "head.fc", [h, b.weight("head.fc.weight", [16, 10], fan_in=16)])
    h = b.node("Add", "head.fc_bias", [h, b.bias("head.fc.bias", 10)])
    return b.model("tiny_resnet", x, [1, 3, 32, 32], [h], opset=14)


def tiny_shapechain() -> onnx.ModelProto:
    b = Builder(seed=303)
    x = "input"
    h = b.node("Conv", "conv1", [x, b.weight("conv1.weight", [8, 3, 3, 3]), b.bias("conv1.bias", 8)],
               kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1])              # [1,8,8,8]
    h = b.node("Relu", "relu1", [h])
    feat = b.node("MaxPool", "pool1", [h], kernel_shape=[2, 2], strides=[2, 2])     # [1,8,4,4]
    # exporter-style dynamic flatten: Shape -> Gather -> Unsqueeze -> Concat -> Reshape
    shp = b.node("Shape", "pool1_shape", [feat])                                    # int64 [4]
    n = b.node("Gather", "batch_dim", [shp, b.const("gather_idx0", np.array(0, np.int64))], axis=0)  # scalar
    n = b.node("Unsqueeze", "batch_dim_1d", [n, b.const("unsqueeze_axes0", np.array([0], np.int64))])
    minus1 = b.node("Constant", "minus_one", [],
                    value=numpy_helper.from_array(np.array([-1], np.int64), "minus_one_value"))
    tgt = b.node("Concat", "flatten_shape", [n, minus1], axis=0)                    # [1,-1]
    flat = b.node("Reshape", "flatten_reshape", [feat, tgt])                        # [1,128]
    h = b.node("Gemm", "fc1", [flat, b.weight("fc1.weight", [32, 128]), b.bias("fc1.bias", 32)], transB=1)
    h = b.node("Relu", "relu_fc1", [h])
    flat2 = b.node("Flatten", "flatten_skip", [feat], axis=1)                        # [1,128]
    skip = b.node("Gemm", "fc_skip", [flat2, b.weight("fc_skip.weight", [128, 32]), b.bias("fc_skip.bias", 32)],
                  alpha=0.5, beta=1.0)
    h = b.node("Add", "merge", [h, skip])                                           # [1,32]
    # ConstantOfShape + Cast that fold to constants
    ch = b.node("Gather", "channel_dim", [shp, b.const("gather_idx1", np.array(1, np.int64))], axis=0)
    chf = b.node("Cast", "channel_dim_f32", [ch], to=TensorProto.FLOAT)             # 8.0
    h = b.node("Div", "scale_by_channels", [h, chf])
    mshape = b.node("Shape", "merge_shape", [h])                                    # [1,32]
    offs = b.node("ConstantOfShape", "offset_fill", [mshape],
                  value=numpy_helper.from_array(np.array([0.125], np.float32), "offset_fill_value"))
    h = b.node("Add", "add_offset", [h, offs])
    h = b.node("Gemm", "fc_out", [h, b.weight("fc_out.weight", [32, 10]), b.bias("fc_out.bias", 10)])
    return b.model("tiny_shapechain", x, [1, 3, 16, 16], [h], opset=13)


def make_mixed(out: Path) -> list:
    dst = out / "mixed"
    reset_dir(dst)
    report = []
    for name, fn in (("tiny_alexnet", tiny_alexnet), ("tiny_resnet", tiny_resnet),
                     ("tiny_shapechain", tiny_shapechain)):
        model = fn()
        onnx.save(model, str(dst / f"{name}.onnx"))
        outs, summ = reference(model, f"{name}.onnx", dst / f"{name}.ref.json", name)
        summ["ops"] = sorted({n.op_type for n in model.graph.node})
        summ["opset"] = model.opset_import[0].version
        summ["final"] = {k: np.round(v.reshape(-1)[:10], 4).tolist() for k, v in outs.items()}
        report.append(summ)
        print(f"[mixed] {name}: {json.dumps(summ)}")
    return report


# ----------------------------------------------------------------------------
# C. node tests
# ----------------------------------------------------------------------------

NODE_OPS = set("""Conv ConvTranspose Relu Clip LeakyRelu Sigmoid HardSigmoid HardSwish Tanh Elu
MaxPool AveragePool GlobalAveragePool GlobalMaxPool LRN BatchNormalization InstanceNormalization
Gemm MatMul Add Sum Sub Mul Div Concat Split Flatten Reshape Transpose Squeeze Unsqueeze Pad
Dropout Identity Softmax Constant ConstantOfShape Shape Gather Slice Cast""".split())
INT_OK_OPS = {"Shape", "Gather", "Slice", "Cast", "ConstantOfShape"}
SPATIAL_2D_OPS = {"Conv", "ConvTranspose", "MaxPool", "AveragePool"}
NODE_BUDGET = 3_000_000


def _vi_ok(vi) -> tuple[bool, int, list]:
    t = vi.type
    if t.WhichOneof("value") != "tensor_type" or not t.tensor_type.HasField("shape"):
        return False, 0, []
    dims = t.tensor_type.shape.dim
    if not all(d.HasField("dim_value") for d in dims):
        return False, 0, []
    return True, t.tensor_type.elem_type, [d.dim_value for d in dims]


def node_test_reason(case) -> str | None:
    """None if the case is selected, else why not."""
    name, m = case.name, case.model
    if "_expanded" in name:
        return "expanded"
    if len(m.graph.node) != 1:
        return "multi-node"
    node = m.graph.node[0]
    op = node.op_type
    if node.domain not in ("", "ai.onnx") or op not in NODE_OPS:
        return "op"
    if len(case.data_sets) < 1:
        return "no data"
    if "training" in name:
        return "training"
    vis = list(m.graph.input) + list(m.graph.output)
    info = [_vi_ok(v) for v in vis]
    if not all(ok for ok, _, _ in info):
        return "non-tensor or dynamic shape"
    allowed = {TensorProto.FLOAT, TensorProto.INT64} if op in INT_OK_OPS else {TensorProto.FLOAT}
    n_in = len(m.graph.input)
    main = [info[0]] if n_in else []
    main += info[n_in:]
    if any(et not in allowed for _, et, _ in main):
        return "dtype"
    if any(et not in (TensorProto.FLOAT, TensorProto.INT64) for _, et, _ in info):
        return "dtype (secondary input)"
    attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
    if op in SPATIAL_2D_OPS and len(info[0][2]) != 4:
        return "not 2-D"
    if op == "MaxPool" and len(m.graph.output) != 1:
        return "indices output"
    if op in ("BatchNormalization", "Dropout"):
        if len(m.graph.output) != 1 or attrs.get("training_mode", 0):
            return "training"
    if op == "MatMul" and any(len(s) > 4 for _, _, s in info):
        return "rank > 4"
    if op == "Pad" and attrs.get("mode", b"constant") not in (b"constant", "constant"):
        return "non-constant pad"
    return None


def write_node_case(case, dst: Path) -> None:
    """Serialise like onnx.backend.test.cmd_tools.generate_data (tensor types)."""
    dst.mkdir(parents=True)
    (dst / "model.onnx").write_bytes(case.model.SerializeToString())
    inputs, outputs = case.data_sets[0]
    ds = dst / "test_data_set_0"
    ds.mkdir()
    for j, arr in enumerate(inputs):
        t = arr if isinstance(arr, TensorProto) else numpy_helper.from_array(arr, case.model.graph.input[j].name)
        (ds / f"input_{j}.pb").write_bytes(t.SerializeToString())
    for j, arr in enumerate(outputs):
        t = arr if isinstance(arr, TensorProto) else numpy_helper.from_array(arr, case.model.graph.output[j].name)
        (ds / f"output_{j}.pb").write_bytes(t.SerializeToString())


def ort_check_node(dst: Path, rtol: float, atol: float) -> str:
    model = onnx.load(str(dst / "model.onnx"))
    ds = dst / "test_data_set_0"
    feeds = {}
    for j, vi in enumerate(model.graph.input):
        feeds[vi.name] = numpy_helper.to_array(onnx.load_tensor(str(ds / f"input_{j}.pb")))
    try:
        sess = session(model)
        got = sess.run(None, feeds)
    except Exception as e:  # noqa: BLE001
        return f"ORT error: {str(e).splitlines()[0][:200]}"
    for j, g in enumerate(got):
        exp = numpy_helper.to_array(onnx.load_tensor(str(ds / f"output_{j}.pb")))
        if g.shape != exp.shape or g.dtype != exp.dtype:
            return f"ORT shape/dtype mismatch {g.shape}/{g.dtype} vs {exp.shape}/{exp.dtype}"
        if not np.allclose(g, exp, rtol=rtol, atol=atol, equal_nan=True):
            return f"ORT value mismatch max_abs_diff={float(np.abs(g.astype(np.float64) - exp).max()):.3g}"
    return "ok"


def make_node(out: Path) -> dict:
    dst = out / "node"
    reset_dir(dst)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import onnx.backend.test.case.node as node_cases
        cases = node_cases.collect_testcases()
    selected = [c for c in cases if node_test_reason(c) is None]
    selected.sort(key=lambda c: c.name)
    index, ort_notes, total = [], {}, 0
    for c in selected:
        d = dst / c.name
        write_node_case(c, d)
        size = sum(f.stat().st_size for f in d.rglob("*") if f.is_file())
        total += size
        index.append({"test": c.name, "op": c.model.graph.node[0].op_type,
                      "opset": next(o.version for o in c.model.opset_import if o.domain in ("", "ai.onnx"))})
        note = ort_check_node(d, c.rtol, c.atol)
        if note != "ok":
            ort_notes[c.name] = note
    if total > NODE_BUDGET:
        raise RuntimeError(f"node tests take {total} bytes > {NODE_BUDGET}")
    (dst / "INDEX.json").write_text(
        "[\n" + ",\n".join(json.dumps(e) for e in index) + "\n]\n")
    per_op = {}
    for e in index:
        per_op[e["op"]] = per_op.get(e["op"], 0) + 1
    rep = {"count": len(index), "bytes": total, "per_op": dict(sorted(per_op.items())),
           "ort_not_ok": ort_notes}
    print(f"[node] {json.dumps(rep, indent=1)}")
    return rep


# ----------------------------------------------------------------------------

def reset_dir(p: Path) -> None:
    if p.exists():
        shutil.rmtree(p)
    p.mkdir(parents=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path, default=REPO / "tests" / "fixtures")
    ap.add_argument("--parts", default="light,mixed,node")
    ap.add_argument("--any-version", action="store_true")
    args = ap.parse_args()
    vers = {"onnx": onnx.__version__, "onnxruntime": ort.__version__}
    if vers != EXPECTED_VERSIONS and not args.any_version:
        print(f"expected {EXPECTED_VERSIONS}, found {vers} (use --any-version)", file=sys.stderr)
        return 2
    parts = set(args.parts.split(","))
    print(f"onnx {onnx.__version__}, onnxruntime {ort.__version__}, numpy {np.__version__}")
    if "light" in parts:
        make_light(args.out)
    if "mixed" in parts:
        make_mixed(args.out)
    if "node" in parts:
        make_node(args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
