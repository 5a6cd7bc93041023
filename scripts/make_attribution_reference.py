#!/usr/bin/env python3
"""Reference attribution images for tests/attribution.rs, made with PyTorch autograd.

Builds a small AlexNet-like CNN with seeded random weights

    conv1 (3→8, 5x5, pad 2) → ReLU → MaxPool 3x3/2 →
    conv2 (8→8, 3x3, pad 1) → ReLU6 → MaxPool 3x3/2 →
    conv3 (8→8, 3x3, pad 1) → ReLU

on a 1x3x32x32 input, exports it to ONNX, and for each conv layer L, each channel k and each
method stores the image dJ_k/dx with J_k = sum over h,w of L's output channel k (the
semantics of ../shared/DESIGN.md, "Attribution semantics"):

* backprop:  plain autograd;
* deconvnet: backward hooks replace a ReLU/ReLU6's input gradient by relu(g);
* guided:    backward hooks replace it by relu(g) * 1[x > 0] (ReLU6: 1[0 < x < 6]), where x
             is the module's input saved by a forward hook.

Max-pooling is PyTorch's own gradient (through its argmax) in all three. The reference runs in
float64 on the float32 weights and the exported model's exact input, one channel per
backward pass (deliberately unlike the batched Rust implementation).

The input is the conformance formula shared with tests/common/mod.rs:
u = ((i * 2654435761) mod 2^32) / 2^32, x[i] = f32(2u - 1) over the flat index i.

Second, float64 finite differences of the three random-weight models in
tests/fixtures/mixed/ (their weights cast to float64, run by onnx's numpy reference
evaluator): for each feature map [1, C, H, W], the directional derivatives of its channel
sums, and for the graph output those of each class score, along dense directions v_s, central differences with step
1e-6, precise to ~1e-9 where no kink lies within 1e-6. v_s[i] = 2 * splitmix64(s << 40 ^ i)
/ 2^64 - 1, the same sequence as `unit` in tests/it/attribution_support/mod.rs.

Third, the same per-channel references for a small MobileNet-like network (depthwise 3x3
and 5x5 convolutions at strides 1 and 2, pointwise 1x1 convolutions with and without ReLU6
after them, on a 1x3x24x24 input), for the layers `dw2` and `pw3`: the reverse pass picks
other host kernels for these (direct depthwise, GEMM for 1x1) than for AlexNet-shaped ones.

Outputs (tests/fixtures/attribution/, ~2 MB in all):
  small_cnn.onnx                the model (opset 17, weights as initializers)
  small_cnn_<method>.npy        float32 [24, 3, 32, 32]: conv1 channels 0-7, conv2 0-7, conv3 0-7
  small_cnn.json                layers (ONNX node name, channel count, row offset), per-image
                                L2 norms (from the float64 result), provenance
  fd64.json                     {model: {"salts": [...], "values": {output: [[d_k] per salt]}}}
  small_mobile.onnx, small_mobile_<method>.npy, small_mobile.json
                                the same for the MobileNet-like network (layers dw2, pw3)

Run: /root/.cache/convlens-venv/bin/python scripts/make_attribution_reference.py
(deterministic: seed 20240611; torch 2.15 CPU, a few seconds).
"""

import copy
import json
import pathlib

import numpy as np
import onnx
import torch
from onnx import helper, numpy_helper
from onnx.reference import ReferenceEvaluator
from onnx.reference.op_run import OpRun
from torch import nn

SEED = 20240611
OUT = pathlib.Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "attribution"
METHODS = ("backprop", "deconvnet", "guided")
INPUT_SHAPE = (1, 3, 32, 32)


def formula_input(n: int) -> np.ndarray:
    i = np.arange(n, dtype=np.uint64)
    u = ((i * np.uint64(2654435761)) % np.uint64(2**32)).astype(np.float64) / 2.0**32
    return (2.0 * u - 1.0).astype(np.float32)


