"""Archive scoring on Ray against plain `spoofscope detect`, on the same files and model.

Writes --files recordings of --seconds each (a tone with noise; the energy meter, so every
window is scored), saves the model with random weights (they do not change the speed), then
times `spoofscope detect FOLDER --json` and `spoofscope detect --ray local FOLDER --out R/` with
1 and 2 actors (a fresh local Ray instance each time, its start-up included). CPU seconds are
those of the whole machine during the run (/proc/stat), so Ray's own daemons count too.

    python benchmarks/ray_scale.py [--model aasist] [--files 24] [--seconds 10]

Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _docs import run_benchmark  # noqa: E402
from _machine import cpu_name  # noqa: E402

ENV = dict(os.environ, SPOOFSCOPE_VAD="energy", RAY_USAGE_STATS_ENABLED="0")


def _cpu_s() -> float:
    """CPU seconds all processes of the machine have used (user + system, /proc/stat)."""
    f = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    user, nice, system = (int(v) for v in f[:3])
    return (user + nice + system) / os.sysconf("SC_CLK_TCK")


def _run(argv) -> tuple[float, float]:
    c0, t0 = _cpu_s(), time.perf_counter()
    p = subprocess.run(
        [sys.executable, "-m", "spoofscope", *argv], env=ENV, capture_output=True, text=True
    )
    if p.returncode not in (0, 1):
        raise RuntimeError(p.stderr[-2000:])
    return time.perf_counter() - t0, _cpu_s() - c0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="aasist")
    ap.add_argument("--files", type=int, default=24)
    ap.add_argument("--seconds", type=float, default=10.0)
    a = ap.parse_args()
    import soundfile as sf
    import torch

    import spoofscope
    from spoofscope.models import save_checkpoint

    print(
        f"Machine: {cpu_name()}, {os.cpu_count()} CPUs; torch {torch.__version__}; "
        f"{a.model} (random weights); {a.files} files x {a.seconds:g} s"
    )
    print()
    print(
        "| run | actors | wall (s) | files/s | CPU (s, machine) | audio h per CPU h | "
        "wall vs detect |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        folder = tmp / "archive"
        folder.mkdir()
        rng = np.random.default_rng(0)
        n = int(16000 * a.seconds)
        for k in range(a.files):
            t = np.arange(n) / 16000
            x = 0.3 * np.sin(2 * np.pi * (150 + 10 * k) * t) + 0.03 * rng.standard_normal(n)
            sf.write(folder / f"f{k:03d}.wav", x.astype(np.float32), 16000)
        torch.manual_seed(0)
        ckpt = save_checkpoint(spoofscope.create_model(a.model), tmp / "model.ckpt")
        hours = a.files * a.seconds / 3600
        common = ["--model", str(ckpt), "--quiet"]
        _run(["detect", str(folder / "f000.wav"), *common])  # ONNX export into the cache, once
        base, cpu = _run(["detect", str(folder), "--json", *common])
        print(
            f"| detect | - | {base:.1f} | {a.files / base:.2f} | {cpu:.1f} | "
            f"{hours / (cpu / 3600):.1f} | 1.00 |"
        )
        for actors in (1, 2):
            out = tmp / f"out{actors}"
            wall, cpu = _run(
                [
                    "detect",
                    "--ray",
                    "local",
                    str(folder),
                    "--out",
                    str(out),
                    "--actors",
                    str(actors),
                    *common,
                ]
            )
            print(
                f"| detect --ray | {actors} | {wall:.1f} | {a.files / wall:.2f} | {cpu:.1f} | "
                f"{hours / (cpu / 3600):.1f} | {wall / base:.2f} |",
                flush=True,
            )


if __name__ == "__main__":
    run_benchmark(main, "ray_scale")
