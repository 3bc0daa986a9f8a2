"""Reduced precision for AASIST and AASIST-L: how far the scores move and what it costs.

    python benchmarks/precision.py [--clips 16] [--threads 2] [--weights-dir DIR]

For each model (official weights) and each reduced-precision path, on the six golden inputs of
the official implementation (``../shared/reference/golden.npz``: 32,000 to 96,000 samples) and
on ``--clips`` 4-s demo-corpus clips (bona fide and its four vocoders):

* ``torch bf16``: ``torch.autocast("cpu", torch.bfloat16)`` around the eager model;
* ``ONNX int8 dynamic``: onnxruntime ``quantize_dynamic`` of Conv and MatMul (per channel);
* ``ONNX int8 static``: ``quantize_static`` (QOperator, per-channel int8 weights, uint8
  activations calibrated on 8 other clips) of the convolutions;

the largest score difference from fp32, the decisions changed (which logit is larger), and
the time per 4-s window against the fp32 path of the same engine (batch 8). The bar a path must
meet to be offered: every difference within 1e-2 and no decision changed.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
WINDOW = 64600


def _clips(n, seed):
    from spoofscope.data import demo

    rng = np.random.default_rng(seed)
    out = []
    vocoders = [None, *demo.VOCODERS.values()]
    for i in range(n):
        x = demo.synth_utterance(demo._speaker(rng), rng, 4.1)
        if vocoders[i % 5] is not None:
            x = vocoders[i % 5](x.astype(np.float64), rng)
        out.append((0.5 * x / (np.abs(x).max() + 1e-9))[:WINDOW].astype(np.float32))
    return np.stack(out)


def _timed(fn, x, batch=8):
    """(outputs of fn over x in batches, ms per window); the first batch is a warm-up."""
    fn(x[:batch])
    t = time.perf_counter()
    out = np.concatenate([fn(x[i : i + batch]) for i in range(0, len(x), batch)])
    return out, (time.perf_counter() - t) / len(x) * 1000


def _diff(ref, got):
    d = max(float(np.abs(r - g).max()) for r, g in zip(ref, got, strict=True))
    changed = sum(
        int(((r[:, 1] > r[:, 0]) != (g[:, 1] > g[:, 0])).sum())
        for r, g in zip(ref, got, strict=True)
    )
    return d, changed


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--clips", type=int, default=16, help="a multiple of 8")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--weights-dir", default=str(HERE.parent.parent / "shared" / "reference"))
    a = ap.parse_args()
    import onnxruntime as ort
    from _machine import cpu_name

    import spoofscope
    from spoofscope.infer._malloc import keep_freed_memory

    torch.set_num_threads(a.threads)
    keep_freed_memory()  # as our engines do: no page-fault churn in the timings
    wd = Path(a.weights_dir)
    golden = np.load(wd / "golden.npz")
    inputs = [golden[f"input_{i}"].reshape(1, -1).astype(np.float32) for i in range(6)]
    clips = _clips(a.clips, 0)
    calib = _clips(8, 1)
    tmp = Path(tempfile.mkdtemp())
    print(
        f"Machine: {cpu_name()}, {os.cpu_count()} cores, {a.threads} threads; torch "
        f"{torch.__version__}, onnxruntime {ort.__version__}; 6 golden inputs + {a.clips} "
        "demo clips; ms per 4-s window at batch 8\n"
    )
    print(
        "| model | path | max score diff vs fp32 | decisions changed | ms/window | "
        "fp32 ms/window (same engine) | speed vs fp32 | meets the bar |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for name, f in (("aasist", "official_AASIST.pth"), ("aasist-l", "official_AASIST-L.pth")):
        m = spoofscope.load_model(name, weights=wd / f).eval()
        for label, d, changed, ms, base in _rows(name, m, inputs, clips, calib, tmp, a.threads):
            ok = "yes" if d <= 1e-2 and changed == 0 else "no"
            print(
                f"| {name} | {label} | {d:.2e} | {changed} | {ms:.0f} | {base:.0f} | "
                f"{base / ms:.2f}x | {ok} |"
            )


def _rows(name, m, inputs, clips, calib, tmp, threads):
    import onnxruntime as ort
    from onnxruntime.quantization import (
        CalibrationDataReader,
        QuantFormat,
        QuantType,
        quantize_dynamic,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    from spoofscope.export.onnx import export_onnx

    def torch_run(x, bf16=False):
        with torch.inference_mode(), torch.autocast("cpu", torch.bfloat16, enabled=bf16):
            return m(torch.from_numpy(x))[0].float().numpy()

    ref_c, fp32_ms = _timed(torch_run, clips)
    bf_c, bf_ms = _timed(lambda x: torch_run(x, True), clips)
    ref_t = [torch_run(x) for x in inputs] + [ref_c]
    bf = [torch_run(x, True) for x in inputs] + [bf_c]
    rows = [("torch bf16", *_diff(ref_t, bf), bf_ms, fp32_ms)]
    sessions = {}  # fixed-length graphs: one set per input length

    def session(path):
        so = ort.SessionOptions()
        so.intra_op_num_threads = threads
        return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])

    class Reader(CalibrationDataReader):
        def __init__(self, length):
            c = np.stack([np.resize(x, length) for x in calib]).astype(np.float32)
            self.it = iter([{"waveform": c[i : i + 1]} for i in range(len(c))])

        def get_next(self):
            return next(self.it, None)

    def graphs(length):
        if length not in sessions:
            fp = export_onnx(m, tmp / f"{name}-{length}.onnx", length=length)
            pre = tmp / f"{name}-{length}-pre.onnx"
            quant_pre_process(str(fp), str(pre), skip_symbolic_shape=True)
            dyn = tmp / f"{name}-{length}-dyn.onnx"
            quantize_dynamic(
                str(pre),
                str(dyn),
                per_channel=True,
                weight_type=QuantType.QInt8,
                op_types_to_quantize=["Conv", "MatMul"],
            )
            st = tmp / f"{name}-{length}-static.onnx"
            quantize_static(
                str(pre),
                str(st),
                Reader(length),
                quant_format=QuantFormat.QOperator,
                per_channel=True,
                activation_type=QuantType.QUInt8,
                weight_type=QuantType.QInt8,
                op_types_to_quantize=["Conv"],
            )
            paths = {"fp32": fp, "dyn": dyn, "static": st}
            sessions[length] = {k: session(p) for k, p in paths.items()}
        return sessions[length]

    def onnx_run(x, kind):
        return graphs(x.shape[1])[kind].run(["logits"], {"waveform": x})[0]

    ref_c, fp32_ms = _timed(lambda x: onnx_run(x, "fp32"), clips)
    ref_o = [onnx_run(x, "fp32") for x in inputs] + [ref_c]
    for kind, label in (("dyn", "ONNX int8 dynamic"), ("static", "ONNX int8 static")):
        got_c, ms = _timed(lambda x, k=kind: onnx_run(x, k), clips)
        got = [onnx_run(x, kind) for x in inputs] + [got_c]
        rows.append((label, *_diff(ref_o, got), ms, fp32_ms))
    return rows


if __name__ == "__main__":
    from _docs import run_benchmark

    run_benchmark(main, "precision")
