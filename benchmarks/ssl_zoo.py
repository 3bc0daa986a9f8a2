"""The published XLS-R detectors on the CPU, full size (XLS-R 300M, random weights: weights do
not change the speed): ms per window of the card's length and real-time factor in fp32 (PyTorch),
ONNX Runtime fp32 (where the card allows export) and the int8 feed-forward path
(``quantize_feed_forward``), the largest score difference to PyTorch fp32 and whether any
decision changes, on the reference waveforms (``../shared/reference/
golden.npz``, cut or tiled to the window; synthetic noise where that file is absent), and the
peak resident memory of a fresh process scoring a long file through the Detector.

    python benchmarks/ssl_zoo.py [--systems xlsr-sls,...] [--repeats 3] [--threads 2]
                                 [--memory-seconds 60] [--long-seconds 600]

Prints Markdown tables.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

SYSTEMS = "xlsr-sls,xlsr-mamba,nes2net-x,xlsr-tcm,ssl-aasist"
GOLDEN = Path(__file__).resolve().parents[2] / "shared/reference/golden.npz"

MEMORY_CHILD = r"""
import sys, numpy as np, soundfile as sf, torch, tempfile, os
import spoofscope
from spoofscope.infer import Detector, Limits, TorchEngine, WindowPolicy
name, seconds, threads = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
torch.set_num_threads(threads)
path = os.path.join(tempfile.mkdtemp(), "long.flac")
rng = np.random.default_rng(0)
with sf.SoundFile(path, "w", 16000, 1, subtype="PCM_16") as f:
    for _ in range(seconds // 10):
        f.write((rng.standard_normal(160000) * 0.1).astype(np.float32))
torch.manual_seed(0)
m = spoofscope.create_model(name).eval()
n = m.card.window_samples
det = Detector(TorchEngine(m), windows=WindowPolicy(hop_s=n / 16000), limits=Limits(batch_size=1))
r = det(path)
assert r.error is None, r.error
hwm = int(next(l for l in open("/proc/self/status") if l.startswith("VmHWM")).split()[1]) / 1024
print(hwm, len(r.windows))
"""


def _inputs(n: int) -> np.ndarray:
    from spoofscope import official_crop

    if GOLDEN.is_file():
        g = np.load(GOLDEN)
        return np.stack([official_crop(g[f"input_{i}"], n) for i in range(6)])
    return (np.random.default_rng(0).standard_normal((6, n)) * 0.1).astype(np.float32)


def _time(model, x, repeats: int) -> float:
    with torch.inference_mode():
        model(x)
        ts = []
        for _ in range(repeats):
            t = time.perf_counter()
            model(x)
            ts.append(time.perf_counter() - t)
    return statistics.median(ts)


def _memory(name: str, seconds: int, threads: int) -> tuple[float, int]:
    out = subprocess.run(
        [sys.executable, "-c", MEMORY_CHILD, name, str(seconds), str(threads)],
        capture_output=True,
        text=True,
    )
    if out.returncode != 0:
        return float("nan"), 0
    mb, windows = out.stdout.split()[-2:]
    return float(mb), int(windows)


def main():
    sys.path.insert(0, str(Path(__file__).parent))
    from _machine import cpu_name

    import spoofscope
    from spoofscope.models.ssl import quantize_feed_forward

    ap = argparse.ArgumentParser()
    ap.add_argument("--systems", default=SYSTEMS)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--memory-seconds", type=int, default=60)
    ap.add_argument("--long-seconds", type=int, default=600, help="0: skip the long-file row")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    rows = []
    for name in a.systems.split(","):
        torch.manual_seed(0)
        m = spoofscope.create_model(name).eval()
        n = m.card.window_samples
        xs = torch.from_numpy(_inputs(n))
        q = quantize_feed_forward(m)
        with torch.inference_mode():
            ref = torch.cat([m(x[None])[0] for x in xs])
            got = torch.cat([q(x[None])[0] for x in xs])
        bona = m.card.bonafide_index
        decide = lambda lg, b=bona: (lg[:, b] - lg[:, 1 - b]) >= 0  # noqa: E731
        t32 = _time(m, xs[:1], a.repeats)
        t8 = _time(q, xs[:1], a.repeats)
        del q
        t_ort, ort_diff = float("nan"), float("nan")
        if m.card.export != "none":
            import tempfile

            from spoofscope.infer import OnnxEngine

            with tempfile.TemporaryDirectory() as d:
                eng = OnnxEngine(m, threads=a.threads, cache=d)
                x0 = xs[:1].numpy()
                eng(x0)
                ts = []
                for _ in range(a.repeats):
                    t = time.perf_counter()
                    eng(x0)
                    ts.append(time.perf_counter() - t)
                t_ort = statistics.median(ts)
                ort = np.concatenate([eng(x[None]) for x in xs.numpy()])
                ort_diff = float(np.abs(ort[:, bona] - ref[:, bona].numpy()).max())
                del eng
        peak, windows = _memory(name, a.memory_seconds, a.threads)
        rows.append(
            {
                "model": name,
                "window": n,
                "ms_fp32": t32 * 1000,
                "rtf_fp32": t32 / (n / 16000),
                "ms_int8": t8 * 1000,
                "speedup": t32 / t8,
                "ms_ort": t_ort * 1000,
                "ort_speedup": t32 / t_ort,
                "ort_diff": ort_diff,
                "max_score_diff": float((got[:, bona] - ref[:, bona]).abs().max()),
                "decisions_changed": int((decide(got) != decide(ref)).sum()),
                "peak_mb": peak,
                "windows": windows,
            }
        )
        print(json.dumps(rows[-1]), file=sys.stderr)
        del m
    print(
        f"Machine: {cpu_name()}, {os.cpu_count()} cores, {a.threads} threads; torch "
        f"{torch.__version__}; XLS-R 300M with random weights; batch 1; median of {a.repeats}\n"
    )
    print(
        "| model | window (samples) | torch fp32 ms/window (RTF) | ONNX Runtime fp32 ms "
        "(speed-up, max score diff) | torch int8-FFN ms (speed-up, max score diff, decisions "
        f"changed) | peak RSS, {a.memory_seconds}-s file, torch fp32 (MB) |"
    )
    print("|---|---|---|---|---|---|")
    for r in rows:
        ort = (
            "not exportable"
            if r["ms_ort"] != r["ms_ort"]
            else f"{r['ms_ort']:.0f} ({r['ort_speedup']:.2f}x, {r['ort_diff']:.1e})"
        )
        print(
            f"| {r['model']} | {r['window']:,} | {r['ms_fp32']:.0f} ({r['rtf_fp32']:.2f}) | "
            f"{ort} | {r['ms_int8']:.0f} ({r['speedup']:.2f}x, {r['max_score_diff']:.1e}, "
            f"{r['decisions_changed']}) | {r['peak_mb']:.0f} |"
        )
    if a.long_seconds:
        name = a.systems.split(",")[-1]
        peak, windows = _memory(name, a.long_seconds, a.threads)
        print(
            f"\nLong file: {name}, {a.long_seconds}-s file ({windows} windows): peak RSS "
            f"{peak:.0f} MB (the {a.memory_seconds}-s file: {rows[-1]['peak_mb']:.0f} MB)"
        )


if __name__ == "__main__":
    from _docs import run_benchmark

    run_benchmark(main, "ssl_zoo")
