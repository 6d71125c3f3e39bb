#!/usr/bin/env python3
"""BBBC010's masks against its images: which shift aligns them, and how a
folder of predicted masks scores against the masks as given and moved.

    .venv/bin/python tests/reference/mask_offset.py                  # offsets
    .venv/bin/python tests/reference/mask_offset.py --pred DIR W1 W2 …  # score DIR/<well>.png

The offset test thresholds each image against a 31-px median background
(pixel < 0.9 × background) and finds the shift of the mask within ±2 px
that agrees best with it. (`cargo xtask bench` makes .venv.)
"""
import argparse
import csv
import os
from collections import Counter

import numpy as np
import tifffile
from PIL import Image
from scipy import ndimage

ROOT = os.environ.get(
    "NEMASCOPE_BBBC010",
    os.path.join(os.path.dirname(__file__), "../../../shared/data/bbbc010"),
)


def dice(a, b):
    return 2 * (a & b).sum() / max(a.sum() + b.sum(), 1)


def mask(well):
    return np.array(Image.open(os.path.join(ROOT, "masks", f"{well}.png"))) > 0


def offsets():
    wells = [r["well"] for r in csv.DictReader(open(os.path.join(ROOT, "wells.csv")))]
    best, at0, up1, self1 = [], [], [], []
    for w in wells:
        im = tifffile.imread(os.path.join(ROOT, "images", f"{w}.tif")).astype(np.float64)
        t = mask(w)
        dark = im < 0.9 * ndimage.median_filter(im, size=31)
        score = {
            (dy, dx): dice(np.roll(np.roll(t, dy, 0), dx, 1), dark)
            for dy in range(-2, 3)
            for dx in range(-2, 3)
        }
        best.append(max(score, key=score.get))
        at0.append(score[(0, 0)])
        up1.append(score[(-1, 0)])
        self1.append(dice(t, np.roll(t, -1, 0)))
    print(f"{len(wells)} wells; best (dy, dx) per well: {dict(Counter(best))}")
    print(f"threshold vs mask: Dice {np.mean(at0):.3f} as given, {np.mean(up1):.3f} moved up 1 px")
    print(f"mask vs itself moved up 1 px: Dice {np.mean(self1):.3f}")


def score(pred, wells):
    given, moved = [], []
    for w in wells:
        p = np.array(Image.open(os.path.join(pred, f"{w}.png"))) > 0
        t = mask(w)
        given.append(dice(p, t))
        moved.append(dice(p, np.roll(t, -1, 0)))
    print(f"{len(wells)} wells: mean Dice {np.mean(given):.4f} against the masks as given, "
          f"{np.mean(moved):.4f} against them moved up 1 px")


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--pred")
    ap.add_argument("wells", nargs="*")
    a = ap.parse_args()
    if a.pred:
        score(a.pred, a.wells)
    else:
        offsets()
