#!/usr/bin/env python3
"""Is the flat-field lamp of nemascope_core::flatfield a lamp, or debris?

For each image: its luma (Rec. 709, as the `image` crate makes it), binned
`--bin`×`--bin` (the egg recipe's data.bin=2), the median of each
`--block` px square (flatfield::illumination's measure), and a quadratic
surface fitted to the medians' logarithms with squares more than 2.5
robust deviations off dropped (five rounds). Printed per image: how far
the squares lie from the smooth surface (sd of the kept, the lowest
square, how many dropped), and how far the product's lamp (the squares
interpolated bilinearly, carried on past the outer centres) is from the
surface over the image's pixels (99th percentile and largest): what a
robust lamp would change in the model's input.

  .venv/bin/python tests/reference/lamp_fit.py ../shared/data/nemaquant/*.{tif,jpg}

Needs numpy and pillow (the reference venv, xtask's `venv()`).
"""
import argparse, os
import numpy as np
from PIL import Image


def luma(path, bin_):
    rgb = np.asarray(Image.open(path).convert("RGB"), dtype=np.float64) / 255
    g = rgb @ np.array([0.2126, 0.7152, 0.0722])
    h, w = g.shape[0] // bin_ * bin_, g.shape[1] // bin_ * bin_
    return g[:h, :w].reshape(h // bin_, bin_, w // bin_, bin_).mean((1, 3))


def centres(n, block):
    return np.array([(i * block + min((i + 1) * block, n)) / 2 - 0.5 for i in range(-(-n // block))])


def medians(g, block):
    h, w = g.shape
    return np.array([[np.median(g[y:y + block, x:x + block]) for x in range(0, w, block)]
                     for y in range(0, h, block)])


def interp(cs, p):
    """flatfield::between: the centre at or below and the next one's weight, lines past the ends."""
    if len(cs) < 2:
        raise SystemExit("the image holds fewer than two squares along a side: use a smaller --block")
    i = np.clip(np.searchsorted(cs, p, side="right"), 1, len(cs) - 1) - 1
    return i, (p - cs[i]) / (cs[i + 1] - cs[i])


def squares_lamp(m, h, w, block):
    ys, xs = centres(h, block), centres(w, block)
    j, ty = interp(ys, np.arange(h, dtype=float))
    i, tx = interp(xs, np.arange(w, dtype=float))
    along = m[j] + (m[j + 1] - m[j]) * ty[:, None]
    return along[:, i] + (along[:, i + 1] - along[:, i]) * tx[None, :]


def terms(x, y, deg=2):
    return np.stack([x ** a * y ** b for a in range(deg + 1) for b in range(deg + 1 - a)], -1)


def surface(m, h, w, block, k=2.5, rounds=5):
    ys, xs = centres(h, block), centres(w, block)
    Y, X = np.meshgrid(ys / h * 2 - 1, xs / w * 2 - 1, indexing="ij")
    A, v = terms(X.ravel(), Y.ravel()), np.log(np.maximum(m.ravel(), 1e-3))
    keep = np.ones(v.size, bool)
    for _ in range(rounds):
        c = np.linalg.lstsq(A[keep], v[keep], rcond=None)[0]
        r = v - A @ c
        s = 1.4826 * np.median(np.abs(r[keep] - np.median(r[keep])))
        keep = np.abs(r) <= k * max(s, 1e-3)
    Yp, Xp = np.meshgrid(np.arange(h) / h * 2 - 1, np.arange(w) / w * 2 - 1, indexing="ij")
    return np.exp(terms(Xp, Yp) @ c), r.reshape(m.shape), keep.reshape(m.shape)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("images", nargs="+")
    ap.add_argument("--bin", type=int, default=2)
    ap.add_argument("--block", type=int, default=64)
    a = ap.parse_args()
    print("| image | squares | kept squares off the surface (sd) | lowest square ÷ surface | dropped "
          "| squares' lamp ÷ surface − 1, 99th pct / largest |")
    print("|---|---|---|---|---|---|")
    for p in a.images:
        g = luma(p, a.bin)
        h, w = g.shape
        m = medians(g, a.block)
        s, r, keep = surface(m, h, w, a.block)
        off = np.abs(squares_lamp(m, h, w, a.block) / s - 1)
        print(f"| {os.path.basename(p)} | {m.size} | {np.std(r[keep]) * 100:.1f} % "
              f"| {np.exp(r.min()):.2f} | {(~keep).sum()} "
              f"| {np.percentile(off, 99) * 100:.1f} % / {off.max() * 100:.1f} % |")


if __name__ == "__main__":
    main()
