"""Large SSL graphs in ONNX: the export with external data, and what loading it costs.

    python benchmarks/large_graph.py [--model antideepfake-mms-300m] [--threads 2] [--int8]
                                     [--inline]

The model (seeded random weights: the size, not the values, matters here) is exported as the
engine's cache does it (:func:`spoofscope.export.onnx.export_onnx`: parameters over
``EXTERNAL_BYTES`` go to one ``<graph>.onnx.data`` file beside the graph), optionally
quantised to int8 as well (:func:`spoofscope.export.onnx.quantize_int8`, in a fresh process
whose peak resident memory is printed in the header); then a fresh process builds the ONNX
Runtime session
(:func:`spoofscope.export.onnx.ort_session`) and scores one 4-s window, and its peak resident
memory (``VmHWM``) is printed beside the size of the files. Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import os
import resource
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _docs import run_benchmark  # noqa: E402
from _machine import cpu_name  # noqa: E402

CHILD = """
import sys, time, numpy as np
from spoofscope.export.onnx import ort_session
t = time.perf_counter()
s = ort_session(sys.argv[1], int(sys.argv[2]))
x = (np.random.default_rng(0).standard_normal((1, int(sys.argv[3]))) * 0.1).astype(np.float32)
s.run(["logits"], {"waveform": x})
load_s = time.perf_counter() - t
t = time.perf_counter()
s.run(["logits"], {"waveform": x})
ms = (time.perf_counter() - t) * 1000
# VmHWM: this process's own peak (ru_maxrss would carry the parent's over the fork)
hwm = next(ln.split()[1] for ln in open("/proc/self/status") if ln.startswith("VmHWM"))
print(load_s, ms, hwm)
"""

#: the int8 quantiser in a process of its own: its peak (VmHWM) and its resident memory before
#: it started (the interpreter with torch and onnx loaded: quantize_int8 imports onnx only when
#: called, so it is imported here first, or its ~10 MB would count as the quantiser's work),
#: neither mixed with the export's
QUANT_CHILD = """
import sys, time
import onnx
from spoofscope.export.onnx import quantize_int8
def status(key):
    return next(ln.split()[1] for ln in open("/proc/self/status") if ln.startswith(key))
start = status("VmRSS")
t = time.perf_counter()
quantize_int8(sys.argv[1], sys.argv[2])
print(time.perf_counter() - t, status("VmHWM"), start)
"""

#: how many of a failed child's last stderr lines are shown
TAIL_LINES = 10


def _child(what: str, code: str, *args, env: dict | None = None) -> list[str]:
    """The words ``code`` prints, run in a fresh process with ``args``. When that process
    fails: one line naming ``what`` and how it ended, then the end of its stderr, and exit 1
    (not a ``CalledProcessError`` that shows neither)."""
    r = subprocess.run(
        [sys.executable, "-c", code, *map(str, args)],
        capture_output=True,
        text=True,
        errors="replace",  # a native library's bytes on stderr must not hide its error
        env=env,
    )
    if r.returncode == 0:
        return r.stdout.split()
    if r.returncode < 0:
        how = f"was killed by {signal.Signals(-r.returncode).name}"
        if r.returncode == -signal.SIGKILL:
            how += " (out of memory?)"
    else:
        how = f"failed with exit status {r.returncode}"
    tail = r.stderr.strip().splitlines()[-TAIL_LINES:]
    print(
        f"large_graph.py: {what} {how}"
        + ("; the end of its stderr:" if tail else "; it wrote nothing on stderr")
        + "".join(f"\n    {ln}" for ln in tail),
        file=sys.stderr,
    )
    raise SystemExit(1)


def _mb(path: Path) -> float:
    return sum(p.stat().st_size for p in path.parent.glob(path.name + "*")) / 2**20


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="antideepfake-mms-300m")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--int8", action="store_true", help="also the int8 graph")
    ap.add_argument(
        "--inline", action="store_true", help="also the fp32 graph in one file (under 2 GB only)"
    )
    a = ap.parse_args()
    import torch

    import spoofscope
    from spoofscope.errors import SpoofscopeError
    from spoofscope.export.onnx import EXTERNAL_BYTES, export_onnx

    torch.manual_seed(0)
    t = time.perf_counter()
    try:
        m = spoofscope.create_model(a.model).eval()
    except SpoofscopeError as e:  # an unknown --model: one line, as the CLI gives it
        print(f"large_graph.py: {e}", file=sys.stderr)
        raise SystemExit(2) from None
    build_s = time.perf_counter() - t
    n = sum(p.numel() for p in m.parameters())
    length = m.card.window_samples
    rows = []
    quant_mb = None
    with tempfile.TemporaryDirectory() as d:
        t = time.perf_counter()
        fp = export_onnx(m, Path(d) / "fp32.onnx", length=length)
        export_s = time.perf_counter() - t
        graphs = [("fp32", fp, export_s)]
        if a.inline:
            t = time.perf_counter()
            one = export_onnx(m, Path(d) / "inline.onnx", length=length, external=False)
            graphs.append(("fp32, one file", one, time.perf_counter() - t))
        parent_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        del m
        if a.int8:
            q = Path(d) / "int8.onnx"
            out = _child(f"quantising {a.model} to int8", QUANT_CHILD, fp, q)
            graphs.append(("int8", q, float(out[0])))
            quant_mb, quant_start_mb = int(out[1]) / 1024, int(out[2]) / 1024
        for label, path, make_s in graphs:
            out = _child(
                f"scoring {a.model}'s {label} graph",
                CHILD,
                path,
                a.threads,
                length,
                env={**os.environ, "OMP_NUM_THREADS": str(a.threads)},
            )
            load_s, ms, rss_kb = float(out[0]), float(out[1]), int(out[2])
            external = path.with_name(path.name + ".data").is_file()
            rows.append((label, make_s, _mb(path), external, load_s, ms, rss_kb / 1024))
    print(
        f"Machine: {cpu_name()}, {os.cpu_count()} cores, {a.threads} threads; {a.model}, "
        f"{n:,} parameters ({n * 4 / 2**30:.2f} GiB fp32), seeded random weights, built in "
        f"{build_s:.0f} s; external data above {EXTERNAL_BYTES / 2**30:.0f} GiB; peak RSS of the "
        f"exporting process {parent_mb:.0f} MB"
        + (
            f", of the process quantising to int8 {quant_mb:.0f} MB ({quant_start_mb:.0f} MB "
            "before it started)"
            if quant_mb is not None
            else ""
        )
        + f"; load average {os.getloadavg()[0]:.1f}\n"
    )
    print(
        "| graph | made in (s) | files (MB) | external data | session + first window (s) | "
        "ms per 4-s window | peak RSS of the scoring process (MB) |"
    )
    print("|---|---|---|---|---|---|---|")
    for label, make_s, mb, ext, load_s, ms, rss in rows:
        print(
            f"| {label} | {make_s:.0f} | {mb:.0f} | {'yes' if ext else 'no'} | {load_s:.1f} | "
            f"{ms:.0f} | {rss:.0f} |"
        )


if __name__ == "__main__":
    run_benchmark(main, "large_graph")
