#!/usr/bin/env python3
"""Reference feature visualisations made with Lucent (torch-lucent, the PyTorch port of Lucid),
for a Rust test that compares ConvLens's `featvis` against it.

What it does
------------
1. Builds a small CNN with seeded random weights (torch.manual_seed(20260611); conv weights
   kaiming_normal_ (fan_in, relu gain), biases uniform in [-0.05, 0.05]):

       conv1 (3→16, 5x5, pad 2) → ReLU → MaxPool 2 →
       conv2 (16→32, 3x3, pad 1) → ReLU → MaxPool 2 →
       conv3 (32→32, 3x3, pad 1) → ReLU

   exports it with the classic TorchScript exporter (dynamo=False, opset 17, input "input",
   fixed shape [1, 3, 64, 64]) to tests/fixtures/featvis/lucent_small.onnx (~60 KB), and checks
   onnxruntime against torch on a random input (max abs diff < 1e-4).

2. For filters 1..F of conv2 (filter k = channel k-1; the objective is Lucent's
   `objectives.channel("conv2", k-1)`, i.e. the mean over (h, w) of the Conv node's output,
   before the ReLU) and seeds 0..S-1, runs Lucent's render_vis recipe with its defaults:
   `param.image(64)` (FFT spectrum, decorrelated colours, sigmoid), `transform.standard_transforms`
   (pad 12 with 0.5, jitter 8, random_scale 0.90..1.10, random_rotate -10..10 deg (+0 five
   times), jitter 4), preprocess=True (`transform.normalize()`: ImageNet mean/std),
   Adam(lr=0.05), thresholds=(128,), model.eval().

   The loop is written here from Lucent's own parts (param.image, transform.standard_transforms
   + transform.normalize + transform.compose, objectives.channel, render.hook_model), line for
   line the body of lucent.optvis.render.render_vis, because render_vis does not return the
   loss. Like render_vis it appends `torch.nn.Upsample(size=224, bilinear, align_corners=True)`
   to the transforms because the image is smaller than 224 (Lucent's default: the model sees
   the transformed 88..97 px image resized to 224x224). `--fixed-image-size 64` passes
   render_vis's `fixed_image_size=64` instead (resize the transformed image to 64x64, as
   ConvLens does); the JSON's "transforms" is then "standard_fixed64" and not "standard".
   The script checks that its loop gives the same image as render_vis itself for
   (filter 1, seed 0).

   Seeding per run: torch.manual_seed(s) (the spectrum's initial noise), np.random.seed(s)
   (Lucent's transforms draw with np.random.choice), random.seed(s).

   Recorded per (filter, seed):
     final      the objective of the final image (the parameterisation's output in [0, 1]
                after the last Adam step), normalised with mean/std, no random transforms, at
                64x64 (the model's own size, no resize);
     last_step  the objective at step 128 (= -loss returned by that step's closure, i.e. on
                the parameters after 127 updates, under step 128's random transforms and the
                resize), as Lucent optimises it.
   Per filter: the objective of a mid-grey (0.5) image and of NOISE uniform [0, 1) noise
   images (np.random.RandomState(1000 + i)), both normalised, at 64x64.

3. Checks with onnxruntime that the ONNX model's /conv2/Conv output equals torch's conv2 on
   one of the final images (normalised), so that the objective means the same in both.

The committed fixture was made with `--fixed-image-size 64` (6 min on 2 shared cores), which
is what tests/it/featvis.rs compares against: ConvLens resamples the transformed image to the
model's own size too.

Output: tests/fixtures/featvis/lucent_reference.json (layout in the brief of the test:
model, layer, size, steps, lr, param, decorrelate, transforms, objective, mean, std, seeds,
torch_version, lucent_version, filters: [{filter, final[S], last_step[S], grey, noise[]}]).

Install (Python 3.11, CPU only; a separate venv because torch is large; PyPI's Linux torch
wheel needs the nvidia-* CUDA libraries even on CPU, ~5.4 GB in all):

    python3 -m venv /root/.cache/lucent-venv
    V=/root/.cache/lucent-venv/bin
    $V/pip install torch==2.15.0                  # pulls nvidia-* (import fails without them)
    $V/pip install torchvision==0.29.2 --no-deps   # lucent imports torchvision.transforms
    $V/pip install torch-lucent==0.1.8 --no-deps   # its pins (pytest, coveralls, sklearn...) unneeded
    $V/pip install kornia==0.4.1 --no-deps         # lucent pins kornia<=0.4.1: kornia 0.9 has no
                                                   # top-level get_rotation_matrix2d/warp_affine,
                                                   # and defaults align_corners=True (0.4.1: False)
    $V/pip install tqdm decorator ipython pillow numpy onnx onnxruntime

Run:  nice -n 10 /root/.cache/lucent-venv/bin/python scripts/make_lucent_reference.py
Deterministic (CPU; a rerun writes the same JSON). Time for 8 filters x 5 seeds x 128 steps:
measured 17.5 minutes wall (1020 s for the 40 Lucent runs, 7-43 s each) on 2 CPU cores shared
with a cargo build (load average 3-5), at Lucent's default 224 px resize; 6 minutes (345 s of
runs) with --fixed-image-size 64 under the same load. The grey/noise baselines, ONNX export and
checks take seconds; the render_vis cross-check one more run. On idle cores expect well under
10 minutes (not measured). --filters/--seeds/--steps cut it down; the JSON records what ran.
"""

