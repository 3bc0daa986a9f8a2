"""The decision rule behind no_speech, measured: which recordings each activity meter lets the
detector judge (at least 0.5 s of speech) among the real clips of ``../shared/realdev`` and
generated non-speech at speech level (tones, noise, music), and how fast each meter runs.

    python benchmarks/vad.py [--realdev ../shared/realdev]

Prints Markdown tables.
"""

from __future__ import annotations

import argparse
import csv
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _docs import run_benchmark  # noqa: E402
from _machine import cpu_name  # noqa: E402

SR = 16000


def nonspeech(kind: str, seed: int, seconds: float = 6.0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(int(SR * seconds)) / SR
    if kind == "tone":
        x = 0.3 * np.sin(2 * np.pi * rng.uniform(100, 1000) * t)
    elif kind == "noise":
        x = rng.uniform(0.03, 0.2) * rng.standard_normal(t.size)
    else:  # music: random chords of harmonic notes, a pulse of 1-4 Hz
        notes = 110 * 2 ** (rng.integers(0, 36, 3) / 12)
        x = sum(0.08 * np.sin(2 * np.pi * f * k * t) / k for f in notes for k in range(1, 6))
        x = x * (0.6 + 0.4 * np.sign(np.sin(2 * np.pi * rng.uniform(1, 4) * t)))
    return x.astype(np.float32)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "--realdev", default=str(Path(__file__).resolve().parents[2] / "shared/realdev")
    )
    a = ap.parse_args()
    from spoofscope.audio import load_audio
    from spoofscope.infer.activity import make_meter

    root = Path(a.realdev)
    rows = list(csv.DictReader(open(root / "labels.csv")))
    clips = [(r["label"], load_audio(root / r["path"])) for r in rows]
    gen = [(k, nonspeech(k, s)) for k in ("tone", "noise", "music") for s in range(10)]

    def speech_s(vad, x):
        m = make_meter(vad, SR, -50.0)
        for _ in m.wrap([x]):
            pass
        return m.active_s

    print(
        f"Machine: {cpu_name()}; realdev: {len(clips)} clips; generated: 10 each at speech level\n"
    )
    print("| meter | realdev bona fide judged | realdev spoof judged | tones abstain | noise "
          "abstain | music abstain | audio s per CPU s |")  # fmt: skip
    print("|---|---|---|---|---|---|---|")
    for vad in ("silero", "energy"):
        t0, total = time.process_time(), 0.0
        judged = {"bonafide": [], "spoof": []}
        for lab, x in clips:
            judged[lab].append(speech_s(vad, x) >= 0.5)
            total += x.size / SR
        speed = total / (time.process_time() - t0)
        abst = {k: np.mean([speech_s(vad, x) < 0.5 for kk, x in gen if kk == k])
                for k in ("tone", "noise", "music")}  # fmt: skip
        b, s = judged["bonafide"], judged["spoof"]
        print(
            f"| {vad} | {sum(b)} of {len(b)} | {sum(s)} of {len(s)} | {100 * abst['tone']:.0f} % "
            f"| {100 * abst['noise']:.0f} % | {100 * abst['music']:.0f} % | {speed:.0f} |"
        )


if __name__ == "__main__":
    run_benchmark(main, "vad")