class SmallCnn(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 5, padding=2)
        self.relu1 = nn.ReLU()
        self.pool1 = nn.MaxPool2d(3, 2)
        self.conv2 = nn.Conv2d(8, 8, 3, padding=1)
        self.relu2 = nn.ReLU6()
        self.pool2 = nn.MaxPool2d(3, 2)
        self.conv3 = nn.Conv2d(8, 8, 3, padding=1)
        self.relu3 = nn.ReLU()
        self.order = ["conv1", "relu1", "pool1", "conv2", "relu2", "pool2", "conv3", "relu3"]

    def forward(self, x: torch.Tensor, upto: str = "relu3") -> torch.Tensor:
        for name in self.order:
            x = getattr(self, name)(x)
            if name == upto:
                break
        return x


class SmallMobile(nn.Module):
    """Depthwise-separable blocks as in MobileNet/EfficientNet: 3x3 and 5x5 depthwise
    convolutions at strides 1 and 2, 1x1 expansions (ReLU6) and linear 1x1 projections."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 16, 3, stride=2, padding=1)
        self.relu_stem = nn.ReLU6()
        self.dw1 = nn.Conv2d(16, 16, 3, padding=1, groups=16)
        self.relu_dw1 = nn.ReLU6()
        self.pw1 = nn.Conv2d(16, 24, 1)
        self.ex2 = nn.Conv2d(24, 48, 1)
        self.relu_ex2 = nn.ReLU6()
        self.dw2 = nn.Conv2d(48, 48, 5, stride=2, padding=2, groups=48)
        self.relu_dw2 = nn.ReLU6()
        self.pw2 = nn.Conv2d(48, 32, 1)
        self.dw3 = nn.Conv2d(32, 32, 5, padding=2, groups=32)
        self.relu_dw3 = nn.ReLU6()
        self.pw3 = nn.Conv2d(32, 16, 1)
        self.relu_pw3 = nn.ReLU()
        self.order = ["stem", "relu_stem", "dw1", "relu_dw1", "pw1", "ex2", "relu_ex2", "dw2",
                      "relu_dw2", "pw2", "dw3", "relu_dw3", "pw3", "relu_pw3"]

    def forward(self, x: torch.Tensor, upto: str = "relu_pw3") -> torch.Tensor:
        for name in self.order:
            x = getattr(self, name)(x)
            if name == upto:
                break
        return x


def rule_hooks(model: nn.Module, method: str) -> list:
    """Forward hooks saving each ReLU-family input; backward hooks applying `method`'s rule."""
    handles = []
    for module in model.modules():
        if not isinstance(module, (nn.ReLU, nn.ReLU6)):
            continue
        hi = 6.0 if isinstance(module, nn.ReLU6) else float("inf")

        def save(mod, inputs, _out):
            mod.saved_input = inputs[0].detach()

        def rule(mod, _grad_input, grad_output, hi=hi):
            g = grad_output[0].clamp(min=0)
            if method == "guided":
                x = mod.saved_input
                g = g * ((x > 0) & (x < hi)).to(g.dtype)
            return (g,)

        handles.append(module.register_forward_hook(save))
        handles.append(module.register_full_backward_hook(rule))
    return handles


def attributions(model: nn.Module, x: torch.Tensor, layer: str, method: str) -> np.ndarray:
    """[C, 3, H, W] float64: dJ_k/dx for every channel k of `layer`, one backward per channel."""
    handles = rule_hooks(model, method) if method != "backprop" else []
    try:
        images = []
        channels = getattr(model, layer).out_channels
        for k in range(channels):
            xi = x.clone().requires_grad_(True)
            out = model(xi, upto=layer)
            (grad,) = torch.autograd.grad(out[0, k].sum(), xi)
            images.append(grad[0].numpy())
        return np.stack(images)
    finally:
        for h in handles:
            h.remove()


def export(model: nn.Module, path: pathlib.Path, shape=INPUT_SHAPE) -> None:
    dummy = torch.from_numpy(formula_input(int(np.prod(shape))).reshape(shape))
    torch.onnx.export(model, (dummy,), str(path), input_names=["input"], output_names=["output"],
                      opset_version=17, dynamo=False)
    m = onnx.load(str(path))
    onnx.checker.check_model(m)


