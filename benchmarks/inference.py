"""Inference speed and memory: ms per 4-second window, real-time factor, peak memory.

    python benchmarks/inference.py [--threads 2] [--repeats 5] [--models aasist,aasist-l,...]
        [--memory] [--weights-dir DIR]

For each model and backend: median ms per 64,600-sample window at batch 1 and batch 8, and the
real-time factor (processing time / audio time, 4.0375 s per window). For AASIST and AASIST-L
the baseline is ``official_port.py``, an eager port of the official forward pass; the table
gives the speed-up over it at batch 8 and the largest score difference from it.
With ``--memory`` each configuration also scores a 10-minute file through ``Detector`` in a
fresh process and reports its peak resident memory. Prints Markdown tables.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parent))

WINDOW = 64600
AUDIO_S = WINDOW / 16000


def _model(name, weights_dir):
    import spoofscope

    torch.manual_seed(0)
    files = {"aasist": "official_AASIST.pth", "aasist-l": "official_AASIST-L.pth"}
    if weights_dir and name in files and (Path(weights_dir) / files[name]).is_file():
        return spoofscope.load_model(name, weights=Path(weights_dir) / files[name])
    return spoofscope.create_model(name).eval()


def _memory(name, backend, weights_dir, threads) -> float:
    """Peak RSS (MB) of a fresh process scoring a 10-minute file with the Detector."""
    code = f"""
import sys, numpy as np, soundfile as sf, torch, tempfile, os
torch.set_num_threads({threads})
sys.path.insert(0, {str(Path(__file__).parent)!r})
from inference import _model
from spoofscope.infer import Detector, Limits, WindowPolicy, make_engine
path = os.path.join(tempfile.mkdtemp(), "ten_minutes.flac")
rng = np.random.default_rng(0)
with sf.SoundFile(path, "w", 16000, 1, subtype="PCM_16") as f:
    for _ in range(10):
        f.write((rng.standard_normal(16000 * 60) * 0.1).astype(np.float32))
m = _model({name!r}, {weights_dir!r})
det = Detector(
    make_engine(m, {backend!r}, threads={threads}),
    windows=WindowPolicy(hop_s=4.0375),
    limits=Limits(batch_size=8),
)
r = det(path)
assert r.error is None and abs(r.duration_s - 600) < 1e-6
# VmHWM: this process's own peak (ru_maxrss would carry the parent's over exec)
hwm = next(l for l in open("/proc/self/status") if l.startswith("VmHWM"))
print(int(hwm.split()[1]) / 1024)
"""
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env={**os.environ, "SPOOFSCOPE_CACHE": _CACHE},
    )
    if out.returncode != 0:
        return float("nan")
    return float(out.stdout.strip().splitlines()[-1])


_CACHE = tempfile.mkdtemp(prefix="spoofscope-bench-")


def main():
    from _machine import cpu_name

    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--models", default="aasist,aasist-l,rawnet2,lfcc-lcnn,lfcc-xvector")
    ap.add_argument("--memory", action="store_true")
    ap.add_argument("--weights-dir", default=str(Path(__file__).parents[2] / "shared/reference"))
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    os.environ["SPOOFSCOPE_CACHE"] = _CACHE
    from official_port import official_forward

    from spoofscope.infer import OnnxEngine, TorchEngine

    x8 = (np.random.default_rng(0).standard_normal((8, WINDOW)) * 0.1).astype(np.float32)
    rows = []
    for name in a.models.split(","):
        m = _model(name, a.weights_dir)
        engines = {"torch": TorchEngine(m)}
        if m.card.export != "none":
            engines["onnx"] = OnnxEngine(m, threads=a.threads)
        base8 = None
        ref = None
        if name.startswith("aasist"):

            def port(x, m=m):
                with torch.inference_mode():
                    return official_forward(m, torch.from_numpy(x))[1].numpy()

            engines = {"official port": port, **engines}
        # interleave the engines' timed runs so that machine noise hits all of them alike
        times = {eng: ([], []) for eng in engines}
        for fn in engines.values():
            fn(x8[:1])
            fn(x8)
        for _ in range(a.repeats):
            for eng, fn in engines.items():
                for k, xb in ((0, x8[:1]), (1, x8)):
                    t = time.perf_counter()
                    fn(xb)
                    times[eng][k].append(time.perf_counter() - t)
        for eng, fn in engines.items():
            t1 = statistics.median(times[eng][0])
            t8 = statistics.median(times[eng][1]) / 8
            scores = fn(x8)[:, 1]
            if eng == "official port":
                base8, ref = t8, scores
            row = {
                "model": name,
                "backend": eng,
                "ms_b1": t1 * 1000,
                "ms_b8": t8 * 1000,
                "rtf_b1": t1 / AUDIO_S,
                "rtf_b8": t8 / AUDIO_S,
                "speedup_b8": (base8 / t8) if base8 else None,
                "max_score_diff": float(np.abs(scores - ref).max()) if ref is not None else None,
            }
            if a.memory and eng != "official port":
                row["peak_mb_10min"] = _memory(name, eng, a.weights_dir, a.threads)
            rows.append(row)
            print(json.dumps(row), file=sys.stderr)
    cpu = cpu_name()
    print(
        f"Machine: {cpu}, {os.cpu_count()} cores, {a.threads} threads; torch {torch.__version__}"
        f"; window 64,600 samples (4.04 s)\n"
    )
    head = (
        "| model | backend | ms/window b=1 | RTF b=1 | ms/window b=8 | RTF b=8 "
        "| speed-up vs official port (b=8) | max score diff vs port |"
    )
    if a.memory:
        head += " peak RSS, 10-min file (MB) |"
    print(head)
    print("|" + "---|" * (head.count("|") - 1))
    for r in rows:
        speed = "" if r["speedup_b8"] is None else f"{r['speedup_b8']:.2f}x"
        diff = "" if r["max_score_diff"] is None else f"{r['max_score_diff']:.1e}"
        line = (
            f"| {r['model']} | {r['backend']} | {r['ms_b1']:.0f} | {r['rtf_b1']:.3f} | "
            f"{r['ms_b8']:.0f} | {r['rtf_b8']:.3f} | {speed} | {diff} |"
        )
        if a.memory:
            mb = r.get("peak_mb_10min")
            line += f" {mb:.0f} |" if mb is not None else " - |"
        print(line)


if __name__ == "__main__":
    main()
