#!/usr/bin/env python3
"""`convlens bench` against onnxruntime, at batch 1 and batch N, on the CPU (no PyTorch needed).

Two models, both run by both sides with the same thread count:
  alexnet       the AlexNet-shaped network of scripts/bench_reference.py (bvlc AlexNet's
                feature extractor: conv 96/256/384/384/256, LRN, max-pooling), written here
                with numpy Kaiming-uniform weights (seed 0) instead of torch's; timings do
                not depend on weight values, so the figures are those of bench_reference.py's
                network;
  efficientnet  the embedded EfficientNet-Lite0 (assets/model/efficientnet_lite0.onnx).
onnxruntime gets each model with a symbolic batch axis (input and output dim 0 = "N");
ConvLens gets the batch-1 file and re-derives the batch itself (Engine::with_batch).

Measured per model, in this order: onnxruntime plain forward at batch 1 (median ms) and at
batch N (images/s), then `convlens bench MODEL --json --device cpu --skip-gbp --batch N`
(forward_ms with every layer kept, forward_batch_images_per_s with every layer kept).
The onnxruntime session is closed before ConvLens runs (its spinning workers would compete).
Targets (issue 14): forward convlens/ort <= 1.3; batch-N images/s convlens/ort >= 0.8.

Usage: /root/.cache/convlens-venv/bin/python scripts/bench_batch.py
       [--convlens target/debug/convlens] [--batch 16] [--threads 2] [--repeats 10]
       [--warmup 2] [--models alexnet,efficientnet] [--kernels avx512|avx2|portable]
       [--json-out FILE.json]
--kernels forces ConvLens's CPU kernel level (CONVLENS_CPU_KERNELS); onnxruntime has no such
switch and always runs its best kernels for this CPU, so on an AVX-512 machine a forced
avx2 row compares ConvLens's AVX2 path with onnxruntime's AVX-512 one.
Needs numpy, onnx, onnxruntime.
"""

import argparse
import gc
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

ROOT = Path(__file__).resolve().parent.parent
LRN = dict(size=5, alpha=1e-4, beta=0.75, bias=1.0)
# (filters, kernel, stride, pad, groups, then LRN + max-pool?) as in bench_gbp_reference.alexnet.
ALEXNET = [(96, 11, 4, 0, 1, True), (256, 5, 1, 2, 2, True), (384, 3, 1, 1, 1, False),
           (384, 3, 1, 1, 2, False), (256, 3, 1, 1, 2, False)]


