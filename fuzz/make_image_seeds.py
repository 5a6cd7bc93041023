#!/usr/bin/env python3
"""Writes tiny seed inputs for the image_loader fuzz target into corpus/image_loader/.

Each seed is one selector byte followed by the file bytes (see fuzz_targets/image_loader.rs):
b0 % 7 = extension (png jpg webp bmp tif gif npy), (b0 // 7) % 3 = fit, (b0 // 21) % 2 = size.
Needs Pillow and numpy (e.g. the /root/.cache/convlens-venv used for the test fixtures).
"""
import io
import os
import sys

import numpy as np
from PIL import Image

EXT = {"png": 0, "jpg": 1, "webp": 2, "bmp": 3, "tif": 4, "gif": 5, "npy": 6}
out = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus", "image_loader")
os.makedirs(out, exist_ok=True)
rng = np.random.default_rng(0)


def selector(ext, fit, size):
    b = EXT[ext] + 7 * fit + 21 * size
    assert b < 256 and b % 7 == EXT[ext]
    return bytes([b])


def save(name, ext, body, fit=0, size=0):
    with open(os.path.join(out, name), "wb") as f:
        f.write(selector(ext, fit, size) + body)


def pil(img, fmt, **kw):
    buf = io.BytesIO()
    img.save(buf, fmt, **kw)
    return buf.getvalue()


rgb = Image.fromarray(rng.integers(0, 256, (5, 7, 3), dtype=np.uint8), "RGB")
rgba = Image.fromarray(rng.integers(0, 256, (6, 3, 4), dtype=np.uint8), "RGBA")
grey = Image.fromarray(rng.integers(0, 256, (4, 9), dtype=np.uint8), "L")
grey16 = Image.fromarray(rng.integers(0, 65536, (3, 5), dtype=np.uint16))
tall = Image.fromarray(rng.integers(0, 256, (40, 2, 3), dtype=np.uint8), "RGB")
exact = Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8), "RGB")

save("rgb.png", "png", pil(rgb, "PNG"), fit=0)
save("rgba.png", "png", pil(rgba, "PNG"), fit=1)
save("grey16.png", "png", pil(grey16, "PNG"), fit=2)
save("palette.png", "png", pil(rgb.convert("P"), "PNG"), fit=0, size=1)
save("optimized.png", "png", pil(rgb, "PNG", optimize=True), fit=1, size=1)
save("exact32.png", "png", pil(exact, "PNG"))
save("rgb.jpg", "jpg", pil(rgb, "JPEG", quality=50), fit=0)
save("grey.jpg", "jpg", pil(grey, "JPEG"), fit=2)
save("progressive.jpg", "jpg", pil(tall, "JPEG", progressive=True), fit=1, size=1)
save("lossless.webp", "webp", pil(rgba, "WEBP", lossless=True), fit=0)
save("lossy.webp", "webp", pil(rgb, "WEBP", quality=30), fit=2, size=1)
save("rgb.bmp", "bmp", pil(rgb, "BMP"), fit=1)
save("grey.bmp", "bmp", pil(grey, "BMP"), fit=0, size=1)
save("rgb.tif", "tif", pil(rgb, "TIFF"), fit=2)
save("lzw.tif", "tif", pil(rgba, "TIFF", compression="tiff_lzw"), fit=0)
save("grey16.tif", "tif", pil(grey16, "TIFF"), fit=1, size=1)
frames = [rgb.convert("P"), Image.fromarray(255 - np.asarray(rgb)).convert("P")]
save("anim.gif", "gif", pil(frames[0], "GIF", save_all=True, append_images=frames[1:]), fit=0)
save("grey.gif", "gif", pil(grey, "GIF"), fit=2, size=1)


def npy(shape):
    buf = io.BytesIO()
    np.save(buf, rng.standard_normal(shape).astype(np.float32))
    return buf.getvalue()


save("nchw.npy", "npy", npy((1, 3, 32, 32)), size=0)
save("chw_small.npy", "npy", npy((3, 4, 6)), size=1)
save("wrong_shape.npy", "npy", npy((2, 2)), size=1)
buf = io.BytesIO()
np.save(buf, rng.standard_normal((1, 3, 4, 6)))  # float64
save("f64.npy", "npy", buf.getvalue(), size=1)
print(len(os.listdir(out)), "seeds in", out, file=sys.stderr)