import argparse
import json
import pathlib
import random
import sys
import time
import warnings

warnings.filterwarnings("ignore", category=FutureWarning)  # kornia 0.4.1's torch.jit.script
warnings.filterwarnings("ignore", category=UserWarning)
warnings.filterwarnings("ignore", category=DeprecationWarning)  # the TorchScript ONNX exporter

import numpy as np
import torch
import torch.nn as nn

import lucent
from lucent.optvis import objectives, param, render, transform

ROOT = pathlib.Path(__file__).resolve().parent.parent
OUT_DIR = ROOT / "tests/fixtures/featvis"
MODEL_REL = "tests/fixtures/featvis/lucent_small.onnx"
SIZE = 64
MEAN = [0.485, 0.456, 0.406]  # lucent.optvis.transform.normalize()
STD = [0.229, 0.224, 0.225]
LR = 0.05
WEIGHT_SEED = 20260611
NOISE = 4


class SmallCnn(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 16, 5, stride=1, padding=2)
        self.relu1 = nn.ReLU()  # not in place: the conv2 hook must keep the pre-ReLU map
        self.pool1 = nn.MaxPool2d(2)
        self.conv2 = nn.Conv2d(16, 32, 3, padding=1)
        self.relu2 = nn.ReLU()
        self.pool2 = nn.MaxPool2d(2)
        self.conv3 = nn.Conv2d(32, 32, 3, padding=1)
        self.relu3 = nn.ReLU()

    def forward(self, x):
        x = self.pool1(self.relu1(self.conv1(x)))
        x = self.pool2(self.relu2(self.conv2(x)))
        return self.relu3(self.conv3(x))


def build_model():
    torch.manual_seed(WEIGHT_SEED)
    model = SmallCnn()
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_in", nonlinearity="relu")
            nn.init.uniform_(m.bias, -0.05, 0.05)
    return model.eval()


def normalise(img):
    """Lucent's transform.normalize() (torchvision Normalize per image)."""
    return transform.normalize()(img)


def conv2_out(model, x):
    """conv2's output (pre-ReLU) for a model input x (already normalised)."""
    with torch.no_grad():
        return model.conv2(model.pool1(model.relu1(model.conv1(x))))


def objective_of(model, img, k):
    """The channel objective of a [0, 1] image at its own size, no random transforms."""
    return float(conv2_out(model, normalise(img))[:, k].mean())


def rel(path):
    """path relative to the repository root where it lies inside it."""
    path = pathlib.Path(path).resolve()
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)


