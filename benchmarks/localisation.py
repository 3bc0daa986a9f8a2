"""What localisation costs: windows per second of audio and wall time of ``detect`` on one
file as the hop shrinks (the timeline's resolution is min(hop, 0.5 s)), relative to plain
detection at the default hop of 2 s, and the time spent building the timeline and segments.

    python benchmarks/localisation.py [--model aasist] [--seconds 60] [--hops 2,1,0.5,0.25]
                                      [--threads 2]

Random weights (they do not change the speed); the default engine (ONNX Runtime where the
model exports). The file is a synthetic voiced tone, which a speech detector would not judge:
the energy meter (--vad energy) lets every window be scored. Prints Markdown tables.
"""

from __future__ import annotations

import argparse
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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="aasist")
    ap.add_argument("--seconds", type=int, default=60)
    ap.add_argument("--hops", default="2,1,0.5,0.25")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument(
        "--frame-model",
        default="antideepfake-w2v-small",
        help="a model that scores its frames: frame- vs window-level timelines ('': skip)",
    )
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    import spoofscope
    from spoofscope.infer import Decision, Detector, WindowPolicy, make_engine
    from spoofscope.infer import detector as D

    torch.manual_seed(0)
    model = spoofscope.create_model(a.model).eval()
    engine = make_engine(model, "auto", a.threads)
    rng = np.random.default_rng(0)
    path = Path(tempfile.mkdtemp()) / "long.flac"
    t = np.arange(a.seconds * 16000) / 16000
    x = 0.3 * np.sin(2 * np.pi * 180 * t) * (1 + 0.5 * np.sin(2 * np.pi * 3 * t))
    sf.write(path, (x + 0.01 * rng.standard_normal(t.size)).astype(np.float32), 16000)

    where = [0.0]  # time spent in the timeline and segments
    orig = D.Detector._where

    def timed(self, *args):
        t0 = time.perf_counter()
        orig(self, *args)
        where[0] += time.perf_counter() - t0

    D.Detector._where = timed
    print(
        f"Machine: {cpu_name()}, {a.threads} threads; torch {torch.__version__}; {a.model} "
        f"(random weights), engine {engine.name}; one {a.seconds}-s file; one run each after "
        "a warm-up\n"
    )
    print(
        "| hop (s) | timeline step (s) | windows per s of audio | wall (s) | RTF "
        "| cost vs hop 2 s | timeline + segments (ms) |"
    )
    print("|---|---|---|---|---|---|---|")
    base = None
    energy = Decision(vad="energy")
    Detector(engine, decision=energy)(str(path))  # warm-up
    for hop in (float(h) for h in a.hops.split(",")):
        det = Detector(engine, windows=WindowPolicy(hop_s=hop), decision=energy)
        where[0] = 0.0
        t0 = time.perf_counter()
        r = det(str(path))
        wall = time.perf_counter() - t0
        assert r.error is None and r.label != "no_speech", r.error or r.reason
        base = base or wall
        print(
            f"| {hop:g} | {det.step_s:g} | {len(r.windows) / a.seconds:.2f} | {wall:.1f} | "
            f"{wall / a.seconds:.3f} | {wall / base:.1f}x | {1000 * where[0]:.1f} |",
            flush=True,
        )
    if a.frame_model:
        frames(a, path, where)


def frames(a, path, where) -> None:
    """Frame-level (PyTorch, one step per 20-ms frame) against window-level timelines of a
    model that scores its frames."""
    import spoofscope
    from spoofscope.infer import Decision, Detector, TorchEngine, WindowPolicy

    torch.manual_seed(0)
    m = spoofscope.create_model(a.frame_model).eval()
    eng = TorchEngine(m, a.threads)
    print(
        f"\n{a.frame_model} (random weights), PyTorch, {m.card.window_samples}-sample windows, "
        f"the same {a.seconds}-s file:\n"
    )
    print("| timeline | hop (s) | step (s) | wall (s) | RTF | timeline + segments (ms) |")
    print("|---|---|---|---|---|---|")
    energy = Decision(vad="energy")
    Detector(eng, decision=energy)(str(path))  # warm-up
    for label, hop, on in (("frame", 2.0, True), ("window", 2.0, False), ("window", 0.5, False)):
        type(eng).gives_frames = property(lambda self, on=on: on)
        det = Detector(eng, windows=WindowPolicy(hop_s=hop), decision=energy)
        where[0] = 0.0
        t0 = time.perf_counter()
        r = det(str(path))
        wall = time.perf_counter() - t0
        step = r.timeline[1]["start_s"] - r.timeline[0]["start_s"]
        print(
            f"| {label} | {hop:g} | {step:g} | {wall:.1f} | {wall / a.seconds:.3f} | "
            f"{1000 * where[0]:.0f} |",
            flush=True,
        )


if __name__ == "__main__":
    run_benchmark(main, "localisation")