def write_npy(path: pathlib.Path, array: np.ndarray) -> None:
    with open(path, "wb") as f:
        np.save(f, np.ascontiguousarray(array, dtype="<f4"))


def unit(salt: int, n: int) -> np.ndarray:
    """splitmix64 of (salt << 40 ^ i) mapped to [0, 1), for i < n."""
    with np.errstate(over="ignore"):
        z = (np.uint64(salt) << np.uint64(40)) ^ np.arange(n, dtype=np.uint64)
        z = z + np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        z = z ^ (z >> np.uint64(31))
    return z.astype(np.float64) / 2.0**64


class SpecLrn(OpRun):
    """LRN exactly as the ONNX spec (and onnxruntime) define it: the channel window is
    [c - floor((size-1)/2), c + ceil((size-1)/2)]. (onnx 1.23's reference LRN centres its
    window differently and disagrees with onnxruntime by ~1e-2 on tiny_alexnet.)"""

    op_domain = ""

    def _run(self, x, alpha=None, beta=None, bias=None, size=None):
        alpha = 1e-4 if alpha is None else alpha
        beta = 0.75 if beta is None else beta
        bias = 1.0 if bias is None else bias
        lo, hi = (size - 1) // 2, size - 1 - (size - 1) // 2
        c = x.shape[1]
        sq = np.zeros_like(x)
        for k in range(c):
            sq[:, k] = (x[:, max(0, k - lo) : min(c, k + hi + 1)] ** 2).sum(axis=1)
        return (x / (bias + alpha / size * sq) ** beta,)


def to_float64(model: onnx.ModelProto) -> tuple[onnx.ModelProto, list]:
    """The model with float32 weights, constants and input cast to float64 and every node
    output exposed; returns it and the output names."""
    for init in model.graph.initializer:
        a = numpy_helper.to_array(init)
        if a.dtype == np.float32:
            init.CopyFrom(numpy_helper.from_array(a.astype(np.float64), init.name))
    for node in model.graph.node:
        for attr in node.attribute:
            if attr.type == onnx.AttributeProto.TENSOR and attr.t.data_type == onnx.TensorProto.FLOAT:
                attr.t.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(attr.t).astype(np.float64), attr.t.name))
            if node.op_type == "Cast" and attr.name == "to" and attr.i == onnx.TensorProto.FLOAT:
                attr.i = onnx.TensorProto.DOUBLE
    outputs = [o for node in model.graph.node for o in node.output]
    del model.graph.output[:]
    for o in outputs:
        model.graph.output.append(helper.make_tensor_value_info(o, onnx.TensorProto.DOUBLE, None))
    model.graph.input[0].type.tensor_type.elem_type = onnx.TensorProto.DOUBLE
    return model, outputs


def fd_references(salts=(1, 2), step=1e-6) -> dict:
    mixed = OUT.parent / "mixed"
    result = {}
    for name in ("tiny_alexnet", "tiny_resnet", "tiny_shapechain"):
        model, outputs = to_float64(onnx.load(str(mixed / f"{name}.onnx")))
        dims = [d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim]
        n = int(np.prod(dims))
        x = formula_input(n).astype(np.float64).reshape(dims)
        session = ReferenceEvaluator(model, new_ops=[type("LRN", (SpecLrn,), {})])
        feed = model.graph.input[0].name
        values = {}
        for salt in salts:
            v = (unit(salt, n) * 2.0 - 1.0).reshape(dims)
            plus = dict(zip(outputs, session.run(None, {feed: x + step * v})))
            minus = dict(zip(outputs, session.run(None, {feed: x - step * v})))
            for out in outputs:
                p, m = plus[out], minus[out]
                # Feature maps [1, C, H, W] and the graph output (the class scores).
                wanted = p.ndim == 4 or out == model.graph.node[-1].output[0]
                if p.dtype != np.float64 or p.ndim not in (2, 4) or p.shape[0] != 1 or not wanted:
                    continue
                sums = (p - m).reshape(p.shape[0], p.shape[1], -1).sum(axis=2)[0] / (2 * step)
                values.setdefault(out, []).append([float(f"{d:.9g}") for d in sums])
        result[f"{name}.onnx"] = {"salts": list(salts), "step": step, "values": values}
    return result


