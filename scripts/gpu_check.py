#!/usr/bin/env python3
"""The Python half of scripts/gpu_check.sh: makes the check's models, measures PyTorch's
references on the GPU, compares ConvLens's GPU and CPU exports, and merges every figure into
one JSON. Needs numpy, onnx and (for `models` and `torch-ref`) torch; the device tool's
machine has all three.

  gpu_check.py models DIR          alexnet_seeded.onnx (the network of bench_reference.py,
                                   torch.manual_seed(0)), input.npy (its formula input), and
                                   wide.onnx: 10,240 filters of 14x14, for a frame and a
                                   screenshot of >= 10,000 tiles
  gpu_check.py torch-ref OUT.json  PyTorch on CUDA, same network and input: forward ms
                                   (median of 20 after 5) and batched (vmap) GBP of all 1376
                                   filters, s (median of 3 after 1)
  gpu_check.py compare GPU_DIR CPU_DIR OUT.json
                                   two `convlens export --raw` directories of one model and
                                   input: per layer the worst relative error
                                   max|g - c| / max|c|, and whether the top-5 classes agree
  gpu_check.py merge OUT_DIR       every *.json in OUT_DIR into OUT_DIR/gpu_check.json
"""

import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np

SCRIPTS = Path(__file__).resolve().parent
WIDE_FILTERS = 10_240


def make_models(out: Path) -> None:
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    out.mkdir(parents=True, exist_ok=True)
    # The reference scripts' input (bench_reference.formula_input), without needing torch.
    i = np.arange(3 * 224 * 224, dtype=np.uint64)
    u = ((i * np.uint64(2654435761)) % np.uint64(2**32)).astype(np.float64) / 2**32
    np.save(out / "input.npy", (u * 2 - 1).astype(np.float32).reshape(1, 3, 224, 224))
    # wide.onnx: 224x224 -> 16x16 max-pool (14x14) -> 1x1 conv 3->64, ReLU -> 1x1 conv
    # 64->10240, ReLU. Seeded normal weights; its point is the tile count, not the features.
    rng = np.random.default_rng(0)
    w1 = (rng.standard_normal((64, 3, 1, 1)) * 0.5).astype(np.float32)
    w2 = (rng.standard_normal((WIDE_FILTERS, 64, 1, 1)) * 0.125).astype(np.float32)
    nodes = [
        helper.make_node("MaxPool", ["data_0"], ["pool"], name="pool", kernel_shape=[16, 16],
                         strides=[16, 16]),
        helper.make_node("Conv", ["pool", "w1"], ["c1"], name="conv1", kernel_shape=[1, 1]),
        helper.make_node("Relu", ["c1"], ["r1"], name="relu1"),
        helper.make_node("Conv", ["r1", "w2"], ["c2"], name="conv_wide", kernel_shape=[1, 1]),
        helper.make_node("Relu", ["c2"], ["r2"], name="relu_wide"),
    ]
    graph = helper.make_graph(
        nodes, "wide_10240",
        [helper.make_tensor_value_info("data_0", TensorProto.FLOAT, [1, 3, 224, 224])],
        [helper.make_tensor_value_info("r2", TensorProto.FLOAT, [1, WIDE_FILTERS, 14, 14])],
        [numpy_helper.from_array(w1, "w1"), numpy_helper.from_array(w2, "w2")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)],
                              producer_name="convlens scripts/gpu_check.py")
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(out / "wide.onnx"))

    # The AlexNet-shaped network last: it needs torch (its seeded Kaiming-uniform weights).
    sys.path.insert(0, str(SCRIPTS))
    import bench_gbp_reference as ref
    import bench_reference
    import torch

    torch.manual_seed(0)
    net, _ = ref.alexnet()
    bench_reference.to_onnx(net, out / "alexnet_seeded.onnx")
    print(f"models written to {out}", file=sys.stderr)


