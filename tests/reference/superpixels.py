#!/usr/bin/env python3
"""Reference checks of nemascope's Felzenszwalb against scikit-image.

  parity   every BBBC010 well: same input to both, compare segment counts,
           identical-label fraction, adjusted Rand index and boundary F1;
           also checks the documented scale mapping for raw 16-bit input.
  bench    one thread, same input, same run: nemascope vs scikit-image.
  fixtures writes small inputs and scikit-image's labels for the Rust tests.

Needs numpy, scipy, scikit-image, tifffile, pillow (xtask makes a venv).
"""
import argparse, json, os, subprocess, sys, tempfile, time
import numpy as np
from skimage.segmentation import felzenszwalb

P = dict(scale=100.0, sigma=0.8, min_size=20)


def ours(binary, image, out_dir, resize=None, repeat=1, stretch=True):
    lab, inp = os.path.join(out_dir, "l.npy"), os.path.join(out_dir, "i.npy")
    cmd = [binary, "superpixels", image, "--out", lab, "--dump-input", inp, "--repeat", str(repeat)]
    if stretch:
        cmd.append("--stretch")
    if resize:
        cmd += ["--resize", resize]
    txt = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return np.load(lab), np.load(inp).astype(np.float64), txt


def ari(a, b):
    a, b = a.ravel().astype(np.int64), b.ravel().astype(np.int64)
    n = a.size
    _, ai = np.unique(a, return_inverse=True)
    _, bi = np.unique(b, return_inverse=True)
    cont = np.bincount(ai * (bi.max() + 1) + bi)
    c2 = lambda x: (x * (x - 1) / 2.0).sum()
    sij = c2(cont.astype(np.float64))
    sa = c2(np.bincount(ai).astype(np.float64))
    sb = c2(np.bincount(bi).astype(np.float64))
    exp = sa * sb / (n * (n - 1) / 2.0)
    return (sij - exp) / (0.5 * (sa + sb) - exp)


def boundaries(l):
    b = np.zeros(l.shape, bool)
    b[:, :-1] |= l[:, :-1] != l[:, 1:]
    b[:-1, :] |= l[:-1, :] != l[1:, :]
    return b


def boundary_f1(a, b, tol=1):
    from scipy.ndimage import binary_dilation
    ba, bb = boundaries(a), boundaries(b)
    st = np.ones((2 * tol + 1, 2 * tol + 1), bool)
    p = (ba & binary_dilation(bb, st)).sum() / max(ba.sum(), 1)
    r = (bb & binary_dilation(ba, st)).sum() / max(bb.sum(), 1)
    return 2 * p * r / max(p + r, 1e-12)


def parity(args):
    import csv, tifffile
    wells = list(csv.DictReader(open(os.path.join(args.root, "wells.csv"))))
    if args.limit:
        wells = wells[: args.limit]
    rows = []
    with tempfile.TemporaryDirectory() as td:
        for size in [None, "512x384"]:
            for w in wells:
                img = os.path.join(args.root, w["image"])
                r, x, _ = ours(args.bin, img, td, resize=size)
                s = felzenszwalb(x, **P)
                rows.append(dict(well=w["well"], size=size or "696x520", ours=int(r.max() + 1), skimage=int(s.max() + 1),
                                 equal=float((r == s).mean()), ari=float(ari(r, s)), bf1=float(boundary_f1(r, s))))
        # Scale mapping on the raw 16-bit file: min-max stretch Y = (X-lo)/(hi-lo)
        # with `scale` equals raw X with `scale * (hi-lo)`.
        mapping = []
        for w in wells[:10]:
            raw = tifffile.imread(os.path.join(args.root, w["image"])).astype(np.float64) / 65535.0
            lo, hi = raw.min(), raw.max()
            a = felzenszwalb((raw - lo) / (hi - lo), **P)
            b = felzenszwalb(raw, scale=P["scale"] * (hi - lo), sigma=P["sigma"], min_size=P["min_size"])
            c = felzenszwalb(raw, **P)
            mapping.append(dict(well=w["well"], stretched=int(a.max() + 1), raw_mapped=int(b.max() + 1),
                                raw_unmapped=int(c.max() + 1), ari=float(ari(a, b))))
    print("| size | wells | segments ours (mean) | segments skimage (mean) | max count diff | identical labels (mean / min) | ARI (min) | boundary F1 (min) |")
    print("|---|---|---|---|---|---|---|---|")
    for size in sorted({r["size"] for r in rows}):
        g = [r for r in rows if r["size"] == size]
        print(f"| {size} | {len(g)} | {np.mean([r['ours'] for r in g]):.1f} | {np.mean([r['skimage'] for r in g]):.1f} | "
              f"{max(abs(r['ours'] - r['skimage']) for r in g)} | {np.mean([r['equal'] for r in g]):.4f} / {min(r['equal'] for r in g):.4f} | "
              f"{min(r['ari'] for r in g):.4f} | {min(r['bf1'] for r in g):.4f} |")
    print()
    print("| well | segments, stretched, scale 100 | raw, scale 100·(hi−lo) | raw, scale 100 (unmapped) | ARI stretched vs mapped |")
    print("|---|---|---|---|---|")
    for m in mapping:
        print(f"| {m['well']} | {m['stretched']} | {m['raw_mapped']} | {m['raw_unmapped']} | {m['ari']:.4f} |")
    if args.json:
        json.dump(dict(rows=rows, mapping=mapping), open(args.json, "w"), indent=1)
    bad = [r for r in rows if r["ari"] < 0.95]
    if bad:
        print(f"FAIL: {len(bad)} images with ARI < 0.95", file=sys.stderr)
        sys.exit(1)


