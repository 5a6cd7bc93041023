#!/usr/bin/env python3
"""Small hostile/odd models for tests/bad_inputs.rs (run with the venv's python; seeded).

no_maps.onnx: an image classifier with no 4-D activations at all (Flatten -> Gemm -> Softmax);
the viewer must still open it, show the architecture and say there are no filter maps.
"""
import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

rng = np.random.default_rng(0)
w = numpy_helper.from_array(rng.standard_normal((10, 3 * 8 * 8)).astype(np.float32) * 0.1, "w")
b = numpy_helper.from_array(np.zeros(10, np.float32), "b")
nodes = [
    helper.make_node("Flatten", ["input"], ["flat"], name="flatten", axis=1),
    helper.make_node("Gemm", ["flat", "w", "b"], ["logits"], name="fc", transB=1),
    helper.make_node("Softmax", ["logits"], ["prob"], name="prob", axis=1),
]
graph = helper.make_graph(
    nodes,
    "no_maps",
    [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, 8, 8])],
    [helper.make_tensor_value_info("prob", TensorProto.FLOAT, [1, 10])],
    initializer=[w, b],
)
model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
model.ir_version = 8
onnx.checker.check_model(model)
onnx.save(model, "tests/fixtures/bad/no_maps.onnx")
print("wrote tests/fixtures/bad/no_maps.onnx")
