"""What a live stream pays on every call to say where: the timeline, its anchoring, the
segments and the settle rule, rebuilt over all the audio so far, as a stream grows.

    python benchmarks/timeline_build.py [--minutes 1,10,30,60,120] [--repeats 5]

A stream keeps no partial timeline: on every call that judged a window it rebuilds the
timeline of everything heard so far from its windows (:mod:`spoofscope.infer.timeline`), so
this cost grows with the call's length and is paid once per hop. Synthetic windows on the
localisation grid (1-s windows every 0.25 s, 0.25-s steps) with scores that drift as a random
walk (seeded), so the segments are as many as in speech that changes label now and then; an
activity mask with a pause every ~3 s. Beside the package's timeline, the earlier rule that
compared every step with every window (the mean over ``(start < b) & (end > a)`` per step),
timed on the same windows, with the largest difference between the two. Median of
``--repeats`` runs, one thread, milliseconds.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _docs import run_benchmark  # noqa: E402
from _machine import cpu_name  # noqa: E402


def per_step(windows, duration_s, step_s, active, frame_s):
    """The earlier timeline rule: for every step, a pass over every window."""
    from spoofscope.infer.timeline import _has_sound, step_grid

    edges = step_grid(duration_s, step_s)
    ws = np.array([w[0] for w in windows])
    we = np.array([min(w[1], duration_s) for w in windows])
    sc = np.array([w[2] for w in windows], float)
    mg = np.array([w[3] for w in windows], float)
    out = []
    for a, b in zip(edges[:-1], edges[1:], strict=True):
        score = prob = None
        if _has_sound(active, a, b, frame_s):
            cover = (ws < b) & (we > a)
            if cover.any():
                score, prob = float(sc[cover].mean()), float(mg[cover].mean())
        out.append({"start_s": a, "end_s": b, "score": score, "p": prob})
    return out


def stream(minutes: float, rng) -> tuple[list, float, np.ndarray, float]:
    dur = minutes * 60.0
    starts = np.arange(0.0, dur - 1.0 + 1e-9, 0.25)
    walk = np.cumsum(rng.normal(0, 0.6, starts.size)) * 0.3
    score = np.clip(walk, -8, 8) + rng.normal(0, 0.5, starts.size)
    wins = [
        (s, s + 1.0, float(v), float(1 / (1 + np.exp(-v))))
        for s, v in zip(starts, score, strict=True)
    ]
    frame_s = 0.032
    active = np.ones(int(np.ceil(dur / frame_s)), bool)
    for p in np.cumsum(rng.uniform(2, 4, int(dur / 2))):
        k = int(p / frame_s)
        active[k : k + int(rng.uniform(0.1, 0.5) / frame_s)] = False
    return wins, dur, active, frame_s


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--minutes", default="1,10,30,60,120")
    ap.add_argument("--repeats", type=int, default=5)
    a = ap.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    from spoofscope.infer.timeline import anchor, build_segments, build_timeline, settled

    print(f"Machine: {cpu_name()}, one thread; median of {a.repeats} runs; 0.25-s steps, "
          "1-s windows every 0.25 s\n")  # fmt: skip
    print("| audio so far (min) | windows | timeline (ms) | earlier per-step rule (ms) | "
          "largest difference | anchor (ms) | segments + settle rule (ms) | per call (ms) |\n"
          "|---:|---:|---:|---:|---:|---:|---:|---:|")  # fmt: skip
    rng = np.random.default_rng(0)
    for minutes in (float(m) for m in a.minutes.split(",")):
        wins, dur, active, frame_s = stream(minutes, rng)
        t_tl, t_ref, t_an, t_seg = [], [], [], []
        for _ in range(a.repeats):
            t0 = time.perf_counter()
            steps = build_timeline(wins, dur, 0.25, active, frame_s)
            t1 = time.perf_counter()
            ref = per_step(wins, dur, 0.25, active, frame_s)
            t2 = time.perf_counter()
            sc = np.array([w[2] for w in wins])
            an = anchor(steps, float(np.median(sc)), 0.5)
            t3 = time.perf_counter()
            segs = build_segments(an, active, 0.5, 0.1, frame_s=frame_s, runs=True)
            settled(segs, dur - 1.0, 0.25)
            t4 = time.perf_counter()
            t_tl.append(t1 - t0)
            t_ref.append(t2 - t1)
            t_an.append(t3 - t2)
            t_seg.append(t4 - t3)
        diff = max(
            (abs(x["score"] - y["score"]) for x, y in zip(steps, ref, strict=True)
             if x["score"] is not None),
            default=0.0,
        )  # fmt: skip
        assert [x["score"] is None for x in steps] == [y["score"] is None for y in ref]
        ms = [1000 * float(np.median(t)) for t in (t_tl, t_ref, t_an, t_seg)]
        print(f"| {minutes:g} | {len(wins)} | {ms[0]:.1f} | {ms[1]:.1f} | {diff:.1e} | "
              f"{ms[2]:.1f} | {ms[3]:.1f} ({len(segs)} segments) | "
              f"{ms[0] + ms[2] + ms[3]:.1f} |", flush=True)  # fmt: skip


if __name__ == "__main__":
    run_benchmark(main, "timeline_build")
