#!/usr/bin/env python3
"""`convlens bench` against onnxruntime and PyTorch on the same AlexNet-shaped network.

The network is the one of scripts/bench_gbp_reference.py (bvlc AlexNet's feature extractor:
224x224 input, conv layers of 96, 256, 384, 384 and 256 filters = 1376, LRN, max-pooling;
torch.manual_seed(0) Kaiming-uniform weights, zero biases). It is written to ONNX node by node
(Conv, Relu, LRN, MaxPool with the torch weights; the export is checked against torch's own
forward) into a temporary folder, or to --onnx-out (keep such files out of git).

Measured, one after the other on this machine's CPU with --threads threads, in this order:
PyTorch's GBP, onnxruntime's forward, then ConvLens (so both forward passes follow the long
PyTorch run, and ConvLens's GBP runs on the warmer machine):
  forward  onnxruntime InferenceSession.run (intra_op_num_threads=--threads), median of
           --repeats runs after --warmup; against ConvLens's forward_ms, which keeps every
           layer's output (target: convlens/ort <= 1.5);
  GBP      batched PyTorch guided backprop of every filter of every conv layer
           (bench_gbp_reference.gbp_layer_vmap: one forward pass per layer, vmapped reverse
           passes over chunks of one-hot seeds, images copied out), median of --gbp-repeats
           runs; against ConvLens's gbp_all_conv_s (target: torch/convlens >= 3).
Process CPU times (user + system, all threads) are printed next to wall times for GBP, so a
run on a busy machine can still be judged. Then `convlens bench <model.onnx> --json --device cpu --input <input.npy>` runs with the same
input tensor (the formula input of the reference scripts, saved as .npy).

Usage: /root/.cache/convlens-venv/bin/python scripts/bench_reference.py
       [--convlens target/debug/convlens] [--skip-gbp] [--repeats 10] [--warmup 2]
       [--gbp-repeats 1] [--threads 2] [--chunk 119] [--onnx-out FILE.onnx]
       [--json-out FILE.json]
The GBP part takes minutes on 2 cores (both sides); --skip-gbp leaves it out.
"""

import argparse
import gc
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import torch
from onnx import TensorProto, helper, numpy_helper
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_gbp_reference as ref  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent


def formula_input() -> np.ndarray:
    """The reference scripts' input: u = ((i*2654435761) % 2^32) / 2^32, x = f32(2u - 1)."""
    i = np.arange(3 * 224 * 224, dtype=np.uint64)
    u = ((i * np.uint64(2654435761)) % np.uint64(2**32)).astype(np.float64) / 2**32
    return (u * 2 - 1).astype(np.float32).reshape(1, 3, 224, 224)


def to_onnx(net: nn.Sequential, path: Path) -> None:
    """Writes `net` (reference AlexNet, guided ReLUs as plain Relu) as an opset-13 ONNX graph."""
    nodes, inits = [], []
    x = "data_0"
    for k, m in enumerate(net):
        y = f"{type(m).__name__.lower()}_{k}"
        if isinstance(m, nn.Conv2d):
            w, b = f"conv{k}_W", f"conv{k}_B"
            inits += [
                numpy_helper.from_array(m.weight.detach().numpy().astype(np.float32), w),
                numpy_helper.from_array(m.bias.detach().numpy().astype(np.float32), b),
            ]
            p = m.padding
            nodes.append(helper.make_node(
                "Conv", [x, w, b], [y], name=f"conv_{k}",
                kernel_shape=list(m.kernel_size), strides=list(m.stride),
                pads=[p[0], p[1], p[0], p[1]], dilations=list(m.dilation), group=m.groups))
        elif isinstance(m, ref.Guided):
            nodes.append(helper.make_node("Relu", [x], [y], name=f"relu_{k}"))
        elif isinstance(m, nn.LocalResponseNorm):
            nodes.append(helper.make_node(
                "LRN", [x], [y], name=f"lrn_{k}", size=m.size, alpha=m.alpha, beta=m.beta,
                bias=m.k))
        elif isinstance(m, nn.MaxPool2d):
            nodes.append(helper.make_node(
                "MaxPool", [x], [y], name=f"pool_{k}", kernel_shape=[m.kernel_size] * 2,
                strides=[m.stride] * 2, pads=[m.padding] * 4, ceil_mode=int(m.ceil_mode)))
        else:
            raise SystemExit(f"unexpected module {m}")
        x = y
    with torch.no_grad():
        out_shape = list(net(torch.zeros(1, 3, 224, 224)).shape)
    graph = helper.make_graph(
        nodes, "alexnet_features_seeded",
        [helper.make_tensor_value_info("data_0", TensorProto.FLOAT, [1, 3, 224, 224])],
        [helper.make_tensor_value_info(x, TensorProto.FLOAT, out_shape)], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)],
                              producer_name="convlens scripts/bench_reference.py")
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))


