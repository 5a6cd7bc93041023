#!/usr/bin/env python3
"""`convlens scan` throughput against onnxruntime's plain batched inference, on the CPU.

Images: N photos of 224x224 (crops of scikit-image's bundled photos, written as PNG into a
temporary folder). Models: the AlexNet-shaped network and the embedded EfficientNet-Lite0
(see scripts/bench_batch.py).

onnxruntime: the images decoded and normalised once, up front (not timed), then
`session.run` over batches of B, outputs only (plain inference): images/s.
ConvLens: `convlens scan MODEL --inputs DIR --batch B --layers conv --device cpu`, wall
time of the whole process (model load, PNG decoding, preprocessing, every conv layer's
statistics and top-k, receptive fields, writing the directory), once with `--crop-size 0`
and once with the default crops: images/s.
Steady state: the same scan (no crops) over the first B images too; (N - B) / (t_N - t_B)
is the rate once the per-process costs (load, first passes, writing the files) are paid,
the rate a large scan runs at.
Each repeat runs onnxruntime and every ConvLens variant once, one after another, so a
noisy machine's slow minutes fall on all of them; medians are reported.
Target (issue 15): ConvLens images/s >= 0.7 x onnxruntime's, bookkeeping included.

Usage: /root/.cache/convlens-venv/bin/python scripts/bench_scan.py
       [--convlens target/debug/convlens] [--images 160] [--batch 16] [--threads 2]
       [--repeats 3] [--models alexnet,efficientnet] [--json-out FILE.json]
Needs numpy, onnx, onnxruntime, scikit-image.
"""

import argparse
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
import skimage.data
import skimage.io

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_batch import alexnet_model, with_symbolic_batch  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
MEAN = np.array([0.485, 0.456, 0.406], np.float32)
STD = np.array([0.229, 0.224, 0.225], np.float32)


def make_images(folder: Path, n: int) -> list:
    """n RGB 224x224 PNGs: seeded crops (and flips) of bundled photos at least 224 px."""
    photos = [skimage.data.astronaut(), skimage.data.chelsea(), skimage.data.coffee(),
              np.stack([skimage.data.camera()] * 3, -1)]
    rng = np.random.default_rng(7)
    paths = []
    for k in range(n):
        p = photos[k % len(photos)]
        y = rng.integers(0, p.shape[0] - 224 + 1)
        x = rng.integers(0, p.shape[1] - 224 + 1)
        img = p[y:y + 224, x:x + 224, :3]
        if rng.integers(2):
            img = img[:, ::-1]
        path = folder / f"img_{k:05d}.png"
        skimage.io.imsave(str(path), np.ascontiguousarray(img), check_contrast=False)
        paths.append(path)
    return paths


class OrtBatches:
    """onnxruntime over the images in batches, inputs prepared up front (not timed)."""

    def __init__(self, model, images, batch, threads):
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        self.sess = ort.InferenceSession(with_symbolic_batch(model).SerializeToString(), opts,
                                         providers=["CPUExecutionProvider"])
        self.feed = self.sess.get_inputs()[0].name
        x = np.stack([((skimage.io.imread(str(p))[..., :3].astype(np.float32) / 255 - MEAN)
                       / STD).transpose(2, 0, 1) for p in images]).astype(np.float32)
        self.chunks = [x[i:i + batch] for i in range(0, len(x), batch)]
        self.n = len(images)
        self.sess.run(None, {self.feed: self.chunks[0]})  # warm-up

    def seconds(self) -> float:
        t = time.perf_counter()
        for c in self.chunks:
            self.sess.run(None, {self.feed: c})
        return time.perf_counter() - t


