"""The base install as a user gets it: wheel size, the size of a fresh virtual environment with
the wheel and its base dependencies (PyTorch's share shown apart), and the start-up times of
``import spoofscope``, ``spoofscope --version``, ``spoofscope detect --help`` and a first and a
second ``spoofscope detect`` (the first exports the ONNX model into an empty cache).

    python benchmarks/install.py [--venv DIR] [--runs 5]

Builds the wheel (``python -m build --wheel``), makes ``--venv`` (default: a temporary folder)
with the pinned CPU torch and the wheel unless it holds spoofscope already, and runs everything
there with no network (proxies pointed at a closed port). Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _docs import run_benchmark  # noqa: E402
from _machine import cpu_name  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


def run(argv, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([str(a) for a in argv], check=True, capture_output=True, **kw)


def du(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file() and not f.is_symlink())


def timed(argv, env, runs: int) -> tuple[float, float, float]:
    """(median, min, max) wall seconds of ``argv`` over ``runs`` runs."""
    ts = []
    for _ in range(runs):
        t0 = time.perf_counter()
        run(argv, env=env)
        ts.append(time.perf_counter() - t0)
    return statistics.median(ts), min(ts), max(ts)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--venv", type=Path, help="virtual environment to make or reuse")
    ap.add_argument("--runs", type=int, default=5, help="runs per start-up time")
    a = ap.parse_args()

    work = Path(tempfile.mkdtemp(prefix="spoofscope-install-"))
    # from a copy of the working tree (the build writes egg-info and build/ where it runs),
    # without the checkout on the path
    tree = shutil.copytree(
        REPO,
        work / "tree",
        ignore=shutil.ignore_patterns(
            ".git", "dist", "build", "*.egg-info", "__pycache__", ".*_cache", ".venv", "runs"
        ),
    )
    clean = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    run([sys.executable, "-m", "build", "--wheel", "--outdir", work / "dist", tree], env=clean)
    (wheel,) = (work / "dist").glob("spoofscope-*.whl")
    venv = a.venv or work / "venv"
    py = venv / "bin" / "python"
    if not py.exists():
        run([sys.executable, "-m", "venv", venv])
        torch_pin = f"torch=={torch.__version__.split('+')[0]}"
        run([py, "-m", "pip", "install", "-q", torch_pin], env=clean)
    run([py, "-m", "pip", "install", "-q", "--force-reinstall", "--no-deps", wheel], env=clean)
    run([py, "-m", "pip", "install", "-q", wheel], env=clean)  # the base dependencies
    site = Path(
        run(
            [py, "-c", "import torch, os; print(os.path.dirname(torch.__path__[0]))"], text=True
        ).stdout.strip()
    )
    packages = run([py, "-m", "pip", "list"], text=True, env=clean).stdout.count("\n") - 2

    home = work / "home"
    home.mkdir()
    off = "http://127.0.0.1:9"
    env = {
        "PATH": f"{venv / 'bin'}:/usr/bin:/bin",
        "HOME": str(home),
        "LANG": "C.UTF-8",
        "http_proxy": off,
        "https_proxy": off,
    }
    x = np.random.default_rng(0).standard_normal(4 * 16000) * 0.1
    sf.write(work / "call.wav", x, 16000)
    detect = ["spoofscope", "detect", "--quiet", "--vad", "energy", work / "call.wav"]
    t0 = time.perf_counter()
    run(detect, env=env)
    first = time.perf_counter() - t0
    rows = [
        ("wheel", f"{wheel.stat().st_size / 1e6:.2f} MB", wheel.name),
        ("environment (venv)", f"{du(venv) / 1e9:.2f} GB", f"{packages} packages"),
        ("of which torch", f"{du(site / 'torch') / 1e9:.2f} GB", ""),
        (
            "of which spoofscope",
            f"{du(site / 'spoofscope') / 1e6:.2f} MB",
            f"packaged weights {du(site / 'spoofscope/models/weights') / 1e6:.2f} MB",
        ),
    ]
    for what, argv in (
        ("python -c pass (interpreter alone)", [py, "-c", "pass"]),
        ("python -c 'import spoofscope'", [py, "-c", "import spoofscope"]),
        ("spoofscope --version", ["spoofscope", "--version"]),
        ("spoofscope detect --help", ["spoofscope", "detect", "--help"]),
        ("spoofscope detect (4 s, warm cache)", detect),
    ):
        med, lo, hi = timed(argv, env, a.runs)
        rows.append((what, f"{med:.2f} s", f"min {lo:.2f}, max {hi:.2f} ({a.runs} runs)"))
    rows.append(("spoofscope detect (4 s, first run)", f"{first:.2f} s", "exports ONNX once"))
    print(
        f"\n{cpu_name()}, {os.cpu_count()} cores; Python {sys.version.split()[0]}, "
        f"torch {torch.__version__}\n"
    )
    print("| what | value | note |\n|---|---|---|")
    for r in rows:
        print(f"| {' | '.join(r)} |")


if __name__ == "__main__":
    run_benchmark(main, "install")