def export_onnx(model, path):
    import onnx
    import onnxruntime as ort

    x = torch.rand(1, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(7))
    kwargs = dict(input_names=["input"], output_names=["output"], opset_version=17,
                  do_constant_folding=True)
    try:
        torch.onnx.export(model, (x,), str(path), dynamo=False, **kwargs)
    except TypeError:  # older torch without the dynamo argument
        torch.onnx.export(model, (x,), str(path), **kwargs)
    m = onnx.load(str(path))
    onnx.checker.check_model(m)
    convs = [n for n in m.graph.node if n.op_type == "Conv"]
    names = [n.name for n in convs]
    print(f"ONNX: {rel(path)}, {path.stat().st_size} bytes, opset "
          f"{m.opset_import[0].version}, Conv nodes {names}")
    conv2 = next(n for n in convs if "conv2" in n.name)
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = sess.run(None, {"input": x.numpy()})[0]
    with torch.no_grad():
        want = model(x).numpy()
    diff = float(np.abs(got - want).max())
    print(f"onnxruntime vs torch on a random input: max abs diff {diff:.3g}")
    assert diff < 1e-4, diff
    return conv2.name, conv2.output[0]


def ort_conv2(path, conv2_output, x):
    """onnxruntime's output of the conv2 node for input x (graph output added in memory)."""
    import onnx
    import onnxruntime as ort

    m = onnx.load(str(path))
    m.graph.output.append(onnx.helper.make_tensor_value_info(
        conv2_output, onnx.TensorProto.FLOAT, None))
    sess = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"])
    return sess.run([conv2_output], {"input": x})[0]


def seed_all(s):
    torch.manual_seed(s)
    np.random.seed(s)
    random.seed(s)


def make_transform_f(model, image_f, fixed_image_size):
    """render_vis's transform chain (preprocess=True, transforms=standard_transforms)."""
    transforms = transform.standard_transforms.copy()
    if model._get_name() == "InceptionV1":
        transforms.append(transform.preprocess_inceptionv1())
    else:
        transforms.append(transform.normalize())
    image_shape = image_f().shape
    if fixed_image_size is not None:
        new_size = fixed_image_size
    elif image_shape[2] < 224 or image_shape[3] < 224:
        new_size = 224
    else:
        new_size = None
    if new_size:
        transforms.append(torch.nn.Upsample(size=new_size, mode="bilinear", align_corners=True))
    return transform.compose(transforms)


def run_one(model, k, seed, steps, fixed_image_size):
    """render_vis(model, channel("conv2", k), param.image(64), thresholds=(steps,)), inlined.
    Returns (final image [1, 3, 64, 64] in [0, 1], objective at the last step, sizes seen)."""
    seed_all(seed)
    params, image_f = param.image(SIZE)  # fft=True, decorrelate=True
    optimizer = torch.optim.Adam(params, lr=LR)
    transform_f = make_transform_f(model, image_f, fixed_image_size)
    hook = render.hook_model(model, image_f)
    objective_f = objectives.as_objective(objectives.channel("conv2", k))
    last = None
    sizes = set()
    for i in range(1, steps + 1):
        def closure():
            optimizer.zero_grad()
            x = transform_f(image_f())
            sizes.add(tuple(x.shape[2:]))
            model(x)
            loss = objective_f(hook)
            loss.backward()
            return loss
        loss = optimizer.step(closure)
        last = -float(loss)
    img = image_f().detach()
    return img, last, sizes