def convlens_seconds(args, model_path, folder, crops: bool) -> float:
    """Wall time of one `convlens scan` process over `folder`."""
    with tempfile.TemporaryDirectory(prefix="convlens-scan-out-") as out:
        cmd = [args.convlens, "scan", *([str(model_path)] if model_path else []),
               "--inputs", str(folder), "--out", out, "--batch", str(args.batch),
               "--layers", "conv", "--device", "cpu",
               *([] if crops else ["--crop-size", "0"])]
        t = time.perf_counter()
        done = subprocess.run(cmd, stderr=subprocess.PIPE, text=True,
                              env={**os.environ, "RAYON_NUM_THREADS": str(args.threads)})
        seconds = time.perf_counter() - t
    if done.returncode != 0:
        raise SystemExit(f"convlens scan failed: {done.stderr[-2000:]}")
    return seconds


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--convlens", default=str(ROOT / "target/debug/convlens"))
    ap.add_argument("--images", type=int, default=160)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--models", default="alexnet,efficientnet")
    ap.add_argument("--json-out", type=Path)
    args = ap.parse_args()
    results = []
    with tempfile.TemporaryDirectory(prefix="convlens-scan-bench-") as tmp:
        tmp = Path(tmp)
        folder = tmp / "images"
        folder.mkdir()
        images = make_images(folder, args.images)
        head = tmp / "head"
        head.mkdir()
        for p in images[:args.batch]:
            (head / p.name).symlink_to(p)
        for name in args.models.split(","):
            if name == "alexnet":
                model = alexnet_model(1)
                path = tmp / "alexnet.onnx"
                onnx.save(model, str(path))
            elif name == "efficientnet":
                model = onnx.load(str(ROOT / "assets/model/efficientnet_lite0.onnx"))
                path = None  # the embedded default
            else:
                raise SystemExit(f"unknown model {name!r}")
            ort_run = OrtBatches(model, images, args.batch, args.threads)
            t = {"ort": [], "scan": [], "head": [], "crops": []}
            for _ in range(args.repeats):
                t["ort"].append(ort_run.seconds())
                t["scan"].append(convlens_seconds(args, path, folder, crops=False))
                t["head"].append(convlens_seconds(args, path, head, crops=False))
                t["crops"].append(convlens_seconds(args, path, folder, crops=True))
            del ort_run
            m = {k: statistics.median(v) for k, v in t.items()}
            n, n_head = len(images), min(args.batch, len(images))
            steady = (n - n_head) / (m["scan"] - m["head"]) if m["scan"] > m["head"] else None
            results.append({"model": name, "ort_images_per_s": n / m["ort"],
                            "scan_images_per_s_no_crops": n / m["scan"],
                            "scan_images_per_s": n / m["crops"],
                            "scan_steady_images_per_s": steady,
                            "seconds": t})
    cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo")
                if l.startswith("model name")), platform.processor())
    print(f"CPU: {cpu}; {args.threads} threads; onnxruntime {ort.__version__}; "
          f"{args.images} images of 224x224, batch {args.batch}")
    for r in results:
        print(f"{r['model']}: ort {r['ort_images_per_s']:.1f} img/s; scan "
              f"{r['scan_images_per_s_no_crops']:.1f} img/s without crops "
              f"({r['scan_images_per_s_no_crops'] / r['ort_images_per_s']:.2f}x), "
              f"{r['scan_images_per_s']:.1f} with crops "
              f"({r['scan_images_per_s'] / r['ort_images_per_s']:.2f}x)")
        if r["scan_steady_images_per_s"]:
            print(f"{r['model']}: steady state (no crops, past the first {args.batch} images) "
                  f"{r['scan_steady_images_per_s']:.1f} img/s "
                  f"({r['scan_steady_images_per_s'] / r['ort_images_per_s']:.2f}x)")
    if args.json_out:
        args.json_out.write_text(json.dumps({"cpu": cpu, "threads": args.threads,
                                             "batch": args.batch, "images": args.images,
                                             "onnxruntime": ort.__version__,
                                             "results": results}, indent=2) + "\n")


if __name__ == "__main__":
    main()
