#!/usr/bin/env python3
"""Checks ONNX files nemascope wrote: the official ONNX checker (full
check, with shape inference) and onnxruntime's output against tract's.

For each MODEL.onnx it reads MODEL.input.bin and MODEL.tract.bin (written by
`cargo run --release -p nemascope-onnx --example onnx_io -- MODEL.onnx`),
runs onnxruntime on one thread and prints max |ort - tract| and both
latencies. `--tol` sets the allowed difference (default 5e-4 on the output
probability: the shipped separable student differs by 1.6e-4, float
rounding summed in another order through 18 layers; a pixel changes class
only if its probability is that close to the threshold). int8 models
may differ by a few rounding steps (tract and onnxruntime round
requantisation differently, and a step in one layer carries into the
next): `--tol-int8`, default 0.02 on the output probability (5/255).
Exit status 1 if a check fails.

    python tests/reference/onnx_check.py [--tract-json FILE] MODEL.onnx...
"""
import argparse
import json
import sys
import time

import numpy as np
import onnx
import onnxruntime as ort


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("models", nargs="+")
    ap.add_argument("--tol", type=float, default=5e-4)
    ap.add_argument("--tol-int8", type=float, default=0.02)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--tract-json", help="onnx_io's JSON lines, for the latency ratio")
    a = ap.parse_args()
    tract_ms = {}
    if a.tract_json:
        for line in open(a.tract_json):
            if line.strip().startswith("{"):
                d = json.loads(line)
                tract_ms[d["model"]] = d["tract_ms"]
    ok = True
    print("| model | checker | max abs ort-tract | tol | ort ms (1 thread) | tract ms | tract/ort |")
    print("|---|---|---|---|---|---|---|")
    for path in a.models:
        m = onnx.load(path)
        try:
            onnx.checker.check_model(m, full_check=True)
            checked = "ok"
        except Exception as e:  # noqa: BLE001 - report and fail
            checked = f"FAILED: {e}"
            ok = False
        stem = path[: -len(".onnx")]
        shape = [d.dim_value for d in m.graph.input[0].type.tensor_type.shape.dim]
        x = np.fromfile(stem + ".input.bin", dtype="<f4").reshape(shape)
        want = np.fromfile(stem + ".tract.bin", dtype="<f4")
        so = ort.SessionOptions()
        so.intra_op_num_threads = 1
        so.inter_op_num_threads = 1
        s = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
        name = s.get_inputs()[0].name
        got = s.run(None, {name: x})[0].ravel()
        times = []
        for _ in range(max(1, a.repeat)):
            t = time.perf_counter()
            s.run(None, {name: x})
            times.append((time.perf_counter() - t) * 1e3)
        ort_ms = sorted(times)[len(times) // 2]
        int8 = any(n.op_type == "QLinearConv" for n in m.graph.node)
        tol = a.tol_int8 if int8 else a.tol
        diff = float(np.abs(got - want).max()) if got.shape == want.shape else float("inf")
        if diff > tol:
            ok = False
        t_ms = tract_ms.get(path)
        ratio = f"{t_ms / ort_ms:.2f}" if t_ms else "-"
        t_txt = f"{t_ms:.1f}" if t_ms else "-"
        print(f"| {path} | {checked} | {diff:.2e} | {tol:.1e} | {ort_ms:.1f} | {t_txt} | {ratio} |")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