def torch_reference(out: Path) -> None:
    import torch

    sys.path.insert(0, str(SCRIPTS))
    import bench_gbp_reference as ref
    import bench_reference

    if not torch.cuda.is_available():
        out.write_text(json.dumps({"torch_cuda": None, "note": "torch sees no CUDA device"}))
        return
    dev = torch.device("cuda")
    torch.manual_seed(0)
    net, convs = ref.alexnet()
    net = net.to(dev)
    x = torch.from_numpy(bench_reference.formula_input()).to(dev)

    def forward() -> None:
        with torch.no_grad():
            net(x)
        torch.cuda.synchronize()

    def median_s(run, warmup: int, repeats: int) -> float:
        for _ in range(warmup):
            run()
        samples = []
        for _ in range(repeats):
            t = time.perf_counter()
            run()
            samples.append(time.perf_counter() - t)
        return statistics.median(samples)

    def gbp_all(chunk: int) -> int:
        filters = 0
        for upto in convs:
            xi = x.clone().requires_grad_(True)
            o = net[: upto + 1](xi)
            c = o.shape[1]
            for k0 in range(0, c, chunk):
                b = min(chunk, c - k0)
                seeds = torch.zeros((b, *o.shape), dtype=o.dtype, device=dev)
                seeds[torch.arange(b), 0, torch.arange(k0, k0 + b)] = 1.0
                (g,) = torch.autograd.grad(o, xi, grad_outputs=seeds, is_grads_batched=True,
                                           retain_graph=True)
                g[:, 0].float().cpu().numpy()  # images on the host, as ConvLens's bench does
                filters += b
        torch.cuda.synchronize()
        return filters

    fwd_ms = median_s(forward, 5, 20) * 1e3
    filters = gbp_all(128)
    gbp_s = median_s(lambda: gbp_all(128), 1, 3)
    out.write_text(json.dumps({
        "torch": torch.__version__, "gpu": torch.cuda.get_device_name(0),
        "torch_cuda_forward_ms": round(fwd_ms, 3), "torch_cuda_gbp_all_conv_s": round(gbp_s, 4),
        "torch_cuda_gbp_filters": filters, "torch_cuda_gbp_chunk": 128,
        "note": "AlexNet-shaped network of bench_reference.py, fp32, images copied to the host",
    }, indent=2) + "\n")
    print(f"torch cuda: forward {fwd_ms:.2f} ms, GBP of {filters} filters {gbp_s:.3f} s",
          file=sys.stderr)


def compare(gpu_dir: Path, cpu_dir: Path, out: Path) -> None:
    layers = {}
    for c_path in sorted((cpu_dir / "raw").rglob("*.npy")):
        rel = c_path.relative_to(cpu_dir / "raw")
        g_path = gpu_dir / "raw" / rel
        if not g_path.exists():
            layers[str(rel)] = {"missing_on_gpu": True}
            continue
        c, g = np.load(c_path).astype(np.float64), np.load(g_path).astype(np.float64)
        if c.shape != g.shape:
            layers[str(rel)] = {"shape_cpu": list(c.shape), "shape_gpu": list(g.shape)}
            continue
        scale = max(float(np.abs(c).max()), 1e-30)
        layers[str(rel)] = {"rel_err": float(np.abs(g - c).max() / scale)}
    errs = [v["rel_err"] for v in layers.values() if "rel_err" in v]

    def top5(d: Path) -> list:
        s = json.loads((d / "scores.json").read_text())["S"]
        return [int(i) for i in np.argsort(-np.asarray(s), kind="stable")[:5]]

    t_gpu, t_cpu = top5(gpu_dir), top5(cpu_dir)
    worst = max(layers.items(), key=lambda kv: kv[1].get("rel_err", np.inf)) if layers else None
    result = {
        "layers_compared": len(errs),
        "layers_mismatched": len(layers) - len(errs),
        "worst_rel_err": max(errs) if errs else None,
        "worst_layer": worst[0] if worst else None,
        "median_rel_err": statistics.median(errs) if errs else None,
        "top5_gpu": t_gpu, "top5_cpu": t_cpu, "top5_equal": t_gpu == t_cpu,
        "per_layer": layers,
    }
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"{gpu_dir.name} vs {cpu_dir.name}: {len(errs)} arrays, worst rel err "
          f"{result['worst_rel_err']}, top-5 equal: {result['top5_equal']}", file=sys.stderr)


def merge(out_dir: Path) -> None:
    merged = {}
    for p in sorted(out_dir.glob("*.json")):
        if p.name == "gpu_check.json":
            continue
        try:
            merged[p.stem] = json.loads(p.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            merged[p.stem] = {"unreadable": str(e), "text": p.read_text(errors="replace")[:2000]}
    (out_dir / "gpu_check.json").write_text(json.dumps(merged, indent=2) + "\n")


def main() -> None:
    if len(sys.argv) < 3:
        raise SystemExit(__doc__)
    cmd, args = sys.argv[1], [Path(a) for a in sys.argv[2:]]
    if cmd == "models":
        make_models(args[0])
    elif cmd == "torch-ref":
        torch_reference(args[0])
    elif cmd == "compare" and len(args) == 3:
        compare(*args)
    elif cmd == "merge":
        merge(args[0])
    else:
        raise SystemExit(__doc__)


if __name__ == "__main__":
    main()
