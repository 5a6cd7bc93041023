#!/usr/bin/env python3
"""Make the reference data for the embedded default model (tests/fixtures/default_model/).

For each photo in assets/images/ (coffee, chelsea, astronaut) this script
preprocesses the image exactly as ConvLens does, saves the input tensor, runs
assets/model/efficientnet_lite0.onnx with onnxruntime (CPUExecutionProvider)
and records the top-5 classes and the first 10 logits in reference.json.

Preprocessing (the Rust side implements the same):
  1. PIL `Image.open(path).convert("RGB")`
  2. centre-crop to the model's aspect ratio (1:1): the largest centred square;
     the left/top offset is floor(excess / 2)
  3. resize to 224x224 with `Image.BILINEAR` (PIL's antialiased bilinear)
  4. x = (pixel / 255 - 0.498) / 0.502 in float32, layout [1,3,224,224] (NCHW, RGB)
     (= (pixel - 127) / 128 up to rounding, the TF EfficientNet-Lite MEAN_RGB/STDDEV_RGB)

Outputs (in tests/fixtures/default_model/):
  <photo>_input.npy   float32 [1,3,224,224], C-order, written with np.save
  reference.json      {"model", "mean", "std", "input_size", "resize", "crop",
                       "images": {photo: {"input_npy", "top5": [[index, prob, name], ...],
                                          "logits_head": [first 10 logits]}}}
                      prob = softmax of the logits (the model ends in Gemm, not Softmax)

It also checks that coffee's top-1 is class 967 "espresso".

Packages (PyPI): onnxruntime==1.32.0, numpy==2.4.6, pillow==13.0.0 (onnx is not needed).
Run from anywhere, after scripts/convert_default_model.py has written the model:
    <venv>/bin/python scripts/make_default_model_reference.py
"""

import json
import os
import sys

import numpy as np
from PIL import Image

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MODEL_REL = "assets/model/efficientnet_lite0.onnx"
LABELS_REL = "assets/labels/imagenet_classes.txt"
IMAGES_REL = "assets/images"
OUT_DIR = os.path.join(REPO_ROOT, "tests", "fixtures", "default_model")
PHOTOS = ["coffee", "chelsea", "astronaut"]
SIZE = 224
MEAN = [0.498, 0.498, 0.498]
STD = [0.502, 0.502, 0.502]


def center_crop_box(w, h, aspect_w=1, aspect_h=1):
    """Largest centred crop with aspect ratio aspect_w:aspect_h; offsets floor(excess/2)."""
    if w * aspect_h > h * aspect_w:          # too wide
        cw, ch = (h * aspect_w) // aspect_h, h
    else:                                    # too tall (or exact)
        cw, ch = w, (w * aspect_h) // aspect_w
    left, top = (w - cw) // 2, (h - ch) // 2
    return left, top, left + cw, top + ch


def preprocess(path):
    img = Image.open(path).convert("RGB")
    box = center_crop_box(*img.size)
    img = img.crop(box).resize((SIZE, SIZE), Image.BILINEAR)
    a = np.asarray(img, dtype=np.float32) / np.float32(255.0)          # HWC, RGB
    a = (a - np.asarray(MEAN, np.float32)) / np.asarray(STD, np.float32)
    x = np.ascontiguousarray(a.transpose(2, 0, 1)[None], dtype=np.float32)
    assert x.shape == (1, 3, SIZE, SIZE) and x.dtype == np.float32
    return x, box, img.size


def softmax(z):
    z = z.astype(np.float64)
    e = np.exp(z - z.max())
    return e / e.sum()


def main():
    import onnxruntime as ort

    labels = open(os.path.join(REPO_ROOT, LABELS_REL), encoding="utf-8").read().splitlines()
    assert len(labels) == 1000, len(labels)
    sess = ort.InferenceSession(os.path.join(REPO_ROOT, MODEL_REL),
                                providers=["CPUExecutionProvider"])
    assert [i.name for i in sess.get_inputs()] == ["input"]
    assert [o.name for o in sess.get_outputs()] == ["logits"]

    os.makedirs(OUT_DIR, exist_ok=True)
    ref = {
        "model": MODEL_REL,
        "labels": LABELS_REL,
        "mean": MEAN,
        "std": STD,
        "input_size": [SIZE, SIZE],
        "layout": "NCHW RGB float32",
        "crop": "largest centred square, offset floor(excess/2)",
        "resize": "PIL Image.BILINEAR (antialiased bilinear) to 224x224",
        "images": {},
    }
    for name in PHOTOS:
        src = os.path.join(IMAGES_REL, name + ".png")
        x, box, _ = preprocess(os.path.join(REPO_ROOT, src))
        npy = f"{name}_input.npy"
        np.save(os.path.join(OUT_DIR, npy), x)
        logits = sess.run(["logits"], {"input": x})[0][0]
        probs = softmax(logits)
        top = np.argsort(-probs, kind="stable")[:5]
        ref["images"][name] = {
            "source": src,
            "crop_box": list(box),
            "input_npy": npy,
            "top5": [[int(i), float(probs[i]), labels[i]] for i in top],
            "logits_head": [float(v) for v in logits[:10]],
        }
        print(f"{name}: crop {box}")
        for i in top:
            print(f"   {int(i):4d} {probs[i]:.4f} {labels[i]}")

    with open(os.path.join(OUT_DIR, "reference.json"), "w", encoding="utf-8") as f:
        json.dump(ref, f, indent=2)
        f.write("\n")

    top1 = ref["images"]["coffee"]["top5"][0]
    assert top1[0] == 967 and top1[2] == "espresso", f"coffee top-1 is {top1}, expected espresso"
    total = sum(os.path.getsize(os.path.join(OUT_DIR, f)) for f in os.listdir(OUT_DIR))
    print(f"wrote {OUT_DIR} ({total} bytes)")
    assert total < 3 * 1024 * 1024


if __name__ == "__main__":
    sys.exit(main())
