"""What one 4-s window costs on this CPU, for one model of every family: PyTorch fp32 and ONNX
Runtime fp32 (where the card allows export and the graph fits one ONNX file), ms per window
(batch 1, median of the repeats after one warm-up) and the real-time factor. Weights are
random (they do not change the speed); the numbers in the table beside them are the authors'.

    python benchmarks/model_costs.py [--models aasist,...] [--repeats 3] [--threads 2]
                                     [--onnx-max-params 600000000]

Prints a Markdown table. The 1B and 2B AntiDeepfake encoders take 4 and 9 GB of memory in fp32
and minutes to build; ONNX is skipped above --onnx-max-params for time and memory (the exporter
writes the weights of a model over 1 GB to an external data file, so it can export them:
benchmarks/large_graph.py).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _docs import run_benchmark  # noqa: E402
from _machine import cpu_name  # noqa: E402

MODELS = (
    "aasist,aasist-l,rawnet2,lfcc-lcnn,lfcc-xvector,ssl-aasist,antideepfake-w2v-small,"
    "antideepfake-mms-300m,antideepfake-xls-r-1b,antideepfake-xls-r-2b"
)
WINDOW = 64000  # 4 s at 16 kHz


def _median_ms(fn, x, repeats: int) -> float:
    fn(x)  # warm-up
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn(x)
        times.append((time.perf_counter() - t) * 1000)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", default=MODELS)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--onnx-max-params", type=float, default=6e8)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    import spoofscope
    from spoofscope.export import export_onnx
    from spoofscope.infer.engines import OnnxEngine

    x = (np.random.default_rng(0).standard_normal((1, WINDOW)) * 0.1).astype(np.float32)
    print(
        f"Machine: {cpu_name()}, {a.threads} threads; torch {torch.__version__}; random weights; "
        f"one {WINDOW}-sample (4 s) window, batch 1; median of {a.repeats} after a warm-up\n"
    )
    print("| model | parameters | torch fp32 ms/window (RTF) | ONNX Runtime fp32 ms (RTF) |")
    print("|---|---|---|---|")
    for name in a.models.split(","):
        torch.manual_seed(0)
        m = spoofscope.create_model(name).eval()
        n_params = sum(p.numel() for p in m.parameters())
        length = WINDOW if m.card.export != "fixed" else m.card.window_samples
        xi = x[:, :length] if length <= WINDOW else np.resize(x, (1, length))

        def run_torch(v, m=m):
            with torch.inference_mode():
                m(torch.from_numpy(v))

        t_ms = _median_ms(run_torch, xi, a.repeats)
        rtf = lambda ms, n=length: f"{ms:.0f} ({ms / 1000 / (n / 16000):.3f})"  # noqa: E731
        if m.card.export == "none":
            onnx = "not exportable"
        elif n_params > a.onnx_max_params:
            onnx = "not measured (--onnx-max-params)"
        else:
            with tempfile.TemporaryDirectory() as d:
                path = Path(d) / f"{name}.onnx"
                export_onnx(m, path, length=length)
                eng = OnnxEngine(m, onnx_path=path, threads=a.threads)
                onnx = rtf(_median_ms(eng, xi, a.repeats))
        note = "" if length == WINDOW else f" (its fixed {length}-sample window)"
        print(f"| {name}{note} | {n_params:,} | {rtf(t_ms)} | {onnx} |", flush=True)
        del m


if __name__ == "__main__":
    run_benchmark(main, "model_costs")
