#!/usr/bin/env python3
"""Seconds per training step of nemascope's U-Net in PyTorch (Python), to
compare with `nemascope-train bench-step` (Rust/tch) on the same machine:
same layers, same GWP pooling, BCE and RMSprop, same batch and crop.

    .venv-torch/bin/python tests/reference/unet_step.py   # defaults = the default run: base 8, depth 4, 16 × 96², GWP r = 7
"""
import argparse
import time

import torch
import torch.nn as nn
import torch.nn.functional as F


class DoubleConv(nn.Sequential):
    def __init__(self, cin, cout):
        super().__init__(
            nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(),
            nn.Conv2d(cout, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(),
        )


class UNet(nn.Module):
    def __init__(self, base, depth, classes=1):
        super().__init__()
        widths = [base << l for l in range(depth + 1)]
        self.down = nn.ModuleList()
        cin = 1
        for w in widths:
            self.down.append(DoubleConv(cin, w))
            cin = w
        self.up = nn.ModuleList(
            DoubleConv(widths[l + 1] + widths[l], widths[l]) for l in reversed(range(depth))
        )
        self.head = nn.Conv2d(widths[0], classes, 1)

    def forward(self, x):
        skips = []
        for l, block in enumerate(self.down):
            if l > 0:
                x = F.max_pool2d(x, 2)
            x = block(x)
            skips.append(x)
        skips.pop()
        for block in self.up:
            skip = skips.pop()
            x = F.interpolate(x, size=skip.shape[2:], mode="nearest")
            x = block(torch.cat([x, skip], 1))
        return torch.sigmoid(self.head(x))


def gwp(maps, r, eps=1e-5):
    flat = maps.flatten(2)
    m = flat.amax(-1, keepdim=True).detach()
    w = torch.exp(r * (flat - m)) - (1 - eps) * torch.exp(-r * m)
    return (w * flat).sum(-1) / w.sum(-1)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--base", type=int, default=8)
    ap.add_argument("--depth", type=int, default=4)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--crop", type=int, default=96)
    ap.add_argument("--r", type=float, default=7.0)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--threads", type=int, default=0)
    a = ap.parse_args()
    if a.threads > 0:
        torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    net = UNet(a.base, a.depth)
    opt = torch.optim.RMSprop(net.parameters(), lr=1e-4)
    x = torch.randn(a.batch, 1, a.crop, a.crop)
    y = torch.ones(a.batch, 1)
    times = []
    for i in range(a.warmup + a.steps):
        t0 = time.perf_counter()
        s = gwp(net(x), a.r).clamp(1e-6, 1 - 1e-6)
        loss = F.binary_cross_entropy(s, y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        loss.item()
        if i >= a.warmup:
            times.append(time.perf_counter() - t0)
    times.sort()
    print(
        f"python/torch {torch.__version__}: batch {a.batch} x 1 x {a.crop} x {a.crop}, "
        f"base {a.base} depth {a.depth}, threads {torch.get_num_threads()}: "
        f"median {times[len(times) // 2]:.4f} s/step (min {times[0]:.4f}, max {times[-1]:.4f}, {a.steps} steps)"
    )


if __name__ == "__main__":
    main()