def median_ms(run, warmup: int, repeats: int) -> float:
    for _ in range(warmup):
        run()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        run()
        times.append((time.perf_counter() - t) * 1e3)
    return statistics.median(times)


def torch_gbp_s(net, convs, x, chunk: int, repeats: int) -> tuple[float, float, int]:
    """Median wall and process CPU seconds (all threads) of GBP over every conv filter."""
    totals, cpu, filters = [], [], 0
    for r in range(repeats):
        t, c = time.perf_counter(), time.process_time()
        filters = 0
        for upto in convs:
            imgs = ref.gbp_layer_vmap(net, upto, x, chunk)
            filters += sum(len(a) for a in imgs)
        totals.append(time.perf_counter() - t)
        cpu.append(time.process_time() - c)
        print(f"torch GBP run {r + 1}/{repeats}: {totals[-1]:.1f} s ({cpu[-1]:.1f} s CPU)",
              file=sys.stderr)
    return statistics.median(totals), statistics.median(cpu), filters


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--convlens", default=str(ROOT / "target/debug/convlens"))
    ap.add_argument("--skip-gbp", action="store_true")
    ap.add_argument("--repeats", type=int, default=10, help="timed forward runs (both sides)")
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--gbp-repeats", type=int, default=1, help="timed PyTorch GBP runs")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--chunk", type=int, default=119, help="seeds per PyTorch reverse pass")
    ap.add_argument("--onnx-out", type=Path, help="keep the ONNX model here")
    ap.add_argument("--json-out", type=Path, help="also write all figures as JSON")
    args = ap.parse_args()

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    net, convs = ref.alexnet()
    x_np = formula_input()
    x = torch.from_numpy(x_np)

    with tempfile.TemporaryDirectory(prefix="convlens-bench-") as tmp:
        onnx_path = args.onnx_out or Path(tmp) / "alexnet_seeded.onnx"
        to_onnx(net, onnx_path)
        npy_path = Path(tmp) / "input.npy"
        np.save(npy_path, x_np)

        def ort_session() -> ort.InferenceSession:
            opts = ort.SessionOptions()
            opts.intra_op_num_threads = args.threads
            opts.inter_op_num_threads = 1
            return ort.InferenceSession(str(onnx_path), opts, providers=["CPUExecutionProvider"])

        sess = ort_session()
        (ort_out,) = sess.run(None, {"data_0": x_np})
        del sess
        gc.collect()
        with torch.no_grad():
            torch_out = net(x).numpy()
        err = float(np.abs(ort_out - torch_out).max() / max(np.abs(torch_out).max(), 1e-30))
        if err > 1e-4:
            raise SystemExit(f"the ONNX export differs from torch (scaled max error {err:.2e})")
        print(f"ONNX export matches torch (scaled max error {err:.1e}); "
              f"onnxruntime {ort.__version__}, torch {torch.__version__}, "
              f"{args.threads} threads", file=sys.stderr)

        torch_s, torch_cpu_s, torch_filters = (None, None, None)
        if not args.skip_gbp:
            print("PyTorch batched GBP of every conv filter (minutes)...", file=sys.stderr)
            torch_s, torch_cpu_s, torch_filters = torch_gbp_s(net, convs, x, args.chunk, args.gbp_repeats)

        # onnxruntime's forward is timed right before ConvLens's, after the long PyTorch run,
        # so both forward passes meet the machine in the same state (timed before the PyTorch
        # run, onnxruntime had a cool machine and ConvLens a hot one: 27 vs 14 ms for the same
        # ConvLens build).
        sess = ort_session()
        ort_ms = median_ms(lambda: sess.run(None, {"data_0": x_np}), args.warmup, args.repeats)
        print(f"onnxruntime forward: {ort_ms:.2f} ms", file=sys.stderr)

        # No thread pool of this process may compete with ConvLens's run: onnxruntime's
        # workers spin between runs while their session lives (measured: ConvLens's forward
        # 29-33 ms with the session alive, 24 ms without).
        del sess
        gc.collect()
        cmd = [args.convlens, "bench", str(onnx_path), "--json", "--device", "cpu",
               "--input", str(npy_path), "--repeats", str(args.repeats),
               "--warmup", str(args.warmup)]
        if args.skip_gbp:
            cmd.append("--skip-gbp")
        print("running: " + " ".join(cmd), file=sys.stderr)
        done = subprocess.run(cmd, stdout=subprocess.PIPE, text=True)
        if done.returncode != 0:
            raise SystemExit(f"convlens bench failed with status {done.returncode}")
        cl = json.loads(done.stdout)

    fwd_ratio = cl["forward_ms"] / ort_ms
    rows = [("forward (ms)", f"{cl['forward_ms']:.2f}", f"{ort_ms:.2f}", "onnxruntime",
             f"convlens/ort = {fwd_ratio:.2f}", "<= 1.5", fwd_ratio <= 1.5)]
    gbp_ratio = None
    if torch_s is not None and cl.get("gbp_all_conv_s"):
        if torch_filters != cl["gbp_filters"]:
            raise SystemExit(f"filter counts differ: torch {torch_filters}, "
                             f"convlens {cl['gbp_filters']}")
        gbp_ratio = torch_s / cl["gbp_all_conv_s"]
        rows.append((f"GBP, {cl['gbp_filters']} filters (s)", f"{cl['gbp_all_conv_s']:.1f}",
                     f"{torch_s:.1f}", "PyTorch vmap", f"torch/convlens = {gbp_ratio:.2f}",
                     ">= 3", gbp_ratio >= 3))
        if cl.get("gbp_cpu_s"):
            r = torch_cpu_s / cl["gbp_cpu_s"]
            rows.append(("GBP, process CPU time (s)", f"{cl['gbp_cpu_s']:.1f}",
                         f"{torch_cpu_s:.1f}", "PyTorch vmap", f"torch/convlens = {r:.2f}",
                         "-", None))
    head = ("measure", "convlens", "reference", "reference is", "ratio", "target", "met")
    table = [head] + [r[:6] + ({True: "yes", False: "no", None: "-"}[r[6]],) for r in rows]
    widths = [max(len(str(r[k])) for r in table) for k in range(len(head))]
    print(f"AlexNet-shaped network, seeded; CPU, {args.threads} threads; "
          f"convlens device: {cl['device']}")
    for r in table:
        print("  ".join(str(c).ljust(w) for c, w in zip(r, widths)).rstrip())
    other = {k: cl.get(k) for k in ("frame_ms", "tiles", "frame_layer", "input_to_tiles_ms",
                                    "uploaded_tiles", "peak_rss_mib", "render_device")}
    print("convlens, other figures: " + ", ".join(f"{k}={v}" for k, v in other.items()))
    for note in cl.get("notes", []):
        print(f"convlens note: {note}")
    if args.json_out:
        args.json_out.write_text(json.dumps({
            "threads": args.threads, "repeats": args.repeats, "warmup": args.warmup,
            "onnxruntime": ort.__version__, "torch": torch.__version__,
            "ort_forward_ms": ort_ms, "torch_gbp_s": torch_s, "torch_gbp_cpu_s": torch_cpu_s,
            "torch_gbp_filters": torch_filters,
            "torch_gbp_repeats": None if torch_s is None else args.gbp_repeats,
            "forward_ratio_convlens_over_ort": fwd_ratio,
            "gbp_ratio_torch_over_convlens": gbp_ratio, "convlens": cl}, indent=2) + "\n")


if __name__ == "__main__":
    main()