def alexnet_model(batch) -> onnx.ModelProto:
    """The AlexNet-shaped feature extractor; `batch` is 1 or a symbolic name."""
    rng = np.random.default_rng(0)
    nodes, inits, x, c_in, hw = [], [], "data_0", 3, 224
    for k, (c, ks, stride, pad, groups, pool) in enumerate(ALEXNET):
        fan_in = c_in // groups * ks * ks
        bound = np.sqrt(6.0 / fan_in)  # Kaiming uniform, gain sqrt(2)
        w = rng.uniform(-bound, bound, (c, c_in // groups, ks, ks)).astype(np.float32)
        inits += [numpy_helper.from_array(w, f"conv{k}_W"),
                  numpy_helper.from_array(np.zeros(c, np.float32), f"conv{k}_B")]
        nodes.append(helper.make_node("Conv", [x, f"conv{k}_W", f"conv{k}_B"], [f"conv_{k}"],
                                      name=f"conv_{k}", kernel_shape=[ks, ks],
                                      strides=[stride, stride], pads=[pad] * 4, group=groups))
        nodes.append(helper.make_node("Relu", [f"conv_{k}"], [f"relu_{k}"], name=f"relu_{k}"))
        x, c_in, hw = f"relu_{k}", c, (hw + 2 * pad - ks) // stride + 1
        if pool:
            nodes.append(helper.make_node("LRN", [x], [f"lrn_{k}"], name=f"lrn_{k}", **LRN))
            nodes.append(helper.make_node("MaxPool", [f"lrn_{k}"], [f"pool_{k}"],
                                          name=f"pool_{k}", kernel_shape=[3, 3], strides=[2, 2]))
            x, hw = f"pool_{k}", (hw - 3) // 2 + 1
    graph = helper.make_graph(
        nodes, "alexnet_features_numpy",
        [helper.make_tensor_value_info("data_0", TensorProto.FLOAT, [batch, 3, 224, 224])],
        [helper.make_tensor_value_info(x, TensorProto.FLOAT, [batch, c_in, hw, hw])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)],
                              producer_name="convlens scripts/bench_batch.py")
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def with_symbolic_batch(model: onnx.ModelProto) -> onnx.ModelProto:
    """A copy whose runtime inputs and outputs have dim 0 = "N"."""
    out = onnx.ModelProto()
    out.CopyFrom(model)
    del out.graph.value_info[:]  # intermediate shapes with batch 1; onnxruntime re-infers
    weights = {i.name for i in out.graph.initializer}
    for v in [*out.graph.input, *out.graph.output]:
        if v.name not in weights:
            v.type.tensor_type.shape.dim[0].dim_param = "N"
    return out


def formula_input(batch: int) -> np.ndarray:
    """The reference scripts' input, sample k scaled by 1 - 0.5 k / batch."""
    i = np.arange(3 * 224 * 224, dtype=np.uint64)
    u = ((i * np.uint64(2654435761)) % np.uint64(2**32)).astype(np.float64) / 2**32
    x = (u * 2 - 1).astype(np.float32).reshape(1, 3, 224, 224)
    return np.concatenate([x * (1 - 0.5 * k / batch) for k in range(batch)]).astype(np.float32)


def median_s(run, warmup: int, repeats: int) -> float:
    for _ in range(warmup):
        run()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        run()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def measure(name: str, model: onnx.ModelProto, tmp: Path, args) -> dict:
    single = tmp / f"{name}.onnx"
    onnx.save(model, str(single))
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = args.threads
    opts.inter_op_num_threads = 1
    sess = ort.InferenceSession(with_symbolic_batch(model).SerializeToString(), opts,
                                providers=["CPUExecutionProvider"])
    feed = sess.get_inputs()[0].name
    x1, xn = formula_input(1), formula_input(args.batch)
    (out1,) = sess.run(None, {feed: x1})
    (outn,) = sess.run(None, {feed: xn})
    err = float(np.abs(outn[:1] - out1).max() / max(np.abs(out1).max(), 1e-30))
    if err > 1e-4:
        raise SystemExit(f"{name}: onnxruntime's batch differs from its single pass ({err:.1e})")
    ort_ms = 1e3 * median_s(lambda: sess.run(None, {feed: x1}), args.warmup, args.repeats)
    ort_batch_s = median_s(lambda: sess.run(None, {feed: xn}), args.warmup, args.repeats)
    del sess
    gc.collect()
    cmd = [args.convlens, "bench", str(single), "--json", "--device", "cpu", "--skip-gbp",
           "--batch", str(args.batch), "--repeats", str(args.repeats),
           "--warmup", str(args.warmup)]
    print("running: " + " ".join(cmd), file=sys.stderr)
    env = {"RAYON_NUM_THREADS": str(args.threads)}
    if args.kernels:
        env["CONVLENS_CPU_KERNELS"] = args.kernels
    done = subprocess.run(cmd, stdout=subprocess.PIPE, text=True,
                          env={**os.environ, **env})
    if done.returncode != 0:
        raise SystemExit(f"convlens bench failed with status {done.returncode}")
    cl = json.loads(done.stdout)
    return {"model": name, "ort_forward_ms": ort_ms,
            "ort_batch_images_per_s": args.batch / ort_batch_s,
            "convlens_forward_ms": cl["forward_ms"],
            "convlens_batch_images_per_s": cl.get("forward_batch_images_per_s"),
            "convlens_cpu_kernels": cl.get("cpu_kernels"), "convlens_notes": cl.get("notes")}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--convlens", default=str(ROOT / "target/debug/convlens"))
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--models", default="alexnet,efficientnet")
    ap.add_argument("--kernels", choices=["avx512", "avx2", "portable"])
    ap.add_argument("--json-out", type=Path)
    args = ap.parse_args()
    if args.batch < 2:
        raise SystemExit("--batch must be at least 2")
    models = {"alexnet": lambda: alexnet_model(1),
              "efficientnet": lambda: onnx.load(str(ROOT / "assets/model/efficientnet_lite0.onnx"))}
    results = []
    with tempfile.TemporaryDirectory(prefix="convlens-batch-") as tmp:
        for name in args.models.split(","):
            if name not in models:
                raise SystemExit(f"unknown model {name!r} (alexnet, efficientnet)")
            results.append(measure(name, models[name](), Path(tmp), args))
    cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo")
                if l.startswith("model name")), platform.processor())
    print(f"CPU: {cpu}; {args.threads} threads; onnxruntime {ort.__version__}; "
          f"convlens kernels: {results[0]['convlens_cpu_kernels']}")
    head = ("model", "convlens fwd ms", "ort fwd ms", "ratio (<= 1.3)",
            f"convlens img/s @{args.batch}", f"ort img/s @{args.batch}", "ratio (>= 0.8)")
    rows = [head]
    for r in results:
        b = r["convlens_batch_images_per_s"]
        rows.append((r["model"], f"{r['convlens_forward_ms']:.1f}", f"{r['ort_forward_ms']:.1f}",
                     f"{r['convlens_forward_ms'] / r['ort_forward_ms']:.2f}",
                     "-" if b is None else f"{b:.1f}", f"{r['ort_batch_images_per_s']:.1f}",
                     "-" if b is None else f"{b / r['ort_batch_images_per_s']:.2f}"))
    widths = [max(len(row[k]) for row in rows) for k in range(len(head))]
    for row in rows:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip())
    for r in results:
        for note in r["convlens_notes"] or []:
            print(f"convlens note ({r['model']}): {note}")
    if args.json_out:
        args.json_out.write_text(json.dumps({"cpu": cpu, "threads": args.threads,
                                             "batch": args.batch, "onnxruntime": ort.__version__,
                                             "results": results}, indent=2) + "\n")


if __name__ == "__main__":
    main()
