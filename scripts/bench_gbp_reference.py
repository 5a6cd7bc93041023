#!/usr/bin/env python3
"""The PyTorch counterpart of benches/gbp.rs: guided backpropagation of every filter of every
conv layer of an AlexNet-shaped network (bvlc AlexNet: 224x224 input, conv layers of 96, 256,
384, 384 and 256 filters = 1376 images), with batched autograd on this machine's CPU.

Same work as ConvLens: per conv layer L and channel k, the image d(sum_hw L[k])/dx under the
guided rule at every ReLU (relu(g) * 1[x > 0]), max-pooling through its argmax, LRN with its
full gradient; images copied out as float32.

Two batched strategies, each in chunks of --chunk channels:
  vmap   one forward pass (batch 1), then torch.autograd.grad(..., is_grads_batched=True):
         a vmapped reverse pass over the chunk's one-hot seeds, i.e. ConvLens's own scheme;
  expand the input repeated --chunk times, one forward and one backward on that batch (what
         a library does when it batches by replicating the image).

Usage: /root/.cache/convlens-venv/bin/python scripts/bench_gbp_reference.py [--threads 2]
       [--chunk 119] [--strategy vmap|expand|both] [--repeat 1]
Prints per-layer and total seconds (best of --repeat). Seeded (torch.manual_seed(0)).
"""

import argparse
import time

import torch
from torch import nn


class GuidedRelu(torch.autograd.Function):
    """ReLU whose backward is relu(g) * 1[x > 0]; vmappable for is_grads_batched."""

    generate_vmap_rule = True

    @staticmethod
    def forward(x):
        return x.clamp(min=0)

    @staticmethod
    def setup_context(ctx, inputs, output):
        ctx.save_for_backward(inputs[0])

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        return g.clamp(min=0) * (x > 0).to(g.dtype)


class Guided(nn.Module):
    def forward(self, x):
        return GuidedRelu.apply(x)


def alexnet() -> tuple[nn.Sequential, list[int]]:
    """bvlc AlexNet's feature extractor with guided ReLUs; indices of the conv modules."""
    lrn = lambda: nn.LocalResponseNorm(5, alpha=1e-4, beta=0.75, k=1.0)  # noqa: E731
    layers = [
        nn.Conv2d(3, 96, 11, stride=4), Guided(), lrn(), nn.MaxPool2d(3, 2),
        nn.Conv2d(96, 256, 5, padding=2, groups=2), Guided(), lrn(), nn.MaxPool2d(3, 2),
        nn.Conv2d(256, 384, 3, padding=1), Guided(),
        nn.Conv2d(384, 384, 3, padding=1, groups=2), Guided(),
        nn.Conv2d(384, 256, 3, padding=1, groups=2), Guided(),
    ]
    net = nn.Sequential(*layers).eval()
    with torch.no_grad():
        for m in net:
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_uniform_(m.weight, nonlinearity="relu")
                m.bias.zero_()
    return net, [i for i, m in enumerate(layers) if isinstance(m, nn.Conv2d)]


def gbp_layer_vmap(net: nn.Sequential, upto: int, x: torch.Tensor, chunk: int) -> torch.Tensor:
    xi = x.clone().requires_grad_(True)
    out = net[: upto + 1](xi)  # [1, C, H, W], one forward pass
    c = out.shape[1]
    images = []
    for k0 in range(0, c, chunk):
        b = min(chunk, c - k0)
        seeds = torch.zeros((b, *out.shape), dtype=out.dtype)
        seeds[torch.arange(b), 0, torch.arange(k0, k0 + b)] = 1.0
        (g,) = torch.autograd.grad(out, xi, grad_outputs=seeds, is_grads_batched=True, retain_graph=True)
        images.append(g[:, 0].float().numpy().copy())  # [b, 3, H, W]
    return images


def gbp_layer_expand(net: nn.Sequential, upto: int, x: torch.Tensor, chunk: int) -> list:
    c = net[upto].out_channels
    images = []
    for k0 in range(0, c, chunk):
        b = min(chunk, c - k0)
        xb = x.expand(b, -1, -1, -1).clone().requires_grad_(True)
        out = net[: upto + 1](xb)  # [b, C, H, W]
        seeds = torch.zeros_like(out)
        seeds[torch.arange(b), torch.arange(k0, k0 + b)] = 1.0
        (g,) = torch.autograd.grad(out, xb, grad_outputs=seeds)
        images.append(g.numpy().copy())
    return images


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--chunk", type=int, default=119)
    ap.add_argument("--strategy", choices=["vmap", "expand", "both"], default="both")
    ap.add_argument("--repeat", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    net, convs = alexnet()
    n = 3 * 224 * 224
    i = torch.arange(n, dtype=torch.float64)
    x = ((((i * 2654435761) % 2**32) / 2**32) * 2 - 1).float().reshape(1, 3, 224, 224)
    strategies = ["vmap", "expand"] if args.strategy == "both" else [args.strategy]
    print(f"torch {torch.__version__}, {args.threads} threads, chunk {args.chunk}")
    for strategy in strategies:
        run = gbp_layer_vmap if strategy == "vmap" else gbp_layer_expand
        total = 0.0
        for upto in convs:
            best = float("inf")
            for _ in range(args.repeat):
                t = time.perf_counter()
                imgs = run(net, upto, x, args.chunk)
                best = min(best, time.perf_counter() - t)
            count = sum(len(a) for a in imgs)
            total += best
            print(f"{strategy:>6} conv@{upto:>2} {count:>3} filters: {best:7.2f} s")
        print(f"{strategy:>6} GBP of all conv filters: {total:.2f} s")


if __name__ == "__main__":
    main()
