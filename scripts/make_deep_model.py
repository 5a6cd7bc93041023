#!/usr/bin/env python3
"""A 12,501-node residual stack for the architecture's levels and `convlens bench --arch-only`.

    stem/conv → 5 stages × 500 blocks, each `stageS/blockB/{conv1, relu1, conv2, add, relu2}`
    (conv2's output + the block input, then ReLU)

Every conv shares one 4×4×3×3 weight and one bias (the file stays small: the nodes are what
is large); maps are [1, 4, 8, 8] throughout. Names carry the levels stage → block → layer.

    /root/.cache/convlens-venv/bin/python scripts/make_deep_model.py \
        tests/fixtures/deep/residual_12501.onnx
"""

import sys

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

STAGES, BLOCKS, CHANNELS, SIDE = 5, 500, 4, 8


def main(out: str) -> None:
    rng = np.random.default_rng(0)
    # Small weights keep 2,500 residual additions from growing without bound.
    weight = (rng.standard_normal((CHANNELS, CHANNELS, 3, 3)) * 0.005).astype(np.float32)
    bias = np.zeros(CHANNELS, np.float32)
    stem_w = (rng.standard_normal((CHANNELS, 3, 3, 3)) * 0.3).astype(np.float32)
    inits = [
        numpy_helper.from_array(weight, "w"),
        numpy_helper.from_array(bias, "b"),
        numpy_helper.from_array(stem_w, "stem_w"),
    ]
    conv = dict(kernel_shape=[3, 3], pads=[1, 1, 1, 1])
    nodes = [helper.make_node("Conv", ["input", "stem_w", "b"], ["stem"], name="stem/conv", **conv)]
    x = "stem"
    for s in range(STAGES):
        for b in range(BLOCKS):
            p = f"stage{s}/block{b}"
            nodes += [
                helper.make_node("Conv", [x, "w", "b"], [f"{p}/c1"], name=f"{p}/conv1", **conv),
                helper.make_node("Relu", [f"{p}/c1"], [f"{p}/r1"], name=f"{p}/relu1"),
                helper.make_node("Conv", [f"{p}/r1", "w", "b"], [f"{p}/c2"], name=f"{p}/conv2", **conv),
                helper.make_node("Add", [f"{p}/c2", x], [f"{p}/sum"], name=f"{p}/add"),
                helper.make_node("Relu", [f"{p}/sum"], [f"{p}/out"], name=f"{p}/relu2"),
            ]
            x = f"{p}/out"
    graph = helper.make_graph(
        nodes,
        "residual_12501",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, SIDE, SIDE])],
        [helper.make_tensor_value_info(x, TensorProto.FLOAT, [1, CHANNELS, SIDE, SIDE])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, out)
    print(f"{out}: {len(nodes)} nodes")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "residual_12501.onnx")