def close_hooks(model):
    for m in model.modules():
        m._forward_hooks.clear()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--filters", type=int, default=8, help="filters 1..N of conv2")
    ap.add_argument("--seeds", type=int, default=5, help="seeds 0..N-1")
    ap.add_argument("--steps", type=int, default=128)
    ap.add_argument("--fixed-image-size", type=int, default=None,
                    help="render_vis's fixed_image_size (default: Lucent's resize to 224)")
    ap.add_argument("--out", type=pathlib.Path, default=OUT_DIR / "lucent_reference.json")
    ap.add_argument("--onnx", type=pathlib.Path, default=ROOT / MODEL_REL)
    ap.add_argument("--skip-render-vis-check", action="store_true")
    args = ap.parse_args()

    print(f"torch {torch.__version__}, lucent {lucent.__version__}, threads "
          f"{torch.get_num_threads()}, python {sys.version.split()[0]}")
    model = build_model()
    args.onnx.parent.mkdir(parents=True, exist_ok=True)
    layer, conv2_output = export_onnx(model, args.onnx)
    model_rel = rel(args.onnx)

    grey = torch.full((1, 3, SIZE, SIZE), 0.5)
    noise = [torch.from_numpy(np.random.RandomState(1000 + i).uniform(
        0.0, 1.0, (1, 3, SIZE, SIZE)).astype(np.float32)) for i in range(NOISE)]

    seeds = list(range(args.seeds))
    filters = []
    t_all = time.perf_counter()
    check_img = None
    for f in range(1, args.filters + 1):
        k = f - 1
        finals, lasts, finals_up = [], [], []
        for s in seeds:
            t0 = time.perf_counter()
            img, last, sizes = run_one(model, k, s, args.steps, args.fixed_image_size)
            close_hooks(model)
            dt = time.perf_counter() - t0
            final = objective_of(model, img, k)
            # The same final image as Lucent's model sees it without random transforms
            # (resized like the optimisation): for the log only.
            up = args.fixed_image_size or 224
            img_up = torch.nn.Upsample(size=up, mode="bilinear", align_corners=True)(img)
            final_up = objective_of(model, img_up, k)
            finals.append(final)
            lasts.append(last)
            finals_up.append(final_up)
            print(f"filter {f} seed {s}: final {final:.4f} (at {up}px {final_up:.4f}), "
                  f"last_step {last:.4f}, {dt:.1f} s, model input sizes "
                  f"{sorted({a for a, _ in sizes})}", flush=True)
            if f == 1 and s == 0:
                check_img = img
        entry = {
            "filter": f,
            "final": finals,
            "last_step": lasts,
            "grey": objective_of(model, grey, k),
            "noise": [objective_of(model, n, k) for n in noise],
        }
        print(f"filter {f}: median final {np.median(finals):.4f}, median last_step "
              f"{np.median(lasts):.4f}, grey {entry['grey']:.4f}, noise "
              f"{[round(v, 4) for v in entry['noise']]}", flush=True)
        filters.append(entry)
    t_lucent = time.perf_counter() - t_all
    n_runs = args.filters * len(seeds)
    print(f"Lucent runs: {n_runs} x {args.steps} steps in {t_lucent:.1f} s "
          f"({t_lucent / n_runs:.2f} s per run)")

    # The inlined loop is render_vis: same seed, same image.
    if not args.skip_render_vis_check:
        seed_all(0)
        t0 = time.perf_counter()
        imgs = render.render_vis(
            model, objectives.channel("conv2", 0), lambda: param.image(SIZE),
            thresholds=(args.steps,), progress=False, show_image=False,
            fixed_image_size=args.fixed_image_size)
        close_hooks(model)
        ref = torch.from_numpy(imgs[-1]).permute(0, 3, 1, 2)
        d = float((ref - check_img).abs().max())
        print(f"render_vis itself (filter 1, seed 0, {time.perf_counter() - t0:.1f} s): "
              f"max abs diff to the inlined loop's image {d:.3g}")
        assert d < 1e-5, d

    # The ONNX model's conv2 equals torch's on a Lucent image.
    x = normalise(check_img)
    want = conv2_out(model, x).numpy()
    got = ort_conv2(args.onnx, conv2_output, x.numpy())
    d = float(np.abs(got - want).max())
    print(f"onnxruntime {layer} output vs torch conv2 on filter 1 seed 0's final image: "
          f"max abs diff {d:.3g}; objective torch {want[0, 0].mean():.6f}, "
          f"onnxruntime {got[0, 0].mean():.6f}")
    assert d < 1e-4, d

    out = {
        "model": model_rel,
        "layer": layer,
        "size": SIZE,
        "steps": args.steps,
        "lr": LR,
        "param": "fft",
        "decorrelate": True,
        "transforms": "standard" if args.fixed_image_size is None
        else f"standard_fixed{args.fixed_image_size}",
        "objective": "channel",
        "mean": MEAN,
        "std": STD,
        "seeds": seeds,
        "torch_version": torch.__version__,
        "lucent_version": lucent.__version__,
        "filters": filters,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=1) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