def bench(args):
    """Felzenszwalb on the same plane, one thread each: nemascope (its own
    timing loop), scikit-image and OpenCV's ximgproc graph segmentation."""
    import cv2
    cv2.setNumThreads(1)
    img = os.path.join(args.root, "images", "A01.tif")
    print("| input | nemascope median (min) ms | scikit-image median (min) ms | OpenCV ximgproc median (min) ms | scikit-image / ours | OpenCV / ours |")
    print("|---|---|---|---|---|---|")

    def timed(f, n):
        ts = []
        for _ in range(n):
            t = time.perf_counter()
            f()
            ts.append((time.perf_counter() - t) * 1e3)
        ts.sort()
        return ts[len(ts) // 2], ts[0]

    with tempfile.TemporaryDirectory() as td:
        for size in ["512x384", None]:
            _, x, txt = ours(args.bin, img, td, resize=size, repeat=args.repeat)
            med = float(txt.split("median ")[1].split(" ms")[0])
            mn = float(txt.split("min ")[1].split(" ms")[0])
            sk = timed(lambda: felzenszwalb(x, **P), args.sk_repeat)
            gs = cv2.ximgproc.segmentation.createGraphSegmentation(
                sigma=P["sigma"], k=P["scale"], min_size=P["min_size"])
            x32 = np.ascontiguousarray(x, dtype=np.float32)
            cv = timed(lambda: gs.processImage(x32), args.sk_repeat)
            h, w = x.shape
            print(f"| BBBC010 A01 {h}x{w} | {med:.1f} ({mn:.1f}) | {sk[0]:.1f} ({sk[1]:.1f}) | {cv[0]:.1f} ({cv[1]:.1f}) | {sk[0] / med:.1f}x | {cv[0] / med:.1f}x |")


def fixtures(args):
    import tifffile
    from PIL import Image
    os.makedirs(args.out, exist_ok=True)
    raw = tifffile.imread(os.path.join(args.root, "images", "A01.tif"))
    crop = raw[180:300, 260:420].astype(np.float64)
    lo, hi = np.percentile(crop, 0.5), np.percentile(crop, 99.5)
    crop16 = np.clip((crop - lo) / (hi - lo) * 65535, 0, 65535).round().astype(np.uint16)
    yy, xx = np.mgrid[0:48, 0:64]
    mosaic = ((xx // 20) * 3 + (yy // 16) * 7) % 11
    mosaic16 = (mosaic * 6000 + 3000).astype(np.uint16)
    for name, img in [("bbbc010_a01_crop", crop16), ("mosaic", mosaic16)]:
        Image.fromarray(img).save(os.path.join(args.out, f"{name}.png"))
        lab = felzenszwalb(img, **P)
        assert lab.max() < 65536
        Image.fromarray(lab.astype(np.uint16)).save(os.path.join(args.out, f"{name}_skimage_labels.png"))
        print(name, img.shape, "skimage segments", lab.max() + 1)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("cmd", choices=["parity", "bench", "fixtures"])
    ap.add_argument("--bin", default="target/release/nemascope-data")
    ap.add_argument("--root", default=os.path.join(os.path.dirname(__file__), "../../../shared/data/bbbc010"))
    ap.add_argument("--limit", type=int, default=0)
    ap.add_argument("--json")
    ap.add_argument("--out", default="shared/tests/fixtures")
    ap.add_argument("--repeat", type=int, default=30)
    ap.add_argument("--sk-repeat", type=int, default=7)
    args = ap.parse_args()
    dict(parity=parity, bench=bench, fixtures=fixtures)[args.cmd](args)


if __name__ == "__main__":
    main()