def init_weights(model: nn.Module) -> None:
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.Conv2d):
                # He-like scale so activations neither vanish nor explode; biases small and
                # positive so that ReLU6's upper gate (x > 6) is reached at some positions.
                fan_in = m.in_channels // m.groups * m.kernel_size[0] * m.kernel_size[1]
                m.weight.normal_(0.0, (2.0 / fan_in) ** 0.5 * 1.5)
                m.bias.uniform_(-0.1, 0.3)


def write_reference(name: str, model: nn.Module, shape: tuple, layers: list, extra: dict) -> list:
    """Exports `model` as <name>.onnx and writes <name>_<method>.npy (every channel of each
    layer in `layers`, float64 autograd cast to float32) and <name>.json; returns the ONNX
    names of the layers' Conv nodes."""
    onnx_path = OUT / f"{name}.onnx"
    export(model, onnx_path, shape)
    graph = onnx.load(str(onnx_path)).graph
    conv_nodes = {n.name.split("/")[1]: n.name for n in graph.node if n.op_type == "Conv"}
    x = torch.from_numpy(formula_input(int(np.prod(shape))).reshape(shape)).double()
    model64 = copy.deepcopy(model).double()
    meta_layers, norms = [], {m: [] for m in METHODS}
    stacks = {m: [] for m in METHODS}
    row = 0
    for layer in layers:
        channels = getattr(model, layer).out_channels
        meta_layers.append({"layer": layer, "onnx_node": conv_nodes[layer], "channels": channels, "row": row})
        row += channels
        for method in METHODS:
            imgs = attributions(model64, x, layer, method)
            stacks[method].append(imgs)
            norms[method].extend(float(np.linalg.norm(i)) for i in imgs)
    for method in METHODS:
        write_npy(OUT / f"{name}_{method}.npy", np.concatenate(stacks[method]))
    meta = {
        "model": f"{name}.onnx",
        "input_name": "input",
        "input_shape": list(shape),
        "input_formula": "u=((i*2654435761)%2^32)/2^32; x=f32(2u-1)",
        "objective": "J_k = sum over h,w of the layer's output channel k; image = dJ_k/dinput",
        "methods": {m: f"{name}_{m}.npy" for m in METHODS},
        "layers": meta_layers,
        "norms": norms,
        **extra,
        "made_by": f"scripts/make_attribution_reference.py, torch {torch.__version__}, seed {SEED}, float64",
    }
    (OUT / f"{name}.json").write_text(json.dumps(meta, indent=1) + "\n")
    return [l["onnx_node"] for l in meta_layers]


def main() -> None:
    torch.manual_seed(SEED)
    model = SmallCnn().eval()
    init_weights(model)
    with torch.no_grad():
        model.conv2.weight.mul_(1.6)  # drive ~7% of ReLU6's inputs above 6
        x = torch.from_numpy(formula_input(int(np.prod(INPUT_SHAPE))).reshape(INPUT_SHAPE))
        saturated = int((copy.deepcopy(model).double()(x.double(), upto="conv2") > 6).sum())
    OUT.mkdir(parents=True, exist_ok=True)
    conv_nodes = write_reference("small_cnn", model, INPUT_SHAPE, ["conv1", "conv2", "conv3"],
                                 {"relu6_inputs_above_6": saturated})
    (OUT / "fd64.json").write_text(json.dumps(fd_references()) + "\n")

    mobile = SmallMobile().eval()
    init_weights(mobile)
    mobile_nodes = write_reference("small_mobile", mobile, (1, 3, 24, 24), ["dw2", "pw3"], {})
    total = sum(p.stat().st_size for p in OUT.iterdir())
    print(f"wrote {OUT} ({total} bytes); conv nodes {conv_nodes}, {mobile_nodes}; "
          f"ReLU6 inputs above 6: {saturated}")


if __name__ == "__main__":
    main()
